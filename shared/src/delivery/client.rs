//! The HTTP side of delivery: one client per process, reused across invocations; connect 5 s,
//! total 15 s; redirects never followed; at most 64 KiB of a response body read.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::redirect::Policy;
use reqwest::Client;

use crate::delivery::signing::signature_header;
use crate::subscription::Subscription;
use crate::webhook::Webhook;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = concat!("DataFlows-SMS-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Build the process-wide client. Called once at cold start.
pub fn build_client() -> Result<Client, reqwest::Error> {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(Policy::none())
        .user_agent(USER_AGENT)
        .build()
}

/// A completed HTTP exchange with a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    pub latency: Duration,
}

/// Why an attempt did not succeed. Callers match on the variant, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("receiver answered {status}")]
    FailureStatus {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    #[error("request failed: {0}")]
    Request(String),
}

impl DeliveryError {
    /// 410 Gone: the receiver asks us to stop.
    pub fn is_gone(&self) -> bool {
        matches!(self, DeliveryError::FailureStatus { status: 410, .. })
    }
}

fn describe(err: &reqwest::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); walk the chain for the reason.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// POST one signed webhook to one subscription; `timestamp` is this attempt's unix seconds.
pub async fn send(
    client: &Client,
    subscription: &Subscription,
    webhook: &Webhook,
    webhook_id: &str,
    timestamp: i64,
) -> Result<Delivered, DeliveryError> {
    let signature = signature_header(&subscription.secrets, webhook_id, timestamp, &webhook.body);
    let mut request = client
        .post(subscription.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    for (name, value) in &subscription.headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let mut response = request
        .body(webhook.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                DeliveryError::TimedOut(started.elapsed())
            } else if e.is_connect() {
                DeliveryError::Connect(describe(&e))
            } else {
                DeliveryError::Request(describe(&e))
            }
        })?;
    let status = response.status();
    if status.is_success() {
        // The body is not needed; dropping the response closes or returns the connection.
        return Ok(Delivered {
            status: status.as_u16(),
            latency: started.elapsed(),
        });
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())])
            }
            Ok(None) | Err(_) => break,
        }
    }
    Err(DeliveryError::FailureStatus {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
        retry_after,
    })
}
