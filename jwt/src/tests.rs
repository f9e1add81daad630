use nkeys::KeyPair;
use serde_json::json;

use super::*;

/// v1 user JWT from the nats docs creds example (alg "ed25519", signed over the payload only).
const V1_USER: &str = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiJUVlNNTEtTWkJBN01VWDNYQUxNUVQzTjRISUw1UkZGQU9YNUtaUFhEU0oyWlAzNkVMNVJBIiwiaWF0IjoxNTU4MDQ1NTYyLCJpc3MiOiJBQlZTQk0zVTQ1REdZRVVFQ0tYUVM3QkVOSFdHN0tGUVVEUlRFSEFKQVNPUlBWV0JaNEhPSUtDSCIsIm5hbWUiOiJvbWVnYSIsInN1YiI6IlVEWEIyVk1MWFBBU0FKN1pEVEtZTlE3UU9DRldTR0I0Rk9NWVFRMjVIUVdTQUY3WlFKRUJTUVNXIiwidHlwZSI6InVzZXIiLCJuYXRzIjp7InB1YiI6e30sInN1YiI6e319fQ.6TQ2ilCDb6m2ZDiJuj_D_OePGXFyN3Ap2DEm3ipcU5AhrWrNvneJryWrpgi_yuVWKo1UoD5s8bxlmwypWVGFAA";

fn payload(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&data_encoding::BASE64URL_NOPAD.decode(p.as_bytes()).unwrap()).unwrap()
}

#[test]
fn encode_decode_user() {
    let akp = KeyPair::new_account();
    let ukp = KeyPair::new_user();
    let mut uc = UserClaims::new(ukp.public_key());
    uc.name = "alice".into();
    uc.nats.limits.publish.allow = vec!["foo.>".into()];
    uc.nats.limits.subscribe.deny = vec!["bar".into()];
    uc.nats.limits.resp = Some(ResponsePermission {
        max: 1,
        ttl: 1_000_000_000,
    });
    uc.nats.tags = vec!["team:a".into()];
    let t = encode(&uc, &akp).unwrap();
    let h = decode_header(&t).unwrap();
    assert_eq!((h.typ.as_str(), h.alg.as_str()), ("JWT", "ed25519-nkey"));
    let Claims::User(d) = decode(&t).unwrap() else {
        panic!("not a user")
    };
    assert_eq!(d.iss, akp.public_key());
    assert!(d.iat > 0 && (now() - d.iat).abs() < 5);
    assert_eq!(d.nats.claim_type, "user");
    assert_eq!(d.nats.version, 2);
    assert_eq!(d.nats.limits.publish.allow, vec!["foo.>"]);
    assert_eq!(d.nats.limits.subs, -1);
    assert_eq!(d.jti, d.hash());
    assert_eq!(d.jti.len(), 52);
    let v = payload(&t);
    assert_eq!(v["nats"]["pub"]["allow"], json!(["foo.>"]));
    assert_eq!(
        v["nats"]["resp"],
        json!({"max": 1, "ttl": 1_000_000_000i64})
    );
    assert_eq!(v["nats"]["type"], "user");
    // decode_as
    assert!(decode_as::<User>(&t).is_ok());
    assert!(matches!(
        decode_as::<Account>(&t),
        Err(Error::WrongType { .. })
    ));
}

#[test]
fn jti_is_sha512_256_of_claims_data() {
    let mut c = UserClaims::new("UABC");
    c.iss = "AXYZ".into();
    c.iat = 1_700_000_000;
    c.name = "a<b>&c".into();
    let json = r#"{"iat":1700000000,"iss":"AXYZ","name":"a\u003cb\u003e\u0026c","sub":"UABC"}"#;
    let want = data_encoding::BASE32_NOPAD.encode(&sha2::Sha512_256::digest(json.as_bytes()));
    assert_eq!(c.hash(), want);
    c.jti = "ignored".into();
    assert_eq!(c.hash(), want);
}

