//! The DynamoDB and SQS clients, configured from what Lambda puts in the environment: region,
//! the execution role's credentials, and (locally) an endpoint. This replaces `aws-config`'s
//! default chain, which also knows profile files, SSO, IMDS, ECS and web identity: none of them
//! exists in a Lambda function, and carrying them enlarges every bootstrap (docs/performance.md,
//! "Binary size", has the figure).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::config::ConfigError;

/// Attempts per AWS call and the connect timeout: the SDK's standard settings, stated here.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

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

    fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "Environment",
        )
    }

    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::{retry::RetryConfig, timeout::TimeoutConfig, Builder};
        let mut b = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
        if let Some(url) = &self.dynamodb_endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(b.build())
    }

    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        use aws_sdk_sqs::config::{retry::RetryConfig, timeout::TimeoutConfig, Builder};
        let mut b = Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
        if let Some(url) = &self.sqs_endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            conf.timeout_config().and_then(|t| t.connect_timeout()),
            Some(CONNECT_TIMEOUT)
        );
        assert_eq!(env.sqs().config().region().map(|r| r.as_ref()), Some("eu-west-1"));
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
