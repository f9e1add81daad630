//! Message schedule patterns (`Nats-Schedule`): `@at <RFC 3339>`, `@every <duration>`,
//! six-field cron (seconds first) and its predefined names, and when each fires next; cron
//! runs on the wall clock of `Nats-Schedule-Time-Zone` (the system's tz database), else UTC.
/// A parsed `Nats-Schedule` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Once, at Unix nanoseconds.
    At(i64),
    /// Repeatedly, this many nanoseconds apart.
    Every(i64),
    /// A six-field cron expression.
    Cron(Box<Cron>),
}

/// Why a schedule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// Not a pattern nats-server accepts (10189).
    Invalid,
    /// A time zone name that is not in the tz database (10223).
    BadZone,
}

/// Parses `pattern` with the schedule's time zone header (empty when absent).
pub fn parse(pattern: &str, zone: &str) -> Result<Pattern, PatternError> {
    if let Some(at) = pattern.strip_prefix("@at ") {
        if !zone.is_empty() {
            return Err(PatternError::Invalid);
        }
        return super::time::parse_rfc3339(at.trim())
            .map(Pattern::At)
            .ok_or(PatternError::Invalid);
    }
    if let Some(every) = pattern.strip_prefix("@every ") {
        if !zone.is_empty() {
            return Err(PatternError::Invalid);
        }
        let d = crate::config::duration::parse_go_duration(every.trim())
            .map_err(|_| PatternError::Invalid)?;
        if d < 1_000_000_000 {
            return Err(PatternError::Invalid);
        }
        return Ok(Pattern::Every(i64::try_from(d).unwrap_or(i64::MAX)));
    }
    let expr = match pattern {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        p => p,
    };
    let mut cron = Cron::parse(expr).ok_or(PatternError::Invalid)?;
    if !(zone.is_empty() || zone == "UTC") {
        cron.zone = Some(std::sync::Arc::new(
            Zone::load(zone).ok_or(PatternError::BadZone)?,
        ));
    }
    Ok(Pattern::Cron(Box::new(cron)))
}

/// A time zone from the tz database: UTC offsets and the instants they change at.
#[derive(Debug, PartialEq)]
pub struct Zone {
    /// Transition instants (Unix seconds), ascending.
    at: Vec<i64>,
    /// The offset (seconds east of UTC) from each transition on.
    offset: Vec<i32>,
    /// Before the first transition.
    initial: i32,
}

impl Zone {
    /// Reads `name` (e.g. `Europe/Amsterdam`) from `$ZONEINFO` or the system's zoneinfo.
    pub fn load(name: &str) -> Option<Zone> {
        let safe = !name.starts_with('/')
            && !name.split('/').any(|p| p == ".." || p.is_empty())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
        if !safe {
            return None;
        }
        let dirs = std::env::var("ZONEINFO").into_iter().chain([
            "/usr/share/zoneinfo".to_string(),
            "/usr/lib/zoneinfo".to_string(),
        ]);
        for dir in dirs {
            if let Ok(b) = std::fs::read(std::path::Path::new(&dir).join(name)) {
                return Zone::parse(&b);
            }
        }
        None
    }

    /// A TZif file (RFC 8536): the 64-bit block of version 2+, else the 32-bit one.
    fn parse(b: &[u8]) -> Option<Zone> {
        fn counts(b: &[u8]) -> Option<[usize; 6]> {
            if b.get(..4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                let o = 20 + 4 * i;
                *v = u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize;
            }
            Some(c)
        }
        fn block_len(c: &[usize; 6], tw: usize) -> usize {
            let [isut, isstd, leap, time, typ, chr] = *c;
            time * tw + time + typ * 6 + chr + leap * (tw + 4) + isstd + isut
        }
        let c1 = counts(b)?;
        let (data, c, tw) = if *b.get(4)? >= b'2' {
            let second = 44 + block_len(&c1, 4);
            let c2 = counts(b.get(second..)?)?;
            (b.get(second + 44..)?, c2, 8)
        } else {
            (b.get(44..)?, c1, 4)
        };
        let [_, _, _, time, typ, _] = c;
        let mut at = Vec::with_capacity(time);
        for i in 0..time {
            let t = data.get(i * tw..(i + 1) * tw)?;
            at.push(if tw == 8 {
                i64::from_be_bytes(t.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(t.try_into().ok()?))
            });
        }
        let idx = data.get(time * tw..time * tw + time)?;
        let types = data.get(time * tw + time..time * tw + time + typ * 6)?;
        let utoff = |i: usize| -> Option<(i32, bool)> {
            let t = types.get(i * 6..i * 6 + 6)?;
            Some((i32::from_be_bytes(t[..4].try_into().ok()?), t[4] != 0))
        };
        let offset = idx
            .iter()
            .map(|&i| utoff(i as usize).map(|(o, _)| o))
            .collect::<Option<Vec<i32>>>()?;
        // Before the first transition: the first standard-time type (RFC 8536 3.2).
        let initial = (0..typ)
            .filter_map(utoff)
            .find(|(_, dst)| !dst)
            .or_else(|| utoff(0))?
            .0;
        Some(Zone {
            at,
            offset,
            initial,
        })
    }

