//! The `natrix-broker` binary as harnesses and operators run it: startup log lines with
//! nats-server's wording, `-l`, `-P`, `--ports_file_dir`, `-c`/`-t` with config files, `-D`/`-T`,
//! `-v`/`-h`, and graceful stops on SIGTERM/SIGINT. Where it makes sense the same checks run
//! against the reference nats-server, so the lines harnesses wait for exist in both.
//!
//! Every process listens on 127.0.0.1 with ephemeral ports and is killed when its guard drops.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::http::http_get;
use common::proc::{addr_after, Proc, NATRIX, WAIT};

/// Runs a command that is expected to exit by itself; returns (status, stdout, stderr).
fn run_to_end(bin: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "natrix-binary-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Writes `body` to `name` in the directory and returns its path as a string.
    fn file(&self, name: &str, body: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One log line split as nats-server writes it: `[pid] [ts ]LVL msg`.
#[derive(Debug, PartialEq)]
struct LogLine {
    pid: u32,
    has_time: bool,
    level: String,
    msg: String,
}

/// Parses `[pid] YYYY/MM/DD HH:MM:SS.micro [LVL] msg` (timestamp optional).
fn parse_log(line: &str) -> Option<LogLine> {
    let rest = line.strip_prefix('[')?;
    let (pid, rest) = rest.split_once("] ")?;
    let pid = pid.parse().ok()?;
    let (has_time, rest) = if rest.starts_with('[') {
        (false, rest)
    } else {
        let (ts, rest) = rest.split_at_checked(27)?;
        let shape: String = ts
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        if shape != "9999/99/99 99:99:99.999999 " {
            return None;
        }
        (true, rest)
    };
    let level = rest.get(1..4)?.to_string();
    if !rest.starts_with('[') || rest.get(4..6)? != "] " {
        return None;
    }
    if !["INF", "DBG", "TRC", "WRN", "ERR", "FTL"].contains(&level.as_str()) {
        return None;
    }
    Some(LogLine {
        pid,
        has_time,
        level,
        msg: rest[6..].to_string(),
    })
}

/// Connects, reads INFO, checks a PING/PONG round trip, and returns the INFO JSON.
fn nats_info(addr: SocketAddr) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let info = read_line(&mut s);
    let json = info
        .strip_prefix("INFO ")
        .unwrap_or_else(|| panic!("not INFO: {info:?}"));
    let info: serde_json::Value = serde_json::from_str(json.trim_end()).expect("INFO JSON");
    s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    assert_eq!(read_line(&mut s), "PONG");
    info
}

/// Reads one CRLF-terminated line (without the CRLF) byte by byte.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => line.push(b[0]),
            other => panic!("connection ended mid-line ({other:?}): {line:?}"),
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// The messages harnesses wait for at startup, in the order nats-server logs them.
const STARTUP: &[&str] = &[
    "Starting nats-server",
    "  Version:  ",
    "  Name:     ",
    "  ID:       ",
    "Starting http monitor on 127.0.0.1:",
    "Listening for client connections on 127.0.0.1:",
    "Server is ready",
];

/// The messages logged on a graceful stop, in order, last line last.
const SHUTDOWN_TERM: &[&str] = &[
    "Trapped \"terminated\" signal",
    "Initiating Shutdown...",
    "Server Exiting..",
];

/// For each message prefix, its (level, position among the found ones) in `lines`.
fn positions(lines: &[String], wanted: &[&str]) -> Vec<Option<(String, usize)>> {
    let parsed: Vec<LogLine> = lines.iter().filter_map(|l| parse_log(l)).collect();
    wanted
        .iter()
        .map(|w| {
            parsed
                .iter()
                .position(|p| p.msg.starts_with(w))
                .map(|i| (parsed[i].level.clone(), i))
        })
        .collect()
}

/// The order of `wanted` as found (indices into `wanted`, sorted by line position).
fn order(lines: &[String], wanted: &[&str]) -> Vec<Result<(usize, String), String>> {
    let pos = positions(lines, wanted);
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, p) in pos.into_iter().enumerate() {
        match p {
            Some((lvl, at)) => found.push((at, i, lvl)),
            None => out.push(Err(wanted[i].to_string())),
        }
    }
    found.sort();
    out.extend(found.into_iter().map(|(_, i, lvl)| Ok((i, lvl))));
    out
}

