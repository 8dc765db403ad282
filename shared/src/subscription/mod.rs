//! Subscription records (docs/design.md §5): what a customer writes into the Subscriptions table, and
//! their validation. Parsing works on plain JSON (the DynamoDB adapter converts attribute values
//! first), so every rule here is a pure function with a table test.

use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

use crate::event::json_kind;
use crate::filter::Filter;
use crate::signing::{Secret, SecretError};
use crate::trigger::Trigger;

mod conditions;
mod headers;
mod keywords;
mod secrets;

pub use conditions::MAX_RATE_LIMIT;
use conditions::{parse_balance_low, parse_rate_alert, parse_rate_limit};
use headers::parse_headers;
use keywords::parse_keywords;
pub use keywords::{KeywordRule, MatchType};
use secrets::parse_secrets;

pub const MAX_SECRETS: usize = 10;
pub const MAX_KEYWORDS: usize = 50;
pub const MAX_KEYWORD_LEN: usize = 256;
pub use crate::patterns::{MAX_ACCOUNT_REGEX_BYTES, MAX_REGEX_BYTES};
/// Regex keyword rules per subscription, each at most [`MAX_REGEX_BYTES`] compiled and matched
/// in linear time; an account's together at most [`MAX_ACCOUNT_REGEX_BYTES`] (see
/// [`RegexBudget`]).
pub const MAX_REGEX_KEYWORDS: usize = 10;
/// Subscriptions read per account; records past the 100th (by subscription id) are reported and
/// ignored, so one account cannot make every one of its events evaluate thousands of records.
pub const MAX_SUBSCRIPTIONS_PER_ACCOUNT: usize = 100;
/// A record's size as JSON: real records are a few KB.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Custom headers per subscription, and their names and values together, in bytes.
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Which triggers a subscription wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggers {
    All,
    Only(Vec<Trigger>),
}

impl Triggers {
    pub fn contains(&self, t: Trigger) -> bool {
        match self {
            // "*" is the 17 triggers; the operational webhooks are asked for by name.
            Triggers::All => !t.is_operational(),
            Triggers::Only(list) => list.contains(&t),
        }
    }
}

/// balance.low settings: fire below `threshold`, re-arm at or above `rearm_above`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceLow {
    pub threshold: f64,
    pub rearm_above: f64,
}

/// delivery_rate.low / bounce_rate.high settings. `threshold` is a fraction (0.9 = 90%).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateAlert {
    pub threshold: f64,
    pub window_minutes: u32,
    pub min_samples: u32,
    pub cooldown_minutes: u32,
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
    /// EventBridge-style pattern over the webhook body; `None` passes everything.
    pub filter: Option<Filter>,
    pub balance_low: Option<BalanceLow>,
    pub delivery_rate_low: Option<RateAlert>,
    pub bounce_rate_high: Option<RateAlert>,
    pub keywords: Vec<KeywordRule>,
    /// Match the compliance keywords (STOP, START, HELP...); default true.
    pub reserved_keywords: bool,
    /// Requests per second the receiver takes (Svix's endpoint `rateLimit`); `None`: no limit
    /// configured, the sender adapts to 429 and 503 answers instead (docs/design.md, "Pacing").
    pub rate_limit: Option<f64>,
    /// Written by the system: unix seconds of the first failed attempt since the last success.
    pub failing_since: Option<i64>,
    /// `account_id` and `subscription_id` as the engine's maps key them, built once when the
    /// record is read rather than for every webhook.
    key: SubscriptionKey,
}

/// Where a subscription lives: its account and its id within the account (the table's key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionKey {
    pub account_id: String,
    pub subscription_id: String,
}

impl std::fmt::Display for SubscriptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account_id, self.subscription_id)
    }
}

impl Subscription {
    pub fn key(&self) -> &SubscriptionKey {
        &self.key
    }

    /// Whether this subscription should receive `trigger` at all.
    pub fn wants(&self, trigger: Trigger) -> bool {
        self.enabled && self.triggers.contains(trigger)
    }

    /// Whether this subscription receives this webhook body: trigger, enabled, and filter.
    pub fn accepts(&self, trigger: Trigger, body: &Value) -> bool {
        self.wants(trigger) && self.filter.as_ref().is_none_or(|f| f.matches(body))
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
        Some(other) => Err(format!("key `{key}` is {}, not a non-empty string", json_kind(other))),
        None => Err(format!("key `{key}` is missing")),
    }
}

