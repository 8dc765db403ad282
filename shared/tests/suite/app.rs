//! `App::handle`, the whole path of one SQS batch through a category function, with DynamoDB and
//! SQS mocked (aws-smithy-mocks: every request captured) and a real HTTP receiver on 127.0.0.1
//! that answers the statuses each test asks for. What is checked is what AWS and the receiver
//! see: the webhook sent and its signature, the claim writes, the retry or dead letter written,
//! and what the batch answers Lambda.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::BatchStatementResponse;
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use dataflows_shared::app::App;
use dataflows_shared::config::Settings;
use dataflows_shared::delivery::client::build_client;
use dataflows_shared::delivery::task::{parse_message, Message, Notice, RetryTask, SealKey};
use dataflows_shared::signing::signature_header;
use dataflows_shared::signing::Secret;
use dataflows_shared::Category;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/sms";
const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/sms-dlq";
const SEAL: [u8; 32] = [7; 32];

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A receiver that answers each request with the next of `statuses` (then 200).
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

async fn receiver(statuses: &[u16]) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let answers = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<u16>>()));
    let (seen, answers) = (hits.clone(), answers.clone());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (seen, answers) = (seen.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_len, length) = loop {
                    let n = conn.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_len + length {
                    let n = conn.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
                let mut lines = head.lines();
                let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                seen.lock().unwrap().push(Hit {
                    path,
                    headers,
                    body: buf[head_len..head_len + length].to_vec(),
                });
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    Receiver { url, hits }
}

/// One SendMessage: (queue, body, delay, attributes).
type Sent = (String, String, Option<i32>, HashMap<String, String>);

/// Everything the mocked AWS was asked to do.
#[derive(Default)]
struct Calls {
    /// Writes to the State table: (pk, the update expression or the PartiQL statement).
    state_updates: Vec<(String, String)>,
    /// UpdateItem on the Subscriptions table: the update expression.
    subscription_updates: Vec<String>,
    sent: Vec<Sent>,
}

struct Harness {
    app: App,
    calls: Arc<Mutex<Calls>>,
}

fn subscription_item(url: &str) -> HashMap<String, AttributeValue> {
    record("crm", &format!("{url}/hook"), &["sms.received"])
}

fn record(id: &str, url: &str, triggers: &[&str]) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    HashMap::from([
        ("account_id".to_string(), s("acc_1")),
        ("subscription_id".to_string(), s(id)),
        ("url".to_string(), s(url)),
        ("secrets".to_string(), AttributeValue::L(vec![s(SECRET)])),
        (
            "triggers".to_string(),
            AttributeValue::L(triggers.iter().map(|t| s(t)).collect()),
        ),
    ])
}

/// An sms function whose account acc_1 has one subscription to `url`; retries 1 s apart, three
/// attempts in all. `sqs_fails`: every SendMessage is refused.
fn harness(url: &str, sqs_fails: bool) -> Harness {
    harness_with(vec![subscription_item(url)], sqs_fails)
}

