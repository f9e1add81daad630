//! Authentication and authorization as a real client sees them: async-nats against an
//! in-process broker loaded from config text. Tokens, users (plain and bcrypt), nkeys,
//! `no_auth_user`, rejected credentials, publish/subscribe permissions (deny over allow, queue
//! permissions, deny-on-delivery for wildcard subscriptions), `allow_responses`,
//! `default_permissions`, and isolation between accounts.
//!
//! Negative checks never wait on a clock: a denied message is shown absent by a later allowed
//! message arriving first on the same connection (messages keep their order), after which the
//! subscription's queue is polled without waiting.

mod common;

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, Subscriber};
use common::{conf::start_conf, TestServer};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Upper bound for anything that is expected to happen.
const WAIT: Duration = Duration::from_secs(10);

/// A connected client and the server errors (`-ERR`) it received.
struct Conn {
    nc: Client,
    errors: UnboundedReceiver<String>,
}

impl Conn {
    /// Waits for the next `-ERR` text the server sent this client.
    async fn next_error(&mut self) -> String {
        tokio::time::timeout(WAIT, self.errors.recv())
            .await
            .expect("a server error in time")
            .expect("error channel open")
    }

    /// Round trip to the server: everything sent before has been processed.
    async fn flush(&self) {
        tokio::time::timeout(WAIT, self.nc.flush())
            .await
            .expect("flush in time")
            .expect("flush");
    }
}

/// Adds an event callback that forwards server errors, then connects.
async fn connect_with(url: &str, opts: ConnectOptions) -> Result<Conn, async_nats::ConnectError> {
    let (tx, errors) = unbounded_channel();
    let nc = opts
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await?;
    Ok(Conn { nc, errors })
}

async fn user(ts: &TestServer, name: &str, pass: &str) -> Conn {
    connect_with(
        &ts.url(),
        ConnectOptions::with_user_and_password(name.into(), pass.into()),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} connects: {e}"))
}

/// Asserts a connect attempt was refused for its credentials.
fn assert_auth_error(res: Result<Conn, async_nats::ConnectError>, what: &str) {
    match res {
        Ok(_) => panic!("{what}: connected, expected an authorization error"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
            ),
            "{what}: {e:?}"
        ),
    }
}

