//! `dataflows`: the operator's command line. It shares the functions' library, so a record it
//! accepts is a record the functions accept, a test webhook it sends is signed and guarded as theirs
//! are, and an event it publishes passes the same validation.
//!
//! Exit codes: 0 done; 1 what was checked failed (an invalid record or event, a receiver that did
//! not answer 2xx, a refused change); 2 usage; 3 AWS or the environment failed.

mod history;
mod progress;
mod records;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::{Parser, Subcommand};
use dataflows_shared::catalogue;
use dataflows_shared::delivery::client::{build_client, send, DeliveryError};
use dataflows_shared::event::parse_event;
use dataflows_shared::store::attributes::item_to_json;
use dataflows_shared::subscription::{
    parse_record, parse_record_within, ParseOptions, RegexBudget, Subscription, Triggers,
};
use dataflows_shared::trigger::Trigger;
use serde_json::{json, Map, Value};

#[derive(Parser)]
#[command(
    name = "dataflows",
    version,
    about = "Operate DataFlows SMS webhook triggers: subscriptions, test webhooks, events"
)]
struct Cli {
    /// A deployed stack: its Outputs are read from CloudFormation with the standard AWS credentials.
    #[arg(long, global = true)]
    stack: Option<String>,
    /// The local stack's outputs file (default: the nearest .local/outputs.json, written by `make up`).
    #[arg(long, global = true)]
    outputs: Option<PathBuf>,
    /// AWS region (default: the credential chain's; us-east-1 locally).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print webhook URLs whole; by default only their origin is shown (paths and queries often
    /// carry a receiver's token).
    #[arg(long, global = true)]
    show_urls: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscription records.
    #[command(subcommand)]
    Subscription(SubscriptionCmd),
    /// Send a subscription the catalogue's example of a trigger, signed with its secrets.
    ///
    /// Example: dataflows send-test --account acc_42 --subscription crm --trigger contact.added
    SendTest {
        #[arg(long)]
        account: String,
        #[arg(long)]
        subscription: String,
        /// Default: the first trigger the subscription wants.
        #[arg(long)]
        trigger: Option<String>,
    },
    /// The webhooks' contract: every trigger, its JSON Schema, the AsyncAPI document. Needs no stack.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Input events.
    #[command(subcommand)]
    Event(EventCmd),
    /// Signing secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// The categories' dead-letter queues.
    #[command(subcommand)]
    DeadLetters(DeadLettersCmd),
    /// Delivery history: each webhook with its trigger, attempts, statuses and last error.
    ///
    /// One webhook from its claim (kept 16 days); an account's from the functions' logs (the local
    /// stack's log files, or CloudWatch Logs on AWS, kept LogRetentionDays). Reads only what is
    /// already written: looking costs no write.
    ///
    /// Example: dataflows deliveries --account acc_42 --subscription crm --since 2h
    Deliveries {
        #[arg(long, required_unless_present = "webhook_id")]
        account: Option<String>,
        #[arg(long)]
        subscription: Option<String>,
        /// How far back (s, m, h, d).
        #[arg(long, default_value = "1h")]
        since: String,
        /// One webhook, from its claim.
        #[arg(long)]
        webhook_id: Option<String>,
        /// Where an account's history is read from.
        #[arg(long, value_enum, default_value = "auto")]
        source: LogSource,
        /// The local stack's log directory (default: .local/logs beside the outputs file).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Print a shell completion script.
    ///
    /// Example: dataflows completions bash > /etc/bash_completion.d/dataflows
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum WebhooksCmd {
    /// Every webhook type: what fires it, its category, its schema file.
    ///
    /// Example: dataflows webhooks list
    List,
    /// One webhook type's JSON Schema (as in schemas/webhooks/), with the catalogue's example.
    ///
    /// Example: dataflows webhooks schema sms.status_changed > sms.status_changed.schema.json
    Schema { trigger: String },
    /// The AsyncAPI 3.0 document of every webhook (as schemas/asyncapi.json).
    ///
    /// Example: dataflows webhooks asyncapi > asyncapi.json
    Asyncapi,
}

/// The contract commands: from the catalogue and the types built into this binary.
fn webhooks(cmd: &WebhooksCmd) -> Outcome {
    let examples = catalogue::examples();
    match cmd {
        WebhooksCmd::List => {
            let list: Vec<Value> = examples
                .iter()
                .map(|x| {
                    json!({
                        "trigger": x.trigger.as_str(),
                        "category": x.trigger.category().map(|c| c.as_str()),
                        "operational": x.trigger.is_operational(),
                        "fired_by": x.fired_by,
                        "when": x.when,
                        "schema": format!("schemas/webhooks/{}.schema.json", x.trigger),
                    })
                })
                .collect();
            Ok(json!({"webhooks": list}))
        }
        WebhooksCmd::Schema { trigger } => {
            let trigger = trigger.parse::<Trigger>().map_err(|_| {
                let names: Vec<&str> = Trigger::EVERY.iter().map(|t| t.as_str()).collect();
                (
                    Failure::Check(format!("{trigger} is not a webhook type; one of: {}", names.join(", "))),
                    Value::Null,
                )
            })?;
            let example = examples
                .iter()
                .find(|x| x.trigger == trigger)
                .expect("an example of every trigger");
            Ok(Value::from(dataflows_shared::contract::webhook_schema(example)))
        }
        WebhooksCmd::Asyncapi => Ok(dataflows_shared::contract::asyncapi(
            &examples,
            env!("CARGO_PKG_VERSION"),
        )),
    }
}

/// A record given as flags instead of a file.
#[derive(clap::Args, Clone, Default)]
struct RecordFlags {
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    url: Option<String>,
    /// A trigger name, or * for all; repeat for several.
    #[arg(long)]
    trigger: Vec<String>,
    /// An EventBridge-style pattern over the webhook body, as JSON (docs/subscriptions.md).
    #[arg(long)]
    filter: Option<String>,
    /// A static header, NAME=VALUE; repeat for several.
    #[arg(long)]
    header: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    /// A `whsec_` secret of your own (default: one is generated).
    #[arg(long)]
    secret: Option<String>,
    /// Requests per second the receiver takes, across every function (fractions allowed: 0.5
    /// is one every 2 s). Without it the sender slows down on 429 and 503 answers only.
    #[arg(long)]
    rate_limit: Option<f64>,
}

impl RecordFlags {
    /// The plain-JSON record the flags describe (validated later, like a file's).
    fn to_record(&self) -> Result<Value, String> {
        let mut record = json!({"account_id": self.account, "subscription_id": self.id, "url": self.url});
        record["triggers"] = match self.trigger.as_slice() {
            [all] if all == "*" => json!("*"),
            list => json!(list),
        };
        if let Some(filter) = &self.filter {
            record["filter"] = serde_json::from_str(filter).map_err(|e| format!("--filter is not JSON: {e}"))?;
        }
        if !self.header.is_empty() {
            let mut headers = Map::new();
            for h in &self.header {
                let (name, value) = h
                    .split_once('=')
                    .ok_or_else(|| format!("--header {h:?} is not NAME=VALUE"))?;
                headers.insert(name.trim().to_string(), Value::String(value.to_string()));
            }
            record["headers"] = Value::Object(headers);
        }
        if let Some(d) = &self.description {
            record["description"] = json!(d);
        }
        if let Some(secret) = &self.secret {
            record["secrets"] = json!([secret]);
        }
        if let Some(rate) = self.rate_limit {
            record["rate_limit"] = json!(rate);
        }
        Ok(record)
    }
}

/// Which dead letters a command looks at.
#[derive(clap::Args, Clone)]
struct LetterFilter {
    /// One category (sms, operations, contacts, messaging, performance, admin), or `sns` for the
    /// events SNS could not deliver to a category queue; default all of them.
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    subscription: Option<String>,
    /// Only letters whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand)]
enum DeadLettersCmd {
    /// What is on the dead-letter queues, and why (messages are left in place).
    ///
    /// Example: dataflows dead-letters list --category sms --subscription crm
    List {
        #[command(flatten)]
        filter: LetterFilter,
    },
    /// Move matching dead letters back to their category queue: input events are processed again,
    /// a webhook's dead letter restarts its retry schedule. An event SNS could not deliver goes to
    /// every category queue that consumes its type (the unrouted queue if none does); a category
    /// that already had it sees a duplicate and sends nothing twice.
    ///
    /// Example: dataflows dead-letters redrive --category sms --subscription crm
    Redrive {
        #[command(flatten)]
        filter: LetterFilter,
        /// Stop after moving this many.
        #[arg(long, default_value_t = 10_000)]
        max: usize,
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Put a new secret in front; the old ones keep signing until --keep-old has passed, and are
    /// removed by the next rotate after that, or at once with --retire.
    ///
    /// Example: dataflows secret rotate --account acc_42 --id crm --keep-old 24h
    Rotate {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        /// How long the old secrets keep signing (s, m, h, d).
        #[arg(long, default_value = "24h")]
        keep_old: String,
        /// Do not add a secret: remove every secret but the first now.
        #[arg(long)]
        retire: bool,
    },
}

#[derive(Subcommand)]
enum SubscriptionCmd {
    /// Validate record files exactly as the functions do (plain or DynamoDB-typed JSON).
    ///
    /// Example: dataflows subscription validate docs/examples/subscriptions/*.json
    Validate {
        files: Vec<PathBuf>,
        /// Accept http:// and private targets, as the local stack does.
        #[arg(long)]
        allow_private_targets: bool,
    },
    /// Validate and write a record, from a file or from flags; a `whsec_` secret is generated
    /// (and printed once) if none is given. Conditions (balance_low, keywords, ...) need a file.
    ///
    /// Example: dataflows subscription put crm.json
    ///
    /// Example: dataflows subscription put --account acc_42 --id crm --url https://crm.example.com/hooks --trigger contact.added --trigger contact.updated
    Put {
        #[arg(required_unless_present_all = ["account", "id", "url", "trigger"], conflicts_with_all = ["account", "id", "url", "trigger", "filter", "header", "description", "secret", "rate_limit"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        fields: RecordFlags,
        /// Replace an existing record (only if nobody changed it since it was read).
        #[arg(long)]
        replace: bool,
    },
    /// An account's records, secrets masked, with their failure state.
    ///
    /// Example: dataflows subscription list --account acc_42
    List {
        #[arg(long)]
        account: String,
    },
    /// One record, secrets masked, with its validation result.
    ///
    /// Example: dataflows subscription show --account acc_42 --id crm
    Show {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
    },
    /// Enable a record (clears the disabled reason and the failing streak).
    ///
    /// Example: dataflows subscription enable --account acc_42 --id crm
    Enable {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
    },
    /// Disable a record, with a reason.
    ///
    /// Example: dataflows subscription disable --account acc_42 --id crm --reason "endpoint moving"
    Disable {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum EventCmd {
    /// Validate an input envelope and publish it to the events topic (`-` reads stdin).
    ///
    /// Example: dataflows event publish my-sms.json
    Publish { file: PathBuf },
}

/// How a command ended.
enum Failure {
    /// What was checked failed (exit 1).
    Check(String),
    /// AWS or the environment failed (exit 3).
    Env(String),
}

type Outcome = Result<Value, (Failure, Value)>;

fn env<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> (Failure, Value) + '_ {
    move |e| (Failure::Env(format!("{what}: {e}")), Value::Null)
}

fn read_json(path: &PathBuf) -> Result<Value, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn validate(files: &[PathBuf], opts: ParseOptions) -> Outcome {
    let mut results = Vec::new();
    let mut bad = 0;
    for path in files {
        let result = read_json(path)
            .and_then(|v| records::record_from_json(&v))
            .and_then(|record| {
                parse_record(&record, opts)
                    .map(|s| format!("{}/{}", s.account_id, s.subscription_id))
                    .map_err(|e| e.to_string())
            });
        match &result {
            Ok(id) => results.push(json!({"file": path, "valid": true, "subscription": id})),
            Err(reason) => {
                bad += 1;
                results.push(json!({"file": path, "valid": false, "error": reason}))
            }
        }
    }
    let out = json!({"results": results, "invalid": bad});
    if bad > 0 {
        Err((Failure::Check(format!("{bad} invalid record(s)")), out))
    } else {
        Ok(out)
    }
}

fn key(account: &str, id: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("account_id".to_string(), AttributeValue::S(account.into())),
        ("subscription_id".to_string(), AttributeValue::S(id.into())),
    ]
    .into()
}

async fn get_record(
    t: &target::Target,
    account: &str,
    id: &str,
) -> Result<Option<Map<String, Value>>, (Failure, Value)> {
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the subscription"))?;
    Ok(got.item.map(|item| item_to_json(&item)))
}

fn summary(record: &Map<String, Value>, opts: ParseOptions, budget: &mut RegexBudget, show_urls: bool) -> Value {
    let parsed = parse_record_within(record, opts, budget);
    let url = record.get("url").and_then(Value::as_str).map(|u| {
        if show_urls {
            u.to_string()
        } else {
            records::masked_url(u)
        }
    });
    json!({
        "account_id": record.get("account_id"),
        "subscription_id": record.get("subscription_id"),
        "url": url,
        "triggers": record.get("triggers"),
        "enabled": record.get("enabled").cloned().unwrap_or(Value::Bool(true)),
        "disabled_reason": record.get("disabled_reason"),
        "failing_since": record.get("failing_since"),
        "rate_limit": record.get("rate_limit"),
        "valid": parsed.is_ok(),
        "error": parsed.err().map(|e| e.to_string()),
    })
}

/// The subscription's shared pacing state (docs/design.md, "Pacing"), as an operator reads it:
/// how far ahead its send slots are taken, a pause, the adaptive rate, and the backlog the last
/// writer reported. `null` when the subscription was never paced.
async fn pacing(t: &target::Target, account: &str, id: &str) -> Result<Value, (Failure, Value)> {
    let table = t.output("StateTableName").map_err(|e| (Failure::Env(e), Value::Null))?;
    let k = dataflows_shared::store::keys::pace(account, id);
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(k.pk))
        .key("sk", AttributeValue::S(k.sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the subscription's pacing"))?;
    let Some(item) = got.item else {
        return Ok(Value::Null);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let state = dataflows_shared::store::pace::state_of(&item);
    let raw = item_to_json(&item);
    let seconds = |ms: i64| ((ms - now).max(0) as f64 / 1000.0 * 10.0).round() / 10.0;
    let oldest = raw.get("held_oldest").and_then(Value::as_i64).filter(|&t| t > 0);
    Ok(json!({
        "slots_reserved_for_s": seconds(state.tat_ms),
        "paused_for_s": seconds(state.paused_until_ms),
        "adaptive_rate": state.adaptive.filter(|a| a.active(now)).map(|a| (a.rate_at(now) * 100.0).round() / 100.0),
        "held_back": raw.get("held").and_then(Value::as_i64).unwrap_or(0),
        "oldest_held_s": oldest.map(|t| (now - t) / 1000),
    }))
}

async fn put(t: &target::Target, file: Option<&PathBuf>, flags: &RecordFlags, replace: bool) -> Outcome {
    let mut record = file
        .map_or_else(|| flags.to_record(), read_json)
        .and_then(|v| records::record_from_json(&v))
        .map_err(|e| (Failure::Check(e), Value::Null))?;
    let mut generated = None;
    if !record.contains_key("secret") && !record.contains_key("secrets") {
        let secret = records::new_secret();
        record.insert("secrets".into(), json!([secret]));
        generated = Some(secret);
    }
    let opts = ParseOptions {
        allow_private_targets: t.local,
    };
    let sub = parse_record(&record, opts).map_err(|e| (Failure::Check(e.to_string()), Value::Null))?;
    let existing = get_record(t, &sub.account_id, &sub.subscription_id).await?;
    if existing.is_some() && !replace {
        return Err((
            Failure::Check(format!(
                "{}/{} exists; pass --replace to overwrite it",
                sub.account_id, sub.subscription_id
            )),
            Value::Null,
        ));
    }
    let previous_update = existing.as_ref().and_then(|r| r.get("updated_at")).cloned();
    record.insert("updated_at".into(), Value::String(now_rfc3339()));
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut request = t
        .dynamodb()
        .put_item()
        .table_name(table)
        .set_item(Some(records::to_item(&record)));
    // Never lose a concurrent change: write only over exactly what was read.
    request = match (&existing, previous_update) {
        (None, _) => request.condition_expression("attribute_not_exists(account_id)"),
        (Some(_), Some(previous)) => request
            .condition_expression("updated_at = :seen")
            .expression_attribute_values(":seen", records::to_attribute(&previous)),
        (Some(_), None) => {
            request.condition_expression("attribute_exists(account_id) AND attribute_not_exists(updated_at)")
        }
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => {}
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            return Err((
                Failure::Check(format!(
                    "{}/{} was changed by someone else meanwhile; nothing written, read it again",
                    sub.account_id, sub.subscription_id
                )),
                Value::Null,
            ))
        }
        Err(e) => return Err(env("writing the subscription")(e)),
    }
    Ok(json!({"stored": records::masked(&record, true), "generated_secret": generated}))
}

async fn set_enabled(t: &target::Target, account: &str, id: &str, enabled: bool, reason: &str) -> Outcome {
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut request = t
        .dynamodb()
        .update_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .condition_expression("attribute_exists(account_id)")
        .expression_attribute_values(":e", AttributeValue::Bool(enabled))
        .expression_attribute_values(":u", AttributeValue::S(now_rfc3339()));
    request = if enabled {
        request.update_expression("SET enabled = :e, updated_at = :u REMOVE disabled_reason, failing_since")
    } else {
        request
            .update_expression("SET enabled = :e, updated_at = :u, disabled_reason = :r")
            .expression_attribute_values(":r", AttributeValue::S(reason.into()))
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => Ok(json!({"account_id": account, "subscription_id": id, "enabled": enabled})),
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            Err((Failure::Check(format!("no subscription {account}/{id}")), Value::Null))
        }
        Err(e) => Err(env("updating the subscription")(e)),
    }
}

fn pick_trigger(sub: &Subscription, asked: Option<&str>) -> Result<Trigger, String> {
    if let Some(name) = asked {
        return name
            .parse::<Trigger>()
            .map_err(|_| format!("{name} is not a trigger (see docs/webhooks.md)"));
    }
    match &sub.triggers {
        Triggers::All => Ok(Trigger::SmsReceived),
        Triggers::Only(list) => list
            .first()
            .copied()
            .ok_or_else(|| "the subscription wants no trigger".into()),
    }
}

async fn send_test(t: &target::Target, account: &str, id: &str, trigger: Option<&str>) -> Outcome {
    let record = get_record(t, account, id)
        .await?
        .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
    let opts = ParseOptions {
        allow_private_targets: t.local,
    };
    let sub = parse_record(&record, opts).map_err(|e| (Failure::Check(e.to_string()), Value::Null))?;
    let trigger = pick_trigger(&sub, trigger).map_err(|e| (Failure::Check(e), Value::Null))?;
    let mut example = catalogue::example(trigger);
    example.account_id = sub.account_id.clone();
    example.event_id = format!("evt_test_{:016x}", rand::random::<u64>());
    let webhook = example.webhook();
    let webhook_id = webhook.id_for(&sub.subscription_id);
    let client = build_client(t.local).map_err(env("building the HTTP client"))?;
    let now = chrono::Utc::now().timestamp();
    let sent = send(&client, &sub, &webhook_id, now, &webhook.body, t.local).await;
    let (ok, status, latency_ms, detail) = match &sent {
        Ok(d) => (true, Some(d.status), Some(d.latency.as_millis() as u64), String::new()),
        Err(DeliveryError::FailureStatus { status, body, .. }) => {
            (false, Some(*status), None, body.chars().take(200).collect())
        }
        Err(e) => (false, None, None, e.to_string()),
    };
    let out = json!({
        "subscription": format!("{}/{}", sub.account_id, sub.subscription_id),
        "trigger": trigger.as_str(), "webhook_id": webhook_id, "status": status,
        "latency_ms": latency_ms, "ok": ok, "detail": detail,
    });
    if ok {
        Ok(out)
    } else {
        Err((Failure::Check("the receiver did not answer 2xx".into()), out))
    }
}

async fn publish(t: &target::Target, file: &PathBuf) -> Outcome {
    let value = read_json(file).map_err(|e| (Failure::Check(e), Value::Null))?;
    let text = value.to_string();
    let event = parse_event(&text).map_err(|e| {
        let field = e.field().map(str::to_string);
        (
            Failure::Check(format!("invalid event: {e}")),
            json!({"field": field, "error": e.to_string()}),
        )
    })?;
    let topic = t.output("EventsTopicArn").map_err(|e| (Failure::Env(e), Value::Null))?;
    let published = t
        .sns()
        .publish()
        .topic_arn(topic)
        .message(text)
        .send()
        .await
        .map_err(aws_sdk_sns::Error::from)
        .map_err(env("publishing"))?;
    Ok(json!({"event_id": event.id, "type": event.event_type().to_string(), "message_id": published.message_id}))
}

/// `secrets` as a list, whether the record holds `secrets` or a single `secret`.
fn secret_list(record: &Map<String, Value>) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(list) => list.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            Value::String(text) => serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| vec![text.clone()]),
            _ => Vec::new(),
        }
    };
    record
        .get("secrets")
        .map(strings)
        .or_else(|| record.get("secret").map(strings))
        .unwrap_or_default()
}

