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

use crate::FastMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;

use crate::aws::persist;
use crate::delivery::attempt::{conclude, Limits, Seen};
pub use crate::delivery::attempt::{Handled, Job};
use crate::delivery::client::send;
use crate::delivery::fair::FairSlots;
use crate::delivery::pace::{self, Gate};
use crate::delivery::queue::{QueueError, Queues};
use crate::delivery::retry::RetryPolicy;
use crate::metrics::{Metrics, Observed};
use crate::store::claim_batch::{ClaimBatches, STATEMENTS_PER_REQUEST};
use crate::store::claims::{Claim, ClaimError, ClaimMeta, ClaimToken, Claims};
use crate::store::pace::{PaceError, PaceStore};
use crate::store::partiql::PartiqlBatch;
use crate::store::subscriptions::{SubscriptionWriter, UpdateError};
use crate::subscription::SubscriptionKey;
use crate::webhook::WebhookId;

mod effects;
mod pacing;

use effects::log_attempt;
use pacing::{Pacer, ProbeGuard, Turn};

/// Margin kept, beyond one request's timeout, for writing the result and answering Lambda.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Whether a job whose turn to send comes at `now` must be deferred: a send started now could
/// outlast the invocation. Pure; `budget` is the HTTP timeout plus [`DEADLINE_MARGIN`].
pub fn must_defer(now: Instant, deadline: Option<Instant>, budget: Duration) -> bool {
    deadline.is_some_and(|d| d.saturating_duration_since(now) < budget)
}

/// Whether a claim taken `held` ago still covers a send started now: at least a quarter of its
/// lease must be left, or another invocation could take the claim over as the send starts (a
/// paced webhook, or one that waited long for a send slot, claimed before its wait). A send
/// longer than the lease is the lease's configuration (`CLAIM_LEASE` against `HTTP_TIMEOUT`),
/// not this wait. Pure.
pub fn lease_covers(held: Duration, lease: Duration) -> bool {
    held <= lease.mul_f64(0.75)
}

/// What the engine keeps for one subscription in this process: its pacing, its claim window and
/// its send lanes, found with one lookup per webhook.
#[derive(Debug)]
struct PerSubscription {
    pacer: Pacer,
    /// Its webhooks claimed or being claimed ([`WINDOW_LANES`] times its lanes), taken first.
    window: Semaphore,
    /// Its concurrent sends, taken after the claim.
    lanes: Semaphore,
}

/// Subscriptions remembered in a process before the idle ones are forgotten.
const REMEMBERED_SUBSCRIPTIONS: usize = 4096;

/// Failures that leave the job for SQS to redeliver.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] ClaimError),
    #[error(transparent)]
    Subscription(#[from] UpdateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Pace(#[from] PaceError),
    #[error("webhook {0} is being sent by another invocation")]
    Busy(WebhookId),
}

/// How far ahead a webhook may wait in the invocation for its send slot; later slots are held
/// back on the queue (a message delayed to [`SLOT_LEAD`] before the slot).
pub const WAIT_IN_PROCESS: Duration = Duration::from_secs(5);
/// A held webhook with a reserved slot comes back this long before it, so that SQS's delay
/// (whole seconds) and the poll never make it miss the slot.
pub const SLOT_LEAD: Duration = Duration::from_secs(3);
/// How far ahead slots are reserved for a subscription with a configured `rate_limit` (the rest
/// of the backlog is held back without a slot and reserves when it comes back): under SQS's
/// 15-minute delay.
pub const RESERVE_AHEAD: Duration = Duration::from_secs(14 * 60);
/// A reserved slot missed by more than this is not used: sending it late could put two sends
/// closer than the rate allows. The webhook reserves again.
pub const SLOT_TOLERANCE: Duration = Duration::from_millis(50);
/// A receiver that accepted one of the subscription's webhooks this recently is making progress:
/// its 429s and 503s ask for a slower pace and are retried on the schedule's first step.
pub const PROGRESSING_WITHIN: Duration = Duration::from_secs(10);
/// A send slot reserve: an account beyond its fair share leaves this share of the slots free.
pub const FAIR_RESERVE_SHARE: usize = 8;

