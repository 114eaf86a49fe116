// The page's heartbeat, sent from its main thread. Owns the beat timer and its counters;
// `stats` reads them through `beatCounts`.

import { PageError, requireString } from './envelope.js';
import { proxyOn } from './ort.js';

/** The heartbeat this page sends from its main thread (`startBeat`). */
const beat = { timer: null, url: null, intervalMs: 0, sent: 0, failed: 0 };

/**
 * Starts (or restarts) this page's heartbeat: every `interval_ms` (default 250) the main thread
 * POSTs to `url`. A busy main thread (a hang) or a dead renderer stops the beats, so the harness
 * sees it without a call of its own, even while a run is in flight: inference runs in
 * onnxruntime-web's proxy worker where the page can (see `load`), not on this thread.
 */
export async function startBeat(args) {
  const url = requireString(args, 'url');
  const ms = args.interval_ms ?? 250;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 10) {
    throw new PageError('TypeError', `'interval_ms' must be a number >= 10, got ${JSON.stringify(ms)}`);
  }
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
  return { interval_ms: ms, proxy: proxyOn() };
}

/** Beats POSTed with an ok answer, and those that failed or got another status. */
export function beatCounts() {
  return { sent: beat.sent, failed: beat.failed };
}