#[test]
fn issuer_kind_enforced() {
    let okp = KeyPair::new_operator();
    let akp = KeyPair::new_account();
    let ukp = KeyPair::new_user();
    // encode refuses a wrong issuer kind
    assert!(matches!(
        encode(&UserClaims::new(ukp.public_key()), &okp),
        Err(Error::IssuerPrefix { .. })
    ));
    assert!(encode(&AccountClaims::new(akp.public_key()), &akp).is_err());
    assert!(encode(&UserClaims::new(""), &akp).is_err());
    // decode refuses a hand-made user token signed by an operator
    let mut c = UserClaims::new(ukp.public_key());
    c.iss = okp.public_key();
    let h = data_encoding::BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let mut c2 = c.clone();
    c2.nats.set_generic();
    let p = data_encoding::BASE64URL_NOPAD.encode(serde_json::to_string(&c2).unwrap().as_bytes());
    let sig = okp.sign(format!("{h}.{p}").as_bytes()).unwrap();
    let t = format!("{h}.{p}.{}", data_encoding::BASE64URL_NOPAD.encode(&sig));
    assert!(matches!(decode(&t), Err(Error::IssuerPrefix { .. })));
    // operator and account claims are signed by operators
    let ot = encode(&OperatorClaims::new(okp.public_key()), &okp).unwrap();
    assert!(matches!(decode(&ot).unwrap(), Claims::Operator(_)));
    let at = encode(&AccountClaims::new(akp.public_key()), &okp).unwrap();
    let Claims::Account(a) = decode(&at).unwrap() else {
        panic!()
    };
    assert_eq!(a.nats.limits.conn, -1);
    assert!(a.nats.limits.wildcards);
    let mut act = ActivationClaims::new(KeyPair::new_account().public_key());
    act.nats.import_subject = "svc.>".into();
    act.nats.import_type = "service".into();
    let t = encode(&act, &akp).unwrap();
    let Claims::Activation(d) = decode(&t).unwrap() else {
        panic!()
    };
    assert_eq!(d.nats.import_subject, "svc.>");
    assert_eq!(payload(&t)["nats"]["kind"], "service");
}

#[test]
fn signature_tamper_rejected() {
    let akp = KeyPair::new_account();
    let t = encode(&UserClaims::new(KeyPair::new_user().public_key()), &akp).unwrap();
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    // re-sign with another account key but keep iss
    let other = KeyPair::new_account();
    let sig = other
        .sign(format!("{}.{}", parts[0], parts[1]).as_bytes())
        .unwrap();
    parts[2] = data_encoding::BASE64URL_NOPAD.encode(&sig);
    assert!(matches!(decode(&parts.join(".")), Err(Error::Signature)));
    // modified payload
    let mut v = payload(&t);
    v["name"] = json!("evil");
    let p = data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let bad = format!(
        "{}.{}.{}",
        t.split('.').next().unwrap(),
        p,
        t.split('.').nth(2).unwrap()
    );
    assert!(matches!(decode(&bad), Err(Error::Signature)));
    assert!(matches!(decode("a.b"), Err(Error::Malformed(_))));
    let hdr = data_encoding::BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let rest: Vec<&str> = t.split('.').skip(1).collect();
    assert!(matches!(
        decode(&format!("{hdr}.{}", rest.join("."))),
        Err(Error::Header { .. })
    ));
}

#[test]
fn v1_token_decodes() {
    let c = decode(V1_USER).unwrap();
    assert_eq!(c.claim_type(), "user");
    assert_eq!(
        c.issuer(),
        "ABVSBM3U45DGYEUECKXQS7BENHWG7KFQUDRTEHAJASORPVWBZ4HOIKCH"
    );
    assert_eq!(
        c.subject(),
        "UDXB2VMLXPASAJ7ZDTKYNQ7QOCFWSGB4FOMYQQ25HQWSAF7ZQJEBSQSW"
    );
    assert_eq!(decode_header(V1_USER).unwrap().alg, "ed25519");
}

#[test]
fn validate_times() {
    let mut c = UserClaims::new("U");
    assert!(c.validate(100).is_ok());
    c.exp = 100;
    assert!(c.validate(100).is_ok());
    assert!(matches!(c.validate(101), Err(Error::Expired)));
    c.exp = 0;
    c.nbf = 50;
    assert!(matches!(c.validate(49), Err(Error::NotYetValid)));
    assert!(c.validate(50).is_ok());
}

