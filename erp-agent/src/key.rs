//! A tenant's backup key: an [age](https://age-encryption.org/v1) X25519 identity.
//!
//! Backups are encrypted to the tenant's [`BackupRecipient`] (the public half, `age1…`), which is
//! all a scheduled backup needs: the [`BackupKey`] (the secret half, `AGE-SECRET-KEY-1…`) that
//! can read them need not be where they are written. Both use age's documented text forms, and a
//! key file is written the way `age-keygen` writes one, so in a disaster a provider can decrypt
//! a backup with the standard tools and no Tenantry code:
//!
//! ```text
//! age -d -i tenant.key archive.tar.zst.age | zstd -d | tar -x
//! cat database/part-* > database.dump
//! ```
//!
//! The secret never appears in `Debug` output or in an error: `Debug` shows the public key only,
//! and a key that does not parse is reported without its text.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Whether a key file of this mode and owner is private. Its owner alone may read it (0600 or
/// stricter), with one exception, the one PostgreSQL makes for its server's key: a file owned by
/// root may also be readable, not writable, by its group (0640, 0440). That is what a
/// Kubernetes Secret volume gives a pod that runs as a non-root user with an `fsGroup`: the
/// files stay root's, and the group is the pod's alone.
fn is_private(mode: u32, owner: u32) -> bool {
    let open = if owner == 0 { 0o027 } else { 0o077 };
    mode & open == 0
}

/// The secret half of a tenant's backup key: decrypts the tenant's backups.
#[derive(Clone)]
pub struct BackupKey(age::x25519::Identity);

impl BackupKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// Reads a key from its text: the `AGE-SECRET-KEY-1…` line, alone or in an `age-keygen` key
    /// file (comment lines starting with `#` and blank lines are skipped). Exactly one key.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
        let (Some(line), None) = (keys.next(), keys.next()) else {
            return Err(Error::Key("expected exactly one AGE-SECRET-KEY-1… line".into()));
        };
        // age's own parse error is a fixed phrase, never the input.
        age::x25519::Identity::from_str(line).map(Self).map_err(|e| Error::Key(format!("not an age X25519 key: {e}")))
    }

    /// Reads a key file, refusing one that is not private ([`is_private`]): a key that others
    /// could read must be treated as leaked, not used.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |source| Error::Io { what: "reading the backup key", path: path.to_path_buf(), source };
        let metadata = fs::metadata(path).map_err(io)?;
        let mode = metadata.permissions().mode() & 0o777;
        if !is_private(mode, metadata.uid()) {
            return Err(Error::Key(format!(
                "{} is open to its group or others (mode {mode:o}, owner uid {}); make it 0600, or owned by root and \
                 readable by its group only",
                path.display(),
                metadata.uid()
            )));
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        Self::parse(&text)
    }

    /// Writes the key to a new file of mode 0600 in `age-keygen`'s format (a comment with the
    /// public key, then the secret). Never overwrites an existing file: replacing a key would
    /// make every backup made with it unreadable.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io { what: "writing the backup key", path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
        let text = Zeroizing::new(format!(
            "# created: {}\n# public key: {}\n{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.recipient(),
            self.0.to_string().expose_secret()
        ));
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io)
    }

    /// The key's text, `AGE-SECRET-KEY-1…`, for storing it elsewhere (a Kubernetes Secret);
    /// wiped from memory when dropped.
    pub fn expose_secret(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string().expose_secret().to_string())
    }

    /// The public half, to which backups are encrypted.
    pub fn recipient(&self) -> BackupRecipient {
        BackupRecipient(self.0.to_public())
    }

    pub(crate) fn identity(&self) -> &age::x25519::Identity {
        &self.0
    }
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKey(public: {})", self.recipient())
    }
}

/// The public half of a tenant's backup key (`age1…`): encrypts backups, cannot read them.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupRecipient(age::x25519::Recipient);

impl BackupRecipient {
    pub fn parse(text: &str) -> Result<Self> {
        age::x25519::Recipient::from_str(text.trim())
            .map(Self)
            .map_err(|e| Error::Key(format!("not an age X25519 recipient (age1…): {e}")))
    }

    /// A short name of the key (16 hex digits of the SHA-256 of `age1…`), kept in plaintext
    /// summaries: it tells "encrypted to another key" from "damaged" without publishing the
    /// recipient itself (with which anyone could make archives that decrypt).
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.to_string().as_bytes())[..8])
    }

    pub(crate) fn age(&self) -> &age::x25519::Recipient {
        &self.0
    }
}

impl FromStr for BackupRecipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for BackupRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for BackupRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupRecipient({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_text_and_a_key_file() {
        let key = BackupKey::generate();
        let again = BackupKey::parse(&key.expose_secret()).unwrap();
        assert_eq!(again.recipient(), key.recipient());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.key");
        key.write_new(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("# public key: {}", key.recipient())), "{text}");
        assert_eq!(BackupKey::load(&path).unwrap().recipient(), key.recipient());
        // A second key must never replace the first.
        let err = BackupKey::generate().write_new(&path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(BackupKey::load(&path).unwrap().recipient(), key.recipient());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let key = BackupKey::generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.key");
        key.write_new(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = BackupKey::load(&path).unwrap_err();
        assert!(matches!(err, Error::Key(_)), "{err}");
        assert!(err.to_string().contains("644"), "{err}");
    }

    #[test]
    fn only_root_may_share_a_key_file_with_its_group_and_only_for_reading() {
        const USER: u32 = 65532;
        for mode in [0o600, 0o400] {
            assert!(is_private(mode, USER) && is_private(mode, 0), "{mode:o}");
        }
        // A Secret volume's file with an fsGroup: root's, readable by the pod's group.
        for mode in [0o640, 0o440] {
            assert!(is_private(mode, 0), "{mode:o}");
            assert!(!is_private(mode, USER), "{mode:o}");
        }
        for mode in [0o660, 0o620, 0o604, 0o644, 0o666, 0o601] {
            assert!(!is_private(mode, 0) && !is_private(mode, USER), "{mode:o}");
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug_or_errors() {
        let key = BackupKey::generate();
        let secret = key.expose_secret();
        let debug = format!("{key:?}");
        assert!(!debug.contains(secret.as_str()) && !debug.contains("AGE-SECRET-KEY"), "{debug}");
        assert!(debug.contains(&key.recipient().to_string()), "{debug}");
        // A damaged key (one character changed) is refused without quoting it.
        let mut damaged = secret.to_string();
        let last = damaged.pop().unwrap();
        damaged.push(if last == 'Q' { 'P' } else { 'Q' });
        let err = BackupKey::parse(&damaged).unwrap_err();
        assert!(!err.to_string().contains(&damaged[20..]), "{err}");
        assert!(matches!(BackupKey::parse("# only a comment\n"), Err(Error::Key(_))));
        let two = format!("{}\n{}\n", key.expose_secret().as_str(), BackupKey::generate().expose_secret().as_str());
        assert!(matches!(BackupKey::parse(&two), Err(Error::Key(_))));
    }

    #[test]
    fn recipients_parse_and_fingerprint() {
        let key = BackupKey::generate();
        let recipient = BackupRecipient::parse(&key.recipient().to_string()).unwrap();
        assert_eq!(recipient, key.recipient());
        assert_eq!(recipient.fingerprint().len(), 16);
        assert_ne!(recipient.fingerprint(), BackupKey::generate().recipient().fingerprint());
        assert!(BackupRecipient::parse("age1notakey").is_err());
        assert!(BackupRecipient::parse(&key.expose_secret()).is_err());
    }
}
