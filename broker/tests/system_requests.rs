//! The system account's request services against the reference nats-server: `PING` with
//! statsz, `PING.<X>` and per-server monitoring documents, per-account `CONNZ`, and filters
//! that leave a server silent.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{conf, RefServer};
use serde_json::Value;

const CONF: &str = r#"
listen: "127.0.0.1:-1"
server_name: srv
accounts {
  SYS { users [{user: sys, password: sys}] }
  A { users [{user: a, password: a}] }
}
system_account: SYS
"#;

async fn user(url: &str, u: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(u.into(), u.into())
        .connect(url)
        .await
        .unwrap()
}

async fn ask(nc: &async_nats::Client, subject: &str, body: &str) -> Option<Value> {
    match tokio::time::timeout(
        Duration::from_millis(700),
        nc.request(subject.to_string(), body.to_string().into()),
    )
    .await
    {
        Ok(Ok(m)) => serde_json::from_slice(&m.payload).ok(),
        _ => None,
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn observe(url: &str) -> Vec<(String, Value)> {
    let sys = user(url, "sys").await;
    let _a = user(url, "a").await;
    common::sync(&sys).await;
    let mut out = Vec::new();
    let ping = ask(&sys, "$SYS.REQ.SERVER.PING", "")
        .await
        .expect("ping answered");
    out.push((
        "ping keys".into(),
        Value::from(keys(&ping).into_iter().collect::<Vec<_>>()),
    ));
    out.push((
        "statsz keys".into(),
        Value::from(keys(&ping["statsz"]).into_iter().collect::<Vec<_>>()),
    ));
    out.push(("server name".into(), ping["server"]["name"].clone()));
    out.push(("connections".into(), ping["statsz"]["connections"].clone()));
    let id = ping["server"]["id"].as_str().unwrap().to_string();
    let h = ask(&sys, "$SYS.REQ.SERVER.PING.HEALTHZ", "").await;
    out.push((
        "healthz".into(),
        h.map(|v| v["data"].clone()).unwrap_or(Value::Null),
    ));
    let v = ask(&sys, &format!("$SYS.REQ.SERVER.{id}.VARZ"), "").await;
    out.push((
        "varz by id".into(),
        v.map(|v| v["data"]["server_name"].clone())
            .unwrap_or(Value::Null),
    ));
    let c = ask(&sys, "$SYS.REQ.ACCOUNT.A.CONNZ", "").await;
    out.push((
        "account connz".into(),
        c.map(|v| v["data"]["num_connections"].clone())
            .unwrap_or(Value::Null),
    ));
    let f = ask(&sys, "$SYS.REQ.SERVER.PING", r#"{"server_name":"other"}"#).await;
    out.push(("filtered out".into(), Value::Bool(f.is_none())));
    let f = ask(
        &sys,
        "$SYS.REQ.SERVER.PING.VARZ",
        r#"{"server_name":"srv"}"#,
    )
    .await;
    out.push(("filtered in".into(), Value::Bool(f.is_some())));
    // Connect and disconnect advisories for account A.
    let mut events = sys.subscribe("$SYS.ACCOUNT.A.*").await.unwrap();
    common::sync(&sys).await;
    let a2 = user(url, "a").await;
    common::sync(&a2).await;
    drop(a2);
    for _ in 0..2 {
        let e = tokio::time::timeout(
            Duration::from_secs(3),
            futures::StreamExt::next(&mut events),
        )
        .await
        .ok()
        .flatten();
        let v: Value = e
            .and_then(|m| serde_json::from_slice(&m.payload).ok())
            .unwrap_or(Value::Null);
        out.push((
            "event".into(),
            serde_json::json!({
                "type": v["type"],
                "acc": v["client"]["acc"],
                "user": v["client"]["user"],
                "kind": v["client"]["kind"],
                "reason": v["reason"],
                "has_server": v["server"]["id"].is_string(),
            }),
        ));
    }
    out
}

#[tokio::test]
async fn system_requests_match_reference() {
    let reference = RefServer::start(Some(CONF), &[]);
    let ours = conf::start_conf(CONF, false).await;
    let want = observe(&format!("nats://{}", reference.addr)).await;
    let got = observe(&ours.url()).await;
    let diffs: Vec<String> = want
        .iter()
        .zip(got.iter())
        .filter(|(w, g)| w != g)
        .map(|((l, w), (_, g))| format!("{l}:\n  reference: {w}\n  natrix:    {g}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// A route coming up publishes STATSZ at once (nats-server's resolver in a mixed cluster only
/// waits for servers it has heard from), not only at the 30 s tick.
#[tokio::test]
async fn statsz_is_published_when_a_route_comes_up() {
    let a = conf::start_conf(
        &format!("{CONF}cluster {{ name: c, listen: \"127.0.0.1:-1\" }}\n"),
        false,
    )
    .await;
    let sys = user(&a.url(), "sys").await;
    let mut statsz = sys.subscribe("$SYS.SERVER.*.STATSZ").await.unwrap();
    common::sync(&sys).await;
    let route = format!(
        "nats-route://{}",
        natrix_broker::cluster::Cluster::of(&a.server)
            .unwrap()
            .listen_addr
            .read()
            .unwrap()
    );
    let _b = conf::start_conf(
        &format!(
            "{}cluster {{ name: c, listen: \"127.0.0.1:-1\", routes: [\"{route}\"] }}\n",
            CONF.replace("server_name: srv", "server_name: srv2")
        ),
        false,
    )
    .await;
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut statsz),
    )
    .await
    .expect("a STATSZ when the route came up, well before the 30 s tick")
    .unwrap();
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(v["statsz"]["connections"].is_u64(), "{v}");
    assert!(v["server"]["name"].is_string(), "{v}");
}