#[test]
fn unknown_fields_round_trip() {
    let v = json!({
        "jti": "X", "iat": 5, "iss": "A", "sub": "A2", "future_top": {"a": 1},
        "nats": {
            "type": "account", "version": 2, "trace": {"dest": "t"}, "cluster_traffic": "owner",
            "limits": {"conn": -1, "new_limit": 7, "tiered_limits": {"R1": {"mem_storage": 5, "streams": 2}}},
            "signing_keys": ["AK1", {"kind": "user_scope", "key": "AK2", "role": "r",
                "template": {"pub": {"allow": ["a"]}, "src": "10.0.0.0/8, 192.168.0.0/16", "subs": -1}}],
            "revocations": {"UX": 10, "*": 20},
            "imports": [{"name": "i", "subject": "s", "account": "AX", "type": "service", "allow_trace": true}],
            "exports": [{"subject": "e.>", "type": "stream", "revocations": {"AY": 1}, "service_latency": {"sampling": 50, "results": "l"}}],
            "mappings": {"m": [{"subject": "n", "weight": 50}, {"subject": "o", "weight": 50, "cluster": "c"}]},
            "authorization": {"auth_users": ["UA"], "allowed_accounts": ["*"], "xkey": "X1"},
            "default_permissions": {"pub": {"deny": ["x"]}, "sub": {}}
        }
    });
    let a: AccountClaims = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(a.nats.limits.tiered_limits["R1"].streams, 2);
    assert_eq!(a.nats.signing_keys[0], SigningKey::Plain("AK1".into()));
    let SigningKey::Scoped(s) = &a.nats.signing_keys[1] else {
        panic!()
    };
    assert_eq!(s.template.src, vec!["10.0.0.0/8", "192.168.0.0/16"]);
    assert_eq!(s.template.subs, -1);
    assert_eq!(a.nats.authorization.auth_users, vec!["UA"]);
    assert!(a.nats.is_revoked("UX", 10));
    assert!(!a.nats.is_revoked("UY", 21));
    assert!(a.nats.is_revoked("UY", 20));
    let back = serde_json::to_value(&a).unwrap();
    assert_eq!(back["future_top"], v["future_top"]);
    assert_eq!(back["nats"]["trace"], v["nats"]["trace"]);
    assert_eq!(back["nats"]["limits"]["new_limit"], 7);
    assert_eq!(back["nats"]["imports"][0]["allow_trace"], true);
    assert_eq!(
        back["nats"]["exports"][0]["service_latency"],
        v["nats"]["exports"][0]["service_latency"]
    );
    let again: AccountClaims = serde_json::from_value(back.clone()).unwrap();
    assert_eq!(again, a);
    // user: flattened limits plus unknown fields, without duplicates
    let u: UserClaims = serde_json::from_value(json!({"sub": "U", "nats": {
        "type": "user", "version": 2, "pub": {"allow": ["a"]}, "src": ["1.2.3.4/32"],
        "times": [{"start": "08:00:00", "end": "17:00:00"}], "times_location": "UTC",
        "bearer_token": true, "allowed_connection_types": ["STANDARD"], "issuer_account": "AA", "odd": 1}}))
    .unwrap();
    assert_eq!(u.nats.limits.times[0].start, "08:00:00");
    assert_eq!(u.nats.limits.locale, "UTC");
    assert!(u.nats.limits.bearer_token);
    assert_eq!(u.nats.extra.len(), 1, "{:?}", u.nats.extra);
    let s = serde_json::to_string(&u).unwrap();
    assert_eq!(s.matches("\"pub\"").count(), 1);
    assert_eq!(serde_json::from_str::<UserClaims>(&s).unwrap(), u);
    // null lists (Go nil slices) decode
    let n: AccountClaims = serde_json::from_value(
        json!({"sub": "A", "nats": {"imports": null, "signing_keys": null, "revocations": null}}),
    )
    .unwrap();
    assert!(n.nats.imports.is_empty());
}

#[test]
fn generic_claims_decode() {
    let akp = KeyPair::new_account();
    let mut g = GenericClaims {
        sub: "anything".into(),
        ..Default::default()
    };
    g.nats.insert("type".into(), "authorization_request".into());
    let t = encode(&g, &akp).unwrap();
    let c = decode(&t).unwrap();
    assert_eq!(c.claim_type(), "authorization_request");
    assert!(matches!(c, Claims::Generic(_)));
}

struct Chain {
    okp: KeyPair,
    oc: OperatorClaims,
    akp: KeyPair,
    ac: AccountClaims,
}

fn chain() -> Chain {
    let okp = KeyPair::new_operator();
    let oc = OperatorClaims::new(okp.public_key());
    let akp = KeyPair::new_account();
    let mut ac = AccountClaims::new(akp.public_key());
    ac.name = "ACC".into();
    ac.nats.tags = vec!["env:prod".into()];
    Chain { okp, oc, akp, ac }
}

