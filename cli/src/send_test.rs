//! `dataflows send-test`: the catalogue's example of a trigger, signed, to one subscription.

use serde_json::{json, Value};

use crate::common::*;
use crate::target;
use dataflows_shared::catalogue;
use dataflows_shared::delivery::client::{build_client, send, DeliveryError};
use dataflows_shared::subscription::{parse_record, ParseOptions, Subscription, Triggers};
use dataflows_shared::trigger::Trigger;

pub(crate) fn pick_trigger(sub: &Subscription, asked: Option<&str>) -> Result<Trigger, String> {
    if let Some(name) = asked {
        return name
            .parse::<Trigger>()
            .map_err(|_| format!("{name} is not a trigger (see docs/webhooks.md)"));
    }
    match &sub.triggers {
        Triggers::All => Ok(Trigger::SmsReceived),
        Triggers::Only(list) => list
            .first()
            .copied()
            .ok_or_else(|| "the subscription wants no trigger".into()),
    }
}

pub(crate) async fn send_test(t: &target::Target, account: &str, id: &str, trigger: Option<&str>) -> Outcome {
    let record = get_record(t, account, id)
        .await?
        .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
    let opts = ParseOptions {
        allow_private_targets: t.local,
    };
    let sub = parse_record(&record, opts).map_err(|e| (Failure::Check(e.to_string()), Value::Null))?;
    let trigger = pick_trigger(&sub, trigger).map_err(|e| (Failure::Check(e), Value::Null))?;
    let mut example = catalogue::example(trigger);
    example.account_id = sub.account_id.clone();
    example.event_id = format!("evt_test_{:016x}", rand::random::<u64>());
    let webhook = example.webhook();
    let webhook_id = webhook.id_for(&sub.subscription_id);
    let client = build_client(t.local).map_err(env("building the HTTP client"))?;
    let now = chrono::Utc::now().timestamp();
    let sent = send(&client, &sub, &webhook_id, now, &webhook.body, t.local).await;
    let (ok, status, latency_ms, detail) = match &sent {
        Ok(d) => (true, Some(d.status), Some(d.latency.as_millis() as u64), String::new()),
        Err(DeliveryError::FailureStatus { status, body, .. }) => {
            (false, Some(*status), None, body.chars().take(200).collect())
        }
        Err(e) => (false, None, None, e.to_string()),
    };
    let out = json!({
        "subscription": format!("{}/{}", sub.account_id, sub.subscription_id),
        "trigger": trigger.as_str(), "webhook_id": webhook_id, "status": status,
        "latency_ms": latency_ms, "ok": ok, "detail": detail,
    });
    if ok {
        Ok(out)
    } else {
        Err((Failure::Check("the receiver did not answer 2xx".into()), out))
    }
}

/// The human form of a test send.
pub(crate) fn print(out: &Value) {
    println!(
        "{} {} -> {}  status {}  {}",
        out["subscription"].as_str().unwrap_or(""),
        out["trigger"].as_str().unwrap_or(""),
        if out["ok"] == true { "ok" } else { "FAILED" },
        out["status"],
        out["latency_ms"]
            .as_u64()
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_default()
    );
    if let Some(detail) = out["detail"].as_str().filter(|d| !d.is_empty()) {
        println!("  {detail}");
    }
}
