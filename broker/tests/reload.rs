//! Config reload on the real `natrix-broker` binary: SIGHUP re-reads the config file and
//! applies users, passwords and permissions to connected clients, refuses options that need a
//! restart with nats-server's wording, survives a broken file and switches debug logging.
//!
//! Every broker listens on 127.0.0.1 with an ephemeral port and is killed when dropped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NATRIX: &str = env!("CARGO_BIN_EXE_natrix-broker");
/// Upper bound for anything the tests wait for.
const WAIT: Duration = Duration::from_secs(15);

/// A broker started from a config file it can rewrite; killed on drop.
struct Broker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Broker {
    fn start(conf_text: &str) -> Broker {
        Self::start_bin(std::path::Path::new(NATRIX), conf_text)
    }

    fn start_bin(bin: &std::path::Path, conf_text: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!(
            "natrix-reload-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut b = Broker {
            child,
            lines,
            conf,
            dir,
            port: 0,
        };
        let l = b.wait_line("Listening for client connections on ");
        b.port = l.rsplit(':').next().unwrap().trim().parse().unwrap();
        b
    }

    /// Rewrites the config file and sends SIGHUP.
    fn reload(&self, conf_text: &str) {
        std::fs::write(&self.conf, conf_text).unwrap();
        let st = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `n` lines contain `needle`; the last one.
    fn wait_nth(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
                if found.len() >= n {
                    return found[n - 1].clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "no line {n} with {needle:?} in {lines:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_line(&self, needle: &str) -> String {
        self.wait_nth(needle, 1)
    }

    /// Sends SIGHUP with `conf_text` and waits for the outcome line `needle` (its n-th time).
    fn reload_expect(&self, conf_text: &str, needle: &str) -> String {
        let n = self.count(needle) + 1;
        self.reload(conf_text);
        self.wait_nth(needle, n)
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw protocol connection.
struct Raw {
    s: TcpStream,
    seen: String,
}

impl Raw {
    /// Connects with `connect` JSON and waits for the PONG of a PING after it; `None` when the
    /// server answered `-ERR` instead.
    fn connect(port: u16, connect: &str) -> Result<Raw, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut r = Raw {
            s,
            seen: String::new(),
        };
        r.send(&format!("CONNECT {connect}\r\nPING\r\n"));
        if r.until(|s| s.contains("PONG\r\n") || s.contains("-ERR")) && r.seen.contains("PONG") {
            Ok(r)
        } else {
            Err(r.seen)
        }
    }

    fn send(&mut self, s: &str) {
        let _ = self.s.write_all(s.as_bytes());
    }

    /// Reads until `done(all read so far)` or EOF or the deadline; whether `done` held.
    fn until(&mut self, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if done(&self.seen) {
                return true;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return done(&self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return done(&self.seen),
            }
        }
        false
    }

    /// Sends a PING and waits for its PONG (the n-th PONG seen).
    fn ping(&mut self) -> bool {
        let n = self.seen.matches("PONG").count() + 1;
        self.send("PING\r\n");
        self.until(|s| s.matches("PONG").count() >= n)
    }

    /// Reads until EOF; whether it came.
    fn eof(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

fn user(u: &str, p: &str) -> String {
    format!("{{\"verbose\":false,\"user\":\"{u}\",\"pass\":\"{p}\"}}")
}

const LISTEN: &str = "listen: 127.0.0.1:-1\n";

#[test]
fn password_change_takes_effect_and_others_stay_connected() {
    let conf = |pa: &str| {
        format!(
            "{LISTEN}authorization {{ users = [ {{user: a, password: {pa}}}, {{user: b, password: b}} ] }}\n"
        )
    };
    let b = Broker::start(&conf("old"));
    let mut a = Raw::connect(b.port, &user("a", "old")).unwrap();
    let mut other = Raw::connect(b.port, &user("b", "b")).unwrap();
    let line = b.reload_expect(&conf("new"), "Reloaded server configuration");
    assert!(line.contains("[INF]"), "{line}");
    b.wait_line("[INF] Reloaded: authorization users");
    // The client whose password changed is told and dropped; the other stays.
    assert!(a.eof());
    assert!(
        a.seen.contains("-ERR 'Authorization Violation'"),
        "{}",
        a.seen
    );
    assert!(other.ping());
    let err = Raw::connect(b.port, &user("a", "old")).err().unwrap();
    assert!(err.contains("-ERR 'Authorization Violation'"), "{err}");
    assert!(Raw::connect(b.port, &user("a", "new")).is_ok());
}

#[test]
fn permission_change_applies_to_connected_client_and_removed_user_is_dropped() {
    let conf = |perm: &str, extra: &str| {
        format!(
            "{LISTEN}authorization {{ users = [ {{user: a, password: a, permissions: {{publish: {perm}}}}} {extra} ] }}\n"
        )
    };
    let b = Broker::start(&conf("[\"foo\", \"bar\"]", ", {user: gone, password: g}"));
    let mut a = Raw::connect(b.port, &user("a", "a")).unwrap();
    let mut gone = Raw::connect(b.port, &user("gone", "g")).unwrap();
    a.send("PUB bar 2\r\nhi\r\n");
    assert!(a.ping());
    assert!(!a.seen.contains("-ERR"), "{}", a.seen);
    b.reload_expect(&conf("[\"foo\"]", ""), "Reloaded server configuration");
    a.send("PUB bar 2\r\nhi\r\n");
    assert!(a.until(|s| s.contains("-ERR 'Permissions Violation for Publish to \"bar\"'")));
    a.send("PUB foo 2\r\nhi\r\n");
    assert!(a.ping());
    assert_eq!(a.seen.matches("-ERR").count(), 1, "{}", a.seen);
    assert!(gone.eof());
    assert!(gone.seen.contains("-ERR 'Authorization Violation'"));
}

#[test]
fn port_change_is_refused_and_old_port_keeps_serving() {
    let b = Broker::start("listen: 127.0.0.1:-1\n");
    let port = b.port;
    let line = b.reload_expect(
        &format!("listen: 127.0.0.1:{}\n", port.wrapping_add(1).max(1024)),
        "Failed to reload server configuration",
    );
    assert!(
        line.contains(&format!(
            "[ERR] Failed to reload server configuration: config reload not supported for Port: old={port}, new={}",
            port.wrapping_add(1).max(1024)
        )),
        "{line}"
    );
    assert!(Raw::connect(port, "{\"verbose\":false}").is_ok());
}

#[test]
fn syntax_error_keeps_old_config() {
    let conf = format!("{LISTEN}authorization {{ user: a, password: a }}\n");
    let mut b = Broker::start(&conf);
    let line = b.reload_expect(
        &format!("{LISTEN}authorization {{ user: a password: \n"),
        "Failed to reload server configuration",
    );
    assert!(line.contains("nats.conf:"), "file:line:col in {line}");
    assert!(b.running());
    assert!(Raw::connect(b.port, &user("a", "a")).is_ok());
    assert!(Raw::connect(b.port, "{\"verbose\":false}").is_err());
}

#[test]
fn debug_toggled_on_shows_debug_lines() {
    let b = Broker::start(LISTEN);
    assert!(Raw::connect(b.port, "{\"verbose\":false}").is_ok());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.count("[DBG]"), 0);
    b.reload_expect(
        &format!("{LISTEN}debug: true\n"),
        "Reloaded server configuration",
    );
    b.wait_line("[INF] Reloaded: debug = true");
    assert!(Raw::connect(b.port, "{\"verbose\":false}").is_ok());
    b.wait_line("[DBG]");
    // And off again.
    b.reload_expect(LISTEN, "Reloaded: debug = false");
    std::thread::sleep(Duration::from_millis(100));
    let before = b.count("[DBG]");
    assert!(Raw::connect(b.port, "{\"verbose\":false}").is_ok());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.count("[DBG]"), before);
}

#[test]
fn max_payload_reload_applies_to_connected_client() {
    let b = Broker::start(LISTEN);
    let mut c = Raw::connect(b.port, "{\"verbose\":false}").unwrap();
    b.reload_expect(
        &format!("{LISTEN}max_payload: 4\n"),
        "Reloaded: max_payload = 4",
    );
    b.wait_line("Reloaded server configuration");
    c.send("PUB foo 5\r\nhello\r\n");
    assert!(
        c.until(|s| s.contains("-ERR 'Maximum Payload Violation'")),
        "{}",
        c.seen
    );
}

#[test]
fn signal_reload_command_reloads() {
    let b = Broker::start(LISTEN);
    std::fs::write(&b.conf, format!("{LISTEN}max_control_line: 2048\n")).unwrap();
    let st = Command::new(NATRIX)
        .arg("--signal")
        .arg(format!("reload={}", b.child.id()))
        .status()
        .unwrap();
    assert!(st.success());
    b.wait_line("Trapped \"hangup\" signal");
    b.wait_line("[INF] Reloaded: max_control_line = 2048");
    b.wait_line("[INF] Reloaded server configuration");
}

/// The text of a log line after its level tag, and without nats-server's `(sha256:...)`.
fn message(line: &str) -> String {
    let m = ["[INF] ", "[ERR] ", "[WRN] "]
        .iter()
        .find_map(|t| line.find(t).map(|i| &line[i..]))
        .unwrap_or(line);
    m.split(" (sha256:").next().unwrap().to_string()
}

#[test]
fn reload_lines_match_reference() {
    let conf = |extra: &str| {
        format!("{LISTEN}authorization {{ users = [ {{user: a, password: a}} ] }}\n{extra}")
    };
    let mut seen = Vec::new();
    for bin in [PathBuf::from(NATRIX), common::nats_server_bin()] {
        let b = Broker::start_bin(&bin, &conf(""));
        let ok = b.count("Reloaded server configuration");
        b.reload(&conf(
            "debug: true\nmax_payload: 4096\nping_interval: \"30s\"\nwrite_deadline: \"3s\"\nmax_connections: 10\n",
        ));
        b.wait_nth("Reloaded server configuration", ok + 1);
        let bad = b.reload_expect(
            &format!("listen: 127.0.0.1:{}\n", b.port.wrapping_add(1).max(1024)),
            "Failed to reload server configuration",
        );
        let lines: Vec<String> = b
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Reloaded") || l.contains("Failed to reload"))
            .map(|l| {
                message(l)
                    .replace(&b.port.wrapping_add(1).max(1024).to_string(), "NEW")
                    .replace(&b.port.to_string(), "PORT")
            })
            .collect();
        assert!(bad.contains("[ERR]"), "{bad}");
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1]);
}

/// `watch_config` (ours): a changed file reloads without a signal; the TLS certificate the
/// config names is part of what is watched; a broken file is reported once and the running
/// configuration stays.
#[test]
fn watch_config_reloads_on_file_change_without_a_signal() {
    let conf = |pa: &str| {
        format!(
            "{LISTEN}watch_config: \"200ms\"\nauthorization {{ users = [ {{user: a, password: {pa}}} ] }}\n"
        )
    };
    let b = Broker::start(&conf("old"));
    assert!(Raw::connect(b.port, &user("a", "old")).is_ok());
    std::fs::write(&b.conf, conf("new")).unwrap();
    b.wait_line("Configuration change detected on disk, reloading");
    b.wait_line("[INF] Reloaded: authorization users");
    assert!(Raw::connect(b.port, &user("a", "new")).is_ok());
    assert!(Raw::connect(b.port, &user("a", "old")).is_err());
    // A broken file: one failure, not one per poll, and the server keeps serving.
    std::fs::write(&b.conf, format!("{LISTEN}authorization {{ user: \n")).unwrap();
    b.wait_line("Failed to reload server configuration");
    // Then a good file again reloads.
    std::fs::write(&b.conf, conf("third")).unwrap();
    b.wait_nth("Configuration change detected on disk, reloading", 3);
    b.wait_nth("[INF] Reloaded: authorization users", 2);
    assert_eq!(b.count("Failed to reload server configuration"), 1);
    assert!(Raw::connect(b.port, &user("a", "third")).is_ok());
}

/// JetStream on reload: server-wide limits apply live with nats-server's lines; the store
/// directory and the domain are refused with its messages.
#[test]
fn jetstream_reload_matches_reference() {
    let mut seen = Vec::new();
    for bin in [PathBuf::from(NATRIX), common::nats_server_bin()] {
        let dir = std::env::temp_dir().join(format!(
            "natrix-jsreload-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let store = dir.display().to_string();
        let conf = |mem: &str, sd: &str, extra: &str| {
            format!(
                "{LISTEN}jetstream {{ store_dir: \"{sd}\", max_mem: {mem}, max_file: {mem}{extra} }}\n"
            )
        };
        let b = Broker::start_bin(&bin, &conf("1G", &store, ""));
        let ok = b.count("Reloaded server configuration");
        b.reload(&conf("2G", &store, ""));
        b.wait_nth("Reloaded server configuration", ok + 1);
        b.reload_expect(
            &conf("2G", &format!("{store}-other"), ""),
            "Failed to reload server configuration",
        );
        let failed = b.count("Failed to reload");
        b.reload(&conf("2G", &store, ", domain: x"));
        b.wait_nth("Failed to reload server configuration", failed + 1);
        let lines: Vec<String> = b
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Reloaded: JetStream") || l.contains("Failed to reload"))
            .map(|l| message(l))
            .collect();
        seen.push(lines);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(format!("{store}-other"));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), 4, "{:?}", seen[0]);
}
