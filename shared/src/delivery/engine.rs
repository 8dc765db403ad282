//! One attempt of one webhook to one subscription, and everything that follows from it: the
//! claim that makes it happen once, the send, the attempt log, and then delivered, a delayed retry
//! on the category queue, the dead-letter queue, or a disabled subscription.
//!
//! Order matters for "nothing lost": the retry message (or the dead letter) is written before the
//! claim is finished, so a crash in between leaves a pending claim whose lease expires and whose
//! SQS message comes back, never a claim that says "retrying" with no retry on its way.
//!
//! This is the shell around [`super::attempt`], which decides; here the clock is read, the
//! randomness drawn, and the effects written.
//!
//! The invocation's deadline is respected: a job that gets its turn to send when less than the
//! send budget (HTTP timeout + margin) is left is not sent but deferred, as a retry message for the
//! same attempt delayed past its claim's lease, so a large batch never runs into the function's
//! timeout and a deferral never counts as an attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::delivery::attempt::{conclude, deferral, Conclusion, Effect, Limits};
pub use crate::delivery::attempt::{Handled, Job};
use crate::delivery::client::{send, Delivered, DeliveryError};
use crate::delivery::queue::{QueueError, Queues};
use crate::delivery::retry::{RetryPolicy, Verdict};
use crate::metrics::{Metrics, Observed};
use crate::store::claims::{Claim, ClaimError, ClaimMeta, Claims};
use crate::store::subscriptions::{SubscriptionWriter, UpdateError};
use crate::subscription::SubscriptionKey;
use crate::webhook::WebhookId;

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
    lanes: std::sync::Mutex<std::collections::HashMap<SubscriptionKey, Arc<Semaphore>>>,
}

impl Lanes {
    pub fn new(per_subscription: usize) -> Self {
        Lanes {
            per_subscription: per_subscription.max(1),
            lanes: Default::default(),
        }
    }

    pub async fn enter(&self, key: SubscriptionKey) -> OwnedSemaphorePermit {
        let lane = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            if lanes.len() >= 1024 {
                lanes.retain(|_, lane| Arc::strong_count(lane) > 1); // forget the idle ones
            }
            lanes
                .entry(key)
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
    State(#[from] ClaimError),
    #[error(transparent)]
    Subscription(#[from] UpdateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("webhook {0} is being sent by another invocation")]
    Busy(WebhookId),
}

/// How a deployment delivers: the settings the engine needs, apart from its clients.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: RetryPolicy,
    /// How long a claim is ours before another invocation may take it over.
    pub claim_lease: Duration,
    pub auto_disable_after: Duration,
    /// Private and loopback targets allowed (the local stack); the SSRF guard otherwise.
    pub allow_private_targets: bool,
    /// Concurrent sends (and, as many, claim writes) across a batch.
    pub delivery_concurrency: usize,
    /// Concurrent sends to one subscription.
    pub subscription_concurrency: usize,
    pub http_timeout: Duration,
}

impl EngineConfig {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        EngineConfig {
            policy: RetryPolicy {
                schedule: settings.retry_schedule.clone(),
            },
            claim_lease: settings.claim_lease,
            auto_disable_after: settings.auto_disable_after,
            allow_private_targets: settings.allow_private_targets,
            delivery_concurrency: settings.delivery_concurrency,
            subscription_concurrency: settings.subscription_concurrency,
            http_timeout: settings.http_timeout,
        }
    }
}

/// Runs jobs: claims, sends, and writes what [`conclude`] decided.
pub struct Engine {
    http: reqwest::Client,
    claims: Claims,
    subscriptions: SubscriptionWriter,
    queues: Queues,
    limits: Limits,
    lease_seconds: i64,
    allow_private_targets: bool,
    /// Time a send needs before the deadline: the HTTP timeout plus [`DEADLINE_MARGIN`].
    send_budget: Duration,
    /// Bounds sends per subscription, taken first: a slow receiver waits in its own lane and
    /// never queues ahead of the others for the batch's slots.
    lanes: Lanes,
    /// Bounds concurrent claim writes (as many as sends), so a batch with many subscriptions does
    /// not open one DynamoDB call per delivery at once, and a claim never holds a send slot.
    claiming: Semaphore,
    /// Bounds concurrent HTTP requests across a batch.
    sending: Semaphore,
    metrics: Metrics,
}

impl Engine {
    pub fn new(
        http: reqwest::Client,
        claims: Claims,
        subscriptions: SubscriptionWriter,
        queues: Queues,
        config: EngineConfig,
    ) -> Self {
        Engine {
            http,
            claims,
            subscriptions,
            queues,
            limits: Limits {
                policy: config.policy,
                auto_disable_after: config.auto_disable_after,
            },
            lease_seconds: config.claim_lease.as_secs().max(1) as i64,
            allow_private_targets: config.allow_private_targets,
            send_budget: config.http_timeout + DEADLINE_MARGIN,
            lanes: Lanes::new(config.subscription_concurrency),
            claiming: Semaphore::new(config.delivery_concurrency),
            sending: Semaphore::new(config.delivery_concurrency),
            metrics: Metrics::default(),
        }
    }

