//! DynamoDB's `BatchExecuteStatement`, the request that carries the delivery's claims and results
//! ([`super::claim_batch`]), sent without the SDK's orchestrator: the body written directly, signed
//! with the SDK's own SigV4 signer (`aws-sigv4`), POSTed on the same reqwest client the SDK uses
//! here, and its answers read directly. Every other DynamoDB call still goes through the SDK.
//!
//! Why: at 25 statements a request, the SDK spent about 20 % of the function's CPU per webhook on
//! this one operation: its per-request runtime plugins, interceptors and config layers, a
//! serializer that escapes the statements' text byte by byte at the size-optimised level, and a
//! second parse of the URL (docs/performance.md, "Delivery close to the wire"). What the SDK gave
//! this call and what replaces it:
//! - **the wire format**, DynamoDB's JSON 1.0 protocol: `POST /` with `X-Amz-Target:
//!   DynamoDB_20120810.BatchExecuteStatement` and `Content-Type: application/x-amz-json-1.0`
//!   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.LowLevelAPI.html),
//!   the request and response shapes of
//!   https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchExecuteStatement.html;
//! - **the signature**: SigV4 written for this one request ([`super::sigv4`]), held to the SDK's
//!   own signer (`aws_sigv4`) by a unit test; the local stack's emulator checks every request's signature the way
//!   DynamoDB does (infra/dynamodb_emulator.py), so a mistake here fails the integration tests;
//! - **the endpoint**: resolved once, at start, by the SDK's own endpoint rules for the region, or
//!   `AWS_ENDPOINT_URL(_DYNAMODB)`;
//! - **retries**: the SDK's standard mode as the other clients are configured ([`MAX_ATTEMPTS`]
//!   attempts, backoff from [`INITIAL_BACKOFF`] doubling with full jitter, each attempt bounded by
//!   [`ATTEMPT_TIMEOUT`]) for throttling, 5xx answers and failed connections. A request that still
//!   fails fails each of its statements, which then go down the single-item path, as before.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::config::Credentials;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::aws::{transient_code, AwsEnv, Lazy, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, INITIAL_BACKOFF, MAX_ATTEMPTS};
use crate::store::sigv4::Signer;
#[cfg(test)]
use crate::store::statement::push_attribute;
use crate::store::statement::read_item;
pub use crate::store::statement::{Item, Statement, StatementText, StatementWriter};

const TARGET: &str = "DynamoDB_20120810.BatchExecuteStatement";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// DynamoDB's answer to one statement of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Applied,
    /// The statement's error: `code` is DynamoDB's (`ConditionalCheckFailed`, `DuplicateItem`,
    /// `ProvisionedThroughputExceeded`, ...); `item` the item as it was, on a failed condition.
    Refused {
        code: String,
        message: String,
        item: Option<Item>,
    },
}

/// A request that got no answer per statement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// DynamoDB refused the request as a whole (throttled, a 5xx, access denied, invalid).
    #[error("{code}: {message} (HTTP {status})")]
    Service { status: u16, code: String, message: String },
    /// No answer: the connection failed, or the attempt timed out (the request may have been
    /// applied; the statements' conditions and owner tokens recognise their own writes).
    #[error("request failed: {0}")]
    Transport(String),
    /// An answer this client cannot read, or not one answer per statement.
    #[error("unreadable answer: {0}")]
    Unreadable(String),
    /// The request could not be signed (its parameters: never with the functions' settings).
    #[error("could not sign the request: {0}")]
    Signing(String),
    /// The SDK's endpoint rules gave no endpoint for the region.
    #[error("no DynamoDB endpoint: {0}")]
    Endpoint(String),
}

impl BatchError {
    /// Whether sending the same request again may succeed (the SDK's standard retry conditions).
    pub fn transient(&self) -> bool {
        match self {
            BatchError::Service { status, code, .. } => *status >= 500 || transient_code(Some(code)),
            BatchError::Transport(_) => true,
            BatchError::Unreadable(_) | BatchError::Signing(_) | BatchError::Endpoint(_) => false,
        }
    }
}

/// Sends up to 25 statements in one request; one answer per statement, in order.
pub trait PartiqlBatch: Send + Sync {
    fn execute(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<Answer>, BatchError>>;
}

/// The request body. Pure.
pub fn request_body(statements: &[Statement]) -> Vec<u8> {
    let size = statements.iter().map(|s| s.json().len() + 1).sum::<usize>();
    let mut out = String::with_capacity(16 + size);
    out.push_str("{\"Statements\":[");
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(statement.json());
    }
    out.push_str("]}");
    out.into_bytes()
}

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "Responses")]
    responses: Vec<Response>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(rename = "Error")]
    error: Option<ResponseError>,
}

