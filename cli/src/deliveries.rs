//! `dataflows deliveries`: one webhook's history from its claim, an account's from the logs.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

use crate::common::*;
use crate::{history, target};
use dataflows_shared::store::attributes::item_to_json;

/// One webhook's history from its claim item.
pub(crate) async fn claim_history(t: &target::Target, webhook_id: &str) -> Outcome {
    let table = t.output("StateTableName").map_err(|e| (Failure::Env(e), Value::Null))?;
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("webhook#{webhook_id}")))
        .key("sk", AttributeValue::S("delivery".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the claim"))?;
    let Some(item) = got.item else {
        return Err((
            Failure::Check(format!("no claim for {webhook_id} (never sent, or older than 16 days)")),
            Value::Null,
        ));
    };
    let claim = item_to_json(&item);
    let field = |k: &str| claim.get(k).cloned().unwrap_or(Value::Null);
    Ok(json!({"deliveries": [{
        "webhook_id": webhook_id, "status": field("status"), "account_id": field("account_id"),
        "subscription_id": field("subscription_id"), "trigger": field("trigger"), "event_id": field("event_id"),
        "attempts": field("attempts"),
    }]}))
}

/// Where an account's history is read from.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum LogSource {
    /// The local stack's log files for the local stack, CloudWatch Logs Insights for --stack.
    Auto,
    /// The local stack's log files (.local/logs, or --logs DIR).
    Files,
    /// CloudWatch Logs Insights over the six functions' log groups (/aws/lambda/<function>).
    Cloudwatch,
}

pub(crate) async fn deliveries(
    t: &target::Target,
    account: &str,
    subscription: Option<&str>,
    since: &str,
    source: LogSource,
    logs: Option<&std::path::Path>,
) -> Outcome {
    let span = dataflows_shared::config::parse_schedule(since)
        .ok()
        .and_then(|d| (d.len() == 1).then(|| d[0]))
        .ok_or_else(|| {
            (
                Failure::Check(format!("--since {since:?} is not a duration like 2h")),
                Value::Null,
            )
        })?;
    let to = chrono::Utc::now();
    let q = history::Query {
        account,
        subscription,
        from: to - chrono::Duration::from_std(span).unwrap_or_default(),
        to,
    };
    let files = match source {
        LogSource::Files => true,
        LogSource::Cloudwatch => false,
        LogSource::Auto => t.local || logs.is_some(),
    };
    let mut out = json!({"account_id": account,
                         "since": q.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    if files {
        let dir = logs
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| t.local_logs.clone());
        out["source"] = json!(dir.display().to_string());
        out["deliveries"] = json!(history::from_files(&dir, CATEGORIES, &q).map_err(env("reading the logs"))?);
        return Ok(out);
    }
    let log_groups = CATEGORIES
        .iter()
        .map(|c| {
            t.output(&format!("{}FunctionName", capitalized(c)))
                .map(|name| format!("/aws/lambda/{name}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (found, truncated) = history::from_insights(
        &aws_sdk_cloudwatchlogs::Client::new(&t.config),
        &log_groups,
        &q,
        |lines| {
            if interactive {
                eprint!("\rread {lines} log lines");
            }
        },
    )
    .await
    .map_err(env("querying CloudWatch Logs"))?;
    if interactive {
        eprintln!();
    }
    if truncated {
        eprintln!(
            "dataflows: over {} delivery lines in one second: some attempts are missing; narrow with --subscription",
            history::INSIGHTS_ROW_LIMIT
        );
    }
    out["source"] = json!(log_groups);
    out["truncated"] = json!(truncated);
    out["deliveries"] = json!(found);
    Ok(out)
}

/// The human form of a delivery history.
pub(crate) fn print(out: &Value) {
    let list = out["deliveries"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<38} {:<16} {:<22} {:<14} {:>8}  last error",
        "webhook-id", "subscription", "trigger", "status", "attempts"
    );
    for d in &list {
        let text = |k: &str| d[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<38} {:<16} {:<22} {:<14} {:>8}  {}",
            text("webhook_id"),
            text("subscription_id"),
            text("trigger"),
            text("status"),
            d["attempts"].as_array().map_or(0, Vec::len),
            d["last_error"].as_str().unwrap_or("")
        );
    }
    println!("{} webhook(s)", list.len());
}