async fn rotate(t: &target::Target, account: &str, id: &str, keep_old: &str, retire: bool) -> Outcome {
    let keep = dataflows_shared::config::parse_schedule(keep_old)
        .ok()
        .and_then(|d| (d.len() == 1).then(|| d[0]))
        .ok_or_else(|| {
            (
                Failure::Check(format!("--keep-old {keep_old:?} is not a duration like 24h")),
                Value::Null,
            )
        })?;
    let record = get_record(t, account, id)
        .await?
        .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
    let before = secret_list(&record);
    if before.is_empty() {
        return Err((
            Failure::Check(format!("{account}/{id} has no secret to rotate")),
            Value::Null,
        ));
    }
    let now = chrono::Utc::now();
    let expired = record
        .get("secrets_keep_until")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|until| until <= now);
    // Old secrets go when asked, or when their overlap is over.
    let mut after = if retire || expired {
        before[..1].to_vec()
    } else {
        before.clone()
    };
    let mut generated = None;
    if !retire {
        let secret = records::new_secret();
        after.insert(0, secret.clone());
        generated = Some(secret);
    }
    let max = dataflows_shared::subscription::MAX_SECRETS;
    if after.len() > max {
        return Err((
            Failure::Check(format!(
                "{account}/{id} would hold {} secrets (at most {max}); retire the old ones first with --retire",
                after.len()
            )),
            Value::Null,
        ));
    }
    let keep_until = (after.len() > 1).then(|| {
        (now + chrono::Duration::from_std(keep).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let table = t
        .output("SubscriptionsTableName")
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let mut set = "SET secrets = :after, updated_at = :u".to_string();
    let mut remove = vec!["secret"];
    match &keep_until {
        Some(_) => set.push_str(", secrets_keep_until = :k"),
        None => remove.push("secrets_keep_until"),
    }
    let mut request = t
        .dynamodb()
        .update_item()
        .table_name(table)
        .set_key(Some(key(account, id)))
        .update_expression(format!("{set} REMOVE {}", remove.join(", ")))
        .expression_attribute_values(
            ":after",
            AttributeValue::L(after.iter().map(|s| AttributeValue::S(s.clone())).collect()),
        )
        .expression_attribute_values(":u", AttributeValue::S(now_rfc3339()));
    if let Some(k) = &keep_until {
        request = request.expression_attribute_values(":k", AttributeValue::S(k.clone()));
    }
    // Never lose a concurrent change: only over the secrets that were read.
    request = match (record.get("secrets"), record.get("secret")) {
        (Some(v), _) => request
            .condition_expression("secrets = :before")
            .expression_attribute_values(":before", records::to_attribute(v)),
        (None, Some(v)) => request
            .condition_expression("secret = :before AND attribute_not_exists(secrets)")
            .expression_attribute_values(":before", records::to_attribute(v)),
        (None, None) => unreachable!("a record without secrets was refused above"),
    };
    match request.send().await.map_err(aws_sdk_dynamodb::Error::from) {
        Ok(_) => {}
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => {
            return Err((
                Failure::Check(format!(
                    "the secrets of {account}/{id} changed meanwhile; nothing written, run it again"
                )),
                Value::Null,
            ))
        }
        Err(e) => return Err(env("rotating the secret")(e)),
    }
    Ok(json!({
        "subscription": format!("{account}/{id}"),
        "secrets": after.iter().map(|s| records::mask(s)).collect::<Vec<_>>(),
        "removed": before.len() + usize::from(generated.is_some()) - after.len(),
        "old_secrets_sign_until": keep_until,
        "generated_secret": generated,
    }))
}

const CATEGORIES: &[&str] = &["sms", "operations", "contacts", "messaging", "performance", "admin"];

/// One webhook's history from its claim item.
async fn claim_history(t: &target::Target, webhook_id: &str) -> Outcome {
    let table = t.output("StateTableName").map_err(|e| (Failure::Env(e), Value::Null))?;
    let got = t
        .dynamodb()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("webhook#{webhook_id}")))
        .key("sk", AttributeValue::S("delivery".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)
        .map_err(env("reading the claim"))?;
    let Some(item) = got.item else {
        return Err((
            Failure::Check(format!("no claim for {webhook_id} (never sent, or older than 16 days)")),
            Value::Null,
        ));
    };
    let claim = item_to_json(&item);
    let field = |k: &str| claim.get(k).cloned().unwrap_or(Value::Null);
    Ok(json!({"deliveries": [{
        "webhook_id": webhook_id, "status": field("status"), "account_id": field("account_id"),
        "subscription_id": field("subscription_id"), "trigger": field("trigger"), "event_id": field("event_id"),
        "attempts": field("attempts"),
    }]}))
}

/// Where an account's history is read from.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum LogSource {
    /// The local stack's log files for the local stack, CloudWatch Logs Insights for --stack.
    Auto,
    /// The local stack's log files (.local/logs, or --logs DIR).
    Files,
    /// CloudWatch Logs Insights over the six functions' log groups (/aws/lambda/<function>).
    Cloudwatch,
}

