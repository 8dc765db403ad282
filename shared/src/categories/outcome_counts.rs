//! Outcome counts (performance, a whole batch per account): markers per message and one
//! aggregated, token-guarded update per counter item (rules::rates::counting carries the protocol).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::event::{EventData, InputEvent};
use crate::rules::rates::counting::{self, AlertInput, Marker, Outcome, Role};
use crate::rules::rates::RateKind;
use crate::rules::Emit;
use crate::store::keys::{self, Key};
use crate::store::loader::Loaded;
use crate::store::state::{Applied, Refusal, StateStore, StateStoreError, TokenState, Versioned};
use crate::store::subscriptions::AccountSubscriptions;
use crate::trigger::Trigger;

use super::{after_refusal, backoff, ATTEMPTS, IN_FLIGHT};

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
    let outcomes: HashMap<usize, &Outcome> = finals.iter().map(|(i, o)| (*i, o)).collect();
    let mut contributions: Vec<(usize, Role, Key)> = Vec::new();
    let mut counted = Vec::new();
    let mut withheld = std::collections::HashSet::new();
    for (i, r) in placed {
        match r {
            Ok(roles) if roles.is_empty() => {}
            Ok(roles) => {
                counted.push(i);
                contributions.extend(roles.into_iter().map(|(role, key)| (i, role, key)));
            }
            Err(e) => {
                withheld.extend(counting::tokened_keys(account, feeds, outcomes[&i], token));
                results[i] = Err(e);
            }
        }
    }

    // 2. One update per counter item, with the batch's sum; none at a withheld counter.
    let deltas = counting::aggregate(contributions.iter().map(|(i, role, key)| (key, *role, outcomes[i])));
    let applied: Vec<(Key, Result<(), StateStoreError>)> = futures::stream::iter(deltas.iter())
        .map(|(key, delta)| {
            let withheld = withheld.contains(key);
            async move {
                if withheld {
                    return (key.clone(), Err(withheld_counter(state, key)));
                }
                (key.clone(), apply(state, key, token, delta, now).await)
            }
        })
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

/// A counter this batch must not update: the put of one of its markers failed after possibly
/// being applied (a reply lost, then errors), so a marker may name this batch's token at this
/// counter without its receipt in the sum. Applying the token there would make that receipt read
/// as counted when it comes back; left unapplied, every marker naming it is voided and counted
/// again by the next batch (`recover`). The receipts counted here are retried with it.
fn withheld_counter(state: &StateStore, key: &Key) -> StateStoreError {
    StateStoreError::Busy {
        table: state.table.clone(),
        attempts: ATTEMPTS,
        reason: format!("counter {key} withheld: another marker of its batch failed and may name its token"),
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
    let ours = || Ok(redo.iter().map(|r| (*r, next.placed[r].key.clone())).collect());
    match state.put(key, &doc, Some(old.version), now.timestamp()).await {
        Ok(()) => ours(),
        Err(Refusal::Condition(current)) => match state.old_doc::<Marker>(key, &current)? {
            // Our own put, applied with its reply lost and sent again by the SDK: the marker
            // names this batch's token, so this batch counts it.
            Some(found) if found.doc == next => ours(),
            // Another invocation is recovering the same event: it counts it.
            _ => Ok(vec![]),
        },
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
    let wanted: Vec<(String, RateKind, Trigger, crate::subscription::RateAlert)> = subs
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
