//! Encryption at rest (`jetstream { cipher, key }`) with the real binary: nothing readable
//! under `store_dir`, restarts with the right key read everything back, a wrong or missing
//! key keeps the stream down (reported, logged) while core NATS and other streams run,
//! `key: $JS_KEY` comes from the environment, plain data stays readable after encryption is
//! enabled and data stays readable when the cipher changes.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, consumer, stream};
use common::{
    http::http_get,
    proc::{addr_after, Proc},
    tempdir::TempDir,
};
use futures::StreamExt;

const PAYLOAD: &str = "PAYLOAD-MARKER-7c1f";
const SUBJECT: &str = "subjmarker";
const CONSUMER: &str = "CONSUMERMARKER";

/// A running broker: the process, its client URL and its monitor address.
struct Broker {
    p: Proc,
    url: String,
    http: SocketAddr,
}

/// Starts the binary with a config file whose `jetstream` block has `extra` (cipher, key).
fn start_env(dir: &TempDir, extra: &str, env: &[(&str, &str)]) -> Broker {
    let store = dir.path().join("store");
    let conf = dir.path().join("natrix.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:-1\"\nhttp: \"127.0.0.1:-1\"\njetstream {{\n  store_dir: \"{}\"\n  {extra}\n}}\n",
            store.display()
        ),
    )
    .unwrap();
    let p = Proc::natrix_env(&["-c", &conf.display().to_string()], env);
    let addr = p.ready();
    let http = addr_after(
        &p.wait_line("Starting http monitor on "),
        "Starting http monitor on ",
    );
    p.wait_line("Took ");
    Broker {
        p,
        url: format!("nats://{addr}"),
        http,
    }
}

fn start(dir: &TempDir, extra: &str) -> Broker {
    start_env(dir, extra, &[])
}

const CHACHA: &str = "cipher: chachapoly\n  key: \"s3cret-key-one\"";
const AES: &str = "cipher: aes\n  key: \"s3cret-key-one\"";
const WRONG: &str = "cipher: chachapoly\n  key: \"not-the-key\"";

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Files under `dir` whose bytes contain `needle`.
fn containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// Creates stream `name` on `<SUBJECT>.<name>.>` with a durable consumer, publishes `n`
/// messages `<payload>-<i>` and acks the first `acked` of them.
async fn fill(url: &str, name: &str, payload: &str, n: usize, acked: usize) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let st = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{SUBJECT}.{name}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    publish_numbered(&js, name, payload, 0..n).await;
    let c = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    if acked > 0 {
        let mut b = c.fetch().max_messages(acked).messages().await.unwrap();
        while let Some(m) = b.next().await {
            m.unwrap().double_ack().await.unwrap();
        }
    }
}

/// Publishes more messages `<payload>-<i>` (numbered from `from`) to an existing stream.
async fn publish_more(url: &str, name: &str, payload: &str, from: usize, n: usize) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    publish_numbered(&js, name, payload, from..from + n).await;
}

/// Publishes `<payload>-<i>` to `<SUBJECT>.<name>.<i>` for each `i` in `range`, acknowledged.
async fn publish_numbered(
    js: &jetstream::Context,
    name: &str,
    payload: &str,
    range: std::ops::Range<usize>,
) {
    for i in range {
        js.publish(
            format!("{SUBJECT}.{name}.{i}"),
            format!("{payload}-{i}").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// Every message of stream `name` (as `payload-i` strings, by sequence) and the consumer's
/// ack floor.
async fn read_back(url: &str, name: &str) -> (Vec<String>, u64) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let mut st = js.get_stream(name).await.unwrap();
    let info = st.info().await.unwrap();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = st.get_raw_message(seq).await.unwrap();
        out.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    let mut c: consumer::PullConsumer = st.get_consumer(CONSUMER).await.unwrap();
    let floor = c.info().await.unwrap().ack_floor.stream_sequence;
    (out, floor)
}

fn expected(parts: &[(&str, std::ops::Range<usize>)]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|(p, r)| r.clone().map(move |i| format!("{p}-{i}")))
        .collect()
}

#[tokio::test]
async fn nothing_readable_on_disk_and_restart_reads_everything_back() {
    let dir = TempDir::new("plainbytes");
    let mut b = start(&dir, CHACHA);
    b.p.wait_line("Encryption:      ChaCha20-Poly1305");
    fill(&b.url, "ENC", PAYLOAD, 20, 5).await;
    assert!(b.p.stop().success());
    let store = dir.path().join("store");
    assert!(files(&store).iter().any(|p| p.ends_with("ENC/key")));
    assert!(files(&store)
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "blk")));
    for marker in [PAYLOAD, SUBJECT, CONSUMER, "max_msgs", "ack_floor"] {
        assert_eq!(
            containing(&store, marker),
            Vec::<PathBuf>::new(),
            "{marker}"
        );
    }
    let b = start(&dir, CHACHA);
    let (msgs, floor) = read_back(&b.url, "ENC").await;
    assert_eq!(msgs, expected(&[(PAYLOAD, 0..20)]));
    assert_eq!(floor, 5);
    // The consumer carries on after its position.
    let js = jetstream::new(async_nats::connect(&b.url).await.unwrap());
    let c: consumer::PullConsumer = js
        .get_stream("ENC")
        .await
        .unwrap()
        .get_consumer(CONSUMER)
        .await
        .unwrap();
    let mut batch = c.fetch().max_messages(1).messages().await.unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], format!("{PAYLOAD}-5").as_bytes());
}

