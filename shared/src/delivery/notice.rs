//! Operational webhooks: what delivery tells an account about its own subscriptions
//! (docs/webhooks.md, "Operational webhooks"). Pure builders of the [`Notice`] messages; the
//! attempt's conclusion ([`super::attempt::conclude`]) decides when one is due, the engine writes
//! it on the category queue, and the function that reads it back sends it, signed, to the
//! account's other subscriptions that name its trigger, like any webhook.
//!
//! The rules that keep them quiet:
//! - never about an operational webhook: one that fails produces none, so there is no loop;
//! - never to the subscription they are about;
//! - `subscription.failing` once per streak and `subscription.disabled` once per disable: only
//!   the write that started the streak (or disabled the record) sends one;
//! - each has an id stable per fact, so a notice written twice (a retried write, a redelivered
//!   record) is claimed, and sent, once.

use std::time::Duration;

use chrono::DateTime;

use crate::delivery::task::{DeadLetter, Notice};
use crate::event::Timestamp;
use crate::payload::{
    to_data, FirstFailure, SubscriptionDisabledData, SubscriptionFailingData, WebhookDeadLetteredData,
};
use crate::store::claims::AttemptLog;
use crate::subscription::Subscription;
use crate::trigger::Trigger;
use crate::webhook::WebhookId;

/// What a disabled subscription's owner is told to do.
pub const HOW_TO_ENABLE: &str = "Fix the receiver, then enable the subscription again \
(`dataflows subscription enable --account <account_id> --id <subscription_id>`, or set the record's \
`enabled` to true), and redrive the webhooks it dead-lettered meanwhile \
(`dataflows dead-letters redrive --subscription <subscription_id>`).";

fn timestamp(unix: i64) -> Timestamp {
    Timestamp(DateTime::from_timestamp(unix, 0).unwrap_or_default())
}

/// `ntc_` and 32 hex digits of SHA-256 over the trigger and the parts that identify the fact.
fn notice_id(trigger: Trigger, parts: &[&str]) -> String {
    let all: Vec<&str> = std::iter::once(trigger.as_str()).chain(parts.iter().copied()).collect();
    crate::webhook::hashed_id("ntc_", &all)
}

fn notice(trigger: Trigger, account_id: &str, about: &str, id: String, at: i64, data: serde_json::Value) -> Notice {
    Notice {
        dataflows_notice: 1,
        trigger: trigger.as_str().to_string(),
        account_id: account_id.to_string(),
        about: about.to_string(),
        notice_id: id,
        at,
        data,
        bound: None,
        seal: String::new(),
    }
}

/// The origin of a subscription's URL: its path and query may hold a credential.
fn origin(sub: &Subscription) -> String {
    sub.url.origin().ascii_serialization()
}

/// The attempt that started a failing streak: which webhook, of which trigger, to which
/// subscription.
#[derive(Debug, Clone, Copy)]
pub struct Failed<'a> {
    pub subscription: &'a Subscription,
    pub webhook_id: &'a WebhookId,
    pub trigger: Trigger,
}

/// `subscription.failing`: the streak of `job`'s subscription started at `since` with the
/// attempt `log`.
pub fn failing(job: Failed<'_>, log: &AttemptLog, since: i64, auto_disable_after: Duration) -> Notice {
    let sub = job.subscription;
    let since_text = since.to_string();
    let data = SubscriptionFailingData {
        subscription_id: sub.subscription_id.clone(),
        url: origin(sub),
        failing_since: timestamp(since),
        first_failure: FirstFailure {
            webhook_id: job.webhook_id.to_string(),
            trigger: job.trigger.to_string(),
            status: (log.status != 0).then_some(log.status),
            error: log.error.clone().unwrap_or_default(),
        },
        auto_disable_at: timestamp(since + auto_disable_after.as_secs() as i64),
    };
    let id = notice_id(
        Trigger::SubscriptionFailing,
        &[&sub.account_id, &sub.subscription_id, &since_text],
    );
    notice(
        Trigger::SubscriptionFailing,
        &sub.account_id,
        &sub.subscription_id,
        id,
        since,
        to_data(data),
    )
}

/// Why a subscription was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableCause {
    /// Every attempt failed for the auto-disable period.
    Failing,
    /// The receiver answered 410 Gone.
    Gone,
}

impl DisableCause {
    pub fn as_str(self) -> &'static str {
        match self {
            DisableCause::Failing => "failing",
            DisableCause::Gone => "gone",
        }
    }
}

