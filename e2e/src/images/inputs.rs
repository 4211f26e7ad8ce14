//! What a recipe's build reads, so that its digest changes exactly when the image would: the
//! files of its build context that `.dockerignore` lets through and, for a program of the
//! workspace, only the workspace members it is built from (so that a change to the tests or to
//! another program does not rebuild it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// Every file of `context` (absolute paths, sorted) that the build can read.
///
/// `package`: the context is the workspace and the recipe builds that member's program. Then
/// other members' folders are left out, and so are the members' `tests/` and `benches/`.
pub(super) fn files(context: &Path, package: Option<&str>) -> Result<Vec<PathBuf>> {
    let ignore = DockerIgnore::read(context)?;
    let left_out = match package {
        Some(package) => members_left_out(context, package)?,
        None => BTreeSet::new(),
    };
    let mut found = Vec::new();
    walk(context, Path::new(""), &ignore, &left_out, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(
    context: &Path,
    relative: &Path,
    ignore: &DockerIgnore,
    left_out: &BTreeSet<PathBuf>,
    found: &mut Vec<PathBuf>,
) -> Result<()> {
    let dir = context.join(relative);
    for entry in fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))? {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let path = relative.join(entry.file_name());
        if ignore.excludes(&path) || left_out.contains(&path) {
            continue;
        }
        let kind = entry.file_type().context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            walk(context, &path, ignore, left_out, found)?;
        } else {
            found.push(context.join(path));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
    path: Option<PathBuf>,
}

/// The folders (relative to the workspace root) a build of `package` does not read: the other
/// members, and every member's tests and benchmarks.
fn members_left_out(workspace: &Path, package: &str) -> Result<BTreeSet<PathBuf>> {
    let manifest = workspace.join("Cargo.toml");
    // Cargo's own metadata, stdout only (warnings go to stderr). Under cargo, `CARGO` names the
    // cargo that runs us.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(&cargo)
        .args(["metadata", "--format-version=1", "--no-deps", "--offline", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context(|| format!("running `cargo metadata` for {}", manifest.display()))?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: format!("cargo metadata --manifest-path {}", manifest.display()),
            status: output.status.to_string(),
            tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::Prerequisite(format!("reading `cargo metadata` of {}: {e}", workspace.display())))?;
    let members: BTreeMap<&str, &Package> = metadata
        .packages
        .iter()
        .filter(|p| metadata.workspace_members.contains(&p.id))
        .map(|p| (p.name.as_str(), p))
        .collect();
    let needed = closure(&members, package)?;
    let mut left_out = BTreeSet::new();
    for (name, member) in &members {
        let folder = member.manifest_path.parent().unwrap_or(workspace);
        let relative = folder.strip_prefix(workspace).unwrap_or(folder).to_path_buf();
        if !needed.contains(name) {
            left_out.insert(relative);
        } else if !relative.as_os_str().is_empty() {
            left_out.insert(relative.join("tests"));
            left_out.insert(relative.join("benches"));
        }
    }
    Ok(left_out)
}

/// `package` and the members it depends on to build (normal and build dependencies, not
/// development ones), transitively.
fn closure<'a>(members: &BTreeMap<&'a str, &'a Package>, package: &str) -> Result<BTreeSet<&'a str>> {
    let (&name, _) = members
        .get_key_value(package)
        .ok_or_else(|| Error::Prerequisite(format!("{package} is not a member of the workspace")))?;
    let mut needed = BTreeSet::from([name]);
    let mut pending = vec![name];
    while let Some(next) = pending.pop() {
        for dependency in &members[next].dependencies {
            if dependency.kind.as_deref() == Some("dev") || dependency.path.is_none() {
                continue;
            }
            if let Some((&member, _)) = members.get_key_value(dependency.name.as_str())
                && needed.insert(member)
            {
                pending.push(member);
            }
        }
    }
    Ok(needed)
}

/// The patterns of a context's `.dockerignore`, as Docker reads them: each names paths relative
/// to the context (`*` and `?` within a name, `**` across folders), and a folder it names leaves
/// out everything under it.
struct DockerIgnore {
    patterns: Vec<Vec<String>>,
}

impl DockerIgnore {
    fn read(context: &Path) -> Result<Self> {
        let path = context.join(".dockerignore");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::Io { context: format!("reading {}", path.display()), source: e }),
        };
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            // Exceptions would need Docker's whole precedence rules; nothing here uses them, so
            // meeting one is an error rather than a digest that silently misses files.
            if line.starts_with('!') {
                return Err(Error::Prerequisite(format!(".dockerignore exceptions are not supported here: {line}")));
            }
            let components = line.trim_matches('/').split('/').filter(|c| !c.is_empty() && *c != ".");
            patterns.push(components.map(str::to_string).collect());
        }
        Ok(Self { patterns })
    }

    /// Whether `path` (relative) or a folder above it is left out.
    fn excludes(&self, path: &Path) -> bool {
        let components: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        (1..=components.len()).any(|len| self.patterns.iter().any(|p| matches_path(p, &components[..len])))
    }
}

