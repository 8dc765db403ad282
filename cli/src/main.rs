//! `dataflows`: the operator's command line. It shares the functions' library, so a record it
//! accepts is a record the functions accept, a test webhook it sends is signed and guarded as theirs
//! are, and an event it publishes passes the same validation.
//!
//! Exit codes: 0 done; 1 what was checked failed (an invalid record or event, a receiver that did
//! not answer 2xx, a refused change); 2 usage; 3 AWS or the environment failed.

mod common;
mod dead_letters;
mod deliveries;
mod event;
mod history;
mod progress;
mod records;
mod secret;
mod send_test;
mod subscription;
mod target;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dataflows_shared::subscription::ParseOptions;
use serde_json::{json, Value};

use common::{Failure, Outcome};

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
    Subscription(subscription::SubscriptionCmd),
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
    Webhooks(webhooks::WebhooksCmd),
    /// Input events.
    #[command(subcommand)]
    Event(event::EventCmd),
    /// Signing secrets.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// The categories' dead-letter queues.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCmd),
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
        source: deliveries::LogSource,
        /// The local stack's log directory (default: .local/logs beside the outputs file).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Print a shell completion script.
    ///
    /// Example: dataflows completions bash > /etc/bash_completion.d/dataflows
    Completions { shell: clap_complete::Shell },
}

/// The human form of a command's output.
fn print_human(command: &Command, out: &Value) {
    match command {
        Command::Webhooks(cmd) => webhooks::print(cmd, out),
        Command::Subscription(cmd) => subscription::print(cmd, out),
        Command::Deliveries { .. } => deliveries::print(out),
        Command::DeadLetters(cmd) => dead_letters::print(cmd, out),
        Command::Secret(_) => secret::print(out),
        Command::SendTest { .. } => send_test::print(out),
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
        return webhooks::run(cmd);
    }
    if let Command::Subscription(subscription::SubscriptionCmd::Validate {
        files,
        allow_private_targets,
    }) = &cli.command
    {
        return subscription::validate(
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
        Command::Subscription(cmd) => subscription::run(&t, cmd, opts, cli.show_urls).await,
        Command::SendTest {
            account,
            subscription,
            trigger,
        } => send_test::send_test(&t, account, subscription, trigger.as_deref()).await,
        Command::Event(event::EventCmd::Publish { file }) => event::publish(&t, file).await,
        Command::DeadLetters(cmd) => dead_letters::dead_letters(&t, cmd).await,
        Command::Completions { .. } | Command::Webhooks(_) => unreachable!("handled above"),
        Command::Deliveries {
            account,
            subscription,
            since,
            webhook_id,
            source,
            logs,
        } => match (webhook_id, account) {
            (Some(id), _) => deliveries::claim_history(&t, id).await,
            (None, Some(account)) => {
                deliveries::deliveries(&t, account, subscription.as_deref(), since, *source, logs.as_deref()).await
            }
            (None, None) => unreachable!("clap requires one"),
        },
        Command::Secret(secret::SecretCmd::Rotate {
            account,
            id,
            keep_old,
            retire,
        }) => secret::rotate(&t, account, id, keep_old, *retire).await,
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
