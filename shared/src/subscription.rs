//! Subscription records (DESIGN.md §5): what a customer writes into the Subscriptions table, and
//! their validation. Parsing works on plain JSON (the DynamoDB adapter converts attribute values
//! first), so every rule here is a pure function with a table test.

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde_json::{Map, Value};

use crate::delivery::signing::{Secret, SecretError};
use crate::event::json_kind;
use crate::trigger::Trigger;

pub const MAX_SECRETS: usize = 10;

/// Which triggers a subscription wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggers {
    All,
    Only(Vec<Trigger>),
}

impl Triggers {
    pub fn contains(&self, t: Trigger) -> bool {
        match self {
            Triggers::All => true,
            Triggers::Only(list) => list.contains(&t),
        }
    }
}

/// One validated subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub account_id: String,
    pub subscription_id: String,
    pub url: Url,
    /// Every active secret signs (rotation). Never logged: `Secret`'s Debug is redacted.
    pub secrets: Vec<Secret>,
    pub triggers: Triggers,
    pub enabled: bool,
    /// Extra static headers sent with every webhook.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub description: Option<String>,
}

impl Subscription {
    /// Whether this subscription should receive `trigger` at all.
    pub fn wants(&self, trigger: Trigger) -> bool {
        self.enabled && self.triggers.contains(trigger)
    }
}

/// A record that cannot be used, and why. Names the account, subscription and field; never
/// contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription {account_id}/{subscription_id}: `{field}` {reason}")]
pub struct RecordError {
    pub account_id: String,
    pub subscription_id: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Accept http:// URLs (local development only; see ALLOW_PRIVATE_TARGETS).
    pub allow_private_targets: bool,
}

/// Headers a subscription may not set: the signature contract and the transport's own.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

struct Ctx<'a> {
    account_id: &'a str,
    subscription_id: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> RecordError {
        RecordError {
            account_id: self.account_id.to_string(),
            subscription_id: self.subscription_id.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Lists and maps may be stored as native DynamoDB lists/maps or as JSON text.
fn decode_json_text(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if s.trim_start().starts_with(['[', '{']) => serde_json::from_str(s).ok(),
        _ => None,
    }
}

fn as_list<'v>(v: &'v Value, decoded: &'v Option<Value>) -> Option<&'v Vec<Value>> {
    decoded.as_ref().unwrap_or(v).as_array()
}

fn as_map<'v>(v: &'v Value, decoded: &'v Option<Value>) -> Option<&'v Map<String, Value>> {
    decoded.as_ref().unwrap_or(v).as_object()
}

fn key_string(item: &Map<String, Value>, key: &str) -> Result<String, String> {
    match item.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(format!(
            "key `{key}` is {}, not a non-empty string",
            json_kind(other)
        )),
        None => Err(format!("key `{key}` is missing")),
    }
}

/// Parse and validate one record. The key attributes come first so every later error names them.
pub fn parse_record(
    item: &Map<String, Value>,
    opts: ParseOptions,
) -> Result<Subscription, RecordError> {
    let account_id = key_string(item, "account_id").map_err(|reason| RecordError {
        account_id: "?".into(),
        subscription_id: "?".into(),
        field: "account_id".into(),
        reason,
    })?;
    let subscription_id = key_string(item, "subscription_id").map_err(|reason| RecordError {
        account_id: account_id.clone(),
        subscription_id: "?".into(),
        field: "subscription_id".into(),
        reason,
    })?;
    let ctx = Ctx {
        account_id: &account_id,
        subscription_id: &subscription_id,
    };

    let url = parse_url(&ctx, item.get("url"), opts)?;
    let secrets = parse_secrets(&ctx, item)?;
    let triggers = parse_triggers(&ctx, item.get("triggers"))?;
    let enabled = match item.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => {
            return Err(ctx.err(
                "enabled",
                format!("must be a boolean, got {}", json_kind(other)),
            ))
        }
    };
    let headers = parse_headers(&ctx, item.get("headers"))?;
    let description = match item.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ctx.err(
                "description",
                format!("must be a string, got {}", json_kind(other)),
            ))
        }
    };
    Ok(Subscription {
        account_id,
        subscription_id,
        url,
        secrets,
        triggers,
        enabled,
        headers,
        description,
    })
}

