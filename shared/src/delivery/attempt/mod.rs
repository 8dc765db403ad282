//! One attempt of one webhook, as a pure state machine (the sans-I/O core of delivery, in the
//! manner of quinn-proto): given the job, what the send returned, `now` and a random number, it
//! returns what must happen, in order, as data. [`super::engine::Engine`] carries the effects
//! out; nothing here does I/O or reads a clock, so every branch is a plain unit test.
//!
//! The vocabulary, from the receiver to the caller:
//! - [`Outcome`]: what the receiver's answer means (delivered, gone, rejected, failed);
//! - [`Verdict`]: what the retry policy makes of it (delivered, gone, retry after a delay, exhausted);
//! - [`Conclusion`]: the effects that carry the verdict out, in order, among them the claim's
//!   final status ([`ClaimStatus`]) with the attempt's log line;
//! - [`Handled`]: how the job ended, for the caller (and, through it, the metrics).

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::delivery::client::{Delivered, DeliveryError};
use crate::delivery::notice::{self, Audience, DisableCause};
use crate::delivery::retry::{parse_retry_after, Outcome, RetryPolicy, Verdict};
use crate::delivery::task::{DeadLetter, Held, Notice, RetryTask};
use crate::store::claims::{AttemptLog, ClaimStatus};
use crate::subscription::Subscription;
use crate::trigger::Trigger;
use crate::webhook::WebhookId;

/// One webhook for one subscription, at one attempt.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub subscription: &'a Subscription,
    pub webhook_id: WebhookId,
    pub trigger: Trigger,
    pub event_id: &'a str,
    pub body: &'a [u8],
    /// 1 for the first attempt.
    pub attempt: u32,
    pub first_attempt_at: i64,
    /// A dead letter redriven by an operator: restarts the schedule of an exhausted webhook.
    pub redrive: bool,
    /// When the invocation must have answered (None: no limit, as in tests).
    pub deadline: Option<Instant>,
    /// Held back by its subscription's pace before (unix ms of the first time), and the send
    /// slot reserved for it, if any.
    pub held: Option<Held>,
    /// Which operational webhooks about its subscription the account's others would receive.
    pub audience: Audience,
}

/// How a job ended, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Delivered,
    RetryScheduled {
        delay: Duration,
    },
    DeadLettered,
    /// 410 Gone, or failing for too long: the subscription is being disabled (and, if the
    /// webhook's schedule was used up with it, the webhook dead-lettered).
    Disabled {
        dead_lettered: bool,
    },
    /// Not sent, not an attempt: its subscription's pace (or circuit) holds it back; the same
    /// attempt comes back after `delay`.
    Held {
        delay: Duration,
    },
    /// Already delivered or owned by someone else's retry chain: nothing sent.
    AlreadySettled(Option<ClaimStatus>),
    /// Too close to the invocation's deadline to send: the same attempt comes back after `delay`.
    Deferred {
        delay: Duration,
    },
}

/// What must be written to carry a verdict out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The claim's final status and the attempt's log line; releases the lease.
    FinishClaim { status: ClaimStatus, log: AttemptLog },
    /// A sealed retry message on the category queue, delayed (chained past SQS's 15 minutes).
    EnqueueRetry { task: RetryTask, delay: Duration },
    /// A sealed dead letter on the category DLQ.
    DeadLetter(DeadLetter),
    /// The subscription's failing streak is over.
    ClearFailing,
    /// The subscription's failing streak starts now (kept if another attempt started it first);
    /// `notice` (subscription.failing) is sent only by the write that started it.
    MarkFailing { since: i64, notice: Option<Notice> },
    /// The subscription is disabled, with why; `notice` (subscription.disabled) is sent only by
    /// the write that disabled it.
    Disable {
        reason: String,
        at: String,
        notice: Option<Notice>,
    },
    /// An operational webhook to fan out to the account's other subscriptions (best effort).
    Notify(Notice),
}

