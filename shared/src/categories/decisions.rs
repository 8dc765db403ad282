//! Per-entity state with a decision (balance, contacts, schedules): the state writes and a
//! decision item in one transaction, so a redelivered event re-sends the same webhooks and never
//! fires twice. [`evaluate`] is the pure part: the snapshot read, the event and `now` in; the
//! writes and the emits out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::event::{EventData, InputEvent, MessageScheduled, Timestamp};
use crate::rules::balance::{balance_rule, BalanceState};
use crate::rules::{self, Emit};
use crate::store::keys::{self, Key};
use crate::store::state::{StateStore, StateStoreError, Versioned, Write};
use crate::store::subscriptions::AccountSubscriptions;
use crate::trigger::{Category, Trigger};

use super::{after_refusal, ATTEMPTS};

/// The contact as last seen.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContactSnapshot {
    contact: Map<String, Value>,
    occurred_at: Timestamp,
}

/// What one event's evaluation reads; empty when no subscription needs the state.
pub(crate) fn reads(category: Category, event: &InputEvent, subs: &AccountSubscriptions) -> Vec<Key> {
    let wants = |t: Trigger| subs.valid.iter().any(|s| s.wants(t));
    let account = &event.account_id;
    match (category, &event.data) {
        (Category::Operations, EventData::BalanceChanged(_)) => subs
            .valid
            .iter()
            .filter(|s| s.wants(Trigger::BalanceLow) && s.balance_low.is_some())
            .map(|s| keys::balance(account, &s.subscription_id))
            .collect(),
        (Category::Contacts, EventData::ContactAdded(d))
            if wants(Trigger::ContactUpdated) || wants(Trigger::ContactDeleted) =>
        {
            vec![keys::contact(account, &d.contact_id)]
        }
        (Category::Contacts, EventData::ContactUpdated(d))
            if wants(Trigger::ContactUpdated) || wants(Trigger::ContactDeleted) =>
        {
            vec![keys::contact(account, &d.contact_id)]
        }
        (Category::Contacts, EventData::ContactDeleted(d)) if wants(Trigger::ContactDeleted) => {
            vec![keys::contact(account, &d.contact_id)]
        }
        (Category::Messaging, EventData::MessageScheduled(d)) if wants(Trigger::MessageCancelled) => {
            vec![keys::schedule(account, &d.message_id)]
        }
        (Category::Messaging, EventData::MessageCancelled(d)) if wants(Trigger::MessageCancelled) => {
            vec![keys::schedule(account, &d.message_id)]
        }
        _ => vec![],
    }
}

/// The state read for one evaluation: each key's document, absent when the item does not exist.
pub(crate) type Snapshot = BTreeMap<Key, Versioned<Value>>;

fn typed<T: serde::de::DeserializeOwned>(snap: &Snapshot, key: &Key) -> Result<Option<Versioned<T>>, StateStoreError> {
    snap.get(key)
        .map(|v| {
            serde_json::from_value(v.doc.clone())
                .map(|doc| Versioned {
                    doc,
                    version: v.version,
                })
                .map_err(|e| StateStoreError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })
        })
        .transpose()
}

fn put<T: serde::Serialize>(key: Key, doc: &T, prev: Option<u64>) -> Write {
    Write::Put {
        key,
        doc: serde_json::to_value(doc).expect("state serializes"),
        expect: prev,
    }
}

/// The write that stores a contact as of `at`, unless the stored snapshot is newer: a late event
/// never overwrites what a later one wrote (SQS does not keep order).
fn contact_snapshot(
    key: Key,
    contact: &Map<String, Value>,
    at: Timestamp,
    prev: Option<&Versioned<ContactSnapshot>>,
) -> Option<Write> {
    if prev.is_some_and(|p| at < p.doc.occurred_at) {
        return None;
    }
    let doc = ContactSnapshot {
        contact: contact.clone(),
        occurred_at: at,
    };
    Some(put(key, &doc, prev.map(|p| p.version)))
}

