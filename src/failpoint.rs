//! Crash injection for the resume tests: `ABACUS_FAILPOINT=name:n` makes the process abort (as hard
//! as a SIGKILL: no destructors, no flushing) the n-th time the code passes the named point. Unset,
//! the check is one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let v = std::env::var("ABACUS_FAILPOINT").ok()?;
        let (name, n) = v.rsplit_once(':').unwrap_or((v.as_str(), "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Aborts here if this is the configured failpoint's n-th hit.
#[inline]
pub fn hit(name: &str) {
    if let Some((t, n)) = target()
        && t == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
