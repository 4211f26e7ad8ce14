//! The workspace's own programs for the demo. `e2e` cannot link `control-plane` or
//! `tenant-operator` (it is their dev-dependency), so the demo runs their binaries: cargo builds
//! them in the profile this program was built in (nothing to do when they are up to date), and
//! its build messages say where they are, whatever the target directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub struct Binaries {
    pub control_plane: PathBuf,
    pub operator: PathBuf,
}

/// Runs `cargo build` for both binaries; cargo's progress and errors go to stderr as usual.
pub fn build() -> Result<Binaries, String> {
    // `cargo run` names the cargo that runs us; started some other way, the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(&cargo);
    command.args(["build", "--message-format=json-render-diagnostics", "--manifest-path"]).arg(&manifest);
    // The whole workspace's feature set, as the test suite's builds have it: built for these two
    // packages alone, shared dependencies would get other features and be compiled again.
    command.args(["--workspace", "--bin", "control-plane", "--bin", "tenant-operator"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let shown = format!("{} build --bin control-plane --bin tenant-operator", cargo.to_string_lossy());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting `{shown}`: {e}"))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let (mut control_plane, mut operator) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the output of `{shown}`: {e}"))?;
        match executable(&line) {
            Some((name, path)) if name == "control-plane" => control_plane = Some(path),
            Some((name, path)) if name == "tenant-operator" => operator = Some(path),
            _ => {}
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for `{shown}`: {e}"))?;
    if !status.success() {
        return Err(format!("`{shown}` failed ({status}); its errors are above"));
    }
    match (control_plane, operator) {
        (Some(control_plane), Some(operator)) => Ok(Binaries { control_plane, operator }),
        _ => Err(format!("`{shown}` succeeded but did not name both executables")),
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