/// Pure: the emits and the state writes of one event, over what `reads` read.
pub(crate) fn evaluate(
    category: Category,
    snap: &Snapshot,
    event: &InputEvent,
    subs: &AccountSubscriptions,
) -> Result<(Vec<Emit>, Vec<Write>), StateStoreError> {
    let account = &event.account_id;
    let at = event.occurred_at;
    let fed = !reads(category, event, subs).is_empty();
    let mut emits = Vec::new();
    let mut writes = Vec::new();
    match (category, &event.data) {
        (Category::Operations, EventData::BalanceChanged(d)) => {
            for sub in subs.valid.iter().filter(|s| s.wants(Trigger::BalanceLow)) {
                let Some(cfg) = &sub.balance_low else { continue };
                let key = keys::balance(account, &sub.subscription_id);
                let prev: Option<Versioned<BalanceState>> = typed(snap, &key)?;
                let Some((fire, next)) = balance_rule(cfg, prev.as_ref().map(|p| &p.doc), d.balance, at) else {
                    continue; // stale
                };
                if fire {
                    emits.push(Emit::to(
                        Trigger::BalanceLow,
                        rules::balance_low(d, cfg.threshold, account),
                        &sub.subscription_id,
                    ));
                }
                if prev.as_ref().is_none_or(|p| p.doc != next) {
                    writes.push(put(key, &next, prev.map(|p| p.version)));
                }
            }
        }
        (Category::Contacts, EventData::ContactAdded(d)) => {
            emits.push(Emit::all(Trigger::ContactAdded, rules::contact_added(d)));
            if fed {
                let key = keys::contact(account, &d.contact_id);
                let prev: Option<Versioned<ContactSnapshot>> = typed(snap, &key)?;
                writes.extend(contact_snapshot(key, &d.contact, at, prev.as_ref()));
            }
        }
        (Category::Contacts, EventData::ContactUpdated(d)) if fed => {
            let key = keys::contact(account, &d.contact_id);
            let prev: Option<Versioned<ContactSnapshot>> = typed(snap, &key)?;
            let Some(write) = contact_snapshot(key, &d.contact, at, prev.as_ref()) else {
                return Ok((emits, writes)); // older than the snapshot: stale
            };
            let empty = Map::new();
            let previous = prev.as_ref().map_or(&empty, |p| &p.doc.contact);
            emits.push(Emit::all(Trigger::ContactUpdated, rules::contact_updated(d, previous)));
            writes.push(write);
        }
        (Category::Contacts, EventData::ContactDeleted(d)) if fed => {
            let key = keys::contact(account, &d.contact_id);
            let prev: Option<Versioned<ContactSnapshot>> = typed(snap, &key)?;
            emits.push(Emit::all(
                Trigger::ContactDeleted,
                rules::contact_deleted(d, prev.as_ref().map(|p| &p.doc.contact), at),
            ));
            if let Some(p) = prev {
                writes.push(Write::Delete { key, expect: p.version });
            }
        }
        (Category::Messaging, EventData::MessageScheduled(d)) => {
            emits.push(Emit::all(Trigger::MessageScheduled, rules::message_scheduled(d)));
            if fed {
                let key = keys::schedule(account, &d.message_id);
                let prev: Option<Versioned<Value>> = typed(snap, &key)?;
                writes.push(put(key, d, prev.map(|p| p.version)));
            }
        }
        (Category::Messaging, EventData::MessageCancelled(d)) if fed => {
            let key = keys::schedule(account, &d.message_id);
            let prev: Option<Versioned<MessageScheduled>> = typed(snap, &key)?;
            emits.push(Emit::all(
                Trigger::MessageCancelled,
                rules::message_cancelled(d, prev.as_ref().map(|p| &p.doc)),
            ));
            if let Some(p) = prev {
                writes.push(Write::Delete { key, expect: p.version });
            }
        }
        _ => {}
    }
    Ok((emits, writes))
}

pub(super) async fn decide_with_decision(
    category: Category,
    state: &StateStore,
    event: &InputEvent,
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
) -> Result<Vec<Emit>, StateStoreError> {
    let keys = reads(category, event, subs);
    if keys.is_empty() {
        // No subscription needs this state: decide over nothing, store nothing.
        return Ok(evaluate(category, &Snapshot::new(), event, subs)?.0);
    }
    let decision = keys::decision(category.as_str(), &event.account_id, &event.id);
    for attempt in 0..ATTEMPTS {
        if let Some(stored) = state.decision(&decision).await? {
            return Ok(stored_emits(stored));
        }
        let mut snap = Snapshot::new();
        for key in &keys {
            if let Some(v) = state.get::<Value>(key).await? {
                snap.insert(key.clone(), v);
            }
        }
        let (emits, writes) = evaluate(category, &snap, event, subs)?;
        if writes.is_empty() {
            return Ok(emits);
        }
        match state
            .commit(&decision, &store_emits(&emits), writes, now.timestamp())
            .await
        {
            Ok(()) => return Ok(emits),
            Err(r) => after_refusal(state, r, attempt).await?,
        }
    }
    Err(StateStoreError::Contended {
        key: decision.to_string(),
        attempts: ATTEMPTS,
    })
}

/// Emits as a decision item holds them.
fn store_emits(emits: &[Emit]) -> Value {
    Value::Array(
        emits
            .iter()
            .map(|e| json!({"trigger": e.trigger.as_str(), "data": e.data, "only": e.only}))
            .collect(),
    )
}