fn matches_path(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| matches_path(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(name, tail)| matches_name(first.as_bytes(), name.as_bytes()) && matches_path(rest, tail)),
    }
}

/// `*` (any run of characters) and `?` (one character) within one name.
fn matches_name(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| matches_name(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && matches_name(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && matches_name(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(ignore: &DockerIgnore, path: &str) -> bool {
        ignore.excludes(Path::new(path))
    }

    #[test]
    fn dockerignore_patterns_leave_out_what_docker_would() {
        let ignore = DockerIgnore::parse("# build output\ntarget/\n.git\n**/*.md\ndocs/*.png\n").unwrap();
        assert!(excluded(&ignore, "target"));
        assert!(excluded(&ignore, "target/debug/x"));
        assert!(!excluded(&ignore, "control-plane/target-notes.rs"));
        assert!(excluded(&ignore, ".git/HEAD"));
        assert!(excluded(&ignore, "README.md"));
        assert!(excluded(&ignore, "control-plane/src/README.md"));
        assert!(!excluded(&ignore, "control-plane/src/md.rs"));
        assert!(excluded(&ignore, "docs/a.png"));
        assert!(!excluded(&ignore, "docs/a/b.png"));
        assert!(DockerIgnore::parse("target/\n!target/keep\n").is_err());
    }

    #[test]
    fn a_program_reads_its_members_but_not_the_others_nor_the_tests() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write("Cargo.toml", "[workspace]\nmembers = [\"app\", \"shared\", \"other\"]\nresolver = \"2\"\n");
        let member = |name: &str, deps: &str| {
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n{deps}")
        };
        write(
            "app/Cargo.toml",
            &member(
                "app",
                "[dependencies]\nshared = { path = \"../shared\" }\n[dev-dependencies]\nother = { path = \"../other\" }\n",
            ),
        );
        write("app/src/main.rs", "fn main() {}\n");
        write("app/tests/it.rs", "\n");
        write("shared/Cargo.toml", &member("shared", ""));
        write("shared/src/lib.rs", "\n");
        write("other/Cargo.toml", &member("other", ""));
        write("other/src/lib.rs", "\n");
        write("migrations/1.sql", "\n");
        write("notes.md", "\n");
        write(".dockerignore", "**/*.md\n");

        let read: Vec<String> = files(root.path(), Some("app"))
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            read,
            [
                ".dockerignore",
                "Cargo.toml",
                "app/Cargo.toml",
                "app/src/main.rs",
                "migrations/1.sql",
                "shared/Cargo.toml",
                "shared/src/lib.rs"
            ]
        );
        // Without a package, the whole context counts.
        assert_eq!(files(root.path(), None).unwrap().len(), 10);
        assert!(files(root.path(), Some("nothing")).is_err());
    }
}