/// The same with the account's subscriptions as `items`.
fn harness_with(items: Vec<HashMap<String, AttributeValue>>, sqs_fails: bool) -> Harness {
    let calls: Arc<Mutex<Calls>> = Arc::default();
    let query = mock!(aws_sdk_dynamodb::Client::query)
        .then_output(move || QueryOutput::builder().set_items(Some(items.clone())).build());
    let seen = calls.clone();
    let update = mock!(aws_sdk_dynamodb::Client::update_item).then_compute_output(move |r| {
        let expression = r.update_expression().unwrap_or_default().to_string();
        let mut calls = seen.lock().unwrap();
        match r.table_name() {
            Some("state") => {
                let pk = match r.key().and_then(|k| k.get("pk")) {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    _ => String::new(),
                };
                calls.state_updates.push((pk, expression));
            }
            _ => calls.subscription_updates.push(expression),
        }
        UpdateItemOutput::builder().build()
    });
    // Claims and finishes come in PartiQL batches: each statement applied, recorded under its item.
    let seen = calls.clone();
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_compute_output(move |r| {
        let mut calls = seen.lock().unwrap();
        let statements = r.statements();
        for statement in statements {
            let pk = statement
                .parameters()
                .iter()
                .find_map(|p| p.as_s().ok().filter(|v| v.starts_with("webhook#")))
                .cloned()
                .unwrap_or_default();
            calls.state_updates.push((pk, statement.statement().to_string()));
        }
        BatchExecuteStatementOutput::builder()
            .set_responses(Some(
                statements
                    .iter()
                    .map(|_| BatchStatementResponse::builder().build())
                    .collect(),
            ))
            .build()
    });
    let seal = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .item("key", AttributeValue::B(Blob::new(SEAL.to_vec())))
            .build()
    });
    let seen = calls.clone();
    let send = if sqs_fails {
        mock!(aws_sdk_sqs::Client::send_message).then_error(|| {
            aws_sdk_sqs::operation::send_message::SendMessageError::InvalidMessageContents(
                aws_sdk_sqs::types::error::InvalidMessageContents::builder()
                    .message("refused")
                    .build(),
            )
        })
    } else {
        mock!(aws_sdk_sqs::Client::send_message).then_compute_output(move |r| {
            let attributes = r
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_string()))
                .collect();
            seen.lock().unwrap().sent.push((
                r.queue_url().unwrap_or_default().to_string(),
                r.message_body().unwrap_or_default().to_string(),
                r.delay_seconds(),
                attributes,
            ));
            SendMessageOutput::builder().message_id("m").build()
        })
    };
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query, &update, &batch, &seal]);
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&send]);
    let vars: HashMap<String, String> = [
        ("SUBSCRIPTIONS_TABLE", "subscriptions"),
        ("STATE_TABLE", "state"),
        ("QUEUE_URL", QUEUE),
        ("DEAD_LETTER_QUEUE_URL", DLQ),
        ("RETRY_SCHEDULE", "1s,1s"),
        ("ALLOW_PRIVATE_TARGETS", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::from_vars(Category::Sms, &vars).unwrap();
    let app = App::new(
        settings,
        dynamodb.clone(),
        crate::sdk_batch::SdkBatch::of(&dynamodb),
        sqs,
        build_client(true).unwrap(),
    );
    Harness { app, calls }
}

fn sqs_event(bodies: &[&str]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("sqs-{i}"));
            m.body = Some(body.to_string());
            m
        })
        .collect();
    event
}

fn sms(id: &str) -> String {
    json!({"id": id, "type": "sms.received", "account_id": "acc_1", "occurred_at": "2026-12-01T10:00:00Z",
           "data": {"message_id": "m1", "from": "+14155550123", "to": "+14155559876", "body": "hello"}})
    .to_string()
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn an_event_is_delivered_signed_and_its_claim_finished() {
    let rx = receiver(&[]).await;
    let h = harness(&rx.url, false);

    let response = h.app.handle(sqs_event(&[&sms("evt_1")]), None).await.unwrap();

    assert!(failed_ids(&response).is_empty());
    let hits = rx.hits.lock().unwrap().clone();
    let [hit] = hits.as_slice() else { panic!("{hits:?}") };
    assert_eq!(hit.path, "/hook");
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["body"].as_str()),
        (Some("sms.received"), Some("hello"))
    );
    let (id, ts) = (
        &hit.headers["webhook-id"],
        hit.headers["webhook-timestamp"].parse::<i64>().unwrap(),
    );
    let secret = Secret::parse(SECRET).unwrap();
    assert_eq!(
        hit.headers["webhook-signature"],
        signature_header(&[secret], id, ts, &hit.body)
    );
    let calls = h.calls.lock().unwrap();
    let claim_writes: Vec<_> = calls
        .state_updates
        .iter()
        .filter(|(pk, _)| pk == &format!("webhook#{id}"))
        .collect();
    assert_eq!(claim_writes.len(), 2, "claim, then finish: {:?}", calls.state_updates);
    assert!(calls.sent.is_empty(), "no retry, no dead letter");
}

