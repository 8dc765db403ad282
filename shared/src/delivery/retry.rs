//! What to do after an attempt: the retry policy (docs/design.md §7) as pure functions of the outcome,
//! the attempt number, `now` and a random number, so every branch is a plain unit test.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// ±20% jitter on every scheduled delay.
pub const JITTER: f64 = 0.2;
/// A receiver's Retry-After is honoured up to this long; longer asks are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(12 * 3600);
/// The longest DelaySeconds SQS accepts; longer delays are chained.
pub const MAX_SQS_DELAY: Duration = Duration::from_secs(900);

/// How an attempt ended, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 410 Gone: the receiver asks us to stop; the subscription is disabled.
    Gone,
    /// The target may never be reached (blocked address): no point retrying.
    Rejected,
    /// 429, 5xx, other non-2xx, timeouts, connection errors.
    Failed { retry_after: Option<Duration> },
    /// 429 or 503 from a receiver that is accepting the subscription's other webhooks: it asks
    /// for a slower pace, it is not failing. The retry waits for the pause (and then its turn in
    /// the subscription's pace), not for the schedule's later, longer steps.
    Throttled { retry_after: Option<Duration> },
}

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Gone,
    /// Try again after `delay`.
    Retry {
        delay: Duration,
    },
    /// The schedule is used up (or the target is rejected): record it and dead-letter the webhook.
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before attempt 2, 3, ...: attempt n+1 waits `schedule[n-1]`.
    pub schedule: Vec<Duration>,
}

impl RetryPolicy {
    /// `attempt` is the number of the attempt that just ended (1 for the first); `unit` is a
    /// random number in [0, 1) that sets the jitter.
    pub fn decide(&self, attempt: u32, outcome: &Outcome, unit: f64) -> Verdict {
        match outcome {
            Outcome::Delivered => Verdict::Delivered,
            Outcome::Gone => Verdict::Gone,
            Outcome::Rejected => Verdict::Exhausted,
            Outcome::Failed { retry_after } | Outcome::Throttled { retry_after } => {
                let Some(scheduled) = self.schedule.get(attempt.saturating_sub(1) as usize) else {
                    return Verdict::Exhausted;
                };
                let base = match outcome {
                    Outcome::Throttled { .. } => &self.schedule[0],
                    _ => scheduled,
                };
                let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
                let jittered = base.mul_f64(factor);
                let delay = match retry_after {
                    Some(asked) => jittered.max((*asked).min(MAX_RETRY_AFTER)),
                    None => jittered,
                };
                Verdict::Retry { delay }
            }
        }
    }

    /// Attempts in all: the first plus one per scheduled delay.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }
}

/// Parse a Retry-After header: delta-seconds or an HTTP date. Unparseable or past: `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// The DelaySeconds for a message due in `remaining`: at most 15 minutes; the rest is chained.
pub fn sqs_delay(remaining: Duration) -> i32 {
    remaining.min(MAX_SQS_DELAY).as_secs_f64().ceil() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: crate::config::parse_schedule(crate::config::DEFAULT_RETRY_SCHEDULE).unwrap(),
        }
    }

    const FAILED: Outcome = Outcome::Failed { retry_after: None };

    #[test]
    fn follows_the_schedule_with_jitter_bounds() {
        let p = policy();
        assert_eq!(p.max_attempts(), 8);
        // unit 0.5 is no jitter; 0 is -20%; just under 1 is +20%.
        assert_eq!(
            p.decide(1, &FAILED, 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(5)
            }
        );
        assert_eq!(
            p.decide(1, &FAILED, 0.0),
            Verdict::Retry {
                delay: Duration::from_secs(4)
            }
        );
        assert_eq!(
            p.decide(2, &FAILED, 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(300)
            }
        );
        assert_eq!(
            p.decide(3, &FAILED, 1.0),
            Verdict::Retry {
                delay: Duration::from_secs(2160)
            }
        );
        assert_eq!(
            p.decide(7, &FAILED, 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(36_000)
            }
        );
        assert_eq!(p.decide(8, &FAILED, 0.5), Verdict::Exhausted);
    }

    #[test]
    fn outcomes_other_than_failure() {
        let p = policy();
        assert_eq!(p.decide(1, &Outcome::Delivered, 0.3), Verdict::Delivered);
        assert_eq!(p.decide(1, &Outcome::Gone, 0.3), Verdict::Gone);
        assert_eq!(p.decide(1, &Outcome::Rejected, 0.3), Verdict::Exhausted);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = policy();
        let asked = |secs| Outcome::Failed {
            retry_after: Some(Duration::from_secs(secs)),
        };
        // Longer than the schedule: honoured.
        assert_eq!(
            p.decide(1, &asked(120), 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(120)
            }
        );
        // Shorter than the schedule: the schedule wins.
        assert_eq!(
            p.decide(2, &asked(1), 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(300)
            }
        );
        // Absurdly long: capped.
        assert_eq!(
            p.decide(1, &asked(10 * 86_400), 0.5),
            Verdict::Retry { delay: MAX_RETRY_AFTER }
        );
    }

    #[test]
    fn a_throttled_attempt_waits_for_the_pause_not_for_the_later_steps() {
        let p = policy();
        let throttled = Outcome::Throttled {
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            p.decide(3, &throttled, 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(5)
            },
            "the first step, not the third (30 min)"
        );
        let long = Outcome::Throttled {
            retry_after: Some(Duration::from_secs(600)),
        };
        assert_eq!(
            p.decide(2, &long, 0.5),
            Verdict::Retry {
                delay: Duration::from_secs(600)
            }
        );
        assert_eq!(
            p.decide(8, &throttled, 0.5),
            Verdict::Exhausted,
            "still bounded by the attempts"
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("Mon, 30 Nov 2026 09:00:00 GMT", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn long_delays_are_chained_in_15_minute_steps() {
        assert_eq!(sqs_delay(Duration::from_millis(4_200)), 5);
        assert_eq!(sqs_delay(Duration::from_secs(7200)), 900);
        assert_eq!(sqs_delay(Duration::ZERO), 0);
    }
}
