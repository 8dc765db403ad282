//! Messages the functions write to their own queues: a retry of one webhook to one subscription
//! (on the category queue, delayed), and a webhook given up on (on the category DLQ).
//!
//! The category queue also receives whatever is published to the events topic, so an internal
//! message proves it was written here: it is sealed with an HMAC-SHA256 under the deployment's
//! [`SealKey`] (kept in the State table, never leaving the functions), over every field but the
//! seal, each field length-prefixed. A message that says it is a retry or a dead letter but
//! carries no valid seal is never sent; it is dead-lettered as unauthenticated.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::event::{parse_event, InputEvent, ParseError};
use crate::webhook::WebhookId;

/// One more attempt of one webhook to one subscription. Carries the exact body, so a retry sends
/// the same bytes the first attempt sent, whatever state changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryTask {
    /// Format version; its presence marks the message as a retry.
    pub dataflows_retry: u32,
    pub webhook_id: WebhookId,
    pub trigger: String,
    pub account_id: String,
    pub subscription_id: String,
    pub event_id: String,
    /// The webhook body, base64 in the message: JSON escaping could grow it up to six times
    /// (`\u0000` per control character), and base64 grows it by a third whatever it holds.
    #[serde(rename = "body_base64", with = "base64_text")]
    pub body: String,
    /// The number of the attempt this message is for (2 for the first retry).
    pub attempt: u32,
    pub first_attempt_at: i64,
    /// Unix seconds before which the attempt must not be made (delays past 15 minutes are chained).
    pub not_before: i64,
    /// Set when the message carries a webhook held back by its subscription's pace (not an
    /// attempt: `attempt` is still the one to make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// The queue the seal was made for, and until when it holds (absent on messages sealed
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Binding>,
    /// HMAC-SHA256 (base64) of every other field under the deployment's seal key.
    #[serde(default)]
    pub seal: String,
}

/// What a seal is bound to: the queue a message was written for (its name) and the time (unix
/// seconds) after which it is no longer accepted. A sealed message copied to another category's
/// queue, or replayed after its time, is refused like one without a seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub queue: String,
    pub expires_at: i64,
}

/// How long a sealed retry is accepted: the category queue keeps a message 4 days; a day more.
pub const RETRY_SEAL_SECONDS: i64 = 5 * 86_400;
/// How long a sealed dead letter is accepted (redriven): the DLQ keeps it 14 days; a day more.
pub const DEAD_LETTER_SEAL_SECONDS: i64 = 15 * 86_400;

/// Why and since when a webhook waits, on a retry message that holds it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Unix ms when it was first held back (the backlog's age).
    pub since_ms: i64,
    /// The send slot reserved for it (unix ms), when one was; it is sent then, without another
    /// reservation, if it arrives in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<i64>,
    /// A redriven dead letter: it still claims as a redrive when its turn comes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redrive: bool,
}

impl RetryTask {
    /// The first attempt of a dead letter an operator redrove: the same webhook (same id, same
    /// body), its retry schedule started again at `now`. Unsealed, like every task built here.
    pub fn redrive_of(letter: DeadLetter, now: i64) -> Self {
        RetryTask {
            dataflows_retry: 1,
            body: serde_json::to_string(&letter.payload).unwrap_or_default(),
            webhook_id: letter.webhook_id,
            trigger: letter.trigger,
            account_id: letter.account_id,
            subscription_id: letter.subscription_id,
            event_id: letter.event_id,
            attempt: 1,
            first_attempt_at: now,
            not_before: 0,
            held: None,
            bound: None,
            seal: String::new(),
        }
    }
}

/// A webhook given up on, as put on the category DLQ for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub dataflows_dead_letter: u32,
    pub reason: String,
    pub webhook_id: WebhookId,
    pub trigger: String,
    pub account_id: String,
    pub subscription_id: String,
    pub url: String,
    pub event_id: String,
    pub attempts: u32,
    pub first_attempt_at: i64,
    pub last_error: String,
    /// The webhook body that was never accepted.
    pub payload: Value,
    /// The category queue it may be redriven to, and until when (see [`Binding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Binding>,
    /// HMAC-SHA256 (base64) of every other field under the deployment's seal key.
    #[serde(default)]
    pub seal: String,
}

mod base64_text {
    use base64::Engine as _;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(text))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let encoded = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(D::Error::custom)?;
        String::from_utf8(bytes).map_err(D::Error::custom)
    }
}

