//! Exports and imports declared in account JWTs (operator mode), against the reference
//! nats-server: a public service and stream, a private service with an activation token, and an
//! import without the token that must not work.

mod common;

use std::time::Duration;

use common::{conf, RefServer};
use futures::StreamExt as _;
use natrix_jwt::{
    encode, format_user_creds, AccountClaims, ActivationClaims, Export, Import, OperatorClaims,
    UserClaims,
};
use nkeys::KeyPair;

struct Setup {
    config: String,
    a: KeyPair,
    b: KeyPair,
    c: KeyPair,
}

fn setup() -> Setup {
    let op = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let (a, b, c) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let mut oc = OperatorClaims::new(op.public_key());
    oc.nats.system_account = sys.public_key();
    let op_jwt = encode(&oc, &op).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &op).unwrap();
    let mut ac = AccountClaims::new(a.public_key());
    ac.nats.exports = vec![
        Export {
            subject: "svc.time".into(),
            export_type: "service".into(),
            ..Default::default()
        },
        Export {
            subject: "events.>".into(),
            export_type: "stream".into(),
            ..Default::default()
        },
        Export {
            subject: "priv.>".into(),
            export_type: "service".into(),
            token_req: true,
            ..Default::default()
        },
    ];
    let a_jwt = encode(&ac, &op).unwrap();
    let mut act = ActivationClaims::new(b.public_key());
    act.nats.import_subject = "priv.>".into();
    act.nats.import_type = "service".into();
    let token = encode(&act, &a).unwrap();
    let mut bc = AccountClaims::new(b.public_key());
    bc.nats.imports = vec![
        Import {
            subject: "svc.time".into(),
            account: a.public_key(),
            local_subject: "time".into(),
            import_type: "service".into(),
            ..Default::default()
        },
        Import {
            subject: "events.>".into(),
            account: a.public_key(),
            local_subject: "a.events.>".into(),
            import_type: "stream".into(),
            ..Default::default()
        },
        Import {
            subject: "priv.>".into(),
            account: a.public_key(),
            token,
            import_type: "service".into(),
            ..Default::default()
        },
    ];
    let b_jwt = encode(&bc, &op).unwrap();
    let mut cc = AccountClaims::new(c.public_key());
    cc.nats.imports = vec![Import {
        subject: "priv.>".into(),
        account: a.public_key(),
        import_type: "service".into(),
        ..Default::default()
    }];
    let c_jwt = encode(&cc, &op).unwrap();
    let config = format!(
        "listen: \"127.0.0.1:-1\"\noperator: {op_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{ {}: {sys_jwt}, {}: {a_jwt}, {}: {b_jwt}, {}: {c_jwt} }}\n",
        sys.public_key(), sys.public_key(), a.public_key(), b.public_key(), c.public_key()
    );
    Setup { config, a, b, c }
}

async fn login(url: &str, account: &KeyPair) -> async_nats::Client {
    let u = KeyPair::new_user();
    let jwt = encode(&UserClaims::new(u.public_key()), account).unwrap();
    let creds = format_user_creds(&jwt, &u.seed().unwrap()).unwrap();
    async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(url)
        .await
        .unwrap()
}

async fn request(nc: &async_nats::Client, subject: &str) -> String {
    match tokio::time::timeout(
        Duration::from_millis(800),
        nc.request(subject.to_string(), "q".into()),
    )
    .await
    {
        Ok(Ok(m)) => String::from_utf8_lossy(&m.payload).into_owned(),
        Ok(Err(e)) => format!("error: {:?}", e.kind()),
        Err(_) => "timeout".into(),
    }
}

async fn scenario(url: &str, s: &Setup) -> Vec<(String, String)> {
    let na = login(url, &s.a).await;
    let nb = login(url, &s.b).await;
    let nc = login(url, &s.c).await;
    let mut time = na.subscribe("svc.time").await.unwrap();
    let mut privs = na.subscribe("priv.>").await.unwrap();
    let responder = {
        let na = na.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(m) = time.next() => { let _ = na.publish(m.reply.unwrap(), "12:00".into()).await; }
                    Some(m) = privs.next() => { let _ = na.publish(m.reply.unwrap(), format!("private {}", m.subject).into()).await; }
                    else => break,
                }
            }
        })
    };
    common::sync(&na).await;
    let mut events = nb.subscribe("a.events.>").await.unwrap();
    common::sync(&nb).await;
    let mut out = Vec::new();
    out.push(("service import".into(), request(&nb, "time").await));
    out.push(("private with token".into(), request(&nb, "priv.x").await));
    out.push(("private without token".into(), request(&nc, "priv.x").await));
    out.push(("not imported".into(), request(&nb, "svc.time").await));
    na.publish("events.new", "e1".into()).await.unwrap();
    common::sync(&na).await;
    let got = tokio::time::timeout(Duration::from_millis(800), events.next()).await;
    out.push((
        "stream import".into(),
        match got {
            Ok(Some(m)) => format!("{} {}", m.subject, String::from_utf8_lossy(&m.payload)),
            _ => "nothing".into(),
        },
    ));
    responder.abort();
    out
}

#[tokio::test]
async fn jwt_imports_match_reference() {
    let s = setup();
    let reference = RefServer::start(Some(&s.config), &[]);
    let ours = conf::start_conf(&s.config, false).await;
    let want = scenario(&format!("nats://{}", reference.addr), &s).await;
    let got = scenario(&ours.url(), &s).await;
    assert_eq!(got, want);
    assert_eq!(got[0].1, "12:00");
    assert_eq!(got[1].1, "private priv.x");
    assert_eq!(got[4].1, "a.events.new e1");
}
