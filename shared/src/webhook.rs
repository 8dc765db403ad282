//! The webhook a subscriber receives (docs/design.md §4): its body, built once per (event, trigger),
//! and its id, stable per (event, trigger, subscription) so retries carry the same `webhook-id`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{InputEvent, Timestamp};
use crate::trigger::Trigger;

/// A webhook's id: `msg_` and 32 hex digits ([`Webhook::id_for`]), the same on every attempt. On
/// the wire (retries, dead letters, the `webhook-id` header) it is the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct WebhookId(String);

impl WebhookId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WebhookId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id read back from a message or a claim (already made by [`Webhook::id_for`]).
impl From<String> for WebhookId {
    fn from(id: String) -> Self {
        WebhookId(id)
    }
}

impl From<&str> for WebhookId {
    fn from(id: &str) -> Self {
        WebhookId(id.to_string())
    }
}

/// A webhook to send: the trigger and its serialized body, shared by every subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub trigger: Trigger,
    pub event_id: String,
    pub account_id: String,
    /// The body as JSON, for subscription filters.
    pub value: Value,
    /// The exact bytes that are signed and sent.
    pub body: Vec<u8>,
}

impl Webhook {
    pub fn new(event: &InputEvent, trigger: Trigger, data: &Value) -> Self {
        Self::from_parts(trigger, &event.id, &event.account_id, event.occurred_at, data)
    }

    /// The body of the envelope (schemas/webhooks/: `type`, `timestamp`, `account_id`,
    /// `event_id`, `data`), for an input event's webhook or an operational one.
    pub fn from_parts(trigger: Trigger, event_id: &str, account_id: &str, at: Timestamp, data: &Value) -> Self {
        let value = serde_json::json!({
            "type": trigger.as_str(),
            "timestamp": at.to_rfc3339(),
            "account_id": account_id,
            "event_id": event_id,
            "data": data,
        });
        let body = serde_json::to_vec(&value).expect("a JSON value always serializes");
        Webhook {
            trigger,
            event_id: event_id.to_string(),
            account_id: account_id.to_string(),
            value,
            body,
        }
    }

    /// `msg_` and 32 hex digits of SHA-256 over (event id, trigger, account, subscription): the
    /// same on every attempt and redelivery, different for every subscriber.
    pub fn id_for(&self, subscription_id: &str) -> WebhookId {
        WebhookId(hashed_id(
            "msg_",
            &[
                self.event_id.as_str(),
                self.trigger.as_str(),
                self.account_id.as_str(),
                subscription_id,
            ],
        ))
    }
}

/// `prefix` and 32 hex digits of SHA-256 over `parts`, each length-prefixed (so no two lists of
/// parts hash alike): the ids of webhooks and of operational notices.
pub(crate) fn hashed_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    crate::logging::push_hex(&mut id, &digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use serde_json::json;

    fn event(id: &str) -> InputEvent {
        parse_event(
            &json!({"id": id, "type": "contact.deleted", "account_id": "acc_42",
                    "occurred_at": "2026-11-30T10:15:00.250+00:00", "data": {"contact_id": "c1"}})
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn body_has_the_documented_shape() {
        let w = Webhook::new(&event("evt_1"), Trigger::ContactDeleted, &json!({"contact_id": "c1"}));
        let body: Value = serde_json::from_slice(&w.body).unwrap();
        assert_eq!(
            body,
            json!({"type": "contact.deleted", "timestamp": "2026-11-30T10:15:00.250Z", "account_id": "acc_42",
                   "event_id": "evt_1", "data": {"contact_id": "c1"}})
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let w = Webhook::new(&event("evt_1"), Trigger::ContactDeleted, &json!({}));
        let id = w.id_for("sub_1");
        assert_eq!(id, w.id_for("sub_1"));
        assert_eq!(id.as_str().len(), 36);
        assert!(id.as_str().starts_with("msg_"));
        assert_ne!(id, w.id_for("sub_2"));
        let other_event = Webhook::new(&event("evt_2"), Trigger::ContactDeleted, &json!({}));
        assert_ne!(id, other_event.id_for("sub_1"));
        let other_trigger = Webhook::new(&event("evt_1"), Trigger::ContactAdded, &json!({}));
        assert_ne!(id, other_trigger.id_for("sub_1"));
    }

    #[test]
    fn an_id_is_the_same_from_release_to_release() {
        // A redelivery after a deployment must find the claim its first attempt took: the id is
        // a contract. Computed independently: Python's hashlib over the length-prefixed parts.
        let w = Webhook::new(&event("evt_1"), Trigger::ContactDeleted, &json!({}));
        assert_eq!(w.id_for("sub_1").as_str(), "msg_f39e3ce1d0cdec29cf3bdd316ac918d8");
    }
}
