//! Secret bytes (JWT keys, the sealing key): never shown by `Debug`, read from base64 text, and
//! generated once into a private file of the data directory when none is configured.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Secret bytes. `Debug` shows only that there is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Standard or URL-safe base64, padded or not.
    pub fn from_base64(text: &str) -> Option<Self> {
        const LENIENT: GeneralPurposeConfig =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let text = text.trim();
        [
            GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT),
            GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT),
        ]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .filter(|bytes| !bytes.is_empty())
        .map(Self)
    }

    pub fn to_base64(&self) -> String {
        general_purpose::STANDARD.encode(&self.0)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0; len];
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The error must not echo the text: it is the secret.
        let text = String::deserialize(deserializer)?;
        Self::from_base64(&text).ok_or_else(|| serde::de::Error::custom("a secret must be non-empty base64"))
    }
}

/// A secret from a file holding its base64 text (a mounted Kubernetes Secret, for instance).
pub fn read_key_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    Secret::from_base64(&text)
        .ok_or_else(|| ConfigError::KeyFile { path: path.to_path_buf(), problem: "does not hold base64 text".into() })
}

/// The content of `path`, created with `generate()` the first time. The file is private (0600)
/// and appears complete or not at all, even when two processes start at once.
pub fn load_or_create_private_file(path: &Path, generate: impl FnOnce() -> String) -> Result<String, ConfigError> {
    match read_private_file(path) {
        Ok(text) => return Ok(text),
        Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(other) => return Err(other),
    }
    let io_error = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(directory).map_err(io_error)?;
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary: PathBuf =
        directory.join(format!(".{file_name}.{}.{:08x}.tmp", std::process::id(), rand::random::<u32>()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(generate().as_bytes())?;
        file.sync_all()?;
        // A hard link never replaces an existing file: whoever links first wins, and everyone
        // then reads the winner's content.
        match fs::hard_link(&temporary, path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = fs::remove_file(&temporary);
    written.map_err(io_error)?;
    read_private_file(path)
}

fn read_private_file(path: &Path) -> Result<String, ConfigError> {
    let io_error = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let mode = fs::metadata(path).map_err(io_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::KeyFile {
            path: path.to_path_buf(),
            problem: format!("is readable by others (mode {:o}); run `chmod 600` on it", mode & 0o777),
        });
    }
    fs::read_to_string(path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let secret = Secret::new(b"hunter2-hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn base64_in_both_alphabets() {
        let bytes: Vec<u8> = (0..=255).collect();
        let standard = general_purpose::STANDARD.encode(&bytes);
        let url_safe = general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(Secret::from_base64(&standard).unwrap().expose(), &bytes[..]);
        assert_eq!(Secret::from_base64(&url_safe).unwrap().expose(), &bytes[..]);
        assert_eq!(Secret::from_base64(&format!(" {standard}\n")).unwrap().expose(), &bytes[..]);
        assert!(Secret::from_base64("not base64!").is_none());
        assert!(Secret::from_base64("").is_none());
    }

    #[test]
    fn a_private_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/key");
        let first = load_or_create_private_file(&path, || "one".into()).unwrap();
        let second = load_or_create_private_file(&path, || "two".into()).unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create_private_file(&path, || "y".into()).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