async fn next_msg(sub: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// Nothing is queued on the subscription right now.
fn assert_empty(sub: &mut Subscriber, what: &str) {
    if let Some(Some(m)) = sub.next().now_or_never() {
        panic!("{what}: unexpected message on {:?}", m.subject);
    }
}

/// A bcrypt hash (cost 4 keeps the tests fast).
fn bcrypt_hash(pass: &str) -> String {
    bcrypt::hash(pass, 4).expect("bcrypt")
}

/// Publishes and checks the message comes back on a subscription of the same client.
async fn round_trip(c: &Conn, subject: &str) {
    let mut sub = c.nc.subscribe(subject.to_string()).await.unwrap();
    c.flush().await;
    c.nc.publish(subject.to_string(), "ping".into())
        .await
        .unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(m.payload.as_ref(), b"ping");
}

#[tokio::test]
async fn token_plain_and_bcrypt() {
    for token in ["s3cr3t".to_string(), bcrypt_hash("s3cr3t")] {
        let ts = start_conf(&format!("authorization {{ token: \"{token}\" }}"), false).await;
        let ok = connect_with(&ts.url(), ConnectOptions::with_token("s3cr3t".into()))
            .await
            .expect("right token connects");
        round_trip(&ok, "t.x").await;
        assert_auth_error(
            connect_with(&ts.url(), ConnectOptions::with_token("wrong".into())).await,
            "wrong token",
        );
        assert_auth_error(
            connect_with(&ts.url(), ConnectOptions::new()).await,
            "no token",
        );
        assert_auth_error(
            connect_with(
                &ts.url(),
                ConnectOptions::with_user_and_password("s3cr3t".into(), "s3cr3t".into()),
            )
            .await,
            "user/password on a token server",
        );
    }
}

#[tokio::test]
async fn users_plain_and_bcrypt() {
    let (gen_pass, gen_hash) = natrix_broker::auth::generate_password();
    let conf = format!(
        "authorization {{ users: [\n  {{user: alice, password: pw}}\n  {{user: bob, password: \"{}\"}}\n  {{user: gen, password: \"{gen_hash}\"}}\n] }}",
        bcrypt_hash("bpw")
    );
    let ts = start_conf(&conf, false).await;
    for (name, pass) in [("alice", "pw"), ("bob", "bpw"), ("gen", gen_pass.as_str())] {
        round_trip(&user(&ts, name, pass).await, "u.x").await;
    }
    for (name, pass) in [
        ("alice", "wrong"),
        ("bob", "wrong"),
        ("bob", "pw"),
        ("mallory", "pw"),
        ("alice", ""),
    ] {
        assert_auth_error(
            connect_with(
                &ts.url(),
                ConnectOptions::with_user_and_password(name.into(), pass.into()),
            )
            .await,
            &format!("{name}/{pass:?}"),
        );
    }
    assert_auth_error(
        connect_with(&ts.url(), ConnectOptions::new()).await,
        "no credentials",
    );
}

#[tokio::test]
async fn nkey_signs_the_nonce() {
    let kp = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{ users: [{{nkey: {}}}, {{user: alice, password: pw}}] }}",
        kp.public_key()
    );
    let ts = start_conf(&conf, false).await;
    let ok = connect_with(&ts.url(), ConnectOptions::with_nkey(kp.seed().unwrap()))
        .await
        .expect("configured nkey connects");
    round_trip(&ok, "n.x").await;
    assert_auth_error(
        connect_with(&ts.url(), ConnectOptions::with_nkey(other.seed().unwrap())).await,
        "unknown nkey",
    );
    // Password users still work next to nkey users.
    round_trip(&user(&ts, "alice", "pw").await, "n.y").await;
}

#[tokio::test]
async fn no_auth_user_applies_without_credentials() {
    let conf = "authorization { users: [\n  {user: guest, password: pw, permissions: {publish: \"guest.>\", subscribe: \"guest.>\"}}\n  {user: admin, password: pw}\n] }\nno_auth_user: guest\n";
    let ts = start_conf(conf, false).await;
    let admin = user(&ts, "admin", "pw").await;
    let mut all = admin.nc.subscribe(">").await.unwrap();
    admin.flush().await;
    let mut guest = connect_with(&ts.url(), ConnectOptions::new())
        .await
        .expect("no credentials: the no_auth_user");
    round_trip(&guest, "guest.x").await;
    guest.nc.publish("admin.x", "no".into()).await.unwrap();
    guest.nc.publish("guest.y", "yes".into()).await.unwrap();
    assert!(guest
        .next_error()
        .await
        .contains("Permissions Violation for Publish to \"admin.x\""));
    // The admin saw guest.x (round trip) and guest.y, never admin.x.
    assert_eq!(next_msg(&mut all).await.subject.as_str(), "guest.x");
    assert_eq!(next_msg(&mut all).await.subject.as_str(), "guest.y");
    assert_empty(&mut all, "admin");
    // Wrong credentials do not fall back to the no_auth_user.
    assert_auth_error(
        connect_with(
            &ts.url(),
            ConnectOptions::with_user_and_password("admin".into(), "wrong".into()),
        )
        .await,
        "wrong password",
    );
}

