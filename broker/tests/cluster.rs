//! Core NATS clustering: in-process servers joined by routes (full mesh from one seed),
//! interest propagation, queue groups across servers, and gossip of client URLs.

mod common;

use std::time::Duration;

use common::{
    cluster::{node, node_with, num_routes, route_url, wait_routes},
    conf, sync, TestServer,
};
use futures::StreamExt;
use natrix_broker::options::ClusterOptions;

/// Waits until `s` sees remote interest for `subject` on `routes` routes.
async fn wait_interest(s: &TestServer, subject: &str, routes: usize) {
    for _ in 0..200 {
        let c = natrix_broker::cluster::Cluster::of(&s.server).unwrap();
        let n = c
            .routes()
            .iter()
            .filter(|r| r.matches("$G", subject).is_some_and(|m| !m.is_empty()))
            .count();
        if n >= routes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("interest in {subject} never reached {routes} routes");
}

async fn three() -> (TestServer, TestServer, TestServer) {
    let a = node("A", Vec::new()).await;
    let seed = route_url(&a);
    let b = node("B", vec![seed.clone()]).await;
    let c = node("C", vec![seed]).await;
    wait_routes(&[&a, &b, &c], 2).await;
    (a, b, c)
}

async fn count(sub: &mut async_nats::Subscriber, wait: Duration) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(wait, sub.next()).await {
        n += 1;
    }
    n
}

#[tokio::test]
async fn full_mesh_from_one_seed() {
    let (a, b, c) = three().await;
    for s in [&a, &b, &c] {
        let cl = natrix_broker::cluster::Cluster::of(&s.server).unwrap();
        let mut ids: Vec<String> = cl.routes().iter().map(|r| r.remote_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&s.server.server_id));
    }
}

#[tokio::test]
async fn pub_reaches_other_servers_once() {
    let (a, b, c) = three().await;
    let ca = async_nats::connect(a.url()).await.unwrap();
    let cb = async_nats::connect(b.url()).await.unwrap();
    let cc = async_nats::connect(c.url()).await.unwrap();
    let mut sb = cb.subscribe("foo").await.unwrap();
    let mut sc = cc.subscribe("foo").await.unwrap();
    // Wildcards across routes.
    let mut wild = cc.subscribe("foo.>").await.unwrap();
    sync(&cb).await;
    sync(&cc).await;
    wait_interest(&a, "foo", 2).await;
    wait_interest(&a, "foo.bar", 1).await;
    for i in 0..10 {
        ca.publish("foo", format!("{i}").into()).await.unwrap();
    }
    ca.publish("foo.bar", "w".into()).await.unwrap();
    ca.flush().await.unwrap();
    assert_eq!(count(&mut sb, Duration::from_millis(300)).await, 10);
    assert_eq!(count(&mut sc, Duration::from_millis(300)).await, 10);
    assert_eq!(count(&mut wild, Duration::from_millis(300)).await, 1);
    // Request/reply across servers.
    let mut svc = cc.subscribe("svc").await.unwrap();
    sync(&cc).await;
    wait_interest(&b, "svc", 1).await;
    let responder = cc.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                responder.publish(r, "pong".into()).await.unwrap();
                responder.flush().await.unwrap();
            }
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(2), cb.request("svc", "ping".into()))
        .await
        .expect("in time")
        .expect("answered");
    assert_eq!(&resp.payload[..], b"pong");
}

#[tokio::test]
async fn queue_group_across_three_servers() {
    let (a, b, c) = three().await;
    let mut subs = Vec::new();
    let mut clients = Vec::new();
    for s in [&a, &b, &c] {
        let cl = async_nats::connect(s.url()).await.unwrap();
        subs.push(cl.queue_subscribe("work", "q".into()).await.unwrap());
        sync(&cl).await;
        clients.push(cl);
    }
    wait_interest(&a, "work", 2).await;
    let p = async_nats::connect(a.url()).await.unwrap();
    for i in 0..300 {
        p.publish("work", format!("{i}").into()).await.unwrap();
    }
    p.flush().await.unwrap();
    let mut total = 0;
    let mut per = Vec::new();
    for s in subs.iter_mut() {
        let n = count(s, Duration::from_millis(400)).await;
        per.push(n);
        total += n;
    }
    assert_eq!(total, 300, "each message once cluster-wide: {per:?}");
    assert!(per.iter().all(|n| *n > 0), "spread over servers: {per:?}");
}

