// What a run's reply says about an output: an even sample, whole-output stats, the FNV-1a digest
// of its raw bytes and their base64. Pure functions over typed arrays; no state, no imports.

const SAMPLE_MAX = 256;

/** At most SAMPLE_MAX values at an even stride over the whole output, first and last included. */
export function evenSample(data) {
  const n = data.length;
  const take = Math.min(n, SAMPLE_MAX);
  const out = new Array(take);
  for (let i = 0; i < take; i += 1) {
    const idx = take === 1 ? 0 : Math.round((i * (n - 1)) / (take - 1));
    out[i] = Number(data[idx]);
  }
  return out;
}

/**
 * Checks over every value of an output (not a sample): NaN and infinity counts, min and max of
 * the finite values, sum, L2 norm, and `digest`, the run's FNV-1a digest of the raw little-endian
 * bytes (the harness recomputes it from the bytes it receives, so a value changed on the way
 * shows).
 */
export function wholeStats(data, digest) {
  let nan = 0; let inf = 0; let min = Infinity; let max = -Infinity; let sum = 0; let sq = 0;
  for (let i = 0; i < data.length; i += 1) {
    const v = Number(data[i]);
    if (Number.isNaN(v)) { nan += 1; continue; }
    if (!Number.isFinite(v)) { inf += 1; continue; }
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sq += v * v;
  }
  const finite = data.length - nan - inf;
  return {
    count: data.length,
    nan,
    inf,
    min: finite > 0 ? min : null,
    max: finite > 0 ? max : null,
    sum,
    l2: Math.sqrt(sq),
    digest,
  };
}

/** FNV-1a 32-bit over the raw little-endian bytes of a typed array, 8 hex digits. */
export function fnv1a(data) {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i += 1) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export function base64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  const chunks = [];
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    chunks.push(String.fromCharCode.apply(null, bytes.subarray(i, i + step)));
  }
  return btoa(chunks.join(''));
}
