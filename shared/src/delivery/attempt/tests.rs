//! The unit tests of [`super`]: every branch, no I/O.

use super::*;
use crate::subscription::{parse_record, ParseOptions};
use serde_json::json;

const NOW: i64 = 1_796_040_000;

fn sub(failing_since: Option<i64>) -> Subscription {
    let mut record = json!({
        "account_id": "acc_1", "subscription_id": "crm", "url": "https://hooks.example.com/in/T0K3N?k=1",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "triggers": ["sms.received"],
    });
    if let Some(since) = failing_since {
        record["failing_since"] = json!(since);
    }
    parse_record(record.as_object().unwrap(), ParseOptions::default()).unwrap()
}

fn job(sub: &Subscription, attempt: u32) -> Job<'_> {
    Job {
        subscription: sub,
        webhook_id: "msg_1".into(),
        trigger: Trigger::SmsReceived,
        event_id: "evt_1",
        body: br#"{"type":"sms.received"}"#,
        attempt,
        first_attempt_at: NOW - 60,
        redrive: false,
        deadline: None,
        held: None,
        audience: Audience::ALL,
    }
}

fn limits() -> Limits {
    Limits {
        policy: RetryPolicy {
            schedule: vec![Duration::from_secs(10), Duration::from_secs(100)],
        },
        auto_disable_after: Duration::from_secs(5 * 86_400),
    }
}