/// Whether SQS accepts `c` in a message body or attribute: #x9 | #xA | #xD | #x20 to #xD7FF |
/// #xE000 to #xFFFD | #x10000 to #x10FFFF
/// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character SQS refuses written as `\uXXXX`. In JSON text (where serde_json
/// already escapes control characters but writes U+FFFE and U+FFFF raw) this is the same JSON;
/// in plain text (an attribute) it is a readable stand-in.
pub fn sqs_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(sqs_allows) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if sqs_allows(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A message as JSON that SQS accepts, whatever its strings hold.
pub fn to_sqs_json<T: Serialize>(message: &T) -> String {
    let text = serde_json::to_string(message).expect("internal messages serialize");
    match sqs_text(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// The deployment's key for sealing internal messages: 32 random bytes. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl SealKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        SealKey(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, kind: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn seal(&self, kind: &str, parts: &[&[u8]]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.mac(kind, parts).finalize().into_bytes())
    }

    /// Constant-time check of a seal.
    fn verify(&self, kind: &str, parts: &[&[u8]], seal: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(seal) else {
            return false;
        };
        self.mac(kind, parts).verify_slice(&tag).is_ok()
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(redacted)")
    }
}

impl RetryTask {
    fn sealed_parts<R>(&self, with: impl FnOnce(&[&[u8]]) -> R) -> R {
        let numbers = [
            self.dataflows_retry.to_string(),
            self.attempt.to_string(),
            self.first_attempt_at.to_string(),
            self.not_before.to_string(),
        ];
        // Only when present, so a message written before the field existed still verifies.
        let held = self.held.map(|h| {
            format!(
                "held:{}:{}:{}",
                h.since_ms,
                h.slot_ms.map(|t| t.to_string()).unwrap_or_default(),
                h.redrive
            )
        });
        let mut parts: Vec<&[u8]> = vec![
            numbers[0].as_bytes(),
            self.webhook_id.as_str().as_bytes(),
            self.trigger.as_bytes(),
            self.account_id.as_bytes(),
            self.subscription_id.as_bytes(),
            self.event_id.as_bytes(),
            self.body.as_bytes(),
            numbers[1].as_bytes(),
            numbers[2].as_bytes(),
            numbers[3].as_bytes(),
        ];
        if let Some(h) = &held {
            parts.push(h.as_bytes());
        }
        let bound = self.bound.as_ref().map(Binding::part);
        if let Some(b) = &bound {
            parts.push(b.as_bytes());
        }
        with(&parts)
    }

    /// This task with its seal set, bound to `queue` until `now` + [`RETRY_SEAL_SECONDS`].
    pub fn sealed_for(mut self, key: &SealKey, queue: &str, now: i64) -> Self {
        self.bound = Some(Binding {
            queue: queue.to_string(),
            expires_at: now + RETRY_SEAL_SECONDS,
        });
        self.sealed(key)
    }

    /// This task with its seal set (over its binding as it is).
    pub fn sealed(mut self, key: &SealKey) -> Self {
        self.seal = self.sealed_parts(|parts| key.seal("retry", parts));
        self
    }

    /// Whether the seal is valid: written by this deployment and unchanged since.
    pub fn verify(&self, key: &SealKey) -> bool {
        self.sealed_parts(|parts| key.verify("retry", parts, &self.seal))
    }
}

impl Binding {
    fn part(&self) -> String {
        format!("bound:{}:{}", self.queue, self.expires_at)
    }

    /// Why a message bound so is refused on `queue` at `now`, if it is.
    pub fn refusal(bound: Option<&Binding>, queue: &str, now: i64) -> Option<&'static str> {
        match bound {
            None => None, // sealed before bindings existed: the seal alone
            Some(b) if b.queue != queue => Some("sealed for another queue"),
            Some(b) if now > b.expires_at => Some("its seal has expired"),
            Some(_) => None,
        }
    }
}

impl DeadLetter {
    fn sealed_parts<R>(&self, with: impl FnOnce(&[&[u8]]) -> R) -> R {
        let numbers = [
            self.dataflows_dead_letter.to_string(),
            self.attempts.to_string(),
            self.first_attempt_at.to_string(),
        ];
        let payload = self.payload.to_string();
        let bound = self.bound.as_ref().map(Binding::part);
        let mut parts: Vec<&[u8]> = vec![
            numbers[0].as_bytes(),
            self.reason.as_bytes(),
            self.webhook_id.as_str().as_bytes(),
            self.trigger.as_bytes(),
            self.account_id.as_bytes(),
            self.subscription_id.as_bytes(),
            self.url.as_bytes(),
            self.event_id.as_bytes(),
            numbers[1].as_bytes(),
            numbers[2].as_bytes(),
            self.last_error.as_bytes(),
            payload.as_bytes(),
        ];
        if let Some(b) = &bound {
            parts.push(b.as_bytes());
        }
        with(&parts)
    }

    /// This dead letter with its seal set, bound to the category queue `queue` (where a redrive
    /// brings it) until `now` + [`DEAD_LETTER_SEAL_SECONDS`].
    pub fn sealed_for(mut self, key: &SealKey, queue: &str, now: i64) -> Self {
        self.bound = Some(Binding {
            queue: queue.to_string(),
            expires_at: now + DEAD_LETTER_SEAL_SECONDS,
        });
        self.sealed(key)
    }

    /// This dead letter with its seal set.
    pub fn sealed(mut self, key: &SealKey) -> Self {
        self.seal = self.sealed_parts(|parts| key.seal("dead-letter", parts));
        self
    }

    /// Whether the seal is valid: written by this deployment and unchanged since.
    pub fn verify(&self, key: &SealKey) -> bool {
        self.sealed_parts(|parts| key.verify("dead-letter", parts, &self.seal))
    }
}