#[tokio::test]
async fn a_failed_attempt_queues_a_sealed_retry_with_the_same_body() {
    let rx = receiver(&[500]).await;
    let ops = record("ops", &format!("{}/ops", rx.url), &["subscription.failing"]);
    let h = harness_with(vec![subscription_item(&rx.url), ops], false);

    let response = h.app.handle(sqs_event(&[&sms("evt_2")]), None).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "a scheduled retry settles the record");
    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    let calls = h.calls.lock().unwrap();
    let [(queue, body, delay, _), (notice_queue, notice, _, _)] = calls.sent.as_slice() else {
        panic!("{:?}", calls.sent)
    };
    assert_eq!(queue, QUEUE);
    assert!(matches!(delay, Some(0..=2)), "1 s ± 20 %: {delay:?}");
    // The streak began with this write: subscription.failing goes out, sealed, on the same queue.
    let Ok(Message::Notice(notice)) = parse_message(notice) else {
        panic!("an operational notice: {notice}")
    };
    assert_eq!(notice_queue, QUEUE);
    assert!(notice.verify(&SealKey::new(SEAL)));
    assert_eq!(
        (notice.trigger.as_str(), notice.about.as_str()),
        ("subscription.failing", "crm")
    );
    let Ok(Message::Retry(task)) = parse_message(body) else {
        panic!("a retry: {body}")
    };
    assert!(task.verify(&SealKey::new(SEAL)));
    assert_eq!(
        (task.attempt, task.webhook_id.as_str()),
        (2, hits[0].headers["webhook-id"].as_str())
    );
    assert_eq!(
        task.body.as_bytes(),
        hits[0].body.as_slice(),
        "the retry sends the same bytes"
    );
    assert!(
        calls.subscription_updates.iter().any(|e| e.contains("failing_since")),
        "the failing streak starts: {:?}",
        calls.subscription_updates
    );
}

#[tokio::test]
async fn the_last_attempt_failing_dead_letters_the_webhook() {
    let rx = receiver(&[503]).await;
    let ops = record(
        "ops",
        &format!("{}/ops", rx.url),
        &["subscription.failing", "webhook.dead_lettered"],
    );
    let h = harness_with(vec![subscription_item(&rx.url), ops], false);
    let task = RetryTask {
        dataflows_retry: 1,
        webhook_id: "msg_last".into(),
        trigger: "sms.received".into(),
        account_id: "acc_1".into(),
        subscription_id: "crm".into(),
        event_id: "evt_3".into(),
        body: r#"{"type":"sms.received","data":{}}"#.into(),
        attempt: 3,
        first_attempt_at: 1_796_040_000,
        not_before: 0,
        held: None,
        bound: None,
        seal: String::new(),
    }
    .sealed(&SealKey::new(SEAL));

    let response = h
        .app
        .handle(sqs_event(&[&serde_json::to_string(&task).unwrap()]), None)
        .await
        .unwrap();

    assert!(failed_ids(&response).is_empty());
    assert_eq!(rx.hits.lock().unwrap().len(), 1, "the third attempt was made");
    let calls = h.calls.lock().unwrap();
    let [(queue, body, _, attributes), rest @ ..] = calls.sent.as_slice() else {
        panic!("{:?}", calls.sent)
    };
    let notices: Vec<String> = rest
        .iter()
        .filter_map(|(_, b, _, _)| match parse_message(b) {
            Ok(Message::Notice(n)) => Some(n.trigger),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        ["subscription.failing", "webhook.dead_lettered"],
        "the streak starts (the mock keeps no failing_since) and the dead letter is told"
    );
    assert_eq!(queue, DLQ);
    assert_eq!(attributes["reason"], "retry schedule exhausted after 3 attempts");
    assert_eq!(attributes["webhook_id"], "msg_last");
    let letter: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (letter["attempts"].as_u64(), letter["last_error"].as_str()),
        (Some(3), Some("receiver answered 503"))
    );
    assert!(calls.state_updates.iter().any(|(pk, _)| pk == "webhook#msg_last"));
}

