//! One attempt of one webhook to one subscription, and everything that follows from it: the
//! claim that makes it happen once, the send, the attempt log, and then delivered, a delayed retry
//! on the category queue, the dead-letter queue, or a disabled subscription.
//!
//! Order matters for "nothing lost": the retry message (or the dead letter) is written before the
//! claim is finished, so a crash in between leaves a pending claim whose lease expires and whose
//! SQS message comes back, never a claim that says "retrying" with no retry on its way.
//!
//! The invocation's deadline is respected: a job that gets its turn to send when less than the
//! send budget (HTTP timeout + margin) is left is not sent but deferred, as a retry message for the
//! same attempt delayed past its claim's lease, so a large batch never runs into the function's
//! timeout and a deferral never counts as an attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::delivery::client::{send, Delivered, DeliveryError};
use crate::delivery::retry::{parse_retry_after, sqs_delay, Outcome, RetryPolicy, Verdict};
use crate::delivery::task::{sqs_text, to_sqs_json, DeadLetter, RetryTask};
use crate::metrics::{Metrics, Observed};
use crate::store::claims::{AttemptLog, Claim, ClaimMeta, Claims, Finish, StateError};
use crate::store::seal::{SealKeyError, SealKeys};
use crate::store::subscriptions::{SubscriptionWriter, UpdateError};
use crate::subscription::Subscription;

/// One webhook for one subscription, at one attempt.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub subscription: &'a Subscription,
    pub webhook_id: String,
    pub trigger: &'a str,
    pub event_id: &'a str,
    pub body: &'a [u8],
    /// 1 for the first attempt.
    pub attempt: u32,
    pub first_attempt_at: i64,
    /// A dead letter redriven by an operator: restarts the schedule of an exhausted webhook.
    pub redrive: bool,
    /// When the invocation must have answered (None: no limit, as in tests).
    pub deadline: Option<Instant>,
}

/// How a job ended, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Delivered,
    RetryScheduled {
        delay: Duration,
    },
    DeadLettered,
    /// 410 Gone, or failing for too long: the subscription is now disabled.
    Disabled,
    /// Already delivered or owned by someone else's retry chain: nothing sent.
    AlreadySettled(String),
    /// Too close to the invocation's deadline to send: the same attempt comes back after `delay`.
    Deferred {
        delay: Duration,
    },
}

/// Margin kept, beyond one request's timeout, for writing the result and answering Lambda.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Whether a job whose turn to send comes at `now` must be deferred: a send started now could
/// outlast the invocation. Pure; `budget` is the HTTP timeout plus [`DEADLINE_MARGIN`].
pub fn must_defer(now: Instant, deadline: Option<Instant>, budget: Duration) -> bool {
    deadline.is_some_and(|d| d.saturating_duration_since(now) < budget)
}

/// One semaphore per subscription seen, created on first use.
pub struct Lanes {
    per_subscription: usize,
    lanes: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<Semaphore>>>,
}

impl Lanes {
    pub fn new(per_subscription: usize) -> Self {
        Lanes {
            per_subscription: per_subscription.max(1),
            lanes: Default::default(),
        }
    }

    pub async fn enter(&self, account_id: &str, subscription_id: &str) -> OwnedSemaphorePermit {
        let lane = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            if lanes.len() >= 1024 {
                lanes.retain(|_, lane| Arc::strong_count(lane) > 1); // forget the idle ones
            }
            lanes
                .entry((account_id.to_string(), subscription_id.to_string()))
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_subscription)))
                .clone()
        };
        lane.acquire_owned().await.expect("a lane is never closed")
    }
}

/// Failures that leave the job for SQS to redeliver.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Subscription(#[from] UpdateError),
    #[error("writing to queue {queue}: {reason}")]
    Queue { queue: String, reason: String },
    #[error("webhook {0} is being sent by another invocation")]
    Busy(String),
    #[error(transparent)]
    Seal(#[from] SealKeyError),
}

