// The webgpu-pool worker page, API version 1 (contract: docs/page-api.md).
//
// Installs `window.webgpuPool = { ready, init_error, api_version, call(method, argsJson) }`.
// `call` always resolves to a JSON string, `{"ok":true,"value":...}` or
// `{"ok":false,"error":{name,message,stage}}`; no exception escapes it, so the CDP and the
// WebDriver drivers see the same thing.
//
// onnxruntime-web is imported from the local npm install through a URL relative to this module,
// so the run token in the path is carried along; nothing comes from a CDN. The jsep bundle
// (`ort.all.min.mjs`) is used because it is the one build that carries WebGPU, WebNN and wasm;
// `ort.webgpu.min.mjs` (native WebGPU EP, asyncify) has no WebNN.

const API_VERSION = 1;
const ORT_BUNDLE = 'ort.all.min.mjs';
const ORT_DIR = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url);
const KNOWN_BACKENDS = ['webgpu', 'webnn', 'wasm'];
const WEBNN_DEVICE_TYPES = ['cpu', 'gpu', 'npu'];
// When load picks a WebNN device itself: cpu first, onnxruntime-web's own default. Measured in
// chromium-shell (Chromium 153): the gpu and npu contexts are created too, but every one of them
// runs on TensorFlow Lite's XNNPACK CPU delegate, so naming them would misreport the device.
const WEBNN_LOAD_ORDER = ['cpu', 'gpu', 'npu'];
const SAMPLE_MAX = 256;
// Names of software adapters that count as fallback even where a browser leaves the
// isFallbackAdapter flag false or missing. Measured here: Chromium 156 reports SwiftShader with
// the flag true and architecture "swiftshader"; Firefox ESR 153 reports lavapipe with the flag
// true and empty vendor/architecture strings, so the flag and the names are both needed.
const SOFTWARE_ADAPTER = /swiftshader|lavapipe|llvmpipe|softpipe|microsoft basic render|\bwarp\b/;

/** An error with a chosen name; `call` turns it into `{ok:false, error}`. */
class PageError extends Error {
  constructor(name, message, extra) {
    super(message);
    this.name = name;
    if (extra) this.extra = extra;
  }
}

const state = {
  ort: null,
  /** model_id -> entry (see `load`). */
  sessions: new Map(),
  loadCount: 0,
  runs: 0,
  slowMs: 0,
  /** `performance.now()` until which every `run` throws (the `fail_runs` fault hook). */
  failRunsUntil: 0,
  /** Runs whose first output gets one value changed before it is digested (`corrupt_answer`). */
  corruptRuns: 0,
  /** Whether onnxruntime-web's wasm has been started (by the first session creation). */
  ortStarted: false,
  /** The heartbeat this page sends from its main thread (`beat`). */
  beat: { timer: null, url: null, intervalMs: 0, sent: 0, failed: 0 },
  /** `reason: message` once the WebGPU device onnxruntime-web uses reports `lost`. */
  gpuLost: null,
  gpuWatched: null,
  /** Rejects with a GpuDeviceLost PageError when the watched device is lost; never resolves. */
  gpuLostSignal: null,
  /**
   * Set when a run was abandoned mid-flight because its device was lost. The jsep runtime is one
   * wasm instance for every EP and still holds that run, so every later run in this page fails
   * ("Session already started", measured in Chromium 156); the page needs a reload.
   */
  wedged: null,
  /** Serializes every onnxruntime-web session operation in this page (see `exclusive`). */
  ortQueue: Promise.resolve(),
};

const api = {
  ready: false,
  init_error: null,
  api_version: API_VERSION,
  call,
};
window.webgpuPool = api;

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

const ortImport = import(new URL(ORT_BUNDLE, ORT_DIR).href).then(
  (ort) => {
    // The bundle finds its .wasm/.mjs next to itself already; saying so explicitly keeps a
    // future bundler or blob: URL from silently changing where they come from.
    ort.env.wasm.wasmPaths = ORT_DIR.href;
    // onnxruntime fixes its log level when its wasm starts (the first session). At 'info' it
    // says, once per session creation, how the WebNN EP partitioned the graph; runs log nothing
    // at that level.
    ort.env.logLevel = 'info';
    state.ort = ort;
    api.ready = true;
    return ort;
  },
  (e) => {
    api.init_error = `importing ${ORT_BUNDLE} failed: ${describe(e)}`;
    throw new PageError('InitError', api.init_error);
  },
);
// The rejection is reported through `init_error` and every later `call`.
ortImport.catch(() => {});

