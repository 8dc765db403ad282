//! The State table adapter: versioned documents, the transaction that commits a decision with its
//! state writes, and the counter operations of the outcome counts (rules::rates::counting). Thin: it
//! builds requests and sorts DynamoDB's answers into what the shell (crate::categories) acts on.
//!
//! How DynamoDB refuses a write, and what each refusal means here
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html>):
//! - a condition failed (`ConditionalCheckFailedException`, or the cancellation reason
//!   `ConditionalCheckFailed`): someone changed the state first, or it is a duplicate: the shell
//!   reads again and decides what it means;
//! - throttled (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//!   `RequestLimitExceeded`, reason `ThrottlingError`) or conflicting with a transaction in flight
//!   (`TransactionConflictException`, reason `TransactionConflict`): `Busy`, retried after a
//!   jittered backoff, never at once;
//! - invalid (`ValidationException`, reason `ValidationError`, e.g. an item over 400 KB): retrying
//!   cannot help; the record is dead-lettered with the reason.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::rules::rates::counting::Delta;
use crate::store::attributes::{item_to_json, n, s};
use crate::store::keys::Key;

/// State and markers are kept this long.
pub const STATE_TTL_SECONDS: i64 = 30 * 86_400;
/// Decisions are kept this long: longer than a message can live in the queues (the DLQ keeps it
/// 14 days), so a redriven event finds its decision.
pub const DECISION_TTL_SECONDS: i64 = 16 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("state table {table}: {source}")]
    Aws {
        table: String,
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    #[error("state item {key} holds a document that does not parse: {reason}")]
    Corrupt { key: Key, reason: String },
    /// Throttled or in conflict with a transaction in flight, still after the backoffs.
    #[error("state table {table} busy (throttled or conflicting) after {attempts} attempts: {reason}")]
    Busy {
        table: String,
        attempts: usize,
        reason: String,
    },
    /// DynamoDB refused the write as invalid (an item over 400 KB, say): trying again cannot help.
    #[error("state write refused as invalid: {reason}")]
    Invalid { reason: String },
    /// The state kept changing under this evaluation.
    #[error("state {key} changed under every one of {attempts} evaluations")]
    Contended { key: String, attempts: usize },
    /// An invocation that recovered this batch's events voided its counting first: the records
    /// are redelivered and counted by their owner's recovery.
    #[error("counter {key}: this batch's token was voided by a recovery")]
    Voided { key: Key },
}

impl StateStoreError {
    /// Whether trying again can help (otherwise the record is dead-lettered).
    pub fn is_permanent(&self) -> bool {
        matches!(self, StateStoreError::Invalid { .. } | StateStoreError::Corrupt { .. })
    }
}

/// A document with its version, for optimistic writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub doc: T,
    pub version: u64,
}

/// One state write, applied in the commit's transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Store `doc` if the item is still at `expect` (None: must not exist).
    Put { key: Key, doc: Value, expect: Option<u64> },
    /// Remove the item if it is still at `expect`.
    Delete { key: Key, expect: u64 },
}

/// How DynamoDB refused a request.
#[derive(Debug)]
pub enum Refusal {
    /// A condition failed; the item as it was, when asked for.
    Condition(Option<HashMap<String, AttributeValue>>),
    Busy(String),
    Invalid(String),
    Other(aws_sdk_dynamodb::Error),
}

const BUSY_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
];

fn refusal<E, R>(
    e: SdkError<E, R>,
    condition_item: impl FnOnce(&E) -> Option<Option<HashMap<String, AttributeValue>>>,
) -> Refusal
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    if let SdkError::ServiceError(service) = &e {
        let err = service.err();
        if let Some(item) = condition_item(err) {
            return Refusal::Condition(item);
        }
        let code = err.code().unwrap_or_default();
        let message = err.message().unwrap_or_default();
        if BUSY_CODES.contains(&code) {
            return Refusal::Busy(format!("{code}: {message}"));
        }
        if code == "ValidationException" {
            return Refusal::Invalid(message.to_string());
        }
    }
    Refusal::Other(e.into())
}

fn put_refusal(e: SdkError<PutItemError, aws_sdk_dynamodb::config::http::HttpResponse>) -> Refusal {
    refusal(e, |err| match err {
        PutItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
        _ => None,
    })
}

fn update_refusal(e: SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>) -> Refusal {
    refusal(e, |err| match err {
        UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
        _ => None,
    })
}

