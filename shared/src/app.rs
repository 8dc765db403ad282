//! The Lambda entry point every category function shares: build settings and clients once at cold
//! start, then for each SQS batch parse, load subscriptions (one Query per account), evaluate the
//! category's rules and deliver.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::batch::run_batch;
use crate::config::Settings;
use crate::delivery::client::{build_client, send, DeliveryError};
use crate::event::{parse_event, InputEvent, ParseError};
use crate::rules::{evaluate, RuleError};
use crate::store::subscriptions::{load_account, AccountSubscriptions};
use crate::subscription::ParseOptions;
use crate::trigger::Category;
use crate::webhook::Webhook;

pub struct App {
    pub settings: Settings,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub http: reqwest::Client,
}

/// Why one record was not fully handled; it is reported as a batch item failure and redelivered.
#[derive(Debug, thiserror::Error)]
pub enum RecordFailure {
    #[error("malformed event: {0}")]
    Malformed(#[from] ParseError),
    #[error("event {event_id}: {source}")]
    Rule { event_id: String, source: RuleError },
    #[error("event {event_id}: subscriptions unavailable: {reason}")]
    Subscriptions { event_id: String, reason: String },
    #[error("event {event_id}: {failed} of {total} deliveries failed; first: {first}")]
    Delivery {
        event_id: String,
        failed: usize,
        total: usize,
        first: String,
    },
}

type Loaded = HashMap<String, Result<Arc<AccountSubscriptions>, String>>;

impl App {
    pub async fn from_env(category: Category) -> Result<Self, lambda_runtime::Error> {
        let settings = Settings::from_env(category)?;
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(App {
            settings,
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            http: build_client()?,
        })
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            allow_private_targets: self.settings.allow_private_targets,
        }
    }

    /// One SQS batch.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let records: Vec<(Option<String>, Result<InputEvent, ParseError>)> = event
            .records
            .into_iter()
            .map(|m| (m.message_id, parse_event(m.body.as_deref().unwrap_or(""))))
            .collect();
        let loaded = self
            .load_subscriptions(records.iter().filter_map(|(_, r)| r.as_ref().ok()))
            .await;
        let response = run_batch(records, self.settings.record_concurrency, |parsed| {
            self.process(parsed, &loaded)
        })
        .await?;
        Ok(response)
    }

    /// One Query per distinct account in the batch, concurrently. Invalid records are logged once
    /// each, naming account, subscription and field; they never stop the valid ones.
    async fn load_subscriptions<'a>(&self, events: impl Iterator<Item = &'a InputEvent>) -> Loaded {
        let mut accounts: Vec<&str> = events.map(|e| e.account_id.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let table = &self.settings.subscriptions_table;
        let results = join_all(
            accounts
                .iter()
                .map(|a| load_account(&self.dynamodb, table, a, self.parse_options())),
        )
        .await;
        accounts
            .into_iter()
            .zip(results)
            .map(|(account, result)| {
                let result = match result {
                    Ok(subs) => {
                        for bad in &subs.invalid {
                            tracing::error!(
                                account_id = %bad.account_id,
                                subscription_id = %bad.subscription_id,
                                field = %bad.field,
                                reason = %bad.reason,
                                "subscription record skipped: {bad}"
                            );
                        }
                        Ok(Arc::new(subs))
                    }
                    Err(e) => {
                        tracing::error!(account_id = account, error = %e, "could not load subscriptions");
                        Err(e.to_string())
                    }
                };
                (account.to_string(), result)
            })
            .collect()
    }

    async fn process(
        &self,
        parsed: Result<InputEvent, ParseError>,
        loaded: &Loaded,
    ) -> Result<(), RecordFailure> {
        let event = parsed?;
        let emits =
            evaluate(self.settings.category, &event).map_err(|source| RecordFailure::Rule {
                event_id: event.id.clone(),
                source,
            })?;
        if emits.is_empty() {
            return Ok(());
        }
        let subs = match loaded.get(&event.account_id) {
            Some(Ok(subs)) => subs,
            Some(Err(reason)) => {
                return Err(RecordFailure::Subscriptions {
                    event_id: event.id.clone(),
                    reason: reason.clone(),
                })
            }
            None => unreachable!("every parsed event's account was loaded"),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let event = &event;
        let mut attempts = Vec::new();
        for emit in &emits {
            let webhook = Webhook::new(event, emit.trigger, &emit.data);
            for sub in subs.valid.iter().filter(|s| s.wants(emit.trigger)) {
                let webhook = webhook.clone();
                attempts.push(async move {
                    let id = webhook.id_for(&sub.subscription_id);
                    let result = send(&self.http, sub, &webhook, &id, timestamp).await;
                    log_attempt(event, sub.subscription_id.as_str(), &webhook, &id, &result);
                    result
                });
            }
        }
        let total = attempts.len();
        let errors: Vec<DeliveryError> = join_all(attempts)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        match errors.first() {
            None => Ok(()),
            Some(first) => Err(RecordFailure::Delivery {
                event_id: event.id.clone(),
                failed: errors.len(),
                total,
                first: first.to_string(),
            }),
        }
    }
}

fn log_attempt(
    event: &InputEvent,
    subscription_id: &str,
    webhook: &Webhook,
    webhook_id: &str,
    result: &Result<crate::delivery::client::Delivered, DeliveryError>,
) {
    match result {
        Ok(d) => tracing::info!(
            event_id = %event.id,
            account_id = %event.account_id,
            subscription_id,
            trigger = %webhook.trigger,
            webhook_id,
            status = d.status,
            latency_ms = d.latency.as_millis() as u64,
            "webhook delivered"
        ),
        Err(e) => tracing::warn!(
            event_id = %event.id,
            account_id = %event.account_id,
            subscription_id,
            trigger = %webhook.trigger,
            webhook_id,
            error = %e,
            "webhook attempt failed"
        ),
    }
}

/// What each function's `main` calls.
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
        app.handle(event.payload).await
    }))
    .await
}
