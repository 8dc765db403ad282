//! SSRF corpus through the real client with the guard on (ALLOW_PRIVATE_TARGETS unset): every
//! target is refused when its record is read, and again before a byte is sent, in any spelling;
//! and a redirect is never followed.

use std::io::{Read, Write};
use std::net::TcpListener;

use dataflows_shared::delivery::client::{build_client, send, DeliveryError};
use dataflows_shared::subscription::{parse_record, ParseOptions, Subscription};
use serde_json::json;

fn sub(url: &str, allow_private: bool) -> Subscription {
    let v = json!({"account_id": "a", "subscription_id": "s", "url": url,
                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*"});
    parse_record(
        v.as_object().unwrap(),
        ParseOptions {
            allow_private_targets: allow_private,
        },
    )
    .unwrap()
}

const TARGETS: &[&str] = &[
    "https://127.0.0.1/hook",
    "https://127.1.2.3:8443/hook",
    "https://127.1/hook",        // short form
    "https://2130706433/hook",   // decimal
    "https://0x7f000001/hook",   // hex
    "https://0177.0.0.1/hook",   // octal
    "https://017700000001/hook", // octal, one number
    "https://0.0.0.0/hook",
    "https://10.0.0.1/hook",
    "https://172.16.5.4/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://0xa9fea9fe/latest/meta-data/", // metadata, hex
    "https://100.64.0.1/hook",              // CGNAT
    "https://224.0.0.1/hook",               // multicast
    "https://255.255.255.255/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:a9fe:a9fe]/hook",   // mapped metadata
    "https://[fd00::1]/hook",            // unique local
    "https://[fe80::1]/hook",            // link-local
    "https://[64:ff9b::a9fe:a9fe]/hook", // NAT64 of the metadata address
    "https://localhost/hook",            // a name that resolves to loopback
    "https://localhost:9443/hook",
];

#[tokio::test]
async fn private_targets_are_refused_in_every_spelling() {
    let client = build_client(false).unwrap();
    assert!(TARGETS.len() >= 20);
    for url in TARGETS {
        // Refused when the record is read...
        let v = json!({"account_id": "a", "subscription_id": "s", "url": url,
                       "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*"});
        let refused = parse_record(v.as_object().unwrap(), ParseOptions::default()).unwrap_err();
        assert_eq!(refused.field, "url", "{url}: {refused}");
        // ...and by the guard at send time, should a record ever get through.
        match send(&client, &sub(url, true), &"msg_1".into(), 0, b"{}", false).await {
            Err(DeliveryError::Blocked(b)) => assert!(!b.addresses.is_empty(), "{url}"),
            other => panic!("{url}: expected Blocked, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // A receiver that answers every request with a redirect to the metadata service.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut served = 0;
        listener.set_nonblocking(false).unwrap();
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            served += 1;
        }
        served
    });
    // Local receivers need the guard off; the redirect policy is what is under test.
    let client = build_client(true).unwrap();
    let url = format!("http://127.0.0.1:{port}/hook");
    match send(&client, &sub(&url, true), &"msg_1".into(), 0, b"{}", true).await {
        Err(DeliveryError::FailureStatus { status: 302, .. }) => {}
        other => panic!("expected the 302 itself, got {other:?}"),
    }
    assert_eq!(
        server.join().unwrap(),
        1,
        "exactly one request: the redirect was not followed"
    );
}
