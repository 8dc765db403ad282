//! Trigger rules: pure functions from an input event (and, for the stateful triggers, the stored
//! state and `now`) to the webhooks to emit. No I/O and no clock in here; the shell that reads and
//! writes state is `crate::categories`.

pub mod counting;
pub mod state;

use serde_json::{json, Map, Value};

use crate::event::*;
use crate::trigger::{Category, Trigger};

/// One webhook to emit: its trigger, its `data`, and, for per-subscription triggers (balance.low,
/// keyword.matched, the rate alerts), the one subscription it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub trigger: Trigger,
    pub data: Value,
    pub only: Option<String>,
}

impl Emit {
    pub fn all(trigger: Trigger, data: Value) -> Self {
        Emit {
            trigger,
            data,
            only: None,
        }
    }
    pub fn to(trigger: Trigger, data: Value, subscription_id: &str) -> Self {
        Emit {
            trigger,
            data,
            only: Some(subscription_id.to_string()),
        }
    }
}

/// Why a category cannot act on an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the {category} function does not consume {event_type} events")]
    NotConsumed {
        category: Category,
        event_type: &'static str,
    },
}

/// Refuse events a category does not consume (a misrouted message).
pub fn check_consumed(category: Category, event: &InputEvent) -> Result<(), RuleError> {
    let ty = event.event_type();
    if category.consumes().contains(&ty) {
        Ok(())
    } else {
        Err(RuleError::NotConsumed {
            category,
            event_type: ty.as_str(),
        })
    }
}

/// The emits that need no state: `Some` for those events, `None` when the category's shell must
/// consult state.
pub fn stateless(category: Category, event: &InputEvent) -> Option<Vec<Emit>> {
    let at = event.occurred_at;
    let one = |t, data| Some(vec![Emit::all(t, data)]);
    match (category, &event.data) {
        (Category::Sms, EventData::SmsReceived(d)) => one(Trigger::SmsReceived, sms_received(d, at)),
        (Category::Operations, EventData::CampaignStarted(d)) => one(Trigger::CampaignStarted, campaign_started(d, at)),
        (Category::Operations, EventData::CampaignFailed(d)) => one(Trigger::CampaignFailed, campaign_failed(d)),
        (Category::Messaging, EventData::AutoReplySent(d)) => one(Trigger::AutoReplySent, auto_reply_sent(d)),
        (Category::Admin, EventData::SenderIdApproved(d)) => one(Trigger::SenderIdApproved, sender_id_approved(d, at)),
        (Category::Admin, EventData::SenderIdRejected(d)) => one(Trigger::SenderIdRejected, sender_id_rejected(d)),
        _ => None,
    }
}

pub fn sms_received(d: &SmsReceived, at: Timestamp) -> Value {
    json!({"message_id": d.message_id, "from": d.from, "to": d.to, "body": d.body, "received_at": at})
}

pub fn sms_status_changed(d: &SmsStatusChanged, previous: Option<Status>, at: Timestamp) -> Value {
    json!({"message_id": d.message_id, "status": d.status, "previous_status": previous, "recipient": d.recipient,
           "campaign_id": d.campaign_id, "error_code": d.error_code, "changed_at": at})
}

pub fn balance_low(d: &BalanceChanged, threshold: f64, account_id: &str) -> Value {
    json!({"balance": d.balance, "threshold": threshold, "currency": d.currency,
           "account": {"id": account_id, "name": d.account_name}})
}

pub fn campaign_started(d: &CampaignStarted, at: Timestamp) -> Value {
    json!({"campaign_id": d.campaign_id, "name": d.name, "scheduled_at": d.scheduled_at, "started_at": at,
           "recipient_count": d.recipient_count})
}

/// Delivery figures of a finished campaign; counters fill what the platform left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub total: u64,
    pub delivered: u64,
    pub failed: u64,
}

pub fn campaign_completed(d: &CampaignCompleted, counted: CampaignCounts, at: Timestamp) -> Value {
    let total = d.total_sent.unwrap_or(counted.total);
    let delivered = d.delivered.unwrap_or(counted.delivered);
    let failed = d.failed.unwrap_or(counted.failed);
    let rate = (total > 0).then(|| state::round_rate(delivered as f64 / total as f64));
    json!({"campaign_id": d.campaign_id, "name": d.name, "total_sent": total, "delivered": delivered,
           "failed": failed, "delivery_rate": rate, "completed_at": at})
}

pub fn campaign_failed(d: &CampaignFailed) -> Value {
    json!({"campaign_id": d.campaign_id, "name": d.name, "error": d.error, "affected_recipients": d.affected_recipients})
}

pub fn contact_added(d: &ContactAdded) -> Value {
    json!({"contact_id": d.contact_id, "contact": d.contact, "group_ids": d.group_ids})
}

