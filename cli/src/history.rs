//! An account's delivery history, read from the functions' structured log lines: the local
//! stack's log files, or CloudWatch Logs Insights over the deployed functions' log groups. Both
//! sources go through the same line parser and the same filter, so they cannot disagree.

use std::path::Path;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::QueryStatus;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What to look for.
pub struct Query<'a> {
    pub account: &'a str,
    pub subscription: Option<&'a str>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The message of each delivery log line, and what it says about the attempt.
fn outcome_of(message: &str) -> Option<&'static str> {
    Some(match message {
        "webhook delivered" => "delivered",
        "webhook attempt failed" => "failed",
        "webhook dead-lettered" => "dead-lettered",
        "webhook deferred: the invocation's deadline is too close to send it" => "deferred",
        _ => return None,
    })
}

/// The delivery log lines among `lines` (JSON objects, one per line; anything else is skipped),
/// grouped by webhook-id in the order they were written.
pub fn from_lines<'a>(lines: impl Iterator<Item = &'a str>, q: &Query) -> Vec<Value> {
    let mut by_id: std::collections::BTreeMap<String, Value> = Default::default();
    for line in lines {
        let Ok(Value::Object(l)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let text = |k: &str| l.get(k).and_then(Value::as_str);
        let Some(outcome) = text("message").and_then(outcome_of) else {
            continue;
        };
        if text("account_id") != Some(q.account) || q.subscription.is_some_and(|s| text("subscription_id") != Some(s)) {
            continue;
        }
        let Some(at) = text("timestamp").and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
            continue;
        };
        if at < q.from || at > q.to {
            continue;
        }
        let Some(id) = text("webhook_id") else { continue };
        let entry = by_id.entry(id.to_string()).or_insert_with(|| {
            json!({"webhook_id": id, "account_id": q.account, "subscription_id": text("subscription_id"),
                   "trigger": text("trigger"), "event_id": text("event_id"), "attempts": [], "status": Value::Null,
                   "last_error": Value::Null, "first_at": text("timestamp")})
        });
        if outcome != "dead-lettered" {
            entry["attempts"].as_array_mut().expect("a list").push(json!({
                "at": text("timestamp"), "attempt": l.get("attempt"), "outcome": outcome,
                "status": l.get("status"), "latency_ms": l.get("latency_ms"), "error": l.get("error"),
            }));
        }
        if let Some(e) = text("error") {
            entry["last_error"] = Value::String(e.to_string());
        }
        entry["status"] = Value::String(outcome.to_string());
    }
    by_id.into_values().collect()
}

/// The local stack's log files (`<category>.log` in `dir`). Errors when there are none.
pub fn from_files(dir: &Path, categories: &[&str], q: &Query) -> Result<Vec<Value>, String> {
    let mut text = String::new();
    for category in categories {
        if let Ok(content) = std::fs::read_to_string(dir.join(format!("{category}.log"))) {
            text.push_str(&content);
            text.push('\n');
        }
    }
    if text.trim().is_empty() {
        return Err(format!("no function logs in {}", dir.display()));
    }
    Ok(from_lines(text.lines(), q))
}

/// The most rows one Logs Insights query returns
/// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/CWL_QuerySyntax-Limit.html).
pub const INSIGHTS_ROW_LIMIT: usize = 10_000;

/// The Logs Insights query for `q`'s delivery lines. The values are matched again on the client
/// (`from_lines`), so a value that cannot be written as a query literal is simply left to that.
pub fn insights_query(q: &Query) -> String {
    let literal = |v: &str| (!v.contains(['"', '\\', '\n'])).then(|| format!("\"{v}\""));
    let mut filter = vec!["ispresent(webhook_id)".to_string()];
    if let Some(account) = literal(q.account) {
        filter.push(format!("account_id = {account}"));
    }
    if let Some(sub) = q.subscription.and_then(literal) {
        filter.push(format!("subscription_id = {sub}"));
    }
    format!(
        "fields @timestamp, @message | filter {} | sort @timestamp asc | limit {INSIGHTS_ROW_LIMIT}",
        filter.join(" and ")
    )
}

