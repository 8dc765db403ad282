//! Counting final outcomes at bulk-sender scale, as pure functions: which counters an outcome
//! feeds, the per-batch deltas, the window sums and the rate alerts. The shell
//! (`categories::count_outcomes`) carries out the protocol (docs/performance.md, "Trigger state"):
//!
//! 1. each final receipt puts a **marker** (one item per message, spread over partitions), owned
//!    by its event and naming, per counter it feeds, the counter item and the batch's token;
//! 2. the batch adds its **aggregated delta** to each counter item once (one write per counter per
//!    batch, shards chosen by the token), conditioned on the token being neither applied nor
//!    voided, and records the token as applied;
//! 3. an event redelivered after a crash finds its own marker and asks each counter whether its
//!    token was applied; if not, it **voids** the token there (so a slow original can no longer
//!    apply it) and counts the message again under the new batch's token.
//!
//! So a message's outcome is counted once per counter across redeliveries, crashes between the
//! steps and concurrent invocations, with no transaction and no hot item.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{SmsStatusChanged, Status, Timestamp};
use crate::rules::rates::{self, note_bounced, Bucket, RateKind};
use crate::rules::CampaignCounts;
use crate::store::keys::{self, Key};
use crate::subscription::{RateAlert, Subscription};
use crate::trigger::Trigger;

/// Counter shards per minute: the hottest counter item gets at most 1/SHARDS of an account's
/// batches.
pub const SHARDS: u32 = 16;
/// Fired alerts remembered per alert state, to re-send their webhook on a redelivery.
pub const FIRED_KEPT: usize = 4;

/// Which counters the account's subscriptions need: state begins when a subscription begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Feeds {
    /// Per-minute buckets, for delivery_rate.low and bounce_rate.high.
    pub rates: bool,
    /// Per-campaign counters, for campaign.completed.
    pub campaigns: bool,
}

impl Feeds {
    pub fn any(self) -> bool {
        self.rates || self.campaigns
    }
}

/// The rate alerts a subscription asks for, with their settings.
pub fn rate_alerts(sub: &Subscription) -> impl Iterator<Item = (RateKind, Trigger, RateAlert)> + '_ {
    [
        (RateKind::DeliveryLow, Trigger::DeliveryRateLow, sub.delivery_rate_low),
        (RateKind::BounceHigh, Trigger::BounceRateHigh, sub.bounce_rate_high),
    ]
    .into_iter()
    .filter_map(|(kind, trigger, cfg)| Some((kind, trigger, cfg?)))
    .filter(|(_, trigger, _)| sub.wants(*trigger))
}

pub fn feeds(subs: &[Subscription]) -> Feeds {
    Feeds {
        rates: subs.iter().any(|s| rate_alerts(s).next().is_some()),
        campaigns: subs.iter().any(|s| s.wants(Trigger::CampaignCompleted)),
    }
}

/// One final receipt, as the counters see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// Unix minute of the receipt.
    pub minute: i64,
    #[serde(default)]
    pub campaign: Option<String>,
    /// The error code of a bounce ("unknown" when the platform gave none).
    #[serde(default)]
    pub code: Option<String>,
    pub recipient: String,
}

/// The outcome of a final receipt; `None` for a status that is not final.
pub fn outcome(d: &SmsStatusChanged, at: Timestamp) -> Option<Outcome> {
    d.status.is_final().then(|| Outcome {
        status: d.status,
        minute: at.0.timestamp().div_euclid(60),
        campaign: d.campaign_id.clone(),
        code: (d.status == Status::Bounced)
            .then(|| d.error_code.as_ref().map_or("unknown".to_string(), |c| c.0.clone())),
        recipient: d.recipient.clone(),
    })
}

/// A counter an outcome feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Rates,
    Campaign,
}

/// The roles an outcome plays, given what the account's subscriptions need.
pub fn roles(feeds: Feeds, o: &Outcome) -> Vec<Role> {
    let mut out = Vec::new();
    if feeds.rates {
        out.push(Role::Rates);
    }
    if feeds.campaigns && o.campaign.is_some() {
        out.push(Role::Campaign);
    }
    out
}

