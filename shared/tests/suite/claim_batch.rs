//! The claims written in PartiQL batches (`store::claim_batch`), with aws-smithy-mocks: many jobs'
//! claims go in one request and each job gets its own statement's answer; a condition failure is
//! read as the single-item claim reads it (a lost reply found as our own write); every other
//! answer (an INSERT onto an existing item, a throttled statement, a request failed as a whole)
//! sends that job down the single-item path, where it is settled as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementError, BatchStatementErrorCodeEnum, BatchStatementResponse,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use dataflows_shared::store::claim_batch::{ClaimBatches, STATEMENTS_PER_REQUEST};
use dataflows_shared::store::claims::{AttemptLog, Claim, ClaimMeta, ClaimStatus, ClaimToken, Claims, Finished};
use dataflows_shared::trigger::Trigger;
use dataflows_shared::webhook::WebhookId;

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#;

fn meta(id: &WebhookId) -> ClaimMeta<'_> {
    ClaimMeta {
        webhook_id: id,
        account_id: "acc",
        subscription_id: "sub",
        event_id: "evt",
        trigger: Trigger::SmsReceived,
    }
}

fn log(number: u32) -> AttemptLog {
    AttemptLog {
        number,
        at: 1_000_000,
        status: 200,
        latency_ms: 12,
        error: None,
    }
}

fn batches(client: aws_sdk_dynamodb::Client) -> ClaimBatches {
    let batch = crate::sdk_batch::SdkBatch::of(&client);
    ClaimBatches::new(
        Claims {
            client: client.into(),
            table: "state".into(),
        },
        batch,
    )
}

fn failed(code: BatchStatementErrorCodeEnum, item: Option<HashMap<String, AttributeValue>>) -> BatchStatementResponse {
    BatchStatementResponse::builder()
        .error(
            BatchStatementError::builder()
                .code(code)
                .message("refused")
                .set_item(item)
                .build(),
        )
        .build()
}

fn item(status: &str, owner: &str, attempts_made: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("status".to_string(), AttributeValue::S(status.into())),
        ("owner".to_string(), AttributeValue::S(owner.into())),
        ("lease_until".to_string(), AttributeValue::N("0".into())),
        (
            "attempts_made".to_string(),
            AttributeValue::N(attempts_made.to_string()),
        ),
    ])
}

/// Every statement of a request applied.
fn all_applied(items: &[String]) -> BatchExecuteStatementOutput {
    BatchExecuteStatementOutput::builder()
        .set_responses(Some(
            items
                .iter()
                .map(|_| BatchStatementResponse::builder().build())
                .collect(),
        ))
        .build()
}

/// The webhook#... parameter of each statement of a request.
fn items_of(r: &aws_sdk_dynamodb::operation::batch_execute_statement::BatchExecuteStatementInput) -> Vec<String> {
    r.statements()
        .iter()
        .map(|s| {
            s.parameters()
                .iter()
                .find_map(|p| p.as_s().ok().filter(|v| v.starts_with("webhook#")).cloned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn many_claims_go_25_to_a_request_and_each_job_gets_its_own_answer() {
    let requests: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = requests.clone();
    // Odd webhooks were delivered already: their INSERT meets the item (DuplicateItem), and the
    // single-item claim then finds it delivered.
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_compute_output(move |r| {
        let items = items_of(r);
        seen.lock().unwrap().push(items.clone());
        let answers = items
            .iter()
            .map(|pk| {
                let n: u32 = pk.trim_start_matches("webhook#w").parse().unwrap();
                if n % 2 == 0 {
                    BatchStatementResponse::builder().build()
                } else {
                    failed(BatchStatementErrorCodeEnum::DuplicateItem, None)
                }
            })
            .collect();
        BatchExecuteStatementOutput::builder()
            .set_responses(Some(answers))
            .build()
    });
    let single = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .message("The conditional request failed")
                .item("status", AttributeValue::S("delivered".into()))
                .build(),
        )
    });
    let claims = batches(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&batch, &single]));
    let ids: Vec<WebhookId> = (0..30).map(|i| WebhookId::from(format!("w{i}").as_str())).collect();
    // Thirty jobs of one batch, each counted until its claim is answered, as the engine counts them.
    let approaching: Vec<_> = ids.iter().map(|_| claims.approaching()).collect();
    let outcomes = futures::future::join_all(ids.iter().zip(approaching).map(|(id, guard)| {
        let claims = claims.clone();
        async move {
            let outcome = claims
                .claim_first(&meta(id), 1_000_000, 60, &ClaimToken::new(), false)
                .await
                .unwrap();
            drop(guard);
            outcome
        }
    }))
    .await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Claim::Won
        } else {
            Claim::Settled(Some(ClaimStatus::Delivered))
        };
        assert_eq!(outcome, &expected, "webhook w{i}");
    }
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "30 claims in two requests: {requests:?}");
    assert_eq!(requests[0].len(), STATEMENTS_PER_REQUEST);
    assert_eq!(single.num_calls(), 15, "only the existing items went on their own");
}

