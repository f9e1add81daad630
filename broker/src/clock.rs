//! The time now, and times, durations and seconds written the way nats-server's Go writes
//! them: the ground every layer formats its answers with.

use std::time::{Duration, SystemTime};

use serde::Serializer;

/// Unix time in nanoseconds.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Go's `time.Duration.String()` for a signed number of nanoseconds ("1.5ms", "2m0s", "0s").
pub fn go_duration(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        // Sub-second: pick the unit, print with trimmed fraction.
        let (unit, scale) = if u < 1_000 {
            ("ns", 1u128)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&fmt_frac(u / scale, u % scale, scale));
        out.push_str(unit);
        return out;
    }
    let secs = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let h = secs / 3600;
    let m = (secs / 60) % 60;
    let s = secs % 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fmt_frac(s, frac, 1_000_000_000));
    out.push('s');
    out
}

/// `int.frac` with the fraction's trailing zeros (and a bare dot) removed.
fn fmt_frac(int: u128, frac: u128, scale: u128) -> String {
    if frac == 0 || scale == 1 {
        return int.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let f = format!("{:0width$}", frac, width = digits);
    format!("{}.{}", int, f.trim_end_matches('0'))
}

/// nats-server's `myUptime`: whole seconds as `1y2d3h4m5s`, leading zero units dropped.
pub fn uptime(d: Duration) -> String {
    let tsecs = d.as_secs();
    let tmins = tsecs / 60;
    let thrs = tmins / 60;
    let tdays = thrs / 24;
    let tyrs = tdays / 365;
    if tyrs > 0 {
        format!(
            "{}y{}d{}h{}m{}s",
            tyrs,
            tdays % 365,
            thrs % 24,
            tmins % 60,
            tsecs % 60
        )
    } else if tdays > 0 {
        format!("{}d{}h{}m{}s", tdays, thrs % 24, tmins % 60, tsecs % 60)
    } else if thrs > 0 {
        format!("{}h{}m{}s", thrs, tmins % 60, tsecs % 60)
    } else if tmins > 0 {
        format!("{}m{}s", tmins, tsecs % 60)
    } else {
        format!("{}s", tsecs)
    }
}

/// `b - a`, or zero when `b` is earlier.
pub fn since(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// Unix nanoseconds to `SystemTime`.
pub fn from_unix_nanos(n: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

/// Unix nanoseconds of a `SystemTime` (for sorting).
pub fn nanos_of(t: SystemTime) -> i128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Go's `getRTT` truncation: microseconds between 1µs and 1ms.
pub fn rtt_string(rtt: i64) -> String {
    let rtt = if rtt > 1_000 && rtt < 1_000_000 {
        rtt - rtt % 1_000
    } else {
        rtt
    };
    go_duration(rtt as i128)
}

/// Serializes an `f64` as Go's `encoding/json` does: integral values without `.0`.
pub fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(200_894_281), "200.894281ms");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(120_000_000_000), "2m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-1_000_000), "-1ms");
    }

    #[test]
    fn uptime_like_nats() {
        assert_eq!(uptime(Duration::from_secs(0)), "0s");
        assert_eq!(uptime(Duration::from_secs(61)), "1m1s");
        assert_eq!(uptime(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(uptime(Duration::from_secs(86_400 + 3_723)), "1d1h2m3s");
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }

    #[test]
    fn rtt_truncated_to_microseconds_as_go() {
        assert_eq!(rtt_string(1_234_567), "1.234567ms");
        assert_eq!(rtt_string(123_456), "123µs");
        assert_eq!(rtt_string(999), "999ns");
    }
}
