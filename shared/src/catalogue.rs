//! The catalogue's example of every trigger: the sample input events of events/ (embedded) run
//! through the same rule functions the functions run. docs/webhooks.md is generated from it
//! (shared/tests/suite/catalogue.rs), and `dataflows send-test` sends it.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use crate::event::{parse_event, EventData, InputEvent, Timestamp};
use crate::rules::rates::{self, Bucket};
use crate::rules::{self, CampaignCounts};
use crate::subscription::RateAlert;
use crate::trigger::Trigger;
use crate::webhook::Webhook;

/// One trigger's example: when it fires, what fires it, the webhook's envelope and data.
#[derive(Debug, Clone)]
pub struct Example {
    pub trigger: Trigger,
    pub when: &'static str,
    /// The input event type that fires it, or `delivery` for an operational webhook.
    pub fired_by: String,
    pub event_id: String,
    pub account_id: String,
    pub at: Timestamp,
    pub data: Value,
}

impl Example {
    /// The webhook this example sends.
    pub fn webhook(&self) -> Webhook {
        Webhook::from_parts(self.trigger, &self.event_id, &self.account_id, self.at, &self.data)
    }
}

/// The example of one trigger.
pub fn example(trigger: Trigger) -> Example {
    examples()
        .into_iter()
        .find(|e| e.trigger == trigger)
        .expect("every trigger has an example")
}

fn sample(ty: &str) -> InputEvent {
    let text = match ty {
        "sms.received" => include_str!("../../events/sms.received.json"),
        "sms.status_changed" => include_str!("../../events/sms.status_changed.json"),
        "account.balance_changed" => include_str!("../../events/account.balance_changed.json"),
        "campaign.started" => include_str!("../../events/campaign.started.json"),
        "campaign.completed" => include_str!("../../events/campaign.completed.json"),
        "campaign.failed" => include_str!("../../events/campaign.failed.json"),
        "contact.added" => include_str!("../../events/contact.added.json"),
        "contact.updated" => include_str!("../../events/contact.updated.json"),
        "contact.deleted" => include_str!("../../events/contact.deleted.json"),
        "message.scheduled" => include_str!("../../events/message.scheduled.json"),
        "message.cancelled" => include_str!("../../events/message.cancelled.json"),
        "auto_reply.sent" => include_str!("../../events/auto_reply.sent.json"),
        "sender_id.approved" => include_str!("../../events/sender_id.approved.json"),
        "sender_id.rejected" => include_str!("../../events/sender_id.rejected.json"),
        other => panic!("no sample event {other}"),
    };
    let event: SqsEvent = serde_json::from_str(text).expect("a sample SQS event");
    parse_event(event.records[0].body.as_deref().expect("a body")).expect("a valid sample")
}

