//! The workspace's own programs as the test environment uses them: the demo runs the control
//! plane and the operator, and the programs' images carry the binaries ([`crate::images`]).
//! `e2e` cannot link `control-plane` or `tenant-operator` (it is their dev-dependency), so cargo
//! builds them in the profile this code was built in (nothing to do when they are up to date),
//! and its build messages say where they are, whatever the target directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, Result};

pub const CONTROL_PLANE: &str = "control-plane";
pub const TENANT_OPERATOR: &str = "tenant-operator";
pub const ERP_AGENT: &str = "tenantry-agent";

/// Runs `cargo build` for the named binaries of the workspace and returns where each is;
/// cargo's progress and errors go to stderr as usual.
pub fn build(binaries: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    // `cargo run` names the cargo that runs us; started some other way, the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(&cargo);
    command.args(["build", "--message-format=json-render-diagnostics", "--manifest-path"]).arg(&manifest);
    // The whole workspace's feature set, as the test suite's builds have it: built for these
    // packages alone, shared dependencies would get other features and be compiled again.
    command.arg("--workspace");
    for binary in binaries {
        command.args(["--bin", binary]);
    }
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let shown = format!("cargo build --bin {}", binaries.join(" --bin "));
    let failed = |detail: String| Error::Prerequisite(format!("`{shown}`: {detail}"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(format!("starting it: {e}")))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut built = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| failed(format!("reading its output: {e}")))?;
        if let Some((name, path)) = executable(&line)
            && binaries.contains(&name.as_str())
        {
            built.insert(name, path);
        }
    }
    let status = child.wait().map_err(|e| failed(format!("waiting for it: {e}")))?;
    if !status.success() {
        return Err(failed(format!("failed ({status}); its errors are above")));
    }
    match binaries.iter().find(|name| !built.contains_key(**name)) {
        Some(missing) => Err(failed(format!("succeeded but did not name the executable {missing}"))),
        None => Ok(built),
    }
}

/// (binary name, path) from one of cargo's JSON messages about a built executable.
fn executable(line: &str) -> Option<(String, PathBuf)> {
    let message: Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let target = &message["target"];
    let is_bin = target["kind"].as_array()?.iter().any(|kind| kind == "bin");
    let path = message["executable"].as_str()?;
    is_bin.then(|| (target["name"].as_str().unwrap_or_default().to_string(), PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_read_from_cargo_messages() {
        let built = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"control-plane"},"executable":"/t/debug/control-plane"}"#;
        assert_eq!(executable(built), Some(("control-plane".into(), PathBuf::from("/t/debug/control-plane"))));
        let library = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"e2e"},"executable":null}"#;
        assert_eq!(executable(library), None);
        assert_eq!(executable(r#"{"reason":"build-finished","success":true}"#), None);
        assert_eq!(executable("not json"), None);
    }
}
