//! The Subscriptions table: all of one account's records with one paginated Query.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use futures::FutureExt;

use crate::store::attributes::item_to_json;
use crate::subscription::{
    parse_record_within, ParseOptions, RecordError, RegexBudget, Subscription, SubscriptionKey,
    MAX_SUBSCRIPTIONS_PER_ACCOUNT,
};

#[derive(Debug, thiserror::Error)]
#[error("querying subscriptions of account {account_id} in table {table}: {source}")]
pub struct SubscriptionQueryError {
    pub table: String,
    pub account_id: String,
    #[source]
    pub source: aws_sdk_dynamodb::Error,
}

impl crate::aws::Transient for SubscriptionQueryError {
    fn is_transient(&self) -> bool {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        crate::aws::transient_code(self.source.code())
    }
}

/// One account's subscriptions: the valid ones, and the records that did not parse (the caller
/// logs them; they never stop the valid ones).
#[derive(Debug, Default)]
pub struct AccountSubscriptions {
    pub valid: Vec<Subscription>,
    pub invalid: Vec<RecordError>,
}

pub async fn load_account(
    client: &Client,
    table: &str,
    account_id: &str,
    opts: ParseOptions,
) -> Result<AccountSubscriptions, SubscriptionQueryError> {
    let mut out = AccountSubscriptions::default();
    let mut pages = client
        .query()
        .table_name(table)
        .key_condition_expression("account_id = :a")
        .expression_attribute_values(":a", AttributeValue::S(account_id.to_string()))
        .consistent_read(false)
        // One page holds what the cap lets through, and one more to see that there is more.
        .limit(MAX_SUBSCRIPTIONS_PER_ACCOUNT as i32 + 1)
        .into_paginator()
        .items()
        .send();
    let mut read = 0;
    // The account's keyword regexes, spent in subscription-id order (the Query's order).
    let mut budget = RegexBudget::account();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| SubscriptionQueryError {
            table: table.to_string(),
            account_id: account_id.to_string(),
            source: e.into(),
        })?;
        read += 1;
        if read > MAX_SUBSCRIPTIONS_PER_ACCOUNT {
            let id = match item.get("subscription_id") {
                Some(AttributeValue::S(id)) => id.clone(),
                _ => "?".into(),
            };
            out.invalid.push(RecordError {
                account_id: account_id.to_string(),
                subscription_id: id,
                field: "subscription_id".into(),
                reason: format!(
                    "is past the account's first {MAX_SUBSCRIPTIONS_PER_ACCOUNT} subscriptions (by id); \
                     it and every later one are ignored"
                ),
            });
            break;
        }
        match parse_record_within(&item_to_json(&item), opts, &mut budget) {
            Ok(s) => out.valid.push(s),
            Err(e) => out.invalid.push(e),
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("updating subscription {key} in table {table}: {source}")]
pub struct UpdateError {
    pub table: String,
    pub key: SubscriptionKey,
    #[source]
    pub source: aws_sdk_dynamodb::Error,
}

/// The writes the system makes to subscription records: disabling, and the failing streak.
#[derive(Debug, Clone)]
pub struct SubscriptionWriter {
    pub client: crate::aws::DynamoDb,
    pub table: String,
}

impl SubscriptionWriter {
    fn update(
        &self,
        key: &SubscriptionKey,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("account_id", AttributeValue::S(key.account_id.clone()))
            .key("subscription_id", AttributeValue::S(key.subscription_id.clone()))
            // Never recreate a record the customer deleted.
            .condition_expression("attribute_exists(account_id)")
    }

    fn error(&self, key: &SubscriptionKey, e: impl Into<aws_sdk_dynamodb::Error>) -> UpdateError {
        UpdateError {
            table: self.table.clone(),
            key: key.clone(),
            source: e.into(),
        }
    }

    /// `enabled = false` with the reason and time. `true` when this write disabled it: `false`
    /// when it was disabled already (another attempt, the customer) or deleted meanwhile.
    pub async fn disable(&self, key: &SubscriptionKey, reason: &str, now: &str) -> Result<bool, UpdateError> {
        let result = self
            .update(key)
            .condition_expression("attribute_exists(account_id) AND (attribute_not_exists(enabled) OR enabled <> :f)")
            .update_expression("SET enabled = :f, disabled_reason = :r, updated_at = :now")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":r", AttributeValue::S(reason.to_string()))
            .expression_attribute_values(":now", AttributeValue::S(now.to_string()))
            .send()
            .boxed()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false), // disabled or deleted meanwhile
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Start the failing streak if none is running. Returns when the running streak started
    /// (unix seconds) and whether this write started it: the old value, read in the same write,
    /// says whether one was running.
    pub async fn mark_failing(&self, key: &SubscriptionKey, now: i64) -> Result<(i64, bool), UpdateError> {
        let result = self
            .update(key)
            .update_expression("SET failing_since = if_not_exists(failing_since, :now)")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld)
            .send()
            .boxed()
            .await;
        match result {
            Ok(out) => {
                let running = out
                    .attributes()
                    .and_then(|a| a.get("failing_since"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok());
                Ok(running.map_or((now, true), |since| (since, false)))
            }
            Err(e) if is_conditional_failure(&e) => Ok((now, false)), // deleted meanwhile
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// End the failing streak after a success.
    pub async fn clear_failing(&self, key: &SubscriptionKey) -> Result<(), UpdateError> {
        let result = self
            .update(key)
            .update_expression("REMOVE failing_since")
            .send()
            .boxed()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

fn is_conditional_failure<R>(
    e: &aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_))
    )
}