/// `subscription.disabled`: `sub` was disabled at `at` for `reason`.
pub fn disabled(sub: &Subscription, cause: DisableCause, reason: &str, at: i64) -> Notice {
    let data = SubscriptionDisabledData {
        subscription_id: sub.subscription_id.clone(),
        url: origin(sub),
        cause: cause.as_str().to_string(),
        reason: reason.to_string(),
        disabled_at: timestamp(at),
        how_to_enable: HOW_TO_ENABLE.to_string(),
    };
    let id = notice_id(
        Trigger::SubscriptionDisabled,
        &[&sub.account_id, &sub.subscription_id, &at.to_string()],
    );
    notice(
        Trigger::SubscriptionDisabled,
        &sub.account_id,
        &sub.subscription_id,
        id,
        at,
        to_data(data),
    )
}

/// `webhook.dead_lettered`: `letter` was put on the DLQ at `at`. Its payload is not copied.
pub fn dead_lettered(letter: &DeadLetter, at: i64) -> Notice {
    let data = WebhookDeadLetteredData {
        webhook_id: letter.webhook_id.to_string(),
        subscription_id: letter.subscription_id.clone(),
        trigger: letter.trigger.clone(),
        event_id: letter.event_id.clone(),
        attempts: letter.attempts,
        first_attempt_at: timestamp(letter.first_attempt_at),
        last_error: letter.last_error.clone(),
        reason: letter.reason.clone(),
    };
    // A redriven webhook that dies again is a new fact: its schedule restarted.
    let id = notice_id(
        Trigger::WebhookDeadLettered,
        &[
            letter.webhook_id.as_str(),
            &letter.first_attempt_at.to_string(),
            &letter.attempts.to_string(),
        ],
    );
    notice(
        Trigger::WebhookDeadLettered,
        &letter.account_id,
        &letter.subscription_id,
        id,
        at,
        to_data(data),
    )
}

/// Which operational webhooks about one subscription someone would receive: the account's other
/// enabled, valid subscriptions that name them. Nothing is written for a notice nobody asked for
/// (most accounts name none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audience {
    failing: bool,
    disabled: bool,
    dead_lettered: bool,
}

impl Audience {
    /// Everyone wants everything (tests, examples).
    pub const ALL: Audience = Audience {
        failing: true,
        disabled: true,
        dead_lettered: true,
    };

    /// Who among `subscriptions` (the account's valid records) would hear about `about`.
    pub fn of(subscriptions: &[Subscription], about: &str) -> Self {
        let wants = |t: Trigger| subscriptions.iter().any(|s| s.subscription_id != about && s.wants(t));
        Audience {
            failing: wants(Trigger::SubscriptionFailing),
            disabled: wants(Trigger::SubscriptionDisabled),
            dead_lettered: wants(Trigger::WebhookDeadLettered),
        }
    }

    pub fn wants(self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::SubscriptionFailing => self.failing,
            Trigger::SubscriptionDisabled => self.disabled,
            Trigger::WebhookDeadLettered => self.dead_lettered,
            _ => false,
        }
    }
}

