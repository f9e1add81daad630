//! Differential test: our config loader accepts and rejects the same files as
//! the reference `nats-server -t -c`.
//!
//! Only files where both should agree are listed: we reject keys nats-server knows but we
//! do not implement yet. (Integer-second durations load here; `-t` refuses them, as
//! nats-server's does, which `binary.rs` checks.)
//! nats-server -t loads TLS certificate files, so TLS cases here only use missing files
//! or no files (certificate contents are not compared).

mod common;

use std::process::Command;

use common::nats_server_bin as nats_server;

/// (name, file text, valid?)
const CASES: &[(&str, &str, bool)] = &[
    (
        "separators",
        "port: 4222\nmax_payload = 1MB\nmax_pending 64MB\n",
        true,
    ),
    (
        "semicolons",
        "port = 4222; debug = true, trace = false\n",
        true,
    ),
    (
        "json-braces",
        "{\n  \"port\": 4222,\n  \"debug\": true\n}\n",
        true,
    ),
    (
        "comments",
        "# c\n// c\nport: 4222 # c\ndebug: true // c\n",
        true,
    ),
    ("listen-ip", "listen: 0.0.0.0:4222\n", true),
    ("listen-space", "listen 127.0.0.1:4222\n", true),
    ("listen-port-only", "listen: \":4222\"\n", true),
    ("listen-ipv6", "listen: \"[::1]:4222\"\n", true),
    ("http", "http: 127.0.0.1:8222\nhttps_port: 8443\n", true),
    (
        "sizes",
        "max_payload: 64KiB\nmax_pending: 1g\nmax_control_line: 4kb\n",
        true,
    ),
    (
        "durations",
        "ping_interval: \"2m\"\nwrite_deadline: 500ms\nping_max: 3\n",
        true,
    ),
    (
        "lame-duck",
        "lame_duck_duration: \"60s\"\nlame_duck_grace_period: 1s\n",
        true,
    ),
    ("case", "PORT: 4222\nDebug: yes\nLogTime: off\n", true),
    (
        "variables",
        "P: 4333\nport: $P\nN: \"srv\"\nserver_name: $N\n",
        true,
    ),
    (
        "strings",
        "server_name: \"a\\tb\\x41\"\nhttp_base_path: '/x\\y'\n",
        true,
    ),
    ("block-string", "server_name: (\nabc\n)\n", true),
    ("negative-port", "port: -1\n", true),
    ("empty", "", false),
    ("only-comments", "# nothing\n", false),
    ("unclosed-map", "a {\n  b: 1\n", false),
    ("unclosed-array", "port: 4222\nx: [1, 2\n", false),
    ("double-comma", "x: [1,,2]\n", false),
    ("bad-escape", "server_name: \"a\\qb\"\n", false),
    ("trailing-garbage", "port: 4222 x\n", false),
    ("float-start", "max_payload: .5\n", false),
    ("bad-date", "server_name: 12-3\n", false),
    ("value-newline", "port:\n4222\n", false),
    ("missing-var", "port: $NATRIX_DEFINITELY_UNSET_VAR\n", false),
    ("int-overflow", "max_pending: 99999999999999999999\n", false),
    ("bad-type-port", "port: \"abc\"\n", false),
    ("bad-type-bool", "debug: 1\n", false),
    ("too-big", "max_payload: 8GB\n", false),
    ("bad-listen", "listen: \"4222\"\n", false),
    ("bad-duration", "write_deadline: \"3d\"\n", false),
    ("short-lame-duck", "lame_duck_duration: \"10s\"\n", false),
    ("unterminated-string", "server_name: \"abc\n", false),
    ("key-only", "port: 4222\nlonely\n", false),
    // Security blocks. Not listed: `no_auth_user` naming nobody and `system_account` naming
    // no account (nats-server -t accepts them and fails at startup; we fail at load), unknown
    // keys in `tls` (it errors, we warn), and TLS with real certificates (files needed).
    (
        "auth-single",
        "authorization { user: a, password: b, timeout: 2 }\n",
        true,
    ),
    (
        "auth-token",
        "authorization { token: \"s3cr3t\", timeout: \"3s\" }\n",
        true,
    ),
    (
        "auth-users-perms",
        "authorization {\n  default_permissions { publish: \"a.>\" }\n  users: [\n    {user: a, password: b}\n    {user: c, password: d, permissions: {publish: {allow: [x], deny: y}, subscribe: \"q grp\", allow_responses: {max: 2, expires: \"1m\"}}}\n    {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4, permissions: {sub: [z], allow_responses: true}}\n    {user: e, permissions: {import: i, export: j}}\n  ]\n}\n",
        true,
    ),
    (
        "auth-no-auth-user",
        "authorization { users: [{user: a, password: b}] }\nno_auth_user: a\n",
        true,
    ),
    (
        "accounts-full",
        "accounts {\n  A: {\n    users: [{user: a, password: b}]\n    exports: [{stream: \"pub.>\"}, {stream: priv, accounts: [B]}, {service: svc, response_type: stream}]\n  }\n  B: {\n    users: [{user: b, password: c}]\n    imports: [\n      {stream: {account: A, subject: \"pub.x\"}, prefix: from_a}\n      {stream: {account: A, subject: priv}, to: mine}\n      {service: {account: A, subject: svc}, to: local}\n    ]\n  }\n}\nsystem_account: A\n",
        true,
    ),
    (
        "accounts-list",
        "accounts: [A, B]\n",
        true,
    ),
    (
        "tls-empty",
        "tls {}\n",
        true,
    ),
    (
        "tls-verify",
        "tls { verify: true, timeout: \"3s\" }\n",
        true,
    ),
    (
        "perm-int",
        "authorization { users: [{user: a, permissions: {publish: 5}}] }\n",
        false,
    ),
    (
        "perm-bad-subject",
        "authorization { users: [{user: a, permissions: {publish: \"a..b\"}}] }\n",
        false,
    ),
    (
        "perm-unknown",
        "authorization { users: [{user: a, permissions: {publsh: x}}] }\n",
        false,
    ),
    (
        "perm-responses-string",
        "authorization { users: [{user: a, permissions: {allow_responses: x}}] }\n",
        false,
    ),
    (
        "nkey-bad",
        "authorization { users: [{nkey: UABC}] }\n",
        false,
    ),
    (
        "nkey-with-user",
        "authorization { users: [{nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4, user: x}] }\n",
        false,
    ),
    (
        "user-missing",
        "authorization { users: [{password: x}] }\n",
        false,
    ),
    (
        "single-and-users",
        "authorization { user: a, password: b, users: [{user: c}] }\n",
        false,
    ),
    (
        "user-and-token",
        "authorization { user: a, password: b, token: t }\n",
        false,
    ),
    (
        "token-and-users",
        "authorization { token: t, users: [{user: c}] }\n",
        false,
    ),
    (
        "auth-timeout-bool",
        "authorization { token: t, timeout: true }\n",
        false,
    ),
    (
        "dup-user",
        "authorization { users: [{user: a}] }\naccounts { A: { users: [{user: a}] } }\n",
        false,
    ),
    (
        "dup-user-accounts",
        "accounts { A: { users: [{user: a}] }, B: { users: [{user: a}] } }\n",
        false,
    ),
    (
        "import-unknown-account",
        "accounts { A: { imports: [{stream: {account: B, subject: foo}}] } }\n",
        false,
    ),
    (
        "export-unknown-account",
        "accounts { A: { exports: [{stream: foo, accounts: [B]}] } }\n",
        false,
    ),
    (
        "import-not-exported",
        "accounts { A: {}, B: { imports: [{service: {account: A, subject: foo}}] } }\n",
        false,
    ),
    (
        "import-private",
        "accounts { A: { exports: [{stream: foo, accounts: [C]}] }, B: { imports: [{stream: {account: A, subject: foo}}] }, C: {} }\n",
        false,
    ),
    (
        "import-wider",
        "accounts { A: { exports: [{stream: \"foo.bar\"}] }, B: { imports: [{stream: {account: A, subject: \"foo.*\"}}] } }\n",
        false,
    ),
    (
        "import-dup-service",
        "accounts { A: { exports: [{service: s}] }, B: { imports: [{service: {account: A, subject: s}}, {service: {account: A, subject: s}}] } }\n",
        false,
    ),
    (
        "import-no-subject",
        "accounts { A: { exports: [{stream: s}] }, B: { imports: [{stream: {account: A}}] } }\n",
        false,
    ),
    (
        "account-dup",
        "accounts: [A, A]\n",
        false,
    ),
    (
        "account-reserved",
        "accounts { \"$G\": {} }\n",
        false,
    ),
    (
        "account-not-map",
        "accounts { A: 1 }\n",
        false,
    ),
    (
        "response-type-bad",
        "accounts { A: { exports: [{service: s, response_type: bogus}] } }\n",
        false,
    ),
    (
        "tls-missing-files",
        "tls { cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem }\n",
        false,
    ),
    (
        "tls-cert-no-key",
        "tls { cert_file: /nonexistent/c.pem }\n",
        false,
    ),
    (
        "tls-empty-ciphers",
        "tls { cipher_suites: [] }\n",
        false,
    ),
    (
        "tls-bad-cipher",
        "tls { cipher_suites: [NOPE] }\n",
        false,
    ),
    (
        "tls-bad-verify",
        "tls { verify: 1 }\n",
        false,
    ),
    (
        "cluster-auth-token",
        "cluster { port: -1, authorization { token: abc } }\n",
        false,
    ),
    // Key names as nats-server 2.15 knows them (aliases accepted, our old extras refused).
    ("js-sync-alias", "jetstream { sync: always }\n", true),
    ("js-sync-always", "jetstream { sync_always: true }\n", false),
    ("js-jetstream-key", "jetstream { jetstream_key: abc }\n", false),
    (
        "js-account-aliases",
        "accounts { A { jetstream { mem: 1MB, store: 1MB, streams: 2, consumers: 3 } } }\n",
        true,
    ),
    (
        "js-account-max-file-store",
        "accounts { A { jetstream { max_file_store: 1MB } } }\n",
        false,
    ),
    ("auth-callout-misspelt", "authorization { callout: {} }\n", false),
    ("cluster-pinned-accounts", "cluster { port: -1, pinned_accounts: [] }\n", false),
    ("no-system-account", "no_system_account: true\n", true),
    ("proxy-not-required", "authorization { proxy_required: false }\n", true),
    ("monitoring-port-typo", "monitoring_port: 8222\n", false),
    ("tls-unknown", "tls { bogus: 1 }\n", false),
    (
        "cluster-auth-user",
        "cluster { port: -1, authorization { user: u, password: p, timeout: 2 } }\n",
        true,
    ),
];

