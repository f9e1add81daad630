//! Process resource usage for `/varz` (`mem`, `cpu`), read from `/proc/self` as nats-server's
//! `pse` package does on Linux.

use std::time::Instant;

use parking_lot::Mutex;

/// Clock ticks per second for `/proc/self/stat` times (USER_HZ, 100 on every Linux we target).
const TICKS_PER_SEC: f64 = 100.0;

/// The last CPU sample: when, total CPU ticks then, and the percentage computed from it.
struct Sample {
    at: Instant,
    ticks: u64,
    pcpu: f64,
}

static LAST: Mutex<Option<Sample>> = Mutex::new(None);

/// Resident set size in bytes (0 if unavailable).
pub fn rss_bytes() -> i64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU ticks of this process.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Percent CPU (100 = one core) over the interval since the previous sample, refreshed at
/// most once a second like nats-server's periodic sampler.
pub fn pcpu() -> f64 {
    let Some(ticks) = cpu_ticks() else {
        return 0.0;
    };
    let now = Instant::now();
    let mut last = LAST.lock();
    match &mut *last {
        None => {
            *last = Some(Sample {
                at: now,
                ticks,
                pcpu: 0.0,
            });
            0.0
        }
        Some(s) => {
            let dt = now.duration_since(s.at).as_secs_f64();
            if dt >= 1.0 {
                let used = ticks.saturating_sub(s.ticks) as f64 / TICKS_PER_SEC;
                // One decimal, as nats-server rounds its sample.
                s.pcpu = (used / dt * 1000.0).round() / 10.0;
                s.at = now;
                s.ticks = ticks;
            }
            s.pcpu
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_proc() {
        assert!(super::rss_bytes() > 0);
        assert!(super::pcpu() >= 0.0);
    }
}
