//! `prof_port`: CPU profiles over HTTP at `/debug/pprof/profile?seconds=N`, in the pprof
//! protobuf format `go tool pprof` and `pprof` read, as nats-server's profiling port serves.
//! Samples come from the `pprof` crate's SIGPROF sampler; the profile message is encoded
//! here (a few fields of `profile.proto`) rather than pulling in a protobuf code generator.
//! There is no heap profile: the system allocator keeps no allocation records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::server::Server;

/// Sampling frequency (Hz); Go's default is 100, 99 avoids lock-step with periodic work.
const FREQUENCY: i32 = 99;
/// Go's default profile length.
const DEFAULT_SECONDS: u64 = 30;
/// Upper bound on one profile, so a request cannot pin the sampler for hours.
const MAX_SECONDS: u64 = 600;

/// One profile at a time: the sampler is process-wide.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Serves the profiling endpoints on `listener` until the server shuts down.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let app = Router::new()
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof", get(index))
        .route("/debug/pprof/profile", get(profile));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { server.wait_shutdown().await })
        .await;
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><head><title>/debug/pprof/</title></head><body>\n\
         <p>/debug/pprof/</p>\n\
         <a href=\"profile?seconds=30\">profile</a>: CPU profile (pprof format); \
         <code>?seconds=N</code> sets its length.\n\
         </body></html>\n",
    )
        .into_response()
}

async fn profile(Query(q): Query<HashMap<String, String>>) -> Response {
    let seconds = match q.get("seconds").map(|s| s.parse::<u64>()) {
        None => DEFAULT_SECONDS,
        Some(Ok(s)) if s > 0 => s.min(MAX_SECONDS),
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "Bad Request: invalid value for \"seconds\"\n",
            )
                .into_response()
        }
    };
    if RUNNING.swap(true, Ordering::AcqRel) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not enable CPU profiling: cpu profiling already in use\n",
        )
            .into_response();
    }
    let result = collect(Duration::from_secs(seconds)).await;
    RUNNING.store(false, Ordering::Release);
    match result {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Could not enable CPU profiling: {e}\n"),
        )
            .into_response(),
    }
}

/// Samples every thread for `length`, then encodes the profile.
async fn collect(length: Duration) -> Result<Vec<u8>, pprof::Error> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    let start = crate::clock::unix_nanos();
    tokio::time::sleep(length).await;
    let report = guard.report().build()?;
    drop(guard);
    let mut stacks = Vec::new();
    for (frames, count) in &report.data {
        let names: Vec<(String, String, u32)> = frames
            .frames
            .iter()
            .flatten()
            .map(|s| {
                (
                    s.name(),
                    s.filename
                        .as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default(),
                    s.lineno.unwrap_or(0),
                )
            })
            .collect();
        stacks.push((names, (*count).max(0) as u64));
    }
    Ok(encode(&stacks, start, length))
}

/// One sampled stack, leaf first: (function name, file, line) per frame.
pub type Stack = Vec<(String, String, u32)>;