fn parse_url(ctx: &Ctx, v: Option<&Value>, opts: ParseOptions) -> Result<Url, RecordError> {
    let text = match v {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ctx.err("url", format!("must be a string, got {}", json_kind(other))))
        }
        None => return Err(ctx.err("url", "is missing")),
    };
    let url = Url::parse(text).map_err(|e| ctx.err("url", format!("is not a valid URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if opts.allow_private_targets => {}
        "http" => {
            return Err(ctx.err(
                "url",
                "must use https (http is allowed only with ALLOW_PRIVATE_TARGETS=true)",
            ))
        }
        other => {
            return Err(ctx.err(
                "url",
                format!("scheme {other:?} is not supported; use https"),
            ))
        }
    }
    if url.host().is_none() {
        return Err(ctx.err("url", "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.err(
            "url",
            "must not carry credentials; use `headers` for authentication",
        ));
    }
    Ok(url)
}

fn parse_secrets(ctx: &Ctx, item: &Map<String, Value>) -> Result<Vec<Secret>, RecordError> {
    let parse_one = |field: String, v: &Value| -> Result<Secret, RecordError> {
        match v {
            Value::String(s) => {
                Secret::parse(s).map_err(|e: SecretError| ctx.err(&field, e.to_string()))
            }
            other => Err(ctx.err(
                &field,
                format!("must be a string, got {}", json_kind(other)),
            )),
        }
    };
    match (item.get("secrets"), item.get("secret")) {
        (Some(_), Some(_)) => {
            Err(ctx.err("secrets", "give either `secrets` or `secret`, not both"))
        }
        (Some(v), None) => {
            let decoded = decode_json_text(v);
            let list = as_list(v, &decoded).ok_or_else(|| {
                ctx.err(
                    "secrets",
                    format!("must be a list of strings, got {}", json_kind(v)),
                )
            })?;
            if list.is_empty() || list.len() > MAX_SECRETS {
                return Err(ctx.err(
                    "secrets",
                    format!(
                        "has {} entries; 1 to {MAX_SECRETS} are required",
                        list.len()
                    ),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| parse_one(format!("secrets[{i}]"), s))
                .collect()
        }
        (None, Some(v)) => Ok(vec![parse_one("secret".into(), v)?]),
        (None, None) => Err(ctx.err(
            "secrets",
            "is missing (give `secrets` as a list, or `secret`)",
        )),
    }
}

fn parse_triggers(ctx: &Ctx, v: Option<&Value>) -> Result<Triggers, RecordError> {
    let v =
        v.ok_or_else(|| ctx.err("triggers", "is missing (a list of trigger names, or \"*\")"))?;
    if v.as_str() == Some("*") {
        return Ok(Triggers::All);
    }
    let decoded = decode_json_text(v);
    let list = as_list(v, &decoded).ok_or_else(|| {
        ctx.err(
            "triggers",
            format!(
                "must be a list of trigger names or \"*\", got {}",
                json_kind(v)
            ),
        )
    })?;
    if list.is_empty() {
        return Err(ctx.err("triggers", "is empty; list at least one trigger, or \"*\""));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let field = format!("triggers[{i}]");
        let name = t
            .as_str()
            .ok_or_else(|| ctx.err(&field, format!("must be a string, got {}", json_kind(t))))?;
        if name == "*" {
            return Ok(Triggers::All);
        }
        let trigger = name
            .parse::<Trigger>()
            .map_err(|e| ctx.err(&field, e.to_string()))?;
        if !out.contains(&trigger) {
            out.push(trigger);
        }
    }
    Ok(Triggers::Only(out))
}

fn parse_headers(
    ctx: &Ctx,
    v: Option<&Value>,
) -> Result<Vec<(HeaderName, HeaderValue)>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let decoded = decode_json_text(v);
    let map = as_map(v, &decoded).ok_or_else(|| {
        ctx.err(
            "headers",
            format!("must be a map of name to value, got {}", json_kind(v)),
        )
    })?;
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let field = format!("headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ctx.err(&field, "is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(ctx.err(
                &field,
                "is set by the webhook sender and cannot be overridden",
            ));
        }
        let text = value.as_str().ok_or_else(|| {
            ctx.err(
                &field,
                format!("must be a string, got {}", json_kind(value)),
            )
        })?;
        let mut value = HeaderValue::from_str(text)
            .map_err(|_| ctx.err(&field, "is not a valid header value"))?;
        value.set_sensitive(true);
        out.push((header, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn base() -> Value {
        json!({"account_id": "acc_42", "subscription_id": "sub_1", "url": "https://hooks.example.com/sms",
               "secrets": [S1], "triggers": ["sms.received"]})
    }

    fn parse(v: Value) -> Result<Subscription, RecordError> {
        parse_record(v.as_object().unwrap(), ParseOptions::default())
    }

    #[test]
    fn parses_a_minimal_record() {
        let s = parse(base()).unwrap();
        assert!(s.enabled);
        assert_eq!(s.secrets.len(), 1);
        assert!(s.wants(Trigger::SmsReceived));
        assert!(!s.wants(Trigger::BalanceLow));
    }

    #[test]
    fn accepts_json_text_lists_a_single_secret_and_star() {
        let mut v = base();
        v["triggers"] = json!("[\"sms.received\", \"balance.low\"]");
        v.as_object_mut().unwrap().remove("secrets");
        v["secret"] = json!(S1);
        v["headers"] = json!("{\"x-api-key\": \"k\"}");
        let s = parse(v).unwrap();
        assert!(s.wants(Trigger::BalanceLow));
        assert_eq!(s.headers[0].0.as_str(), "x-api-key");
        let mut v = base();
        v["triggers"] = json!("*");
        v["enabled"] = json!(false);
        let s = parse(v).unwrap();
        assert_eq!(s.triggers, Triggers::All);
        assert!(!s.wants(Trigger::SmsReceived), "disabled wants nothing");
    }

    #[test]
    fn errors_name_account_subscription_and_field() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"url": 1}), "url", "must be a string, got a number"),
            (
                json!({"url": "http://hooks.example.com"}),
                "url",
                "must use https (http is allowed only with ALLOW_PRIVATE_TARGETS=true)",
            ),
            (
                json!({"url": "ftp://x.example.com"}),
                "url",
                "scheme \"ftp\" is not supported; use https",
            ),
            (
                json!({"url": "https://u:p@x.example.com"}),
                "url",
                "must not carry credentials; use `headers` for authentication",
            ),
            (
                json!({"secrets": []}),
                "secrets",
                "has 0 entries; 1 to 10 are required",
            ),
            (
                json!({"secrets": ["nope"]}),
                "secrets[0]",
                "must start with \"whsec_\"",
            ),
            (
                json!({"secrets": [S1, "whsec_c2hvcnQ="]}),
                "secrets[1]",
                "decodes to 5 bytes; 24 to 64 are required",
            ),
            (
                json!({"secret": S1}),
                "secrets",
                "give either `secrets` or `secret`, not both",
            ),
            (
                json!({"triggers": ["sms.recieved"]}),
                "triggers[0]",
                "\"sms.recieved\" is not a trigger name",
            ),
            (
                json!({"triggers": []}),
                "triggers",
                "is empty; list at least one trigger, or \"*\"",
            ),
            (
                json!({"triggers": 3}),
                "triggers",
                "must be a list of trigger names or \"*\", got a number",
            ),
            (
                json!({"enabled": "yes"}),
                "enabled",
                "must be a boolean, got a string",
            ),
            (
                json!({"headers": {"webhook-signature": "x"}}),
                "headers.webhook-signature",
                "is set by the webhook sender and cannot be overridden",
            ),
            (
                json!({"headers": {"bad header": "x"}}),
                "headers.bad header",
                "is not a valid header name",
            ),
        ];
        for (patch, field, reason) in cases {
            let mut v = base();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let err = parse(v.clone()).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.reason.as_str()),
                (field, reason),
                "record {v}"
            );
            assert_eq!(
                (err.account_id.as_str(), err.subscription_id.as_str()),
                ("acc_42", "sub_1")
            );
            assert!(!err.to_string().contains("MfKQ9r8"), "secret leaked: {err}");
        }
    }

    #[test]
    fn missing_keys_are_reported() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("subscription_id");
        let err = parse(v).unwrap_err();
        assert_eq!(
            (err.account_id.as_str(), err.field.as_str()),
            ("acc_42", "subscription_id")
        );
    }

    #[test]
    fn http_is_allowed_for_local_targets_only_when_asked() {
        let mut v = base();
        v["url"] = json!("http://127.0.0.1:9000/hook");
        assert!(parse(v.clone()).is_err());
        let opts = ParseOptions {
            allow_private_targets: true,
        };
        assert!(parse_record(v.as_object().unwrap(), opts).is_ok());
    }
}
