//! The input envelope the platform publishes and the 14 typed input events (docs/design.md §3).
//!
//! Parsing is strict about what we rely on and lenient about the rest: required fields must be
//! present with the right type, unknown fields are ignored so the platform can add fields without
//! breaking us. Every error names the field (as a JSON path) and what was wrong with it.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest body we accept: the SQS/SNS message limit.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deepest JSON nesting we accept inside an event (serde_json itself stops at 128).
pub const MAX_DEPTH: usize = 32;

/// An RFC 3339 instant, normalised to UTC. Parsing accepts any offset; output is `...Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn parse(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|_| format!("not an RFC 3339 timestamp such as 2026-11-30T10:15:00Z: {s:?}"))
    }
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

/// An error code as the platform sends it: a string, or an integer (kept as its decimal text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Code(#[schemars(with = "CodeSchema")] pub String);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CodeSchema {
    Text(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Code(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Code(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string or an integer, got {}",
                json_kind(&other)
            ))),
        }
    }
}

/// Delivery status of one message (sms.status_changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Sent,
    Delivered,
    Failed,
    Bounced,
    Expired,
}

impl Status {
    /// Delivered, failed, bounced and expired end a message's life.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered | Status::Failed | Status::Bounced | Status::Expired
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SmsReceived {
    pub message_id: String,
    pub from: String,
    /// The virtual number the message was sent to.
    pub to: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SmsStatusChanged {
    pub message_id: String,
    pub status: Status,
    pub recipient: String,
    #[serde(default)]
    pub campaign_id: Option<String>,
    #[serde(default)]
    pub error_code: Option<Code>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BalanceChanged {
    pub balance: f64,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignStarted {
    pub campaign_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scheduled_at: Option<Timestamp>,
    pub recipient_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignCompleted {
    pub campaign_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub total_sent: Option<u64>,
    #[serde(default)]
    pub delivered: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    pub code: Code,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignFailed {
    pub campaign_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub error: ErrorDetail,
    #[serde(default)]
    pub affected_recipients: Option<u64>,
}

/// A contact as the platform describes it: phone, name, email, custom_fields, and whatever else.
pub type Contact = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContactAdded {
    pub contact_id: String,
    pub contact: Contact,
    #[serde(default)]
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContactUpdated {
    pub contact_id: String,
    /// The full new contact object.
    pub contact: Contact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContactDeleted {
    pub contact_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageScheduled {
    pub message_id: String,
    pub send_at: Timestamp,
    pub recipients: Vec<String>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageCancelled {
    pub message_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OriginalMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reply {
    pub message_id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AutoReplySent {
    pub original_message: OriginalMessage,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SenderIdApproved {
    pub sender_id: String,
    #[serde(default)]
    pub approved_at: Option<Timestamp>,
    /// Free-form: countries, message types, anything the carrier imposed.
    #[serde(default)]
    pub restrictions: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SenderIdRejected {
    pub sender_id: String,
    pub reason: String,
    #[serde(default)]
    pub resubmission_guidelines: Option<String>,
}

macro_rules! event_types {
    ($($variant:ident($data:ty) = $name:literal),+ $(,)?) => {
        /// The input event types, by their wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),+ }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(EventType::$variant),)+ _ => None }
            }
            /// The JSON Schema of this type's `data`.
            pub fn data_schema(self) -> schemars::Schema {
                match self { $(EventType::$variant => schemars::schema_for!($data)),+ }
            }
        }

        /// The typed `data` of an input event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData { $($variant($data)),+ }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self { $(EventData::$variant(_) => EventType::$variant),+ }
            }
            fn parse(ty: EventType, data: Value) -> Result<Self, ParseError> {
                match ty { $(EventType::$variant => parse_data(data).map(EventData::$variant)),+ }
            }
        }
    };
}

event_types! {
    SmsReceived(SmsReceived) = "sms.received",
    SmsStatusChanged(SmsStatusChanged) = "sms.status_changed",
    BalanceChanged(BalanceChanged) = "account.balance_changed",
    CampaignStarted(CampaignStarted) = "campaign.started",
    CampaignCompleted(CampaignCompleted) = "campaign.completed",
    CampaignFailed(CampaignFailed) = "campaign.failed",
    ContactAdded(ContactAdded) = "contact.added",
    ContactUpdated(ContactUpdated) = "contact.updated",
    ContactDeleted(ContactDeleted) = "contact.deleted",
    MessageScheduled(MessageScheduled) = "message.scheduled",
    MessageCancelled(MessageCancelled) = "message.cancelled",
    AutoReplySent(AutoReplySent) = "auto_reply.sent",
    SenderIdApproved(SenderIdApproved) = "sender_id.approved",
    SenderIdRejected(SenderIdRejected) = "sender_id.rejected",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed input event.
#[derive(Debug, Clone, PartialEq)]
pub struct InputEvent {
    /// Unique per fact; the deduplication key.
    pub id: String,
    pub account_id: String,
    pub occurred_at: Timestamp,
    pub data: EventData,
}

impl InputEvent {
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }
}

/// Why an input message could not be parsed. `field` is a JSON path (`data.error.code`), or
/// empty when the problem is the message as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is JSON {0}, not an object")]
    NotObject(&'static str),
    #[error("body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("`{field}` is missing")]
    Missing { field: String },
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
    #[error("`type` {0:?} is not a known input event type")]
    UnknownType(String),
}

impl ParseError {
    /// The JSON path of the offending field, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Missing { field } | ParseError::Invalid { field, .. } => Some(field),
            ParseError::UnknownType(_) => Some("type"),
            _ => None,
        }
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn required_string(obj: &mut Map<String, Value>, field: &str) -> Result<String, ParseError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(ParseError::Missing { field: field.into() }),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ParseError::Invalid {
            field: field.into(),
            reason: "must not be empty".into(),
        }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ParseError::Invalid {
            field: field.into(),
            reason: format!("expected a string, got {}", json_kind(&other)),
        }),
    }
}

fn parse_data<T: DeserializeOwned>(data: Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde reports a missing field at the enclosing object's path.
        if let Some(name) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let field = if path == "." {
                format!("data.{name}")
            } else {
                format!("data.{path}.{name}")
            };
            return ParseError::Missing { field };
        }
        let field = if path == "." {
            "data".to_string()
        } else {
            format!("data.{path}")
        };
        // Drop serde_json's " at line 1 column 12" suffix: the path says where.
        let reason = match inner.rfind(" at line ") {
            Some(i) => inner[..i].to_string(),
            None => inner,
        };
        ParseError::Invalid { field, reason }
    })
}

/// Parse one message body (the raw SNS message, as delivered to SQS) into a typed event.
pub fn parse_event(body: &str) -> Result<InputEvent, ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge {
            size: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let value: Value = serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    if depth(&value) > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    let mut obj = match value {
        Value::Object(o) => o,
        other => return Err(ParseError::NotObject(json_kind(&other))),
    };
    let id = required_string(&mut obj, "id")?;
    let type_name = required_string(&mut obj, "type")?;
    let ty = EventType::from_name(&type_name).ok_or(ParseError::UnknownType(type_name))?;
    let account_id = required_string(&mut obj, "account_id")?;
    let occurred_at = required_string(&mut obj, "occurred_at")?;
    let occurred_at = Timestamp::parse(&occurred_at).map_err(|reason| ParseError::Invalid {
        field: "occurred_at".into(),
        reason,
    })?;
    let data = match obj.remove("data") {
        None | Some(Value::Null) => return Err(ParseError::Missing { field: "data".into() }),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(ParseError::Invalid {
                field: "data".into(),
                reason: format!("expected an object, got {}", json_kind(&other)),
            })
        }
    };
    let data = EventData::parse(ty, data)?;
    Ok(InputEvent {
        id,
        account_id,
        occurred_at,
        data,
    })
}

// The envelope, for the JSON Schema only (parsing is `parse_event`).
/// An input event as the platform publishes it to the EventsTopic.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Envelope<D> {
    /// Unique per fact: the deduplication key.
    id: String,
    /// The input event type.
    #[serde(rename = "type")]
    ty: String,
    account_id: String,
    occurred_at: Timestamp,
    data: D,
}

/// JSON Schema of the envelope: `type` is one of the known names and `data` an object.
pub fn envelope_schema() -> schemars::Schema {
    let mut schema = schemars::schema_for!(Envelope<Map<String, Value>>);
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("type".into(), serde_json::json!({"type": "string", "enum": names}));
    }
    schema.insert("title".into(), "InputEvent".into());
    schema
}

/// JSON Schema of one input type: the envelope with `type` fixed and `data` typed.
pub fn event_schema(ty: EventType) -> schemars::Schema {
    let mut schema = with_typed_data(envelope_schema(), ty.as_str(), ty.data_schema(), &[]);
    schema.insert("title".into(), ty.as_str().into());
    schema
}

/// An envelope's schema with `type` fixed to `name` and `data` replaced by `data`'s schema: its
/// definitions hoisted to the root (so its `$ref`s resolve there), its `$schema` and the keys
/// `strip` names dropped. Shared by the input events and the webhooks (crate::contract).
pub(crate) fn with_typed_data(
    mut schema: schemars::Schema,
    name: &str,
    data: schemars::Schema,
    strip: &[&str],
) -> schemars::Schema {
    let mut data = data.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(defs)) = data.remove("$defs") {
        let root = schema
            .ensure_object()
            .entry("$defs")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(root) = root.as_object_mut() {
            root.extend(defs);
        }
    }
    data.remove("$schema");
    for key in strip {
        data.remove(*key);
    }
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("type".into(), serde_json::json!({"const": name}));
        props.insert("data".into(), Value::Object(data));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(ty: &str, data: Value) -> String {
        json!({"id": "evt_1", "type": ty, "account_id": "acc_42",
               "occurred_at": "2026-11-30T10:15:00Z", "data": data})
        .to_string()
    }