/// Sort a cancelled transaction by its reasons, one per item
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>):
/// invalid beats busy beats a failed condition.
fn transaction_refusal(e: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>) -> Refusal {
    if let SdkError::ServiceError(service) = &e {
        if let TransactWriteItemsError::TransactionCanceledException(t) = service.err() {
            let codes: Vec<(&str, &str)> = t
                .cancellation_reasons()
                .iter()
                .map(|r| (r.code().unwrap_or("None"), r.message().unwrap_or("")))
                .collect();
            if let Some((_, m)) = codes.iter().find(|(c, _)| *c == "ValidationError") {
                return Refusal::Invalid(m.to_string());
            }
            if let Some((c, m)) = codes.iter().find(|(c, _)| {
                matches!(
                    *c,
                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            }) {
                return Refusal::Busy(format!("{c}: {m}"));
            }
            if codes.iter().any(|(c, _)| *c == "ConditionalCheckFailed") {
                return Refusal::Condition(None);
            }
            return Refusal::Busy(format!("transaction cancelled: {codes:?}"));
        }
    }
    refusal(e, |_| None)
}

/// A counter's record of which batch tokens it applied or voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Applied,
    Voided,
    Unknown,
}

/// What applying a batch's delta to a counter came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now, or by an earlier try of the same request.
    Done,
    /// Not applied: the token was voided by a recovery.
    Voided,
    /// Not applied: the bucket's list of bounced numbers is full; apply without it.
    ListFull,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    pub client: crate::aws::DynamoDb,
    pub table: String,
}

fn key_attrs(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(&key.pk)), ("sk".to_string(), s(&key.sk))])
}

fn versioned<T: DeserializeOwned>(
    key: &Key,
    item: &HashMap<String, AttributeValue>,
) -> Result<Versioned<T>, StateStoreError> {
    let corrupt = |reason: String| StateStoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("no `doc`".into()))?;
    let doc = serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))?;
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Versioned { doc, version })
}

fn tokens(item: &HashMap<String, AttributeValue>, name: &str) -> Vec<String> {
    item.get(name).and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default()
}

