//! What every command shares: how it ends (`Outcome`, `Failure`), reading a JSON file, the
//! record's key and reading it, the categories.

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use dataflows_shared::store::attributes::item_to_json;
use serde_json::{Map, Value};

use crate::target;

/// How a command ended.
pub(crate) enum Failure {
    /// What was checked failed (exit 1).
    Check(String),
    /// AWS or the environment failed (exit 3).
    Env(String),
}

pub(crate) type Outcome = Result<Value, (Failure, Value)>;

pub(crate) fn env<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> (Failure, Value) + '_ {
    move |e| (Failure::Env(format!("{what}: {e}")), Value::Null)
}

pub(crate) fn read_json(path: &PathBuf) -> Result<Value, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn key(account: &str, id: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("account_id".to_string(), AttributeValue::S(account.into())),
        ("subscription_id".to_string(), AttributeValue::S(id.into())),
    ]
    .into()
}

pub(crate) async fn get_record(
    t: &target::Target,
    account: &str,
    id: &str,
) -> Result<Option<Map<String, Value>>, (Failure, Value)> {
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the subscription"))?;
    Ok(got.item.map(|item| item_to_json(&item)))
}

pub(crate) const CATEGORIES: &[&str] = &["sms", "operations", "contacts", "messaging", "performance", "admin"];

pub(crate) fn capitalized(category: &str) -> String {
    let mut c = category.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}