impl Effect {
    /// Whether the record must fail when this cannot be written. The queue writes are required
    /// (SQS then redelivers, and the claim's lease lets the redelivery take over). The claim's
    /// result is not: it follows the send, and once the retry message or the dead letter is
    /// written (or the receiver said 2xx) the webhook's fate is carried on; failing the record
    /// then could only make its redelivery send the webhook again once the lease ran out (a
    /// retry or a redrive still claims the pending claim when its lease has run out). The
    /// engine tries it in place until the invocation's end first. The subscription's failure
    /// bookkeeping is best effort too.
    pub fn required(&self) -> bool {
        matches!(self, Effect::EnqueueRetry { .. } | Effect::DeadLetter(_))
    }

    /// For log lines about an effect that could not be written (no secrets: ids and reasons).
    pub fn describe(&self) -> String {
        match self {
            Effect::FinishClaim { status, .. } => format!("finish the claim as {}", status.as_str()),
            Effect::EnqueueRetry { task, .. } => format!("queue attempt {}", task.attempt),
            Effect::DeadLetter(letter) => format!("dead-letter: {}", letter.reason),
            Effect::ClearFailing => "clear failing_since".into(),
            Effect::MarkFailing { .. } => "record failing_since".into(),
            Effect::Disable { reason, .. } => format!("disable: {reason}"),
            Effect::Notify(notice) => format!("queue the operational webhook {}", notice.trigger),
        }
    }
}

/// Everything that follows from one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion {
    /// In the order they must be written. A retry message or a dead letter comes before the
    /// claim's result, so a crash in between leaves a pending claim whose lease expires and whose
    /// SQS message comes back, never a claim that says "retrying" with no retry on its way.
    pub effects: Vec<Effect>,
    pub verdict: Verdict,
    pub handled: Handled,
}

/// What the limits of one deployment are, for [`conclude`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub policy: RetryPolicy,
    /// A subscription whose every attempt has failed this long is disabled.
    pub auto_disable_after: Duration,
}

/// How the receiver's answer is classified.
pub fn classify(result: &Result<Delivered, DeliveryError>, now: DateTime<Utc>) -> Outcome {
    match result {
        Ok(_) => Outcome::Delivered,
        Err(DeliveryError::FailureStatus { status: 410, .. }) => Outcome::Gone,
        Err(DeliveryError::FailureStatus { retry_after, .. }) => Outcome::Failed {
            retry_after: retry_after.as_deref().and_then(|v| parse_retry_after(v, now)),
        },
        Err(DeliveryError::Blocked(_)) => Outcome::Rejected,
        Err(DeliveryError::TimedOut(_) | DeliveryError::Connect(_) | DeliveryError::Request(_)) => {
            Outcome::Failed { retry_after: None }
        }
    }
}

/// The retry message that carries `job` to its `attempt`, not to be sent before `not_before`.
pub fn retry_task(job: &Job<'_>, attempt: u32, not_before: i64) -> RetryTask {
    let sub = job.subscription;
    RetryTask {
        dataflows_retry: 1,
        webhook_id: job.webhook_id.clone(),
        trigger: job.trigger.to_string(),
        account_id: sub.account_id.clone(),
        subscription_id: sub.subscription_id.clone(),
        event_id: job.event_id.to_string(),
        body: String::from_utf8_lossy(job.body).into_owned(),
        attempt,
        first_attempt_at: job.first_attempt_at,
        not_before,
        held: None,
        bound: None,
        seal: String::new(),
    }
}

/// Held back by the subscription's pace or circuit until `until_ms` (with the send slot reserved
/// for it, if any): the same attempt as a retry message, marked as held. Not an attempt: the
/// claim is not touched, the schedule not used.
pub fn hold(job: &Job<'_>, until_ms: i64, slot_ms: Option<i64>, now_ms: i64) -> (RetryTask, Duration) {
    let delay = Duration::from_millis((until_ms - now_ms).max(1_000) as u64);
    let mut task = retry_task(job, job.attempt, (now_ms + delay.as_millis() as i64).div_euclid(1000));
    task.held = Some(Held {
        since_ms: job.held.map_or(now_ms, |h| h.since_ms),
        slot_ms,
        redrive: job.redrive,
    });
    (task, delay)
}

