//! The shell around the trigger rules: for each (category, event), read the state the rules need,
//! call the pure rules, and commit the state writes together with the decision (store::state), so
//! every stateful condition is evaluated once per input event, even when SQS redelivers it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::event::{EventData, InputEvent, MessageScheduled, Status, Timestamp};
use crate::rules::state::{self as pure, AlertState, BalanceState, Bucket, MessageStatus, RateKind};
use crate::rules::{self, CampaignCounts, Emit};
use crate::store::state::{number_attr, StateStore, StateStoreError, Versioned, Write};
use crate::store::subscriptions::AccountSubscriptions;
use crate::trigger::{Category, Trigger};

/// Conflicting concurrent updates are retried this many times before the record is failed.
const ATTEMPTS: usize = 4;

/// What `category` emits for `event`, given the account's subscriptions.
pub async fn decide(
    category: Category,
    state: &StateStore,
    event: &InputEvent,
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
) -> Result<Vec<Emit>, StateStoreError> {
    if let Some(emits) = rules::stateless(category, event) {
        return Ok(emits);
    }
    match (category, &event.data) {
        // Per-subscription rules over the message itself: no state.
        (Category::Messaging, EventData::SmsReceived(d)) => {
            return Ok(subs
                .valid
                .iter()
                .filter(|s| s.wants(Trigger::KeywordMatched))
                .filter_map(|s| {
                    let (keyword, match_type, reserved) =
                        pure::keyword_match(&d.body, &s.keywords, s.reserved_keywords)?;
                    Some(Emit::to(
                        Trigger::KeywordMatched,
                        rules::keyword_matched(d, &keyword, match_type, reserved),
                        &s.subscription_id,
                    ))
                })
                .collect())
        }
        // Reads counters, writes nothing.
        (Category::Operations, EventData::CampaignCompleted(d)) => {
            let counted = if d.total_sent.is_some() && d.delivered.is_some() && d.failed.is_some() {
                CampaignCounts::default()
            } else {
                campaign_counts(state, &event.account_id, &d.campaign_id).await?
            };
            return Ok(vec![Emit::all(
                Trigger::CampaignCompleted,
                rules::campaign_completed(d, counted, event.occurred_at),
            )]);
        }
        _ => {}
    }
    for _ in 0..ATTEMPTS {
        if let Some(emits) = state.decision(category, &event.id).await? {
            return Ok(emits);
        }
        let (emits, writes) = evaluate(category, state, event, subs, now).await?;
        if emits.is_empty() && writes.is_empty() {
            return Ok(emits);
        }
        match state.commit(category, &event.id, &emits, writes, now.timestamp()).await {
            Ok(()) => return Ok(emits),
            Err(StateStoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateStoreError::Conflict)
}

async fn campaign_counts(state: &StateStore, account: &str, campaign: &str) -> Result<CampaignCounts, StateStoreError> {
    let items = state
        .range(&format!("campaign#{account}#{campaign}"), "counters", "counters")
        .await?;
    Ok(items
        .first()
        .map(|i| CampaignCounts {
            total: number_attr(i, "total"),
            delivered: number_attr(i, "delivered"),
            failed: number_attr(i, "failed"),
        })
        .unwrap_or_default())
}

type Decision = (Vec<Emit>, Vec<Write>);

fn put<T: serde::Serialize>(pk: String, sk: &str, doc: &T, prev: Option<u64>) -> Write {
    Write::Put {
        pk,
        sk: sk.into(),
        doc: serde_json::to_value(doc).expect("state serializes"),
        expect: prev,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContactSnapshot {
    contact: Map<String, Value>,
    occurred_at: Timestamp,
}

async fn evaluate(
    category: Category,
    state: &StateStore,
    event: &InputEvent,
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
) -> Result<Decision, StateStoreError> {
    let account = &event.account_id;
    let at = event.occurred_at;
    let mut emits = Vec::new();
    let mut writes = Vec::new();
    match (category, &event.data) {
        (Category::Sms, EventData::SmsStatusChanged(d)) => {
            let pk = format!("msg#{account}#{}", d.message_id);
            let prev: Option<Versioned<MessageStatus>> = state.get(&pk, "status").await?;
            if let Some(previous) = pure::status_transition(prev.as_ref().map(|p| &p.doc), d.status, at) {
                emits.push(Emit::all(
                    Trigger::SmsStatusChanged,
                    rules::sms_status_changed(d, previous, at),
                ));
                let doc = MessageStatus {
                    status: d.status,
                    occurred_at: at,
                };
                writes.push(put(pk, "status", &doc, prev.map(|p| p.version)));
            }
        }
        (Category::Operations, EventData::BalanceChanged(d)) => {
            for sub in subs.valid.iter().filter(|s| s.wants(Trigger::BalanceLow)) {
                let Some(cfg) = &sub.balance_low else { continue };
                let pk = format!("balance#{account}");
                let sk = format!("sub#{}", sub.subscription_id);
                let prev: Option<Versioned<BalanceState>> = state.get(&pk, &sk).await?;
                let Some((fire, next)) = pure::balance_rule(cfg, prev.as_ref().map(|p| &p.doc), d.balance, at) else {
                    continue; // stale
                };
                if fire {
                    emits.push(Emit::to(
                        Trigger::BalanceLow,
                        rules::balance_low(d, cfg.threshold, account),
                        &sub.subscription_id,
                    ));
                }
                writes.push(put(pk, &sk, &next, prev.map(|p| p.version)));
            }
        }
        (Category::Operations, EventData::SmsStatusChanged(d)) => {
            // Campaign counters, for campaign.completed: each message's final outcome counted once.
            if let (Some(campaign), true) = (&d.campaign_id, d.status.is_final()) {
                let pk = format!("campaign#{account}#{campaign}");
                let marker = format!("msg#{}", d.message_id);
                if state.get::<Value>(&pk, &marker).await?.is_none() {
                    writes.push(put(pk.clone(), &marker, &json!({"status": d.status}), None));
                    let outcome = if d.status == Status::Delivered {
                        "delivered"
                    } else {
                        "failed"
                    };
                    writes.push(Write::Add {
                        pk,
                        sk: "counters".into(),
                        numbers: vec![("total".into(), 1), (outcome.into(), 1)],
                        strings: vec![],
                    });
                }
            }
        }
        (Category::Contacts, EventData::ContactAdded(d)) => {
            let pk = format!("contact#{account}#{}", d.contact_id);
            let prev: Option<Versioned<ContactSnapshot>> = state.get(&pk, "snapshot").await?;
            emits.push(Emit::all(Trigger::ContactAdded, rules::contact_added(d)));
            let doc = ContactSnapshot {
                contact: d.contact.clone(),
                occurred_at: at,
            };
            writes.push(put(pk, "snapshot", &doc, prev.map(|p| p.version)));
        }
        (Category::Contacts, EventData::ContactUpdated(d)) => {
            let pk = format!("contact#{account}#{}", d.contact_id);
            let prev: Option<Versioned<ContactSnapshot>> = state.get(&pk, "snapshot").await?;
            if prev.as_ref().is_some_and(|p| at < p.doc.occurred_at) {
                return Ok((emits, writes)); // older than the snapshot: stale
            }
            let empty = Map::new();
            let previous = prev.as_ref().map_or(&empty, |p| &p.doc.contact);
            emits.push(Emit::all(Trigger::ContactUpdated, rules::contact_updated(d, previous)));
            let doc = ContactSnapshot {
                contact: d.contact.clone(),
                occurred_at: at,
            };
            writes.push(put(pk, "snapshot", &doc, prev.map(|p| p.version)));
        }
        (Category::Contacts, EventData::ContactDeleted(d)) => {
            let pk = format!("contact#{account}#{}", d.contact_id);
            let prev: Option<Versioned<ContactSnapshot>> = state.get(&pk, "snapshot").await?;
            emits.push(Emit::all(
                Trigger::ContactDeleted,
                rules::contact_deleted(d, prev.as_ref().map(|p| &p.doc.contact), at),
            ));
            if let Some(p) = prev {
                writes.push(Write::Delete {
                    pk,
                    sk: "snapshot".into(),
                    expect: p.version,
                });
            }
        }
        (Category::Messaging, EventData::MessageScheduled(d)) => {
            let pk = format!("schedule#{account}#{}", d.message_id);
            let prev: Option<Versioned<Value>> = state.get(&pk, "schedule").await?;
            emits.push(Emit::all(Trigger::MessageScheduled, rules::message_scheduled(d)));
            writes.push(put(pk, "schedule", d, prev.map(|p| p.version)));
        }
        (Category::Messaging, EventData::MessageCancelled(d)) => {
            let pk = format!("schedule#{account}#{}", d.message_id);
            let prev: Option<Versioned<MessageScheduled>> = state.get(&pk, "schedule").await?;
            emits.push(Emit::all(
                Trigger::MessageCancelled,
                rules::message_cancelled(d, prev.as_ref().map(|p| &p.doc)),
            ));
            if let Some(p) = prev {
                writes.push(Write::Delete {
                    pk,
                    sk: "schedule".into(),
                    expect: p.version,
                });
            }
        }
        (Category::Performance, EventData::SmsStatusChanged(d)) if d.status.is_final() => {
            let pk = format!("perf#{account}");
            let marker = format!("msg#{}", d.message_id);
            if state.get::<Value>(&pk, &marker).await?.is_some() {
                return Ok((emits, writes)); // this message's outcome is already counted
            }
            writes.push(put(pk.clone(), &marker, &json!({"status": d.status}), None));
            let minute = at.0.timestamp().div_euclid(60);
            let mut current = Bucket {
                minute,
                ..Default::default()
            };
            let mut numbers = vec![(d.status.as_str().to_string(), 1)];
            let delivered = u64::from(d.status == Status::Delivered);
            match d.status {
                Status::Delivered => current.delivered = 1,
                Status::Bounced => current.bounced = 1,
                Status::Expired => current.expired = 1,
                _ => current.failed = 1,
            }
            if let Some(c) = &d.campaign_id {
                numbers.push((format!("c#{c}#t"), 1));
                numbers.push((format!("c#{c}#d"), delivered as i64));
                current.campaigns.insert(c.clone(), (1, delivered));
            }
            let mut strings = vec![];
            if d.status == Status::Bounced {
                let code = d.error_code.as_ref().map_or("unknown".to_string(), |c| c.0.clone());
                numbers.push((format!("e#{code}"), 1));
                current.bounce_codes.insert(code, 1);
                strings.push(("bounced_numbers".to_string(), d.recipient.clone()));
                current.bounced_numbers.push(d.recipient.clone());
            }
            writes.push(Write::Add {
                pk: pk.clone(),
                sk: bucket_key(minute),
                numbers,
                strings,
            });

            let alerts: Vec<_> = subs
                .valid
                .iter()
                .flat_map(|s| {
                    [
                        (s, RateKind::DeliveryLow, Trigger::DeliveryRateLow, s.delivery_rate_low),
                        (s, RateKind::BounceHigh, Trigger::BounceRateHigh, s.bounce_rate_high),
                    ]
                })
                .filter_map(|(s, kind, trigger, cfg)| Some((s, kind, trigger, cfg?)))
                .filter(|(s, _, trigger, _)| s.wants(*trigger))
                .collect();
            if alerts.is_empty() {
                return Ok((emits, writes));
            }
            let now_minute = now.timestamp().div_euclid(60).max(minute);
            let widest = alerts.iter().map(|(_, _, _, c)| c.window_minutes).max().unwrap_or(60);
            let items = state
                .range(
                    &pk,
                    &bucket_key(now_minute - widest as i64 + 1),
                    &bucket_key(now_minute),
                )
                .await?;
            let mut buckets: Vec<Bucket> = items.iter().map(parse_bucket).collect();
            buckets.push(current);
            for (sub, kind, trigger, cfg) in alerts {
                let stats = pure::window(&buckets, now_minute, cfg.window_minutes);
                let sk = format!("alert#{}#{}", sub.subscription_id, trigger.as_str());
                let prev: Option<Versioned<AlertState>> = state.get(&pk, &sk).await?;
                let before = prev.as_ref().map(|p| p.doc).unwrap_or_default();
                let (fired, next) = pure::rate_alert(kind, &cfg, &stats, before, now.timestamp());
                if let Some(rate) = fired {
                    let data = match kind {
                        RateKind::DeliveryLow => pure::delivery_rate_data(rate, &cfg, &stats),
                        RateKind::BounceHigh => pure::bounce_rate_data(rate, &cfg, &stats),
                    };
                    emits.push(Emit::to(trigger, data, &sub.subscription_id));
                }
                if next != before {
                    writes.push(put(pk.clone(), &sk, &next, prev.map(|p| p.version)));
                }
            }
        }
        _ => {}
    }
    Ok((emits, writes))
}

fn bucket_key(minute: i64) -> String {
    format!("bucket#{minute:012}")
}

fn parse_bucket(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> Bucket {
    let minute = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .and_then(|s| s.strip_prefix("bucket#"))
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let mut campaigns: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut bounce_codes = BTreeMap::new();
    for (name, value) in item {
        let count = value.as_n().ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if let Some(rest) = name.strip_prefix("c#") {
            if let Some(c) = rest.strip_suffix("#t") {
                campaigns.entry(c.to_string()).or_default().0 += count;
            } else if let Some(c) = rest.strip_suffix("#d") {
                campaigns.entry(c.to_string()).or_default().1 += count;
            }
        } else if let Some(code) = name.strip_prefix("e#") {
            bounce_codes.insert(code.to_string(), count);
        }
    }
    Bucket {
        minute,
        delivered: number_attr(item, "delivered"),
        failed: number_attr(item, "failed"),
        bounced: number_attr(item, "bounced"),
        expired: number_attr(item, "expired"),
        campaigns,
        bounce_codes,
        bounced_numbers: item
            .get("bounced_numbers")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    }
}
