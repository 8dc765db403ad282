//! The shared pacing state of one subscription in the State table: one item per paced
//! subscription (pk `pace#<account>#<subscription>`, sk `pace`), written only by the subscriptions
//! that are paced (a `rate_limit`, or a throttle answer in the last minutes), so a subscription
//! without either costs no request at all.
//!
//! Attributes (milliseconds since the epoch): `tat` (the GCRA's next free slot), `paused_until`,
//! `rate_base`, `rate_since` and `rate_ceiling` (the adaptive rate), `held` and `held_oldest` (the webhooks the
//! last writer was holding back, and since when the oldest of them waits), `expires_at` (TTL, s).
//!
//! Every write is one conditional `UpdateItem` of an item under 1 KB: one write unit, no read.
//! Which conditions are used, and why a lost reply is harmless, is in docs/design.md ("Pacing").

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures::FutureExt;
use std::collections::HashMap;

use crate::delivery::pace::{Adaptive, PaceState, Plan, Throttled};
use crate::store::attributes::{n, s};
use crate::store::keys;
use crate::subscription::SubscriptionKey;

/// How long a pacing item outlives its last write.
pub const PACE_TTL_SECONDS: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
#[error("state table {table}, pacing of subscription {key}: {source}")]
pub struct PaceError {
    pub table: String,
    pub key: SubscriptionKey,
    #[source]
    pub source: aws_sdk_dynamodb::Error,
}

/// What a reservation returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserved {
    /// The block is ours: its first slot, and the state after it.
    Won { start_ms: i64, state: PaceState },
    /// The condition no longer held: the state as it is now, to plan again.
    Moved(PaceState),
}