pub struct Engine {
    pub http: reqwest::Client,
    pub claims: Claims,
    pub subscriptions: SubscriptionWriter,
    pub sqs: aws_sdk_sqs::Client,
    /// Seals retries and dead letters, so nothing published to the topic can pass for one.
    pub seals: SealKeys,
    pub queue_url: String,
    pub dead_letter_url: String,
    pub policy: RetryPolicy,
    pub lease_seconds: i64,
    pub auto_disable_after: Duration,
    /// Literal-IP check before sending (the resolver guard is in the client).
    pub guard: bool,
    /// Bounds concurrent HTTP requests across a batch.
    pub limiter: Semaphore,
    /// Bounds concurrent claim writes across a batch (as many as sends), so a batch with many
    /// subscriptions does not open one DynamoDB call per delivery at once, and a claim never
    /// holds a send slot.
    pub claiming: Semaphore,
    /// Bounds them per subscription, taken before `limiter`: a slow receiver waits in its own lane
    /// and never queues ahead of the others for the batch's slots.
    pub lanes: Lanes,
    /// Time a send needs before the deadline: the HTTP timeout plus [`DEADLINE_MARGIN`].
    pub send_budget: Duration,
    pub metrics: Metrics,
}

fn classify(result: &Result<Delivered, DeliveryError>, now: DateTime<Utc>) -> Outcome {
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
fn retry_task(job: &Job<'_>, attempt: u32, not_before: i64) -> RetryTask {
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
        seal: String::new(),
    }
}