#[tokio::test]
async fn wrong_or_missing_key_keeps_the_stream_down_and_the_server_up() {
    let dir = TempDir::new("wrongkey");
    let mut b = start(&dir, CHACHA);
    fill(&b.url, "ENC", PAYLOAD, 5, 1).await;
    assert!(b.p.stop().success());
    for (extra, why) in [
        (WRONG, "wrong JetStream encryption key"),
        ("", "no JetStream"),
    ] {
        let b = start(&dir, extra);
        let line = b.p.wait_line("stream '$G > ENC'");
        assert!(line.contains("could not be recovered"), "{line}");
        assert!(line.contains(why), "{line}");
        // Reported: stream info is not available, /healthz names the stream.
        let js = jetstream::new(async_nats::connect(&b.url).await.unwrap());
        assert!(js.get_stream("ENC").await.is_err());
        let (status, body) = http_get(b.http, "/healthz");
        assert!(status.contains(" 503 "), "{status}");
        assert!(body.contains("ENC"), "{body}");
        // Core NATS works.
        let nc = async_nats::connect(&b.url).await.unwrap();
        let mut sub = nc.subscribe("core.check").await.unwrap();
        nc.publish("core.check", "alive".into()).await.unwrap();
        assert_eq!(&sub.next().await.unwrap().payload[..], b"alive");
        // JetStream runs for other streams; the broken one cannot be overwritten.
        fill(&b.url, &format!("OTHER{}", extra.len()), "other", 2, 0).await;
        assert!(js
            .create_stream(stream::Config {
                name: "ENC".into(),
                subjects: vec![format!("{SUBJECT}.ENC.>")],
                ..Default::default()
            })
            .await
            .is_err());
        drop(b);
    }
    // The files were left alone: the right key reads everything.
    let b = start(&dir, CHACHA);
    let (msgs, floor) = read_back(&b.url, "ENC").await;
    assert_eq!(msgs, expected(&[(PAYLOAD, 0..5)]));
    assert_eq!(floor, 1);
}

/// Key rotation: `prev_key` opens what the old key sealed and seals it again under the new
/// key, after which the new key alone reads everything and the old one no longer does.
#[tokio::test]
async fn prev_key_rotates_to_a_new_key() {
    let dir = TempDir::new("rotate");
    let mut b = start(&dir, CHACHA);
    fill(&b.url, "ROT", PAYLOAD, 4, 2).await;
    assert!(b.p.stop().success());
    let rotating = "cipher: chachapoly\n  key: \"s3cret-key-two\"\n  prev_key: \"s3cret-key-one\"";
    let mut b = start(&dir, rotating);
    b.p.wait_line("key file sealed again with the new key");
    assert_eq!(
        read_back(&b.url, "ROT").await.0,
        expected(&[(PAYLOAD, 0..4)])
    );
    publish_more(&b.url, "ROT", "AFTER-ROTATION", 4, 2).await;
    assert!(b.p.stop().success());
    let new_only = "cipher: chachapoly\n  key: \"s3cret-key-two\"";
    let mut b = start(&dir, new_only);
    let (msgs, floor) = read_back(&b.url, "ROT").await;
    assert_eq!(msgs, expected(&[(PAYLOAD, 0..4), ("AFTER-ROTATION", 4..6)]));
    assert_eq!(floor, 2);
    assert!(b.p.stop().success());
    let b = start(&dir, CHACHA);
    let line = b.p.wait_line("stream '$G > ROT'");
    assert!(line.contains("could not be recovered"), "{line}");
    for marker in [PAYLOAD, "AFTER-ROTATION"] {
        assert_eq!(
            containing(&dir.path().join("store"), marker),
            Vec::<PathBuf>::new()
        );
    }
}