fn stored_emits(stored: Value) -> Vec<Emit> {
    let Value::Array(list) = stored else { return vec![] };
    list.into_iter()
        .filter_map(|mut e| {
            let trigger = e.get("trigger")?.as_str()?.parse::<Trigger>().ok()?;
            Some(Emit {
                trigger,
                data: e.get_mut("data").map(Value::take).unwrap_or(Value::Null),
                only: e.get("only").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use crate::subscription::{parse_record, ParseOptions};

    fn subs(records: &[Value]) -> AccountSubscriptions {
        AccountSubscriptions {
            valid: records
                .iter()
                .map(|r| parse_record(r.as_object().unwrap(), ParseOptions::default()).unwrap())
                .collect(),
            invalid: vec![],
        }
    }

    fn sub(id: &str, triggers: Value) -> Value {
        json!({"account_id": "acc", "subscription_id": id, "url": "https://x.example.com",
               "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": triggers,
               "balance_low": {"threshold": 100, "rearm_above": 150}})
    }

    fn event(ty: &str, data: Value) -> InputEvent {
        parse_event(
            &json!({"id": "evt_1", "type": ty, "account_id": "acc", "occurred_at": "2026-11-30T10:00:00Z", "data": data})
                .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn no_subscription_that_needs_state_means_nothing_is_read() {
        let added = event(
            "contact.added",
            json!({"contact_id": "c1", "contact": {"name": "Dana"}}),
        );
        let cancel = event("message.cancelled", json!({"message_id": "m1"}));
        let balance = event("account.balance_changed", json!({"balance": 5}));
        let only_added = subs(&[sub("s", json!(["contact.added", "message.scheduled"]))]);
        assert!(reads(Category::Contacts, &added, &only_added).is_empty());
        assert!(reads(Category::Messaging, &cancel, &only_added).is_empty());
        assert!(reads(Category::Operations, &balance, &only_added).is_empty());
        // contact.added still goes out, with no state written.
        let (emits, writes) = evaluate(Category::Contacts, &Snapshot::new(), &added, &only_added).unwrap();
        assert_eq!((emits.len(), writes.len()), (1, 0));

        let all = subs(&[sub("s", json!("*"))]);
        assert_eq!(
            reads(Category::Contacts, &added, &all),
            vec![keys::contact("acc", "c1")]
        );
        assert_eq!(
            reads(Category::Operations, &balance, &all),
            vec![keys::balance("acc", "s")]
        );
        let (_, writes) = evaluate(Category::Contacts, &Snapshot::new(), &added, &all).unwrap();
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn balance_writes_only_what_changes() {
        let all = subs(&[sub("s", json!(["balance.low"]))]);
        let key = keys::balance("acc", "s");
        let armed = json!({"armed": true, "last_at": "2026-11-30T09:00:00Z"});
        let mut snap = Snapshot::new();
        snap.insert(key.clone(), Versioned { doc: armed, version: 3 });
        let low = event("account.balance_changed", json!({"balance": 5}));
        let (emits, writes) = evaluate(Category::Operations, &snap, &low, &all).unwrap();
        assert_eq!(emits.len(), 1);
        assert!(matches!(&writes[..], [Write::Put { expect: Some(3), .. }]));
    }

    #[test]
    fn a_corrupt_state_item_is_named() {
        let all = subs(&[sub("s", json!("*"))]);
        let key = keys::contact("acc", "c1");
        let mut snap = Snapshot::new();
        snap.insert(
            key.clone(),
            Versioned {
                doc: json!({"nope": 1}),
                version: 1,
            },
        );
        let updated = event("contact.updated", json!({"contact_id": "c1", "contact": {}}));
        let err = evaluate(Category::Contacts, &snap, &updated, &all).unwrap_err();
        assert!(matches!(err, StateStoreError::Corrupt { key: k, .. } if k == key));
    }

    #[test]
    fn a_late_contact_added_never_overwrites_a_newer_snapshot() {
        let all = subs(&[sub("s", json!("*"))]);
        let key = keys::contact("acc", "c1");
        let mut snap = Snapshot::new();
        let newer = json!({"contact": {"name": "Dana B."}, "occurred_at": "2026-11-30T11:00:00Z"});
        snap.insert(key.clone(), Versioned { doc: newer, version: 2 });
        let added = event(
            "contact.added",
            json!({"contact_id": "c1", "contact": {"name": "Dana"}}),
        );
        let (emits, writes) = evaluate(Category::Contacts, &snap, &added, &all).unwrap();
        assert_eq!(emits.len(), 1, "the webhook still goes out");
        assert!(
            writes.is_empty(),
            "the 10:00 snapshot does not replace the 11:00 one: {writes:?}"
        );
        let mut older = Snapshot::new();
        older.insert(
            key.clone(),
            Versioned {
                doc: json!({"contact": {}, "occurred_at": "2026-11-30T09:00:00Z"}),
                version: 1,
            },
        );
        let (_, writes) = evaluate(Category::Contacts, &older, &added, &all).unwrap();
        assert!(
            matches!(&writes[..], [Write::Put { expect: Some(1), .. }]),
            "{writes:?}"
        );
        let updated = event("contact.updated", json!({"contact_id": "c1", "contact": {"name": "X"}}));
        let (emits, writes) = evaluate(Category::Contacts, &snap, &updated, &all).unwrap();
        assert!(
            emits.is_empty() && writes.is_empty(),
            "a stale update emits and writes nothing"
        );
    }

    #[test]
    fn decisions_round_trip() {
        let emits = vec![
            Emit::all(Trigger::ContactAdded, json!({"a": 1})),
            Emit::to(Trigger::BalanceLow, json!({"b": 2}), "sub#1"),
        ];
        assert_eq!(stored_emits(store_emits(&emits)), emits);
    }
}