impl StateStore {
    fn aws(&self, e: impl Into<aws_sdk_dynamodb::Error>) -> StateStoreError {
        StateStoreError::Aws {
            table: self.table.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Turn a refusal that is not a failed condition into the error the shell reports.
    pub fn refused(&self, r: Refusal) -> StateStoreError {
        match r {
            Refusal::Busy(reason) => StateStoreError::Busy {
                table: self.table.clone(),
                attempts: 1,
                reason,
            },
            Refusal::Invalid(reason) => StateStoreError::Invalid { reason },
            Refusal::Other(e) => self.aws(e),
            Refusal::Condition(_) => StateStoreError::Contended {
                key: "a state item".into(),
                attempts: 1,
            },
        }
    }

    /// Read one versioned document (strongly consistent).
    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<Versioned<T>>, StateStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .boxed()
            .await
            .map_err(|e| self.refused(refusal(e, |_| None)))?;
        out.item.as_ref().map(|item| versioned(key, item)).transpose()
    }

    /// Every item of `pk` with a sort key in [from, to], as plain JSON (strongly consistent).
    pub async fn range(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Map<String, Value>>, StateStoreError> {
        self.query(pk, Some((from, to))).await
    }

    /// Every item of `pk`, as plain JSON.
    pub async fn partition(&self, pk: &str) -> Result<Vec<Map<String, Value>>, StateStoreError> {
        self.query(pk, None).await
    }

    async fn query(&self, pk: &str, between: Option<(&str, &str)>) -> Result<Vec<Map<String, Value>>, StateStoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        q = match between {
            Some((from, to)) => q
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to)),
            None => q.key_condition_expression("pk = :pk"),
        };
        let mut pages = q.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item_to_json(&item.map_err(|e| self.refused(refusal(e, |_| None)))?));
        }
        Ok(out)
    }

    fn put_request(&self, key: &Key, doc: &Value, expect: Option<u64>, expires_at: i64) -> Put {
        let version = expect.map_or(1, |v| v + 1);
        let mut item = key_attrs(key);
        item.insert("doc".into(), s(doc.to_string()));
        item.insert("version".into(), n(version));
        item.insert("expires_at".into(), n(expires_at));
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        match expect {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        }
        .build()
        .expect("table, item set")
    }

    /// One versioned put on its own (no transaction). A failed condition comes back as
    /// `Refusal::Condition` with the item as it was.
    pub async fn put(&self, key: &Key, doc: &Value, expect: Option<u64>, now: i64) -> Result<(), Refusal> {
        let p = self.put_request(key, doc, expect, now + STATE_TTL_SECONDS);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(p.item))
            .set_condition_expression(p.condition_expression)
            .set_expression_attribute_values(p.expression_attribute_values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(put_refusal)
    }

    /// The versioned document of a refused put's old item.
    pub fn old_doc<T: DeserializeOwned>(
        &self,
        key: &Key,
        old: &Option<HashMap<String, AttributeValue>>,
    ) -> Result<Option<Versioned<T>>, StateStoreError> {
        old.as_ref().map(|item| versioned(key, item)).transpose()
    }

    /// The decision recorded for one (category, account, event), if any.
    pub async fn decision(&self, key: &Key) -> Result<Option<Value>, StateStoreError> {
        Ok(self.get::<Value>(key).await?.map(|v| v.doc))
    }

    /// Apply `writes` and record the decision, all or nothing.
    pub async fn commit(&self, decision: &Key, stored: &Value, writes: Vec<Write>, now: i64) -> Result<(), Refusal> {
        let mut items = Vec::with_capacity(writes.len() + 1);
        items.push(
            TransactWriteItem::builder()
                .put(self.put_request(decision, stored, None, now + DECISION_TTL_SECONDS))
                .build(),
        );
        for w in writes {
            items.push(match w {
                Write::Put { key, doc, expect } => TransactWriteItem::builder()
                    .put(self.put_request(&key, &doc, expect, now + STATE_TTL_SECONDS))
                    .build(),
                Write::Delete { key, expect } => TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key_attrs(&key)))
                            .condition_expression("version = :v")
                            .expression_attribute_values(":v", n(expect))
                            .build()
                            .expect("table, key set"),
                    )
                    .build(),
            });
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(transaction_refusal)
    }

    /// Whether a counter applied or voided `token`.
    pub async fn token_state(&self, key: &Key, token: &str) -> Result<TokenState, StateStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .projection_expression("#tok, #void")
            .expression_attribute_names("#tok", "tok")
            .expression_attribute_names("#void", "void")
            .send()
            .boxed()
            .await
            .map_err(|e| self.refused(refusal(e, |_| None)))?;
        let item = out.item.unwrap_or_default();
        Ok(token_state(&item, token))
    }

    /// Mark `token` void on a counter unless it was applied. `Applied` when it was.
    pub async fn void(&self, key: &Key, token: &str, now: i64) -> Result<TokenState, StateStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .update_expression("ADD #void :t SET expires_at = :exp")
            .condition_expression("NOT contains(#tok, :one)")
            .expression_attribute_names("#tok", "tok")
            .expression_attribute_names("#void", "void")
            .expression_attribute_values(":t", AttributeValue::Ss(vec![token.to_string()]))
            .expression_attribute_values(":one", s(token))
            .expression_attribute_values(":exp", n(now + STATE_TTL_SECONDS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await;
        match result.map_err(update_refusal) {
            Ok(_) => Ok(TokenState::Voided),
            Err(Refusal::Condition(_)) => Ok(TokenState::Applied),
            Err(r) => Err(self.refused(r)),
        }
    }

    /// Add a batch's delta to a counter, once per token: refused when the token was applied
    /// (an earlier try of this request went through: `Done`) or voided.
    pub async fn apply(
        &self,
        key: &Key,
        token: &str,
        delta: &Delta,
        with_numbers: bool,
        now: i64,
    ) -> Result<Applied, StateStoreError> {
        // `void` is a reserved word of DynamoDB's expressions: every name goes through a placeholder.
        let mut names = HashMap::from([
            ("#tok".to_string(), "tok".to_string()),
            ("#void".to_string(), "void".to_string()),
        ]);
        let mut values = HashMap::new();
        let mut adds = vec!["#tok :t".to_string()];
        for (i, (attr, by)) in delta.numbers.iter().enumerate() {
            names.insert(format!("#n{i}"), attr.clone());
            values.insert(format!(":n{i}"), n(by));
            adds.push(format!("#n{i} :n{i}"));
        }
        let mut condition = "NOT contains(#tok, :one) AND NOT contains(#void, :one)".to_string();
        let numbers = with_numbers && !delta.bounced_numbers.is_empty();
        if numbers {
            adds.push("bn :bn".into());
            values.insert(":bn".into(), AttributeValue::Ss(delta.bounced_numbers.clone()));
            values.insert(
                ":room".into(),
                n(crate::rules::rates::NUMBERS_PER_BUCKET - delta.bounced_numbers.len()),
            );
            condition.push_str(" AND (attribute_not_exists(bn) OR size(bn) <= :room)");
        }
        values.insert(":t".into(), AttributeValue::Ss(vec![token.to_string()]));
        values.insert(":one".into(), s(token));
        values.insert(":exp".into(), n(now + STATE_TTL_SECONDS));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .update_expression(format!("ADD {} SET expires_at = :exp", adds.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await;
        match result.map_err(update_refusal) {
            Ok(_) => Ok(Applied::Done),
            Err(Refusal::Condition(old)) => {
                let old = old.unwrap_or_default();
                Ok(match token_state(&old, token) {
                    TokenState::Applied => Applied::Done,
                    TokenState::Voided => Applied::Voided,
                    TokenState::Unknown if numbers => Applied::ListFull,
                    TokenState::Unknown => Applied::Voided,
                })
            }
            Err(r) => Err(self.refused(r)),
        }
    }
}

fn token_state(item: &HashMap<String, AttributeValue>, token: &str) -> TokenState {
    if tokens(item, "tok").iter().any(|t| t == token) {
        TokenState::Applied
    } else if tokens(item, "void").iter().any(|t| t == token) {
        TokenState::Voided
    } else {
        TokenState::Unknown
    }
}
