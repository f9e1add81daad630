//! Limits from account and user JWTs, against the reference nats-server: the account's
//! connection limit, and the subscription and payload limits of the account and the user,
//! observed on the wire.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{conf, Raw, RefServer};
use natrix_jwt::{encode, AccountClaims, OperatorClaims, UserClaims};
use nkeys::KeyPair;
use tokio::io::AsyncReadExt;

struct Setup {
    config: String,
    a: KeyPair,
}

fn setup() -> Setup {
    let op = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let a = KeyPair::new_account();
    let mut oc = OperatorClaims::new(op.public_key());
    oc.nats.system_account = sys.public_key();
    let op_jwt = encode(&oc, &op).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &op).unwrap();
    let mut ac = AccountClaims::new(a.public_key());
    ac.nats.limits.conn = 2;
    ac.nats.limits.subs = 3;
    ac.nats.limits.payload = 64;
    let a_jwt = encode(&ac, &op).unwrap();
    let config = format!(
        "listen: \"127.0.0.1:-1\"\noperator: {op_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{ {}: {sys_jwt}, {}: {a_jwt} }}\n",
        sys.public_key(),
        sys.public_key(),
        a.public_key()
    );
    Setup { config, a }
}

/// Logs in with a user JWT (signed by `account`), answering the nonce; returns the
/// connection and what the server said to CONNECT + PING.
async fn login(
    addr: SocketAddr,
    account: &KeyPair,
    user: &UserClaims,
    key: &KeyPair,
) -> (Raw, String) {
    let jwt = encode(user, account).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut raw = Raw {
        stream,
        buf: Vec::new(),
    };
    let info = raw.line().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(info.trim_start_matches("INFO ")).unwrap();
    let nonce = v["nonce"].as_str().unwrap();
    let sig = data_encoding::BASE64URL_NOPAD.encode(&key.sign(nonce.as_bytes()).unwrap());
    let connect = serde_json::json!({"jwt": jwt, "sig": sig, "verbose": false, "pedantic": false, "protocol": 1});
    raw.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
    let said = normalize(raw.read_for(Duration::from_millis(300)).await);
    (raw, said)
}

/// INFO lines reduced to what this test is about: the payload limit the server announces.
fn normalize(s: String) -> String {
    s.split("\r\n")
        .map(|l| match l.strip_prefix("INFO ") {
            Some(j) => {
                let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap_or_default();
                format!("INFO max_payload={}", v["max_payload"])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

async fn closed(raw: &mut Raw) -> bool {
    let mut tmp = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), raw.stream.read(&mut tmp)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn scenario(addr: SocketAddr, s: &Setup) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let u = KeyPair::new_user();
    let uc = UserClaims::new(u.public_key());
    let (mut c1, said) = login(addr, &s.a, &uc, &u).await;
    out.push(("first".into(), said));
    let (_c2, said) = login(addr, &s.a, &uc, &u).await;
    out.push(("second".into(), said));
    let (mut c3, said) = login(addr, &s.a, &uc, &u).await;
    out.push(("third over conn limit".into(), said));
    out.push(("third closed".into(), closed(&mut c3).await.to_string()));
    // Account subscription limit (3) on one connection.
    c1.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nPING\r\n")
        .await;
    out.push((
        "fourth sub".into(),
        normalize(c1.read_for(Duration::from_millis(300)).await),
    ));
    // Account payload limit (64).
    c1.send(&format!("PUB x {}\r\n{}\r\nPING\r\n", 65, "y".repeat(65)))
        .await;
    out.push((
        "payload over".into(),
        normalize(c1.read_for(Duration::from_millis(300)).await),
    ));
    out.push(("payload closed".into(), closed(&mut c1).await.to_string()));
    // A user with tighter limits of its own: 1 subscription, 8 bytes.
    drop(c1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = KeyPair::new_user();
    let mut vc = UserClaims::new(v.public_key());
    vc.nats.limits.subs = 1;
    vc.nats.limits.payload = 8;
    let (mut d, said) = login(addr, &s.a, &vc, &v).await;
    out.push(("user login".into(), said));
    d.send("SUB a 1\r\nSUB b 2\r\nPING\r\n").await;
    out.push((
        "user second sub".into(),
        normalize(d.read_for(Duration::from_millis(300)).await),
    ));
    d.send("PUB x 9\r\n123456789\r\nPING\r\n").await;
    out.push((
        "user payload over".into(),
        normalize(d.read_for(Duration::from_millis(300)).await),
    ));
    out
}

#[tokio::test]
async fn jwt_limits_match_reference() {
    let s = setup();
    let reference = RefServer::start(Some(&s.config), &[]);
    let ours = conf::start_conf(&s.config, false).await;
    let want = scenario(reference.addr, &s).await;
    let got = scenario(ours.addr, &s).await;
    let diffs: Vec<String> = want
        .iter()
        .zip(got.iter())
        .filter(|(w, g)| w != g)
        .map(|((l, w), (_, g))| format!("{l}:\n  reference: {w:?}\n  natrix:    {g:?}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
