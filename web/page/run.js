// Running a loaded model: the per-run feeds, one `session.run` with its read-back, and the
// outputs as the reply carries them (sample, stats, digest, base64, or PUT to a relay slot).
// Owns the page's run counts. Fault hooks act through `faults.beforeRun` / `faults.afterRun`.

import { PageError, describe, requireString } from './envelope.js';
import { exclusive, markWedged, ort, proxyOn, refuseIfWedged } from './ort.js';
import { gpuLost, gpuLostSignal } from './gpu.js';
import { DTYPES, fetchBytes } from './load.js';
import { sessionEntry, stillLoaded } from './sessions.js';
import { base64, evenSample, fnv1a, wholeStats } from './digest.js';
import * as faults from './faults.js';
import { graphsDispatched, webnnWatched } from './webnn.js';

/** Run calls this page received, and by the purpose each named (`args.for`). */
let runs = 0;
const runsFor = {};

export function runCount() {
  return runs;
}

/** The page's own witness of what the harness asked it to run: received run calls by purpose. */
export function runsByPurpose() {
  return { ...runsFor };
}

/**
 * Counts a run call as it arrives, before anything can refuse it: every call the harness sends
 * is one it counted, whatever its outcome.
 */
function countArrival(args) {
  const purpose = args.for;
  if (typeof purpose !== 'string' || purpose.length === 0) {
    throw new PageError('TypeError', `'for' must name what the run is for (request, or a probe's name), got ${JSON.stringify(purpose)}`);
  }
  runs += 1;
  runsFor[purpose] = (runsFor[purpose] ?? 0) + 1;
}

/**
 * The per-run inputs of `args.feeds` (`{name: {dtype, dims, data_b64}}`, raw little-endian bytes
 * in base64) as tensors, checked against what `load` declared per-run; null when none is given.
 */
async function decodeFeeds(entry, feeds) {
  if (typeof feeds !== 'object' || Array.isArray(feeds)) {
    throw new PageError('TypeError', "'feeds' must be an object of name -> {dtype, dims, data_b64}");
  }
  const names = Object.keys(feeds);
  if (names.length === 0) return null;
  const out = {};
  for (const name of names) {
    const want = entry.perRun?.[name];
    if (!want) {
      throw new PageError('InputMismatch', `model '${entry.modelId}' takes no per-run input '${name}'; per-run inputs: [${Object.keys(entry.perRun ?? {}).join(', ')}]`);
    }
    const f = feeds[name];
    const dims = want.dynamic ? dynamicDims(entry, name, want, f) : want.dims;
    if (f?.dtype !== want.dtype || JSON.stringify(f?.dims) !== JSON.stringify(dims)) {
      throw new PageError('InputMismatch', `per-run input '${name}' of '${entry.modelId}' must be ${want.dtype}[${dims.join(',')}], got ${f?.dtype}[${f?.dims}]`);
    }
    const Typed = DTYPES[want.dtype];
    const count = dims.reduce((a, b) => a * b, 1);
    let bytes;
    if (count === 0) {
      // An empty tensor (a generation's cache before its first step) has no bytes to carry.
      bytes = new Uint8Array(0);
    } else if (typeof f.url === 'string') {
      // Through the asset server's relay: raw bytes, no base64.
      bytes = new Uint8Array(await fetchBytes(f.url, `per-run input '${name}'`));
    } else {
      const bin = atob(requireString(f, 'data_b64'));
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
    }
    if (bytes.byteLength !== count * Typed.BYTES_PER_ELEMENT) {
      throw new PageError('InputSizeMismatch', `per-run input '${name}': ${bytes.byteLength} bytes, but ${want.dtype}[${dims.join(',')}] needs ${count * Typed.BYTES_PER_ELEMENT}`);
    }
    out[name] = new (ort().Tensor)(want.dtype, new Typed(bytes.buffer), dims);
  }
  return out;
}

/** The dims a run gives a `dynamic` per-run input: any non-negative sizes, at its declared rank. */
function dynamicDims(entry, name, want, f) {
  const dims = f?.dims;
  if (!Array.isArray(dims) || dims.length !== want.dims.length || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new PageError('InputMismatch', `per-run input '${name}' of '${entry.modelId}' must have ${want.dims.length} non-negative dims, got ${JSON.stringify(dims)}`);
  }
  return dims;
}

/**
 * `args.carry` (`{output: input}`) checked against the session: the outputs a run keeps in the
 * page as the inputs of the next run (a generation's key/value cache), instead of returning them.
 */
