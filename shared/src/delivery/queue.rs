//! The functions' own queues, the one SQS adapter: retries on the category queue and dead
//! letters on its DLQ (webhooks given up on, and input that can never be processed). Retries and
//! webhook dead letters are sealed with the deployment's key, so nothing published to the events
//! topic can pass for one.

use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use futures::FutureExt;

use crate::delivery::retry::sqs_delay;
use crate::delivery::task::{sqs_text, to_sqs_json, DeadLetter, Notice, RetryTask};
use crate::store::seal::{SealKeyError, SealKeys};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("writing to queue {queue}: {reason}")]
    Send {
        queue: String,
        reason: String,
        /// Throttled, a service failure or no answer: worth sending again.
        transient: bool,
    },
    #[error(transparent)]
    Seal(#[from] SealKeyError),
}

impl crate::aws::Transient for QueueError {
    fn is_transient(&self) -> bool {
        match self {
            QueueError::Send { transient, .. } => *transient,
            QueueError::Seal(SealKeyError::Malformed { .. }) => false,
            QueueError::Seal(_) => true,
        }
    }
}

pub struct Queues {
    /// Built on first use ([`crate::aws::Sqs`]).
    pub sqs: crate::aws::Sqs,
    pub seals: SealKeys,
    /// The category queue (retries).
    pub queue_url: String,
    /// The category's dead-letter queue.
    pub dead_letter_url: String,
}

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("a string attribute has a type and a value")
}

impl Queues {
    /// The category queue's name (the last part of its URL): what internal messages are bound to.
    pub fn queue_name(&self) -> &str {
        self.queue_url.rsplit('/').next().unwrap_or_default()
    }

    fn failed(queue: &str, e: impl Into<aws_sdk_sqs::Error>) -> QueueError {
        use aws_sdk_sqs::error::ProvideErrorMetadata;
        let e: aws_sdk_sqs::Error = e.into();
        QueueError::Send {
            queue: queue.to_string(),
            transient: crate::aws::transient_code(e.code()),
            reason: e.to_string(),
        }
    }

    /// A retry on the category queue, delayed by at most 15 minutes (the rest is chained).
    pub async fn enqueue_retry(&self, task: &RetryTask, delay: Duration) -> Result<(), QueueError> {
        let key = self.seals.get().await?;
        let now = chrono::Utc::now().timestamp();
        let body = to_sqs_json(&task.clone().sealed_for(key, self.queue_name(), now));
        self.sqs
            .client()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(sqs_delay(delay))
            .send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(|e| Self::failed(&self.queue_url, e))
    }

    /// An operational webhook to fan out, sealed, on the category queue (read back at once).
    pub async fn enqueue_notice(&self, notice: &Notice) -> Result<(), QueueError> {
        let key = self.seals.get().await?;
        let now = chrono::Utc::now().timestamp();
        let body = to_sqs_json(&notice.clone().sealed_for(key, self.queue_name(), now));
        self.sqs
            .client()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(|e| Self::failed(&self.queue_url, e))
    }

    /// Records reported as failed come back after their backoff rather than the queue's whole
    /// visibility timeout: `(receipt handle, how long to stay invisible)`. One request each
    /// (records fail rarely; the single call is less code in every bootstrap than the batch one).
    /// Best effort: a record whose change fails comes back after the visibility timeout, as before.
    pub async fn back_off(&self, records: &[(String, Duration)]) {
        let changes = records.iter().map(|(receipt, wait)| {
            self.sqs
                .client()
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(wait.as_secs().min(43_200) as i32)
                .send()
        });
        let failed = futures::future::join_all(changes)
            .await
            .into_iter()
            .filter_map(Result::err)
            .map(aws_sdk_sqs::Error::from)
            .collect::<Vec<_>>();
        if let Some(first) = failed.first() {
            tracing::warn!(
                failed = failed.len(),
                error = %first,
                "failed records keep the queue's visibility timeout"
            );
        }
    }

    /// A webhook given up on, sealed, with its reason and webhook-id as attributes.
    pub async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        let now = chrono::Utc::now().timestamp();
        let letter = letter
            .clone()
            .sealed_for(self.seals.get().await?, self.queue_name(), now);
        self.sqs
            .client()
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(to_sqs_json(&letter))
            .message_attributes("reason", attr(&sqs_text(&letter.reason)))
            .message_attributes("webhook_id", attr(letter.webhook_id.as_str()))
            .send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(|e| Self::failed(&self.dead_letter_url, e))
    }

    /// A message that cannot be processed, on the DLQ as it is (so a redrive after a fix
    /// reprocesses it), with the reason, the field at fault and its original message id.
    pub async fn dead_letter_message(
        &self,
        body: &str,
        message_id: Option<&str>,
        reason: &str,
        field: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut req = self
            .sqs
            .client()
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(if body.is_empty() {
                "(empty)".into()
            } else {
                sqs_text(body)
            })
            .message_attributes(
                "reason",
                attr(&sqs_text(&reason.chars().take(1000).collect::<String>())),
            );
        if let Some(f) = field.filter(|f| !f.is_empty()) {
            req = req.message_attributes("field", attr(&sqs_text(f)));
        }
        if let Some(id) = message_id {
            req = req.message_attributes("source_message_id", attr(id));
        }
        req.send()
            .boxed()
            .await
            .map(|_| ())
            .map_err(|e| Self::failed(&self.dead_letter_url, e))
    }
}
