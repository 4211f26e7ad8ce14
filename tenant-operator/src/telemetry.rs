//! Logging: `tracing` events to stdout, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]), as
//! JSON lines (production) or human-readable text (development).

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset, empty or invalid.
pub const DEFAULT_FILTER: &str = "info,kube=warn";

/// Installs the global subscriber (and forwards `log` records, e.g. actix-web's, to it). Only
/// the first call in a process installs one; later calls change nothing.
pub fn init(json: bool) {
    let (filter, invalid) = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok()
        && let Some(invalid) = invalid
    {
        tracing::warn!(rust_log = %invalid, default = DEFAULT_FILTER, "ignoring an invalid RUST_LOG");
    }
}

/// The filter for a `RUST_LOG` value, and what was wrong with it when it was not usable.
fn filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    match rust_log.map(str::trim).filter(|d| !d.is_empty()) {
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(format!("{directives:?}: {e}"))),
        },
        None => (EnvFilter::new(DEFAULT_FILTER), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_overrides_the_default_unless_unusable() {
        assert_eq!(filter(None).0.to_string(), EnvFilter::new(DEFAULT_FILTER).to_string());
        assert_eq!(filter(Some("  ")).0.to_string(), EnvFilter::new(DEFAULT_FILTER).to_string());
        let (custom, problem) = filter(Some("debug,hyper=info"));
        assert_eq!((custom.to_string(), problem), (EnvFilter::new("debug,hyper=info").to_string(), None));
        let (fallback, problem) = filter(Some("info,kube=notalevel"));
        assert_eq!(fallback.to_string(), EnvFilter::new(DEFAULT_FILTER).to_string());
        assert!(problem.is_some());
    }
}
