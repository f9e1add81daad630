//! Stream backup and restore (`$JS.API.STREAM.SNAPSHOT` / `RESTORE`) between the natrix-broker
//! binary and the reference nats-server: a backup from either restores on the other with the
//! same messages (subjects, headers, payloads, timestamps, sequences with their gaps and
//! trailing deletes) and consumer positions; nats-server's errors and advisories; a config
//! change during a backup; the offline restore directory.
//!
//! The client side of the protocol is written here as the `nats` CLI does it: every chunk of a
//! backup that has a reply subject is acknowledged with an empty message, the restore upload
//! sends each chunk as a request and ends with an empty one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use common::{
    js::publish_acked,
    proc::{Proc, WAIT},
    tempdir::TempDir,
};
use futures::StreamExt;
use serde_json::{json, Value};

/// A running server (either binary) with JetStream in `<dir>/store`.
struct Srv {
    _p: Proc,
    client: Client,
    store: PathBuf,
}

async fn start(reference: bool, dir: &Path) -> Srv {
    let store = dir.join("store");
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:-1\"\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            store.display()
        ),
    )
    .unwrap();
    let args = ["-c", conf.to_str().unwrap()];
    let p = if reference {
        Proc::reference(&args)
    } else {
        Proc::natrix(&args)
    };
    let addr = p.ready();
    let client = async_nats::connect(format!("nats://{addr}")).await.unwrap();
    Srv {
        _p: p,
        client,
        store,
    }
}

async fn req(c: &Client, subject: &str, body: Value) -> Value {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let m = tokio::time::timeout(WAIT, c.request(subject.to_string(), body))
        .await
        .expect("answer in time")
        .unwrap();
    serde_json::from_slice(&m.payload).unwrap_or(Value::Null)
}

/// Stream `S` on `s.>` with `n` messages (every third with headers, payloads of random bytes
/// when `big`), seq 5 and the last one deleted, and durable `D` that took 4 messages and
/// acknowledged 1, 2 and 4.
async fn fill(c: &Client, n: usize, big: bool) {
    // The small stream is S2-compressed, so a compressed stream's backup crosses both ways.
    let compression = if big { "none" } else { "s2" };
    let v = req(
        c,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "storage": "file", "compression": compression}),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    for i in 0..n {
        let data = if big {
            (0..1000).map(|_| fastrand::u8(..)).collect()
        } else {
            format!("data-{i}").into_bytes()
        };
        let hdr = (i % 3 == 0).then(|| {
            let mut h = HeaderMap::new();
            h.insert("Foo", format!("bar{i}").as_str());
            h
        });
        publish_acked(c, &format!("s.{}", i % 7), hdr, data.into()).await;
    }
    for seq in [5, n as u64] {
        let v = req(c, "$JS.API.STREAM.MSG.DELETE.S", json!({ "seq": seq })).await;
        assert_eq!(v["success"], json!(true), "{v}");
    }
    let v = req(
        c,
        "$JS.API.CONSUMER.DURABLE.CREATE.S.D",
        json!({"stream_name": "S", "config": {"durable_name": "D", "ack_policy": "explicit"}}),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.S.D",
        inbox,
        Bytes::from_static(b"{\"batch\":4}"),
    )
    .await
    .unwrap();
    for i in 0..4 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if i != 2 {
            c.publish(m.reply.unwrap(), "+ACK".into()).await.unwrap();
        }
    }
    wait_for(c, |info: &Value| {
        info["ack_floor"]["stream_seq"] == json!(2)
    })
    .await;
}

/// Polls `CONSUMER.INFO.S.D` (bounded) until `ok` holds.
async fn wait_for(c: &Client, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = req(c, "$JS.API.CONSUMER.INFO.S.D", Value::Null).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("consumer never reached the expected state: {last}");
}

