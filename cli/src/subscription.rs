//! `dataflows subscription`: validate, put, list, show, enable, disable.

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::common::*;
use crate::{records, target};
use dataflows_shared::store::attributes::item_to_json;
use dataflows_shared::subscription::{parse_record, parse_record_within, ParseOptions, RegexBudget};

/// A record given as flags instead of a file.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct RecordFlags {
    #[arg(long)]
    pub(crate) account: Option<String>,
    #[arg(long)]
    pub(crate) id: Option<String>,
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// A trigger name, or * for all; repeat for several.
    #[arg(long)]
    pub(crate) trigger: Vec<String>,
    /// An EventBridge-style pattern over the webhook body, as JSON (docs/subscriptions.md).
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// A static header, NAME=VALUE; repeat for several.
    #[arg(long)]
    pub(crate) header: Vec<String>,
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// A `whsec_` secret of your own (default: one is generated).
    #[arg(long)]
    pub(crate) secret: Option<String>,
    /// Requests per second the receiver takes, across every function (fractions allowed: 0.5
    /// is one every 2 s). Without it the sender slows down on 429 and 503 answers only.
    #[arg(long)]
    pub(crate) rate_limit: Option<f64>,
}

impl RecordFlags {
    /// The plain-JSON record the flags describe (validated later, like a file's).
    fn to_record(&self) -> Result<Value, String> {
        let mut record = json!({"account_id": self.account, "subscription_id": self.id, "url": self.url});
        record["triggers"] = match self.trigger.as_slice() {
            [all] if all == "*" => json!("*"),
            list => json!(list),
        };
        if let Some(filter) = &self.filter {
            record["filter"] = serde_json::from_str(filter).map_err(|e| format!("--filter is not JSON: {e}"))?;
        }
        if !self.header.is_empty() {
            let mut headers = Map::new();
            for h in &self.header {
                let (name, value) = h
                    .split_once('=')
                    .ok_or_else(|| format!("--header {h:?} is not NAME=VALUE"))?;
                headers.insert(name.trim().to_string(), Value::String(value.to_string()));
            }
            record["headers"] = Value::Object(headers);
        }
        if let Some(d) = &self.description {
            record["description"] = json!(d);
        }
        if let Some(secret) = &self.secret {
            record["secrets"] = json!([secret]);
        }
        if let Some(rate) = self.rate_limit {
            record["rate_limit"] = json!(rate);
        }
        Ok(record)
    }
}

