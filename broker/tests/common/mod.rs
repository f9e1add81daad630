//! Test support: an in-process broker on an ephemeral port and a raw protocol client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use natrix_broker::options::Options;
use natrix_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker running inside the test process; shut down on drop.
pub struct TestServer {
    pub server: Arc<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts a broker on 127.0.0.1 with an ephemeral port after `f` adjusts the options.
    pub async fn start_with(f: impl FnOnce(&mut Options)) -> TestServer {
        let mut opts = Options {
            host: "127.0.0.1".into(),
            port: -1,
            http_host: "127.0.0.1".into(),
            ..Options::default()
        };
        f(&mut opts);
        let server = Server::new(opts);
        server.start().await.expect("server starts");
        let addr = server.client_addr.read().expect("bound");
        TestServer { server, addr }
    }

    /// Starts a broker with default options.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// `nats://` URL of the client port.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Base URL of the monitoring port (it must be enabled).
    pub fn http(&self) -> String {
        format!("http://{}", self.server.http_addr.read().expect("monitoring enabled"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// A raw protocol connection for byte-exact checks.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    /// Connects and reads the INFO line.
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut raw = Raw { stream, buf: Vec::new() };
        let info = raw.line().await.expect("INFO line");
        assert!(info.starts_with("INFO {"), "{info}");
        raw
    }

    /// Connects, reads INFO, sends CONNECT with `json`, and checks the round trip with PING.
    pub async fn connect_with(addr: SocketAddr, json: &str) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(&format!("CONNECT {json}\r\nPING\r\n")).await;
        let mut line = raw.line().await.expect("reply to CONNECT");
        if line == "+OK" {
            line = raw.line().await.expect("PONG");
        }
        assert_eq!(line, "PONG");
        raw
    }

    /// Writes bytes.
    pub async fn send(&mut self, s: &str) {
        self.stream.write_all(s.as_bytes()).await.expect("write");
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
    }

    /// The next CRLF-terminated line without its CRLF; `None` on EOF or after 5 s.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            let mut tmp = [0u8; 65536];
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Everything that arrives within `wait`, as text.
    pub async fn read_for(&mut self, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        let mut tmp = [0u8; 65536];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        s
    }

    /// True when the server has closed the connection (EOF within 5 s).
    pub async fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