#[test]
fn startup_lines_and_ports_work() {
    let mut p = Proc::natrix(&["-a", "127.0.0.1", "-p", "-1", "-m", "-1"]);
    let addr = p.ready();
    let lines = p.lines();
    for l in &lines {
        let parsed = parse_log(l).unwrap_or_else(|| panic!("not a nats-server log line: {l:?}"));
        assert_eq!(parsed.pid, p.pid(), "{l}");
        assert!(parsed.has_time, "{l}");
    }
    let ready_at = lines.iter().position(|l| l.contains("Server is ready"));
    let listen_at = lines
        .iter()
        .position(|l| l.contains("Listening for client connections on 127.0.0.1:"));
    assert!(listen_at < ready_at, "{lines:#?}");
    assert_ne!(addr.port(), 0);
    let info = nats_info(addr);
    assert_eq!(info["port"], addr.port(), "{info}");
    assert_eq!(info["host"], "127.0.0.1", "{info}");

    let http = addr_after(
        &p.wait_line("Starting http monitor on "),
        "Starting http monitor on ",
    );
    let also = addr_after(
        &p.wait_line("Listening for monitoring connections on http://"),
        "Listening for monitoring connections on http://",
    );
    assert_eq!(http, also);
    let (status, body) = http_get(http, "/varz");
    assert!(status.contains(" 200 "), "{status}");
    let varz: serde_json::Value = serde_json::from_str(&body).expect("varz JSON");
    assert_eq!(varz["port"], addr.port(), "{varz}");
    let (status, _) = http_get(http, "/healthz");
    assert!(status.contains(" 200 "), "{status}");

    assert!(p.stop().success());
}

#[test]
fn startup_and_shutdown_lines_match_reference() {
    let args = ["-a", "127.0.0.1", "-p", "-1", "-m", "-1"];
    let mut runs = Vec::new();
    for mut p in [Proc::reference(&args), Proc::natrix(&args)] {
        let addr = p.ready();
        nats_info(addr);
        let startup = order(&p.lines(), STARTUP);
        let status = p.stop();
        let lines = p.lines();
        let shutdown = order(&lines, SHUTDOWN_TERM);
        let last = lines
            .last()
            .and_then(|l| parse_log(l))
            .map(|l| l.msg)
            .unwrap_or_default();
        runs.push((startup, status.code(), shutdown, last));
    }
    let all_found: Vec<_> = (0..STARTUP.len()).map(|i| Ok((i, "INF".into()))).collect();
    assert_eq!(runs[0].0, all_found, "reference startup lines");
    assert_eq!(runs[0], runs[1], "reference vs natrix");
    assert_eq!(runs[1].1, Some(0));
    assert_eq!(runs[1].3, "Server Exiting..");
}

#[test]
fn log_file_replaces_stderr() {
    let dir = TempDir::new();
    let log = dir.path("natrix.log");
    let mut p = Proc::natrix(&["-a", "127.0.0.1", "-p", "-1", "-l", &log]);
    let deadline = Instant::now() + WAIT;
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready") {
            let line = text
                .lines()
                .find(|l| l.contains("Listening for client connections on "))
                .expect("listening line in the log file")
                .to_string();
            break addr_after(&line, "Listening for client connections on ");
        }
        assert!(Instant::now() < deadline, "log file: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    nats_info(addr);
    assert!(p.stop().success());
    assert_eq!(p.lines(), Vec::<String>::new(), "nothing on stderr");
    let text = std::fs::read_to_string(&log).unwrap();
    for l in text.lines() {
        assert!(parse_log(l).is_some(), "{l:?}");
    }
    assert!(text.contains("Trapped \"terminated\" signal"), "{text}");
    assert!(text.trim_end().ends_with("Server Exiting.."), "{text}");
}

#[test]
fn pid_file_written_and_removed() {
    let dir = TempDir::new();
    let pid_file = dir.path("natrix.pid");
    let mut p = Proc::natrix(&["-a", "127.0.0.1", "-p", "-1", "-P", &pid_file]);
    p.ready();
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        p.pid().to_string()
    );
    assert!(p.stop().success());
    assert!(!Path::new(&pid_file).exists(), "pid file removed on exit");
}