/// What must survive a backup and restore: the state's numbers, every message and the
/// durable's position.
async fn dump(c: &Client) -> Value {
    let info = req(c, "$JS.API.STREAM.INFO.S", Value::Null).await;
    let st = &info["state"];
    let mut msgs = Vec::new();
    for seq in st["first_seq"].as_u64().unwrap()..=st["last_seq"].as_u64().unwrap() {
        let v = req(c, "$JS.API.STREAM.MSG.GET.S", json!({ "seq": seq })).await;
        let m = &v["message"];
        msgs.push(if m.is_null() {
            json!({"seq": seq, "missing": v["error"]["err_code"]})
        } else {
            json!({"seq": m["seq"], "subject": m["subject"], "hdrs": m["hdrs"], "data": m["data"], "time": m["time"]})
        });
    }
    let ci = req(c, "$JS.API.CONSUMER.INFO.S.D", Value::Null).await;
    json!({
        "state": {
            "messages": st["messages"], "bytes": st["bytes"], "first_seq": st["first_seq"],
            "last_seq": st["last_seq"], "num_deleted": st["num_deleted"],
            "num_subjects": st["num_subjects"], "consumer_count": st["consumer_count"],
            "first_ts": st["first_ts"],
        },
        "msgs": msgs,
        "consumer": {
            "delivered": {"consumer_seq": ci["delivered"]["consumer_seq"], "stream_seq": ci["delivered"]["stream_seq"]},
            "ack_floor": {"consumer_seq": ci["ack_floor"]["consumer_seq"], "stream_seq": ci["ack_floor"]["stream_seq"]},
            "num_ack_pending": ci["num_ack_pending"],
            "num_pending": ci["num_pending"],
            "config": {"durable_name": ci["config"]["durable_name"], "ack_policy": ci["config"]["ack_policy"]},
        },
    })
}

/// A finished backup: the API answer, the archive and the final status header.
struct Backup {
    answer: Value,
    archive: Vec<u8>,
    status: Option<String>,
    chunks: usize,
}

/// Takes a backup of `S`, acknowledging every chunk that asks for it; `hold` runs once the
/// first chunk is in, before it is acknowledged.
async fn backup_with<F: std::future::Future<Output = ()>>(
    c: &Client,
    opts: Value,
    hold: impl FnOnce() -> F,
) -> Backup {
    let deliver = c.new_inbox();
    let mut sub = c.subscribe(deliver.clone()).await.unwrap();
    let mut body = opts;
    body["deliver_subject"] = json!(deliver);
    let answer = req(c, "$JS.API.STREAM.SNAPSHOT.S", body).await;
    assert!(answer["error"].is_null(), "{answer}");
    let mut archive = Vec::new();
    let mut chunks = 0;
    let mut hold = Some(hold);
    loop {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("chunk in time")
            .unwrap();
        if m.payload.is_empty() {
            let status = m.status.map(|s| s.as_u16().to_string());
            return Backup {
                answer,
                archive,
                status,
                chunks,
            };
        }
        chunks += 1;
        archive.extend_from_slice(&m.payload);
        if let Some(h) = hold.take() {
            h().await;
        }
        if let Some(r) = m.reply {
            c.publish(r, Bytes::new()).await.unwrap();
        }
    }
}

async fn backup(c: &Client, opts: Value) -> Backup {
    backup_with(c, opts, || async {}).await
}

/// Restores `archive` as stream `config.name` through the upload protocol; the final answer.
async fn restore(c: &Client, config: &Value, archive: &[u8]) -> Value {
    let name = config["name"].as_str().unwrap();
    let v = req(
        c,
        &format!("$JS.API.STREAM.RESTORE.{name}"),
        json!({ "config": config }),
    )
    .await;
    let Some(deliver) = v["deliver_subject"].as_str().filter(|d| !d.is_empty()) else {
        return v;
    };
    for chunk in archive.chunks(8 << 10) {
        let ack = c
            .request(deliver.to_string(), Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
        assert!(ack.payload.is_empty(), "chunk answered {:?}", ack.payload);
    }
    req(c, deliver, Value::Null).await
}

async fn both_ways(big: bool) {
    let dn = TempDir::new("nx");
    let dr = TempDir::new("ref");
    let nx = start(false, dn.path()).await;
    let rf = start(true, dr.path()).await;
    let n = if big { 300 } else { 12 };
    let opts = if big {
        // Small chunks and window: many chunks, each waiting for its acknowledgement.
        json!({"chunk_size": 4096, "window_size": 8192})
    } else {
        json!({})
    };

    // Natrix -> nats-server.
    fill(&nx.client, n, big).await;
    let want = dump(&nx.client).await;
    let b = backup(&nx.client, opts.clone()).await;
    if big {
        assert!(b.chunks > 10, "{} chunks", b.chunks);
        assert_eq!(b.status.as_deref(), Some("204"));
    }
    assert_eq!(
        b.answer["type"],
        json!("io.nats.jetstream.api.v1.stream_snapshot_response")
    );
    assert_eq!(b.answer["state"]["last_seq"], json!(n));
    let v = restore(&rf.client, &b.answer["config"], &b.archive).await;
    assert!(v["error"].is_null(), "nats-server restore: {v}");
    assert_eq!(
        v["type"],
        json!("io.nats.jetstream.api.v1.stream_create_response")
    );
    assert_eq!(dump(&rf.client).await, want);

    // nats-server -> Natrix (its own stream, from the restored one above).
    let v = req(&nx.client, "$JS.API.STREAM.DELETE.S", Value::Null).await;
    assert_eq!(v["success"], json!(true));
    let b = backup(&rf.client, opts).await;
    if big {
        assert_eq!(b.status.as_deref(), Some("204"));
    }
    let v = restore(&nx.client, &b.answer["config"], &b.archive).await;
    assert!(v["error"].is_null(), "natrix restore: {v}");
    assert_eq!(
        v["type"],
        json!("io.nats.jetstream.api.v1.stream_create_response")
    );
    assert_eq!(v["state"]["last_seq"], json!(n));
    let compression = if big { "none" } else { "s2" };
    assert_eq!(v["config"]["compression"], json!(compression));
    assert_eq!(dump(&nx.client).await, want);

    // The restored durable continues where it was: message 3 is pending, 5 is gone, so the
    // next new one is 6.
    let inbox = nx.client.new_inbox();
    let mut sub = nx.client.subscribe(inbox.clone()).await.unwrap();
    nx.client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.S.D",
            inbox,
            Bytes::from_static(b"{\"batch\":1}"),
        )
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    let reply = m.reply.unwrap().to_string();
    assert_eq!(reply.split('.').nth(5), Some("6"), "{reply}");
    // And the restored stream takes new messages after the last sequence.
    publish_acked(&nx.client, "s.new", None, b"after".to_vec().into()).await;
    let info = req(&nx.client, "$JS.API.STREAM.INFO.S", Value::Null).await;
    assert_eq!(info["state"]["last_seq"], json!(n + 1));
}

