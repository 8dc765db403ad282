//! Subscription records as the CLI reads and writes them: plain JSON or DynamoDB-typed JSON in,
//! native DynamoDB items out, secrets masked whenever a record is shown.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

const TYPE_KEYS: &[&str] = &["S", "N", "BOOL", "NULL", "L", "M", "SS", "NS", "B", "BS"];

/// Whether every attribute is written the DynamoDB way (`{"S": "..."}`), as `aws dynamodb
/// put-item --item file://...` takes it.
fn is_typed(map: &Map<String, Value>) -> bool {
    !map.is_empty()
        && map.values().all(|v| {
            v.as_object()
                .is_some_and(|o| o.len() == 1 && o.keys().all(|k| TYPE_KEYS.contains(&k.as_str())))
        })
}

fn untype(v: &Value) -> Result<Value, String> {
    let (kind, inner) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("{v} is not a typed DynamoDB value"))?;
    let number = |s: &Value| -> Result<Value, String> {
        let text = s.as_str().ok_or("a number must be written as a string")?;
        serde_json::from_str::<Number>(text)
            .map(Value::Number)
            .map_err(|_| format!("{text:?} is not a number"))
    };
    Ok(match kind.as_str() {
        "S" => inner.clone(),
        "N" => number(inner)?,
        "BOOL" => inner.clone(),
        "NULL" => Value::Null,
        "L" => Value::Array(
            inner
                .as_array()
                .ok_or("L must hold a list")?
                .iter()
                .map(untype)
                .collect::<Result<_, _>>()?,
        ),
        "M" => Value::Object(
            inner
                .as_object()
                .ok_or("M must hold a map")?
                .iter()
                .map(|(k, v)| Ok((k.clone(), untype(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        "SS" => inner.clone(),
        "NS" => Value::Array(
            inner
                .as_array()
                .ok_or("NS must hold a list")?
                .iter()
                .map(number)
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("attribute type {other} is not used by subscription records")),
    })
}

/// A record from a file's JSON: plain, or DynamoDB-typed.
pub fn record_from_json(value: &Value) -> Result<Map<String, Value>, String> {
    let map = value.as_object().ok_or("a record must be a JSON object")?;
    if is_typed(map) {
        map.iter()
            .map(|(k, v)| Ok((k.clone(), untype(v).map_err(|e| format!("attribute {k}: {e}"))?)))
            .collect()
    } else {
        Ok(map.clone())
    }
}

/// A plain JSON value as a native DynamoDB attribute (numbers as N, maps as M, lists as L).
pub fn to_attribute(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect()),
    }
}

pub fn to_item(record: &Map<String, Value>) -> HashMap<String, AttributeValue> {
    record.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect()
}

/// A new signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks suggests.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A secret as it may be shown: its first four characters after the prefix.
pub fn mask(secret: &str) -> String {
    let body = secret.strip_prefix("whsec_").unwrap_or(secret);
    format!("whsec_{}…", body.chars().take(4).collect::<String>())
}

/// The record with `secret` and `secrets` masked, and every header value hidden.
/// A webhook URL as shown by default: its origin (scheme, host, port), without credentials, and
/// `/…` for a path or query, which receivers often use for tokens.
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(hidden)".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let tail = &rest[end..];
    if tail.is_empty() || tail == "/" {
        format!("{scheme}://{host}{tail}")
    } else {
        format!("{scheme}://{host}/…")
    }
}

/// A record as shown: secrets masked, header values hidden, and the URL as [`masked_url`] unless
/// `show_urls`.
pub fn masked(record: &Map<String, Value>, show_urls: bool) -> Map<String, Value> {
    let mut out = record.clone();
    if !show_urls {
        if let Some(Value::String(url)) = out.get_mut("url") {
            *url = masked_url(url);
        }
    }
    let mask_value = |v: &Value| match v {
        Value::String(s) => Value::String(mask(s)),
        other => other.clone(),
    };
    if let Some(v) = out.get_mut("secret") {
        *v = mask_value(v);
    }
    if let Some(Value::Array(list)) = out.get_mut("secrets") {
        for v in list.iter_mut() {
            *v = mask_value(v);
        }
    }
    if let Some(Value::Object(headers)) = out.get_mut("headers") {
        for v in headers.values_mut() {
            *v = Value::String("(hidden)".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_and_plain_records_read_the_same() {
        let plain = json!({"account_id": "a", "subscription_id": "s", "triggers": ["sms.received"],
                           "balance_low": {"threshold": 100}, "enabled": true});
        let typed = json!({"account_id": {"S": "a"}, "subscription_id": {"S": "s"},
                           "triggers": {"L": [{"S": "sms.received"}]},
                           "balance_low": {"M": {"threshold": {"N": "100"}}}, "enabled": {"BOOL": true}});
        assert_eq!(record_from_json(&typed).unwrap(), record_from_json(&plain).unwrap());
        assert!(record_from_json(&json!({"a": {"N": "x"}}))
            .unwrap_err()
            .contains("not a number"));
        assert!(record_from_json(&json!([1])).is_err());
    }

    #[test]
    fn secrets_and_header_values_are_masked() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_") && secret.len() > 40);
        let record = record_from_json(&json!({"secrets": [secret.clone()], "secret": secret.clone(),
                                              "headers": {"x-api-key": "k-123"}}))
        .unwrap();
        let shown = serde_json::to_string(&masked(&record, false)).unwrap();
        assert!(!shown.contains(&secret[10..]) && !shown.contains("k-123"), "{shown}");
        assert_ne!(new_secret(), new_secret());
    }

    #[test]
    fn urls_show_their_origin_only_unless_asked() {
        assert_eq!(
            masked_url("https://hooks.example.com/t/0a1b2c?key=s3cr3t"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            masked_url("https://user:pw@hooks.example.com:8443/x"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(masked_url("https://hooks.example.com"), "https://hooks.example.com");
        assert_eq!(masked_url("https://hooks.example.com/"), "https://hooks.example.com/");
        assert_eq!(masked_url("not a url"), "(hidden)");
        let record = record_from_json(&json!({"url": "https://a.example/hook?token=t0k"})).unwrap();
        assert_eq!(masked(&record, false)["url"], "https://a.example/…");
        assert_eq!(masked(&record, true)["url"], "https://a.example/hook?token=t0k");
    }
}
