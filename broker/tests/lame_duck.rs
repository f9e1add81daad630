//! Lame duck mode and signals, on the real `natrix-broker` binary (and the reference
//! nats-server where it applies): SIGUSR2, `--signal ldm=<pid>`, `-sl ldm=<pid file>`,
//! `lame_duck_on_sigterm`/`--ldm_on_sigterm`, SIGUSR1 log reopening, SIGHUP, `--signal` errors,
//! and an async-nats client told about lame duck mode.
//!
//! Every process listens on 127.0.0.1 with an ephemeral port and is killed when its guard drops.
//! Durations are upper bounds only. `lame_duck_duration` has nats-server's 30 s minimum in
//! config files, but with few clients the pause between closes is at most a second.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{proc::kill, tempdir::TempDir};

/// Upper bound for anything the tests wait for.
const WAIT: Duration = Duration::from_secs(15);

const NATRIX: &str = env!("CARGO_BIN_EXE_natrix-broker");

/// The lame duck lines both servers log at INF, in order.
const LDM_LINES: &[&str] = &[
    "Entering lame duck mode, stop accepting new clients",
    "Closing existing clients",
    "Initiating Shutdown...",
    "Server Exiting..",
];

/// The stderr lines of a child so far, with a condvar to wait on.
type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A broker process started from a config file; killed (if still running) on drop.
struct Broker {
    bin: PathBuf,
    child: Child,
    lines: Lines,
    port: u16,
    pid_file: PathBuf,
    /// `-l <file>`: the lines are read from there instead of stderr.
    log_file: Option<PathBuf>,
    dir: TempDir,
}