async fn deliveries(
    t: &target::Target,
    account: &str,
    subscription: Option<&str>,
    since: &str,
    source: LogSource,
    logs: Option<&std::path::Path>,
) -> Outcome {
    let span = dataflows_shared::config::parse_schedule(since)
        .ok()
        .and_then(|d| (d.len() == 1).then(|| d[0]))
        .ok_or_else(|| {
            (
                Failure::Check(format!("--since {since:?} is not a duration like 2h")),
                Value::Null,
            )
        })?;
    let to = chrono::Utc::now();
    let q = history::Query {
        account,
        subscription,
        from: to - chrono::Duration::from_std(span).unwrap_or_default(),
        to,
    };
    let files = match source {
        LogSource::Files => true,
        LogSource::Cloudwatch => false,
        LogSource::Auto => t.local || logs.is_some(),
    };
    let mut out = json!({"account_id": account,
                         "since": q.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    if files {
        let dir = logs
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| t.local_logs.clone());
        out["source"] = json!(dir.display().to_string());
        out["deliveries"] = json!(history::from_files(&dir, CATEGORIES, &q).map_err(env("reading the logs"))?);
        return Ok(out);
    }
    let log_groups = CATEGORIES
        .iter()
        .map(|c| {
            t.output(&format!("{}FunctionName", capitalized(c)))
                .map(|name| format!("/aws/lambda/{name}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (found, truncated) = history::from_insights(
        &aws_sdk_cloudwatchlogs::Client::new(&t.config),
        &log_groups,
        &q,
        |lines| {
            if interactive {
                eprint!("\rread {lines} log lines");
            }
        },
    )
    .await
    .map_err(env("querying CloudWatch Logs"))?;
    if interactive {
        eprintln!();
    }
    if truncated {
        eprintln!(
            "dataflows: over {} delivery lines in one second: some attempts are missing; narrow with --subscription",
            history::INSIGHTS_ROW_LIMIT
        );
    }
    out["source"] = json!(log_groups);
    out["truncated"] = json!(truncated);
    out["deliveries"] = json!(found);
    Ok(out)
}

fn capitalized(category: &str) -> String {
    let mut c = category.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// One dead letter as listed: a webhook given up on, or an input message refused.
fn describe_letter(category: &str, m: &aws_sdk_sqs::types::Message) -> Value {
    let body: Value = m
        .body()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let attr = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    };
    let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "category": category,
        "message_id": m.message_id(),
        "kind": if body.get("dataflows_dead_letter").is_some() { "webhook" } else { "input" },
        "account_id": field("account_id"),
        "subscription_id": field("subscription_id"),
        "trigger": field("trigger"),
        "webhook_id": field("webhook_id"),
        "event_id": body.get("event_id").or_else(|| body.get("id")).cloned().unwrap_or(Value::Null),
        "attempts": field("attempts"),
        "reason": attr("reason").map(Value::String).unwrap_or_else(|| field("reason")),
        "field": attr("field"),
    })
}

fn letter_matches(letter: &Value, f: &LetterFilter) -> bool {
    let is = |key: &str, want: &Option<String>| want.as_ref().is_none_or(|w| letter[key].as_str() == Some(w.as_str()));
    is("account_id", &f.account)
        && is("subscription_id", &f.subscription)
        && f.reason
            .as_ref()
            .is_none_or(|r| letter["reason"].as_str().is_some_and(|have| have.contains(r.as_str())))
}

/// The dead-letter source of SNS's own failures (the events delivery DLQ), beside the categories.
const SNS_SOURCE: &str = "sns";

/// The stack output naming a category's dead-letter queue (or the events delivery DLQ).
fn dlq_output(category: &str) -> String {
    if category == SNS_SOURCE {
        "EventsDeliveryDeadLetterQueueUrl".into()
    } else {
        format!("{}DeadLetterQueueUrl", capitalized(category))
    }
}

/// The categories a dead-letter command looks at: the one asked for, or all six and the events
/// delivery DLQ (when the stack has one: stacks deployed before it was added do not).
fn chosen_categories<'a>(t: &target::Target, filter: &'a LetterFilter) -> Result<Vec<&'a str>, (Failure, Value)> {
    match &filter.category {
        Some(c) if CATEGORIES.contains(&c.as_str()) || c == SNS_SOURCE => Ok(vec![c.as_str()]),
        Some(c) => Err((
            Failure::Check(format!(
                "{c} is not a category: {}, or {SNS_SOURCE}",
                CATEGORIES.join(", ")
            )),
            Value::Null,
        )),
        None => {
            let mut all = CATEGORIES.to_vec();
            if t.output(&dlq_output(SNS_SOURCE)).is_ok() {
                all.push(SNS_SOURCE);
            }
            Ok(all)
        }
    }
}

