//! The shell around the trigger rules: for each (category, event), decide whether any
//! subscription needs state (none: no read, no write), read what the category states it reads,
//! call the pure rules, and commit. Three commit shapes, by what the state is
//! (docs/performance.md, "Trigger state"):
//!
//! - **message status** (sms): one conditional put of the message's own item, which also remembers
//!   the receipts that changed it, so a redelivery sends the same webhook again;
//! - **outcome counts** (performance, a whole batch per account): markers per message and one
//!   aggregated, token-guarded update per counter item ([`count_outcomes`], rules::counting);
//! - **per-entity state** (balance, contacts, schedules): the state writes and a decision item in one
//!   transaction, so a redelivered event re-sends the same webhooks and never fires twice.
//!
//! Refusals are told apart (store::state): a failed condition means someone changed the state
//! first (read again) or a duplicate; throttling and transaction conflicts wait a jittered backoff;
//! an invalid write is permanent and the record is dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::event::{EventData, InputEvent, MessageScheduled, Timestamp};
use crate::rules::counting::{self, AlertInput, Marker, Outcome, Role};
use crate::rules::state::{self as pure, BalanceState, MessageStatus, StatusStep};
use crate::rules::{self, CampaignCounts, Emit};
use crate::store::keys::{self, Key};
use crate::store::loader::Loaded;
use crate::store::state::{Applied, Refusal, StateStore, StateStoreError, TokenState, Versioned, Write};
use crate::store::subscriptions::AccountSubscriptions;
use crate::trigger::{Category, Trigger};

/// Evaluations per event when the state keeps changing under it, or DynamoDB keeps refusing.
const ATTEMPTS: usize = 5;
/// Concurrent requests per batch group.
const IN_FLIGHT: usize = 16;

/// A jittered exponential wait before attempt `attempt + 1`: 20 ms × 2^attempt × [0.5, 1.5).
async fn backoff(attempt: usize) {
    let base = 20.0 * f64::from(1u32 << attempt.min(6));
    let jitter = 0.5 + rand::random::<f64>();
    tokio::time::sleep(Duration::from_millis((base * jitter) as u64)).await;
}

/// After a refusal on attempt `attempt`: wait and go on (`Ok`), or the error to report.
async fn after_refusal(state: &StateStore, r: Refusal, attempt: usize) -> Result<(), StateStoreError> {
    match r {
        // Someone changed the state first: read again, after a short jittered pause.
        Refusal::Condition(_) => {
            backoff(attempt.min(1)).await;
            Ok(())
        }
        Refusal::Busy(reason) if attempt + 1 >= ATTEMPTS => Err(StateStoreError::Busy {
            table: state.table.clone(),
            attempts: ATTEMPTS,
            reason,
        }),
        Refusal::Busy(_) => {
            backoff(attempt + 1).await;
            Ok(())
        }
        other => Err(state.refused(other)),
    }
}

/// What `category` emits for `event`, given the account's subscriptions. The performance
/// category's status receipts go through [`count_outcomes`] a batch at a time instead.
pub(crate) async fn decide(
    category: Category,
    state: &StateStore,
    event: &InputEvent,
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
) -> Result<Vec<Emit>, StateStoreError> {
    if let Some(emits) = rules::stateless(category, event) {
        return Ok(emits);
    }
    let wants = |t: Trigger| subs.valid.iter().any(|s| s.wants(t));
    match (category, &event.data) {
        // Per-subscription rules over the message itself: no state.
        (Category::Messaging, EventData::SmsReceived(d)) => Ok(subs
            .valid
            .iter()
            .filter(|s| s.wants(Trigger::KeywordMatched))
            .filter_map(|s| {
                let (keyword, match_type, reserved) = pure::keyword_match(&d.body, &s.keywords, s.reserved_keywords)?;
                Some(Emit::to(
                    Trigger::KeywordMatched,
                    rules::keyword_matched(d, &keyword, match_type, reserved),
                    &s.subscription_id,
                ))
            })
            .collect()),
        // Reads the counts the performance function keeps, writes nothing.
        (Category::Operations, EventData::CampaignCompleted(d)) => {
            if !wants(Trigger::CampaignCompleted) {
                return Ok(vec![]);
            }
            let counted = if d.total_sent.is_some() && d.delivered.is_some() && d.failed.is_some() {
                CampaignCounts::default()
            } else {
                let items = state
                    .partition(&keys::campaign_partition(&event.account_id, &d.campaign_id))
                    .await?;
                counting::campaign_counts(&items)
            };
            Ok(vec![Emit::all(
                Trigger::CampaignCompleted,
                rules::campaign_completed(d, counted, event.occurred_at),
            )])
        }
        (Category::Sms, EventData::SmsStatusChanged(_)) => {
            if !wants(Trigger::SmsStatusChanged) {
                return Ok(vec![]);
            }
            message_status(state, event, now).await
        }
        (Category::Performance, EventData::SmsStatusChanged(_)) => {
            let token = new_token();
            count_outcomes(state, &[event], subs, now, &token)
                .await
                .pop()
                .expect("one result per event")
        }
        _ => decide_with_decision(category, state, event, subs, now).await,
    }
}

