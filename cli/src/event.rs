//! `dataflows event publish`: an input envelope, validated as the functions validate it, to the topic.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::common::*;
use crate::target;
use dataflows_shared::event::parse_event;

#[derive(Subcommand)]
pub(crate) enum EventCmd {
    /// Validate an input envelope and publish it to the events topic (`-` reads stdin).
    ///
    /// Example: dataflows event publish my-sms.json
    Publish { file: PathBuf },
}

pub(crate) async fn publish(t: &target::Target, file: &PathBuf) -> Outcome {
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
