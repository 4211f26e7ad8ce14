//! ERP version numbers `A.B.C`: A is a major functional change, B fault fixes and some
//! features, C limited fixes. An odd B is a development release: never in production.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErpVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version `{0}` is not of the form A.B.C with three non-negative integers")]
    Malformed(String),
    #[error("version {0} is a development release (odd B) and is never allowed in production")]
    DevelopmentInProduction(ErpVersion),
}

/// A release series `A.B`: what images, packages and migration steps are keyed by. Ordered by
/// (A, B), so 7.8 < 8.0 < 8.2 and 7.10 > 7.8, which comparing the text would get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErpSeries {
    pub major: u32,
    pub minor: u32,
}

impl ErpSeries {
    /// An odd B marks a development series.
    pub fn is_development(&self) -> bool {
        self.minor % 2 == 1
    }
}

impl FromStr for ErpSeries {
    type Err = VersionError;

    /// Reads `A.B` by the same rules as a version's first two numbers.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let version: ErpVersion = format!("{text}.0").parse().map_err(|_| VersionError::Malformed(text.to_string()))?;
        Ok(version.erp_series())
    }
}

impl fmt::Display for ErpSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl ErpVersion {
    /// The series `A.B` that images and package names are keyed by.
    pub fn series(&self) -> String {
        self.erp_series().to_string()
    }

    /// The series as an ordered value, for comparing series rather than their text.
    pub fn erp_series(&self) -> ErpSeries {
        ErpSeries { major: self.major, minor: self.minor }
    }

    /// An odd B marks a development release.
    pub fn is_development(&self) -> bool {
        self.minor % 2 == 1
    }

    /// Refuses development releases; call it for anything that serves production data.
    pub fn check_production(self) -> Result<Self, VersionError> {
        if self.is_development() { Err(VersionError::DevelopmentInProduction(self)) } else { Ok(self) }
    }
}

impl FromStr for ErpVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || VersionError::Malformed(text.to_string());
        let mut parts = text.split('.');
        let mut next = || -> Result<u32, VersionError> {
            let part = parts.next().ok_or_else(malformed)?;
            // "07" or "+7" parse as numbers but are not how any release is written.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || (part.len() > 1 && part.starts_with('0'))
            {
                return Err(malformed());
            }
            part.parse().map_err(|_| malformed())
        };
        let version = Self { major: next()?, minor: next()?, patch: next()? };
        if parts.next().is_some() {
            return Err(malformed());
        }
        Ok(version)
    }
}

impl fmt::Display for ErpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_b_c() {
        let v: ErpVersion = "7.0.59".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch), (7, 0, 59));
        assert_eq!(v.to_string(), "7.0.59");
        assert_eq!(v.series(), "7.0");
    }

    #[test]
    fn rejects_what_is_not_a_b_c() {
        for bad in ["", "7", "7.0", "7.0.1.2", "7..1", "v7.0.1", "7.0.x", "7.0.-1", "07.0.1", "7.0.1 "] {
            assert_eq!(bad.parse::<ErpVersion>(), Err(VersionError::Malformed(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn odd_minor_is_development_and_kept_out_of_production() {
        let dev: ErpVersion = "7.1.0".parse().unwrap();
        assert!(dev.is_development());
        assert_eq!(dev.check_production(), Err(VersionError::DevelopmentInProduction(dev)));
        let stable: ErpVersion = "7.2.3".parse().unwrap();
        assert!(!stable.is_development());
        assert_eq!(stable.check_production(), Ok(stable));
    }

    #[test]
    fn series_parse_order_and_print() {
        let parse = |s: &str| s.parse::<ErpSeries>().unwrap();
        assert_eq!(parse("7.8"), ErpSeries { major: 7, minor: 8 });
        assert!(parse("7.8") < parse("7.10"));
        assert!(parse("7.10") < parse("8.0"));
        assert_eq!(parse("8.2").to_string(), "8.2");
        assert!(parse("7.3").is_development() && !parse("7.4").is_development());
        assert_eq!("7.0.59".parse::<ErpVersion>().unwrap().erp_series(), parse("7.0"));
        for bad in ["", "7", "7.0.1", "07.0", "7.x", "7."] {
            assert_eq!(bad.parse::<ErpSeries>(), Err(VersionError::Malformed(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn orders_by_major_minor_patch() {
        let parse = |s: &str| s.parse::<ErpVersion>().unwrap();
        assert!(parse("7.0.59") < parse("7.2.0"));
        assert!(parse("6.8.10") < parse("7.0.0"));
        assert!(parse("7.0.9") < parse("7.0.10"));
    }
}