const METHODS = {
  capabilities,
  load,
  run,
  unload,
  stats,
  echo: async (args) => args,
  hang,
  slow,
  fail_runs: failRuns,
  corrupt_answer: corruptAnswer,
  beat: startBeat,
  destroy_gpu_device: destroyGpuDevice,
};

/**
 * The single entry point. Never throws, never rejects: resolves to a JSON string.
 * @param {string} method
 * @param {string} argsJson
 */
async function call(method, argsJson) {
  let stage = 'args';
  try {
    let args = {};
    if (argsJson !== undefined && argsJson !== null && argsJson !== '') {
      if (typeof argsJson !== 'string') {
        throw new PageError('TypeError', `argsJson must be a JSON string, got ${typeof argsJson}`);
      }
      args = JSON.parse(argsJson);
    }
    const handler = Object.hasOwn(METHODS, method) ? METHODS[method] : undefined;
    if (!handler) {
      throw new PageError('UnknownMethod', `unknown method '${method}'; known: ${Object.keys(METHODS).join(', ')}`);
    }
    if (method !== 'echo') {
      // Every method but echo needs onnxruntime-web; an import failure is reported as stage init.
      stage = 'init';
      await ortImport;
    }
    stage = method;
    const value = await handler(args ?? {});
    return JSON.stringify({ ok: true, value: value === undefined ? null : value });
  } catch (e) {
    try {
      return JSON.stringify({ ok: false, error: errorJson(e, stage) });
    } catch (e2) {
      return JSON.stringify({ ok: false, error: { name: 'Error', message: String(e2), stage } });
    }
  }
}

function errorJson(e, stage) {
  const out = { name: 'Error', message: '', stage };
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e)) {
    out.name = e.name || 'Error';
    out.message = String(e.message);
    if (e.extra) Object.assign(out, e.extra);
  } else {
    out.message = String(e);
  }
  return out;
}

/** `name: message` for errors, `String(e)` for anything else thrown. */
function describe(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e)) {
    return `${e.name || 'Error'}: ${e.message}`;
  }
  return String(e);
}

/**
 * Runs `fn` after every earlier ORT operation in this page has finished. The jsep build drives
 * WebGPU through Emscripten asyncify, which allows one async operation in flight, and the wasm EP
 * runs on this thread anyway; queueing here (instead of letting overlapping calls corrupt the
 * runtime) costs nothing real and the wait is reported as `queue_ms`.
 */
function exclusive(fn) {
  const result = state.ortQueue.then(fn);
  state.ortQueue = result.then(() => {}, () => {});
  return result;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(undefined), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// capabilities

async function capabilities(args) {
  const ort = state.ort;
  const probeWebnn = args.webnn !== false;
  return {
    api_version: API_VERSION,
    user_agent: navigator.userAgent,
    ort_version: ort.env.versions?.web ?? ort.env.versions?.common ?? null,
    ort_bundle: ORT_BUNDLE,
    cross_origin_isolated: self.crossOriginIsolated === true,
    hardware_concurrency: navigator.hardwareConcurrency ?? null,
    webgpu: await webgpuCapabilities(),
    webnn: probeWebnn ? await webnnCapabilities() : { available: false, probed: false, reason: 'not probed (args.webnn is false)', devices: {} },
    wasm: wasmCapabilities(),
  };
}

/** Adapter info as the page reports it, with the fallback verdict. */
async function describeAdapter(adapter) {
  let info = adapter.info;
  if (!info && typeof adapter.requestAdapterInfo === 'function') {
    info = await adapter.requestAdapterInfo();
  }
  info = info ?? {};
  const flag = info.isFallbackAdapter ?? adapter.isFallbackAdapter;
  const names = [info.vendor, info.architecture, info.device, info.description].join(' ').toLowerCase();
  const software = names.match(SOFTWARE_ADAPTER);
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    fallback: flag === true || software !== null,
    fallback_flag: typeof flag === 'boolean' ? flag : null,
    software: software ? software[0] : null,
  };
}

/** Why `adapter` (from `describeAdapter`) counts as fallback, for reasons and messages. */
function fallbackWhy(adapter) {
  return adapter.software ?? (adapter.fallback_flag ? 'isFallbackAdapter' : 'fallback');
}