/// Whether a webhook of `trigger` may cause an operational webhook: never an operational one.
pub fn reported(trigger: &str) -> bool {
    trigger.parse::<Trigger>().is_ok_and(|t| !t.is_operational())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{parse_record, ParseOptions};
    use serde_json::json;

    fn sub() -> Subscription {
        let record = json!({"account_id": "acc_1", "subscription_id": "crm",
            "url": "https://crm.example.com/hooks?token=s3cret", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "triggers": ["sms.received"]});
        parse_record(record.as_object().unwrap(), ParseOptions::default()).unwrap()
    }

    const ID: &str = "msg_1";

    fn job<'a>(sub: &'a Subscription, id: &'a WebhookId) -> Failed<'a> {
        Failed {
            subscription: sub,
            webhook_id: id,
            trigger: Trigger::SmsReceived,
        }
    }

    #[test]
    fn failing_names_the_first_error_and_when_the_disable_comes() {
        let s = sub();
        let log = AttemptLog {
            number: 1,
            at: 1_764_500_000,
            status: 503,
            latency_ms: 10,
            error: Some("receiver answered 503".into()),
        };
        let n = failing(
            job(&s, &WebhookId::from(ID)),
            &log,
            1_764_500_000,
            Duration::from_secs(5 * 86_400),
        );
        assert_eq!(
            (n.trigger.as_str(), n.about.as_str(), n.account_id.as_str()),
            ("subscription.failing", "crm", "acc_1")
        );
        assert_eq!(
            n.data,
            json!({"subscription_id": "crm", "url": "https://crm.example.com",
                   "failing_since": "2025-11-30T10:53:20Z",
                   "first_failure": {"webhook_id": "msg_1", "trigger": "sms.received", "status": 503,
                                     "error": "receiver answered 503"},
                   "auto_disable_at": "2025-12-05T10:53:20Z"})
        );
        assert!(!n.data.to_string().contains("s3cret"), "never the URL's query");
        let again = failing(
            job(&s, &WebhookId::from(ID)),
            &log,
            1_764_500_000,
            Duration::from_secs(5 * 86_400),
        );
        assert_eq!(n.notice_id, again.notice_id, "one id per streak");
        let later = failing(
            job(&s, &WebhookId::from(ID)),
            &log,
            1_764_500_001,
            Duration::from_secs(5 * 86_400),
        );
        assert_ne!(n.notice_id, later.notice_id, "a new streak is a new fact");
        let no_answer = AttemptLog { status: 0, ..log };
        let n = failing(job(&s, &WebhookId::from(ID)), &no_answer, 1, Duration::from_secs(60));
        assert_eq!(n.data["first_failure"]["status"], json!(null));
    }

    #[test]
    fn dead_lettered_never_carries_the_payload() {
        let letter = DeadLetter {
            dataflows_dead_letter: 1,
            reason: "retry schedule exhausted after 8 attempts".into(),
            webhook_id: WebhookId::from("msg_9"),
            trigger: "contact.added".into(),
            account_id: "acc_1".into(),
            subscription_id: "crm".into(),
            url: "https://crm.example.com".into(),
            event_id: "evt_9".into(),
            attempts: 8,
            first_attempt_at: 1_764_500_000,
            last_error: "timed out".into(),
            payload: json!({"data": {"contact": {"email": "private@example.com"}}}),
            bound: None,
            seal: String::new(),
        };
        let n = dead_lettered(&letter, 1_764_600_000);
        assert!(!n.data.to_string().contains("private@example.com"));
        assert_eq!(n.data["webhook_id"], json!("msg_9"));
        assert_eq!(n.data["attempts"], json!(8));
        assert_eq!(n.about, "crm");
        let redriven = DeadLetter {
            first_attempt_at: 1_764_700_000,
            ..letter.clone()
        };
        assert_ne!(n.notice_id, dead_lettered(&redriven, 1_764_800_000).notice_id);
        assert_eq!(n.notice_id, dead_lettered(&letter, 1_764_600_999).notice_id);
    }

    #[test]
    fn the_audience_is_the_accounts_other_subscriptions_that_name_the_trigger() {
        let record = |id: &str, triggers: serde_json::Value| {
            let r = json!({"account_id": "acc_1", "subscription_id": id, "url": "https://x.example.com",
                           "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "triggers": triggers});
            parse_record(r.as_object().unwrap(), ParseOptions::default()).unwrap()
        };
        let subs = vec![
            record("crm", json!(["sms.received", "subscription.failing"])),
            record("all", json!("*")),
            record("ops", json!(["webhook.dead_lettered"])),
        ];
        let about_crm = Audience::of(&subs, "crm");
        assert!(about_crm.wants(Trigger::WebhookDeadLettered));
        assert!(
            !about_crm.wants(Trigger::SubscriptionFailing),
            "crm is the only one naming it"
        );
        assert!(
            !about_crm.wants(Trigger::SubscriptionDisabled),
            "\"*\" is not the operational webhooks"
        );
        let about_ops = Audience::of(&subs, "ops");
        assert!(about_ops.wants(Trigger::SubscriptionFailing));
        assert!(
            !about_ops.wants(Trigger::WebhookDeadLettered),
            "never told about itself"
        );
        assert_eq!(Audience::of(&subs[1..2], "x"), Audience::default());
        assert!(!Audience::ALL.wants(Trigger::SmsReceived));
    }

    #[test]
    fn operational_webhooks_report_nothing_about_themselves() {
        assert!(reported("sms.received"));
        assert!(!reported("subscription.failing"));
        assert!(!reported("webhook.dead_lettered"));
        assert!(!reported("subscription.disabled"));
        assert!(!reported("no.such.trigger"));
    }
}