#[test]
fn ports_file_has_working_urls_as_reference() {
    let mut shapes = Vec::new();
    for (name, start) in [
        ("nats-server", Proc::reference as fn(&[&str]) -> Proc),
        ("natrix-broker", Proc::natrix),
    ] {
        let dir = TempDir::new();
        let ports_dir = dir.path("");
        let mut p = start(&[
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
            &ports_dir,
        ]);
        let addr = p.ready();
        let file = dir.0.join(format!("{name}_{}.ports", p.pid()));
        // nats-server may write it just after `Server is ready`.
        let deadline = Instant::now() + WAIT;
        while !file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| {
                let listing: Vec<_> = std::fs::read_dir(&dir.0)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
                panic!("{name}: {}: {e}; directory has {listing:?}", file.display())
            }))
            .expect("ports JSON");
        let mut keys: Vec<String> = ports.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        let nats = ports["nats"][0].as_str().expect("nats URL").to_string();
        let mon = ports["monitoring"][0]
            .as_str()
            .expect("monitoring URL")
            .to_string();
        assert_eq!(nats, format!("nats://{addr}"));
        let nats_addr: SocketAddr = nats.trim_start_matches("nats://").parse().unwrap();
        assert_eq!(nats_info(nats_addr)["port"], addr.port());
        let mon_addr: SocketAddr = mon.trim_start_matches("http://").parse().unwrap();
        let (status, _) = http_get(mon_addr, "/varz");
        assert!(status.contains(" 200 "), "{name}: {status}");
        assert!(p.stop().success());
        shapes.push((keys, file.exists()));
    }
    assert_eq!(
        shapes[0],
        (vec!["monitoring".to_string(), "nats".to_string()], false),
        "reference: keys, and the file is removed on exit"
    );
    assert_eq!(shapes[0], shapes[1], "reference vs natrix");
}

#[test]
fn config_file_options_reach_info() {
    let dir = TempDir::new();
    let conf = dir.file(
        "listen.conf",
        "listen: \"127.0.0.1:-1\"\nserver_name: srv_from_file\nmax_payload: 100\n",
    );
    let mut p = Proc::natrix(&["-c", &conf]);
    let addr = p.ready();
    assert!(p.wait_line("Using configuration file: ").contains(&conf));
    assert!(addr.ip().is_loopback());
    let info = nats_info(addr);
    assert_eq!(info["server_name"], "srv_from_file", "{info}");
    assert_eq!(info["max_payload"], 100, "{info}");
    assert_eq!(info["port"], addr.port(), "{info}");
    assert_eq!(info["host"], "127.0.0.1", "{info}");
    assert!(p.stop().success());
}

#[test]
fn flags_override_config_file() {
    // The file names a port that is taken: the server only starts if `-p` wins.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let conf = dir.file(
        "ports.conf",
        &format!("host: 127.0.0.1\nport: {taken_port}\nserver_name: from_file\n"),
    );
    let mut p = Proc::natrix(&["-c", &conf, "-p", "-1", "-n", "from_flag"]);
    let addr = p.ready();
    assert_ne!(addr.port(), taken_port);
    let info = nats_info(addr);
    assert_eq!(info["server_name"], "from_flag", "{info}");
    assert_eq!(info["port"], addr.port(), "{info}");
    assert!(p.stop().success());
    drop(taken);
}

#[test]
fn check_config_flag() {
    let dir = TempDir::new();
    let good = dir.file("good.conf", "port: -1\nserver_name: a\nmax_payload: 100\n");
    let bad = dir.file("bad.conf", "port: -1\nmax_payload: \n\n");
    let unknown = dir.file("unk.conf", "port: -1\nbogus_key: 1\n");
    let natrix = Path::new(NATRIX);

    let (status, _, err) = run_to_end(natrix, &["-t", "-c", &good]);
    assert!(status.success(), "{err}");
    assert!(
        err.contains("good.conf") && err.contains("is valid"),
        "{err}"
    );

    let (status, _, err) = run_to_end(natrix, &["-t", "-c", &bad]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("bad.conf:2"), "names file:line: {err}");

    // Unknown keys are errors, as in nats-server, and so are integer durations under -t.
    let deprecated = dir.file("dep.conf", "port: -1\nping_interval: 30\n");
    for (file, needle) in [
        (&unknown, "unk.conf:2:1: unknown field \"bogus_key\""),
        (
            &deprecated,
            "dep.conf:2:1: invalid use of field \"ping_interval\"",
        ),
    ] {
        let (status, _, err) = run_to_end(natrix, &["-t", "-c", file]);
        assert!(!status.success(), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!run_to_end(&common::nats_server_bin(), &["-t", "-c", file])
            .0
            .success());
    }

    let (status, _, err) = run_to_end(natrix, &["-t"]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("must specify [-c, --config]"), "{err}");

    // The reference agrees on the exit codes of the valid and the broken file.
    let reference = common::nats_server_bin();
    assert!(run_to_end(&reference, &["-t", "-c", &good]).0.success());
    assert!(!run_to_end(&reference, &["-t", "-c", &bad]).0.success());
}

