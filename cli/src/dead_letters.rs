//! `dataflows dead-letters`: list the categories' dead letters and redrive them.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::common::*;
use crate::{progress, target};

/// Which dead letters a command looks at.
#[derive(clap::Args, Clone)]
pub(crate) struct LetterFilter {
    /// One category (sms, operations, contacts, messaging, performance, admin), or `sns` for the
    /// events SNS could not deliver to a category queue; default all of them.
    #[arg(long)]
    pub(crate) category: Option<String>,
    #[arg(long)]
    pub(crate) account: Option<String>,
    #[arg(long)]
    pub(crate) subscription: Option<String>,
    /// Only letters whose reason contains this text.
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum DeadLettersCmd {
    /// What is on the dead-letter queues, and why (messages are left in place).
    ///
    /// Example: dataflows dead-letters list --category sms --subscription crm
    List {
        #[command(flatten)]
        filter: LetterFilter,
    },
    /// Move matching dead letters back to their category queue: input events are processed again,
    /// a webhook's dead letter restarts its retry schedule. An event SNS could not deliver goes to
    /// every category queue that consumes its type (the unrouted queue if none does); a category
    /// that already had it sees a duplicate and sends nothing twice.
    ///
    /// Example: dataflows dead-letters redrive --category sms --subscription crm
    Redrive {
        #[command(flatten)]
        filter: LetterFilter,
        /// Stop after moving this many.
        #[arg(long, default_value_t = 10_000)]
        max: usize,
    },
}

/// One dead letter as listed: a webhook given up on, or an input message refused.
pub(crate) fn describe_letter(category: &str, m: &aws_sdk_sqs::types::Message) -> Value {
    let body: Value = m
        .body()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let attr = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    };
    let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "category": category,
        "message_id": m.message_id(),
        "kind": if body.get("dataflows_dead_letter").is_some() { "webhook" } else { "input" },
        "account_id": field("account_id"),
        "subscription_id": field("subscription_id"),
        "trigger": field("trigger"),
        "webhook_id": field("webhook_id"),
        "event_id": body.get("event_id").or_else(|| body.get("id")).cloned().unwrap_or(Value::Null),
        "attempts": field("attempts"),
        "reason": attr("reason").map(Value::String).unwrap_or_else(|| field("reason")),
        "field": attr("field"),
    })
}

pub(crate) fn letter_matches(letter: &Value, f: &LetterFilter) -> bool {
    let is = |key: &str, want: &Option<String>| want.as_ref().is_none_or(|w| letter[key].as_str() == Some(w.as_str()));
    is("account_id", &f.account)
        && is("subscription_id", &f.subscription)
        && f.reason
            .as_ref()
            .is_none_or(|r| letter["reason"].as_str().is_some_and(|have| have.contains(r.as_str())))
}

/// The dead-letter source of SNS's own failures (the events delivery DLQ), beside the categories.
pub(crate) const SNS_SOURCE: &str = "sns";

/// The stack output naming a category's dead-letter queue (or the events delivery DLQ).
pub(crate) fn dlq_output(category: &str) -> String {
    if category == SNS_SOURCE {
        "EventsDeliveryDeadLetterQueueUrl".into()
    } else {
        format!("{}DeadLetterQueueUrl", capitalized(category))
    }
}

/// The categories a dead-letter command looks at: the one asked for, or all six and the events
/// delivery DLQ (when the stack has one: stacks deployed before it was added do not).
pub(crate) fn chosen_categories<'a>(
    t: &target::Target,
    filter: &'a LetterFilter,
) -> Result<Vec<&'a str>, (Failure, Value)> {
    match &filter.category {
        Some(c) if CATEGORIES.contains(&c.as_str()) || c == SNS_SOURCE => Ok(vec![c.as_str()]),
        Some(c) => Err((
            Failure::Check(format!(
                "{c} is not a category: {}, or {SNS_SOURCE}",
                CATEGORIES.join(", ")
            )),
            Value::Null,
        )),
        None => {
            let mut all = CATEGORIES.to_vec();
            if t.output(&dlq_output(SNS_SOURCE)).is_ok() {
                all.push(SNS_SOURCE);
            }
            Ok(all)
        }
    }
}

