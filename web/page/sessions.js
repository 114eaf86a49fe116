// The sessions loaded in this page (model_id -> entry, made by `load`) and how many were ever
// created. `load` adds, `unload` removes; `run`, `stats` and the fault hooks ask.

import { PageError, requireString } from './envelope.js';
import { exclusive } from './ort.js';

/** model_id -> entry (see `load`). */
const sessions = new Map();
let created = 0;

/** The entry of `modelId`, or undefined. */
export function findSession(modelId) {
  return sessions.get(modelId);
}

/** Counts one more session created in this page (`load_count`). */
export function countLoad() {
  created += 1;
}

/** Sessions created in this page so far. */
export function loadCount() {
  return created;
}

export function addSession(entry) {
  sessions.set(entry.modelId, entry);
}

export async function unload(args) {
  const modelId = requireString(args, 'model_id');
  const entry = sessions.get(modelId);
  if (!entry) return { released: false };
  sessions.delete(modelId);
  await exclusive(() => entry.session.release());
  return { released: true };
}

/** The loaded entry `args.model_id` names; `NotLoaded` when there is none. */
export function sessionEntry(args) {
  const modelId = requireString(args, 'model_id');
  const entry = sessions.get(modelId);
  if (!entry) {
    throw new PageError('NotLoaded', `model '${modelId}' is not loaded in this page; loaded: [${[...sessions.keys()].join(', ')}]`);
  }
  return entry;
}

/** Whether `entry` is still the loaded session of its model (not unloaded meanwhile). */
export function stillLoaded(entry) {
  return sessions.get(entry.modelId) === entry;
}

export function loadedIds() {
  return [...sessions.keys()];
}

export function webgpuSessionIds() {
  return [...sessions.values()].filter((e) => e.backend === 'webgpu').map((e) => e.modelId);
}
