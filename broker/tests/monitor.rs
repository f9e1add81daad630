//! Monitoring endpoints of an in-process broker: values, sorting, paging, errors.

mod common;

use std::time::Duration;

use common::{
    http::{get, get_json, wait_json},
    Raw, TestServer,
};
use serde_json::Value;

async fn start() -> TestServer {
    TestServer::start_with(|o| o.http_port = -1).await
}

fn cids(v: &Value) -> Vec<u64> {
    v["connections"]
        .as_array()
        .expect("connections array")
        .iter()
        .map(|c| c["cid"].as_u64().unwrap())
        .collect()
}

/// Connects a raw client named `name`, subscribes to `subs` (sid 1, 2, ...).
async fn client(ts: &TestServer, name: &str, subs: &[&str]) -> Raw {
    let mut raw = Raw::connect_with(
        ts.addr,
        &format!(r#"{{"verbose":false,"name":"{name}","lang":"test","version":"9.9"}}"#),
    )
    .await;
    for (i, s) in subs.iter().enumerate() {
        raw.send(&format!("SUB {s} {}\r\n", i + 1)).await;
    }
    raw.send("PING\r\n").await;
    assert_eq!(raw.line().await.as_deref(), Some("PONG"));
    raw
}

#[tokio::test]
async fn varz_reports_counters_and_options() {
    let ts = start().await;
    let nc = async_nats::connect(ts.url()).await.unwrap();
    let mut sub = nc.subscribe("foo").await.unwrap();
    nc.flush().await.unwrap();
    nc.publish("foo", "hello".into()).await.unwrap();
    nc.publish("foo", "hi".into()).await.unwrap();
    nc.flush().await.unwrap();
    use futures::StreamExt;
    sub.next().await.unwrap();
    sub.next().await.unwrap();

    let r = get(&ts.http(), "/varz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let v = r.json();
    assert_eq!(v["server_id"], ts.server.server_id.as_str());
    assert_eq!(v["connections"], 1);
    assert_eq!(v["total_connections"], 1);
    assert_eq!(v["in_msgs"], 2);
    assert_eq!(v["out_msgs"], 2);
    assert_eq!(v["in_bytes"], 7);
    assert_eq!(v["out_bytes"], 7);
    assert_eq!(v["in_client_msgs"], 2);
    // The system account's request services are subscriptions too (nats-server counts them).
    let internal = ts
        .server
        .system_account
        .num_subs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(v["subscriptions"].as_u64().unwrap() - internal, 1);
    assert_eq!(v["ping_interval"], 120_000_000_000u64);
    assert_eq!(v["write_deadline"], 10_000_000_000u64);
    assert_eq!(v["auth_timeout"], 2);
    assert_eq!(v["max_payload"], 1_048_576);
    assert_eq!(v["max_connections"], 65_536);
    assert_eq!(v["port"], ts.addr.port());
    assert_eq!(v["http_req_stats"]["/varz"], 1);
    assert!(v["mem"].as_i64().unwrap() > 0);
    assert!(v["uptime"].as_str().unwrap().ends_with('s'));
    assert!(v["start"].as_str().unwrap().ends_with('Z'));
    for k in [
        "cluster",
        "gateway",
        "leaf",
        "mqtt",
        "websocket",
        "jetstream",
    ] {
        assert_eq!(v[k], serde_json::json!({}), "{k}");
    }
    assert_eq!(v["slow_consumer_stats"]["clients"], 0);
    // Field order follows nats-server.
    let body = &r.body;
    let pos = |k: &str| {
        body.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert!(pos("server_id") < pos("server_name") && pos("max_pending") < pos("cluster"));
    assert!(pos("now") < pos("uptime") && pos("http_req_stats") < pos("config_load_time"));

    // Counting is per path and includes the current request.
    get(&ts.http(), "/healthz").await;
    let v = get_json(&ts.http(), "/varz").await;
    assert_eq!(v["http_req_stats"]["/varz"], 2);
    assert_eq!(v["http_req_stats"]["/healthz"], 1);
}

#[tokio::test]
async fn connz_lists_connections_and_subscriptions() {
    let ts = start().await;
    let mut a = client(&ts, "alice", &["foo", "bar.*"]).await;
    a.send("SUB foo q 3\r\n").await;
    let _b = client(&ts, "bob", &[">"]).await;
    let mut p = client(&ts, "pub", &[]).await;
    p.send("PUB foo 5\r\nhello\r\nPING\r\n").await;
    assert_eq!(p.line().await.as_deref(), Some("PONG"));

    let v = wait_json(&ts.http(), "/connz", |v| {
        v["connections"][0]["out_msgs"] == 2
    })
    .await;
    assert_eq!(v["num_connections"], 3);
    assert_eq!(v["total"], 3);
    assert_eq!(v["offset"], 0);
    assert_eq!(v["limit"], 1024);
    let c0 = &v["connections"][0];
    assert_eq!(c0["kind"], "Client");
    assert_eq!(c0["type"], "nats");
    assert_eq!(c0["ip"], "127.0.0.1");
    assert_eq!(c0["name"], "alice");
    assert_eq!(c0["lang"], "test");
    assert_eq!(c0["version"], "9.9");
    assert_eq!(c0["subscriptions"], 3);
    assert_eq!(c0["out_msgs"], 2);
    assert_eq!(c0["out_bytes"], 10);
    assert!(c0.get("subscriptions_list").is_none());
    assert!(c0["rtt"].as_str().unwrap().ends_with('s'));
    let c2 = &v["connections"][2];
    assert_eq!(c2["in_msgs"], 1);
    assert_eq!(c2["in_bytes"], 5);
    assert!(c2.get("lang").is_some());

    let v = get_json(&ts.http(), "/connz?subs=1").await;
    let mut subs: Vec<String> = v["connections"][0]["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    subs.sort();
    assert_eq!(subs, ["bar.*", "foo", "foo"]);
    assert!(
        v["connections"][2].get("subscriptions_list").is_none(),
        "no subs, no list"
    );

    let v = get_json(&ts.http(), "/connz?subs=detail").await;
    let d = v["connections"][0]["subscriptions_list_detail"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0]["subject"], "foo");
    assert_eq!(d[0]["sid"], "1");
    assert_eq!(d[0]["msgs"], 1);
    assert_eq!(d[0]["cid"], v["connections"][0]["cid"]);
    assert_eq!(d[2]["qgroup"], "q");
    assert!(d[0].get("qgroup").is_none());
    assert!(d[0].get("account").is_none());

    let v = get_json(&ts.http(), "/connz?auth=1").await;
    assert_eq!(v["connections"][0]["name_tag"], "$G");
    assert!(v["connections"][0].get("account").is_none());
}

#[tokio::test]
async fn connz_sorts_by_every_key() {
    let ts = start().await;
    let _a = client(&ts, "a", &["x"]).await;
    let _b = client(&ts, "b", &["x", "y", "z"]).await;
    let mut c = client(&ts, "c", &["x", "y"]).await;
    c.send("PUB x 3\r\nabc\r\nPUB x 1\r\nd\r\nPING\r\n").await;
    c.until_pong().await;
    let base = ts.http();
    wait_json(&base, "/connz", |v| v["connections"][0]["out_msgs"] == 2).await;
    let all = cids(&get_json(&base, "/connz").await);
    let (a, b, c) = (all[0], all[1], all[2]);
    assert!(a < b && b < c);

    assert_eq!(cids(&get_json(&base, "/connz?sort=cid").await), [a, b, c]);
    assert_eq!(cids(&get_json(&base, "/connz?sort=start").await), [a, b, c]);
    assert_eq!(cids(&get_json(&base, "/connz?sort=subs").await), [b, c, a]);
    assert_eq!(cids(&get_json(&base, "/connz?sort=msgs_from").await)[0], c);
    assert_eq!(cids(&get_json(&base, "/connz?sort=bytes_from").await)[0], c);
    // Every client subscribes to x, so each received both messages (c through echo).
    let v = get_json(&base, "/connz?sort=msgs_to").await;
    assert_eq!(v["connections"][0]["out_msgs"], 2);
    let v = get_json(&base, "/connz?sort=bytes_to").await;
    assert_eq!(v["connections"][0]["out_bytes"], 4);
    assert_eq!(
        cids(&get_json(&base, "/connz?sort=uptime").await)[0],
        a,
        "oldest first"
    );
    assert_eq!(
        cids(&get_json(&base, "/connz?sort=last").await)[0],
        c,
        "most recent activity first"
    );
    for key in ["pending", "idle", "rtt"] {
        let v = get_json(&base, &format!("/connz?sort={key}")).await;
        assert_eq!(v["num_connections"], 3, "{key}");
    }

    let r = get(&base, "/connz?sort=foo").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "invalid sorting option: foo");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    for (q, msg) in [
        ("sort=stop", "sort by stop only valid on closed connections"),
        (
            "sort=reason",
            "sort by reason only valid on closed connections",
        ),
        (
            "sort=stop&state=all",
            "sort by stop only valid on closed connections",
        ),
    ] {
        let r = get(&base, &format!("/connz?{q}")).await;
        assert_eq!((r.status, r.body.as_str()), (400, msg), "{q}");
    }
    assert_eq!(
        get(&base, "/connz?sort=stop&state=closed").await.status,
        200
    );
    assert_eq!(
        get(&base, "/connz?sort=reason&state=closed").await.status,
        200
    );
}

#[tokio::test]
async fn connz_pages_and_filters_by_cid() {
    let ts = start().await;
    let _a = client(&ts, "a", &[]).await;
    let _b = client(&ts, "b", &[]).await;
    let _c = client(&ts, "c", &[]).await;
    let base = ts.http();
    let all = cids(&get_json(&base, "/connz").await);
    assert_eq!(all.len(), 3);

    let v = get_json(&base, "/connz?limit=1&offset=1").await;
    assert_eq!(
        (v["num_connections"].as_u64(), v["total"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        (v["offset"].as_u64(), v["limit"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(cids(&v), [all[1]]);
    let v = get_json(&base, "/connz?offset=10").await;
    assert_eq!(v["num_connections"], 0);
    assert_eq!(v["connections"], serde_json::json!([]));
    let v = get_json(&base, "/connz?limit=-1&offset=-4").await;
    assert_eq!(
        (v["limit"].as_u64(), v["offset"].as_u64()),
        (Some(1024), Some(0))
    );

    let v = get_json(&base, &format!("/connz?cid={}", all[2])).await;
    assert_eq!(cids(&v), [all[2]]);
    assert_eq!(v["limit"], 1);
    assert_eq!(v["total"], 3);
    let v = get_json(&base, "/connz?cid=9999").await;
    assert_eq!(v["num_connections"], 0);

    // Account filter: $G holds everything; an unknown account gives nats-server's bare document.
    assert_eq!(get_json(&base, "/connz?acc=$G").await["total"], 3);
    let v = get_json(&base, "/connz?acc=nope").await;
    assert_eq!(v["server_id"], "");
    assert_eq!(v["connections"], Value::Null);
    // mqtt_client is accepted and ignored for plain clients.
    assert_eq!(get(&base, "/connz?mqtt_client=x").await.status, 200);
}

#[tokio::test]
async fn connz_keeps_closed_connections_with_reasons() {
    let ts = start().await;
    let base = ts.http();
    let keep = client(&ts, "keeper", &["k"]).await;
    let gone = client(&ts, "closer", &["a", "b"]).await;
    drop(gone);
    let mut bad = Raw::connect(ts.addr).await;
    bad.send("CONNECT {not json}\r\n").await;
    assert!(bad.is_closed().await);

    let v = wait_json(&base, "/connz?state=closed", |v| v["total"] == 2).await;
    assert_eq!(v["total"], 2, "{v}");
    let closed = v["connections"].as_array().unwrap();
    assert_eq!(closed[0]["name"], "closer");
    assert_eq!(closed[0]["reason"], "Client Closed");
    assert_eq!(closed[0]["subscriptions"], 2);
    assert!(closed[0]["stop"].as_str().unwrap().ends_with('Z'));
    assert_eq!(closed[1]["reason"], "Protocol Violation");

    let v = get_json(&base, "/connz?state=closed&subs=1").await;
    assert_eq!(
        v["connections"][0]["subscriptions_list"],
        serde_json::json!(["a", "b"])
    );

    let v = get_json(&base, "/connz?state=any").await;
    assert_eq!(
        (v["total"].as_u64(), v["num_connections"].as_u64()),
        (Some(3), Some(3))
    );
    let open = get_json(&base, "/connz?state=open").await;
    assert_eq!(open["total"], 1);
    assert!(open["connections"][0].get("stop").is_none());
    assert!(open["connections"][0].get("reason").is_none());

    let v = get_json(&base, "/connz?state=closed&sort=reason").await;
    assert_eq!(v["connections"][0]["reason"], "Client Closed");
    let v = get_json(&base, "/connz?state=closed&sort=stop").await;
    assert_eq!(
        v["connections"][0]["reason"], "Protocol Violation",
        "most recent stop first"
    );
    let closed_cid = v["connections"][1]["cid"].as_u64().unwrap();
    let v = get_json(&base, &format!("/connz?state=closed&cid={closed_cid}")).await;
    assert_eq!(v["connections"][0]["name"], "closer");

    let v = get_json(&base, "/varz").await;
    assert_eq!(v["connections"], 1);
    assert_eq!(v["total_connections"], 3);
    drop(keep);
}

#[tokio::test]
async fn subsz_stats_list_and_test_filter() {
    let ts = start().await;
    let base = ts.http();
    let _a = client(&ts, "a", &["foo.bar", "foo.*", "baz"]).await;
    let mut b = client(&ts, "b", &[">"]).await;
    b.send("SUB foo.bar grp 2\r\nPUB foo.bar 2\r\nhi\r\nPING\r\n")
        .await;
    b.until_pong().await;

    let v = get_json(&base, "/subsz").await;
    // The system account's request services are counted as nats-server counts its own.
    let internal = ts
        .server
        .system_account
        .num_subs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(v["num_subscriptions"].as_u64().unwrap(), 5 + internal);
    assert_eq!(v["num_inserts"].as_u64().unwrap(), 5 + internal);
    assert_eq!(v["total"], 0);
    assert_eq!(v["limit"], 1024);
    assert!(v["num_matches"].as_u64().unwrap() >= 1);
    assert!(v.get("subscriptions_list").is_none());
    for k in ["cache_hit_rate", "avg_fanout"] {
        assert!(v[k].is_number(), "{k}");
    }

    let v = get_json(&base, "/subsz?subs=1").await;
    assert_eq!(v["total"].as_u64().unwrap(), 5 + internal);
    let list = v["subscriptions_list"].as_array().unwrap();
    let clients: Vec<&Value> = list.iter().filter(|s| s["account"] != "$SYS").collect();
    assert_eq!(clients.len(), 5);
    assert!(clients
        .iter()
        .all(|s| s["account"] == "$G" && s["account_tag"] == "$G"));

    let v = get_json(&base, "/subsz?subs=1&test=foo.bar").await;
    assert_eq!(v["total"], 4);
    let mut subjects: Vec<&str> = v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, [">", "foo.*", "foo.bar", "foo.bar"]);
    let q = v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["qgroup"] == "grp");
    assert_eq!(q.unwrap()["msgs"], 1);

    let v = get_json(&base, "/subsz?subs=1&limit=2&offset=1").await;
    assert_eq!(v["subscriptions_list"].as_array().unwrap().len(), 2);
    assert_eq!(
        (v["total"].as_u64(), v["offset"].as_u64()),
        (Some(5 + internal), Some(1))
    );
    let v = get_json(&base, "/subsz?subs=1&test=other").await;
    assert_eq!(v["total"], 1, "only the full wildcard matches");
    assert_eq!(v["subscriptions_list"][0]["subject"], ">");
    let v = get_json(&base, "/subsz?subs=1&test=other&acc=none").await;
    assert_eq!(v["total"], 0);
    assert!(v.get("subscriptions_list").is_none());
    let v = get_json(&base, "/subsz?subs=1&acc=other").await;
    assert_eq!(v["num_subscriptions"], 0);

    let r = get(&base, "/subsz?test=foo.*").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "invalid test subject, must be valid publish subject: foo.*"
    );
    let v = get_json(&base, "/subscriptionsz").await;
    assert_eq!(v["num_subscriptions"].as_u64().unwrap(), 5 + internal);
    assert_eq!(
        get_json(&base, "/varz").await["http_req_stats"]["/subsz"],
        9
    );
}

#[tokio::test]
async fn bad_arguments_answer_400_like_nats_server() {
    let ts = start().await;
    let base = ts.http();
    let cases = [
        ("/connz?limit=abc", "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"),
        ("/connz?offset=x", "Error decoding int for 'offset': strconv.Atoi: parsing \"x\": invalid syntax"),
        ("/connz?state=bogus", "Error decoding state for bogus"),
        ("/connz?subs=foo", "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"foo\": invalid syntax"),
        ("/connz?auth=foo", "Error decoding boolean for 'auth': strconv.ParseBool: parsing \"foo\": invalid syntax"),
        ("/connz?cid=abc", "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"abc\": invalid syntax"),
        ("/subsz?subs=foo", "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"foo\": invalid syntax"),
        ("/subsz?limit=x", "Error decoding int for 'limit': strconv.Atoi: parsing \"x\": invalid syntax"),
        ("/routez?subs=foo", "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"foo\": invalid syntax"),
        (
            "/healthz?js-enabled-only=foo",
            "Error decoding boolean for 'js-enabled-only': strconv.ParseBool: parsing \"foo\": invalid syntax",
        ),
    ];
    for (path, msg) in cases {
        let r = get(&base, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.body, msg, "{path}");
    }
    for path in ["/nope", "/connz/", "/varz/x"] {
        let r = get(&base, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, "404 page not found\n");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // Accepted spellings.
    for path in [
        "/connz?subs=true",
        "/connz?subs=T",
        "/connz?state=ANY",
        "/connz?subs=DETAIL",
        "/connz?auth=0",
    ] {
        assert_eq!(get(&base, path).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn healthz_and_other_endpoints() {
    let ts = start().await;
    let base = ts.http();
    for path in [
        "/healthz",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=1",
        "/healthz?js-enabled=true",
    ] {
        let r = get(&base, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, r#"{"status":"ok"}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let v = get_json(&base, "/routez").await;
    assert_eq!(
        (v["num_routes"].as_u64(), v["routes"].clone()),
        (Some(0), serde_json::json!([]))
    );
    let v = get_json(&base, "/accountz").await;
    assert_eq!(v["accounts"], serde_json::json!(["$G", "$SYS"]));
    assert_eq!(v["system_account"], "$SYS");
    let v = get_json(&base, "/accountz?acc=$G").await;
    assert_eq!(v["account_detail"]["account_name"], "$G");
    assert_eq!(get(&base, "/accountz?acc=nope").await.status, 400);
    let v = get_json(&base, "/jsz").await;
    assert_eq!(v["disabled"], true);
    assert_eq!(get_json(&base, "/leafz").await["leafnodes"], 0);
    assert_eq!(
        get_json(&base, "/gatewayz").await["outbound_gateways"],
        serde_json::json!({})
    );

    // JSONP, as nats-server before 2.11 (2.15 ignores `callback`; dashboards still send it).
    let r = get(&base, "/varz?callback=cb").await;
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert!(r.body.starts_with("cb({"), "{}", r.body);
    assert!(r.body.ends_with("})"));
    let inner: serde_json::Value = serde_json::from_str(&r.body[3..r.body.len() - 1]).unwrap();
    assert!(inner["server_id"].is_string());
    // Errors are not wrapped.
    let r = get(&base, "/connz?sort=foo&callback=cb").await;
    assert_eq!(r.status, 400);
    assert!(!r.body.starts_with("cb("));

    let r = get(&base, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    for link in [
        "href=./varz",
        "href=./connz",
        "href=./subsz",
        "href=./routez",
        "href=./healthz class=last",
    ] {
        assert!(r.body.contains(link), "{link}");
    }
}

#[tokio::test]
async fn base_path_prefixes_every_route() {
    let ts = TestServer::start_with(|o| {
        o.http_port = -1;
        o.http_base_path = "/nats/".into();
    })
    .await;
    let base = ts.http();
    assert_eq!(get(&base, "/varz").await.status, 404);
    assert_eq!(get(&base, "/").await.status, 404);
    let v = get_json(&base, "/nats/varz").await;
    assert_eq!(v["http_base_path"], "/nats/");
    assert_eq!(get(&base, "/nats/connz").await.status, 200);
    assert_eq!(get(&base, "/nats/healthz").await.status, 200);
    let r = get(&base, "/nats").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("href=./nats/varz"), "{}", r.body);
    let v = get_json(&base, "/nats/varz").await;
    assert_eq!(v["http_req_stats"]["/"], 1);
    assert_eq!(v["http_req_stats"]["/varz"], 2);
}

#[tokio::test]
async fn rtt_is_measured_for_clients_with_a_lang() {
    let ts = start().await;
    let nc = async_nats::connect(ts.url()).await.unwrap();
    nc.flush().await.unwrap();
    // The first /connz asks the client for a PONG, as nats-server's getRTT does.
    let first = get_json(&ts.http(), "/connz").await;
    assert_eq!(first["connections"][0]["lang"], "rust");
    let v = wait_json(&ts.http(), "/connz", |v| v["connections"][0]["rtt"] != "0s").await;
    let rtt = v["connections"][0]["rtt"].as_str().unwrap().to_string();
    assert_ne!(rtt, "0s");
    assert!(rtt.ends_with('s'));
    tokio::time::sleep(Duration::from_millis(10)).await;
}
