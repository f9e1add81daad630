//! Security config (`authorization`, `accounts`, `no_auth_user`, `system_account`, `tls`)
//! mapped onto Options, errors with positions, and the matching command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use natrix_broker::cli::parse_args;
use natrix_broker::config::{apply, parse_str, ConfigError};
use natrix_broker::options::{
    AccountConfig, Export, Import, Options, Permissions, ResponsePermission, ResponseType,
    SubjectPermission, TlsOptions, User,
};

const NKEY: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";

fn load(s: &str) -> Result<(Options, Vec<String>), ConfigError> {
    let m = parse_str(s, "a.conf")?;
    let mut o = Options::default();
    let w = apply(&m, &mut o)?;
    Ok((o, w))
}

fn opts(s: &str) -> Options {
    let (o, w) = load(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(w.is_empty(), "{s:?}: unexpected warnings {w:?}");
    o
}

fn err(s: &str) -> String {
    load(s).map(|_| ()).unwrap_err().to_string()
}

fn allow(s: &[&str]) -> Option<SubjectPermission> {
    Some(SubjectPermission {
        allow: s.iter().map(|s| s.to_string()).collect(),
        deny: Vec::new(),
    })
}

fn user(name: &str, pass: Option<&str>) -> User {
    User {
        username: Some(name.into()),
        password: pass.map(Into::into),
        ..User::default()
    }
}

#[test]
fn single_user_and_token_and_timeout() {
    let o = opts("authorization { user: alice, password: s3cret, timeout: 3 }");
    assert_eq!(o.users, vec![user("alice", Some("s3cret"))]);
    assert_eq!(o.auth_timeout, Duration::from_secs(3));
    assert!(o.auth_required());
    let o = opts("authorization { username: a, pass: b, timeout: 0.5 }");
    assert_eq!(o.users, vec![user("a", Some("b"))]);
    assert_eq!(o.auth_timeout, Duration::from_millis(500));
    let o = opts("authorization { token: \"$2a$11$abc\", timeout: \"1m\" }");
    assert_eq!(o.token.as_deref(), Some("$2a$11$abc"));
    assert!(o.users.is_empty());
    assert_eq!(o.auth_timeout, Duration::from_secs(60));
}

#[test]
fn users_permissions_and_defaults() {
    let o = opts(concat!(
        "authorization {\n",
        "  default_permissions { publish: \"pub.>\", subscribe: [\"a\", \"b.*\"] }\n",
        "  users: [\n",
        "    {user: a, password: p}\n",
        "    {user: b, password: q, permissions: {\n",
        "       publish: {allow: [\"x\"], deny: \"x.secret\"}\n",
        "       subscribe: {deny: [\">\"]}\n",
        "       allow_responses: {max: 5, expires: \"1m\"}\n",
        "    }}\n",
        "    {nkey: ",
        "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
        ", permissions: {pub: [], sub: \"q queue\", allow_responses: true}}\n",
        "    {user: c, permissions: {import: i, export: e}}\n",
        "  ]\n",
        "}\n",
    ));
    let defaults = Permissions {
        publish: allow(&["pub.>"]),
        subscribe: allow(&["a", "b.*"]),
        allow_responses: None,
    };
    assert_eq!(o.default_permissions, Some(defaults.clone()));
    assert_eq!(o.users.len(), 4);
    assert_eq!(o.users[0].permissions, Some(defaults));
    assert_eq!(
        o.users[1].permissions,
        Some(Permissions {
            publish: Some(SubjectPermission {
                allow: vec!["x".into()],
                deny: vec!["x.secret".into()],
            }),
            subscribe: Some(SubjectPermission {
                allow: vec![],
                deny: vec![">".into()],
            }),
            allow_responses: Some(ResponsePermission {
                max: 5,
                expires: Duration::from_secs(60),
            }),
        })
    );
    let nk = &o.users[2];
    assert_eq!(
        (nk.username.as_deref(), nk.nkey.as_deref()),
        (None, Some(NKEY))
    );
    // `true` is nats-server's default: one response within two minutes.
    assert_eq!(
        nk.permissions,
        Some(Permissions {
            publish: allow(&[]),
            subscribe: allow(&["q queue"]),
            allow_responses: Some(ResponsePermission {
                max: 1,
                expires: Duration::from_secs(120),
            }),
        })
    );
    // `import`/`export` are nats-server's aliases of publish/subscribe; no password is fine.
    assert_eq!(o.users[3].password, None);
    assert_eq!(
        o.users[3].permissions.as_ref().unwrap().publish,
        allow(&["i"])
    );
    assert_eq!(
        o.users[3].permissions.as_ref().unwrap().subscribe,
        allow(&["e"])
    );
    // `permissions` in authorization is the default for users.
    let o = opts("authorization { permissions { sub: x }, users: [{user: u}] }");
    assert_eq!(
        o.users[0].permissions.as_ref().unwrap().subscribe,
        allow(&["x"])
    );
    // allow_responses: false and an empty allow/deny map mean nothing set.
    let o = opts(
        "authorization { users: [{user: u, permissions: {publish: {}, allow_responses: false}}] }",
    );
    assert_eq!(o.users[0].permissions, Some(Permissions::default()));
}

#[test]
fn accounts_users_exports_imports() {
    let o = opts(concat!(
        "accounts {\n",
        "  A: {\n",
        "    users: [{user: a1, password: p}, {nkey: ",
        "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
        "}]\n",
        "    exports: [\n",
        "      {stream: \"pub.>\"}\n",
        "      {stream: \"priv.>\", accounts: [B]}\n",
        "      {service: \"svc.req\", response_type: stream, accounts: [B]}\n",
        "      {service: \"svc.chunk\", response: chunked}\n",
        "      {service: \"svc.one\"}\n",
        "    ]\n",
        "  }\n",
        "  B: {\n",
        "    default_permissions: {publish: \"b.>\"}\n",
        "    users: [{user: b1, password: p}]\n",
        "    imports: [\n",
        "      {stream: {account: A, subject: \"pub.x\"}, prefix: \"from_a\"}\n",
        "      {stream: {account: A, subject: \"priv.*\"}, to: \"mine.*\"}\n",
        "      {service: {account: A, subject: \"svc.req\"}, to: \"req\"}\n",
        "      {service: {account: A, subject: \"svc.one\"}}\n",
        "    ]\n",
        "  }\n",
        "}\n",
        "system_account: A\n",
        "no_auth_user: b1\n",
    ));
    assert_eq!(o.system_account.as_deref(), Some("A"));
    assert_eq!(o.no_auth_user.as_deref(), Some("b1"));
    assert_eq!(o.users.len(), 3);
    assert_eq!(o.users[0].account.as_deref(), Some("A"));
    assert_eq!(o.users[1].nkey.as_deref(), Some(NKEY));
    assert_eq!(o.users[1].account.as_deref(), Some("A"));
    assert_eq!(o.users[2].account.as_deref(), Some("B"));
    assert_eq!(
        o.users[2].permissions.as_ref().unwrap().publish,
        allow(&["b.>"])
    );
    assert_eq!(
        o.accounts[0],
        AccountConfig {
            name: "A".into(),
            exports: vec![
                Export::Stream {
                    subject: "pub.>".into(),
                    accounts: vec![]
                },
                Export::Stream {
                    subject: "priv.>".into(),
                    accounts: vec!["B".into()]
                },
                Export::Service {
                    subject: "svc.req".into(),
                    accounts: vec!["B".into()],
                    response_type: ResponseType::Stream
                },
                Export::Service {
                    subject: "svc.chunk".into(),
                    accounts: vec![],
                    response_type: ResponseType::Chunked
                },
                Export::Service {
                    subject: "svc.one".into(),
                    accounts: vec![],
                    response_type: ResponseType::Singleton
                },
            ],
            imports: vec![],
            jetstream: None,
        }
    );
    assert_eq!(
        o.accounts[1].imports,
        vec![
            Import::Stream {
                account: "A".into(),
                subject: "pub.x".into(),
                to: None,
                prefix: Some("from_a".into())
            },
            Import::Stream {
                account: "A".into(),
                subject: "priv.*".into(),
                to: Some("mine.*".into()),
                prefix: None
            },
            Import::Service {
                account: "A".into(),
                subject: "svc.req".into(),
                to: Some("req".into())
            },
            Import::Service {
                account: "A".into(),
                subject: "svc.one".into(),
                to: None
            },
        ]
    );
    // The list form only names accounts.
    let o = opts("accounts: [X, Y]\nsystem_account: Y");
    let names: Vec<_> = o.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["X", "Y"]);
    assert_eq!(
        opts("accounts { S {} }\nsystem: S")
            .system_account
            .as_deref(),
        Some("S")
    );
    // An nkey can be the no_auth_user.
    let o = opts(&format!(
        "authorization {{ users: [{{nkey: {NKEY}}}] }}\nno_auth_user: {NKEY}"
    ));
    assert_eq!(o.no_auth_user.as_deref(), Some(NKEY));
}

