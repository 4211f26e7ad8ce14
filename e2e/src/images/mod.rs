//! Container images without a registry to pull from. A Debian base root file system made with
//! `debootstrap` ([`base`]) stands in for `debian:bookworm-slim`; from it, buildah builds every
//! image the product runs from the repository's own Dockerfiles ([`RECIPES`]) and pushes them
//! into a registry of the environment's own ([`registry`], Debian's `docker-registry`), which
//! the real node's containerd uses in place of Docker Hub. So the names the operator and the
//! chart render (`tryton/tryton:8.0`, `postgres:15`…) are pulled for real, with the pull
//! policies they render (`Always` included). The programs' images are the workspace Dockerfile's,
//! carrying the binaries the test run compiled ([`ensure_programs`]).
//!
//! All of it is cached (`<cache>/images`): the base, buildah's layers, and the registry's
//! storage with a marker per pushed recipe, named by a digest of everything the build reads.
//! A warm run checks the digests and builds nothing.

mod base;
mod buildah;
mod inputs;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::install::{CacheLock, ensure_debian_packages};
use crate::paths::cache_dir;
use crate::process::WorkDir;
use buildah::Buildah;
pub use registry::Registry;

/// The programs that make and serve the images.
pub const IMAGE_PACKAGES: &[&str] = &["debootstrap", "buildah", "docker-registry"];

/// One image: where its Dockerfile is, the arguments, and the name it is pushed under.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// The reference pods use, as the operator and the chart render it (Docker Hub's, short).
    pub name: &'static str,
    pub source: Source,
    pub build_args: &'static [(&'static str, &'static str)],
    /// A command that shows the image works, and what its output contains.
    pub check: (&'static [&'static str], &'static str),
}

/// Where a recipe's Dockerfile is, and so its build context.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A folder of the repository holding the `Dockerfile`: the build context.
    Folder(&'static str),
    /// A program of the workspace: the stage named after its package in the workspace's
    /// `Dockerfile`, built from the binaries the test run compiled ([`ensure_programs`]).
    Program(&'static str),
}

impl Source {
    /// The Dockerfile, relative to the repository's root.
    fn dockerfile(self) -> String {
        match self {
            Source::Folder(folder) => format!("{folder}/Dockerfile"),
            Source::Program(_) => "Dockerfile".to_string(),
        }
    }

    /// The program's package, which also names its stage of the Dockerfile (`--target`); a
    /// folder's image is its Dockerfile's last stage.
    fn package(self) -> Option<&'static str> {
        match self {
            Source::Folder(_) => None,
            Source::Program(package) => Some(package),
        }
    }
}

/// The programs' images take their binaries from the `prebuilt` stage of the workspace's
/// Dockerfile, whose context is the binaries the test run's cargo compiled, not from its `build`
/// stage: that stage compiles the whole workspace a second time, in release, inside the image
/// (13 of a fresh machine's minutes even without the optimiser), for binaries the test run
/// already has.
const PROGRAM_BUILD_ARGS: &[(&str, &str)] = &[("PROGRAMS", "prebuilt")];

/// The workspace's binaries the programs' images carry, under the names the Dockerfile's
/// `prebuilt` stage expects.
pub const PROGRAM_BINARIES: [&str; 3] =
    [crate::programs::CONTROL_PLANE, crate::programs::TENANT_OPERATOR, crate::programs::ERP_AGENT];

/// Every image the test environment provides. The ERP images are the product's own recipe
/// (`images/tryton`, one per series that has a web client), and so are the control plane's,
/// the operator's and the ERP agent's; PostgreSQL, Redis and the web proxy are stand-ins keeping
/// the contracts of the official images the operator and the chart's tests name.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "postgres:15",
        source: Source::Folder("images/postgres"),
        build_args: &[],
        check: (&["postgres", "--version"], "(PostgreSQL) 15."),
    },
    Recipe {
        name: "nginxinc/nginx-unprivileged:1.27-alpine",
        source: Source::Folder("images/web-proxy"),
        build_args: &[],
        check: (&["nginx", "-t"], "test is successful"),
    },
    Recipe {
        name: "redis:7",
        source: Source::Folder("images/redis"),
        build_args: &[],
        check: (&["redis-server", "--version"], "Redis server v=7."),
    },
    Recipe {
        name: "tryton/tryton:7.0",
        source: Source::Folder("images/tryton"),
        build_args: &[("SERIES", "7.0")],
        check: (&["trytond", "--version"], "7.0."),
    },
    Recipe {
        name: "tryton/tryton:8.0",
        source: Source::Folder("images/tryton"),
        build_args: &[("SERIES", "8.0")],
        check: (&["trytond", "--version"], "8.0."),
    },
    Recipe {
        name: concat!("tenantry/control-plane:", env!("CARGO_PKG_VERSION")),
        source: Source::Program("control-plane"),
        build_args: PROGRAM_BUILD_ARGS,
        check: (&["control-plane", "--version"], concat!("control-plane ", env!("CARGO_PKG_VERSION"))),
    },
    Recipe {
        name: concat!("tenantry/tenant-operator:", env!("CARGO_PKG_VERSION")),
        source: Source::Program("tenant-operator"),
        build_args: PROGRAM_BUILD_ARGS,
        check: (&["tenant-operator", "--version"], concat!("tenant-operator ", env!("CARGO_PKG_VERSION"))),
    },
    Recipe {
        name: concat!("tenantry/erp-agent:", env!("CARGO_PKG_VERSION")),
        source: Source::Program("erp-agent"),
        build_args: PROGRAM_BUILD_ARGS,
        check: (&["tenantry-agent", "--version"], concat!("tenantry-agent ", env!("CARGO_PKG_VERSION"))),
    },
];