#[test]
fn unknown_config_key_refuses_to_start_and_deprecated_forms_warn() {
    let dir = TempDir::new();
    let conf = dir.file("unk.conf", "listen: \"127.0.0.1:-1\"\nbogus_key: 1\n");
    let (status, _, err) = run_to_end(Path::new(NATRIX), &["-c", &conf]);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("unk.conf:2:1: unknown field \"bogus_key\""),
        "{err}"
    );
    // An integer duration starts, with nats-server's warning.
    let conf = dir.file("dep.conf", "listen: \"127.0.0.1:-1\"\nping_interval: 30\n");
    let mut p = Proc::natrix(&["-c", &conf]);
    let addr = p.ready();
    let warning = p.wait_line("ping_interval");
    let parsed = parse_log(&warning).expect("log line");
    assert_eq!(parsed.level, "WRN", "{warning}");
    assert!(parsed.msg.contains("dep.conf:2"), "{warning}");
    nats_info(addr);
    assert!(p.stop().success());
}

#[test]
fn unimplemented_config_keys_refuse_to_start() {
    let dir = TempDir::new();
    for (key, body) in [
        (
            "cluster",
            "listen: \"127.0.0.1:-1\"\ncluster { port: -1, pool_size: 3 }\n",
        ),
        (
            "jetstream",
            "listen: \"127.0.0.1:-1\"\njetstream { prev_key: old }\n",
        ),
    ] {
        let conf = dir.file(&format!("{key}.conf"), body);
        let (status, _, err) = run_to_end(Path::new(NATRIX), &["-c", &conf]);
        assert!(!status.success(), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(&format!("{key}.conf:2")), "{key}: {err}");
        assert!(!err.contains("Server is ready"), "{key}: {err}");
    }
}

#[test]
fn debug_lines_without_timestamps_match_reference() {
    let args = ["-a", "127.0.0.1", "-p", "-1", "-D", "-T=false"];
    let mut shapes = Vec::new();
    for mut p in [Proc::reference(&args), Proc::natrix(&args)] {
        let addr = p.ready();
        nats_info(addr);
        let created = p.wait_line("Client connection created");
        let parsed = parse_log(&created).expect("log line");
        assert_eq!(parsed.pid, p.pid());
        // `127.0.0.1:<port> - cid:<n> - Client connection created`, numbers masked.
        let mut masked = String::new();
        for c in parsed.msg.chars() {
            if !c.is_ascii_digit() {
                masked.push(c);
            } else if !masked.ends_with('N') {
                masked.push('N');
            }
        }
        let all_untimed = p
            .lines()
            .iter()
            .all(|l| parse_log(l).is_some_and(|l| !l.has_time));
        assert!(p.stop().success());
        shapes.push((parsed.level, masked, all_untimed));
    }
    assert_eq!(
        shapes[0],
        (
            "DBG".to_string(),
            "N.N.N.N:N - cid:N - Client connection created".to_string(),
            true
        ),
        "reference"
    );
    assert_eq!(shapes[0], shapes[1], "reference vs natrix");
}

#[test]
fn version_and_help() {
    let natrix = Path::new(NATRIX);
    let reference = common::nats_server_bin();
    for flag in ["-v", "--version"] {
        let (status, out, _) = run_to_end(natrix, &[flag]);
        assert!(status.success());
        let v = out.strip_prefix("natrix-broker: v").expect("version line");
        assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{out:?}");
    }
    let (status, out, _) = run_to_end(&reference, &["-v"]);
    assert!(
        status.success() && out.starts_with("nats-server: v"),
        "{out}"
    );

    // Both print the usage on stdout, exit 0, and document the flags harnesses use.
    for bin in [natrix, reference.as_path()] {
        let (status, out, _) = run_to_end(bin, &["-h"]);
        assert!(status.success(), "{}", bin.display());
        assert!(out.contains("Usage: "), "{out}");
        for flag in [
            "--addr",
            "--port",
            "--http_port",
            "--config",
            "--pid",
            "--log",
            "--ports_file_dir",
            "--logtime",
            "--debug",
            "--trace",
            "--help",
            "--version",
        ] {
            assert!(out.contains(flag), "{}: {flag} in\n{out}", bin.display());
        }
    }
}

