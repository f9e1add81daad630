//! Config-defined accounts: isolation, stream imports with remapping, and service imports with
//! request/reply across accounts — run against both the reference nats-server and Natrix.

mod common;

use std::time::Duration;

use common::{sync, RefServer, TestServer};
use futures::StreamExt;

const CONF: &str = r#"
accounts {
  A: {
    users: [{user: a, password: a}]
    exports: [
      {stream: "public.>"}
      {stream: "private.feed", accounts: [B]}
      {service: "svc.time"}
      {service: "svc.stream", response_type: stream}
    ]
  }
  B: {
    users: [{user: b, password: b}]
    imports: [
      {stream: {account: A, subject: "public.>"}, prefix: "from_a"}
      {stream: {account: A, subject: "private.feed"}, to: "feed"}
      {service: {account: A, subject: "svc.time"}, to: "time"}
      {service: {account: A, subject: "svc.stream"}}
    ]
  }
  C: {
    users: [{user: c, password: c}]
  }
}
"#;

/// The options Natrix gets from the same config file the reference server runs with.
fn natrix_options(o: &mut natrix_broker::options::Options) {
    let dir = std::env::temp_dir().join(format!("natrix-acc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("accounts.conf");
    std::fs::write(&f, CONF).unwrap();
    let (loaded, _) = natrix_broker::config::load_file(&f).expect("config loads");
    let _ = std::fs::remove_dir_all(&dir);
    *o = natrix_broker::options::Options {
        host: o.host.clone(),
        port: o.port,
        http_host: o.http_host.clone(),
        ..loaded
    };
}

async fn user(url: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(name.into(), name.into())
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{name} connects: {e}"))
}

async fn got(sub: &mut async_nats::Subscriber) -> Option<(String, String)> {
    tokio::time::timeout(Duration::from_millis(500), sub.next())
        .await
        .ok()
        .flatten()
        .map(|m| {
            (
                m.subject.to_string(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
}

/// Everything one server does with the config, as observed by clients.
async fn scenario(url: &str) -> Vec<String> {
    let (a, b, c) = (
        user(url, "a").await,
        user(url, "b").await,
        user(url, "c").await,
    );
    let mut seen = Vec::new();

    // Isolation: the same subject in another account is invisible.
    let mut a_foo = a.subscribe("foo").await.unwrap();
    let mut c_any = c.subscribe(">").await.unwrap();
    sync(&a).await;
    sync(&c).await;
    b.publish("foo", "from b".into()).await.unwrap();
    sync(&b).await;
    seen.push(format!("isolation a={:?}", got(&mut a_foo).await));

    // Stream import with a prefix, and a private export remapped with `to`.
    let mut b_pub = b.subscribe("from_a.public.>").await.unwrap();
    let mut b_feed = b.subscribe("feed").await.unwrap();
    sync(&b).await;
    a.publish("public.news", "hello".into()).await.unwrap();
    a.publish("private.feed", "secret".into()).await.unwrap();
    sync(&a).await;
    seen.push(format!("stream prefix {:?}", got(&mut b_pub).await));
    seen.push(format!("stream to {:?}", got(&mut b_feed).await));

    // Service import: B asks on its own subject, A answers on the exported one.
    let mut svc = a.subscribe("svc.time").await.unwrap();
    let mut svc2 = a.subscribe("svc.stream").await.unwrap();
    sync(&a).await;
    let a2 = a.clone();
    let responder = tokio::spawn(async move {
        let m = svc.next().await.unwrap();
        seen_reply(&m);
        a2.publish(m.reply.unwrap(), "noon".into()).await.unwrap();
        let m = svc2.next().await.unwrap();
        for i in 0..3 {
            a2.publish(m.reply.clone().unwrap(), format!("part{i}").into())
                .await
                .unwrap();
        }
        a2.flush().await.unwrap();
    });
    let resp = tokio::time::timeout(Duration::from_secs(3), b.request("time", "now?".into()))
        .await
        .expect("service answers in time");
    seen.push(format!(
        "service {:?}",
        resp.map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .map_err(|e| e.to_string())
    ));
    // A stream response type lets several responses through.
    let inbox = b.new_inbox();
    let mut replies = b.subscribe(inbox.clone()).await.unwrap();
    b.publish_with_reply("svc.stream", inbox, "go".into())
        .await
        .unwrap();
    sync(&b).await;
    let mut parts = Vec::new();
    while let Some((_, p)) = got(&mut replies).await {
        parts.push(p);
    }
    seen.push(format!("stream responses {parts:?}"));
    responder.await.unwrap();

    // C imported nothing: it saw none of it.
    let mut c_saw = Vec::new();
    while let Some((subject, _)) = got(&mut c_any).await {
        // Its own barrier messages are the only thing C may see.
        if !subject.starts_with("_INBOX.") {
            c_saw.push(subject);
        }
    }
    seen.push(format!("c saw {c_saw:?}"));
    seen
}

fn seen_reply(m: &async_nats::Message) {
    let reply = m.reply.as_ref().expect("request has a reply subject");
    assert!(
        !reply.starts_with("_INBOX"),
        "the exporter must not see the importer's inbox: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_behave_like_the_reference() {
    let reference = RefServer::start(Some(CONF), &[]);
    let natrix = TestServer::start_with(natrix_options).await;
    let want = scenario(&format!("nats://{}", reference.addr)).await;
    let got = scenario(&natrix.url()).await;
    assert_eq!(got, want);
    // And the reference answers are the ones we expect.
    assert_eq!(want[0], "isolation a=None");
    assert_eq!(
        want[1],
        r#"stream prefix Some(("from_a.public.news", "hello"))"#
    );
    assert_eq!(want[2], r#"stream to Some(("feed", "secret"))"#);
    assert_eq!(want[3], r#"service Ok("noon")"#);
    assert_eq!(want[4], r#"stream responses ["part0", "part1", "part2"]"#);
    assert_eq!(want[5], "c saw []");
}
