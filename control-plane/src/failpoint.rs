//! Crash-test hooks: `TENANTRY_FAILPOINT=<name>` makes the process abort at the named point, so
//! tests can kill it exactly where a crash would hurt (after a commit, before its effect). The
//! crash tests in `tests/` set it for a child process; nothing else should.

use std::sync::OnceLock;

pub const VAR: &str = "TENANTRY_FAILPOINT";
/// The provisioning worker, after claiming jobs and before carrying any out.
pub const AFTER_CLAIM: &str = "after-claim";
/// A signup, after its commit and before it answers or updates the cache.
pub const AFTER_SIGNUP_COMMIT: &str = "after-signup-commit";

/// Aborts the process when the armed failpoint is `name`.
pub fn hit(name: &str, what: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var(VAR).ok()).as_deref() == Some(name) {
        tracing::error!("failpoint {name}: aborting {what}");
        std::process::abort();
    }
}
