//! Pacing: how fast one subscription's receiver is sent to, as pure functions of the shared state,
//! `now` and what the receiver answered (the sans-I/O shape of [`super::attempt`]). The engine
//! reads and writes the state through [`crate::store::pace`]; nothing here does I/O or reads a
//! clock. docs/design.md ("Pacing") has the design and the alternatives rejected.
//!
//! - **The shared limiter** is a GCRA (generic cell rate algorithm) over one item per paced
//!   subscription: `tat` is the theoretical arrival time of the next free send slot. An
//!   invocation takes a *block* of slots in one conditional write (as many as it has webhooks
//!   waiting for that subscription, up to what fits in [`HORIZON`]), then sends each webhook at
//!   its slot. Slots are `1 / rate` apart, so no one-second window holds more than the rate,
//!   whichever functions and invocations took them.
//! - **A throttle answer** (429, 503) pauses the subscription until its `Retry-After` (or
//!   [`DEFAULT_PAUSE`]) and, where no limit is configured, starts an adaptive rate: additive
//!   increase, multiplicative decrease ([`on_throttle`], [`Adaptive::rate_at`]).
//! - **A webhook held back** (its slot is beyond the horizon, or the subscription is paused) is
//!   not an attempt: it goes back on the queue for the same attempt, delayed to when a slot is
//!   expected ([`Plan::Hold`]).
//! - **The circuit** ([`Circuit`]) is per process: consecutive timeouts or connection failures of
//!   one subscription stop its sends for a short while instead of letting them hold send slots.

use std::time::Duration;

/// The sender aims at this share of a configured `rate_limit`, so that the jitter of a claim's
/// round trip and of the network never puts one more request in a receiver's one-second window.
pub const PACE_MARGIN: f64 = 0.9;
/// Slots further ahead than this are not waited for in the invocation: the webhook is held back
/// on the queue instead.
pub const HORIZON: Duration = Duration::from_secs(10);
/// A 429 or 503 without a usable `Retry-After` pauses the subscription this long.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause a `Retry-After` can ask for (the retry policy's cap).
pub const MAX_PAUSE: Duration = crate::delivery::retry::MAX_RETRY_AFTER;
/// The adaptive rate never goes below one request every 5 s.
pub const MIN_ADAPTIVE_RATE: f64 = 0.2;
/// Additive increase: this share of the rate after the last decrease, per second...
pub const INCREASE_SHARE: f64 = 0.05;
/// ...and at least this many requests per second, per second.
pub const MIN_INCREASE: f64 = 0.25;
/// An adaptive rate ends this long after the last throttle answer (no limit is then applied).
pub const ADAPTIVE_FOR: Duration = Duration::from_secs(300);
/// Throttle answers within this long of the last decrease are the same congestion: one decrease.
pub const DECREASE_GUARD: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The rate a subscription is sent at after a throttle answer, when no limit is configured (or
/// below the configured one): `base` requests per second at `since_ms`, rising linearly; quickly
/// up to 90 % of `ceiling` (the rate the receiver refused last), then at a quarter of the pace, so
/// that it probes for more capacity without meeting the same 429 every few seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub base: f64,
    pub since_ms: i64,
    pub ceiling: f64,
}

impl Adaptive {
    /// Requests per second at `now_ms`: additive increase since the last decrease.
    pub fn rate_at(&self, now_ms: i64) -> f64 {
        let elapsed = (now_ms - self.since_ms).max(0) as f64 / 1000.0;
        let step = (self.base * INCREASE_SHARE).max(MIN_INCREASE);
        let knee = (self.ceiling * 0.9).max(self.base);
        let fast = (knee - self.base) / step;
        if elapsed <= fast {
            self.base + step * elapsed
        } else {
            knee + step / 4.0 * (elapsed - fast)
        }
    }

    pub fn active(&self, now_ms: i64) -> bool {
        now_ms - self.since_ms < ms(ADAPTIVE_FOR)
    }
}

/// The shared pacing state of one subscription, as last read (all times in ms since the epoch;
/// 0 where never set).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaceState {
    /// Theoretical arrival time of the next free slot (GCRA).
    pub tat_ms: i64,
    /// No sends before this: the last throttle answer's pause.
    pub paused_until_ms: i64,
    pub adaptive: Option<Adaptive>,
}

