//! Delivery claims in the State table: one item per webhook-id, so a redelivered SQS message or a
//! duplicate input event never sends twice to a subscriber that already got it, and concurrent
//! invocations never send at the same time. The item also holds the attempt log, so the log costs
//! no extra write: a delivered webhook costs exactly two writes (claim, finish).
//!
//! Item: pk `webhook#<id>`, sk `delivery`; status pending | retrying | delivered | exhausted | gone;
//! lease_until (unix s) while pending; owner (the [`ClaimToken`] of the invocation that claimed
//! it last); attempts_made; attempts (list of maps); expires_at (TTL).
//!
//! **Lost replies.** DynamoDB may apply a write and the answer never arrive; the SDK (or the
//! caller) then sends the same request again, and its condition now fails against the write it
//! made itself. Every claim carries a fresh owner token, and every finish is conditional on it, so
//! a condition failure whose old item shows our own token and the state we were writing is read
//! as "ours, already applied": a claim is won, a finish is done, never "another invocation" and
//! never an attempt logged twice
//! (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html,
//! "Error retries and exponential backoff").

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures::FutureExt;

use crate::store::attributes::{n, s};
use crate::trigger::Trigger;
use crate::webhook::WebhookId;

/// How long claims and their attempt logs are kept.
pub const CLAIM_TTL_SECONDS: i64 = 16 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    First,
    Retry(u32),
    Redrive,
}

/// Who holds a claim: drawn fresh for every claim an invocation makes, and sent again unchanged
/// when the same claim is retried, so that its own earlier write is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A fresh random token (128 bits).
    pub fn new() -> Self {
        let mut token = String::with_capacity(32);
        crate::logging::push_hex(&mut token, &rand::random::<u128>().to_be_bytes());
        ClaimToken(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&str> for ClaimToken {
    fn from(s: &str) -> Self {
        ClaimToken(s.to_string())
    }
}

/// How a finish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Written (or found already written by this very finish, whose reply was lost).
    Recorded,
    /// The claim is no longer ours: its lease ran out and another invocation claimed it. That
    /// invocation records its own attempt; ours is not written over it.
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: send now, then `finish`.
    Won,
    /// Nothing to do: already delivered, given up, or owned by the retry chain (`None`: the
    /// claim is gone or unreadable).
    Settled(Option<ClaimStatus>),
    /// Another invocation holds an unexpired lease: try again later.
    Busy,
}

/// A claim's `status` attribute: pending while an attempt holds the lease, then the state the
/// last attempt left the webhook in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimStatus {
    Pending,
    Retrying,
    Delivered,
    Exhausted,
    Gone,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Pending => "pending",
            ClaimStatus::Retrying => "retrying",
            ClaimStatus::Delivered => "delivered",
            ClaimStatus::Exhausted => "exhausted",
            ClaimStatus::Gone => "gone",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ClaimStatus::Pending,
            ClaimStatus::Retrying,
            ClaimStatus::Delivered,
            ClaimStatus::Exhausted,
            ClaimStatus::Gone,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One attempt, as logged on the claim item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLog {
    pub number: u32,
    pub at: i64,
    /// HTTP status, or 0 when there was no response.
    pub status: u16,
    pub latency_ms: u64,
    pub error: Option<String>,
}

impl AttemptLog {
    /// The log entry as stored on the claim item (an error is cut to 500 characters).
    pub(crate) fn entry(&self) -> AttributeValue {
        let mut entry = HashMap::from([
            ("n".to_string(), n(self.number)),
            ("at".to_string(), n(self.at)),
            ("status".to_string(), n(self.status)),
            ("latency_ms".to_string(), n(self.latency_ms)),
        ]);
        if let Some(e) = &self.error {
            entry.insert("error".into(), s(e.chars().take(500).collect::<String>()));
        }
        AttributeValue::M(entry)
    }

    /// [`AttemptLog::entry`] written as DynamoDB's JSON, straight into a batch statement
    /// (`{"M":{...}}`), without building the map.
    pub(crate) fn push_entry_json(&self, out: &mut String) {
        let mut number = itoa::Buffer::new();
        for (i, (name, value)) in [
            ("n", i64::from(self.number)),
            ("at", self.at),
            ("status", i64::from(self.status)),
            ("latency_ms", i64::try_from(self.latency_ms).unwrap_or(i64::MAX)),
        ]
        .into_iter()
        .enumerate()
        {
            out.push_str(if i == 0 { "{\"M\":{\"" } else { ",\"" });
            out.push_str(name);
            out.push_str("\":{\"N\":\"");
            out.push_str(number.format(value));
            out.push_str("\"}");
        }
        if let Some(e) = &self.error {
            let cut = e.char_indices().nth(500).map_or(e.as_str(), |(at, _)| &e[..at]);
            out.push_str(",\"error\":{\"S\":");
            crate::logging::push_json_str(out, cut);
            out.push('}');
        }
        out.push_str("}}");
    }
}

/// What the claim is about, stored for operators reading the State table.
#[derive(Debug, Clone)]
pub struct ClaimMeta<'a> {
    pub webhook_id: &'a WebhookId,
    pub account_id: &'a str,
    pub subscription_id: &'a str,
    pub event_id: &'a str,
    pub trigger: Trigger,
}

