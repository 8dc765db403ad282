//! Structured JSON logs, one object per line, level from LOG_LEVEL (default info). A line written
//! during an invocation carries `span: {name: "invocation", request_id, xray_trace_id}`.
//!
//! LOG_LEVEL sets the level of this project's crates only; every other crate (the AWS SDK,
//! hyper, reqwest, rustls) logs warnings and errors at most, whatever LOG_LEVEL says: at debug or
//! trace the SDK writes whole requests and responses, and a Query response holds every
//! subscription's `secrets`.

use tracing_subscriber::EnvFilter;

/// The crates whose logs LOG_LEVEL governs: the library and the six functions.
pub(crate) const OWN_CRATES: &[&str] = &[
    "dataflows_shared",
    "sms",
    "operations",
    "contacts",
    "messaging",
    "performance",
    "admin",
];

/// The filter directives for a LOG_LEVEL: `warn` for everything, the level for ours. A level
/// that is not one of error, warn, info, debug, trace (any case) is `info`.
pub(crate) fn directives(level: &str) -> String {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => l.to_string(),
        _ => "info".to_string(),
    };
    let global = if level == "error" { "error" } else { "warn" };
    let mut out = global.to_string();
    for krate in OWN_CRATES {
        out.push_str(&format!(",{krate}={level}"));
    }
    out
}

pub(crate) fn init() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(directives(&level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_reaches_only_our_crates() {
        let d = directives("TRACE");
        assert!(d.starts_with("warn,"), "{d}");
        assert!(d.contains("dataflows_shared=trace") && d.contains("sms=trace"), "{d}");
        assert!(!d.contains("aws") && !d.contains("hyper"), "{d}");
        // A directive smuggled in through LOG_LEVEL is not a level: info.
        assert_eq!(directives("aws_smithy_runtime=trace"), directives("info"));
        assert!(directives("error").starts_with("error,"));
        EnvFilter::try_new(directives("debug")).expect("valid directives");
    }
}
