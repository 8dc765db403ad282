//! The Lambda entry point every category function shares: build settings and clients once at cold
//! start, then for each SQS batch: parse, load subscriptions (cached; one Query per uncached
//! account), evaluate the category's rules, and hand each (webhook, subscription) to the delivery
//! engine. Retry messages on the queue go straight to the engine.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use lambda_runtime::{service_fn, LambdaEvent};
use tokio::sync::Semaphore;

use crate::aws::AwsEnv;
use crate::batch::{redelivery_delay, run_batch};
use crate::categories::{count_batch, decide};
use crate::config::Settings;
use crate::delivery::attempt::undeliverable;
use crate::delivery::client::build_client_with_timeout;
use crate::delivery::engine::{Engine, EngineConfig, EngineError, Handled, Job};
use crate::delivery::notice::{self, Audience};
use crate::delivery::queue::Queues;
use crate::delivery::task::{parse_message, Message, Notice, RetryTask};
use crate::event::{InputEvent, ParseError};
use crate::plan;
use crate::rules::{check_consumed, Emit, RuleError};
use crate::store::claims::Claims;
use crate::store::loader::{Loaded, SubscriptionLoader};
use crate::store::pace::PaceStore;
use crate::store::seal::{SealKeyError, SealKeys};
use crate::store::state::{StateStore, StateStoreError};
use crate::store::subscriptions::{AccountSubscriptions, SubscriptionQueryError, SubscriptionWriter};
use crate::subscription::ParseOptions;
use crate::trigger::{Category, Trigger};
use crate::webhook::Webhook;

pub struct App {
    pub settings: Settings,
    pub state: StateStore,
    pub engine: Engine,
    pub subscriptions: SubscriptionLoader,
    /// Records evaluated at once (`record_concurrency`). Only the evaluation holds a slot: the
    /// deliveries that follow are bounded by the engine's lanes and send slots, so a record whose
    /// receiver is slow never keeps the batch's other records from being evaluated and sent.
    pub evaluating: Semaphore,
}

/// Why one record was not fully handled; it is reported as a batch item failure and redelivered.
#[derive(Debug, thiserror::Error)]
pub enum MessageFailure {
    #[error("malformed message: {0}")]
    Malformed(#[from] ParseError),
    #[error("event {event_id}: {source}")]
    Rule { event_id: String, source: RuleError },
    #[error("event {event_id}: trigger state: {source}")]
    State {
        event_id: String,
        source: Box<StateStoreError>,
    },
    #[error("message {message_id}: {source}")]
    Seal { message_id: String, source: SealKeyError },
    #[error("account {account_id}: subscriptions unavailable: {source}")]
    Subscriptions {
        account_id: String,
        source: Arc<SubscriptionQueryError>,
    },
    #[error("account {account_id}: subscriptions not loaded for this batch")]
    NotLoaded { account_id: String },
    #[error("event {event_id}: {failed} of {total} deliveries need another go; first: {first}")]
    Delivery {
        event_id: String,
        failed: usize,
        total: usize,
        first: Box<EngineError>,
    },
}

impl MessageFailure {
    /// The one delivery step of a record could not be completed.
    fn one(event_id: String, error: EngineError) -> Self {
        MessageFailure::Delivery {
            event_id,
            failed: 1,
            total: 1,
            first: Box::new(error),
        }
    }
}

/// What every record of a batch shares: the subscriptions loaded for it and the invocation's
/// deadline.
struct Batch {
    loaded: Loaded,
    deadline: Option<Instant>,
}

/// One SQS record: its raw body (kept to dead-letter it as is) and what it parsed to.
pub struct Incoming {
    message_id: Option<String>,
    body: String,
    parsed: Result<Message, ParseError>,
    /// What the batch-wide pass (outcome counts) already decided for this event.
    decided: Option<Result<Vec<Emit>, StateStoreError>>,
}

impl App {
    pub async fn from_env(category: Category) -> Result<Self, lambda_runtime::Error> {
        let settings = Settings::from_env(category)?;
        let aws = AwsEnv::from_env()?;
        let dynamodb = crate::aws::DynamoDb::of(aws.clone());
        let batch = crate::store::partiql::DirectBatch::from_env(&aws);
        // Both parse the SDK's endpoint partition table: on one thread of their own, beside the
        // runtime's first request for work, the client first (the first event's Query needs it).
        let (client, endpoint) = (dynamodb.clone(), batch.endpoint().clone());
        crate::aws::in_background(move || {
            client.client();
            endpoint.client();
        });
        let batch = Arc::new(batch);
        let http = build_client_with_timeout(settings.allow_private_targets, settings.http_timeout)?;
        let sqs = crate::aws::Sqs::of(aws);
        Ok(Self::new(settings, dynamodb, batch, sqs, http))
    }