#[tokio::test]
async fn a_lost_reply_on_a_batched_finish_is_found_as_our_own_write() {
    // The batch was applied, its answer lost, and the SDK sent it again: the condition now fails
    // on the item our first send wrote.
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_output(|| {
        BatchExecuteStatementOutput::builder()
            .responses(failed(
                BatchStatementErrorCodeEnum::ConditionalCheckFailed,
                Some(item("delivered", "t-ours", 1)),
            ))
            .build()
    });
    let claims = batches(mock_client!(aws_sdk_dynamodb, [&batch]));
    let id = WebhookId::from("w1");
    let _open = claims.open();
    let done = claims
        .finish(&id, &log(1), ClaimStatus::Delivered, &ClaimToken::from("t-ours"))
        .await
        .unwrap();
    assert_eq!(done, Finished::Recorded);
    assert_eq!(batch.num_calls(), 1, "no single-item write: the answer settled it");
}

#[tokio::test]
async fn a_batched_finish_on_a_claim_taken_over_writes_nothing() {
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_output(|| {
        BatchExecuteStatementOutput::builder()
            .responses(failed(
                BatchStatementErrorCodeEnum::ConditionalCheckFailed,
                Some(item("pending", "t-theirs", 0)),
            ))
            .build()
    });
    let claims = batches(mock_client!(aws_sdk_dynamodb, [&batch]));
    let id = WebhookId::from("w1");
    let _open = claims.open();
    let done = claims
        .finish(&id, &log(1), ClaimStatus::Delivered, &ClaimToken::from("t-ours"))
        .await
        .unwrap();
    assert_eq!(done, Finished::Superseded);
}

#[tokio::test]
async fn a_throttled_statement_is_settled_on_its_own_and_the_others_are_not_touched() {
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_compute_output(|r| {
        let answers = items_of(r)
            .iter()
            .map(|pk| {
                if pk == "webhook#hot" {
                    failed(BatchStatementErrorCodeEnum::ProvisionedThroughputExceeded, None)
                } else {
                    BatchStatementResponse::builder().build()
                }
            })
            .collect();
        BatchExecuteStatementOutput::builder()
            .set_responses(Some(answers))
            .build()
    });
    let single = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.key().and_then(|k| k.get("pk")) == Some(&AttributeValue::S("webhook#hot".into()))
                && r.update_expression().is_some_and(|e| e.contains("list_append"))
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let claims = batches(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&batch, &single]));
    let (hot, cold) = (WebhookId::from("hot"), WebhookId::from("cold"));
    let (_a, _b) = (claims.open(), claims.open());
    let (token, entry) = (ClaimToken::from("t-ours"), log(1));
    let (a, b) = tokio::join!(
        claims.finish(&hot, &entry, ClaimStatus::Delivered, &token),
        claims.finish(&cold, &entry, ClaimStatus::Delivered, &token)
    );
    assert_eq!((a.unwrap(), b.unwrap()), (Finished::Recorded, Finished::Recorded));
    assert_eq!(batch.num_calls(), 1, "both finishes went in one request");
    assert_eq!(single.num_calls(), 1, "only the throttled one went again, on its own");
}

