//! The webhook signature: `Tenantry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<body>"`, keyed with the endpoint's secret (the whole `whsec_…` string as UTF-8).
//! The timestamp is signed so a captured request cannot be replayed outside the tolerance.

use std::time::Duration;

use ring::hmac;

pub const SIGNATURE_HEADER: &str = "Tenantry-Signature";
pub const EVENT_ID_HEADER: &str = "Tenantry-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Tenantry-Event-Type";

/// A header longer than this is not ours; refusing it early bounds the work of `verify`.
const MAX_HEADER_LEN: usize = 4096;

/// The `Tenantry-Signature` header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let timestamp = timestamp.to_string();
    let tag = hmac::sign(&key, &signed_message(&timestamp, body));
    format!("t={timestamp},v1={}", hex(tag.as_ref()))
}

/// Whether `header` is a valid signature of `body` under `secret`, made within `tolerance` of
/// `now` (unix seconds). Several `v1` entries are accepted (any may match), so a sender can
/// sign with an old and a new secret while receivers rotate. Comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    if header.len() > MAX_HEADER_LEN {
        return false;
    }
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return false;
        };
        match name {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return false,
            "v1" => candidates.push(value),
            // Later schemes may add entries; ignoring them keeps this receiver working.
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    let Ok(sent) = timestamp.parse::<i64>() else {
        return false;
    };
    if u128::from(sent.abs_diff(now)) > tolerance.as_millis() / 1000 {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let message = signed_message(timestamp, body);
    candidates.into_iter().filter_map(unhex).any(|tag| hmac::verify(&key, &message, &tag).is_ok())
}

fn signed_message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test-secret";
    const TOLERANCE: Duration = Duration::from_secs(300);
    const NOW: i64 = 1_750_000_000;

    #[test]
    fn a_signature_verifies() {
        let body = br#"{"id":"e1","type":"tenant.created"}"#;
        let header = sign(SECRET, NOW, body);
        assert!(header.starts_with(&format!("t={NOW},v1=")), "{header}");
        assert_eq!(header.len(), format!("t={NOW},v1=").len() + 64);
        assert!(verify(SECRET, &header, body, NOW, TOLERANCE));
        assert!(verify(SECRET, &header, body, NOW + 300, TOLERANCE));
        assert!(verify(SECRET, &header, body, NOW - 300, TOLERANCE));
    }

    #[test]
    fn known_answer() {
        // `printf 0.body | openssl dgst -sha256 -hmac key`
        assert_eq!(sign(b"key", 0, b"body"), "t=0,v1=e0af04d5c83b24373ff89f540d0c8fd9a4e097e2b3ee8318ab5541047697626d");
    }

    #[test]
    fn tampering_is_refused() {
        let body = br#"{"seats":3}"#;
        let header = sign(SECRET, NOW, body);
        assert!(!verify(SECRET, &header, br#"{"seats":4}"#, NOW, TOLERANCE), "other body");
        assert!(!verify(b"whsec_other", &header, body, NOW, TOLERANCE), "other secret");
        let shifted = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert!(!verify(SECRET, &shifted, body, NOW, TOLERANCE), "other timestamp");
        assert!(!verify(SECRET, &header, body, NOW + 301, TOLERANCE), "too old");
        assert!(!verify(SECRET, &header, body, NOW - 301, TOLERANCE), "from the future");
    }

    #[test]
    fn malformed_headers_are_refused() {
        let body = b"{}";
        let good = sign(SECRET, NOW, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        for header in [
            String::new(),
            format!("v1={v1}"),
            format!("t={NOW}"),
            format!("t=abc,v1={v1}"),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t={NOW},v1={}", &v1[1..]),
            format!("t={NOW},v1=zz{}", &v1[2..]),
            format!("t={NOW};v1={v1}"),
            format!("t={NOW},v1={v1},{}", "x".repeat(MAX_HEADER_LEN)),
        ] {
            assert!(!verify(SECRET, &header, body, NOW, TOLERANCE), "{header:?}");
        }
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let body = b"{}";
        let old = sign(b"whsec_old", NOW, body);
        let new = sign(SECRET, NOW, body);
        let both = format!("{old},v1={},v0=ignored", new.split_once(",v1=").unwrap().1);
        assert!(verify(SECRET, &both, body, NOW, TOLERANCE));
        assert!(verify(b"whsec_old", &both, body, NOW, TOLERANCE));
        assert!(!verify(b"whsec_third", &both, body, NOW, TOLERANCE));
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("+1"), None);
    }
}
