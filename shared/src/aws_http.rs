//! The AWS SDK's HTTP client: the same reqwest (hyper, rustls) stack the webhooks go out on,
//! instead of the SDK's own hyper + rustls + aws-lc-rs client, so each bootstrap links one HTTP
//! and TLS stack, not two (docs/performance.md, "Binary size"). The SDK keeps everything above
//! the wire: signing, retries, attempt timeouts; this only moves bytes.
//!
//! A DynamoDB or SQS request body is always in memory (JSON); the response is read whole. A
//! connection that fails or is reset is an I/O error and a timeout a timeout, both of which the
//! SDK's retry classifier treats as transient (the request may have been applied: the callers'
//! conditional writes and owner tokens recognise their own writes).

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The SDK's connector over one reqwest client (its connection pool shared by DynamoDB and SQS).
#[derive(Debug, Clone)]
struct Reqwest(reqwest::Client);

impl HttpConnector for Reqwest {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request.try_into_http1x().map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            let Some(bytes) = body.bytes().map(|b| b.to_vec()) else {
                return Err(ConnectorError::user(
                    "a streamed request body (none is sent here)".into(),
                ));
            };
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(bytes)
                .send()
                .await
                .map_err(connector_error)?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response.bytes().await.map_err(connector_error)?;
            let mut out = http::Response::new(SdkBody::from(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            HttpResponse::try_from(out).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

impl HttpClient for Reqwest {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// The HTTP client of the functions' DynamoDB and SQS clients, one per process (one connection
/// pool). AWS endpoints are not receivers: no SSRF guard (a VPC endpoint's private address is
/// legitimate here), no proxy; `connect_timeout` is the SDK's, the attempt timeout the SDK keeps.
pub(crate) fn http_client(connect_timeout: Duration) -> SharedHttpClient {
    static CLIENT: std::sync::OnceLock<SharedHttpClient> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| SharedHttpClient::new(Reqwest(reqwest_client(connect_timeout))))
        .clone()
}

/// The reqwest client under [`http_client`], also used directly for the PartiQL batches
/// (`store::partiql`): one connection pool for every AWS call of the process.
pub(crate) fn reqwest_client(connect_timeout: Duration) -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .use_preconfigured_tls(crate::tls::client_config())
                .connect_timeout(connect_timeout)
                .no_proxy()
                .build()
                .expect("a client with a prebuilt TLS configuration builds")
        })
        .clone()
}
