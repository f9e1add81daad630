//! The scale-down guard's stream listing against an in-process natrix-broker with JetStream.

use natrix_broker::options::{JetStreamOptions, Options};
use natrix_controller::cluster::scale::{self, Scale, StreamReplicas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_stream_with_its_replicas() {
    let dir = std::env::temp_dir().join(format!("natrix-scale-streams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        jetstream: Some(JetStreamOptions {
            store_dir: dir.clone(),
            ..Default::default()
        }),
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let url = format!("nats://{}", server.client_addr.read().unwrap());
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let t = std::time::Duration::from_secs(5);
    assert_eq!(
        scale::list_streams(client.clone(), "the server", t)
            .await
            .unwrap(),
        vec![]
    );
    // More than one page of STREAM.LIST (256 per page).
    for i in 0..260 {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: format!("S{i:03}"),
            subjects: vec![format!("s{i}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut got = scale::list_streams(client.clone(), "the server", t)
        .await
        .unwrap();
    got.sort_by(|a, b| a.stream.cmp(&b.stream));
    assert_eq!(got.len(), 260);
    assert_eq!(
        got[7],
        StreamReplicas {
            stream: "S007".into(),
            replicas: 1,
            source: "the server".into()
        }
    );
    assert!(got.iter().all(|s| s.replicas == 1));
    // R1 streams allow going down to one server.
    assert_eq!(scale::decide(1, Some(3), Some(&Ok(got))), Scale::Allow(1));
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
