//! Schemathesis (from PyPI) in a cached virtualenv: the property-based API fuzzer that checks
//! the control plane against its own OpenAPI document (`control-plane/tests/openapi_conformance.rs`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::process::{Spec, run};
use crate::venv::PinnedVenv;

/// The pinned release: a newer one may generate other cases or check more, which is a change
/// to make on purpose.
pub const REQUIREMENT: &str = "schemathesis==4.32.5";
const VERSION: &str = "4.32.5";
const CACHE_NAME: &str = "schemathesis-4.32.5";

/// The `schemathesis` command of the cached virtualenv.
#[derive(Debug, Clone)]
pub struct Schemathesis {
    venv: PathBuf,
}

impl Schemathesis {
    /// The virtualenv, installing it first when it is missing (about 30 s; instant once cached).
    pub fn ensure() -> Result<Self> {
        let venv = PinnedVenv { name: CACHE_NAME, requirements: &[REQUIREMENT] }.ensure(check_version)?;
        Ok(Self { venv })
    }

    /// [`Schemathesis::ensure`] off the async runtime's worker threads.
    pub async fn ensure_async() -> Result<Self> {
        tokio::task::spawn_blocking(Self::ensure).await.expect("the schemathesis installer panicked")
    }

    /// The `schemathesis` executable.
    pub fn program(&self) -> PathBuf {
        self.venv.join("bin/schemathesis")
    }
}

/// An install whose command does not run, or reports another version, must fail here rather
/// than in a test.
fn check_version(venv: &Path) -> Result<()> {
    let output = run(&Spec::new("schemathesis --version", venv.join("bin/schemathesis")).arg("--version"))?;
    if output.contains(VERSION) {
        Ok(())
    } else {
        Err(Error::Prerequisite(format!("{REQUIREMENT} installed, but `schemathesis --version` says {output:?}")))
    }
}
