// Loading a model: fetching the model and its inputs, deciding which backends can be tried (and
// why not), creating the session, reading how the WebNN EP partitioned the graph. What is loaded
// is kept by `sessions.js`; this module owns no state of its own.

import { PageError, describe, requireString } from './envelope.js';
import { captureOrtLog, exclusive, ort, proxyOn, refuseIfWedged, startOnce } from './ort.js';
import {
  WEBNN_DEVICE_TYPES, describeAdapter, fallbackWhy, resolvedNumThreads, wasmThreadsPossible, webnnContext,
} from './capabilities.js';
import { gpuLost, watchGpuDevice } from './gpu.js';
import { addSession, countLoad, findSession, loadCount } from './sessions.js';
import { graphsBuilt, webnnWatched } from './webnn.js';

const KNOWN_BACKENDS = ['webgpu', 'webnn', 'wasm'];
// When load picks a WebNN device itself: cpu first, onnxruntime-web's own default. Measured in
// chromium-shell (Chromium 153): the gpu and npu contexts are created too, but every one of them
// runs on TensorFlow Lite's XNNPACK CPU delegate, so naming them would misreport the device.
const WEBNN_LOAD_ORDER = ['cpu', 'gpu', 'npu'];

export const DTYPES = {
  int64: BigInt64Array,
  int32: Int32Array,
  float32: Float32Array,
  uint8: Uint8Array,
};

export async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new PageError('FetchError', `fetching ${what} ${url} failed: ${describe(e)}`);
  }
  if (!response.ok) {
    throw new PageError('FetchError', `fetching ${what} ${url} failed: HTTP ${response.status} ${response.statusText}`);
  }
  return response.arrayBuffer();
}

async function fetchInput(input) {
  const name = requireString(input, 'name');
  const Typed = DTYPES[input.dtype];
  if (!Typed) {
    throw new PageError('TypeError', `input '${name}': dtype ${JSON.stringify(input.dtype)} is not one of ${Object.keys(DTYPES).join(', ')}`);
  }
  if (!Array.isArray(input.dims) || !input.dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new PageError('TypeError', `input '${name}': dims must be an array of non-negative integers`);
  }
  if (input.per_run === true) {
    // Given with every run (a shard's incoming activation): zeros until a run supplies it.
    // A `dynamic` one may come with other dims of the same rank each run (a generation's
    // tokens and its key/value cache, whose length grows); its dims here are the first ones.
    const dynamic = input.dynamic === true;
    const count = input.dims.reduce((a, b) => a * b, 1);
    return { name, perRun: { dtype: input.dtype, dims: input.dims, dynamic }, tensor: new (ort().Tensor)(input.dtype, new Typed(count), input.dims) };
  }
  const url = requireString(input, 'url');
  const bytes = await fetchBytes(url, `input '${name}'`);
  const count = input.dims.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== count * Typed.BYTES_PER_ELEMENT) {
    throw new PageError('InputSizeMismatch', `input '${name}' from ${url}: ${bytes.byteLength} bytes, but ${input.dtype}[${input.dims.join(',')}] needs ${count * Typed.BYTES_PER_ELEMENT}`);
  }
  return { name, tensor: new (ort().Tensor)(input.dtype, new Typed(bytes), input.dims) };
}

/**
 * Why `backend` cannot be tried in this page, or null when it can. For webnn, also the device
 * type to pass to the EP.
 */
async function backendBlocker(backend, args) {
  if (backend === 'webgpu') {
    if (!navigator.gpu) return { reason: 'navigator.gpu is missing (WebGPU not exposed)' };
    if (gpuLost()) return { reason: `the WebGPU device of this page was lost (${gpuLost()}); reload the page` };
    let adapter;
    try {
      adapter = await navigator.gpu.requestAdapter();
    } catch (e) {
      return { reason: `requestAdapter() threw ${describe(e)}` };
    }
    if (!adapter) return { reason: 'requestAdapter() returned null (no usable adapter)' };
    const info = await describeAdapter(adapter);
    if (info.fallback && args.allow_fallback_adapter !== true) {
      return { reason: `software adapter (${fallbackWhy(info)}), not counted as WebGPU unless asked for` };
    }
    return null;
  }
  if (backend === 'webnn') {
    if (!navigator.ml || typeof navigator.ml.createContext !== 'function') {
      return { reason: 'navigator.ml is missing (WebNN not exposed)' };
    }
    const order = args.webnn_device_type ? [args.webnn_device_type] : WEBNN_LOAD_ORDER;
    const errors = [];
    for (const deviceType of order) {
      const probe = await webnnContext(deviceType);
      if (probe.ok) return { deviceType };
      errors.push({ deviceType, error: probe.error });
    }
    // One line when every device failed the same way (the usual case), else one per device.
    const same = errors.every((e) => e.error === errors[0].error);
    const detail = same
      ? `${errors.map((e) => e.deviceType).join('/')}: ${errors[0].error}`
      : errors.map((e) => `${e.deviceType}: ${e.error}`).join('; ');
    return { reason: `createContext failed (${detail})` };
  }
  return null;
}