#[test]
fn verify_user_identity_and_signing_keys() {
    let Chain { akp, mut ac, .. } = chain();
    let apk = akp.public_key();
    let ukp = KeyPair::new_user();
    let t = encode(&UserClaims::new(ukp.public_key()), &akp).unwrap();
    let v = verify_user(&t, &ac, &apk).unwrap();
    assert_eq!(v.signing_key, None);
    assert_eq!(v.permissions.subs, -1);
    // plain signing key: needs issuer_account
    let sk = KeyPair::new_account();
    let t_no_ia = encode(&UserClaims::new(ukp.public_key()), &sk).unwrap();
    let mut uc = UserClaims::new(ukp.public_key());
    uc.nats.issuer_account = apk.clone();
    let t_sk = encode(&uc, &sk).unwrap();
    assert!(matches!(
        verify_user(&t_sk, &ac, &apk),
        Err(Error::UntrustedIssuer(_))
    ));
    ac.nats
        .signing_keys
        .push(SigningKey::Plain(sk.public_key()));
    assert_eq!(
        verify_user(&t_sk, &ac, &apk).unwrap().signing_key,
        Some(sk.public_key())
    );
    assert!(matches!(
        verify_user(&t_no_ia, &ac, &apk),
        Err(Error::IssuerAccount { .. })
    ));
    // issuer_account naming another account
    uc.nats.issuer_account = KeyPair::new_account().public_key();
    let t_bad = encode(&uc, &sk).unwrap();
    assert!(matches!(
        verify_user(&t_bad, &ac, &apk),
        Err(Error::IssuerAccount { .. })
    ));
    // wrong account key
    assert!(verify_user(&t, &ac, &KeyPair::new_account().public_key()).is_err());
    // default permissions apply to users without their own
    ac.nats.default_permissions = Some(Permissions {
        publish: Permission {
            allow: vec!["d".into()],
            deny: vec![],
        },
        ..Default::default()
    });
    assert_eq!(
        verify_user(&t, &ac, &apk)
            .unwrap()
            .permissions
            .publish
            .allow,
        vec!["d"]
    );
}

#[test]
fn verify_user_revocations_and_time() {
    let Chain { akp, mut ac, .. } = chain();
    let apk = akp.public_key();
    let ukp = KeyPair::new_user();
    let iat = 1_000_000;
    let t = encode_at(&UserClaims::new(ukp.public_key()), &akp, iat).unwrap();
    assert!(verify_user_at(&t, &ac, &apk, iat + 1).is_ok());
    ac.nats.revocations.insert(ukp.public_key(), iat - 1);
    assert!(verify_user_at(&t, &ac, &apk, iat + 1).is_ok());
    ac.nats.revocations.insert(ukp.public_key(), iat);
    assert!(matches!(
        verify_user_at(&t, &ac, &apk, iat + 1),
        Err(Error::Revoked(_))
    ));
    ac.nats.revocations.clear();
    ac.nats.revocations.insert(REVOKE_ALL.into(), iat + 10);
    assert!(matches!(
        verify_user_at(&t, &ac, &apk, iat + 1),
        Err(Error::Revoked(_))
    ));
    ac.nats.revocations.clear();
    let mut uc = UserClaims::new(ukp.public_key());
    uc.exp = iat + 5;
    let t = encode_at(&uc, &akp, iat).unwrap();
    assert!(verify_user_at(&t, &ac, &apk, iat + 5).is_ok());
    assert!(matches!(
        verify_user_at(&t, &ac, &apk, iat + 6),
        Err(Error::Expired)
    ));
}

#[test]
fn verify_user_scoped() {
    let Chain { akp, mut ac, .. } = chain();
    let apk = akp.public_key();
    let sk = KeyPair::new_account();
    let mut template = UserPermissionLimits::unlimited();
    template.publish.allow = vec![
        "u.{{name()}}.>".into(),
        "s.{{subject()}}".into(),
        "t.{{tag(team)}}.{{account-tag(env)}}".into(),
        "a.{{account-name()}}".into(),
    ];
    template.subscribe.allow = vec!["_INBOX.>".into()];
    ac.nats.signing_keys.push(SigningKey::Scoped(UserScope {
        kind: "user_scope".into(),
        key: sk.public_key(),
        role: "dev".into(),
        template,
        ..Default::default()
    }));
    let ukp = KeyPair::new_user();
    let mut uc = UserClaims::new(ukp.public_key());
    uc.name = "bob".into();
    uc.nats.issuer_account = apk.clone();
    uc.nats.tags = vec!["team:red".into(), "team:blue".into()];
    uc.nats.limits = UserPermissionLimits::default();
    let t = encode(&uc, &sk).unwrap();
    let v = verify_user(&t, &ac, &apk).unwrap();
    assert_eq!(v.role.as_deref(), Some("dev"));
    assert_eq!(
        v.permissions.publish.allow,
        vec![
            "u.bob.>".to_string(),
            format!("s.{}", ukp.public_key()),
            "t.red.prod".into(),
            "t.blue.prod".into(),
            "a.ACC".into(),
        ]
    );
    assert_eq!(v.permissions.subs, -1);
    // a scoped user with its own permissions is refused
    uc.nats.limits = UserPermissionLimits::unlimited();
    let t = encode(&uc, &sk).unwrap();
    assert!(matches!(
        verify_user(&t, &ac, &apk),
        Err(Error::ScopedWithPermissions)
    ));
    // missing tag
    uc.nats.limits = UserPermissionLimits::default();
    uc.nats.tags.clear();
    let t = encode(&uc, &sk).unwrap();
    assert!(matches!(
        verify_user(&t, &ac, &apk),
        Err(Error::Template(_))
    ));
}