#[test]
fn sigterm_and_sigint_stop_gracefully() {
    for (sig, name) in [("TERM", "terminated"), ("INT", "interrupt")] {
        let mut p = Proc::natrix(&["-a", "127.0.0.1", "-p", "-1", "-D"]);
        let addr = p.ready();
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        read_line(&mut client);
        client
            .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
            .unwrap();
        assert_eq!(read_line(&mut client), "PONG");
        p.signal(sig);
        let status = p.wait_exit();
        assert_eq!(status.code(), Some(0), "{sig}");
        let lines = p.lines();
        let msgs: Vec<String> = lines
            .iter()
            .filter_map(|l| parse_log(l))
            .map(|l| l.msg)
            .collect();
        let trapped = format!("Trapped \"{name}\" signal");
        let t = msgs.iter().position(|m| *m == trapped);
        let i = msgs.iter().position(|m| m == "Initiating Shutdown...");
        assert!(t.is_some() && t < i, "{sig}: {lines:#?}");
        assert_eq!(
            msgs.last().map(String::as_str),
            Some("Server Exiting.."),
            "{sig}"
        );
        // Open clients get EOF with no bytes, as from nats-server.
        let mut rest = Vec::new();
        let eof = client.read_to_end(&mut rest);
        assert!(eof.is_ok() && rest.is_empty(), "{sig}: {eof:?} {rest:?}");
    }
}

#[test]
fn passwd_prints_a_password_and_its_bcrypt_hash() {
    let (status, stdout, _) = run_to_end(Path::new(NATRIX), &["passwd"]);
    assert!(status.success());
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
            .trim()
            .to_string()
    };
    let (pass, hash) = (field("pass:"), field("bcrypt hash:"));
    assert!(pass.len() >= 16, "{pass}");
    assert!(hash.starts_with("$2"), "{hash}");
    assert!(
        bcrypt::verify(&pass, &hash).unwrap(),
        "hash matches the password"
    );
    // And the broker accepts the hash in a config file.
    let dir = std::env::temp_dir().join(format!("natrix-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("p.conf");
    std::fs::write(
        &conf,
        format!("authorization {{ user: a, password: \"{hash}\" }}\n"),
    )
    .unwrap();
    let (status, _, stderr) = run_to_end(Path::new(NATRIX), &["-t", "-c", conf.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{stderr}");
}

#[test]
fn clustered_jetstream_needs_server_and_cluster_names_as_reference() {
    let dir = TempDir::new();
    let store = dir.path("js");
    let no_server_name = dir.file(
        "a.conf",
        &format!(
            "listen: 127.0.0.1:-1\njetstream {{ store_dir: {store:?} }}\n\
             cluster {{ name: c1, listen: 127.0.0.1:-1 }}\n"
        ),
    );
    let no_cluster_name = dir.file(
        "b.conf",
        &format!(
            "listen: 127.0.0.1:-1\nserver_name: s1\njetstream {{ store_dir: {store:?} }}\n\
             cluster {{ listen: 127.0.0.1:-1 }}\n"
        ),
    );
    for (file, words) in [
        (
            &no_server_name,
            "jetstream cluster requires `server_name` to be set",
        ),
        (
            &no_cluster_name,
            "jetstream cluster requires `cluster.name` to be set",
        ),
    ] {
        for bin in [PathBuf::from(NATRIX), common::nats_server_bin()] {
            let (status, _, err) = run_to_end(&bin, &["-c", file]);
            assert!(!status.success(), "{} started: {err}", bin.display());
            assert!(err.contains(words), "{}: {err}", bin.display());
        }
    }
}

#[test]
fn jetstream_node_id_line_matches_reference() {
    // With JetStream the banner names the server's Raft peer id (nats-server's hash of its
    // name) between its name and its ID.
    let dir = TempDir::new();
    let mut seen = Vec::new();
    for (i, make) in [Proc::reference, Proc::natrix].into_iter().enumerate() {
        let store = dir.path(&format!("js{i}"));
        let args = [
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-js",
            "-sd",
            &store,
            "-n",
            "alpha",
        ];
        let mut p = make(&args);
        p.ready();
        let lines = p.lines();
        p.stop();
        // The name and node id as written; the ID only by its place (it is random).
        let banner: Vec<String> = lines
            .iter()
            .filter_map(|l| parse_log(l))
            .filter_map(|l| {
                let (k, v) = l.msg.trim_start().split_once(':')?;
                let k = k.to_string();
                match k.as_str() {
                    "Name" | "Node" => Some(format!("{k} {}", v.trim())),
                    "ID" => Some(k),
                    _ => None,
                }
            })
            .collect();
        seen.push(banner);
    }
    assert_eq!(
        seen[0],
        ["Name alpha", "Node IPyngTPY", "ID"],
        "reference banner"
    );
    assert_eq!(seen[0], seen[1], "reference vs natrix");
}