fn rfc3339(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Engine {
    pub async fn run(&self, job: &Job<'_>) -> Result<Handled, EngineError> {
        let sub = job.subscription;
        let _lane = self.lanes.enter(&sub.account_id, &sub.subscription_id).await;
        let claiming = self.claiming.acquire().await.expect("never closed");
        let meta = ClaimMeta {
            webhook_id: &job.webhook_id,
            account_id: &sub.account_id,
            subscription_id: &sub.subscription_id,
            event_id: job.event_id,
            trigger: job.trigger,
        };
        let claimed_at = Utc::now().timestamp();
        let claim = if job.redrive {
            self.claims.claim_redrive(&meta, claimed_at, self.lease_seconds).await?
        } else if job.attempt <= 1 {
            self.claims.claim_first(&meta, claimed_at, self.lease_seconds).await?
        } else {
            self.claims
                .claim_retry(&meta, job.attempt - 1, claimed_at, self.lease_seconds)
                .await?
        };
        match claim {
            Claim::Won => {}
            Claim::Settled(status) => return Ok(Handled::AlreadySettled(status)),
            Claim::Busy => return Err(EngineError::Busy(job.webhook_id.clone())),
        }
        drop(claiming);

        let permit = self.limiter.acquire().await.expect("the limiter is never closed");
        if must_defer(Instant::now(), job.deadline, self.send_budget) {
            drop(permit); // the slot is for sends, not for the retry message
            return self.defer(job).await;
        }
        let now = Utc::now().timestamp();
        let result = send(&self.http, sub, &job.webhook_id, now, job.body, self.guard).await;
        drop(permit);
        let now = Utc::now();
        let verdict = self
            .policy
            .decide(job.attempt, &classify(&result, now), rand::random::<f64>());
        let log = AttemptLog {
            number: job.attempt,
            at: now.timestamp(),
            status: match &result {
                Ok(d) => d.status,
                Err(DeliveryError::FailureStatus { status, .. }) => *status,
                Err(_) => 0,
            },
            latency_ms: match &result {
                Ok(d) => d.latency.as_millis() as u64,
                Err(_) => 0,
            },
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        log_attempt(job, &result, &verdict);
        let handled = self.conclude(job, &result, verdict, &log, now).await;
        let observed = match (&result, &handled) {
            (Ok(d), _) => Observed::Delivered {
                latency_ms: d.latency.as_secs_f64() * 1000.0,
            },
            (Err(_), h) => Observed::Failed {
                retried: matches!(h, Ok(Handled::RetryScheduled { .. })),
                exhausted: matches!(h, Ok(Handled::DeadLettered)),
                disabled: matches!(h, Ok(Handled::Disabled)),
            },
        };
        self.metrics.observe(observed);
        handled
    }

    async fn conclude(
        &self,
        job: &Job<'_>,
        result: &Result<Delivered, DeliveryError>,
        verdict: Verdict,
        log: &AttemptLog,
        now: DateTime<Utc>,
    ) -> Result<Handled, EngineError> {
        let sub = job.subscription;

        match verdict {
            Verdict::Delivered => {
                self.claims.finish(&job.webhook_id, log, Finish::Delivered).await?;
                if sub.failing_since.is_some() {
                    if let Err(e) = self
                        .subscriptions
                        .clear_failing(&sub.account_id, &sub.subscription_id)
                        .await
                    {
                        tracing::warn!(error = %e, "could not clear failing_since");
                    }
                }
                Ok(Handled::Delivered)
            }
            Verdict::Retry { delay } => {
                let not_before = now.timestamp() + delay.as_secs_f64().ceil() as i64;
                let task = retry_task(job, job.attempt + 1, not_before);
                self.enqueue_retry(&task, delay).await?;
                self.claims.finish(&job.webhook_id, log, Finish::Retrying).await?;
                if self.failing_too_long(sub, now.timestamp()).await {
                    return Ok(Handled::Disabled);
                }
                Ok(Handled::RetryScheduled { delay })
            }
            Verdict::Exhausted => {
                let reason = match result {
                    Err(DeliveryError::Blocked(_)) => "target refused by the SSRF guard".to_string(),
                    _ => format!("retry schedule exhausted after {} attempts", job.attempt),
                };
                self.dead_letter(job, &reason, log.error.as_deref().unwrap_or(""))
                    .await?;
                self.claims.finish(&job.webhook_id, log, Finish::Exhausted).await?;
                if self.failing_too_long(sub, now.timestamp()).await {
                    return Ok(Handled::Disabled);
                }
                Ok(Handled::DeadLettered)
            }
            Verdict::Gone => {
                self.claims.finish(&job.webhook_id, log, Finish::Gone).await?;
                let reason = format!("receiver answered 410 Gone at {}", rfc3339(now.timestamp()));
                self.subscriptions
                    .disable(
                        &sub.account_id,
                        &sub.subscription_id,
                        &reason,
                        &rfc3339(now.timestamp()),
                    )
                    .await?;
                tracing::warn!(account_id = %sub.account_id, subscription_id = %sub.subscription_id, %reason, "subscription disabled");
                Ok(Handled::Disabled)
            }
        }
    }

    /// Not enough time left in this invocation to send: hand the same attempt to a retry message
    /// that arrives after the claim's lease has expired (so it can take the claim over), and leave
    /// the claim pending. Nothing is sent and no attempt is used.
    async fn defer(&self, job: &Job<'_>) -> Result<Handled, EngineError> {
        let delay = Duration::from_secs(self.lease_seconds.max(0) as u64 + 1);
        let not_before = Utc::now().timestamp() + delay.as_secs() as i64;
        self.enqueue_retry(&retry_task(job, job.attempt, not_before), delay)
            .await?;
        let sub = job.subscription;
        tracing::warn!(
            event_id = job.event_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = job.trigger,
            webhook_id = %job.webhook_id,
            attempt = job.attempt,
            delay_s = delay.as_secs(),
            "webhook deferred: the invocation's deadline is too close to send it"
        );
        self.metrics.observe(Observed::Deferred);
        Ok(Handled::Deferred { delay })
    }

    /// Put a retry on the category queue, delayed by at most 15 minutes (the rest is chained).
    pub async fn enqueue_retry(&self, task: &RetryTask, delay: Duration) -> Result<(), EngineError> {
        let key = self.seals.get().await?;
        let body = to_sqs_json(&task.clone().sealed(key));
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(sqs_delay(delay))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Queue {
                queue: self.queue_url.clone(),
                reason: aws_sdk_sqs::Error::from(e).to_string(),
            })
    }

    /// Put a message that cannot be processed on the DLQ as it is (so a redrive after a fix
    /// reprocesses it), with the reason, the field at fault and its original message id.
    pub async fn dead_letter_message(
        &self,
        body: &str,
        message_id: Option<&str>,
        reason: &str,
        field: Option<&str>,
    ) -> Result<(), EngineError> {
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("string attribute")
        };
        let mut req = self
            .sqs
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(if body.is_empty() {
                "(empty)".into()
            } else {
                sqs_text(body)
            })
            .message_attributes(
                "reason",
                attr(&sqs_text(&reason.chars().take(1000).collect::<String>())),
            );
        if let Some(f) = field.filter(|f| !f.is_empty()) {
            req = req.message_attributes("field", attr(&sqs_text(f)));
        }
        if let Some(id) = message_id {
            req = req.message_attributes("source_message_id", attr(id));
        }
        req.send().await.map(|_| ()).map_err(|e| EngineError::Queue {
            queue: self.dead_letter_url.clone(),
            reason: aws_sdk_sqs::Error::from(e).to_string(),
        })
    }

    async fn dead_letter(&self, job: &Job<'_>, reason: &str, last_error: &str) -> Result<(), EngineError> {
        let sub = job.subscription;
        let letter = DeadLetter {
            dataflows_dead_letter: 1,
            reason: reason.to_string(),
            webhook_id: job.webhook_id.clone(),
            trigger: job.trigger.to_string(),
            account_id: sub.account_id.clone(),
            subscription_id: sub.subscription_id.clone(),
            // The origin only: a URL's path and query are often its credential.
            url: sub.url.origin().ascii_serialization(),
            event_id: job.event_id.to_string(),
            attempts: job.attempt,
            first_attempt_at: job.first_attempt_at,
            last_error: last_error.to_string(),
            payload: serde_json::from_slice(job.body).unwrap_or_default(),
            seal: String::new(),
        }
        .sealed(self.seals.get().await?);
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
        };
        self.sqs
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(to_sqs_json(&letter))
            .message_attributes("reason", attr(&sqs_text(reason)).expect("string attribute"))
            .message_attributes("webhook_id", attr(&job.webhook_id).expect("string attribute"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Queue {
                queue: self.dead_letter_url.clone(),
                reason: aws_sdk_sqs::Error::from(e).to_string(),
            })?;
        tracing::error!(
            webhook_id = %job.webhook_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = job.trigger,
            reason,
            "webhook dead-lettered"
        );
        Ok(())
    }

    /// After a failed attempt: start the failing streak if needed, and disable a subscription
    /// whose every attempt has failed for longer than `auto_disable_after`. Best effort: a
    /// failure here is logged and never fails the record.
    async fn failing_too_long(&self, sub: &Subscription, now: i64) -> bool {
        let since = match sub.failing_since {
            Some(since) => since,
            None => match self
                .subscriptions
                .mark_failing(&sub.account_id, &sub.subscription_id, now)
                .await
            {
                Ok(since) => since,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record failing_since");
                    return false;
                }
            },
        };
        if now - since < self.auto_disable_after.as_secs() as i64 {
            return false;
        }
        let reason = format!(
            "every attempt failed since {} (auto-disable after {} hours)",
            rfc3339(since),
            self.auto_disable_after.as_secs() / 3600
        );
        match self
            .subscriptions
            .disable(&sub.account_id, &sub.subscription_id, &reason, &rfc3339(now))
            .await
        {
            Ok(()) => {
                tracing::warn!(account_id = %sub.account_id, subscription_id = %sub.subscription_id, %reason, "subscription disabled");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not disable a failing subscription");
                false
            }
        }
    }
}