/// A base image the recipes build `FROM` that cannot be pulled here, made from a Dockerfile of
/// `images/` (its folder the context) and kept in buildah's storage under the real image's name
/// (never pushed: no pod runs it).
#[derive(Debug, Clone, Copy)]
struct StandIn {
    /// The real image's full name.
    name: &'static str,
    /// The Dockerfile, relative to the repository's root.
    dockerfile: &'static str,
}

const STAND_INS: &[StandIn] =
    &[StandIn { name: "gcr.io/distroless/cc-debian12:nonroot", dockerfile: "images/distroless-cc/Dockerfile" }];

/// The repository's root, where the recipes' folders are.
pub fn repository_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The folder holding the images' caches.
pub fn images_dir() -> PathBuf {
    cache_dir().join("images")
}

/// Builds and pushes every recipe of a folder of the repository whose inputs changed since it
/// was last pushed (minutes on a fresh machine; a second or so when nothing changed). The
/// programs' images need the test run's binaries: [`ensure_programs`].
pub fn ensure_all() -> Result<()> {
    ensure_debian_packages(IMAGE_PACKAGES)?;
    let root = repository_root();
    let recipes = RECIPES.iter().filter_map(|recipe| match recipe.source {
        Source::Folder(folder) => Some((recipe, root.join(folder))),
        Source::Program(_) => None,
    });
    let lock = CacheLock::acquire("images")?;
    ensure(recipes.collect(), &lock)
}

/// Builds and pushes the programs' images whose binaries (`binaries`: each of
/// [`PROGRAM_BINARIES`] and where cargo left it) or recipe changed since they were last pushed.
pub fn ensure_programs(binaries: &std::collections::BTreeMap<String, PathBuf>) -> Result<()> {
    ensure_debian_packages(IMAGE_PACKAGES)?;
    let context = images_dir().join("programs");
    // Filled and built under one hold of the lock, so that another process never swaps its own
    // binaries in between.
    let lock = CacheLock::acquire("images")?;
    fill_programs_context(&context, binaries)?;
    let recipes = RECIPES.iter().filter(|recipe| matches!(recipe.source, Source::Program(_)));
    ensure(recipes.map(|recipe| (recipe, context.clone())).collect(), &lock)
}

/// The `prebuilt` stage's context: the binaries by name, and the empty `data` folder the control
/// plane's image gives its user. Hard links where the file system allows them: a copy of a
/// binary that did not change would be a hundred megabytes written for nothing.
fn fill_programs_context(context: &Path, binaries: &std::collections::BTreeMap<String, PathBuf>) -> Result<()> {
    let _ = fs::remove_dir_all(context);
    fs::create_dir_all(context.join("data")).context(|| format!("creating {}", context.display()))?;
    for name in PROGRAM_BINARIES {
        let binary = binaries
            .get(name)
            .ok_or_else(|| Error::Prerequisite(format!("no {name} binary for the programs' images")))?;
        let target = context.join(name);
        if fs::hard_link(binary, &target).is_err() {
            fs::copy(binary, &target).context(|| format!("copying {} to {}", binary.display(), target.display()))?;
        }
    }
    Ok(())
}

