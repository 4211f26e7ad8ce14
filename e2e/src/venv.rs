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

/// A virtualenv of pinned PyPI requirements, cached as `<cache>/<name>/venv` (a symlink to the
/// finished `venv-<stamp>` directory). Built under a file lock, checked, then published with
/// [`publish`], so parallel test processes wait for one install and never see half of one.
pub(crate) struct PinnedVenv<'a> {
    /// Cache folder and lock name, e.g. `schemathesis-4.32.5`.
    pub name: &'a str,
    /// `pip install` arguments, each pinned (`package==version`).
    pub requirements: &'a [&'a str],
}

/// Written last into a finished virtualenv: the interpreter and the requirements it was built
/// from. A virtualenv without it, or with another text, is never used.
const PINNED_MARKER: &str = ".tenantry-requirements";

impl PinnedVenv<'_> {
    /// The resolved virtualenv directory, installing it first when it is missing or
    /// unfinished; `check` runs on a new install before it is published.
    pub(crate) fn ensure(&self, check: impl Fn(&Path) -> Result<()>) -> Result<std::path::PathBuf> {
        use crate::install::{CacheLock, ensure_debian_packages};
        let root = crate::paths::cache_dir().join(self.name);
        let link = root.join("venv");
        let python = base_python();
        let marker = format!("# python: {}\n{}\n", python.display(), self.requirements.join("\n"));
        let complete = || {
            fs::read_to_string(link.join(PINNED_MARKER)).is_ok_and(|text| text == marker)
                && link.join("bin/python").exists()
        };
        if !complete() {
            let _lock = CacheLock::acquire(self.name)?;
            // Another process may have finished the install while this one waited for the lock.
            if !complete() {
                ensure_debian_packages(&["python3-venv"])?;
                self.install(&root, &link, &python, &marker, check)?;
            }
        }
        fs::canonicalize(&link).context(|| format!("resolving {}", link.display()))
    }

    fn install(
        &self,
        root: &Path,
        link: &Path,
        python: &Path,
        marker: &str,
        check: impl Fn(&Path) -> Result<()>,
    ) -> Result<()> {
        use crate::process::{Spec, run};
        use std::time::{SystemTime, UNIX_EPOCH};
        fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
        remove_unused_venvs(root, link);
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let name = format!("venv-{stamp}-{}", std::process::id());
        let venv = root.join(&name);
        tracing::info!(venv = %venv.display(), requirements = ?self.requirements, "installing a virtualenv");
        let result = (|| {
            run(&Spec::new("python3 -m venv", python).args(["-m", "venv", &venv.display().to_string()]))?;
            run(&Spec::new("pip", venv.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet", "--no-input"])
                .args(self.requirements.iter().copied())
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"))?;
            check(&venv)?;
            fs::write(venv.join(PINNED_MARKER), marker)
                .context(|| format!("writing {}", venv.join(PINNED_MARKER).display()))?;
            publish(root, link, &name)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&venv);
        }
        result
    }
}

/// Debian's interpreter when present, so the venv matches what a fresh Debian machine builds
/// (a pyenv `python3` may come first on `PATH`).
fn base_python() -> std::path::PathBuf {
    let debian = std::path::PathBuf::from("/usr/bin/python3");
    if debian.exists() { debian } else { crate::install::which("python3").unwrap_or(debian) }
}
