//! The `data` of every webhook, as types. The rule functions (`crate::rules`) and the
//! operational notices (`crate::delivery::notice`) build these and nothing else, and the
//! published JSON Schemas of schemas/webhooks/ are generated from them
//! ([`crate::contract::webhook_schema`]), so a body cannot drift from its contract without a
//! test failing (shared/tests/suite/schemas.rs).
//!
//! Every field is always present: an absent value is `null`, never a missing key, so each
//! schema lists every property as required and marks the nullable ones `["<type>", "null"]`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{Code, Contact, ErrorDetail, OriginalMessage, Reply, Status, Timestamp};

/// A body's `data` as JSON (the form filters and the signer see).
pub fn to_data<T: Serialize>(data: T) -> Value {
    serde_json::to_value(data).expect("webhook data always serializes")
}

/// sms.received
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SmsReceivedData {
    pub message_id: String,
    /// The sender's number, as the platform reports it (E.164 in practice; not checked).
    pub from: String,
    /// The account's virtual number the message was sent to.
    pub to: String,
    pub body: String,
    pub received_at: Timestamp,
}

/// sms.status_changed
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SmsStatusChangedData {
    pub message_id: String,
    pub status: Status,
    /// The status this one replaces; null for the first status seen.
    pub previous_status: Option<Status>,
    pub recipient: String,
    pub campaign_id: Option<String>,
    pub error_code: Option<Code>,
    pub changed_at: Timestamp,
}

/// The account a balance belongs to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AccountRef {
    pub id: String,
    pub name: Option<String>,
}

/// balance.low
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BalanceLowData {
    pub balance: f64,
    /// The subscription's `balance_low.threshold`.
    pub threshold: f64,
    pub currency: Option<String>,
    pub account: AccountRef,
}

/// campaign.started
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CampaignStartedData {
    pub campaign_id: String,
    pub name: Option<String>,
    pub scheduled_at: Option<Timestamp>,
    pub started_at: Timestamp,
    pub recipient_count: u64,
}

/// campaign.completed
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CampaignCompletedData {
    pub campaign_id: String,
    pub name: Option<String>,
    pub total_sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// delivered / total_sent, 4 decimals; null when nothing was sent.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub delivery_rate: Option<f64>,
    pub completed_at: Timestamp,
}

/// campaign.failed
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CampaignFailedData {
    pub campaign_id: String,
    pub name: Option<String>,
    pub error: ErrorDetail,
    pub affected_recipients: Option<u64>,
}

/// contact.added
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ContactAddedData {
    pub contact_id: String,
    /// The contact as the platform describes it (phone, name, email, custom_fields, ...).
    pub contact: Contact,
    pub group_ids: Vec<String>,
}

/// contact.updated
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ContactUpdatedData {
    pub contact_id: String,
    /// The fields that changed, dotted paths for nested fields (`custom_fields.tier`).
    pub changed_fields: Vec<String>,
    /// Each changed field's previous value (null: it was not set), keyed by its path.
    pub previous: Map<String, Value>,
    /// Each changed field's new value (null: it was removed), keyed by its path.
    pub current: Map<String, Value>,
}

/// contact.deleted
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ContactDeletedData {
    pub contact_id: String,
    /// The last known snapshot; null if none was kept.
    pub contact: Option<Contact>,
    pub reason: Option<String>,
    pub deleted_at: Timestamp,
}

/// message.scheduled
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MessageScheduledData {
    pub message_id: String,
    pub send_at: Timestamp,
    pub recipients: Vec<String>,
    pub body: String,
}

/// What a cancelled message was scheduled as.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OriginalSchedule {
    pub send_at: Timestamp,
    pub recipients: Vec<String>,
    pub body: String,
}

/// message.cancelled
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MessageCancelledData {
    pub message_id: String,
    pub reason: Option<String>,
    /// From the stored message.scheduled; null if it was never seen.
    pub original_schedule: Option<OriginalSchedule>,
}