#[tokio::test]
async fn backups_restore_across_servers_both_ways() {
    both_ways(false).await;
}

#[tokio::test]
async fn large_backups_are_chunked_and_flow_controlled_both_ways() {
    both_ways(true).await;
}

#[tokio::test]
async fn errors_match_nats_server() {
    let dn = TempDir::new("nx");
    let dr = TempDir::new("ref");
    let nx = start(false, dn.path()).await;
    let rf = start(true, dr.path()).await;
    let mut got = Vec::new();
    for s in [&nx, &rf] {
        let c = &s.client;
        fill(c, 6, false).await;
        let b = backup(c, json!({})).await;
        // A transfer smaller than one chunk ends without a status.
        assert_eq!(b.status, None);
        let answers = vec![
            req(c, "$JS.API.STREAM.SNAPSHOT.S", Value::Null).await,
            req(
                c,
                "$JS.API.STREAM.SNAPSHOT.S",
                json!({"deliver_subject": ""}),
            )
            .await,
            req(
                c,
                "$JS.API.STREAM.SNAPSHOT.S",
                json!({"deliver_subject": "a.*"}),
            )
            .await,
            req(
                c,
                "$JS.API.STREAM.SNAPSHOT.NOPE",
                json!({"deliver_subject": "x"}),
            )
            .await,
            req(c, "$JS.API.STREAM.RESTORE.S", Value::Null).await,
            // The stream exists: nats-server's "already in use" error, before any upload.
            restore(c, &b.answer["config"], &b.archive).await,
            // Not an S2 stream.
            restore(
                c,
                &json!({"name": "Q", "subjects": ["q"]}),
                b"garbage-not-s2",
            )
            .await,
            // Nothing at all.
            restore(c, &json!({"name": "Q2", "subjects": ["q2"]}), b"").await,
        ];
        got.push(answers);
    }
    assert_eq!(got[0], got[1]);
    assert_eq!(
        got[0][5]["error"],
        json!({"code": 400, "err_code": 10130, "description": "stream name already in use, cannot restore"})
    );
    assert_eq!(
        got[0][6]["error"]["description"],
        json!("restore failed: s2: corrupt input")
    );
    assert_eq!(
        got[0][7]["error"]["description"],
        json!("restore failed: EOF")
    );
}

/// The four advisories, as `(subject, type, sorted keys)`.
async fn advisories(c: &Client) -> Vec<(String, String, Vec<String>)> {
    let mut sub = c.subscribe("$JS.EVENT.ADVISORY.STREAM.*.S").await.unwrap();
    c.flush().await.unwrap();
    fill(c, 6, false).await;
    let b = backup(c, json!({})).await;
    let v = req(c, "$JS.API.STREAM.DELETE.S", Value::Null).await;
    assert_eq!(v["success"], json!(true));
    let v = restore(c, &b.answer["config"], &b.archive).await;
    assert!(v["error"].is_null(), "{v}");
    let mut out = Vec::new();
    while out.len() < 4 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("advisory in time")
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let t = v["type"].as_str().unwrap().to_string();
        if t.ends_with("stream_action") {
            continue;
        }
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert!(v["client"].is_object(), "{v}");
        out.push((m.subject.to_string(), t, keys));
    }
    out
}

