//! The deadline guard: a job whose turn to send comes too close to the invocation's deadline is
//! not sent. Its claim is taken and left pending, the same attempt goes back on the queue delayed
//! past the claim's lease, no result is written, and no attempt is used. (aws-smithy-mocks for
//! DynamoDB and SQS; the HTTP client points at a port nothing listens on, so a send would fail and
//! show up as a retry or an error instead of a deferral.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::BatchStatementResponse;
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_smithy_mocks::{mock, mock_client};
use dataflows_shared::delivery::client::build_client;
use dataflows_shared::delivery::engine::{Engine, EngineConfig, Handled, Job};
use dataflows_shared::delivery::queue::Queues;
use dataflows_shared::delivery::retry::RetryPolicy;
use dataflows_shared::delivery::task::{parse_message, Message, SealKey};
use dataflows_shared::store::claims::Claims;
use dataflows_shared::store::pace::PaceStore;
use dataflows_shared::store::seal::SealKeys;
use dataflows_shared::store::subscriptions::SubscriptionWriter;
use dataflows_shared::subscription::{parse_record, ParseOptions};
use serde_json::{json, Value};

const LEASE_SECONDS: i64 = 60;

/// Each SQS message the engine sent: body and delay.
type Sent = Arc<Mutex<Vec<(String, Option<i32>)>>>;

#[tokio::test]
async fn a_job_too_close_to_the_deadline_is_deferred_not_sent() {
    // The claim (a retry's: an UPDATE) in a PartiQL batch, applied.
    let claim = mock!(aws_sdk_dynamodb::Client::batch_execute_statement)
        .match_requests(|r| {
            let s = r.statements();
            s.len() == 1
                && s[0].statement().starts_with("UPDATE \"state\"")
                && s[0].statement().contains("lease_until = ?")
        })
        .then_output(|| {
            BatchExecuteStatementOutput::builder()
                .responses(BatchStatementResponse::builder().build())
                .build()
        });
    // The deferred claim is released (its lease ended at once), conditional on being ours.
    let release = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.update_expression() == Some("SET lease_until = :zero")
                && r.condition_expression() == Some("#owner = :owner AND #status = :pending")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let sent: Sent = Arc::default();
    let capture = sent.clone();
    let queue = mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(move |r| {
            capture
                .lock()
                .unwrap()
                .push((r.message_body().unwrap_or_default().to_string(), r.delay_seconds()));
            true
        })
        .then_output(|| SendMessageOutput::builder().message_id("m-1").build());
    let dynamodb = mock_client!(aws_sdk_dynamodb, [&claim, &release]);
    let engine = Engine::new(
        build_client(true).unwrap(),
        Claims {
            client: dynamodb.clone().into(),
            table: "state".into(),
        },
        crate::sdk_batch::SdkBatch::of(&dynamodb),
        SubscriptionWriter {
            client: dynamodb.clone().into(),
            table: "subscriptions".into(),
        },
        Queues {
            sqs: mock_client!(aws_sdk_sqs, [&queue]).into(),
            seals: SealKeys::with_key(dynamodb.clone(), "state".into(), SealKey::new([9; 32])),
            queue_url: "https://sqs.us-east-1.amazonaws.com/123456789012/sms".into(),
            dead_letter_url: "https://sqs.us-east-1.amazonaws.com/123456789012/sms-dlq".into(),
        },
        PaceStore {
            client: dynamodb.clone().into(),
            table: "state".into(),
        },
        EngineConfig {
            policy: RetryPolicy {
                schedule: vec![Duration::from_secs(5)],
            },
            claim_lease: Duration::from_secs(LEASE_SECONDS as u64),
            auto_disable_after: Duration::from_secs(5 * 86_400),
            allow_private_targets: true,
            delivery_concurrency: 4,
            subscription_concurrency: 4,
            // With the 2 s margin, a send needs 17 s.
            http_timeout: Duration::from_secs(15),
        },
    );
    let record = json!({
        "account_id": "acc_1", "subscription_id": "crm", "url": "http://127.0.0.1:9/hook",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "triggers": ["sms.received"],
    });
    let sub = parse_record(
        record.as_object().unwrap(),
        ParseOptions {
            allow_private_targets: true,
        },
    )
    .unwrap();
    let body = br#"{"type":"sms.received"}"#;
    let job = Job {
        subscription: &sub,
        webhook_id: "msg_0123".into(),
        trigger: dataflows_shared::trigger::Trigger::SmsReceived,
        event_id: "evt_1",
        body,
        attempt: 3,
        first_attempt_at: 1_796_033_700,
        redrive: false,
        // 10 s left, the budget is 17 s.
        deadline: Some(Instant::now() + Duration::from_secs(10)),
        held: None,
        audience: dataflows_shared::delivery::notice::Audience::default(),
    };

    let handled = engine.run(&job).await.unwrap();

    assert_eq!(
        handled,
        Handled::Deferred {
            delay: Duration::from_secs(1)
        }
    );
    assert_eq!(claim.num_calls(), 1, "the claim: no result written");
    assert_eq!(release.num_calls(), 1, "then released");
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1, "one retry message");
    let (message, delay_seconds) = &sent[0];
    assert!(
        *delay_seconds < Some(LEASE_SECONDS as i32),
        "back in a second: the claim was released, its lease need not run out"
    );
    let task: Value = serde_json::from_str(message).unwrap();
    assert_eq!(task["attempt"], 3, "the same attempt: a deferral is not an attempt");
    assert_eq!(task["webhook_id"], "msg_0123");
    assert_eq!(task["first_attempt_at"], 1_796_033_700);
    // The body travels in base64, and the message is sealed with the deployment's key.
    assert_eq!(task["body_base64"], "eyJ0eXBlIjoic21zLnJlY2VpdmVkIn0=");
    let Ok(Message::Retry(parsed)) = parse_message(message) else {
        panic!("a retry task: {message}")
    };
    assert_eq!(parsed.body, r#"{"type":"sms.received"}"#);
    assert!(parsed.verify(&SealKey::new([9; 32])), "sealed with the engine's key");
    let (counts, _) = engine.metrics().take();
    assert_eq!((counts.deferred, counts.delivered, counts.failed), (1, 0, 0));
}
