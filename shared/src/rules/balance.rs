//! balance.low: fire once below the threshold, re-arm at or above `rearm_above`, ignore older
//! balance events (docs/design.md §6). Pure: the stored state, the event and its time in.

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::subscription::BalanceLow;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
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
}
