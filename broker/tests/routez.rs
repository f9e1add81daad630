//! `/routez?subs=1` and `subs=detail`: the remote interest of each route, as nats-server.

mod common;

use std::time::Duration;

use common::{
    cluster::{node_with, route_url},
    http::{get, get_json},
    sync, TestServer,
};
use serde_json::Value;

/// Starts a clustered, monitored server on ephemeral ports with `routes` as its seeds.
async fn node(name: &str, routes: Vec<String>) -> TestServer {
    node_with(name, routes, |o| o.http_port = -1).await
}

/// Polls `base` `/routez?{q}` until the route whose remote is `remote_id` satisfies `ok`.
async fn wait_route(base: &str, q: &str, remote_id: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let doc = get_json(base, &format!("/routez?{q}")).await;
        if let Some(r) = doc["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["remote_id"] == remote_id)
        {
            if ok(r) {
                return r.clone();
            }
            last = r.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("route to {remote_id} never matched on /routez?{q}: {last}");
}

/// A route's subscriptions without the system account's request services (four per server).
fn client_subs(route: &Value) -> u64 {
    route["subscriptions"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(4)
}

fn detail_for<'a>(route: &'a Value, subject: &str) -> Option<&'a Value> {
    route["subscriptions_list_detail"]
        .as_array()?
        .iter()
        .find(|d| d["subject"] == subject)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn routez_lists_remote_subscriptions() {
    let a = node("A", Vec::new()).await;
    let b = node("B", vec![route_url(&a)]).await;
    let cb = async_nats::connect(b.url()).await.unwrap();
    let _s1 = cb.subscribe("foo").await.unwrap();
    let _s2 = cb.queue_subscribe("bar", "q1".into()).await.unwrap();
    sync(&cb).await;
    let b_id = b.server.server_id.clone();

    // Without subs: no list. The first PING/PONG gives the route its round-trip time.
    let r = wait_route(&a.http(), "", &b_id, |r| {
        client_subs(r) == 2 && r["rtt"] != "0s"
    })
    .await;
    assert!(r.get("subscriptions_list").is_none(), "{r}");
    assert!(r.get("subscriptions_list_detail").is_none(), "{r}");

    let r = wait_route(&a.http(), "subs=1", &b_id, |r| client_subs(r) == 2).await;
    let mut list: Vec<&str> = r["subscriptions_list"]
        .as_array()
        .expect("subscriptions_list")
        .iter()
        .map(|s| s.as_str().unwrap())
        .filter(|s| !s.starts_with("$SYS."))
        .collect();
    list.sort();
    // Subjects only, as nats-server (no queue name).
    assert_eq!(list, ["bar", "foo"]);
    assert!(r.get("subscriptions_list_detail").is_none(), "{r}");

    // A message published on A is forwarded on behalf of `foo`.
    let ca = async_nats::connect(a.url()).await.unwrap();
    ca.publish("foo", "x".into()).await.unwrap();
    sync(&ca).await;
    let r = wait_route(&a.http(), "subs=detail", &b_id, |r| {
        detail_for(r, "foo").is_some_and(|d| d["msgs"] == 1)
    })
    .await;
    assert!(r.get("subscriptions_list").is_none(), "{r}");
    let rid = &r["rid"];
    let foo = detail_for(&r, "foo").unwrap();
    assert_eq!(foo["sid"], "R $G foo");
    assert_eq!(&foo["cid"], rid);
    assert!(foo.get("qgroup").is_none(), "{foo}");
    assert!(foo.get("account").is_none(), "{foo}");
    let bar = detail_for(&r, "bar").unwrap();
    assert_eq!(bar["qgroup"], "q1");
    assert_eq!(bar["sid"], "R $G bar q1");
    assert_eq!(bar["msgs"], 0);

    // A bad value is a 400 like the other endpoints; `DETAIL` is accepted in any case.
    assert_eq!(get(&a.http(), "/routez?subs=xx").await.status, 400);
    assert_eq!(get(&a.http(), "/routez?subs=DETAIL").await.status, 200);
    assert_eq!(get(&a.http(), "/routez?subs=false").await.status, 200);
}

/// The route object and its detail entries have nats-server's keys: a reference server
/// routed to Natrix, the same subscriptions on both sides, each side's route to the other.
#[tokio::test]
async fn routez_detail_keys_match_reference() {
    let a = node("A", Vec::new()).await;
    let r = common::RefServer::start(
        None,
        &[
            "-m",
            "-1",
            "--cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "test",
            "--routes",
            &route_url(&a),
        ],
    );
    let r_http = format!("http://{}", r.http.expect("reference monitoring"));
    let ca = async_nats::connect(a.url()).await.unwrap();
    let cr = async_nats::connect(format!("nats://{}", r.addr))
        .await
        .unwrap();
    let mut subs = Vec::new();
    for c in [&ca, &cr] {
        subs.push(c.subscribe("foo").await.unwrap());
        subs.push(c.queue_subscribe("bar", "q1".into()).await.unwrap());
        sync(c).await;
    }
    let a_id = a.server.server_id.clone();
    let ready = |r: &Value| detail_for(r, "foo").is_some() && detail_for(r, "bar").is_some();
    let theirs = wait_route(&r_http, "subs=detail", &a_id, ready).await;
    let r_id = get_json(&r_http, "/varz").await["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ours = wait_route(&a.http(), "subs=detail", &r_id, ready).await;
    for subject in ["foo", "bar"] {
        assert_eq!(
            keys(detail_for(&ours, subject).unwrap()),
            keys(detail_for(&theirs, subject).unwrap()),
            "detail keys of {subject}"
        );
    }
    let mut ours_keys = keys(&ours);
    let mut theirs_keys = keys(&theirs);
    // Only the subscription keys are in scope here.
    ours_keys.retain(|k| k.starts_with("subscriptions"));
    theirs_keys.retain(|k| k.starts_with("subscriptions"));
    assert_eq!(ours_keys, theirs_keys);
}
