//! Any pattern against any body: compiling and matching never panic. Input: a pattern and a body,
//! as two JSON documents separated by a NUL byte.
#![no_main]
use dataflows_shared::filter::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |b| *b == 0);
    let (Some(p), Some(b)) = (parts.next(), parts.next()) else { return };
    let (Ok(pattern), Ok(body)) = (serde_json::from_slice(p), serde_json::from_slice(b)) else { return };
    if let Ok(f) = Filter::compile(&pattern) {
        let _ = f.matches(&body);
    }
});