/// Halves of a window that returned a full page, so that each half is queried again.
fn split(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<[(DateTime<Utc>, DateTime<Utc>); 2]> {
    // Logs Insights takes whole seconds: the halves meet on one, and a window that cannot be
    // halved is as narrow as it gets.
    let mid = DateTime::from_timestamp((from + (to - from) / 2).timestamp(), 0)?;
    (mid.timestamp() > from.timestamp() && mid.timestamp() < to.timestamp()).then_some([(from, mid), (mid, to)])
}

/// CloudWatch Logs Insights over `log_groups`. A window whose query returns the row limit is
/// split in halves and each queried again, so a busy account's history is not silently cut;
/// `truncated` says whether a one-second window still hit the limit.
pub async fn from_insights(
    logs: &aws_sdk_cloudwatchlogs::Client,
    log_groups: &[String],
    q: &Query<'_>,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Value>, bool), String> {
    // Windows meet on a whole second, which both may include: a line is kept once.
    let mut seen = std::collections::HashSet::new();
    let mut messages: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut windows = vec![(q.from, q.to)];
    let query = insights_query(q);
    while let Some((from, to)) = windows.pop() {
        let rows = run_query(logs, log_groups, &query, from, to).await?;
        if rows.len() >= INSIGHTS_ROW_LIMIT {
            if let Some([early, late]) = split(from, to) {
                windows.push(late);
                windows.push(early);
                continue;
            }
            truncated = true;
        }
        messages.extend(rows.into_iter().filter(|line| seen.insert(line.clone())));
        progress(messages.len());
    }
    Ok((from_lines(messages.iter().map(String::as_str), q), truncated))
}

/// One query, waited for: the `@message` of each row.
async fn run_query(
    logs: &aws_sdk_cloudwatchlogs::Client,
    log_groups: &[String],
    query: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let started = logs
        .start_query()
        .set_log_group_names(Some(log_groups.to_vec()))
        // Whole seconds: the end rounded up, so that the last fraction of a second is included.
        .start_time(from.timestamp())
        .end_time(to.timestamp() + i64::from(to.timestamp_subsec_nanos() > 0))
        .query_string(query)
        .send()
        .await
        .map_err(|e| {
            format!(
                "starting a Logs Insights query: {}",
                aws_sdk_cloudwatchlogs::Error::from(e)
            )
        })?;
    let id = started
        .query_id()
        .ok_or("Logs Insights returned no query id")?
        .to_string();
    let mut wait = Duration::from_millis(200);
    loop {
        let got = logs.get_query_results().query_id(&id).send().await.map_err(|e| {
            format!(
                "reading Logs Insights results: {}",
                aws_sdk_cloudwatchlogs::Error::from(e)
            )
        })?;
        match got.status() {
            Some(QueryStatus::Complete) => {
                return Ok(got
                    .results()
                    .iter()
                    .filter_map(|row| {
                        row.iter()
                            .find(|f| f.field() == Some("@message"))
                            .and_then(|f| f.value())
                            .map(str::to_string)
                    })
                    .collect())
            }
            Some(QueryStatus::Scheduled | QueryStatus::Running) | None => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Some(other) => return Err(format!("the Logs Insights query ended {}", other.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(account: &'a str, subscription: Option<&'a str>) -> Query<'a> {
        Query {
            account,
            subscription,
            from: "2026-12-01T10:00:00Z".parse().unwrap(),
            to: "2026-12-01T11:00:00Z".parse().unwrap(),
        }
    }

    fn line(account: &str, sub: &str, id: &str, message: &str, at: &str, status: Option<u16>) -> String {
        json!({"timestamp": at, "level": "INFO", "message": message, "account_id": account,
               "subscription_id": sub, "webhook_id": id, "trigger": "sms.received", "attempt": 1,
               "status": status, "error": if message == "webhook attempt failed" { Some("receiver answered 500") } else { None }})
        .to_string()
    }

    #[test]
    fn groups_attempts_by_webhook_and_keeps_the_last_error() {
        let lines = [
            line(
                "a",
                "s",
                "w1",
                "webhook attempt failed",
                "2026-12-01T10:01:00Z",
                Some(500),
            ),
            "not json".into(),
            line("a", "s", "w1", "webhook delivered", "2026-12-01T10:01:02Z", Some(200)),
            line("b", "s", "w2", "webhook delivered", "2026-12-01T10:01:02Z", Some(200)),
            line("a", "t", "w3", "webhook delivered", "2026-12-01T10:01:03Z", Some(200)),
            line("a", "s", "w4", "webhook delivered", "2026-12-01T09:59:59Z", Some(200)),
            line("a", "s", "w5", "batch finished", "2026-12-01T10:02:00Z", None),
        ];
        let got = from_lines(lines.iter().map(String::as_str), &q("a", Some("s")));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["webhook_id"], "w1");
        assert_eq!(got[0]["status"], "delivered");
        assert_eq!(got[0]["last_error"], "receiver answered 500");
        let statuses: Vec<_> = got[0]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status"].clone())
            .collect();
        assert_eq!(statuses, [json!(500), json!(200)]);
        let all = from_lines(lines.iter().map(String::as_str), &q("a", None));
        assert_eq!(
            all.iter()
                .map(|d| d["webhook_id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["w1", "w3"]
        );
    }

    #[test]
    fn the_query_filters_on_the_server_only_with_values_it_can_quote() {
        assert_eq!(
            insights_query(&q("acc_1", Some("crm"))),
            "fields @timestamp, @message | filter ispresent(webhook_id) and account_id = \"acc_1\" and \
             subscription_id = \"crm\" | sort @timestamp asc | limit 10000"
        );
        let odd = insights_query(&q("acc\"1", None));
        assert!(!odd.contains("account_id"), "{odd}");
    }

    #[test]
    fn a_full_window_splits_until_a_second() {
        let [a, b] = split(q("a", None).from, q("a", None).to).unwrap();
        assert_eq!(
            (a.1 - a.0, b.1 - b.0),
            (chrono::Duration::minutes(30), chrono::Duration::minutes(30))
        );
        let t: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        assert!(split(t, t + chrono::Duration::seconds(1)).is_none());
    }
}
