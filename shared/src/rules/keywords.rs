//! keyword.matched: the reserved compliance keywords (STOP, START, HELP...) and a subscription's
//! own rules, in that order, against an inbound message.

use crate::subscription::KeywordRule;

const RESERVED: &[(&str, &str)] = &[
    ("STOP", "opt_out"),
    ("STOPALL", "opt_out"),
    ("UNSUBSCRIBE", "opt_out"),
    ("CANCEL", "opt_out"),
    ("END", "opt_out"),
    ("QUIT", "opt_out"),
    ("REVOKE", "opt_out"),
    ("OPTOUT", "opt_out"),
    ("START", "opt_in"),
    ("YES", "opt_in"),
    ("UNSTOP", "opt_in"),
    ("HELP", "help"),
    ("INFO", "help"),
];

/// The reserved compliance keyword a message is, if any: the whole trimmed message, any case.
pub fn reserved_keyword(body: &str) -> Option<(&'static str, &'static str)> {
    let text = body.trim();
    RESERVED.iter().find(|(k, _)| k.eq_ignore_ascii_case(text)).copied()
}

/// What keyword.matched reports for one subscription: the reserved keyword first, then the first
/// of its own rules that matches. `(keyword, match_type, reserved)`.
pub fn keyword_match(
    body: &str,
    rules: &[KeywordRule],
    reserved_enabled: bool,
) -> Option<(String, &'static str, Option<&'static str>)> {
    if reserved_enabled {
        if let Some((keyword, kind)) = reserved_keyword(body) {
            return Some((keyword.to_string(), "exact", Some(kind)));
        }
    }
    rules
        .iter()
        .find(|r| r.matches(body))
        .map(|r| (r.keyword.clone(), r.match_type.as_str(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{parse_record, ParseOptions};
    use serde_json::{json, Value};

    fn rules(v: Value) -> Vec<KeywordRule> {
        let rec = json!({"account_id": "a", "subscription_id": "s", "url": "https://x.example.com",
                         "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*", "keywords": v});
        parse_record(rec.as_object().unwrap(), ParseOptions::default())
            .unwrap()
            .keywords
    }

    #[test]
    fn keywords_reserved_first_then_rules() {
        let r = rules(
            json!([{"keyword": "JOIN", "match": "starts_with"}, {"keyword": "stop", "match": "contains"},
                             {"keyword": "^order\\s+\\d+$", "match": "regex"}]),
        );
        assert_eq!(
            keyword_match("  stop ", &r, true),
            Some(("STOP".into(), "exact", Some("opt_out")))
        );
        assert_eq!(
            keyword_match("Unstop", &r, true),
            Some(("UNSTOP".into(), "exact", Some("opt_in")))
        );
        assert_eq!(
            keyword_match("info", &r, true),
            Some(("INFO".into(), "exact", Some("help")))
        );
        // Reserved keywords match the whole message only.
        assert_eq!(
            keyword_match("please stop now", &r, true),
            Some(("stop".into(), "contains", None))
        );
        assert_eq!(
            keyword_match("join us", &r, true),
            Some(("JOIN".into(), "starts_with", None))
        );
        assert_eq!(
            keyword_match("ORDER 12", &r, true),
            Some(("^order\\s+\\d+$".into(), "regex", None))
        );
        assert_eq!(
            keyword_match("STOP", &r, false),
            Some(("stop".into(), "contains", None)),
            "reserved off"
        );
        assert_eq!(keyword_match("hello", &r, true), None);
        assert_eq!(
            keyword_match("HELP", &[], true),
            Some(("HELP".into(), "exact", Some("help")))
        );
    }
}
