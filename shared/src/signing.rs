//! Standard Webhooks v1 signatures: HMAC-SHA256 over `{id}.{timestamp}.{body}`, base64, with
//! the `v1,` prefix; one signature per active secret, space separated.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

/// A signing secret. Its bytes never appear in `Debug` output, so it cannot leak through logs.
/// It keeps the HMAC keyed with it (the key's inner and outer pads already hashed), so that a
/// signature costs the hashing of its message alone: a subscription's secrets are parsed once per
/// cache fill and sign every one of its webhooks.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    keyed: Hmac<Sha256>,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with \"whsec_\"")]
    Prefix,
    #[error("the part after \"whsec_\" is not valid base64")]
    Base64,
    #[error("decodes to {0} bytes; {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} are required")]
    Length(usize),
}

impl Secret {
    /// Parse `whsec_<base64>`. The error never contains the secret.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text.trim().strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::Base64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        Ok(Secret { bytes, keyed })
    }

    /// Sign one message: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(SIGNATURE_LEN);
        self.push_signature(&mut out, webhook_id, timestamp, body);
        out
    }

    fn push_signature(&self, out: &mut String, webhook_id: &str, timestamp: i64, body: &[u8]) {
        let mut mac = self.keyed.clone();
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(itoa::Buffer::new().format(timestamp).as_bytes());
        mac.update(b".");
        mac.update(body);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), out);
    }
}

/// `v1,` and the base64 of a 32-byte digest.
const SIGNATURE_LEN: usize = 3 + 44;

/// The `webhook-signature` header value: one `v1,` signature per secret, space separated.
pub fn signature_header(secrets: &[Secret], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(secrets.len() * (SIGNATURE_LEN + 1));
    for (i, secret) in secrets.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        secret.push_signature(&mut out, webhook_id, timestamp, body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification and the svix libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_spec_test_vector() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn a_secret_signs_the_same_every_time_and_a_copy_the_same_as_the_original() {
        let secret = Secret::parse(SECRET).unwrap();
        let copy = secret.clone();
        for _ in 0..3 {
            assert_eq!(secret.sign(ID, TS, BODY.as_bytes()), EXPECTED);
            assert_eq!(copy.sign(ID, TS, BODY.as_bytes()), EXPECTED);
        }
        assert_eq!(
            signature_header(std::slice::from_ref(&secret), ID, TS, BODY.as_bytes()),
            EXPECTED
        );
        assert_eq!(secret.sign(ID, -1, b""), {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.bytes).unwrap();
            mac.update(format!("{ID}.-1.").as_bytes());
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        });
    }

    #[test]
    fn signs_with_every_secret() {
        let a = Secret::parse(SECRET).unwrap();
        let b = Secret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let header = signature_header(&[a, b], ID, TS, BODY.as_bytes());
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], EXPECTED);
        assert!(parts[1].starts_with("v1,") && parts[1] != EXPECTED);
    }

    #[test]
    fn any_change_changes_the_signature() {
        let s = Secret::parse(SECRET).unwrap();
        assert_ne!(s.sign(ID, TS + 1, BODY.as_bytes()), EXPECTED);
        assert_ne!(s.sign("msg_other", TS, BODY.as_bytes()), EXPECTED);
        assert_ne!(s.sign(ID, TS, br#"{"test": 2432232315}"#), EXPECTED);
    }

    #[test]
    fn rejects_bad_secrets_without_echoing_them() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::Base64));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