#[tokio::test]
async fn malformed_and_forged_messages_are_dead_lettered_without_disturbing_the_batch() {
    let rx = receiver(&[]).await;
    let h = harness(&rx.url, false);
    let mut forged = serde_json::to_value(RetryTask {
        dataflows_retry: 1,
        webhook_id: "msg_forged".into(),
        trigger: "sms.received".into(),
        account_id: "acc_1".into(),
        subscription_id: "crm".into(),
        event_id: "evt_f".into(),
        body: "{}".into(),
        attempt: 2,
        first_attempt_at: 0,
        not_before: 0,
        held: None,
        bound: None,
        seal: String::new(),
    })
    .unwrap();
    forged["seal"] = json!("bm90IGEgc2VhbA==");
    let no_type = json!({"id": "evt_x", "account_id": "acc_1", "occurred_at": "2026-12-01T10:00:00Z", "data": {}});
    let bodies = [
        "{not json".to_string(),
        no_type.to_string(),
        forged.to_string(),
        sms("evt_good"),
    ];

    let response = h
        .app
        .handle(sqs_event(&bodies.iter().map(String::as_str).collect::<Vec<_>>()), None)
        .await
        .unwrap();

    assert!(
        failed_ids(&response).is_empty(),
        "each is settled: three dead letters, one delivery"
    );
    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "only the good event was sent");
    let calls = h.calls.lock().unwrap();
    let mut letters: Vec<(String, String, Option<String>)> = calls
        .sent
        .iter()
        .map(|(queue, body, _, attrs)| {
            assert_eq!(queue, DLQ);
            (
                attrs["source_message_id"].clone(),
                body.clone(),
                attrs.get("field").cloned(),
            )
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0].1, "{not json", "kept as it came");
    assert_eq!(letters[1].2.as_deref(), Some("type"), "the field at fault is named");
    assert_eq!(letters[2].2.as_deref(), Some("seal"));
    let reason = &calls.sent.iter().find(|(_, b, _, _)| b == &letters[2].1).unwrap().3["reason"];
    assert!(reason.starts_with("internal message not authenticated"), "{reason}");
}

#[tokio::test]
async fn a_malformed_message_that_cannot_be_dead_lettered_is_failed_for_sqs_to_keep() {
    let rx = receiver(&[]).await;
    let h = harness(&rx.url, true);

    let response = h
        .app
        .handle(sqs_event(&["{not json", &sms("evt_ok")]), None)
        .await
        .unwrap();

    assert_eq!(
        failed_ids(&response),
        ["sqs-0"],
        "lost nowhere: SQS redelivers it, then its DLQ"
    );
    assert_eq!(rx.hits.lock().unwrap().len(), 1, "the other record was delivered");
}

#[tokio::test]
async fn a_batch_too_close_to_its_deadline_defers_instead_of_sending() {
    let rx = receiver(&[]).await;
    let h = harness(&rx.url, false);

    let deadline = Instant::now() + Duration::from_secs(3); // a send needs 15 s + 2 s
    let response = h
        .app
        .handle(sqs_event(&[&sms("evt_late")]), Some(deadline))
        .await
        .unwrap();

    assert!(failed_ids(&response).is_empty());
    assert!(rx.hits.lock().unwrap().is_empty(), "nothing sent");
    let calls = h.calls.lock().unwrap();
    let [(queue, body, delay, _)] = calls.sent.as_slice() else {
        panic!("{:?}", calls.sent)
    };
    assert_eq!(
        (queue.as_str(), *delay),
        (QUEUE, Some(1)),
        "the claim released: back in a second, not after the 60 s lease"
    );
    let Ok(Message::Retry(task)) = parse_message(body) else {
        panic!("{body}")
    };
    assert_eq!(task.attempt, 1, "a deferral is not an attempt");
}

