//! The receiver's contract, machine-readable: a JSON Schema per webhook (schemas/webhooks/) and
//! an AsyncAPI 3.0 document of them all (schemas/asyncapi.json), generated from the types that
//! build the bodies ([`crate::payload`]) and the catalogue's examples ([`crate::catalogue`]).
//! shared/tests/suite/schemas.rs keeps the files current; `make contract` validates the AsyncAPI
//! document with the reference parser and every example against its schema.

use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::catalogue::Example;
use crate::event::Timestamp;
use crate::payload::*;
use crate::trigger::Trigger;

// For the JSON Schema only: bodies are built by `crate::webhook::Webhook`, whose test pins the
// same shape.
/// A webhook's body, as DataFlows POSTs it to a subscription's url.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct WebhookEnvelope<D> {
    /// The trigger.
    #[serde(rename = "type")]
    ty: String,
    /// When the fact happened (the input event's `occurred_at`; for an operational webhook,
    /// when delivery observed it).
    timestamp: Timestamp,
    account_id: String,
    /// The input event (or operational notice) that fired it.
    event_id: String,
    data: D,
}

fn data_schema(trigger: Trigger) -> schemars::Schema {
    use Trigger::*;
    match trigger {
        SmsReceived => schemars::schema_for!(SmsReceivedData),
        SmsStatusChanged => schemars::schema_for!(SmsStatusChangedData),
        BalanceLow => schemars::schema_for!(BalanceLowData),
        CampaignStarted => schemars::schema_for!(CampaignStartedData),
        CampaignCompleted => schemars::schema_for!(CampaignCompletedData),
        CampaignFailed => schemars::schema_for!(CampaignFailedData),
        ContactAdded => schemars::schema_for!(ContactAddedData),
        ContactUpdated => schemars::schema_for!(ContactUpdatedData),
        ContactDeleted => schemars::schema_for!(ContactDeletedData),
        MessageScheduled => schemars::schema_for!(MessageScheduledData),
        MessageCancelled => schemars::schema_for!(MessageCancelledData),
        KeywordMatched => schemars::schema_for!(KeywordMatchedData),
        AutoReplySent => schemars::schema_for!(AutoReplySentData),
        DeliveryRateLow => schemars::schema_for!(DeliveryRateLowData),
        BounceRateHigh => schemars::schema_for!(BounceRateHighData),
        SenderIdApproved => schemars::schema_for!(SenderIdApprovedData),
        SenderIdRejected => schemars::schema_for!(SenderIdRejectedData),
        SubscriptionFailing => schemars::schema_for!(SubscriptionFailingData),
        SubscriptionDisabled => schemars::schema_for!(SubscriptionDisabledData),
        WebhookDeadLettered => schemars::schema_for!(WebhookDeadLetteredData),
    }
}

/// Every object with named properties requires all of them: the types never skip a field.
/// Other properties stay allowed, so a receiver that validates keeps working when a later
/// version adds a field (docs/receivers.md, "Versioning").
fn require_every_property(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                // Sorted: the same list whichever order the map keeps its keys in.
                let mut names: Vec<String> = props.keys().cloned().collect();
                names.sort();
                let names: Vec<Value> = names.into_iter().map(Value::String).collect();
                map.insert("required".into(), Value::Array(names));
            }
            for (key, child) in map.iter_mut() {
                if key != "examples" && key != "properties" {
                    require_every_property(child);
                } else if key == "properties" {
                    // A property's name is not a keyword: look inside each property's schema.
                    if let Value::Object(props) = child {
                        props.values_mut().for_each(require_every_property);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(require_every_property),
        _ => {}
    }
}

/// The JSON Schema of one webhook's body: the envelope with `type` fixed, `data` typed, when it
/// fires as the description, and the catalogue's example body under `examples`.
pub fn webhook_schema(example: &Example) -> schemars::Schema {
    let trigger = example.trigger;
    let body: Value = serde_json::from_slice(&example.webhook().body).expect("a JSON body");
    let mut schema = crate::event::with_typed_data(
        schemars::schema_for!(WebhookEnvelope<Map<String, Value>>),
        trigger.as_str(),
        data_schema(trigger),
        &["title", "description"],
    );
    schema.insert("title".into(), trigger.as_str().into());
    schema.insert("description".into(), example.when.into());
    schema.insert("examples".into(), Value::Array(vec![body]));
    let mut value = Value::Object(std::mem::take(schema.ensure_object()));
    require_every_property(&mut value);
    schemars::Schema::try_from(value).expect("an object is a schema")
}

/// `v` as the files of schemas/ hold it: pretty JSON, every object's keys sorted, a final newline.
/// The same text whichever order serde_json keeps keys in (its `preserve_order` feature differs
/// between builds), so `dataflows webhooks schema` prints exactly the published file.
pub fn canonical_text(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(v)).expect("JSON always serializes") + "\n"
}

/// Every `"$ref": "#/$defs/X"` under `v` pointed at `#/components/schemas/X`.
fn refs_to_components(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            map.values_mut().for_each(refs_to_components);
        }
        Value::Array(items) => items.iter_mut().for_each(refs_to_components),
        _ => {}
    }
}

