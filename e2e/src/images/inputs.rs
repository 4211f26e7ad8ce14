//! What a recipe's build reads, so that its digest changes exactly when the image would: the
//! files of its build context that `.dockerignore` lets through.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Every file of `context` (absolute paths, sorted) that the build can read.
pub(super) fn files(context: &Path) -> Result<Vec<PathBuf>> {
    let ignore = DockerIgnore::read(context)?;
    let mut found = Vec::new();
    walk(context, Path::new(""), &ignore, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(context: &Path, relative: &Path, ignore: &DockerIgnore, found: &mut Vec<PathBuf>) -> Result<()> {
    let dir = context.join(relative);
    for entry in fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))? {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let path = relative.join(entry.file_name());
        if ignore.excludes(&path) {
            continue;
        }
        let kind = entry.file_type().context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            walk(context, &path, ignore, found)?;
        } else {
            found.push(context.join(path));
        }
    }
    Ok(())
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
}
