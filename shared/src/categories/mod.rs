//! The shell around the trigger rules: for each (category, event), decide whether any
//! subscription needs state (none: no read, no write), read what the category states it reads,
//! call the pure rules, and commit. Three commit shapes, by what the state is
//! (docs/performance.md, "Trigger state"):
//!
//! - **message status** (sms): one conditional put of the message's own item, which also remembers
//!   the receipts that changed it, so a redelivery sends the same webhook again;
//! - **outcome counts** (performance, a whole batch per account): markers per message and one
//!   aggregated, token-guarded update per counter item ([`count_outcomes`], rules::rates::counting);
//! - **per-entity state** (balance, contacts, schedules): the state writes and a decision item in one
//!   transaction, so a redelivered event re-sends the same webhooks and never fires twice.
//!
//! Refusals are told apart (store::state): a failed condition means someone changed the state
//! first (read again) or a duplicate; throttling and transaction conflicts wait a jittered backoff;
//! an invalid write is permanent and the record is dead-lettered.
//!
//! This module holds [`decide`] and what the shapes share (the refusals and their backoff); each
//! shape is a file: [`message_status`], [`outcome_counts`], [`decisions`].

mod decisions;
mod message_status;
mod outcome_counts;

pub(crate) use outcome_counts::{count_batch, count_outcomes, new_token};

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::{EventData, InputEvent};
use crate::rules::keywords::keyword_match;
use crate::rules::rates::counting::{self};
use crate::rules::{self, CampaignCounts, Emit};
use crate::store::keys::{self};
use crate::store::state::{Refusal, StateStore, StateStoreError};
use crate::store::subscriptions::AccountSubscriptions;
use crate::trigger::{Category, Trigger};

use decisions::decide_with_decision;
use message_status::message_status;

/// Evaluations per event when the state keeps changing under it, or DynamoDB keeps refusing.
const ATTEMPTS: usize = 5;
/// Concurrent requests per batch group.
const IN_FLIGHT: usize = 16;

/// A jittered exponential wait before attempt `attempt + 1`: 20 ms × 2^attempt × [0.5, 1.5).
async fn backoff(attempt: usize) {
    let base = 20.0 * f64::from(1u32 << attempt.min(6));
    let jitter = 0.5 + rand::random::<f64>();
    tokio::time::sleep(Duration::from_millis((base * jitter) as u64)).await;
}

/// After a refusal on attempt `attempt`: wait and go on (`Ok`), or the error to report.
async fn after_refusal(state: &StateStore, r: Refusal, attempt: usize) -> Result<(), StateStoreError> {
    match r {
        // Someone changed the state first: read again, after a short jittered pause.
        Refusal::Condition(_) => {
            backoff(attempt.min(1)).await;
            Ok(())
        }
        Refusal::Busy(reason) if attempt + 1 >= ATTEMPTS => Err(StateStoreError::Busy {
            table: state.table.clone(),
            attempts: ATTEMPTS,
            reason,
        }),
        Refusal::Busy(_) => {
            backoff(attempt + 1).await;
            Ok(())
        }
        other => Err(state.refused(other)),
    }
}

/// What `category` emits for `event`, given the account's subscriptions. The performance
/// category's status receipts go through [`count_outcomes`] a batch at a time instead.
pub(crate) async fn decide(
    category: Category,
    state: &StateStore,
    event: &InputEvent,
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
) -> Result<Vec<Emit>, StateStoreError> {
    if let Some(emits) = rules::stateless(category, event) {
        return Ok(emits);
    }
    let wants = |t: Trigger| subs.valid.iter().any(|s| s.wants(t));
    match (category, &event.data) {
        // Per-subscription rules over the message itself: no state.
        (Category::Messaging, EventData::SmsReceived(d)) => Ok(subs
            .valid
            .iter()
            .filter(|s| s.wants(Trigger::KeywordMatched))
            .filter_map(|s| {
                let (keyword, match_type, reserved) = keyword_match(&d.body, &s.keywords, s.reserved_keywords)?;
                Some(Emit::to(
                    Trigger::KeywordMatched,
                    rules::keyword_matched(d, &keyword, match_type, reserved),
                    &s.subscription_id,
                ))
            })
            .collect()),
        // Reads the counts the performance function keeps, writes nothing.
        (Category::Operations, EventData::CampaignCompleted(d)) => {
            if !wants(Trigger::CampaignCompleted) {
                return Ok(vec![]);
            }
            let counted = if d.total_sent.is_some() && d.delivered.is_some() && d.failed.is_some() {
                CampaignCounts::default()
            } else {
                let items = state
                    .partition(&keys::campaign_partition(&event.account_id, &d.campaign_id))
                    .await?;
                counting::campaign_counts(&items)
            };
            Ok(vec![Emit::all(
                Trigger::CampaignCompleted,
                rules::campaign_completed(d, counted, event.occurred_at),
            )])
        }
        (Category::Sms, EventData::SmsStatusChanged(_)) => {
            if !wants(Trigger::SmsStatusChanged) {
                return Ok(vec![]);
            }
            message_status(state, event, now).await
        }
        (Category::Performance, EventData::SmsStatusChanged(_)) => {
            let token = new_token();
            count_outcomes(state, &[event], subs, now, &token)
                .await
                .pop()
                .expect("one result per event")
        }
        _ => decide_with_decision(category, state, event, subs, now).await,
    }
}