impl PaceState {
    /// When the next slot can be: after the reserved ones and after the pause, not before now.
    pub fn free_at(&self, now_ms: i64) -> i64 {
        self.tat_ms.max(self.paused_until_ms).max(now_ms)
    }
}

/// The rate to pace a subscription at, in requests per second; `None`: not paced (no limit
/// configured and no recent throttle answer).
pub fn pace_rate(configured: Option<f64>, state: &PaceState, now_ms: i64) -> Option<f64> {
    let adaptive = state.adaptive.filter(|a| a.active(now_ms)).map(|a| a.rate_at(now_ms));
    match (configured.map(|c| c * PACE_MARGIN), adaptive) {
        (Some(c), Some(a)) => Some(c.min(a)),
        (c, a) => c.or(a),
    }
}

/// The spacing of slots at `rate`, in ms (at least 1).
pub fn interval_ms(rate: f64) -> f64 {
    (1000.0 / rate).max(1.0)
}

/// What to do with `demand` webhooks waiting for one subscription's slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// The subscription is idle (nothing reserved past `start`): reserve `n` slots from `start`,
    /// on condition that `tat` is still at or before `start` and no pause runs past it.
    Start { start_ms: i64, n: usize, end_ms: i64 },
    /// Slots are reserved up to `tat`, within the horizon: reserve `n` after them, on condition
    /// that `tat` is still within the horizon.
    Append { n: usize, span_ms: i64 },
    /// The next free slot is beyond the horizon: hold the webhooks back until `until_ms`.
    Hold { until_ms: i64 },
}

/// A block covers at least this long of the webhooks expected here (see [`block_demand`]).
pub const BLOCK_COVERS: Duration = Duration::from_secs(3);

/// How many slots to ask for: the webhooks waiting now, or, when more keep arriving, what this
/// process expects in the next [`BLOCK_COVERS`] at the rate they arrived in the last second
/// (never more than the subscription's rate allows in that time). One write then serves a few
/// seconds of sends, so the limiter costs at most 1 / (rate x 3 s) writes per webhook when the
/// flow is at the rate, and a trickle never reserves slots it will not use.
pub fn block_demand(waiting: usize, arrived_last_second: usize, rate: f64) -> usize {
    let covers = BLOCK_COVERS.as_secs_f64();
    let expected = (arrived_last_second as f64).min(rate) * covers;
    waiting.max(expected.ceil() as usize).max(1)
}

/// How to reserve slots for `demand` webhooks at `rate`, given the state last read; `horizon` is
/// how far ahead a slot may be and still be waited for.
pub fn plan(state: &PaceState, rate: f64, demand: usize, now_ms: i64, horizon: Duration) -> Plan {
    let free = state.free_at(now_ms);
    let limit = now_ms + ms(horizon);
    if free > limit {
        return Plan::Hold { until_ms: free };
    }
    let step = interval_ms(rate);
    let room = ((limit - free) as f64 / step).floor() as usize + 1;
    let n = demand.clamp(1, room.max(1));
    let span_ms = (n as f64 * step).ceil() as i64;
    if state.tat_ms > now_ms.max(state.paused_until_ms) {
        Plan::Append { n, span_ms }
    } else {
        Plan::Start {
            start_ms: free,
            n,
            end_ms: free + span_ms,
        }
    }
}

/// The send times of a block of `n` slots at `rate` starting at `start_ms`.
pub fn slots(start_ms: i64, n: usize, rate: f64) -> Vec<i64> {
    let step = interval_ms(rate);
    (0..n).map(|i| start_ms + (i as f64 * step).round() as i64).collect()
}

/// What a throttle answer writes to the shared state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    pub paused_until_ms: i64,
    pub adaptive: Adaptive,
}