    /// The UTC offset (seconds) in force at Unix second `t`; after the last transition the
    /// last offset stays (the tz database's files run to 2037).
    pub fn offset_at(&self, t: i64) -> i32 {
        match self.at.partition_point(|&a| a <= t) {
            0 => self.initial,
            i => self.offset[i - 1],
        }
    }
}

impl Pattern {
    /// The first firing at or after `from` (Unix nanoseconds) for a schedule stored at
    /// `from`; `None` when it never fires.
    pub fn first(&self, from: i64) -> Option<i64> {
        match self {
            Pattern::At(t) => Some(*t),
            Pattern::Every(d) => Some(from.saturating_add(*d)),
            Pattern::Cron(c) => c.next_after(from),
        }
    }

    /// `Nats-Schedule-Next` for a firing at `ns`: a zoned cron writes its own wall clock.
    pub fn format_next(&self, ns: i64) -> String {
        match self {
            Pattern::Cron(c) => match &c.zone {
                Some(z) => format_at(ns, z.offset_at(ns.div_euclid(1_000_000_000))),
                None => format_next(ns),
            },
            _ => format_next(ns),
        }
    }

    /// The firing after one at `fired` (done at `now`); `None` for a one-shot.
    pub fn after(&self, fired: i64, now: i64) -> Option<i64> {
        match self {
            Pattern::At(_) => None,
            // Late by more than an interval (a restart): the interval starts again from now.
            Pattern::Every(d) => {
                let n = fired.saturating_add(*d);
                Some(if n > now { n } else { now.saturating_add(*d) })
            }
            Pattern::Cron(c) => c.next_after(fired.max(now)),
        }
    }
}

