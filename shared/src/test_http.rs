//! A keep-alive HTTP/1.1 server on 127.0.0.1 for unit tests: reads each request (headers and a
//! `Content-Length` body) and writes what `answer` returns for the n-th request it has read
//! (over all connections, from 0). Counts the connections it accepted and the requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) fn start(answer: impl Fn(usize) -> String + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (accepted, read) = (connections.clone(), requests.clone());
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (read, answer) = (read.clone(), answer.clone());
                std::thread::spawn(move || serve(conn, &read, &*answer));
            }
        });
        Server {
            addr,
            connections,
            requests,
        }
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, read: &AtomicUsize, answer: &dyn Fn(usize) -> String) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n = read.fetch_add(1, Ordering::SeqCst);
        if conn.write_all(answer(n).as_bytes()).is_err() {
            return;
        }
    }
}
