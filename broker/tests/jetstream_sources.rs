//! Mirrors and sources, each scenario run against natrix and the reference nats-server:
//! the seeds' ORDERS/RETURNS → ARCHIVE → REPORT example, catching up across restarts,
//! sequence-preserving mirrors, filtered and transformed sources, and the configuration
//! errors.

mod common;

use std::time::{Duration, Instant};

use common::{
    js::{api, headers, publish_acked},
    proc::{self, Proc},
    tempdir::TempDir,
};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Reference,
    Natrix,
}

const BOTH: [Kind; 2] = [Kind::Reference, Kind::Natrix];

fn start(kind: Kind, dir: &TempDir) -> (Proc, String) {
    proc::jetstream(matches!(kind, Kind::Reference), dir.path())
}

async fn create(nc: &async_nats::Client, cfg: Value) -> Value {
    let name = cfg["name"].as_str().unwrap().to_string();
    api(nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await
}

async fn info(nc: &async_nats::Client, name: &str) -> Value {
    api(nc, &format!("$JS.API.STREAM.INFO.{name}"), json!({})).await
}

/// Polls the stream's info until it holds `n` messages (bounded by 20 s).
async fn wait_msgs(nc: &async_nats::Client, name: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let i = info(nc, name).await;
        if i["state"]["messages"].as_u64() == Some(n) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {n} messages: {i}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `n` messages `m<i>` to `subject`, each acknowledged.
async fn publish(nc: &async_nats::Client, subject: &str, n: usize) {
    for i in 0..n {
        publish_acked(nc, subject, None, format!("m{i}").into()).await;
    }
}

/// The message at `seq` as `(subject, headers, data)`.
async fn get(nc: &async_nats::Client, stream: &str, seq: u64) -> (String, String, String) {
    let r = api(
        nc,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        json!({ "seq": seq }),
    )
    .await;
    let m = &r["message"];
    let dec = |v: &Value| {
        v.as_str()
            .map(|s| {
                String::from_utf8(data_encoding::BASE64.decode(s.as_bytes()).unwrap()).unwrap()
            })
            .unwrap_or_default()
    };
    (
        m["subject"].as_str().unwrap_or_default().to_string(),
        dec(&m["hdrs"]),
        dec(&m["data"]),
    )
}

/// `Nats-Stream-Source` without its last token (the origin server's identity hash).
fn source_header(hdrs: &str) -> String {
    let v = hdrs
        .lines()
        .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
        .unwrap_or_else(|| panic!("no Nats-Stream-Source in {hdrs:?}"));
    let mut parts: Vec<&str> = v.split(' ').collect();
    assert_eq!(parts.len(), 6, "{v}");
    parts.pop();
    parts.join(" ")
}

/// The keys of a stream info's `mirror` or `sources` entry, with `active` known.
fn origin_shape(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn seeds_orders_returns_archive_report() {
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("seeds");
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        for (name, subj) in [("ORDERS", "ORDERS.*"), ("RETURNS", "RETURNS.*")] {
            let r = create(
                &nc,
                json!({"name": name, "subjects": [subj], "storage": "memory"}),
            )
            .await;
            assert!(r.get("error").is_none(), "{kind:?}: {r}");
        }
        let r = create(
            &nc,
            json!({"name": "ARCHIVE", "storage": "file",
                   "sources": [{"name": "ORDERS"}, {"name": "RETURNS"}]}),
        )
        .await;
        assert!(r.get("error").is_none(), "{kind:?}: {r}");
        assert_eq!(r["config"].get("subjects"), None, "{kind:?}: {r}");
        let r = create(
            &nc,
            json!({"name": "REPORT", "storage": "file", "mirror": {"name": "ARCHIVE"}}),
        )
        .await;
        assert!(r.get("error").is_none(), "{kind:?}: {r}");
        assert_eq!(r["mirror"]["name"], "ARCHIVE", "{kind:?}: {r}");
        assert_eq!(r["config"].get("duplicate_window"), None, "{kind:?}: {r}");

        publish(&nc, "ORDERS.new", 100).await;
        publish(&nc, "RETURNS.new", 100).await;
        let archive = wait_msgs(&nc, "ARCHIVE", 200).await;
        let report = wait_msgs(&nc, "REPORT", 200).await;
        assert_eq!(archive["state"]["last_seq"], 200, "{kind:?}");
        assert_eq!(report["state"]["last_seq"], 200, "{kind:?}");
        // The mirror keeps ARCHIVE's sequences and copies its messages as they are.
        for seq in [1, 100, 150, 200] {
            assert_eq!(
                get(&nc, "ARCHIVE", seq).await,
                get(&nc, "REPORT", seq).await,
                "{kind:?} seq {seq}"
            );
        }
        // Which origin's consumer starts first is up to timing: compare the set.
        let mut copied = Vec::new();
        for seq in 1..=200 {
            let (subj, hdrs, data) = get(&nc, "ARCHIVE", seq).await;
            copied.push((subj, source_header(&hdrs), data));
        }
        copied.sort();
        // The origins' direct consumers are not the users' consumers.
        let orders = info(&nc, "ORDERS").await;
        assert_eq!(orders["state"]["consumer_count"], 0, "{kind:?}");
        let names = api(&nc, "$JS.API.CONSUMER.NAMES.ORDERS", json!({})).await;
        assert_eq!(names["total"], 0, "{kind:?}: {names}");
        let sources = archive["sources"].as_array().unwrap().clone();
        assert_eq!(sources.len(), 2, "{kind:?}");
        let mut shape: Vec<Vec<String>> = sources.iter().map(origin_shape).collect();
        shape.sort();
        for s in &sources {
            assert_eq!(s["lag"], 0, "{kind:?}: {s}");
            assert!(s["active"].as_i64().unwrap() >= 0, "{kind:?}: {s}");
        }
        let mirror = report["mirror"].clone();
        assert_eq!(mirror["name"], "ARCHIVE");
        assert_eq!(mirror["lag"], 0);
        results.push((copied, shape, origin_shape(&mirror)));
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
}

#[tokio::test]
async fn sources_and_mirrors_catch_up_after_restarts() {
    for kind in BOTH {
        let dir = TempDir::new("restart");
        let (mut p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        for (name, subj) in [("O", "o.*"), ("R", "r.*")] {
            create(&nc, json!({"name": name, "subjects": [subj]})).await;
        }
        create(
            &nc,
            json!({"name": "A", "sources": [{"name": "O"}, {"name": "R"}]}),
        )
        .await;
        create(&nc, json!({"name": "M", "mirror": {"name": "A"}})).await;
        publish(&nc, "o.1", 30).await;
        publish(&nc, "r.1", 20).await;
        wait_msgs(&nc, "A", 50).await;
        wait_msgs(&nc, "M", 50).await;
        drop(nc);
        p.stop();

        // Everything comes back and carries on from where it was: nothing twice.
        let (mut p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        wait_msgs(&nc, "A", 50).await;
        publish(&nc, "o.2", 10).await;
        publish(&nc, "r.2", 15).await;
        let a = wait_msgs(&nc, "A", 75).await;
        wait_msgs(&nc, "M", 75).await;
        // Stop the mirror's and the sources' origin side while they are idle, then
        // publish more after the restart.
        drop(nc);
        p.stop();
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        publish(&nc, "o.3", 5).await;
        let a2 = wait_msgs(&nc, "A", 80).await;
        let m = wait_msgs(&nc, "M", 80).await;
        assert_eq!(a2["state"]["last_seq"], 80, "{kind:?}: {a}");
        assert_eq!(m["state"]["last_seq"], 80, "{kind:?}");
        // Per origin, the source sequences are 1..n once each.
        let mut seen: Vec<(String, u64)> = Vec::new();
        for seq in 1..=80 {
            let (_, hdrs, _) = get(&nc, "A", seq).await;
            let h = source_header(&hdrs);
            let mut t = h.split(' ');
            let origin = t.next().unwrap().to_string();
            let n: u64 = t.next().unwrap().parse().unwrap();
            seen.push((origin, n));
        }
        seen.sort();
        let want: Vec<(String, u64)> = (1..=45)
            .map(|n| ("O".to_string(), n))
            .chain((1..=35).map(|n| ("R".to_string(), n)))
            .collect();
        assert_eq!(seen, want, "{kind:?}");
    }
}

#[tokio::test]
async fn mirrors_keep_origin_sequences_and_start_options() {
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("seq");
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        create(&nc, json!({"name": "O", "subjects": ["o.>"]})).await;
        publish(&nc, "o.a", 10).await;
        // Holes in the origin: a purge below 4 and a deleted message.
        api(&nc, "$JS.API.STREAM.PURGE.O", json!({"seq": 4})).await;
        api(&nc, "$JS.API.STREAM.MSG.DELETE.O", json!({"seq": 6})).await;
        create(&nc, json!({"name": "M", "mirror": {"name": "O"}})).await;
        create(
            &nc,
            json!({"name": "S", "mirror": {"name": "O", "opt_start_seq": 8}}),
        )
        .await;
        create(
            &nc,
            json!({"name": "F", "mirror": {"name": "O", "filter_subject": "o.b"}}),
        )
        .await;
        publish(&nc, "o.b", 2).await;
        let m = wait_msgs(&nc, "M", 8).await;
        let s = wait_msgs(&nc, "S", 5).await;
        let f = wait_msgs(&nc, "F", 2).await;
        let state = |v: &Value| {
            (
                v["state"]["first_seq"].clone(),
                v["state"]["last_seq"].clone(),
                v["state"]["messages"].clone(),
            )
        };
        // The stored timestamps are the origin's.
        let to = api(&nc, "$JS.API.STREAM.MSG.GET.O", json!({"seq": 9})).await;
        let tm = api(&nc, "$JS.API.STREAM.MSG.GET.M", json!({"seq": 9})).await;
        assert_eq!(to["message"]["time"], tm["message"]["time"], "{kind:?}");
        results.push((state(&m), state(&s), state(&f)));
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    let (m, s, f) = &results[1];
    assert_eq!(*m, (json!(4), json!(12), json!(8)));
    assert_eq!(*s, (json!(8), json!(12), json!(5)));
    assert_eq!(f.0, json!(11));
}

#[tokio::test]
async fn filtered_and_transformed_sources() {
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("xform");
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        create(&nc, json!({"name": "O", "subjects": ["orders.*"]})).await;
        let r = create(
            &nc,
            json!({"name": "A", "subjects": ["arch"], "sources": [
                {"name": "O", "filter_subject": "orders.x"},
                {"name": "O", "subject_transforms": [{"src": "orders.*", "dest": "t.{{wildcard(1)}}"}]}
            ]}),
        )
        .await;
        assert!(r.get("error").is_none(), "{kind:?}: {r}");
        publish(&nc, "orders.x", 1).await;
        publish(&nc, "orders.y", 1).await;
        publish(&nc, "arch", 1).await;
        wait_msgs(&nc, "A", 4).await;
        let mut msgs = Vec::new();
        for seq in 1..=4 {
            let (subj, hdrs, data) = get(&nc, "A", seq).await;
            let h = if hdrs.contains("Nats-Stream-Source") {
                source_header(&hdrs)
            } else {
                String::new()
            };
            msgs.push((subj, h, data));
        }
        msgs.sort();
        results.push(msgs);
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert!(results[1].contains(&(
        "t.y".to_string(),
        "O 2 orders.* t.{{wildcard(1)}} orders.y".to_string(),
        "m0".to_string()
    )));
    assert!(results[1].contains(&(
        "orders.x".to_string(),
        "O 1 orders.x > orders.x".to_string(),
        "m0".to_string()
    )));
}

/// Copies keep their origin's TTL and rollup headers but obey them only where the copying
/// stream allows them (a mirror never); the origin's consistency headers are dropped, so a
/// copy is never refused for them.
#[tokio::test]
async fn copies_obey_ttl_and_rollup_only_where_allowed() {
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("copyhdr");
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        create(
            &nc,
            json!({"name": "X", "subjects": ["x.>"], "allow_rollup_hdrs": true, "allow_msg_ttl": true}),
        )
        .await;
        for cfg in [
            json!({"name": "Y", "sources": [{"name": "X"}]}),
            json!({"name": "YR", "sources": [{"name": "X"}], "allow_rollup_hdrs": true}),
            json!({"name": "YT", "sources": [{"name": "X"}], "allow_msg_ttl": true}),
            json!({"name": "Z", "mirror": {"name": "X"}}),
        ] {
            let r = create(&nc, cfg).await;
            assert!(r.get("error").is_none(), "{kind:?}: {r}");
        }
        let pubh =
            |subject: &'static str, body: &'static str, hdrs: Vec<(&'static str, &'static str)>| {
                let nc = nc.clone();
                async move {
                    publish_acked(&nc, subject, Some(headers(&hdrs)), body.into()).await;
                }
            };
        pubh(
            "x.1",
            "a",
            vec![
                ("Nats-Expected-Stream", "X"),
                ("Nats-Expected-Last-Sequence", "0"),
                ("Nats-Expected-Last-Subject-Sequence", "0"),
                ("Nats-Msg-Id", "m1"),
                ("Foo", "bar"),
            ],
        )
        .await;
        for name in ["Y", "YR", "YT", "Z"] {
            wait_msgs(&nc, name, 1).await;
        }
        pubh("x.1", "b", vec![("Nats-Rollup", "sub")]).await;
        pubh("x.2", "t", vec![("Nats-TTL", "1s")]).await;
        let mut out = Vec::new();
        for (name, n) in [("Y", 3), ("YR", 2), ("YT", 3), ("Z", 3)] {
            let i = wait_msgs(&nc, name, n).await;
            out.push((name, i["state"]["messages"].clone()));
        }
        // The TTL'd message goes from X and YT only.
        wait_msgs(&nc, "YT", 2).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for name in ["X", "Y", "YR", "YT", "Z"] {
            out.push((name, info(&nc, name).await["state"]["messages"].clone()));
        }
        let (_, hdrs, _) = get(&nc, "Y", 1).await;
        let mut kept: Vec<&str> = hdrs
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with("Nats-Stream-Source"))
            .collect();
        kept.sort();
        let (_, mirrored, _) = get(&nc, "Z", 1).await;
        // (the client's header map does not keep the order headers were set in)
        let mut mirrored: Vec<&str> = mirrored.lines().filter(|l| !l.is_empty()).collect();
        mirrored.sort();
        results.push((out, kept.join("|"), mirrored.join("|")));
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1].1, "Foo: bar|Nats-Msg-Id: m1");
}

#[tokio::test]
async fn configuration_errors_match_reference() {
    let cases = [
        json!({"name": "X", "subjects": ["x"], "mirror": {"name": "O"}}),
        json!({"name": "X", "mirror": {"name": "O"}, "sources": [{"name": "O"}]}),
        json!({"name": "X", "mirror": {"name": ""}}),
        json!({"name": "X", "mirror": {"name": "X"}}),
        json!({"name": "X", "mirror": {"name": "O"}, "first_seq": 5}),
        json!({"name": "X", "mirror": {"name": "O", "filter_subject": "a",
               "subject_transforms": [{"src": "b", "dest": "c"}]}}),
        json!({"name": "X", "sources": [{"name": "O"}, {"name": "O"}]}),
        json!({"name": "X", "sources": [{"name": ""}]}),
        json!({"name": "X", "sources": [{"name": "O", "external": {"api": "$JS.h.API", "deliver": "d.*"}}]}),
    ];
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("errs");
        let (_p, url) = start(kind, &dir);
        let nc = async_nats::connect(&url).await.unwrap();
        create(&nc, json!({"name": "O", "subjects": ["o"]})).await;
        let mut errs = Vec::new();
        for c in &cases {
            errs.push(create(&nc, c.clone()).await["error"].clone());
        }
        // Updates: a mirror cannot change, but can be promoted to a plain stream.
        create(&nc, json!({"name": "M", "mirror": {"name": "O"}})).await;
        let u = |cfg: Value| api(&nc, "$JS.API.STREAM.UPDATE.M", cfg);
        errs.push(
            u(json!({"name": "M", "mirror": {"name": "O", "filter_subject": "o"}})).await["error"]
                .clone(),
        );
        let promoted = u(json!({"name": "M"})).await;
        errs.push(promoted["config"]["subjects"].clone());
        errs.push(promoted.get("mirror").cloned().unwrap_or(Value::Null));
        results.push(errs);
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1][0]["err_code"], 10034);
}