/// A 429 or 503 at `now_ms`: pause for `retry_after` (or [`DEFAULT_PAUSE`]) and decrease the
/// rate, halving the one in effect (or, entering adaptive pacing, half of `accepted_per_second`,
/// what the receiver took in the last second as this process saw it). `None` when another throttle
/// decreased the rate within [`DECREASE_GUARD`] and paused at least as long: nothing to write.
pub fn on_throttle(
    configured: Option<f64>,
    state: &PaceState,
    retry_after: Option<Duration>,
    accepted_per_second: f64,
    now_ms: i64,
) -> Option<Throttled> {
    let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
    let paused_until_ms = (now_ms + ms(pause)).max(state.paused_until_ms);
    let recent = state.adaptive.filter(|a| now_ms - a.since_ms < ms(DECREASE_GUARD));
    if let Some(a) = recent {
        return (paused_until_ms > state.paused_until_ms).then_some(Throttled {
            paused_until_ms,
            adaptive: a,
        });
    }
    let current = pace_rate(configured, state, now_ms)
        .unwrap_or(accepted_per_second)
        .max(MIN_ADAPTIVE_RATE);
    let base = (current * 0.5).max(MIN_ADAPTIVE_RATE);
    Some(Throttled {
        paused_until_ms,
        adaptive: Adaptive {
            base,
            since_ms: now_ms,
            ceiling: current,
        },
    })
}

/// Consecutive timeouts or connection failures that open a subscription's circuit...
pub const CIRCUIT_THRESHOLD: u32 = 2;
/// ...provided they are at least half of its last [`CIRCUIT_WINDOW`] sends: a receiver that hangs
/// fails all of them, one that times out now and then among answers does not open it (Convoy's
/// breaker counts a failure rate over a window for the same reason).
pub const CIRCUIT_WINDOW: u32 = 10;
/// How long an open circuit stays open at first; doubled on every failed probe.
pub const CIRCUIT_OPEN: Duration = Duration::from_secs(30);
pub const CIRCUIT_OPEN_MAX: Duration = Duration::from_secs(300);

/// One subscription's circuit in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circuit {
    /// Consecutive sends that timed out or could not connect.
    pub failures: u32,
    /// The last [`CIRCUIT_WINDOW`] sends, newest in bit 0: 1 = unreachable.
    pub recent: u32,
    /// How many sends `recent` holds (at most [`CIRCUIT_WINDOW`]).
    pub seen: u32,
    /// While open: no sends before this (ms).
    pub open_until_ms: i64,
    /// How long it opened for last (ms), to double on a failed probe.
    pub opened_for_ms: i64,
    /// A probe is in flight (half-open): the others wait.
    pub probing: bool,
}

/// What the circuit lets a send do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Send,
    /// The first send after the circuit was open: the others wait for its result.
    Probe,
    /// Hold the webhook back until `until_ms`.
    Open {
        until_ms: i64,
    },
}

/// How a send ended, as far as the circuit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The receiver answered (whatever the status).
    Answered,
    /// Timed out or could not connect.
    Unreachable,
}

impl Circuit {
    pub fn gate(&mut self, now_ms: i64) -> Gate {
        if self.open_until_ms == 0 {
            return Gate::Send;
        }
        if now_ms < self.open_until_ms || self.probing {
            return Gate::Open {
                until_ms: self.open_until_ms.max(now_ms + 1000),
            };
        }
        self.probing = true;
        Gate::Probe
    }

    fn remember(&mut self, unreachable: bool) {
        let mask = (1u32 << CIRCUIT_WINDOW) - 1;
        self.recent = ((self.recent << 1) | u32::from(unreachable)) & mask;
        self.seen = (self.seen + 1).min(CIRCUIT_WINDOW);
    }