#[derive(Deserialize)]
struct ResponseError {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Item")]
    item: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct ServiceError {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// The answers of a response (`status`, the `x-amzn-errortype` header if any, the body), one per
/// statement of a request of `count`. Pure.
pub fn read_answers(
    status: u16,
    error_type: Option<&str>,
    body: &[u8],
    count: usize,
) -> Result<Vec<Answer>, BatchError> {
    if status != 200 {
        let parsed: Option<ServiceError> = serde_json::from_slice(body).ok();
        // `com.amazonaws.dynamodb.v20120810#ThrottlingException`, or the header's `Code:...`.
        let code = error_type
            .map(|t| t.split(':').next().unwrap_or(t).to_string())
            .or_else(|| parsed.as_ref().and_then(|p| p.kind.clone()))
            .map(|t| t.rsplit('#').next().unwrap_or(&t).to_string())
            .unwrap_or_else(|| format!("HTTP{status}"));
        let message = parsed.and_then(|p| p.message).unwrap_or_default();
        return Err(BatchError::Service { status, code, message });
    }
    let output: Output = serde_json::from_slice(body)
        .map_err(|e| BatchError::Unreadable(format!("a BatchExecuteStatement output: {e}")))?;
    if output.responses.len() != count {
        return Err(BatchError::Unreadable(format!(
            "{} answers to {count} statements",
            output.responses.len()
        )));
    }
    output
        .responses
        .into_iter()
        .map(|r| match r.error {
            None => Ok(Answer::Applied),
            Some(e) => Ok(Answer::Refused {
                code: e.code.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                item: e
                    .item
                    .map(|item| read_item(&item))
                    .transpose()
                    .map_err(BatchError::Unreadable)?,
            }),
        })
        .collect()
}

/// The wait before attempt `attempt + 1` (`attempt` from 0): [`INITIAL_BACKOFF`] doubling, full
/// jitter (`jitter` in [0, 1)), capped at 20 s as the SDK's standard mode is.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1 << attempt.min(10))
        .min(Duration::from_secs(20))
        .mul_f64(jitter.clamp(0.0, 1.0))
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// The region's DynamoDB endpoint by the SDK's endpoint rules.
fn resolve_endpoint(region: &str) -> Result<String, String> {
    use aws_sdk_dynamodb::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    use futures::FutureExt;
    let params = Params::builder()
        .region(region.to_string())
        .build()
        .map_err(|e| e.to_string())?;
    // The rules are evaluated in place: the future is ready when made.
    match DefaultResolver::new().resolve_endpoint(&params).now_or_never() {
        Some(Ok(endpoint)) => Ok(with_slash(endpoint.url())),
        Some(Err(e)) => Err(format!("for {region:?}: {e}")),
        None => Err(format!("for {region:?}: the endpoint rules did not answer at once")),
    }
}

/// `BatchExecuteStatement` over the functions' AWS HTTP client. No `Debug`: it holds the secret key.
#[derive(Clone)]
pub struct DirectBatch {
    http: reqwest::Client,
    /// The endpoint's URL, `https://dynamodb.<region>.amazonaws.com/` or the configured one;
    /// resolved by the SDK's rules on the start's background thread (see [`Self::from_env`]).
    url: Lazy<Result<String, String>>,
    signer: Arc<Signer>,
}

fn signer(region: &str, credentials: &Credentials) -> Arc<Signer> {
    Arc::new(Signer::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        credentials.session_token(),
        region,
        "dynamodb",
    ))
}

impl DirectBatch {
    pub fn new(http: reqwest::Client, url: &str, region: &str, credentials: Credentials) -> Self {
        DirectBatch {
            http,
            url: Lazy::from(Ok(with_slash(url))),
            signer: signer(region, &credentials),
        }
    }

    /// The batches of the functions: the configured endpoint (`AWS_ENDPOINT_URL(_DYNAMODB)`), or
    /// the one the SDK's endpoint rules give the region. Those rules parse the SDK's partition
    /// table and compile its regexes (what building a client costs, [`crate::aws::Lazy`]), so the
    /// region's endpoint is resolved when first needed or on the start's background thread
    /// ([`Self::endpoint`]), not in the init a cold start waits for.
    pub(crate) fn from_env(env: &AwsEnv) -> Self {
        let url = match &env.dynamodb_endpoint {
            Some(url) => Lazy::from(Ok(with_slash(url))),
            None => {
                let region = env.region.clone();
                Lazy::new(move || resolve_endpoint(&region))
            }
        };
        DirectBatch {
            http: crate::aws_http::reqwest_client(CONNECT_TIMEOUT),
            url,
            signer: signer(&env.region, &env.credentials()),
        }
    }

