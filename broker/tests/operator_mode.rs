//! Operator mode with the MEMORY resolver: user JWTs against preloaded account JWTs, checked
//! against the reference nats-server with the same config.

mod common;

use std::time::Duration;

use common::{
    conf::{self, start_conf},
    http, Raw, RefServer,
};
use futures::StreamExt as _;
use natrix_jwt::{encode, format_user_creds, AccountClaims, OperatorClaims, UserClaims};
use nkeys::KeyPair;

struct Setup {
    config: String,
    a: KeyPair,
    b: KeyPair,
    _dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Operator (in a file), system account, accounts A (revoking one user) and B.
fn setup(revoked: &KeyPair) -> Setup {
    let okp = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let mut oc = OperatorClaims::new(okp.public_key());
    oc.name = "OP".into();
    oc.nats.system_account = sys.public_key();
    let operator_jwt = encode(&oc, &okp).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "natrix-op-{}-{}",
        std::process::id(),
        okp.public_key()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let op_file = dir.join("op.jwt");
    std::fs::write(&op_file, &operator_jwt).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &okp).unwrap();
    let mut ac = AccountClaims::new(a.public_key());
    ac.nats
        .revocations
        .insert(revoked.public_key(), natrix_jwt::now() + 60);
    let a_jwt = encode(&ac, &okp).unwrap();
    let b_jwt = encode(&AccountClaims::new(b.public_key()), &okp).unwrap();
    let config = format!(
        "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {sys_jwt}\n  {}: {a_jwt}\n  {}: {b_jwt}\n}}\n",
        op_file.display(),
        sys.public_key(),
        sys.public_key(),
        a.public_key(),
        b.public_key(),
    );
    Setup {
        config,
        a,
        b,
        _dir: dir,
    }
}

fn creds(claims: &UserClaims, signer: &KeyPair, user: &KeyPair) -> String {
    let jwt = encode(claims, signer).unwrap();
    format_user_creds(&jwt, &user.seed().unwrap()).unwrap()
}

async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, String> {
    let opts = async_nats::ConnectOptions::with_credentials(creds).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), opts.connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// Whether a message published on `subject` by `publisher` reaches `subscriber`.
async fn delivered(
    publisher: &async_nats::Client,
    subscriber: &async_nats::Client,
    subject: &str,
) -> bool {
    let mut sub = subscriber.subscribe(subject.to_string()).await.unwrap();
    // A round trip, so the subscription is in place before the publish (flush is not one).
    common::sync(subscriber).await;
    let _ = publisher.publish(subject.to_string(), "hi".into()).await;
    let _ = publisher.flush().await;
    matches!(
        tokio::time::timeout(Duration::from_millis(500), sub.next()).await,
        Ok(Some(m)) if &m.payload[..] == b"hi"
    )
}

/// Runs every check against one server URL; returns (name, accepted) answers in order.
async fn run(url: &str, s: &Setup, revoked: &KeyPair) -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    let u1 = KeyPair::new_user();
    let u2 = KeyPair::new_user();
    let ub = KeyPair::new_user();
    let a1 = connect(url, &creds(&UserClaims::new(u1.public_key()), &s.a, &u1))
        .await
        .expect("valid user connects");
    let a2 = connect(url, &creds(&UserClaims::new(u2.public_key()), &s.a, &u2))
        .await
        .expect("second valid user connects");
    let b1 = connect(url, &creds(&UserClaims::new(ub.public_key()), &s.b, &ub))
        .await
        .expect("user in B connects");
    out.push(("same account delivers", delivered(&a1, &a2, "app.x").await));
    out.push(("A to B isolated", delivered(&a1, &b1, "app.y").await));
    out.push(("B to A isolated", delivered(&b1, &a2, "app.z").await));

    let ue = KeyPair::new_user();
    let mut ec = UserClaims::new(ue.public_key());
    ec.exp = natrix_jwt::now() - 10;
    out.push((
        "expired user",
        connect(url, &creds(&ec, &s.a, &ue)).await.is_ok(),
    ));
    let rc = UserClaims::new(revoked.public_key());
    out.push((
        "revoked user",
        connect(url, &creds(&rc, &s.a, revoked)).await.is_ok(),
    ));
    let uu = KeyPair::new_user();
    let stranger = KeyPair::new_account();
    out.push((
        "unknown signer",
        connect(
            url,
            &creds(&UserClaims::new(uu.public_key()), &stranger, &uu),
        )
        .await
        .is_ok(),
    ));
    let mut uc = UserClaims::new(uu.public_key());
    uc.nats.issuer_account = s.a.public_key();
    out.push((
        "unknown signing key for A",
        connect(url, &creds(&uc, &stranger, &uu)).await.is_ok(),
    ));

    let up = KeyPair::new_user();
    let mut pc = UserClaims::new(up.public_key());
    pc.nats.limits.publish.allow = vec!["allowed.>".into()];
    let limited = connect(url, &creds(&pc, &s.a, &up))
        .await
        .expect("limited user connects");
    out.push((
        "permitted publish",
        delivered(&limited, &a2, "allowed.one").await,
    ));
    out.push((
        "denied publish",
        delivered(&limited, &a2, "denied.one").await,
    ));
    out
}

