//! Writes a scenario back as YAML (`--print-scenario`).
//!
//! Input: a [`Scenario`]. Output: block-style YAML that `load_str` reads back to the same value.
//! Goes through `serde_json::Value` (durations are already strings there) and orders keys as the
//! format documents them rather than alphabetically.

use serde_json::Value;

use super::de::reads_as_string;
use super::types::Scenario;

/// Keys in documented order, per parent key (`""` is the top level; list items use the list's
/// key). Keys not listed follow alphabetically.
const ORDER: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "name",
            "description",
            "seed",
            "pool",
            "backends",
            "allow_fallback_adapter",
            "wasm_threads",
            "models",
            "workload",
            "faults",
            "recovery",
            "sharding",
            "generation",
            "state",
            "thresholds",
        ],
    ),
    ("generation", &["model", "prompts", "max_new_tokens"]),
    (
        "pool",
        &[
            "min_connections",
            "max_connections",
            "browsers",
            "driver",
            "preferences",
            "idle_timeout",
            "heartbeat_interval",
            "heartbeat_timeout",
            "hang_after",
            "launch_timeout",
            "placement",
            "routing_profile",
            "adaptive",
            "grid",
            "serve_addr",
            "tls",
            "standbys",
            "standby_memory_mib",
        ],
    ),
    (
        "preferences",
        &["audio", "vision", "text_embedding", "text_generation"],
    ),
    ("models", &["name", "browser", "weight"]),
    (
        "workload",
        &[
            "mode",
            "concurrency",
            "rate",
            "duration",
            "iterations",
            "warmup",
            "request_timeout",
            "run_timeout",
            "load_timeout",
            "cooldown",
        ],
    ),
    (
        "faults",
        &[
            "kind", "at", "every", "rate", "count", "seed", "target", "duration", "delay", "kinds",
        ],
    ),
    ("recovery", &["strategy", "timeout", "max_attempts"]),
    (
        "sharding",
        &[
            "model",
            "shards",
            "strategy",
            "recovery",
            "memory_budget_mib",
        ],
    ),
    (
        "thresholds",
        &[
            "lost_requests",
            "error_rate",
            "recovery_failures",
            "p95_ms",
            "p99_ms",
        ],
    ),
];

fn sorted_keys<'a>(map: &'a serde_json::Map<String, Value>, ctx: &str) -> Vec<&'a String> {
    let order = ORDER
        .iter()
        .find(|(c, _)| *c == ctx)
        .map_or(&[][..], |(_, keys)| keys);
    let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
    let mut keys: Vec<&String> = map.keys().filter(|k| !map[k.as_str()].is_null()).collect();
    keys.sort_by_key(|k| (rank(k), k.as_str()));
    keys
}

/// Renders `s` as YAML.
pub(crate) fn to_yaml(s: &Scenario) -> String {
    let value = match serde_json::to_value(s) {
        Ok(v) => v,
        // Serialising plain data with string keys cannot fail; keep a readable fallback anyway.
        Err(e) => return format!("# could not render the scenario: {e}\n"),
    };
    let mut out = String::new();
    block(&value, 0, "", &mut out);
    out
}

/// A value in flow style: `[a, b]`, `{k: v}`, a scalar.
fn flow(v: &Value, ctx: &str) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| flow(i, ctx)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = sorted_keys(map, ctx)
                .into_iter()
                .map(|k| format!("{}: {}", string(k), flow(&map[k.as_str()], k)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A plain scalar when it reads back as the same string, else a double-quoted one.
fn string(s: &str) -> String {
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '#' | ' '))
        && !s.starts_with(['-', '#', ' ', '.'])
        && !s.ends_with(' ')
        && !s.contains(" #")
        && reads_as_string(s);
    if safe {
        s.to_owned()
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// True for scalars, empty containers, and containers of scalars only.
fn is_flat(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|i| !i.is_array() && !i.is_object()),
        Value::Object(map) => map.values().all(|i| !i.is_array() && !i.is_object()),
        _ => true,
    }
}

/// Short values (scalars, flat lists, flat mappings below the top level) go on one line.
fn inline(v: &Value, indent: usize) -> bool {
    match v {
        Value::Object(map) => map.is_empty() || (indent > 0 && is_flat(v)),
        Value::Array(items) => items.is_empty() || is_flat(v),
        _ => true,
    }
}

/// A mapping in block style at `indent`; `ctx` is its parent key (orders the keys).
fn block(v: &Value, indent: usize, ctx: &str, out: &mut String) {
    let Value::Object(map) = v else {
        out.push_str(&format!("{}{}\n", " ".repeat(indent), flow(v, ctx)));
        return;
    };
    let pad = " ".repeat(indent);
    for k in sorted_keys(map, ctx) {
        let child = &map[k.as_str()];
        out.push_str(&format!("{pad}{}:", string(k)));
        if inline(child, indent) {
            out.push_str(&format!(" {}\n", flow(child, k)));
        } else if let Value::Array(items) = child {
            out.push('\n');
            for item in items {
                list_item(item, indent + 2, k, out);
            }
        } else {
            out.push('\n');
            block(child, indent + 2, k, out);
        }
    }
}

/// One `- item` of a block list at `indent`; mappings continue on the lines below.
fn list_item(item: &Value, indent: usize, ctx: &str, out: &mut String) {
    let pad = " ".repeat(indent);
    if inline(item, indent + 2) || !item.is_object() {
        out.push_str(&format!("{pad}- {}\n", flow(item, ctx)));
        return;
    }
    let mut body = String::new();
    block(item, indent + 2, ctx, &mut body);
    // Put the first key on the dash line: "  - kind: hang".
    out.push_str(&pad);
    out.push_str("- ");
    out.push_str(body.get(indent + 2..).unwrap_or(&body));
}
