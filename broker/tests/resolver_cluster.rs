//! The nats-resolver between clustered servers (each with its own `dir`): a JWT pushed to one
//! server reaches every server, a server without an account looks it up when a user of it
//! connects, and the periodic store comparison (`$SYS.REQ.CLAIMS.PACK`) brings back a server
//! that was down or lost its directory; with the reference nats-server in the same cluster,
//! lookups, pushes and store comparisons work both ways.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    cluster::{route_url, wait_routes_within},
    conf,
    operator::{connect, creds, keys, Keys},
    RefServer, TestServer,
};
use futures::StreamExt;
use natrix_jwt::{encode_at, AccountClaims};
use nkeys::KeyPair;
use serde_json::{json, Value};

/// Upper bound for anything the tests wait for.
const DEADLINE: Duration = Duration::from_secs(15);

/// A fresh directory for one server's store.
fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "natrix-rc-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Operator mode with a full resolver in `dir`, clustered with `routes`.
fn config(k: &Keys, name: &str, dir: &Path, interval: &str, routes: &[String]) -> String {
    format!(
        "server_name: {name}\noperator: {}\nsystem_account: {}\n\
         resolver: {{ type: full, dir: \"{}\", allow_delete: true, interval: \"{interval}\", timeout: \"1.9s\" }}\n\
         resolver_preload: {{ {}: {} }}\n\
         cluster {{ name: rc, listen: \"127.0.0.1:-1\", routes: [{}] }}\n",
        k.op_jwt,
        k.sys.public_key(),
        dir.display(),
        k.sys.public_key(),
        k.sys_jwt,
        routes.join(", ")
    )
}

async fn natrix(k: &Keys, name: &str, dir: &Path, interval: &str, routes: &[String]) -> TestServer {
    conf::start_conf(&config(k, name, dir, interval, routes), false).await
}

/// Polls `check` until it holds, panicking with `what` after [`DEADLINE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(tokio::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `n` of `s`'s routes carry system-account interest in `subject`.
async fn wait_sys_interest(s: &TestServer, k: &Keys, subject: &str, n: usize) {
    let sys = k.sys.public_key();
    eventually(&format!("{subject} interest on {n} routes"), || {
        let c = natrix_broker::cluster::Cluster::of(&s.server).unwrap();
        c.routes()
            .iter()
            .filter(|r| r.matches(&sys, subject).is_some_and(|m| !m.is_empty()))
            .count()
            >= n
    })
    .await;
}

async fn sys_client(url: &str, k: &Keys) -> async_nats::Client {
    connect(url, &creds(&k.sys, &KeyPair::new_user()))
        .await
        .expect("system account user connects")
}

/// Publishes `body` to `subject` and collects `n` answers (JSON), failing after [`DEADLINE`].
async fn answers(nc: &async_nats::Client, subject: &str, body: &str, n: usize) -> Vec<Value> {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} answers to {subject}: {out:?}", out.len()))
            .expect("subscription open");
        out.push(serde_json::from_slice(&m.payload).unwrap_or(Value::Null));
    }
    out
}

/// The stored JWT of `account` in `dir`, if any.
fn stored(dir: &Path, account: &KeyPair) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{}.jwt", account.public_key())))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Two versions of an account JWT: `v0`, then `v1` revoking every user issued before an hour
/// from now.
fn versions(k: &Keys, acc: &KeyPair) -> (String, String) {
    let iat = natrix_jwt::now();
    let mut ac = AccountClaims::new(acc.public_key());
    let v0 = encode_at(&ac, &k.op, iat).unwrap();
    ac.nats.revocations.insert("*".into(), iat + 3600);
    let v1 = encode_at(&ac, &k.op, iat + 1).unwrap();
    (v0, v1)
}

async fn three(k: &Keys, dirs: &[PathBuf; 3], interval: &str) -> [TestServer; 3] {
    let a = natrix(k, "A", &dirs[0], interval, &[]).await;
    let seed = route_url(&a);
    let b = natrix(k, "B", &dirs[1], interval, std::slice::from_ref(&seed)).await;
    let c = natrix(k, "C", &dirs[2], interval, &[seed]).await;
    wait_routes_within(&[&a, &b, &c], 2, DEADLINE).await;
    [a, b, c]
}

