//! Clustered JetStream on real processes: three natrix-broker servers on 127.0.0.1 with routes
//! to each other, driven by async-nats.
//!
//! - the meta group forms, `$JS.API` requests are answered once, by the right leader;
//! - an R3 stream is created with its `cluster` block, and a publish is acknowledged only once a
//!   quorum stored it: after the leader is `kill -9`ed, everything acknowledged is still there
//!   and a new leader takes publishes; the killed server catches up when it comes back.

use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use common::jscluster::{api_retry, JsCluster};
use serde_json::{json, Value};

mod common;

/// Upper bound for elections and catch-up.
const WAIT: Duration = Duration::from_secs(30);

/// Each test runs three servers: one test at a time, so two cores keep their timing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn connect(urls: &str) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().unwrap()).collect();
    ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .unwrap()
}

/// Counts the answers to one request within a moment, by hand: every answer, not the first.
async fn answers(nc: &async_nats::Client, subject: &str, body: &str) -> Vec<Value> {
    use futures::StreamExt;
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        out.push(serde_json::from_slice(&m.payload).unwrap_or(json!(null)));
    }
    out
}

/// Publishes with a message id until it is acknowledged (a client riding out a leader change).
async fn publish_until_acked(nc: &async_nats::Client, subject: &str, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id);
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            nc.request_with_headers(subject.to_string(), h, id.to_string().into()),
        )
        .await;
        if let Ok(Ok(m)) = r {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(json!({}));
            if v["seq"].as_u64().is_some() {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "{id} never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stream_info(nc: &async_nats::Client, stream: &str) -> Value {
    api_retry(
        nc,
        &format!("$JS.API.STREAM.INFO.{stream}"),
        Value::Null,
        WAIT,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_keeps_acknowledged_messages_when_its_leader_is_killed() {
    let _serial = SERIAL.lock().await;
    let mut c = JsCluster::start(false, 3);
    let nc = connect(&c.urls()).await;
    // The meta group has a leader once the account info is answered; exactly one answer.
    let info = api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    assert_eq!(
        info["type"],
        "io.nats.jetstream.api.v1.account_info_response"
    );
    assert_eq!(answers(&nc, "$JS.API.INFO", "").await.len(), 1);

    let created = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.ORDERS",
        json!({"name": "ORDERS", "subjects": ["orders.>"], "num_replicas": 3}),
        WAIT,
    )
    .await;
    assert_eq!(
        created["type"], "io.nats.jetstream.api.v1.stream_create_response",
        "{created}"
    );
    assert_eq!(created["config"]["num_replicas"], 3);
    let cluster = &created["cluster"];
    assert_eq!(cluster["name"], "jsc");
    assert!(
        cluster["raft_group"]
            .as_str()
            .unwrap()
            .starts_with("S-R3F-"),
        "{cluster}"
    );
    assert_eq!(
        cluster["replicas"].as_array().map(Vec::len),
        Some(2),
        "{cluster}"
    );

    // Stream requests are answered once, by the stream leader.
    assert_eq!(
        answers(&nc, "$JS.API.STREAM.INFO.ORDERS", "").await.len(),
        1
    );
    // An R4 stream on three servers: nats-server's insufficient resources.
    let r4 = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.BIG",
        json!({"name": "BIG", "subjects": ["big"], "num_replicas": 4}),
        WAIT,
    )
    .await;
    assert_eq!(r4["error"]["err_code"], 10005, "{r4}");

    let mut acked = 0u64;
    for i in 0..100 {
        publish_until_acked(&nc, "orders.new", &format!("m{i}")).await;
        acked += 1;
    }
    let leader = stream_info(&nc, "ORDERS").await["cluster"]["leader"]
        .as_str()
        .unwrap()
        .to_string();
    let li = c.index_of(&leader);
    c.kill(li);
    for i in 100..200 {
        publish_until_acked(&nc, "orders.new", &format!("m{i}")).await;
        acked += 1;
    }
    let info = stream_info(&nc, "ORDERS").await;
    let new_leader = info["cluster"]["leader"].as_str().unwrap().to_string();
    assert_ne!(new_leader, leader);
    let stored = info["state"]["messages"].as_u64().unwrap();
    assert_eq!(stored, acked, "{info}");

    // The killed server comes back and catches up: made leader, it serves every message.
    c.restart(li);
    let deadline = Instant::now() + WAIT;
    loop {
        let info = stream_info(&nc, "ORDERS").await;
        let replicas = info["cluster"]["replicas"].as_array().cloned();
        let current = replicas
            .as_ref()
            .is_some_and(|r| r.iter().all(|p| p["current"] == true));
        let has_old = replicas
            .as_ref()
            .is_some_and(|r| r.iter().any(|p| p["name"] == leader.as_str()));
        if current && has_old {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{leader} did not catch up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    make_leader(&nc, "ORDERS", &leader).await;
    let info = stream_info(&nc, "ORDERS").await;
    assert_eq!(info["cluster"]["leader"], leader.as_str(), "{info}");
    assert_eq!(info["state"]["messages"].as_u64(), Some(acked), "{info}");
    let stored = stream_info(&nc, "ORDERS").await["state"]["messages"]
        .as_u64()
        .unwrap();
    println!(
        "figure: r3-leader-kill acked={acked} stored={stored} lost={} dup={}",
        acked.saturating_sub(stored),
        stored.saturating_sub(acked)
    );
    assert_eq!(stored, acked);
}

/// What a cluster's answers have in common with nats-server's: types, errors, whether a create
/// created, the `cluster` block's keys and its replicas' (the figures in them vary).
fn shape(v: &Value) -> Value {
    if v.get("error").is_some() {
        return json!({"type": v["type"], "error": v["error"]});
    }
    let mut out = json!({"type": v["type"]});
    for k in ["did_create", "success", "total", "streams"] {
        if let Some(x) = v.get(k) {
            out[k] = x.clone();
        }
    }
    if let Some(c) = v.get("config") {
        out["num_replicas"] = c["num_replicas"].clone();
    }
    if let Some(st) = v.get("state") {
        out["messages"] = st["messages"].clone();
    }
    if let Some(c) = v.get("cluster").and_then(Value::as_object) {
        let keys: Vec<&String> = c.keys().collect();
        out["cluster_keys"] = json!(keys);
        if let Some(r) = c.get("replicas").and_then(Value::as_array) {
            let keys: Vec<Vec<&String>> = r
                .iter()
                .map(|p| {
                    p.as_object()
                        .unwrap()
                        .keys()
                        .filter(|k| *k != "lag" && *k != "offline")
                        .collect()
                })
                .collect();
            out["replica_keys"] = json!(keys);
        }
    }
    out
}

/// The stream API scenario on one cluster: creates (R3, R1, too many replicas, the same again),
/// stepdowns, names, info, deletes.
async fn api_scenario(reference: bool) -> Vec<(String, Value)> {
    let c = JsCluster::start(reference, 3);
    let nc = connect(&c.urls()).await;
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let mut out = Vec::new();
    let mut call = |label: &str, v: Value| {
        let mut sh = shape(&v);
        // Whether an idempotent create, or an info just after a stepdown, shows
        // `leader_since` depends on which servers lead the meta group and the stream, and
        // when (placement and elections are random on both sides).
        if label.starts_with("again") || label.ends_with("after") {
            if let Some(k) = sh["cluster_keys"].as_array_mut() {
                k.retain(|k| k != "leader_since");
            }
        }
        out.push((label.to_string(), sh))
    };
    let r3 = json!({"name": "R3", "subjects": ["r3.>"], "num_replicas": 3});
    let r1 = json!({"name": "R1", "subjects": ["r1"]});
    call(
        "create r3",
        api_retry(&nc, "$JS.API.STREAM.CREATE.R3", r3.clone(), WAIT).await,
    );
    call(
        "create r1",
        api_retry(&nc, "$JS.API.STREAM.CREATE.R1", r1.clone(), WAIT).await,
    );
    call(
        "create r4",
        api_retry(
            &nc,
            "$JS.API.STREAM.CREATE.R4",
            json!({"name": "R4", "subjects": ["r4"], "num_replicas": 4}),
            WAIT,
        )
        .await,
    );
    call(
        "overlap",
        api_retry(
            &nc,
            "$JS.API.STREAM.CREATE.X",
            json!({"name": "X", "subjects": ["r3.a"], "num_replicas": 3}),
            WAIT,
        )
        .await,
    );
    for i in 0..5 {
        publish_until_acked(&nc, "r3.x", &format!("id{i}")).await;
    }
    call("info r3", stream_info(&nc, "R3").await);
    call(
        "again r3",
        api_retry(&nc, "$JS.API.STREAM.CREATE.R3", r3, WAIT).await,
    );
    call(
        "again r1",
        api_retry(&nc, "$JS.API.STREAM.CREATE.R1", r1, WAIT).await,
    );
    call("info r1", stream_info(&nc, "R1").await);
    // A preferred server that leads already, or holds no replica: nats-server's 10005.
    let leader = leader_of(&nc, "R3").await;
    let v = api_retry(
        &nc,
        "$JS.API.STREAM.LEADER.STEPDOWN.R3",
        json!({"placement": {"preferred": leader}}),
        WAIT,
    )
    .await;
    let v: Value = serde_json::from_str(&v.to_string().replace(&leader, "<leader>")).unwrap();
    call("stepdown to the leader", v);
    call(
        "stepdown to nobody",
        api_retry(
            &nc,
            "$JS.API.STREAM.LEADER.STEPDOWN.R3",
            json!({"placement": {"preferred": "nope"}}),
            WAIT,
        )
        .await,
    );
    for s in ["R3", "R1", "NOPE"] {
        let v = api_retry(
            &nc,
            &format!("$JS.API.STREAM.LEADER.STEPDOWN.{s}"),
            Value::Null,
            WAIT,
        )
        .await;
        call(&format!("stepdown {s}"), v);
    }
    call(
        "names",
        api_retry(&nc, "$JS.API.STREAM.NAMES", Value::Null, WAIT).await,
    );
    call("info nope", stream_info(&nc, "NOPE").await);
    call(
        "delete r1",
        api_retry(&nc, "$JS.API.STREAM.DELETE.R1", Value::Null, WAIT).await,
    );
    call(
        "delete r1 again",
        api_retry(&nc, "$JS.API.STREAM.DELETE.R1", Value::Null, WAIT).await,
    );
    // After a stepdown the stream still holds what it had (asked once a leader is elected:
    // an info answered mid-election shows no leader, on either server).
    leader_of(&nc, "R3").await;
    call("info r3 after", stream_info(&nc, "R3").await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_api_answers_as_a_nats_server_cluster() {
    let _serial = SERIAL.lock().await;
    let want = api_scenario(true).await;
    let got = api_scenario(false).await;
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "natrix differs from nats-server");
    }
    assert_eq!(want.len(), got.len());
}

/// Hands `stream`'s leadership to server `name` (a preferred-server stepdown, repeated until
/// it holds).
async fn make_leader(nc: &async_nats::Client, stream: &str, name: &str) {
    let deadline = Instant::now() + WAIT;
    while leader_of(nc, stream).await != name {
        assert!(Instant::now() < deadline, "{name} never became leader");
        api_retry(
            nc,
            &format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
            json!({"placement": {"preferred": name}}),
            WAIT,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The leader of `stream` by name, once there is one.
async fn leader_of(nc: &async_nats::Client, stream: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = stream_info(nc, stream).await;
        if let Some(l) = info["cluster"]["leader"].as_str() {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no leader for {stream}: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_consumer_continues_where_it_was_after_its_leader_is_killed() {
    let _serial = SERIAL.lock().await;
    use async_nats::jetstream::{self, consumer::pull};
    use futures::StreamExt;
    let mut c = JsCluster::start(false, 3);
    let nc = connect(&c.urls()).await;
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let created = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.WORK",
        json!({"name": "WORK", "subjects": ["work.>"], "num_replicas": 3, "retention": "workqueue"}),
        WAIT,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    for i in 0..100 {
        publish_until_acked(&nc, "work.item", &format!("w{i}")).await;
    }
    let js = jetstream::new(nc.clone());
    let stream = js.get_stream("WORK").await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut first = Vec::new();
    let mut msgs = consumer.fetch().max_messages(50).messages().await.unwrap();
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        first.push(m.info().unwrap().stream_sequence);
        m.double_ack().await.unwrap();
    }
    assert_eq!(first, (1..=50).collect::<Vec<u64>>());
    // The followers hear of the acks within a moment; then the leader dies.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = leader_of(&nc, "WORK").await;
    c.kill(c.index_of(&leader));
    let new_leader = leader_of(&nc, "WORK").await;
    assert_ne!(new_leader, leader);
    // The consumer exists on the new leader, at the same place; acked messages are gone.
    let info = api_retry(&nc, "$JS.API.CONSUMER.INFO.WORK.workers", Value::Null, WAIT).await;
    assert_eq!(info["ack_floor"]["stream_seq"], 50, "{info}");
    assert_eq!(info["num_pending"], 50, "{info}");
    let st = stream_info(&nc, "WORK").await;
    assert_eq!(st["state"]["messages"], 50, "{st}");
    let mut rest = Vec::new();
    let deadline = Instant::now() + WAIT;
    while rest.len() < 50 {
        assert!(Instant::now() < deadline, "got {rest:?}");
        let consumer: jetstream::consumer::PullConsumer = match stream.get_consumer("workers").await
        {
            Ok(c) => c,
            Err(_) => continue,
        };
        let Ok(mut msgs) = consumer
            .fetch()
            .max_messages(50)
            .expires(Duration::from_secs(1))
            .messages()
            .await
        else {
            continue;
        };
        while let Some(Ok(m)) = msgs.next().await {
            rest.push(m.info().unwrap().stream_sequence);
            let _ = m.double_ack().await;
        }
    }
    rest.sort_unstable();
    rest.dedup();
    assert_eq!(rest, (51..=100).collect::<Vec<u64>>());
    println!(
        "figure: r3-consumer-failover acked_before=50 redelivered_after=0 delivered_after={}",
        rest.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_key_value_and_object_store_work_while_the_leader_moves() {
    let _serial = SERIAL.lock().await;
    use async_nats::jetstream::{self, kv, object_store};
    use futures::StreamExt;
    let c = JsCluster::start(false, 3);
    let nc = connect(&c.urls()).await;
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let js = jetstream::new(nc.clone());
    let bucket = js
        .create_key_value(kv::Config {
            bucket: "cfg".into(),
            history: 5,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = bucket.watch("k").await.unwrap();
    let mut revisions = Vec::new();
    let mut rev = bucket.create("k", "v0".into()).await.unwrap();
    revisions.push(rev);
    for i in 1..=6 {
        // Every other write, the stream's leader hands over to a peer first.
        if i % 2 == 0 {
            api_retry(
                &nc,
                "$JS.API.STREAM.LEADER.STEPDOWN.KV_cfg",
                Value::Null,
                WAIT,
            )
            .await;
        }
        let deadline = Instant::now() + WAIT;
        rev = loop {
            match bucket.update("k", format!("v{i}").into(), rev).await {
                Ok(r) => break r,
                Err(e) => {
                    // A write that was stored but whose ack was lost shows as the next revision.
                    let cur = bucket.entry("k").await.ok().flatten();
                    if let Some(cur) = cur.filter(|c| c.value == format!("v{i}").as_bytes()) {
                        break cur.revision;
                    }
                    assert!(Instant::now() < deadline, "update {i}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        revisions.push(rev);
    }
    // A stale revision is refused (compare-and-set).
    assert!(bucket
        .update("k", "stale".into(), revisions[0])
        .await
        .is_err());
    let e = bucket.entry("k").await.unwrap().unwrap();
    assert_eq!(e.value, "v6".as_bytes());
    assert_eq!(e.revision, rev);
    // History keeps the last five revisions.
    let hist: Vec<_> = bucket
        .history("k")
        .await
        .unwrap()
        .map(|e| e.unwrap().value)
        .collect()
        .await;
    let want: Vec<bytes::Bytes> = (2..=6).map(|i| format!("v{i}").into()).collect();
    assert_eq!(hist, want);
    // The watcher saw every value in order, across the leader changes.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 7 {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(Ok(e))) => seen.push(String::from_utf8(e.value.to_vec()).unwrap()),
            Ok(Some(Err(e))) => panic!("watch: {e}"),
            _ => panic!("watch saw only {seen:?}"),
        }
    }
    assert_eq!(seen, (0..=6).map(|i| format!("v{i}")).collect::<Vec<_>>());

    let store = js
        .create_object_store(object_store::Config {
            bucket: "blobs".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store.put("big", &mut data.as_slice()).await.unwrap();
    api_retry(
        &nc,
        "$JS.API.STREAM.LEADER.STEPDOWN.OBJ_blobs",
        Value::Null,
        WAIT,
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let back = loop {
        let r = async {
            let mut obj = store.get("big").await.ok()?;
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut out)
                .await
                .ok()?;
            Some(out)
        }
        .await;
        match r {
            Some(b) => break b,
            None => {
                assert!(Instant::now() < deadline, "object never read back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(back, data);
}

/// Every message of `stream` read back through an ordered pass of a fresh consumer: the
/// `Nats-Msg-Id`s in stream order.
async fn read_ids(nc: &async_nats::Client, stream: &str) -> Vec<String> {
    use async_nats::jetstream::{self, consumer::pull};
    use futures::StreamExt;
    let js = jetstream::new(nc.clone());
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let s = js.get_stream(stream).await.ok()?;
            let total = s.cached_info().state.messages as usize;
            let c = s
                .create_consumer(pull::Config {
                    ack_policy: jetstream::consumer::AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .ok()?;
            let mut ids = Vec::new();
            while ids.len() < total {
                let mut batch = c
                    .fetch()
                    .max_messages(1000)
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await
                    .ok()?;
                let before = ids.len();
                while let Some(Ok(m)) = batch.next().await {
                    let id = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    ids.push(id);
                }
                if ids.len() == before {
                    return None;
                }
            }
            Some(ids)
        }
        .await;
        if let Some(ids) = attempt {
            return ids;
        }
        assert!(Instant::now() < deadline, "could not read {stream} back");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_loses_nothing_over_twenty_leader_kills() {
    let _serial = SERIAL.lock().await;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let mut c = JsCluster::start(false, 3);
    let nc = connect(&c.urls()).await;
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let created = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.EVENTS",
        json!({"name": "EVENTS", "subjects": ["events.>"], "num_replicas": 3}),
        WAIT,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    // A publisher that retries each message until it is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (nc, stop, acked) = (nc.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publish_until_acked(&nc, "events.e", &format!("e{i}")).await;
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
        })
    };
    let kills = 20;
    for _ in 0..kills {
        // Let some publishes through under this leader, then kill it.
        let before = acked.load(Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        while acked.load(Ordering::Relaxed) < before + 20 {
            assert!(Instant::now() < deadline, "publishing stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leader = leader_of(&nc, "EVENTS").await;
        let i = c.index_of(&leader);
        c.kill(i);
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.restart(i);
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let acked = acked.load(Ordering::Relaxed);
    // Every server in turn leads and serves the whole stream.
    let mut per_server = Vec::new();
    for n in 0..c.nodes.len() {
        let name = c.nodes[n].name.clone();
        make_leader(&nc, "EVENTS", &name).await;
        per_server.push((name, read_ids(&nc, "EVENTS").await));
    }
    let want: Vec<String> = (0..acked).map(|i| format!("e{i}")).collect();
    for (name, ids) in &per_server {
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        let dup = ids.len() - unique.len();
        let lost = want
            .iter()
            .filter(|w| unique.binary_search(w).is_err())
            .count();
        println!(
            "figure: r3-leader-kills kills={kills} acked={acked} stored={} lost={lost} dup={dup} read_from={name}",
            ids.len()
        );
        assert_eq!(lost, 0, "{name} lost acknowledged messages");
        assert_eq!(dup, 0, "{name} holds duplicates");
    }
}

/// Waits until every replica of `stream` is current (a restarted server caught up).
async fn wait_current(nc: &async_nats::Client, stream: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = stream_info(nc, stream).await;
        let r = info["cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if r.len() == 2 && r.iter().all(|p| p["current"] == true) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not current: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_loses_nothing_over_a_rolling_restart() {
    let _serial = SERIAL.lock().await;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let mut c = JsCluster::start(false, 3);
    // One client per server, each listing all servers (first its own), as pods' clients do.
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut urls = vec![c.url(i)];
        urls.extend((0..3).filter(|j| *j != i).map(|j| c.url(j)));
        clients.push(connect(&urls.join(",")).await);
    }
    let nc = clients[0].clone();
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let created = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.ROLL",
        json!({"name": "ROLL", "subjects": ["roll.>"], "num_replicas": 3}),
        WAIT,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut counters = Vec::new();
    for (k, cl) in clients.iter().enumerate() {
        let (cl, stop) = (cl.clone(), stop.clone());
        let acked = Arc::new(AtomicU64::new(0));
        counters.push(acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publish_until_acked(&cl, "roll.x", &format!("c{k}-{i}")).await;
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut max_stall = Duration::ZERO;
    for i in (0..3).rev() {
        // The highest ordinal first, as a StatefulSet rolls.
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.stop(i);
        let total = || {
            counters
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let before = total();
        let t = Instant::now();
        let deadline = t + WAIT;
        while total() == before {
            assert!(
                Instant::now() < deadline,
                "publishing stalled after stopping {i}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        max_stall = max_stall.max(t.elapsed());
        c.start_node(i);
        // The operator's rollout gate: the restarted server says it is healthy only once its
        // meta view and its replica are current.
        let base = format!("http://{}", c.nodes[i].http);
        let deadline = Instant::now() + WAIT;
        loop {
            let r = common::http::get(&base, "/healthz").await;
            if r.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never healthy: {}",
                c.nodes[i].name,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_current(&nc, "ROLL").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<String> = counters
        .iter()
        .enumerate()
        .flat_map(|(k, a)| (0..a.load(Ordering::Relaxed)).map(move |i| format!("c{k}-{i}")))
        .collect();
    let ids = read_ids(&nc, "ROLL").await;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    let dup = ids.len() - unique.len();
    let lost = want
        .iter()
        .filter(|w| unique.binary_search(w).is_err())
        .count();
    let connected = clients
        .iter()
        .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
        .count();
    println!(
        "figure: r3-rolling-restart acked={} stored={} lost={lost} dup={dup} max_stall_ms={} clients_connected={connected}/3 took_ms={}",
        want.len(),
        ids.len(),
        max_stall.as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(lost, 0);
    assert_eq!(dup, 0);
    assert_eq!(connected, 3);
}

/// `/healthz` of a server whose peers are not up yet, and once they are: nats-server's answers.
async fn health_scenario(reference: bool) -> Vec<(String, Value)> {
    let mut c = JsCluster::configure(reference, 3, "");
    c.start_node(0);
    let base = format!("http://{}", c.nodes[0].http);
    let mut out = Vec::new();
    // Long enough for a lone server to have tried (and failed) to find a meta leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in [
        "/healthz",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=true",
    ] {
        let r = common::http::get(&base, path).await;
        out.push((
            format!("alone {path}"),
            json!({"status": r.status, "body": r.json()}),
        ));
    }
    c.start_node(1);
    c.start_node(2);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = common::http::get(&base, "/healthz").await;
        if r.status == 200 {
            out.push((
                "formed /healthz".into(),
                json!({"status": r.status, "body": r.json()}),
            ));
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_waits_for_the_meta_leader_as_nats_server() {
    let _serial = SERIAL.lock().await;
    let want = health_scenario(true).await;
    let got = health_scenario(false).await;
    assert_eq!(want, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_store_was_emptied_rejoins_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let mut c = JsCluster::start(false, 3);
    let nc = connect(&c.urls()).await;
    api_retry(&nc, "$JS.API.INFO", Value::Null, WAIT).await;
    let created = api_retry(
        &nc,
        "$JS.API.STREAM.CREATE.LOST",
        json!({"name": "LOST", "subjects": ["lost.>"], "num_replicas": 3}),
        WAIT,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    for i in 0..50 {
        publish_until_acked(&nc, "lost.x", &format!("l{i}")).await;
    }
    let leader = leader_of(&nc, "LOST").await;
    let victim = (0..3).find(|i| c.nodes[*i].name != leader).unwrap();
    let name = c.nodes[victim].name.clone();
    c.kill(victim);
    std::fs::remove_dir_all(c.dir.path().join(&name)).unwrap();
    for i in 50..60 {
        publish_until_acked(&nc, "lost.x", &format!("l{i}")).await;
    }
    c.start_node(victim);
    let base = format!("http://{}", c.nodes[victim].http);
    let deadline = Instant::now() + WAIT;
    while common::http::get(&base, "/healthz").await.status != 200 {
        assert!(Instant::now() < deadline, "{name} never healthy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_current(&nc, "LOST").await;
    make_leader(&nc, "LOST", &name).await;
    let ids = read_ids(&nc, "LOST").await;
    let want: Vec<String> = (0..60).map(|i| format!("l{i}")).collect();
    println!(
        "figure: r3-empty-store-rejoin acked=60 stored_on_rejoined={} lost={}",
        ids.len(),
        want.iter().filter(|w| !ids.contains(w)).count()
    );
    assert_eq!(ids, want);
}

/// The meta group as `/jsz` shows it and a meta leader stepdown from the system account.
async fn meta_scenario(reference: bool) -> Vec<(String, Value)> {
    let extra = "accounts { SYS { users [{user: sys, password: pass}] }, \
                 APP { users [{user: app, password: pass}], jetstream: enabled } }\n\
                 system_account: SYS\n";
    let c = JsCluster::start_with(reference, 3, extra);
    let connect_as = |user: &'static str| {
        let addrs: Vec<async_nats::ServerAddr> =
            c.urls().split(',').map(|u| u.parse().unwrap()).collect();
        async move {
            ConnectOptions::with_user_and_password(user.into(), "pass".into())
                .retry_on_initial_connect()
                .connect(addrs)
                .await
                .unwrap()
        }
    };
    let app = connect_as("app").await;
    let sys = connect_as("sys").await;
    api_retry(&app, "$JS.API.INFO", Value::Null, WAIT).await;
    let jsz = |i: usize| {
        let base = format!("http://{}", c.nodes[i].http);
        async move { common::http::get(&base, "/jsz").await.json() }
    };
    let keys = |v: &Value| -> Value {
        let mut k: Vec<String> = v
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        json!(k)
    };
    // Settle: every server agrees on the leader and the leader sees its peers current.
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        let mut leaders = Vec::new();
        for i in 0..3 {
            leaders.push(jsz(i).await["meta_cluster"]["leader"].clone());
        }
        if leaders.iter().all(|l| l.is_string() && *l == leaders[0]) {
            let li = c.index_of(leaders[0].as_str().unwrap());
            let doc = jsz(li).await;
            let reps = doc["meta_cluster"]["replicas"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if reps.len() == 2 && reps.iter().all(|r| r["current"] == true) {
                break li;
            }
        }
        assert!(Instant::now() < deadline, "meta group never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut out = Vec::new();
    let on_leader = jsz(leader).await;
    let follower = (leader + 1) % 3;
    let on_follower = jsz(follower).await;
    out.push(("leader keys".into(), keys(&on_leader["meta_cluster"])));
    out.push(("follower keys".into(), keys(&on_follower["meta_cluster"])));
    out.push((
        "replica keys".into(),
        keys(&on_leader["meta_cluster"]["replicas"][0]),
    ));
    out.push((
        "cluster_size".into(),
        on_leader["meta_cluster"]["cluster_size"].clone(),
    ));
    let r = api_retry(&sys, "$JS.API.META.LEADER.STEPDOWN", Value::Null, WAIT).await;
    out.push(("stepdown".into(), r));
    let old = c.nodes[leader].name.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let l = jsz(follower).await["meta_cluster"]["leader"].clone();
        if l.is_string() && l != old.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "meta leader never moved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.push(("moved".into(), json!(true)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_group_in_jsz_and_its_stepdown_as_nats_server() {
    let _serial = SERIAL.lock().await;
    let want = meta_scenario(true).await;
    let got = meta_scenario(false).await;
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "natrix differs from nats-server");
    }
}