    /// The queues the engine writes retries and dead letters to.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// The counts and latencies observed since the last batch.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn run(&self, job: &Job<'_>) -> Result<Handled, EngineError> {
        let sub = job.subscription;
        let _lane = self.lanes.enter(sub.key()).await;
        let claim = {
            let _slot = self.claiming.acquire().await.expect("never closed");
            self.claim(job, Utc::now().timestamp()).await?
        };
        match claim {
            Claim::Won => {}
            Claim::Settled(status) => return Ok(Handled::AlreadySettled(status)),
            Claim::Busy => return Err(EngineError::Busy(job.webhook_id.clone())),
        }

        let permit = self.sending.acquire().await.expect("never closed");
        if must_defer(Instant::now(), job.deadline, self.send_budget) {
            drop(permit); // the slot is for sends, not for the retry message
            return self.defer(job).await;
        }
        let result = send(
            &self.http,
            sub,
            &job.webhook_id,
            Utc::now().timestamp(),
            job.body,
            self.allow_private_targets,
        )
        .await;
        drop(permit);
        let conclusion = conclude(job, &result, &self.limits, Utc::now(), rand::random::<f64>());
        log_attempt(job, &result, &conclusion.verdict);
        let handled = self.apply(job, conclusion).await;
        self.metrics.observe(match (&result, &handled) {
            (Ok(d), _) => Observed::Delivered {
                latency_ms: d.latency.as_secs_f64() * 1000.0,
            },
            (Err(_), h) => Observed::Failed {
                retried: matches!(h, Ok(Handled::RetryScheduled { .. })),
                exhausted: matches!(h, Ok(Handled::DeadLettered)),
                disabled: matches!(h, Ok(Handled::Disabled)),
            },
        });
        handled
    }

    async fn claim(&self, job: &Job<'_>, now: i64) -> Result<Claim, ClaimError> {
        let sub = job.subscription;
        let meta = ClaimMeta {
            webhook_id: &job.webhook_id,
            account_id: &sub.account_id,
            subscription_id: &sub.subscription_id,
            event_id: job.event_id,
            trigger: job.trigger,
        };
        if job.redrive {
            self.claims.claim_redrive(&meta, now, self.lease_seconds).await
        } else if job.attempt <= 1 {
            self.claims.claim_first(&meta, now, self.lease_seconds).await
        } else {
            self.claims
                .claim_retry(&meta, job.attempt - 1, now, self.lease_seconds)
                .await
        }
    }

    /// The effects in their order; a required one that fails stops there and fails the job (SQS
    /// redelivers it), a best-effort one is logged.
    async fn apply(&self, job: &Job<'_>, c: Conclusion) -> Result<Handled, EngineError> {
        for effect in &c.effects {
            match self.write(job, effect).await {
                Ok(()) => {}
                Err(e) if effect.required() => return Err(e),
                Err(e) => tracing::warn!(
                    account_id = %job.subscription.account_id,
                    subscription_id = %job.subscription.subscription_id,
                    error = %e,
                    "could not update the subscription after an attempt: {}",
                    effect.describe()
                ),
            }
        }
        Ok(c.handled)
    }

    async fn write(&self, job: &Job<'_>, effect: &Effect) -> Result<(), EngineError> {
        let sub = job.subscription;
        let (account, id) = (sub.account_id.as_str(), sub.subscription_id.as_str());
        let key = sub.key();
        match effect {
            Effect::FinishClaim { status, log } => self.claims.finish(&job.webhook_id, log, *status).await?,
            Effect::EnqueueRetry { task, delay } => self.queues.enqueue_retry(task, *delay).await?,
            Effect::DeadLetter(letter) => {
                self.queues.dead_letter(letter).await?;
                tracing::error!(
                    webhook_id = %job.webhook_id,
                    account_id = account,
                    subscription_id = id,
                    trigger = %job.trigger,
                    reason = %letter.reason,
                    "webhook dead-lettered"
                );
            }
            Effect::ClearFailing => self.subscriptions.clear_failing(&key).await?,
            Effect::MarkFailing { since } => {
                self.subscriptions.mark_failing(&key, *since).await?;
            }
            Effect::Disable { reason, at } => {
                self.subscriptions.disable(&key, reason, at).await?;
                tracing::warn!(account_id = account, subscription_id = id, %reason, "subscription disabled");
            }
        }
        Ok(())
    }

    /// Not enough time left in this invocation to send: the same attempt goes back on the queue
    /// past the claim's lease ([`deferral`]); the claim stays pending.
    async fn defer(&self, job: &Job<'_>) -> Result<Handled, EngineError> {
        let (task, delay) = deferral(job, self.lease_seconds, Utc::now().timestamp());
        self.queues.enqueue_retry(&task, delay).await?;
        let sub = job.subscription;
        tracing::warn!(
            event_id = job.event_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = %job.trigger,
            webhook_id = %job.webhook_id,
            attempt = job.attempt,
            delay_s = delay.as_secs(),
            "webhook deferred: the invocation's deadline is too close to send it"
        );
        self.metrics.observe(Observed::Deferred);
        Ok(Handled::Deferred { delay })
    }
}

fn log_attempt(job: &Job<'_>, result: &Result<Delivered, DeliveryError>, verdict: &Verdict) {
    let sub = job.subscription;
    match result {
        Ok(d) => tracing::info!(
            event_id = job.event_id,
            account_id = %sub.account_id,
            subscription_id = %sub.subscription_id,
            trigger = %job.trigger,
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
            trigger = %job.trigger,
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
}
