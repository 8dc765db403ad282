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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Exact,
    StartsWith,
    Contains,
    Regex,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::StartsWith => "starts_with",
            MatchType::Contains => "contains",
            MatchType::Regex => "regex",
        }
    }
}

/// One keyword rule, validated when the record is read; a regex rule is compiled only when a
/// message is first matched against it, once per process (crate::patterns).
#[derive(Debug, Clone)]
pub struct KeywordRule {
    pub keyword: String,
    pub match_type: MatchType,
    pub case_sensitive: bool,
    /// The keyword as compared: lowercased unless case-sensitive.
    folded: String,
    /// A regex rule's compiled size (heap bytes); 0 for the others.
    pub regex_bytes: usize,
}

impl KeywordRule {
    /// Whether `text` (an inbound SMS body) matches this rule. Text is trimmed first.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.trim();
        if self.match_type == MatchType::Regex {
            return crate::patterns::compiled(&self.keyword, self.case_sensitive).is_some_and(|re| re.is_match(text));
        }
        let owned;
        let text = if self.case_sensitive {
            text
        } else {
            owned = text.to_lowercase();
            owned.as_str()
        };
        match self.match_type {
            MatchType::Exact => text == self.folded,
            MatchType::StartsWith => {
                // A whole word: "JOIN" matches "join now" but not "joint".
                text.strip_prefix(self.folded.as_str())
                    .is_some_and(|rest| rest.is_empty() || !rest.starts_with(|c: char| c.is_alphanumeric()))
            }
            MatchType::Contains => text.contains(self.folded.as_str()),
            MatchType::Regex => false,
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
    pub fn key(&self) -> SubscriptionKey {
        SubscriptionKey {
            account_id: self.account_id.clone(),
            subscription_id: self.subscription_id.clone(),
        }
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

/// Headers a subscription may not set: the transport's own, and (by prefix, below) every
/// `webhook-*` name, the Standard Webhooks contract's namespace.
const RESERVED_HEADERS: &[&str] = &[
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

fn parse_balance_low(ctx: &Ctx, v: Option<&Value>) -> Result<Option<BalanceLow>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let decoded = decode_json_text(v);
    let map = object(ctx, "balance_low", v, &decoded)?;
    let threshold = number(ctx, "balance_low.threshold", map.get("threshold"))?
        .ok_or_else(|| ctx.err("balance_low.threshold", "is required"))?;
    let rearm_above = number(ctx, "balance_low.rearm_above", map.get("rearm_above"))?.unwrap_or(threshold);
    if rearm_above < threshold {
        return Err(ctx.err(
            "balance_low.rearm_above",
            format!("({rearm_above}) must be at least the threshold ({threshold})"),
        ));
    }
    Ok(Some(BalanceLow { threshold, rearm_above }))
}

/// The highest `rate_limit` a record may ask for, in requests per second.
pub const MAX_RATE_LIMIT: f64 = 10_000.0;

fn parse_rate_limit(ctx: &Ctx, v: Option<&Value>) -> Result<Option<f64>, RecordError> {
    let Some(rate) = number(ctx, "rate_limit", v)? else {
        return Ok(None);
    };
    if !(rate > 0.0 && rate <= MAX_RATE_LIMIT) {
        return Err(ctx.err(
            "rate_limit",
            format!(
                "must be a number of requests per second above 0 and at most {MAX_RATE_LIMIT} \
                 (fractions allowed: 0.5 is one request every 2 s), got {rate}"
            ),
        ));
    }
    Ok(Some(rate))
}

fn parse_rate_alert(ctx: &Ctx, name: &str, v: Option<&Value>) -> Result<Option<RateAlert>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let decoded = decode_json_text(v);
    let map = object(ctx, name, v, &decoded)?;
    let field = |f: &str| format!("{name}.{f}");
    let threshold = number(ctx, &field("threshold"), map.get("threshold"))?
        .ok_or_else(|| ctx.err(&field("threshold"), "is required"))?;
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(ctx.err(
            &field("threshold"),
            format!("must be a fraction between 0 and 1 (0.9 for 90%), got {threshold}"),
        ));
    }
    Ok(Some(RateAlert {
        threshold,
        window_minutes: whole(ctx, &field("window_minutes"), map.get("window_minutes"), 60, 1..=1440)?,
        min_samples: whole(ctx, &field("min_samples"), map.get("min_samples"), 50, 1..=1_000_000)?,
        cooldown_minutes: whole(
            ctx,
            &field("cooldown_minutes"),
            map.get("cooldown_minutes"),
            60,
            0..=10_080,
        )?,
    }))
}

fn parse_keywords(ctx: &Ctx, v: Option<&Value>, budget: &mut RegexBudget) -> Result<Vec<KeywordRule>, RecordError> {
    let (regex_left, regex_limit) = (budget.left, budget.limit);
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let decoded = decode_json_text(v);
    let list = as_list(v, &decoded)
        .ok_or_else(|| ctx.err("keywords", format!("must be a list of rules, got {}", json_kind(v))))?;
    if list.len() > MAX_KEYWORDS {
        return Err(ctx.err(
            "keywords",
            format!("has {} rules; at most {MAX_KEYWORDS} are allowed", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut regexes = 0;
    let mut regex_spent = 0usize;
    for (i, rule) in list.iter().enumerate() {
        let field = |f: &str| format!("keywords[{i}]{f}");
        let map = rule.as_object().ok_or_else(|| {
            ctx.err(
                &field(""),
                format!("must be a map with `keyword`, got {}", json_kind(rule)),
            )
        })?;
        let keyword = match map.get("keyword") {
            Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= MAX_KEYWORD_LEN => k.trim().to_string(),
            Some(Value::String(_)) => {
                return Err(ctx.err(&field(".keyword"), format!("must be 1 to {MAX_KEYWORD_LEN} characters")))
            }
            Some(other) => {
                return Err(ctx.err(
                    &field(".keyword"),
                    format!("must be a string, got {}", json_kind(other)),
                ))
            }
            None => return Err(ctx.err(&field(".keyword"), "is required")),
        };
        let match_type = match map.get("match") {
            None | Some(Value::Null) => MatchType::Exact,
            Some(m) => match m.as_str() {
                Some("exact") => MatchType::Exact,
                Some("starts_with") => MatchType::StartsWith,
                Some("contains") => MatchType::Contains,
                Some("regex") => MatchType::Regex,
                _ => {
                    return Err(ctx.err(
                        &field(".match"),
                        format!("{m} is not one of exact, starts_with, contains, regex"),
                    ))
                }
            },
        };
        let case_sensitive = match map.get("case_sensitive") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ctx.err(
                    &field(".case_sensitive"),
                    format!("must be a boolean, got {}", json_kind(other)),
                ))
            }
        };
        let regex = if match_type == MatchType::Regex {
            regexes += 1;
            if regexes > MAX_REGEX_KEYWORDS {
                return Err(ctx.err(
                    &field(".match"),
                    format!("is the regex rule number {regexes}; at most {MAX_REGEX_KEYWORDS} are allowed"),
                ));
            }
            let over_budget = |needed: Option<usize>| {
                ctx.err(
                    &field(".keyword"),
                    format!(
                        "puts the account's regex keyword rules over their budget of {} KiB compiled \
                         ({}; earlier records, by subscription id, took the rest): use fewer or \
                         simpler regex rules, or starts_with/contains",
                        regex_limit / 1024,
                        needed.map_or("no room left to compile it".into(), |n| format!(
                            "it needs {} KiB",
                            n.div_ceil(1024)
                        ))
                    ),
                )
            };
            // Known sizes cost nothing; an unknown pattern is compiled only if there is room.
            // The same decisions in every process: what a pattern costs is the same whether this
            // process compiled it before or not.
            let left = regex_left.saturating_sub(regex_spent);
            let checked = match crate::patterns::known_size(&keyword, case_sensitive) {
                Some(answer) => answer,
                None if left == 0 || budget.examine_left == 0 => return Err(over_budget(None)),
                None => crate::patterns::check(&keyword, case_sensitive),
            };
            if budget.examine_left == 0 {
                return Err(over_budget(None));
            }
            budget.examine_left = budget
                .examine_left
                .saturating_sub(*checked.as_ref().unwrap_or(&MAX_REGEX_BYTES));
            let bytes =
                checked.map_err(|e| ctx.err(&field(".keyword"), format!("is not a valid regex: {}", one_line(&e))))?;
            if bytes > left {
                return Err(over_budget(Some(bytes)));
            }
            regex_spent += bytes;
            bytes
        } else {
            0
        };
        let folded = if case_sensitive {
            keyword.clone()
        } else {
            keyword.to_lowercase()
        };
        out.push(KeywordRule {
            keyword,
            match_type,
            case_sensitive,
            folded,
            regex_bytes: regex,
        });
    }
    Ok(out)
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

fn parse_secrets(ctx: &Ctx, item: &Map<String, Value>) -> Result<Vec<Secret>, RecordError> {
    let parse_one = |field: String, v: &Value| -> Result<Secret, RecordError> {
        match v {
            Value::String(s) => Secret::parse(s).map_err(|e: SecretError| ctx.err(&field, e.to_string())),
            other => Err(ctx.err(&field, format!("must be a string, got {}", json_kind(other)))),
        }
    };
    match (item.get("secrets"), item.get("secret")) {
        (Some(_), Some(_)) => Err(ctx.err("secrets", "give either `secrets` or `secret`, not both")),
        (Some(v), None) => {
            let decoded = decode_json_text(v);
            let list = as_list(v, &decoded)
                .ok_or_else(|| ctx.err("secrets", format!("must be a list of strings, got {}", json_kind(v))))?;
            if list.is_empty() || list.len() > MAX_SECRETS {
                return Err(ctx.err(
                    "secrets",
                    format!("has {} entries; 1 to {MAX_SECRETS} are required", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| parse_one(format!("secrets[{i}]"), s))
                .collect()
        }
        (None, Some(v)) => Ok(vec![parse_one("secret".into(), v)?]),
        (None, None) => Err(ctx.err("secrets", "is missing (give `secrets` as a list, or `secret`)")),
    }
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

fn parse_headers(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<(HeaderName, HeaderValue)>, RecordError> {
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
    if map.len() > MAX_HEADERS {
        return Err(ctx.err(
            "headers",
            format!("has {} entries; at most {MAX_HEADERS} are allowed", map.len()),
        ));
    }
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ctx.err(
            "headers",
            format!("names and values add up to {bytes} bytes; at most {MAX_HEADER_BYTES} are allowed"),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let field = format!("headers.{name}");
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| ctx.err(&field, "is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("webhook-") {
            return Err(ctx.err(&field, "is set by the webhook sender and cannot be overridden"));
        }
        let text = value
            .as_str()
            .ok_or_else(|| ctx.err(&field, format!("must be a string, got {}", json_kind(value))))?;
        let mut value = HeaderValue::from_str(text).map_err(|_| ctx.err(&field, "is not a valid header value"))?;
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

    /// The base record with some attributes replaced.
    fn patched(patch: &Value) -> Value {
        let mut v = base();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
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
    fn a_rate_limit_is_a_positive_number_of_requests_per_second() {
        assert_eq!(parse(base()).unwrap().rate_limit, None, "no limit unless asked");
        for (given, rate) in [
            (json!(5), 5.0),
            (json!(0.5), 0.5),
            (json!("12.5"), 12.5),
            (json!(10_000), 10_000.0),
        ] {
            let mut v = base();
            v["rate_limit"] = given.clone();
            assert_eq!(parse(v).unwrap().rate_limit, Some(rate), "{given}");
        }
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
            (json!({"secrets": []}), "secrets", "has 0 entries; 1 to 10 are required"),
            (json!({"secrets": ["nope"]}), "secrets[0]", "must start with \"whsec_\""),
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
            (json!({"enabled": "yes"}), "enabled", "must be a boolean, got a string"),
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
            let v = patched(&patch);
            let err = parse(v.clone()).unwrap_err();
            assert_eq!((err.field.as_str(), err.reason.as_str()), (field, reason), "record {v}");
            assert_eq!(
                (err.account_id.as_str(), err.subscription_id.as_str()),
                ("acc_42", "sub_1")
            );
            assert!(!err.to_string().contains("MfKQ9r8"), "secret leaked: {err}");
        }
    }

    #[test]
    fn an_accounts_regexes_share_one_budget_and_refused_records_stop_compiling() {
        // The largest regexes the per-pattern limit lets through, distinct per record.
        let record = |r: usize, rules: usize| {
            let keywords: Vec<Value> = (0..rules)
                .map(|k| json!({"keyword": format!("(b{r}y{k})(?-u:\\w){{660}}b"), "match": "regex"}))
                .collect();
            patched(&json!({"subscription_id": format!("sub_{r}"), "keywords": keywords}))
        };
        let read = |records: &[Value]| {
            let mut budget = RegexBudget::account();
            let out: Vec<Result<Subscription, RecordError>> = records
                .iter()
                .map(|v| parse_record_within(v.as_object().unwrap(), ParseOptions::default(), &mut budget))
                .collect();
            (out, budget)
        };
        let records: Vec<Value> = (0..40).map(|r| record(r, 3)).collect();
        let (out, budget) = read(&records);
        let valid = out.iter().filter(|r| r.is_ok()).count();
        assert!((2..40).contains(&valid), "{valid} of 40 fit");
        assert!(
            out[..valid].iter().all(Result::is_ok),
            "the first records, by id, are the ones kept"
        );
        let spent: usize = out
            .iter()
            .flatten()
            .flat_map(|s| &s.keywords)
            .map(|k| k.regex_bytes)
            .sum();
        assert!(spent <= MAX_ACCOUNT_REGEX_BYTES && budget.left == MAX_ACCOUNT_REGEX_BYTES - spent);
        let e = out[valid].as_ref().unwrap_err();
        assert!(e.field.starts_with("keywords["), "{e}");
        assert!(
            e.reason.contains("over their budget of 1024 KiB compiled"),
            "{}",
            e.reason
        );
        assert_eq!(budget.examine_left, 0, "refused records used up what may be compiled");
        assert!(
            out.last()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .reason
                .contains("no room left to compile it"),
            "the last ones were refused without compiling"
        );
        // The next cache miss, with every pattern known to this process, decides the same.
        let (again, _) = read(&records);
        let same: Vec<bool> = again.iter().map(Result::is_ok).collect();
        assert_eq!(same, out.iter().map(Result::is_ok).collect::<Vec<_>>());
        // A record on its own (validate) has no account budget.
        assert!(parse(record(99, 10)).is_ok());
    }

    #[test]
    fn parses_conditions_filters_and_keywords() {
        let mut v = base();
        v["filter"] = json!("{\"data\": {\"status\": [\"failed\"]}}");
        v["balance_low"] = json!({"threshold": 100});
        v["delivery_rate_low"] = json!({"threshold": 0.9, "min_samples": 20});
        v["bounce_rate_high"] = json!("{\"threshold\": \"0.05\", \"window_minutes\": 30}");
        v["keywords"] = json!([{"keyword": "join", "match": "starts_with"}, {"keyword": "^ORDER\\s+\\d+$", "match": "regex"},
                               {"keyword": "Promo", "case_sensitive": true}]);
        v["reserved_keywords"] = json!(false);
        let s = parse(v).unwrap();
        assert_eq!(
            s.balance_low,
            Some(BalanceLow {
                threshold: 100.0,
                rearm_above: 100.0
            })
        );
        assert_eq!(s.delivery_rate_low.unwrap().window_minutes, 60);
        assert_eq!(s.delivery_rate_low.unwrap().min_samples, 20);
        assert_eq!(s.bounce_rate_high.unwrap().threshold, 0.05);
        assert_eq!(s.bounce_rate_high.unwrap().cooldown_minutes, 60);
        assert!(!s.reserved_keywords);
        assert!(s.accepts(Trigger::SmsReceived, &json!({"data": {"status": "failed"}})));
        assert!(!s.accepts(Trigger::SmsReceived, &json!({"data": {"status": "delivered"}})));
        let k = &s.keywords;
        assert!(k[0].matches("  JOIN now") && k[0].matches("join") && !k[0].matches("joint"));
        assert!(k[1].matches("order 4821") && !k[1].matches("order #4821"));
        assert!(k[2].matches("Promo") && !k[2].matches("promo"));
    }

    #[test]
    fn condition_errors_name_the_field() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"filter": {"data": {"status": "failed"}}}),
                "filter.data.status",
                "must be a list of conditions or a nested pattern, got a string",
            ),
            (
                json!({"balance_low": {"rearm_above": 5}}),
                "balance_low.threshold",
                "is required",
            ),
            (
                json!({"balance_low": {"threshold": "lots"}}),
                "balance_low.threshold",
                "must be a number, got the string \"lots\"",
            ),
            (
                json!({"balance_low": {"threshold": 100, "rearm_above": 50}}),
                "balance_low.rearm_above",
                "(50) must be at least the threshold (100)",
            ),
            (
                json!({"delivery_rate_low": {"threshold": 90}}),
                "delivery_rate_low.threshold",
                "must be a fraction between 0 and 1 (0.9 for 90%), got 90",
            ),
            (
                json!({"bounce_rate_high": {"threshold": 0.1, "window_minutes": 0}}),
                "bounce_rate_high.window_minutes",
                "must be a whole number from 1 to 1440, got 0",
            ),
            (
                json!({"bounce_rate_high": [1]}),
                "bounce_rate_high",
                "must be a map, got an array",
            ),
            (
                json!({"keywords": [{"keyword": "(unclosed", "match": "regex"}]}),
                "keywords[0].keyword",
                "is not a valid regex: regex parse error: (unclosed ^ error: unclosed group",
            ),
            (
                json!({"keywords": [{"keyword": "a{1000}{1000}", "match": "regex"}]}),
                "keywords[0].keyword",
                "is not a valid regex: Compiled regex exceeds size limit of 65536 bytes.",
            ),
            (
                json!({"keywords": (0..11).map(|i| json!({"keyword": format!("k{i}"), "match": "regex"})).collect::<Vec<_>>()}),
                "keywords[10].match",
                "is the regex rule number 11; at most 10 are allowed",
            ),
            (
                json!({"headers": (0..21).map(|i| (format!("x-h{i}"), json!("v"))).collect::<Map<String, Value>>()}),
                "headers",
                "has 21 entries; at most 20 are allowed",
            ),
            (
                json!({"headers": {"x-big": "v".repeat(8 * 1024)}}),
                "headers",
                "names and values add up to 8197 bytes; at most 8192 are allowed",
            ),
            (
                json!({"headers": {"Webhook-Version": "2"}}),
                "headers.Webhook-Version",
                "is set by the webhook sender and cannot be overridden",
            ),
            (
                json!({"url": "https://10.0.0.7/hook"}),
                "url",
                "host 10.0.0.7 is a private, loopback, link-local or reserved address; webhooks go to public hosts only",
            ),
            (
                json!({"url": "https://[::ffff:8.8.8.8]/hook"}),
                "url",
                "host ::ffff:8.8.8.8 is a private, loopback, link-local or reserved address; webhooks go to public hosts only",
            ),
            (
                json!({"url": "https://2130706433/hook"}),
                "url",
                "host 127.0.0.1 is a private, loopback, link-local or reserved address; webhooks go to public hosts only",
            ),
            (
                json!({"url": "https://api.LOCALHOST./hook"}),
                "url",
                "points at this machine (localhost); webhooks go to public hosts only",
            ),
            (
                json!({"description": "d".repeat(MAX_RECORD_BYTES)}),
                "record",
                "is 65721 bytes as JSON; at most 65536 are allowed",
            ),
            (
                json!({"keywords": [{"keyword": "x", "match": "fuzzy"}]}),
                "keywords[0].match",
                "\"fuzzy\" is not one of exact, starts_with, contains, regex",
            ),
            (
                json!({"keywords": [{"match": "exact"}]}),
                "keywords[0].keyword",
                "is required",
            ),
            (
                json!({"reserved_keywords": "no"}),
                "reserved_keywords",
                "must be a boolean, got a string",
            ),
            (
                json!({"rate_limit": 0}),
                "rate_limit",
                "must be a number of requests per second above 0 and at most 10000 (fractions allowed: 0.5 \
                 is one request every 2 s), got 0",
            ),
            (
                json!({"rate_limit": -5}),
                "rate_limit",
                "must be a number of requests per second above 0 and at most 10000 (fractions allowed: 0.5 \
                 is one request every 2 s), got -5",
            ),
            (
                json!({"rate_limit": 10_001}),
                "rate_limit",
                "must be a number of requests per second above 0 and at most 10000 (fractions allowed: 0.5 \
                 is one request every 2 s), got 10001",
            ),
            (
                json!({"rate_limit": "fast"}),
                "rate_limit",
                "must be a number, got the string \"fast\"",
            ),
            (json!({"rate_limit": [5]}), "rate_limit", "must be a number, got an array"),
        ];
        for (patch, field, reason) in cases {
            let v = patched(&patch);
            let err = parse(v.clone()).unwrap_err();
            assert_eq!((err.field.as_str(), err.reason.as_str()), (field, reason), "record {v}");
        }
    }

    /// Found by fuzzing (fuzz/corpus/parse_record/seed_regression_secret_in_header_name): a header
    /// *name* holding the secret was echoed in the error's field.
    #[test]
    fn errors_never_echo_a_secret_even_inside_a_key() {
        let mut v = base();
        v["headers"] = json!({format!("x-k{S1}!"): "a\r\nInjected: 1"});
        let err = parse(v).unwrap_err();
        assert!(err.field.starts_with("headers.x-k<redacted>"), "{}", err.field);
        assert!(!err.to_string().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{err}");
        let mut v = base();
        v["filter"] = json!({S1: "not a list"});
        let err = parse(v).unwrap_err();
        assert!(!err.to_string().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{err}");
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