    #[test]
    fn parses_sms_received() {
        let ev = parse_event(&envelope(
            "sms.received",
            json!({"message_id": "m1", "from": "+15550001111", "to": "+15559990000", "body": "hi", "extra": 1}),
        ))
        .unwrap();
        assert_eq!(ev.id, "evt_1");
        assert_eq!(ev.account_id, "acc_42");
        assert_eq!(ev.occurred_at.to_rfc3339(), "2026-11-30T10:15:00Z");
        match ev.data {
            EventData::SmsReceived(d) => assert_eq!(d.body, "hi"),
            other => panic!("wrong variant {other:?}"),
        }
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let mut v: Value = serde_json::from_str(&envelope("contact.deleted", json!({"contact_id": "c1"}))).unwrap();
        v["occurred_at"] = json!("2026-11-30T12:15:00+02:00");
        let ev = parse_event(&v.to_string()).unwrap();
        assert_eq!(ev.occurred_at.to_rfc3339(), "2026-11-30T10:15:00Z");
    }

    #[test]
    fn every_type_name_round_trips() {
        assert_eq!(EventType::ALL.len(), 14);
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(String, ParseError)> = vec![
            ("nope".into(), ParseError::NotJson("expected ident at line 1 column 2".into())),
            ("[1]".into(), ParseError::NotObject("an array")),
            (json!({"type": "sms.received"}).to_string(), ParseError::Missing { field: "id".into() }),
            (
                json!({"id": 7}).to_string(),
                ParseError::Invalid { field: "id".into(), reason: "expected a string, got a number".into() },
            ),
            (envelope("sms.exploded", json!({})), ParseError::UnknownType("sms.exploded".into())),
            (
                envelope("sms.received", json!({"message_id": "m", "from": "a", "to": "b"})),
                ParseError::Missing { field: "data.body".into() },
            ),
            (
                envelope("sms.received", json!([])),
                ParseError::Invalid { field: "data".into(), reason: "expected an object, got an array".into() },
            ),
            (
                envelope("campaign.failed", json!({"campaign_id": "c", "error": {"message": "x"}})),
                ParseError::Missing { field: "data.error.code".into() },
            ),
            (
                envelope("campaign.failed", json!({"campaign_id": "c", "error": {"code": [1], "message": "x"}})),
                ParseError::Invalid {
                    field: "data.error.code".into(),
                    reason: "expected a string or an integer, got an array".into(),
                },
            ),
            (
                envelope("account.balance_changed", json!({"balance": "12"})),
                ParseError::Invalid {
                    field: "data.balance".into(),
                    reason: "invalid type: string \"12\", expected f64".into(),
                },
            ),
            (
                envelope("sms.status_changed", json!({"message_id": "m", "status": "lost", "recipient": "r"})),
                ParseError::Invalid {
                    field: "data.status".into(),
                    reason: "unknown variant `lost`, expected one of `pending`, `sent`, `delivered`, `failed`, `bounced`, `expired`".into(),
                },
            ),
            (
                envelope("message.scheduled", json!({"message_id": "m", "send_at": "tomorrow", "recipients": [], "body": "b"})),
                ParseError::Invalid {
                    field: "data.send_at".into(),
                    reason: "not an RFC 3339 timestamp such as 2026-11-30T10:15:00Z: \"tomorrow\"".into(),
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_event(&body), Err(want), "body: {body}");
        }
    }

    #[test]
    fn occurred_at_must_be_rfc3339() {
        let mut v: Value = serde_json::from_str(&envelope("contact.deleted", json!({"contact_id": "c"}))).unwrap();
        v["occurred_at"] = json!("30/11/2026");
        let err = parse_event(&v.to_string()).unwrap_err();
        assert_eq!(err.field(), Some("occurred_at"));
    }

    #[test]
    fn limits_size_and_depth() {
        let big = envelope(
            "sms.received",
            json!({"message_id": "m", "from": "a", "to": "b", "body": "x".repeat(MAX_BODY_BYTES)}),
        );
        assert!(matches!(parse_event(&big), Err(ParseError::TooLarge { .. })));
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        let body = envelope("contact.deleted", json!({"contact_id": "c", "reason": deep}));
        assert_eq!(parse_event(&body), Err(ParseError::TooDeep));
    }

    #[test]
    fn numeric_error_codes_become_text() {
        let ev = parse_event(&envelope(
            "sms.status_changed",
            json!({"message_id": "m", "status": "bounced", "recipient": "r", "error_code": 30003}),
        ))
        .unwrap();
        match ev.data {
            EventData::SmsStatusChanged(d) => {
                assert_eq!(d.error_code, Some(Code("30003".into())));
                assert!(d.status.is_final());
            }
            other => panic!("{other:?}"),
        }
    }
}