#[derive(Subcommand)]
pub(crate) enum SubscriptionCmd {
    /// Validate record files exactly as the functions do (plain or DynamoDB-typed JSON).
    ///
    /// Example: dataflows subscription validate docs/examples/subscriptions/*.json
    Validate {
        files: Vec<PathBuf>,
        /// Accept http:// and private targets, as the local stack does.
        #[arg(long)]
        allow_private_targets: bool,
    },
    /// Validate and write a record, from a file or from flags; a `whsec_` secret is generated
    /// (and printed once) if none is given. Conditions (balance_low, keywords, ...) need a file.
    ///
    /// Example: dataflows subscription put crm.json
    ///
    /// Example: dataflows subscription put --account acc_42 --id crm --url https://crm.example.com/hooks --trigger contact.added --trigger contact.updated
    Put {
        #[arg(required_unless_present_all = ["account", "id", "url", "trigger"], conflicts_with_all = ["account", "id", "url", "trigger", "filter", "header", "description", "secret", "rate_limit"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        fields: RecordFlags,
        /// Replace an existing record (only if nobody changed it since it was read).
        #[arg(long)]
        replace: bool,
    },
    /// An account's records, secrets masked, with their failure state.
    ///
    /// Example: dataflows subscription list --account acc_42
    List {
        #[arg(long)]
        account: String,
    },
    /// One record, secrets masked, with its validation result.
    ///
    /// Example: dataflows subscription show --account acc_42 --id crm
    Show {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
    },
    /// Enable a record (clears the disabled reason and the failing streak).
    ///
    /// Example: dataflows subscription enable --account acc_42 --id crm
    Enable {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
    },
    /// Disable a record, with a reason.
    ///
    /// Example: dataflows subscription disable --account acc_42 --id crm --reason "endpoint moving"
    Disable {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
}

pub(crate) fn validate(files: &[PathBuf], opts: ParseOptions) -> Outcome {
    let mut results = Vec::new();
    let mut bad = 0;
    for path in files {
        let result = read_json(path)
            .and_then(|v| records::record_from_json(&v))
            .and_then(|record| {
                parse_record(&record, opts)
                    .map(|s| format!("{}/{}", s.account_id, s.subscription_id))
                    .map_err(|e| e.to_string())
            });
        match &result {
            Ok(id) => results.push(json!({"file": path, "valid": true, "subscription": id})),
            Err(reason) => {
                bad += 1;
                results.push(json!({"file": path, "valid": false, "error": reason}))
            }
        }
    }
    let out = json!({"results": results, "invalid": bad});
    if bad > 0 {
        Err((Failure::Check(format!("{bad} invalid record(s)")), out))
    } else {
        Ok(out)
    }
}

pub(crate) fn summary(
    record: &Map<String, Value>,
    opts: ParseOptions,
    budget: &mut RegexBudget,
    show_urls: bool,
) -> Value {
    let parsed = parse_record_within(record, opts, budget);
    let url = record.get("url").and_then(Value::as_str).map(|u| {
        if show_urls {
            u.to_string()
        } else {
            records::masked_url(u)
        }
    });
    json!({
        "account_id": record.get("account_id"),
        "subscription_id": record.get("subscription_id"),
        "url": url,
        "triggers": record.get("triggers"),
        "enabled": record.get("enabled").cloned().unwrap_or(Value::Bool(true)),
        "disabled_reason": record.get("disabled_reason"),
        "failing_since": record.get("failing_since"),
        "rate_limit": record.get("rate_limit"),
        "valid": parsed.is_ok(),
        "error": parsed.err().map(|e| e.to_string()),
    })
}

/// The subscription's shared pacing state (docs/design.md, "Pacing"), as an operator reads it:
/// how far ahead its send slots are taken, a pause, the adaptive rate, and the backlog the last
/// writer reported. `null` when the subscription was never paced.
pub(crate) async fn pacing(t: &target::Target, account: &str, id: &str) -> Result<Value, (Failure, Value)> {
    let table = t.output("StateTableName").map_err(|e| (Failure::Env(e), Value::Null))?;
    let k = dataflows_shared::store::keys::pace(account, id);
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(k.pk))
        .key("sk", AttributeValue::S(k.sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the subscription's pacing"))?;
    let Some(item) = got.item else {
        return Ok(Value::Null);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let state = dataflows_shared::store::pace::state_of(&item);
    let raw = item_to_json(&item);
    let seconds = |ms: i64| ((ms - now).max(0) as f64 / 1000.0 * 10.0).round() / 10.0;
    let oldest = raw.get("held_oldest").and_then(Value::as_i64).filter(|&t| t > 0);
    Ok(json!({
        "slots_reserved_for_s": seconds(state.tat_ms),
        "paused_for_s": seconds(state.paused_until_ms),
        "adaptive_rate": state.adaptive.filter(|a| a.active(now)).map(|a| (a.rate_at(now) * 100.0).round() / 100.0),
        "held_back": raw.get("held").and_then(Value::as_i64).unwrap_or(0),
        "oldest_held_s": oldest.map(|t| (now - t) / 1000),
    }))
}

pub(crate) async fn put(t: &target::Target, file: Option<&PathBuf>, flags: &RecordFlags, replace: bool) -> Outcome {
    let mut record = file
        .map_or_else(|| flags.to_record(), read_json)
        .and_then(|v| records::record_from_json(&v))
        .map_err(|e| (Failure::Check(e), Value::Null))?;
    let mut generated = None;
    if !record.contains_key("secret") && !record.contains_key("secrets") {
        let secret = records::new_secret();
        record.insert("secrets".into(), json!([secret]));
        generated = Some(secret);
    }
    let opts = ParseOptions {
        allow_private_targets: t.local,
    };
    let sub = parse_record(&record, opts).map_err(|e| (Failure::Check(e.to_string()), Value::Null))?;
    let existing = get_record(t, &sub.account_id, &sub.subscription_id).await?;
    if existing.is_some() && !replace {
        return Err((
            Failure::Check(format!(
                "{}/{} exists; pass --replace to overwrite it",
                sub.account_id, sub.subscription_id
            )),
            Value::Null,
        ));
    }
    let previous_update = existing.as_ref().and_then(|r| r.get("updated_at")).cloned();
    record.insert("updated_at".into(), Value::String(now_rfc3339()));
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut request = t
        .dynamodb()
        .put_item()
        .table_name(table)
        .set_item(Some(records::to_item(&record)));
    // Never lose a concurrent change: write only over exactly what was read.
    request = match (&existing, previous_update) {
        (None, _) => request.condition_expression("attribute_not_exists(account_id)"),
        (Some(_), Some(previous)) => request
            .condition_expression("updated_at = :seen")
            .expression_attribute_values(":seen", records::to_attribute(&previous)),
        (Some(_), None) => {
            request.condition_expression("attribute_exists(account_id) AND attribute_not_exists(updated_at)")
        }
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => {}
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            return Err((
                Failure::Check(format!(
                    "{}/{} was changed by someone else meanwhile; nothing written, read it again",
                    sub.account_id, sub.subscription_id
                )),
                Value::Null,
            ))
        }
        Err(e) => return Err(env("writing the subscription")(e)),
    }
    Ok(json!({"stored": records::masked(&record, true), "generated_secret": generated}))
}

pub(crate) async fn set_enabled(t: &target::Target, account: &str, id: &str, enabled: bool, reason: &str) -> Outcome {
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut request = t
        .dynamodb()
        .update_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .condition_expression("attribute_exists(account_id)")
        .expression_attribute_values(":e", AttributeValue::Bool(enabled))
        .expression_attribute_values(":u", AttributeValue::S(now_rfc3339()));
    request = if enabled {
        request.update_expression("SET enabled = :e, updated_at = :u REMOVE disabled_reason, failing_since")
    } else {
        request
            .update_expression("SET enabled = :e, updated_at = :u, disabled_reason = :r")
            .expression_attribute_values(":r", AttributeValue::S(reason.into()))
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => Ok(json!({"account_id": account, "subscription_id": id, "enabled": enabled})),
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            Err((Failure::Check(format!("no subscription {account}/{id}")), Value::Null))
        }
        Err(e) => Err(env("updating the subscription")(e)),
    }
}

/// Every subscription command but `validate` (which needs no stack).
pub(crate) async fn run(t: &target::Target, cmd: &SubscriptionCmd, opts: ParseOptions, show_urls: bool) -> Outcome {
    match cmd {
        SubscriptionCmd::Validate { .. } => unreachable!("run without a stack"),
        SubscriptionCmd::Put { file, fields, replace } => put(t, file.as_ref(), fields, *replace).await,
        SubscriptionCmd::List { account } => {
            let table = t
                .output("SubscriptionsTableName")
                .map_err(|e| (Failure::Env(e), Value::Null))?;
            let items: Vec<_> = t
                .dynamodb()
                .query()
                .table_name(table)
                .key_condition_expression("account_id = :a")
                .expression_attribute_values(":a", AttributeValue::S(account.clone()))
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(aws_sdk_dynamodb::Error::from)
                .map_err(env("listing subscriptions"))?;
            // As the functions read them: in subscription-id order, against the account's regex budget.
            let mut budget = RegexBudget::account();
            let list: Vec<Value> = items
                .iter()
                .map(|i| summary(&item_to_json(i), opts, &mut budget, show_urls))
                .collect();
            Ok(json!({"account_id": account, "subscriptions": list}))
        }
        SubscriptionCmd::Show { account, id } => {
            let record = get_record(t, account, id)
                .await?
                .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
            let pacing = pacing(t, account, id).await?;
            Ok(json!({"record": records::masked(&record, show_urls),
                       "status": summary(&record, opts, &mut RegexBudget::unlimited(), show_urls), "pacing": pacing}))
        }
        SubscriptionCmd::Enable { account, id } => set_enabled(t, account, id, true, "").await,
        SubscriptionCmd::Disable { account, id, reason } => set_enabled(t, account, id, false, reason).await,
    }
}

/// The human form of this group's output (`--json` prints the document itself).
pub(crate) fn print(cmd: &SubscriptionCmd, out: &Value) {
    match cmd {
        SubscriptionCmd::Validate { .. } => {
            for r in out["results"].as_array().into_iter().flatten() {
                if r["valid"] == true {
                    println!(
                        "ok       {}  {}",
                        r["file"].as_str().unwrap_or(""),
                        r["subscription"].as_str().unwrap_or("")
                    );
                } else {
                    println!(
                        "INVALID  {}  {}",
                        r["file"].as_str().unwrap_or(""),
                        r["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        SubscriptionCmd::List { .. } => {
            println!(
                "{:<24} {:<8} {:<6} {:<22} {:<40} url",
                "subscription", "enabled", "valid", "failing since", "triggers"
            );
            for r in out["subscriptions"].as_array().into_iter().flatten() {
                let failing = r["failing_since"]
                    .as_i64()
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<24} {:<8} {:<6} {:<22} {:<40} {}",
                    r["subscription_id"].as_str().unwrap_or("?"),
                    r["enabled"],
                    r["valid"],
                    failing,
                    r["triggers"].to_string(),
                    r["url"].as_str().unwrap_or("")
                );
                if let Some(reason) = r["disabled_reason"].as_str() {
                    println!("    disabled: {reason}");
                }
                if let Some(error) = r["error"].as_str() {
                    println!("    invalid: {error}");
                }
            }
        }
        SubscriptionCmd::Put { .. } => {
            println!("{}", serde_json::to_string_pretty(&out["stored"]).unwrap_or_default());
            if let Some(secret) = out["generated_secret"].as_str() {
                println!("\nGenerated signing secret (shown once; give it to the receiver):\n{secret}");
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(out).unwrap_or_default()),
    }
}