#[tokio::test]
async fn a_batch_that_fails_as_a_whole_sends_each_job_on_its_own() {
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let single = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| UpdateItemOutput::builder().build());
    let claims = batches(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&batch, &single]));
    let id = WebhookId::from("w1");
    let won = claims
        .claim_retry(&meta(&id), 1, 1_000_000, 60, &ClaimToken::new(), false)
        .await
        .unwrap();
    assert_eq!(won, Claim::Won);
    assert!(batch.num_calls() >= 1);
    assert_eq!(single.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn claims_a_send_waits_for_go_at_the_end_of_the_turn_and_the_others_linger() {
    let requests: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = requests.clone();
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_compute_output(move |r| {
        let items = items_of(r);
        seen.lock().unwrap().push(items.clone());
        all_applied(&items)
    });
    let claims = batches(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&batch]));
    // Many more jobs are still to claim (the rest of a large batch), so nothing is complete.
    let _others: Vec<_> = (0..100).map(|_| claims.approaching()).collect();
    for (urgent, expected_wait) in [
        (true, Duration::ZERO),
        (false, dataflows_shared::store::claim_batch::CLAIM_LINGER),
    ] {
        let ids: Vec<WebhookId> = (0..10)
            .map(|i| WebhookId::from(format!("{urgent}-{i}").as_str()))
            .collect();
        let started = tokio::time::Instant::now();
        let outcomes = futures::future::join_all(ids.iter().map(|id| {
            let claims = claims.clone();
            async move {
                claims
                    .claim_first(&meta(id), 1_000_000, 60, &ClaimToken::new(), urgent)
                    .await
                    .unwrap()
            }
        }))
        .await;
        assert!(outcomes.iter().all(|o| *o == Claim::Won));
        assert_eq!(started.elapsed(), expected_wait, "urgent: {urgent}");
        assert_eq!(
            requests.lock().unwrap().pop().map(|r| r.len()),
            Some(10),
            "one request for the ten"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_finish_that_comes_alone_goes_at_once_and_a_stream_shares_requests() {
    use dataflows_shared::store::claim_batch::{FINISH_GAP, FINISH_LINGER};
    let requests: Arc<Mutex<Vec<(Duration, usize)>>> = Arc::default();
    let seen = requests.clone();
    let t0 = tokio::time::Instant::now();
    let batch = mock!(aws_sdk_dynamodb::Client::batch_execute_statement).then_compute_output(move |r| {
        let items = items_of(r);
        seen.lock().unwrap().push((t0.elapsed(), items.len()));
        all_applied(&items)
    });
    let claims = batches(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&batch]));
    // Many other claims are open (their sends still out), so no queue is ever complete.
    let _others: Vec<_> = (0..100).map(|_| claims.open()).collect();
    let finish_at = |name: String, at: Duration| {
        let claims = claims.clone();
        async move {
            tokio::time::sleep_until(t0 + at).await;
            claims
                .finish(
                    &WebhookId::from(name.as_str()),
                    &log(1),
                    ClaimStatus::Delivered,
                    &ClaimToken::from("t"),
                )
                .await
                .unwrap()
        }
    };
    let ms = Duration::from_millis;
    // A lone finish goes at once, not after the linger; so does the first of a stream that
    // starts after a pause. The rest of the stream, a millisecond apart, share one request.
    let start = FINISH_GAP + ms(1);
    let finishes = std::iter::once(finish_at("lone".into(), Duration::ZERO))
        .chain((0..10u32).map(|i| finish_at(format!("s{i}"), start + ms(i.into()))));
    let done = futures::future::join_all(finishes).await;
    assert!(done.iter().all(|d| *d == Finished::Recorded));
    assert_eq!(
        *requests.lock().unwrap(),
        vec![(Duration::ZERO, 1), (start, 1), (start + ms(1) + FINISH_LINGER, 9)],
        "(sent at, statements)"
    );
}

/// Statements answered `Applied` after a round trip, with when each request went and its size.
struct SlowBatch {
    round_trip: Duration,
    t0: tokio::time::Instant,
    sent: Mutex<Vec<(Duration, usize)>>,
}

impl dataflows_shared::store::partiql::PartiqlBatch for SlowBatch {
    fn execute(
        &self,
        statements: Vec<dataflows_shared::store::partiql::Statement>,
    ) -> futures::future::BoxFuture<
        '_,
        Result<Vec<dataflows_shared::store::partiql::Answer>, dataflows_shared::store::partiql::BatchError>,
    > {
        self.sent.lock().unwrap().push((self.t0.elapsed(), statements.len()));
        Box::pin(async move {
            tokio::time::sleep(self.round_trip).await;
            Ok(statements
                .iter()
                .map(|_| dataflows_shared::store::partiql::Answer::Applied)
                .collect())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_last_finishes_go_at_once_when_every_other_is_on_its_way() {
    let round_trip = Duration::from_millis(5);
    let slow = Arc::new(SlowBatch {
        round_trip,
        t0: tokio::time::Instant::now(),
        sent: Mutex::default(),
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, []);
    let claims = ClaimBatches::new(
        Claims {
            client: client.into(),
            table: "state".into(),
        },
        slow.clone(),
    );
    // Thirty sends ended together, as at an invocation's end: 25 fill a request; the last 5 have
    // nobody left to wait for (the others' results are on their way) and go at once, not a round
    // trip later.
    let finishes = (0..30).map(|i| {
        let claims = claims.clone();
        let open = claims.open();
        async move {
            let done = claims
                .finish(
                    &WebhookId::from(format!("w{i}").as_str()),
                    &log(1),
                    ClaimStatus::Delivered,
                    &ClaimToken::from("t"),
                )
                .await
                .unwrap();
            drop(open);
            done
        }
    });
    let started = tokio::time::Instant::now();
    let done = futures::future::join_all(finishes.collect::<Vec<_>>()).await;
    assert!(done.iter().all(|d| *d == Finished::Recorded));
    assert_eq!(
        *slow.sent.lock().unwrap(),
        vec![(Duration::ZERO, STATEMENTS_PER_REQUEST), (Duration::ZERO, 5)],
        "(sent at, statements)"
    );
    assert_eq!(started.elapsed(), round_trip, "one round trip for all thirty");
}
