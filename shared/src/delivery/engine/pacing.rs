//! The engine's side of pacing (docs/design.md, "Pacing"): a subscription's turn, its send slots
//! reserved in blocks from the shared item, what a receiver's answer teaches the pace, and holding
//! a webhook back on the queue. The rules themselves are pure (`delivery::pace`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::delivery::attempt::{classify, hold};
pub(super) use crate::delivery::attempt::{Handled, Job};
use crate::delivery::client::{Delivered, DeliveryError};
use crate::delivery::pace::{self, Circuit, PaceState, Plan, Reach};
use crate::delivery::retry::Outcome;
use crate::metrics::Observed;
use crate::store::pace::{Backlog, Reserved};

use super::*;

/// One subscription's pacing in this process: the shared state as last seen, the slots reserved
/// and not yet handed out, the circuit, and the recent answers.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    pub(super) books: Mutex<PacerBooks>,
    /// One reservation at a time per subscription in a process: the others wait for it and
    /// take from its block.
    pub(super) reserving: tokio::sync::Mutex<()>,
}

impl Pacer {
    pub(super) fn books(&self) -> std::sync::MutexGuard<'_, PacerBooks> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub(super) struct PacerBooks {
    pub(super) known: PaceState,
    pub(super) pool: VecDeque<i64>,
    pub(super) waiting: usize,
    pub(super) circuit: Circuit,
    /// When the receiver last accepted a webhook (ms), the last second's worth.
    pub(super) accepted: VecDeque<i64>,
    /// Webhooks this process holds back now, and the oldest since when (reported with writes).
    pub(super) held: Backlog,
    /// A throttle answer was met here recently: paced even without a limit.
    pub(super) throttled_at_ms: i64,
    /// When webhooks asked for a slot here (ms), the last second's worth.
    pub(super) arrived: VecDeque<i64>,
    /// When the receiver last accepted one (ms).
    pub(super) last_accepted_ms: i64,
}

impl PacerBooks {
    pub(super) fn learn(&mut self, state: PaceState) {
        // tat and the pause only move forward; the adaptive rate is the latest written.
        self.known.tat_ms = self.known.tat_ms.max(state.tat_ms);
        self.known.paused_until_ms = self.known.paused_until_ms.max(state.paused_until_ms);
        if state.adaptive.is_some() {
            self.known.adaptive = state.adaptive;
        }
    }
}

/// What the pace lets a job do.
pub(super) enum Turn {
    /// Send at this time (unix ms); `None`: not paced, at once.
    At(Option<i64>),
    /// Hold it back on the queue until `until_ms`, with the slot reserved for it, if any.
    Hold { until_ms: i64, slot_ms: Option<i64> },
}

/// The circuit's probe, given back if the job ends without sending it.
pub(super) struct ProbeGuard<'a> {
    pub(super) pacer: Option<&'a Pacer>,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pacer {
            p.books().circuit.probing = false;
        }
    }
}

/// A job counted among its subscription's waiting ones while it looks for a slot.
pub(super) struct WaitingGuard<'a>(pub(super) &'a Pacer);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        let mut books = self.0.books();
        books.waiting = books.waiting.saturating_sub(1);
    }
}

