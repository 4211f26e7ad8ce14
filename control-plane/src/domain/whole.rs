//! Whole numbers as JSON writes them. JSON has a single number type and JSON Schema's `integer`
//! is any number without a fractional part, so `18.0` is the integer 18: a client (or a client
//! generated from the OpenAPI document) may send either form. These serde helpers accept both,
//! and refuse fractions and values outside the target type with a message naming the range.
//!
//! `#[serde(deserialize_with = "whole::deserialize")]` on a `u32` or `i64` field, and
//! `#[serde(default, deserialize_with = "whole::option")]` on an `Option` of one.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// An integer type a JSON number may be read into.
pub trait Whole: Sized + TryFrom<i128> {
    const MIN: i128;
    const MAX: i128;
}

impl Whole for u32 {
    const MIN: i128 = u32::MIN as i128;
    const MAX: i128 = u32::MAX as i128;
}

impl Whole for i64 {
    const MIN: i128 = i64::MIN as i128;
    const MAX: i128 = i64::MAX as i128;
}

/// A whole number: `18` or `18.0`, within `T`'s range.
pub fn deserialize<'de, D: Deserializer<'de>, T: Whole>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_i64(WholeVisitor(PhantomData))
}

/// An optional whole number (`null` or absent is `None`).
pub fn option<'de, D: Deserializer<'de>, T: Whole>(deserializer: D) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn within<E: de::Error>(value: i128) -> Result<T, E> {
        T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range: {} to {}", T::MIN, T::MAX)))
    }
}

impl<T: Whole> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a whole number from {} to {}", T::MIN, T::MAX)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Self::within(value.into())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Self::within(value.into())
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<T, E> {
        Self::within(value)
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<T, E> {
        Self::within(i128::try_from(value).unwrap_or(i128::MAX))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        if !value.is_finite() || value.fract() != 0.0 {
            return Err(E::custom(format!("{value} is not a whole number")));
        }
        // Every whole f64 within ±2^100 converts exactly; beyond, it is out of range anyway.
        if value.abs() >= 2f64.powi(100) {
            return Err(E::custom(format!("{value} is out of range: {} to {}", T::MIN, T::MAX)));
        }
        Self::within(value as i128)
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: Whole> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "null or a whole number from {} to {}", T::MIN, T::MAX)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(deserialize_with = "super::deserialize")]
        seats: u32,
        #[serde(deserialize_with = "super::deserialize")]
        minor: i64,
        #[serde(default, deserialize_with = "super::option")]
        limit: Option<u32>,
    }

    fn read(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn whole_floats_are_integers() {
        let fields = read(r#"{"seats": 18.0, "minor": -2.0, "limit": 5.0}"#).unwrap();
        assert_eq!((fields.seats, fields.minor, fields.limit), (18, -2, Some(5)));
        let fields = read(r#"{"seats": 18, "minor": 1e3}"#).unwrap();
        assert_eq!((fields.seats, fields.minor, fields.limit), (18, 1000, None));
        assert_eq!(read(r#"{"seats": 1, "minor": 1, "limit": null}"#).unwrap().limit, None);
    }

    #[test]
    fn fractions_and_out_of_range_values_are_refused() {
        for (json, says) in [
            (r#"{"seats": 18.5, "minor": 0}"#, "not a whole number"),
            (r#"{"seats": -1, "minor": 0}"#, "out of range: 0 to 4294967295"),
            (r#"{"seats": 4294967296, "minor": 0}"#, "out of range"),
            (r#"{"seats": 1, "minor": 9223372036854775808}"#, "out of range"),
            (r#"{"seats": 1, "minor": 1e300}"#, "out of range"),
            (r#"{"seats": "1", "minor": 0}"#, "a whole number from 0 to 4294967295"),
        ] {
            let error = read(json).unwrap_err();
            assert!(error.contains(says), "{json}: {error}");
        }
    }
}
