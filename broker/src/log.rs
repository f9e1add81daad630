//! Logging in nats-server's line format: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

/// Whether lines carry a timestamp (`logtime`); changed by a config reload.
static LOGTIME: AtomicBool = AtomicBool::new(true);

/// Formats events as nats-server's logger does.
pub struct NatsFormat {
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "[{}] ", self.pid)?;
        if LOGTIME.load(Ordering::Relaxed) {
            write!(w, "{} ", timestamp(SystemTime::now()))?;
        }
        let lvl = match *event.metadata().level() {
            Level::ERROR => "[ERR]",
            Level::WARN => "[WRN]",
            Level::INFO => "[INF]",
            Level::DEBUG => "[DBG]",
            Level::TRACE => "[TRC]",
        };
        write!(w, "{lvl} ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// `2006/01/02 15:04:05.000000` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}",
        y,
        m,
        day,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// RFC 3339 with nanoseconds in UTC, as Go's `time.Time` marshals to JSON.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        m,
        day,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{:09}", nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The log file (path and handle) when logging to a file; stderr otherwise. Switched by a
/// config reload and reopened by SIGUSR1.
static LOG_FILE: Mutex<Option<(PathBuf, std::fs::File)>> = Mutex::new(None);

/// The reloadable level filter of the installed logger.
static LEVEL: std::sync::OnceLock<reload::Handle<LevelFilter, Registry>> =
    std::sync::OnceLock::new();

/// A `MakeWriter` writing to the log file, or stderr when there is none.
#[derive(Clone, Copy)]
pub struct SinkWriter;

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *LOG_FILE.lock() {
            Some((_, f)) => f.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *LOG_FILE.lock() {
            Some((_, f)) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = SinkWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

fn open_append(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
}

/// The level `-D`/`-V` select.
fn level_for(debug: bool, trace: bool) -> LevelFilter {
    if trace {
        LevelFilter::TRACE
    } else if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    }
}

/// Installs the global logger; `debug`/`trace` raise the level as `-D`/`-V` do.
pub fn init(debug: bool, trace: bool, logtime: bool, file: Option<&Path>) -> std::io::Result<()> {
    set_file(file)?;
    LOGTIME.store(logtime, Ordering::Relaxed);
    let (filter, handle) = reload::Layer::new(level_for(debug, trace));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(SinkWriter)
        .event_format(NatsFormat {
            pid: std::process::id(),
        });
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set(handle);
    }
    Ok(())
}

/// Applies reloaded logging options: level, timestamps and the log file (`None`: stderr).
pub fn reconfigure(
    debug: bool,
    trace: bool,
    logtime: bool,
    file: Option<&Path>,
) -> std::io::Result<()> {
    let same_file = LOG_FILE.lock().as_ref().map(|(p, _)| p.as_path()) == file;
    if !same_file {
        set_file(file)?;
    }
    LOGTIME.store(logtime, Ordering::Relaxed);
    if let Some(h) = LEVEL.get() {
        let _ = h.modify(|f| *f = level_for(debug, trace));
    }
    Ok(())
}

/// Sends log lines to `file` (appending), or to stderr.
fn set_file(file: Option<&Path>) -> std::io::Result<()> {
    let new = match file {
        Some(p) => Some((p.to_path_buf(), open_append(p)?)),
        None => None,
    };
    *LOG_FILE.lock() = new;
    Ok(())
}

/// Reopens the log file by its path (SIGUSR1, for log rotation) and logs nats-server's line:
/// `File log re-opened`, or `File log re-open ignored, not a file logger` when logging to stderr.
pub fn reopen() -> std::io::Result<()> {
    let Some(path) = LOG_FILE.lock().as_ref().map(|(p, _)| p.clone()) else {
        tracing::info!("File log re-open ignored, not a file logger");
        return Ok(());
    };
    let new = open_append(&path)?;
    if let Some((_, f)) = &mut *LOG_FILE.lock() {
        *f = new;
    }
    tracing::info!("File log re-opened");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(timestamp(t), "2023/11/14 22:13:20.123456");
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