/// Parse and validate one record. The key attributes come first so every later error names them.
pub fn parse_record(item: &Map<String, Value>, opts: ParseOptions) -> Result<Subscription, RecordError> {
    parse_record_within(item, opts, &mut RegexBudget::unlimited())
}

/// What an account's keyword regexes may still take compiled, spent record by record as they
/// are read (in subscription-id order, so every function refuses the same records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegexBudget {
    /// What the account's valid records may still hold compiled.
    pub left: usize,
    pub limit: usize,
    /// What may still be examined (compiled to be sized), refused records included: so that
    /// records refused one after the other cannot make a function compile without end.
    pub examine_left: usize,
}

impl RegexBudget {
    /// One account's budget: [`MAX_ACCOUNT_REGEX_BYTES`] held, twice that examined.
    pub fn account() -> Self {
        RegexBudget {
            left: MAX_ACCOUNT_REGEX_BYTES,
            limit: MAX_ACCOUNT_REGEX_BYTES,
            examine_left: 2 * MAX_ACCOUNT_REGEX_BYTES,
        }
    }

    /// No account budget: one record on its own (`subscription validate`).
    pub fn unlimited() -> Self {
        RegexBudget {
            left: usize::MAX,
            limit: usize::MAX,
            examine_left: usize::MAX,
        }
    }
}

/// [`parse_record`], with the record's regex rules counted against `budget`: a record whose
/// regexes do not fit what is left is refused, and its regexes not compiled past the point where
/// the budget ran out. The budget is spent only by a record that is valid.
pub fn parse_record_within(
    item: &Map<String, Value>,
    opts: ParseOptions,
    budget: &mut RegexBudget,
) -> Result<Subscription, RecordError> {
    let sub = parse_record_inner(item, opts, budget).map_err(|e| redact(e, item))?;
    let spent: usize = sub.keywords.iter().map(|k| k.regex_bytes).sum();
    budget.left = budget.left.saturating_sub(spent);
    Ok(sub)
}

/// Errors name fields by their keys, and keys are the customer's text (a header name, a filter
/// path): scrub the record's secrets from an error wherever they appear, so it is safe to log.
fn redact(mut e: RecordError, item: &Map<String, Value>) -> RecordError {
    let raw = item
        .get("secrets")
        .map(|v| decode_json_text(v).unwrap_or_else(|| v.clone()));
    let mut secrets: Vec<String> = raw
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
        .chain(item.get("secret").cloned())
        .filter_map(|v| v.as_str().map(str::trim).map(str::to_string))
        .flat_map(|s| {
            let tail = s.strip_prefix("whsec_").map(str::to_string);
            [Some(s), tail].into_iter().flatten()
        })
        .filter(|s| s.len() >= 8)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in &secrets {
        for text in [&mut e.field, &mut e.reason, &mut e.account_id, &mut e.subscription_id] {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), "<redacted>");
            }
        }
    }
    e
}