#[tokio::test]
async fn a_push_to_one_server_reaches_every_server() {
    let k = keys();
    let acc = KeyPair::new_account();
    let (v0, v1) = versions(&k, &acc);
    let dirs = [fresh_dir("a"), fresh_dir("b"), fresh_dir("c")];
    // No store comparison during the test: what arrives, arrives with the push.
    let [a, b, c] = three(&k, &dirs, "1h").await;
    wait_sys_interest(&a, &k, "$SYS.REQ.CLAIMS.UPDATE", 2).await;
    let sys_a = sys_client(&a.url(), &k).await;
    // Every server takes the push and answers it, as nats-server's resolvers do.
    let got = answers(&sys_a, "$SYS.REQ.CLAIMS.UPDATE", &v0, 3).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|v| {
            assert_eq!(v["data"]["message"], "jwt updated", "{v}");
            v["server"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "answers from every server: {got:?}");
    for d in &dirs {
        assert_eq!(stored(d, &acc).as_deref(), Some(v0.as_str()));
    }
    let u = KeyPair::new_user();
    let mut users = Vec::new();
    for s in [&a, &b, &c] {
        users.push(
            connect(&s.url(), &creds(&acc, &u))
                .await
                .expect("user connects"),
        );
    }
    // A revocation pushed to B disconnects the user everywhere.
    wait_sys_interest(&b, &k, "$SYS.REQ.CLAIMS.UPDATE", 2).await;
    let sys_b = sys_client(&b.url(), &k).await;
    let per_account = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", acc.public_key());
    let got = answers(&sys_b, &per_account, &v1, 3).await;
    assert!(
        got.iter().all(|v| v["data"]["message"] == "jwt updated"),
        "{got:?}"
    );
    eventually("the revoked user is disconnected from every server", || {
        users
            .iter()
            .all(|u| u.connection_state() != async_nats::connection::State::Connected)
    })
    .await;
    for d in &dirs {
        assert_eq!(stored(d, &acc).as_deref(), Some(v1.as_str()));
    }
    // The file is written before the accounts are rebuilt: poll for the refusal.
    let end = tokio::time::Instant::now() + DEADLINE;
    while connect(&c.url(), &creds(&acc, &KeyPair::new_user()))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < end,
            "C still admits revoked users"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn a_server_without_the_account_looks_it_up_when_a_user_connects() {
    let k = keys();
    let acc = KeyPair::new_account();
    let (v0, _) = versions(&k, &acc);
    let (da, db, dd) = (fresh_dir("a"), fresh_dir("b"), fresh_dir("d"));
    // Only A has the account (as if B and D had been down during the push).
    std::fs::write(da.join(format!("{}.jwt", acc.public_key())), &v0).unwrap();
    let a = natrix(&k, "A", &da, "1h", &[]).await;
    let seed = route_url(&a);
    let b = natrix(&k, "B", &db, "1h", std::slice::from_ref(&seed)).await;
    wait_routes_within(&[&a, &b], 1, DEADLINE).await;
    let u = KeyPair::new_user();
    let nc = connect(&b.url(), &creds(&acc, &u)).await;
    assert!(nc.is_ok(), "B looked the account up on A: {nc:?}");
    assert_eq!(stored(&db, &acc).as_deref(), Some(v0.as_str()));
    // A server started later with an empty directory: the first user brings the account.
    let d = natrix(&k, "D", &dd, "1h", &[seed]).await;
    wait_routes_within(&[&a, &b, &d], 2, DEADLINE).await;
    assert_eq!(stored(&dd, &acc), None);
    assert!(connect(&d.url(), &creds(&acc, &u)).await.is_ok());
    assert_eq!(stored(&dd, &acc).as_deref(), Some(v0.as_str()));
    // An account no server has stays unknown: every server said so, the user is refused.
    let nobody = KeyPair::new_account();
    assert!(connect(&d.url(), &creds(&nobody, &u)).await.is_err());
    assert_eq!(stored(&dd, &nobody), None);
    for dir in [&da, &db, &dd] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn the_store_comparison_brings_back_a_server_that_was_down_or_lost_its_dir() {
    let k = keys();
    let acc = KeyPair::new_account();
    let (v0, v1) = versions(&k, &acc);
    let dirs = [fresh_dir("a"), fresh_dir("b"), fresh_dir("c")];
    let [a, b, c] = three(&k, &dirs, "200ms").await;
    wait_sys_interest(&a, &k, "$SYS.REQ.CLAIMS.UPDATE", 2).await;
    let sys_a = sys_client(&a.url(), &k).await;
    answers(&sys_a, "$SYS.REQ.CLAIMS.UPDATE", &v0, 3).await;
    // C goes down and misses the revocation.
    drop(c);
    wait_routes_within(&[&a, &b], 1, DEADLINE).await;
    let got = answers(&sys_a, "$SYS.REQ.CLAIMS.UPDATE", &v1, 2).await;
    assert!(
        got.iter().all(|v| v["data"]["message"] == "jwt updated"),
        "{got:?}"
    );
    assert_eq!(stored(&dirs[2], &acc).as_deref(), Some(v0.as_str()));
    // Back with its old directory: no client asks for the account, the comparison fixes it.
    let c = natrix(&k, "C", &dirs[2], "200ms", &[route_url(&a)]).await;
    let dc = dirs[2].clone();
    eventually("C holds the revoking JWT", || {
        stored(&dc, &acc).as_deref() == Some(v1.as_str())
    })
    .await;
    // The file is written before the accounts are rebuilt: poll for the refusal.
    let end = tokio::time::Instant::now() + DEADLINE;
    while connect(&c.url(), &creds(&acc, &KeyPair::new_user()))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < end,
            "C still admits revoked users"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A new server with an empty directory gets every account the same way.
    let de = fresh_dir("e");
    let _e = natrix(&k, "E", &de, "200ms", &[route_url(&b)]).await;
    eventually("E holds the account", || {
        stored(&de, &acc).as_deref() == Some(v1.as_str())
    })
    .await;
    drop(b);
    for d in dirs.iter().chain([&de]) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The reference nats-server's config: the same operator mode, routed to `seed`.
fn reference_config(k: &Keys, dir: &Path, interval: &str, seed: &str) -> String {
    config(k, "R", dir, interval, &[seed.to_string()])
}

/// A natrix server and the reference nats-server in one cluster, each with one account the
/// other lacks; returns (natrix, reference, natrix dir, reference dir, X on natrix, Y on the
/// reference).
async fn mixed(
    k: &Keys,
    interval: &str,
) -> (TestServer, RefServer, PathBuf, PathBuf, KeyPair, KeyPair) {
    let (x, y) = (KeyPair::new_account(), KeyPair::new_account());
    let (dn, dr) = (fresh_dir("n"), fresh_dir("r"));
    std::fs::write(
        dn.join(format!("{}.jwt", x.public_key())),
        versions(k, &x).0,
    )
    .unwrap();
    std::fs::write(
        dr.join(format!("{}.jwt", y.public_key())),
        versions(k, &y).0,
    )
    .unwrap();
    let n = natrix(k, "N", &dn, interval, &[]).await;
    let r = RefServer::start(
        Some(&reference_config(k, &dr, interval, &route_url(&n))),
        &[],
    );
    wait_routes_within(&[&n], 1, DEADLINE).await;
    (n, r, dn, dr, x, y)
}

#[tokio::test]
async fn with_the_reference_server_lookups_and_pushes_work_both_ways() {
    let k = keys();
    let (n, r, dn, dr, x, y) = mixed(&k, "1h").await;
    let rurl = format!("nats://{}", r.addr);
    let u = KeyPair::new_user();
    // Natrix looks Y up on nats-server, nats-server looks X up on Natrix.
    let on_n = connect(&n.url(), &creds(&y, &u)).await;
    assert!(
        on_n.is_ok(),
        "natrix fetched Y from the reference: {on_n:?}"
    );
    assert!(stored(&dn, &y).is_some());
    let on_r = connect(&rurl, &creds(&x, &u)).await;
    assert!(
        on_r.is_ok(),
        "the reference fetched X from natrix: {on_r:?}"
    );
    assert!(stored(&dr, &x).is_some());
    // Unknown accounts: both answer a lookup with an empty message.
    let nobody = KeyPair::new_account().public_key();
    let lookup = format!("$SYS.REQ.ACCOUNT.{nobody}.CLAIMS.LOOKUP");
    for url in [n.url(), rurl.clone()] {
        let sys = sys_client(&url, &k).await;
        let m = tokio::time::timeout(DEADLINE, sys.request(lookup.clone(), "".into()))
            .await
            .expect("answered in time")
            .expect("answered");
        assert!(m.payload.is_empty(), "{url}: {:?}", m.payload);
    }
    // A revocation pushed to Natrix is taken (and answered) by nats-server too.
    wait_sys_interest(&n, &k, "$SYS.REQ.CLAIMS.UPDATE", 1).await;
    let (_, x1) = versions(&k, &x);
    let sys_n = sys_client(&n.url(), &k).await;
    let got = answers(&sys_n, "$SYS.REQ.CLAIMS.UPDATE", &x1, 2).await;
    assert!(
        got.iter().all(|v| v["data"]["message"] == "jwt updated"),
        "{got:?}"
    );
    let on_r = on_r.unwrap();
    eventually("the reference disconnects the revoked user", || {
        on_r.connection_state() != async_nats::connection::State::Connected
    })
    .await;
    assert_eq!(stored(&dr, &x).as_deref(), Some(x1.as_str()));
    // And the other way: nats-server takes a revocation of Y, Natrix applies it.
    let (_, y1) = versions(&k, &y);
    let sys_r = sys_client(&rurl, &k).await;
    let got = answers(&sys_r, "$SYS.REQ.CLAIMS.UPDATE", &y1, 2).await;
    assert!(
        got.iter().all(|v| v["data"]["message"] == "jwt updated"),
        "{got:?}"
    );
    let on_n = on_n.unwrap();
    eventually("natrix disconnects the revoked user", || {
        on_n.connection_state() != async_nats::connection::State::Connected
    })
    .await;
    assert_eq!(stored(&dn, &y).as_deref(), Some(y1.as_str()));
    drop(r);
    for d in [&dn, &dr] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn with_the_reference_server_the_store_comparison_converges_both_ways() {
    let k = keys();
    let (_n, r, dn, dr, x, y) = mixed(&k, "200ms").await;
    // No client asks for anything: only `$SYS.REQ.CLAIMS.PACK` moves the JWTs.
    let (xj, yj) = (stored(&dn, &x).unwrap(), stored(&dr, &y).unwrap());
    eventually("natrix holds Y and the reference holds X", || {
        stored(&dn, &y).as_deref() == Some(yj.as_str())
            && stored(&dr, &x).as_deref() == Some(xj.as_str())
    })
    .await;
    drop(r);
    for d in [&dn, &dr] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A `type: cache` resolver next to a full one, for B either natrix or the reference: the
/// cache skips pushes for accounts it does not hold, fetches an account when its user
/// connects, then takes pushes for it ("jwt updated cache") and disconnects revoked users.
#[tokio::test]
async fn cache_resolver_matches_reference() {
    let mut results = Vec::new();
    for reference in [true, false] {
        let k = keys();
        let x = KeyPair::new_account();
        let (x0, x1) = versions(&k, &x);
        let (da, db) = (fresh_dir("full"), fresh_dir("cache"));
        let a = natrix(&k, "A", &da, "1h", &[]).await;
        let cache_conf = format!(
            "server_name: B\noperator: {}\nsystem_account: {}\n\
             resolver: {{ type: cache, dir: \"{}\", ttl: \"1h\", timeout: \"1.9s\" }}\n\
             resolver_preload: {{ {}: {} }}\n\
             cluster {{ name: rc, listen: \"127.0.0.1:-1\", routes: [{}] }}\n",
            k.op_jwt,
            k.sys.public_key(),
            db.display(),
            k.sys.public_key(),
            k.sys_jwt,
            route_url(&a)
        );
        let (_rb, _nb, burl) = if reference {
            let r = RefServer::start(Some(&cache_conf), &[]);
            let url = format!("nats://{}", r.addr);
            (Some(r), None, url)
        } else {
            let b = conf::start_conf(&cache_conf, false).await;
            let url = b.url();
            (None, Some(b), url)
        };
        wait_routes_within(&[&a], 1, DEADLINE).await;
        wait_sys_interest(&a, &k, "$SYS.REQ.CLAIMS.UPDATE", 1).await;
        let sys = sys_client(&a.url(), &k).await;
        let of_b = |got: Vec<Value>| {
            got.into_iter()
                .find(|v| v["server"]["name"] == "B")
                .map_or(Value::Null, |v| v["data"]["message"].clone())
        };
        let mut seen = Vec::new();
        // Not held by the cache: skipped there, stored by the full resolver.
        seen.push(of_b(answers(&sys, "$SYS.REQ.CLAIMS.UPDATE", &x0, 2).await));
        seen.push(json!(stored(&db, &x).is_some()));
        // A user of X on B: B fetches X from A.
        let u = KeyPair::new_user();
        let on_b = connect(&burl, &creds(&x, &u)).await;
        seen.push(json!(on_b.is_ok()));
        seen.push(json!(stored(&db, &x).is_some()));
        // Now held: a revocation is taken and the user goes.
        seen.push(of_b(answers(&sys, "$SYS.REQ.CLAIMS.UPDATE", &x1, 2).await));
        if let Ok(c) = on_b {
            eventually("the cache disconnects the revoked user", || {
                c.connection_state() != async_nats::connection::State::Connected
            })
            .await;
        }
        seen.push(json!(stored(&db, &x).as_deref() == Some(x1.as_str())));
        results.push(seen);
        for d in [&da, &db] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1][0], json!("jwt update cache skipped"));
    assert_eq!(results[1][4], json!("jwt updated cache"));
}