#[tokio::test]
async fn no_operational_notice_is_written_when_no_other_subscription_names_one() {
    let (failing, healthy) = (receiver(&[500]).await, receiver(&[]).await);
    // crm names subscription.failing itself: it is never told about itself; "*" is not the
    // operational webhooks.
    let crm = record(
        "crm",
        &format!("{}/hook", failing.url),
        &["sms.received", "subscription.failing"],
    );
    let all = record("all", &format!("{}/all", healthy.url), &["*"]);
    let h = harness_with(vec![crm, all], false);

    let response = h.app.handle(sqs_event(&[&sms("evt_quiet")]), None).await.unwrap();

    assert!(failed_ids(&response).is_empty());
    let calls = h.calls.lock().unwrap();
    let kinds: Vec<&str> = calls
        .sent
        .iter()
        .map(|(_, body, _, _)| match parse_message(body) {
            Ok(Message::Retry(_)) => "retry",
            Ok(Message::Notice(_)) => "notice",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["retry"], "crm's retry only; the streak starts untold");
    assert!(calls.subscription_updates.iter().any(|e| e.contains("failing_since")));
}

fn notice(about: &str) -> Notice {
    Notice {
        dataflows_notice: 1,
        trigger: "subscription.failing".into(),
        account_id: "acc_1".into(),
        about: about.into(),
        notice_id: format!("ntc_{about}"),
        at: 1_796_040_000,
        data: json!({"subscription_id": about}),
        bound: None,
        seal: String::new(),
    }
    .sealed_for(&SealKey::new(SEAL), "sms", chrono::Utc::now().timestamp())
}

#[tokio::test]
async fn an_operational_webhook_goes_to_the_accounts_other_subscriptions_that_name_it() {
    let rx = receiver(&[]).await;
    let h = harness_with(
        vec![
            record("crm", &format!("{}/crm", rx.url), &["sms.received"]),
            record(
                "ops",
                &format!("{}/ops", rx.url),
                &["subscription.failing", "sms.received"],
            ),
            record("all", &format!("{}/all", rx.url), &["*"]),
        ],
        false,
    );
    let about_crm = serde_json::to_string(&notice("crm")).unwrap();
    let about_ops = serde_json::to_string(&notice("ops")).unwrap();
    let forged = serde_json::to_string(&Notice {
        seal: String::new(),
        ..notice("all")
    })
    .unwrap();

    let response = h
        .app
        .handle(sqs_event(&[&about_crm, &about_ops, &forged]), None)
        .await
        .unwrap();

    assert!(failed_ids(&response).is_empty());
    let hits = rx.hits.lock().unwrap().clone();
    // Only `ops` names the trigger ("*" is the 17 triggers); the notice about `ops` itself is
    // never sent to it; the unsealed one is dead-lettered, not sent.
    let [hit] = hits.as_slice() else { panic!("{hits:?}") };
    assert_eq!(hit.path, "/ops");
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        body,
        json!({"type": "subscription.failing", "timestamp": "2026-11-30T12:00:00Z", "account_id": "acc_1",
               "event_id": "ntc_crm", "data": {"subscription_id": "crm"}})
    );
    let (id, ts) = (
        &hit.headers["webhook-id"],
        hit.headers["webhook-timestamp"].parse::<i64>().unwrap(),
    );
    assert_eq!(
        hit.headers["webhook-signature"],
        signature_header(&[Secret::parse(SECRET).unwrap()], id, ts, &hit.body)
    );
    let calls = h.calls.lock().unwrap();
    assert!(
        calls.state_updates.iter().any(|(pk, _)| pk == &format!("webhook#{id}")),
        "claimed like any webhook"
    );
    let [(queue, _, _, attributes)] = calls.sent.as_slice() else {
        panic!("{:?}", calls.sent)
    };
    assert_eq!(queue, DLQ);
    assert!(attributes["reason"].contains("not authenticated"), "{attributes:?}");
}
