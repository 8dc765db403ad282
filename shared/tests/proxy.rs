//! The webhook client never goes through a proxy named by the environment: a proxy resolves the
//! host itself, past the guarded resolver, so HTTP_PROXY / HTTPS_PROXY / ALL_PROXY would let a
//! webhook reach whatever the proxy can. (Its own test binary: it sets process-wide variables.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dataflows_shared::delivery::client::{build_client, send};
use dataflows_shared::subscription::{parse_record, ParseOptions};
use serde_json::json;

/// A listener that answers every connection with `status` and counts the connections.
fn listener(status: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, seen)
}

#[tokio::test]
async fn proxy_variables_are_ignored() {
    let (proxy_port, proxied) = listener("407 Proxy Authentication Required");
    let (receiver_port, received) = listener("200 OK");
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        std::env::set_var(var, &proxy);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let client = build_client(true).unwrap(); // local receiver: the address guard is not under test
    let record = json!({"account_id": "a", "subscription_id": "s",
                        "url": format!("http://127.0.0.1:{receiver_port}/hook"),
                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "triggers": "*"});
    let sub = parse_record(
        record.as_object().unwrap(),
        ParseOptions {
            allow_private_targets: true,
        },
    )
    .unwrap();
    let sent = send(&client, &sub, &"msg_1".into(), 0, b"{}", true).await;
    assert_eq!(sent.map(|d| d.status).ok(), Some(200), "sent to the receiver itself");
    assert_eq!(received.load(Ordering::SeqCst), 1);
    assert_eq!(proxied.load(Ordering::SeqCst), 0, "nothing went through the proxy");
}