/// A cron expression as bit sets per field.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    sec: u64,
    min: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day of month or of week given as `*`/`?`: then both must match, else either.
    dom_star: bool,
    dow_star: bool,
    /// The wall clock the fields are read on; UTC when `None`.
    zone: Option<std::sync::Arc<Zone>>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Six fields: seconds, minutes, hours, day of month, month, day of week.
    pub fn parse(expr: &str) -> Option<Cron> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 6 {
            return None;
        }
        Some(Cron {
            sec: field(f[0], 0, 59, &[])?,
            min: field(f[1], 0, 59, &[])?,
            hour: field(f[2], 0, 23, &[])?,
            dom: field(f[3], 1, 31, &[])?,
            month: field(f[4], 1, 12, &MONTHS)?,
            dow: field(f[5], 0, 6, &DAYS)?,
            dom_star: matches!(f[3], "*" | "?"),
            dow_star: matches!(f[5], "*" | "?"),
            zone: None,
        })
    }

    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let d = self.dom & (1 << dom) != 0;
        let w = self.dow & (1 << dow) != 0;
        if self.dom_star || self.dow_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first whole second strictly after `t` (Unix nanoseconds) whose wall-clock time
    /// in the zone matches, within five years. A wall time skipped by a clock change never
    /// matches; one repeated matches the first time.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let utc = t.div_euclid(1_000_000_000);
        let Some(zone) = &self.zone else {
            return self.next_wall_after(utc).map(|s| s * 1_000_000_000);
        };
        let mut wall = utc + i64::from(zone.offset_at(utc));
        for _ in 0..10_000 {
            let w = self.next_wall_after(wall)?;
            // The instants that show wall time `w`: try the offsets around it.
            let candidates = [
                w - i64::from(zone.offset_at(w - 86_400)),
                w - i64::from(zone.offset_at(w + 86_400)),
            ];
            let found = candidates
                .iter()
                .copied()
                .filter(|&u| u > utc && u + i64::from(zone.offset_at(u)) == w)
                .min();
            if let Some(u) = found {
                return Some(u * 1_000_000_000);
            }
            wall = w;
        }
        None
    }

    /// The first second strictly after `s` (seconds, read as a UTC wall clock) that matches.
    fn next_wall_after(&self, s: i64) -> Option<i64> {
        let mut s = s + 1;
        let limit = s + 5 * 366 * 86_400;
        while s < limit {
            let days = s.div_euclid(86_400);
            let secs = s.rem_euclid(86_400);
            let (_, m, d) = civil_from_days(days);
            if self.month & (1 << m) == 0 {
                // To the first day of the next month.
                let (y, m, _) = civil_from_days(days);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                s = days_from_civil(ny, nm, 1) * 86_400;
                continue;
            }
            let dow = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if !self.day_matches(d, dow) {
                s = (days + 1) * 86_400;
                continue;
            }
            let (h, mi, sec) = (
                (secs / 3600) as u32,
                (secs / 60 % 60) as u32,
                (secs % 60) as u32,
            );
            if self.hour & (1 << h) == 0 {
                s = days * 86_400 + (i64::from(h) + 1) * 3600;
                continue;
            }
            if self.min & (1 << mi) == 0 {
                s = days * 86_400 + i64::from(h) * 3600 + (i64::from(mi) + 1) * 60;
                continue;
            }
            if self.sec & (1 << sec) == 0 {
                s += 1;
                continue;
            }
            return Some(s);
        }
        None
    }
}

/// One cron field as a bit set: `*`, `?`, numbers or names, ranges, steps and lists.
fn field(spec: &str, lo: u32, hi: u32, names: &[&str]) -> Option<u64> {
    let value = |v: &str| -> Option<u32> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            // Month names count from 1, day names from 0.
            return Some(i as u32 + lo);
        }
        v.parse().ok()
    };
    let mut bits = 0u64;
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `a/step` runs to the end of the field.
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return None;
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Some(bits)
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix nanoseconds as nats-server writes `Nats-Schedule-Next` (RFC 3339, whole seconds, UTC).
pub fn format_next(ns: i64) -> String {
    format_at(ns, 0)
}

