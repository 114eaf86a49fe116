// The page API's envelope, version 1 (contract: docs/page-api.md).
//
// `call(method, argsJson)` always resolves to a JSON string, `{"ok":true,"value":...}` or
// `{"ok":false,"error":{name,message,stage}}`; no exception escapes it, so the CDP and the
// WebDriver drivers see the same thing. Also the page's own error type and the argument checks
// every method shares. Owns no state; imports no other page module (every module imports it).

export const API_VERSION = 1;

/** An error with a chosen name; `call` turns it into `{ok:false, error}`. */
export class PageError extends Error {
  constructor(name, message, extra) {
    super(message);
    this.name = name;
    if (extra) this.extra = extra;
  }
}

/**
 * The single entry point over `methods` (name -> async handler). Every method but `echo` waits
 * for `ortImported` first. The returned `call` never throws, never rejects: it resolves to a
 * JSON string.
 */
export function dispatcher(methods, ortImported) {
  /**
   * @param {string} method
   * @param {string} argsJson
   */
  return async function call(method, argsJson) {
    let stage = 'args';
    try {
      let args = {};
      if (argsJson !== undefined && argsJson !== null && argsJson !== '') {
        if (typeof argsJson !== 'string') {
          throw new PageError('TypeError', `argsJson must be a JSON string, got ${typeof argsJson}`);
        }
        args = JSON.parse(argsJson);
      }
      const handler = Object.hasOwn(methods, method) ? methods[method] : undefined;
      if (!handler) {
        throw new PageError('UnknownMethod', `unknown method '${method}'; known: ${Object.keys(methods).join(', ')}`);
      }
      if (method !== 'echo') {
        // Every method but echo needs onnxruntime-web; an import failure is reported as stage init.
        stage = 'init';
        await ortImported;
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
  };
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
export function describe(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e)) {
    return `${e.name || 'Error'}: ${e.message}`;
  }
  return String(e);
}

export function requireString(args, key) {
  const v = args[key];
  if (typeof v !== 'string' || v === '') {
    throw new PageError('TypeError', `'${key}' must be a non-empty string, got ${JSON.stringify(v)}`);
  }
  return v;
}
