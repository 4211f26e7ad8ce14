//! Validation of webhook endpoint URLs at registration, so delivery never meets a URL it cannot
//! or must not call.

use reqwest::Url;

/// Longer URLs are refused: they are stored, shown and sent with every delivery.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("must be at most {MAX_URL_LEN} characters (got {0})")]
    TooLong(usize),
    #[error("not an absolute URL: {0}")]
    Unparsable(String),
    #[error("only http and https URLs are allowed (got {0:?})")]
    Scheme(String),
    #[error("must not contain a user name or password; authenticate with the signature instead")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("must not contain a #fragment: it is never sent to the server")]
    Fragment,
}

/// The URL in normalised form, or why it cannot be an endpoint: an absolute http(s) URL with a
/// host and without credentials.
pub fn validate_endpoint_url(url: &str) -> Result<String, EndpointError> {
    let url = url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(EndpointError::TooLong(url.len()));
    }
    let parsed = Url::parse(url).map_err(|error| EndpointError::Unparsable(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EndpointError::Scheme(parsed.scheme().to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost);
    }
    if parsed.fragment().is_some() {
        return Err(EndpointError::Fragment);
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_are_normalised() {
        assert_eq!(
            validate_endpoint_url("https://hooks.example.com/tenantry").unwrap(),
            "https://hooks.example.com/tenantry"
        );
        assert_eq!(validate_endpoint_url(" HTTP://Example.COM:8080 ").unwrap(), "http://example.com:8080/");
        assert_eq!(validate_endpoint_url("http://127.0.0.1:9000/in?x=1").unwrap(), "http://127.0.0.1:9000/in?x=1");
        assert_eq!(validate_endpoint_url("https://[::1]/hook").unwrap(), "https://[::1]/hook");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(matches!(validate_endpoint_url("hooks.example.com/x"), Err(EndpointError::Unparsable(_))));
        assert!(matches!(validate_endpoint_url(""), Err(EndpointError::Unparsable(_))));
        assert!(matches!(validate_endpoint_url("/relative"), Err(EndpointError::Unparsable(_))));
        assert!(matches!(validate_endpoint_url("http://"), Err(EndpointError::Unparsable(_))));
        assert_eq!(validate_endpoint_url("ftp://example.com/x"), Err(EndpointError::Scheme("ftp".into())));
        assert_eq!(validate_endpoint_url("file:///etc/passwd"), Err(EndpointError::Scheme("file".into())));
        assert_eq!(validate_endpoint_url("javascript:alert(1)"), Err(EndpointError::Scheme("javascript".into())));
        assert_eq!(validate_endpoint_url("https://user:pw@example.com/"), Err(EndpointError::Credentials));
        assert_eq!(validate_endpoint_url("https://user@example.com/"), Err(EndpointError::Credentials));
        assert_eq!(validate_endpoint_url("https://example.com/#part"), Err(EndpointError::Fragment));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(validate_endpoint_url(&long), Err(EndpointError::TooLong(long.len())));
        let message = validate_endpoint_url("ftp://example.com").unwrap_err().to_string();
        assert!(message.contains("http and https"), "{message}");
    }
}
