//! The stateful conditions of docs/design.md §6 as pure functions: stored state, the event and `now` in;
//! what to emit and what to store out. The DynamoDB adapter (store::state) applies the writes
//! with conditions, so concurrent invocations and redeliveries never double-fire or double-count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Status, Timestamp};
use crate::payload::{to_data, BounceRateHighData, CampaignRate, DeliveryRateLowData};
use crate::subscription::{BalanceLow, KeywordRule, RateAlert};

// ---------------------------------------------------------------- sms.status_changed

/// The last status applied to one message, and the receipts that changed it (to send their
/// webhook again, with the same previous status, if one of them is redelivered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStatus {
    pub status: Status,
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub applied: Vec<AppliedReceipt>,
}

/// One receipt that changed a message's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedReceipt {
    pub event_id: String,
    pub previous: Option<Status>,
}

/// Receipts remembered per message (a message has at most six statuses).
pub const RECEIPTS_KEPT: usize = 8;

/// Whether a receipt changes the message's status: not a duplicate, not older than what was
/// applied, and not a final status regressing. `Some(previous status)` when it does.
pub fn status_transition(prev: Option<&MessageStatus>, status: Status, at: Timestamp) -> Option<Option<Status>> {
    match prev {
        None => Some(None),
        Some(p) if at < p.occurred_at => None,  // stale, out of order
        Some(p) if p.status == status => None,  // duplicate
        Some(p) if p.status.is_final() => None, // a final status does not change
        Some(p) => Some(Some(p.status)),
    }
}

/// What a receipt does to a message's status.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusStep {
    /// This receipt was applied before (a redelivery): emit again with the same previous status.
    Again(Option<Status>),
    /// A change: emit with `previous` and store `next`.
    Apply {
        previous: Option<Status>,
        next: MessageStatus,
    },
    /// A duplicate, stale or regressing receipt: nothing.
    Ignore,
}

pub fn status_step(prev: Option<&MessageStatus>, event_id: &str, status: Status, at: Timestamp) -> StatusStep {
    if let Some(a) = prev.and_then(|p| p.applied.iter().find(|a| a.event_id == event_id)) {
        return StatusStep::Again(a.previous);
    }
    let Some(previous) = status_transition(prev, status, at) else {
        return StatusStep::Ignore;
    };
    let mut applied = prev.map(|p| p.applied.clone()).unwrap_or_default();
    applied.push(AppliedReceipt {
        event_id: event_id.to_string(),
        previous,
    });
    let excess = applied.len().saturating_sub(RECEIPTS_KEPT);
    applied.drain(..excess);
    StatusStep::Apply {
        previous,
        next: MessageStatus {
            status,
            occurred_at: at,
            applied,
        },
    }
}

// ---------------------------------------------------------------- balance.low

/// One subscription's balance.low state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BalanceState {
    pub armed: bool,
    /// occurred_at of the last balance applied (stale events are ignored).
    pub last_at: Timestamp,
}

/// Edge-triggered: fires when the balance is below the threshold while armed, then disarms;
/// re-arms at or above `rearm_above`. Returns (fire, new state); `None` when the event is stale.
pub fn balance_rule(
    cfg: &BalanceLow,
    prev: Option<&BalanceState>,
    balance: f64,
    at: Timestamp,
) -> Option<(bool, BalanceState)> {
    let armed = match prev {
        Some(p) if at < p.last_at => return None,
        Some(p) => p.armed,
        None => true,
    };
    if armed && balance < cfg.threshold {
        Some((
            true,
            BalanceState {
                armed: false,
                last_at: at,
            },
        ))
    } else if !armed && balance >= cfg.rearm_above {
        Some((
            false,
            BalanceState {
                armed: true,
                last_at: at,
            },
        ))
    } else {
        Some((false, BalanceState { armed, last_at: at }))
    }
}

// ---------------------------------------------------------------- contact.updated

/// Changed fields between two snapshots: dotted paths for nested objects (`custom_fields.tier`),
/// with the old and new values (`null` when absent).
pub fn contact_diff(previous: &Map<String, Value>, current: &Map<String, Value>) -> (Vec<String>, Value, Value) {
    let mut changed = Vec::new();
    let mut old = Map::new();
    let mut new = Map::new();
    diff_into("", previous, current, &mut changed, &mut old, &mut new);
    (changed, Value::Object(old), Value::Object(new))
}

