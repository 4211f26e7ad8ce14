//! Money in integer minor units (cents) with its currency: never floating point.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 code: three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("a currency is a three-letter ISO 4217 code such as EUR or USD; got {0:?}")]
    Currency(String),
    #[error("an amount cannot be negative; got {0}")]
    Negative(i64),
    #[error("the amount overflows")]
    Overflow,
    #[error("cannot add {0} and {1}")]
    Mixed(Currency, Currency),
}

impl Currency {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("checked ASCII when made")
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, MoneyError> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(MoneyError::Currency(code.to_string())),
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(code: String) -> Result<Self, MoneyError> {
        code.parse()
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.as_str().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (e.g. cents): 1250 EUR is 12.50 €.
    #[serde(deserialize_with = "super::whole::deserialize")]
    #[schema(minimum = 0)]
    pub minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative(minor));
        }
        Ok(Self { minor, currency })
    }

    pub fn times(&self, factor: u32) -> Result<Self, MoneyError> {
        let minor = self.minor.checked_mul(i64::from(factor)).ok_or(MoneyError::Overflow)?;
        Ok(Self { minor, currency: self.currency })
    }

    pub fn plus(&self, other: &Money) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::Mixed(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Self { minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    /// Two decimals, which every currency the product bills in uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} {}", self.minor / 100, self.minor % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_uppercase_letters() {
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        for bad in ["eur", "EURO", "E1R", "", "€UR"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
        let json: Result<Currency, _> = serde_json::from_str("\"usd\"");
        assert!(json.is_err());
    }

    #[test]
    fn amounts_are_exact_and_never_negative() {
        let eur: Currency = "EUR".parse().unwrap();
        let price = Money::new(1250, eur).unwrap();
        assert_eq!(price.times(3).unwrap().minor, 3750);
        assert_eq!(price.to_string(), "12.50 EUR");
        assert_eq!(Money::new(-1, eur), Err(MoneyError::Negative(-1)));
        assert_eq!(Money::new(i64::MAX, eur).unwrap().times(2), Err(MoneyError::Overflow));
        let usd = Money::new(1, "USD".parse().unwrap()).unwrap();
        assert!(matches!(price.plus(&usd), Err(MoneyError::Mixed(..))));
        assert_eq!(serde_json::to_value(price).unwrap(), serde_json::json!({"minor": 1250, "currency": "EUR"}));
    }
}
