//! From an event's emits to the deliveries they make: one webhook body per emit, then one
//! (webhook, subscription) pair for every enabled, valid subscription that wants the trigger, is
//! addressed by the emit, and whose filter accepts the body. Pure: the handler and the core
//! benchmark (shared/benches/core.rs) run the same code.

use crate::event::InputEvent;
use crate::rules::Emit;
use crate::subscription::Subscription;
use crate::webhook::{Webhook, WebhookId};

/// One delivery to make: which of the event's webhooks, to whom, under which stable id.
#[derive(Debug, Clone)]
pub struct Delivery<'s> {
    /// Index into the webhooks the deliveries were planned from.
    pub webhook: usize,
    pub subscription: &'s Subscription,
    pub webhook_id: WebhookId,
}

/// The webhook body of each emit, in order.
pub fn webhooks(event: &InputEvent, emits: &[Emit]) -> Vec<Webhook> {
    emits.iter().map(|e| Webhook::new(event, e.trigger, &e.data)).collect()
}

/// Every delivery the emits make to `subscriptions` (the account's valid records).
pub fn deliveries<'s>(emits: &[Emit], webhooks: &[Webhook], subscriptions: &'s [Subscription]) -> Vec<Delivery<'s>> {
    let mut out = Vec::new();
    for (index, (emit, webhook)) in emits.iter().zip(webhooks).enumerate() {
        let audience = subscriptions
            .iter()
            .filter(|s| emit.only.as_ref().is_none_or(|only| *only == s.subscription_id));
        for sub in audience.filter(|s| s.accepts(emit.trigger, &webhook.value)) {
            out.push(Delivery {
                webhook: index,
                subscription: sub,
                webhook_id: webhook.id_for(&sub.subscription_id),
            });
        }
    }
    out
}