    pub fn record(&mut self, reach: Reach, now_ms: i64) {
        match reach {
            // An answer closes an open circuit; a closed one keeps its window.
            Reach::Answered if self.open_until_ms != 0 => *self = Circuit::default(),
            Reach::Answered => {
                self.failures = 0;
                self.remember(false);
            }
            // The probe failed: open again, for twice as long.
            Reach::Unreachable if self.probing => {
                self.opened_for_ms = (self.opened_for_ms * 2).clamp(ms(CIRCUIT_OPEN), ms(CIRCUIT_OPEN_MAX));
                self.open_until_ms = now_ms + self.opened_for_ms;
                self.probing = false;
            }
            // A send that started before the circuit opened: already counted in.
            Reach::Unreachable if self.open_until_ms != 0 => {}
            Reach::Unreachable => {
                self.failures += 1;
                self.remember(true);
                let share_failed = 2 * self.recent.count_ones() >= self.seen;
                if self.failures >= CIRCUIT_THRESHOLD && share_failed {
                    self.opened_for_ms = ms(CIRCUIT_OPEN);
                    self.open_until_ms = now_ms + self.opened_for_ms;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_040_000_000;

    fn state(tat: i64, paused: i64) -> PaceState {
        PaceState {
            tat_ms: tat,
            paused_until_ms: paused,
            adaptive: None,
        }
    }

    #[test]
    fn an_unlimited_subscription_is_not_paced_until_throttled() {
        assert_eq!(pace_rate(None, &PaceState::default(), NOW), None);
        assert_eq!(
            pace_rate(Some(10.0), &PaceState::default(), NOW),
            Some(9.0),
            "90 % of the limit"
        );
        let throttled = PaceState {
            adaptive: Some(Adaptive {
                base: 2.0,
                since_ms: NOW - 4_000,
                ceiling: 10.0,
            }),
            ..Default::default()
        };
        assert_eq!(
            pace_rate(None, &throttled, NOW),
            Some(3.0),
            "2/s + 0.25/s per s for 4 s"
        );
        let near = PaceState {
            adaptive: Some(Adaptive {
                base: 2.5,
                since_ms: NOW - 16_000,
                ceiling: 5.0,
            }),
            ..Default::default()
        };
        assert_eq!(
            pace_rate(None, &near, NOW),
            Some(5.0),
            "4.5 after 8 s, then a quarter as fast"
        );
        assert_eq!(
            pace_rate(Some(2.0), &throttled, NOW),
            Some(1.8),
            "never above the limit"
        );
        let stale = PaceState {
            adaptive: Some(Adaptive {
                base: 2.0,
                since_ms: NOW - 300_000,
                ceiling: 4.0,
            }),
            ..Default::default()
        };
        assert_eq!(pace_rate(None, &stale, NOW), None, "the adaptive rate ends after 5 min");
    }

    #[test]
    fn an_idle_subscription_starts_a_block_now() {
        let p = plan(&state(0, 0), 5.0, 3, NOW, HORIZON);
        assert_eq!(
            p,
            Plan::Start {
                start_ms: NOW,
                n: 3,
                end_ms: NOW + 600
            }
        );
        // A tat in the past is idle too.
        assert_eq!(
            plan(&state(NOW - 5_000, 0), 5.0, 1, NOW, HORIZON),
            Plan::Start {
                start_ms: NOW,
                n: 1,
                end_ms: NOW + 200
            }
        );
        assert_eq!(slots(NOW, 3, 5.0), [NOW, NOW + 200, NOW + 400]);
    }

    #[test]
    fn a_block_is_cut_to_the_horizon_and_appends_after_the_reserved_slots() {
        // 100 waiting at 5/s: 10 s of horizon hold 51 slots (0 s .. 10 s inclusive).
        assert_eq!(
            plan(&state(0, 0), 5.0, 100, NOW, HORIZON),
            Plan::Start {
                start_ms: NOW,
                n: 51,
                end_ms: NOW + 10_200
            }
        );
        // 4 s already reserved: 6 s of room left, 31 slots.
        assert_eq!(
            plan(&state(NOW + 4_000, 0), 5.0, 100, NOW, HORIZON),
            Plan::Append { n: 31, span_ms: 6_200 }
        );
        // Reserved past the horizon: hold until the first free slot.
        assert_eq!(
            plan(&state(NOW + 60_000, 0), 5.0, 10, NOW, HORIZON),
            Plan::Hold { until_ms: NOW + 60_000 }
        );
    }

    #[test]
    fn a_block_covers_the_next_seconds_of_a_steady_flow_and_only_what_waits_of_a_trickle() {
        assert_eq!(block_demand(1, 1, 50.0), 3, "one a second: three seconds of it");
        assert_eq!(block_demand(1, 0, 50.0), 1, "nothing else coming");
        assert_eq!(block_demand(2, 40, 10.0), 30, "no more than the rate allows in 3 s");
        assert_eq!(block_demand(100, 5, 4.5), 100, "what waits, when more than that");
        // At 10/s and above a block serves at least 30 webhooks: at most 0.034 writes each.
        assert!(block_demand(1, 10, 10.0) >= 30);
    }

    #[test]
    fn a_pause_moves_the_first_slot() {
        // Paused for 2 s, nothing reserved: the block starts when the pause ends.
        assert_eq!(
            plan(&state(NOW - 1, NOW + 2_000), 5.0, 2, NOW, HORIZON),
            Plan::Start {
                start_ms: NOW + 2_000,
                n: 2,
                end_ms: NOW + 2_400
            }
        );
        // Reserved slots run past the pause: append.
        assert_eq!(
            plan(&state(NOW + 3_000, NOW + 2_000), 5.0, 1, NOW, HORIZON),
            Plan::Append { n: 1, span_ms: 200 }
        );
        // Paused for 1 h: hold.
        assert_eq!(
            plan(&state(0, NOW + 3_600_000), 5.0, 1, NOW, HORIZON),
            Plan::Hold {
                until_ms: NOW + 3_600_000
            }
        );
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_rate() {
        // Blocks taken by three invocations in turn, as the shared item orders them.
        let rate = pace_rate(Some(5.0), &PaceState::default(), NOW).unwrap();
        let mut s = state(0, 0);
        let mut sent = Vec::new();
        for (at, demand) in [(NOW, 7), (NOW + 10, 3), (NOW + 500, 20), (NOW + 9_000, 4)] {
            let (start, n) = match plan(&s, rate, demand, at, HORIZON) {
                Plan::Start { start_ms, n, end_ms } => {
                    s.tat_ms = end_ms;
                    (start_ms, n)
                }
                Plan::Append { n, span_ms } => {
                    let start = s.tat_ms;
                    s.tat_ms += span_ms;
                    (start, n)
                }
                Plan::Hold { .. } => unreachable!("within the horizon"),
            };
            sent.extend(slots(start, n, rate));
        }
        assert_eq!(sent.len(), 34);
        for &t in &sent {
            let in_window = sent.iter().filter(|&&u| u >= t && u < t + 1_000).count();
            assert!(in_window <= 5, "{in_window} sends in the second from {t}");
        }
    }

    #[test]
    fn a_throttle_pauses_and_halves_once_per_congestion() {
        let idle = PaceState::default();
        // Entering adaptive pacing: half of what the receiver accepted.
        let t = on_throttle(None, &idle, Some(Duration::from_secs(1)), 6.0, NOW).unwrap();
        assert_eq!(t.paused_until_ms, NOW + 1_000);
        assert_eq!(
            t.adaptive,
            Adaptive {
                base: 3.0,
                since_ms: NOW,
                ceiling: 6.0
            }
        );
        // A second 429 in the same second: the pause may grow, the rate does not halve again.
        let s = PaceState {
            paused_until_ms: t.paused_until_ms,
            adaptive: Some(t.adaptive),
            ..Default::default()
        };
        let short = Some(Duration::from_millis(500));
        assert_eq!(
            on_throttle(None, &s, short, 6.0, NOW + 300),
            None,
            "paused long enough already"
        );
        let longer = on_throttle(None, &s, Some(Duration::from_secs(5)), 6.0, NOW + 300).unwrap();
        assert_eq!((longer.paused_until_ms, longer.adaptive.base), (NOW + 5_300, 3.0));
        // Later: the rate in effect halves.
        let later = on_throttle(None, &s, None, 6.0, NOW + 8_000).unwrap();
        assert_eq!(later.adaptive.base, 2.5, "3/s + 0.25 x 8 s = 5/s, halved");
        assert_eq!(later.adaptive.ceiling, 5.0, "the rate refused");
        // With a limit configured, below it; never under the floor.
        let t = on_throttle(Some(10.0), &idle, None, 0.0, NOW).unwrap();
        assert_eq!(t.adaptive.base, 4.5);
        assert_eq!(
            on_throttle(None, &idle, None, 0.0, NOW).unwrap().adaptive.base,
            MIN_ADAPTIVE_RATE
        );
        let absurd = on_throttle(None, &idle, Some(Duration::from_secs(10 * 86_400)), 1.0, NOW).unwrap();
        assert_eq!(absurd.paused_until_ms, NOW + ms(MAX_PAUSE));
    }

    #[test]
    fn aimd_converges_on_what_the_receiver_takes() {
        // A receiver that takes 5/s: each time the rate passes 5, it answers 429 (once per
        // congestion). Over 5 minutes the rate averages between half and all of it.
        let mut s = PaceState::default();
        let mut t = NOW;
        let throttle = on_throttle(None, &s, None, 5.0, t).unwrap();
        s.adaptive = Some(throttle.adaptive);
        let (mut sum, mut n, mut throttles) = (0.0, 0, 0);
        while t < NOW + 300_000 {
            t += 100;
            let rate = pace_rate(None, &s, t).unwrap();
            if rate > 5.0 {
                s.adaptive = Some(on_throttle(None, &s, None, 5.0, t).unwrap().adaptive);
                throttles += 1;
            }
            sum += rate.min(5.0);
            n += 1;
        }
        let mean = sum / n as f64;
        assert!((3.8..=5.0).contains(&mean), "mean rate {mean}");
        assert!(throttles <= 20, "{throttles} congestions in 5 min");
    }

    #[test]
    fn the_circuit_opens_on_consecutive_unreachable_sends_and_probes() {
        let mut c = Circuit::default();
        assert_eq!(c.gate(NOW), Gate::Send);
        c.record(Reach::Unreachable, NOW);
        assert_eq!(c.gate(NOW), Gate::Send, "one timeout is not yet a pattern");
        c.record(Reach::Unreachable, NOW + 10);
        assert_eq!(c.gate(NOW + 20), Gate::Open { until_ms: NOW + 30_010 });
        // The other sends that were in flight when it opened time out too: it stays as opened.
        c.record(Reach::Unreachable, NOW + 15);
        c.record(Reach::Unreachable, NOW + 16);
        assert_eq!(c.gate(NOW + 20), Gate::Open { until_ms: NOW + 30_010 });
        assert_eq!(c.gate(NOW + 30_010), Gate::Probe);
        assert!(matches!(c.gate(NOW + 30_020), Gate::Open { .. }), "one probe at a time");
        c.record(Reach::Unreachable, NOW + 31_000);
        assert_eq!(c.gate(NOW + 31_000), Gate::Open { until_ms: NOW + 91_000 }, "doubled");
        assert_eq!(c.gate(NOW + 91_000), Gate::Probe);
        c.record(Reach::Answered, NOW + 91_100);
        assert_eq!(c, Circuit::default(), "an answer closes it");
        // An answer between failures resets the count.
        c.record(Reach::Unreachable, NOW);
        c.record(Reach::Answered, NOW);
        c.record(Reach::Unreachable, NOW);
        assert_eq!(c.gate(NOW), Gate::Send);
    }

    #[test]
    fn timeouts_now_and_then_among_answers_never_open_the_circuit() {
        // A receiver that answers most sends and times out on two in a row now and then.
        let mut c = Circuit::default();
        for _ in 0..8 {
            c.record(Reach::Answered, NOW);
        }
        c.record(Reach::Unreachable, NOW);
        c.record(Reach::Unreachable, NOW);
        assert_eq!(c.gate(NOW), Gate::Send, "2 of the last 10 sends failed");
        // It starts to hang: once half of the last 10 failed, in a row, it opens.
        c.record(Reach::Unreachable, NOW);
        c.record(Reach::Unreachable, NOW);
        assert_eq!(c.gate(NOW), Gate::Send, "4 of 10");
        c.record(Reach::Unreachable, NOW + 5);
        assert_eq!(c.gate(NOW + 5), Gate::Open { until_ms: NOW + 30_005 });
        // A thousand sends, two timeouts in a row after every eleven answers, as a flaky
        // receiver: never open.
        let mut c = Circuit::default();
        for i in 0..1_000 {
            let reach = if i % 13 >= 11 {
                Reach::Unreachable
            } else {
                Reach::Answered
            };
            c.record(reach, NOW + i);
            assert_eq!(c.gate(NOW + i), Gate::Send, "send {i}");
        }
    }
}