#[derive(Debug, thiserror::Error)]
#[error("state table {table}, webhook {webhook_id}: {source}")]
pub struct ClaimError {
    pub table: String,
    pub webhook_id: WebhookId,
    #[source]
    pub source: aws_sdk_dynamodb::Error,
}

impl crate::aws::Transient for ClaimError {
    fn is_transient(&self) -> bool {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        crate::aws::transient_code(self.source.code())
    }
}

#[derive(Debug, Clone)]
pub struct Claims {
    pub client: crate::aws::DynamoDb,
    pub table: String,
}

type UpdateFailure = SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>;

/// For an update whose condition failed, the item as it was (`ALL_OLD`; `None` if the service did
/// not return it); `None` for every other error.
fn condition_failed(e: &UpdateFailure) -> Option<Option<&HashMap<String, AttributeValue>>> {
    match e {
        SdkError::ServiceError(e) => match e.err() {
            UpdateItemError::ConditionalCheckFailedException(failed) => Some(failed.item()),
            _ => None,
        },
        _ => None,
    }
}

/// The partition key of a webhook's claim item.
pub(crate) fn claim_pk(webhook_id: &WebhookId) -> String {
    let mut pk = String::with_capacity(8 + webhook_id.as_str().len());
    pk.push_str("webhook#");
    pk.push_str(webhook_id.as_str());
    pk
}

fn key(webhook_id: &WebhookId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), s(claim_pk(webhook_id))),
        ("sk".to_string(), s("delivery")),
    ])
}

impl Claims {
    fn error(&self, webhook_id: &WebhookId, e: UpdateFailure) -> ClaimError {
        ClaimError {
            table: self.table.clone(),
            webhook_id: webhook_id.clone(),
            source: e.into(),
        }
    }

    /// Claim a first attempt: wins if nobody claimed this webhook yet, or if a claim is pending
    /// with an expired lease (its holder died between claim and finish).
    pub async fn claim_first(
        &self,
        meta: &ClaimMeta<'_>,
        now: i64,
        lease_seconds: i64,
        token: &ClaimToken,
    ) -> Result<Claim, ClaimError> {
        self.claim(meta, now, lease_seconds, Kind::First, token).await
    }

    /// Claim a retry: wins only if the chain has not moved past this retry message (at most
    /// `previous` attempts made) and nobody holds a live lease, so a duplicated or stale retry
    /// message cannot send twice.
    pub async fn claim_retry(
        &self,
        meta: &ClaimMeta<'_>,
        previous: u32,
        now: i64,
        lease_seconds: i64,
        token: &ClaimToken,
    ) -> Result<Claim, ClaimError> {
        self.claim(meta, now, lease_seconds, Kind::Retry(previous), token).await
    }

