//! The unit tests of [`super`]: every branch, no I/O.

use super::*;

#[test]
fn retry_tasks_round_trip_and_events_still_parse() {
    let task = task();
    let text = serde_json::to_string(&task).unwrap();
    assert_eq!(parse_message(&text), Ok(Message::Retry(task)));
    let event = r#"{"id":"e","type":"contact.deleted","account_id":"a","occurred_at":"2026-11-30T10:00:00Z","data":{"contact_id":"c"}}"#;
    assert!(matches!(parse_message(event), Ok(Message::Event(_))));
    // Marked as a retry but not one: refused as such, never read as an event.
    let refused = parse_message(r#"{"dataflows_retry": 1, "id": "e", "type": "contact.deleted"}"#);
    assert!(
        matches!(&refused, Err(e @ ParseError::Invalid { .. }) if e.field() == Some("dataflows_retry")),
        "{refused:?}"
    );
    let refused = parse_message(r#"{"dataflows_dead_letter": 1}"#);
    assert!(
        matches!(&refused, Err(e) if e.field() == Some("dataflows_dead_letter")),
        "{refused:?}"
    );
    // A marker's name inside a value is not a marker.
    let event = r#"{"id":"e","type":"contact.deleted","account_id":"a","occurred_at":"2026-11-30T10:00:00Z","data":{"contact_id":"\"dataflows_retry\""}}"#;
    assert!(
        matches!(parse_message(event), Ok(Message::Event(_))),
        "{:?}",
        parse_message(event)
    );
}

fn key(byte: u8) -> SealKey {
    SealKey::new([byte; 32])
}

fn task() -> RetryTask {
    RetryTask {
        dataflows_retry: 1,
        webhook_id: "msg_1".into(),
        trigger: "sms.received".into(),
        account_id: "acc".into(),
        subscription_id: "sub".into(),
        event_id: "evt".into(),
        body: "{\"type\":\"sms.received\"}".into(),
        attempt: 2,
        first_attempt_at: 100,
        not_before: 105,
        held: None,
        bound: None,
        seal: String::new(),
    }
}

#[test]
fn a_seal_is_bound_to_its_queue_and_its_time() {
    let now = 1_796_000_000;
    let sealed = task().sealed_for(&key(1), "dataflows-sms", now);
    let wire = to_sqs_json(&sealed);
    let Ok(message) = parse_message(&wire) else {
        panic!("parses")
    };
    assert_eq!(message.refusal(&key(1), "dataflows-sms", now + 60), None);
    assert_eq!(
        message.refusal(&key(1), "dataflows-messaging", now + 60),
        Some("sealed for another queue"),
        "copied to another category's queue"
    );
    assert_eq!(
        message.refusal(&key(1), "dataflows-sms", now + RETRY_SEAL_SECONDS + 1),
        Some("its seal has expired")
    );
    assert!(
        message.refusal(&key(2), "dataflows-sms", now).is_some(),
        "another deployment's key"
    );
    // The binding is under the seal: moving it to another queue by editing it breaks the seal.
    let mut moved = sealed.clone();
    moved.bound = Some(Binding {
        queue: "dataflows-messaging".into(),
        expires_at: now + RETRY_SEAL_SECONDS,
    });
    assert!(!moved.verify(&key(1)));
    let mut stretched = sealed.clone();
    stretched.bound.as_mut().unwrap().expires_at += 86_400;
    assert!(!stretched.verify(&key(1)));
    // Sealed before bindings existed: the seal alone decides.
    let old = Message::Retry(task().sealed(&key(1)));
    assert_eq!(old.refusal(&key(1), "dataflows-messaging", now), None);
}

#[test]
fn a_held_webhook_keeps_its_slot_sealed_and_old_messages_still_verify() {
    let old = task().sealed(&key(1));
    assert!(
        !serde_json::to_string(&old).unwrap().contains("held"),
        "absent when not held"
    );
    let held = RetryTask {
        held: Some(Held {
            since_ms: 1_000,
            slot_ms: Some(9_000),
            redrive: true,
        }),
        ..task()
    }
    .sealed(&key(1));
    let Ok(Message::Retry(parsed)) = parse_message(&serde_json::to_string(&held).unwrap()) else {
        panic!("a retry task")
    };
    assert_eq!(parsed.held, held.held);
    assert!(parsed.verify(&key(1)));
    let mut moved = parsed.clone();
    moved.held.as_mut().unwrap().slot_ms = Some(8_000);
    assert!(!moved.verify(&key(1)), "a slot cannot be moved");
    let mut dropped = parsed;
    dropped.held = None;
    assert!(!dropped.verify(&key(1)), "nor the hold removed");
}

#[test]
fn a_sealed_task_verifies_after_the_round_trip_and_nothing_else_does() {
    let sealed = task().sealed(&key(1));
    let text = serde_json::to_string(&sealed).unwrap();
    let Ok(Message::Retry(parsed)) = parse_message(&text) else {
        panic!("a retry task")
    };
    assert!(parsed.verify(&key(1)));
    assert!(Message::Retry(parsed.clone()).authentic(&key(1)));
    assert!(!parsed.verify(&key(2)), "another deployment's key");
    assert!(!task().verify(&key(1)), "no seal (a message published to the topic)");
    let forged = RetryTask {
        seal: "AAAA".into(),
        ..task()
    };
    assert!(!forged.verify(&key(1)), "a made-up seal");
    // Any field changed after sealing breaks it: the body, the target, the attempt.
    let changes: [fn(&mut RetryTask); 5] = [
        |t| t.body.push(' '),
        |t| t.subscription_id = "other".into(),
        |t| t.account_id = "other".into(),
        |t| t.trigger = "contact.added".into(),
        |t| t.attempt = 3,
    ];
    for change in changes {
        let mut t = sealed.clone();
        change(&mut t);
        assert!(!t.verify(&key(1)));
    }
    // Fields are length-prefixed: moving bytes between neighbours changes the seal.
    let mut shifted = sealed.clone();
    shifted.account_id = "ac".into();
    shifted.subscription_id = "csub".into();
    assert!(!shifted.verify(&key(1)));
}

#[test]
fn messages_with_characters_sqs_refuses_are_escaped_and_parse_back_the_same() {
    let body = "{\"text\":\"a\u{FFFF}b\u{FFFE}c\u{1F600}\"}".to_string();
    let t = RetryTask {
        body: body.clone(),
        account_id: "acc\u{FFFF}".into(),
        ..task()
    }
    .sealed(&key(3));
    let text = to_sqs_json(&t);
    assert!(text.chars().all(sqs_allows), "{text}");
    assert!(text.contains("\\uffff"), "{text}");
    let Ok(Message::Retry(back)) = parse_message(&text) else {
        panic!("{text}")
    };
    assert_eq!(back.body, body);
    assert_eq!(back.account_id, "acc\u{FFFF}");
    assert!(back.verify(&key(3)), "the seal covers the strings, not their escaping");
    // The body is base64, so quotes and control characters do not grow it past a third.
    let quotes = RetryTask {
        body: "\"\u{1}".repeat(50_000),
        ..task()
    };
    assert!(to_sqs_json(&quotes).len() < 100_000 * 4 / 3 + 1_000);
    // Plain text keeps what SQS allows and shows the rest.
    assert_eq!(sqs_text("ok\ttab\u{0}"), "ok\ttab\\u0000");
    assert!(matches!(sqs_text("plain"), std::borrow::Cow::Borrowed(_)));
}

#[test]
fn a_sealed_dead_letter_verifies_and_an_edited_one_does_not() {
    let letter = DeadLetter {
        dataflows_dead_letter: 1,
        reason: "exhausted".into(),
        webhook_id: "msg_1".into(),
        trigger: "sms.received".into(),
        account_id: "acc".into(),
        subscription_id: "sub".into(),
        url: "https://example.com".into(),
        event_id: "evt".into(),
        attempts: 8,
        first_attempt_at: 100,
        last_error: "HTTP 500".into(),
        payload: serde_json::json!({"type": "sms.received", "data": {"b": 1, "a": [1, 2]}}),
        bound: None,
        seal: String::new(),
    }
    .sealed(&key(7));
    let text = serde_json::to_string(&letter).unwrap();
    let Ok(Message::Redrive(parsed)) = parse_message(&text) else {
        panic!("a dead letter")
    };
    assert!(parsed.verify(&key(7)));
    let mut edited = parsed.clone();
    edited.payload["data"]["b"] = serde_json::json!(2);
    assert!(!edited.verify(&key(7)));
    assert!(!parsed.verify(&key(8)));
    assert_eq!(format!("{:?}", key(7)), "SealKey(redacted)");
}