const LIMIT_NAMES = [
  'maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxStorageBuffersPerShaderStage',
];

async function webgpuCapabilities() {
  const out = { available: false, reason: null, adapter: null, features: [], limits: {} };
  if (!navigator.gpu) {
    out.reason = 'navigator.gpu is missing (WebGPU not exposed by this browser or its flags)';
    return out;
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    out.reason = `requestAdapter() threw ${describe(e)}`;
    return out;
  }
  if (!adapter) {
    out.reason = 'requestAdapter() returned null (no usable adapter)';
    return out;
  }
  out.adapter = await describeAdapter(adapter);
  out.features = [...adapter.features].sort();
  for (const name of LIMIT_NAMES) {
    if (adapter.limits[name] !== undefined) out.limits[name] = adapter.limits[name];
  }
  // This probe uses its own adapter and device; onnxruntime-web requests its own, so a probe
  // never consumes the adapter the EP will use.
  try {
    const device = await adapter.requestDevice();
    device.destroy();
    out.available = true;
  } catch (e) {
    out.reason = `requestDevice() failed: ${describe(e)}`;
  }
  return out;
}

async function webnnContext(deviceType) {
  try {
    const context = await navigator.ml.createContext({ deviceType });
    if (typeof context?.destroy === 'function') context.destroy();
    return { ok: true, error: null };
  } catch (e) {
    return { ok: false, error: describe(e) };
  }
}

async function webnnCapabilities() {
  const out = { available: false, probed: true, reason: null, devices: {} };
  if (!navigator.ml || typeof navigator.ml.createContext !== 'function') {
    out.reason = 'navigator.ml is missing (WebNN not exposed by this browser or its flags)';
    return out;
  }
  for (const deviceType of WEBNN_DEVICE_TYPES) {
    out.devices[deviceType] = await webnnContext(deviceType);
  }
  out.available = Object.values(out.devices).some((d) => d.ok);
  if (!out.available) out.reason = out.devices.cpu.error;
  return out;
}

const WASM_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

function wasmCapabilities() {
  let simd = false;
  try {
    simd = WebAssembly.validate(WASM_SIMD_PROBE);
  } catch {
    simd = false;
  }
  const threads = self.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
  return { simd, threads, num_threads: resolvedNumThreads(threads), proxy: state.ort.env.wasm.proxy === true };
}

/** `ort.env.wasm.numThreads` once set; before the first session, the value ORT will pick. */
function resolvedNumThreads(threads) {
  const set = state.ort.env.wasm.numThreads;
  if (Number.isInteger(set) && set > 0) return threads ? set : 1;
  if (!threads) return 1;
  // The same rule onnxruntime-web 1.30 applies when it initialises the wasm backend.
  return Math.min(4, Math.ceil((navigator.hardwareConcurrency || 1) / 2));
}

// ---------------------------------------------------------------------------------------------
// load

const DTYPES = {
  int64: BigInt64Array,
  int32: Int32Array,
  float32: Float32Array,
  uint8: Uint8Array,
};

function requireString(args, key) {
  const v = args[key];
  if (typeof v !== 'string' || v === '') {
    throw new PageError('TypeError', `'${key}' must be a non-empty string, got ${JSON.stringify(v)}`);
  }
  return v;
}

async function fetchBytes(url, what) {
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
    const count = input.dims.reduce((a, b) => a * b, 1);
    return { name, perRun: { dtype: input.dtype, dims: input.dims }, tensor: new state.ort.Tensor(input.dtype, new Typed(count), input.dims) };
  }
  const url = requireString(input, 'url');
  const bytes = await fetchBytes(url, `input '${name}'`);
  const count = input.dims.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== count * Typed.BYTES_PER_ELEMENT) {
    throw new PageError('InputSizeMismatch', `input '${name}' from ${url}: ${bytes.byteLength} bytes, but ${input.dtype}[${input.dims.join(',')}] needs ${count * Typed.BYTES_PER_ELEMENT}`);
  }
  return { name, tensor: new state.ort.Tensor(input.dtype, new Typed(bytes), input.dims) };
}

/**
 * Why `backend` cannot be tried in this page, or null when it can. For webnn, also the device
 * type to pass to the EP.
 */