#[test]
fn accepts_and_rejects_like_nats_server() {
    let bin = nats_server();
    let dir = std::env::temp_dir().join(format!("natrix-cfg-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut mismatches = Vec::new();
    for (name, text, expect_valid) in CASES {
        let file = dir.join(format!("{name}.conf"));
        std::fs::write(&file, text).unwrap();
        let out = Command::new(&bin)
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .env_remove("NATRIX_DEFINITELY_UNSET_VAR")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let theirs = out.status.success();
        let ours = natrix_broker::config::load_file(&file);
        let ours_ok = ours.is_ok();
        if theirs != *expect_valid || ours_ok != *expect_valid {
            mismatches.push(format!(
                "{name}: expected valid={expect_valid}, nats-server={theirs} ({}), natrix={ours_ok} ({:?})",
                String::from_utf8_lossy(&out.stderr).trim(),
                ours.err().map(|e| e.to_string()),
            ));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn includes_like_nats_server() {
    let bin = nats_server();
    let dir = std::env::temp_dir().join(format!("natrix-cfg-diff-inc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/ports.conf"), "port: 4333\n").unwrap();
    std::fs::write(dir.join("sub/broken.conf"), "port: [1,,2]\n").unwrap();
    let cases = [
        (
            "inc-ok.conf",
            "include ./sub/ports.conf\ndebug: true\n",
            true,
        ),
        ("inc-quoted.conf", "include \"sub/ports.conf\"\n", true),
        ("inc-abs.conf", "include /sub/ports.conf\n", true),
        ("inc-missing.conf", "include ./sub/nope.conf\n", false),
        ("inc-broken.conf", "include sub/broken.conf\n", false),
    ];
    let mut mismatches = Vec::new();
    for (name, text, expect_valid) in cases {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let theirs = Command::new(&bin)
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap()
            .status
            .success();
        let ours = natrix_broker::config::load_file(&file).is_ok();
        if theirs != expect_valid || ours != expect_valid {
            mismatches.push(format!("{name}: nats-server={theirs} natrix={ours}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}