/// A retry or redrive that can no longer be sent (its subscription deleted, disabled, invalid,
/// or no longer wanting the trigger), as a dead letter with `reason`, so that it can be redriven
/// once the subscription is fixed. `origin` is the subscription's URL origin, when it still has one.
pub fn undeliverable(task: &RetryTask, origin: Option<String>, reason: String) -> DeadLetter {
    DeadLetter {
        dataflows_dead_letter: 1,
        reason,
        webhook_id: task.webhook_id.clone(),
        trigger: task.trigger.clone(),
        account_id: task.account_id.clone(),
        subscription_id: task.subscription_id.clone(),
        url: origin.unwrap_or_default(),
        event_id: task.event_id.clone(),
        attempts: task.attempt.saturating_sub(1),
        first_attempt_at: task.first_attempt_at,
        last_error: String::new(),
        payload: serde_json::from_str(&task.body).unwrap_or_default(),
        bound: None,
        seal: String::new(),
    }
}

/// Claimed but not to be sent now: the same attempt, as a retry message that arrives when it can
/// take the claim: after `released_after` if the claim was released (its lease ended at once),
/// else after the claim's lease has run out. Nothing is sent, no attempt is used.
pub fn deferral(job: &Job<'_>, lease_seconds: i64, released: bool, now: i64) -> (RetryTask, Duration) {
    let delay = if released {
        RELEASED_DEFERRAL
    } else {
        Duration::from_secs(lease_seconds.max(0) as u64 + 1)
    };
    (retry_task(job, job.attempt, now + delay.as_secs() as i64), delay)
}

/// How soon a deferred webhook whose claim was released comes back (a later invocation).
pub const RELEASED_DEFERRAL: Duration = Duration::from_secs(1);

