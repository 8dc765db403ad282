//! The subscription examples in docs/examples/subscriptions (DynamoDB JSON, usable with
//! `aws dynamodb put-item --item file://...`) are valid records.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use dataflows_shared::store::attributes::item_to_json;
use dataflows_shared::subscription::{parse_record, ParseOptions};
use serde_json::Value;

fn attribute(v: &Value) -> AttributeValue {
    let (kind, inner) = v.as_object().and_then(|o| o.iter().next()).expect("a typed attribute");
    match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str().unwrap().into()),
        "N" => AttributeValue::N(inner.as_str().unwrap().into()),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap()),
        "L" => AttributeValue::L(inner.as_array().unwrap().iter().map(attribute).collect()),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), attribute(v)))
                .collect(),
        ),
        other => panic!("unexpected attribute type {other}"),
    }
}

#[test]
fn documented_examples_are_valid_records() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/subscriptions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let item: HashMap<String, AttributeValue> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), attribute(v)))
            .collect();
        let record = parse_record(&item_to_json(&item), ParseOptions::default());
        assert!(record.is_ok(), "{}: {}", path.display(), record.unwrap_err());
        count += 1;
    }
    assert!(count >= 4);
}