async function backendBlocker(backend, args) {
  if (backend === 'webgpu') {
    if (!navigator.gpu) return { reason: 'navigator.gpu is missing (WebGPU not exposed)' };
    if (state.gpuLost) return { reason: `the WebGPU device of this page was lost (${state.gpuLost}); reload the page` };
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

/** Starts watching the WebGPU device onnxruntime-web created, so a loss is known to the page. */
function watchGpuDevice() {
  const device = state.ort.env.webgpu?.device;
  if (!device || state.gpuWatched === device) return;
  state.gpuWatched = device;
  state.gpuLostSignal = device.lost.then((info) => {
    state.gpuLost = `${info.reason ?? 'unknown'}: ${info.message ?? ''}`.trim();
    throw new PageError('GpuDeviceLost', `the WebGPU device was lost (${state.gpuLost})`);
  });
  state.gpuLostSignal.catch(() => {});
}

async function webgpuAdapterInUse() {
  const adapter = state.ort.env.webgpu?.adapter;
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
    input_names: entry.session.inputNames,
    output_names: entry.session.outputNames,
    load_count: state.loadCount,
    proxy: state.ort.env.wasm.proxy === true,
    wasm_threads: resolvedNumThreads(self.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined'),
  };
  if (entry.webnnDeviceType) value.webnn_device_type = entry.webnnDeviceType;
  if (entry.webnnGraph) value.webnn_graph = entry.webnnGraph;
  if (entry.adapter) value.adapter = entry.adapter;
  return value;
}

/** Collects what is logged to the console (onnxruntime's log among it) until `stop()`. */
function captureOrtLog() {
  const lines = [];
  consoleSink.lines = lines;
  return {
    lines,
    stop() {
      consoleSink.lines = null;
    },
  };
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

async function load(args) {
  const modelId = requireString(args, 'model_id');
  const existing = state.sessions.get(modelId);
  if (existing) return loadValue(existing, true);

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
  const inputs = args.inputs ?? [];
  if (!Array.isArray(inputs)) throw new PageError('TypeError', "'inputs' must be an array");
  if (args.wasm_threads !== undefined && args.wasm_threads !== null) {
    const n = args.wasm_threads;
    if (!Number.isInteger(n) || n < 1) {
      throw new PageError('TypeError', `'wasm_threads' must be a positive integer, got ${JSON.stringify(n)}`);
    }
    // onnxruntime-web reads numThreads once, when its wasm backend starts (the first session).
    const set = state.ort.env.wasm.numThreads;
    if (state.loadCount > 0 && set !== n) {
      throw new PageError('WasmThreadsFixed', `this page's wasm backend already runs ${set ?? 'its default number of'} threads; wasm_threads ${n} needs a fresh page`);
    }
    state.ort.env.wasm.numThreads = n;
  }
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
    const options = { executionProviders: [executionProvider(backend, blocker)], graphOptimizationLevel: 'all' };
    let session;
    let sessionCreateMs;
    let webnnGraph = null;
    try {
      // Queued behind other ORT work; the timer starts when this creation really starts.
      [session, sessionCreateMs, webnnGraph] = await exclusive(async () => {
        // onnxruntime-web says how the WebNN EP partitioned the graph only in its verbose log:
        // listen to it for this creation alone.
        if (backend === 'webnn') options.logSeverityLevel = 1; // info: the partition summary
        const listen = backend === 'webnn' ? captureOrtLog() : null;
        if (!state.ortStarted) {
          // onnxruntime-web starts its wasm once, at the first session creation; only then can
          // it go to a proxy worker. Asked for (`proxy`) and the first session on wasm: inference
          // leaves this thread, so it keeps answering heartbeats while a model runs.
          state.ortStarted = true;
          if (args.proxy === true && backend === 'wasm') state.ort.env.wasm.proxy = true;
        }
        const t0 = performance.now();
        try {
          const s = await state.ort.InferenceSession.create(modelBytes, options);
          return [s, performance.now() - t0, listen ? webnnPartition(listen.lines) : null];
        } finally {
          listen?.stop();
        }
      });
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
    state.loadCount += 1;
    if (backend === 'webgpu') watchGpuDevice();
    const entry = {
      modelId,
      backend,
      session,
      feeds,
      perRun,
      fallbackReasons,
      sessionCreateMs,
      fetchMs,
      modelBytes: modelBytes.byteLength,
      runIndex: 0,
      webnnDeviceType: blocker?.deviceType ?? null,
      webnnGraph,
      adapter: backend === 'webgpu' ? await webgpuAdapterInUse() : null,
    };
    state.sessions.set(modelId, entry);
    return loadValue(entry, false);
  }
  const summary = fallbackReasons.map((r) => `${r.backend}: ${r.reason}`).join('; ');
  throw new PageError('NoBackend', `no backend could load model '${modelId}': ${summary}`, { fallback_reasons: fallbackReasons });
}

// ---------------------------------------------------------------------------------------------
// run

function sessionEntry(args) {
  const modelId = requireString(args, 'model_id');
  const entry = state.sessions.get(modelId);
  if (!entry) {
    throw new PageError('NotLoaded', `model '${modelId}' is not loaded in this page; loaded: [${[...state.sessions.keys()].join(', ')}]`);
  }
  return entry;
}

function evenSample(data) {
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
function wholeStats(data, digest) {
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
function fnv1a(data) {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i += 1) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

function base64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  const chunks = [];
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    chunks.push(String.fromCharCode.apply(null, bytes.subarray(i, i + step)));
  }
  return btoa(chunks.join(''));
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
    if (f?.dtype !== want.dtype || JSON.stringify(f?.dims) !== JSON.stringify(want.dims)) {
      throw new PageError('InputMismatch', `per-run input '${name}' of '${entry.modelId}' must be ${want.dtype}[${want.dims.join(',')}], got ${f?.dtype}[${f?.dims}]`);
    }
    const Typed = DTYPES[want.dtype];
    const count = want.dims.reduce((a, b) => a * b, 1);
    let bytes;
    if (typeof f.url === 'string') {
      // Through the asset server's relay: raw bytes, no base64.
      bytes = new Uint8Array(await fetchBytes(f.url, `per-run input '${name}'`));
    } else {
      const bin = atob(requireString(f, 'data_b64'));
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
    }
    if (bytes.byteLength !== count * Typed.BYTES_PER_ELEMENT) {
      throw new PageError('InputSizeMismatch', `per-run input '${name}': ${bytes.byteLength} bytes, but ${want.dtype}[${want.dims.join(',')}] needs ${count * Typed.BYTES_PER_ELEMENT}`);
    }
    out[name] = new state.ort.Tensor(want.dtype, new Typed(bytes.buffer), want.dims);
  }
  return out;
}

/**
 * Fresh copies of stored input tensors. The proxy worker takes a run's input buffers (they are
 * transferred, and detached here), so a page that runs in it hands each run its own copy.
 */
function copyFeeds(feeds) {
  const out = {};
  for (const [name, t] of Object.entries(feeds)) {
    out[name] = new state.ort.Tensor(t.type, t.data.slice(), t.dims);
  }
  return out;
}

function refuseIfWedged() {
  if (state.wedged) {
    throw new PageError('PageWedged', `onnxruntime-web in this page is stuck: ${state.wedged}; reload the page`);
  }
}

async function run(args) {
  const entry = sessionEntry(args);
  refuseIfWedged();
  const mode = args.outputs ?? 'none';
  if (!['none', 'sample', 'full'].includes(mode)) {
    throw new PageError('TypeError', `'outputs' must be none, sample or full, got ${JSON.stringify(mode)}`);
  }
  if (performance.now() < state.failRunsUntil) {
    // A plain Error, as a model that throws in session.run gives: the page answers ok:false.
    throw new Error(`run of '${entry.modelId}' threw: injected by fail_runs for ${Math.round(state.failRunsUntil - performance.now())} ms more`);
  }
  if (state.slowMs > 0) await sleep(state.slowMs);
  const decodeStart = performance.now();
  const given = await decodeFeeds(entry, args.feeds ?? {});
  const outputTo = args.output_to ?? {};
  if (typeof outputTo !== 'object' || Array.isArray(outputTo)) {
    throw new PageError('TypeError', "'output_to' must be an object of output name -> relay URL");
  }
  const decodeMs = performance.now() - decodeStart;
  const queued = performance.now();
  return exclusive(async () => {
    refuseIfWedged();
    if (state.sessions.get(entry.modelId) !== entry) {
      throw new PageError('NotLoaded', `model '${entry.modelId}' was unloaded while this run waited`);
    }
    const queueMs = performance.now() - queued;
    const runIndex = entry.runIndex;
    const onGpu = entry.backend === 'webgpu';
    if (onGpu && state.gpuLost) {
      // Measured in Chromium 156: session.run on a destroyed device never settles, so refuse
      // up front instead of hanging the page.
      throw new PageError('GpuDeviceLost', `model '${entry.modelId}' runs on a WebGPU device that was lost (${state.gpuLost}); reload the page`);
    }
    let results = null;
    try {
      const t0 = performance.now();
      const host = {};
      const runAndReadBack = async () => {
        const stored = state.ort.env.wasm.proxy === true ? copyFeeds(entry.feeds) : entry.feeds;
        results = await entry.session.run(given ? { ...stored, ...given } : stored);
        // Read-back is part of the measured time: a GPU-located output is not usable until then.
        for (const name of entry.session.outputNames) {
          const t = results[name];
          host[name] = t.location === 'cpu' || t.location === undefined ? t.data : await t.getData();
        }
      };
      // A device lost mid-run would leave session.run pending forever; the lost signal ends it.
      if (onGpu && state.gpuLostSignal) {
        let settled = false;
        const pending = runAndReadBack().finally(() => { settled = true; });
        pending.catch(() => {});
        try {
          await Promise.race([pending, state.gpuLostSignal]);
        } catch (e) {
          if (!settled) {
            state.wedged = `the run of '${entry.modelId}' was abandoned when the WebGPU device was lost (${state.gpuLost})`;
          }
          throw e;
        }
      } else {
        await runAndReadBack();
      }
      const runMs = performance.now() - t0;
      entry.runIndex += 1;
      state.runs += 1;
      if (state.corruptRuns > 0) {
        // The injected wrong answer: one value of the first output, changed in its last bit,
        // before anything is digested (what a miscompiled kernel or a bit flip would give).
        state.corruptRuns -= 1;
        const first = host[entry.session.outputNames[0]];
        const bits = new Uint8Array(first.buffer, first.byteOffset, first.byteLength);
        if (bits.length > 0) bits[0] ^= 1;
      }
      // Every answer carries a digest of every output, so the harness can compare it with the
      // first verified answer of the same model, browser and backend.
      const digests = {};
      for (const name of entry.session.outputNames) digests[name] = fnv1a(host[name]);
      const outputs = {};
      if (mode !== 'none') {
        for (const name of entry.session.outputNames) {
          const out = {
            dims: results[name].dims,
            dtype: results[name].type,
            sample: evenSample(host[name]),
            stats: wholeStats(host[name], digests[name]),
          };
          if (typeof outputTo[name] === 'string') {
            // Through the asset server's relay: the raw bytes, PUT; the reply carries only
            // the stats (their digest lets the reader check what it got).
            const data = host[name];
            const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
            let response;
            try {
              response = await fetch(outputTo[name], { method: 'PUT', body, cache: 'no-store' });
            } catch (e) {
              throw new PageError('FetchError', `putting output '${name}' to ${outputTo[name]} failed: ${describe(e)}`);
            }
            if (!response.ok) {
              throw new PageError('FetchError', `putting output '${name}' to ${outputTo[name]} failed: HTTP ${response.status}`);
            }
            out.relayed = true;
          } else if (mode === 'full') {
            out.data_b64 = base64(host[name]);
          }
          outputs[name] = out;
        }
      }
      const encodeMs = performance.now() - t0 - runMs;
      return {
        model_id: entry.modelId, backend: entry.backend, run_index: runIndex, run_ms: runMs, queue_ms: queueMs, slow_ms: state.slowMs, outputs, digests,
        feed_decode_ms: decodeMs,
        output_encode_ms: encodeMs,
        // Wall-clock instants (performance.timeOrigin + now) of the run's start and end, for
        // the time between one shard's end and the next shard's start across browsers.
        run_start_epoch_ms: performance.timeOrigin + t0,
        run_end_epoch_ms: performance.timeOrigin + t0 + runMs,
      };
    } catch (e) {
      if (e instanceof PageError) throw e;
      if (entry.backend === 'webgpu' && state.gpuLost) {
        throw new PageError('GpuDeviceLost', `run of '${entry.modelId}' failed after the WebGPU device was lost (${state.gpuLost}): ${describe(e)}`);
      }
      throw e;
    } finally {
      if (results) {
        for (const t of Object.values(results)) {
          try { t.dispose(); } catch { /* a tensor of a lost device may refuse; nothing to free */ }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// unload, stats

async function unload(args) {
  const modelId = requireString(args, 'model_id');
  const entry = state.sessions.get(modelId);
  if (!entry) return { released: false };
  state.sessions.delete(modelId);
  await exclusive(() => entry.session.release());
  return { released: true };
}

async function stats() {
  return {
    load_count: state.loadCount,
    loaded: [...state.sessions.keys()],
    runs: state.runs,
    slow_ms: state.slowMs,
    gpu_device_lost: state.gpuLost,
    wedged: state.wedged,
    proxy: state.ort.env.wasm.proxy === true,
    beats_sent: state.beat.sent,
    beats_failed: state.beat.failed,
  };
}

// ---------------------------------------------------------------------------------------------
// fault hooks

function nonNegativeMs(args) {
  const ms = args.ms;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new PageError('TypeError', `'ms' must be a non-negative number, got ${JSON.stringify(ms)}`);
  }
  return ms;
}

function spin(ms) {
  const start = performance.now();
  // A real busy loop: the main thread is blocked, so the page stops answering its driver.
  while (performance.now() - start < ms) { /* spin */ }
  return performance.now() - start;
}

async function hang(args) {
  const ms = nonNegativeMs(args);
  // `defer: true` answers first and blocks right after, so the injector is not the one stuck.
  if (args.defer === true) {
    // 100 ms: long enough for the answer to leave the page (Firefox sends it from this same
    // main thread), short against any hang worth injecting.
    setTimeout(() => spin(ms), 100);
    return { hang_scheduled_ms: ms };
  }
  return { hung_ms: spin(ms) };
}

async function slow(args) {
  state.slowMs = nonNegativeMs(args);
  return { slow_ms: state.slowMs };
}

/** For `ms` from now every `run` throws an Error before it reaches onnxruntime-web (0 clears). */
async function failRuns(args) {
  const ms = nonNegativeMs(args);
  state.failRunsUntil = performance.now() + ms;
  return { fail_runs_ms: ms };
}

/** The next `runs` runs (default 1) answer with one value of their first output changed. */
async function corruptAnswer(args) {
  const runs = args.runs ?? 1;
  if (!Number.isInteger(runs) || runs < 0) {
    throw new PageError('TypeError', `'runs' must be a non-negative integer, got ${JSON.stringify(runs)}`);
  }
  state.corruptRuns = runs;
  return { corrupt_runs: runs };
}

/**
 * Starts (or restarts) this page's heartbeat: every `interval_ms` (default 250) the main thread
 * POSTs to `url`. A busy main thread (a hang) or a dead renderer stops the beats, so the harness
 * sees it without a call of its own, even while a run is in flight: inference runs in
 * onnxruntime-web's proxy worker where the page can (see `load`), not on this thread.
 */
async function startBeat(args) {
  const url = requireString(args, 'url');
  const ms = args.interval_ms ?? 250;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 10) {
    throw new PageError('TypeError', `'interval_ms' must be a number >= 10, got ${JSON.stringify(ms)}`);
  }
  const beat = state.beat;
  if (beat.timer !== null) clearInterval(beat.timer);
  beat.url = url;
  beat.intervalMs = ms;
  const send = () => {
    fetch(url, { method: 'POST', cache: 'no-store' }).then(
      (r) => { if (r.ok) beat.sent += 1; else beat.failed += 1; },
      () => { beat.failed += 1; },
    );
  };
  send();
  beat.timer = setInterval(send, ms);
  return { interval_ms: ms, proxy: state.ort.env.wasm.proxy === true };
}

async function destroyGpuDevice() {
  const device = state.ort.env.webgpu?.device;
  if (!device || typeof device.destroy !== 'function') {
    throw new PageError('NoGpuDevice', 'onnxruntime-web has no WebGPU device in this page (ort.env.webgpu.device is unset until a model is loaded on the webgpu backend)');
  }
  watchGpuDevice();
  device.destroy();
  const info = await withTimeout(device.lost, 2000);
  if (info) state.gpuLost = `${info.reason ?? 'unknown'}: ${info.message ?? ''}`.trim();
  return {
    destroyed: true,
    lost: info ? { reason: info.reason ?? null, message: info.message ?? '' } : null,
    webgpu_sessions: [...state.sessions.values()].filter((e) => e.backend === 'webgpu').map((e) => e.modelId),
  };
}