impl Engine {
    /// When this job may be sent: at once (not paced), at its slot, or held back.
    pub(super) async fn turn(&self, job: &Job<'_>, pacer: &Pacer) -> Result<Turn, EngineError> {
        let sub = job.subscription;
        let now = now_ms();
        let (rate, adaptive) = {
            let books = pacer.books();
            let recently = now - books.throttled_at_ms < pace::ADAPTIVE_FOR.as_millis() as i64;
            let adaptive = recently && books.known.adaptive.is_some_and(|a| a.active(now));
            let rate =
                pace::pace_rate(sub.rate_limit, &books.known, now).filter(|_| sub.rate_limit.is_some() || adaptive);
            (rate, adaptive)
        };
        let Some(rate) = rate else {
            return Ok(Turn::At(None));
        };
        // Within the invocation: up to WAIT_IN_PROCESS, and never past the send budget.
        let in_process = match job.deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .saturating_sub(self.send_budget)
                .min(WAIT_IN_PROCESS),
            None => WAIT_IN_PROCESS,
        };
        let in_process_ms = in_process.as_millis() as i64;
        // A held webhook that arrives in time for its reserved slot is sent then.
        if let Some(slot) = job.held.and_then(|h| h.slot_ms) {
            let paused_until = pacer
                .books
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .known
                .paused_until_ms;
            if slot >= now - SLOT_TOLERANCE.as_millis() as i64 && slot >= paused_until {
                if slot - now <= in_process_ms {
                    return Ok(Turn::At(Some(slot)));
                }
                return Ok(Turn::Hold {
                    until_ms: slot - SLOT_LEAD.as_millis() as i64,
                    slot_ms: Some(slot),
                });
            }
        }
        // Reserve ahead only at a configured rate: an adaptive one may still fall.
        let ahead = if sub.rate_limit.is_some() && !adaptive {
            RESERVE_AHEAD
        } else {
            in_process
        };
        // Boxed: only paced subscriptions reserve slots, and the reservation's AWS request is
        // kept out of every job's future (docs/performance.md, "Sixth pass").
        let slot = Box::pin(self.slot(sub, pacer, rate, ahead, now)).await?;
        let now = now_ms();
        Ok(match slot {
            Ok(at) if at - now <= in_process_ms => Turn::At(Some(at)),
            Ok(at) => Turn::Hold {
                until_ms: at - SLOT_LEAD.as_millis() as i64,
                slot_ms: Some(at),
            },
            Err(until_ms) => Turn::Hold {
                until_ms,
                slot_ms: None,
            },
        })
    }

    /// A slot for one webhook: from the block this process already reserved, or from a new block
    /// sized to every webhook of this subscription waiting here now. `Err(until)`: no slot within
    /// `ahead`; hold until then.
    pub(super) async fn slot(
        &self,
        sub: &crate::subscription::Subscription,
        pacer: &Pacer,
        rate: f64,
        ahead: Duration,
        now: i64,
    ) -> Result<Result<i64, i64>, EngineError> {
        let key = sub.key();
        let take = |books: &mut PacerBooks, now: i64| -> Option<i64> {
            while let Some(t) = books.pool.pop_front() {
                if t >= now - SLOT_TOLERANCE.as_millis() as i64 {
                    return Some(t);
                }
            }
            None
        };
        {
            let mut books = pacer.books();
            books.arrived.push_back(now);
            while books.arrived.front().is_some_and(|&a| a < now - 1_000) {
                books.arrived.pop_front();
            }
            if let Some(t) = take(&mut books, now) {
                return Ok(Ok(t));
            }
            books.waiting += 1;
        }
        let _waiting = WaitingGuard(pacer);
        let _reserving = pacer.reserving.lock().await;
        for _ in 0..3 {
            let now = now_ms();
            let (plan, backlog) = {
                let mut books = pacer.books();
                if let Some(t) = take(&mut books, now) {
                    return Ok(Ok(t));
                }
                let demand = pace::block_demand(books.waiting, books.arrived.len(), rate);
                let plan = pace::plan(&books.known, rate, demand, now, ahead);
                (plan, books.held)
            };
            let (start, n) = match plan {
                Plan::Hold { until_ms } => return Ok(Err(until_ms)),
                Plan::Start { n, .. } | Plan::Append { n, .. } => {
                    match self
                        .pace
                        .reserve(key, plan, now, ahead.as_millis() as i64, backlog)
                        .await?
                    {
                        Reserved::Won { start_ms, state } => {
                            let mut books = pacer.books();
                            books.learn(state);
                            books.held = Backlog::default(); // reported with this write
                            (start_ms, n)
                        }
                        Reserved::Moved(state) => {
                            pacer.books().learn(state);
                            continue;
                        }
                    }
                }
            };
            let mut books = pacer.books();
            books.pool.extend(pace::slots(start, n, rate));
            if let Some(t) = take(&mut books, now_ms()) {
                return Ok(Ok(t));
            }
        }
        // Three blocks taken from under us: the subscription is busy; wait a little.
        Ok(Err(now_ms() + 1_000))
    }

    /// What the receiver's answer teaches the pace: the circuit, and for a 429 or 503 the pause
    /// and the adaptive rate (shared, so the subscription's other webhooks wait everywhere).
    pub(super) async fn observe_answer(
        &self,
        job: &Job<'_>,
        pacer: &Pacer,
        result: &Result<Delivered, DeliveryError>,
        now: chrono::DateTime<Utc>,
    ) {
        let sub = job.subscription;
        let t = now.timestamp_millis();
        let reach = match result {
            Err(DeliveryError::TimedOut(_) | DeliveryError::Connect(_)) => Reach::Unreachable,
            _ => Reach::Answered,
        };
        let throttle = match result {
            Err(DeliveryError::FailureStatus { status: 429 | 503, .. }) => match classify(result, now) {
                Outcome::Failed { retry_after } => Some(retry_after),
                _ => None,
            },
            _ => None,
        };
        let update = {
            let mut books = pacer.books();
            books.circuit.record(reach, t);
            if result.is_ok() {
                books.accepted.push_back(t);
                books.last_accepted_ms = t;
            }
            while books.accepted.front().is_some_and(|&a| a < t - 1_000) {
                books.accepted.pop_front();
            }
            throttle.and_then(|retry_after| {
                let accepted = books.accepted.len() as f64;
                let update = pace::on_throttle(sub.rate_limit, &books.known, retry_after, accepted, t)?;
                books.throttled_at_ms = t;
                books.known.paused_until_ms = books.known.paused_until_ms.max(update.paused_until_ms);
                books.known.adaptive = Some(update.adaptive);
                books.pool.clear(); // slots taken at the old rate or inside the pause
                Some(update)
            })
        };
        if let Some(update) = update {
            tracing::warn!(
                account_id = %sub.account_id,
                subscription_id = %sub.subscription_id,
                paused_ms = update.paused_until_ms - t,
                rate = update.adaptive.base,
                "receiver throttled: subscription paused and slowed"
            );
            let guard = pace::DECREASE_GUARD.as_millis() as i64;
            if let Err(e) = self.pace.throttled(sub.key(), update, t, guard).await {
                // Best effort: this process already slows down; others meet their own 429.
                tracing::warn!(error = %e, "could not share a throttle answer");
            }
        }
    }

    /// Held back by the pace or the circuit: the same attempt on the queue, delayed; not an
    /// attempt, no claim touched.
    pub(super) async fn hold(
        &self,
        job: &Job<'_>,
        pacer: &Pacer,
        until_ms: i64,
        slot_ms: Option<i64>,
        why: &str,
    ) -> Result<Handled, EngineError> {
        // Boxed: a rare path, kept out of every job's future (docs/performance.md, "Sixth pass").
        Box::pin(async move {
            let now = now_ms();
            let (task, delay) = hold(job, until_ms, slot_ms, now);
            self.queues.enqueue_retry(&task, delay).await?;
            let since = task.held.map_or(now, |h| h.since_ms);
            {
                let mut books = pacer.books();
                books.held.held = books.held.held.saturating_add(1).min(1_000_000);
                books.held.oldest_ms = Some(books.held.oldest_ms.map_or(since, |o| o.min(since)));
            }
            let sub = job.subscription;
            tracing::info!(
                account_id = %sub.account_id,
                subscription_id = %sub.subscription_id,
                webhook_id = %job.webhook_id,
                attempt = job.attempt,
                delay_ms = delay.as_millis() as u64,
                waiting_s = (now - since) / 1000,
                "webhook held back: {why}"
            );
            self.metrics.observe(Observed::Held {
                age_s: ((now - since) / 1000) as f64,
            });
            self.metrics
                .held_by(sub.key().to_string(), ((now - since) / 1000).max(0) as u64);
            Ok(Handled::Held { delay })
        })
        .await
    }
}
