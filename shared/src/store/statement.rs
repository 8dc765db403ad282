//! One statement of a PartiQL batch ([`super::partiql`]), written as the JSON the request carries
//! when it is made, and DynamoDB's JSON for an attribute value.

use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::logging::push_json_str;

/// An item as DynamoDB returns it.
pub type Item = std::collections::HashMap<String, AttributeValue>;

/// One statement of a batch, as the JSON object the request carries: its text, its parameters,
/// and `ALL_OLD` (the item as it was when its condition fails). Written once, when the statement
/// is made ([`StatementWriter`]): the delivery makes two for every webhook, and a statement kept
/// as `AttributeValue`s cost about ten allocations to build, another pass to write into the body
/// and as many frees (docs/performance.md, "Fifth pass").
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    json: String,
}

/// A statement's text, JSON-escaped once for every statement that uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementText(Arc<str>);

impl StatementText {
    pub fn new(text: &str) -> Self {
        let mut escaped = String::with_capacity(text.len() + 8);
        push_json_str(&mut escaped, text);
        StatementText(escaped.into())
    }
}

/// Writes one statement's JSON: the parameters in the order of the text's `?`.
pub struct StatementWriter {
    json: String,
    first: bool,
}

impl StatementWriter {
    pub fn new(text: &StatementText) -> Self {
        let mut json = String::with_capacity(text.0.len() + 320);
        json.push_str("{\"Statement\":");
        json.push_str(&text.0);
        json.push_str(",\"Parameters\":[");
        StatementWriter { json, first: true }
    }

    fn next(&mut self) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.json.push(',');
        }
        &mut self.json
    }

    /// A string parameter.
    pub fn s(mut self, value: &str) -> Self {
        let out = self.next();
        out.push_str("{\"S\":");
        push_json_str(out, value);
        out.push('}');
        self
    }

    /// A number parameter.
    pub fn n(mut self, value: i64) -> Self {
        let out = self.next();
        out.push_str("{\"N\":\"");
        out.push_str(itoa::Buffer::new().format(value));
        out.push_str("\"}");
        self
    }

    /// Any other parameter.
    pub fn attribute(mut self, value: &AttributeValue) -> Self {
        push_attribute(self.next(), value);
        self
    }

    /// A parameter whose JSON is written by `write` (one attribute value).
    pub fn with(mut self, write: impl FnOnce(&mut String)) -> Self {
        write(self.next());
        self
    }

    pub fn finish(mut self) -> Statement {
        self.json
            .push_str("],\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\"}");
        Statement { json: self.json }
    }
}

impl Statement {
    /// A statement from its text and parameters (tests, and callers off the hot path).
    pub fn new(text: &str, parameters: &[AttributeValue]) -> Self {
        parameters
            .iter()
            .fold(StatementWriter::new(&StatementText::new(text)), |w, p| w.attribute(p))
            .finish()
    }

    /// The statement's JSON object, as the request carries it.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The text, read back from the JSON (for transports that take it apart: the test suite's
    /// SDK batch).
    pub fn text(&self) -> String {
        let value: Value = serde_json::from_str(&self.json).expect("a statement is valid JSON");
        value["Statement"].as_str().unwrap_or_default().to_string()
    }

    /// The parameters, read back from the JSON (as [`Statement::text`]).
    pub fn parameters(&self) -> Vec<AttributeValue> {
        let value: Value = serde_json::from_str(&self.json).expect("a statement is valid JSON");
        value["Parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| read_attribute(p).expect("written by push_attribute"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One attribute value in DynamoDB's JSON (`{"S":"..."}`, `{"N":"..."}`, ...).
pub(crate) fn push_attribute(out: &mut String, value: &AttributeValue) {
    let strings = |out: &mut String, tag: &str, items: &mut dyn Iterator<Item = &str>| {
        out.push_str("{\"");
        out.push_str(tag);
        out.push_str("\":[");
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(out, item);
        }
        out.push_str("]}");
    };
    match value {
        AttributeValue::S(s) => {
            out.push_str("{\"S\":");
            push_json_str(out, s);
            out.push('}');
        }
        AttributeValue::N(n) => {
            out.push_str("{\"N\":");
            push_json_str(out, n);
            out.push('}');
        }
        AttributeValue::Bool(b) => out.push_str(if *b { "{\"BOOL\":true}" } else { "{\"BOOL\":false}" }),
        AttributeValue::Null(_) => out.push_str("{\"NULL\":true}"),
        AttributeValue::B(b) => {
            out.push_str("{\"B\":");
            push_json_str(out, &STANDARD.encode(b.as_ref()));
            out.push('}');
        }
        AttributeValue::L(list) => {
            out.push_str("{\"L\":[");
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_attribute(out, item);
            }
            out.push_str("]}");
        }
        AttributeValue::M(map) => {
            out.push_str("{\"M\":{");
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, key);
                out.push(':');
                push_attribute(out, item);
            }
            out.push_str("}}");
        }
        AttributeValue::Ss(set) => strings(out, "SS", &mut set.iter().map(String::as_str)),
        AttributeValue::Ns(set) => strings(out, "NS", &mut set.iter().map(String::as_str)),
        AttributeValue::Bs(set) => {
            let encoded: Vec<String> = set.iter().map(|b| STANDARD.encode(b.as_ref())).collect();
            strings(out, "BS", &mut encoded.iter().map(String::as_str))
        }
        // A variant added to the SDK after this was written: never built by this crate.
        _ => out.push_str("{\"NULL\":true}"),
    }
}

/// One attribute value from DynamoDB's JSON.
pub(crate) fn read_attribute(value: &Value) -> Result<AttributeValue, String> {
    let Some((tag, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Err(format!("not an attribute value: {value}"));
    };
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{tag} is not a string"))
    };
    let texts = |v: &Value| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{tag} is not a list"))?
            .iter()
            .map(text)
            .collect()
    };
    let blob = |v: &Value| -> Result<Blob, String> {
        STANDARD
            .decode(text(v)?)
            .map(Blob::new)
            .map_err(|e| format!("{tag}: {e}"))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text(inner)?),
        "N" => AttributeValue::N(text(inner)?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or("BOOL is not a boolean")?),
        "NULL" => AttributeValue::Null(true),
        "B" => AttributeValue::B(blob(inner)?),
        "SS" => AttributeValue::Ss(texts(inner)?),
        "NS" => AttributeValue::Ns(texts(inner)?),
        "BS" => AttributeValue::Bs(
            inner
                .as_array()
                .ok_or("BS is not a list")?
                .iter()
                .map(blob)
                .collect::<Result<_, _>>()?,
        ),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or("L is not a list")?
                .iter()
                .map(read_attribute)
                .collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(read_item(inner.as_object().ok_or("M is not a map")?)?),
        other => return Err(format!("unknown attribute type {other:?}")),
    })
}

/// An item from DynamoDB's JSON.
pub(crate) fn read_item(item: &Map<String, Value>) -> Result<Item, String> {
    item.iter()
        .map(|(k, v)| {
            read_attribute(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("attribute {k:?}: {e}"))
        })
        .collect()
}