pub fn contact_updated(d: &ContactUpdated, previous: &Map<String, Value>) -> Value {
    let (changed, old, new) = state::contact_diff(previous, &d.contact);
    json!({"contact_id": d.contact_id, "changed_fields": changed, "previous": old, "current": new})
}

pub fn contact_deleted(d: &ContactDeleted, last_known: Option<&Map<String, Value>>, at: Timestamp) -> Value {
    json!({"contact_id": d.contact_id, "contact": last_known, "reason": d.reason, "deleted_at": at})
}

pub fn message_scheduled(d: &MessageScheduled) -> Value {
    json!({"message_id": d.message_id, "send_at": d.send_at, "recipients": d.recipients, "body": d.body})
}

pub fn message_cancelled(d: &MessageCancelled, original: Option<&MessageScheduled>) -> Value {
    let original = original.map(|o| json!({"send_at": o.send_at, "recipients": o.recipients, "body": o.body}));
    json!({"message_id": d.message_id, "reason": d.reason, "original_schedule": original})
}

pub fn keyword_matched(d: &SmsReceived, keyword: &str, match_type: &str, reserved: Option<&str>) -> Value {
    json!({"keyword": keyword, "match_type": match_type, "reserved": reserved,
           "message": {"message_id": d.message_id, "from": d.from, "to": d.to, "body": d.body}})
}

pub fn auto_reply_sent(d: &AutoReplySent) -> Value {
    json!({"original_message": d.original_message, "reply": d.reply, "recipient": d.original_message.from})
}

pub fn sender_id_approved(d: &SenderIdApproved, at: Timestamp) -> Value {
    json!({"sender_id": d.sender_id, "approved_at": d.approved_at.unwrap_or(at), "restrictions": d.restrictions})
}

pub fn sender_id_rejected(d: &SenderIdRejected) -> Value {
    json!({"sender_id": d.sender_id, "reason": d.reason, "resubmission_guidelines": d.resubmission_guidelines})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: &str, data: Value) -> InputEvent {
        parse_event(
            &json!({"id": "evt_1", "type": ty, "account_id": "acc_42",
                    "occurred_at": "2026-11-30T10:15:00Z", "data": data})
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn sms_received_carries_the_message() {
        let ev = event(
            "sms.received",
            json!({"message_id": "m1", "from": "+1555", "to": "+1999", "body": "hello"}),
        );
        assert_eq!(
            stateless(Category::Sms, &ev),
            Some(vec![Emit::all(
                Trigger::SmsReceived,
                json!({"message_id": "m1", "from": "+1555", "to": "+1999", "body": "hello",
                       "received_at": "2026-11-30T10:15:00Z"})
            )])
        );
        // The same event in messaging is about keywords: it needs the subscriptions.
        assert_eq!(stateless(Category::Messaging, &ev), None);
    }

    #[test]
    fn events_of_another_category_are_refused() {
        let ev = event("contact.deleted", json!({"contact_id": "c1"}));
        assert_eq!(
            check_consumed(Category::Sms, &ev),
            Err(RuleError::NotConsumed {
                category: Category::Sms,
                event_type: "contact.deleted"
            })
        );
        assert_eq!(check_consumed(Category::Contacts, &ev), Ok(()));
    }

    #[test]
    fn campaign_completed_fills_missing_figures_from_counters() {
        let ev = event("campaign.completed", json!({"campaign_id": "c1", "name": "Spring"}));
        let EventData::CampaignCompleted(d) = &ev.data else {
            unreachable!()
        };
        let data = campaign_completed(
            d,
            CampaignCounts {
                total: 8,
                delivered: 6,
                failed: 2,
            },
            ev.occurred_at,
        );
        assert_eq!(
            data,
            json!({"campaign_id": "c1", "name": "Spring", "total_sent": 8, "delivered": 6, "failed": 2,
                   "delivery_rate": 0.75, "completed_at": "2026-11-30T10:15:00Z"})
        );
        // The platform's figures win; no sends gives no rate.
        let ev = event(
            "campaign.completed",
            json!({"campaign_id": "c1", "total_sent": 0, "delivered": 0, "failed": 0}),
        );
        let EventData::CampaignCompleted(d) = &ev.data else {
            unreachable!()
        };
        assert_eq!(
            campaign_completed(
                d,
                CampaignCounts {
                    total: 8,
                    delivered: 6,
                    failed: 2
                },
                ev.occurred_at
            )["delivery_rate"],
            Value::Null
        );
    }

    #[test]
    fn cancelling_an_unknown_schedule_reports_null() {
        let ev = event(
            "message.cancelled",
            json!({"message_id": "m9", "reason": "changed my mind"}),
        );
        let EventData::MessageCancelled(d) = &ev.data else {
            unreachable!()
        };
        assert_eq!(
            message_cancelled(d, None),
            json!({"message_id": "m9", "reason": "changed my mind", "original_schedule": null})
        );
    }
}
