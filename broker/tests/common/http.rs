//! HTTP GETs against a monitoring (or profiling) port: a minimal HTTP/1.0 GET over a tokio
//! TcpStream, over TLS, or blocking over std (HTTP/1.1 with `Connection: close`); the body as
//! text, bytes or JSON.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for one GET, unless the caller gives another.
const WAIT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as it came (dechunked), for binary bodies.
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET {base}{path}` with HTTP/1.0 (the server closes after responding); `base` is `http://host:port`.
pub async fn get(base: &str, path: &str) -> HttpResponse {
    get_within(base, path, WAIT).await
}

/// [`get`] bounded by `wait` instead of 10 s.
pub async fn get_within(base: &str, path: &str, wait: Duration) -> HttpResponse {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let fut = async {
        let mut s = TcpStream::connect(hostport)
            .await
            .expect("connect to monitoring port");
        s.write_all(request(path, hostport).as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = tokio::time::timeout(wait, fut)
        .await
        .unwrap_or_else(|_| panic!("GET {path} timed out"));
    parse(&raw)
}

/// `GET path` over TLS with `cfg` (server name `localhost`), HTTP/1.0.
pub async fn https_get(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> HttpResponse {
    let fut = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(request(path, "localhost").as_bytes())
            .await
            .expect("write");
        let mut raw = Vec::new();
        // Servers may close without close_notify; what was read is enough.
        let _ = tls.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(WAIT, fut)
        .await
        .expect("HTTPS GET in time");
    parse(&raw)
}

/// An HTTP/1.0 GET request (the server closes after responding).
fn request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
}

/// A response as read: the status line, headers, and the body (dechunked when chunked).
fn parse(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let bytes = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let (size, after) = (&rest[..i], &rest[i + 2..]);
        let n = usize::from_str_radix(String::from_utf8_lossy(size).trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = &after[n..];
        while rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        }
    }
    out
}

/// `GET` that must answer 200 with JSON.
pub async fn get_json(base: &str, path: &str) -> serde_json::Value {
    let r = get(base, path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

/// Polls `path` until `pred` holds (5 s at most) and returns the last document.
pub async fn wait_json(
    base: &str,
    path: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = get_json(base, path).await;
        if pred(&v) || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`, blocking (std); returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to monitor");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("HTTP response");
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