/// RFC 3339 in whole seconds on the wall clock `offset` seconds east of UTC (`Z` for 0, as
/// Go writes it).
fn format_at(ns: i64, offset: i32) -> String {
    let s = ns.div_euclid(1_000_000_000) + i64::from(offset);
    let (y, m, d) = civil_from_days(s.div_euclid(86_400));
    let t = s.rem_euclid(86_400);
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.unsigned_abs();
        format!("{sign}{:02}:{:02}", o / 3600, o / 60 % 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        super::super::time::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn parses_what_nats_server_accepts() {
        assert!(matches!(
            parse("@at 2020-01-01T00:00:00Z", ""),
            Ok(Pattern::At(_))
        ));
        assert_eq!(parse("@every 2s", ""), Ok(Pattern::Every(2_000_000_000)));
        assert!(matches!(parse("@hourly", ""), Ok(Pattern::Cron(_))));
        assert!(matches!(
            parse("*/5 * * * jan-mar mon-fri", "UTC"),
            Ok(Pattern::Cron(_))
        ));
        for bad in [
            "@sometime",
            "@every 500ms",
            "* * * * *",
            "61 * * * * *",
            "@at nope",
        ] {
            assert_eq!(parse(bad, ""), Err(PatternError::Invalid), "{bad}");
        }
        assert_eq!(parse("@every 1s", "UTC"), Err(PatternError::Invalid));
        assert_eq!(
            parse("0 0 * * * *", "Mars/Base"),
            Err(PatternError::BadZone)
        );
    }

    #[test]
    fn cron_finds_the_next_second() {
        let c = Cron::parse("30 15 10 * * *").unwrap();
        let t = at("2026-01-01T10:15:30Z");
        assert_eq!(c.next_after(t - 1), Some(t));
        assert_eq!(c.next_after(t), Some(t + 86_400 * 1_000_000_000));
        // Both day fields restricted: either matches (Feb 1 2026 is a Sunday).
        let c = Cron::parse("0 0 0 1 * 3").unwrap();
        let n = c.next_after(at("2026-01-29T00:00:00Z")).unwrap();
        assert_eq!(format_next(n), "2026-02-01T00:00:00Z");
        let c = Cron::parse("0 0 0 29 feb *").unwrap();
        let n = c.next_after(at("2026-03-01T00:00:00Z")).unwrap();
        assert_eq!(format_next(n), "2028-02-29T00:00:00Z");
        assert_eq!(Cron::parse("0 0 0 31 feb *").unwrap().next_after(0), None);
    }

    #[test]
    fn every_keeps_its_interval_and_skips_missed_runs() {
        let p = Pattern::Every(10);
        assert_eq!(p.first(100), Some(110));
        assert_eq!(p.after(110, 111), Some(120));
        // Late by more than an interval: the interval starts again from now.
        assert_eq!(p.after(110, 1000), Some(1010));
    }

    /// A TZif file shaped like the tz database's: +1 h, then +2 h from 2026-03-29T01:00Z to
    /// 2026-10-25T01:00Z (Europe/Amsterdam's 2026).
    fn amsterdam_2026() -> Vec<u8> {
        let times = [
            at("2026-03-29T01:00:00Z") / 1_000_000_000,
            at("2026-10-25T01:00:00Z") / 1_000_000_000,
        ];
        let block = |tw: usize| {
            let mut b = b"TZif2".to_vec();
            b.extend([0u8; 15]);
            for c in [0u32, 0, 0, 2, 2, 9] {
                b.extend(c.to_be_bytes());
            }
            for t in times {
                if tw == 8 {
                    b.extend(t.to_be_bytes());
                } else {
                    b.extend((t as i32).to_be_bytes());
                }
            }
            b.extend([0u8, 1]);
            b.extend(7200i32.to_be_bytes());
            b.extend([1u8, 4]);
            b.extend(3600i32.to_be_bytes());
            b.extend([0u8, 0]);
            b.extend(b"CET\0CEST\0");
            b
        };
        let mut f = block(4);
        f.extend(block(8));
        f.extend(b"\nCET-1CEST,M3.5.0,M10.5.0/3\n");
        f
    }

    #[test]
    fn cron_runs_on_the_zone_wall_clock() {
        let zone = || std::sync::Arc::new(Zone::parse(&amsterdam_2026()).unwrap());
        let z = zone();
        assert_eq!(
            z.offset_at(at("2026-01-01T00:00:00Z") / 1_000_000_000),
            3600
        );
        assert_eq!(
            z.offset_at(at("2026-07-01T00:00:00Z") / 1_000_000_000),
            7200
        );
        assert_eq!(
            z.offset_at(at("2026-12-01T00:00:00Z") / 1_000_000_000),
            3600
        );
        let mut c = Cron::parse("0 30 9 * * *").unwrap();
        c.zone = Some(zone());
        // 09:30 in Amsterdam is 08:30Z in winter and 07:30Z in summer.
        let n = c.next_after(at("2026-01-10T12:00:00Z")).unwrap();
        assert_eq!(format_next(n), "2026-01-11T08:30:00Z");
        let n = c.next_after(at("2026-07-10T12:00:00Z")).unwrap();
        assert_eq!(format_next(n), "2026-07-11T07:30:00Z");
        // 02:30 does not exist on 2026-03-29: the clocks jump from 02:00 to 03:00.
        let mut c = Cron::parse("0 30 2 * * *").unwrap();
        c.zone = Some(zone());
        let n = c.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(format_next(n), "2026-03-30T00:30:00Z");
    }

    #[test]
    fn the_system_tz_database_is_read_when_present() {
        // Skipped quietly where the machine has no tz database.
        if let Some(z) = Zone::load("America/New_York") {
            assert_eq!(
                z.offset_at(at("2026-01-15T12:00:00Z") / 1_000_000_000),
                -5 * 3600
            );
            assert_eq!(
                z.offset_at(at("2026-07-15T12:00:00Z") / 1_000_000_000),
                -4 * 3600
            );
        }
    }
}