/// How many messages the chosen dead-letter queues hold (approximately, as SQS counts).
async fn letters_waiting(t: &target::Target, filter: &LetterFilter) -> Result<usize, (Failure, Value)> {
    let sqs = aws_sdk_sqs::Client::new(&t.config);
    let mut total = 0;
    for category in chosen_categories(t, filter)? {
        let dlq = t
            .output(&dlq_output(category))
            .map_err(|e| (Failure::Env(e), Value::Null))?;
        let got = sqs
            .get_queue_attributes()
            .queue_url(dlq)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .map_err(env("reading a dead-letter queue's depth"))?;
        total += got
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Walk the chosen dead-letter queues once: each message is received (hidden for 60 s), passed to
/// `take`, and made visible again unless `take` says it was moved. Returns what `take` saw.
async fn walk_letters(
    t: &target::Target,
    filter: &LetterFilter,
    mut take: impl AsyncFnMut(&str, &aws_sdk_sqs::types::Message, &Value) -> Result<bool, String>,
    mut looked: impl FnMut(usize, usize),
) -> Result<(Vec<Value>, usize), (Failure, Value)> {
    let categories = chosen_categories(t, filter)?;
    let sqs = aws_sdk_sqs::Client::new(&t.config);
    let mut seen = Vec::new();
    let mut failed = 0;
    let mut count = 0;
    for category in categories {
        let dlq = t
            .output(&dlq_output(category))
            .map_err(|e| (Failure::Env(e), Value::Null))?
            .to_string();
        let mut ids = std::collections::HashSet::new();
        let mut hidden = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&dlq)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)
                .map_err(env("reading a dead-letter queue"))?;
            let fresh: Vec<_> = got
                .messages()
                .iter()
                .filter(|m| m.message_id().is_some_and(|id| ids.insert(id.to_string())))
                .cloned()
                .collect();
            if fresh.is_empty() {
                break;
            }
            for m in fresh {
                let letter = describe_letter(category, &m);
                let moved = if letter_matches(&letter, filter) {
                    match take(category, &m, &letter).await {
                        Ok(moved) => moved,
                        Err(e) => {
                            failed += 1;
                            eprintln!("dataflows: {}: {e}", m.message_id().unwrap_or("?"));
                            false
                        }
                    }
                } else {
                    false
                };
                if letter_matches(&letter, filter) {
                    seen.push(letter);
                }
                if !moved {
                    hidden.extend(m.receipt_handle().map(str::to_string));
                }
                count += 1;
                looked(count, failed);
            }
        }
        for handle in hidden {
            // Visible again at once for the next reader (and the functions' own redrive).
            let _ = sqs
                .change_message_visibility()
                .queue_url(&dlq)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
    Ok((seen, failed))
}

async fn dead_letters(t: &target::Target, cmd: &DeadLettersCmd) -> Outcome {
    match cmd {
        DeadLettersCmd::List { filter } => {
            let (letters, _) = walk_letters(t, filter, async |_, _, _| Ok(false), |_, _| ()).await?;
            Ok(json!({"dead_letters": letters}))
        }
        DeadLettersCmd::Redrive { filter, max } => {
            let sqs = aws_sdk_sqs::Client::new(&t.config);
            let bar = progress::Bar::new(letters_waiting(t, filter).await?);
            // Shared by the two callbacks: `take` counts what it moved, the per-message one
            // (given what was looked at and failed so far) draws the bar.
            let moved = std::cell::Cell::new(0usize);
            let last = std::cell::Cell::new(progress::Tally::default());
            let (matched, failed) = walk_letters(
                t,
                filter,
                async |category, m, _| {
                    if moved.get() >= *max {
                        return Ok(false);
                    }
                    redrive_one(&sqs, t, category, m).await?;
                    moved.set(moved.get() + 1);
                    Ok(true)
                },
                |looked, failed| {
                    let tally = progress::Tally {
                        looked,
                        moved: moved.get(),
                        skipped: looked - moved.get() - failed,
                        failed,
                    };
                    last.set(tally);
                    bar.show(tally);
                },
            )
            .await?;
            bar.finish(last.get());
            let moved = moved.get();
            let out = json!({"moved": moved, "matched": matched.len(), "skipped": matched.len() - moved - failed,
                             "failed": failed});
            if failed > 0 {
                Err((Failure::Env(format!("{failed} message(s) could not be moved")), out))
            } else {
                Ok(out)
            }
        }
    }
}

/// The stack outputs of the queues a dead letter goes back to: its category's queue; for an event
/// SNS could not deliver, every category queue that consumes its type, as the topic's filter
/// policies route it (the unrouted queue when none does).
fn redrive_queues(category: &str, body: &str) -> Vec<String> {
    if category != SNS_SOURCE {
        return vec![format!("{}QueueUrl", capitalized(category))];
    }
    let ty = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string));
    let consumers: Vec<String> = dataflows_shared::Category::ALL
        .iter()
        .filter(|c| c.consumes().iter().any(|t| Some(t.as_str()) == ty.as_deref()))
        .map(|c| format!("{}QueueUrl", capitalized(c.as_str())))
        .collect();
    if consumers.is_empty() {
        vec!["UnroutedQueueUrl".into()]
    } else {
        consumers
    }
}

