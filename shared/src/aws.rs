//! The DynamoDB and SQS clients, configured from what Lambda puts in the environment: region,
//! the execution role's credentials, and (locally) an endpoint. This replaces `aws-config`'s
//! default chain, which also knows profile files, SSO, IMDS, ECS and web identity: none of them
//! exists in a Lambda function, and carrying them enlarges every bootstrap (docs/performance.md,
//! "Binary size", has the figure).
//!
//! Every SDK request in the library is awaited boxed (`.send().boxed().await`). An SDK request's
//! future is several KB, and a future that awaits it inline holds room for it whether or not the
//! request is made: the delivery of every webhook held about 8.7 KB for requests only a failure,
//! a paced subscription or a hold makes, allocated and touched per job (docs/performance.md,
//! "Sixth pass"). One allocation per request costs less than that.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::config::ConfigError;

/// Attempts per AWS call and the connect timeout: the SDK's standard settings, stated here.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// The first retry's backoff ceiling (then doubling, with full jitter). The SDK's default of 1 s
/// suits services that answer in seconds; DynamoDB and SQS answer in milliseconds, and the AWS
/// SDK for JavaScript, for one, bases DynamoDB's backoff on 50 ms ("defaults to 100 ms for all
/// services except DynamoDB, where it defaults to 50ms", `retryDelayOptions`,
/// https://docs.aws.amazon.com/AWSJavaScriptSDK/latest/AWS/Config.html). A throttled call then
/// tries again within a batch's time, not up to a second later for every record at once.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// One attempt that has not been answered in this long is given up and sent again (by the SDK's
/// retries): DynamoDB and SQS answer in milliseconds, and an answer that never comes would
/// otherwise hold the record until the function times out.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes with which DynamoDB and SQS refuse a request that may well succeed if sent again:
/// throttling and the services' own failures
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html,
/// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/CommonErrors.html).
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether an AWS error, as the SDK gives it back after its own attempts, is worth another try in
/// place: a transient code, or no code at all (a timeout, a connection dropped, a reply lost: the
/// request may or may not have been applied, which the callers' conditional writes recognise).
pub(crate) fn transient_code(code: Option<&str>) -> bool {
    code.is_none_or(|c| TRANSIENT_CODES.contains(&c))
}

/// An error that says whether sending the same request again may succeed.
pub(crate) trait Transient {
    fn is_transient(&self) -> bool;
}

/// In-place tries beyond the SDK's attempts, per call.
pub(crate) const PERSIST_TRIES: u32 = 4;
/// Kept free before the invocation's deadline: an in-place try never starts later than this.
pub(crate) const PERSIST_MARGIN: Duration = Duration::from_millis(1500);