fn parse_record_inner(
    item: &Map<String, Value>,
    opts: ParseOptions,
    budget: &mut RegexBudget,
) -> Result<Subscription, RecordError> {
    let size = serde_json::to_vec(item).map_or(usize::MAX, |v| v.len());
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
    if size > MAX_RECORD_BYTES {
        return Err(ctx.err(
            "record",
            format!("is {size} bytes as JSON; at most {MAX_RECORD_BYTES} are allowed"),
        ));
    }

    let url = parse_url(&ctx, item.get("url"), opts)?;
    let secrets = parse_secrets(&ctx, item)?;
    let triggers = parse_triggers(&ctx, item.get("triggers"))?;
    let enabled = match item.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => return Err(ctx.err("enabled", format!("must be a boolean, got {}", json_kind(other)))),
    };
    let headers = parse_headers(&ctx, item.get("headers"))?;
    let description = match item.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(ctx.err("description", format!("must be a string, got {}", json_kind(other)))),
    };
    let filter = match item.get("filter").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let decoded = decode_json_text(v);
            let pattern = decoded.as_ref().unwrap_or(v);
            Some(Filter::compile(pattern).map_err(|e| ctx.err(&format!("filter.{}", e.path), e.reason))?)
        }
    };
    let balance_low = parse_balance_low(&ctx, item.get("balance_low"))?;
    let delivery_rate_low = parse_rate_alert(&ctx, "delivery_rate_low", item.get("delivery_rate_low"))?;
    let bounce_rate_high = parse_rate_alert(&ctx, "bounce_rate_high", item.get("bounce_rate_high"))?;
    let keywords = parse_keywords(&ctx, item.get("keywords"), budget)?;
    let reserved_keywords = match item.get("reserved_keywords") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ctx.err(
                "reserved_keywords",
                format!("must be a boolean, got {}", json_kind(other)),
            ))
        }
    };
    let rate_limit = parse_rate_limit(&ctx, item.get("rate_limit"))?;
    let failing_since = item.get("failing_since").and_then(Value::as_i64);
    Ok(Subscription {
        key: SubscriptionKey {
            account_id: account_id.clone(),
            subscription_id: subscription_id.clone(),
        },
        account_id,
        subscription_id,
        url,
        secrets,
        triggers,
        enabled,
        headers,
        description,
        filter,
        balance_low,
        delivery_rate_low,
        bounce_rate_high,
        keywords,
        reserved_keywords,
        rate_limit,
        failing_since,
    })
}

fn object<'v>(
    ctx: &Ctx,
    field: &str,
    v: &'v Value,
    decoded: &'v Option<Value>,
) -> Result<&'v Map<String, Value>, RecordError> {
    as_map(v, decoded).ok_or_else(|| ctx.err(field, format!("must be a map, got {}", json_kind(v))))
}

fn number(ctx: &Ctx, field: &str, v: Option<&Value>) -> Result<Option<f64>, RecordError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| ctx.err(field, "must be a finite number")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| ctx.err(field, format!("must be a number, got the string {s:?}"))),
        Some(other) => Err(ctx.err(field, format!("must be a number, got {}", json_kind(other)))),
    }
}

fn whole(
    ctx: &Ctx,
    field: &str,
    v: Option<&Value>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, RecordError> {
    match number(ctx, field, v)? {
        None => Ok(default),
        Some(n) if n.fract() == 0.0 && n >= *range.start() as f64 && n <= *range.end() as f64 => Ok(n as u32),
        Some(n) => Err(ctx.err(
            field,
            format!(
                "must be a whole number from {} to {}, got {n}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_url(ctx: &Ctx, v: Option<&Value>, opts: ParseOptions) -> Result<Url, RecordError> {
    let text = match v {
        Some(Value::String(s)) => s,
        Some(other) => return Err(ctx.err("url", format!("must be a string, got {}", json_kind(other)))),
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
        other => return Err(ctx.err("url", format!("scheme {other:?} is not supported; use https"))),
    }
    let literal = match url.host() {
        None => return Err(ctx.err("url", "has no host")),
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !opts.allow_private_targets && (d == "localhost" || d.ends_with(".localhost")) {
                return Err(ctx.err(
                    "url",
                    "points at this machine (localhost); webhooks go to public hosts only",
                ));
            }
            None
        }
    };
    if let Some(ip) = literal.filter(|ip| !opts.allow_private_targets && !crate::addresses::is_allowed(*ip)) {
        return Err(ctx.err(
            "url",
            format!(
                "host {ip} is a private, loopback, link-local or reserved address; webhooks go to public hosts only"
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.err("url", "must not carry credentials; use `headers` for authentication"));
    }
    Ok(url)
}

fn parse_triggers(ctx: &Ctx, v: Option<&Value>) -> Result<Triggers, RecordError> {
    let v = v.ok_or_else(|| ctx.err("triggers", "is missing (a list of trigger names, or \"*\")"))?;
    if v.as_str() == Some("*") {
        return Ok(Triggers::All);
    }
    let decoded = decode_json_text(v);
    let list = as_list(v, &decoded).ok_or_else(|| {
        ctx.err(
            "triggers",
            format!("must be a list of trigger names or \"*\", got {}", json_kind(v)),
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
        let trigger = name.parse::<Trigger>().map_err(|e| ctx.err(&field, e.to_string()))?;
        if !out.contains(&trigger) {
            out.push(trigger);
        }
    }
    Ok(Triggers::Only(out))
}

#[cfg(test)]
mod tests;
