//! delivery_rate.low and bounce_rate.high: the per-minute buckets of final outcomes, the window
//! over them, the alert's crossing, recovery and cooldown, and the webhooks' data (docs/design.md
//! §6). How outcomes are counted into the buckets at bulk-sender scale is [`counting`].

pub mod counting;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payload::{to_data, BounceRateHighData, CampaignRate, DeliveryRateLowData};
use crate::subscription::RateAlert;

/// Bounced recipients kept per bucket, and per window: the most a bounce_rate.high names.
pub const NUMBERS_PER_BUCKET: usize = 100;

/// Add a bounced number to `numbers` unless it is there or the list is full: the one cap of the
/// bounced numbers, for a batch's delta and for a window.
pub fn note_bounced(numbers: &mut Vec<String>, number: &str) {
    if numbers.len() < NUMBERS_PER_BUCKET && !numbers.iter().any(|n| n == number) {
        numbers.push(number.to_string());
    }
}

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
            note_bounced(&mut w.bounced_numbers, n);
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
    use serde_json::json;

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
