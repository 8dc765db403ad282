//! Message status (sms): one conditional put of the message's own item, which also remembers the
//! receipts that changed it, so a redelivery sends the same webhook again.

use chrono::{DateTime, Utc};

use crate::event::{EventData, InputEvent};
use crate::rules::status::{status_step, MessageStatus, StatusStep};
use crate::rules::{self, Emit};
use crate::store::keys::{self};
use crate::store::state::{StateStore, StateStoreError, Versioned};
use crate::trigger::Trigger;

use super::{after_refusal, ATTEMPTS};

pub(super) async fn message_status(
    state: &StateStore,
    event: &InputEvent,
    now: DateTime<Utc>,
) -> Result<Vec<Emit>, StateStoreError> {
    let EventData::SmsStatusChanged(d) = &event.data else {
        return Ok(vec![]);
    };
    let key = keys::message_status(&event.account_id, &d.message_id);
    let emit = |previous| {
        vec![Emit::all(
            Trigger::SmsStatusChanged,
            rules::sms_status_changed(d, previous, event.occurred_at),
        )]
    };
    for attempt in 0..ATTEMPTS {
        let prev: Option<Versioned<MessageStatus>> = state.get(&key).await?;
        match status_step(prev.as_ref().map(|p| &p.doc), &event.id, d.status, event.occurred_at) {
            StatusStep::Again(previous) => return Ok(emit(previous)),
            StatusStep::Ignore => return Ok(vec![]),
            StatusStep::Apply { previous, next } => {
                let doc = serde_json::to_value(&next).expect("state serializes");
                match state.put(&key, &doc, prev.map(|p| p.version), now.timestamp()).await {
                    Ok(()) => return Ok(emit(previous)),
                    Err(r) => after_refusal(state, r, attempt).await?,
                }
            }
        }
    }
    Err(StateStoreError::Contended {
        key: key.to_string(),
        attempts: ATTEMPTS,
    })
}