/// Builds and pushes those of `recipes` (each with its build context) whose marker is missing.
/// The caller holds the images' lock (`_held`) for as long as the contexts must not change.
fn ensure(recipes: Vec<(&Recipe, PathBuf)>, _held: &CacheLock) -> Result<()> {
    let dir = images_dir();
    let buildah = Buildah::new(&dir);
    let root = repository_root();
    // Every base a recipe may build from, with what identifies its contents: the Debian base's
    // image ID, a stand-in's digest (known before it is built, so a warm run builds nothing).
    let mut bases = vec![(base::BASE_IMAGE.to_string(), base::ensure(&dir, &buildah)?)];
    for stand_in in STAND_INS {
        bases.push((stand_in.name.to_string(), stand_in_digest(stand_in, &root, &bases[..1])?));
    }
    let pushed = registry::storage_dir(&dir).join("pushed");
    fs::create_dir_all(&pushed).context(|| format!("creating {}", pushed.display()))?;
    let mut outdated = Vec::new();
    for (recipe, context) in recipes {
        let marker = pushed.join(marker_name(recipe.name, &recipe_digest(recipe, &root, &context, &bases)?));
        if !marker.exists() {
            outdated.push((recipe, context, marker));
        }
    }
    if outdated.is_empty() {
        return Ok(());
    }
    let workdir = WorkDir::create("images")?;
    // Only the stand-ins an outdated recipe builds from are made (or found made).
    for (stand_in, (_, digest)) in STAND_INS.iter().zip(&bases[1..]) {
        if outdated.iter().any(|(recipe, _, _)| builds_from(recipe, &root, stand_in.name)) {
            ensure_stand_in(stand_in, digest, &dir, &buildah, &root, &workdir)?;
        }
    }
    // A registry of its own for the pushes, on a free port of this machine's loopback.
    let registry = Registry::start_for_pushing(&workdir, &dir)?;
    for (recipe, context, marker) in outdated {
        tracing::info!(image = recipe.name, "building an image (first run, or its inputs changed)");
        let log = workdir.join(format!("build-{}.log", marker_name(recipe.name, "")));
        buildah.build(&recipe_build(recipe, &root, context), &log)?;
        buildah.push(&qualified(recipe.name), &registry.push_reference(recipe.name))?;
        fs::write(&marker, recipe.name).context(|| format!("writing {}", marker.display()))?;
    }
    Ok(())
}

/// What buildah is asked to build for `recipe`, from `context`.
fn recipe_build(recipe: &Recipe, root: &Path, context: PathBuf) -> buildah::Build {
    buildah::Build {
        tag: qualified(recipe.name),
        dockerfile: root.join(recipe.source.dockerfile()),
        context,
        target: recipe.source.package().map(String::from),
        build_args: recipe.build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// A digest of everything the stand-in's build reads: its name, its base and its folder.
fn stand_in_digest(stand_in: &StandIn, root: &Path, bases: &[(String, String)]) -> Result<String> {
    let dockerfile = root.join(stand_in.dockerfile);
    let mut hash = Sha256::new();
    hash.update(stand_in.name.as_bytes());
    for (name, identity) in bases {
        hash.update(format!("\0{name}={identity}").as_bytes());
    }
    let context = dockerfile.parent().unwrap_or(root);
    hash_files(&mut hash, context, &inputs::files(context)?)?;
    Ok(hex::encode(&hash.finalize()[..8]))
}

/// Builds the stand-in unless the build of this digest is in buildah's storage.
fn ensure_stand_in(
    stand_in: &StandIn,
    digest: &str,
    dir: &Path,
    buildah: &Buildah,
    root: &Path,
    workdir: &WorkDir,
) -> Result<()> {
    let marker = dir.join("stand-ins").join(marker_name(stand_in.name, digest));
    if marker.exists() && buildah.image_id(stand_in.name)?.is_some() {
        return Ok(());
    }
    tracing::info!(image = stand_in.name, "building a stand-in base image (first run, or its recipe changed)");
    let log = workdir.join(format!("build-{}.log", marker_name(stand_in.name, "")));
    let dockerfile = root.join(stand_in.dockerfile);
    let build = buildah::Build {
        tag: stand_in.name.to_string(),
        context: dockerfile.parent().unwrap_or(root).to_path_buf(),
        dockerfile,
        target: None,
        build_args: Vec::new(),
    };
    buildah.build(&build, &log)?;
    let parent = marker.parent().unwrap_or(dir);
    fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    fs::write(&marker, stand_in.name).context(|| format!("writing {}", marker.display()))
}

/// Whether the recipe's Dockerfile builds `FROM` the image `name` (full name).
fn builds_from(recipe: &Recipe, root: &Path, name: &str) -> bool {
    fs::read_to_string(root.join(recipe.source.dockerfile()))
        .is_ok_and(|text| from_images(&text).iter().any(|n| n == name))
}

/// The full names of the images a Dockerfile's `FROM` lines name (not its own stages).
fn from_images(dockerfile: &str) -> Vec<String> {
    let mut stages = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((keyword, rest)) = words.split_first() else { continue };
        if !keyword.eq_ignore_ascii_case("from") {
            continue;
        }
        let Some(image) = rest.iter().find(|w| !w.starts_with("--")) else { continue };
        // `FROM ${ARG}` picks one of the stages by a build argument (the workspace's
        // `programs`); the stages themselves are counted where they are defined.
        if !stages.contains(image) && *image != "scratch" && !image.starts_with('$') {
            images.push(full_name(image));
        }
        if let [.., as_word, stage] = rest
            && as_word.eq_ignore_ascii_case("as")
        {
            stages.push(*stage);
        }
    }
    images
}

/// `docker.io/<repository>:<tag>`, with `library/` for Docker Hub's official images: how
/// containerd and buildah name a short reference.
pub fn qualified(name: &str) -> String {
    format!("docker.io/{}", repository_path(name))
}

/// A reference as buildah stores it: one naming a registry (`gcr.io/…`) as it is, a short one
/// as Docker Hub's.
fn full_name(name: &str) -> String {
    let first = name.split('/').next().unwrap_or(name);
    if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        name.to_string()
    } else {
        qualified(name)
    }
}