#[test]
fn verify_account_chain() {
    let Chain {
        okp,
        mut oc,
        akp,
        ac,
    } = chain();
    let t = encode(&ac, &okp).unwrap();
    assert_eq!(verify_account(&t, &oc).unwrap().sub, akp.public_key());
    let osk = KeyPair::new_operator();
    let t_sk = encode(&ac, &osk).unwrap();
    assert!(matches!(
        verify_account(&t_sk, &oc),
        Err(Error::UntrustedIssuer(_))
    ));
    oc.nats.signing_keys.push(osk.public_key());
    assert!(verify_account(&t_sk, &oc).is_ok());
    oc.nats.strict_signing_key_usage = true;
    assert!(verify_account(&t_sk, &oc).is_ok());
    assert!(matches!(
        verify_account(&t, &oc),
        Err(Error::UntrustedIssuer(_))
    ));
    let mut exp = ac.clone();
    exp.exp = 10;
    oc.nats.strict_signing_key_usage = false;
    assert!(matches!(
        verify_account(&encode(&exp, &okp).unwrap(), &oc),
        Err(Error::Expired)
    ));
    // a user token is not an account
    let ut = encode(&UserClaims::new(KeyPair::new_user().public_key()), &akp).unwrap();
    assert!(verify_account(&ut, &oc).is_err());
}

#[test]
fn verify_activation_chain() {
    let Chain { akp, mut ac, .. } = chain();
    let exp_pk = akp.public_key();
    let importer = KeyPair::new_account().public_key();
    ac.nats.exports.push(Export {
        subject: "svc.>".into(),
        export_type: "service".into(),
        token_req: true,
        ..Default::default()
    });
    let mut act = ActivationClaims::new(importer.clone());
    act.nats.import_subject = "svc.>".into();
    act.nats.import_type = "service".into();
    let iat = 2_000_000;
    let t = encode_at(&act, &akp, iat).unwrap();
    assert!(verify_activation_at(&t, &ac, &exp_pk, &importer, iat).is_ok());
    let other = KeyPair::new_account().public_key();
    assert!(matches!(
        verify_activation_at(&t, &ac, &exp_pk, &other, iat),
        Err(Error::Subject(_))
    ));
    // signing key needs issuer_account
    let sk = KeyPair::new_account();
    ac.nats
        .signing_keys
        .push(SigningKey::Plain(sk.public_key()));
    let t_sk = encode_at(&act, &sk, iat).unwrap();
    assert!(matches!(
        verify_activation_at(&t_sk, &ac, &exp_pk, &importer, iat),
        Err(Error::IssuerAccount { .. })
    ));
    act.nats.issuer_account = exp_pk.clone();
    let t_sk = encode_at(&act, &sk, iat).unwrap();
    assert!(verify_activation_at(&t_sk, &ac, &exp_pk, &importer, iat).is_ok());
    // export revocation of the importer
    ac.nats.exports[0].revocations.insert(importer.clone(), iat);
    assert!(matches!(
        verify_activation_at(&t, &ac, &exp_pk, &importer, iat),
        Err(Error::Revoked(_))
    ));
}

#[test]
fn account_jetstream_limits_are_flat_in_json() {
    let l: OperatorLimits =
        serde_json::from_str(r#"{"conn": 3, "mem_storage": 5, "streams": 2, "new_field": 1}"#)
            .unwrap();
    assert_eq!(
        (l.conn, l.jetstream.mem_storage, l.jetstream.streams),
        (3, 5, 2)
    );
    assert_eq!(
        l.extra.len(),
        1,
        "only the unknown field is kept aside: {:?}",
        l.extra
    );
    let back = serde_json::to_value(&l).unwrap();
    assert_eq!(back["mem_storage"], 5);
    assert_eq!(back["new_field"], 1);
    assert!(back.get("jetstream").is_none());
}
