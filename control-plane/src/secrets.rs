//! Sealing of small secrets the control plane must be able to read back (webhook signing
//! secrets), so the database never holds them in the clear.
//!
//! Format of a sealed value: `[version][96-bit nonce][AES-256-GCM ciphertext + tag]`. The version
//! byte is authenticated as associated data, so it cannot be swapped, and leaves room for a
//! later scheme (or key rotation) without guessing what an old row contains.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Prefix of generated webhook secrets, so a leaked one is recognisable in secret scanners.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("sealed secret is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("sealed secret has unknown format version {0}")]
    UnknownVersion(u8),
    /// Either the value was modified or it was sealed under another key.
    #[error("sealed secret failed authentication (modified, or sealed under another key)")]
    Unauthentic,
}

/// Seals and unseals secrets under the control plane's 32-byte secret key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<LessSafeKey>,
    rng: SystemRandom,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        // AES-256-GCM takes exactly 32 bytes, which the type guarantees.
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_slice()).expect("a 32-byte AES-256 key");
        Self { key: Arc::new(LessSafeKey::new(unbound)), rng: SystemRandom::new() }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing means the OS cannot give randomness at all; sealing with a
        // predictable nonce would be worse than stopping.
        self.rng.fill(&mut nonce).expect("the operating system's random number generator failed");
        let mut sealed = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut sealed[HEADER_LEN..],
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail below its 64 GiB limit");
        sealed.extend_from_slice(tag.as_ref());
        sealed
    }

    /// The plaintext, wiped from memory when dropped.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(SecretsError::Truncated(sealed.len()));
        }
        let version = sealed[0];
        if version != VERSION {
            return Err(SecretsError::UnknownVersion(version));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..HEADER_LEN]).map_err(|_| SecretsError::Unauthentic)?;
        let mut buffer = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from([version]), buffer.as_mut_slice())
            .map_err(|_| SecretsError::Unauthentic)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("key", &"<redacted>").finish()
    }
}

/// A new webhook signing secret: 32 random bytes, base64url, prefixed `whsec_`.
pub fn generate_secret() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(bytes.as_mut_slice()).expect("the operating system's random number generator failed");
    format!("{WEBHOOK_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new([byte; 32])
    }

    #[test]
    fn round_trip() {
        let sealer = sealer(7);
        for plaintext in [&b""[..], b"whsec_abc", &[0u8; 300]] {
            let sealed = sealer.seal(plaintext);
            assert_eq!(sealed.len(), HEADER_LEN + plaintext.len() + TAG_LEN);
            assert_eq!(sealed[0], VERSION);
            assert_eq!(sealer.unseal(&sealed).unwrap().as_slice(), plaintext);
        }
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let sealer = sealer(7);
        let a = sealer.seal(b"whsec_same");
        let b = sealer.seal(b"whsec_same");
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!a.windows(10).any(|w| w == b"whsec_same"), "no plaintext in the sealed bytes");
    }

    #[test]
    fn tampering_is_detected_anywhere() {
        let sealer = sealer(7);
        let sealed = sealer.seal(b"whsec_secret");
        for index in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert_eq!(sealer.unseal(&tampered).unwrap_err(), SecretsError::Unauthentic, "byte {index}");
        }
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        assert_eq!(sealer.unseal(&other_version).unwrap_err(), SecretsError::UnknownVersion(2));
        assert_eq!(sealer.unseal(&sealed[..sealed.len() - 1]).unwrap_err(), SecretsError::Unauthentic);
        assert_eq!(sealer.unseal(&sealed[..HEADER_LEN]).unwrap_err(), SecretsError::Truncated(HEADER_LEN));
        assert_eq!(sealer.unseal(&[]).unwrap_err(), SecretsError::Truncated(0));
    }

    #[test]
    fn another_key_cannot_unseal() {
        let sealed = sealer(7).seal(b"whsec_secret");
        assert_eq!(sealer(8).unseal(&sealed).unwrap_err(), SecretsError::Unauthentic);
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", Sealer::new([0xAB; 32]));
        assert_eq!(text, r#"Sealer { key: "<redacted>" }"#);
    }

    #[test]
    fn generated_secrets_are_prefixed_random_and_url_safe() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        let encoded = a.strip_prefix(WEBHOOK_SECRET_PREFIX).expect("prefix");
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len(), 32);
        assert!(encoded.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
    }
}