    /// `batch` sends the delivery's claims and results in PartiQL batches
    /// ([`crate::store::partiql::DirectBatch`] in the functions).
    pub fn new(
        settings: Settings,
        dynamodb: impl Into<crate::aws::DynamoDb>,
        batch: Arc<dyn crate::store::partiql::PartiqlBatch>,
        sqs: impl Into<crate::aws::Sqs>,
        http: reqwest::Client,
    ) -> Self {
        let dynamodb: crate::aws::DynamoDb = dynamodb.into();
        let engine = Engine::new(
            http,
            Claims {
                client: dynamodb.clone(),
                table: settings.state_table.clone(),
            },
            batch,
            SubscriptionWriter {
                client: dynamodb.clone(),
                table: settings.subscriptions_table.clone(),
            },
            Queues {
                sqs: sqs.into(),
                seals: SealKeys::new(dynamodb.clone(), settings.state_table.clone()),
                queue_url: settings.queue_url.clone(),
                dead_letter_url: settings.dead_letter_queue_url.clone(),
            },
            PaceStore {
                client: dynamodb.clone(),
                table: settings.state_table.clone(),
            },
            EngineConfig::from_settings(&settings),
        );
        let subscriptions = SubscriptionLoader::new(
            dynamodb.clone(),
            settings.subscriptions_table.clone(),
            ParseOptions {
                allow_private_targets: settings.allow_private_targets,
            },
            settings.subscription_cache_ttl,
        );
        let state = StateStore {
            client: dynamodb.clone(),
            table: settings.state_table.clone(),
        };
        App {
            evaluating: Semaphore::new(settings.record_concurrency),
            settings,
            state,
            engine,
            subscriptions,
        }
    }

    /// One SQS batch, to be answered before `deadline` (Lambda's; `None` for no limit).
    pub async fn handle(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        // Each record's receipt and receive count, to shorten the wait of those that fail; only
        // for records of this function's own queue.
        let own_queue = self.settings.queue_url.rsplit('/').next().unwrap_or_default();
        let receipts: std::collections::HashMap<String, (String, u32)> = event
            .records
            .iter()
            .filter(|m| {
                m.event_source_arn
                    .as_deref()
                    .is_none_or(|arn| arn.rsplit(':').next() == Some(own_queue))
            })
            .filter_map(|m| {
                let count = m
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some((m.message_id.clone()?, (m.receipt_handle.clone()?, count)))
            })
            .collect();
        let mut records: Vec<(Option<String>, Incoming)> = event
            .records
            .into_iter()
            .map(|m| {
                let body = m.body.unwrap_or_default();
                let parsed = parse_message(&body);
                (
                    m.message_id.clone(),
                    Incoming {
                        message_id: m.message_id,
                        body,
                        parsed,
                        decided: None,
                    },
                )
            })
            .collect();
        let batch = Batch {
            loaded: self
                .subscriptions
                .load(
                    records
                        .iter()
                        .filter_map(|(_, r)| r.parsed.as_ref().ok().map(Message::account_id)),
                    Instant::now(),
                    deadline,
                )
                .await,
            deadline,
        };
        if self.settings.category == Category::Performance {
            let events = records
                .iter()
                .enumerate()
                .filter_map(|(i, (_, r))| match &r.parsed {
                    Ok(Message::Event(e)) => Some((i, e)),
                    _ => None,
                })
                .collect();
            let counted = count_batch(&self.state, events, &batch.loaded, Utc::now()).await;
            for (i, result) in counted {
                records[i].1.decided = Some(result);
            }
        }
        let all = records.len().max(1); // `evaluating`, the lanes and the send slots bound the work
        let response = run_batch(records, all, |parsed| self.process(parsed, &batch)).await;
        if let Ok(r) = &response {
            let back: Vec<(String, std::time::Duration)> = r
                .batch_item_failures
                .iter()
                .filter_map(|f| receipts.get(&f.item_identifier))
                .map(|(receipt, count)| (receipt.clone(), redelivery_delay(*count, rand::random::<f64>())))
                .collect();
            if !back.is_empty() {
                self.engine.queues().back_off(&back).await;
            }
        }
        let (counts, latencies) = self.engine.metrics().take();
        if let Some(line) = crate::metrics::emf(
            self.settings.category,
            counts,
            &latencies,
            Utc::now().timestamp_millis(),
        ) {
            crate::logging::write_line(&line.to_string());
        }
        let backlogs = self.engine.metrics().take_backlogs();
        for line in crate::metrics::emf_backlogs(self.settings.category, &backlogs, Utc::now().timestamp_millis()) {
            crate::logging::write_line(&line.to_string());
        }
        Ok(response?)
    }