/// The inbound message a keyword matched.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InboundMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
}

/// keyword.matched
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct KeywordMatchedData {
    pub keyword: String,
    #[schemars(extend("enum" = ["exact", "starts_with", "contains", "regex"]))]
    pub match_type: String,
    /// The compliance meaning of a reserved keyword (STOP, START, HELP...); null for the
    /// subscription's own keywords.
    #[schemars(extend("enum" = ["opt_out", "opt_in", "help", null]))]
    pub reserved: Option<String>,
    pub message: InboundMessage,
}

/// auto_reply.sent
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AutoReplySentData {
    pub original_message: OriginalMessage,
    pub reply: Reply,
    /// Who the reply went to: the original message's sender.
    pub recipient: String,
}

/// One campaign's delivery rate inside the window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CampaignRate {
    pub campaign_id: String,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: f64,
    pub samples: u64,
}

/// delivery_rate.low
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeliveryRateLowData {
    /// delivered / final outcomes over the window, 4 decimals.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: f64,
    pub threshold: f64,
    pub window_minutes: u32,
    pub samples: u64,
    pub affected_campaigns: Vec<CampaignRate>,
}

/// bounce_rate.high
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BounceRateHighData {
    /// bounced / final outcomes over the window, 4 decimals.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: f64,
    pub threshold: f64,
    pub window_minutes: u32,
    pub samples: u64,
    /// Bounced numbers in the window, at most 100.
    pub affected_numbers: Vec<String>,
    /// Bounces per error code in the window.
    pub reasons: BTreeMap<String, u64>,
}

/// sender_id.approved
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SenderIdApprovedData {
    pub sender_id: String,
    pub approved_at: Timestamp,
    /// Free-form, as the carrier imposed them (countries, message types...); null if none.
    pub restrictions: Option<Value>,
}

/// sender_id.rejected
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SenderIdRejectedData {
    pub sender_id: String,
    pub reason: String,
    pub resubmission_guidelines: Option<String>,
}

/// subscription.failing: a subscription's failing streak began (one per streak).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SubscriptionFailingData {
    /// The subscription whose webhooks fail (this webhook goes to the account's others).
    pub subscription_id: String,
    /// Its URL's origin only (a path or query may hold a credential).
    pub url: String,
    pub failing_since: Timestamp,
    /// The first failed attempt: its trigger, webhook-id and error.
    pub first_failure: FirstFailure,
    /// When the subscription is disabled if every attempt keeps failing until then.
    pub auto_disable_at: Timestamp,
}

/// The attempt that started a failing streak.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FirstFailure {
    pub webhook_id: String,
    pub trigger: String,
    /// The HTTP status the receiver answered; null when no answer came (timeout, connection).
    pub status: Option<u16>,
    pub error: String,
}

/// subscription.disabled
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SubscriptionDisabledData {
    pub subscription_id: String,
    /// Its URL's origin only.
    pub url: String,
    /// `failing`: every attempt failed for the auto-disable period; `gone`: the receiver
    /// answered 410 Gone.
    #[schemars(extend("enum" = ["failing", "gone"]))]
    pub cause: String,
    pub reason: String,
    pub disabled_at: Timestamp,
    /// What to do: fix the receiver, enable the subscription again, redrive its dead letters.
    pub how_to_enable: String,
}

/// webhook.dead_lettered: a webhook was given up on. Never carries the webhook's payload.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WebhookDeadLetteredData {
    /// The `webhook-id` of the webhook given up on.
    pub webhook_id: String,
    pub subscription_id: String,
    pub trigger: String,
    /// The input event that fired it.
    pub event_id: String,
    /// Attempts made (0: never sent, e.g. its subscription was disabled meanwhile).
    pub attempts: u32,
    pub first_attempt_at: Timestamp,
    /// The last attempt's error; empty when none was made.
    pub last_error: String,
    pub reason: String,
}