#[tokio::test]
async fn advisories_match_nats_server() {
    let dn = TempDir::new("nx");
    let dr = TempDir::new("ref");
    let nx = start(false, dn.path()).await;
    let rf = start(true, dr.path()).await;
    let a = advisories(&nx.client).await;
    let b = advisories(&rf.client).await;
    assert_eq!(a, b);
    let types: Vec<&str> = a.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        types,
        [
            "io.nats.jetstream.advisory.v1.snapshot_create",
            "io.nats.jetstream.advisory.v1.snapshot_complete",
            "io.nats.jetstream.advisory.v1.restore_create",
            "io.nats.jetstream.advisory.v1.restore_complete",
        ]
    );
}

/// A config change while a backup waits for its first acknowledgement: accepted at once, as
/// nats-server 2.15 does (the backup keeps the config it started with). On Natrix nothing
/// is evicted by the stream's limits until the backup ends.
async fn change_during_backup(c: &Client, natrix: bool) {
    let v = req(
        c,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "max_msgs": 40}),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    for i in 0..40 {
        let data: Vec<u8> = (0..1000).map(|_| fastrand::u8(..)).collect();
        publish_acked(c, &format!("s.{i}"), None, data.into()).await;
    }
    let opts = json!({"chunk_size": 1024, "window_size": 1024});
    let c2 = c.clone();
    let b = backup_with(c, opts, || async move {
        let mut cfg = req(&c2, "$JS.API.STREAM.INFO.S", Value::Null).await["config"].clone();
        cfg["description"] = json!("changed");
        let v = req(&c2, "$JS.API.STREAM.UPDATE.S", cfg).await;
        assert!(v["error"].is_null(), "{v}");
        assert_eq!(v["config"]["description"], json!("changed"));
        for i in 0..10 {
            publish_acked(&c2, "s.more", None, format!("more-{i}").into_bytes().into()).await;
        }
        let info = req(&c2, "$JS.API.STREAM.INFO.S", Value::Null).await;
        let held = info["state"]["messages"].as_u64().unwrap();
        if natrix {
            assert_eq!(held, 50, "limits wait for the backup");
        }
    })
    .await;
    assert_eq!(b.status.as_deref(), Some("204"));
    assert_eq!(b.answer["config"]["description"], json!(null));
    // After the backup the limit applies again.
    let mut msgs = 0;
    for _ in 0..200 {
        let info = req(c, "$JS.API.STREAM.INFO.S", Value::Null).await;
        msgs = info["state"]["messages"].as_u64().unwrap();
        if msgs == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(msgs, 40);
    // The backup holds the 40 messages it started with.
    let v = req(c, "$JS.API.STREAM.DELETE.S", Value::Null).await;
    assert_eq!(v["success"], json!(true));
    let v = restore(c, &b.answer["config"], &b.archive).await;
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["state"]["messages"], json!(40));
    assert_eq!(v["state"]["last_seq"], json!(40));
}

#[tokio::test]
async fn config_change_during_backup_is_accepted_and_limits_wait() {
    let dn = TempDir::new("nx");
    let dr = TempDir::new("ref");
    let nx = start(false, dn.path()).await;
    let rf = start(true, dr.path()).await;
    change_during_backup(&nx.client, true).await;
    change_during_backup(&rf.client, false).await;
}

#[tokio::test]
async fn offline_restore_directory_is_picked_up_on_start() {
    let dr = TempDir::new("ref");
    let rf = start(true, dr.path()).await;
    fill(&rf.client, 9, false).await;
    let want = dump(&rf.client).await;
    let b = backup(&rf.client, json!({})).await;

    // A stopped Natrix: the backup as `nats stream backup` lays it out, in `restore/`.
    let dn = TempDir::new("nx");
    let dir = dn.path().join("store/jetstream/$G/restore/S");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("backup.json"), b.answer.to_string()).unwrap();
    std::fs::write(dir.join("stream.tar.s2"), &b.archive).unwrap();
    let nx = start(false, dn.path()).await;
    assert_eq!(dump(&nx.client).await, want);
    assert!(!dir.exists(), "restored backups are removed");
    assert!(nx.store.join("jetstream/$G/streams/S").is_dir());
}