#[test]
fn tls_block() {
    let dir = std::env::temp_dir().join(format!("natrix-cfg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("c.pem");
    let key = dir.join("k.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let conf = format!(
        concat!(
            "tls {{\n",
            "  cert_file: \"{c}\"\n  key_file: \"{k}\"\n  ca_file: \"{c}\"\n",
            "  verify_and_map: true\n  timeout: 0.5\n  handshake_first: true\n",
            "  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
            "  curve_preferences: [X25519, CurveP256]\n",
            "}}\n"
        ),
        c = cert.display(),
        k = key.display()
    );
    let o = opts(&conf);
    assert_eq!(
        o.tls,
        Some(TlsOptions {
            cert_file: cert.clone(),
            key_file: key.clone(),
            ca_file: Some(cert.clone()),
            verify: true,
            verify_and_map: true,
            timeout: Duration::from_millis(500),
            handshake_first: true,
            handshake_first_fallback: None,
            cipher_suites: vec![
                "TLS_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()
            ],
            curve_preferences: vec!["X25519".into(), "CurveP256".into()],
            insecure: false,
            certs: Vec::new(),
        })
    );
    assert!(o.auth_required(), "verify_and_map requires auth");
    // With TLS, the auth timeout defaults to the TLS timeout plus a second.
    assert_eq!(o.auth_timeout, Duration::from_millis(1500));
    let base = format!(
        "cert_file: \"{}\", key_file: \"{}\"",
        cert.display(),
        key.display()
    );
    let t = opts(&format!("tls {{ {base} }}")).tls.unwrap();
    assert_eq!(
        (t.timeout, t.verify, t.ca_file),
        (Duration::from_secs(2), false, None)
    );
    assert_eq!(
        opts(&format!("tls {{ {base} }}")).auth_timeout,
        Duration::from_secs(3)
    );
    let o = opts(&format!(
        "tls {{ {base} }}\nauthorization {{ token: t, timeout: 1 }}"
    ));
    assert_eq!(o.auth_timeout, Duration::from_secs(1));
    let t = opts(&format!(
        "tls {{ {base}, timeout: \"5s\", handshake_first: auto }}"
    ))
    .tls
    .unwrap();
    assert_eq!(t.timeout, Duration::from_secs(5));
    assert_eq!(
        (t.handshake_first, t.handshake_first_fallback),
        (true, Some(Duration::from_millis(50)))
    );
    let t = opts(&format!("tls {{ {base}, first: \"300ms\" }}"))
        .tls
        .unwrap();
    assert_eq!(t.handshake_first_fallback, Some(Duration::from_millis(300)));
    // Known but unsupported keys fail; unknown keys warn.
    for k in [
        "pinned_certs: []",
        "insecure: true",
        "ocsp_peer: true",
        "cert_store: x",
        "min_version: \"1.3\"",
    ] {
        let e = err(&format!("tls {{\n  {base}\n  {k}\n}}"));
        assert!(
            e.starts_with("a.conf:3:3: \"") && e.ends_with("\" is not supported yet"),
            "{k}: {e}"
        );
    }
    // nats-server refuses an unknown tls key, with its own lead-in.
    assert_eq!(
        err(&format!("tls {{ {base}\n whatever: 1 }}")),
        "a.conf:2:2: error parsing tls config, unknown field \"whatever\""
    );
    // Errors.
    assert!(
        err(&format!("tls {{ cert_file: \"{}\" }}", cert.display())).contains("missing 'key_file'")
    );
    assert!(
        err("tls { cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem }")
            .starts_with("a.conf:1:7: error reading certificate /nonexistent/c.pem")
    );
    assert!(err(&format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
        key.display(),
        key.display()
    ))
    .contains("no PEM CERTIFICATE block"));
    assert_eq!(
        err("tls {\n verify: 1 }"),
        "a.conf:2:2: error parsing tls config, expected 'verify' to be a boolean"
    );
    assert_eq!(
        err("tls { cipher_suites: [] }"),
        "a.conf:1:7: error parsing tls config, 'cipher_suites' cannot be empty"
    );
    assert_eq!(
        err("tls { cipher_suites: [NOPE] }"),
        "a.conf:1:23: unrecognized cipher NOPE"
    );
    assert!(err("tls { curve_preferences: [P256] }").contains("unrecognized curve preference P256"));
    assert!(err("tls { timeout: true }").contains("'timeout' wrong type"));
    assert!(err("tls { handshake_first: 1 }").contains("should be a boolean or a string"));
    assert!(err("tls { handshake_first: \"soon\" }").contains("is invalid"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_with_positions() {
    let cases: &[(&str, &str)] = &[
        (
            "authorization {\n  users: [{user: a, permissions: { publish: 5 }}]\n}",
            "a.conf:2:36: Expected subject permissions to be a subject, or array of subjects, got integer",
        ),
        (
            "authorization { users: [\n  {nkey: UABC}\n] }",
            "a.conf:2:4: Not a valid public nkey for a user: \"UABC\" (must be 56 characters, got 4)",
        ),
        (
            "accounts {\n  A: { imports: [\n    {stream: {account: B, subject: foo}}\n  ] }\n}",
            "a.conf:3:6: \"B\" account not defined for stream import",
        ),
        (
            "authorization { users: [{user: a}] }\nno_auth_user: bob",
            "a.conf:2:1: no_auth_user: \"bob\" not present as user or nkey in authorization block or account configuration",
        ),
        (
            "authorization { user: a, password: b }\nno_auth_user: a",
            "a.conf:2:1: no_auth_user: \"a\" present, but users/nkeys are not defined",
        ),
        (
            "port: 1\nsystem_account: FOO",
            "a.conf:2:1: error resolving system account \"FOO\": account missing",
        ),
        (
            "accounts { A: { exports: [{stream: foo, accounts: [Z]}] } }",
            "a.conf:1:28: \"Z\" account not defined for stream export",
        ),
        (
            "accounts { A: {}, B: { imports: [{service: {account: A, subject: foo}}] } }",
            "a.conf:1:35: Error adding service import \"foo\": service import not authorized",
        ),
        (
            "accounts { A: { exports: [{stream: foo, accounts: [C]}] }, B: { imports: [{stream: {account: A, subject: foo}}] }, C: {} }",
            "a.conf:1:76: Error adding stream import \"foo\": stream import not authorized",
        ),
        (
            "accounts { A: { exports: [{stream: \"foo.bar\"}] }, B: { imports: [{stream: {account: A, subject: \"foo.*\"}}] } }",
            "a.conf:1:67: Error adding stream import \"foo.*\": stream import not authorized",
        ),
        (
            "authorization { users: [{user: a, permissions: {publish: \"a..b\"}}] }",
            "a.conf:1:49: subject \"a..b\" is not a valid subject",
        ),
        (
            "authorization { users: [{user: a, permissions: {publsh: x}}] }",
            "a.conf:1:49: Unknown field \"publsh\" parsing permissions",
        ),
        (
            "authorization { users: [{user: a, permissions: {publish: {allow: x, only: y}}}] }",
            "a.conf:1:69: Unknown field name \"only\" parsing subject permissions, only 'allow' or 'deny' are permitted",
        ),
        (
            "authorization { users: [{user: a, permissions: {allow_responses: \"x\"}}] }",
            "a.conf:1:49: error parsing response permissions, expected a boolean or a map",
        ),
        (
            "authorization { users: [{user: a, pasword: x}] }",
            "a.conf:1:35: unknown field \"pasword\"",
        ),
        (
            "authorization {\n  users: [{password: x}]\n}",
            "a.conf:2:12: User entry requires a user",
        ),
        (
            "authorization { users: [{user: a}, {user: a}] }",
            "a.conf:1:37: Duplicate user \"a\" detected",
        ),
        (
            "authorization { users: [{user: a}] }\naccounts { A: { users: [{user: a}] } }",
            "a.conf:2:26: Duplicate user \"a\" detected",
        ),
        (
            "authorization { user: a, password: b, token: t }",
            "a.conf:1:1: Cannot have a user/pass and token",
        ),
        (
            "authorization { user: a, users: [{user: b}] }",
            "a.conf:1:1: Can not have a single user/pass and a users array",
        ),
        (
            "authorization { token: t, users: [{user: b}] }",
            "a.conf:1:1: Can not have a token and a users array",
        ),
        (
            "authorization { timeout: true }",
            "a.conf:1:17: error parsing authorization config, 'timeout' wrong type",
        ),
        ("accounts: [A, A]", "a.conf:1:15: Duplicate Account Entry: A"),
        ("accounts { $G: {} }", "a.conf:1:12: \"$G\" is a Reserved Account"),
        ("accounts { A: 1 }", "a.conf:1:12: Expected map entries for accounts"),
        (
            "accounts { A: { exports: [{service: s, response_type: bogus}] } }",
            "a.conf:1:40: Unknown response type: \"bogus\"",
        ),
        (
            "accounts { A: { exports: [{stream: s, response_type: stream}] } }",
            "a.conf:1:39: Detected response directive on non-service",
        ),
        (
            "accounts { A: { exports: [{stream: s}] }, B: { imports: [{stream: {account: A}}] } }",
            "a.conf:1:59: Expect an account name and a subject",
        ),
        (
            "accounts { A: { exports: [{stream: s}] }, B: { imports: [{stream: {account: A, subject: s}, prefix: p, to: x}] } }",
            "a.conf:1:104: Stream import can not have a 'prefix' and a 'to' property",
        ),
        (
            "accounts { A: { exports: [{service: s}] }, B: { imports: [{service: {account: A, subject: s}}, {service: {account: A, subject: s}}] } }",
            "a.conf:1:97: Duplicate service import subject \"s\", previously used in import for account \"A\", subject \"s\"",
        ),
        ("system_account: 1", "a.conf:1:1: system account name must be a string"),
        (
            "accounts { A: { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 } }",
            "a.conf:1:17: Not a valid public nkey for an account: \"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\"",
        ),
    ];
    let mut bad = Vec::new();
    for (conf, want) in cases {
        let got = err(conf);
        if &got != want {
            bad.push(format!("{conf}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Known nats-server features this broker does not implement fail, naming the key.
    for (conf, key) in [
        ("accounts { A: { jetstream: { max_ack_pending: 5 } } }", "jetstream.max_ack_pending"),
        ("accounts { A: { limits: {} } }", "limits"),
        ("accounts { A: { exports: [{service: s, latency: l}] } }", "latency"),
        ("accounts { A: { exports: [{service: s}] }, B: { imports: [{service: {account: A, subject: s}, share: true}] } }", "share"),
        ("authorization { users: [{user: a, allowed_connection_types: [STANDARD]}] }", "allowed_connection_types"),
        ("authorization { auth_callout { issuer: x } }", "auth_callout"),
        ("accounts { A: { users: [{user: a, proxy_required: true}] } }", "proxy_required"),
        ("authorization { auth_hook { issuer: x } }", "auth_hook"),
        ("feature_flags: { js_ack_fc_v2: true }", "feature_flags"),
    ] {
        let e = err(conf);
        assert!(e.ends_with(&format!("\"{key}\" is not supported yet")), "{conf}: {e}");
    }
}

#[test]
fn cli_flags_over_the_file() {
    let flags = |a: &[&str]| parse_args(a.iter().copied()).unwrap();
    // --user/--pass make the single user; --auth the token.
    let mut o = Options::default();
    flags(&["--user", "u", "--pass", "p", "--auth", "tok"]).apply(&mut o);
    assert_eq!(o.users, vec![user("u", Some("p"))]);
    assert_eq!(o.token.as_deref(), Some("tok"));
    // They override the file's single user...
    let mut o = opts("authorization { user: a, password: b }");
    flags(&["--pass", "new"]).apply(&mut o);
    assert_eq!(o.users, vec![user("a", Some("new"))]);
    // ...and, as in nats-server, leave a users list alone.
    let mut o = opts("authorization { users: [{user: a, password: b}, {user: c}] }");
    let before = o.users.clone();
    flags(&["--user", "x", "--pass", "y"]).apply(&mut o);
    assert_eq!(o.users, before);
    // A password alone turns nothing on.
    let mut o = Options::default();
    flags(&["--pass", "p"]).apply(&mut o);
    assert!(o.users.is_empty());

    // --tls*: certificate, key, CA and verify from the flags; the file's timeout stays.
    let mut o = Options::default();
    flags(&["--tls", "--tlscert", "c.pem", "--tlskey", "k.pem"]).apply(&mut o);
    let t = o.tls.clone().unwrap();
    assert_eq!(
        (t.cert_file, t.key_file, t.ca_file, t.verify, t.timeout),
        (
            PathBuf::from("c.pem"),
            PathBuf::from("k.pem"),
            None,
            false,
            Duration::from_secs(2)
        )
    );
    assert_eq!(o.auth_timeout, Duration::from_secs(3));
    let mut o = Options {
        tls: Some(TlsOptions {
            cert_file: "old.pem".into(),
            key_file: "old.key".into(),
            timeout: Duration::from_secs(7),
            verify_and_map: true,
            cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
            ..TlsOptions::default()
        }),
        ..Options::default()
    };
    flags(&[
        "--tlsverify",
        "--tlscert",
        "c.pem",
        "--tlskey",
        "k.pem",
        "--tlscacert",
        "ca.pem",
    ])
    .apply(&mut o);
    let t = o.tls.clone().unwrap();
    assert_eq!(t.cert_file, PathBuf::from("c.pem"));
    assert_eq!(t.ca_file, Some(PathBuf::from("ca.pem")));
    assert!(t.verify && t.verify_and_map);
    assert_eq!(t.timeout, Duration::from_secs(7));
    assert!(t.cipher_suites.is_empty());
    // --tls=false turns the file's TLS off.
    flags(&["--tls=false"]).apply(&mut o);
    assert_eq!(o.tls, None);
}
