//! How values the two engines store differently are written and read: timestamps and JSON.
//!
//! PostgreSQL gets its native `timestamptz` and `jsonb`. SQLite has neither, and sqlx's own
//! SQLite timestamps are variable-width text that does not sort by time, so [`Ts`] writes a
//! fixed-width UTC text form there, and [`JsonDoc`] writes JSON text.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type, TypeInfo, ValueRef};

/// Now, at the microsecond precision both engines keep, so that what is written reads back equal.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A UTC instant, microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Ts {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }
}

impl From<Ts> for DateTime<Utc> {
    fn from(ts: Ts) -> Self {
        ts.0
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <str as Type<Sqlite>>::compatible(ty) || ty.name().eq_ignore_ascii_case("DATETIME")
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        // Fixed width (four-digit years, always six fraction digits, `Z`): text order is time order.
        let text = self.0.to_rfc3339_opts(SecondsFormat::Micros, true);
        <String as Encode<Sqlite>>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        let at = DateTime::parse_from_rfc3339(text).map_err(|e| format!("timestamp {text:?}: {e}"))?;
        Ok(Self(at.with_timezone(&Utc)))
    }
}

/// A JSON document: `jsonb` on PostgreSQL, text on SQLite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonDoc(pub serde_json::Value);

/// The built-in `jsonb` type's OID, fixed in every PostgreSQL since 9.4.
const JSONB_OID: Oid = Oid(3802);
/// `jsonb`'s binary format starts with a version byte; 1 is the only version there is.
const JSONB_VERSION: u8 = 1;

impl Type<Postgres> for JsonDoc {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSONB_OID)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.name().eq_ignore_ascii_case("jsonb") || ty.name().eq_ignore_ascii_case("json")
    }
}

impl Encode<'_, Postgres> for JsonDoc {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(JSONB_VERSION);
        serde_json::to_writer(&mut **buf, &self.0)?;
        Ok(IsNull::No)
    }
}

impl<'r> Decode<'r, Postgres> for JsonDoc {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let binary_jsonb =
            value.format() == PgValueFormat::Binary && value.type_info().name().eq_ignore_ascii_case("jsonb");
        let mut bytes = value.as_bytes()?;
        if binary_jsonb {
            match bytes.split_first() {
                Some((&JSONB_VERSION, rest)) => bytes = rest,
                _ => return Err("unsupported jsonb format version".into()),
            }
        }
        Ok(Self(serde_json::from_slice(bytes)?))
    }
}

impl Type<Sqlite> for JsonDoc {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <str as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for JsonDoc {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for JsonDoc {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self(serde_json::from_str(text)?))
    }
}

/// A value read from the database that does not make sense (a bad enum name, a negative count):
/// reported like any other decoding failure.
pub(crate) fn corrupt(what: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(what.into().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_order_is_time_order() {
        let early: DateTime<Utc> = "2026-03-01T09:00:00.25Z".parse().unwrap();
        let late: DateTime<Utc> = "2026-03-01T09:00:00.5Z".parse().unwrap();
        let text = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        assert_eq!(text(late), "2026-03-01T09:00:00.500000Z");
        assert!(text(early) < text(late), "plain RFC 3339 would sort .5 before .25");
    }

    #[test]
    fn instants_keep_microseconds() {
        let at: DateTime<Utc> = "2026-03-01T09:00:00.123456789Z".parse().unwrap();
        assert_eq!(Ts::from(at).0.to_rfc3339_opts(SecondsFormat::Nanos, true), "2026-03-01T09:00:00.123456000Z");
    }
}
