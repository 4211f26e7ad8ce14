//! Publishing cached virtualenvs (Tryton, helm-python-sdk): each install builds a fresh
//! `venv-<id>` directory, then a symlink is switched to it in one `rename`, so a test process
//! sees the old venv or the new one, never half of one.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Points `link` at `root/<name>` in one `rename`.
pub(crate) fn publish(root: &Path, link: &Path, name: &str) -> Result<()> {
    // A real directory there (not made by this code) cannot be replaced by a rename.
    if fs::symlink_metadata(link).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(link).context(|| format!("removing {}", link.display()))?;
    }
    let temporary = root.join(format!(".venv-link-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(name, &temporary).context(|| format!("creating {}", temporary.display()))?;
    fs::rename(&temporary, link).context(|| format!("publishing {}", link.display()))
}

/// Removes the `venv-*` directories left by failed or superseded installs, except the one
/// `link` points to (a test process may still be running from it).
pub(crate) fn remove_unused_venvs(root: &Path, link: &Path) {
    let current = fs::read_link(link).ok();
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_venv = name.to_str().is_some_and(|n| n.starts_with("venv-"));
        if is_venv && current.as_deref() != Some(Path::new(&name)) {
            tracing::debug!(path = %entry.path().display(), "removing an unused venv");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