fn diff_into(
    prefix: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    changed: &mut Vec<String>,
    old: &mut Map<String, Value>,
    new: &mut Map<String, Value>,
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (a.get(key), b.get(key)) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => diff_into(&path, x, y, changed, old, new),
            // A nested object appearing or disappearing: report its fields one by one.
            (Some(Value::Object(x)), None) => diff_into(&path, x, &Map::new(), changed, old, new),
            (None, Some(Value::Object(y))) => diff_into(&path, &Map::new(), y, changed, old, new),
            (x, y) if x != y => {
                changed.push(path.clone());
                old.insert(path.clone(), x.cloned().unwrap_or(Value::Null));
                new.insert(path, y.cloned().unwrap_or(Value::Null));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- keyword.matched

const RESERVED: &[(&str, &str)] = &[
    ("STOP", "opt_out"),
    ("STOPALL", "opt_out"),
    ("UNSUBSCRIBE", "opt_out"),
    ("CANCEL", "opt_out"),
    ("END", "opt_out"),
    ("QUIT", "opt_out"),
    ("REVOKE", "opt_out"),
    ("OPTOUT", "opt_out"),
    ("START", "opt_in"),
    ("YES", "opt_in"),
    ("UNSTOP", "opt_in"),
    ("HELP", "help"),
    ("INFO", "help"),
];

/// The reserved compliance keyword a message is, if any: the whole trimmed message, any case.
pub fn reserved_keyword(body: &str) -> Option<(&'static str, &'static str)> {
    let text = body.trim();
    RESERVED.iter().find(|(k, _)| k.eq_ignore_ascii_case(text)).copied()
}

/// What keyword.matched reports for one subscription: the reserved keyword first, then the first
/// of its own rules that matches. `(keyword, match_type, reserved)`.
pub fn keyword_match(
    body: &str,
    rules: &[KeywordRule],
    reserved_enabled: bool,
) -> Option<(String, &'static str, Option<&'static str>)> {
    if reserved_enabled {
        if let Some((keyword, kind)) = reserved_keyword(body) {
            return Some((keyword.to_string(), "exact", Some(kind)));
        }
    }
    rules
        .iter()
        .find(|r| r.matches(body))
        .map(|r| (r.keyword.clone(), r.match_type.as_str(), None))
}

// ---------------------------------------------------------------- delivery_rate.low, bounce_rate.high

/// Final outcomes counted in one account-minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Unix minute (seconds / 60).
    pub minute: i64,
    pub delivered: u64,
    pub failed: u64,
    pub bounced: u64,
    pub expired: u64,
    /// campaign id -> (final outcomes, delivered)
    pub campaigns: BTreeMap<String, (u64, u64)>,
    /// error code -> bounces
    pub bounce_codes: BTreeMap<String, u64>,
    pub bounced_numbers: Vec<String>,
}

impl Bucket {
    pub fn total(&self) -> u64 {
        self.delivered + self.failed + self.bounced + self.expired
    }
}

/// The window's figures, summed over the buckets it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    pub samples: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub campaigns: BTreeMap<String, (u64, u64)>,
    pub bounce_codes: BTreeMap<String, u64>,
    pub bounced_numbers: Vec<String>,
}

/// Sum the buckets of the last `window_minutes` minutes up to `now_minute` (inclusive).
pub fn window(buckets: &[Bucket], now_minute: i64, window_minutes: u32) -> WindowStats {
    let from = now_minute - window_minutes as i64 + 1;
    let mut w = WindowStats::default();
    for b in buckets.iter().filter(|b| b.minute >= from && b.minute <= now_minute) {
        w.samples += b.total();
        w.delivered += b.delivered;
        w.bounced += b.bounced;
        for (c, (t, d)) in &b.campaigns {
            let e = w.campaigns.entry(c.clone()).or_default();
            e.0 += t;
            e.1 += d;
        }
        for (code, n) in &b.bounce_codes {
            *w.bounce_codes.entry(code.clone()).or_default() += n;
        }
        for n in &b.bounced_numbers {
            if w.bounced_numbers.len() < crate::rules::counting::NUMBERS_PER_BUCKET && !w.bounced_numbers.contains(n) {
                w.bounced_numbers.push(n.clone());
            }
        }
    }
    w
}

/// One subscription's alert state for one rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Crossed and not yet recovered.
    pub firing: bool,
    /// Unix seconds of the last webhook fired.
    pub last_fired: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// delivery_rate.low: fires when delivered / finals drops below the threshold.
    DeliveryLow,
    /// bounce_rate.high: fires when bounced / finals rises above the threshold.
    BounceHigh,
}

