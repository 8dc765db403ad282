//! The record's table tests: every rule, every error naming its field.

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
