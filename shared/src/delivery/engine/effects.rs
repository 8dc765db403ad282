//! Carrying an attempt's conclusion out: its effects written in order (the required ones fail
//! the job, the others are logged), the operational notices, a deferral, the attempt's log line.

use std::time::Instant;

use chrono::Utc;

use crate::aws::persist;
use crate::delivery::attempt::{deferral, Conclusion, Effect};
pub(super) use crate::delivery::attempt::{Handled, Job};
use crate::delivery::client::{Delivered, DeliveryError};
use crate::delivery::retry::Verdict;
use crate::delivery::task::Notice;
use crate::metrics::Observed;
use crate::store::claims::{AttemptLog, ClaimStatus, ClaimToken, Finished};
use crate::subscription::SubscriptionKey;

use super::*;

impl Engine {
    /// The effects in their order; a required one that fails stops there and fails the job (SQS
    /// redelivers it), a best-effort one is logged.
    pub(super) async fn apply(&self, job: &Job<'_>, c: Conclusion, token: &ClaimToken) -> Result<Handled, EngineError> {
        for effect in &c.effects {
            match self.write(job, effect, token).await {
                Ok(()) => {}
                Err(e) if effect.required() => return Err(e),
                Err(e) => tracing::warn!(
                    account_id = %job.subscription.account_id,
                    subscription_id = %job.subscription.subscription_id,
                    webhook_id = %job.webhook_id,
                    error = %e,
                    "could not write after an attempt (the webhook's fate is carried on): {}",
                    effect.describe()
                ),
            }
        }
        Ok(c.handled)
    }

    pub(super) async fn write(&self, job: &Job<'_>, effect: &Effect, token: &ClaimToken) -> Result<(), EngineError> {
        match effect {
            Effect::FinishClaim { status, log } => self.finish_claim(job, *status, log, token).await,
            // Every other effect is rare (a failure, the end of a failing streak): written through
            // a boxed future, so that the future of every job, which holds this one, does not
            // also hold room for theirs (an AWS SDK request's future is several KB;
            // docs/performance.md, "Sixth pass").
            _ => Box::pin(self.write_rare(job, effect, token)).await,
        }
    }

    /// The claim's result and the attempt log.
    async fn finish_claim(
        &self,
        job: &Job<'_>,
        status: ClaimStatus,
        log: &AttemptLog,
        token: &ClaimToken,
    ) -> Result<(), EngineError> {
        let finished = persist(after_send(job), "finish the claim", || {
            self.claims.finish(&job.webhook_id, log, status, token)
        })
        .await?;
        if finished == Finished::Superseded {
            tracing::warn!(
                webhook_id = %job.webhook_id,
                account_id = %job.subscription.account_id,
                subscription_id = %job.subscription.subscription_id,
                attempt = log.number,
                "attempt not recorded: the claim's lease ran out and another invocation holds it now"
            );
        }
        Ok(())
    }

    async fn write_rare(&self, job: &Job<'_>, effect: &Effect, token: &ClaimToken) -> Result<(), EngineError> {
        let sub = job.subscription;
        let (account, id) = (sub.account_id.as_str(), sub.subscription_id.as_str());
        let key = sub.key();
        let deadline = after_send(job);
        match effect {
            Effect::FinishClaim { status, log } => self.finish_claim(job, *status, log, token).await?,
            Effect::EnqueueRetry { task, delay } => {
                persist(deadline, "queue the retry", || self.queues.enqueue_retry(task, *delay)).await?
            }
            Effect::DeadLetter(letter) => {
                persist(deadline, "dead-letter the webhook", || self.queues.dead_letter(letter)).await?;
                tracing::error!(
                    webhook_id = %job.webhook_id,
                    account_id = account,
                    subscription_id = id,
                    trigger = %job.trigger,
                    reason = %letter.reason,
                    "webhook dead-lettered"
                );
            }
            Effect::ClearFailing => {
                self.subscriptions.clear_failing(key).await?;
                self.remember_failing(key.clone(), None);
            }
            Effect::MarkFailing { since, notice } => {
                let (since, started) = self.subscriptions.mark_failing(key, *since).await?;
                self.remember_failing(key.clone(), Some(since));
                if let (true, Some(notice)) = (started, notice) {
                    self.notify(notice, deadline).await?;
                }
            }
            Effect::Disable { reason, at, notice } => {
                let disabled = self.subscriptions.disable(key, reason, at).await?;
                tracing::warn!(account_id = account, subscription_id = id, %reason, "subscription disabled");
                if let (true, Some(notice)) = (disabled, notice) {
                    self.notify(notice, deadline).await?;
                }
            }
            Effect::Notify(notice) => self.notify(notice, deadline).await?,
        }
        Ok(())
    }

    /// An operational webhook on its way to the account's other subscriptions: the sealed notice
    /// on the category queue, tried in place until `deadline`.
    pub async fn notify(&self, notice: &Notice, deadline: Option<Instant>) -> Result<(), EngineError> {
        persist(deadline, "queue an operational webhook", || {
            self.queues.enqueue_notice(notice)
        })
        .await?;
        tracing::info!(
            account_id = %notice.account_id,
            about = %notice.about,
            trigger = %notice.trigger,
            notice_id = %notice.notice_id,
            "operational webhook queued"
        );
        Ok(())
    }

    pub(super) fn remember_failing(&self, key: SubscriptionKey, since: Option<i64>) {
        let mut known = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= 4096 {
            known.clear(); // the cached records take over again
        }
        known.insert(key, since);
    }

    /// Claimed but not to be sent now (the invocation's deadline is too close, a throttle met
    /// meanwhile puts its turn too far ahead, its pace's turn passed): the claim is released, and
    /// the same attempt goes back on the queue to come back in a second ([`deferral`]); if the
    /// release fails, past the claim's lease.
    pub(super) async fn defer(&self, job: &Job<'_>, token: &ClaimToken, why: &str) -> Result<Handled, EngineError> {
        // Boxed: a rare path, kept out of every job's future (docs/performance.md, "Sixth pass").
        Box::pin(async move {
            let released = match self.claims.single().release(&job.webhook_id, token).await {
                Ok(released) => released,
                Err(e) => {
                    tracing::warn!(webhook_id = %job.webhook_id, error = %e, "could not release a deferred claim: it comes back after its lease");
                    false
                }
            };
            let (task, delay) = deferral(job, self.lease_seconds, released, Utc::now().timestamp());
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
                "webhook deferred: {why}"
            );
            self.metrics.observe(Observed::Deferred);
            Ok(Handled::Deferred { delay })
        })
        .await
    }
}

/// How long a write that follows a send is tried in place: until the very end of the invocation,
/// because a record failed after its webhook went out would be sent again when it comes back.
fn after_send(job: &Job<'_>) -> Option<Instant> {
    job.deadline.map(|d| d + DEADLINE_MARGIN - crate::aws::PERSIST_MARGIN)
}

pub(super) fn log_attempt(job: &Job<'_>, result: &Result<Delivered, DeliveryError>, verdict: &Verdict) {
    let sub = job.subscription;
    // Strings as &str (recorded as they are), not Display (formatted into a scratch buffer first):
    // this line is written for every webhook.
    match result {
        Ok(d) => tracing::info!(
            event_id = job.event_id,
            account_id = sub.account_id.as_str(),
            subscription_id = sub.subscription_id.as_str(),
            trigger = job.trigger.as_str(),
            webhook_id = job.webhook_id.as_str(),
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