#[tokio::test]
async fn operator_mode_matches_reference() {
    let revoked = KeyPair::new_user();
    let s = setup(&revoked);
    let ours = start_conf(&s.config, false).await;
    let reference = RefServer::start(Some(&s.config), &[]);
    let got = run(&ours.url(), &s, &revoked).await;
    let want = run(&format!("nats://{}", reference.addr), &s, &revoked).await;
    assert_eq!(got, want);
    assert_eq!(
        got,
        vec![
            ("same account delivers", true),
            ("A to B isolated", false),
            ("B to A isolated", false),
            ("expired user", false),
            ("revoked user", false),
            ("unknown signer", false),
            ("unknown signing key for A", false),
            ("permitted publish", true),
            ("denied publish", false),
        ]
    );
}

/// Connects a bearer user of A whose JWT expires `secs` from now; returns everything the
/// server sends after the first PONG until it closes (or 6 s pass) and whether it closed.
async fn expiring_session(addr: std::net::SocketAddr, s: &Setup, secs: i64) -> (String, bool) {
    let u = KeyPair::new_user();
    let mut c = UserClaims::new(u.public_key());
    c.exp = natrix_jwt::now() + secs;
    c.nats.limits.bearer_token = true;
    let jwt = encode(&c, &s.a).unwrap();
    let mut raw = Raw::connect_with(
        addr,
        &format!(r#"{{"jwt":"{jwt}","verbose":false,"pedantic":false,"protocol":1}}"#),
    )
    .await;
    // nats-server 2.15 follows CONNECT with an INFO carrying `connect_info`/`remote_account`,
    // which Natrix does not send yet: leave INFO lines out of the comparison.
    let got = raw.read_for(Duration::from_secs(6)).await;
    let got: String = got
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("INFO "))
        .collect();
    (got, raw.is_closed().await)
}