const PERMS: &str = r#"
authorization {
  default_permissions: {publish: "dflt.>", subscribe: ["dflt.>", "_INBOX.>"]}
  users: [
    {user: admin, password: pw, permissions: {publish: ">", subscribe: ">"}}
    {user: plain, password: pw}
    {user: limited, password: pw, permissions: {
      publish: {allow: ["pub.>", "both.>"], deny: ["pub.secret"]}
      subscribe: {allow: ["sub.>", "both.>", "q.* workers"], deny: ["both.secret", "q.b workers"]}
    }}
    {user: svc, password: pw, permissions: {subscribe: "svc.>", allow_responses: true}}
  ]
}
"#;

#[tokio::test]
async fn publish_permissions_allow_and_deny_over_allow() {
    let ts = start_conf(PERMS, false).await;
    let admin = user(&ts, "admin", "pw").await;
    let mut all = admin.nc.subscribe(">").await.unwrap();
    admin.flush().await;
    let mut limited = user(&ts, "limited", "pw").await;
    limited.nc.publish("other", "1".into()).await.unwrap();
    limited.nc.publish("pub.secret", "2".into()).await.unwrap();
    limited.nc.publish("pub.ok", "3".into()).await.unwrap();
    limited.flush().await;
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Publish to \"other\""));
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Publish to \"pub.secret\""));
    let m = next_msg(&mut all).await;
    assert_eq!(
        (m.subject.as_str(), m.payload.as_ref()),
        ("pub.ok", &b"3"[..])
    );
    assert_empty(&mut all, "admin after denied publishes");
    // The connection stays usable after violations.
    limited.nc.publish("both.x", "4".into()).await.unwrap();
    assert_eq!(next_msg(&mut all).await.subject.as_str(), "both.x");
}

#[tokio::test]
async fn subscribe_permissions_queues_and_deny_on_delivery() {
    let ts = start_conf(PERMS, false).await;
    let admin = user(&ts, "admin", "pw").await;
    let mut limited = user(&ts, "limited", "pw").await;

    let mut denied = limited.nc.subscribe("other").await.unwrap();
    limited.flush().await;
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Subscription to \"other\""));
    let mut wrong_queue = limited
        .nc
        .queue_subscribe("q.a", "others".into())
        .await
        .unwrap();
    limited.flush().await;
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Subscription to \"q.a\" using queue \"others\""));
    let mut denied_queue = limited
        .nc
        .queue_subscribe("q.b", "workers".into())
        .await
        .unwrap();
    limited.flush().await;
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Subscription to \"q.b\" using queue \"workers\""));
    let mut denied_secret = limited.nc.subscribe("both.secret").await.unwrap();
    limited.flush().await;
    assert!(limited
        .next_error()
        .await
        .contains("Permissions Violation for Subscription to \"both.secret\""));

    let mut queue = limited
        .nc
        .queue_subscribe("q.a", "workers".into())
        .await
        .unwrap();
    let mut wild = limited.nc.subscribe("both.>").await.unwrap();
    let mut marker = limited.nc.subscribe("sub.marker").await.unwrap();
    limited.flush().await;

    for s in ["other", "q.b", "both.secret", "q.a", "both.a", "sub.marker"] {
        admin.nc.publish(s, s.into()).await.unwrap();
    }
    admin.flush().await;
    assert_eq!(next_msg(&mut queue).await.subject.as_str(), "q.a");
    // The wildcard subscription is allowed, but both.secret is filtered on delivery.
    assert_eq!(next_msg(&mut wild).await.subject.as_str(), "both.a");
    assert_eq!(next_msg(&mut marker).await.subject.as_str(), "sub.marker");
    assert_empty(&mut wild, "both.> after the marker");
    for (sub, what) in [
        (&mut denied, "denied subscription"),
        (&mut wrong_queue, "wrong queue"),
        (&mut denied_queue, "denied queue"),
        (&mut denied_secret, "denied both.secret"),
    ] {
        assert_empty(sub, what);
    }
}