/// The wait before in-place try `tries + 1`: 200 ms doubling, capped at 3.2 s, with full jitter
/// (`jitter` in [0, 1)) so that invocations throttled together do not come back together.
pub(crate) fn persist_backoff(tries: u32, jitter: f64) -> Duration {
    let cap = Duration::from_millis(200).saturating_mul(1 << tries.min(4));
    cap.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Whether another in-place try fits: under [`PERSIST_TRIES`], and the wait plus
/// [`PERSIST_MARGIN`] still before the deadline (if any).
pub(crate) fn may_try_again(
    tries: u32,
    now: std::time::Instant,
    wait: Duration,
    deadline: Option<std::time::Instant>,
) -> bool {
    tries < PERSIST_TRIES && deadline.is_none_or(|d| now + wait + PERSIST_MARGIN <= d)
}

/// `call` until it succeeds, fails for good, or the tries or the deadline run out. Each call is
/// the same request (the same condition, the same owner token), so a write whose reply was lost
/// finds itself applied. `what` names the call in the log line.
pub(crate) async fn persist<T, E, Fut>(
    deadline: Option<std::time::Instant>,
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Transient + std::fmt::Display,
{
    let mut tries = 0;
    loop {
        let err = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let wait = persist_backoff(tries, rand::random::<f64>());
        if !err.is_transient() || !may_try_again(tries, std::time::Instant::now(), wait, deadline) {
            return Err(err);
        }
        tries += 1;
        tracing::warn!(error = %err, tries, wait_ms = wait.as_millis() as u64, "AWS call failed after the SDK's attempts; trying it again in place: {what}");
        // Boxed: a rare wait, kept out of the future of every write that goes through here.
        Box::pin(tokio::time::sleep(wait)).await;
    }
}

/// Both clients' retries: the SDK's standard mode, stated, from [`INITIAL_BACKOFF`].
///
/// Connections are reused after a transient error ([`ReconnectMode::ReuseAllConnections`], what
/// the SDK's own retry spec 2.1 chooses). The SDK's default would close the connection that
/// carried a throttle or a 500 before the retry, but it can only do that through a handle the
/// HTTP client hands it per request, and the functions' reqwest pool (`aws_http`) has none to
/// give. With the default, every transient error logged "unable to mark the connection for
/// closure" at ERROR and closed nothing: 891 and 1,034 such lines in two soaks, each a false alarm for
/// anyone alerting on ERROR. A connection that did fail (reset, timed out) is dropped by hyper's
/// pool either way.
///
/// [`ReconnectMode::ReuseAllConnections`]: aws_sdk_dynamodb::config::retry::ReconnectMode::ReuseAllConnections
fn retry_config() -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_reconnect_mode(aws_sdk_dynamodb::config::retry::ReconnectMode::ReuseAllConnections)
}

/// Both clients' timeouts: connecting, and each attempt.
fn timeout_config() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// An AWS client built the first time it is needed (or on a thread of its own at start), and
/// then shared. Building an SDK client parses the SDK's endpoint partition table and compiles its
/// regexes (`DefaultResolver::new`, about a third of a function's own init work): a cold start
/// should not wait for it (docs/performance.md, "Cold start").
///
/// It dereferences to the client, as `std::sync::LazyLock` does: the first use builds it, or
/// waits for the build already under way on another thread.
pub struct Lazy<C>(std::sync::Arc<LazyInner<C>>);

type Build<C> = Box<dyn Fn() -> C + Send + Sync>;

struct LazyInner<C> {
    build: Option<Build<C>>,
    client: std::sync::OnceLock<C>,
}

impl<C> std::fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("built", &self.0.client.get().is_some())
            .finish()
    }
}

impl<C> Clone for Lazy<C> {
    fn clone(&self) -> Self {
        Lazy(std::sync::Arc::clone(&self.0))
    }
}

impl<C: Send + Sync + 'static> Lazy<C> {
    pub(crate) fn new(build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Lazy(std::sync::Arc::new(LazyInner {
            build: Some(Box::new(build)),
            client: std::sync::OnceLock::new(),
        }))
    }

    /// The client, built now if it was not yet (or once the build under way is over).
    pub fn client(&self) -> &C {
        self.0.client.get_or_init(|| {
            let build = self.0.build.as_ref().expect("a Lazy without a client has its builder");
            build()
        })
    }

    /// Whether the client has been built.
    pub fn built(&self) -> bool {
        self.0.client.get().is_some()
    }
}

/// Run `build` on a thread of its own (named `aws-client`), for [`Lazy`]s to build while the
/// caller goes on; if the thread cannot be started, their first users build them.
pub(crate) fn in_background(build: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new().name("aws-client".into()).spawn(build);
}

impl<C: Send + Sync + 'static> std::ops::Deref for Lazy<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.client()
    }
}

impl<C> From<C> for Lazy<C> {
    fn from(client: C) -> Self {
        Lazy(std::sync::Arc::new(LazyInner {
            build: None,
            client: std::sync::OnceLock::from(client),
        }))
    }
}

/// The SQS client, built the first time it is needed: a webhook delivered on its first attempt
/// never calls SQS (retries, dead letters and a failed record's visibility do).
pub type Sqs = Lazy<aws_sdk_sqs::Client>;

/// The DynamoDB client, built on a thread of its own at start ([`in_background`], in `App::from_env`):
/// the first event needs it (the subscriptions' Query), the runtime's first request for work
/// does not.
pub type DynamoDb = Lazy<aws_sdk_dynamodb::Client>;

impl Sqs {
    pub(crate) fn of(env: AwsEnv) -> Self {
        Lazy::new(move || env.sqs())
    }
}

impl DynamoDb {
    pub(crate) fn of(env: AwsEnv) -> Self {
        Lazy::new(move || env.dynamodb())
    }
}

