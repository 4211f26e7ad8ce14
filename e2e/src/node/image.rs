//! Container images without a registry: an OCI image archive written here, imported into the
//! node's containerd (`ctr images import`).
//!
//! Two images are made from single programs: the pod sandbox (`pause`, compiled from the
//! Kubernetes source the control plane is built from) and a shell image (Debian's static
//! busybox) for tests that need a command to run. One uncompressed layer, one manifest, an index
//! naming the image: the format `ctr` imports (OCI image layout, in a tar).

use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// The pod sandbox image containerd runs for every pod (its `sandbox_image`).
pub const PAUSE_IMAGE: &str = "tenantry.local/pause:3.2";
/// A shell and the usual commands (busybox), for pods a test runs.
pub const BUSYBOX_IMAGE: &str = "tenantry.local/busybox:1";

/// One file of an image's root filesystem.
pub struct ImageFile<'a> {
    pub path: &'a str,
    pub source: &'a Path,
    pub mode: u32,
}

/// Writes the OCI archive of an image named `name` whose root filesystem holds `files` and
/// `links` (symlink path → target), and which runs `entrypoint`.
pub fn write_archive(
    archive: &Path,
    name: &str,
    files: &[ImageFile<'_>],
    links: &[(String, &str)],
    entrypoint: &[&str],
) -> Result<()> {
    let layer = layer(files, links).context(|| format!("building the layer of {name}"))?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": entrypoint, "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
    }))
    .expect("serialisable");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256(&config)), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer.len() }],
    }))
    .expect("serialisable");
    let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256(&manifest)),
            "size": manifest.len(),
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag },
        }],
    }))
    .expect("serialisable");

    let partial = archive.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut out = tar::Builder::new(fs::File::create(&partial)?);
        let mut add = |path: &str, content: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, path, content)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        for blob in [&layer, &config, &manifest] {
            add(&format!("blobs/sha256/{}", sha256(blob)), blob)?;
        }
        out.into_inner()?.flush()
    };
    write().context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, archive).context(|| format!("publishing {}", archive.display()))
}

fn layer(files: &[ImageFile<'_>], links: &[(String, &str)]) -> std::io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    for directory in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if directory == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        header.set_cksum();
        layer.append_data(&mut header, format!("{directory}/"), std::io::empty())?;
    }
    for file in files {
        let content = fs::read(file.source)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(file.mode);
        header.set_cksum();
        layer.append_data(&mut header, file.path, content.as_slice())?;
    }
    for (path, target) in links {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        layer.append_link(&mut header, path, target)?;
    }
    layer.into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
