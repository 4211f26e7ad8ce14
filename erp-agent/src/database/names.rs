//! Names of the databases (and, with the same name, file-store folders) an operation creates
//! beside a tenant's database:
//!
//! - `<db>__work_<operation id>`: the copy an update, upgrade or restore works on; it replaces
//!   `<db>` only once proven good.
//! - `<db>__replaced_<UTC time, YYYYMMDDTHHMMSSmmmZ>`: the original, renamed aside at cut-over
//!   and kept until the caller releases it. Milliseconds, so two operations of one environment
//!   within one second do not collide (names of earlier versions, to the second, still parse).
//!
//! Both are derived from the tenant's name, so listing by the prefix `<db>__` finds every
//! leftover of every operation. PostgreSQL silently truncates identifiers to 63 bytes, which
//! would make two names collide; a name that does not fit is refused instead.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::error::{Error, Result};

/// PostgreSQL's identifier limit (`NAMEDATALEN - 1`), in bytes.
pub const MAX_NAME_BYTES: usize = 63;

/// What separates a tenant's database name from the suffix of a derived name; a tenant's own
/// name may not contain it, so a derived name parses back without ambiguity.
const SEPARATOR: &str = "__";
const WORK: &str = "work_";
const REPLACED: &str = "replaced_";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%3fZ";
/// The kept names of earlier versions, to the second.
const SECONDS_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A database name PostgreSQL keeps as it is (1 to 63 bytes, no NUL). Any other character is
/// allowed: [`DatabaseName::quoted`] makes it safe in SQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatabaseName(String);

impl DatabaseName {
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Error::Invalid(format!(
                "database name `{name}` must be 1 to {MAX_NAME_BYTES} bytes long (it is {})",
                name.len()
            )));
        }
        if name.contains('\0') {
            return Err(Error::Invalid("a database name cannot contain a NUL character".into()));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an SQL identifier: in double quotes, inner quotes doubled.
    pub fn quoted(&self) -> String {
        quote_identifier(&self.0)
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DatabaseName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `identifier` in double quotes, inner double quotes doubled: safe in SQL whatever it holds.
pub fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The prefix every name derived from `tenant_database` starts with (`<db>__`).
pub fn derived_prefix(tenant_database: &DatabaseName) -> String {
    format!("{tenant_database}{SEPARATOR}")
}

/// `<db>__work_<operation id>`. The operation id is 1–32 ASCII letters, digits or `-`.
pub fn work_copy_name(tenant_database: &DatabaseName, operation_id: &str) -> Result<DatabaseName> {
    let valid = !operation_id.is_empty()
        && operation_id.len() <= 32
        && operation_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(Error::Invalid(format!(
            "operation id `{operation_id}` must be 1 to 32 ASCII letters, digits or `-`"
        )));
    }
    derive(tenant_database, &format!("{WORK}{operation_id}"))
}

/// `<db>__replaced_<YYYYMMDDTHHMMSSmmmZ>` for an original set aside at `at` (millisecond
/// precision).
pub fn replaced_name(tenant_database: &DatabaseName, at: DateTime<Utc>) -> Result<DatabaseName> {
    derive(tenant_database, &format!("{REPLACED}{}", at.format(TIME_FORMAT)))
}

fn derive(tenant_database: &DatabaseName, suffix: &str) -> Result<DatabaseName> {
    if tenant_database.as_str().contains(SEPARATOR) {
        return Err(Error::Invalid(format!(
            "database `{tenant_database}` contains `{SEPARATOR}`, which is reserved for the names operations derive from it"
        )));
    }
    let name = format!("{tenant_database}{SEPARATOR}{suffix}");
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::Invalid(format!(
            "`{name}` is longer than PostgreSQL's {MAX_NAME_BYTES} bytes; the tenant's database name `{tenant_database}` is too long for the names operations derive from it"
        )));
    }
    DatabaseName::new(name)
}

/// What a derived name says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derived {
    /// A work copy of operation `operation_id`.
    WorkCopy { tenant_database: String, operation_id: String },
    /// An original replaced at `replaced_at`.
    Replaced { tenant_database: String, replaced_at: DateTime<Utc> },
}