/// A subscription's claim window, in send lanes: with 4 lanes, up to 16 of its webhooks are
/// claimed or being claimed at once, 12 of them ahead of the sends, so that the claims written in
/// batches (up to a 20 ms wait to fill a request, then its round trip) are ready before a lane
/// frees, also for a receiver that answers at once (docs/performance.md, "Seventh pass").
pub const WINDOW_LANES: usize = 4;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Wait until `at_ms` (unix ms); at once if it has passed.
async fn sleep_until_ms(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
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
    /// Claims and finishes, written 25 to a request ([`ClaimBatches`]).
    claims: ClaimBatches,
    subscriptions: SubscriptionWriter,
    queues: Queues,
    limits: Limits,
    lease_seconds: i64,
    allow_private_targets: bool,
    /// Time a send needs before the deadline: the HTTP timeout plus [`DEADLINE_MARGIN`].
    send_budget: Duration,
    /// Each subscription's window bounds its webhooks claimed or being claimed ([`WINDOW_LANES`]
    /// times its lanes), taken first: a slow receiver's webhooks wait there, unclaimed, and never
    /// queue ahead of the others for the batch's slots. Its lanes bound its sends, taken after
    /// the claim. Its pacer holds its pace and circuit.
    seen: Mutex<FastMap<SubscriptionKey, Arc<PerSubscription>>>,
    /// Lanes per subscription; its window is [`WINDOW_LANES`] times as many.
    lanes_per_subscription: usize,
    /// Bounds the webhooks between their claim and the end of their send (twice the send slots
    /// and four claim requests' worth, shared fairly between accounts), so a claim never holds a
    /// send slot, the next claim requests fill while the sends go on, and an account whose
    /// receivers hang claims no further ahead than its share.
    pipeline: Arc<FairSlots>,
    /// Bounds concurrent HTTP requests across a batch, shared fairly between accounts.
    sending: Arc<FairSlots>,
    pace: PaceStore,
    /// Subscriptions whose failing streak this process started (unix s), so that a success
    /// ends it even before the cached record shows it.
    /// `None`: this process ended it, whatever an older cached record says.
    failing: Mutex<FastMap<SubscriptionKey, Option<i64>>>,
    metrics: Metrics,
}