/// Every trigger's example, in catalogue order.
pub fn examples() -> Vec<Example> {
    let mut out: Vec<(Trigger, &'static str, InputEvent, Value)> = Vec::new();
    let at = |e: &InputEvent| e.occurred_at;

    let e = sample("sms.received");
    let EventData::SmsReceived(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::SmsReceived,
        "An SMS arrives on one of the account's virtual numbers.",
        e.clone(),
        rules::sms_received(d, at(&e)),
    ));
    out.push((
        Trigger::KeywordMatched,
        "An inbound SMS matches one of the subscription's `keywords` rules (exact, starts_with, contains, regex), or is a reserved compliance keyword (STOP, START, HELP...) when `reserved_keywords` is on. Per subscription.",
        e.clone(),
        rules::keyword_matched(d, "order", "contains", None),
    ));

    let e = sample("sms.status_changed");
    let EventData::SmsStatusChanged(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::SmsStatusChanged,
        "A delivery receipt changes a message's status. Duplicates, out-of-order receipts and a final status regressing emit nothing; `previous_status` is the status it replaces (null for the first).",
        e.clone(),
        rules::sms_status_changed(d, Some(crate::event::Status::Sent), at(&e)),
    ));
    let minute = e.occurred_at.0.timestamp() / 60;
    let bucket = Bucket {
        minute,
        delivered: 57,
        bounced: 9,
        failed: 2,
        campaigns: [("cmp_spring_sale".to_string(), (68, 57))].into(),
        bounce_codes: [("30003".to_string(), 7), ("30005".to_string(), 2)].into(),
        bounced_numbers: vec!["+14155550123".into(), "+14155550188".into()],
        ..Default::default()
    };
    let cfg = RateAlert {
        threshold: 0.9,
        window_minutes: 60,
        min_samples: 50,
        cooldown_minutes: 60,
    };
    let stats = rates::window(&[bucket], minute, 60);
    let rate = stats.delivered as f64 / stats.samples as f64;
    out.push((
        Trigger::DeliveryRateLow,
        "The account's delivery rate (delivered / final outcomes) over `window_minutes` drops below `delivery_rate_low.threshold` with at least `min_samples` outcomes. Fires on the crossing, again only after the rate recovers, and never more often than `cooldown_minutes`. Per subscription.",
        e.clone(),
        rates::delivery_rate_data(rate, &cfg, &stats),
    ));
    let bcfg = RateAlert { threshold: 0.05, ..cfg };
    out.push((
        Trigger::BounceRateHigh,
        "The account's bounce rate (bounced / final outcomes) over the window rises above `bounce_rate_high.threshold`; same crossing, recovery and cooldown rules. Per subscription.",
        e.clone(),
        rates::bounce_rate_data(stats.bounced as f64 / stats.samples as f64, &bcfg, &stats),
    ));

    let e = sample("account.balance_changed");
    let EventData::BalanceChanged(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::BalanceLow,
        "The balance drops below `balance_low.threshold` while armed; fires once, then re-arms when the balance is back at or above `rearm_above`. Older balance events are ignored. Per subscription.",
        e.clone(),
        rules::balance_low(d, 100.0, &e.account_id),
    ));

    let e = sample("campaign.started");
    let EventData::CampaignStarted(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::CampaignStarted,
        "A bulk campaign begins sending.",
        e.clone(),
        rules::campaign_started(d, at(&e)),
    ));
    let e = sample("campaign.completed");
    let EventData::CampaignCompleted(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::CampaignCompleted,
        "A campaign finishes. Figures the platform omits are filled from per-campaign counters of final delivery receipts.",
        e.clone(),
        rules::campaign_completed(d, CampaignCounts::default(), at(&e)),
    ));
    let e = sample("campaign.failed");
    let EventData::CampaignFailed(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::CampaignFailed,
        "A campaign stops on an error.",
        e.clone(),
        rules::campaign_failed(d),
    ));

    let added = sample("contact.added");
    let EventData::ContactAdded(a) = &added.data else {
        unreachable!()
    };
    out.push((
        Trigger::ContactAdded,
        "A contact is added (its snapshot is kept for contact.updated and contact.deleted).",
        added.clone(),
        rules::contact_added(a),
    ));
    let e = sample("contact.updated");
    let EventData::ContactUpdated(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::ContactUpdated,
        "A contact changes: the fields that changed (dotted paths for nested fields), their previous and current values, from the stored snapshot. Without a snapshot every field is reported as new.",
        e.clone(),
        rules::contact_updated(d, &a.contact),
    ));
    let e = sample("contact.deleted");
    let EventData::ContactDeleted(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::ContactDeleted,
        "A contact is removed; `contact` is the last known snapshot (null if none).",
        e.clone(),
        rules::contact_deleted(d, Some(&a.contact), at(&e)),
    ));

    let sched = sample("message.scheduled");
    let EventData::MessageScheduled(s) = &sched.data else {
        unreachable!()
    };
    out.push((
        Trigger::MessageScheduled,
        "A message is scheduled (kept for message.cancelled).",
        sched.clone(),
        rules::message_scheduled(s),
    ));
    let e = sample("message.cancelled");
    let EventData::MessageCancelled(d) = &e.data else {
        unreachable!()
    };
    out.push((Trigger::MessageCancelled, "A scheduled message is cancelled; `original_schedule` comes from the stored message.scheduled (null if unknown).", e.clone(), rules::message_cancelled(d, Some(s))));
    let e = sample("auto_reply.sent");
    let EventData::AutoReplySent(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::AutoReplySent,
        "The platform sent an automatic reply to an inbound message.",
        e.clone(),
        rules::auto_reply_sent(d),
    ));

    let e = sample("sender_id.approved");
    let EventData::SenderIdApproved(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::SenderIdApproved,
        "A sender ID is approved.",
        e.clone(),
        rules::sender_id_approved(d, at(&e)),
    ));
    let e = sample("sender_id.rejected");
    let EventData::SenderIdRejected(d) = &e.data else {
        unreachable!()
    };
    out.push((
        Trigger::SenderIdRejected,
        "A sender ID is rejected.",
        e.clone(),
        rules::sender_id_rejected(d),
    ));
    let mut examples: Vec<Example> = out
        .into_iter()
        .map(|(trigger, when, event, data)| Example {
            trigger,
            when,
            fired_by: event.event_type().as_str().to_string(),
            event_id: event.id,
            account_id: event.account_id,
            at: event.occurred_at,
            data,
        })
        .collect();
    examples.extend(operational_examples());
    examples
}

