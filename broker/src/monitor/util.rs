//! Formatting and argument decoding that mimic Go (nats-server) byte for byte.

use std::time::{Duration, SystemTime};

use serde::Serializer;

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
pub fn unix_nanos(t: SystemTime) -> i128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Serializes an `f64` as Go's `encoding/json` does: integral values without `.0`.
pub fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Applies Go's HTML-safe JSON escaping (`<`, `>`, `&`, U+2028, U+2029) to serialized JSON.
///
/// These characters can only occur inside JSON strings, so a plain replace is exact.
pub fn go_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for ch in json.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `strconv.Quote` for the error messages (ASCII-printable fast path, escapes otherwise).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The query string as nats-server reads it: `Get(name)` is the first value or "".
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// `decodeBool`: empty is false; otherwise Go's `strconv.ParseBool` or a 400 message.
    pub fn bool(&self, name: &str) -> Result<bool, String> {
        let v = self.get(name);
        match v {
            "" => Ok(false),
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(format!(
                "Error decoding boolean for '{}': strconv.ParseBool: parsing {}: invalid syntax",
                name,
                go_quote(v)
            )),
        }
    }

    /// `decodeInt`: empty is 0; otherwise Go's `strconv.Atoi` or a 400 message.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        let v = self.get(name);
        if v.is_empty() {
            return Ok(0);
        }
        match v.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(e) => Err(format!(
                "Error decoding int for '{}': strconv.Atoi: parsing {}: {}",
                name,
                go_quote(v),
                num_err(&e)
            )),
        }
    }

    /// `decodeUint64`: empty is 0; otherwise Go's `strconv.ParseUint` or a 400 message.
    pub fn uint(&self, name: &str) -> Result<u64, String> {
        let v = self.get(name);
        if v.is_empty() {
            return Ok(0);
        }
        let parsed = if v.starts_with('+') {
            None
        } else {
            v.parse::<u64>().ok()
        };
        match parsed {
            Some(n) => Ok(n),
            None => {
                let why = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                Err(format!(
                    "Error decoding uint64 for '{}': strconv.ParseUint: parsing {}: {}",
                    name,
                    go_quote(v),
                    why
                ))
            }
        }
    }
}

fn num_err(e: &std::num::ParseIntError) -> &'static str {
    use std::num::IntErrorKind::*;
    match e.kind() {
        PosOverflow | NegOverflow => "value out of range",
        _ => "invalid syntax",
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
    fn params_errors_like_go() {
        let p = Params(vec![
            ("subs".into(), "foo".into()),
            ("limit".into(), "abc".into()),
            ("cid".into(), "-1".into()),
            ("offset".into(), "99999999999999999999".into()),
        ]);
        assert_eq!(
            p.bool("subs").unwrap_err(),
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"foo\": invalid syntax"
        );
        assert_eq!(
            p.int("limit").unwrap_err(),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            p.uint("cid").unwrap_err(),
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert!(p.int("offset").unwrap_err().ends_with("value out of range"));
        assert_eq!(p.int("missing"), Ok(0));
        assert_eq!(p.bool("missing"), Ok(false));
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            go_escape("\"a>b<c&\"".into()),
            "\"a\\u003eb\\u003cc\\u0026\""
        );
    }
}
