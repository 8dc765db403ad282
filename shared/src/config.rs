//! Settings, read from the environment once at cold start and validated; every error names the
//! variable.

use std::collections::HashMap;
use std::time::Duration;

use crate::trigger::Category;

pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub category: Category,
    pub subscriptions_table: String,
    pub state_table: String,
    /// This category's queue (retries are written here) and its dead-letter queue.
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// Delays between attempts (docs/design.md §7); used by the retry scheduler.
    pub retry_schedule: Vec<Duration>,
    /// Local development only: allow http:// and private addresses as webhook targets.
    pub allow_private_targets: bool,
    /// Records of one batch evaluated at the same time (their deliveries are bounded apart).
    pub record_concurrency: usize,
    /// HTTP requests in flight at once, across a batch.
    pub delivery_concurrency: usize,
    /// HTTP requests in flight at once to one subscription, so a slow receiver holds at most
    /// this many of the batch's `delivery_concurrency` slots.
    pub subscription_concurrency: usize,
    /// How long an account's subscriptions are cached across warm invocations (0 disables).
    pub subscription_cache_ttl: Duration,
    /// A subscription whose every attempt failed for this long is disabled.
    pub auto_disable_after: Duration,
    /// How long a delivery claim is held before another invocation may take it over.
    pub claim_lease: Duration,
    /// Total time allowed for one webhook request (docs/design.md §7: 15 s; lower only for tests).
    pub http_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl Settings {
    pub fn from_env(category: Category) -> Result<Self, ConfigError> {
        Self::from_vars(category, &std::env::vars().collect())
    }

    /// The same, from an explicit map: what tests call.
    pub fn from_vars(category: Category, vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| vars.get(var).map(|s| s.trim()).filter(|s| !s.is_empty());
        let required = |var: &'static str| {
            get(var).map(str::to_string).ok_or(ConfigError {
                var,
                reason: "is required and not set".into(),
            })
        };
        let retry_schedule =
            parse_schedule(get("RETRY_SCHEDULE").unwrap_or(DEFAULT_RETRY_SCHEDULE)).map_err(|reason| ConfigError {
                var: "RETRY_SCHEDULE",
                reason,
            })?;
        let allow_private_targets = match get("ALLOW_PRIVATE_TARGETS") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(ConfigError {
                    var: "ALLOW_PRIVATE_TARGETS",
                    reason: format!("{v:?} is not true or false"),
                })
            }
        };
        let count = |var: &'static str, default: usize| -> Result<usize, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or(ConfigError {
                        var,
                        reason: format!("{v:?} is not a number from 1 to 1000"),
                    }),
            }
        };
        let duration = |var: &'static str, default: &str| -> Result<Duration, ConfigError> {
            match parse_schedule(get(var).unwrap_or(default)) {
                Ok(d) if d.len() == 1 => Ok(d[0]),
                Ok(_) => Err(ConfigError {
                    var,
                    reason: "takes one duration, e.g. 30s or 5d".into(),
                }),
                Err(reason) => Err(ConfigError { var, reason }),
            }
        };
        Ok(Settings {
            category,
            subscriptions_table: required("SUBSCRIPTIONS_TABLE")?,
            state_table: required("STATE_TABLE")?,
            retry_schedule,
            queue_url: required("QUEUE_URL")?,
            dead_letter_queue_url: required("DEAD_LETTER_QUEUE_URL")?,
            allow_private_targets,
            record_concurrency: count("RECORD_CONCURRENCY", 10)?,
            delivery_concurrency: count("DELIVERY_CONCURRENCY", 32)?,
            subscription_concurrency: count("SUBSCRIPTION_CONCURRENCY", 4)?,
            subscription_cache_ttl: duration("SUBSCRIPTION_CACHE_TTL", "30s")?,
            auto_disable_after: duration("AUTO_DISABLE_AFTER", "5d")?,
            claim_lease: duration("CLAIM_LEASE", "60s")?,
            http_timeout: duration("HTTP_TIMEOUT", "15s")?,
        })
    }
}

/// Parse `5s,5m,30m,2h`: comma-separated numbers with a unit (ms, s, m, h, d).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        let split = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
        let (num, unit) = part.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("entry {} ({part:?}) does not start with a number", i + 1))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return Err(format!("entry {} ({part:?}) needs a unit: ms, s, m, h or d", i + 1)),
        };
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 4] = [
        ("SUBSCRIPTIONS_TABLE", "subs"),
        ("STATE_TABLE", "state"),
        ("QUEUE_URL", "q"),
        ("DEAD_LETTER_QUEUE_URL", "dlq"),
    ];

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_defaults_and_overrides() {
        let s = Settings::from_vars(Category::Sms, &vars(&BASE)).unwrap();
        assert_eq!(s.retry_schedule.len(), 7);
        assert_eq!(s.retry_schedule[1], Duration::from_secs(300));
        assert_eq!(s.auto_disable_after, Duration::from_secs(5 * 86_400));
        assert_eq!(s.subscription_cache_ttl, Duration::from_secs(30));
        assert_eq!((s.queue_url.as_str(), s.dead_letter_queue_url.as_str()), ("q", "dlq"));
        assert!(!s.allow_private_targets);
        let mut v = vars(&BASE);
        v.insert("RETRY_SCHEDULE".into(), "500ms, 1s".into());
        v.insert("ALLOW_PRIVATE_TARGETS".into(), "TRUE".into());
        v.insert("AUTO_DISABLE_AFTER".into(), "2h".into());
        let s = Settings::from_vars(Category::Sms, &v).unwrap();
        assert_eq!(
            s.retry_schedule,
            vec![Duration::from_millis(500), Duration::from_secs(1)]
        );
        assert!(s.allow_private_targets);
        assert_eq!(s.auto_disable_after, Duration::from_secs(7200));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = Settings::from_vars(Category::Sms, &vars(&[("STATE_TABLE", "state")])).unwrap_err();
        assert_eq!(err.var, "SUBSCRIPTIONS_TABLE");
        for (var, value) in [
            ("RETRY_SCHEDULE", "5x"),
            ("RETRY_SCHEDULE", "s5"),
            ("ALLOW_PRIVATE_TARGETS", "yes"),
            ("RECORD_CONCURRENCY", "0"),
            ("AUTO_DISABLE_AFTER", "1d,2d"),
            ("SUBSCRIPTION_CACHE_TTL", "soon"),
        ] {
            let mut v = vars(&BASE);
            v.insert(var.into(), value.into());
            assert_eq!(
                Settings::from_vars(Category::Sms, &v).unwrap_err().var,
                var,
                "{var}={value}"
            );
        }
    }
}