fn log_attempt(job: &Job<'_>, result: &Result<Delivered, DeliveryError>, verdict: &Verdict) {
    let sub = job.subscription;
    match result {
        Ok(d) => tracing::info!(
            event_id = job.event_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = job.trigger,
            webhook_id = %job.webhook_id,
            attempt = job.attempt,
            status = d.status,
            latency_ms = d.latency.as_millis() as u64,
            "webhook delivered"
        ),
        Err(e) => tracing::warn!(
            event_id = job.event_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = job.trigger,
            webhook_id = %job.webhook_id,
            attempt = job.attempt,
            error = %e,
            next = ?verdict,
            "webhook attempt failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_starts_only_with_its_budget_left() {
        let now = Instant::now();
        let budget = Duration::from_secs(17);
        assert!(!must_defer(now, None, budget), "no deadline, no deferral");
        assert!(!must_defer(now, Some(now + Duration::from_secs(30)), budget));
        assert!(
            !must_defer(now, Some(now + budget), budget),
            "exactly the budget is enough"
        );
        assert!(must_defer(now, Some(now + budget - Duration::from_millis(1)), budget));
        assert!(must_defer(now, Some(now), budget));
        assert!(
            must_defer(now + Duration::from_secs(5), Some(now), budget),
            "already past"
        );
    }

    #[test]
    fn classification() {
        let now = Utc::now();
        let status = |s: u16, ra: Option<&str>| {
            Err(DeliveryError::FailureStatus {
                status: s,
                body: String::new(),
                retry_after: ra.map(String::from),
            })
        };
        assert_eq!(classify(&status(410, None), now), Outcome::Gone);
        assert_eq!(classify(&status(500, None), now), Outcome::Failed { retry_after: None });
        assert_eq!(
            classify(&status(429, Some("30")), now),
            Outcome::Failed {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            classify(&Err(DeliveryError::TimedOut(Duration::from_secs(15))), now),
            Outcome::Failed { retry_after: None }
        );
        let ok: Result<Delivered, DeliveryError> = Ok(Delivered {
            status: 204,
            latency: Duration::ZERO,
        });
        assert_eq!(classify(&ok, now), Outcome::Delivered);
    }
}
