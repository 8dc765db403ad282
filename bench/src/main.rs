//! The delivery-throughput benchmark's tools (driven by `infra/bench.py`, see docs/performance.md).
//!
//! `dataflows-bench serve --receiver-port P --aws-port Q [--receiver-delay-ms D] [--aws-delay-ms E]
//!                        [--subscriptions N]`
//!   A webhook receiver on P answering 200 to every POST after D ms (`GET /stats` counts them and
//!   the AWS calls; `POST /reset` zeroes the counts), and on Q an endpoint that answers the
//!   DynamoDB and SQS JSON protocols after E ms, the way the happy path sees them: a subscriptions
//!   Query returns N enabled records (each with a filter) pointing at the receiver, every write
//!   succeeds (a PartiQL batch: every statement). It counts every call by operation, and the
//!   statements of PartiQL batches, which is how the benchmark counts AWS requests and writes.
//!
//! `dataflows-bench bare --url U --requests N --concurrency C [--body-bytes B]`
//!   The practical limit: N POSTs of B bytes with at most C in flight, through the functions' own
//!   HTTP client (same library, same settings), on the same single-threaded runtime the functions
//!   use; no signing, no state. Prints one JSON line with the rate and the process's CPU ticks.
//!
//! `dataflows-bench keywords [--records 100] [--rules 10]`
//!   One account's worst case for the functions' memory: `--records` subscription records, each
//!   with `--rules` regex keyword rules of the largest size the validator allows, all distinct.
//!   Reads them as a function does on a cache miss (in order, against the account's regex budget),
//!   then matches an inbound SMS against every valid record's rules as the messaging function
//!   does, then reads them again (the next cache miss). Prints one JSON line: the time of each
//!   read, the records refused, the bytes held compiled, and the process's peak RSS (VmHWM).
//!
//! The servers parse HTTP/1.1 with httparse (hyper's parser) over keep-alive connections, which is
//! all the two clients speak; they are benchmark fixtures, not general servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: u64| -> Result<u64, Error> {
        flag(name)
            .map(|v| v.parse::<u64>().map_err(|e| format!("{name} {v:?}: {e}").into()))
            .unwrap_or(Ok(default))
    };
    match args.first().map(String::as_str) {
        Some("serve") => {
            let config = ServeConfig {
                receiver_port: number("--receiver-port", 0)? as u16,
                aws_port: number("--aws-port", 0)? as u16,
                receiver_delay: Duration::from_millis(number("--receiver-delay-ms", 0)?),
                aws_delay: Duration::from_millis(number("--aws-delay-ms", 0)?),
                subscriptions: number("--subscriptions", 10)? as usize,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(config))
        }
        Some("bare") => {
            let url = flag("--url").ok_or("--url is required")?;
            let requests = number("--requests", 5000)? as usize;
            let concurrency = number("--concurrency", 32)? as usize;
            let body_bytes = number("--body-bytes", 320)? as usize;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(bare(&url, requests, concurrency, body_bytes))
        }
        Some("keywords") => keywords(number("--records", 100)? as usize, number("--rules", 10)? as usize),
        _ => Err("usage: dataflows-bench serve|bare|keywords [flags] (see the source's header)".into()),
    }
}

struct ServeConfig {
    receiver_port: u16,
    aws_port: u16,
    receiver_delay: Duration,
    aws_delay: Duration,
    subscriptions: usize,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    operations: Mutex<BTreeMap<String, u64>>,
}

async fn serve(config: ServeConfig) -> Result<(), Error> {
    let receiver = TcpListener::bind(("127.0.0.1", config.receiver_port)).await?;
    let aws = TcpListener::bind(("127.0.0.1", config.aws_port)).await?;
    let receiver_addr = receiver.local_addr()?;
    let counters = Arc::new(Counters::default());
    println!(
        "{}",
        json!({"receiver": format!("http://{receiver_addr}"), "aws": format!("http://{}", aws.local_addr()?)})
    );
    let receiver_loop = {
        let counters = counters.clone();
        let delay = config.receiver_delay;
        accept(receiver, move |req| {
            let counters = counters.clone();
            async move { receive(req, &counters, delay).await }
        })
    };
    let subscriptions = Arc::new(config.subscriptions);
    let aws_loop = {
        let delay = config.aws_delay;
        accept(aws, move |req| {
            let counters = counters.clone();
            let subscriptions = subscriptions.clone();
            async move {
                tokio::time::sleep(delay).await;
                answer_aws(req, &counters, *subscriptions, receiver_addr)
            }
        })
    };
    tokio::try_join!(receiver_loop, aws_loop)?;
    Ok(())
}