/// The backlog a writer reports with its write: webhooks it holds back, the oldest since when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub held: usize,
    pub oldest_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct PaceStore {
    pub client: crate::aws::DynamoDb,
    pub table: String,
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<f64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// The pacing state in an item (absent attributes: never set).
pub fn state_of(item: &HashMap<String, AttributeValue>) -> PaceState {
    let int = |name| number(item, name).map_or(0, |v| v as i64);
    PaceState {
        tat_ms: int("tat"),
        paused_until_ms: int("paused_until"),
        adaptive: match (number(item, "rate_base"), number(item, "rate_since")) {
            (Some(base), Some(since)) if base > 0.0 => Some(Adaptive {
                base,
                since_ms: since as i64,
                ceiling: number(item, "rate_ceiling").unwrap_or(base * 2.0),
            }),
            _ => None,
        },
    }
}

impl PaceStore {
    fn key(&self, sub: &SubscriptionKey) -> HashMap<String, AttributeValue> {
        let k = keys::pace(&sub.account_id, &sub.subscription_id);
        HashMap::from([("pk".to_string(), s(k.pk)), ("sk".to_string(), s(k.sk))])
    }

    fn error(&self, key: &SubscriptionKey, e: impl Into<aws_sdk_dynamodb::Error>) -> PaceError {
        PaceError {
            table: self.table.clone(),
            key: key.clone(),
            source: e.into(),
        }
    }

    /// Take the block `plan` describes (a [`Plan::Start`] or [`Plan::Append`]), reporting the
    /// writer's backlog with it. One write unit, won or not.
    pub async fn reserve(
        &self,
        sub: &SubscriptionKey,
        plan: Plan,
        now_ms: i64,
        horizon_ms: i64,
        backlog: Backlog,
    ) -> Result<Reserved, PaceError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(sub)))
            .expression_attribute_values(":expires", n(now_ms / 1000 + PACE_TTL_SECONDS))
            .expression_attribute_values(":held", n(backlog.held))
            .expression_attribute_values(":oldest", n(backlog.oldest_ms.unwrap_or(0)))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let sets = "expires_at = :expires, held = :held, held_oldest = :oldest";
        let req = match plan {
            // Idle: nothing reserved after `start` and no pause past it.
            Plan::Start { start_ms, end_ms, .. } => req
                .update_expression(format!("SET tat = :end, {sets}"))
                .condition_expression(
                    "(attribute_not_exists(tat) OR tat <= :start) AND \
                     (attribute_not_exists(paused_until) OR paused_until <= :start)",
                )
                .expression_attribute_values(":start", n(start_ms))
                .expression_attribute_values(":end", n(end_ms)),
            // Busy within the horizon: append after the reserved slots, which run past any pause.
            Plan::Append { span_ms, .. } => req
                .update_expression(format!("SET tat = tat + :span, {sets}"))
                .condition_expression(
                    "tat > :now AND tat <= :limit AND (attribute_not_exists(paused_until) OR paused_until <= tat)",
                )
                .expression_attribute_values(":span", n(span_ms))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":limit", n(now_ms + horizon_ms)),
            Plan::Hold { .. } => unreachable!("a hold reserves nothing"),
        };
        match req.send().boxed().await {
            Ok(out) => {
                let state = out.attributes().map(state_of).unwrap_or_default();
                let start_ms = match plan {
                    Plan::Start { start_ms, .. } => start_ms,
                    Plan::Append { span_ms, .. } => state.tat_ms - span_ms,
                    Plan::Hold { .. } => unreachable!(),
                };
                Ok(Reserved::Won { start_ms, state })
            }
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let UpdateItemError::ConditionalCheckFailedException(failed) = e.err() else {
                    unreachable!()
                };
                match failed.item() {
                    Some(item) => Ok(Reserved::Moved(state_of(item))),
                    None => self.read(sub).await.map(Reserved::Moved),
                }
            }
            Err(e) => Err(self.error(sub, e)),
        }
    }

    /// Record a throttle answer: the pause and the decreased rate, unless another throttle
    /// decreased it within the guard (then its pause stands). One write unit.
    pub async fn throttled(
        &self,
        sub: &SubscriptionKey,
        t: Throttled,
        now_ms: i64,
        guard_ms: i64,
    ) -> Result<(), PaceError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(sub)))
            .update_expression(
                "SET paused_until = :paused, rate_base = :base, rate_since = :since, rate_ceiling = :ceiling, \
                 expires_at = :expires",
            )
            .condition_expression(
                "attribute_not_exists(rate_since) OR rate_since <= :guard OR \
                 attribute_not_exists(paused_until) OR paused_until < :paused",
            )
            .expression_attribute_values(":paused", n(t.paused_until_ms))
            .expression_attribute_values(":base", n(t.adaptive.base))
            .expression_attribute_values(":since", n(t.adaptive.since_ms))
            .expression_attribute_values(":ceiling", n(t.adaptive.ceiling))
            .expression_attribute_values(":guard", n(now_ms - guard_ms))
            .expression_attribute_values(":expires", n(now_ms / 1000 + PACE_TTL_SECONDS))
            .send()
            .boxed()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(sub, e)),
        }
    }

    /// The state as stored (a consistent read), for when a condition failed without the old item.
    pub async fn read(&self, sub: &SubscriptionKey) -> Result<PaceState, PaceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(sub)))
            .consistent_read(true)
            .send()
            .boxed()
            .await
            .map_err(|e| self.error(sub, e))?;
        Ok(out.item().map(state_of).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_back_as_state() {
        let item = HashMap::from([
            ("tat".to_string(), n(1_000_200)),
            ("paused_until".to_string(), n(999_000)),
            ("rate_base".to_string(), n(2.5)),
            ("rate_since".to_string(), n(990_000)),
            ("rate_ceiling".to_string(), n(5)),
        ]);
        assert_eq!(
            state_of(&item),
            PaceState {
                tat_ms: 1_000_200,
                paused_until_ms: 999_000,
                adaptive: Some(Adaptive {
                    base: 2.5,
                    since_ms: 990_000,
                    ceiling: 5.0,
                }),
            }
        );
        assert_eq!(
            state_of(&HashMap::new()),
            PaceState::default(),
            "a new subscription is idle"
        );
    }
}
