//! The provider's catalogue of ERP versions: the only versions a tenant may be given. A version
//! outside it (a typo, a release that does not exist, one the provider has not tried) is refused
//! before anything reaches a cluster.

use std::fmt;

use tenantry_contract::version::ErpVersion;

/// The versions a provider offers when its configuration names none: Tryton's long-term
/// series that have a web client (`sao`) published, at their releases the project was tried on.
pub const DEFAULT_VERSIONS: &[&str] = &["7.0.59", "8.0.12"];

/// Sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCatalogue(Vec<ErpVersion>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("the catalogue of ERP versions is empty")]
    Empty,
    #[error("{0}")]
    Version(#[from] tenantry_contract::version::VersionError),
}

impl VersionCatalogue {
    /// Every entry must be a production version: an odd B is never offered.
    pub fn new<S: AsRef<str>>(versions: &[S]) -> Result<Self, CatalogueError> {
        let mut parsed = versions
            .iter()
            .map(|text| text.as_ref().trim().parse::<ErpVersion>().and_then(ErpVersion::check_production))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(CatalogueError::Empty);
        }
        parsed.sort();
        parsed.dedup();
        Ok(Self(parsed))
    }

    pub fn versions(&self) -> &[ErpVersion] {
        &self.0
    }

    /// `text` as a version of the catalogue, or why not.
    pub fn offered(&self, text: &str) -> Result<ErpVersion, String> {
        let version = text.parse::<ErpVersion>().map_err(|e| e.to_string())?;
        if self.0.contains(&version) {
            Ok(version)
        } else {
            Err(format!("{version} is not in the provider's catalogue of ERP versions ({self})"))
        }
    }

    /// The versions a tenant now on `current` may move to: the same or newer.
    pub fn upgrades_from(&self, current: Option<ErpVersion>) -> impl Iterator<Item = ErpVersion> + '_ {
        self.0.iter().copied().filter(move |version| current.is_none_or(|current| *version >= current))
    }
}

impl Default for VersionCatalogue {
    fn default() -> Self {
        Self::new(DEFAULT_VERSIONS).expect("the default catalogue is valid")
    }
}

impl fmt::Display for VersionCatalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalogue_versions_are_offered() {
        let catalogue = VersionCatalogue::new(&["8.0.12", "7.0.59", "7.0.59"]).unwrap();
        assert_eq!(catalogue.to_string(), "7.0.59, 8.0.12");
        assert_eq!(catalogue.offered("8.0.12").unwrap().to_string(), "8.0.12");
        assert_eq!(
            catalogue.offered("99.0.0").unwrap_err(),
            "99.0.0 is not in the provider's catalogue of ERP versions (7.0.59, 8.0.12)"
        );
        assert!(catalogue.offered("seven").unwrap_err().contains("not of the form A.B.C"));
        let from_seven: Vec<String> =
            catalogue.upgrades_from(Some("7.0.60".parse().unwrap())).map(|v| v.to_string()).collect();
        assert_eq!(from_seven, ["8.0.12"]);
        assert_eq!(catalogue.upgrades_from(None).count(), 2);
    }

    #[test]
    fn a_catalogue_offers_production_versions_only() {
        assert!(VersionCatalogue::new(&["7.1.0"]).unwrap_err().to_string().contains("development release"));
        assert_eq!(VersionCatalogue::new::<&str>(&[]).unwrap_err(), CatalogueError::Empty);
        assert_eq!(VersionCatalogue::default().versions().len(), DEFAULT_VERSIONS.len());
    }
}
