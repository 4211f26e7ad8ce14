//! The base of every image here: Debian 12 made with `debootstrap` (`minbase`), slimmed as
//! Docker Hub's `debian:bookworm-slim` is (no documentation, manual pages or translations, now
//! or from later installs; no package lists), and committed under that name in buildah's
//! storage, so the Dockerfiles' `FROM debian:bookworm-slim` finds it without a registry.

use std::fs;
use std::path::Path;

use super::buildah::Buildah;
use crate::error::{IoContext, Result};
use crate::process::{Spec, run_logged};

pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";
const SUITE: &str = "bookworm";
/// The archive the base installs from, and its later `apt-get install`s too.
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// What dpkg leaves out of every later install, as the slim images do.
const DPKG_EXCLUDES: &str = "\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
";

/// The base's image ID in buildah's storage, making the root file system first when it is not
/// cached (under a minute) and committing it when buildah's storage lacks it.
pub(super) fn ensure(dir: &Path, buildah: &Buildah) -> Result<String> {
    let archive = dir.join("debian-bookworm-slim.tar");
    if !archive.exists() {
        make_archive(dir, &archive)?;
    }
    if let Some(id) = buildah.image_id(BASE_IMAGE)? {
        return Ok(id);
    }
    buildah.import_root(&archive, BASE_IMAGE)?;
    buildah.image_id(BASE_IMAGE)?.ok_or_else(|| {
        crate::error::Error::Prerequisite(format!("{BASE_IMAGE} is missing from buildah's storage after its import"))
    })
}

fn make_archive(dir: &Path, archive: &Path) -> Result<()> {
    tracing::info!("making the Debian base image with debootstrap (first run only)");
    let root = dir.join("debian-root");
    if root.exists() {
        fs::remove_dir_all(&root).context(|| format!("removing the unfinished {}", root.display()))?;
    }
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    run_logged(
        &Spec::new("debootstrap", "debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(root.display().to_string())
            .arg(MIRROR),
        &dir.join("debootstrap.log"),
    )?;
    slim(&root)?;
    let partial = archive.with_extension("tar.partial");
    run_logged(
        &Spec::new("tar", "tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(root.display().to_string())
            .arg("-cf")
            .arg(partial.display().to_string())
            .arg("."),
        &dir.join("debootstrap.log"),
    )?;
    fs::rename(&partial, archive).context(|| format!("publishing {}", archive.display()))?;
    fs::remove_dir_all(&root).context(|| format!("removing {}", root.display()))
}

fn slim(root: &Path) -> Result<()> {
    let write = |path: &str, text: String| {
        let path = root.join(path);
        fs::write(&path, text).context(|| format!("writing {}", path.display()))
    };
    write("etc/dpkg/dpkg.cfg.d/slim", DPKG_EXCLUDES.into())?;
    write(
        "etc/apt/sources.list",
        format!(
            "deb {MIRROR} {SUITE} main\ndeb {MIRROR} {SUITE}-updates main\ndeb {SECURITY_MIRROR} {SUITE}-security main\n"
        ),
    )?;
    for folder in ["usr/share/man", "usr/share/info", "var/lib/apt/lists", "var/cache/apt/archives"] {
        empty_folder(&root.join(folder), |_| true)?;
    }
    empty_folder(&root.join("usr/share/locale"), |name| name != "locale.alias")?;
    for entry in fs::read_dir(root.join("usr/share/doc")).context(|| "reading the base's documentation".into())? {
        let package = entry.context(|| "reading the base's documentation".into())?.path();
        if package.is_dir() {
            empty_folder(&package, |name| name != "copyright")?;
        }
    }
    for cache in ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"] {
        let _ = fs::remove_file(root.join(cache));
    }
    Ok(())
}

/// Removes what `folder` holds whose name `remove` accepts.
fn empty_folder(folder: &Path, remove: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = fs::read_dir(folder) else { return Ok(()) };
    for entry in entries {
        let path = entry.context(|| format!("reading {}", folder.display()))?.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(&remove) {
            continue;
        }
        let removed =
            if path.is_dir() && !path.is_symlink() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