/// A config with accounts A (the origin) and B (sourcing from A through `external`), with the
/// exports and imports nats-server's documentation gives for cross-account sourcing.
const CROSS_ACCOUNT: &str = r#"
listen: 127.0.0.1:-1
jetstream { store_dir: "STORE" }
accounts {
  A: {
    jetstream: enabled
    users: [{user: a, password: a}]
    exports: [
      {service: "$JS.API.CONSUMER.CREATE.>"}
      {service: "$JS.API.CONSUMER.DELETE.>"}
      {service: "$JS.FC.>"}
      {stream: "deliver.b.>"}
    ]
  }
  B: {
    jetstream: enabled
    users: [{user: b, password: b}]
    imports: [
      {service: {account: A, subject: "$JS.API.CONSUMER.CREATE.>"}, to: "$JS.A.API.CONSUMER.CREATE.>"}
      {service: {account: A, subject: "$JS.API.CONSUMER.DELETE.>"}, to: "$JS.A.API.CONSUMER.DELETE.>"}
      {service: {account: A, subject: "$JS.FC.>"}}
      {stream: {account: A, subject: "deliver.b.>"}}
    ]
  }
}
"#;

#[tokio::test]
async fn external_sources_across_accounts() {
    let mut results = Vec::new();
    for kind in BOTH {
        let dir = TempDir::new("ext");
        let conf = dir.path().join("nats.conf");
        let store = dir.path().join("store");
        std::fs::write(
            &conf,
            CROSS_ACCOUNT.replace("STORE", &store.display().to_string()),
        )
        .unwrap();
        let args = ["-c", conf.to_str().unwrap()];
        let p = match kind {
            Kind::Reference => Proc::reference(&args),
            Kind::Natrix => Proc::natrix(&args),
        };
        let addr = p.ready();
        let a = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(format!("nats://{addr}"))
            .await
            .unwrap();
        let b = async_nats::ConnectOptions::with_user_and_password("b".into(), "b".into())
            .connect(format!("nats://{addr}"))
            .await
            .unwrap();
        create(&a, json!({"name": "O", "subjects": ["o.*"]})).await;
        publish(&a, "o.1", 20).await;
        let r = create(
            &b,
            json!({"name": "S", "sources": [{"name": "O",
                "external": {"api": "$JS.A.API", "deliver": "deliver.b"}}]}),
        )
        .await;
        assert!(r.get("error").is_none(), "{kind:?}: {r}");
        let r = create(
            &b,
            json!({"name": "M", "mirror": {"name": "O",
                "external": {"api": "$JS.A.API", "deliver": "deliver.b"}}}),
        )
        .await;
        assert!(r.get("error").is_none(), "{kind:?}: {r}");
        publish(&a, "o.2", 20).await;
        let s = wait_msgs(&b, "S", 40).await;
        let m = wait_msgs(&b, "M", 40).await;
        let (subj, hdrs, data) = get(&b, "S", 40).await;
        let src = s["sources"][0].clone();
        results.push((
            subj,
            source_header(&hdrs),
            data,
            origin_shape(&src),
            src["external"].clone(),
            m["state"]["last_seq"].clone(),
        ));
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
}
