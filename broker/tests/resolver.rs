//! The nats-resolver (`resolver: { type: full }`) against the reference nats-server: account
//! JWTs pushed through the system account (`$SYS.REQ.CLAIMS.UPDATE` and the per-account form),
//! looked up, listed and deleted, with the same answers; pushed accounts can log in at once,
//! revocations disconnect, and the JWTs survive a restart in the directory.

mod common;

use std::time::Duration;

use common::{
    conf,
    operator::{connect, creds, keys, Keys},
    RefServer,
};
use natrix_jwt::{encode, encode_at, format_user_creds, AccountClaims, OperatorClaims, UserClaims};
use nkeys::KeyPair;
use serde_json::Value;

fn config(k: &Keys, dir: &std::path::Path) -> String {
    format!(
        "listen: \"127.0.0.1:-1\"\noperator: {}\nsystem_account: {}\nresolver: {{ type: full, dir: \"{}\", allow_delete: true, interval: \"2m\", timeout: \"1.9s\" }}\nresolver_preload: {{ {}: {} }}\n",
        k.op_jwt,
        k.sys.public_key(),
        dir.display(),
        k.sys.public_key(),
        k.sys_jwt
    )
}

async fn request(nc: &async_nats::Client, subject: &str, body: String) -> String {
    match tokio::time::timeout(
        Duration::from_secs(2),
        nc.request(subject.to_string(), body.into()),
    )
    .await
    {
        Ok(Ok(m)) => String::from_utf8_lossy(&m.payload).into_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "timeout".into(),
    }
}

/// The answer as JSON without the `server` block (ids and times differ between servers).
fn json(s: &str) -> Value {
    let mut v = serde_json::from_str(s).unwrap_or(Value::String(s.to_string()));
    if let Value::Object(m) = &mut v {
        m.remove("server");
    }
    v
}

