//! Trigger rules: pure functions from an input event (and, for the stateful triggers, the stored
//! state and `now`) to the webhooks to emit. No I/O and no clock in here.

use serde_json::{json, Value};

use crate::event::{EventData, InputEvent};
use crate::trigger::{Category, Trigger};

/// One webhook to emit: its trigger and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub trigger: Trigger,
    pub data: Value,
}

/// Why a category cannot act on an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the {category} function does not consume {event_type} events")]
    NotConsumed {
        category: Category,
        event_type: &'static str,
    },
    #[error("the {category} function does not implement {event_type} yet")]
    NotImplemented {
        category: Category,
        event_type: &'static str,
    },
}

/// The stateless rules: what `category` emits for `event`.
pub fn evaluate(category: Category, event: &InputEvent) -> Result<Vec<Emit>, RuleError> {
    let ty = event.event_type();
    if !category.consumes().contains(&ty) {
        return Err(RuleError::NotConsumed {
            category,
            event_type: ty.as_str(),
        });
    }
    match (category, &event.data) {
        (Category::Sms, EventData::SmsReceived(d)) => Ok(vec![Emit {
            trigger: Trigger::SmsReceived,
            data: json!({
                "message_id": d.message_id,
                "from": d.from,
                "to": d.to,
                "body": d.body,
                "received_at": event.occurred_at,
            }),
        }]),
        _ => Err(RuleError::NotImplemented {
            category,
            event_type: ty.as_str(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

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
        let emits = evaluate(Category::Sms, &ev).unwrap();
        assert_eq!(
            emits,
            vec![Emit {
                trigger: Trigger::SmsReceived,
                data: json!({"message_id": "m1", "from": "+1555", "to": "+1999", "body": "hello",
                             "received_at": "2026-11-30T10:15:00Z"}),
            }]
        );
    }

    #[test]
    fn events_of_another_category_are_refused() {
        let ev = event("contact.deleted", json!({"contact_id": "c1"}));
        assert_eq!(
            evaluate(Category::Sms, &ev),
            Err(RuleError::NotConsumed {
                category: Category::Sms,
                event_type: "contact.deleted"
            })
        );
    }
}
