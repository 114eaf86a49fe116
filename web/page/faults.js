// The fault hooks: real faults the injector asks the page for (hang, slow, fail_runs,
// corrupt_answer, destroy_gpu_device). Owns the armed faults; the run path asks them through
// `beforeRun` and `afterRun` and never holds fault code of its own.

import { PageError } from './envelope.js';
import { gpuDevice, noteGpuLost, watchGpuDevice } from './gpu.js';
import { webgpuSessionIds } from './sessions.js';

let slowMs = 0;
/** `performance.now()` until which every `run` throws (the `fail_runs` fault hook). */
let failRunsUntil = 0;
/** Runs whose first output gets one value changed before it is digested (`corrupt_answer`). */
let corruptRuns = 0;

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

/**
 * Before a run touches its inputs: throws while `fail_runs` is armed; else a promise of the
 * `slow` delay, or null when there is none (so an unslowed run does not wait a tick).
 */
export function beforeRun(modelId) {
  if (performance.now() < failRunsUntil) {
    // A plain Error, as a model that throws in session.run gives: the page answers ok:false.
    throw new Error(`run of '${modelId}' threw: injected by fail_runs for ${Math.round(failRunsUntil - performance.now())} ms more`);
  }
  return slowMs > 0 ? sleep(slowMs) : null;
}

/** After a successful run, before anything is digested: `outputs` are its values in output order. */
export function afterRun(outputs) {
  if (corruptRuns > 0) {
    // The injected wrong answer: the first value of the first output, off by 1 before anything
    // is digested (what a miscompiled kernel gives): a digest differs from the verified one,
    // and a placement's first answer is far outside the tolerance against native.
    corruptRuns -= 1;
    const first = outputs[0];
    if (first.length > 0) first[0] += 1;
  }
}

/** The `slow` delay every run now waits, ms. */
export function slowDelayMs() {
  return slowMs;
}

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

export async function hang(args) {
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

export async function slow(args) {
  slowMs = nonNegativeMs(args);
  return { slow_ms: slowMs };
}

/** For `ms` from now every `run` throws an Error before it reaches onnxruntime-web (0 clears). */
export async function failRuns(args) {
  const ms = nonNegativeMs(args);
  failRunsUntil = performance.now() + ms;
  return { fail_runs_ms: ms };
}

/** The next `runs` runs (default 1) answer with one value of their first output changed. */
export async function corruptAnswer(args) {
  const runs = args.runs ?? 1;
  if (!Number.isInteger(runs) || runs < 0) {
    throw new PageError('TypeError', `'runs' must be a non-negative integer, got ${JSON.stringify(runs)}`);
  }
  corruptRuns = runs;
  return { corrupt_runs: runs };
}

export async function destroyGpuDevice() {
  const device = gpuDevice();
  if (!device || typeof device.destroy !== 'function') {
    throw new PageError('NoGpuDevice', 'onnxruntime-web has no WebGPU device in this page (ort.env.webgpu.device is unset until a model is loaded on the webgpu backend)');
  }
  watchGpuDevice();
  device.destroy();
  const info = await withTimeout(device.lost, 2000);
  if (info) noteGpuLost(info);
  return {
    destroyed: true,
    lost: info ? { reason: info.reason ?? null, message: info.message ?? '' } : null,
    webgpu_sessions: webgpuSessionIds(),
  };
}
