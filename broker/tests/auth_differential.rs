//! Authentication and authorization at the wire level, against the reference nats-server and
//! Natrix loaded from the same config text: INFO's `auth_required`/`nonce`, CONNECT with good
//! and bad credentials (user/password, bcrypt, token, nkey signatures over the nonce), operations
//! before CONNECT, the auth timeout, `no_auth_user`, permission violations (exact `-ERR` texts,
//! verbose `+OK` ordering, queue permissions, deny-on-delivery) and `allow_responses`.
//!
//! Each scenario compares the bytes every connection received after INFO and whether the server
//! closed it. Nothing random reaches the compared bytes: the nonce is only signed, never echoed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{conf, RefServer, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long to listen for more bytes on a connection the server keeps open.
const QUIET: Duration = Duration::from_millis(300);
/// Upper bound for anything expected to arrive (a PONG, INFO, a close).
const WAIT: Duration = Duration::from_secs(5);

/// Both servers running the same config.
struct Pair {
    reference: RefServer,
    natrix: TestServer,
}

async fn pair(conf: &str) -> Pair {
    Pair {
        reference: RefServer::start(Some(conf), &[]),
        natrix: conf::start_conf(conf, false).await,
    }
}

/// One raw client connection: the INFO it got and everything after it.
struct Conn {
    stream: TcpStream,
    info: Value,
    got: Vec<u8>,
    closed: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        let end = loop {
            if let Some(i) = got.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let n = tokio::time::timeout(WAIT, stream.read(&mut tmp))
                .await
                .expect("INFO in time")
                .expect("read INFO");
            assert!(n > 0, "closed before INFO");
            got.extend_from_slice(&tmp[..n]);
        };
        let line = String::from_utf8_lossy(&got[..end]).into_owned();
        got.drain(..end + 2);
        let json = line
            .strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("not INFO: {line:?}"));
        let info = serde_json::from_str(json.trim()).expect("INFO JSON");
        Conn {
            stream,
            info,
            got,
            closed: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        if !self.closed && self.stream.write_all(bytes).await.is_err() {
            self.closed = true;
        }
    }

    /// Reads until `until` returns true for what arrived so far, EOF, or `limit`.
    async fn read_until(&mut self, limit: Duration, until: impl Fn(&[u8]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut tmp = [0u8; 65536];
        while !self.closed && !until(&self.got) {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.got.extend_from_slice(&tmp[..n]),
                Err(_) => break,
            }
        }
    }

    /// Sends `bytes` and a PING, then waits for the PONG (or the close) so the server has
    /// processed (and routed) everything sent.
    async fn step(&mut self, bytes: &[u8]) {
        let pongs = count(&self.got, b"PONG\r\n");
        let mut all = bytes.to_vec();
        all.extend_from_slice(b"PING\r\n");
        self.send(&all).await;
        self.read_until(WAIT, |g| count(g, b"PONG\r\n") > pongs)
            .await;
    }

    /// What the connection received after INFO, and whether it was closed.
    async fn finish(mut self, wait: Duration) -> (String, bool) {
        self.read_until(wait, |_| false).await;
        (String::from_utf8_lossy(&self.got).into_owned(), self.closed)
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// What one connection sends: either fixed chunks, or chunks built from the INFO it received
/// (to sign the nonce).
type Build = Box<dyn Fn(&Value) -> Vec<Vec<u8>>>;

fn fixed(chunks: &[&str]) -> Build {
    let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.as_bytes().to_vec()).collect();
    Box::new(move |_| chunks.clone())
}

/// Runs a single-connection exchange: sends each chunk (5 ms apart), then reads for `wait` or
/// until the server closes.
async fn single(addr: SocketAddr, build: &Build, wait: Duration) -> (String, bool) {
    let mut c = Conn::open(addr).await;
    for chunk in build(&c.info) {
        c.send(&chunk).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.finish(wait).await
}

/// Runs every (name, build) against both servers; returns the differences.
async fn compare_single(p: &Pair, scenarios: &[(&str, Build)], wait: Duration) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, build) in scenarios {
        let want = single(p.reference.addr, build, wait).await;
        let got = single(p.natrix.addr, build, wait).await;
        if want != got {
            diffs.push(format!(
                "{name}:\n  reference: {want:?}\n  natrix:    {got:?}"
            ));
        }
    }
    diffs
}