pub fn rfc3339(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the engine knows of a subscription beyond its cached record, for [`conclude`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The failing streak as best known: what this process itself wrote, else the cached record's.
    pub failing_since: Option<i64>,
    /// The receiver accepted another of the subscription's webhooks in the last seconds.
    pub progressing: bool,
}

/// Everything that follows from the attempt `job` made, which returned `result` at `now`; `unit`
/// is a random number in [0, 1) for the retry jitter.
pub fn conclude(
    job: &Job<'_>,
    result: &Result<Delivered, DeliveryError>,
    limits: &Limits,
    seen: Seen,
    now: DateTime<Utc>,
    unit: f64,
) -> Conclusion {
    let failing_since = seen.failing_since;
    let outcome = match (classify(result, now), result) {
        (Outcome::Failed { retry_after }, Err(DeliveryError::FailureStatus { status: 429 | 503, .. }))
            if seen.progressing =>
        {
            Outcome::Throttled { retry_after }
        }
        (outcome, _) => outcome,
    };
    let verdict = limits.policy.decide(job.attempt, &outcome, unit);
    let log = AttemptLog {
        number: job.attempt,
        at: now.timestamp(),
        status: match result {
            Ok(d) => d.status,
            Err(DeliveryError::FailureStatus { status, .. }) => *status,
            Err(_) => 0,
        },
        latency_ms: match result {
            Ok(d) => d.latency.as_millis() as u64,
            Err(_) => 0,
        },
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    let t = now.timestamp();
    // Operational webhooks are about the 17 triggers' deliveries only: one that fails reports
    // nothing about itself (no loops). And only those someone would receive are written.
    let tells = |about: Trigger| !job.trigger.is_operational() && job.audience.wants(about);
    let disable = |cause: DisableCause, reason: String| Effect::Disable {
        notice: tells(Trigger::SubscriptionDisabled).then(|| notice::disabled(job.subscription, cause, &reason, t)),
        reason,
        at: rfc3339(t),
    };
    // After a failed attempt: start the failing streak, or disable a subscription whose every
    // attempt has failed for longer than `auto_disable_after`.
    let failing = || -> (Vec<Effect>, bool) {
        match failing_since {
            None => {
                let failed = notice::Failed {
                    subscription: job.subscription,
                    webhook_id: &job.webhook_id,
                    trigger: job.trigger,
                };
                let notice = tells(Trigger::SubscriptionFailing)
                    .then(|| notice::failing(failed, &log, t, limits.auto_disable_after));
                (vec![Effect::MarkFailing { since: t, notice }], false)
            }
            Some(since) if t - since >= limits.auto_disable_after.as_secs() as i64 => {
                let reason = format!(
                    "every attempt failed since {} (auto-disable after {} hours)",
                    rfc3339(since),
                    limits.auto_disable_after.as_secs() / 3600
                );
                (vec![disable(DisableCause::Failing, reason)], true)
            }
            Some(_) => (vec![], false),
        }
    };
    let (before, status, after, handled) = match &verdict {
        Verdict::Delivered => {
            let after = if failing_since.is_some() {
                vec![Effect::ClearFailing]
            } else {
                vec![]
            };
            (vec![], ClaimStatus::Delivered, after, Handled::Delivered)
        }
        Verdict::Retry { delay } => {
            let not_before = t + delay.as_secs_f64().ceil() as i64;
            let task = retry_task(job, job.attempt + 1, not_before);
            let (after, disabled) = failing();
            let handled = if disabled {
                Handled::Disabled { dead_lettered: false }
            } else {
                Handled::RetryScheduled { delay: *delay }
            };
            let before = vec![Effect::EnqueueRetry { task, delay: *delay }];
            (before, ClaimStatus::Retrying, after, handled)
        }
        Verdict::Exhausted => {
            let reason = match result {
                Err(DeliveryError::Blocked(_)) => "target refused by the SSRF guard".to_string(),
                _ => format!("retry schedule exhausted after {} attempts", job.attempt),
            };
            let letter = dead_letter(job, reason, log.error.clone().unwrap_or_default());
            let (mut after, disabled) = failing();
            if tells(Trigger::WebhookDeadLettered) {
                after.push(Effect::Notify(notice::dead_lettered(&letter, t)));
            }
            let handled = if disabled {
                Handled::Disabled { dead_lettered: true }
            } else {
                Handled::DeadLettered
            };
            (vec![Effect::DeadLetter(letter)], ClaimStatus::Exhausted, after, handled)
        }
        Verdict::Gone => {
            let reason = format!("receiver answered 410 Gone at {}", rfc3339(t));
            let after = vec![disable(DisableCause::Gone, reason)];
            (
                vec![],
                ClaimStatus::Gone,
                after,
                Handled::Disabled { dead_lettered: false },
            )
        }
    };
    let mut effects = before;
    effects.push(Effect::FinishClaim { status, log });
    effects.extend(after);
    Conclusion {
        effects,
        verdict,
        handled,
    }
}

fn dead_letter(job: &Job<'_>, reason: String, last_error: String) -> DeadLetter {
    let sub = job.subscription;
    DeadLetter {
        dataflows_dead_letter: 1,
        reason,
        webhook_id: job.webhook_id.clone(),
        trigger: job.trigger.to_string(),
        account_id: sub.account_id.clone(),
        subscription_id: sub.subscription_id.clone(),
        // The origin only: a URL's path and query are often its credential.
        url: sub.url.origin().ascii_serialization(),
        event_id: job.event_id.to_string(),
        attempts: job.attempt,
        first_attempt_at: job.first_attempt_at,
        last_error,
        payload: serde_json::from_slice(job.body).unwrap_or_default(),
        bound: None,
        seal: String::new(),
    }
}

#[cfg(test)]
mod tests;