/// The path of `name` in a registry that stands for Docker Hub.
fn repository_path(name: &str) -> String {
    let repository = name.split(':').next().unwrap_or(name);
    if repository.contains('/') { name.to_string() } else { format!("library/{name}") }
}

fn marker_name(name: &str, digest: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    if digest.is_empty() { name } else { format!("{name}.{digest}") }
}

/// A digest of everything the build reads: the name, the arguments, the stage, the Dockerfile,
/// the bases it builds from (`bases`: full name and identity), and the files of the build
/// context it can read (names, modes and contents; [`inputs`]).
fn recipe_digest(recipe: &Recipe, root: &Path, context: &Path, bases: &[(String, String)]) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(recipe.name.as_bytes());
    for (key, value) in recipe.build_args {
        hash.update(format!("\0{key}={value}").as_bytes());
    }
    hash.update(format!("\0target={}", recipe.source.package().unwrap_or_default()).as_bytes());
    let dockerfile = root.join(recipe.source.dockerfile());
    let text = fs::read_to_string(&dockerfile).context(|| format!("reading {}", dockerfile.display()))?;
    hash.update(format!("\0{}\0", text.len()).as_bytes());
    hash.update(text.as_bytes());
    for image in from_images(&text) {
        let identity = bases.iter().find(|(name, _)| *name == image).map_or("", |(_, identity)| identity.as_str());
        hash.update(format!("\0{image}={identity}").as_bytes());
    }
    hash_files(&mut hash, context, &inputs::files(context)?)?;
    Ok(hex::encode(&hash.finalize()[..8]))
}

