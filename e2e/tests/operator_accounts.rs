//! Operator mode against a real Kubernetes API server (same skip rules and environment as
//! operator.rs): a NatsCluster with `auth.operatorMode` gets its operator Secret; a
//! natrix-broker process is booted from the rendered ConfigMap's nats.conf and that Secret;
//! an Account is signed and pushed to it (Ready, per-server results), its user's creds Secret
//! logs in and works inside the account only, a Stream with accountRef is created in that
//! account, edits re-push (a limit; a removed user is revoked and disconnected), a broker that
//! lost its resolver directory converges, and deleting the Account deletes it from the resolver.
//!
//! Skipped (passes with a message) unless NATRIX_K8S_E2E=1; needs `cargo build -p natrix-broker`
//! (or NATRIX_BROKER_BIN).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{cond, eventually, install_crds, operator_rbac, repo, run_e2e, secret_data, show};
use common::{gone, operator_secret_and_conf, Broker, Operator, Setup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use natrix_controller::context::Settings;
use natrix_controller::crd::{Account, NatsCluster, Stream};

async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, String> {
    let opts = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .max_reconnects(Some(0));
    match tokio::time::timeout(Duration::from_secs(5), opts.connect(url)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

async fn account_ready(
    api: &Api<Account>,
    name: &str,
    hash_not: Option<&str>,
) -> Result<Account, String> {
    let a = api.get(name).await.map_err(|e| e.to_string())?;
    let st = a.status.clone().unwrap_or_default();
    let conds = &st.common.conditions;
    let ready = cond(conds, "Ready").is_some_and(|c| c.status == "True");
    let fresh = st.common.observed_generation == a.metadata.generation;
    let new_hash = hash_not.is_none_or(|h| st.claims_hash.as_deref() != Some(h));
    if ready && fresh && new_hash {
        Ok(a)
    } else {
        Err(format!("{} {:?}", show(conds), st.push_results))
    }
}

/// The account JWT the broker's resolver stored (`<dir>/<account>.jwt`, the resolver PVC in a
/// pod), if any.
fn stored_jwt(dir: &Path, account: &str) -> Option<String> {
    std::fs::read_to_string(dir.join("resolver").join(format!("{account}.jwt")))
        .ok()
        .map(|s| s.trim().to_string())
}

/// e2e/examples/account.yaml is a valid Account whose users become creds Secrets.
#[test]
fn the_account_example_parses() {
    let text = std::fs::read_to_string(repo().join("e2e/examples/account.yaml")).unwrap();
    let a: Account = serde_norway::from_str(&text).unwrap();
    assert_eq!(a.spec.cluster_ref.name, "nats");
    assert_eq!(a.spec.users[0].name, "app");
    let claims =
        natrix_controller::auth::account_claims("team-a", "AKEY", &a.spec, &BTreeMap::new())
            .unwrap();
    assert!(claims.nats.limits.jetstream.disk_storage > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_in_operator_mode() {
    run_e2e("acc", "operator accounts e2e", async |setup: &Setup| {
        scenario(&setup.client, &setup.ns, &setup.kubeconfig).await
    })
    .await;
}

async fn scenario(client: &Client, ns: &str, kubeconfig: &Path) {
    install_crds(client).await;
    let op_client = operator_rbac(client, ns, kubeconfig).await;
    let pp = PostParams::default();
    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let accounts: Api<Account> = Api::namespaced(client.clone(), ns);
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);

    // 1. The cluster in operator mode: the operator Secret, and the config that uses it.
    let first = Operator::start(&op_client, ns, Settings::default(), Arc::default()).await;
    let nc: NatsCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1", "kind": "NatsCluster",
        "metadata": {"name": "nats", "namespace": ns},
        "spec": {"replicas": 1, "jetstream": {"enabled": true},
                 "resolver": {"enabled": true}, "auth": {"operatorMode": true}},
    }))
    .unwrap();
    ncs.create(&pp, &nc).await.unwrap();
    let (op_secret, conf) = operator_secret_and_conf(&secrets, &cms).await;
    for key in [
        "operator.seed",
        "signing-key.seed",
        "operator.jwt",
        "system-account",
        "system-account.seed",
        "system-account.jwt",
        "system-user.creds",
        "resolver-preload.conf",
    ] {
        assert!(op_secret.contains_key(key), "operator Secret lacks {key}");
    }
    assert!(op_secret["operator.seed"].starts_with("SO"));
    assert!(
        conf.contains("resolver: {") && conf.contains("type: \"full\""),
        "{conf}"
    );
    assert!(
        conf.contains("include \"operator/resolver-preload.conf\""),
        "{conf}"
    );
    // Created once: the NatsCluster is reconciled again and the Secret stays as it was.
    ncs.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"lameDuck": {"gracePeriod": "11s"}}})),
    )
    .await
    .unwrap();
    eventually("the edit rendered", || async {
        let cm = cms.get("nats-config").await.map_err(|e| e.to_string())?;
        cm.data.unwrap()["nats.conf"]
            .contains("11s")
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(
        secret_data(&secrets.get("nats-operator").await.unwrap()),
        op_secret,
        "the operator Secret must never be rewritten"
    );
    first.shutdown().await;

    // 2. A broker booted from that config, and the operator pointed at it.
    let dir = std::env::temp_dir().join(format!("natrix-acc-broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let conf = cms.get("nats-config").await.unwrap().data.unwrap()["nats.conf"].clone();
    let mut broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::from_conf(&conf, &s, &d, None)
    })
    .await
    .unwrap();
    let url = broker.url.clone();
    let settings = Settings {
        nats_urls: BTreeMap::from([(format!("{ns}/nats"), url.clone())]),
        stream_resync: Duration::from_secs(2),
        account_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = Operator::start(&op_client, ns, settings, Arc::default()).await;
    connect(&url, &op_secret["system-user.creds"])
        .await
        .expect("the system user logs in");

    // 3. Accounts: team-a with two users, team-b to check isolation.
    for (name, users) in [("team-a", vec!["app", "tmp"]), ("team-b", vec![])] {
        let users: Vec<_> = users
            .iter()
            .map(|u| serde_json::json!({"name": u}))
            .collect();
        let a: Account = serde_json::from_value(serde_json::json!({
            "apiVersion": "natrix.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterRef": {"name": "nats"}, "limits": {"conn": 10},
                     "jetstream": {"memStorage": "10Mi", "diskStorage": "100Mi", "streams": 5},
                     "users": users},
        }))
        .unwrap();
        accounts.create(&pp, &a).await.unwrap();
    }
    let a = eventually("team-a Ready", || account_ready(&accounts, "team-a", None)).await;
    eventually("team-b Ready", || account_ready(&accounts, "team-b", None)).await;
    let st = a.status.clone().unwrap();
    let akey = st.account_public_key.clone().unwrap();
    assert!(akey.starts_with('A'), "{akey}");
    assert_eq!(st.push_results.len(), 1, "{:?}", st.push_results);
    assert!(st.push_results[&url].ok, "{:?}", st.push_results);
    assert_eq!(
        st.push_results[&url].message.as_deref(),
        Some("jwt updated")
    );
    assert!(a.finalizers().iter().any(|f| f == "natrix.io/account"));
    let jwt = stored_jwt(&dir, &akey).expect("team-a's JWT in the resolver directory");
    let sys = connect(&url, &op_secret["system-user.creds"])
        .await
        .unwrap();
    let looked_up = sys
        .request(format!("$SYS.REQ.ACCOUNT.{akey}.CLAIMS.LOOKUP"), "".into())
        .await
        .expect("the resolver answers a lookup");
    assert_eq!(
        String::from_utf8_lossy(&looked_up.payload),
        jwt,
        "lookup and directory agree"
    );
    let claims: natrix_jwt::AccountClaims = natrix_jwt::decode_as(&jwt).unwrap();
    assert_eq!(claims.nats.limits.conn, 10);
    assert_eq!(claims.nats.limits.jetstream.disk_storage, 100 << 20);

    // 4. The user's creds work, inside team-a only.
    let app_creds =
        secret_data(&secrets.get("team-a-app-creds").await.unwrap())["user.creds"].clone();
    let app = connect(&url, &app_creds).await.expect("app logs in");
    let b_creds =
        secret_data(&secrets.get("team-b-operator-creds").await.unwrap())["user.creds"].clone();
    let b = connect(&url, &b_creds)
        .await
        .expect("team-b's operator user logs in");
    let mut sub = app.subscribe("greet").await.unwrap();
    let mut b_sub = b.subscribe("greet").await.unwrap();
    app.flush().await.unwrap();
    b.flush().await.unwrap();
    app.publish("greet", "hi".into()).await.unwrap();
    app.flush().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("app receives its own account's message")
        .unwrap();
    assert_eq!(&m.payload[..], b"hi");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), b_sub.next())
            .await
            .is_err(),
        "team-b must not see team-a's messages"
    );

    // 5. A Stream in team-a (not in team-b).
    let s: Stream = serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1", "kind": "Stream",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"clusterRef": {"name": "nats"}, "accountRef": {"name": "team-a"},
                 "name": "ORDERS", "subjects": ["orders.>"]},
    }))
    .unwrap();
    streams.create(&pp, &s).await.unwrap();
    eventually("Stream orders Ready", || async {
        let s = streams.get("orders").await.map_err(|e| e.to_string())?;
        let conds = s.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Ready")
            .filter(|c| c.status == "True")
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;
    // Without accountRef there is no account to act in: the Stream says so.
    let mut s2 = s.clone();
    s2.metadata.name = Some("no-account".into());
    s2.spec.account_ref = None;
    s2.spec.name = "NOACC".into();
    s2.spec.subjects = vec!["noacc.>".into()];
    streams.create(&pp, &s2).await.unwrap();
    eventually("Stream no-account explains", || async {
        let s = streams.get("no-account").await.map_err(|e| e.to_string())?;
        let conds = s.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Ready")
            .filter(|c| c.reason == "AccountNotReady" && c.message.contains("spec.accountRef"))
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;
    streams
        .delete("no-account", &DeleteParams::default())
        .await
        .unwrap();
    let js_a = async_nats::jetstream::new(app.clone());
    js_a.get_stream("ORDERS").await.expect("ORDERS in team-a");
    js_a.publish("orders.1", "x".into())
        .await
        .unwrap()
        .await
        .expect("team-a's user publishes into ORDERS");
    let js_b = async_nats::jetstream::new(b.clone());
    assert!(
        js_b.get_stream("ORDERS").await.is_err(),
        "ORDERS must not exist in team-b"
    );

    // 6. Edits re-push: a limit, then a removed user (revoked and disconnected).
    let tmp_creds =
        secret_data(&secrets.get("team-a-tmp-creds").await.unwrap())["user.creds"].clone();
    let tmp = connect(&url, &tmp_creds).await.expect("tmp logs in");
    let old_hash = st.claims_hash.clone().unwrap();
    accounts
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"limits": {"conn": 20}}})),
        )
        .await
        .unwrap();
    let a = eventually("team-a re-pushed", || {
        account_ready(&accounts, "team-a", Some(&old_hash))
    })
    .await;
    let claims: natrix_jwt::AccountClaims =
        natrix_jwt::decode_as(&stored_jwt(&dir, &akey).unwrap()).unwrap();
    assert_eq!(claims.nats.limits.conn, 20);
    let hash2 = a.status.unwrap().claims_hash.unwrap();
    accounts
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"users": [{"name": "app"}]}})),
        )
        .await
        .unwrap();
    eventually("team-a re-pushed without tmp", || {
        account_ready(&accounts, "team-a", Some(&hash2))
    })
    .await;
    eventually("tmp disconnected", || async {
        (tmp.connection_state() != async_nats::connection::State::Connected)
            .then_some(())
            .ok_or_else(|| "still connected".to_string())
    })
    .await;
    assert!(connect(&url, &tmp_creds).await.is_err(), "tmp is revoked");
    assert!(secrets.get_opt("team-a-tmp-creds").await.unwrap().is_none());
    assert_eq!(
        app.connection_state(),
        async_nats::connection::State::Connected,
        "app is not revoked"
    );

    // 7. A broker that lost its resolver directory gets the account back on the next resync.
    let port = broker.port;
    broker.stop();
    std::fs::remove_dir_all(dir.join("resolver")).unwrap();
    let broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::from_conf(&conf, &s, &d, Some(port))
    })
    .await
    .unwrap();
    assert_eq!(broker.url, url);
    let app = eventually("app logs in again after the re-push", || async {
        connect(&url, &app_creds).await
    })
    .await;
    assert!(stored_jwt(&dir, &akey).is_some(), "team-a pushed again");

    // 8. Deleting the Stream, then the Account: the account is deleted from the resolver.
    streams
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Stream orders gone", || gone(&streams, "orders")).await;
    accounts
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Account team-a gone", || async {
        match accounts
            .get_opt("team-a")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(a) => Err(format!("finalizers {:?}", a.finalizers())),
        }
    })
    .await;
    eventually("app can no longer log in", || async {
        match connect(&url, &app_creds).await {
            Ok(_) => Err("still logs in".to_string()),
            Err(_) => Ok(()),
        }
    })
    .await;
    assert!(
        stored_jwt(&dir, &akey).is_none(),
        "the resolver still has team-a"
    );
    drop(app);

    // A broker that refuses deletes (allow_delete off): recorded, and the Account still goes.
    let port = broker.port;
    drop(broker);
    let strict = conf.replace("allow_delete: true", "allow_delete: false");
    assert_ne!(strict, conf);
    let broker = tokio::task::spawn_blocking({
        let (s, d) = (op_secret.clone(), dir.clone());
        move || Broker::from_conf(&strict, &s, &d, Some(port))
    })
    .await
    .unwrap();
    let bkey = accounts
        .get("team-b")
        .await
        .unwrap()
        .status
        .unwrap()
        .account_public_key
        .unwrap();
    eventually("team-b pushed to the restarted broker", || async {
        connect(&url, &b_creds).await.map(|_| ())
    })
    .await;
    accounts
        .delete("team-b", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Account team-b gone despite the refusal", || async {
        match accounts
            .get_opt("team-b")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(a) => Err(format!("finalizers {:?}", a.finalizers())),
        }
    })
    .await;
    assert!(
        stored_jwt(&dir, &bkey).is_some(),
        "the refusing broker keeps team-b"
    );

    let refused = eventually("the DeleteRefused event", || async {
        let evs = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        evs.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("DeleteRefused"))
            .and_then(|e| e.note)
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert!(
        refused.contains(&bkey) && refused.contains("code 500"),
        "the broker's refusal, verbatim: {refused}"
    );

    // Nothing secret in events or statuses.
    let mut seeds: Vec<String> = op_secret
        .iter()
        .filter(|(k, _)| k.ends_with(".seed") || k.ends_with(".creds"))
        .map(|(_, v)| v.clone())
        .collect();
    for s in secrets.list(&ListParams::default()).await.unwrap() {
        for (k, v) in secret_data(&s) {
            if k.ends_with(".seed") {
                seeds.push(v);
            }
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let evs = events.list(&ListParams::default()).await.unwrap();
    let mut text = serde_json::to_string(&evs.items).unwrap();
    text.push_str(
        &serde_json::to_string(&accounts.list(&ListParams::default()).await.unwrap().items)
            .unwrap(),
    );
    text.push_str(
        &serde_json::to_string(&cms.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    for s in &seeds {
        let s = s.trim();
        assert!(
            !text.contains(s),
            "a seed leaked into events/status/ConfigMaps"
        );
    }
    for reason in [
        "OperatorKeysCreated",
        "Pushed",
        "UserRemoved",
        "Deleted",
        "DeleteRefused",
    ] {
        assert!(
            evs.items
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason)),
            "no {reason} event"
        );
    }

    operator.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
