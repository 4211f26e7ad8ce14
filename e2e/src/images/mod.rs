//! Container images without a registry to pull from. A Debian base root file system made with
//! `debootstrap` ([`base`]) stands in for `debian:bookworm-slim`; from it, buildah builds every
//! image the product runs from the repository's own Dockerfiles ([`RECIPES`]) and pushes them
//! into a registry of the environment's own ([`registry`], Debian's `docker-registry`), which
//! the real node's containerd uses in place of Docker Hub. So the names the operator and the
//! chart render (`tryton/tryton:8.0`, `postgres:15`…) are pulled for real, with the pull
//! policies they render (`Always` included).
//!
//! All of it is cached (`<cache>/images`): the base, buildah's layers, and the registry's
//! storage with a marker per pushed recipe, named by a digest of everything the build reads.
//! A warm run checks the digests and builds nothing.

mod base;
mod buildah;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};
use crate::install::{CacheLock, ensure_debian_packages};
use crate::paths::cache_dir;
use crate::process::WorkDir;
use buildah::Buildah;
pub use registry::Registry;

/// The programs that make and serve the images.
pub const IMAGE_PACKAGES: &[&str] = &["debootstrap", "buildah", "docker-registry"];

/// One image: the Dockerfile's folder in the repository (the build context), the arguments,
/// and the name it is pushed under.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// The reference pods use, as the operator and the chart render it (Docker Hub's, short).
    pub name: &'static str,
    /// Folder of the Dockerfile, relative to the repository's root.
    pub context: &'static str,
    pub build_args: &'static [(&'static str, &'static str)],
    /// A command that shows the image works, and what its output contains.
    pub check: (&'static [&'static str], &'static str),
}

/// Every image the test environment provides. The ERP images are the product's own recipe
/// (`images/tryton`, one per series that has a web client); PostgreSQL and the web proxy are
/// stand-ins keeping the contracts of the official images the operator names by default.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "postgres:15",
        context: "images/postgres",
        build_args: &[],
        check: (&["postgres", "--version"], "(PostgreSQL) 15."),
    },
    Recipe {
        name: "nginxinc/nginx-unprivileged:1.27-alpine",
        context: "images/web-proxy",
        build_args: &[],
        check: (&["nginx", "-t"], "test is successful"),
    },
    Recipe {
        name: "tryton/tryton:7.0",
        context: "images/tryton",
        build_args: &[("SERIES", "7.0")],
        check: (&["trytond", "--version"], "7.0."),
    },
    Recipe {
        name: "tryton/tryton:8.0",
        context: "images/tryton",
        build_args: &[("SERIES", "8.0")],
        check: (&["trytond", "--version"], "8.0."),
    },
];

/// The repository's root, where the recipes' folders are.
pub fn repository_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The folder holding the images' caches.
pub fn images_dir() -> PathBuf {
    cache_dir().join("images")
}

/// Builds and pushes every recipe whose inputs changed since it was last pushed (minutes on a
/// fresh machine; a second or so when nothing changed).
pub fn ensure_all() -> Result<()> {
    ensure_debian_packages(IMAGE_PACKAGES)?;
    let dir = images_dir();
    let _lock = CacheLock::acquire("images")?;
    let buildah = Buildah::new(&dir);
    let base_id = base::ensure(&dir, &buildah)?;
    let root = repository_root();
    let pushed = registry::storage_dir(&dir).join("pushed");
    fs::create_dir_all(&pushed).context(|| format!("creating {}", pushed.display()))?;
    let mut outdated = Vec::new();
    for recipe in RECIPES {
        let marker = pushed.join(marker_name(recipe, &recipe_digest(recipe, &root, &base_id)?));
        if !marker.exists() {
            outdated.push((recipe, marker));
        }
    }
    if outdated.is_empty() {
        return Ok(());
    }
    // A registry of its own for the pushes, on a free port of this machine's loopback.
    let workdir = WorkDir::create("images")?;
    let registry = Registry::start_for_pushing(&workdir, &dir)?;
    for (recipe, marker) in outdated {
        tracing::info!(image = recipe.name, "building an image (first run, or its recipe changed)");
        let log = workdir.join(format!("build-{}.log", marker_name(recipe, "")));
        buildah.build(recipe, &root, &log)?;
        buildah.push(&qualified(recipe.name), &registry.push_reference(recipe.name))?;
        fs::write(&marker, recipe.name).context(|| format!("writing {}", marker.display()))?;
    }
    Ok(())
}

