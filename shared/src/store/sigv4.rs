//! AWS Signature Version 4 for the one request the functions send without the SDK, the PartiQL
//! batches of [`super::partiql`]: `POST /` with `content-type` and `x-amz-target`
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
//!
//! Why not `aws_sigv4::http_request::sign`, which the SDK's own signer calls and which signed these
//! requests before: for a request of 25 statements it cost about 70 µs and 110 allocations (a
//! `format!` per byte of each hex digest, the canonical request built as owned strings, the
//! signing key derived again for every request), 3 % of the function's CPU per webhook
//! (docs/performance.md, "Fifth pass"). This one writes the same canonical request into one
//! buffer and derives the signing key once a day. It signs what `aws_sigv4` signs with the
//! settings the batches used (`SigningSettings::default()`: the session token signed, no
//! `x-amz-content-sha256` header, the default port left out of `host`), and a unit test holds the
//! two to the same headers for the same inputs; the local stack's emulator checks every request's
//! signature the way DynamoDB does (botocore's signer as the reference).

use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::logging::push_hex;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Signs requests to one service in one region with one set of credentials.
pub struct Signer {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    service: &'static str,
    /// The signing key of a day (`YYYYMMDD`): it depends on nothing else that changes.
    key: Mutex<Option<(String, [u8; 32])>>,
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The `host` header SigV4 signs for `url` (`scheme://authority/...`): the authority without a
/// port that is the scheme's default. Pure.
pub fn host_of(url: &str) -> &str {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return authority,
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

impl Signer {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: &str,
        service: &'static str,
    ) -> Self {
        Signer {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: session_token.map(str::to_string),
            region: region.to_string(),
            service,
            key: Mutex::new(None),
        }
    }

    fn signing_key(&self, date: &str) -> [u8; 32] {
        let mut cached = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((day, key)) = cached.as_ref() {
            if day == date {
                return *key;
            }
        }
        let mut secret = String::with_capacity(4 + self.secret_access_key.len());
        secret.push_str("AWS4");
        secret.push_str(&self.secret_access_key);
        let key = [self.region.as_bytes(), self.service.as_bytes(), b"aws4_request"]
            .iter()
            .fold(hmac(secret.as_bytes(), date.as_bytes()), |key, part| hmac(&key, part));
        *cached = Some((date.to_string(), key));
        key
    }

    /// The headers that sign `POST /` to `url` with `headers` (lower-case names, sorted, none of
    /// them `host`, `x-amz-date` or `x-amz-security-token`) and `body` at `now`: `x-amz-date`,
    /// `authorization` and, with a session token, `x-amz-security-token`.
    pub fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: SystemTime,
    ) -> Vec<(&'static str, String)> {
        let at: DateTime<Utc> = now.into();
        let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        // The canonical headers, sorted by name: the given ones, host, x-amz-date and the token.
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 3);
        all.extend_from_slice(headers);
        all.push(("host", host_of(url)));
        all.push(("x-amz-date", &amz_date));
        if let Some(token) = &self.session_token {
            all.push(("x-amz-security-token", token));
        }
        all.sort_unstable_by_key(|(name, _)| *name);

        let mut canonical = String::with_capacity(512);
        canonical.push_str("POST\n/\n\n");
        for (name, value) in &all {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value.trim());
            canonical.push('\n');
        }
        canonical.push('\n');
        let signed_start = canonical.len();
        for (i, (name, _)) in all.iter().enumerate() {
            if i > 0 {
                canonical.push(';');
            }
            canonical.push_str(name);
        }
        let signed_headers = canonical[signed_start..].to_string();
        canonical.push('\n');
        push_hex(&mut canonical, &Sha256::digest(body));

        let mut scope = String::with_capacity(64);
        scope.push_str(date);
        scope.push('/');
        scope.push_str(&self.region);
        scope.push('/');
        scope.push_str(self.service);
        scope.push_str("/aws4_request");

        let mut to_sign = String::with_capacity(160);
        to_sign.push_str(ALGORITHM);
        to_sign.push('\n');
        to_sign.push_str(&amz_date);
        to_sign.push('\n');
        to_sign.push_str(&scope);
        to_sign.push('\n');
        push_hex(&mut to_sign, &Sha256::digest(canonical.as_bytes()));

        let mut authorization = String::with_capacity(256);
        authorization.push_str(ALGORITHM);
        authorization.push_str(" Credential=");
        authorization.push_str(&self.access_key_id);
        authorization.push('/');
        authorization.push_str(&scope);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(&signed_headers);
        authorization.push_str(", Signature=");
        push_hex(&mut authorization, &hmac(&self.signing_key(date), to_sign.as_bytes()));

        let mut out = vec![("x-amz-date", amz_date), ("authorization", authorization)];
        if let Some(token) = &self.session_token {
            out.push(("x-amz-security-token", token.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// What the SDK's own signer gives for the same request.
    fn reference(
        credentials: &Credentials,
        region: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: SystemTime,
    ) -> BTreeMap<String, String> {
        let identity: Identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("dynamodb")
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn it_signs_what_the_sdks_signer_signs() {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "DynamoDB_20120810.BatchExecuteStatement"),
        ];
        let day = Duration::from_secs(86_400);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        for token in [None, Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==")] {
            let credentials = Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_string),
                None,
                "test",
            );
            let signer = Signer::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token,
                "eu-west-3",
                "dynamodb",
            );
            for url in [
                "https://dynamodb.eu-west-3.amazonaws.com/",
                "https://dynamodb.eu-west-3.amazonaws.com:443/",
                "http://127.0.0.1:4566/",
                "http://localhost:80/",
            ] {
                // Across midnight: the cached signing key must follow the date.
                for (i, now) in [
                    start,
                    start + day / 2,
                    start + day,
                    start + day + Duration::from_secs(1),
                ]
                .into_iter()
                .enumerate()
                {
                    let body = format!("{{\"Statements\":[{}]}}", "{\"Statement\":\"é ?\"}".repeat(i * 7));
                    let ours: BTreeMap<String, String> = signer
                        .sign(url, &headers, body.as_bytes(), now)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                    assert_eq!(
                        ours,
                        reference(&credentials, "eu-west-3", url, &headers, body.as_bytes(), now),
                        "{url} {token:?} {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_host_is_the_authority_without_a_default_port() {
        assert_eq!(
            host_of("https://dynamodb.us-east-1.amazonaws.com/"),
            "dynamodb.us-east-1.amazonaws.com"
        );
        assert_eq!(host_of("https://d.example:443/"), "d.example");
        assert_eq!(host_of("https://d.example:8443/x?y"), "d.example:8443");
        assert_eq!(host_of("http://127.0.0.1:80/"), "127.0.0.1");
        assert_eq!(host_of("http://127.0.0.1:4566"), "127.0.0.1:4566");
    }
}