/// Reads back a name made by [`work_copy_name`] or [`replaced_name`]; `None` for any other.
pub fn parse_derived(name: &str) -> Option<Derived> {
    let (tenant_database, suffix) = name.split_once(SEPARATOR)?;
    if tenant_database.is_empty() {
        return None;
    }
    if let Some(operation_id) = suffix.strip_prefix(WORK) {
        let valid = !operation_id.is_empty() && operation_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        return valid.then(|| Derived::WorkCopy {
            tenant_database: tenant_database.to_string(),
            operation_id: operation_id.to_string(),
        });
    }
    let time = suffix.strip_prefix(REPLACED)?;
    let replaced_at = NaiveDateTime::parse_from_str(time, TIME_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(time, SECONDS_TIME_FORMAT))
        .ok()?
        .and_utc();
    Some(Derived::Replaced { tenant_database: tenant_database.to_string(), replaced_at })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn name(text: &str) -> DatabaseName {
        DatabaseName::new(text).unwrap()
    }

    #[test]
    fn derived_names_round_trip() {
        let db = name("tenant_acme");
        let work = work_copy_name(&db, "op-42").unwrap();
        assert_eq!(work.as_str(), "tenant_acme__work_op-42");
        assert_eq!(
            parse_derived(work.as_str()),
            Some(Derived::WorkCopy { tenant_database: "tenant_acme".into(), operation_id: "op-42".into() })
        );
        let at = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 7).unwrap() + chrono::Duration::milliseconds(42);
        let replaced = replaced_name(&db, at).unwrap();
        assert_eq!(replaced.as_str(), "tenant_acme__replaced_20260228T235907042Z");
        assert_eq!(
            parse_derived(replaced.as_str()),
            Some(Derived::Replaced { tenant_database: "tenant_acme".into(), replaced_at: at })
        );
        assert!(work.as_str().starts_with(&derived_prefix(&db)));
        assert!(replaced.as_str().starts_with(&derived_prefix(&db)));
        for other in [
            "tenant_acme",
            "tenant_acme__backup",
            "a__replaced_20260228T23590742Z",
            "__work_x",
            "a__replaced_2026",
            "a__work_",
            "a__work_x y",
        ] {
            assert_eq!(parse_derived(other), None, "{other}");
        }
    }

    #[test]
    fn two_originals_set_aside_within_one_second_get_two_names() {
        let db = name("acme");
        let first = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 7).unwrap() + chrono::Duration::milliseconds(5);
        let second = first + chrono::Duration::milliseconds(1);
        assert_ne!(replaced_name(&db, first).unwrap(), replaced_name(&db, second).unwrap());
    }

    #[test]
    fn a_name_kept_by_an_earlier_version_still_parses() {
        let at = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 7).unwrap();
        assert_eq!(
            parse_derived("tenant_acme__replaced_20260228T235907Z"),
            Some(Derived::Replaced { tenant_database: "tenant_acme".into(), replaced_at: at })
        );
    }

    #[test]
    fn names_that_postgres_would_truncate_are_refused() {
        let longest = "a".repeat(MAX_NAME_BYTES);
        assert!(DatabaseName::new(&longest).is_ok());
        assert!(DatabaseName::new(format!("{longest}b")).is_err());
        assert!(DatabaseName::new("").is_err());
        assert!(DatabaseName::new("a\0b").is_err());
        // 63 bytes exactly fit; one more tenant byte does not.
        let fits = name(&"t".repeat(MAX_NAME_BYTES - "__work_op".len()));
        assert_eq!(work_copy_name(&fits, "op").unwrap().as_str().len(), MAX_NAME_BYTES);
        let too_long = name(&"t".repeat(MAX_NAME_BYTES - "__work_op".len() + 1));
        assert!(work_copy_name(&too_long, "op").is_err());
        // Multi-byte characters count in bytes, as PostgreSQL counts them.
        assert!(DatabaseName::new("é".repeat(32)).is_err());
    }

    #[test]
    fn operation_ids_and_tenant_names_are_checked() {
        let db = name("acme");
        for bad in ["", "a b", "x;drop", "é", &"x".repeat(33)] {
            assert!(work_copy_name(&db, bad).is_err(), "{bad:?} accepted");
        }
        assert!(work_copy_name(&name("acme__work_1"), "2").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(name("acme").quoted(), "\"acme\"");
        assert_eq!(name("we\"ird name").quoted(), "\"we\"\"ird name\"");
    }
}
