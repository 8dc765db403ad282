//! The HTTP side of delivery: one client per process, reused across invocations; connect 5 s,
//! total 15 s; redirects never followed; at most 64 KiB of a response body read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::redirect::Policy;
use reqwest::Client;

use crate::addresses::{check_literal, Blocked};
use crate::delivery::ssrf::GuardedResolver;
use crate::signing::signature_header;
use crate::subscription::Subscription;
use crate::webhook::WebhookId;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = concat!("DataFlows-SMS-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Build the process-wide client. Called once at cold start. Unless private targets are allowed
/// (local development), every DNS answer passes the SSRF guard before it is dialled.
pub fn build_client(allow_private_targets: bool) -> Result<Client, reqwest::Error> {
    build_client_with_timeout(allow_private_targets, TOTAL_TIMEOUT)
}

/// The same, with another total timeout (the `HTTP_TIMEOUT` setting).
pub fn build_client_with_timeout(allow_private_targets: bool, total: Duration) -> Result<Client, reqwest::Error> {
    let builder = Client::builder()
        .use_preconfigured_tls(crate::tls::client_config())
        .connect_timeout(CONNECT_TIMEOUT.min(total))
        .timeout(total)
        .redirect(Policy::none())
        // HTTP(S)_PROXY / ALL_PROXY would send every webhook through a proxy that resolves the
        // host itself, past the guarded resolver: never read them.
        .no_proxy()
        .user_agent(USER_AGENT);
    if allow_private_targets {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver)).build()
    }
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
    #[error("target refused by the SSRF guard: {0}")]
    Blocked(Blocked),
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

fn blocked_cause(err: &reqwest::Error) -> Option<Blocked> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(b) = cause.downcast_ref::<Blocked>() {
            return Some(b.clone());
        }
        source = cause.source();
    }
    None
}

/// POST one signed webhook to one subscription; `timestamp` is this attempt's unix seconds.
/// Unless `allow_private_targets` (the local stack), a literal IP host is checked before anything
/// is sent (the resolver checks names).
pub async fn send(
    client: &Client,
    subscription: &Subscription,
    webhook_id: &WebhookId,
    timestamp: i64,
    body: &[u8],
    allow_private_targets: bool,
) -> Result<Delivered, DeliveryError> {
    if !allow_private_targets {
        check_literal(&subscription.url).map_err(DeliveryError::Blocked)?;
    }
    let signature = signature_header(&subscription.secrets, webhook_id.as_str(), timestamp, body);
    // Names built once, not parsed and allocated for every webhook (docs/performance.md, "Fifth pass").
    static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
    static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
    static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
    let mut request = client
        .post(subscription.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(&WEBHOOK_ID, webhook_id.as_str())
        .header(&WEBHOOK_TIMESTAMP, timestamp)
        .header(&WEBHOOK_SIGNATURE, signature);
    for (name, value) in &subscription.headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let mut response = request.body(body.to_vec()).send().await.map_err(|e| {
        // The URL's path and query are often the credential (Slack, Zapier catch hooks): errors
        // never carry it into logs, claims or dead letters.
        let e = e.without_url();
        if let Some(blocked) = blocked_cause(&e) {
            DeliveryError::Blocked(blocked)
        } else if e.is_timeout() {
            DeliveryError::TimedOut(started.elapsed())
        } else if e.is_connect() {
            DeliveryError::Connect(describe(&e))
        } else {
            DeliveryError::Request(describe(&e))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        let delivered = Delivered {
            status: status.as_u16(),
            latency: started.elapsed(),
        };
        // The body is not needed, but an HTTP/1.1 connection goes back to the pool only once its
        // answer has been read to the end; dropped unread, it is closed, and the next webhook to
        // this receiver pays a new connection (and a TLS handshake). Many receivers answer with a
        // short body (`{"ok":true}`, "Accepted"), so it is read (up to MAX_RESPONSE_BYTES; a
        // longer one goes with its connection). Within the client's timeout, as the send was; an
        // error here only costs the connection: the receiver has already accepted the webhook.
        read_capped(&mut response).await;
        return Ok(delivered);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_capped(&mut response).await;
    Err(DeliveryError::FailureStatus {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
        retry_after,
    })
}

/// The answer's body, its first MAX_RESPONSE_BYTES at most; read to its end when shorter, which
/// lets the connection go back to the pool. A read that fails ends it.
async fn read_capped(response: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{parse_record, ParseOptions};
    use serde_json::json;

    fn sub(url: &str) -> Subscription {
        let v = json!({"account_id": "a", "subscription_id": "s", "url": url,
                       "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*"});
        // Records with these URLs are refused when read; the guard stops them even so.
        parse_record(
            v.as_object().unwrap(),
            ParseOptions {
                allow_private_targets: true,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_receiver_answering_with_a_body_keeps_its_connection() {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nAccepted\r\n0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
        ] {
            let receiver = crate::test_http::Server::start(move |_| answer.to_string());
            let url = format!("http://{}/hook", receiver.addr);
            let client = build_client(true).unwrap();
            for i in 0..3 {
                let sent = send(&client, &sub(&url), &format!("msg_{i}").as_str().into(), 0, b"{}", true).await;
                assert!(sent.is_ok(), "{answer:?}: {sent:?}");
            }
            assert_eq!(receiver.connections(), 1, "three webhooks, one connection: {answer:?}");
        }
    }

    #[tokio::test]
    async fn the_guarded_client_refuses_private_targets_before_sending() {
        let client = build_client(false).unwrap();
        for url in [
            "https://127.0.0.1:9/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:10.0.0.1]/",
            "https://2130706433/",
            "https://localhost:9/x",
        ] {
            match send(&client, &sub(url), &"msg_1".into(), 0, b"{}", false).await {
                Err(DeliveryError::Blocked(b)) => assert!(!b.addresses.is_empty(), "{url}"),
                other => panic!("{url}: expected Blocked, got {other:?}"),
            }
        }
    }
}