/// `docker.io/<repository>:<tag>`, with `library/` for Docker Hub's official images: how
/// containerd and buildah name a short reference.
pub fn qualified(name: &str) -> String {
    format!("docker.io/{}", repository_path(name))
}

/// The path of `name` in a registry that stands for Docker Hub.
fn repository_path(name: &str) -> String {
    let repository = name.split(':').next().unwrap_or(name);
    if repository.contains('/') { name.to_string() } else { format!("library/{name}") }
}

fn marker_name(recipe: &Recipe, digest: &str) -> String {
    let name: String =
        recipe.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    if digest.is_empty() { name } else { format!("{name}.{digest}") }
}

/// A digest of everything the build reads: the name, the arguments, the base image, and every
/// file of the build context (names, modes and contents).
fn recipe_digest(recipe: &Recipe, root: &Path, base_id: &str) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(recipe.name.as_bytes());
    for (key, value) in recipe.build_args {
        hash.update(format!("\0{key}={value}").as_bytes());
    }
    hash.update(format!("\0{base_id}").as_bytes());
    let context = root.join(recipe.context);
    let mut files = Vec::new();
    collect_files(&context, &mut files)?;
    files.sort();
    for file in files {
        let relative = file.strip_prefix(&context).unwrap_or(&file);
        let contents = fs::read(&file).context(|| format!("reading {}", file.display()))?;
        let mode = fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap_or(0);
        hash.update(format!("\0{}\0{mode:o}\0{}\0", relative.display(), contents.len()).as_bytes());
        hash.update(&contents);
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        let path = entry.context(|| format!("reading {}", dir.display()))?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_docker_hubs() {
        assert_eq!(qualified("postgres:15"), "docker.io/library/postgres:15");
        assert_eq!(qualified("tryton/tryton:8.0"), "docker.io/tryton/tryton:8.0");
        assert_eq!(
            repository_path("nginxinc/nginx-unprivileged:1.27-alpine"),
            "nginxinc/nginx-unprivileged:1.27-alpine"
        );
    }

    #[test]
    fn every_recipe_has_its_dockerfile() {
        for recipe in RECIPES {
            let dockerfile = repository_root().join(recipe.context).join("Dockerfile");
            assert!(dockerfile.is_file(), "{} has no {}", recipe.name, dockerfile.display());
        }
    }

    #[test]
    fn the_digest_follows_the_recipes_files_and_arguments() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("images/x")).unwrap();
        fs::write(root.path().join("images/x/Dockerfile"), "FROM debian\n").unwrap();
        let recipe = Recipe { name: "x:1", context: "images/x", build_args: &[], check: (&[], "") };
        let first = recipe_digest(&recipe, root.path(), "base").unwrap();
        assert_eq!(first, recipe_digest(&recipe, root.path(), "base").unwrap());
        assert_ne!(first, recipe_digest(&recipe, root.path(), "other base").unwrap());
        let with_args = Recipe { build_args: &[("SERIES", "8.0")], ..recipe };
        assert_ne!(first, recipe_digest(&with_args, root.path(), "base").unwrap());
        fs::write(root.path().join("images/x/entrypoint.sh"), "exec \"$@\"\n").unwrap();
        assert_ne!(first, recipe_digest(&recipe, root.path(), "base").unwrap());
    }
}