fn seen(failing_since: Option<i64>) -> Seen {
    Seen {
        failing_since,
        progressing: false,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn status(s: u16) -> Result<Delivered, DeliveryError> {
    Err(DeliveryError::FailureStatus {
        status: s,
        body: String::new(),
        retry_after: None,
    })
}

const OK: Result<Delivered, DeliveryError> = Ok(Delivered {
    status: 204,
    latency: Duration::from_millis(42),
});

/// The claim's status and log line, and the effects before and after it.
fn split(c: &Conclusion) -> (Vec<&Effect>, ClaimStatus, &AttemptLog, Vec<&Effect>) {
    let at = c
        .effects
        .iter()
        .position(|e| matches!(e, Effect::FinishClaim { .. }))
        .expect("every attempt finishes its claim");
    let Effect::FinishClaim { status, log } = &c.effects[at] else {
        unreachable!()
    };
    let before = c.effects[..at].iter().collect();
    let after = c.effects[at + 1..].iter().collect();
    (before, *status, log, after)
}

#[test]
fn delivered_finishes_the_claim_and_ends_a_failing_streak() {
    let s = sub(None);
    let c = conclude(&job(&s, 1), &OK, &limits(), seen(s.failing_since), now(), 0.5);
    let (before, status, log, after) = split(&c);
    assert_eq!((status, &c.handled), (ClaimStatus::Delivered, &Handled::Delivered));
    assert!(before.is_empty() && after.is_empty());
    assert_eq!((log.status, log.latency_ms, log.error.as_deref()), (204, 42, None));
    let failing = sub(Some(NOW - 3600));
    let c = conclude(
        &job(&failing, 2),
        &OK,
        &limits(),
        seen(failing.failing_since),
        now(),
        0.5,
    );
    assert_eq!(split(&c).3, [&Effect::ClearFailing]);
}

#[test]
fn a_success_ends_the_streak_this_process_started_whatever_the_cached_record_shows() {
    let cached = sub(None); // loaded before this process marked it failing
    let c = conclude(&job(&cached, 2), &OK, &limits(), seen(Some(NOW - 60)), now(), 0.5);
    assert_eq!(split(&c).3, [&Effect::ClearFailing]);
    // And a streak this process ended is not revived by a stale record on the next failure.
    let stale = sub(Some(NOW - 6 * 86_400));
    let c = conclude(&job(&stale, 1), &status(500), &limits(), seen(None), now(), 0.5);
    assert!(
        matches!(
            split(&c).3.as_slice(),
            [Effect::MarkFailing {
                since: NOW,
                notice: Some(_)
            }]
        ),
        "a new streak, no disable"
    );
}

#[test]
fn a_failure_queues_the_next_attempt_before_the_claim_and_starts_the_streak() {
    let s = sub(None);
    let c = conclude(&job(&s, 1), &status(500), &limits(), seen(s.failing_since), now(), 0.5);
    let (before, status, log, after) = split(&c);
    assert_eq!(status, ClaimStatus::Retrying);
    let [Effect::EnqueueRetry { task, delay }] = before.as_slice() else {
        panic!("the retry message comes before the claim's result: {:?}", c.effects)
    };
    assert_eq!(*delay, Duration::from_secs(10), "unit 0.5: no jitter");
    assert_eq!(
        (task.attempt, task.not_before, task.webhook_id.as_str()),
        (2, NOW + 10, "msg_1")
    );
    assert_eq!(task.body, r#"{"type":"sms.received"}"#, "the same bytes");
    let [Effect::MarkFailing {
        since: NOW,
        notice: Some(notice),
    }] = after.as_slice()
    else {
        panic!("the streak starts, with its subscription.failing: {after:?}")
    };
    assert_eq!(
        (notice.trigger.as_str(), notice.about.as_str()),
        ("subscription.failing", "crm")
    );
    assert_eq!(notice.data["first_failure"]["error"], json!("receiver answered 500"));
    assert!(!after[0].required(), "bookkeeping after the result is best effort");
    assert_eq!(c.handled, Handled::RetryScheduled { delay: *delay });
    assert_eq!((log.status, log.error.as_deref()), (500, Some("receiver answered 500")));
}

#[test]
fn the_last_attempt_dead_letters_with_the_origin_only() {
    let s = sub(Some(NOW - 60));
    let c = conclude(&job(&s, 3), &status(503), &limits(), seen(s.failing_since), now(), 0.5);
    let (before, status, log, after) = split(&c);
    assert_eq!((status, &c.handled), (ClaimStatus::Exhausted, &Handled::DeadLettered));
    let [Effect::DeadLetter(letter)] = before.as_slice() else {
        panic!("the dead letter comes before the claim's result: {:?}", c.effects)
    };
    assert!(before[0].required());
    assert!(
        !Effect::FinishClaim {
            status,
            log: log.clone()
        }
        .required(),
        "a record failed after its send would be sent again"
    );
    assert_eq!(letter.reason, "retry schedule exhausted after 3 attempts");
    assert_eq!(
        letter.url, "https://hooks.example.com",
        "no path or query: they may be credentials"
    );
    assert_eq!(letter.payload, json!({"type": "sms.received"}));
    assert_eq!(letter.last_error, "receiver answered 503");
    let [Effect::Notify(notice)] = after.as_slice() else {
        panic!("the streak is already running and not yet too long; the dead letter is told: {after:?}")
    };
    assert_eq!(notice.trigger, "webhook.dead_lettered");
    assert!(!after[0].required(), "an operational webhook never fails the record");
    assert!(!notice.data.to_string().contains("sms.received\"}"), "not the payload");
}

#[test]
fn a_429_from_a_receiver_that_takes_the_others_retries_on_the_first_step() {
    let s = sub(Some(NOW - 60));
    let throttled = Err(DeliveryError::FailureStatus {
        status: 429,
        body: String::new(),
        retry_after: Some("1".into()),
    });
    let progressing = Seen {
        failing_since: s.failing_since,
        progressing: true,
    };
    let c = conclude(&job(&s, 2), &throttled, &limits(), progressing, now(), 0.5);
    assert_eq!(
        c.verdict,
        Verdict::Retry {
            delay: Duration::from_secs(10)
        },
        "step 1, not step 2"
    );
    // The same 429 from a receiver that takes nothing is a failure like any other.
    let c = conclude(&job(&s, 2), &throttled, &limits(), seen(s.failing_since), now(), 0.5);
    assert_eq!(
        c.verdict,
        Verdict::Retry {
            delay: Duration::from_secs(100)
        }
    );
    // A 500 is never a throttle.
    let c = conclude(&job(&s, 2), &status(500), &limits(), progressing, now(), 0.5);
    assert_eq!(
        c.verdict,
        Verdict::Retry {
            delay: Duration::from_secs(100)
        }
    );
}

#[test]
fn failing_for_too_long_disables_after_the_failure_is_recorded() {
    let s = sub(Some(NOW - 5 * 86_400));
    let c = conclude(&job(&s, 1), &status(500), &limits(), seen(s.failing_since), now(), 0.5);
    let (before, _, _, after) = split(&c);
    assert!(matches!(before.as_slice(), [Effect::EnqueueRetry { .. }]));
    let [Effect::Disable { reason, .. }] = after.as_slice() else {
        panic!("{:?}", c.effects)
    };
    assert!(reason.starts_with("every attempt failed since"), "{reason}");
    assert_eq!(c.handled, Handled::Disabled { dead_lettered: false });
    // The last attempt failing as the subscription is disabled: dead-lettered, and said so.
    let c = conclude(&job(&s, 3), &status(500), &limits(), seen(s.failing_since), now(), 0.5);
    assert!(matches!(split(&c).0.as_slice(), [Effect::DeadLetter(_)]));
    assert_eq!(c.handled, Handled::Disabled { dead_lettered: true });
}

#[test]
fn gone_disables_at_once_without_retry() {
    let s = sub(None);
    let c = conclude(&job(&s, 1), &status(410), &limits(), seen(s.failing_since), now(), 0.5);
    let (before, status, _, after) = split(&c);
    assert_eq!(
        (status, &c.handled),
        (ClaimStatus::Gone, &Handled::Disabled { dead_lettered: false })
    );
    assert!(before.is_empty());
    let [Effect::Disable {
        reason,
        notice: Some(notice),
        ..
    }] = after.as_slice()
    else {
        panic!("{after:?}")
    };
    assert!(reason.contains("410 Gone"));
    assert_eq!(notice.trigger, "subscription.disabled");
    assert_eq!(notice.data["cause"], json!("gone"));
}

#[test]
fn no_notice_is_written_that_nobody_would_receive() {
    let s = sub(None);
    let mut quiet = job(&s, 3);
    quiet.audience = Audience::default();
    let c = conclude(&quiet, &status(500), &limits(), seen(None), now(), 0.5);
    assert!(matches!(
        split(&c).3.as_slice(),
        [Effect::MarkFailing { notice: None, .. }]
    ));
    let c = conclude(&quiet, &status(410), &limits(), seen(None), now(), 0.5);
    assert!(matches!(split(&c).3.as_slice(), [Effect::Disable { notice: None, .. }]));
}

#[test]
fn an_operational_webhook_that_fails_reports_nothing_about_itself() {
    let s = sub(None);
    let mut ops = job(&s, 1);
    ops.trigger = Trigger::SubscriptionFailing;
    let c = conclude(&ops, &status(500), &limits(), seen(None), now(), 0.5);
    assert!(matches!(
        split(&c).3.as_slice(),
        [Effect::MarkFailing { notice: None, .. }]
    ));
    let c = conclude(&ops, &status(410), &limits(), seen(None), now(), 0.5);
    assert!(matches!(split(&c).3.as_slice(), [Effect::Disable { notice: None, .. }]));
    ops.attempt = 3;
    let c = conclude(&ops, &status(500), &limits(), seen(Some(NOW - 60)), now(), 0.5);
    assert!(
        !c.effects.iter().any(|e| matches!(e, Effect::Notify(_))),
        "its dead letter is not reported: {:?}",
        c.effects
    );
}

#[test]
fn a_deferral_keeps_the_attempt_and_waits_out_the_lease_unless_released() {
    let s = sub(None);
    let (task, delay) = deferral(&job(&s, 3), 60, false, NOW);
    assert_eq!(
        (task.attempt, task.not_before, delay),
        (3, NOW + 61, Duration::from_secs(61))
    );
    let (task, delay) = deferral(&job(&s, 3), 60, true, NOW);
    assert_eq!((task.attempt, task.not_before, delay), (3, NOW + 1, RELEASED_DEFERRAL));
}

#[test]
fn a_hold_is_the_same_attempt_marked_as_held_since_it_first_waited() {
    let s = sub(None);
    let now_ms = NOW * 1000;
    let (task, delay) = hold(&job(&s, 3), now_ms + 20_500, Some(now_ms + 23_500), now_ms);
    assert_eq!(
        (task.attempt, delay),
        (3, Duration::from_millis(20_500)),
        "not an attempt"
    );
    assert_eq!(task.not_before, NOW + 20);
    assert_eq!(
        task.held,
        Some(Held {
            since_ms: now_ms,
            slot_ms: Some(now_ms + 23_500),
            redrive: false
        })
    );
    // Held again: it keeps when it first waited, and a redrive stays a redrive.
    let mut again = job(&s, 1);
    again.held = task.held;
    again.redrive = true;
    let (task, delay) = hold(&again, now_ms + 10, None, now_ms + 60_000);
    assert_eq!(delay, Duration::from_secs(1), "at least a second");
    let held = task.held.unwrap();
    assert_eq!((held.since_ms, held.slot_ms, held.redrive), (now_ms, None, true));
}

#[test]
fn a_backlog_longer_than_sqs_allows_is_held_in_legs_never_dropped() {
    // A rate-limited subscription booked 20 minutes ahead: the webhook is held for all of it;
    // SQS takes at most 15 minutes, so not_before chains a second leg (deliver_task).
    let s = sub(None);
    let now_ms = NOW * 1000;
    let far = crate::delivery::pace::plan(
        &crate::delivery::pace::PaceState {
            tat_ms: now_ms + 1_200_000,
            ..Default::default()
        },
        4.5,
        10,
        now_ms,
        Duration::from_secs(14 * 60),
    );
    let crate::delivery::pace::Plan::Hold { until_ms } = far else {
        panic!("{far:?}")
    };
    let (task, delay) = hold(&job(&s, 1), until_ms, None, now_ms);
    assert_eq!((delay, task.not_before), (Duration::from_secs(1_200), NOW + 1_200));
    assert_eq!(
        crate::delivery::retry::sqs_delay(delay),
        900,
        "the first leg; the rest is chained"
    );
    assert_eq!(task.attempt, 1);
}

#[test]
fn an_undeliverable_retry_becomes_a_dead_letter_with_its_reason() {
    let s = sub(None);
    let task = retry_task(&job(&s, 1), 4, NOW);
    let letter = undeliverable(
        &task,
        Some("https://hooks.example.com".into()),
        "subscription disabled".into(),
    );
    assert_eq!((letter.attempts, letter.reason.as_str()), (3, "subscription disabled"));
    assert_eq!(letter.payload, json!({"type": "sms.received"}));
    assert_eq!(
        RetryTask::redrive_of(letter, NOW).body,
        task.body,
        "redriven, the same bytes"
    );
}

#[test]
fn classification() {
    let at = now();
    assert_eq!(classify(&status(410), at), Outcome::Gone);
    assert_eq!(classify(&status(500), at), Outcome::Failed { retry_after: None });
    let asked = Err(DeliveryError::FailureStatus {
        status: 429,
        body: String::new(),
        retry_after: Some("30".into()),
    });
    assert_eq!(
        classify(&asked, at),
        Outcome::Failed {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(
        classify(&Err(DeliveryError::TimedOut(Duration::from_secs(15))), at),
        Outcome::Failed { retry_after: None }
    );
    assert_eq!(classify(&OK, at), Outcome::Delivered);
}
