//! The core cost of a webhook, without I/O: parse a 1 KiB `sms.received` message, evaluate it
//! against an account's 10 subscriptions (every one with a filter), build the webhook bodies and
//! sign every delivery. The figure that matters is per (event, subscription) pair: divide the
//! `core/event_x10_subscriptions` time by 10 (`make bench` prints it beside its target, 5 µs).
//!
//! The `filter` group: the worst case of filter matching beside the normal case and a baseline.
//!
//! `cargo bench -p dataflows-shared --bench core`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataflows_shared::delivery::task::{parse_message, Message};
use dataflows_shared::filter::Filter;
use dataflows_shared::plan;
use dataflows_shared::rules::stateless;
use dataflows_shared::signing::signature_header;
use dataflows_shared::subscription::{parse_record, ParseOptions, Subscription};
use dataflows_shared::Category;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::hint::black_box;

/// A received SMS whose envelope is exactly 1,024 bytes.
fn event_1kib() -> String {
    let make = |text: &str| {
        json!({
            "id": "evt_01JDX4Q8Z6W2M3N4P5R6S7T8V9",
            "type": "sms.received",
            "account_id": "acc_42",
            "occurred_at": "2026-11-30T10:15:00Z",
            "data": {"message_id": "msg_in_8f2a", "from": "+14155550123", "to": "+14155559876", "body": text}
        })
        .to_string()
    };
    let base = make("").len();
    let text = "Hi, is my order #4821 shipped yet? I also want a refund for the last one please. "
        .repeat(16)
        .chars()
        .take(1024 - base)
        .collect::<String>();
    let body = make(&text);
    assert_eq!(body.len(), 1024, "the benchmark event is 1 KiB");
    body
}

/// Ten subscriptions of one account, each with a filter; the event passes eight of them, so the
/// benchmark evaluates ten filters and builds and signs eight deliveries.
fn subscriptions() -> Vec<Subscription> {
    let filters: [Value; 10] = [
        json!({"data": {"from": [{"prefix": "+1415"}]}}),
        json!({"data": {"to": [{"suffix": "9876"}]}}),
        json!({"data": {"body": [{"wildcard": "*refund*"}]}}),
        json!({"data": {"body": [{"anything-but": {"equals-ignore-case": "stop"}}]}}),
        json!({"data": {"message_id": [{"exists": true}]}}),
        json!({"$or": [{"data": {"from": [{"prefix": "+44"}]}}, {"data": {"to": [{"prefix": "+1"}]}}]}),
        json!({"type": ["sms.received"], "account_id": ["acc_42"]}),
        json!({"data": {"from": [{"anything-but": {"prefix": "+1900"}}]}}),
        json!({"data": {"from": [{"prefix": "+44"}]}}),
        json!({"data": {"body": [{"equals-ignore-case": "stop"}]}}),
    ];
    filters
        .into_iter()
        .enumerate()
        .map(|(i, filter)| {
            let record = json!({
                "account_id": "acc_42",
                "subscription_id": format!("sub-{i}"),
                "url": format!("https://hooks{i}.example.com/sms"),
                "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
                "triggers": ["sms.received"],
                "enabled": true,
                "filter": filter,
            });
            parse_record(record.as_object().unwrap(), ParseOptions::default()).expect("a valid record")
        })
        .collect()
}

/// Everything the handler computes for one event, up to the bytes and headers it sends.
fn evaluate(body: &str, subs: &[Subscription], now: i64) -> usize {
    let Ok(Message::Event(event)) = parse_message(body) else {
        panic!("the benchmark event parses")
    };
    let emits = stateless(Category::Sms, &event).expect("sms.received needs no state");
    let webhooks = plan::webhooks(&event, &emits);
    let mut signed = 0;
    for d in plan::deliveries(&emits, &webhooks, subs) {
        let header = signature_header(
            &d.subscription.secrets,
            d.webhook_id.as_str(),
            now,
            &webhooks[d.webhook].body,
        );
        signed += black_box(header).len();
    }
    signed
}

fn core(c: &mut Criterion) {
    let body = event_1kib();
    let subs = subscriptions();
    let now = 1_796_033_700;
    let expected = {
        let Ok(Message::Event(event)) = parse_message(&body) else {
            panic!()
        };
        let emits = stateless(Category::Sms, &event).unwrap();
        plan::deliveries(&emits, &plan::webhooks(&event, &emits), &subs).len()
    };
    assert_eq!(expected, 8, "eight of the ten filters accept the event");

    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(subs.len() as u64));
    group.bench_function("event_x10_subscriptions", |b| {
        b.iter(|| evaluate(black_box(&body), black_box(&subs), now))
    });
    group.finish();

    // The baseline measured in the same run: one raw HMAC-SHA256 of the same 1 KiB, the least a
    // signed delivery costs. `make bench` states the core's target as a multiple of it, so the
    // verdict does not move with the machine's speed.
    let mut group = c.benchmark_group("baseline");
    group.bench_function("hmac_sha256_1kib", |b| {
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(&[7u8; 32])).unwrap();
            mac.update(black_box(body.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    group.finish();
}

/// Filter matching, worst case beside the normal one. The worst case is the largest pattern a
/// record may hold (a 4 KB run of `a`s ending in `b`, between stars) against a 250 KB field of `a`s,
/// which the backtracking matcher this replaced took n x m steps on; the baseline is one
/// substring search of the same field for the same run, which any matcher has to do at least
/// once. `make bench` prints the worst case as a multiple of the baseline (the quadratic matcher
/// this replaced took ~10^9 steps here; a linear one stays within a small multiple).
fn filter(c: &mut Criterion) {
    let normal = Filter::compile(&json!({"data": {"body": [{"wildcard": "*refund*"}]}})).unwrap();
    let event: Value = serde_json::from_str(&event_1kib()).unwrap();
    assert!(normal.matches(&event));
    // Almost matches at every position: the backtracking matcher's worst case (n x m steps).
    let run = format!("{}b", "a".repeat(4000));
    let pattern = format!("*{run}*"); // a run to find, not a suffix to compare
    assert!(pattern.len() < 4096);
    let hostile =
        Filter::compile(&json!({"data": {"body": [{"wildcard": pattern}]}})).expect("a valid record's filter");
    let field = "a".repeat(250_000);
    let big = json!({"data": {"body": field}});
    assert!(!hostile.matches(&big));

    let mut group = c.benchmark_group("filter");
    group.bench_function("normal_1kib", |b| b.iter(|| normal.matches(black_box(&event))));
    group.bench_function("hostile_wildcard_250kb", |b| {
        b.iter(|| hostile.matches(black_box(&big)))
    });
    group.bench_function("baseline_substring_250kb", |b| {
        b.iter(|| black_box(field.as_str()).contains(black_box(run.as_str())))
    });
    group.finish();
}

criterion_group!(benches, core, filter);
criterion_main!(benches);