function carryOf(entry, args) {
  const carry = args.carry ?? {};
  if (typeof carry !== 'object' || Array.isArray(carry)) {
    throw new PageError('TypeError', "'carry' must be an object of output name -> input name");
  }
  for (const [output, input] of Object.entries(carry)) {
    if (!entry.session.outputNames.includes(output)) {
      throw new PageError('InputMismatch', `'carry' names output '${output}', which '${entry.modelId}' does not have`);
    }
    if (!entry.perRun?.[input]?.dynamic) {
      throw new PageError('InputMismatch', `'carry' names input '${input}', which is not a dynamic per-run input of '${entry.modelId}'`);
    }
  }
  return carry;
}

/**
 * Keeps the carried outputs of a finished run as the model's stored inputs (given feeds still
 * override them), and takes them out of `ran.results` so they outlive the run's disposal. The
 * previous carried tensors are released.
 */
function keepCarried(entry, ran, carry) {
  entry.carried ??= {};
  for (const [output, input] of Object.entries(carry)) {
    const t = ran.results[output];
    delete ran.results[output];
    const old = entry.carried[input];
    if (old && old !== t) {
      try { old.dispose(); } catch { /* a CPU tensor has nothing to free */ }
    }
    entry.carried[input] = t;
    entry.feeds[input] = t;
  }
}

/**
 * Fresh copies of stored input tensors. The proxy worker takes a run's input buffers (they are
 * transferred, and detached here), so a page that runs in it hands each run its own copy.
 */
function copyFeeds(feeds) {
  const out = {};
  for (const [name, t] of Object.entries(feeds)) {
    out[name] = new (ort().Tensor)(t.type, t.data.slice(), t.dims);
  }
  return out;
}

/**
 * Runs a loaded model once. Every answer carries the page's run counts as they stand when it
 * leaves (`runs_for`), so the harness knows what a page counted up to its last answer even when
 * the page is later lost (crashed, hung, killed) before it can be asked.
 */
export async function run(args) {
  countArrival(args);
  const value = await runArrived(args);
  value.runs_for = runsByPurpose();
  return value;
}

async function runArrived(args) {
  const entry = sessionEntry(args);
  refuseIfWedged();
  const mode = args.outputs ?? 'none';
  if (!['none', 'sample', 'full'].includes(mode)) {
    throw new PageError('TypeError', `'outputs' must be none, sample or full, got ${JSON.stringify(mode)}`);
  }
  // The fault hooks act before the run touches its inputs (fail_runs throws, slow waits).
  const slowed = faults.beforeRun(entry.modelId);
  if (slowed) await slowed;
  const decodeStart = performance.now();
  const given = await decodeFeeds(entry, args.feeds ?? {});
  const outputTo = args.output_to ?? {};
  if (typeof outputTo !== 'object' || Array.isArray(outputTo)) {
    throw new PageError('TypeError', "'output_to' must be an object of output name -> relay URL");
  }
  const carry = carryOf(entry, args);
  const decodeMs = performance.now() - decodeStart;
  const queued = performance.now();
  return exclusive(() => runQueued(entry, given, { mode, outputTo, decodeMs, queued, carry }));
}

