//! The JSON Schemas in schemas/ (the input events, every webhook) and the AsyncAPI document are
//! generated from the Rust types. This test fails when they are out of date;
//! `UPDATE_SCHEMAS=1 make schemas` rewrites them.

use std::path::PathBuf;

use dataflows_shared::catalogue::examples;
use dataflows_shared::contract::{asyncapi, canonical_text, webhook_schema};
use dataflows_shared::event::{envelope_schema, event_schema, EventType};
use dataflows_shared::trigger::Trigger;

fn check(path: PathBuf, schema: schemars::Schema, stale: &mut Vec<String>) {
    write_or_compare(path, serde_json::to_string_pretty(&schema).unwrap() + "\n", stale);
}

fn write_or_compare(path: PathBuf, text: String, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        stale.push(path.display().to_string());
    }
}

#[test]
fn schemas_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let mut stale = Vec::new();
    check(root.join("envelope.schema.json"), envelope_schema(), &mut stale);
    for ty in EventType::ALL {
        check(
            root.join(format!("events/{}.schema.json", ty.as_str())),
            event_schema(*ty),
            &mut stale,
        );
    }
    let examples = examples();
    for trigger in Trigger::EVERY {
        let example = examples.iter().find(|x| x.trigger == *trigger).unwrap();
        write_or_compare(
            root.join(format!("webhooks/{}.schema.json", trigger.as_str())),
            canonical_text(&webhook_schema(example).into()),
            &mut stale,
        );
    }
    write_or_compare(
        root.join("asyncapi.json"),
        canonical_text(&asyncapi(&examples, env!("CARGO_PKG_VERSION"))),
        &mut stale,
    );
    assert!(
        stale.is_empty(),
        "stale schemas (run UPDATE_SCHEMAS=1 make schemas): {stale:?}"
    );
}
