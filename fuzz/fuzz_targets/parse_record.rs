//! Any JSON object as a subscription record: validation never panics, and an error never carries
//! a valid secret of the record (unless the record's own ids contain that text, which errors
//! must name).
#![no_main]
use dataflows_shared::signing::Secret;
use dataflows_shared::subscription::{parse_record, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(item)) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let ids: String = ["account_id", "subscription_id"]
        .iter()
        .filter_map(|k| item.get(*k).map(|v| v.to_string()))
        .collect();
    let secrets: Vec<&str> = item
        .get("secrets")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .chain(item.get("secret"))
        .filter_map(|v| v.as_str())
        .filter(|s| Secret::parse(s).is_ok() && !ids.contains(*s))
        .collect();
    for allow in [false, true] {
        if let Err(e) = parse_record(&item, ParseOptions { allow_private_targets: allow }) {
            let text = e.to_string();
            for s in &secrets {
                assert!(!text.contains(s), "secret in error: {text}");
            }
        }
    }
});