impl Broker {
    /// Starts `bin -c <conf>` where the config listens on 127.0.0.1:-1, writes a pid file, and
    /// adds `extra_conf`; `args` are extra flags.
    fn start(bin: &Path, extra_conf: &str, args: &[&str]) -> Broker {
        let dir = TempDir::new("ldm-srv");
        let pid_file = dir.path().join("broker.pid");
        let conf = dir.path().join("broker.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:-1\npid_file: \"{}\"\n{extra_conf}",
                pid_file.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = child.stderr.take().unwrap();
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (v, cv) = &*sink;
                v.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        let mut b = Broker {
            bin: bin.to_path_buf(),
            child,
            lines,
            port: 0,
            pid_file,
            log_file: args
                .iter()
                .position(|a| *a == "-l")
                .map(|i| PathBuf::from(args[i + 1])),
            dir,
        };
        let l = b.wait_line("Listening for client connections on ");
        b.port = l.rsplit(':').next().unwrap().trim().parse().unwrap();
        // The pid file is written before the listener: it exists now.
        assert!(b.pid_file.exists(), "pid file written");
        b
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines();
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} in {lines:#?}"
            );
            if self.log_file.is_some() {
                std::thread::sleep(Duration::from_millis(20));
            } else {
                let (v, cv) = &*self.lines;
                let g = v.lock().unwrap();
                if g.len() == lines.len() {
                    drop(cv.wait_timeout(g, Duration::from_millis(200)).unwrap());
                }
            }
        }
    }

    /// The log lines so far (from the log file with `-l`, else stderr).
    fn lines(&self) -> Vec<String> {
        match &self.log_file {
            Some(f) => std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect(),
            None => self.lines.0.lock().unwrap().clone(),
        }
    }

    /// Waits (bounded) for the process to exit; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit; log: {:#?}", self.lines());
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin args...` to completion: (exit code, stderr).
fn run(bin: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw client over std TCP.
struct Raw {
    s: TcpStream,
    data: Vec<u8>,
}

impl Raw {
    /// Connects and reads the INFO line; then sends `send` (if any) and reads until `until`.
    fn connect(port: u16, send: Option<&str>, until: &str) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut r = Raw {
            s,
            data: Vec::new(),
        };
        assert!(r.read_until("\r\n"), "INFO");
        if let Some(p) = send {
            r.s.write_all(p.as_bytes()).unwrap();
            assert!(r.read_until(until), "{until:?} after {p:?}");
        }
        r.data.clear();
        r
    }

    /// Reads until the data holds `needle`; false on EOF or timeout first.
    fn read_until(&mut self, needle: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&self.data).contains(needle) {
            if Instant::now() >= deadline {
                return false;
            }
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.data.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    /// Reads until EOF (true) or the time bound (false); keeps what arrived.
    fn read_to_eof(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    fn got_ldm(&self) -> bool {
        String::from_utf8_lossy(&self.data)
            .lines()
            .any(|l| l.starts_with("INFO ") && l.contains("\"ldm\":true"))
    }
}

/// How lame duck mode is started.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// `kill -USR2 <pid>`.
    Usr2,
    /// `<bin> --signal ldm=<pid>`.
    SignalPid,
    /// `<bin> -sl ldm=<pid file>`.
    SignalPidFile,
    /// `<bin> -sl ldm=<dir>/*.pid` (ours).
    SignalPidFileGlob,
    /// `kill -TERM <pid>` (with `lame_duck_on_sigterm`).
    Term,
}

/// What the clients and the process showed.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// CONNECT protocol 1 + PING, protocol 0 + PING, no CONNECT: got an INFO with ldm.
    ldm_info: [bool; 3],
    /// A new connection after the ldm INFO was refused.
    refused: bool,
    /// Every client saw EOF.
    all_closed: bool,
    exit: Option<i32>,
    /// The lame duck lines the server logged, in order.
    log: Vec<String>,
}

/// Three raw clients, lame duck mode with a 200 ms grace period, and what everyone saw.
fn scenario(bin: &Path, trigger: Trigger, extra_conf: &str, args: &[&str]) -> (Outcome, Broker) {
    let conf = format!("lame_duck_duration: 30s\nlame_duck_grace_period: 200ms\n{extra_conf}");
    let mut b = Broker::start(bin, &conf, args);
    let mut clients = [
        Raw::connect(
            b.port,
            Some("CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n"),
            "PONG\r\n",
        ),
        Raw::connect(
            b.port,
            Some("CONNECT {\"protocol\":0,\"verbose\":false}\r\nPING\r\n"),
            "PONG\r\n",
        ),
        Raw::connect(b.port, None, ""),
    ];
    // The reference may follow the first PONG with an INFO of its own; let it arrive.
    std::thread::sleep(Duration::from_millis(100));
    let pid = b.pid().to_string();
    let pid_file = b.pid_file.display().to_string();
    let glob = b.dir.path().join("*.pid").display().to_string();
    match trigger {
        Trigger::Usr2 => kill("USR2", b.pid()),
        Trigger::Term => kill("TERM", b.pid()),
        Trigger::SignalPid | Trigger::SignalPidFile | Trigger::SignalPidFileGlob => {
            let target = match trigger {
                Trigger::SignalPid => pid,
                Trigger::SignalPidFile => pid_file,
                _ => glob,
            };
            let flag = if matches!(trigger, Trigger::SignalPid) {
                "--signal"
            } else {
                "-sl"
            };
            let (code, err) = run(&b.bin, &[flag, &format!("ldm={target}")]);
            assert_eq!(code, Some(0), "{flag} ldm={target}: {err}");
        }
    }
    // The ldm INFO goes out once the listener is closed.
    assert!(
        clients[0].read_until("\"ldm\":true"),
        "ldm INFO: {:?} log {:#?}",
        String::from_utf8_lossy(&clients[0].data),
        b.lines()
    );
    let refused = TcpStream::connect(("127.0.0.1", b.port)).is_err();
    let mut all_closed = true;
    for c in clients.iter_mut() {
        all_closed &= c.read_to_eof();
    }
    let exit = b.wait_exit();
    let log = b
        .lines()
        .into_iter()
        .filter_map(|l| {
            LDM_LINES
                .iter()
                .find(|m| l.contains(*m))
                .map(|m| m.to_string())
        })
        .collect();
    let out = Outcome {
        ldm_info: [
            clients[0].got_ldm(),
            clients[1].got_ldm(),
            clients[2].got_ldm(),
        ],
        refused,
        all_closed,
        exit,
        log,
    };
    (out, b)
}

/// What a correct lame duck run looks like.
fn expected() -> Outcome {
    Outcome {
        ldm_info: [true, false, false],
        refused: true,
        all_closed: true,
        exit: Some(0),
        log: LDM_LINES.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn sigusr2_lame_duck_matches_reference() {
    let natrix = std::thread::spawn(|| scenario(Path::new(NATRIX), Trigger::Usr2, "", &[]));
    let (reference, rb) = scenario(&common::nats_server_bin(), Trigger::Usr2, "", &[]);
    let (ours, b) = natrix.join().unwrap();
    assert_eq!(reference, expected(), "reference log {:#?}", rb.lines());
    assert_eq!(ours, reference, "natrix log {:#?}", b.lines());
    b.wait_line("Trapped \"user defined signal 2\" signal");
    rb.wait_line("Trapped \"user defined signal 2\" signal");
    // A clean exit removes the pid file.
    assert!(!b.pid_file.exists());
}

#[test]
fn signal_flag_with_pid_matches_reference() {
    let natrix = std::thread::spawn(|| scenario(Path::new(NATRIX), Trigger::SignalPid, "", &[]));
    let (reference, rb) = scenario(&common::nats_server_bin(), Trigger::SignalPid, "", &[]);
    let (ours, b) = natrix.join().unwrap();
    assert_eq!(reference, expected(), "reference log {:#?}", rb.lines());
    assert_eq!(ours, reference, "natrix log {:#?}", b.lines());
}

#[test]
fn signal_flag_with_pid_file_matches_reference() {
    let natrix =
        std::thread::spawn(|| scenario(Path::new(NATRIX), Trigger::SignalPidFile, "", &[]));
    let (reference, rb) = scenario(&common::nats_server_bin(), Trigger::SignalPidFile, "", &[]);
    let (ours, b) = natrix.join().unwrap();
    assert_eq!(reference, expected(), "reference log {:#?}", rb.lines());
    assert_eq!(ours, reference, "natrix log {:#?}", b.lines());
}

#[test]
fn signal_flag_with_pid_file_glob() {
    let (ours, b) = scenario(Path::new(NATRIX), Trigger::SignalPidFileGlob, "", &[]);
    assert_eq!(ours, expected(), "natrix log {:#?}", b.lines());
}

#[test]
fn lame_duck_on_sigterm_config_key() {
    let (ours, b) = scenario(
        Path::new(NATRIX),
        Trigger::Term,
        "lame_duck_on_sigterm: true\n",
        &[],
    );
    assert_eq!(ours, expected(), "natrix log {:#?}", b.lines());
    b.wait_line("Trapped \"terminated\" signal");
}

#[test]
fn ldm_on_sigterm_flag() {
    let (ours, b) = scenario(Path::new(NATRIX), Trigger::Term, "", &["--ldm_on_sigterm"]);
    assert_eq!(ours, expected(), "natrix log {:#?}", b.lines());
}

#[test]
fn sigusr1_reopens_the_log_file() {
    let dir = TempDir::new("ldm-log");
    let log = dir.path().join("natrix.log");
    let rotated = dir.path().join("natrix.log.1");
    let mut b = Broker::start(Path::new(NATRIX), "", &["-l", log.to_str().unwrap()]);
    b.wait_line("Server is ready");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    std::fs::rename(&log, &rotated).unwrap();
    kill("USR1", b.pid());
    while !read(&log).contains("File log re-opened") {
        assert!(
            Instant::now() < deadline,
            "new log file: {:?}, rotated: {}",
            read(&log),
            read(&rotated)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(read(&rotated).contains("[INF] Trapped \"user defined signal 1\" signal"));
    // Later lines go to the new file.
    kill("INT", b.pid());
    assert_eq!(b.wait_exit(), Some(0));
    assert!(read(&log).contains("Server Exiting.."), "{}", read(&log));
    assert!(!read(&rotated).contains("Server Exiting.."));
}

#[test]
fn sigusr1_without_log_file_is_ignored() {
    let mut b = Broker::start(Path::new(NATRIX), "", &[]);
    kill("USR1", b.pid());
    b.wait_line("File log re-open ignored, not a file logger");
    assert!(b.running());
    kill("TERM", b.pid());
    assert_eq!(b.wait_exit(), Some(0));
}

#[test]
fn sighup_keeps_the_server_running() {
    let mut b = Broker::start(Path::new(NATRIX), "", &[]);
    kill("HUP", b.pid());
    b.wait_line("Trapped \"hangup\" signal");
    b.wait_line("[INF] Reloaded server configuration");
    // Still serving.
    let mut c = Raw::connect(
        b.port,
        Some("CONNECT {\"verbose\":false}\r\nPING\r\n"),
        "PONG\r\n",
    );
    c.s.write_all(b"PING\r\n").unwrap();
    assert!(c.read_until("PONG\r\n"));
    assert!(b.running());
    kill("TERM", b.pid());
    assert!(c.read_to_eof());
    assert_eq!(b.wait_exit(), Some(0));
}

#[test]
fn sigterm_during_lame_duck_is_ignored_as_reference() {
    for bin in [PathBuf::from(NATRIX), common::nats_server_bin()] {
        let mut b = Broker::start(
            &bin,
            "lame_duck_duration: 30s\nlame_duck_grace_period: 1s\n",
            &[],
        );
        let mut c = Raw::connect(
            b.port,
            Some("CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n"),
            "PONG\r\n",
        );
        kill("USR2", b.pid());
        assert!(c.read_until("\"ldm\":true"), "{}", bin.display());
        kill("TERM", b.pid());
        b.wait_line("Trapped \"terminated\" signal");
        // Lame duck mode runs to its end.
        assert!(c.read_to_eof());
        assert_eq!(b.wait_exit(), Some(0), "{}", bin.display());
        b.wait_line("Closing existing clients");
    }
}

#[test]
fn signal_flag_errors_match_reference() {
    for arg in ["bogus=1", "ldm=notapid", "ldm=1=2"] {
        let (ours, our_err) = run(Path::new(NATRIX), &["--signal", arg]);
        let (theirs, their_err) = run(&common::nats_server_bin(), &["--signal", arg]);
        assert_eq!(ours, Some(1), "{arg}: {our_err}");
        assert_eq!(ours, theirs, "{arg}");
        let strip = |s: &str, p: &str| s.trim().strip_prefix(p).unwrap_or(s).trim().to_string();
        assert_eq!(
            strip(&our_err, "natrix-broker:"),
            strip(&their_err, "nats-server:"),
            "{arg}"
        );
    }
    // A dead pid.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let (code, err) = run(Path::new(NATRIX), &["-sl", &format!("ldm={dead}")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("signal \"ldm\" {dead}: no such process")),
        "{err}"
    );
}

#[tokio::test]
async fn async_nats_client_is_told_and_disconnected() {
    let ts = common::TestServer::start_with(|o| {
        o.lame_duck_grace_period = Duration::from_millis(200);
        o.lame_duck_duration = Duration::from_secs(1);
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(ts.url())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let server = ts.server.clone();
    let ldm = tokio::spawn(async move { server.lame_duck_mode().await });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(seen.contains(&"lame duck mode detected".to_string())
        && seen.contains(&"disconnected".to_string()))
    {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => seen.push(e),
            _ => panic!("events so far: {seen:?}"),
        }
    }
    // Told first, then disconnected.
    let told = seen.iter().position(|e| e == "lame duck mode detected");
    let gone = seen.iter().position(|e| e == "disconnected");
    assert!(told < gone, "{seen:?}");
    tokio::time::timeout(WAIT, ldm).await.unwrap().unwrap();
    assert!(ts.server.is_shut_down());
    assert!(tokio::net::TcpStream::connect(ts.addr).await.is_err());
}

#[test]
fn grace_period_must_be_below_duration_as_reference() {
    let dir = TempDir::new("ldm-bad");
    let conf = dir.path().join("bad.conf");
    std::fs::write(
        &conf,
        "listen: 127.0.0.1:-1\nlame_duck_duration: 30s\nlame_duck_grace_period: 40s\n",
    )
    .unwrap();
    let msg = "lame duck grace period (40s) should be strictly lower than lame duck duration (30s)";
    for bin in [PathBuf::from(NATRIX), common::nats_server_bin()] {
        let (code, err) = run(&bin, &["-c", conf.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{}: {err}", bin.display());
        assert!(err.contains(msg), "{}: {err}", bin.display());
    }
}