function executionProvider(backend, blocker) {
  if (backend === 'webnn') return { name: 'webnn', deviceType: blocker.deviceType };
  return backend;
}

async function webgpuAdapterInUse() {
  const adapter = ort().env.webgpu?.adapter;
  return adapter ? describeAdapter(adapter) : null;
}

function loadValue(entry, reused) {
  const value = {
    model_id: entry.modelId,
    backend: entry.backend,
    reused,
    fallback_reasons: entry.fallbackReasons,
    session_create_ms: entry.sessionCreateMs,
    fetch_ms: entry.fetchMs,
    model_bytes: entry.modelBytes,
    graph_optimization: entry.graphOptimization,
    input_names: entry.session.inputNames,
    output_names: entry.session.outputNames,
    load_count: loadCount(),
    proxy: proxyOn(),
    wasm_threads: resolvedNumThreads(wasmThreadsPossible()),
  };
  if (entry.webnnDeviceType) value.webnn_device_type = entry.webnnDeviceType;
  if (entry.webnnGraph) value.webnn_graph = entry.webnnGraph;
  if (entry.adapter) value.adapter = entry.adapter;
  return value;
}

/**
 * How the WebNN EP took the graph, from onnxruntime's info log: partitions, nodes, nodes it took.
 * Which operator types it left to the CPU (wasm) EP is logged only at verbose level, which
 * onnxruntime-web cannot turn on after its first session, so `unsupported_ops` is filled only
 * when such lines are there. `null` when the log did not say.
 */
function webnnPartition(lines) {
  let summary = null;
  const left = new Map();
  for (const l of lines) {
    const m = l.match(/number of partitions supported by WebNN: (\d+) number of nodes in the graph: (\d+) number of nodes supported by WebNN: (\d+)/);
    if (m) summary = { partitions: Number(m[1]), nodes: Number(m[2]), supported: Number(m[3]) };
    const n = l.match(/Operator type: \[([^\]]+)\] index: \[\d+\] name: \[[^\]]*\] supported: \[0\]/);
    if (n) left.set(n[1], (left.get(n[1]) ?? 0) + 1);
  }
  if (!summary) return null;
  return { ...summary, unsupported_ops: [...left.entries()].map(([op, count]) => ({ op, count })) };
}

/** Checks `load`'s arguments, in the order the page always has, and applies `wasm_threads`. */
function loadArgs(args) {
  const url = requireString(args, 'url');
  const backends = args.backends ?? ['wasm'];
  if (!Array.isArray(backends) || backends.length === 0) {
    throw new PageError('TypeError', "'backends' must be a non-empty array");
  }
  for (const b of backends) {
    if (!KNOWN_BACKENDS.includes(b)) {
      throw new PageError('TypeError', `unknown backend ${JSON.stringify(b)}; known: ${KNOWN_BACKENDS.join(', ')}`);
    }
  }
  if (args.webnn_device_type !== undefined && !WEBNN_DEVICE_TYPES.includes(args.webnn_device_type)) {
    throw new PageError('TypeError', `webnn_device_type must be one of ${WEBNN_DEVICE_TYPES.join(', ')}`);
  }
  if (args.preoptimized !== undefined && typeof args.preoptimized !== 'boolean') {
    throw new PageError('TypeError', `'preoptimized' must be true or false, got ${JSON.stringify(args.preoptimized)}`);
  }
  const inputs = args.inputs ?? [];
  if (!Array.isArray(inputs)) throw new PageError('TypeError', "'inputs' must be an array");
  if (args.wasm_threads !== undefined && args.wasm_threads !== null) {
    const n = args.wasm_threads;
    if (!Number.isInteger(n) || n < 1) {
      throw new PageError('TypeError', `'wasm_threads' must be a positive integer, got ${JSON.stringify(n)}`);
    }
    // onnxruntime-web reads numThreads once, when its wasm backend starts (the first session).
    const set = ort().env.wasm.numThreads;
    if (loadCount() > 0 && set !== n) {
      throw new PageError('WasmThreadsFixed', `this page's wasm backend already runs ${set ?? 'its default number of'} threads; wasm_threads ${n} needs a fresh page`);
    }
    ort().env.wasm.numThreads = n;
  }
  return { url, backends, inputs };
}

