//! Trigger rules: pure functions from an input event (and, for the stateful triggers, the stored
//! state and `now`) to the webhooks to emit. No I/O and no clock in here; the shell that reads and
//! writes state is `crate::categories`.

pub mod balance;
pub mod contacts;
pub mod keywords;
pub mod rates;
pub mod status;

use serde_json::{Map, Value};

use crate::event::*;
use crate::payload::*;
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
    to_data(SmsReceivedData {
        message_id: d.message_id.clone(),
        from: d.from.clone(),
        to: d.to.clone(),
        body: d.body.clone(),
        received_at: at,
    })
}

pub fn sms_status_changed(d: &SmsStatusChanged, previous: Option<Status>, at: Timestamp) -> Value {
    to_data(SmsStatusChangedData {
        message_id: d.message_id.clone(),
        status: d.status,
        previous_status: previous,
        recipient: d.recipient.clone(),
        campaign_id: d.campaign_id.clone(),
        error_code: d.error_code.clone(),
        changed_at: at,
    })
}

pub fn balance_low(d: &BalanceChanged, threshold: f64, account_id: &str) -> Value {
    to_data(BalanceLowData {
        balance: d.balance,
        threshold,
        currency: d.currency.clone(),
        account: AccountRef {
            id: account_id.to_string(),
            name: d.account_name.clone(),
        },
    })
}

pub fn campaign_started(d: &CampaignStarted, at: Timestamp) -> Value {
    to_data(CampaignStartedData {
        campaign_id: d.campaign_id.clone(),
        name: d.name.clone(),
        scheduled_at: d.scheduled_at,
        started_at: at,
        recipient_count: d.recipient_count,
    })
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
    to_data(CampaignCompletedData {
        campaign_id: d.campaign_id.clone(),
        name: d.name.clone(),
        total_sent: total,
        delivered,
        failed,
        delivery_rate: (total > 0).then(|| rates::round_rate(delivered as f64 / total as f64)),
        completed_at: at,
    })
}

pub fn campaign_failed(d: &CampaignFailed) -> Value {
    to_data(CampaignFailedData {
        campaign_id: d.campaign_id.clone(),
        name: d.name.clone(),
        error: d.error.clone(),
        affected_recipients: d.affected_recipients,
    })
}

pub fn contact_added(d: &ContactAdded) -> Value {
    to_data(ContactAddedData {
        contact_id: d.contact_id.clone(),
        contact: d.contact.clone(),
        group_ids: d.group_ids.clone(),
    })
}

pub fn contact_updated(d: &ContactUpdated, previous: &Map<String, Value>) -> Value {
    let (changed_fields, previous, current) = contacts::contact_diff(previous, &d.contact);
    let object = |v: Value| match v {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    to_data(ContactUpdatedData {
        contact_id: d.contact_id.clone(),
        changed_fields,
        previous: object(previous),
        current: object(current),
    })
}

pub fn contact_deleted(d: &ContactDeleted, last_known: Option<&Map<String, Value>>, at: Timestamp) -> Value {
    to_data(ContactDeletedData {
        contact_id: d.contact_id.clone(),
        contact: last_known.cloned(),
        reason: d.reason.clone(),
        deleted_at: at,
    })
}

pub fn message_scheduled(d: &MessageScheduled) -> Value {
    to_data(MessageScheduledData {
        message_id: d.message_id.clone(),
        send_at: d.send_at,
        recipients: d.recipients.clone(),
        body: d.body.clone(),
    })
}

pub fn message_cancelled(d: &MessageCancelled, original: Option<&MessageScheduled>) -> Value {
    to_data(MessageCancelledData {
        message_id: d.message_id.clone(),
        reason: d.reason.clone(),
        original_schedule: original.map(|o| OriginalSchedule {
            send_at: o.send_at,
            recipients: o.recipients.clone(),
            body: o.body.clone(),
        }),
    })
}

pub fn keyword_matched(d: &SmsReceived, keyword: &str, match_type: &str, reserved: Option<&str>) -> Value {
    to_data(KeywordMatchedData {
        keyword: keyword.to_string(),
        match_type: match_type.to_string(),
        reserved: reserved.map(str::to_string),
        message: InboundMessage {
            message_id: d.message_id.clone(),
            from: d.from.clone(),
            to: d.to.clone(),
            body: d.body.clone(),
        },
    })
}

pub fn auto_reply_sent(d: &AutoReplySent) -> Value {
    to_data(AutoReplySentData {
        original_message: d.original_message.clone(),
        reply: d.reply.clone(),
        recipient: d.original_message.from.clone(),
    })
}

pub fn sender_id_approved(d: &SenderIdApproved, at: Timestamp) -> Value {
    to_data(SenderIdApprovedData {
        sender_id: d.sender_id.clone(),
        approved_at: d.approved_at.unwrap_or(at),
        restrictions: d.restrictions.clone(),
    })
}

pub fn sender_id_rejected(d: &SenderIdRejected) -> Value {
    to_data(SenderIdRejectedData {
        sender_id: d.sender_id.clone(),
        reason: d.reason.clone(),
        resubmission_guidelines: d.resubmission_guidelines.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
