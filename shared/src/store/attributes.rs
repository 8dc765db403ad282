//! DynamoDB attribute values as plain JSON, so record parsing stays a pure function over JSON.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Number, Value};

fn number(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        // DynamoDB numbers can exceed f64; keep them as text rather than lose them.
        .unwrap_or_else(|| Value::String(text.to_string()))
}

/// A string attribute.
pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn to_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(list) => Value::Array(list.iter().map(to_json).collect()),
        AttributeValue::M(map) => Value::Object(item_to_json(map)),
        AttributeValue::Ss(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(set) => Value::Array(set.iter().map(|n| number(n)).collect()),
        AttributeValue::B(b) => Value::String(STANDARD.encode(b.as_ref())),
        AttributeValue::Bs(set) => {
            Value::Array(set.iter().map(|b| Value::String(STANDARD.encode(b.as_ref()))).collect())
        }
        _ => Value::Null,
    }
}

pub fn item_to_json(item: &std::collections::HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn converts_every_kind() {
        let item: HashMap<String, AttributeValue> = [
            ("s", AttributeValue::S("x".into())),
            ("i", AttributeValue::N("42".into())),
            ("f", AttributeValue::N("0.5".into())),
            ("b", AttributeValue::Bool(true)),
            ("n", AttributeValue::Null(true)),
            ("l", AttributeValue::L(vec![AttributeValue::S("a".into())])),
            (
                "m",
                AttributeValue::M([("k".to_string(), AttributeValue::N("1".into()))].into()),
            ),
            ("ss", AttributeValue::Ss(vec!["a".into()])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            Value::Object(item_to_json(&item)),
            json!({"s": "x", "i": 42, "f": 0.5, "b": true, "n": null, "l": ["a"], "m": {"k": 1}, "ss": ["a"]})
        );
    }
}
