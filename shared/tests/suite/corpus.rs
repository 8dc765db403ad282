//! The bad-input corpus (tests/corpus/): every case fails with the exact error written down for
//! it, naming the field, and nothing panics. The integration tests send the same envelopes through
//! the real function and check where each one ends.

use std::path::PathBuf;

use dataflows_shared::delivery::task::parse_message;
use dataflows_shared::subscription::{parse_record, ParseOptions};
use serde_json::Value;

fn corpus(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_bad_envelope_fails_with_its_error() {
    let cases = corpus("envelopes.json");
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let got = match parse_message(case["body"].as_str().unwrap()) {
            Ok(m) => format!("parsed: {m:?}"),
            Err(e) => e.to_string(),
        };
        if got != case["error"].as_str().unwrap() {
            wrong.push(format!("{}: got {got:?}", case["name"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_bad_record_fails_with_its_field_and_reason() {
    let cases = corpus("records.json");
    let mut wrong = Vec::new();
    for case in &cases {
        let got = parse_record(case["record"].as_object().unwrap(), ParseOptions::default());
        match (got, case["field"].as_str()) {
            (Ok(_), None) => {}
            (Ok(_), Some(_)) => wrong.push(format!("{}: accepted", case["name"])),
            (Err(e), Some(field)) if e.field == field && e.reason == case["reason"].as_str().unwrap() => {
                assert!(!e.to_string().contains("MfKQ9r8GKYqrTwjU"), "secret in error: {e}");
            }
            (Err(e), _) => wrong.push(format!("{}: got `{}` {:?}", case["name"], e.field, e.reason)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
