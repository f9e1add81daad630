//! Secrets stay secret: the `natrix-broker` binary runs with debug and trace on (`-DV`) and a
//! log file (`-l`); clients authenticate with a password, a token and an nkey, publish and
//! subscribe; then the password, token and seed must appear nowhere in the log file, `/varz`, or
//! `/connz?auth=1`, while `/connz?auth=1` still names the authorized user.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions};
use common::http::get;
use futures::StreamExt;

const NATRIX: &str = env!("CARGO_BIN_EXE_natrix-broker");
const WAIT: Duration = Duration::from_secs(10);

const PASSWORD: &str = "Pw-Secret-9f3a1c";
const TOKEN: &str = "Tok-Secret-51e7b2";

/// A broker process with its own directory (config and log); killed and removed on drop.
struct Broker {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    client: SocketAddr,
    http: SocketAddr,
}

impl Broker {
    fn start(conf: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!(
            "natrix-secrets-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conf_file = dir.join("nats.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let log = dir.join("natrix.log");
        let child = Command::new(NATRIX)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-DV", "-c"])
            .arg(&conf_file)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn natrix-broker");
        let mut b = Broker {
            child,
            dir,
            log,
            client: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let text = b.log_text();
            if text.contains("Server is ready") {
                b.client = addr_after(&text, "Listening for client connections on ");
                b.http = addr_after(&text, "Starting http monitor on ");
                return b;
            }
            assert!(Instant::now() < deadline, "broker did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    fn http(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn addr_after(text: &str, marker: &str) -> SocketAddr {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in {text}"));
    let rest = line.split(marker).nth(1).unwrap().trim();
    let rest = rest.trim_start_matches("http://");
    rest.parse()
        .unwrap_or_else(|e| panic!("address in {line:?}: {e}"))
}

/// Some traffic so the trace has publishes, subscriptions and deliveries to log.
async fn exercise(nc: &Client, subject: &str) {
    let mut sub = nc.subscribe(subject.to_string()).await.unwrap();
    nc.publish(subject.to_string(), "payload".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("message in time")
        .expect("subscription open");
    assert_eq!(m.payload.as_ref(), b"payload");
}

/// Fails if any secret appears in `text` (named `what`).
fn assert_clean(text: &str, what: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

/// Waits until the log file contains `needle` (trace lines are written asynchronously).
async fn log_contains(b: &Broker, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = b.log_text();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "log lacks {needle:?}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn password_and_nkey_seed_never_leak() {
    let kp = nkeys::KeyPair::new_user();
    let seed = kp.seed().unwrap();
    let conf = format!(
        "authorization {{ users: [\n  {{user: alice, password: \"{PASSWORD}\"}}\n  {{nkey: {}}}\n] }}\n",
        kp.public_key()
    );
    let b = Broker::start(&conf);
    let pw = ConnectOptions::with_user_and_password("alice".into(), PASSWORD.into())
        .name("pw-client")
        .connect(b.url())
        .await
        .expect("password client connects");
    let nk = ConnectOptions::with_nkey(seed.clone())
        .name("nkey-client")
        .connect(b.url())
        .await
        .expect("nkey client connects");
    exercise(&pw, "secrets.pw").await;
    exercise(&nk, "secrets.nkey").await;
    // A failed attempt with a wrong password must not log the attempt's password either.
    let wrong = "Wrong-Secret-0d8e44";
    assert!(
        ConnectOptions::with_user_and_password("alice".into(), wrong.into())
            .connect(b.url())
            .await
            .is_err()
    );

    let secrets = [PASSWORD, seed.as_str(), wrong];
    let connz = get(&b.http(), "/connz?auth=1").await;
    assert_eq!(connz.status, 200);
    assert_clean(&connz.body, "/connz?auth=1", &secrets);
    let conns = connz.json()["connections"].as_array().unwrap().clone();
    let by_name = |n: &str| {
        conns
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n} in /connz: {conns:?}"))
            .clone()
    };
    assert_eq!(by_name("pw-client")["authorized_user"], "alice");
    assert_eq!(by_name("nkey-client")["authorized_user"], kp.public_key());
    let varz = get(&b.http(), "/varz").await;
    assert_eq!(varz.status, 200);
    assert_clean(&varz.body, "/varz", &secrets);

    // The trace saw the CONNECTs (redacted) and the traffic.
    let log = log_contains(&b, "secrets.nkey").await;
    let log = if log.contains("Wrong") || log.contains("uthorization") {
        log
    } else {
        log_contains(&b, "uthorization").await
    };
    assert!(log.contains("CONNECT"), "trace has CONNECT lines: {log}");
    assert_clean(&log, "the log file", &secrets);
    drop((pw, nk));
}

#[tokio::test]
async fn token_never_leaks() {
    let b = Broker::start(&format!("authorization {{ token: \"{TOKEN}\" }}\n"));
    let nc = ConnectOptions::with_token(TOKEN.into())
        .name("token-client")
        .connect(b.url())
        .await
        .expect("token client connects");
    exercise(&nc, "secrets.token").await;
    let wrong = "Wrong-Token-77ab10";
    assert!(ConnectOptions::with_token(wrong.into())
        .connect(b.url())
        .await
        .is_err());
    let secrets = [TOKEN, wrong];
    for path in ["/connz?auth=1", "/varz"] {
        let r = get(&b.http(), path).await;
        assert_eq!(r.status, 200);
        assert_clean(&r.body, path, &secrets);
    }
    let log = log_contains(&b, "secrets.token").await;
    let log = if log.contains("uthorization") {
        log
    } else {
        log_contains(&b, "uthorization").await
    };
    assert!(log.contains("CONNECT"), "trace has CONNECT lines: {log}");
    assert_clean(&log, "the log file", &secrets);
    drop(nc);
}