/// The shard a batch token writes to (FNV-1a over the token).
pub fn shard_of(token: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// The counter item an outcome feeds in `role` under a token's shard.
pub fn counter_key(account: &str, role: Role, o: &Outcome, shard: u32) -> Key {
    match role {
        Role::Rates => keys::bucket(account, o.minute, shard),
        Role::Campaign => keys::campaign_counter(account, o.campaign.as_deref().unwrap_or_default(), o.minute, shard),
    }
}

/// Where one role of an outcome was (or is being) counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub key: Key,
    pub token: String,
}

/// The marker of a message's final outcome: its owner event and where each role is counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub event_id: String,
    pub outcome: Outcome,
    pub placed: BTreeMap<Role, Placement>,
}

pub fn place(account: &str, role: Role, o: &Outcome, token: &str) -> Placement {
    Placement {
        key: counter_key(account, role, o, shard_of(token)),
        token: token.to_string(),
    }
}

pub fn marker(account: &str, event_id: &str, o: &Outcome, roles: &[Role], token: &str) -> Marker {
    Marker {
        event_id: event_id.to_string(),
        outcome: o.clone(),
        placed: roles.iter().map(|r| (*r, place(account, *r, o, token))).collect(),
    }
}

/// Every counter a marker put for `o` under `token` may name: where the batch must not apply
/// `token` when that put failed without saying whether it was applied.
pub fn tokened_keys(account: &str, feeds: Feeds, o: &Outcome, token: &str) -> Vec<Key> {
    roles(feeds, o)
        .into_iter()
        .map(|r| place(account, r, o, token).key)
        .collect()
}

/// What a batch adds to one counter item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delta {
    pub numbers: BTreeMap<String, i64>,
    /// Bounced recipients, distinct, at most [`rates::NUMBERS_PER_BUCKET`].
    pub bounced_numbers: Vec<String>,
}

fn campaign_attr(campaign: &str, what: char) -> String {
    format!("c#{}#{what}", keys::part(campaign))
}

fn unescape(part: &str) -> String {
    part.replace("%23", "#").replace("%25", "%")
}

impl Delta {
    fn add(&mut self, attr: String, by: i64) {
        *self.numbers.entry(attr).or_default() += by;
    }

    fn count(&mut self, role: Role, o: &Outcome) {
        let delivered = i64::from(o.status == Status::Delivered);
        match role {
            Role::Rates => {
                self.add(o.status.as_str().to_string(), 1);
                if let Some(c) = &o.campaign {
                    self.add(campaign_attr(c, 't'), 1);
                    self.add(campaign_attr(c, 'd'), delivered);
                }
                if let Some(code) = &o.code {
                    self.add(format!("e#{}", keys::part(code)), 1);
                    note_bounced(&mut self.bounced_numbers, &o.recipient);
                }
            }
            Role::Campaign => {
                self.add("total".into(), 1);
                self.add(if delivered == 1 { "delivered" } else { "failed" }.into(), 1);
            }
        }
    }
}

/// The batch's deltas, one per counter item: every (role, outcome) placed at `key`.
pub fn aggregate<'a>(placed: impl IntoIterator<Item = (&'a Key, Role, &'a Outcome)>) -> BTreeMap<Key, Delta> {
    let mut out: BTreeMap<Key, Delta> = BTreeMap::new();
    for (key, role, o) in placed {
        out.entry(key.clone()).or_default().count(role, o);
    }
    out
}

fn number(item: &Map<String, Value>, name: &str) -> u64 {
    item.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// A bucket item (as JSON) back into a bucket; `None` for an item that is not a bucket.
pub fn parse_bucket(item: &Map<String, Value>) -> Option<Bucket> {
    let minute = keys::bucket_minute(item.get("sk")?.as_str()?)?;
    let mut b = Bucket {
        minute,
        delivered: number(item, "delivered"),
        failed: number(item, "failed"),
        bounced: number(item, "bounced"),
        expired: number(item, "expired"),
        ..Default::default()
    };
    for (name, value) in item {
        let count = value.as_u64().unwrap_or(0);
        if let Some(rest) = name.strip_prefix("c#") {
            if let Some(c) = rest.strip_suffix("#t") {
                b.campaigns.entry(unescape(c)).or_default().0 += count;
            } else if let Some(c) = rest.strip_suffix("#d") {
                b.campaigns.entry(unescape(c)).or_default().1 += count;
            }
        } else if let Some(code) = name.strip_prefix("e#") {
            *b.bounce_codes.entry(unescape(code)).or_default() += count;
        }
    }
    if let Some(Value::Array(numbers)) = item.get("bn") {
        let mut numbers: Vec<String> = numbers.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
        numbers.sort();
        b.bounced_numbers = numbers;
    }
    Some(b)
}

/// A campaign's counts, summed over its counter items.
pub fn campaign_counts(items: &[Map<String, Value>]) -> CampaignCounts {
    items.iter().fold(CampaignCounts::default(), |c, i| CampaignCounts {
        total: c.total + number(i, "total"),
        delivered: c.delivered + number(i, "delivered"),
        failed: c.failed + number(i, "failed"),
    })
}

/// One fired alert, kept to send its webhook again if its event is redelivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    pub event_id: String,
    pub data: Value,
}