/// The three operational webhooks, built by the same notice builders delivery uses, about a
/// subscription `crm` of the sample account whose receiver fails.
fn operational_examples() -> Vec<Example> {
    use crate::delivery::notice::{self, DisableCause};
    use crate::delivery::task::{DeadLetter, Notice};
    use crate::store::claims::AttemptLog;
    use crate::subscription::{parse_record, ParseOptions};

    let record = serde_json::json!({"account_id": "acc_demo", "subscription_id": "crm",
        "url": "https://crm.example.com/webhooks/dataflows", "triggers": ["contact.added"],
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]});
    let sub =
        parse_record(record.as_object().expect("an object"), ParseOptions::default()).expect("a valid example record");
    let since = 1_796_040_000; // 2026-11-30T12:00:00Z
    let webhook_id: crate::webhook::WebhookId = "msg_2b1f0c5e9a7d4e3f8c6b5a4d3e2f1a0b".into();
    let failed = notice::Failed {
        subscription: &sub,
        webhook_id: &webhook_id,
        trigger: Trigger::ContactAdded,
    };
    let log = AttemptLog {
        number: 1,
        at: since,
        status: 503,
        latency_ms: 212,
        error: Some("receiver answered 503".into()),
    };
    let five_days = std::time::Duration::from_secs(5 * 86_400);
    let disabled_at = since + 5 * 86_400 + 120;
    let letter = DeadLetter {
        dataflows_dead_letter: 1,
        reason: "retry schedule exhausted after 8 attempts".into(),
        webhook_id: webhook_id.clone(),
        trigger: "contact.added".into(),
        account_id: "acc_demo".into(),
        subscription_id: "crm".into(),
        url: "https://crm.example.com".into(),
        event_id: "evt_contact_added_001".into(),
        attempts: 8,
        first_attempt_at: since,
        last_error: "receiver answered 503".into(),
        payload: Value::Null,
        bound: None,
        seal: String::new(),
    };
    let example = |n: Notice, when: &'static str| Example {
        trigger: n.trigger.parse().expect("an operational trigger"),
        when,
        fired_by: "delivery".into(),
        event_id: n.notice_id,
        account_id: n.account_id,
        at: Timestamp(chrono::DateTime::from_timestamp(n.at, 0).unwrap_or_default()),
        data: n.data,
    };
    vec![
        example(
            notice::failing(
                failed,
                &log,
                since,
                five_days,
            ),
            "Operational. A subscription's failing streak begins: an attempt failed and none had since its last success. Once per streak. Sent to the account's other subscriptions that name it, never to the failing one.",
        ),
        example(
            notice::disabled(
                &sub,
                DisableCause::Failing,
                &format!(
                    "every attempt failed since {} (auto-disable after 120 hours)",
                    crate::delivery::attempt::rfc3339(since)
                ),
                disabled_at,
            ),
            "Operational. A subscription is disabled: every attempt failed for the auto-disable period (`cause: failing`), or its receiver answered 410 Gone (`cause: gone`). Once per disable; says how to enable it again.",
        ),
        example(
            notice::dead_lettered(&letter, since + 26 * 3600),
            "Operational. A webhook is given up on: its retry schedule ran out, the SSRF guard refused its target, or its subscription was disabled or changed before a retry. Carries the ids, never the payload.",
        ),
    ]
}
