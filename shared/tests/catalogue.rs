//! docs/webhooks.md, the webhook catalogue, is generated here from the sample events in events/
//! and the same rule functions the functions run, so its examples cannot drift. The test fails
//! when the file is stale; `UPDATE_DOCS=1 cargo test --test catalogue` rewrites it.

use std::path::PathBuf;

use aws_lambda_events::event::sqs::SqsEvent;
use dataflows_shared::event::{parse_event, EventData, InputEvent};
use dataflows_shared::rules::state::{self as pure, Bucket};
use dataflows_shared::rules::{self, CampaignCounts};
use dataflows_shared::subscription::RateAlert;
use dataflows_shared::trigger::Trigger;
use dataflows_shared::webhook::Webhook;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample(ty: &str) -> InputEvent {
    let text = std::fs::read_to_string(root().join(format!("events/{ty}.json"))).unwrap();
    let event: SqsEvent = serde_json::from_str(&text).unwrap();
    parse_event(event.records[0].body.as_deref().unwrap()).unwrap()
}

/// (trigger, when it fires, the input sample, its data).
fn examples() -> Vec<(Trigger, &'static str, InputEvent, Value)> {
    let mut out = Vec::new();
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
        rules::sms_status_changed(d, Some(dataflows_shared::event::Status::Sent), at(&e)),
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
    let stats = pure::window(&[bucket], minute, 60);
    let rate = stats.delivered as f64 / stats.samples as f64;
    out.push((
        Trigger::DeliveryRateLow,
        "The account's delivery rate (delivered / final outcomes) over `window_minutes` drops below `delivery_rate_low.threshold` with at least `min_samples` outcomes. Fires on the crossing, again only after the rate recovers, and never more often than `cooldown_minutes`. Per subscription.",
        e.clone(),
        pure::delivery_rate_data(rate, &cfg, &stats),
    ));
    let bcfg = RateAlert { threshold: 0.05, ..cfg };
    out.push((
        Trigger::BounceRateHigh,
        "The account's bounce rate (bounced / final outcomes) over the window rises above `bounce_rate_high.threshold`; same crossing, recovery and cooldown rules. Per subscription.",
        e.clone(),
        pure::bounce_rate_data(stats.bounced as f64 / stats.samples as f64, &bcfg, &stats),
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
    out
}

fn render() -> String {
    let mut doc = String::from(
        "# Webhook catalogue\n\n<!-- Generated by shared/tests/catalogue.rs from events/ and the rule functions; do not edit. -->\n\n\
         Every webhook is a `POST` with `content-type: application/json`, signed per Standard Webhooks\n\
         (see [receivers.md](receivers.md)), with this body:\n\n\
         ```text\n{\"type\": \"<trigger>\", \"timestamp\": \"<when it happened>\", \"account_id\": \"...\", \"event_id\": \"<input event id>\", \"data\": {...}}\n```\n\n\
         | trigger | category | input event |\n|---|---|---|\n",
    );
    let examples = examples();
    for (t, _, e, _) in &examples {
        doc.push_str(&format!(
            "| [{t}](#{}) | {} | {} |\n",
            t.as_str().replace(['.', '_'], ""),
            t.category(),
            e.event_type()
        ));
    }
    for (t, when, e, data) in &examples {
        let body: Value = serde_json::from_slice(&Webhook::new(e, *t, data).body).unwrap();
        let pretty = serde_json::to_string_pretty(&json!({
            "type": body["type"], "timestamp": body["timestamp"], "account_id": body["account_id"],
            "event_id": body["event_id"], "data": body["data"],
        }))
        .unwrap();
        doc.push_str(&format!("\n## {t}\n\n{when}\n\n```json\n{pretty}\n```\n"));
    }
    doc
}

#[test]
fn catalogue_covers_all_17_triggers_and_is_current() {
    let examples = examples();
    let mut triggers: Vec<Trigger> = examples.iter().map(|(t, ..)| *t).collect();
    triggers.sort();
    triggers.dedup();
    assert_eq!(triggers.len(), 17);
    let path = root().join("docs/webhooks.md");
    let text = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text,
        "docs/webhooks.md is stale: UPDATE_DOCS=1 cargo test --test catalogue"
    );
}
