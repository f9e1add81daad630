//! `prof_port` / `--profile`: a CPU profile of the running broker over HTTP, in pprof's
//! protobuf format, next to what the reference nats-server's profiling port answers.

mod common;

use std::time::Duration;

use common::http::get_within;
use common::proc::Proc;

/// `GET path` over HTTP/1.0 (20 s at most): (status, content type, body bytes).
async fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let base = format!("http://127.0.0.1:{port}");
    let r = get_within(&base, path, Duration::from_secs(20)).await;
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    (r.status, ctype, r.bytes)
}

/// The strings of a pprof `Profile` message (field 6), gunzipping nothing: Natrix sends the
/// raw message, nats-server a gzip stream (checked by its magic instead).
fn string_table(mut b: &[u8]) -> Vec<String> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
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
        let key = varint(&mut b);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let n = varint(&mut b) as usize;
                if key >> 3 == 6 {
                    out.push(String::from_utf8_lossy(&b[..n]).into_owned());
                }
                b = &b[n..];
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

fn profiling_port(p: &Proc) -> u16 {
    p.wait_line("profiling port: ")
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn cpu_profile_over_http_like_nats_server() {
    let args = ["-a", "127.0.0.1", "-p", "-1", "--profile", "-1"];
    // The reference: a profiling port announced, an index, a CPU profile for ?seconds=1.
    let reference = Proc::reference(&args);
    reference.ready();
    let rport = profiling_port(&reference);
    let (s, ct, _) = get(rport, "/debug/pprof/").await;
    assert_eq!((s, ct.starts_with("text/html")), (200, true));
    let (s, ct, body) = get(rport, "/debug/pprof/profile?seconds=1").await;
    assert_eq!((s, ct.as_str()), (200, "application/octet-stream"));
    assert_eq!(&body[..2], &[0x1f, 0x8b], "nats-server gzips its profile");

    let natrix = Proc::natrix(&args);
    let addr = natrix.ready();
    let port = profiling_port(&natrix);
    let (s, ct, _) = get(port, "/debug/pprof/").await;
    assert_eq!((s, ct.starts_with("text/html")), (200, true));
    // Load while the profile runs, so the broker's own functions are on the CPU.
    let nc = async_nats::connect(format!("nats://{addr}")).await.unwrap();
    let load = tokio::spawn({
        let nc = nc.clone();
        async move {
            let mut sub = nc.subscribe("load").await.unwrap();
            let drain = tokio::spawn(async move {
                use futures::StreamExt;
                while sub.next().await.is_some() {}
            });
            for i in 0u64.. {
                if nc.publish("load", vec![0u8; 512].into()).await.is_err() {
                    break;
                }
                if i % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drain.abort();
        }
    });
    let profile = tokio::spawn(async move { get(port, "/debug/pprof/profile?seconds=2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One profile at a time, as Go's runtime allows.
    let (busy, _, msg) = get(port, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(busy, 500, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("already in use"));
    let (s, ct, body) = profile.await.unwrap();
    load.abort();
    assert_eq!((s, ct.as_str()), (200, "application/octet-stream"));
    let strings = string_table(&body);
    assert_eq!(strings.first().map(String::as_str), Some(""));
    for must in ["samples", "count", "cpu", "nanoseconds"] {
        assert!(strings.iter().any(|x| x == must), "{must} missing");
    }
    assert!(
        strings.iter().any(|x| x.contains("natrix_broker")),
        "the broker's own functions are in the profile: {:?}",
        &strings[..strings.len().min(40)]
    );
    let (s, _, _) = get(port, "/debug/pprof/profile?seconds=abc").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn profiling_is_off_by_default_and_binds_where_configured() {
    let natrix = Proc::natrix(&["-a", "127.0.0.1", "-p", "-1"]);
    natrix.ready();
    assert!(natrix.lines().iter().all(|l| !l.contains("profiling port")));
    let dir = std::env::temp_dir().join(format!("natrix-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, "listen: \"127.0.0.1:-1\"\nprof_port: -1\n").unwrap();
    let natrix = Proc::natrix(&["-c", conf.to_str().unwrap()]);
    natrix.ready();
    let port = profiling_port(&natrix);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