#[tokio::test]
async fn expired_user_is_disconnected_like_reference() {
    let revoked = KeyPair::new_user();
    let s = setup(&revoked);
    let ours = start_conf(&s.config, true).await;
    let reference = RefServer::start(Some(&s.config), &["-m", "-1"]);
    let (got, want) = tokio::join!(
        expiring_session(ours.addr, &s, 2),
        expiring_session(reference.addr, &s, 2),
    );
    assert_eq!(got, want);
    assert_eq!(
        got,
        ("-ERR 'User Authentication Expired'\r\n".to_string(), true)
    );

    let closed = ours.server.closed_clients();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].reason.as_str(), "Authentication Expired");
    let reason = |v: serde_json::Value| v["connections"][0]["reason"].clone();
    let path = "/connz?state=closed";
    let is_one = |v: &serde_json::Value| v["num_connections"] == 1;
    let ref_base = format!("http://{}", reference.http.expect("reference monitor"));
    let ours_v = http::wait_json(&ours.http(), path, is_one).await;
    let ref_v = http::wait_json(&ref_base, path, is_one).await;
    assert_eq!(reason(ours_v), "Authentication Expired");
    assert_eq!(reason(ref_v), "Authentication Expired");

    // A user without an expiry stays connected.
    let u = KeyPair::new_user();
    let mut c = UserClaims::new(u.public_key());
    c.nats.limits.bearer_token = true;
    let jwt = encode(&c, &s.a).unwrap();
    let mut raw = Raw::connect_with(ours.addr, &format!(r#"{{"jwt":"{jwt}"}}"#)).await;
    assert_eq!(raw.read_for(Duration::from_millis(300)).await, "");
    assert_eq!(ours.server.closed_clients().len(), 1);
}

#[tokio::test]
async fn invalid_account_jwt_is_a_startup_error() {
    let revoked = KeyPair::new_user();
    let s = setup(&revoked);
    // An account JWT signed by a key the operator does not trust.
    let rogue = KeyPair::new_operator();
    let x = KeyPair::new_account();
    let x_jwt = encode(&AccountClaims::new(x.public_key()), &rogue).unwrap();
    let config = s.config.replacen(
        "resolver_preload: {\n",
        &format!("resolver_preload: {{\n  {}: {x_jwt}\n", x.public_key()),
        1,
    );
    let opts = conf::load_conf(&config);
    let Err(err) = natrix_broker::node::build(opts) else {
        panic!("untrusted account JWT refused");
    };
    assert!(err.to_string().contains(&x.public_key()), "{err}");
}

#[test]
fn other_resolvers_are_not_supported() {
    let dir = std::env::temp_dir().join(format!("natrix-op-res-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (r, want)) in [
        (
            "resolver: { type: cache, dir: \"/tmp/x\", interval: \"2m\" }",
            "interval only applies to resolver type full",
        ),
        (
            "resolver: URL(\"http://localhost:9090/jwt/v1/accounts/\")",
            "\"resolver\" is not supported yet",
        ),
    ]
    .iter()
    .enumerate()
    {
        let f = dir.join(format!("{i}.conf"));
        std::fs::write(&f, format!("port: 1\n{r}\n")).unwrap();
        let e = natrix_broker::config::load_file(&f)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{r}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn jetstream_follows_account_jwt_limits() {
    let okp = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let mut oc = OperatorClaims::new(okp.public_key());
    oc.nats.system_account = sys.public_key();
    let op_jwt = encode(&oc, &okp).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &okp).unwrap();
    let mut ac = AccountClaims::new(a.public_key());
    ac.nats.limits.jetstream.mem_storage = 1 << 20;
    ac.nats.limits.jetstream.disk_storage = 1 << 20;
    ac.nats.limits.jetstream.streams = 1;
    let a_jwt = encode(&ac, &okp).unwrap();
    let b_jwt = encode(&AccountClaims::new(b.public_key()), &okp).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "natrix-opjs-{}-{}",
        std::process::id(),
        a.public_key()
    ));
    let config = format!(
        "operator: {op_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {sys_jwt}\n  {}: {a_jwt}\n  {}: {b_jwt}\n}}\njetstream {{ store_dir: \"{}\" }}\n",
        sys.public_key(),
        sys.public_key(),
        a.public_key(),
        b.public_key(),
        dir.display()
    );
    let s = start_conf(&config, false).await;
    // A user signed by the account's identity key.
    let user = |acc: &KeyPair| {
        let u = KeyPair::new_user();
        creds(&UserClaims::new(u.public_key()), acc, &u)
    };
    let na = connect(&s.url(), &user(&a)).await.unwrap();
    let js = async_nats::jetstream::new(na);
    let info = js.query_account().await.unwrap();
    assert_eq!(info.limits.max_streams, Some(1));
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "S".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "T".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("maximum number of streams"),
        "{err}"
    );
    // Account B's JWT grants no JetStream.
    let nb = connect(&s.url(), &user(&b)).await.unwrap();
    assert!(async_nats::jetstream::new(nb)
        .query_account()
        .await
        .is_err());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trusted_keys` (and `trusted`): operator keys trusted without an operator JWT. Accounts
/// signed by a trusted key resolve, an account nobody has a JWT for does not; the same
/// answers as the reference nats-server.
#[tokio::test]
async fn trusted_keys_match_reference() {
    let okp = KeyPair::new_operator();
    let other = KeyPair::new_operator();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let c = KeyPair::new_account();
    let a_jwt = encode(&AccountClaims::new(a.public_key()), &okp).unwrap();
    let b_jwt = encode(&AccountClaims::new(b.public_key()), &other).unwrap();
    let user = |acc: &KeyPair| {
        let u = KeyPair::new_user();
        let mut uc = UserClaims::new(u.public_key());
        uc.name = "u".into();
        creds(&uc, acc, &u)
    };
    for key in ["trusted_keys", "trusted"] {
        let list = format!("[\"{}\", \"{}\"]", okp.public_key(), other.public_key());
        let value = if key == "trusted" {
            format!("\"{}\"", okp.public_key())
        } else {
            list
        };
        // B's signer is trusted only in the `trusted_keys` list; C has no JWT anywhere.
        let config = format!(
            "{key}: {value}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {a_jwt}\n{}}}\n",
            a.public_key(),
            if key == "trusted_keys" {
                format!("  {}: {b_jwt}\n", b.public_key())
            } else {
                String::new()
            },
        );
        let ours = start_conf(&config, false).await;
        let reference = RefServer::start(Some(&config), &[]);
        let mut results = Vec::new();
        for url in [ours.url(), format!("nats://{}", reference.addr)] {
            let r = (
                connect(&url, &user(&a)).await.is_ok(),
                connect(&url, &user(&b)).await.is_ok(),
                connect(&url, &user(&c)).await.is_ok(),
            );
            results.push(r);
        }
        assert_eq!(results[0], results[1], "{key}: natrix vs nats-server");
        assert_eq!(results[0], (true, key == "trusted_keys", false), "{key}");
    }
    // A key that is not an operator public key is refused as nats-server refuses it.
    let dir = std::env::temp_dir().join(format!("natrix-tk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.conf");
    std::fs::write(
        &f,
        format!("trusted_keys: [\"{}\"]\nresolver: MEMORY\n", a.public_key()),
    )
    .unwrap();
    let e = natrix_broker::config::load_file(&f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.conf:1:")
            && e.ends_with(&format!(
                ": trust key \"{}\" required to be a valid public operator nkey",
                a.public_key()
            )),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The user JWT's connection rules — source networks, allowed connection types, time ranges —
/// and an account that disallows bearer tokens: the same logins pass and fail as on the
/// reference nats-server.
#[tokio::test]
async fn user_connection_rules_match_reference() {
    let okp = KeyPair::new_operator();
    let a = KeyPair::new_account();
    let d = KeyPair::new_account();
    let a_jwt = encode(&AccountClaims::new(a.public_key()), &okp).unwrap();
    let mut dc = AccountClaims::new(d.public_key());
    dc.nats.limits.disallow_bearer = true;
    let d_jwt = encode(&dc, &okp).unwrap();
    let config = format!(
        "trusted_keys: [\"{}\"]\nresolver: MEMORY\nresolver_preload: {{\n  {}: {a_jwt}\n  {}: {d_jwt}\n}}\n",
        okp.public_key(),
        a.public_key(),
        d.public_key()
    );
    let now = natrix_jwt::now().rem_euclid(86_400);
    let hms = |s: i64| {
        let s = s.rem_euclid(86_400);
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    type Edit = Box<dyn Fn(&mut natrix_jwt::UserPermissionLimits)>;
    let cases: Vec<(&str, bool, Edit)> = vec![
        ("plain", false, Box::new(|_| {})),
        (
            "src allows loopback",
            false,
            Box::new(|l| l.src = vec!["127.0.0.1/32".into()]),
        ),
        (
            "src elsewhere",
            false,
            Box::new(|l| l.src = vec!["10.0.0.0/8".into()]),
        ),
        (
            "standard allowed",
            false,
            Box::new(|l| l.allowed_connection_types = vec!["STANDARD".into()]),
        ),
        (
            "mqtt only",
            false,
            Box::new(|l| l.allowed_connection_types = vec!["MQTT".into()]),
        ),
        ("bearer", false, Box::new(|l| l.bearer_token = true)),
        (
            "bearer, disallowed",
            true,
            Box::new(|l| l.bearer_token = true),
        ),
        (
            "inside the time range",
            false,
            Box::new(move |l| {
                l.times = vec![natrix_jwt::TimeRange {
                    start: hms(now - 3600),
                    end: hms(now + 3600),
                }]
            }),
        ),
        (
            "outside the time range",
            false,
            Box::new(move |l| {
                l.times = vec![natrix_jwt::TimeRange {
                    start: hms(now + 7200),
                    end: hms(now + 10800),
                }]
            }),
        ),
    ];
    let ours = start_conf(&config, false).await;
    let reference = RefServer::start(Some(&config), &[]);
    let mut results = Vec::new();
    for url in [ours.url(), format!("nats://{}", reference.addr)] {
        let mut seen = Vec::new();
        for (label, in_d, edit) in &cases {
            let acc = if *in_d { &d } else { &a };
            let u = KeyPair::new_user();
            let mut uc = UserClaims::new(u.public_key());
            edit(&mut uc.nats.limits);
            seen.push((*label, connect(&url, &creds(&uc, acc, &u)).await.is_ok()));
        }
        results.push(seen);
    }
    assert_eq!(results[0], results[1], "natrix vs nats-server");
    let ok: Vec<bool> = results[0].iter().map(|(_, ok)| *ok).collect();
    assert_eq!(
        ok,
        vec![true, true, false, true, false, true, false, true, false]
    );
}

/// Runs `bin -c conf` and returns its first stderr line when it exits within 10 s (a server
/// that keeps running is killed and reported as such).
fn startup_error(bin: &std::path::Path, conf: &std::path::Path) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
        .arg(conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return "still running".into();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let line = err.lines().last().unwrap_or("").to_string();
    // Both name the problem after their own prefix (and nats-server after a log header).
    line.rsplit_once(": ")
        .map_or(line.clone(), |(_, m)| m.to_string())
}

#[tokio::test]
async fn default_sentinel_matches_reference() {
    let revoked = KeyPair::new_user();
    let s = setup(&revoked);
    let sentinel = KeyPair::new_user();
    let mut uc = UserClaims::new(sentinel.public_key());
    uc.nats.limits.bearer_token = true;
    let config = format!(
        "{}default_sentinel: {}\n",
        s.config,
        encode(&uc, &s.a).unwrap()
    );
    let ours = start_conf(&config, false).await;
    let reference = RefServer::start(Some(&config), &[]);
    let mut answers = Vec::new();
    for url in [format!("nats://{}", reference.addr), ours.url()] {
        // A client without credentials is the sentinel user, in account A.
        let anon = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .expect("a client without credentials connects as the sentinel");
        let ua = KeyPair::new_user();
        let a = connect(&url, &creds(&UserClaims::new(ua.public_key()), &s.a, &ua))
            .await
            .unwrap();
        let ub = KeyPair::new_user();
        let b = connect(&url, &creds(&UserClaims::new(ub.public_key()), &s.b, &ub))
            .await
            .unwrap();
        answers.push(vec![
            delivered(&anon, &a, "sentinel.to.a").await,
            delivered(&a, &anon, "a.to.sentinel").await,
            delivered(&anon, &b, "sentinel.to.b").await,
        ]);
    }
    assert_eq!(answers[1], answers[0], "natrix vs nats-server");
    assert_eq!(answers[0], vec![true, true, false]);

    // Sentinels nats-server refuses at startup, with its words.
    let dir = tempdir_for("sentinel");
    let not_bearer = encode(&UserClaims::new(sentinel.public_key()), &s.a).unwrap();
    for (name, conf) in [
        (
            "not-bearer",
            format!("{}default_sentinel: {not_bearer}\n", s.config),
        ),
        ("not-a-jwt", format!("{}default_sentinel: one\n", s.config)),
        ("no-operator", "default_sentinel: one\n".to_string()),
    ] {
        let file = dir.join(format!("{name}.conf"));
        std::fs::write(&file, conf).unwrap();
        let want = startup_error(&common::nats_server_bin(), &file);
        let got = startup_error(
            std::path::Path::new(env!("CARGO_BIN_EXE_natrix-broker")),
            &file,
        );
        assert_eq!(got, want, "{name}");
        assert!(want.contains("default sentinel"), "{name}: {want}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn tempdir_for(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("natrix-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