    /// Claim a webhook given up on and redriven from the dead-letter queue: wins only while its
    /// chain has ended (exhausted; or stopped undelivered because its subscription was disabled,
    /// deleted or changed: retrying, a pending claim whose lease expired, or never claimed when it
    /// was held back by its pace), and starts its attempt count (and so its retry schedule) again.
    pub async fn claim_redrive(
        &self,
        meta: &ClaimMeta<'_>,
        now: i64,
        lease_seconds: i64,
        token: &ClaimToken,
    ) -> Result<Claim, ClaimError> {
        self.claim(meta, now, lease_seconds, Kind::Redrive, token).await
    }

    async fn claim(
        &self,
        meta: &ClaimMeta<'_>,
        now: i64,
        lease_seconds: i64,
        kind: Kind,
        token: &ClaimToken,
    ) -> Result<Claim, ClaimError> {
        let (condition, attempts) = match kind {
            Kind::First => (
                "attribute_not_exists(pk) OR (#status = :pending AND lease_until < :now)",
                "attempts_made = if_not_exists(attempts_made, :zero)",
            ),
            Kind::Retry(_) => (
                "attempts_made <= :prev AND (#status = :retrying OR (#status = :pending AND lease_until < :now))",
                "attempts_made = if_not_exists(attempts_made, :zero)",
            ),
            Kind::Redrive => (
                "attribute_not_exists(pk) OR #status = :exhausted OR #status = :retrying OR \
                 (#status = :pending AND lease_until < :now)",
                "attempts_made = :zero",
            ),
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(meta.webhook_id)))
            .update_expression(format!(
                "SET #status = :pending, lease_until = :lease, expires_at = :expires, account_id = :account, \
                 subscription_id = :sub, event_id = :event, #trigger = :trigger, #owner = :owner, {attempts}"
            ))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#trigger", "trigger")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(token.as_str()))
            .expression_attribute_values(":pending", s(ClaimStatus::Pending.as_str()))
            .expression_attribute_values(":lease", n(now + lease_seconds))
            .expression_attribute_values(":expires", n(now + CLAIM_TTL_SECONDS))
            .expression_attribute_values(":account", s(meta.account_id))
            .expression_attribute_values(":sub", s(meta.subscription_id))
            .expression_attribute_values(":event", s(meta.event_id))
            .expression_attribute_values(":trigger", s(meta.trigger.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match kind {
            Kind::First => req = req.expression_attribute_values(":now", n(now)),
            Kind::Retry(prev) => {
                req = req
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":prev", n(prev))
                    .expression_attribute_values(":retrying", s(ClaimStatus::Retrying.as_str()))
            }
            Kind::Redrive => {
                req = req
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":exhausted", s(ClaimStatus::Exhausted.as_str()))
                    .expression_attribute_values(":retrying", s(ClaimStatus::Retrying.as_str()))
            }
        }
        let e = match req.send().boxed().await {
            Ok(_) => return Ok(Claim::Won),
            Err(e) => e,
        };
        match condition_failed(&e) {
            Some(old) => Ok(claim_refused(old, token, now, kind == Kind::First, meta.webhook_id)),
            None => Err(self.error(meta.webhook_id, e)),
        }
    }

    /// Give up a claim that will not be sent now (deferred): its lease ends at once, while the
    /// claim is still ours and pending, so the deferred message can claim it as soon as it comes
    /// back instead of waiting the lease out. `Ok(false)`: it was not ours any more.
    pub async fn release(&self, webhook_id: &WebhookId, token: &ClaimToken) -> Result<bool, ClaimError> {
        let e = match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhook_id)))
            .update_expression("SET lease_until = :zero")
            .condition_expression("#owner = :owner AND #status = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(token.as_str()))
            .expression_attribute_values(":pending", s(ClaimStatus::Pending.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        match condition_failed(&e) {
            // Sent again after a lost reply: our own release, already applied.
            Some(old) => Ok(old
                .and_then(|i| i.get("lease_until"))
                .and_then(|v| v.as_n().ok())
                .is_some_and(|v| v == "0")
                && old
                    .and_then(|i| i.get("owner"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(token.as_str())),
            None => Err(self.error(webhook_id, e)),
        }
    }

    /// Record an attempt and the state it leaves the webhook in; releases the lease. Only while
    /// the claim is still ours (`token`) and pending: sent again after a lost reply, it finds its
    /// own write and is done; after another invocation took the claim over it writes nothing.
    pub async fn finish(
        &self,
        webhook_id: &WebhookId,
        log: &AttemptLog,
        state: ClaimStatus,
        token: &ClaimToken,
    ) -> Result<Finished, ClaimError> {
        let entry = log.entry();
        let e = match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhook_id)))
            .update_expression(
                "SET #status = :state, attempts_made = :n, lease_until = :zero, updated_at = :at, \
                 attempts = list_append(if_not_exists(attempts, :empty), :entry)",
            )
            .condition_expression("#owner = :owner AND #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(token.as_str()))
            .expression_attribute_values(":pending", s(ClaimStatus::Pending.as_str()))
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":n", n(log.number))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":at", n(log.at))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":entry", AttributeValue::L(vec![entry]))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await
        {
            Ok(_) => return Ok(Finished::Recorded),
            Err(e) => e,
        };
        match condition_failed(&e) {
            Some(old) => Ok(finish_refused(old, token, state, log.number, webhook_id)),
            None => Err(self.error(webhook_id, e)),
        }
    }
}