    fn subscriptions<'l>(
        &self,
        loaded: &'l Loaded,
        account_id: &str,
    ) -> Result<&'l AccountSubscriptions, MessageFailure> {
        match loaded.get(account_id) {
            Some(Ok(subs)) => Ok(subs),
            Some(Err(source)) => Err(MessageFailure::Subscriptions {
                account_id: account_id.to_string(),
                source: source.clone(),
            }),
            None => Err(MessageFailure::NotLoaded {
                account_id: account_id.to_string(),
            }),
        }
    }

    async fn process(&self, incoming: Incoming, batch: &Batch) -> Result<(), MessageFailure> {
        let message = match incoming.parsed {
            Ok(message) => message,
            Err(e) => {
                let field = e.field().map(str::to_string);
                return self
                    .reject(
                        &incoming.body,
                        incoming.message_id.as_deref(),
                        &e.to_string(),
                        field.as_deref(),
                        e,
                    )
                    .await;
            }
        };
        if !matches!(message, Message::Event(_)) {
            let key = self
                .engine
                .queues()
                .seals
                .get()
                .await
                .map_err(|e| MessageFailure::Seal {
                    message_id: incoming.message_id.clone().unwrap_or_default(),
                    source: e,
                })?;
            let queue = self.engine.queues().queue_name();
            if let Some(why) = message.refusal(key, queue, Utc::now().timestamp()) {
                // Published to the topic, edited on the way, copied from another category's queue
                // or replayed after its time: never sent. Kept, with why.
                let reason = format!("internal message not authenticated: {why}");
                tracing::warn!(
                    message_id = incoming.message_id.as_deref().unwrap_or(""),
                    account_id = message.account_id(),
                    why,
                    "unauthenticated internal message; dead-lettered, not sent"
                );
                return self
                    .engine
                    .queues()
                    .dead_letter_message(&incoming.body, incoming.message_id.as_deref(), &reason, Some("seal"))
                    .await
                    .map_err(|e| MessageFailure::one(incoming.message_id.clone().unwrap_or_default(), e.into()));
            }
        }
        match message {
            Message::Event(event) => match self.process_event(&event, incoming.decided, batch).await {
                // A misrouted event can never succeed here: dead-letter it with the reason.
                Err(MessageFailure::Rule { source, .. }) => {
                    let reason = source.to_string();
                    self.engine
                        .queues()
                        .dead_letter_message(&incoming.body, incoming.message_id.as_deref(), &reason, Some("type"))
                        .await
                        .map_err(|e| MessageFailure::one(event.id.clone(), e.into()))
                }
                // State DynamoDB refuses as invalid (an item over 400 KB): retrying cannot help.
                Err(MessageFailure::State { source, .. }) if source.is_permanent() => {
                    let reason = format!("trigger state: {source}");
                    tracing::error!(event_id = %event.id, reason, "event cannot be evaluated; dead-lettered");
                    self.engine
                        .queues()
                        .dead_letter_message(&incoming.body, incoming.message_id.as_deref(), &reason, None)
                        .await
                        .map_err(|e| MessageFailure::one(event.id.clone(), e.into()))
                }
                other => other,
            },
            Message::Retry(task) => self.deliver_task(task, batch, false).await,
            Message::Redrive(letter) => {
                let task = RetryTask::redrive_of(letter, Utc::now().timestamp());
                self.deliver_task(task, batch, true).await
            }
            Message::Notice(notice) => self.deliver_notice(&notice, batch).await,
        }
    }

    /// An operational webhook, to every other valid subscription of the account that names its
    /// trigger (and whose filter takes it), as first attempts: signed, claimed, retried and
    /// dead-lettered like any webhook. Never to the subscription it is about.
    async fn deliver_notice(&self, notice: &Notice, batch: &Batch) -> Result<(), MessageFailure> {
        let Some(trigger) = notice.trigger.parse::<Trigger>().ok().filter(|t| t.is_operational()) else {
            // Sealed by this deployment, so written by a version that knew the trigger: nothing
            // to send in this one. Said, not failed.
            tracing::warn!(notice_id = %notice.notice_id, trigger = %notice.trigger, "operational webhook of an unknown trigger dropped");
            return Ok(());
        };
        let subs = self.subscriptions(&batch.loaded, &notice.account_id)?;
        let at = crate::event::Timestamp(chrono::DateTime::from_timestamp(notice.at, 0).unwrap_or_default());
        let webhook = Webhook::from_parts(trigger, &notice.notice_id, &notice.account_id, at, &notice.data);
        let emits = [Emit::all(trigger, notice.data.clone())];
        let webhooks = [webhook];
        let first_attempt_at = Utc::now().timestamp();
        let jobs: Vec<Job> = plan::deliveries(&emits, &webhooks, &subs.valid)
            .into_iter()
            .filter(|d| d.subscription.subscription_id != notice.about)
            .map(|d| Job {
                subscription: d.subscription,
                webhook_id: d.webhook_id,
                trigger,
                event_id: &notice.notice_id,
                body: &webhooks[0].body,
                attempt: 1,
                first_attempt_at,
                redrive: false,
                deadline: batch.deadline,
                held: None,
                // An operational webhook's own fate is told to nobody.
                audience: Audience::default(),
            })
            .collect();
        self.run_jobs(&jobs, &notice.account_id, &notice.notice_id).await
    }

    /// One message's jobs, together; the first error fails the message (SQS redelivers it, and
    /// the claims keep the webhooks already sent from going twice).
    async fn run_jobs(&self, jobs: &[Job<'_>], account_id: &str, event_id: &str) -> Result<(), MessageFailure> {
        let total = jobs.len();
        // Each job polled only when its own wake-up comes: `join_all` polls every job of the
        // message on each wake-up of any of them (docs/performance.md, "Fifth pass").
        let mut running: FuturesUnordered<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| async move { (i, self.engine.run(job).await) })
            .collect();
        let mut errors = Vec::new();
        while let Some((i, result)) = running.next().await {
            match result {
                Ok(Handled::Disabled { .. }) => self.subscriptions.invalidate(account_id),
                Ok(_) => {}
                Err(e) => errors.push((i, e)),
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        let failed = errors.len();
        match errors.into_iter().map(|(_, e)| e).next() {
            None => Ok(()),
            Some(first) => Err(MessageFailure::Delivery {
                event_id: event_id.to_string(),
                failed,
                total,
                first: Box::new(first),
            }),
        }
    }

    /// A message that can never be processed: logged with the field at fault and put on the DLQ
    /// with the reason, so it neither retries in vain nor disturbs the rest of the batch. Only if
    /// the DLQ cannot be written is the record failed (SQS then redelivers it).
    async fn reject(
        &self,
        body: &str,
        message_id: Option<&str>,
        reason: &str,
        field: Option<&str>,
        error: ParseError,
    ) -> Result<(), MessageFailure> {
        tracing::error!(
            message_id = message_id.unwrap_or(""),
            field = field.unwrap_or(""),
            reason,
            "malformed message"
        );
        match self
            .engine
            .queues()
            .dead_letter_message(body, message_id, reason, field)
            .await
        {
            Ok(()) => Ok(()),
            Err(dlq) => {
                tracing::error!(error = %dlq, "could not dead-letter a malformed message; leaving it to SQS");
                Err(MessageFailure::Malformed(error))
            }
        }
    }

    async fn process_event(
        &self,
        event: &InputEvent,
        decided: Option<Result<Vec<Emit>, StateStoreError>>,
        batch: &Batch,
    ) -> Result<(), MessageFailure> {
        let category = self.settings.category;
        check_consumed(category, event).map_err(|source| MessageFailure::Rule {
            event_id: event.id.clone(),
            source,
        })?;
        let subs = self.subscriptions(&batch.loaded, &event.account_id)?;
        let emits = match decided {
            Some(result) => result,
            None => {
                let _slot = self.evaluating.acquire().await.expect("never closed");
                decide(category, &self.state, event, subs, Utc::now()).await
            }
        }
        .map_err(|source| MessageFailure::State {
            event_id: event.id.clone(),
            source: Box::new(source),
        })?;
        if emits.is_empty() {
            return Ok(());
        }
        let first_attempt_at = Utc::now().timestamp();
        let webhooks = plan::webhooks(event, &emits);
        let jobs: Vec<Job> = plan::deliveries(&emits, &webhooks, &subs.valid)
            .into_iter()
            .map(|d| Job {
                subscription: d.subscription,
                webhook_id: d.webhook_id,
                trigger: webhooks[d.webhook].trigger,
                event_id: &event.id,
                body: &webhooks[d.webhook].body,
                attempt: 1,
                first_attempt_at,
                redrive: false,
                deadline: batch.deadline,
                held: None,
                audience: Audience::of(&subs.valid, &d.subscription.subscription_id),
            })
            .collect();
        self.run_jobs(&jobs, &event.account_id, &event.id).await
    }

    async fn deliver_task(&self, task: RetryTask, batch: &Batch, redrive: bool) -> Result<(), MessageFailure> {
        let now = Utc::now().timestamp();
        if task.not_before > now {
            // A delay longer than SQS allows: wait another leg.
            let remaining = std::time::Duration::from_secs((task.not_before - now) as u64);
            return self
                .engine
                .queues()
                .enqueue_retry(&task, remaining)
                .await
                .map_err(|first| MessageFailure::one(task.event_id.clone(), first.into()));
        }
        let subs = self.subscriptions(&batch.loaded, &task.account_id)?;
        let record = subs.valid.iter().find(|s| s.subscription_id == task.subscription_id);
        // The wire keeps the name (sealed as written); an unknown one is a trigger nobody wants.
        let trigger = task.trigger.parse::<Trigger>().ok();
        let refusal = match (record, trigger) {
            (None, _) if subs.invalid.iter().any(|e| e.subscription_id == task.subscription_id) => {
                Some("the subscription's record is invalid")
            }
            (None, _) => Some("the subscription was deleted"),
            (Some(sub), _) if !sub.enabled => Some("the subscription is disabled"),
            (Some(_), None) => Some("the trigger is unknown to this deployment"),
            (Some(sub), Some(t)) if !sub.wants(t) => Some("the subscription no longer wants this trigger"),
            _ => None,
        };
        if let Some(why) = refusal {
            // Never dropped: dead-lettered with the reason, to redrive once the record is fixed.
            let origin = record.map(|s| s.url.origin().ascii_serialization());
            let reason = format!("not sent: {why} (redrive it once the subscription is enabled again)");
            tracing::warn!(
                webhook_id = %task.webhook_id,
                account_id = %task.account_id,
                subscription_id = %task.subscription_id,
                trigger = %task.trigger,
                reason,
                "retry dead-lettered"
            );
            let letter = undeliverable(&task, origin, reason);
            self.engine
                .queues()
                .dead_letter(&letter)
                .await
                .map_err(|e| MessageFailure::one(task.event_id.clone(), e.into()))?;
            self.engine.metrics().observe(crate::metrics::Observed::Undeliverable);
            let audience = Audience::of(&subs.valid, &task.subscription_id);
            if notice::reported(&task.trigger) && audience.wants(Trigger::WebhookDeadLettered) {
                let notice = notice::dead_lettered(&letter, now);
                if let Err(e) = self.engine.notify(&notice, batch.deadline).await {
                    tracing::warn!(webhook_id = %task.webhook_id, error = %e, "could not queue webhook.dead_lettered");
                }
            }
            return Ok(());
        }
        let (Some(sub), Some(trigger)) = (record, trigger) else {
            unreachable!("refused above")
        };
        let job = Job {
            subscription: sub,
            webhook_id: task.webhook_id.clone(),
            trigger,
            event_id: &task.event_id,
            body: task.body.as_bytes(),
            attempt: task.attempt,
            first_attempt_at: task.first_attempt_at,
            redrive: redrive || task.held.is_some_and(|h| h.redrive),
            deadline: batch.deadline,
            held: task.held,
            audience: Audience::of(&subs.valid, &sub.subscription_id),
        };
        match self.engine.run(&job).await {
            Ok(Handled::Disabled { .. }) => {
                self.subscriptions.invalidate(&task.account_id);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(first) => Err(MessageFailure::one(task.event_id.clone(), first)),
        }
    }
}

/// Lambda's deadline (milliseconds since the epoch; 0 when unknown) as an `Instant`, given the
/// wall clock and the monotonic clock read together.
pub fn deadline_instant(deadline_ms: u64, now_ms: i64, now: Instant) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let remaining = (deadline_ms as i64).saturating_sub(now_ms).max(0) as u64;
    Some(now + std::time::Duration::from_millis(remaining))
}

/// What each function's `main` is: one thread, its runtime writing the log lines gathered while
/// it worked before it waits (`crate::logging::Gathered`), then [`run`].
pub fn main(category: Category) -> Result<(), lambda_runtime::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::logging::write_gathered)
        .build()?;
    let result = runtime.block_on(run(category));
    crate::logging::write_gathered();
    result
}

