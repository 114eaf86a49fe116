// onnxruntime-web in this page: the import, the console forwarder that hears its log, and the
// one runtime every session shares (its queue, its start, whether it is wedged).
//
// onnxruntime-web is imported from the local npm install through a URL relative to this module,
// so the run token in the path is carried along; nothing comes from a CDN. The jsep bundle
// (`ort.all.min.mjs`) is used because it is the one build that carries WebGPU, WebNN and wasm;
// `ort.webgpu.min.mjs` (native WebGPU EP, asyncify) has no WebNN.

import { PageError, describe } from './envelope.js';

export const ORT_BUNDLE = 'ort.all.min.mjs';
const ORT_DIR = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url);

/** The imported onnxruntime-web module; null until the import resolved. */
let ortModule = null;
/** Whether onnxruntime-web's wasm has been started (by the first session creation). */
let started = false;
/**
 * Set when a run was abandoned mid-flight because its device was lost. The jsep runtime is one
 * wasm instance for every EP and still holds that run, so every later run in this page fails
 * ("Session already started", measured in Chromium 156); the page needs a reload.
 */
let wedged = null;
/** Serializes every onnxruntime-web session operation in this page (see `exclusive`). */
let queue = Promise.resolve();

// onnxruntime's wasm binds console.log once, when it starts: the page puts its own forwarder
// there first, so a session creation can listen to what onnxruntime logs (see captureOrtLog).
const consoleSink = { lines: null };
for (const k of ['log', 'info', 'warn', 'error', 'debug']) {
  const original = console[k].bind(console);
  console[k] = (...a) => {
    if (consoleSink.lines) consoleSink.lines.push(a.map(String).join(' '));
    else original(...a);
  };
}

/**
 * Resolves to onnxruntime-web once imported; rejects with an `InitError` PageError whose message
 * is what the page reports as `init_error`.
 */
export const ortImported = import(new URL(ORT_BUNDLE, ORT_DIR).href).then(
  (ort) => {
    // The bundle finds its .wasm/.mjs next to itself already; saying so explicitly keeps a
    // future bundler or blob: URL from silently changing where they come from.
    ort.env.wasm.wasmPaths = ORT_DIR.href;
    // onnxruntime fixes its log level when its wasm starts (the first session). At 'info' it
    // says, once per session creation, how the WebNN EP partitioned the graph; runs log nothing
    // at that level.
    ort.env.logLevel = 'info';
    ortModule = ort;
    return ort;
  },
  (e) => {
    throw new PageError('InitError', `importing ${ORT_BUNDLE} failed: ${describe(e)}`);
  },
);
// The rejection is reported through `init_error` and every later `call`.
ortImported.catch(() => {});

/** onnxruntime-web; every method but echo runs after the import, so it is set there. */
export function ort() {
  return ortModule;
}

/** Whether this page's wasm inference runs in onnxruntime-web's proxy worker. */
export function proxyOn() {
  return ortModule.env.wasm.proxy === true;
}

/**
 * Runs `fn` after every earlier ORT operation in this page has finished. The jsep build drives
 * WebGPU through Emscripten asyncify, which allows one async operation in flight, and the wasm EP
 * runs on this thread anyway; queueing here (instead of letting overlapping calls corrupt the
 * runtime) costs nothing real and the wait is reported as `queue_ms`.
 */
export function exclusive(fn) {
  const result = queue.then(fn);
  queue = result.then(() => {}, () => {});
  return result;
}

/**
 * Called (inside `exclusive`) before every session creation; acts at the first only.
 * `proxy`: the first session asked for the proxy worker and is on wasm.
 */
export function startOnce(proxy) {
  if (!started) {
    // onnxruntime-web starts its wasm once, at the first session creation; only then can
    // it go to a proxy worker. Asked for (`proxy`) and the first session on wasm: inference
    // leaves this thread, so it keeps answering heartbeats while a model runs.
    started = true;
    if (proxy) ortModule.env.wasm.proxy = true;
  }
}

/** Records that onnxruntime-web is stuck inside an abandoned run (see `wedged`). */
export function markWedged(why) {
  wedged = why;
}

/** Why onnxruntime-web in this page is stuck, or null. */
export function wedgedReason() {
  return wedged;
}

export function refuseIfWedged() {
  if (wedged) {
    throw new PageError('PageWedged', `onnxruntime-web in this page is stuck: ${wedged}; reload the page`);
  }
}

/** Collects what is logged to the console (onnxruntime's log among it) until `stop()`. */
export function captureOrtLog() {
  const lines = [];
  consoleSink.lines = lines;
  return {
    lines,
    stop() {
      consoleSink.lines = null;
    },
  };
}
