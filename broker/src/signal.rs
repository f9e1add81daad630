//! `-sl/--signal <command>[=<pid>|=<pid file>|=<pid prefix>*]`: sends a signal to a running
//! broker and exits, as nats-server's `ProcessSignal`. Signals are sent with the system's `kill`
//! command, so the crate needs no libc binding.

use std::path::Path;
use std::process::Command;

/// nats-server's command names and the signals they send.
const COMMANDS: &[(&str, &str)] = &[
    ("stop", "KILL"),
    ("quit", "INT"),
    ("reopen", "USR1"),
    ("reload", "HUP"),
    ("ldm", "USR2"),
    ("term", "TERM"),
];

/// The signal (name for `kill -s`) a `--signal` command sends.
pub fn command_signal(command: &str) -> Result<&'static str, String> {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("unknown signal {command:?}"))
}

/// Runs `--signal <arg>`: resolves the target processes and signals them. The error text is
/// nats-server's (the caller prints it after `<program>: `).
pub fn process_signal(arg: &str) -> Result<(), String> {
    let parts: Vec<&str> = arg.split('=').collect();
    if parts.len() > 2 {
        return Err(format!(
            "invalid signal parameters: [{}]",
            parts[2..].join(" ")
        ));
    }
    let command = parts[0];
    let target = parts.get(1).copied().unwrap_or("");
    let pids = match pid_file_glob(target) {
        Some(files) => pids_from_files(&files)?,
        None => {
            let pid_expr = maybe_read_pid_file(target);
            resolve_targets(&pid_expr, &running_brokers())?
        }
    };
    let signal = command_signal(command)?;
    let mut err = String::new();
    for pid in pids {
        if let Err(e) = kill(pid, signal) {
            err.push_str(&format!("\nsignal {command:?} {pid}: {e}"));
        }
    }
    if err.is_empty() {
        Ok(())
    } else {
        Err(err)
    }
}

/// nats-server's `maybeReadPidFile`: the content of the file if `s` names a readable one
/// (trimmed: pid files written by other tools often end in a newline), else `s`.
fn maybe_read_pid_file(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    match std::fs::read_to_string(s) {
        Ok(c) => c.trim().to_string(),
        Err(_) => s.to_string(),
    }
}

/// nats-server's target rules: a pid; empty for the only running broker; `<prefix>*` for every
/// running broker whose pid starts with the prefix.
fn resolve_targets(pid_expr: &str, running: &[u32]) -> Result<Vec<u32>, String> {
    let is_glob = pid_expr.ends_with('*');
    let pid_str = pid_expr.trim_end_matches('*');
    if !pid_str.is_empty() && pid_str.parse::<u32>().is_err() {
        return Err(format!("invalid pid: {pid_str}"));
    }
    if !pid_str.is_empty() && !is_glob {
        return Ok(vec![pid_str.parse().expect("checked")]);
    }
    let name = process_name();
    if running.len() > 1 && !is_glob {
        let mut e = format!("multiple {name} processes running:");
        for p in running {
            e.push_str(&format!("\n{p}"));
        }
        return Err(e);
    }
    let pids: Vec<u32> = running
        .iter()
        .copied()
        .filter(|p| p.to_string().starts_with(pid_str))
        .collect();
    if pids.is_empty() {
        return Err(format!("no {name} processes running"));
    }
    Ok(pids)
}

/// Ours: `<dir>/<pattern with *>` that is not a pid prefix names pid files
/// (e.g. `/var/run/nats/*.pid`); `None` when `s` is no such pattern.
fn pid_file_glob(s: &str) -> Option<Vec<std::path::PathBuf>> {
    if !s.contains('*') || s.trim_end_matches('*').chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let path = Path::new(s);
    let pattern = path.file_name()?.to_str()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => ".".into(),
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(pattern, n)))
        .map(|e| e.path())
        .collect();
    files.sort();
    Some(files)
}

/// The pids in the given pid files.
fn pids_from_files(files: &[std::path::PathBuf]) -> Result<Vec<u32>, String> {
    if files.is_empty() {
        return Err(format!("no {} processes running", process_name()));
    }
    files
        .iter()
        .map(|f| {
            let c = std::fs::read_to_string(f).unwrap_or_default();
            c.trim()
                .parse()
                .map_err(|_| format!("invalid pid: {}", c.trim()))
        })
        .collect()
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// This program's process name (`/proc/self/comm`), the name other brokers run under.
fn process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "natrix-broker".into())
}

/// Pids of the other processes with our process name, as nats-server's `pgrep`.
fn running_brokers() -> Vec<u32> {
    let name = process_name();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` to `pid` with `kill -s`.
fn kill(pid: u32, signal: &str) -> Result<(), String> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err("no such process".into());
    }
    let out = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if msg.is_empty() {
            format!("kill exited with {}", out.status)
        } else {
            msg
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_nats_server_signals() {
        assert_eq!(command_signal("stop"), Ok("KILL"));
        assert_eq!(command_signal("quit"), Ok("INT"));
        assert_eq!(command_signal("reopen"), Ok("USR1"));
        assert_eq!(command_signal("reload"), Ok("HUP"));
        assert_eq!(command_signal("ldm"), Ok("USR2"));
        assert_eq!(command_signal("term"), Ok("TERM"));
        assert_eq!(
            command_signal("bogus"),
            Err("unknown signal \"bogus\"".into())
        );
    }

    #[test]
    fn targets() {
        assert_eq!(resolve_targets("42", &[]), Ok(vec![42]));
        assert_eq!(resolve_targets("", &[7]), Ok(vec![7]));
        assert_eq!(resolve_targets("abc", &[7]), Err("invalid pid: abc".into()));
        let name = process_name();
        assert_eq!(
            resolve_targets("", &[]),
            Err(format!("no {name} processes running"))
        );
        assert_eq!(
            resolve_targets("", &[7, 8]),
            Err(format!("multiple {name} processes running:\n7\n8"))
        );
        assert_eq!(resolve_targets("1*", &[12, 13, 21]), Ok(vec![12, 13]));
        assert_eq!(resolve_targets("*", &[12, 21]), Ok(vec![12, 21]));
    }

    #[test]
    fn bad_parameters() {
        assert_eq!(
            process_signal("ldm=1=2"),
            Err("invalid signal parameters: [2]".into())
        );
        assert_eq!(
            process_signal("ldm=notapid"),
            Err("invalid pid: notapid".into())
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.pid", "nats.pid"));
        assert!(wildcard("n*s*.pid", "nats-0.pid"));
        assert!(!wildcard("*.pid", "nats.ports"));
        assert!(wildcard("a*", "a"));
        assert!(!wildcard("ab*b", "ab"));
        assert!(pid_file_glob("12*").is_none());
        assert!(pid_file_glob("/x/y.pid").is_none());
    }
}