    /// The endpoint, to resolve on a thread of its own at start.
    pub(crate) fn endpoint(&self) -> &Lazy<Result<String, String>> {
        &self.url
    }

    fn url(&self) -> Result<&str, BatchError> {
        self.url.as_deref().map_err(|e| BatchError::Endpoint(e.clone()))
    }

    /// The headers that sign `body` at `now`: `x-amz-date`, `authorization` and, with temporary
    /// credentials, `x-amz-security-token`.
    pub fn signature(&self, body: &[u8], now: SystemTime) -> Result<Vec<(&'static str, String)>, BatchError> {
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        Ok(self.signer.sign(self.url()?, &headers, body, now))
    }

    async fn attempt(&self, body: &[u8], count: usize) -> Result<Vec<Answer>, BatchError> {
        let mut request = self
            .http
            .post(self.url()?)
            .timeout(ATTEMPT_TIMEOUT)
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", TARGET);
        for (name, value) in self.signature(body, SystemTime::now())? {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| BatchError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| BatchError::Transport(e.without_url().to_string()))?;
        read_answers(status, error_type.as_deref(), &bytes, count)
    }
}

impl PartiqlBatch for DirectBatch {
    fn execute(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<Answer>, BatchError>> {
        Box::pin(async move {
            let body = request_body(&statements);
            let mut attempt = 0;
            loop {
                match self.attempt(&body, statements.len()).await {
                    Err(e) if e.transient() && attempt + 1 < MAX_ATTEMPTS => {
                        tokio::time::sleep(backoff(attempt, rand::random::<f64>())).await;
                        attempt += 1;
                    }
                    answer => return answer,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::statement::read_attribute;
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    fn parameters() -> Vec<AttributeValue> {
        vec![
            AttributeValue::S("délivré \"x\"\n".into()),
            AttributeValue::N("42".into()),
            AttributeValue::L(vec![AttributeValue::M(HashMap::from([
                ("at".to_string(), AttributeValue::N("1".into())),
                ("ok".to_string(), AttributeValue::Bool(true)),
                ("none".to_string(), AttributeValue::Null(true)),
                ("raw".to_string(), AttributeValue::B(Blob::new(b"\x00\xff".to_vec()))),
                ("tags".to_string(), AttributeValue::Ss(vec!["a".into(), "b".into()])),
            ]))]),
        ]
    }

    const TEXT: &str = "UPDATE \"t\" SET \"status\" = ? WHERE pk = ? AND note = 'a \"q\"'";

    fn statement() -> Statement {
        Statement::new(TEXT, &parameters())
    }

    #[test]
    fn a_statement_reads_back_as_written() {
        let written = statement();
        assert_eq!(written.text(), TEXT);
        assert_eq!(written.parameters(), parameters());
        let typed = StatementWriter::new(&StatementText::new(TEXT))
            .s("délivré \"x\"\n")
            .n(-42)
            .n(i64::MAX)
            .finish();
        assert_eq!(
            typed.parameters(),
            [
                AttributeValue::S("délivré \"x\"\n".into()),
                AttributeValue::N("-42".into()),
                AttributeValue::N(i64::MAX.to_string())
            ]
        );
        let none = StatementWriter::new(&StatementText::new(TEXT)).finish();
        assert!(none.parameters().is_empty());
    }

    #[test]
    fn the_body_is_the_api_references_shape() {
        let body: Value = serde_json::from_slice(&request_body(&[statement(), statement()])).unwrap();
        let first = &body["Statements"][0];
        assert_eq!(body["Statements"].as_array().unwrap().len(), 2);
        assert_eq!(
            first["Statement"],
            "UPDATE \"t\" SET \"status\" = ? WHERE pk = ? AND note = 'a \"q\"'"
        );
        assert_eq!(first["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
        assert_eq!(first["Parameters"][0], serde_json::json!({"S": "délivré \"x\"\n"}));
        assert_eq!(first["Parameters"][1], serde_json::json!({"N": "42"}));
        assert_eq!(
            first["Parameters"][2],
            serde_json::json!({"L": [{"M": {"at": {"N": "1"}, "ok": {"BOOL": true}, "none": {"NULL": true},
                                             "raw": {"B": "AP8="}, "tags": {"SS": ["a", "b"]}}}]})
        );
    }

    #[test]
    fn attribute_values_read_back_as_written() {
        for parameter in parameters() {
            let mut text = String::new();
            push_attribute(&mut text, &parameter);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(read_attribute(&value).unwrap(), parameter, "{text}");
        }
        assert!(read_attribute(&serde_json::json!({"X": 1})).is_err());
        assert!(read_attribute(&serde_json::json!("S")).is_err());
    }

    #[test]
    fn each_statement_gets_its_own_answer() {
        let body = br#"{"Responses":[{"TableName":"state"},
            {"Error":{"Code":"ConditionalCheckFailed","Message":"The conditional request failed",
                      "Item":{"status":{"S":"delivered"},"attempts_made":{"N":"1"}}},"TableName":"state"},
            {"Error":{"Code":"DuplicateItem","Message":"Duplicate primary key exists in table"}}]}"#;
        let answers = read_answers(200, None, body, 3).unwrap();
        assert_eq!(answers[0], Answer::Applied);
        match &answers[1] {
            Answer::Refused {
                code, item: Some(item), ..
            } => {
                assert_eq!(code, "ConditionalCheckFailed");
                assert_eq!(item["status"], AttributeValue::S("delivered".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&answers[2], Answer::Refused { code, item: None, .. } if code == "DuplicateItem"));
        assert!(matches!(
            read_answers(200, None, body, 4),
            Err(BatchError::Unreadable(_))
        ));
        assert!(matches!(
            read_answers(200, None, b"<html>", 3),
            Err(BatchError::Unreadable(_))
        ));
    }

    #[test]
    fn refused_requests_say_why_and_whether_to_try_again() {
        let throttled =
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}"#;
        let e = read_answers(400, None, throttled, 1).unwrap_err();
        assert_eq!(e.to_string(), "ThrottlingException: Rate exceeded (HTTP 400)");
        assert!(e.transient());
        let denied = br#"{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"not authorized to perform: dynamodb:PartiQLInsert"}"#;
        let e = read_answers(400, None, denied, 1).unwrap_err();
        assert!(
            e.to_string().starts_with("AccessDeniedException: not authorized"),
            "{e}"
        );
        assert!(!e.transient());
        let e = read_answers(
            400,
            Some("ValidationException:http://internal.amazon.com/coral/"),
            b"{}",
            1,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("ValidationException"), "{e}");
        let e = read_answers(503, None, b"", 1).unwrap_err();
        assert_eq!(e.to_string(), "HTTP503:  (HTTP 503)");
        assert!(e.transient(), "a 5xx is tried again");
        assert!(BatchError::Transport("reset".into()).transient());
    }

    #[test]
    fn the_endpoint_is_the_configured_one_or_the_regions() {
        let vars = |extra: &[(&str, &str)]| -> HashMap<String, String> {
            [
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let regional = DirectBatch::from_env(&AwsEnv::from_vars(&vars(&[])).unwrap());
        assert!(!regional.endpoint().built(), "resolved when needed, not at init");
        assert_eq!(regional.url().unwrap(), "https://dynamodb.eu-west-1.amazonaws.com/");
        let china = vars(&[("AWS_REGION", "cn-north-1")]);
        let china = DirectBatch::from_env(&AwsEnv::from_vars(&china).unwrap());
        assert_eq!(china.url().unwrap(), "https://dynamodb.cn-north-1.amazonaws.com.cn/");
        let local = vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")]);
        let local = DirectBatch::from_env(&AwsEnv::from_vars(&local).unwrap());
        assert!(local.endpoint().built(), "a configured endpoint needs no rules");
        assert_eq!(local.url().unwrap(), "http://127.0.0.1:4566/");
    }

    #[test]
    fn backoff_doubles_with_full_jitter() {
        assert_eq!(backoff(0, 1.0), INITIAL_BACKOFF);
        assert_eq!(backoff(2, 1.0), INITIAL_BACKOFF * 4);
        assert_eq!(backoff(2, 0.0), Duration::ZERO);
        assert_eq!(backoff(30, 1.0), Duration::from_secs(20), "capped");
    }

    #[test]
    fn the_signature_covers_the_target_and_the_session_token() {
        let batch = DirectBatch::new(
            crate::aws_http::reqwest_client(Duration::from_secs(1)),
            "https://dynamodb.eu-west-1.amazonaws.com",
            "eu-west-1",
            Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                Some("token".into()),
                None,
                "test",
            ),
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        let signed =
            |body: &[u8]| -> HashMap<&str, String> { batch.signature(body, at).unwrap().into_iter().collect() };
        let headers = signed(b"{}");
        let auth = &headers["authorization"];
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251206/eu-west-1/dynamodb/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"),
            "{auth}"
        );
        assert_eq!(headers["x-amz-date"], "20251206T054640Z");
        assert_eq!(headers["x-amz-security-token"], "token");
        assert!(!auth.contains("wJalrXUtnFEMI"), "the secret never leaves");
        // The same request at the same time signs the same; another body does not.
        assert_eq!(signed(b"{}")["authorization"], *auth);
        assert_ne!(signed(b"{ }")["authorization"], *auth);
    }
}
