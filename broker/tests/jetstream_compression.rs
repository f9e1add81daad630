//! `compression: s2` streams against the reference nats-server: the same configurations
//! accepted and refused with the same answers, and a compressed stream's messages read back
//! the same after the server is killed (`kill -9`) and started again on its store.

mod common;

use common::{
    js::{api, stored},
    jsdiff::on_both,
    proc, tempdir,
};
use serde_json::{json, Value};

/// The error of an answer, or what `pick` takes from its config.
fn error_or(v: &Value, pick: &[&str]) -> Value {
    match v.get("error") {
        Some(e) => e.clone(),
        None => pick.iter().map(|k| v["config"][k].clone()).collect(),
    }
}

#[tokio::test]
async fn compression_settings_match_reference() {
    on_both("js-s2-config", |nc| async move {
        let mut out = Vec::new();
        for (name, extra) in [
            ("F", json!({"compression": "s2"})),
            ("M", json!({"compression": "s2", "storage": "memory"})),
            ("N", json!({"compression": "none"})),
            ("D", json!({})),
            ("E", json!({"compression": ""})),
            ("U", json!({"compression": "S2"})),
            ("Z", json!({"compression": "zstd"})),
            ("I", json!({"compression": 1})),
            (
                "KV_b",
                json!({"compression": "s2", "max_msgs_per_subject": 5,
                            "allow_rollup_hdrs": true, "deny_delete": true,
                            "allow_direct": true}),
            ),
        ] {
            let mut cfg = json!({"name": name, "subjects": [name.to_lowercase()]});
            for (k, v) in extra.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let v = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
            // A number is refused by both; the words of Go's JSON decoder are its own.
            let shown = match (name, v.get("error")) {
                ("I", Some(e)) => json!([e["code"], e["err_code"]]),
                _ => error_or(&v, &["compression", "storage"]),
            };
            out.push((format!("create {name}"), shown));
        }
        let v = api(&nc, "$JS.API.STREAM.INFO.F", json!({})).await;
        out.push(("info F".into(), error_or(&v, &["compression"])));
        for (label, compression) in [("off", "none"), ("on", "s2"), ("bad", "lz4")] {
            let v = api(
                &nc,
                "$JS.API.STREAM.UPDATE.F",
                json!({"name": "F", "subjects": ["f"], "compression": compression}),
            )
            .await;
            out.push((format!("update F {label}"), error_or(&v, &["compression"])));
        }
        let v = api(
            &nc,
            "$JS.API.STREAM.UPDATE.D",
            json!({"name": "D", "subjects": ["d"], "compression": "s2"}),
        )
        .await;
        out.push(("update D on".into(), error_or(&v, &["compression"])));
        let v = api(&nc, "$JS.API.STREAM.LIST", json!({})).await;
        let mut listed: Vec<Value> = v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!([s["config"]["name"], s["config"]["compression"]]))
            .collect();
        listed.sort_by_key(|v| v.to_string());
        out.push(("list".into(), json!(listed)));
        out
    })
    .await;
}

/// A compressible payload: a JSON-looking record of about 1 KiB.
fn payload(i: usize) -> String {
    let fields: Vec<String> = (0..24)
        .map(|f| format!("\"field{f}\":\"value-{}-{}\"", f * 7, i % 13))
        .collect();
    format!("{{\"n\":{i},{}}}", fields.join(","))
}

/// Bytes of the block files under `dir`, at any depth.
fn stored_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                stored_bytes(&p)
            } else if p.extension().is_some_and(|x| x == "blk") {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}

/// Publishes `N` acknowledged messages to a compressed stream, kills the server, starts it
/// again on the same store; returns what is then read back and the bytes stored on disk.
async fn kill_and_restart(reference: bool) -> (Vec<(String, Value)>, u64, u64) {
    const N: usize = 2000;
    let dir = tempdir::TempDir::new("js-s2-restart");
    let (mut server, url) = proc::jetstream(reference, dir.path());
    let nc = async_nats::connect(&url).await.unwrap();
    api(
        &nc,
        "$JS.API.STREAM.CREATE.C",
        json!({"name": "C", "subjects": ["c.>"], "compression": "s2"}),
    )
    .await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut raw = 0u64;
    for i in 0..N {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Trace", format!("trace-{}", i % 7).as_str());
        let body = payload(i);
        raw += body.len() as u64;
        js.publish_with_headers(format!("c.{}", i % 5), h, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    drop(nc);
    server.signal("KILL");
    server.wait_exit();
    let (_server, url) = proc::jetstream(reference, dir.path());
    let nc = async_nats::connect(&url).await.unwrap();
    let mut out = Vec::new();
    let info = api(&nc, "$JS.API.STREAM.INFO.C", json!({})).await;
    let st = &info["state"];
    out.push((
        "state".into(),
        json!([
            st["messages"],
            st["first_seq"],
            st["last_seq"],
            info["config"]["compression"]
        ]),
    ));
    let mut lost = 0;
    for seq in 1..=N {
        let got = stored(&nc, "C", json!({"seq": seq})).await;
        if got["data"] != json!(payload(seq - 1)) {
            lost += 1;
        }
        if seq % 250 == 1 {
            out.push((format!("msg {seq}"), got));
        }
    }
    let last = stored(&nc, "C", json!({"last_by_subj": "c.3"})).await;
    out.push(("last c.3".into(), last));
    out.push(("lost".into(), json!(lost)));
    (out, raw, stored_bytes(dir.path()))
}

#[tokio::test]
async fn compressed_stream_survives_kill_as_reference() {
    let (want, _, ref_disk) = kill_and_restart(true).await;
    let (got, raw, disk) = kill_and_restart(false).await;
    let lost = got.iter().find(|(l, _)| l == "lost").unwrap().1.clone();
    println!(
        "figure: s2-restart acked=2000 lost={lost} payload_bytes={raw} natrix_disk={disk} \
         reference_disk={ref_disk}"
    );
    assert_eq!(want, got);
    assert_eq!(lost, json!(0));
    // The messages really went to disk compressed (stored as they are, they take more than
    // their payload). nats-server compresses a block only once it is full, so its figure
    // for a stream this small is the uncompressed one.
    assert!(
        disk < raw * 3 / 4,
        "{disk} bytes on disk for {raw} of payload"
    );
}
