//! Any JSON object as a subscription record: validation never panics, and errors never carry a
//! secret.
#![no_main]
use dataflows_shared::subscription::{parse_record, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(item)) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for allow in [false, true] {
        if let Err(e) = parse_record(&item, ParseOptions { allow_private_targets: allow }) {
            let text = e.to_string();
            for s in item.get("secrets").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str()) {
                if s.len() > 12 {
                    assert!(!text.contains(s), "secret in error: {text}");
                }
            }
        }
    }
});