struct Request {
    method: String,
    path: String,
    target: Option<String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, value: &Value) -> Self {
        Response {
            status,
            content_type: "application/x-amz-json-1.0",
            body: value.to_string().into_bytes(),
        }
    }
}

async fn accept<F, Fut>(listener: TcpListener, handler: F) -> Result<(), Error>
where
    F: Fn(Request) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response> + Send,
{
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler).await {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// One keep-alive connection: requests in, responses out, until the client closes it.
async fn connection<F, Fut>(mut stream: TcpStream, handler: F) -> Result<(), Error>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let request = loop {
            if let Some((request, used)) = parse(&buf)? {
                buf.drain(..used);
                break request;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let response = handler(request).await;
        let reason = if response.status == 200 { "OK" } else { "Bad Request" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            response.status,
            response.content_type,
            response.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&response.body);
        stream.write_all(&out).await?;
    }
}

/// A complete request at the start of `buf` and how many bytes it took, or `None` for more bytes.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if header("transfer-encoding").is_some() {
        return Err("chunked requests are not supported by this fixture".into());
    }
    let length: usize = header("content-length")
        .map(|v| v.trim().parse())
        .transpose()?
        .unwrap_or(0);
    if buf.len() < head + length {
        return Ok(None);
    }
    let request = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        target: header("x-amz-target"),
        body: buf[head..head + length].to_vec(),
    };
    Ok(Some((request, head + length)))
}

async fn receive(req: Request, counters: &Counters, delay: Duration) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/stats") => {
            let operations = counters.operations.lock().unwrap().clone();
            Response::json(
                200,
                &json!({"received": counters.received.load(Ordering::Relaxed), "aws": operations}),
            )
        }
        ("POST", "/reset") => {
            counters.received.store(0, Ordering::Relaxed);
            counters.operations.lock().unwrap().clear();
            Response::json(200, &json!({}))
        }
        ("POST", _) => {
            tokio::time::sleep(delay).await;
            counters.received.fetch_add(1, Ordering::Relaxed);
            Response {
                status: 200,
                content_type: "text/plain",
                body: Vec::new(),
            }
        }
        _ => Response::json(400, &json!({"message": "POST a webhook, GET /stats or POST /reset"})),
    }
}

/// DynamoDB and SQS, JSON protocol, as the happy path sees them.
fn answer_aws(req: Request, counters: &Counters, subscriptions: usize, receiver: SocketAddr) -> Response {
    let target = req.target.unwrap_or_default();
    *counters.operations.lock().unwrap().entry(target.clone()).or_default() += 1;
    let input: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match target.as_str() {
        "DynamoDB_20120810.Query" if input["KeyConditionExpression"] == "account_id = :a" => {
            let account = input["ExpressionAttributeValues"][":a"]["S"].as_str().unwrap_or("");
            let count = if account.ends_with("-one") { 1 } else { subscriptions };
            let items: Vec<Value> = (0..count).map(|i| subscription_item(account, i, receiver)).collect();
            Response::json(
                200,
                &json!({"Count": items.len(), "ScannedCount": items.len(), "Items": items}),
            )
        }
        "DynamoDB_20120810.Query" => Response::json(200, &json!({"Count": 0, "ScannedCount": 0, "Items": []})),
        // Every statement applied: one empty answer each, in order; the statements are counted
        // too (each one is a write unit).
        "DynamoDB_20120810.BatchExecuteStatement" => {
            let statements = input["Statements"].as_array().map_or(0, Vec::len);
            *counters
                .operations
                .lock()
                .unwrap()
                .entry("DynamoDB_20120810.BatchExecuteStatement.statements".into())
                .or_default() += statements as u64;
            let answers: Vec<Value> = (0..statements).map(|_| json!({})).collect();
            Response::json(200, &json!({"Responses": answers}))
        }
        t if t.starts_with("DynamoDB_20120810.") => Response::json(200, &json!({})),
        t if t.starts_with("AmazonSQS.") => Response::json(
            200,
            &json!({"MessageId": "00000000-0000-0000-0000-000000000000", "Successful": [], "Failed": []}),
        ),
        _ => Response::json(400, &json!({"__type": "UnknownOperationException", "message": target})),
    }
}