#[tokio::test]
async fn unsubscribe_stops_remote_delivery() {
    let (a, b, _c) = three().await;
    let ca = async_nats::connect(a.url()).await.unwrap();
    let cb = async_nats::connect(b.url()).await.unwrap();
    let mut sb = cb.subscribe("gone").await.unwrap();
    sync(&cb).await;
    wait_interest(&a, "gone", 1).await;
    sb.unsubscribe().await.unwrap();
    sync(&cb).await;
    for _ in 0..200 {
        let still = natrix_broker::cluster::Cluster::of(&a.server)
            .unwrap()
            .routes()
            .iter()
            .any(|r| r.matches("$G", "gone").is_some_and(|m| !m.is_empty()));
        if !still {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let before: u64 = natrix_broker::cluster::Cluster::of(&a.server)
        .unwrap()
        .routes()
        .iter()
        .map(|r| r.stats.out_msgs.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    ca.publish("gone", "x".into()).await.unwrap();
    ca.flush().await.unwrap();
    let after: u64 = natrix_broker::cluster::Cluster::of(&a.server)
        .unwrap()
        .routes()
        .iter()
        .map(|r| r.stats.out_msgs.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(before, after, "no RMSG without remote interest");
}

#[tokio::test]
async fn killing_one_server_leaves_the_others_working() {
    let (a, b, c) = three().await;
    drop(a);
    wait_routes(&[&b, &c], 1).await;
    let cb = async_nats::connect(b.url()).await.unwrap();
    let cc = async_nats::connect(c.url()).await.unwrap();
    let mut sc = cc.subscribe("after").await.unwrap();
    sync(&cc).await;
    wait_interest(&b, "after", 1).await;
    cb.publish("after", "x".into()).await.unwrap();
    cb.flush().await.unwrap();
    assert_eq!(count(&mut sc, Duration::from_millis(300)).await, 1);
}

#[tokio::test]
async fn connect_urls_gossiped_to_clients() {
    let (a, b, c) = three().await;
    let want: Vec<String> = [&a, &b, &c].iter().map(|s| s.addr.to_string()).collect();
    for _ in 0..200 {
        let urls = a.server.info().connect_urls;
        if want.iter().all(|u| urls.contains(u)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let urls = a.server.info().connect_urls;
    for u in &want {
        assert!(urls.contains(u), "{u} in {urls:?}");
    }
    assert_eq!(a.server.info().cluster.as_deref(), Some("test"));
    // /routez and /varz report the routes.
    let cl = natrix_broker::cluster::Cluster::of(&a.server).unwrap();
    let rz = cl.routez(false, false);
    assert_eq!(rz.len(), 2);
    assert!(rz.iter().all(|r| r["remote_id"].as_str().is_some()));
}

#[tokio::test]
async fn clients_get_async_info_when_a_server_joins() {
    let a = node("A", Vec::new()).await;
    let mut raw = common::Raw::connect_with(a.addr, r#"{"protocol":1,"verbose":false}"#).await;
    raw.send("PING\r\n").await;
    let _ = raw.read_for(Duration::from_millis(100)).await;
    let b = node("B", vec![route_url(&a)]).await;
    wait_routes(&[&a, &b], 1).await;
    let got = raw.read_for(Duration::from_millis(500)).await;
    assert!(got.contains("INFO "), "async INFO: {got}");
    assert!(got.contains(&b.addr.to_string()), "B's URL: {got}");
}

#[tokio::test]
async fn natrix_and_reference_server_route_both_ways() {
    let a = node("A", Vec::new()).await;
    let seed = route_url(&a);
    let r = common::RefServer::start(
        None,
        &[
            "--cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "test",
            "--routes",
            &seed,
        ],
    );
    // nats-server dials Natrix; its INFO registers it here.
    for _ in 0..200 {
        if num_routes(&a) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(num_routes(&a), 1);
    let ca = async_nats::connect(a.url()).await.unwrap();
    let cr = async_nats::connect(format!("nats://{}", r.addr))
        .await
        .unwrap();
    let mut on_natrix = ca.subscribe("to.natrix").await.unwrap();
    let mut on_ref = cr.subscribe("to.ref").await.unwrap();
    let mut q_natrix = ca.queue_subscribe("work", "q".into()).await.unwrap();
    let mut q_ref = cr.queue_subscribe("work", "q".into()).await.unwrap();
    sync(&ca).await;
    sync(&cr).await;
    wait_interest(&a, "to.ref", 1).await;
    wait_interest(&a, "work", 1).await;
    // nats-server has no API here: retry until its interest from Natrix arrived.
    let mut got = 0;
    for _ in 0..40 {
        cr.publish("to.natrix", "hi".into()).await.unwrap();
        cr.flush().await.unwrap();
        got += count(&mut on_natrix, Duration::from_millis(50)).await;
        if got > 0 {
            break;
        }
    }
    assert_eq!(got, 1, "reference -> Natrix");
    ca.publish("to.ref", "hi".into()).await.unwrap();
    let mut hdrs = async_nats::HeaderMap::new();
    hdrs.insert("X-Test", "1");
    ca.publish_with_headers("to.ref", hdrs, "h".into())
        .await
        .unwrap();
    ca.flush().await.unwrap();
    let m1 = tokio::time::timeout(Duration::from_secs(2), on_ref.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m1.payload[..], b"hi");
    let m2 = tokio::time::timeout(Duration::from_secs(2), on_ref.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m2.headers.unwrap().get("X-Test").unwrap().as_str(), "1");
    for i in 0..100 {
        let c = if i % 2 == 0 { &ca } else { &cr };
        c.publish("work", "w".into()).await.unwrap();
    }
    ca.flush().await.unwrap();
    cr.flush().await.unwrap();
    let n1 = count(&mut q_natrix, Duration::from_millis(400)).await;
    let n2 = count(&mut q_ref, Duration::from_millis(400)).await;
    assert_eq!(n1 + n2, 100, "queue group once across both: {n1} + {n2}");
}

#[tokio::test]
async fn routes_listing_ourselves_are_ignored() {
    // As a Kubernetes StatefulSet config: every server lists every server, itself included.
    let a = node("A", Vec::new()).await;
    let a_url = route_url(&a);
    let b = TestServer::start_with(|o| {
        o.cluster = Some(ClusterOptions {
            name: Some("test".into()),
            host: "127.0.0.1".into(),
            port: -1,
            routes: vec![a_url.clone()],
            ..ClusterOptions::default()
        });
    })
    .await;
    wait_routes(&[&a, &b], 1).await;
    // A third server whose list includes its own (already bound) address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = TestServer::start_with(|o| {
        o.cluster = Some(ClusterOptions {
            name: Some("test".into()),
            host: "127.0.0.1".into(),
            port: port as i32,
            routes: vec![format!("nats-route://127.0.0.1:{port}"), a_url.clone()],
            ..ClusterOptions::default()
        });
    })
    .await;
    wait_routes(&[&a, &b, &c], 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [&a, &b, &c] {
        assert_eq!(num_routes(s), 2);
    }
}

#[tokio::test]
async fn no_advertise_keeps_connect_urls_out() {
    let a = TestServer::start_with(|o| {
        o.cluster = Some(ClusterOptions {
            host: "127.0.0.1".into(),
            port: -1,
            no_advertise: true,
            ..ClusterOptions::default()
        });
    })
    .await;
    let b = node("B", vec![route_url(&a)]).await;
    wait_routes(&[&a, &b], 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a.server.info().connect_urls.is_empty());
    // B hears nothing of A's client URL either.
    assert!(!b.server.info().connect_urls.contains(&a.addr.to_string()));
    // A generated cluster name is still reported.
    assert!(a.server.info().cluster.is_some());
}

/// A route-authorized server: `authorization { user: ruser, password: rpass }` in `cluster`.
async fn auth_node(name: &str, routes: Vec<String>) -> TestServer {
    node_with(name, routes, |o| {
        o.cluster.as_mut().unwrap().auth = Some(natrix_broker::options::RouteAuth {
            user: "ruser".into(),
            password: "rpass".into(),
        });
    })
    .await
}

/// Waits (bounded) for `s` to have `n` routes; returns how many it has.
async fn routes_after(s: &TestServer, n: usize) -> usize {
    for _ in 0..120 {
        if num_routes(s) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    num_routes(s)
}

#[tokio::test]
async fn route_authorization_with_the_reference_server() {
    let a = auth_node("A", Vec::new()).await;
    let hp = route_url(&a)
        .trim_start_matches("nats-route://")
        .to_string();
    // nats-server with the right credentials in its route URL joins.
    let good = common::RefServer::start(
        None,
        &[
            "--cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "test",
            "--routes",
            &format!("nats-route://ruser:rpass@{hp}"),
        ],
    );
    assert_eq!(
        routes_after(&a, 1).await,
        1,
        "right credentials form a route"
    );
    drop(good);
    assert_eq!(routes_after(&a, 0).await, 0);
    // Wrong credentials: refused, no route.
    let _bad = common::RefServer::start(
        None,
        &[
            "--cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "test",
            "--routes",
            &format!("nats-route://ruser:wrong@{hp}"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(num_routes(&a), 0, "wrong credentials are refused");
    // Natrix dialing an authorized nats-server presents the cluster's credentials.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "cluster {{ listen: \"127.0.0.1:{port}\", name: test, authorization {{ user: ruser, password: rpass }} }}\n"
    );
    let _r = common::RefServer::start(Some(&conf), &[]);
    let b = auth_node("B", vec![format!("nats-route://127.0.0.1:{port}")]).await;
    assert_eq!(
        routes_after(&b, 1).await,
        1,
        "Natrix presents the credentials to nats-server"
    );
}

#[tokio::test]
async fn lame_duck_server_leaves_connect_urls() {
    let a = node("A", Vec::new()).await;
    let b = node("B", vec![route_url(&a)]).await;
    wait_routes(&[&a, &b], 1).await;
    let a_url = a.addr.to_string();
    // B advertises A's client URL once the routes have exchanged INFOs.
    let mut seen = false;
    for _ in 0..120 {
        if b.server.info().connect_urls.contains(&a_url) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "B advertises A: {:?}", b.server.info().connect_urls);
    // A client keeps A in its grace period (it would shut down at once without clients, and
    // its routes would go with it).
    let _keep = async_nats::connect(a.url()).await.unwrap();
    let server = a.server.clone();
    tokio::spawn(async move { server.lame_duck_mode().await });
    let mut gone = false;
    for _ in 0..120 {
        if !b.server.info().connect_urls.contains(&a_url) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        gone,
        "A in lame duck mode leaves B's connect_urls: {:?}",
        b.server.info().connect_urls
    );
    assert_eq!(num_routes(&b), 1, "the route stays during the grace period");
}

#[tokio::test]
async fn reload_adds_and_removes_routes() {
    let a = node("A", Vec::new()).await;
    let b = node("B", Vec::new()).await;
    assert_eq!(num_routes(&a), 0);
    let mut opts = (*a.server.options()).clone();
    opts.cluster.as_mut().unwrap().routes = vec![route_url(&b)];
    a.server.reload(opts.clone()).await.unwrap();
    assert_eq!(
        routes_after(&a, 1).await,
        1,
        "a route added by reload is dialed"
    );
    assert_eq!(routes_after(&b, 1).await, 1);
    opts.cluster.as_mut().unwrap().routes = Vec::new();
    a.server.reload(opts).await.unwrap();
    assert_eq!(
        routes_after(&a, 0).await,
        0,
        "a route removed by reload is closed"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(num_routes(&a), 0, "and not redialed");
}

/// Reloading the route `authorization` applies at once: accepted routes that no longer pass
/// are closed, and routes presenting the new credentials are accepted (nats-server reloads
/// cluster authorization live too).
#[tokio::test]
async fn reload_of_route_authorization_applies_to_routes() {
    let a = auth_node("A", Vec::new()).await;
    let with =
        |pass: &str| route_url(&a).replace("nats-route://", &format!("nats-route://ruser:{pass}@"));
    let b = node("B", vec![with("rpass")]).await;
    assert_eq!(
        routes_after(&a, 1).await,
        1,
        "B authenticates with the old password"
    );
    let mut opts = (*a.server.options()).clone();
    opts.cluster.as_mut().unwrap().auth = Some(natrix_broker::options::RouteAuth {
        user: "ruser".into(),
        password: "newpass".into(),
    });
    a.server.reload(opts).await.unwrap();
    assert_eq!(
        routes_after(&a, 0).await,
        0,
        "the old credentials no longer pass"
    );
    let mut bo = (*b.server.options()).clone();
    bo.cluster.as_mut().unwrap().routes = vec![with("newpass")];
    b.server.reload(bo).await.unwrap();
    assert_eq!(routes_after(&a, 1).await, 1, "the new credentials do");
}

const IMPORTS: &str = r#"
accounts {
  A {
    users [{user: a, password: a}]
    exports [ {stream: "feed.>"}, {service: "svc"} ]
  }
  B {
    users [{user: b, password: b}]
    imports [
      {stream: {account: A, subject: "feed.>"}}
      {service: {account: A, subject: "svc"}}
    ]
  }
}
"#;

async fn login(s: &TestServer, u: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(u.into(), u.into())
        .connect(s.url())
        .await
        .unwrap()
}

/// Imports work across routes: a stream exported by A and published on one server reaches
/// B's subscriber on another (once), and B's request to A's service is answered by a
/// responder on another server, once per request even with responders on both.
#[tokio::test]
async fn account_imports_cross_routes() {
    let one = conf::start_conf(
        &format!("{IMPORTS}cluster {{ name: c, listen: \"127.0.0.1:-1\" }}\n"),
        false,
    )
    .await;
    let two = conf::start_conf(
        &format!(
            "{IMPORTS}cluster {{ name: c, listen: \"127.0.0.1:-1\", routes: [\"{}\"] }}\n",
            route_url(&one)
        ),
        false,
    )
    .await;
    wait_routes(&[&one, &two], 1).await;

    // Stream import: published in A on one, received in B on two.
    let b2 = login(&two, "b").await;
    let mut feed = b2.subscribe("feed.>").await.unwrap();
    sync(&b2).await;
    let a1 = login(&one, "a").await;
    a1.publish("feed.x", "hello".into()).await.unwrap();
    sync(&a1).await;
    let m = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the imported stream crosses the route")
        .unwrap();
    assert_eq!(m.subject.as_str(), "feed.x");
    assert_eq!(
        count(&mut feed, Duration::from_millis(300)).await,
        0,
        "once"
    );

    // Service import: B's request on one, A's responder on two.
    let a2 = login(&two, "a").await;
    let mut svc = a2.queue_subscribe("svc", "q".into()).await.unwrap();
    tokio::spawn({
        let a2 = a2.clone();
        async move {
            while let Some(m) = svc.next().await {
                if let Some(r) = m.reply {
                    a2.publish(r, "two".into()).await.unwrap();
                }
            }
        }
    });
    sync(&a2).await;
    let b1 = login(&one, "b").await;
    let mut answered = None;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(500), b1.request("svc", "q".into())).await
        {
            Ok(Ok(r)) => {
                answered = Some(r.payload);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        answered.as_deref(),
        Some(&b"two"[..]),
        "answered across the route"
    );

    // A responder in the same queue group on one as well: each request answered once.
    let mut svc1 = a1.queue_subscribe("svc", "q".into()).await.unwrap();
    tokio::spawn({
        let a1 = a1.clone();
        async move {
            while let Some(m) = svc1.next().await {
                if let Some(r) = m.reply {
                    a1.publish(r, "one".into()).await.unwrap();
                }
            }
        }
    });
    sync(&a1).await;
    let inbox = b1.new_inbox();
    let mut replies = b1.subscribe(inbox.clone()).await.unwrap();
    sync(&b1).await;
    for _ in 0..20 {
        b1.publish_with_reply("svc", inbox.clone(), "q".into())
            .await
            .unwrap();
    }
    sync(&b1).await;
    let mut n = 0;
    while tokio::time::timeout(Duration::from_secs(2), replies.next())
        .await
        .ok()
        .flatten()
        .is_some()
    {
        n += 1;
        if n == 20 {
            break;
        }
    }
    assert_eq!(n, 20, "every request answered");
    assert_eq!(
        count(&mut replies, Duration::from_millis(300)).await,
        0,
        "once each"
    );
}