/// A named session: how many connections, and the steps `(connection, bytes)`.
type Session<'a> = (&'a str, usize, Vec<(usize, &'a str)>);

/// A multi-connection session: connection `i` opens in order, then steps `(i, bytes)` run one
/// after the other, each confirmed with PING/PONG; finally every connection is read out.
async fn session(addr: SocketAddr, conns: usize, steps: &[(usize, &str)]) -> Vec<(String, bool)> {
    let mut cs = Vec::new();
    for _ in 0..conns {
        cs.push(Conn::open(addr).await);
    }
    for (i, bytes) in steps {
        cs[*i].step(bytes.as_bytes()).await;
    }
    let mut out = Vec::new();
    for c in cs {
        out.push(c.finish(QUIET).await);
    }
    out
}

async fn compare_sessions(p: &Pair, sessions: &[Session<'_>]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, conns, steps) in sessions {
        let want = session(p.reference.addr, *conns, steps).await;
        let got = session(p.natrix.addr, *conns, steps).await;
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w != g {
                diffs.push(format!(
                    "{name} (connection {i}):\n  reference: {w:?}\n  natrix:    {g:?}"
                ));
            }
        }
    }
    diffs
}

/// Compares what INFO says about authentication: `auth_required` and the nonce (presence and
/// length; its value is random).
async fn compare_info(p: &Pair, name: &str) -> Vec<String> {
    let shape = |info: &Value| {
        (
            info.get("auth_required").cloned(),
            info.get("nonce").and_then(Value::as_str).map(str::len),
        )
    };
    let want = shape(&Conn::open(p.reference.addr).await.info);
    let got = shape(&Conn::open(p.natrix.addr).await.info);
    if want == got {
        Vec::new()
    } else {
        vec![format!(
            "{name} INFO (auth_required, nonce length):\n  reference: {want:?}\n  natrix:    {got:?}"
        )]
    }
}

