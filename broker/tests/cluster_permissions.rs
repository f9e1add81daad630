//! Route permissions (`cluster { permissions { import, export } }`), against the reference:
//! two servers of one implementation, the first restricting what it takes from and gives to
//! its routes; the same subscriptions and publications must reach the same subscribers.

mod common;

use std::time::Duration;

use common::{
    proc::{addr_after, Proc},
    tempdir::TempDir,
};
use futures::StreamExt;

const RESTRICTED: &str = r#"
cluster {
  name: perms
  listen: "127.0.0.1:-1"
  permissions {
    import: { allow: ["imp.>", "ready.>"] }
    export: { allow: ["exp.>", "ready.>"], deny: ["exp.secret"] }
  }
}
"#;

fn start(reference: bool, conf: &str, dir: &TempDir, name: &str) -> Proc {
    let file = dir.path().join(format!("{name}.conf"));
    std::fs::write(&file, conf).unwrap();
    let f = file.display().to_string();
    let args = ["-c", &f, "-a", "127.0.0.1", "-p", "-1", "-n", name];
    if reference {
        Proc::reference(&args)
    } else {
        Proc::natrix(&args)
    }
}

/// Publishes on `subject` from `from` until `sub` gets it (the route and its interest are up).
async fn until_received(
    from: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &str,
) {
    for _ in 0..100 {
        from.publish(subject.to_string(), "x".into()).await.unwrap();
        from.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            return;
        }
    }
    panic!("{subject} never crossed the route");
}

/// Messages `sub` has received within a short wait.
async fn drain(sub: &mut async_nats::Subscriber) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        n += 1;
    }
    n
}

/// (subscription, messages it got) on both servers, for one implementation.
async fn scenario(reference: bool) -> Vec<(String, usize)> {
    let dir = TempDir::new("route-perms");
    let a = start(reference, RESTRICTED, &dir, "A");
    let a_client = a.ready();
    let route = addr_after(
        &a.wait_line("Listening for route connections on"),
        "Listening for route connections on",
    );
    let b_conf = format!(
        "cluster {{ name: perms, listen: \"127.0.0.1:-1\", routes: [\"nats-route://{route}\"] }}\n"
    );
    let b = start(reference, &b_conf, &dir, "B");
    let b_client = b.ready();
    let ca = async_nats::connect(format!("nats://{a_client}"))
        .await
        .unwrap();
    let cb = async_nats::connect(format!("nats://{b_client}"))
        .await
        .unwrap();

    // What A takes from its route (import): its subscribers' interest is only announced for
    // imported subjects.
    let mut on_a = Vec::new();
    for s in ["imp.a", "other.a"] {
        on_a.push((s, ca.subscribe(s.to_string()).await.unwrap()));
    }
    // What A gives its route (export): B's subscriptions are only honoured for exported
    // subjects, and denied subjects are never delivered, even under a wildcard.
    let mut on_b = Vec::new();
    for s in ["exp.a", "exp.secret", "exp.*", "nope.a"] {
        on_b.push((s, cb.subscribe(s.to_string()).await.unwrap()));
    }
    let mut ready_a = ca.subscribe("ready.a").await.unwrap();
    let mut ready_b = cb.subscribe("ready.b").await.unwrap();
    until_received(&cb, &mut ready_a, "ready.a").await;
    until_received(&ca, &mut ready_b, "ready.b").await;
    for s in ["imp.a", "other.a"] {
        cb.publish(s, "m".into()).await.unwrap();
    }
    cb.flush().await.unwrap();
    for s in ["exp.a", "exp.secret", "nope.a"] {
        ca.publish(s, "m".into()).await.unwrap();
    }
    ca.flush().await.unwrap();
    let mut out = Vec::new();
    for (s, sub) in on_a.iter_mut() {
        out.push((format!("A {s}"), drain(sub).await));
    }
    for (s, sub) in on_b.iter_mut() {
        out.push((format!("B {s}"), drain(sub).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_permissions_match_reference() {
    let want = scenario(true).await;
    let got = scenario(false).await;
    assert_eq!(got, want, "natrix (left) vs nats-server (right)");
    let get = |k: &str| want.iter().find(|(s, _)| s == k).unwrap().1;
    // The reference's answers are what the permissions say.
    assert_eq!(get("A imp.a"), 1);
    assert_eq!(get("A other.a"), 0);
    assert_eq!(get("B exp.a"), 1);
    assert_eq!(get("B exp.secret"), 0);
    assert_eq!(get("B nope.a"), 0);
}