/// An operational webhook to fan out (crate::delivery::notice): what delivery observed about one
/// of an account's subscriptions, to be sent to the account's other subscriptions that ask for
/// its trigger. Written by the function on its own queue, sealed like a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Format version; its presence marks the message as a notice.
    pub dataflows_notice: u32,
    /// The operational trigger (`subscription.failing`, ...).
    pub trigger: String,
    pub account_id: String,
    /// The subscription it is about: never sent to it.
    pub about: String,
    /// The webhook's `event_id`: stable per fact, so a notice written twice is delivered once.
    pub notice_id: String,
    /// When delivery observed the fact (unix seconds): the webhook's `timestamp`.
    pub at: i64,
    pub data: Value,
    /// The queue the seal was made for, and until when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Binding>,
    #[serde(default)]
    pub seal: String,
}

impl Notice {
    fn sealed_parts<R>(&self, with: impl FnOnce(&[&[u8]]) -> R) -> R {
        let numbers = [self.dataflows_notice.to_string(), self.at.to_string()];
        let data = self.data.to_string();
        let bound = self.bound.as_ref().map(Binding::part);
        let mut parts: Vec<&[u8]> = vec![
            numbers[0].as_bytes(),
            self.trigger.as_bytes(),
            self.account_id.as_bytes(),
            self.about.as_bytes(),
            self.notice_id.as_bytes(),
            numbers[1].as_bytes(),
            data.as_bytes(),
        ];
        if let Some(b) = &bound {
            parts.push(b.as_bytes());
        }
        with(&parts)
    }

    /// This notice sealed and bound to `queue` until `now` + [`RETRY_SEAL_SECONDS`].
    pub fn sealed_for(mut self, key: &SealKey, queue: &str, now: i64) -> Self {
        self.bound = Some(Binding {
            queue: queue.to_string(),
            expires_at: now + RETRY_SEAL_SECONDS,
        });
        self.seal = self.sealed_parts(|parts| key.seal("notice", parts));
        self
    }

    pub fn verify(&self, key: &SealKey) -> bool {
        self.sealed_parts(|parts| key.verify("notice", parts, &self.seal))
    }
}

/// What arrives on a category queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event(InputEvent),
    Retry(RetryTask),
    /// A dead letter moved back from the DLQ by an operator: try it again from the start.
    Redrive(DeadLetter),
    /// An operational webhook to send to the account's other subscriptions.
    Notice(Notice),
}

impl Message {
    /// Whether an internal message carries a valid seal; an input event needs none.
    pub fn authentic(&self, key: &SealKey) -> bool {
        match self {
            Message::Event(_) => true,
            Message::Retry(t) => t.verify(key),
            Message::Redrive(d) => d.verify(key),
            Message::Notice(n) => n.verify(key),
        }
    }

    /// Why an internal message is refused on `queue` at `now`: no valid seal, sealed for another
    /// queue, or expired. `None`: accepted.
    pub fn refusal(&self, key: &SealKey, queue: &str, now: i64) -> Option<&'static str> {
        if !self.authentic(key) {
            return Some("no valid seal of this deployment (published to the events topic, or edited)");
        }
        match self {
            Message::Event(_) => None,
            Message::Retry(t) => Binding::refusal(t.bound.as_ref(), queue, now),
            Message::Redrive(d) => Binding::refusal(d.bound.as_ref(), queue, now),
            Message::Notice(n) => Binding::refusal(n.bound.as_ref(), queue, now),
        }
    }

    pub fn account_id(&self) -> &str {
        match self {
            Message::Event(e) => &e.account_id,
            Message::Retry(t) => &t.account_id,
            Message::Redrive(d) => &d.account_id,
            Message::Notice(n) => &n.account_id,
        }
    }
}

/// Parse a queue message: a retry task or a redriven dead letter if it says so, else an input event.
pub fn parse_message(body: &str) -> Result<Message, ParseError> {
    // Not JSON, or not an object: the event parser says precisely what is wrong.
    let Ok(kind) = serde_json::from_str::<Kind>(body) else {
        return parse_event(body).map(Message::Event);
    };
    let internal = |marker: &str, e: serde_json::Error| ParseError::Invalid {
        field: marker.to_string(),
        reason: format!("not a valid internal message: {e}"),
    };
    match kind {
        Kind {
            dataflows_retry: Some(_),
            ..
        } => serde_json::from_str(body)
            .map(Message::Retry)
            .map_err(|e| internal("dataflows_retry", e)),
        Kind {
            dataflows_dead_letter: Some(_),
            ..
        } => serde_json::from_str(body)
            .map(Message::Redrive)
            .map_err(|e| internal("dataflows_dead_letter", e)),
        Kind {
            dataflows_notice: Some(_),
            ..
        } => serde_json::from_str(body)
            .map(Message::Notice)
            .map_err(|e| internal("dataflows_notice", e)),
        _ => parse_event(body).map(Message::Event),
    }
}

/// Which kind of message a body is, from its marker field alone: one pass that skips every value.
/// The markers are the wire format of retries and dead letters (kept, so that messages already
/// on a queue during a deploy still parse); an input event has neither.
#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    dataflows_retry: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    dataflows_dead_letter: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    dataflows_notice: Option<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests;
