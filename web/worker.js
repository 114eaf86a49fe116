// The webgpu-pool worker page, API version 1 (contract: docs/page-api.md).
//
// Installs `window.webgpuPool = { ready, init_error, api_version, call(method, argsJson) }`.
// `call` always resolves to a JSON string, `{"ok":true,"value":...}` or
// `{"ok":false,"error":{name,message,stage}}`; no exception escapes it, so the CDP and the
// WebDriver drivers see the same thing.
//
// This file is the entry: it builds the method table from the modules under `page/`, each of
// which owns one slice of the page's state, and installs the API. Plain ES modules served as
// they are (no bundler); every import is relative, so the run token in the path is carried along.
//
//   page/envelope.js      the `call` envelope, PageError, argument checks
//   page/ort.js           onnxruntime-web: import, console forwarder, the one runtime's queue
//   page/gpu.js           the WebGPU device onnxruntime-web uses, and its loss
//   page/capabilities.js  WebGPU / WebNN / wasm detection
//   page/load.js          fetch, backend choice, session creation
//   page/sessions.js      the loaded sessions and the load count; unload
//   page/run.js           feeds, session.run, outputs; the run count
//   page/digest.js        sample, whole-output stats, FNV-1a, base64
//   page/faults.js        hang, slow, fail_runs, corrupt_answer, destroy_gpu_device
//   page/beat.js          the main-thread heartbeat
//   page/webnn.js         the WebNN witness: graphs built and dispatched, from the API itself

import { API_VERSION, dispatcher } from './page/envelope.js';
import { ortImported, proxyOn, wedgedReason } from './page/ort.js';
import { gpuLost } from './page/gpu.js';
import { capabilities } from './page/capabilities.js';
import { load } from './page/load.js';
import { loadCount, loadedIds, unload } from './page/sessions.js';
import { run, runCount, runsByPurpose } from './page/run.js';
import {
  corruptAnswer, destroyGpuDevice, failRuns, hang, slow, slowDelayMs,
} from './page/faults.js';
import { beatCounts, startBeat } from './page/beat.js';

/** What every part of the page counts, in one answer. */
async function stats() {
  const beats = beatCounts();
  return {
    load_count: loadCount(),
    loaded: loadedIds(),
    runs: runCount(),
    runs_for: runsByPurpose(),
    slow_ms: slowDelayMs(),
    gpu_device_lost: gpuLost(),
    wedged: wedgedReason(),
    proxy: proxyOn(),
    beats_sent: beats.sent,
    beats_failed: beats.failed,
  };
}

// The order is the one `UnknownMethod` lists.
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

const api = {
  ready: false,
  init_error: null,
  api_version: API_VERSION,
  call: dispatcher(METHODS, ortImported),
};
window.webgpuPool = api;

ortImported.then(
  () => { api.ready = true; },
  (e) => { api.init_error = e.message; },
);
