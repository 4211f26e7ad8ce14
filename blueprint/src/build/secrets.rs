//! The generated Secrets: the PostgreSQL password, the ERP master password and the tenant's
//! backup key (an age X25519 identity and its recipient). Their values are
//! made once by the caller ([`GeneratedSecrets::generate`]) and the Secrets are created once and
//! never updated: the database was initialised with that password, and nothing may silently
//! replace it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::common::{Component, DATABASE_USER, child, labels_for, metadata, tenant_labels};
use super::{BACKUP_KEY, BuildContext, Child, DATABASE_SECRET, MASTER_PASSWORD_SECRET};

/// Keys of the two Secrets.
pub(crate) use tenantry_contract::names::secrets as keys;

const PASSWORD_LENGTH: usize = 32;

pub struct GeneratedSecrets {
    pub database_password: String,
    pub master_password: String,
    pub master_password_hash: String,
    /// `AGE-SECRET-KEY-1…`: reads the tenant's backups.
    pub backup_key: String,
    /// `age1…`: what backups are encrypted to.
    pub backup_recipient: String,
}

impl GeneratedSecrets {
    /// Fresh values from the thread's CSPRNG: 32 alphanumeric characters each (about 190 bits,
    /// and safe inside a database URI without escaping).
    pub fn generate() -> Self {
        let master_password = random_password();
        // Default rounds, which every crypt(3) reads without a `rounds=` field; a 190-bit random
        // password gains nothing from a slower hash.
        let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("the default rounds are valid");
        let master_password_hash =
            sha_crypt::sha512_simple(&master_password, &params).expect("hashing with valid rounds cannot fail");
        let key = age::x25519::Identity::generate();
        let backup_key = age::secrecy::ExposeSecret::expose_secret(&key.to_string()).to_string();
        Self {
            database_password: random_password(),
            master_password,
            master_password_hash,
            backup_key,
            backup_recipient: key.to_public().to_string(),
        }
    }
}

fn random_password() -> String {
    rand::rng().sample_iter(Alphanumeric).take(PASSWORD_LENGTH).map(char::from).collect()
}

/// By hand, so that no log line ever shows a value.
impl fmt::Debug for GeneratedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSecrets")
            .field("database_password", &"<redacted>")
            .field("master_password", &"<redacted>")
            .field("master_password_hash", &"<redacted>")
            .field("backup_key", &"<redacted>")
            .field("backup_recipient", &self.backup_recipient)
            .finish()
    }
}

pub(crate) fn children(ctx: &BuildContext, values: &GeneratedSecrets) -> Vec<Child> {
    let database = secret(
        ctx,
        DATABASE_SECRET,
        labels_for(ctx.model, Some(Component::Database), None),
        [(keys::USERNAME, DATABASE_USER), (keys::PASSWORD, &values.database_password)],
    );
    let master = secret(
        ctx,
        MASTER_PASSWORD_SECRET,
        tenant_labels(ctx.model),
        [(keys::PASSWORD, &values.master_password), (keys::PASSWORD_HASH, &values.master_password_hash)],
    );
    // A key file ends with a newline, as age writes one.
    let key_file = format!("{}\n", values.backup_key);
    let backup_key = secret(
        ctx,
        BACKUP_KEY,
        tenant_labels(ctx.model),
        [(keys::KEY, key_file.as_str()), (keys::RECIPIENT, &values.backup_recipient)],
    );
    vec![child(&database, true), child(&master, true), child(&backup_key, true)]
}

/// `data` rather than `stringData`: `data` is what the apiserver stores and returns, so the
/// caller can compare this object with what it reads back.
fn secret<const N: usize>(
    ctx: &BuildContext,
    name: &str,
    labels: BTreeMap<String, String>,
    entries: [(&str, &str); N],
) -> Secret {
    Secret {
        metadata: metadata(ctx, name, labels),
        type_: Some("Opaque".into()),
        data: Some(
            entries.into_iter().map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec()))).collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{Fixture, fixture};

    fn is_password(value: &str) -> bool {
        value.len() == PASSWORD_LENGTH && value.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    #[test]
    fn generated_values_are_distinct_alphanumeric_and_the_hash_verifies() {
        let first = GeneratedSecrets::generate();
        let second = GeneratedSecrets::generate();
        assert!(is_password(&first.database_password) && is_password(&first.master_password));
        assert_ne!(first.database_password, first.master_password);
        assert_ne!(first.master_password, second.master_password);
        assert_ne!(first.database_password, second.database_password);
        assert!(first.master_password_hash.starts_with("$6$"));
        assert!(sha_crypt::sha512_check(&first.master_password, &first.master_password_hash).is_ok());
        assert!(sha_crypt::sha512_check(&second.master_password, &first.master_password_hash).is_err());
    }

    #[test]
    fn debug_shows_no_value() {
        let values = GeneratedSecrets::generate();
        let debug = format!("{values:?}");
        for secret in
            [&values.database_password, &values.master_password, &values.master_password_hash, &values.backup_key]
        {
            assert!(!debug.contains(secret.as_str()));
        }
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn secrets_are_create_only_opaque_and_carry_base64_data() {
        let fx = Fixture::new(fixture());
        let values = GeneratedSecrets {
            database_password: "db0123456789".into(),
            master_password: "master0123456789".into(),
            master_password_hash: "$6$salt$hash".into(),
            backup_key: "AGE-SECRET-KEY-1TEST".into(),
            backup_recipient: "age1test".into(),
        };
        let children = children(&fx.ctx(), &values);
        assert!(children.iter().all(|c| c.create_only && c.resource.kind == "Secret"));
        let database: Secret = serde_json::from_value(children[0].body.clone()).unwrap();
        assert_eq!(children[0].name, DATABASE_SECRET);
        assert_eq!(children[0].body["type"], "Opaque");
        assert!(children[0].body.get("stringData").is_none());
        // "erp" in base64: the JSON holds what the apiserver stores.
        assert_eq!(children[0].body["data"]["username"], "ZXJw");
        assert_eq!(database.data.as_ref().unwrap()["password"].0, b"db0123456789");
        let master: Secret = serde_json::from_value(children[1].body.clone()).unwrap();
        assert_eq!(children[1].name, MASTER_PASSWORD_SECRET);
        let data = master.data.unwrap();
        assert_eq!(data["password"].0, b"master0123456789");
        assert_eq!(data["password-hash"].0, b"$6$salt$hash");
        let key: Secret = serde_json::from_value(children[2].body.clone()).unwrap();
        assert_eq!(children[2].name, BACKUP_KEY);
        let data = key.data.unwrap();
        assert_eq!(data["key"].0, b"AGE-SECRET-KEY-1TEST\n");
        assert_eq!(data["recipient"].0, b"age1test");
    }

    #[test]
    fn the_backup_key_and_its_recipient_are_a_pair() {
        let values = GeneratedSecrets::generate();
        let key: age::x25519::Identity = values.backup_key.parse().unwrap();
        assert_eq!(key.to_public().to_string(), values.backup_recipient);
        assert_ne!(GeneratedSecrets::generate().backup_key, values.backup_key);
    }
}