/// Fire on crossing (with at least `min_samples`), not again until the rate recovers, and never
/// more often than the cooldown. Returns (fire with this rate, new state); the state is unchanged
/// when nothing changes.
pub fn rate_alert(
    kind: RateKind,
    cfg: &RateAlert,
    stats: &WindowStats,
    prev: AlertState,
    now: i64,
) -> (Option<f64>, AlertState) {
    if stats.samples == 0 || stats.samples < cfg.min_samples as u64 {
        return (None, prev);
    }
    let (rate, crossed) = match kind {
        RateKind::DeliveryLow => {
            let r = stats.delivered as f64 / stats.samples as f64;
            (r, r < cfg.threshold)
        }
        RateKind::BounceHigh => {
            let r = stats.bounced as f64 / stats.samples as f64;
            (r, r > cfg.threshold)
        }
    };
    if !crossed {
        return (None, AlertState { firing: false, ..prev });
    }
    let cooled = prev
        .last_fired
        .is_none_or(|t| now - t >= cfg.cooldown_minutes as i64 * 60);
    if prev.firing || !cooled {
        return (None, prev);
    }
    (
        Some(rate),
        AlertState {
            firing: true,
            last_fired: Some(now),
        },
    )
}

/// Round a rate for a webhook: 4 decimals.
pub fn round_rate(r: f64) -> f64 {
    (r * 10_000.0).round() / 10_000.0
}

/// The data of delivery_rate.low.
pub fn delivery_rate_data(rate: f64, cfg: &RateAlert, stats: &WindowStats) -> Value {
    let affected_campaigns = stats
        .campaigns
        .iter()
        .map(|(id, (total, delivered))| CampaignRate {
            campaign_id: id.clone(),
            rate: round_rate(*delivered as f64 / (*total).max(1) as f64),
            samples: *total,
        })
        .collect();
    to_data(DeliveryRateLowData {
        rate: round_rate(rate),
        threshold: cfg.threshold,
        window_minutes: cfg.window_minutes,
        samples: stats.samples,
        affected_campaigns,
    })
}

