//! `dataflows secret rotate`: a new signing secret, the old ones kept signing for a while.

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::common::*;
use crate::{records, target};

#[derive(Subcommand)]
pub(crate) enum SecretCmd {
    /// Put a new secret in front; the old ones keep signing until --keep-old has passed, and are
    /// removed by the next rotate after that, or at once with --retire.
    ///
    /// Example: dataflows secret rotate --account acc_42 --id crm --keep-old 24h
    Rotate {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        /// How long the old secrets keep signing (s, m, h, d).
        #[arg(long, default_value = "24h")]
        keep_old: String,
        /// Do not add a secret: remove every secret but the first now.
        #[arg(long)]
        retire: bool,
    },
}

/// `secrets` as a list, whether the record holds `secrets` or a single `secret`.
pub(crate) fn secret_list(record: &Map<String, Value>) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(list) => list.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            Value::String(text) => serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| vec![text.clone()]),
            _ => Vec::new(),
        }
    };
    record
        .get("secrets")
        .map(strings)
        .or_else(|| record.get("secret").map(strings))
        .unwrap_or_default()
}

pub(crate) async fn rotate(t: &target::Target, account: &str, id: &str, keep_old: &str, retire: bool) -> Outcome {
    let keep = dataflows_shared::config::parse_schedule(keep_old)
        .ok()
        .and_then(|d| (d.len() == 1).then(|| d[0]))
        .ok_or_else(|| {
            (
                Failure::Check(format!("--keep-old {keep_old:?} is not a duration like 24h")),
                Value::Null,
            )
        })?;
    let record = get_record(t, account, id)
        .await?
        .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
    let before = secret_list(&record);
    if before.is_empty() {
        return Err((
            Failure::Check(format!("{account}/{id} has no secret to rotate")),
            Value::Null,
        ));
    }
    let now = chrono::Utc::now();
    let expired = record
        .get("secrets_keep_until")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|until| until <= now);
    // Old secrets go when asked, or when their overlap is over.
    let mut after = if retire || expired {
        before[..1].to_vec()
    } else {
        before.clone()
    };
    let mut generated = None;
    if !retire {
        let secret = records::new_secret();
        after.insert(0, secret.clone());
        generated = Some(secret);
    }
    let max = dataflows_shared::subscription::MAX_SECRETS;
    if after.len() > max {
        return Err((
            Failure::Check(format!(
                "{account}/{id} would hold {} secrets (at most {max}); retire the old ones first with --retire",
                after.len()
            )),
            Value::Null,
        ));
    }
    let keep_until = (after.len() > 1).then(|| {
        (now + chrono::Duration::from_std(keep).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut set = "SET secrets = :after, updated_at = :u".to_string();
    let mut remove = vec!["secret"];
    match &keep_until {
        Some(_) => set.push_str(", secrets_keep_until = :k"),
        None => remove.push("secrets_keep_until"),
    }
    let mut request = t
        .dynamodb()
        .update_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .update_expression(format!("{set} REMOVE {}", remove.join(", ")))
        .expression_attribute_values(
            ":after",
            AttributeValue::L(after.iter().map(|s| AttributeValue::S(s.clone())).collect()),
        )
        .expression_attribute_values(":u", AttributeValue::S(now_rfc3339()));
    if let Some(k) = &keep_until {
        request = request.expression_attribute_values(":k", AttributeValue::S(k.clone()));
    }
    // Never lose a concurrent change: only over the secrets that were read.
    request = match (record.get("secrets"), record.get("secret")) {
        (Some(v), _) => request
            .condition_expression("secrets = :before")
            .expression_attribute_values(":before", records::to_attribute(v)),
        (None, Some(v)) => request
            .condition_expression("secret = :before AND attribute_not_exists(secrets)")
            .expression_attribute_values(":before", records::to_attribute(v)),
        (None, None) => unreachable!("a record without secrets was refused above"),
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => {}
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            return Err((
                Failure::Check(format!(
                    "the secrets of {account}/{id} changed meanwhile; nothing written, run it again"
                )),
                Value::Null,
            ))
        }
        Err(e) => return Err(env("rotating the secret")(e)),
    }
    Ok(json!({
        "subscription": format!("{account}/{id}"),
        "secrets": after.iter().map(|s| records::mask(s)).collect::<Vec<_>>(),
        "removed": before.len() + usize::from(generated.is_some()) - after.len(),
        "old_secrets_sign_until": keep_until,
        "generated_secret": generated,
    }))
}

/// The human form of this group's output (`--json` prints the document itself).
pub(crate) fn print(out: &Value) {
    println!(
        "{}: secrets now {}",
        out["subscription"].as_str().unwrap_or(""),
        out["secrets"]
    );
    if let Some(until) = out["old_secrets_sign_until"].as_str() {
        println!("the old secret(s) keep signing until {until}; the next rotate after that removes them");
    }
    if let Some(secret) = out["generated_secret"].as_str() {
        println!("\nNew signing secret (shown once; give it to the receiver):\n{secret}");
    }
}