/// One dead letter back to its category queue, with its attributes; deleted from the DLQ only
/// once sent (a failure between the two leaves a copy in both: at least once, never lost).
async fn redrive_one(
    sqs: &aws_sdk_sqs::Client,
    t: &target::Target,
    category: &str,
    m: &aws_sdk_sqs::types::Message,
) -> Result<(), String> {
    let dlq = t.output(&dlq_output(category))?;
    for queue in redrive_queues(category, m.body().unwrap_or_default()) {
        let queue = t.output(&queue)?;
        let mut send = sqs
            .send_message()
            .queue_url(queue)
            .message_body(m.body().unwrap_or_default());
        for (name, value) in m.message_attributes().into_iter().flatten() {
            send = send.message_attributes(name, value.clone());
        }
        send.send().await.map_err(|e| aws_sdk_sqs::Error::from(e).to_string())?;
    }
    sqs.delete_message()
        .queue_url(dlq)
        .receipt_handle(m.receipt_handle().unwrap_or_default())
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::Error::from(e).to_string())?;
    Ok(())
}

fn print_human(command: &Command, out: &Value) {
    match command {
        Command::Webhooks(WebhooksCmd::List) => {
            println!("{:<24} {:<13} {:<25} schema", "webhook", "category", "fired by");
            for w in out["webhooks"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<13} {:<25} {}",
                    w["trigger"].as_str().unwrap_or(""),
                    w["category"].as_str().unwrap_or("operational"),
                    w["fired_by"].as_str().unwrap_or(""),
                    w["schema"].as_str().unwrap_or("")
                );
                println!("    {}", w["when"].as_str().unwrap_or(""));
            }
        }
        // A schema or a document: printed byte for byte as the published file, to be saved or
        // piped (a closed pipe, as `| head` makes, is not an error).
        Command::Webhooks(_) => {
            use std::io::Write;
            let _ = std::io::stdout()
                .lock()
                .write_all(dataflows_shared::contract::canonical_text(out).as_bytes());
        }
        Command::Subscription(SubscriptionCmd::Validate { .. }) => {
            for r in out["results"].as_array().into_iter().flatten() {
                if r["valid"] == true {
                    println!(
                        "ok       {}  {}",
                        r["file"].as_str().unwrap_or(""),
                        r["subscription"].as_str().unwrap_or("")
                    );
                } else {
                    println!(
                        "INVALID  {}  {}",
                        r["file"].as_str().unwrap_or(""),
                        r["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Command::Subscription(SubscriptionCmd::List { .. }) => {
            println!(
                "{:<24} {:<8} {:<6} {:<22} {:<40} url",
                "subscription", "enabled", "valid", "failing since", "triggers"
            );
            for r in out["subscriptions"].as_array().into_iter().flatten() {
                let failing = r["failing_since"]
                    .as_i64()
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<24} {:<8} {:<6} {:<22} {:<40} {}",
                    r["subscription_id"].as_str().unwrap_or("?"),
                    r["enabled"],
                    r["valid"],
                    failing,
                    r["triggers"].to_string(),
                    r["url"].as_str().unwrap_or("")
                );
                if let Some(reason) = r["disabled_reason"].as_str() {
                    println!("    disabled: {reason}");
                }
                if let Some(error) = r["error"].as_str() {
                    println!("    invalid: {error}");
                }
            }
        }
        Command::Subscription(SubscriptionCmd::Put { .. }) => {
            println!("{}", serde_json::to_string_pretty(&out["stored"]).unwrap_or_default());
            if let Some(secret) = out["generated_secret"].as_str() {
                println!("\nGenerated signing secret (shown once; give it to the receiver):\n{secret}");
            }
        }
        Command::Deliveries { .. } => {
            let list = out["deliveries"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<38} {:<16} {:<22} {:<14} {:>8}  last error",
                "webhook-id", "subscription", "trigger", "status", "attempts"
            );
            for d in &list {
                let text = |k: &str| d[k].as_str().unwrap_or("-").to_string();
                println!(
                    "{:<38} {:<16} {:<22} {:<14} {:>8}  {}",
                    text("webhook_id"),
                    text("subscription_id"),
                    text("trigger"),
                    text("status"),
                    d["attempts"].as_array().map_or(0, Vec::len),
                    d["last_error"].as_str().unwrap_or("")
                );
            }
            println!("{} webhook(s)", list.len());
        }
        Command::DeadLetters(DeadLettersCmd::List { .. }) => {
            let letters = out["dead_letters"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<12} {:<8} {:<24} {:<16} {:<22} reason",
                "category", "kind", "account", "subscription", "trigger"
            );
            for l in &letters {
                let text = |k: &str| l[k].as_str().unwrap_or("-").to_string();
                println!(
                    "{:<12} {:<8} {:<24} {:<16} {:<22} {}",
                    text("category"),
                    text("kind"),
                    text("account_id"),
                    text("subscription_id"),
                    text("trigger"),
                    text("reason")
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        Command::DeadLetters(DeadLettersCmd::Redrive { .. }) => {
            println!(
                "moved {} of {} matching dead letter(s); {} skipped (--max), {} failed",
                out["moved"], out["matched"], out["skipped"], out["failed"]
            );
        }
        Command::Secret(_) => {
            println!(
                "{}: secrets now {}",
                out["subscription"].as_str().unwrap_or(""),
                out["secrets"]
            );
            if let Some(until) = out["old_secrets_sign_until"].as_str() {
                println!("the old secret(s) keep signing until {until}; the next rotate after that removes them");
            }
            if let Some(secret) = out["generated_secret"].as_str() {
                println!("\nNew signing secret (shown once; give it to the receiver):\n{secret}");
            }
        }
        Command::SendTest { .. } => {
            println!(
                "{} {} -> {}  status {}  {}",
                out["subscription"].as_str().unwrap_or(""),
                out["trigger"].as_str().unwrap_or(""),
                if out["ok"] == true { "ok" } else { "FAILED" },
                out["status"],
                out["latency_ms"]
                    .as_u64()
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_default()
            );
            if let Some(detail) = out["detail"].as_str().filter(|d| !d.is_empty()) {
                println!("  {detail}");
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(out).unwrap_or_default()),
    }
}

async fn run(cli: &Cli) -> Outcome {
    if let Command::Completions { shell } = &cli.command {
        use clap::CommandFactory;
        clap_complete::generate(*shell, &mut Cli::command(), "dataflows", &mut std::io::stdout());
        return Ok(Value::Null);
    }
    if let Command::Webhooks(cmd) = &cli.command {
        return webhooks(cmd);
    }
    if let Command::Subscription(SubscriptionCmd::Validate {
        files,
        allow_private_targets,
    }) = &cli.command
    {
        return validate(
            files,
            ParseOptions {
                allow_private_targets: *allow_private_targets,
            },
        );
    }
    let t = target::resolve(cli.stack.as_deref(), cli.outputs.as_deref(), cli.region.as_deref())
        .await
        .map_err(|e| (Failure::Env(e), Value::Null))?;
    let opts = ParseOptions {
        allow_private_targets: t.local,
    };
    match &cli.command {
        Command::Subscription(SubscriptionCmd::Validate { .. }) => unreachable!("handled above"),
        Command::Subscription(SubscriptionCmd::Put { file, fields, replace }) => {
            put(&t, file.as_ref(), fields, *replace).await
        }
        Command::Subscription(SubscriptionCmd::List { account }) => {
            let table = t
                .output("SubscriptionsTableName")
                .map_err(|e| (Failure::Env(e), Value::Null))?;
            let items: Vec<_> = t
                .dynamodb()
                .query()
                .table_name(table)
                .key_condition_expression("account_id = :a")
                .expression_attribute_values(":a", AttributeValue::S(account.clone()))
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(aws_sdk_dynamodb::Error::from)
                .map_err(env("listing subscriptions"))?;
            // As the functions read them: in subscription-id order, against the account's regex budget.
            let mut budget = RegexBudget::account();
            let list: Vec<Value> = items
                .iter()
                .map(|i| summary(&item_to_json(i), opts, &mut budget, cli.show_urls))
                .collect();
            Ok(json!({"account_id": account, "subscriptions": list}))
        }
        Command::Subscription(SubscriptionCmd::Show { account, id }) => {
            let record = get_record(&t, account, id)
                .await?
                .ok_or_else(|| (Failure::Check(format!("no subscription {account}/{id}")), Value::Null))?;
            let pacing = pacing(&t, account, id).await?;
            Ok(json!({"record": records::masked(&record, cli.show_urls),
                       "status": summary(&record, opts, &mut RegexBudget::unlimited(), cli.show_urls), "pacing": pacing}))
        }
        Command::Subscription(SubscriptionCmd::Enable { account, id }) => set_enabled(&t, account, id, true, "").await,
        Command::Subscription(SubscriptionCmd::Disable { account, id, reason }) => {
            set_enabled(&t, account, id, false, reason).await
        }
        Command::SendTest {
            account,
            subscription,
            trigger,
        } => send_test(&t, account, subscription, trigger.as_deref()).await,
        Command::Event(EventCmd::Publish { file }) => publish(&t, file).await,
        Command::DeadLetters(cmd) => dead_letters(&t, cmd).await,
        Command::Completions { .. } | Command::Webhooks(_) => unreachable!("handled above"),
        Command::Deliveries {
            account,
            subscription,
            since,
            webhook_id,
            source,
            logs,
        } => match (webhook_id, account) {
            (Some(id), _) => claim_history(&t, id).await,
            (None, Some(account)) => {
                deliveries(&t, account, subscription.as_deref(), since, *source, logs.as_deref()).await
            }
            (None, None) => unreachable!("clap requires one"),
        },
        Command::Secret(SecretCmd::Rotate {
            account,
            id,
            keep_old,
            retire,
        }) => rotate(&t, account, id, keep_old, *retire).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(&cli).await;
    let (out, failure) = match result {
        Ok(out) => (out, None),
        Err((failure, out)) => (out, Some(failure)),
    };
    if cli.json {
        let mut doc = out.clone();
        if let (Some(f), Value::Object(map)) = (&failure, &mut doc) {
            let (Failure::Check(m) | Failure::Env(m)) = f;
            map.insert("error".into(), Value::String(m.clone()));
        } else if let Some(Failure::Check(m) | Failure::Env(m)) = &failure {
            doc = json!({"error": m});
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if !out.is_null() {
        print_human(&cli.command, &out);
    }
    match failure {
        None => ExitCode::SUCCESS,
        Some(Failure::Check(m)) => {
            eprintln!("dataflows: {m}");
            ExitCode::from(1)
        }
        Some(Failure::Env(m)) => {
            eprintln!("dataflows: {m}");
            ExitCode::from(3)
        }
    }
}