/// The function: its clients, then Lambda's invocations until the runtime stops.
pub async fn run(category: Category) -> Result<(), lambda_runtime::Error> {
    crate::logging::init();
    let app = match App::from_env(category).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(category = %category, error = %e, "cold start failed");
            return Err(e);
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_instant(event.context.deadline, Utc::now().timestamp_millis(), Instant::now());
        // Every line of the invocation carries its request id and, when traced (Tracing Active, or
        // sampled upstream), its X-Ray trace id: a log line leads to its trace.
        let span = tracing::info_span!(
            "invocation",
            request_id = %event.context.request_id,
            xray_trace_id = event.context.xray_trace_id.as_deref().unwrap_or(""),
        );
        let answer = tracing::Instrument::instrument(app.handle(event.payload, deadline), span).await;
        // The invocation's lines before its answer: Lambda may freeze the process once it has it.
        crate::logging::write_gathered();
        answer
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lambdas_deadline_becomes_an_instant() {
        let now = Instant::now();
        assert_eq!(deadline_instant(0, 1_000, now), None, "0: no deadline given");
        assert_eq!(
            deadline_instant(31_000, 1_000, now),
            Some(now + Duration::from_secs(30))
        );
        assert_eq!(deadline_instant(500, 1_000, now), Some(now), "already past: now");
    }
}
