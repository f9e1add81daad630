//! The Stream reconciler's JetStream side against an in-process natrix-broker with
//! JetStream: create, in-sync, update, drift correction, restore, preventUpdate, delete, and
//! server errors passed on verbatim.

use natrix_broker::options::{JetStreamOptions, Options};
use natrix_broker::server::Server;
use natrix_controller::crd::StreamSpec;
use natrix_controller::stream::config::to_config;
use natrix_controller::stream::sync::{self, Outcome, SyncError};

fn spec(v: serde_json::Value) -> StreamSpec {
    let mut base = serde_json::json!({"clusterRef": {"name": "nats"}, "name": "ORDERS"});
    base.as_object_mut()
        .unwrap()
        .extend(v.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

async fn broker(dir: &std::path::Path) -> (std::sync::Arc<Server>, String) {
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        jetstream: Some(JetStreamOptions {
            store_dir: dir.to_path_buf(),
            ..Default::default()
        }),
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let addr = server.client_addr.read().unwrap();
    (server, format!("nats://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_drift_restore_delete() {
    let dir = std::env::temp_dir().join(format!("natrix-stream-sync-{}", std::process::id()));
    let (server, url) = broker(&dir).await;
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);

    let s1 = spec(serde_json::json!({
        "subjects": ["orders.>"], "maxMsgs": 1000, "maxAge": "24h", "description": "orders",
        "metadata": {"team": "shop"}, "duplicateWindow": "1m",
    }));
    let want = to_config(&s1).unwrap();
    assert_eq!(
        sync::sync(&js, &want, false, false).await.unwrap(),
        Outcome::Created
    );
    let info = js.get_stream("ORDERS").await.unwrap().cached_info().clone();
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(info.config.max_messages, 1000);
    // What the server reports back (with its defaults) is not drift.
    assert_eq!(
        sync::sync(&js, &want, true, false).await.unwrap(),
        Outcome::InSync
    );

    // The spec changes: updated, with the field named.
    let s2 = spec(serde_json::json!({
        "subjects": ["orders.>", "returns.>"], "maxMsgs": 2000, "maxAge": "24h",
        "description": "orders", "metadata": {"team": "shop"}, "duplicateWindow": "1m",
    }));
    let want2 = to_config(&s2).unwrap();
    match sync::sync(&js, &want2, true, false).await.unwrap() {
        Outcome::Updated(f) => {
            assert!(
                f.iter()
                    .any(|x| x.starts_with("max_msgs: server 1000, spec 2000")),
                "{f:?}"
            );
            assert!(f.iter().any(|x| x.starts_with("subjects:")), "{f:?}");
        }
        o => panic!("{o:?}"),
    }
    let info = js.get_stream("ORDERS").await.unwrap().cached_info().clone();
    assert_eq!(info.config.max_messages, 2000);
    assert_eq!(info.config.subjects.len(), 2);

    // Someone changes the stream behind the operator's back: put back.
    let mut changed = info.config.clone();
    changed.max_messages = 5;
    js.update_stream(&changed).await.unwrap();
    // preventUpdate reports the difference and leaves it.
    match sync::sync(&js, &want2, true, true).await.unwrap() {
        Outcome::UpdatePrevented(f) => assert_eq!(f, vec!["max_msgs: server 5, spec 2000"]),
        o => panic!("{o:?}"),
    }
    match sync::sync(&js, &want2, true, false).await.unwrap() {
        Outcome::Updated(f) => assert_eq!(f, vec!["max_msgs: server 5, spec 2000"]),
        o => panic!("{o:?}"),
    }
    assert_eq!(
        js.get_stream("ORDERS")
            .await
            .unwrap()
            .cached_info()
            .config
            .max_messages,
        2000
    );

    // Deleted behind the operator's back: restored.
    js.delete_stream("ORDERS").await.unwrap();
    assert_eq!(
        sync::sync(&js, &want2, true, false).await.unwrap(),
        Outcome::Restored
    );
    assert!(js.get_stream("ORDERS").await.is_ok());

    // Delete, and a second delete is not an error.
    assert!(sync::delete(&js, "ORDERS").await.unwrap());
    assert!(!sync::delete(&js, "ORDERS").await.unwrap());
    assert!(js.get_stream("ORDERS").await.is_err());

    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_copied_verbatim() {
    let dir = std::env::temp_dir().join(format!("natrix-stream-err-{}", std::process::id()));
    let (server, url) = broker(&dir).await;
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);

    let a = to_config(&spec(serde_json::json!({"subjects": ["shared.>"]}))).unwrap();
    sync::sync(&js, &a, false, false).await.unwrap();
    let mut b = to_config(&spec(serde_json::json!({"subjects": ["shared.>"]}))).unwrap();
    b.name = "OTHER".into();
    let e = sync::sync(&js, &b, false, false).await.unwrap_err();
    assert_eq!(e.reason(), "CreateFailed");
    let SyncError::Api { message, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        message.contains("subjects overlap with an existing stream") && message.contains("10065"),
        "{message}"
    );
    assert!(e.to_string().starts_with("create stream OTHER: "), "{e}");

    // Storage cannot change: the server's error for the update is passed on.
    let mut mem = a.clone();
    mem.storage = async_nats::jetstream::stream::StorageType::Memory;
    let e = sync::sync(&js, &mem, true, false).await.unwrap_err();
    assert_eq!(e.reason(), "UpdateFailed", "{e}");
    assert!(e.to_string().contains("error code"), "{e}");

    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
