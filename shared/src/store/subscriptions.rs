//! The Subscriptions table: all of one account's records with one paginated Query.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::store::attributes::item_to_json;
use crate::subscription::{parse_record, ParseOptions, RecordError, Subscription};

#[derive(Debug, thiserror::Error)]
#[error("querying subscriptions of account {account_id} in table {table}: {source}")]
pub struct StoreError {
    pub table: String,
    pub account_id: String,
    #[source]
    pub source: aws_sdk_dynamodb::Error,
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
) -> Result<AccountSubscriptions, StoreError> {
    let mut out = AccountSubscriptions::default();
    let mut pages = client
        .query()
        .table_name(table)
        .key_condition_expression("account_id = :a")
        .expression_attribute_values(":a", AttributeValue::S(account_id.to_string()))
        .consistent_read(false)
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| StoreError {
            table: table.to_string(),
            account_id: account_id.to_string(),
            source: e.into(),
        })?;
        match parse_record(&item_to_json(&item), opts) {
            Ok(s) => out.valid.push(s),
            Err(e) => out.invalid.push(e),
        }
    }
    Ok(out)
}