/// The data of bounce_rate.high.
pub fn bounce_rate_data(rate: f64, cfg: &RateAlert, stats: &WindowStats) -> Value {
    to_data(BounceRateHighData {
        rate: round_rate(rate),
        threshold: cfg.threshold,
        window_minutes: cfg.window_minutes,
        samples: stats.samples,
        affected_numbers: stats.bounced_numbers.clone(),
        reasons: stats.bounce_codes.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{parse_record, ParseOptions};
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn status_transitions() {
        let t0 = ts("2026-11-30T10:00:00Z");
        let t1 = ts("2026-11-30T10:01:00Z");
        let sent = MessageStatus {
            status: Status::Sent,
            occurred_at: t1,
            applied: vec![],
        };
        let delivered = MessageStatus {
            status: Status::Delivered,
            occurred_at: t1,
            applied: vec![],
        };
        assert_eq!(status_transition(None, Status::Sent, t0), Some(None), "first receipt");
        assert_eq!(
            status_transition(Some(&sent), Status::Delivered, t1),
            Some(Some(Status::Sent)),
            "same instant, new status"
        );
        assert_eq!(status_transition(Some(&sent), Status::Sent, t1), None, "duplicate");
        assert_eq!(
            status_transition(Some(&sent), Status::Pending, t0),
            None,
            "out of order (older)"
        );
        assert_eq!(
            status_transition(Some(&delivered), Status::Sent, ts("2026-11-30T10:05:00Z")),
            None,
            "final regressing"
        );
        assert_eq!(
            status_transition(Some(&delivered), Status::Failed, ts("2026-11-30T10:05:00Z")),
            None,
            "final is final"
        );
    }

    #[test]
    fn a_redelivered_receipt_emits_again_with_its_previous_status() {
        let t = |m: u32| ts(&format!("2026-11-30T10:{m:02}:00Z"));
        let StatusStep::Apply { previous: None, next } = status_step(None, "e1", Status::Sent, t(0)) else {
            panic!("first receipt applies")
        };
        let StatusStep::Apply { previous, next } = status_step(Some(&next), "e2", Status::Delivered, t(1)) else {
            panic!("a change applies")
        };
        assert_eq!(previous, Some(Status::Sent));
        // e1 and e2 redelivered after e2 was applied: each emits again as it did.
        assert_eq!(
            status_step(Some(&next), "e1", Status::Sent, t(0)),
            StatusStep::Again(None)
        );
        assert_eq!(
            status_step(Some(&next), "e2", Status::Delivered, t(1)),
            StatusStep::Again(Some(Status::Sent))
        );
        // A duplicate receipt under another id: nothing.
        assert_eq!(
            status_step(Some(&next), "e3", Status::Delivered, t(2)),
            StatusStep::Ignore
        );
        // The history is bounded.
        let StatusStep::Apply { next: mut cur, .. } = status_step(None, "y", Status::Sent, t(0)) else {
            panic!("first receipt applies")
        };
        for i in 0..20 {
            let status = if i % 2 == 0 { Status::Pending } else { Status::Sent };
            if let StatusStep::Apply { next, .. } = status_step(Some(&cur), &format!("x{i}"), status, t(3 + i)) {
                cur = next;
            }
        }
        assert_eq!(cur.applied.len(), RECEIPTS_KEPT);
    }

    #[test]
    fn balance_is_edge_triggered_with_rearm_and_stale_events_ignored() {
        let cfg = BalanceLow {
            threshold: 100.0,
            rearm_above: 150.0,
        };
        let t = |m: u32| ts(&format!("2026-11-30T10:{m:02}:00Z"));
        // Exactly at the threshold: not below, no fire.
        let (fire, s) = balance_rule(&cfg, None, 100.0, t(0)).unwrap();
        assert!(!fire && s.armed);
        // Below: fires once, disarms.
        let (fire, s) = balance_rule(&cfg, Some(&s), 99.99, t(1)).unwrap();
        assert!(fire && !s.armed);
        let (fire, s) = balance_rule(&cfg, Some(&s), 50.0, t(2)).unwrap();
        assert!(!fire && !s.armed, "no second fire while disarmed");
        // Back above the threshold but below rearm_above: still disarmed.
        let (fire, s) = balance_rule(&cfg, Some(&s), 120.0, t(3)).unwrap();
        assert!(!fire && !s.armed);
        // Stale event (older than the last applied): ignored.
        assert_eq!(balance_rule(&cfg, Some(&s), 500.0, t(2)), None);
        // Re-arm at rearm_above exactly, then fire again on the next drop.
        let (fire, s) = balance_rule(&cfg, Some(&s), 150.0, t(4)).unwrap();
        assert!(!fire && s.armed);
        let (fire, _) = balance_rule(&cfg, Some(&s), 10.0, t(5)).unwrap();
        assert!(fire);
    }

    #[test]
    fn contact_diffs_name_nested_fields() {
        let a = json!({"name": "Dana", "email": "d@x.com", "custom_fields": {"tier": "gold", "city": "Leeds"}});
        let b = json!({"name": "Dana S", "custom_fields": {"tier": "platinum", "city": "Leeds"}, "phone": "+1"});
        let (changed, old, new) = contact_diff(a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(changed, vec!["custom_fields.tier", "email", "name", "phone"]);
        assert_eq!(
            old,
            json!({"custom_fields.tier": "gold", "email": "d@x.com", "name": "Dana", "phone": null})
        );
        assert_eq!(
            new,
            json!({"custom_fields.tier": "platinum", "email": null, "name": "Dana S", "phone": "+1"})
        );
        // No prior snapshot: every field is new.
        let (changed, old, _) = contact_diff(&Map::new(), b.as_object().unwrap());
        assert_eq!(
            changed,
            vec!["custom_fields.city", "custom_fields.tier", "name", "phone"]
        );
        assert_eq!(old["name"], Value::Null);
    }

    fn rules(v: Value) -> Vec<KeywordRule> {
        let rec = json!({"account_id": "a", "subscription_id": "s", "url": "https://x.example.com",
                         "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*", "keywords": v});
        parse_record(rec.as_object().unwrap(), ParseOptions::default())
            .unwrap()
            .keywords
    }

    #[test]
    fn keywords_reserved_first_then_rules() {
        let r = rules(
            json!([{"keyword": "JOIN", "match": "starts_with"}, {"keyword": "stop", "match": "contains"},
                             {"keyword": "^order\\s+\\d+$", "match": "regex"}]),
        );
        assert_eq!(
            keyword_match("  stop ", &r, true),
            Some(("STOP".into(), "exact", Some("opt_out")))
        );
        assert_eq!(
            keyword_match("Unstop", &r, true),
            Some(("UNSTOP".into(), "exact", Some("opt_in")))
        );
        assert_eq!(
            keyword_match("info", &r, true),
            Some(("INFO".into(), "exact", Some("help")))
        );
        // Reserved keywords match the whole message only.
        assert_eq!(
            keyword_match("please stop now", &r, true),
            Some(("stop".into(), "contains", None))
        );
        assert_eq!(
            keyword_match("join us", &r, true),
            Some(("JOIN".into(), "starts_with", None))
        );
        assert_eq!(
            keyword_match("ORDER 12", &r, true),
            Some(("^order\\s+\\d+$".into(), "regex", None))
        );
        assert_eq!(
            keyword_match("STOP", &r, false),
            Some(("stop".into(), "contains", None)),
            "reserved off"
        );
        assert_eq!(keyword_match("hello", &r, true), None);
        assert_eq!(
            keyword_match("HELP", &[], true),
            Some(("HELP".into(), "exact", Some("help")))
        );
    }

    fn cfg(threshold: f64, min_samples: u32) -> RateAlert {
        RateAlert {
            threshold,
            window_minutes: 60,
            min_samples,
            cooldown_minutes: 60,
        }
    }

    fn stats(samples: u64, delivered: u64, bounced: u64) -> WindowStats {
        WindowStats {
            samples,
            delivered,
            bounced,
            ..Default::default()
        }
    }

    #[test]
    fn rate_alerts_fire_on_crossing_rearm_and_cool_down() {
        let c = cfg(0.9, 50);
        let now = 1_000_000;
        // Below min_samples: nothing, whatever the rate.
        assert_eq!(
            rate_alert(RateKind::DeliveryLow, &c, &stats(49, 0, 0), AlertState::default(), now).0,
            None
        );
        // Exactly min_samples and below the threshold: fires.
        let (fired, s) = rate_alert(RateKind::DeliveryLow, &c, &stats(50, 40, 0), AlertState::default(), now);
        assert_eq!(fired, Some(0.8));
        // Still low: no second webhook.
        let (fired, s) = rate_alert(RateKind::DeliveryLow, &c, &stats(60, 45, 0), s, now + 60);
        assert_eq!((fired, s.firing), (None, true));
        // Recovers (exactly at the threshold is not below): re-armed.
        let (fired, s) = rate_alert(RateKind::DeliveryLow, &c, &stats(100, 90, 0), s, now + 120);
        assert_eq!((fired, s.firing), (None, false));
        // Crosses again within the cooldown: held back.
        let (fired, s) = rate_alert(RateKind::DeliveryLow, &c, &stats(100, 80, 0), s, now + 600);
        assert_eq!((fired, s.firing), (None, false));
        // After the cooldown: fires again.
        let (fired, s) = rate_alert(RateKind::DeliveryLow, &c, &stats(100, 80, 0), s, now + 3600);
        assert_eq!((fired, s.last_fired), (Some(0.8), Some(now + 3600)));
        // Bounce rate: above the threshold fires.
        let (fired, _) = rate_alert(
            RateKind::BounceHigh,
            &cfg(0.05, 10),
            &stats(20, 10, 2),
            AlertState::default(),
            now,
        );
        assert_eq!(fired, Some(0.1));
        let (fired, _) = rate_alert(
            RateKind::BounceHigh,
            &cfg(0.1, 10),
            &stats(20, 10, 2),
            AlertState::default(),
            now,
        );
        assert_eq!(fired, None, "exactly at the threshold is not above");
    }

    #[test]
    fn windows_sum_only_their_minutes() {
        let b = |minute, delivered, bounced| Bucket {
            minute,
            delivered,
            bounced,
            campaigns: BTreeMap::from([("c1".to_string(), (delivered + bounced, delivered))]),
            bounce_codes: BTreeMap::from([("30003".to_string(), bounced)]),
            bounced_numbers: vec![format!("+1{minute}")],
            ..Default::default()
        };
        let buckets = vec![b(100, 5, 1), b(130, 3, 2), b(159, 1, 1), b(160, 9, 9)];
        let w = window(&buckets, 159, 30);
        assert_eq!((w.samples, w.delivered, w.bounced), (7, 4, 3));
        assert_eq!(w.campaigns["c1"], (7, 4));
        assert_eq!(w.bounce_codes["30003"], 3);
        assert_eq!(w.bounced_numbers, vec!["+1130", "+1159"]);
        let data = delivery_rate_data(0.5, &cfg(0.9, 1), &w);
        assert_eq!(
            data["affected_campaigns"][0],
            json!({"campaign_id": "c1", "rate": 0.5714, "samples": 7})
        );
    }
}
