//! Trigger state in the State table, and the commit that makes each stateful evaluation happen
//! once per (category, input event).
//!
//! A stateful evaluation reads what it needs, decides (pure code in rules::state), and commits in
//! one DynamoDB transaction: its state writes (versioned puts and deletes, atomic counters) plus a
//! decision item `decision#<category>#<event id>` holding the webhooks it decided to emit. A
//! redelivered event finds its decision and re-emits the same webhooks (their claims stop a second
//! send) without touching state again: counters count each event once, edges fire once.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::store::attributes::{n, s};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::rules::Emit;
use crate::trigger::{Category, Trigger};

/// State and decisions are kept this long.
pub const STATE_TTL_SECONDS: i64 = 30 * 86_400;
pub const DECISION_TTL_SECONDS: i64 = 7 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("state table {table}: {source}")]
    Aws {
        table: String,
        #[source]
        source: aws_sdk_dynamodb::Error,
    },
    #[error("state item {pk}/{sk} holds a document that does not parse: {reason}")]
    Corrupt { pk: String, sk: String, reason: String },
    /// Another invocation changed the same state first; evaluate again.
    #[error("concurrent update of the same state")]
    Conflict,
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
    Put {
        pk: String,
        sk: String,
        doc: Value,
        expect: Option<u64>,
    },
    /// Remove the item if it is still at `expect`.
    Delete { pk: String, sk: String, expect: u64 },
    /// Add to numeric attributes and string sets, creating the item if needed.
    Add {
        pk: String,
        sk: String,
        numbers: Vec<(String, i64)>,
        strings: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct StateStore {
    pub client: Client,
    pub table: String,
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

impl StateStore {
    fn aws(&self, e: impl Into<aws_sdk_dynamodb::Error>) -> StateStoreError {
        StateStoreError::Aws {
            table: self.table.clone(),
            source: e.into(),
        }
    }

    /// Read one versioned document.
    pub async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<Versioned<T>>, StateStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.aws(e))?;
        let Some(item) = out.item else { return Ok(None) };
        let corrupt = |reason: String| StateStoreError::Corrupt {
            pk: pk.into(),
            sk: sk.into(),
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
        Ok(Some(Versioned { doc, version }))
    }

    /// Read the numeric and string-set attributes of every item with `pk` and `sk` in [from, to].
    pub async fn range(
        &self,
        pk: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StateStoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item.map_err(|e| self.aws(e))?);
        }
        Ok(out)
    }

    /// The emits decided for this event by an earlier, committed evaluation.
    pub async fn decision(&self, category: Category, event_id: &str) -> Result<Option<Vec<Emit>>, StateStoreError> {
        let pk = format!("decision#{category}#{event_id}");
        let stored: Option<Versioned<Vec<StoredEmit>>> = self.get(&pk, "decision").await?;
        Ok(stored.map(|v| v.doc.into_iter().filter_map(StoredEmit::into_emit).collect()))
    }

    /// Apply `writes` and record the decision, all or nothing. `Conflict` when another invocation
    /// got there first (the caller evaluates again).
    pub async fn commit(
        &self,
        category: Category,
        event_id: &str,
        emits: &[Emit],
        writes: Vec<Write>,
        now: i64,
    ) -> Result<(), StateStoreError> {
        let stored: Vec<StoredEmit> = emits.iter().map(StoredEmit::from).collect();
        let mut items = Vec::with_capacity(writes.len() + 1);
        items.push(self.put_item(
            &format!("decision#{category}#{event_id}"),
            "decision",
            &serde_json::to_value(stored).expect("emits serialize"),
            None,
            now + DECISION_TTL_SECONDS,
        ));
        for w in writes {
            items.push(self.write_item(w, now));
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                Err(StateStoreError::Conflict)
            }
            Err(e) => Err(self.aws(e)),
        }
    }

    fn put_item(&self, pk: &str, sk: &str, doc: &Value, expect: Option<u64>, expires_at: i64) -> TransactWriteItem {
        let version = expect.map_or(1, |v| v + 1);
        let mut item = key(pk, sk);
        item.insert("doc".into(), s(doc.to_string()));
        item.insert("version".into(), n(version));
        item.insert("expires_at".into(), n(expires_at));
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match expect {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        TransactWriteItem::builder()
            .put(put.build().expect("table, item set"))
            .build()
    }

    fn write_item(&self, w: Write, now: i64) -> TransactWriteItem {
        match w {
            Write::Put { pk, sk, doc, expect } => self.put_item(&pk, &sk, &doc, expect, now + STATE_TTL_SECONDS),
            Write::Delete { pk, sk, expect } => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(&pk, &sk)))
                        .condition_expression("version = :v")
                        .expression_attribute_values(":v", n(expect))
                        .build()
                        .expect("table, key set"),
                )
                .build(),
            Write::Add {
                pk,
                sk,
                numbers,
                strings,
            } => {
                let mut names = HashMap::new();
                let mut values = HashMap::new();
                let mut adds = Vec::new();
                for (i, (attr, by)) in numbers.into_iter().enumerate() {
                    names.insert(format!("#n{i}"), attr);
                    values.insert(format!(":n{i}"), n(by));
                    adds.push(format!("#n{i} :n{i}"));
                }
                for (i, (attr, member)) in strings.into_iter().enumerate() {
                    names.insert(format!("#s{i}"), attr);
                    values.insert(format!(":s{i}"), AttributeValue::Ss(vec![member]));
                    adds.push(format!("#s{i} :s{i}"));
                }
                values.insert(":exp".into(), n(now + STATE_TTL_SECONDS));
                let expression = format!("ADD {} SET expires_at = :exp", adds.join(", "));
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(&pk, &sk)))
                            .update_expression(expression)
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(Some(values))
                            .build()
                            .expect("table, key, expression set"),
                    )
                    .build()
            }
        }
    }
}

/// An emit as stored in a decision item.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct StoredEmit {
    trigger: String,
    data: Value,
    only: Option<String>,
}

impl From<&Emit> for StoredEmit {
    fn from(e: &Emit) -> Self {
        StoredEmit {
            trigger: e.trigger.as_str().into(),
            data: e.data.clone(),
            only: e.only.clone(),
        }
    }
}

impl StoredEmit {
    fn into_emit(self) -> Option<Emit> {
        let trigger = self.trigger.parse::<Trigger>().ok()?;
        Some(Emit {
            trigger,
            data: self.data,
            only: self.only,
        })
    }
}

/// A numeric attribute of a state item.
pub fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