/// The scenario against one server; every observation in order.
async fn scenario(
    url: &str,
    k: &Keys,
    a: &KeyPair,
    a_jwts: &[String],
    other: &KeyPair,
    delete_jwt: &str,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let su = KeyPair::new_user();
    let sys = connect(url, &creds(&k.sys, &su)).await.unwrap();
    let u1 = KeyPair::new_user();
    out.push((
        "unknown account user".into(),
        Value::Bool(connect(url, &creds(a, &u1)).await.is_ok()),
    ));
    let r = request(&sys, "$SYS.REQ.CLAIMS.UPDATE", a_jwts[0].clone()).await;
    out.push(("update".into(), json(&r)));
    let user = connect(url, &creds(a, &u1)).await;
    out.push(("pushed account user".into(), Value::Bool(user.is_ok())));
    let r = request(
        &sys,
        &format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", a.public_key()),
        String::new(),
    )
    .await;
    out.push(("lookup".into(), Value::Bool(r == a_jwts[0])));
    let r = request(&sys, "$SYS.REQ.CLAIMS.LIST", String::new()).await;
    let mut list = json(&r);
    if let Some(Value::Array(a)) = list.pointer_mut("/data") {
        a.sort_by_key(|v| v.to_string());
    }
    out.push(("list".into(), list));
    let r = request(
        &sys,
        &format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key()),
        a_jwts[0].clone(),
    )
    .await;
    out.push(("update wrong subject".into(), json(&r)));
    // A JWT signed by an unknown operator: nats-server stores it ("jwt updated") and only
    // refuses it when the account is used, which lets it replace a good JWT. Natrix refuses
    // it up front; this observation is compared separately.
    let rogue = encode(
        &AccountClaims::new(a.public_key()),
        &KeyPair::new_operator(),
    )
    .unwrap();
    let r = request(&sys, "$SYS.REQ.CLAIMS.UPDATE", rogue).await;
    out.push((
        "untrusted".into(),
        json(&r)
            .pointer("/error/code")
            .cloned()
            .unwrap_or(Value::Null),
    ));
    // Revoke u1: its connection is closed.
    let user = user.unwrap();
    let r = request(&sys, "$SYS.REQ.CLAIMS.UPDATE", a_jwts[1].clone()).await;
    out.push(("update revoking".into(), json(&r)));
    let mut closed = false;
    for _ in 0..150 {
        if user.connection_state() != async_nats::connection::State::Connected {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.push(("revoked user disconnected".into(), Value::Bool(closed)));
    let r = request(&sys, "$SYS.REQ.CLAIMS.DELETE", delete_jwt.to_string()).await;
    out.push(("delete".into(), json(&r)));
    let u2 = KeyPair::new_user();
    out.push((
        "deleted account user".into(),
        Value::Bool(connect(url, &creds(a, &u2)).await.is_ok()),
    ));
    out
}

#[tokio::test]
async fn resolver_matches_reference() {
    let k = keys();
    let a = KeyPair::new_account();
    let iat = natrix_jwt::now();
    let mut ac = AccountClaims::new(a.public_key());
    let a0 = encode_at(&ac, &k.op, iat).unwrap();
    // Revoke every user issued before an hour from now (the scenario's users included).
    ac.nats.revocations.insert("*".into(), iat + 3600);
    let a1 = encode_at(&ac, &k.op, iat + 1).unwrap();
    let del: natrix_jwt::GenericClaims = serde_json::from_value(serde_json::json!({
        "sub": k.op.public_key(),
        "nats": {"accounts": [a.public_key()]}
    }))
    .unwrap();
    let delete_jwt = encode(&del, &k.op).unwrap();
    let other = KeyPair::new_account();
    let base = std::env::temp_dir().join(format!("natrix-resolver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (dir_ref, dir_ours) = (base.join("ref"), base.join("ours"));
    std::fs::create_dir_all(&dir_ref).unwrap();
    std::fs::create_dir_all(&dir_ours).unwrap();
    let reference = RefServer::start(Some(&config(&k, &dir_ref)), &[]);
    let ours = conf::start_conf(&config(&k, &dir_ours), false).await;
    let jwts = [a0, a1];
    let want = scenario(
        &format!("nats://{}", reference.addr),
        &k,
        &a,
        &jwts,
        &other,
        &delete_jwt,
    )
    .await;
    let got = scenario(&ours.url(), &k, &a, &jwts, &other, &delete_jwt).await;
    let _ = std::fs::remove_dir_all(&base);
    let diffs: Vec<String> = want
        .iter()
        .zip(got.iter())
        .filter(|((l, w), (_, g))| l != "untrusted" && w != g)
        .map(|((l, w), (_, g))| format!("{l}:\n  reference: {w}\n  natrix:    {g}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let seen = |l: &str| got.iter().find(|(x, _)| x == l).unwrap().1.clone();
    assert_eq!(seen("pushed account user"), Value::Bool(true));
    assert_eq!(seen("revoked user disconnected"), Value::Bool(true));
    assert_eq!(seen("untrusted"), serde_json::json!(500));
}

#[tokio::test]
async fn pushed_accounts_survive_a_restart() {
    let k = keys();
    let a = KeyPair::new_account();
    let dir = std::env::temp_dir().join(format!("natrix-resolver-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a_jwt = encode(&AccountClaims::new(a.public_key()), &k.op).unwrap();
    {
        let s = conf::start_conf(&config(&k, &dir), false).await;
        let sys = connect(&s.url(), &creds(&k.sys, &KeyPair::new_user()))
            .await
            .unwrap();
        let r = request(&sys, "$SYS.REQ.CLAIMS.UPDATE", a_jwt.clone()).await;
        assert_eq!(json(&r)["data"]["message"], "jwt updated");
    }
    assert!(dir.join(format!("{}.jwt", a.public_key())).exists());
    let s = conf::start_conf(&config(&k, &dir), false).await;
    let u = KeyPair::new_user();
    assert!(connect(&s.url(), &creds(&a, &u)).await.is_ok());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Account JWTs over their operator-set limits — more imports or exports than allowed,
/// wildcard exports when wildcards are off — and a bearer user in an account that disallows
/// bearer tokens: the push answers and the logins match the reference nats-server.
#[tokio::test]
async fn account_limit_violations_match_reference() {
    let k = keys();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let mut cases: Vec<(&str, AccountClaims)> = Vec::new();
    let mut imports = AccountClaims::new(a.public_key());
    imports.nats.limits.imports = 1;
    for s in ["x.1", "x.2"] {
        imports.nats.imports.push(natrix_jwt::Import {
            subject: s.into(),
            account: b.public_key(),
            import_type: "stream".into(),
            ..Default::default()
        });
    }
    cases.push(("imports over limit", imports));
    let mut exports = AccountClaims::new(a.public_key());
    exports.nats.limits.exports = 1;
    for s in ["e.1", "e.2"] {
        exports.nats.exports.push(natrix_jwt::Export {
            subject: s.into(),
            export_type: "stream".into(),
            ..Default::default()
        });
    }
    cases.push(("exports over limit", exports));
    let mut wild = AccountClaims::new(a.public_key());
    wild.nats.limits.wildcards = false;
    wild.nats.exports.push(natrix_jwt::Export {
        subject: "w.*".into(),
        export_type: "stream".into(),
        ..Default::default()
    });
    cases.push(("wildcard export", wild));
    let mut ok = AccountClaims::new(a.public_key());
    ok.nats.limits.imports = 2;
    cases.push(("within limits", ok));

    let base = std::env::temp_dir().join(format!("natrix-resolver-lim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut results = Vec::new();
    for (i, which) in ["ref", "ours"].iter().enumerate() {
        let mut seen = Vec::new();
        for (n, (label, claims)) in cases.iter().enumerate() {
            let dir = base.join(format!("{which}-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let conf = config(&k, &dir);
            let (_r, _o, url) = if i == 0 {
                let r = RefServer::start(Some(&conf), &[]);
                let url = format!("nats://{}", r.addr);
                (Some(r), None, url)
            } else {
                let o = conf::start_conf(&conf, false).await;
                let url = o.url();
                (None, Some(o), url)
            };
            let su = KeyPair::new_user();
            let sys = connect(&url, &creds(&k.sys, &su)).await.unwrap();
            let jwt = encode(claims, &k.op).unwrap();
            let resp = json(&request(&sys, "$SYS.REQ.CLAIMS.UPDATE", jwt).await);
            let code = resp["error"]["code"]
                .as_u64()
                .or(resp["data"]["code"].as_u64());
            let desc = resp["error"]["description"].clone();
            let user = connect(&url, &creds(&a, &KeyPair::new_user()))
                .await
                .is_ok();
            seen.push((label.to_string(), code, desc, user));
        }
        results.push(seen);
    }
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(results[0], results[1], "reference vs natrix");
}

/// The seeds' walkthrough end to end, on both servers: an operator with a signing key, an
/// account signed by that signing key with an account signing key, a user signed by the
/// account signing key (`issuer_account` set) connecting with a creds file; removing the
/// account signing key and pushing the account locks the user out.
#[tokio::test]
async fn signing_key_walkthrough_matches_reference() {
    let op = KeyPair::new_operator();
    let osk = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let a = KeyPair::new_account();
    let ask = KeyPair::new_account();
    let mut oc = OperatorClaims::new(op.public_key());
    oc.nats.system_account = sys.public_key();
    oc.nats.signing_keys = vec![osk.public_key()];
    let op_jwt = encode(&oc, &op).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &osk).unwrap();
    let iat = natrix_jwt::now();
    let mut ac = AccountClaims::new(a.public_key());
    ac.nats.signing_keys = vec![natrix_jwt::SigningKey::Plain(ask.public_key())];
    let with_sk = encode_at(&ac, &osk, iat).unwrap();
    ac.nats.signing_keys.clear();
    let without_sk = encode_at(&ac, &osk, iat + 1).unwrap();
    let user = KeyPair::new_user();
    let mut uc = UserClaims::new(user.public_key());
    uc.nats.issuer_account = a.public_key();
    let user_jwt = encode(&uc, &ask).unwrap();
    let base = std::env::temp_dir().join(format!("natrix-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let creds_file = base.join("user.creds");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(
        &creds_file,
        format_user_creds(&user_jwt, &user.seed().unwrap()).unwrap(),
    )
    .unwrap();
    let mut results = Vec::new();
    for which in ["ref", "ours"] {
        let dir = base.join(which);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "listen: \"127.0.0.1:-1\"\noperator: {op_jwt}\nsystem_account: {}\nresolver: {{ type: full, dir: \"{}\" }}\nresolver_preload: {{ {}: {sys_jwt} }}\n",
            sys.public_key(),
            dir.display(),
            sys.public_key()
        );
        let (_r, _o, url) = if which == "ref" {
            let r = RefServer::start(Some(&conf), &[]);
            let url = format!("nats://{}", r.addr);
            (Some(r), None, url)
        } else {
            let o = conf::start_conf(&conf, false).await;
            let url = o.url();
            (None, Some(o), url)
        };
        let login = || async {
            let opts = async_nats::ConnectOptions::with_credentials_file(creds_file.clone())
                .await
                .unwrap()
                .max_reconnects(Some(0));
            tokio::time::timeout(Duration::from_secs(5), opts.connect(url.clone()))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false)
        };
        let mut seen = Vec::new();
        seen.push(("before the push", login().await));
        let sys_user = KeyPair::new_user();
        let admin = connect(&url, &creds(&sys, &sys_user)).await.unwrap();
        let push = |jwt: String| {
            let admin = admin.clone();
            async move { json(&request(&admin, "$SYS.REQ.CLAIMS.UPDATE", jwt).await) }
        };
        let r = push(with_sk.clone()).await;
        seen.push(("pushed with the signing key", r["data"]["code"] == 200));
        seen.push(("user signed by the account signing key", login().await));
        let r = push(without_sk.clone()).await;
        seen.push(("pushed without it", r["data"]["code"] == 200));
        seen.push(("user locked out", !login().await));
        results.push(seen);
    }
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert!(
        results[1][1..].iter().all(|(_, ok)| *ok),
        "{:?}",
        results[1]
    );
    assert!(!results[1][0].1, "refused before the push");
}
