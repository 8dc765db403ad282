//! Any queue message body: parsing never panics, and an accepted event has its required fields.
#![no_main]
use dataflows_shared::delivery::task::{parse_message, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(Message::Event(e)) = parse_message(text) {
            assert!(!e.id.trim().is_empty() && !e.account_id.trim().is_empty());
        }
    }
});
