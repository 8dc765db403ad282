//! Our signatures, checked by an independent Standard Webhooks verifier: the specification's own
//! Rust reference library (`standardwebhooks` crate, its own HMAC implementation), while the
//! integration tests verify every webhook with the Python reference package. With several secrets
//! (rotation), and on retries re-signed with new timestamps. (The `svix` crate 2.9.1 does not
//! build against the hyper-util in this tree, so the reference crate stands in for it.)

use dataflows_shared::signing::{signature_header, Secret};
use reqwest::header::{HeaderMap, HeaderValue};

const SECRETS: &[&str] = &[
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
    "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXVzZS1vbmx5IQ==",
];

fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    h.insert("webhook-timestamp", HeaderValue::from_str(&ts.to_string()).unwrap());
    h.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
    h
}

#[test]
fn the_reference_verifier_accepts_every_secret_of_a_rotation() {
    let body = br#"{"type":"sms.received","timestamp":"2026-11-30T10:15:00Z","account_id":"acc_42","event_id":"evt_1","data":{"body":"h\u00e9llo \ud83d\udc4b"}}"#;
    let secrets: Vec<Secret> = SECRETS.iter().map(|s| Secret::parse(s).unwrap()).collect();
    let now = chrono::Utc::now().timestamp();
    for n in 1..=secrets.len() {
        let header = signature_header(&secrets[..n], "msg_0123456789abcdef", now, body);
        assert_eq!(header.split(' ').count(), n);
        for s in &SECRETS[..n] {
            let wh = standardwebhooks::Webhook::new(s).unwrap();
            wh.verify(body, &headers("msg_0123456789abcdef", now, &header))
                .unwrap_or_else(|e| panic!("{n} secrets, verifying with {}..: {e:?}", &s[..10]));
        }
        // A secret not in the set does not verify.
        if n < SECRETS.len() {
            let wh = standardwebhooks::Webhook::new(SECRETS[n]).unwrap();
            assert!(wh.verify(body, &headers("msg_0123456789abcdef", now, &header)).is_err());
        }
    }
}

#[test]
fn retries_are_re_signed_with_their_own_timestamp() {
    let body = br#"{"type":"balance.low","data":{"balance":42.5}}"#;
    let secret = Secret::parse(SECRETS[0]).unwrap();
    let wh = standardwebhooks::Webhook::new(SECRETS[0]).unwrap();
    let now = chrono::Utc::now().timestamp();
    let first = signature_header(std::slice::from_ref(&secret), "msg_retry", now - 120, body);
    let retry = signature_header(std::slice::from_ref(&secret), "msg_retry", now, body);
    assert_ne!(first, retry);
    wh.verify(body, &headers("msg_retry", now - 120, &first)).unwrap();
    wh.verify(body, &headers("msg_retry", now, &retry)).unwrap();
    // Each signature is bound to its timestamp and to the exact bytes.
    assert!(wh.verify(body, &headers("msg_retry", now, &first)).is_err());
    assert!(wh
        .verify(
            br#"{"type":"balance.low","data":{"balance":42.6}}"#,
            &headers("msg_retry", now, &retry)
        )
        .is_err());
}
