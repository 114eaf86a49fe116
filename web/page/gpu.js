// The WebGPU device onnxruntime-web created in this page, watched so that its loss is known:
// `load` then skips webgpu, `run` refuses (or abandons) a run on it, `stats` reports it, and the
// `destroy_gpu_device` fault hook records it. Owns the lost state; nothing else writes it.

import { PageError } from './envelope.js';
import { ort } from './ort.js';

/** `reason: message` once the WebGPU device onnxruntime-web uses reports `lost`. */
let lost = null;
let watched = null;
/** Rejects with a GpuDeviceLost PageError when the watched device is lost; never resolves. */
let lostSignal = null;

/** The device onnxruntime-web uses (set by the jsep build at the first WebGPU session). */
export function gpuDevice() {
  return ort().env.webgpu?.device;
}

/** Starts watching the WebGPU device onnxruntime-web created, so a loss is known to the page. */
export function watchGpuDevice() {
  const device = gpuDevice();
  if (!device || watched === device) return;
  watched = device;
  lostSignal = device.lost.then((info) => {
    noteGpuLost(info);
    throw new PageError('GpuDeviceLost', `the WebGPU device was lost (${lost})`);
  });
  lostSignal.catch(() => {});
}

/** Records a `GPUDeviceLostInfo`. */
export function noteGpuLost(info) {
  lost = `${info.reason ?? 'unknown'}: ${info.message ?? ''}`.trim();
}

/** `reason: message` of the lost device, or null while it is fine. */
export function gpuLost() {
  return lost;
}

/** The watched device's lost signal (see `lostSignal`), or null before any WebGPU session. */
export function gpuLostSignal() {
  return lostSignal;
}
