//! Error paths the emulator cannot produce, with aws-smithy-mocks: DynamoDB throttling, lost
//! conditional-write races, and writes applied whose reply was lost (the retry then meets its own
//! write).

use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use dataflows_shared::store::claims::{AttemptLog, Claim, ClaimMeta, ClaimStatus, ClaimToken, Claims, Finished};
use dataflows_shared::store::subscriptions::{load_account, SubscriptionWriter};
use dataflows_shared::subscription::ParseOptions;

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#;

fn meta() -> ClaimMeta<'static> {
    static ID: std::sync::LazyLock<dataflows_shared::webhook::WebhookId> = std::sync::LazyLock::new(|| "msg_1".into());
    ClaimMeta {
        webhook_id: &ID,
        account_id: "acc",
        subscription_id: "sub",
        event_id: "evt",
        trigger: dataflows_shared::trigger::Trigger::SmsReceived,
    }
}

fn lost_race(status: &'static str, lease_until: i64) -> UpdateItemError {
    UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .item("status", AttributeValue::S(status.into()))
            .item("lease_until", AttributeValue::N(lease_until.to_string()))
            .build(),
    )
}

#[tokio::test]
async fn a_claim_held_by_a_live_lease_is_busy() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| lost_race("pending", 1_000_060));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Busy
    );
}

fn owned(status: &'static str, lease_until: i64, owner: &'static str, attempts_made: u32) -> UpdateItemError {
    UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .item("status", AttributeValue::S(status.into()))
            .item("lease_until", AttributeValue::N(lease_until.to_string()))
            .item("owner", AttributeValue::S(owner.into()))
            .item("attempts_made", AttributeValue::N(attempts_made.to_string()))
            .build(),
    )
}

#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_found_ours_on_the_retry() {
    // The first send was applied, its answer lost; the retry's condition fails on our own claim.
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.expression_attribute_values().and_then(|v| v.get(":owner")) == Some(&AttributeValue::S("t-ours".into()))
        })
        .then_error(|| owned("pending", 1_000_060, "t-ours", 0));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Won,
        "our own claim, not another invocation's"
    );
    // Another invocation's live claim is still busy.
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| owned("pending", 1_000_060, "t-theirs", 0));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Busy
    );
}

fn log(number: u32) -> AttemptLog {
    AttemptLog {
        number,
        at: 1_000_001,
        status: 204,
        latency_ms: 12,
        error: None,
    }
}

#[tokio::test]
async fn a_finish_is_conditional_on_the_owner_and_never_applied_twice() {
    // Written: the condition names the owner and the pending state.
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.condition_expression() == Some("#owner = :owner AND #status = :pending")
                && r.expression_attribute_values().and_then(|v| v.get(":owner"))
                    == Some(&AttributeValue::S("t-ours".into()))
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    let id = meta().webhook_id.clone();
    let ours = ClaimToken::from("t-ours");
    assert_eq!(
        claims
            .finish(&id, &log(2), ClaimStatus::Delivered, &ours)
            .await
            .unwrap(),
        Finished::Recorded
    );
    assert_eq!(rule.num_calls(), 1);
    // Sent again after a lost reply: it finds its own write (our token, the state and the
    // attempt it wrote) and is done; the attempt log is not appended twice.
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| owned("delivered", 0, "t-ours", 2));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .finish(&id, &log(2), ClaimStatus::Delivered, &ours)
            .await
            .unwrap(),
        Finished::Recorded
    );
    // The lease ran out and another invocation took the claim: nothing is written over it.
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| owned("pending", 1_000_090, "t-theirs", 1));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .finish(&id, &log(2), ClaimStatus::Delivered, &ours)
            .await
            .unwrap(),
        Finished::Superseded
    );
}

#[tokio::test]
async fn a_claim_already_delivered_is_settled() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| lost_race("delivered", 0));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Settled(Some(ClaimStatus::Delivered))
    );
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| lost_race("retrying", 0));
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Settled(Some(ClaimStatus::Retrying))
    );
}

#[tokio::test]
async fn a_won_claim_sends_the_right_condition() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.condition_expression()
                .is_some_and(|c| c.contains("attribute_not_exists(pk)"))
                && r.key()
                    .and_then(|k| k.get("pk"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some("webhook#msg_1")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    assert_eq!(
        claims
            .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
            .await
            .unwrap(),
        Claim::Won
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn throttled_claims_are_errors_after_the_sdk_retries() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let claims = Claims {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "state".into(),
    };
    let err = claims
        .claim_first(&meta(), 1_000_000, 60, &ClaimToken::from("t-ours"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("webhook msg_1"), "{err}");
    assert!(rule.num_calls() > 1, "the SDK retried a throttled request");
}

#[tokio::test]
async fn throttled_subscription_queries_are_errors_naming_the_account() {
    let rule = mock!(aws_sdk_dynamodb::Client::query)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_dynamodb, [&rule]);
    let err = load_account(&client, "subs", "acc_42", ParseOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.account_id, "acc_42");
    assert!(
        matches!(
            err.source,
            aws_sdk_dynamodb::Error::ProvisionedThroughputExceededException(_)
        ),
        "{:?}",
        err.source
    );
}

#[tokio::test]
async fn a_throttle_then_success_loads_the_subscriptions() {
    let rule = mock!(aws_sdk_dynamodb::Client::query)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .output(|| {
            QueryOutput::builder()
                .items(
                    [
                        ("account_id", "acc_42"),
                        ("subscription_id", "s1"),
                        ("url", "https://hooks.example.com/a"),
                        ("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                        ("triggers", "*"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), AttributeValue::S(v.into())))
                    .collect(),
                )
                .build()
        })
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let subs = load_account(&client, "subs", "acc_42", ParseOptions::default())
        .await
        .unwrap();
    assert_eq!(subs.valid.len(), 1);
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn disabling_a_deleted_subscription_is_not_an_error() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
    });
    let writer = SubscriptionWriter {
        client: mock_client!(aws_sdk_dynamodb, [&rule]).into(),
        table: "subs".into(),
    };
    let result = writer
        .disable(
            &dataflows_shared::subscription::SubscriptionKey {
                account_id: "acc".into(),
                subscription_id: "gone".into(),
            },
            "receiver answered 410 Gone",
            "2026-11-30T10:00:00Z",
        )
        .await;
    assert!(
        result.is_ok(),
        "a record deleted meanwhile has nothing to disable: {result:?}"
    );
    assert_eq!(rule.num_calls(), 1, "a failed condition is an answer, not retried");
}