fn assert_no_diffs(diffs: Vec<String>) {
    assert!(
        diffs.is_empty(),
        "{} difference(s) from nats-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// A bcrypt hash of `pass` in the `$2a$` form nats-server's docs show (cost 4: fast tests).
fn bcrypt_hash(pass: &str) -> String {
    bcrypt::hash_with_result(pass, 4)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoA)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_auth_fields_match_reference() {
    let nkey = nkeys::KeyPair::new_user().public_key();
    let confs = [
        ("open", "port: 4222\n".to_string()),
        ("token", "authorization { token: s3cr3t }\n".to_string()),
        (
            "single_user",
            "authorization { user: alice, password: pw }\n".to_string(),
        ),
        (
            "users",
            "authorization { users: [{user: alice, password: pw}] }\n".to_string(),
        ),
        (
            "nkey",
            format!("authorization {{ users: [{{nkey: {nkey}}}] }}\n"),
        ),
        (
            "no_auth_user",
            "authorization { users: [{user: alice, password: pw}] }\nno_auth_user: alice\n"
                .to_string(),
        ),
        (
            "accounts",
            "accounts { A: { users: [{user: a, password: a}] } }\n".to_string(),
        ),
    ];
    let mut diffs = Vec::new();
    for (name, conf) in &confs {
        let p = pair(conf).await;
        diffs.extend(compare_info(&p, name).await);
    }
    assert_no_diffs(diffs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_connect_matches_reference() {
    let conf = format!(
        "authorization {{\n  timeout: 1\n  users: [\n    {{user: alice, password: pw}}\n    {{user: bob, password: \"{}\"}}\n    {{user: carol, password: \"$2a$x\"}}\n  ]\n}}\n",
        bcrypt_hash("bpw")
    );
    let p = pair(&conf).await;
    let scenarios: Vec<(&str, Build)> = vec![
        ("good", fixed(&["CONNECT {\"user\":\"alice\",\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("good_verbose", fixed(&["CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"pw\"}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"])),
        ("good_split", fixed(&["CONNECT {\"user\":\"alice\",\"pass\":\"pw\"}\r\n", "PING\r\n"])),
        ("bad_pass", fixed(&["CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\nPING\r\n"])),
        ("bad_pass_verbose", fixed(&["CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"nope\"}\r\nPING\r\n"])),
        ("unknown_user", fixed(&["CONNECT {\"user\":\"mallory\",\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("user_without_pass", fixed(&["CONNECT {\"user\":\"alice\"}\r\nPING\r\n"])),
        ("pass_without_user", fixed(&["CONNECT {\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("no_credentials", fixed(&["CONNECT {}\r\nPING\r\n"])),
        ("token_to_users", fixed(&["CONNECT {\"auth_token\":\"pw\"}\r\nPING\r\n"])),
        ("bcrypt_good", fixed(&["CONNECT {\"user\":\"bob\",\"pass\":\"bpw\"}\r\nPING\r\n"])),
        ("bcrypt_good_then_ops", fixed(&["CONNECT {\"user\":\"bob\",\"pass\":\"bpw\"}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n"])),
        ("bcrypt_bad", fixed(&["CONNECT {\"user\":\"bob\",\"pass\":\"nope\"}\r\nPING\r\n"])),
        ("bcrypt_hash_as_pass", fixed(&["CONNECT {\"user\":\"bob\",\"pass\":\"$2a$04$abc\"}\r\nPING\r\n"])),
        ("plain_password_that_looks_like_bcrypt", fixed(&["CONNECT {\"user\":\"carol\",\"pass\":\"$2a$x\"}\r\nPING\r\n"])),
        ("nkey_and_user_to_users_server", fixed(&["CONNECT {\"nkey\":\"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\",\"user\":\"alice\",\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("pub_before_connect", fixed(&["PUB foo 1\r\nx\r\n"])),
        ("sub_before_connect", fixed(&["SUB foo 1\r\n"])),
        ("ping_before_connect", fixed(&["PING\r\n"])),
        ("bad_then_good_same_chunk", fixed(&["CONNECT {\"user\":\"alice\",\"pass\":\"x\"}\r\nCONNECT {\"user\":\"alice\",\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("unparsable_connect", fixed(&["CONNECT {user\r\n"])),
    ];
    let mut diffs = compare_single(&p, &scenarios, QUIET).await;
    // auth_timeout (1 s here): nothing sent at all, or an incomplete CONNECT.
    let timeouts: Vec<(&str, Build)> = vec![
        ("auth_timeout_silent", fixed(&[])),
        (
            "auth_timeout_partial_connect",
            fixed(&["CONNECT {\"user\":"]),
        ),
    ];
    diffs.extend(compare_single(&p, &timeouts, Duration::from_secs(3)).await);
    assert_no_diffs(diffs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_connect_matches_reference() {
    let scenarios = || -> Vec<(&'static str, Build)> {
        vec![
            (
                "good",
                fixed(&["CONNECT {\"auth_token\":\"s3cr3t\"}\r\nPING\r\n"]),
            ),
            (
                "good_verbose",
                fixed(&["CONNECT {\"verbose\":true,\"auth_token\":\"s3cr3t\"}\r\nPING\r\n"]),
            ),
            (
                "bad",
                fixed(&["CONNECT {\"auth_token\":\"nope\"}\r\nPING\r\n"]),
            ),
            ("missing", fixed(&["CONNECT {}\r\nPING\r\n"])),
            (
                "user_pass_instead",
                fixed(&["CONNECT {\"user\":\"s3cr3t\",\"pass\":\"s3cr3t\"}\r\nPING\r\n"]),
            ),
            (
                "token_and_user",
                fixed(&[
                    "CONNECT {\"user\":\"x\",\"pass\":\"y\",\"auth_token\":\"s3cr3t\"}\r\nPING\r\n",
                ]),
            ),
            ("pub_before_connect", fixed(&["PUB foo 1\r\nx\r\n"])),
        ]
    };
    let mut diffs = Vec::new();
    for token in ["s3cr3t".to_string(), bcrypt_hash("s3cr3t")] {
        let conf = format!("authorization {{ token: \"{token}\", timeout: 0.5 }}\n");
        let p = pair(&conf).await;
        let label = if token.starts_with('$') {
            "bcrypt "
        } else {
            "plain "
        };
        for d in compare_single(&p, &scenarios(), QUIET).await {
            diffs.push(format!("{label}{d}"));
        }
        let timeout: Vec<(&str, Build)> = vec![("auth_timeout", fixed(&[]))];
        for d in compare_single(&p, &timeout, Duration::from_secs(3)).await {
            diffs.push(format!("{label}{d}"));
        }
    }
    assert_no_diffs(diffs);
}

/// `CONNECT` with `nkey` and the nonce from INFO signed by `signer`, encoded with `encode`.
fn nkey_connect(
    nkey: String,
    signer: Option<nkeys::KeyPair>,
    wrong_nonce: bool,
    encode: fn(&[u8]) -> String,
) -> Build {
    Box::new(move |info| {
        let nonce = info["nonce"].as_str().expect("nonce in INFO").to_string();
        let nonce = if wrong_nonce {
            format!("{nonce}x")
        } else {
            nonce
        };
        let sig = signer
            .as_ref()
            .map(|kp| encode(&kp.sign(nonce.as_bytes()).expect("sign")));
        let mut ci = serde_json::json!({ "nkey": nkey, "verbose": true });
        if let Some(sig) = sig {
            ci["sig"] = Value::String(sig);
        }
        vec![format!("CONNECT {ci}\r\nPING\r\n").into_bytes()]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_connect_matches_reference() {
    use data_encoding::{BASE64, BASE64URL_NOPAD};
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let pk = user.public_key();
    let other = nkeys::KeyPair::new_user();
    let conf =
        format!("authorization {{ users: [ {{nkey: {pk}}}, {{user: alice, password: pw}} ] }}\n");
    let p = pair(&conf).await;
    let kp = || Some(nkeys::KeyPair::from_seed(&seed).unwrap());
    let url: fn(&[u8]) -> String = |b| BASE64URL_NOPAD.encode(b);
    let std: fn(&[u8]) -> String = |b| BASE64.encode(b);
    let scenarios: Vec<(&str, Build)> = vec![
        ("good_sig", nkey_connect(pk.clone(), kp(), false, url)),
        (
            "good_sig_std_base64",
            nkey_connect(pk.clone(), kp(), false, std),
        ),
        (
            "sig_over_other_nonce",
            nkey_connect(pk.clone(), kp(), true, url),
        ),
        (
            "sig_by_other_key",
            nkey_connect(
                pk.clone(),
                Some(nkeys::KeyPair::from_seed(&other.seed().unwrap()).unwrap()),
                false,
                url,
            ),
        ),
        (
            "unknown_nkey",
            nkey_connect(
                other.public_key(),
                Some(nkeys::KeyPair::from_seed(&other.seed().unwrap()).unwrap()),
                false,
                url,
            ),
        ),
        ("no_sig", nkey_connect(pk.clone(), None, false, url)),
        (
            "garbage_sig",
            fixed(&[&format!(
                "CONNECT {{\"nkey\":\"{pk}\",\"sig\":\"!!!\"}}\r\nPING\r\n"
            )]),
        ),
        (
            "password_user_alongside",
            fixed(&["CONNECT {\"user\":\"alice\",\"pass\":\"pw\"}\r\nPING\r\n"]),
        ),
        ("nothing", fixed(&["CONNECT {}\r\nPING\r\n"])),
    ];
    assert_no_diffs(compare_single(&p, &scenarios, QUIET).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_user_matches_reference() {
    let conf = concat!(
        "authorization { timeout: 0.5, users: [\n",
        "  {user: alice, password: pw, permissions: {publish: \"a.>\", subscribe: \"a.>\"}}\n",
        "  {user: bob, password: pw}\n",
        "] }\n",
        "no_auth_user: alice\n",
    );
    let p = pair(conf).await;
    let scenarios: Vec<(&str, Build)> = vec![
        ("empty_connect_is_alice", fixed(&["CONNECT {\"verbose\":true}\r\nSUB a.x 1\r\nPUB a.x 1\r\nx\r\nPUB b.x 1\r\nx\r\nPING\r\n"])),
        ("bob_by_password", fixed(&["CONNECT {\"verbose\":true,\"user\":\"bob\",\"pass\":\"pw\"}\r\nSUB b.x 1\r\nPUB b.x 1\r\nx\r\nPING\r\n"])),
        ("bad_password_is_not_alice", fixed(&["CONNECT {\"user\":\"bob\",\"pass\":\"nope\"}\r\nPING\r\n"])),
        ("token_is_not_alice", fixed(&["CONNECT {\"auth_token\":\"x\"}\r\nPING\r\n"])),
        ("pass_only_is_not_alice", fixed(&["CONNECT {\"pass\":\"pw\"}\r\nPING\r\n"])),
        ("nkey_to_users_server_is_alice", fixed(&["CONNECT {\"verbose\":true,\"nkey\":\"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\"}\r\nPUB b.x 1\r\nx\r\nPING\r\n"])),
        ("ping_before_connect", fixed(&["PING\r\n"])),
        ("sub_pub_before_connect", fixed(&["SUB a.x 1\r\nPUB a.x 1\r\nx\r\nPUB b.x 1\r\nx\r\nPING\r\n"])),
    ];
    let mut diffs = compare_single(&p, &scenarios, QUIET).await;
    // The auth timer runs even though INFO does not ask for credentials.
    let timeout: Vec<(&str, Build)> = vec![("auth_timeout_silent", fixed(&[]))];
    diffs.extend(compare_single(&p, &timeout, Duration::from_secs(3)).await);
    assert_no_diffs(diffs);
}

/// Users with publish/subscribe permissions, queue permissions and allow_responses.
const PERMS_CONF: &str = r#"
authorization {
  users: [
    {user: alice, password: pw}
    {user: limited, password: pw, permissions: {
      publish: {allow: ["pub.>", "both.>"], deny: ["pub.secret"]}
      subscribe: {allow: ["sub.>", "both.>", "q.* workers", "_INBOX.>"], deny: ["sub.secret", "both.secret", "q.b workers"]}
    }}
    {user: denyonly, password: pw, permissions: {
      publish: {deny: ["admin.>"]}
      subscribe: {deny: ["admin.>"]}
    }}
    {user: svc, password: pw, permissions: {subscribe: "svc.>", allow_responses: true}}
    {user: svc2, password: pw, permissions: {publish: "pub.ok", subscribe: "svc.>", allow_responses: {max: 2}}}
  ]
  default_permissions: {publish: "dflt.>", subscribe: "dflt.>"}
}
"#;

const LIMITED: &str = "CONNECT {\"user\":\"limited\",\"pass\":\"pw\"}\r\n";
const LIMITED_V: &str = "CONNECT {\"verbose\":true,\"user\":\"limited\",\"pass\":\"pw\"}\r\n";

fn limited(verbose: bool, ops: &str) -> Build {
    let head = if verbose { LIMITED_V } else { LIMITED };
    fixed(&[&format!("{head}{ops}PING\r\n")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_violations_match_reference() {
    let p = pair(PERMS_CONF).await;
    let scenarios: Vec<(&str, Build)> = vec![
        ("pub_allowed", limited(true, "SUB sub.a 1\r\nPUB pub.a 1\r\nx\r\n")),
        ("pub_not_allowed", limited(false, "PUB other 1\r\nx\r\n")),
        ("pub_not_allowed_verbose", limited(true, "PUB other 1\r\nx\r\n")),
        ("pub_denied_over_allow", limited(true, "PUB pub.secret 1\r\nx\r\n")),
        ("pub_with_reply_not_allowed", limited(true, "PUB other _INBOX.x 1\r\nx\r\n")),
        ("hpub_not_allowed", fixed(&["CONNECT {\"verbose\":true,\"headers\":true,\"user\":\"limited\",\"pass\":\"pw\"}\r\nHPUB other 12 13\r\nNATS/1.0\r\n\r\nx\r\nPING\r\n"])),
        ("sub_not_allowed", limited(false, "SUB other 1\r\n")),
        ("sub_not_allowed_verbose", limited(true, "SUB other 1\r\n")),
        ("sub_denied_over_allow", limited(true, "SUB sub.secret 1\r\n")),
        ("sub_wider_wildcard_not_allowed", limited(true, "SUB sub 1\r\nSUB > 2\r\nSUB *.a 3\r\n")),
        ("sub_wildcard_allowed", limited(true, "SUB sub.* 1\r\nSUB both.> 2\r\n")),
        ("sub_queue_allowed", limited(true, "SUB q.a workers 1\r\n")),
        ("sub_queue_wrong_queue", limited(true, "SUB q.a others 1\r\n")),
        ("sub_queue_missing_queue", limited(true, "SUB q.a 1\r\n")),
        ("sub_queue_denied", limited(true, "SUB q.b workers 1\r\n")),
        ("sub_any_queue_on_plain_allow", limited(true, "SUB sub.a anyq 1\r\n")),
        ("unsub_after_denied_sub", limited(true, "SUB other 1\r\nUNSUB 1\r\n")),
        ("mixed_ordering_verbose", limited(true, "SUB sub.a 1\r\nSUB other 2\r\nPUB pub.a 1\r\nx\r\nPUB other 1\r\nx\r\nSUB sub.b 3\r\nPUB pub.secret 1\r\nx\r\nSUB q.a x 4\r\n")),
        ("mixed_ordering", limited(false, "SUB sub.a 1\r\nSUB other 2\r\nPUB pub.a 1\r\nx\r\nPUB other 1\r\nx\r\nSUB sub.b 3\r\nPUB pub.secret 1\r\nx\r\nSUB q.a x 4\r\n")),
        ("deny_on_delivery_own_wildcard", limited(false, "SUB both.> 1\r\nSUB both.* 2\r\nPUB both.a 1\r\na\r\nPUB both.secret 1\r\ns\r\n")),
        ("deny_only_user", fixed(&["CONNECT {\"verbose\":true,\"user\":\"denyonly\",\"pass\":\"pw\"}\r\nSUB > 1\r\nSUB admin.x 2\r\nPUB x 1\r\nx\r\nPUB admin.x 1\r\nx\r\nPUB admin 1\r\ny\r\nPING\r\n"])),
        ("allow_responses_only_pub_denied", fixed(&["CONNECT {\"verbose\":true,\"user\":\"svc\",\"pass\":\"pw\"}\r\nPUB anything 1\r\nx\r\nSUB svc.> 1\r\nSUB other 2\r\nPING\r\n"])),
        ("default_permissions_apply", fixed(&["CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"pw\"}\r\nSUB dflt.a 1\r\nSUB other 2\r\nPUB dflt.a 1\r\nx\r\nPUB other 1\r\nx\r\nPING\r\n"])),
        ("many_violations_stay_open", limited(false, &"PUB other 1\r\nx\r\n".repeat(20))),
    ];
    assert_no_diffs(compare_single(&p, &scenarios, QUIET).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_and_allow_responses_match_reference() {
    let p = pair(PERMS_CONF).await;
    let alice = "CONNECT {\"user\":\"alice\",\"pass\":\"pw\",\"verbose\":true}\r\n";
    let svc = "CONNECT {\"user\":\"svc\",\"pass\":\"pw\",\"verbose\":true}\r\n";
    let svc2 = "CONNECT {\"user\":\"svc2\",\"pass\":\"pw\",\"verbose\":true}\r\n";
    // alice has default permissions: publish and subscribe dflt.>; so requests come from a
    // deny-only user with everything else allowed.
    let req = "CONNECT {\"user\":\"denyonly\",\"pass\":\"pw\"}\r\n";
    let sessions: Vec<Session> = vec![
        (
            "deny_on_delivery_from_other_publisher",
            2,
            vec![
                (0, LIMITED),
                (0, "SUB both.> 1\r\nSUB both.* 2\r\n"),
                (1, req),
                (
                    1,
                    "PUB both.a 1\r\na\r\nPUB both.secret 1\r\ns\r\nPUB both.x.y 1\r\nb\r\n",
                ),
            ],
        ),
        (
            "queue_permission_delivery",
            2,
            vec![
                (0, LIMITED),
                (0, "SUB q.a workers 1\r\nSUB q.a other 2\r\n"),
                (1, req),
                (1, "PUB q.a 1\r\nx\r\n"),
            ],
        ),
        (
            "allow_responses_single_reply",
            2,
            vec![
                (0, req),
                (0, "SUB _INBOX.r.> 1\r\n"),
                (1, svc),
                (1, "SUB svc.> 1\r\n"),
                (0, "PUB svc.echo _INBOX.r.1 2\r\nhi\r\n"),
                (1, "PUB _INBOX.r.1 2\r\nok\r\n"),
                (1, "PUB _INBOX.r.1 5\r\nagain\r\n"),
                (1, "PUB _INBOX.r.2 5\r\nnever\r\n"),
                (1, "PUB other 1\r\nx\r\n"),
            ],
        ),
        (
            "allow_responses_max_two",
            2,
            vec![
                (0, req),
                (0, "SUB _INBOX.r.> 1\r\nSUB pub.ok 2\r\n"),
                (1, svc2),
                (1, "SUB svc.> 1\r\n"),
                (0, "PUB svc.echo _INBOX.r.1 2\r\nhi\r\n"),
                (1, "PUB _INBOX.r.1 1\r\n1\r\n"),
                (1, "PUB _INBOX.r.1 1\r\n2\r\n"),
                (1, "PUB _INBOX.r.1 1\r\n3\r\n"),
                (1, "PUB pub.ok 1\r\np\r\nPUB other 1\r\nx\r\n"),
            ],
        ),
        (
            "allow_responses_request_without_reply",
            2,
            vec![
                (0, req),
                (1, svc),
                (1, "SUB svc.> 1\r\n"),
                (0, "PUB svc.echo 2\r\nhi\r\n"),
                (1, "PUB svc.echo 2\r\nok\r\n"),
            ],
        ),
        (
            "allow_responses_two_requests",
            2,
            vec![
                (0, req),
                (0, "SUB _INBOX.> 1\r\n"),
                (1, svc),
                (1, "SUB svc.> 1\r\n"),
                (
                    0,
                    "PUB svc.a _INBOX.a 1\r\na\r\nPUB svc.b _INBOX.b 1\r\nb\r\n",
                ),
                (1, "PUB _INBOX.b 2\r\nrb\r\nPUB _INBOX.a 2\r\nra\r\n"),
            ],
        ),
        (
            "allow_responses_headers_reply",
            2,
            vec![
                (
                    0,
                    "CONNECT {\"user\":\"denyonly\",\"pass\":\"pw\",\"headers\":true}\r\n",
                ),
                (0, "SUB _INBOX.h 1\r\n"),
                (
                    1,
                    "CONNECT {\"user\":\"svc\",\"pass\":\"pw\",\"headers\":true}\r\n",
                ),
                (1, "SUB svc.> 1\r\n"),
                (0, "PUB svc.h _INBOX.h 1\r\nq\r\n"),
                (1, "HPUB _INBOX.h 12 14\r\nNATS/1.0\r\n\r\nok\r\n"),
            ],
        ),
        (
            "default_permissions_between_users",
            2,
            vec![
                (0, alice),
                (0, "SUB dflt.> 1\r\nSUB > 2\r\n"),
                (1, req),
                (1, "PUB dflt.x 1\r\nx\r\nPUB other 1\r\ny\r\n"),
            ],
        ),
    ];
    assert_no_diffs(compare_sessions(&p, &sessions).await);
}
