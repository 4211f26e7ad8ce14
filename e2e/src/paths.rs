//! Where the environment keeps what outlives a run: built Kubernetes binaries and Python
//! virtualenvs, outside the repository so a fresh clone reuses them.

use std::path::PathBuf;

/// `$TENANTRY_CACHE_DIR`, else `$XDG_CACHE_HOME/tenantry`, else `$HOME/.cache/tenantry`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TENANTRY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tenantry")
}