/// One subscription record, in DynamoDB JSON, with a filter every `sms.received` from +1 passes.
fn subscription_item(account: &str, i: usize, receiver: SocketAddr) -> Value {
    json!({
        "account_id": {"S": account},
        "subscription_id": {"S": format!("sub-{i}")},
        "url": {"S": format!("http://{receiver}/hooks/{i}")},
        "secrets": {"L": [{"S": SECRET}]},
        "triggers": {"L": [{"S": "sms.received"}]},
        "enabled": {"BOOL": true},
        "filter": {"S": r#"{"data": {"from": [{"prefix": "+1"}]}}"#},
    })
}

async fn bare(url: &str, requests: usize, concurrency: usize, body_bytes: usize) -> Result<(), Error> {
    let client = dataflows_shared::delivery::client::build_client(true)?;
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(body_bytes.saturating_sub(10)));
    let started = Instant::now();
    let failed = stream::iter(0..requests)
        .map(|_| {
            let request = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_err(),
                    _ => true,
                }
            }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"requests": requests, "failed": failed, "seconds": seconds, "rate": requests as f64 / seconds,
               "cpu_ticks": cpu_ticks()})
    );
    Ok(())
}

/// The process's user + system CPU time so far, in clock ticks (`/proc/self/stat`, read the same
/// way `make bench` reads the function's).
fn cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<u64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            (fields.len() == 2).then(|| fields[0] + fields[1])
        })
        .unwrap_or(0)
}

/// The process's peak resident set size, in bytes (VmHWM).
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// See the header: one account's worst-case keyword regexes, read twice and matched once.
fn keywords(records: usize, rules: usize) -> Result<(), Error> {
    use dataflows_shared::subscription::{parse_record_within, ParseOptions, RegexBudget};
    let items: Vec<serde_json::Map<String, Value>> = (0..records)
        .map(|r| {
            // The largest a pattern of this shape may be (the validator's size limit), each distinct.
            let keywords: Vec<Value> = (0..rules)
                .map(|k| json!({"keyword": format!("(a{r}x{k})(?-u:\\w){{660}}b"), "match": "regex"}))
                .collect();
            json!({"account_id": "acc_worst", "subscription_id": format!("sub_{r:03}"),
                   "url": "https://hooks.example.com/k", "secrets": [SECRET], "triggers": "*",
                   "keywords": keywords})
            .as_object()
            .cloned()
            .expect("an object")
        })
        .collect();
    let before = peak_rss_bytes();
    let read = |label: &str| {
        let started = Instant::now();
        let mut budget = RegexBudget::account();
        let mut valid = Vec::new();
        let mut refused = 0;
        for item in &items {
            match parse_record_within(item, ParseOptions::default(), &mut budget) {
                Ok(s) => valid.push(s),
                Err(e) => {
                    if refused == 0 {
                        eprintln!("first refused: {e}");
                    }
                    refused += 1
                }
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!("{label}: {ms:.1} ms, {} valid, {refused} refused", valid.len());
        (ms, valid, refused)
    };
    let (first_ms, valid, refused) = read("first read");
    let started = Instant::now();
    let matched = valid
        .iter()
        .filter(|s| s.keywords.iter().any(|k| k.matches("a0x0 hello")))
        .count();
    let match_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (again_ms, _, _) = read("next cache miss");
    println!(
        "{}",
        json!({
            "records": records, "rules_per_record": rules, "valid": valid.len(), "refused": refused,
            "first_read_ms": first_ms, "first_match_ms": match_ms, "next_read_ms": again_ms,
            "matched": matched,
            "compiled_bytes": dataflows_shared::patterns::compiled_bytes(),
            "budget_bytes": dataflows_shared::patterns::MAX_ACCOUNT_REGEX_BYTES,
            "rss_before_bytes": before, "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}