/// Encodes `stacks` (with their sample counts) as a `perftools.profiles.Profile` message.
pub fn encode(stacks: &[(Stack, u64)], start_nanos: i64, length: Duration) -> Vec<u8> {
    let period = 1_000_000_000 / FREQUENCY as i64;
    let mut strings = Strings::default();
    let samples_s = strings.id("samples");
    let count_s = strings.id("count");
    let cpu_s = strings.id("cpu");
    let nanos_s = strings.id("nanoseconds");
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: HashMap<(u64, u32), u64> = HashMap::new();
    let mut out = Vec::new();
    let value_type = |t: i64, u: i64| {
        let mut m = Vec::new();
        field_varint(&mut m, 1, t as u64);
        field_varint(&mut m, 2, u as u64);
        m
    };
    let sample_types = [value_type(samples_s, count_s), value_type(cpu_s, nanos_s)];
    let period_type = value_type(cpu_s, nanos_s);
    for st in &sample_types {
        field_bytes(&mut out, 1, st);
    }
    let mut function_msgs = Vec::new();
    let mut location_msgs = Vec::new();
    for (frames, count) in stacks {
        let mut ids = Vec::with_capacity(frames.len());
        for (name, file, line) in frames {
            let next = functions.len() as u64 + 1;
            let fid = *functions
                .entry((name.clone(), file.clone()))
                .or_insert_with(|| {
                    let mut f = Vec::new();
                    field_varint(&mut f, 1, next);
                    let n = strings.id(name) as u64;
                    field_varint(&mut f, 2, n);
                    field_varint(&mut f, 3, n);
                    field_varint(&mut f, 4, strings.id(file) as u64);
                    function_msgs.push(f);
                    next
                });
            let next = locations.len() as u64 + 1;
            let lid = *locations.entry((fid, *line)).or_insert_with(|| {
                let mut l = Vec::new();
                field_varint(&mut l, 1, next);
                let mut ln = Vec::new();
                field_varint(&mut ln, 1, fid);
                field_varint(&mut ln, 2, *line as u64);
                field_bytes(&mut l, 4, &ln);
                location_msgs.push(l);
                next
            });
            ids.push(lid);
        }
        let mut s = Vec::new();
        field_packed(&mut s, 1, &ids);
        field_packed(&mut s, 2, &[*count, count * period as u64]);
        field_bytes(&mut out, 2, &s);
    }
    for l in &location_msgs {
        field_bytes(&mut out, 4, l);
    }
    for f in &function_msgs {
        field_bytes(&mut out, 5, f);
    }
    for s in &strings.list {
        field_bytes(&mut out, 6, s.as_bytes());
    }
    field_varint(&mut out, 9, start_nanos as u64);
    field_varint(&mut out, 10, length.as_nanos() as u64);
    field_bytes(&mut out, 11, &period_type);
    field_varint(&mut out, 12, period as u64);
    out
}

/// The profile's string table; index 0 is the empty string, as the format requires.
struct Strings {
    list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            list: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_packed(out: &mut Vec<u8>, field: u32, vs: &[u64]) {
    let mut p = Vec::new();
    for v in vs {
        varint(&mut p, *v);
    }
    field_bytes(out, field, &p);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader: (field, wire type, value or bytes) of one message level.
    fn fields(mut b: &[u8]) -> Vec<(u32, Result<u64, Vec<u8>>)> {
        fn read_varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = read_varint(&mut b);
            let (field, wire) = ((key >> 3) as u32, key & 7);
            if wire == 0 {
                out.push((field, Ok(read_varint(&mut b))));
            } else {
                let n = read_varint(&mut b) as usize;
                out.push((field, Err(b[..n].to_vec())));
                b = &b[n..];
            }
        }
        out
    }

    #[test]
    fn encodes_a_profile_message() {
        let stacks = vec![
            (
                vec![
                    ("leaf".to_string(), "a.rs".to_string(), 3),
                    ("main".to_string(), "m.rs".to_string(), 1),
                ],
                5,
            ),
            (vec![("main".to_string(), "m.rs".to_string(), 1)], 2),
        ];
        let p = encode(&stacks, 1_000, Duration::from_secs(1));
        let top = fields(&p);
        let strings: Vec<String> = top
            .iter()
            .filter(|(f, _)| *f == 6)
            .map(|(_, v)| String::from_utf8(v.clone().unwrap_err()).unwrap())
            .collect();
        assert_eq!(strings[0], "");
        for s in [
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "leaf",
            "main",
            "a.rs",
        ] {
            assert!(strings.iter().any(|x| x == s), "{s} in {strings:?}");
        }
        let samples: Vec<_> = top.iter().filter(|(f, _)| *f == 2).collect();
        assert_eq!(samples.len(), 2);
        // Two functions, two locations (main shared), samples referencing them.
        assert_eq!(top.iter().filter(|(f, _)| *f == 5).count(), 2);
        assert_eq!(top.iter().filter(|(f, _)| *f == 4).count(), 2);
        let first = fields(&samples[0].1.clone().unwrap_err());
        let values = first
            .iter()
            .find(|(f, _)| *f == 2)
            .unwrap()
            .1
            .clone()
            .unwrap_err();
        assert_eq!(values[0], 5);
        assert!(top.contains(&(12, Ok(1_000_000_000 / FREQUENCY as u64))));
    }
}
