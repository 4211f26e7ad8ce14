//! Tenant slugs: the name a tenant is known by in URLs, hostnames and its namespace
//! `tenant-<slug>`, so it must be a DNS label that leaves room for that prefix.

use std::fmt;

/// A namespace name is at most 63 characters; `tenant-` takes 7 of them.
pub use tenantry_contract::names::MAX_TENANT_NAME_LEN as MAX_LEN;

/// Names that would be confused with the product's own hosts and paths.
const RESERVED: &[&str] = &[
    "admin",
    "api",
    "app",
    "billing",
    "console",
    "default",
    "kube-system",
    "login",
    "signup",
    "status",
    "support",
    "system",
    "tenantry",
    "test",
    "www",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("a slug must not be empty")]
    Empty,
    #[error("a slug is at most {MAX_LEN} characters; this one has {0}")]
    TooLong(usize),
    #[error("a slug may contain only lowercase letters a-z, digits and '-'; found {0:?}")]
    InvalidCharacter(char),
    #[error("a slug must start with a letter and end with a letter or digit")]
    BadEdge,
    #[error("`{0}` is a reserved word")]
    Reserved(String),
}

impl Slug {
    pub fn parse(text: &str) -> Result<Self, SlugError> {
        if text.is_empty() {
            return Err(SlugError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(SlugError::TooLong(text.len()));
        }
        if let Some(bad) = text.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(SlugError::InvalidCharacter(bad));
        }
        let first = text.as_bytes()[0];
        let last = text.as_bytes()[text.len() - 1];
        if !first.is_ascii_lowercase() || last == b'-' {
            return Err(SlugError::BadEdge);
        }
        if RESERVED.contains(&text) {
            return Err(SlugError::Reserved(text.to_string()));
        }
        Ok(Self(text.to_string()))
    }

    /// A slug made from a company name (`"Acme Corp."` → `acme-corp`, `"Ünïcödé GmbH"` →
    /// `unicode-gmbh`: letters beyond ASCII are transliterated), or why none can be: `Empty`
    /// when nothing usable is left (a name of symbols only), `Reserved` for a reserved word.
    pub fn suggest(company_name: &str) -> Result<Self, SlugError> {
        let ascii = deunicode::deunicode(company_name);
        let mut text = String::with_capacity(ascii.len());
        for c in ascii.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                text.push(c);
            } else if !text.is_empty() && !text.ends_with('-') {
                text.push('-');
            }
        }
        let text = text.trim_start_matches(|c: char| !c.is_ascii_lowercase());
        let mut text: String = text.chars().take(MAX_LEN).collect();
        while text.ends_with('-') {
            text.pop();
        }
        Self::parse(&text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant's namespace.
    pub fn namespace(&self) -> String {
        tenantry_contract::names::namespace_of(&self.0)
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for good in ["acme", "acme-corp", "a1", "x"] {
            assert_eq!(Slug::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(Slug::parse("acme").unwrap().namespace(), "tenant-acme");
        assert!(Slug::parse(&"a".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn suggests_a_slug_from_a_company_name() {
        let suggest = |name: &str| Slug::suggest(name).map(|slug| slug.to_string());
        assert_eq!(suggest("Acme Corp."), Ok("acme-corp".into()));
        assert_eq!(suggest("***"), Err(SlugError::Empty));
        assert_eq!(suggest(&"Long name ".repeat(20)).map(|s| s.len() <= MAX_LEN), Ok(true));
    }

    #[test]
    fn suggestions_transliterate_letters_beyond_ascii() {
        let suggest = |name: &str| Slug::suggest(name).map(|slug| slug.to_string());
        assert_eq!(suggest("Ünïcödé GmbH"), Ok("unicode-gmbh".into()));
        assert_eq!(suggest("  42 Éclairs & Co  "), Ok("eclairs-co".into()));
        assert_eq!(suggest("Müller Straße AG"), Ok("muller-strasse-ag".into()));
    }

    #[test]
    fn a_reserved_company_name_is_told_so() {
        assert_eq!(Slug::suggest("Test"), Err(SlugError::Reserved("test".into())));
        assert_eq!(Slug::suggest("Admin"), Err(SlugError::Reserved("admin".into())));
        assert_eq!(SlugError::Reserved("test".into()).to_string(), "`test` is a reserved word");
    }

    #[test]
    fn refuses_what_is_not_a_dns_label_or_is_reserved() {
        assert_eq!(Slug::parse(""), Err(SlugError::Empty));
        assert_eq!(Slug::parse(&"a".repeat(MAX_LEN + 1)), Err(SlugError::TooLong(MAX_LEN + 1)));
        assert_eq!(Slug::parse("Acme"), Err(SlugError::InvalidCharacter('A')));
        assert_eq!(Slug::parse("acme.corp"), Err(SlugError::InvalidCharacter('.')));
        assert_eq!(Slug::parse("1acme"), Err(SlugError::BadEdge));
        assert_eq!(Slug::parse("acme-"), Err(SlugError::BadEdge));
        assert_eq!(Slug::parse("-acme"), Err(SlugError::BadEdge));
        assert_eq!(Slug::parse("admin"), Err(SlugError::Reserved("admin".into())));
    }
}
