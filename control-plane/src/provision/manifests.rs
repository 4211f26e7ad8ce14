//! Tenants as YAML files in a directory, for a GitOps tool to apply. A reader never sees half a
//! file: each is written beside its final name and renamed over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::provisioner::ProvisionError;
use crate::slug::Slug;

const HEADER: &str = "# Written by the Tenantry control plane from its provisioning outbox; edits are overwritten.\n";

/// `<dir>/<slug>.yaml`.
pub fn path_of(dir: &Path, slug: &Slug) -> PathBuf {
    dir.join(format!("{slug}.yaml"))
}

/// Creates the directory when missing and refuses a path that is something else.
pub async fn prepare_dir(dir: &Path) -> Result<(), ProvisionError> {
    let io = |source| ProvisionError::Io { path: dir.to_path_buf(), source };
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let metadata = tokio::fs::metadata(dir).await.map_err(io)?;
    if !metadata.is_dir() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory")));
    }
    Ok(())
}

pub async fn write(dir: &Path, slug: &Slug, object: &serde_json::Value) -> Result<(), ProvisionError> {
    let yaml = format!("{HEADER}{}", serde_yaml::to_string(object)?);
    let dir = dir.to_path_buf();
    let slug = slug.clone();
    tokio::task::spawn_blocking(move || write_atomically(&dir, &slug, yaml.as_bytes()))
        .await
        .expect("the manifest writer does not panic")
}

/// Missing is as good as removed.
pub async fn remove(dir: &Path, slug: &Slug) -> Result<(), ProvisionError> {
    let path = path_of(dir, slug);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ProvisionError::Io { path, source }),
    }
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || sync_dir(&dir)).await.expect("syncing a directory does not panic")
}

fn write_atomically(dir: &Path, slug: &Slug, contents: &[u8]) -> Result<(), ProvisionError> {
    let target = path_of(dir, slug);
    // A dot file, so tools that read `*.yaml` never pick up a file being written; unique per
    // writer, so two replicas writing the same tenant never share one.
    let temp = dir.join(format!(".{slug}.yaml.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|source| ProvisionError::Io { path: temp.clone(), source })?;
        file.write_all(contents).map_err(|source| ProvisionError::Io { path: temp.clone(), source })?;
        // Durable before it becomes visible: after a power loss the name points at whole data.
        file.sync_all().map_err(|source| ProvisionError::Io { path: temp.clone(), source })?;
        std::fs::rename(&temp, &target).map_err(|source| ProvisionError::Io { path: target.clone(), source })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ProvisionError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ProvisionError::Io { path: dir.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rewrite_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let slug = Slug::parse("acme").unwrap();
        write(dir.path(), &slug, &serde_json::json!({"spec": {"seats": 1}})).await.unwrap();
        write(dir.path(), &slug, &serde_json::json!({"spec": {"seats": 2}})).await.unwrap();
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["acme.yaml"]);
        let text = std::fs::read_to_string(path_of(dir.path(), &slug)).unwrap();
        assert!(text.starts_with("# Written by"), "{text}");
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, serde_json::json!({"spec": {"seats": 2}}));
    }

    #[tokio::test]
    async fn removing_a_missing_file_is_done() {
        let dir = tempfile::tempdir().unwrap();
        remove(dir.path(), &Slug::parse("acme").unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn a_file_where_the_directory_should_be_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manifests");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare_dir(&file).await.is_err());
    }
}