/// One subscription's state for one rate alert.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertDoc {
    pub firing: bool,
    pub last_fired: Option<i64>,
    #[serde(default)]
    pub fired: Vec<Fired>,
}

/// One alert to evaluate: whose, which, its settings and its stored state.
#[derive(Debug, Clone)]
pub struct AlertInput {
    pub subscription_id: String,
    pub kind: RateKind,
    pub trigger: Trigger,
    pub cfg: RateAlert,
    pub key: Key,
    pub state: Option<(AlertDoc, u64)>,
}

/// What the alerts decided: webhooks by the index of the event that carries them, and the states
/// to store (key, new state, expected version).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertDecision {
    pub emits: Vec<(usize, crate::rules::Emit)>,
    pub writes: Vec<(Key, AlertDoc, Option<u64>)>,
}

/// Evaluate every alert after a batch's outcomes were counted. `events` are the group's event ids;
/// `carrier`, the index of the event a new alert's webhook is sent under (the latest one counted
/// in this batch), or `None` when this batch counted nothing new. An alert that already fired for
/// one of `events` (a redelivery) sends the same webhook again and is not evaluated anew.
pub fn evaluate_alerts(
    alerts: &[AlertInput],
    buckets: &[Bucket],
    events: &[&str],
    carrier: Option<usize>,
    now_minute: i64,
    now: i64,
) -> AlertDecision {
    let mut out = AlertDecision::default();
    for a in alerts {
        let (doc, version) = a
            .state
            .clone()
            .map_or((AlertDoc::default(), None), |(d, v)| (d, Some(v)));
        let again: Vec<(usize, &Fired)> = doc
            .fired
            .iter()
            .filter_map(|f| events.iter().position(|e| *e == f.event_id).map(|i| (i, f)))
            .collect();
        if !again.is_empty() {
            for (i, f) in again {
                out.emits
                    .push((i, crate::rules::Emit::to(a.trigger, f.data.clone(), &a.subscription_id)));
            }
            continue;
        }
        let Some(carrier) = carrier else { continue };
        let stats = rates::window(buckets, now_minute, a.cfg.window_minutes);
        let prev = rates::AlertState {
            firing: doc.firing,
            last_fired: doc.last_fired,
        };
        let (fired, next) = rates::rate_alert(a.kind, &a.cfg, &stats, prev, now);
        let mut next_doc = AlertDoc {
            firing: next.firing,
            last_fired: next.last_fired,
            fired: doc.fired.clone(),
        };
        if let Some(rate) = fired {
            let data = match a.kind {
                RateKind::DeliveryLow => rates::delivery_rate_data(rate, &a.cfg, &stats),
                RateKind::BounceHigh => rates::bounce_rate_data(rate, &a.cfg, &stats),
            };
            next_doc.fired.push(Fired {
                event_id: events[carrier].to_string(),
                data: data.clone(),
            });
            let excess = next_doc.fired.len().saturating_sub(FIRED_KEPT);
            next_doc.fired.drain(..excess);
            out.emits
                .push((carrier, crate::rules::Emit::to(a.trigger, data, &a.subscription_id)));
        }
        if next_doc != doc {
            out.writes.push((a.key.clone(), next_doc, version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(status: Status, minute: i64, campaign: Option<&str>, recipient: &str) -> Outcome {
        Outcome {
            status,
            minute,
            campaign: campaign.map(str::to_string),
            code: (status == Status::Bounced).then(|| "30003".to_string()),
            recipient: recipient.into(),
        }
    }

    #[test]
    fn a_failed_marker_withholds_exactly_the_counters_its_marker_names() {
        let feeds = Feeds {
            rates: true,
            campaigns: true,
        };
        let out = o(Status::Delivered, 29_000_000, Some("c#1"), "+1");
        let m = marker("acc", "evt", &out, &roles(feeds, &out), "tok");
        let named: Vec<Key> = m.placed.values().map(|p| p.key.clone()).collect();
        assert_eq!(tokened_keys("acc", feeds, &out, "tok"), named);
        assert_eq!(named.len(), 2);
        let no_campaign = o(Status::Failed, 29_000_000, None, "+1");
        assert_eq!(tokened_keys("acc", feeds, &no_campaign, "tok").len(), 1);
        let other_shard = (0..64)
            .map(|n| format!("t{n}"))
            .find(|t| shard_of(t) != shard_of("tok"))
            .unwrap();
        assert_ne!(
            tokened_keys("acc", feeds, &out, &other_shard),
            named,
            "the token's shard is in the key"
        );
    }

    #[test]
    fn only_final_receipts_are_outcomes() {
        let d = |status| SmsStatusChanged {
            message_id: "m".into(),
            status,
            recipient: "+1".into(),
            campaign_id: Some("c".into()),
            error_code: None,
            error_message: None,
        };
        let at = Timestamp::parse("2026-11-30T10:00:30Z").unwrap();
        assert_eq!(outcome(&d(Status::Sent), at), None);
        let b = outcome(&d(Status::Bounced), at).unwrap();
        assert_eq!((b.minute, b.code.as_deref()), (at.0.timestamp() / 60, Some("unknown")));
        assert_eq!(outcome(&d(Status::Delivered), at).unwrap().code, None);
    }

    #[test]
    fn roles_follow_what_the_subscriptions_need() {
        let with = o(Status::Delivered, 1, Some("c"), "+1");
        let without = o(Status::Delivered, 1, None, "+1");
        let all = Feeds {
            rates: true,
            campaigns: true,
        };
        assert_eq!(roles(all, &with), vec![Role::Rates, Role::Campaign]);
        assert_eq!(roles(all, &without), vec![Role::Rates]);
        assert!(roles(Feeds::default(), &with).is_empty(), "no subscription: no state");
    }

    #[test]
    fn a_batch_writes_each_counter_once_with_the_sum() {
        let token = "tok1";
        let outcomes = [
            o(Status::Delivered, 7, Some("c#1"), "+1"),
            o(Status::Bounced, 7, Some("c#1"), "+2"),
            o(Status::Bounced, 7, None, "+2"),
            o(Status::Failed, 8, None, "+3"),
        ];
        let placed: Vec<(Key, Role, &Outcome)> = outcomes
            .iter()
            .flat_map(|x| {
                roles(
                    Feeds {
                        rates: true,
                        campaigns: true,
                    },
                    x,
                )
                .into_iter()
                .map(move |r| (place("acc", r, x, token).key, r, x))
            })
            .collect();
        let deltas = aggregate(placed.iter().map(|(k, r, x)| (k, *r, *x)));
        // minute 7 bucket, minute 8 bucket, one campaign counter for minute 7.
        assert_eq!(deltas.len(), 3);
        let b7 = &deltas[&keys::bucket("acc", 7, shard_of(token))];
        assert_eq!(b7.numbers["delivered"], 1);
        assert_eq!(b7.numbers["bounced"], 2);
        assert_eq!(b7.numbers["c#c%231#t"], 2);
        assert_eq!(b7.numbers["c#c%231#d"], 1);
        assert_eq!(b7.numbers["e#30003"], 2);
        assert_eq!(b7.bounced_numbers, vec!["+2"], "distinct numbers");
        let c = &deltas[&keys::campaign_counter("acc", "c#1", 7, shard_of(token))];
        assert_eq!(
            (c.numbers["total"], c.numbers["delivered"], c.numbers["failed"]),
            (2, 1, 1)
        );
    }

    #[test]
    fn bounced_numbers_are_capped_per_bucket() {
        let many: Vec<Outcome> = (0..250)
            .map(|i| o(Status::Bounced, 1, None, &format!("+{i}")))
            .collect();
        let key = keys::bucket("a", 1, 0);
        let d = aggregate(many.iter().map(|x| (&key, Role::Rates, x)));
        assert_eq!(d[&key].bounced_numbers.len(), rates::NUMBERS_PER_BUCKET);
        assert_eq!(d[&key].numbers["bounced"], 250, "every bounce still counts");
    }

    #[test]
    fn shards_spread_tokens() {
        let used: std::collections::BTreeSet<u32> = (0..400).map(|i| shard_of(&format!("t{i}"))).collect();
        assert_eq!(used.len(), SHARDS as usize);
    }

    #[test]
    fn buckets_parse_back_with_escaped_ids() {
        let item = json!({"pk": "perf#acc", "sk": keys::bucket_sk(42, 3), "delivered": 3, "bounced": 1,
                          "c#c%231#t": 4, "c#c%231#d": 3, "e#30003": 1, "bn": ["+2", "+1"], "tok": ["x"]});
        let b = parse_bucket(item.as_object().unwrap()).unwrap();
        assert_eq!((b.minute, b.delivered, b.bounced, b.total()), (42, 3, 1, 4));
        assert_eq!(b.campaigns["c#1"], (4, 3));
        assert_eq!(b.bounce_codes["30003"], 1);
        assert_eq!(b.bounced_numbers, vec!["+1", "+2"]);
        assert_eq!(parse_bucket(json!({"sk": "alert#x"}).as_object().unwrap()), None);
    }

    fn alert(state: Option<(AlertDoc, u64)>) -> AlertInput {
        AlertInput {
            subscription_id: "s".into(),
            kind: RateKind::BounceHigh,
            trigger: Trigger::BounceRateHigh,
            cfg: RateAlert {
                threshold: 0.1,
                window_minutes: 60,
                min_samples: 2,
                cooldown_minutes: 60,
            },
            key: keys::rate_alert("acc", "s", "bounce_rate.high"),
            state,
        }
    }

    fn bounces(minute: i64, bounced: u64, delivered: u64) -> Bucket {
        Bucket {
            minute,
            bounced,
            delivered,
            ..Default::default()
        }
    }

    #[test]
    fn an_alert_fires_once_on_the_carrier_and_again_only_for_a_redelivery() {
        let buckets = [bounces(100, 1, 0), bounces(100, 1, 1)];
        let d = evaluate_alerts(&[alert(None)], &buckets, &["e1", "e2"], Some(1), 100, 6000);
        assert_eq!(d.emits.len(), 1);
        assert_eq!(d.emits[0].0, 1, "carried by the latest event counted");
        assert_eq!(d.emits[0].1.data["rate"], json!(0.6667));
        let (key, doc, expect) = &d.writes[0];
        assert_eq!((key, doc.firing, *expect), (&alert(None).key, true, None));
        assert_eq!(doc.fired[0].event_id, "e2");

        // Still high: nothing more.
        let again = evaluate_alerts(&[alert(Some((doc.clone(), 1)))], &buckets, &["e3"], Some(0), 100, 6060);
        assert!(again.emits.is_empty() && again.writes.is_empty());

        // e2 redelivered (its webhook may not have gone out): the same webhook, no new state.
        let redo = evaluate_alerts(&[alert(Some((doc.clone(), 1)))], &buckets, &["e2"], None, 100, 6100);
        assert_eq!(redo.emits, vec![(0, d.emits[0].1.clone())]);
        assert!(redo.writes.is_empty());

        // Nothing new counted (all duplicates): no evaluation.
        let none = evaluate_alerts(&[alert(None)], &buckets, &["e9"], None, 100, 6000);
        assert_eq!(none, AlertDecision::default());
    }

    #[test]
    fn fired_history_is_bounded() {
        let mut doc = AlertDoc::default();
        for i in 0..10 {
            doc.firing = false;
            doc.last_fired = None;
            let id = format!("e{i}");
            let d = evaluate_alerts(
                &[alert(Some((doc.clone(), i)))],
                &[bounces(1, 5, 0)],
                &[&id],
                Some(0),
                1,
                60,
            );
            doc = d.writes[0].1.clone();
        }
        assert_eq!(doc.fired.len(), FIRED_KEPT);
        assert_eq!(doc.fired.last().unwrap().event_id, "e9");
    }

    #[test]
    fn campaign_counts_sum_the_shards() {
        let items = [
            json!({"total": 3, "delivered": 2, "failed": 1}),
            json!({"total": 1, "failed": 1}),
        ];
        let items: Vec<Map<String, Value>> = items.iter().map(|v| v.as_object().unwrap().clone()).collect();
        let c = campaign_counts(&items);
        assert_eq!((c.total, c.delivered, c.failed), (4, 2, 2));
    }
}
