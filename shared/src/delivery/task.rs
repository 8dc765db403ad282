//! Messages the functions write to their own queues: a retry of one webhook to one subscription
//! (on the category queue, delayed), and a webhook given up on (on the category DLQ).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{parse_event, InputEvent, ParseError};

/// One more attempt of one webhook to one subscription. Carries the exact body, so a retry sends
/// the same bytes the first attempt sent, whatever state changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryTask {
    /// Format version; its presence marks the message as a retry.
    pub dataflows_retry: u32,
    pub webhook_id: String,
    pub trigger: String,
    pub account_id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub body: String,
    /// The number of the attempt this message is for (2 for the first retry).
    pub attempt: u32,
    pub first_attempt_at: i64,
    /// Unix seconds before which the attempt must not be made (delays past 15 minutes are chained).
    pub not_before: i64,
}

/// A webhook given up on, as put on the category DLQ for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub dataflows_dead_letter: u32,
    pub reason: String,
    pub webhook_id: String,
    pub trigger: String,
    pub account_id: String,
    pub subscription_id: String,
    pub url: String,
    pub event_id: String,
    pub attempts: u32,
    pub first_attempt_at: i64,
    pub last_error: String,
    /// The webhook body that was never accepted.
    pub payload: Value,
}

/// What arrives on a category queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event(InputEvent),
    Retry(RetryTask),
    /// A dead letter moved back from the DLQ by an operator: try it again from the start.
    Redrive(DeadLetter),
}

impl Message {
    pub fn account_id(&self) -> &str {
        match self {
            Message::Event(e) => &e.account_id,
            Message::Retry(t) => &t.account_id,
            Message::Redrive(d) => &d.account_id,
        }
    }
}

/// Parse a queue message: a retry task or a redriven dead letter if it says so, else an input event.
pub fn parse_message(body: &str) -> Result<Message, ParseError> {
    if body.contains("\"dataflows_retry\"") {
        if let Ok(task) = serde_json::from_str::<RetryTask>(body) {
            return Ok(Message::Retry(task));
        }
    }
    if body.contains("\"dataflows_dead_letter\"") {
        if let Ok(letter) = serde_json::from_str::<DeadLetter>(body) {
            return Ok(Message::Redrive(letter));
        }
    }
    parse_event(body).map(Message::Event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_tasks_round_trip_and_events_still_parse() {
        let task = RetryTask {
            dataflows_retry: 1,
            webhook_id: "msg_1".into(),
            trigger: "sms.received".into(),
            account_id: "acc".into(),
            subscription_id: "sub".into(),
            event_id: "evt".into(),
            body: "{\"type\":\"sms.received\"}".into(),
            attempt: 2,
            first_attempt_at: 100,
            not_before: 105,
        };
        let text = serde_json::to_string(&task).unwrap();
        assert_eq!(parse_message(&text), Ok(Message::Retry(task)));
        let event = r#"{"id":"e","type":"contact.deleted","account_id":"a","occurred_at":"2026-11-30T10:00:00Z","data":{"contact_id":"c"}}"#;
        assert!(matches!(parse_message(event), Ok(Message::Event(_))));
        // Not a valid task and not an event: the event parser's precise error.
        assert!(matches!(
            parse_message(r#"{"dataflows_retry": 1}"#),
            Err(ParseError::Missing { .. })
        ));
    }
}