/// The headers every webhook carries (Standard Webhooks).
fn headers_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "webhook-id": {
                "type": "string", "pattern": "^(msg|ntc)_[0-9a-f]{32}$",
                "description": "The webhook's id: the same on every attempt of the same webhook to the same subscription. Deduplicate on it."
            },
            "webhook-timestamp": {
                "type": "string", "pattern": "^[0-9]+$",
                "description": "When this attempt was signed, in unix seconds. Refuse one more than 5 minutes from your clock."
            },
            "webhook-signature": {
                "type": "string", "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$",
                "description": "One `v1,<base64>` per active secret of the subscription, space separated: HMAC-SHA256 under the secret over `{webhook-id}.{webhook-timestamp}.{body}`. Accept the webhook if any one verifies."
            },
            "content-type": {"type": "string", "const": "application/json"}
        },
        "required": ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"]
    })
}

/// The AsyncAPI 3.0 document of the webhooks: the subscriber's endpoint as the channel, one
/// message per trigger with its payload schema and the catalogue's example, the signature
/// headers, and Standard Webhooks' HMAC-SHA256 as the security scheme. `examples` must hold one
/// example per trigger, in [`Trigger::EVERY`] order.
pub fn asyncapi(examples: &[Example], version: &str) -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operation_messages = Vec::new();
    for trigger in Trigger::EVERY {
        let example = examples
            .iter()
            .find(|x| x.trigger == *trigger)
            .expect("an example of every trigger");
        let body: Value = serde_json::from_slice(&example.webhook().body).expect("a JSON body");
        let mut schema = Value::from(webhook_schema(example));
        let object = schema.as_object_mut().expect("an object");
        object.remove("$schema");
        object.remove("examples");
        if let Some(Value::Object(defs)) = object.remove("$defs") {
            schemas.extend(defs);
        }
        let name = trigger.as_str();
        schemas.insert(name.to_string(), schema);
        let kind = if trigger.is_operational() {
            "Operational webhook (about the account's own deliveries)."
        } else {
            "Fired by the platform's `"
        };
        let summary = if trigger.is_operational() {
            kind.to_string()
        } else {
            format!("{kind}{}` events.", example.fired_by)
        };
        messages.insert(
            name.to_string(),
            json!({
                "name": name,
                "title": name,
                "summary": summary,
                "description": example.when,
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/WebhookHeaders"},
                "payload": {"$ref": format!("#/components/schemas/{name}")},
                "examples": [{"name": name, "headers": {
                    "webhook-id": example.webhook().id_for("crm").as_str(),
                    "webhook-timestamp": example.at.0.timestamp().to_string(),
                    "webhook-signature": "v1,<base64 HMAC-SHA256>",
                    "content-type": "application/json"
                }, "payload": body}],
                "tags": [{"name": if trigger.is_operational() { "operational" } else { "trigger" }}]
            }),
        );
        channel_messages.insert(
            name.to_string(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        operation_messages.push(json!({"$ref": format!("#/channels/subscriber/messages/{name}")}));
    }
    schemas.insert("WebhookHeaders".into(), headers_schema());
    // The definitions now live under components: every reference follows them.
    let mut schemas = Value::Object(schemas);
    refs_to_components(&mut schemas);
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "DataFlows SMS webhooks",
            "version": version,
            "description": "The webhooks DataFlows sends to a subscription's URL: the 17 triggers of the SMS platform's events and 3 operational webhooks about the account's own deliveries. Each is an HTTPS POST of a JSON body, signed per Standard Webhooks (https://www.standardwebhooks.com). Generated from the types that build the bodies; see docs/webhooks.md and docs/receivers.md.",
            "license": {"name": "Proprietary"}
        },
        "defaultContentType": "application/json",
        "servers": {
            "receiver": {
                "host": "{receiverHost}",
                "protocol": "https",
                "description": "The subscription's `url`: the customer's endpoint. DataFlows POSTs every webhook to it.",
                "variables": {"receiverHost": {"description": "The host (and port) of the subscription's url.", "examples": ["crm.example.com"]}},
                "security": [{"$ref": "#/components/securitySchemes/standardWebhooks"}]
            }
        },
        "channels": {
            "subscriber": {
                "address": null,
                "title": "The subscriber's endpoint",
                "description": "The path and query of the subscription's `url`, as the customer configured it. One channel carries every trigger the subscription names; the body's `type` tells them apart.",
                "servers": [{"$ref": "#/servers/receiver"}],
                "messages": channel_messages
            }
        },
        "operations": {
            "sendWebhook": {
                "action": "send",
                "title": "Deliver a webhook",
                "summary": "POST one webhook to the subscription's url; a 2xx answer within the timeout is a delivery, anything else is retried on the schedule (docs/receivers.md, \"Answering\").",
                "channel": {"$ref": "#/channels/subscriber"},
                "messages": operation_messages,
                "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}}
            }
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "standardWebhooks": {
                    "type": "httpApiKey",
                    "name": "webhook-signature",
                    "in": "header",
                    "description": "Standard Webhooks v1 signature: HMAC-SHA256 with the subscription's secret (`whsec_` + base64 of its bytes) over `{webhook-id}.{webhook-timestamp}.{raw body}`, base64, prefixed `v1,`. Each active secret of the subscription signs (two during a rotation), space separated; accept the webhook when any one verifies, and refuse a `webhook-timestamp` more than 5 minutes from your clock."
                }
            }
        }
    })
}
