//! Validation of `pool.standbys` and `pool.standby_memory_mib`: hot standbys exist only in a
//! routed pool that recovers, and a budget of 0 MiB would refuse every copy.

use super::types::{RecoveryStrategy, Scenario};
use super::validate::{push, Issue};

/// Pushes an issue for standbys asked for where nothing would promote them: outside a routed
/// pool (`not_routed` says why) or with `recovery.strategy: none`; for more copies than
/// `max_connections` has workers for; and for a zero budget.
pub(super) fn standbys(out: &mut Vec<Issue>, s: &Scenario, not_routed: Option<&str>) {
    let p = &s.pool;
    if let Some(n) = p.standbys.filter(|n| *n > 0) {
        if n >= p.max_connections {
            push(
                out,
                "pool.standbys",
                format!(
                    "'{n}' copies need {} workers (one serving, one per copy), but \
                     max_connections is {}",
                    n + 1,
                    p.max_connections
                ),
            );
        }
        if let Some(why) = not_routed {
            push(out, "pool.standbys", format!("'{n}' is not used: {why}"));
        }
        if s.recovery.strategy == RecoveryStrategy::None {
            push(
                out,
                "pool.standbys",
                format!(
                    "'{n}' is not used: standbys are promoted by recovery, and recovery.strategy \
                     is none; set a strategy or standbys: 0"
                ),
            );
        }
    }
    if p.standby_memory_mib == Some(0) {
        push(
            out,
            "pool.standby_memory_mib",
            "'0' leaves no memory for any standby; say standbys: 0 to turn them off",
        );
    }
}
