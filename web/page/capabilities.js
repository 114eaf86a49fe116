// What this browser offers, detected for real: the WebGPU adapter and its info, WebNN contexts
// per device type, wasm SIMD and threads. The `capabilities` method, and the probes `load` uses
// to decide whether a backend can be tried. Owns no state.

import { API_VERSION, describe } from './envelope.js';
import { ORT_BUNDLE, ort, proxyOn } from './ort.js';

export const WEBNN_DEVICE_TYPES = ['cpu', 'gpu', 'npu'];
// Names of software adapters that count as fallback even where a browser leaves the
// isFallbackAdapter flag false or missing. Measured here: Chromium 156 reports SwiftShader with
// the flag true and architecture "swiftshader"; Firefox ESR 153 reports lavapipe with the flag
// true and empty vendor/architecture strings, so the flag and the names are both needed.
const SOFTWARE_ADAPTER = /swiftshader|lavapipe|llvmpipe|softpipe|microsoft basic render|\bwarp\b/;

export async function capabilities(args) {
  const probeWebnn = args.webnn !== false;
  return {
    api_version: API_VERSION,
    user_agent: navigator.userAgent,
    ort_version: ort().env.versions?.web ?? ort().env.versions?.common ?? null,
    ort_bundle: ORT_BUNDLE,
    cross_origin_isolated: self.crossOriginIsolated === true,
    hardware_concurrency: navigator.hardwareConcurrency ?? null,
    webgpu: await webgpuCapabilities(),
    webnn: probeWebnn ? await webnnCapabilities() : { available: false, probed: false, reason: 'not probed (args.webnn is false)', devices: {} },
    wasm: wasmCapabilities(),
  };
}

/** Adapter info as the page reports it, with the fallback verdict. */
export async function describeAdapter(adapter) {
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
export function fallbackWhy(adapter) {
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

export async function webnnContext(deviceType) {
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
  const threads = wasmThreadsPossible();
  return { simd, threads, num_threads: resolvedNumThreads(threads), proxy: proxyOn() };
}

/** Whether wasm threads can run here: cross-origin isolated, with SharedArrayBuffer. */
export function wasmThreadsPossible() {
  return self.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
}

/** `ort.env.wasm.numThreads` once set; before the first session, the value ORT will pick. */
export function resolvedNumThreads(threads) {
  const set = ort().env.wasm.numThreads;
  if (Number.isInteger(set) && set > 0) return threads ? set : 1;
  if (!threads) return 1;
  // The same rule onnxruntime-web 1.30 applies when it initialises the wasm backend.
  return Math.min(4, Math.ceil((navigator.hardwareConcurrency || 1) / 2));
}
