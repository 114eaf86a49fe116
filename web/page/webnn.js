// The WebNN witness: counts, from the WebNN API itself, the graphs the page built and the graph
// executions it dispatched. onnxruntime-web's WebNN EP builds one `MLGraph` per partition it
// takes at session creation and dispatches each of them on every run; nodes it does not take
// run on its CPU (wasm) EP without touching WebNN. So a webnn session that built no graph, or a
// run that dispatched none, did its work on wasm whatever its label says. This module wraps the
// prototypes once, when it is imported (before any session exists); it owns the two counters.

const counts = { built: 0, dispatched: 0 };

function wrap(proto, name, counter) {
  const original = proto?.[name];
  if (typeof original !== 'function') return false;
  proto[name] = function counted(...args) {
    counts[counter] += 1;
    return original.apply(this, args);
  };
  return true;
}

/** Whether the witness is in place: this browser has WebNN and its methods were wrapped. */
export const webnnWatched = wrap(globalThis.MLGraphBuilder?.prototype, 'build', 'built') &&
  // `dispatch` (MLTensor) is what the EP uses now; `compute` is the older entry point.
  [wrap(globalThis.MLContext?.prototype, 'dispatch', 'dispatched'),
    wrap(globalThis.MLContext?.prototype, 'compute', 'dispatched')].some(Boolean);

/** `MLGraphBuilder.build` calls so far. */
export function graphsBuilt() {
  return counts.built;
}

/** `MLContext.dispatch`/`compute` calls so far. */
export function graphsDispatched() {
  return counts.dispatched;
}