#[tokio::test]
async fn default_permissions_apply_to_users_without_their_own() {
    let ts = start_conf(PERMS, false).await;
    let admin = user(&ts, "admin", "pw").await;
    let mut all = admin.nc.subscribe(">").await.unwrap();
    admin.flush().await;
    let mut plain = user(&ts, "plain", "pw").await;
    round_trip(&plain, "dflt.x").await;
    plain.nc.publish("elsewhere", "x".into()).await.unwrap();
    assert!(plain
        .next_error()
        .await
        .contains("Permissions Violation for Publish to \"elsewhere\""));
    let _s = plain.nc.subscribe("elsewhere").await.unwrap();
    plain.flush().await;
    assert!(plain
        .next_error()
        .await
        .contains("Permissions Violation for Subscription to \"elsewhere\""));
    assert_eq!(next_msg(&mut all).await.subject.as_str(), "dflt.x");
    plain.nc.publish("dflt.y", "y".into()).await.unwrap();
    assert_eq!(next_msg(&mut all).await.subject.as_str(), "dflt.y");
}

#[tokio::test]
async fn allow_responses_lets_a_service_reply_and_nothing_else() {
    let ts = start_conf(PERMS, false).await;
    let admin = user(&ts, "admin", "pw").await;
    let mut watch = admin.nc.subscribe("other").await.unwrap();
    let mut svc = user(&ts, "svc", "pw").await;
    let mut requests = svc.nc.subscribe("svc.>").await.unwrap();
    svc.flush().await;
    let responder = tokio::spawn({
        let nc = svc.nc.clone();
        async move {
            let req = next_msg(&mut requests).await;
            let reply = req.reply.clone().expect("request has a reply subject");
            nc.publish(
                reply,
                format!("echo {}", String::from_utf8_lossy(&req.payload)).into(),
            )
            .await
            .unwrap();
            nc.flush().await.unwrap();
        }
    });
    let resp = tokio::time::timeout(WAIT, admin.nc.request("svc.echo", "hi".into()))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(resp.payload.as_ref(), b"echo hi");
    responder.await.unwrap();

    // Publishing anywhere else is denied.
    svc.nc.publish("other", "x".into()).await.unwrap();
    assert!(svc
        .next_error()
        .await
        .contains("Permissions Violation for Publish to \"other\""));
    admin.nc.publish("other", "marker".into()).await.unwrap();
    assert_eq!(next_msg(&mut watch).await.payload.as_ref(), b"marker");
    assert_empty(&mut watch, "other after the marker");
}

#[tokio::test]
async fn accounts_are_isolated() {
    let conf = r#"
accounts {
  A: { users: [{user: a1, password: pw}, {user: a2, password: pw}] }
  B: { users: [{user: b1, password: pw}] }
}
"#;
    let ts = start_conf(conf, false).await;
    let a1 = user(&ts, "a1", "pw").await;
    let a2 = user(&ts, "a2", "pw").await;
    let b1 = user(&ts, "b1", "pw").await;
    let mut a_sub = a1.nc.subscribe("shared.>").await.unwrap();
    let mut b_sub = b1.nc.subscribe("shared.>").await.unwrap();
    a1.flush().await;
    b1.flush().await;
    b1.nc.publish("shared.from_b", "b".into()).await.unwrap();
    b1.flush().await;
    a2.nc.publish("shared.from_a", "a".into()).await.unwrap();
    a2.flush().await;
    // Each account sees only its own publisher's message.
    assert_eq!(next_msg(&mut a_sub).await.subject.as_str(), "shared.from_a");
    assert_eq!(next_msg(&mut b_sub).await.subject.as_str(), "shared.from_b");
    // b's message went first; had it crossed over, it would be queued before a's.
    assert_empty(&mut a_sub, "account A");
    let mut b_marker = b1.nc.subscribe("marker").await.unwrap();
    b1.flush().await;
    b1.nc.publish("marker", "m".into()).await.unwrap();
    assert_eq!(next_msg(&mut b_marker).await.subject.as_str(), "marker");
    assert_empty(&mut b_sub, "account B");
}