/** The part of `run` that holds onnxruntime-web (inside `exclusive`). */
async function runQueued(entry, given, { mode, outputTo, decodeMs, queued, carry }) {
  refuseIfWedged();
  if (!stillLoaded(entry)) {
    throw new PageError('NotLoaded', `model '${entry.modelId}' was unloaded while this run waited`);
  }
  const queueMs = performance.now() - queued;
  const runIndex = entry.runIndex;
  if (entry.backend === 'webgpu' && gpuLost()) {
    // Measured in Chromium 156: session.run on a destroyed device never settles, so refuse
    // up front instead of hanging the page.
    throw new PageError('GpuDeviceLost', `model '${entry.modelId}' runs on a WebGPU device that was lost (${gpuLost()}); reload the page`);
  }
  const ran = { results: null, host: {} };
  try {
    // Runs are one at a time (`exclusive`): every dispatch between here and the end is this run's.
    const dispatched = graphsDispatched();
    const t0 = performance.now();
    await unlessDeviceLost(entry, runAndReadBack(entry, given, ran, carry));
    const runMs = performance.now() - t0;
    const webnnDispatches = entry.backend === 'webnn' && webnnWatched ? graphsDispatched() - dispatched : null;
    entry.runIndex += 1;
    // Carried outputs stay in the page: neither digested nor returned, only their dims.
    const carried = {};
    for (const output of Object.keys(carry)) carried[output] = ran.results[output].dims;
    const names = entry.session.outputNames.filter((name) => !(name in carry));
    // The fault hooks see the outputs here, before anything is digested (corrupt_answer).
    faults.afterRun(names.map((name) => ran.host[name]));
    // Every answer carries a digest of every output, so the harness can compare it with the
    // first verified answer of the same model, browser and backend.
    const digests = {};
    for (const name of names) digests[name] = fnv1a(ran.host[name]);
    const outputs = mode === 'none' ? {} : await encodeOutputs(entry, ran, digests, mode, outputTo, names);
    keepCarried(entry, ran, carry);
    const encodeMs = performance.now() - t0 - runMs;
    return {
      model_id: entry.modelId, backend: entry.backend, run_index: runIndex, run_ms: runMs, queue_ms: queueMs, slow_ms: faults.slowDelayMs(), outputs, digests, carried,
      webnn_dispatches: webnnDispatches,
      feed_decode_ms: decodeMs,
      output_encode_ms: encodeMs,
      // Wall-clock instants (performance.timeOrigin + now) of the run's start and end, for
      // the time between one shard's end and the next shard's start across browsers.
      run_start_epoch_ms: performance.timeOrigin + t0,
      run_end_epoch_ms: performance.timeOrigin + t0 + runMs,
    };
  } catch (e) {
    if (e instanceof PageError) throw e;
    if (entry.backend === 'webgpu' && gpuLost()) {
      throw new PageError('GpuDeviceLost', `run of '${entry.modelId}' failed after the WebGPU device was lost (${gpuLost()}): ${describe(e)}`);
    }
    throw e;
  } finally {
    dispose(ran.results);
  }
}

/** One `session.run` and the read-back of every output into `ran` (`results`, `host`). */
async function runAndReadBack(entry, given, ran, carry) {
  const stored = proxyOn() ? copyFeeds(entry.feeds) : entry.feeds;
  ran.results = await entry.session.run(given ? { ...stored, ...given } : stored);
  // Read-back is part of the measured time: a GPU-located output is not usable until then.
  // A carried output stays where it is, for the next run.
  for (const name of entry.session.outputNames.filter((n) => !(n in carry))) {
    const t = ran.results[name];
    ran.host[name] = t.location === 'cpu' || t.location === undefined ? t.data : await t.getData();
  }
}

/** Waits for `running`, the run of `entry`, unless its WebGPU device is lost first. */
async function unlessDeviceLost(entry, running) {
  const lostSignal = gpuLostSignal();
  if (entry.backend !== 'webgpu' || !lostSignal) {
    await running;
    return;
  }
  // A device lost mid-run would leave session.run pending forever; the lost signal ends it.
  let settled = false;
  const pending = running.finally(() => { settled = true; });
  pending.catch(() => {});
  try {
    await Promise.race([pending, lostSignal]);
  } catch (e) {
    if (!settled) {
      markWedged(`the run of '${entry.modelId}' was abandoned when the WebGPU device was lost (${gpuLost()})`);
    }
    throw e;
  }
}

/** The reply's `outputs` for mode `sample` or `full`. */
async function encodeOutputs(entry, ran, digests, mode, outputTo, names) {
  const outputs = {};
  for (const name of names) {
    const data = ran.host[name];
    const out = {
      dims: ran.results[name].dims,
      dtype: ran.results[name].type,
      sample: evenSample(data),
      stats: wholeStats(data, digests[name]),
    };
    if (typeof outputTo[name] === 'string') {
      await relayOutput(name, outputTo[name], data);
      out.relayed = true;
    } else if (mode === 'full') {
      out.data_b64 = base64(data);
    }
    outputs[name] = out;
  }
  return outputs;
}

/**
 * Through the asset server's relay: the raw bytes, PUT; the reply carries only the stats (their
 * digest lets the reader check what it got).
 */
async function relayOutput(name, url, data) {
  const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let response;
  try {
    response = await fetch(url, { method: 'PUT', body, cache: 'no-store' });
  } catch (e) {
    throw new PageError('FetchError', `putting output '${name}' to ${url} failed: ${describe(e)}`);
  }
  if (!response.ok) {
    throw new PageError('FetchError', `putting output '${name}' to ${url} failed: HTTP ${response.status}`);
  }
}

function dispose(results) {
  if (!results) return;
  for (const t of Object.values(results)) {
    try { t.dispose(); } catch { /* a tensor of a lost device may refuse; nothing to free */ }
  }
}
