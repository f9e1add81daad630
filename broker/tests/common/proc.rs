//! Broker processes for tests: the natrix-broker binary or the reference nats-server as a
//! child process with its stderr collected line by line, killed when the guard drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The natrix-broker binary Cargo built for this test crate.
pub const NATRIX: &str = env!("CARGO_BIN_EXE_natrix-broker");

/// Upper bound for anything the tests wait for (start, a log line, an exit).
pub const WAIT: Duration = Duration::from_secs(10);

/// The lines a child has written to stderr so far, with a condvar to wait on.
type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A server process; killed (if still running) on drop.
pub struct Proc {
    child: Child,
    lines: Lines,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Spawns `bin args`, collecting stderr line by line; stdout is discarded.
    pub fn spawn(bin: &Path, args: &[&str]) -> Proc {
        Proc::spawn_env(bin, args, &[])
    }

    /// [`Proc::spawn`] with extra environment variables.
    pub fn spawn_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr piped");
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (v, cv) = &*sink;
                v.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Proc {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The natrix-broker binary with `args`.
    pub fn natrix(args: &[&str]) -> Proc {
        Proc::spawn(Path::new(NATRIX), args)
    }

    /// The natrix-broker binary with `args` and extra environment variables.
    pub fn natrix_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_env(Path::new(NATRIX), args, env)
    }

    /// The reference nats-server with `args`.
    pub fn reference(args: &[&str]) -> Proc {
        Proc::spawn(&super::nats_server_bin(), args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`WAIT`]) for a stderr line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        let (v, cv) = &*self.lines;
        let deadline = Instant::now() + WAIT;
        let mut lines = v.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no stderr line with {needle:?}; got:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// All stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Waits for `Server is ready` and returns the client address from the listening line.
    pub fn ready(&self) -> SocketAddr {
        self.wait_line("Server is ready");
        addr_after(
            &self.wait_line("Listening for client connections on "),
            "Listening for client connections on ",
        )
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        kill(sig, self.pid());
    }

    /// Waits (up to [`WAIT`]) for the process to exit and for its stderr to be fully read.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; stderr:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends signal `sig` (by name: `TERM`, `USR2`, `KILL`) to `pid` with the `kill` command.
pub fn kill(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Starts the reference nats-server or natrix-broker with JetStream storing under `store_dir`
/// on an ephemeral 127.0.0.1 port; returns the process and its client URL.
pub fn jetstream(reference: bool, store_dir: &Path) -> (Proc, String) {
    let sd = store_dir.display().to_string();
    let args = ["-js", "-sd", &sd, "-a", "127.0.0.1", "-p", "-1"];
    let p = if reference {
        Proc::reference(&args)
    } else {
        Proc::natrix(&args)
    };
    let addr = p.ready();
    (p, format!("nats://{addr}"))
}

/// The `host:port` after `prefix` in a log line.
pub fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    let rest = line.split(prefix).nth(1).expect("prefix in line");
    let rest = rest.trim().trim_start_matches("http://");
    rest.parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}
