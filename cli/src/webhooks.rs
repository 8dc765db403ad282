//! `dataflows webhooks`: the receiver's contract from the binary (no stack needed).

use clap::Subcommand;
use serde_json::{json, Value};

use crate::common::*;
use dataflows_shared::catalogue;
use dataflows_shared::trigger::Trigger;

#[derive(Subcommand)]
pub(crate) enum WebhooksCmd {
    /// Every webhook type: what fires it, its category, its schema file.
    ///
    /// Example: dataflows webhooks list
    List,
    /// One webhook type's JSON Schema (as in schemas/webhooks/), with the catalogue's example.
    ///
    /// Example: dataflows webhooks schema sms.status_changed > sms.status_changed.schema.json
    Schema { trigger: String },
    /// The AsyncAPI 3.0 document of every webhook (as schemas/asyncapi.json).
    ///
    /// Example: dataflows webhooks asyncapi > asyncapi.json
    Asyncapi,
}

/// The contract commands: from the catalogue and the types built into this binary.
pub(crate) fn run(cmd: &WebhooksCmd) -> Outcome {
    let examples = catalogue::examples();
    match cmd {
        WebhooksCmd::List => {
            let list: Vec<Value> = examples
                .iter()
                .map(|x| {
                    json!({
                        "trigger": x.trigger.as_str(),
                        "category": x.trigger.category().map(|c| c.as_str()),
                        "operational": x.trigger.is_operational(),
                        "fired_by": x.fired_by,
                        "when": x.when,
                        "schema": format!("schemas/webhooks/{}.schema.json", x.trigger),
                    })
                })
                .collect();
            Ok(json!({"webhooks": list}))
        }
        WebhooksCmd::Schema { trigger } => {
            let trigger = trigger.parse::<Trigger>().map_err(|_| {
                let names: Vec<&str> = Trigger::EVERY.iter().map(|t| t.as_str()).collect();
                (
                    Failure::Check(format!("{trigger} is not a webhook type; one of: {}", names.join(", "))),
                    Value::Null,
                )
            })?;
            let example = examples
                .iter()
                .find(|x| x.trigger == trigger)
                .expect("an example of every trigger");
            Ok(Value::from(dataflows_shared::contract::webhook_schema(example)))
        }
        WebhooksCmd::Asyncapi => Ok(dataflows_shared::contract::asyncapi(
            &examples,
            env!("CARGO_PKG_VERSION"),
        )),
    }
}

/// The human form of this group's output (`--json` prints the document itself).
pub(crate) fn print(cmd: &WebhooksCmd, out: &Value) {
    match cmd {
        WebhooksCmd::List => {
            println!("{:<24} {:<13} {:<25} schema", "webhook", "category", "fired by");
            for w in out["webhooks"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<13} {:<25} {}",
                    w["trigger"].as_str().unwrap_or(""),
                    w["category"].as_str().unwrap_or("operational"),
                    w["fired_by"].as_str().unwrap_or(""),
                    w["schema"].as_str().unwrap_or("")
                );
                println!("    {}", w["when"].as_str().unwrap_or(""));
            }
        }
        // A schema or a document: printed byte for byte as the published file, to be saved or
        // piped (a closed pipe, as `| head` makes, is not an error).
        _ => {
            use std::io::Write;
            let _ = std::io::stdout()
                .lock()
                .write_all(dataflows_shared::contract::canonical_text(out).as_bytes());
        }
    }
}