#[tokio::test]
async fn key_from_the_environment() {
    let dir = TempDir::new("envkey");
    let env = [("JS_KEY", "from-the-environment-42")];
    let mut b = start_env(&dir, "cipher: aes\n  key: $JS_KEY", &env);
    fill(&b.url, "ENV", PAYLOAD, 3, 2).await;
    assert!(b.p.stop().success());
    assert_eq!(
        containing(&dir.path().join("store"), PAYLOAD),
        Vec::<PathBuf>::new()
    );
    let b = start_env(&dir, "cipher: aes\n  key: $JS_KEY", &env);
    let (msgs, floor) = read_back(&b.url, "ENV").await;
    assert_eq!(msgs, expected(&[(PAYLOAD, 0..3)]));
    assert_eq!(floor, 2);
    drop(b);
    // The same key written in the file opens it too.
    let b = start(&dir, "cipher: aes\n  key: \"from-the-environment-42\"");
    assert_eq!(read_back(&b.url, "ENV").await.0.len(), 3);
}

#[tokio::test]
async fn plain_data_stays_readable_after_enabling_encryption() {
    let dir = TempDir::new("enable");
    let mut b = start(&dir, "");
    fill(&b.url, "OLD", "PLAIN-BEFORE", 4, 2).await;
    assert!(b.p.stop().success());
    let store = dir.path().join("store");
    assert!(!containing(&store, "PLAIN-BEFORE").is_empty());
    let mut b = start(&dir, CHACHA);
    let (msgs, floor) = read_back(&b.url, "OLD").await;
    assert_eq!(msgs, expected(&[("PLAIN-BEFORE", 0..4)]));
    assert_eq!(floor, 2);
    publish_more(&b.url, "OLD", "SEALED-AFTER", 4, 3).await;
    assert!(b.p.stop().success());
    // New messages and all metadata are sealed now; the old blocks stay as they were.
    assert_eq!(containing(&store, "SEALED-AFTER"), Vec::<PathBuf>::new());
    assert_eq!(containing(&store, CONSUMER), Vec::<PathBuf>::new());
    for f in files(&store) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "meta.inf" || name == "o.dat" {
            assert!(std::fs::read(&f).unwrap().starts_with(b"NXF1"), "{f:?}");
        }
    }
    let b = start(&dir, CHACHA);
    let (msgs, floor) = read_back(&b.url, "OLD").await;
    assert_eq!(
        msgs,
        expected(&[("PLAIN-BEFORE", 0..4), ("SEALED-AFTER", 4..7)])
    );
    assert_eq!(floor, 2);
}

#[tokio::test]
async fn switching_the_cipher_with_the_same_key_keeps_data_readable() {
    let dir = TempDir::new("switch");
    let mut b = start(&dir, CHACHA);
    fill(&b.url, "SW", "WITH-CHACHA", 3, 1).await;
    assert!(b.p.stop().success());
    let mut b = start(&dir, AES);
    b.p.wait_line("Encryption:      AES-GCM");
    assert_eq!(
        read_back(&b.url, "SW").await.0,
        expected(&[("WITH-CHACHA", 0..3)])
    );
    publish_more(&b.url, "SW", "WITH-AES", 3, 3).await;
    assert!(b.p.stop().success());
    let store = dir.path().join("store");
    for marker in ["WITH-CHACHA", "WITH-AES", CONSUMER] {
        assert_eq!(
            containing(&store, marker),
            Vec::<PathBuf>::new(),
            "{marker}"
        );
    }
    // And back again.
    for extra in [AES, CHACHA] {
        let b = start(&dir, extra);
        let (msgs, floor) = read_back(&b.url, "SW").await;
        assert_eq!(msgs, expected(&[("WITH-CHACHA", 0..3), ("WITH-AES", 3..6)]));
        assert_eq!(floor, 1);
    }
}

#[test]
fn cipher_without_key_and_unknown_ciphers_refuse_to_start() {
    let dir = TempDir::new("badconf");
    for (extra, why) in [
        ("cipher: aes", "jetstream cipher needs a key"),
        ("cipher: rot13\n  key: k", "Unknown cipher type"),
        ("key: \"\"", "must not be empty"),
        ("key: $NO_SUCH_NATRIX_VAR", "NO_SUCH_NATRIX_VAR"),
        ("prev_key: old", "jetstream prev_key needs a key"),
        ("key: new\n  prev_key: \"\"", "prev_key must not be empty"),
    ] {
        let conf = dir.path().join("bad.conf");
        std::fs::write(&conf, format!("jetstream {{\n  {extra}\n}}\n")).unwrap();
        let mut p = Proc::natrix(&["-c", &conf.display().to_string()]);
        let status = p.wait_exit();
        assert!(!status.success(), "{extra}");
        let out = p.lines().join("\n");
        assert!(out.contains(why), "{extra}: {out}");
    }
}