impl Engine {
    /// `batch` carries the claims and results written together ([`ClaimBatches`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        http: reqwest::Client,
        claims: Claims,
        batch: Arc<dyn PartiqlBatch>,
        subscriptions: SubscriptionWriter,
        queues: Queues,
        pace: PaceStore,
        config: EngineConfig,
    ) -> Self {
        Engine {
            pace,
            seen: Mutex::default(),
            lanes_per_subscription: config.subscription_concurrency.max(1),
            failing: Mutex::default(),
            http,
            claims: ClaimBatches::new(claims, batch),
            subscriptions,
            queues,
            limits: Limits {
                policy: config.policy,
                auto_disable_after: config.auto_disable_after,
            },
            lease_seconds: config.claim_lease.as_secs().max(1) as i64,
            allow_private_targets: config.allow_private_targets,
            send_budget: config.http_timeout + DEADLINE_MARGIN,
            pipeline: FairSlots::new(
                2 * config.delivery_concurrency + 4 * STATEMENTS_PER_REQUEST,
                (2 * config.delivery_concurrency + 4 * STATEMENTS_PER_REQUEST) / FAIR_RESERVE_SHARE,
            ),
            sending: FairSlots::new(
                config.delivery_concurrency,
                config.delivery_concurrency / FAIR_RESERVE_SHARE,
            ),
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

    /// Whether a subscription without a configured limit is paced by a throttle answer met here.
    fn became_paced(&self, sub: &crate::subscription::Subscription, pacer: &Pacer) -> bool {
        if sub.rate_limit.is_some() {
            return false;
        }
        let books = pacer.books();
        let now = now_ms();
        now - books.throttled_at_ms < pace::ADAPTIVE_FOR.as_millis() as i64
            && books.known.adaptive.is_some_and(|a| a.active(now))
    }

    /// The subscription's state in this process, created on first use.
    fn per_subscription(&self, key: &SubscriptionKey) -> Arc<PerSubscription> {
        let mut known = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = known.get(key) {
            return state.clone();
        }
        if known.len() >= REMEMBERED_SUBSCRIPTIONS {
            known.retain(|_, s| Arc::strong_count(s) > 1); // forget the idle ones
        }
        let lanes = self.lanes_per_subscription;
        known
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(PerSubscription {
                    pacer: Pacer::default(),
                    window: Semaphore::new(WINDOW_LANES * lanes),
                    lanes: Semaphore::new(lanes),
                })
            })
            .clone()
    }

    pub async fn run(&self, job: &Job<'_>) -> Result<Handled, EngineError> {
        let sub = job.subscription;
        let key = sub.key();
        let state = self.per_subscription(key);
        let pacer = &state.pacer;
        // Until its claim is answered, a job counts among those whose claims are still to come
        // (a queued claim request goes as soon as no other can join it).
        let approaching = self.claims.approaching();
        // Paced subscriptions take their slot before the window, so that every webhook of the
        // subscription waiting here shares one reservation.
        let mut at = match self.turn(job, pacer).await? {
            Turn::Hold { until_ms, slot_ms } => {
                return self
                    .hold(job, pacer, until_ms, slot_ms, "its subscription's pace")
                    .await;
            }
            Turn::At(at) => at,
        };
        // Unpaced webhooks take their subscription's claim window first: at most WINDOW_LANES
        // times its send lanes are claimed or being claimed at once, so the claims of the next
        // sends are written in batches while the current ones are out, and a slow receiver's
        // webhooks wait here, unclaimed, without holding a claim slot the others need.
        let mut window = None;
        if at.is_none() {
            let entered = state.window.acquire().await.expect("never closed");
            // A throttle answer met while this one waited in the window paces it now.
            if self.became_paced(sub, pacer) {
                drop(entered);
                match self.turn(job, pacer).await? {
                    Turn::Hold { until_ms, slot_ms } => {
                        return self
                            .hold(job, pacer, until_ms, slot_ms, "its subscription's pace")
                            .await;
                    }
                    Turn::At(Some(t)) => at = Some(t),
                    Turn::At(None) => window = Some(state.window.acquire().await.expect("never closed")),
                }
            } else {
                window = Some(entered);
            }
        }
        // The circuit, checked as late as possible before anything is written: an unreachable
        // receiver's webhooks wait without a claim or a send slot.
        let gate = {
            let mut books = pacer.books();
            books.circuit.gate(now_ms())
        };
        let mut probe = ProbeGuard {
            pacer: matches!(gate, Gate::Probe).then_some(pacer),
        };
        if let Gate::Open { until_ms } = gate {
            drop(window);
            return self
                .hold(job, pacer, until_ms, None, "its receiver is unreachable (circuit open)")
                .await;
        }
        // From the claim to the send's end: at most twice the send slots, shared fairly, so an
        // account whose receivers hang cannot claim far ahead of what it can send.
        let in_pipeline = self.pipeline.acquire(&sub.account_id).await;
        // One token for this claim and its finish, the same on every try of either.
        let token = ClaimToken::new();
        let claim = self.claim(job, Utc::now().timestamp(), &token).await;
        drop(approaching);
        let claim = claim?;
        let claimed_at = Instant::now();
        let _open = match claim {
            Claim::Won => self.claims.open(),
            Claim::Settled(status) => return Ok(Handled::AlreadySettled(status)),
            Claim::Busy => return Err(EngineError::Busy(job.webhook_id.clone())),
        };
        // Claimed before the lane and the slot, so the claim's round trip never delays the send
        // past them. A paced send that finds its lane or a send slot only after its slot has
        // passed takes a new slot rather than go late (late sends bunch up against the next ones).
        let (sending_slot, lane) = loop {
            if let Some(t) = at {
                sleep_until_ms(t).await;
            }
            let entered = state.lanes.acquire().await.expect("never closed");
            let sending = self.sending.acquire(&sub.account_id).await;
            match at {
                Some(t) if now_ms() - t > SLOT_TOLERANCE.as_millis() as i64 => {
                    drop((sending, entered));
                    match self.turn(job, pacer).await? {
                        Turn::At(next) => at = next,
                        Turn::Hold { .. } => {
                            return self
                                .defer(
                                    job,
                                    &token,
                                    "its turn in the subscription's pace passed while it waited",
                                )
                                .await
                        }
                    }
                }
                _ => break (sending, entered),
            }
        };
        let mut slot = sending_slot;
        // A throttle answer met since this one passed unpaced: it waits for a slot of the pace
        // (in the invocation, or back on the queue past its claim's lease), not an attempt.
        if at.is_none() && self.became_paced(sub, pacer) {
            drop(slot);
            match self.turn(job, pacer).await? {
                Turn::At(Some(t)) => {
                    sleep_until_ms(t).await;
                }
                Turn::At(None) => {}
                Turn::Hold { .. } => {
                    return self
                        .defer(job, &token, "its subscription was throttled meanwhile")
                        .await
                }
            }
            slot = self.sending.acquire(&sub.account_id).await;
        }
        if must_defer(Instant::now(), job.deadline, self.send_budget) {
            drop(slot); // the slot is for sends, not for the retry message
            return self
                .defer(job, &token, "the invocation's deadline is too close to send it")
                .await;
        }
        let lease = Duration::from_secs(self.lease_seconds as u64);
        if !lease_covers(claimed_at.elapsed(), lease) {
            drop(slot);
            return self
                .defer(
                    job,
                    &token,
                    "it waited for its send so long that its claim's lease is nearly over",
                )
                .await;
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
        drop((slot, lane, window, in_pipeline)); // the result is not a send: it waits for no lane
        probe.pacer = None; // the probe was sent: its answer decides the circuit
        let now = Utc::now();
        self.observe_answer(job, pacer, &result, now).await;
        let seen = Seen {
            failing_since: {
                let known = self.failing.lock().unwrap_or_else(|p| p.into_inner());
                known.get(key).copied().unwrap_or(sub.failing_since)
            },
            progressing: {
                let books = pacer.books();
                now.timestamp_millis() - books.last_accepted_ms < PROGRESSING_WITHIN.as_millis() as i64
            },
        };
        let conclusion = conclude(job, &result, &self.limits, seen, now, rand::random::<f64>());
        log_attempt(job, &result, &conclusion.verdict);
        let handled = self.apply(job, conclusion, &token).await;
        self.metrics.observe(match (&result, &handled) {
            (Ok(d), _) => Observed::Delivered {
                latency_ms: d.latency.as_secs_f64() * 1000.0,
            },
            (Err(_), h) => Observed::Failed {
                retried: matches!(h, Ok(Handled::RetryScheduled { .. })),
                exhausted: matches!(h, Ok(Handled::DeadLettered | Handled::Disabled { dead_lettered: true })),
                disabled: matches!(h, Ok(Handled::Disabled { .. })),
            },
        });
        handled
    }

    /// The claim, tried again in place (with the same token) while AWS throttles, fails or loses
    /// the reply, and the deadline allows.
    async fn claim(&self, job: &Job<'_>, now: i64, token: &ClaimToken) -> Result<Claim, ClaimError> {
        let sub = job.subscription;
        let meta = ClaimMeta {
            webhook_id: &job.webhook_id,
            account_id: &sub.account_id,
            subscription_id: &sub.subscription_id,
            event_id: job.event_id,
            trigger: job.trigger,
        };
        let lease = self.lease_seconds;
        persist(job.deadline, "claim", || async {
            // A send slot idle now waits for claims: no lingering for a full request.
            let urgent = self.sending.idle();
            if job.redrive {
                self.claims.single().claim_redrive(&meta, now, lease, token).await
            } else if job.attempt <= 1 {
                self.claims.claim_first(&meta, now, lease, token, urgent).await
            } else {
                self.claims
                    .claim_retry(&meta, job.attempt - 1, now, lease, token, urgent)
                    .await
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_starts_only_while_its_claim_covers_it() {
        let lease = Duration::from_secs(60);
        assert!(lease_covers(Duration::ZERO, lease));
        assert!(lease_covers(Duration::from_secs(45), lease), "a quarter left");
        assert!(!lease_covers(Duration::from_millis(45_001), lease));
        assert!(
            lease_covers(Duration::from_millis(1_500), Duration::from_secs(2)),
            "short leases too"
        );
    }

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