/// How many messages the chosen dead-letter queues hold (approximately, as SQS counts).
pub(crate) async fn letters_waiting(t: &target::Target, filter: &LetterFilter) -> Result<usize, (Failure, Value)> {
    let sqs = aws_sdk_sqs::Client::new(&t.config);
    let mut total = 0;
    for category in chosen_categories(t, filter)? {
        let dlq = t
            .output(&dlq_output(category))
            .map_err(|e| (Failure::Env(e), Value::Null))?;
        let got = sqs
            .get_queue_attributes()
            .queue_url(dlq)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .map_err(env("reading a dead-letter queue's depth"))?;
        total += got
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Walk the chosen dead-letter queues once: each message is received (hidden for 60 s), passed to
/// `take`, and made visible again unless `take` says it was moved. Returns what `take` saw.
pub(crate) async fn walk_letters(
    t: &target::Target,
    filter: &LetterFilter,
    mut take: impl AsyncFnMut(&str, &aws_sdk_sqs::types::Message, &Value) -> Result<bool, String>,
    mut looked: impl FnMut(usize, usize),
) -> Result<(Vec<Value>, usize), (Failure, Value)> {
    let categories = chosen_categories(t, filter)?;
    let sqs = aws_sdk_sqs::Client::new(&t.config);
    let mut seen = Vec::new();
    let mut failed = 0;
    let mut count = 0;
    for category in categories {
        let dlq = t
            .output(&dlq_output(category))
            .map_err(|e| (Failure::Env(e), Value::Null))?
            .to_string();
        let mut ids = std::collections::HashSet::new();
        let mut hidden = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&dlq)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)
                .map_err(env("reading a dead-letter queue"))?;
            let fresh: Vec<_> = got
                .messages()
                .iter()
                .filter(|m| m.message_id().is_some_and(|id| ids.insert(id.to_string())))
                .cloned()
                .collect();
            if fresh.is_empty() {
                break;
            }
            for m in fresh {
                let letter = describe_letter(category, &m);
                let moved = if letter_matches(&letter, filter) {
                    match take(category, &m, &letter).await {
                        Ok(moved) => moved,
                        Err(e) => {
                            failed += 1;
                            eprintln!("dataflows: {}: {e}", m.message_id().unwrap_or("?"));
                            false
                        }
                    }
                } else {
                    false
                };
                if letter_matches(&letter, filter) {
                    seen.push(letter);
                }
                if !moved {
                    hidden.extend(m.receipt_handle().map(str::to_string));
                }
                count += 1;
                looked(count, failed);
            }
        }
        for handle in hidden {
            // Visible again at once for the next reader (and the functions' own redrive).
            let _ = sqs
                .change_message_visibility()
                .queue_url(&dlq)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
    Ok((seen, failed))
}

pub(crate) async fn dead_letters(t: &target::Target, cmd: &DeadLettersCmd) -> Outcome {
    match cmd {
        DeadLettersCmd::List { filter } => {
            let (letters, _) = walk_letters(t, filter, async |_, _, _| Ok(false), |_, _| ()).await?;
            Ok(json!({"dead_letters": letters}))
        }
        DeadLettersCmd::Redrive { filter, max } => {
            let sqs = aws_sdk_sqs::Client::new(&t.config);
            let bar = progress::Bar::new(letters_waiting(t, filter).await?);
            // Shared by the two callbacks: `take` counts what it moved, the per-message one
            // (given what was looked at and failed so far) draws the bar.
            let moved = std::cell::Cell::new(0usize);
            let last = std::cell::Cell::new(progress::Tally::default());
            let (matched, failed) = walk_letters(
                t,
                filter,
                async |category, m, _| {
                    if moved.get() >= *max {
                        return Ok(false);
                    }
                    redrive_one(&sqs, t, category, m).await?;
                    moved.set(moved.get() + 1);
                    Ok(true)
                },
                |looked, failed| {
                    let tally = progress::Tally {
                        looked,
                        moved: moved.get(),
                        skipped: looked - moved.get() - failed,
                        failed,
                    };
                    last.set(tally);
                    bar.show(tally);
                },
            )
            .await?;
            bar.finish(last.get());
            let moved = moved.get();
            let out = json!({"moved": moved, "matched": matched.len(), "skipped": matched.len() - moved - failed,
                             "failed": failed});
            if failed > 0 {
                Err((Failure::Env(format!("{failed} message(s) could not be moved")), out))
            } else {
                Ok(out)
            }
        }
    }
}

/// The stack outputs of the queues a dead letter goes back to: its category's queue; for an event
/// SNS could not deliver, every category queue that consumes its type, as the topic's filter
/// policies route it (the unrouted queue when none does).
pub(crate) fn redrive_queues(category: &str, body: &str) -> Vec<String> {
    if category != SNS_SOURCE {
        return vec![format!("{}QueueUrl", capitalized(category))];
    }
    let ty = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string));
    let consumers: Vec<String> = dataflows_shared::Category::ALL
        .iter()
        .filter(|c| c.consumes().iter().any(|t| Some(t.as_str()) == ty.as_deref()))
        .map(|c| format!("{}QueueUrl", capitalized(c.as_str())))
        .collect();
    if consumers.is_empty() {
        vec!["UnroutedQueueUrl".into()]
    } else {
        consumers
    }
}

/// One dead letter back to its category queue, with its attributes; deleted from the DLQ only
/// once sent (a failure between the two leaves a copy in both: at least once, never lost).
pub(crate) async fn redrive_one(
    sqs: &aws_sdk_sqs::Client,
    t: &target::Target,
    category: &str,
    m: &aws_sdk_sqs::types::Message,
) -> Result<(), String> {
    let dlq = t.output(&dlq_output(category))?;
    for queue in redrive_queues(category, m.body().unwrap_or_default()) {
        let queue = t.output(&queue)?;
        let mut send = sqs
            .send_message()
            .queue_url(queue)
            .message_body(m.body().unwrap_or_default());
        for (name, value) in m.message_attributes().into_iter().flatten() {
            send = send.message_attributes(name, value.clone());
        }
        send.send().await.map_err(|e| aws_sdk_sqs::Error::from(e).to_string())?;
    }
    sqs.delete_message()
        .queue_url(dlq)
        .receipt_handle(m.receipt_handle().unwrap_or_default())
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::Error::from(e).to_string())?;
    Ok(())
}

/// The human form of this group's output (`--json` prints the document itself).
pub(crate) fn print(cmd: &DeadLettersCmd, out: &Value) {
    match cmd {
        DeadLettersCmd::List { .. } => {
            let letters = out["dead_letters"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<12} {:<8} {:<24} {:<16} {:<22} reason",
                "category", "kind", "account", "subscription", "trigger"
            );
            for l in &letters {
                let text = |k: &str| l[k].as_str().unwrap_or("-").to_string();
                println!(
                    "{:<12} {:<8} {:<24} {:<16} {:<22} {}",
                    text("category"),
                    text("kind"),
                    text("account_id"),
                    text("subscription_id"),
                    text("trigger"),
                    text("reason")
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        DeadLettersCmd::Redrive { .. } => {
            println!(
                "moved {} of {} matching dead letter(s); {} skipped (--max), {} failed",
                out["moved"], out["matched"], out["skipped"], out["failed"]
            );
        }
    }
}