/// A claim whose condition failed, read from the item as it was (`None`: not returned). Pure.
pub(crate) fn claim_refused(
    old: Option<&HashMap<String, AttributeValue>>,
    token: &ClaimToken,
    now: i64,
    first: bool,
    webhook_id: &WebhookId,
) -> Claim {
    let status = old
        .and_then(|i| i.get("status"))
        .and_then(|v| v.as_s().ok())
        .and_then(|v| ClaimStatus::parse(v));
    let lease = old
        .and_then(|i| i.get("lease_until"))
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let owner = old.and_then(|i| i.get("owner")).and_then(|v| v.as_s().ok());
    match (status, lease) {
        // Our own claim, applied by an earlier send of this request whose reply was lost.
        (Some(ClaimStatus::Pending), _) if owner.map(String::as_str) == Some(token.as_str()) => {
            tracing::info!(webhook_id = %webhook_id, "claim found already ours (a lost reply): won");
            Claim::Won
        }
        (Some(ClaimStatus::Pending), Some(until)) if until >= now => Claim::Busy,
        (Some(other), _) => Claim::Settled(Some(other)),
        // The emulator may not return the old item; a pending claim is then the safe guess.
        (None, _) if old.is_none() && first => Claim::Busy,
        (None, _) => Claim::Settled(None),
    }
}

/// A finish whose condition failed, read from the item as it was: our own write (sent again after
/// a lost reply) or superseded. Pure.
pub(crate) fn finish_refused(
    old: Option<&HashMap<String, AttributeValue>>,
    token: &ClaimToken,
    state: ClaimStatus,
    number: u32,
    webhook_id: &WebhookId,
) -> Finished {
    let get = |name: &str| old.and_then(|i| i.get(name));
    let ours = get("owner").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(token.as_str());
    let same_state = get("status").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(state.as_str());
    let same_attempt = get("attempts_made")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<u32>().ok())
        == Some(number);
    if ours && same_state && same_attempt {
        tracing::info!(webhook_id = %webhook_id, "finish found already written (a lost reply)");
        Finished::Recorded
    } else {
        Finished::Superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_token_is_128_random_bits_in_hex() {
        let (a, b) = (ClaimToken::new(), ClaimToken::new());
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }
}