/// Adds each file's name (relative to `base`), mode, length and contents.
fn hash_files(hash: &mut Sha256, base: &Path, files: &[PathBuf]) -> Result<()> {
    for file in files {
        let relative = file.strip_prefix(base).unwrap_or(file);
        let contents = fs::read(file).context(|| format!("reading {}", file.display()))?;
        let mode = fs::metadata(file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap_or(0);
        hash.update(format!("\0{}\0{mode:o}\0{}\0", relative.display(), contents.len()).as_bytes());
        hash.update(&contents);
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
    fn references_naming_a_registry_keep_it() {
        assert_eq!(full_name("gcr.io/distroless/cc-debian12:nonroot"), "gcr.io/distroless/cc-debian12:nonroot");
        assert_eq!(full_name("rust:1-slim-bookworm"), "docker.io/library/rust:1-slim-bookworm");
        assert_eq!(full_name("tenantry/control-plane:1"), "docker.io/tenantry/control-plane:1");
    }

    /// The one base a Dockerfile here names that the test environment never builds from: the
    /// Rust image of the workspace Dockerfile's `build` stage, which the programs' images skip
    /// ([`PROGRAM_BUILD_ARGS`]).
    const SKIPPED_BASE: &str = "docker.io/library/rust:1-slim-bookworm";

    #[test]
    fn every_recipe_has_its_dockerfile_and_every_base_is_here() {
        let root = repository_root();
        let known: Vec<&str> = std::iter::once(base::BASE_IMAGE).chain(STAND_INS.iter().map(|s| s.name)).collect();
        let recipes = RECIPES.iter().map(|r| (r.source.dockerfile(), r.source.package().is_some()));
        for (dockerfile, program) in recipes.chain(STAND_INS.iter().map(|s| (s.dockerfile.to_string(), false))) {
            let text = fs::read_to_string(root.join(&dockerfile)).unwrap_or_else(|e| panic!("{dockerfile}: {e}"));
            for image in from_images(&text) {
                let skipped = program && image == SKIPPED_BASE;
                assert!(
                    skipped || known.contains(&image.as_str()),
                    "{dockerfile} builds from {image}, which nothing here makes"
                );
            }
        }
    }

    #[test]
    fn every_program_is_a_stage_of_the_workspaces_dockerfile() {
        let root = repository_root();
        for recipe in RECIPES {
            let Some(target) = recipe.source.package() else { continue };
            let text = fs::read_to_string(root.join(recipe.source.dockerfile())).unwrap();
            let stage = text.lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first().is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
                    && words.len() >= 4
                    && words[words.len() - 2].eq_ignore_ascii_case("AS")
                    && words[words.len() - 1] == target
            });
            assert!(stage, "{}: no stage named {target}", recipe.name);
        }
    }

    #[test]
    fn the_programs_images_copy_only_what_the_prebuilt_context_holds() {
        let text = fs::read_to_string(repository_root().join(Source::Program("x").dockerfile())).unwrap();
        let copied: Vec<&str> = text
            .lines()
            .filter(|line| line.trim_start().starts_with("COPY") && line.contains("--from=programs"))
            .filter_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix("/out/")))
            .collect();
        assert!(copied.len() >= PROGRAM_BINARIES.len(), "the runtime stages copy from `programs`: {copied:?}");
        for file in &copied {
            assert!(
                *file == "data" || PROGRAM_BINARIES.contains(file),
                "a runtime stage copies /out/{file}, which the prebuilt context does not hold"
            );
        }
        for binary in PROGRAM_BINARIES {
            assert!(copied.contains(&binary), "no image carries {binary}");
        }
        let root = tempfile::tempdir().unwrap();
        let binary = root.path().join("built");
        fs::write(&binary, "ELF").unwrap();
        let binaries = PROGRAM_BINARIES.iter().map(|name| (name.to_string(), binary.clone())).collect();
        let context = root.path().join("context");
        fill_programs_context(&context, &binaries).unwrap();
        assert!(context.join("data").is_dir());
        for name in PROGRAM_BINARIES {
            assert_eq!(fs::read(context.join(name)).unwrap(), b"ELF");
        }
        let missing = binaries.into_iter().skip(1).collect();
        assert!(fill_programs_context(&context, &missing).is_err());
    }

    #[test]
    fn from_lines_name_the_bases_not_the_stages() {
        let dockerfile = "# syntax=docker/dockerfile:1\nARG X=1\nFROM rust:1-slim-bookworm AS build\nRUN x\n\
                          from --platform=linux/amd64 debian:bookworm-slim as other\nFROM build\nFROM scratch\n\
                          FROM gcr.io/distroless/cc-debian12:nonroot\nFROM ${PROGRAMS} AS programs\n";
        assert_eq!(
            from_images(dockerfile),
            [
                "docker.io/library/rust:1-slim-bookworm",
                "docker.io/library/debian:bookworm-slim",
                "gcr.io/distroless/cc-debian12:nonroot"
            ]
        );
    }

    #[test]
    fn the_digest_follows_the_recipes_files_arguments_and_bases() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("images/x")).unwrap();
        fs::write(root.path().join("images/x/Dockerfile"), "FROM debian:bookworm-slim\n").unwrap();
        let recipe = Recipe { name: "x:1", source: Source::Folder("images/x"), build_args: &[], check: (&[], "") };
        let bases = |id: &str| vec![(base::BASE_IMAGE.to_string(), id.to_string()), ("other:1".into(), "o".into())];
        let context = root.path().join("images/x");
        let digest = |recipe: &Recipe, bases: &[(String, String)]| recipe_digest(recipe, root.path(), &context, bases);
        let first = digest(&recipe, &bases("base")).unwrap();
        assert_eq!(first, digest(&recipe, &bases("base")).unwrap());
        assert_ne!(first, digest(&recipe, &bases("other base")).unwrap());
        // A base it does not build from does not count.
        let mut more = bases("base");
        more[1].1 = "changed".into();
        assert_eq!(first, digest(&recipe, &more).unwrap());
        let with_args = Recipe { build_args: &[("SERIES", "8.0")], ..recipe };
        assert_ne!(first, digest(&with_args, &bases("base")).unwrap());
        fs::write(root.path().join("images/x/entrypoint.sh"), "exec \"$@\"\n").unwrap();
        assert_ne!(first, digest(&recipe, &bases("base")).unwrap());
    }
}