/// Where and as whom the functions call AWS. No `Debug`: it holds the secret key.
#[derive(Clone, PartialEq)]
pub(crate) struct AwsEnv {
    pub region: String,
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    /// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL` (local emulators).
    pub dynamodb_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_SQS`, else `AWS_ENDPOINT_URL`.
    pub sqs_endpoint: Option<String>,
}

impl AwsEnv {
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub(crate) fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |var: &str| {
            vars.get(var)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let required = |var: &'static str| {
            get(var).ok_or(ConfigError {
                var,
                reason: "is required and not set (Lambda sets it from the execution role)".into(),
            })
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError {
                var: "AWS_REGION",
                reason: "is required and not set".into(),
            })?;
        let endpoint = |specific: &'static str| -> Result<Option<String>, ConfigError> {
            let (var, value) = match get(specific) {
                Some(v) => (specific, v),
                None => match get("AWS_ENDPOINT_URL") {
                    Some(v) => ("AWS_ENDPOINT_URL", v),
                    None => return Ok(None),
                },
            };
            match url::Url::parse(&value) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(Some(value)),
                _ => Err(ConfigError {
                    var,
                    reason: format!("{value:?} is not an http(s) URL"),
                }),
            }
        };
        Ok(AwsEnv {
            region,
            access_key_id: required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
            session_token: get("AWS_SESSION_TOKEN"),
            dynamodb_endpoint: endpoint("AWS_ENDPOINT_URL_DYNAMODB")?,
            sqs_endpoint: endpoint("AWS_ENDPOINT_URL_SQS")?,
        })
    }

    pub(crate) fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "Environment",
        )
    }

    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::Builder;
        let mut b = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .http_client(crate::aws_http::http_client(CONNECT_TIMEOUT));
        if let Some(url) = &self.dynamodb_endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(b.build())
    }

    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        use aws_sdk_sqs::config::Builder;
        let mut b = Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .http_client(crate::aws_http::http_client(CONNECT_TIMEOUT));
        if let Some(url) = &self.sqs_endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ERROR events seen by a subscriber installed for one test.
    #[derive(Clone, Default)]
    struct Errors(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Errors {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::ERROR {
                let mut text = String::new();
                event.record(&mut |f: &tracing::field::Field, v: &dyn std::fmt::Debug| {
                    text.push_str(&format!("{}={v:?} ", f.name()))
                });
                self.0.lock().unwrap().push(text);
            }
        }
    }

    /// A DynamoDB stand-in: answers `statuses` in turn, then 200 `{}`.
    fn dynamodb_answering(statuses: &'static [u16]) -> crate::test_http::Server {
        crate::test_http::Server::start(move |n| {
            let (status, body) = match statuses.get(n) {
                Some(&s) => (
                    s,
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}"#,
                ),
                None => (200, "{}"),
            };
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_retried_500_is_retried_without_a_false_error_line() {
        use tracing_subscriber::layer::SubscriberExt;
        let dynamodb = dynamodb_answering(&[500]);
        let url = format!("http://{}", dynamodb.addr);
        let env = AwsEnv::from_vars(&vars(&[BASE, &[("AWS_ENDPOINT_URL", url.as_str())]].concat())).unwrap();
        let errors = Errors::default();
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(errors.clone()));
        let got = env
            .dynamodb()
            .get_item()
            .table_name("t")
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
            .send()
            .await;
        assert!(got.is_ok(), "the SDK's retry answered: {got:?}");
        assert_eq!(dynamodb.requests(), 2, "the 500, then its retry");
        assert_eq!(
            *errors.0.lock().unwrap(),
            Vec::<String>::new(),
            "no ERROR line for a retried 500"
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ("AWS_SESSION_TOKEN", "token"),
    ];

    #[test]
    fn reads_what_lambda_sets() {
        let env = AwsEnv::from_vars(&vars(BASE)).unwrap();
        assert_eq!(env.region, "eu-west-1");
        assert_eq!(env.access_key_id, "AKIDEXAMPLE");
        assert_eq!(env.session_token.as_deref(), Some("token"));
        assert_eq!(env.dynamodb_endpoint, None);
        assert_eq!(env.sqs_endpoint, None);
        let conf = env.dynamodb().config().clone();
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(
            conf.retry_config().map(|r| r.max_attempts()),
            Some(MAX_ATTEMPTS),
            "standard retries, stated"
        );
        assert_eq!(conf.retry_config().map(|r| r.initial_backoff()), Some(INITIAL_BACKOFF));
        assert_eq!(
            conf.timeout_config().and_then(|t| t.operation_attempt_timeout()),
            Some(ATTEMPT_TIMEOUT)
        );
        assert_eq!(
            conf.timeout_config().and_then(|t| t.connect_timeout()),
            Some(CONNECT_TIMEOUT)
        );
        assert_eq!(env.sqs().config().region().map(|r| r.as_ref()), Some("eu-west-1"));
    }

    #[test]
    fn the_sqs_client_is_built_when_first_needed() {
        let sqs = Sqs::of(AwsEnv::from_vars(&vars(BASE)).unwrap());
        assert!(!sqs.built(), "not at start");
        let region = sqs.client().config().region().map(|r| r.to_string());
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert!(sqs.built());
        let given: Sqs = sqs.client().clone().into();
        assert!(given.built(), "a client given is ready");
    }

    #[test]
    fn the_dynamodb_client_built_in_the_background_is_the_one_used() {
        let dynamodb = DynamoDb::of(AwsEnv::from_vars(&vars(BASE)).unwrap());
        assert!(!dynamodb.built(), "not at start");
        let building = dynamodb.clone();
        in_background(move || {
            building.client();
        });
        let region = dynamodb.config().region().map(|r| r.to_string()); // waits for the build
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert!(dynamodb.built());
        let first: *const aws_sdk_dynamodb::Client = dynamodb.client();
        assert!(
            std::ptr::eq(first, &*dynamodb.clone()),
            "built once, shared by every clone"
        );
    }

    #[test]
    fn transient_errors_are_throttles_failures_and_lost_answers() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "InternalFailure",
        ] {
            assert!(transient_code(Some(code)), "{code}");
        }
        assert!(transient_code(None), "a timeout or a dropped connection has no code");
        for code in [
            "ConditionalCheckFailedException",
            "ValidationException",
            "AccessDeniedException",
        ] {
            assert!(!transient_code(Some(code)), "{code} will fail the same way again");
        }
    }

    #[test]
    fn in_place_tries_back_off_and_stop_before_the_deadline() {
        assert_eq!(persist_backoff(0, 1.0), Duration::from_millis(200));
        assert_eq!(persist_backoff(0, 0.0), Duration::from_millis(100));
        assert_eq!(persist_backoff(3, 1.0), Duration::from_millis(1600));
        assert_eq!(persist_backoff(9, 1.0), Duration::from_millis(3200), "capped");
        let now = std::time::Instant::now();
        let wait = Duration::from_millis(400);
        assert!(may_try_again(0, now, wait, None));
        assert!(!may_try_again(PERSIST_TRIES, now, wait, None), "tries are bounded");
        assert!(may_try_again(1, now, wait, Some(now + Duration::from_secs(2))));
        assert!(
            !may_try_again(1, now, wait, Some(now + Duration::from_millis(1800))),
            "the wait and the margin must fit before the deadline"
        );
    }

    #[test]
    fn endpoints_general_and_per_service() {
        let mut v = vars(BASE);
        v.insert("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:4566".into());
        v.insert("AWS_ENDPOINT_URL_SQS".into(), "http://127.0.0.1:9324".into());
        let env = AwsEnv::from_vars(&v).unwrap();
        assert_eq!(env.dynamodb_endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(env.sqs_endpoint.as_deref(), Some("http://127.0.0.1:9324"));
        v.insert("AWS_ENDPOINT_URL".into(), "localhost:4566".into());
        let err = AwsEnv::from_vars(&v).err().unwrap();
        assert_eq!(err.var, "AWS_ENDPOINT_URL");
    }

    #[test]
    fn missing_region_or_credentials_name_the_variable() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let mut v = vars(BASE);
            v.remove(missing);
            let err = AwsEnv::from_vars(&v).err().unwrap();
            assert_eq!(err.var, missing);
            assert!(!err.to_string().contains("wJalrXUtnFEMI"), "{err}");
        }
        let mut v = vars(BASE);
        v.remove("AWS_REGION");
        v.insert("AWS_DEFAULT_REGION".into(), "us-east-2".into());
        assert_eq!(AwsEnv::from_vars(&v).unwrap().region, "us-east-2");
        let mut v = vars(BASE);
        v.remove("AWS_SESSION_TOKEN");
        assert_eq!(AwsEnv::from_vars(&v).unwrap().session_token, None);
    }
}