// ---------------------------------------------------------------- message status (sms)

async fn message_status(
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
        match pure::status_step(prev.as_ref().map(|p| &p.doc), &event.id, d.status, event.occurred_at) {
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

// ---------------------------------------------------------------- outcome counts (performance)

/// The performance category's status receipts of one batch, counted per account in one pass
/// (one update per counter item per batch, [`count_outcomes`]) before the records are delivered:
/// what each decided, by the index it was given. Accounts whose subscriptions did not load are
/// left out (their records fail on their own).
pub(crate) async fn count_batch<'e>(
    state: &StateStore,
    events: Vec<(usize, &'e InputEvent)>,
    loaded: &Loaded,
    now: DateTime<Utc>,
) -> Vec<(usize, Result<Vec<Emit>, StateStoreError>)> {
    let mut groups: HashMap<&str, (Vec<usize>, Vec<&'e InputEvent>)> = HashMap::new();
    for (i, e) in events {
        if matches!(e.data, EventData::SmsStatusChanged(_)) && matches!(loaded.get(&e.account_id), Some(Ok(_))) {
            let group = groups.entry(e.account_id.as_str()).or_default();
            group.0.push(i);
            group.1.push(e);
        }
    }
    let decided = futures::future::join_all(groups.into_iter().map(|(account, (indexes, events))| {
        let subs = match loaded.get(account) {
            Some(Ok(subs)) => subs.clone(),
            _ => unreachable!("grouped only accounts whose subscriptions loaded"),
        };
        async move {
            let results = count_outcomes(state, &events, &subs, now, &new_token()).await;
            indexes.into_iter().zip(results).collect::<Vec<_>>()
        }
    }))
    .await;
    decided.into_iter().flatten().collect()
}

/// A fresh batch token: 64 random bits.
pub(crate) fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Count the final outcomes of one account's status receipts in a batch and evaluate its rate
/// alerts: one result per event, in order. `token` names this batch's counter updates.
pub(crate) async fn count_outcomes(
    state: &StateStore,
    events: &[&InputEvent],
    subs: &AccountSubscriptions,
    now: DateTime<Utc>,
    token: &str,
) -> Vec<Result<Vec<Emit>, StateStoreError>> {
    let mut results: Vec<Result<Vec<Emit>, StateStoreError>> = events.iter().map(|_| Ok(vec![])).collect();
    let feeds = counting::feeds(&subs.valid);
    if !feeds.any() {
        return results; // no subscription needs counts: no read, no write
    }
    let Some(account) = events.first().map(|e| e.account_id.as_str()) else {
        return results;
    };
    // The same event twice in one batch (SQS delivers at least once) is counted by its first copy.
    let mut seen = std::collections::HashSet::new();
    let finals: Vec<(usize, Outcome)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| seen.insert(e.id.as_str()))
        .filter_map(|(i, e)| match &e.data {
            EventData::SmsStatusChanged(d) => counting::outcome(d, e.occurred_at).map(|o| (i, o)),
            _ => None,
        })
        .collect();

    // 1. One marker per message, owned by its event.
    let placed: Vec<(usize, Marked)> = futures::stream::iter(finals.iter())
        .map(|(i, o)| async move {
            let e = events[*i];
            (*i, mark(state, account, e, o, feeds, token, now).await)
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut contributions: Vec<(usize, Role, Key)> = Vec::new();
    let mut counted = Vec::new();
    for (i, r) in placed {
        match r {
            Ok(roles) if roles.is_empty() => {}
            Ok(roles) => {
                counted.push(i);
                contributions.extend(roles.into_iter().map(|(role, key)| (i, role, key)));
            }
            Err(e) => results[i] = Err(e),
        }
    }

    // 2. One update per counter item, with the batch's sum.
    let outcomes: HashMap<usize, &Outcome> = finals.iter().map(|(i, o)| (*i, o)).collect();
    let deltas = counting::aggregate(contributions.iter().map(|(i, role, key)| (key, *role, outcomes[i])));
    let applied: Vec<(Key, Result<(), StateStoreError>)> = futures::stream::iter(deltas.iter())
        .map(|(key, delta)| async move { (key.clone(), apply(state, key, token, delta, now).await) })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    for (key, r) in applied {
        if let Err(e) = r {
            for (i, _, k) in &contributions {
                if *k == key && results[*i].is_ok() {
                    results[*i] = Err(shared_failure(state, &format!("counter {key}"), &e));
                }
            }
            counted.retain(|i| !contributions.iter().any(|(j, _, k)| j == i && *k == key));
        }
    }

    // 3. The rate alerts, once per account and batch.
    if feeds.rates {
        let carrier = counted.iter().copied().max_by_key(|i| (events[*i].occurred_at.0, *i));
        match alerts(state, account, events, subs, carrier, now).await {
            Ok(emits) => {
                for (i, emit) in emits {
                    if let Ok(list) = &mut results[i] {
                        list.push(emit);
                    }
                }
            }
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(shared_failure(state, "rate alerts", &e));
                }
            }
        }
    }
    results
}

/// One failure of a step the whole group shares, for each of the group's records: permanent stays
/// permanent (dead-lettered), anything else is to be retried.
fn shared_failure(state: &StateStore, step: &str, e: &StateStoreError) -> StateStoreError {
    if e.is_permanent() {
        StateStoreError::Invalid {
            reason: format!("{step}: {e}"),
        }
    } else {
        StateStoreError::Busy {
            table: state.table.clone(),
            attempts: ATTEMPTS,
            reason: format!("{step}: {e}"),
        }
    }
}

/// The counters one receipt is to be counted in by this batch.
type Marked = Result<Vec<(Role, Key)>, StateStoreError>;

/// Put the marker of one final receipt. The roles (and counter items) it is to be counted in by
/// this batch: all of them for a new message, none for a duplicate, those not yet applied for a
/// redelivery of the marker's own event.
async fn mark(
    state: &StateStore,
    account: &str,
    event: &InputEvent,
    o: &Outcome,
    feeds: counting::Feeds,
    token: &str,
    now: DateTime<Utc>,
) -> Marked {
    let EventData::SmsStatusChanged(d) = &event.data else {
        return Ok(vec![]);
    };
    let key = keys::outcome_marker(account, &d.message_id);
    let roles = counting::roles(feeds, o);
    let marker = counting::marker(account, &event.id, o, &roles, token);
    let doc = serde_json::to_value(&marker).expect("markers serialize");
    for attempt in 0..ATTEMPTS {
        match state.put(&key, &doc, None, now.timestamp()).await {
            Ok(()) => return Ok(marker.placed.into_iter().map(|(r, p)| (r, p.key)).collect()),
            Err(Refusal::Condition(old)) => {
                let Some(old) = state.old_doc::<Marker>(&key, &old)? else {
                    backoff(attempt).await; // deleted in between (TTL): try again
                    continue;
                };
                if old.doc.event_id != event.id {
                    return Ok(vec![]); // another receipt of this message counted it: a duplicate
                }
                return recover(state, account, &key, old, token, now).await;
            }
            Err(r) => after_refusal(state, r, attempt).await?,
        }
    }
    Err(StateStoreError::Contended {
        key: key.to_string(),
        attempts: ATTEMPTS,
    })
}

/// The marker's own event again (a redelivery, maybe after a crash): each role whose token was
/// not applied is voided at its counter, then counted again under this batch's token.
async fn recover(
    state: &StateStore,
    account: &str,
    key: &Key,
    old: Versioned<Marker>,
    token: &str,
    now: DateTime<Utc>,
) -> Marked {
    let mut redo = Vec::new();
    for (role, p) in &old.doc.placed {
        if p.token == token {
            redo.push(*role); // this very batch, an earlier try
            continue;
        }
        let seen = match state.token_state(&p.key, &p.token).await? {
            TokenState::Unknown => state.void(&p.key, &p.token, now.timestamp()).await?,
            known => known,
        };
        if seen == TokenState::Voided {
            redo.push(*role);
        }
    }
    if redo.is_empty() {
        return Ok(vec![]); // counted before
    }
    let mut next = old.doc.clone();
    for role in &redo {
        next.placed
            .insert(*role, counting::place(account, *role, &old.doc.outcome, token));
    }
    if next == old.doc {
        return Ok(redo.into_iter().map(|r| (r, next.placed[&r].key.clone())).collect());
    }
    let doc = serde_json::to_value(&next).expect("markers serialize");
    match state.put(key, &doc, Some(old.version), now.timestamp()).await {
        Ok(()) => Ok(redo.into_iter().map(|r| (r, next.placed[&r].key.clone())).collect()),
        // Another invocation is recovering the same event: it counts it.
        Err(Refusal::Condition(_)) => Ok(vec![]),
        Err(r) => Err(state.refused(r)),
    }
}

async fn apply(
    state: &StateStore,
    key: &Key,
    token: &str,
    delta: &counting::Delta,
    now: DateTime<Utc>,
) -> Result<(), StateStoreError> {
    let mut with_numbers = true;
    let mut attempt = 0;
    loop {
        match state.apply(key, token, delta, with_numbers, now.timestamp()).await {
            Ok(Applied::Done) => return Ok(()),
            Ok(Applied::ListFull) => with_numbers = false,
            Ok(Applied::Voided) => return Err(StateStoreError::Voided { key: key.clone() }),
            Err(StateStoreError::Busy { reason, .. }) if attempt + 1 < ATTEMPTS => {
                tracing::debug!(key = %key, reason, "counter busy; backing off");
                backoff(attempt + 1).await;
            }
            Err(e) => return Err(e),
        }
        attempt += 1;
        if attempt >= ATTEMPTS {
            return Err(StateStoreError::Contended {
                key: key.to_string(),
                attempts: ATTEMPTS,
            });
        }
    }
}

/// Evaluate the account's rate alerts over the buckets, store the states that changed, and say
/// which event carries which webhook.
async fn alerts(
    state: &StateStore,
    account: &str,
    events: &[&InputEvent],
    subs: &AccountSubscriptions,
    carrier: Option<usize>,
    now: DateTime<Utc>,
) -> Result<Vec<(usize, Emit)>, StateStoreError> {
    let wanted: Vec<(String, pure::RateKind, Trigger, crate::subscription::RateAlert)> = subs
        .valid
        .iter()
        .flat_map(|s| counting::rate_alerts(s).map(move |(k, t, c)| (s.subscription_id.clone(), k, t, c)))
        .collect();
    if wanted.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let latest = carrier.map_or(i64::MIN, |i| events[i].occurred_at.0.timestamp().div_euclid(60));
    let now_minute = now.timestamp().div_euclid(60).max(latest);
    let widest = wanted.iter().map(|w| w.3.window_minutes).max().unwrap_or(60);
    for attempt in 0..ATTEMPTS {
        let mut inputs = Vec::with_capacity(wanted.len());
        for (sub, kind, trigger, cfg) in &wanted {
            let key = keys::rate_alert(account, sub, trigger.as_str());
            let stored = state.get::<counting::AlertDoc>(&key).await?;
            inputs.push(AlertInput {
                subscription_id: sub.clone(),
                kind: *kind,
                trigger: *trigger,
                cfg: *cfg,
                key,
                state: stored.map(|v| (v.doc, v.version)),
            });
        }
        let buckets = if carrier.is_some() {
            state
                .range(
                    &keys::perf_partition(account),
                    &keys::bucket_sk(now_minute - i64::from(widest) + 1, 0),
                    &keys::bucket_sk(now_minute, 99),
                )
                .await?
                .iter()
                .filter_map(counting::parse_bucket)
                .collect()
        } else {
            vec![]
        };
        let decision = counting::evaluate_alerts(&inputs, &buckets, &ids, carrier, now_minute, now.timestamp());
        let mut refused = None;
        for (key, doc, expect) in &decision.writes {
            let doc = serde_json::to_value(doc).expect("alert state serializes");
            if let Err(r) = state.put(key, &doc, *expect, now.timestamp()).await {
                refused = Some(r);
                break;
            }
        }
        match refused {
            None => return Ok(decision.emits),
            Some(r) => after_refusal(state, r, attempt).await?,
        }
    }
    Err(StateStoreError::Contended {
        key: keys::perf_partition(account),
        attempts: ATTEMPTS,
    })
}

// ---------------------------------------------------------------- per-entity state with a decision

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

async fn decide_with_decision(
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