/**
 * onnxruntime-web's graph optimization level for a session on `backend`. A `preoptimized` graph
 * was already rewritten by native onnxruntime at its basic level (rewrites that hold for every
 * execution provider): on wasm the page's own optimizations then cost a third of session
 * creation and gained nothing measured (bert-base: create 3.1-3.2 s at `all`, 2.0 s `disabled`,
 * warm p50 the same). On WebGPU and WebNN the page still runs them: their provider-specific
 * fusions happen there, and their loads were not measured without them.
 */
function graphOptimizationLevel(backend, preoptimized) {
  return preoptimized && backend === 'wasm' ? 'disabled' : 'all';
}

/**
 * `[session, sessionCreateMs, webnnGraph]`: one `InferenceSession.create` on `backend` at the
 * graph optimization level `level`.
 */
function createSession(backend, blocker, modelBytes, level, args) {
  const options = { executionProviders: [executionProvider(backend, blocker)], graphOptimizationLevel: level };
  // Queued behind other ORT work; the timer starts when this creation really starts.
  return exclusive(async () => {
    // onnxruntime-web says how the WebNN EP partitioned the graph only in its verbose log:
    // listen to it for this creation alone.
    if (backend === 'webnn') options.logSeverityLevel = 1; // info: the partition summary
    const listen = backend === 'webnn' ? captureOrtLog() : null;
    startOnce(args.proxy === true && backend === 'wasm');
    const built = graphsBuilt();
    const t0 = performance.now();
    try {
      const s = await ort().InferenceSession.create(modelBytes, options);
      const ms = performance.now() - t0;
      if (backend !== 'webnn') return [s, ms, null];
      // Always an answer for a webnn session: what the log said (null fields when it said
      // nothing) and what the WebNN API itself saw (graphs built during this creation).
      const logged = webnnPartition(listen.lines);
      return [s, ms, {
        partitions: logged?.partitions ?? null,
        nodes: logged?.nodes ?? null,
        supported: logged?.supported ?? null,
        unsupported_ops: logged?.unsupported_ops ?? [],
        graphs_built: webnnWatched ? graphsBuilt() - built : null,
      }];
    } finally {
      listen?.stop();
    }
  });
}

export async function load(args) {
  const modelId = requireString(args, 'model_id');
  const existing = findSession(modelId);
  if (existing) return loadValue(existing, true);
  const { url, backends, inputs } = loadArgs(args);
  refuseIfWedged();

  const fetchStart = performance.now();
  const [modelBuffer, feedList] = await Promise.all([
    fetchBytes(url, 'model'),
    Promise.all(inputs.map(fetchInput)),
  ]);
  const fetchMs = performance.now() - fetchStart;
  const modelBytes = new Uint8Array(modelBuffer);
  const feeds = Object.fromEntries(feedList.map((f) => [f.name, f.tensor]));
  const perRun = Object.fromEntries(feedList.filter((f) => f.perRun).map((f) => [f.name, f.perRun]));

  const fallbackReasons = [];
  for (const backend of backends) {
    const blocker = await backendBlocker(backend, args);
    if (blocker?.reason) {
      fallbackReasons.push({ backend, reason: blocker.reason });
      continue;
    }
    const level = graphOptimizationLevel(backend, args.preoptimized === true);
    let session;
    let sessionCreateMs;
    let webnnGraph = null;
    try {
      [session, sessionCreateMs, webnnGraph] = await createSession(backend, blocker, modelBytes, level, args);
    } catch (e) {
      fallbackReasons.push({ backend, reason: `InferenceSession.create failed: ${describe(e)}` });
      continue;
    }
    const missing = session.inputNames.filter((n) => !(n in feeds));
    const unknown = Object.keys(feeds).filter((n) => !session.inputNames.includes(n));
    if (missing.length > 0 || unknown.length > 0) {
      await exclusive(() => session.release());
      // The caller's inputs do not fit the model: another backend would not fix that.
      throw new PageError('InputMismatch', `model '${modelId}' takes inputs [${session.inputNames.join(', ')}]; missing [${missing.join(', ')}], unknown [${unknown.join(', ')}]`);
    }
    countLoad();
    if (backend === 'webgpu') watchGpuDevice();
    const entry = {
      modelId, backend, session, feeds, perRun, fallbackReasons, sessionCreateMs, fetchMs,
      modelBytes: modelBytes.byteLength,
      runIndex: 0,
      webnnDeviceType: blocker?.deviceType ?? null,
      webnnGraph,
      graphOptimization: level,
      adapter: backend === 'webgpu' ? await webgpuAdapterInUse() : null,
    };
    addSession(entry);
    return loadValue(entry, false);
  }
  const summary = fallbackReasons.map((r) => `${r.backend}: ${r.reason}`).join('; ');
  throw new PageError('NoBackend', `no backend could load model '${modelId}': ${summary}`, { fallback_reasons: fallbackReasons });
}
