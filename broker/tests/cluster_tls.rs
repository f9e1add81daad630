//! TLS on cluster routes (`cluster { tls { ... } }`), as nats-server does it: the handshake
//! starts right after the TCP connection (no INFO in the clear), both sides present and verify
//! certificates signed by `ca_file`, and the route INFO says `tls_required`/`tls_verify`.
//!
//! - two Natrix servers with route TLS form a route and carry messages;
//! - the route port answers a TLS client only after the handshake, and only one with a
//!   certificate; the INFO it then sends has the TLS flags of nats-server's;
//! - a TLS server and a plaintext one never form a route, whichever side dials;
//! - a route dialed by IP is verified against the host name of the configured routes
//!   (certificates without IP addresses), so gossip completes the mesh;
//! - `insecure` lets the dialer accept a server certificate it cannot verify;
//! - Natrix and the reference nats-server with the same TLS block route to each other both
//!   ways, and `/varz` shows the same `cluster` TLS fields; the reference TLS server refuses
//!   a plaintext Natrix route too;
//! - the config checks (`ca_file` required, unimplemented keys refused) and a route TLS that
//!   cannot be built failing at startup.
//!
//! Every port is ephemeral; every wait is a bounded poll for a state, never a sleep that
//! decides the outcome.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{
    certs::{dn, Ca},
    cluster::{num_routes, route_addr, route_url},
    conf,
    http::get_json,
    proc::{addr_after, Proc},
    tempdir::TempDir,
    TestServer,
};
use futures::StreamExt;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, SanType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound for every poll.
const WAIT: Duration = Duration::from_secs(10);

/// A CA and a route certificate (server and client use, as routes need both) on disk.
struct Pki {
    dir: TempDir,
    ca: Ca,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// A certificate for `localhost` and, when `with_ip`, 127.0.0.1.
    fn new(tag: &str, with_ip: bool) -> Pki {
        let dir = TempDir::new(tag);
        let ca = Ca::new("Natrix Route CA");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        if with_ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        params.distinguished_name = dn(&[(DnType::CommonName, "localhost")]);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let route = ca.issue(params);
        Pki {
            ca_file: dir.write("ca.pem", &ca.cert_pem),
            cert: dir.write("route.pem", &route.cert_pem),
            key: dir.write("route-key.pem", &route.key_pem),
            ca,
            dir,
        }
    }

    /// The `tls { ... }` block for `cluster`.
    fn tls_block(&self) -> String {
        format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, timeout: 2 }}",
            self.cert.display().to_string(),
            self.key.display().to_string(),
            self.ca_file.display().to_string(),
        )
    }

    /// A client TLS configuration trusting the CA, presenting the route certificate or none.
    fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        self.client_config_as(with_cert.then_some(self))
    }

    /// A client TLS configuration trusting this CA, presenting the route certificate of
    /// `identity` (possibly another CA's) or none.
    fn client_config_as(&self, identity: Option<&Pki>) -> Arc<rustls::ClientConfig> {
        natrix_broker::server::tls::install_crypto_provider();
        let b = rustls::ClientConfig::builder().with_root_certificates(self.ca.roots());
        let config = match identity {
            Some(p) => {
                use rustls::pki_types::pem::PemObject;
                let cert = rustls::pki_types::CertificateDer::from_pem_file(&p.cert).unwrap();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&p.key).unwrap();
                b.with_client_auth_cert(vec![cert], key).unwrap()
            }
            None => b.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// Writes a config file for a server named `name` with route TLS (or without, when `tls`
    /// is false) and these seed routes.
    fn conf(&self, name: &str, tls: bool, routes: &[String]) -> PathBuf {
        self.dir.write(
            &format!("{name}.conf"),
            &cluster_conf(self, name, tls, routes),
        )
    }
}

/// The config text of a clustered server named `name`.
fn cluster_conf(pki: &Pki, name: &str, tls: bool, routes: &[String]) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "server_name: {name}\ncluster {{\n  name: tls\n  listen: \"127.0.0.1:-1\"\n  {}\n  routes: [{}]\n}}\n",
        if tls { pki.tls_block() } else { String::new() },
        routes.join(", ")
    )
}

/// An in-process Natrix server with monitoring, from the config text.
async fn natrix(pki: &Pki, name: &str, tls: bool, routes: &[String]) -> TestServer {
    conf::start_conf(&cluster_conf(pki, name, tls, routes), true).await
}

/// A server process started from a config file, with its client, monitoring and route ports.
struct Running {
    proc: Proc,
    client: SocketAddr,
    http: String,
    route: SocketAddr,
}

impl Running {
    fn natrix(conf: &Path) -> Running {
        Self::ports(Proc::natrix(&Self::args(conf)))
    }

    fn reference(conf: &Path) -> Running {
        Self::ports(Proc::reference(&Self::args(conf)))
    }

    fn args(conf: &Path) -> Vec<&str> {
        let c = conf.to_str().unwrap();
        vec!["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-c", c]
    }

    fn ports(proc: Proc) -> Running {
        let client = proc.ready();
        let http = addr_after(
            &proc.wait_line("Starting http monitor on "),
            "Starting http monitor on ",
        );
        let route = addr_after(
            &proc.wait_line("Listening for route connections on "),
            "Listening for route connections on ",
        );
        Running {
            proc,
            client,
            http: format!("http://127.0.0.1:{}", http.port()),
            route,
        }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    fn route_url(&self) -> String {
        format!("nats-route://{}", self.route)
    }

    /// How many stderr lines contain `needle` so far.
    fn count(&self, needle: &str) -> usize {
        self.proc
            .lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `needle` has appeared on at least `n` stderr lines.
    async fn wait_count(&self, needle: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count(needle) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} lines with {needle:?}:\n{}",
                self.proc.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `/routez` at `http` until `num_routes` is `n`; returns the document.
async fn wait_routes(http: &str, n: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get_json(http, "/routez").await;
        if v["num_routes"] == n {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{http}/routez never had {n} routes: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/routez?subs=1` at `http` until some route lists `subject`.
async fn wait_remote_sub(http: &str, subject: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get_json(http, "/routez?subs=1").await;
        let listed = v["routes"].as_array().into_iter().flatten().any(|r| {
            r["subscriptions_list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|s| s == subject))
        });
        if listed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{http}/routez never listed {subject}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message published on the server at `from` (whose monitoring is `from_http`) reaches a
/// subscriber on the server at `to`, over the route.
async fn flows(from: &str, from_http: &str, to: &str, subject: &str) {
    let sub_client = async_nats::connect(to).await.unwrap();
    let mut sub = sub_client.subscribe(subject.to_string()).await.unwrap();
    sub_client.flush().await.unwrap();
    wait_remote_sub(from_http, subject).await;
    let pub_client = async_nats::connect(from).await.unwrap();
    pub_client
        .publish(subject.to_string(), "over tls".into())
        .await
        .unwrap();
    pub_client.flush().await.unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{subject}: nothing from {from} reached {to}"))
        .expect("subscription open");
    assert_eq!(&msg.payload[..], b"over tls");
}

/// Connects to a route port with TLS from the first byte and returns what the server sends
/// first (its INFO line), or the error that ended the connection.
async fn tls_route_info(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(WAIT, tls.read(&mut buf))
            .await
            .expect("read in time")
        {
            Ok(0) => return Err("closed".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let _ = tls.shutdown().await;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The JSON of an INFO line.
fn info_json(line: &str) -> Value {
    let json = line
        .strip_prefix("INFO ")
        .unwrap_or_else(|| panic!("not an INFO: {line:?}"));
    serde_json::from_str(json.trim()).unwrap()
}

#[tokio::test]
async fn tls_routes_carry_messages() {
    let pki = Pki::new("route-tls", true);
    let a = natrix(&pki, "A", true, &[]).await;
    let b = natrix(&pki, "B", true, &[route_url(&a)]).await;
    let routes = wait_routes(&a.http(), 1).await;
    assert_eq!(routes["routes"][0]["remote_name"], "B");
    wait_routes(&b.http(), 1).await;
    flows(&a.url(), &a.http(), &b.url(), "a.to.b").await;
    flows(&b.url(), &b.http(), &a.url(), "b.to.a").await;
    // Request/reply across the TLS route.
    let responder = async_nats::connect(b.url()).await.unwrap();
    let mut svc = responder.subscribe("svc").await.unwrap();
    responder.flush().await.unwrap();
    wait_remote_sub(&a.http(), "svc").await;
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                responder.publish(r, "pong".into()).await.unwrap();
                responder.flush().await.unwrap();
            }
        }
    });
    let requester = async_nats::connect(a.url()).await.unwrap();
    let resp = tokio::time::timeout(WAIT, requester.request("svc", "ping".into()))
        .await
        .expect("in time")
        .expect("answered");
    assert_eq!(&resp.payload[..], b"pong");
    // /varz shows the route TLS as nats-server does.
    let varz = get_json(&a.http(), "/varz").await;
    let cluster = &varz["cluster"];
    assert_eq!(cluster["tls_required"], true, "{cluster}");
    assert_eq!(cluster["tls_verify"], true, "{cluster}");
    assert_eq!(cluster["tls_timeout"], 2, "{cluster}");
    assert_eq!(cluster["auth_timeout"], 3, "{cluster}");
    assert!(cluster["tls_cert_not_after"].is_string(), "{cluster}");
}

#[tokio::test]
async fn route_port_speaks_tls_first_and_requires_a_certificate() {
    let pki = Pki::new("route-tls-raw", true);
    let a = natrix(&pki, "A", true, &[]).await;
    let addr = route_addr(&a);
    // With the route certificate: the INFO comes after the handshake, with the TLS flags.
    let info = tls_route_info(addr, pki.client_config(true))
        .await
        .expect("INFO after the handshake");
    let info = info_json(&info);
    assert_eq!(info["tls_required"], true, "{info}");
    assert_eq!(info["tls_verify"], true, "{info}");
    // Without a certificate the server refuses: no INFO, the handshake or first read fails.
    let refused = tls_route_info(addr, pki.client_config(false)).await;
    assert!(refused.is_err(), "no certificate, yet {refused:?}");
    // Nor with a certificate another CA signed.
    let stranger = Pki::new("route-tls-stranger", true);
    let refused = tls_route_info(addr, pki.client_config_as(Some(&stranger))).await;
    assert!(refused.is_err(), "foreign certificate, yet {refused:?}");
    // A plaintext connection gets no INFO: the server waits for a ClientHello, and a CONNECT
    // in its place ends the connection.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut got))
        .await
        .expect("closed in time");
    assert!(
        !String::from_utf8_lossy(&got).contains("INFO"),
        "INFO in the clear: {read:?} {got:?}"
    );
    // The cluster still has no route.
    assert_eq!(num_routes(&a), 0);
}

#[tokio::test]
async fn tls_and_plaintext_servers_never_route() {
    let pki = Pki::new("route-tls-mixed", true);
    // A plaintext server dials a TLS one: the TLS side times out waiting for a ClientHello.
    let tls_a = Running::natrix(&pki.conf("A", true, &[]));
    let plain_b = Running::natrix(&pki.conf("B", false, &[tls_a.route_url()]));
    tls_a.wait_count("TLS route handshake error", 1).await;
    // The plaintext side keeps redialing a configured route; two failed handshakes mean a
    // whole retry went by without a route.
    tls_a.wait_count("TLS route handshake error", 2).await;
    assert_eq!(wait_routes(&tls_a.http, 0).await["num_routes"], 0);
    assert_eq!(wait_routes(&plain_b.http, 0).await["num_routes"], 0);
    // A TLS server dials a plaintext one: the plaintext INFO is not a TLS record.
    let tls_c = Running::natrix(&pki.conf("C", true, &[plain_b.route_url()]));
    tls_c.wait_count("TLS route handshake error", 2).await;
    assert_eq!(wait_routes(&tls_c.http, 0).await["num_routes"], 0);
    assert_eq!(wait_routes(&plain_b.http, 0).await["num_routes"], 0);
    assert_eq!(wait_routes(&tls_a.http, 0).await["num_routes"], 0);
}

#[tokio::test]
async fn gossiped_ip_routes_verify_the_configured_host_name() {
    // The certificate names only `localhost`: routes dialed by IP (learnt from gossip) are
    // verified against `localhost`, the host of the configured seed.
    let pki = Pki::new("route-tls-name", false);
    let a = natrix(&pki, "A", true, &[]).await;
    let seed = format!("nats-route://localhost:{}", route_addr(&a).port());
    let b = natrix(&pki, "B", true, std::slice::from_ref(&seed)).await;
    let c = natrix(&pki, "C", true, &[seed]).await;
    for s in [&a, &b, &c] {
        wait_routes(&s.http(), 2).await;
    }
    flows(&b.url(), &b.http(), &c.url(), "b.to.c").await;
}

#[tokio::test]
async fn routes_with_reference_server_both_ways() {
    let pki = Pki::new("route-tls-ref", true);
    // The reference server is the seed; Natrix dials it.
    let r = Running::reference(&pki.conf("R", true, &[]));
    let n = Running::natrix(&pki.conf("N", true, &[r.route_url()]));
    wait_routes(&r.http, 1).await;
    wait_routes(&n.http, 1).await;
    flows(&n.url(), &n.http, &r.url(), "n.to.r").await;
    flows(&r.url(), &r.http, &n.url(), "r.to.n").await;
    // Natrix is the seed; the reference server dials it.
    let n2 = Running::natrix(&pki.conf("N2", true, &[]));
    let r2 = Running::reference(&pki.conf("R2", true, &[n2.route_url()]));
    wait_routes(&n2.http, 1).await;
    wait_routes(&r2.http, 1).await;
    flows(&n2.url(), &n2.http, &r2.url(), "n2.to.r2").await;
    flows(&r2.url(), &r2.http, &n2.url(), "r2.to.n2").await;
    // The same TLS fields in /varz `cluster`.
    let keys = [
        "tls_required",
        "tls_verify",
        "tls_timeout",
        "auth_timeout",
        "tls_cert_not_after",
    ];
    let theirs = get_json(&r.http, "/varz").await["cluster"].clone();
    let ours = get_json(&n.http, "/varz").await["cluster"].clone();
    for k in keys {
        assert_eq!(
            ours[k], theirs[k],
            "varz cluster.{k}: ours {ours}, theirs {theirs}"
        );
    }
    // The same TLS flags in the route INFO each sends after the handshake.
    for addr in [r.route, n.route] {
        let info = info_json(&tls_route_info(addr, pki.client_config(true)).await.unwrap());
        assert_eq!(info["tls_required"], true, "{info}");
        assert_eq!(info["tls_verify"], true, "{info}");
    }
}

#[tokio::test]
async fn reference_server_refuses_a_plaintext_natrix_route() {
    // The reference TLS server and a plaintext Natrix dialing it do not route either.
    let pki = Pki::new("route-tls-ref-plain", true);
    let r = Running::reference(&pki.conf("R", true, &[]));
    let n = Running::natrix(&pki.conf("N", false, &[r.route_url()]));
    r.wait_count("TLS route handshake error", 2).await;
    assert_eq!(wait_routes(&r.http, 0).await["num_routes"], 0);
    assert_eq!(wait_routes(&n.http, 0).await["num_routes"], 0);
}

/// A route-TLS config whose accepted routes are the cluster user their certificate names.
fn mapped_conf(pki: &Pki, name: &str, user: &str, routes: &[String]) -> PathBuf {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    let tls = pki
        .tls_block()
        .replace("timeout: 2", "timeout: 2, verify_and_map: true");
    pki.dir.write(
        &format!("{name}.conf"),
        &format!(
            "server_name: {name}\ncluster {{\n  name: tls\n  listen: \"127.0.0.1:-1\"\n  {tls}\n  authorization {{ user: {user:?} }}\n  routes: [{}]\n}}\n",
            routes.join(", ")
        ),
    )
}

#[tokio::test]
async fn verify_and_map_routes_with_reference_server() {
    let pki = Pki::new("route-tls-map", true);
    // The certificate's subject is the cluster user: routes form both ways.
    let r = Running::reference(&mapped_conf(&pki, "R", "CN=localhost", &[]));
    let n = Running::natrix(&mapped_conf(&pki, "N", "CN=localhost", &[r.route_url()]));
    wait_routes(&r.http, 1).await;
    wait_routes(&n.http, 1).await;
    flows(&n.url(), &n.http, &r.url(), "mapped.n.to.r").await;
    let n2 = Running::natrix(&mapped_conf(&pki, "N2", "CN=localhost", &[]));
    let r2 = Running::reference(&mapped_conf(&pki, "R2", "CN=localhost", &[n2.route_url()]));
    wait_routes(&n2.http, 1).await;
    wait_routes(&r2.http, 1).await;
    flows(&r2.url(), &r2.http, &n2.url(), "mapped.r2.to.n2").await;
    // Another user: the accepting side refuses the route, whichever implementation it is.
    let r3 = Running::reference(&mapped_conf(&pki, "R3", "CN=somebody", &[]));
    let n3 = Running::natrix(&mapped_conf(&pki, "N3", "CN=localhost", &[r3.route_url()]));
    r3.wait_count("authentication error", 1).await;
    let n4 = Running::natrix(&mapped_conf(&pki, "N4", "CN=somebody", &[]));
    let r4 = Running::reference(&mapped_conf(&pki, "R4", "CN=localhost", &[n4.route_url()]));
    n4.wait_count("authentication error", 1).await;
    for http in [&r3.http, &n3.http, &n4.http, &r4.http] {
        assert_eq!(get_json(http, "/routez").await["num_routes"], 0, "{http}");
    }
}

#[test]
fn config_checks() {
    let pki = Pki::new("route-tls-conf", true);
    let load = |body: &str| {
        let f = pki.dir.write("check.conf", body);
        natrix_broker::config::load_file(&f).map(|(o, _)| o)
    };
    let opts = load(&cluster_conf(&pki, "A", true, &[])).unwrap();
    let tls = opts.cluster.unwrap().tls.expect("cluster tls");
    assert_eq!(tls.ca_file.as_deref(), Some(pki.ca_file.as_path()));
    assert!(!tls.insecure);
    let insecure = format!(
        "cluster {{ port: -1, tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, insecure: true }} }}",
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.ca_file.display().to_string()
    );
    assert!(
        load(&insecure)
            .unwrap()
            .cluster
            .unwrap()
            .tls
            .unwrap()
            .insecure
    );
    // Routes verify each other: no ca_file is an error (we use no system roots).
    let no_ca = format!(
        "cluster {{ port: -1, tls {{ cert_file: {:?}, key_file: {:?} }} }}",
        pki.cert.display().to_string(),
        pki.key.display().to_string()
    );
    let err = load(&no_ca).unwrap_err().to_string();
    assert!(err.contains("cluster tls requires ca_file"), "{err}");
    // Known keys this broker does not implement for routes are refused, not ignored.
    for key in ["pinned_certs: []", "verify_cert_and_check_known_urls: true"] {
        let body = format!(
            "cluster {{ port: -1, tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, {key} }} }}",
            pki.cert.display().to_string(),
            pki.key.display().to_string(),
            pki.ca_file.display().to_string()
        );
        let err = load(&body).unwrap_err().to_string();
        assert!(err.contains("cluster.tls."), "{key}: {err}");
    }
    // `insecure` stays refused for client TLS.
    let client = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, insecure: true }}",
        pki.cert.display().to_string(),
        pki.key.display().to_string()
    );
    assert!(load(&client).is_err());
}

#[test]
fn broken_route_tls_fails_at_startup() {
    let pki = Pki::new("route-tls-broken", true);
    let other = Pki::new("route-tls-other", true);
    let opts = conf::load_conf(&cluster_conf(&pki, "A", true, &[]));
    let mut broken = opts.clone();
    let tls = broken.cluster.as_mut().unwrap().tls.as_mut().unwrap();
    // A key that is not the certificate's.
    tls.key_file = other.key.clone();
    let err = natrix_broker::node::build(broken)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cluster tls: ") && err.contains("cannot be used together"),
        "{err}"
    );
    // Options built by hand without ca_file fail the same way.
    let mut no_ca = opts;
    no_ca
        .cluster
        .as_mut()
        .unwrap()
        .tls
        .as_mut()
        .unwrap()
        .ca_file = None;
    let err = natrix_broker::node::build(no_ca)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca_file is required"), "{err}");
}

#[tokio::test]
async fn insecure_dialer_skips_verifying_the_server() {
    // The certificate has no IP address and the route is dialed by IP with no host name to
    // fall back on: only `insecure` lets the dialer accept it. The accepting side still
    // verifies the dialer's certificate.
    let pki = Pki::new("route-tls-insecure", false);
    let a = natrix(&pki, "A", true, &[]).await;
    let tls = pki
        .tls_block()
        .replace("timeout: 2", "timeout: 2, insecure: true");
    let body = format!(
        "server_name: B\ncluster {{ name: tls, listen: \"127.0.0.1:-1\", {tls}, routes: [{:?}] }}\n",
        route_url(&a)
    );
    let b = conf::start_conf(&body, true).await;
    wait_routes(&a.http(), 1).await;
    wait_routes(&b.http(), 1).await;
    flows(&a.url(), &a.http(), &b.url(), "insecure").await;
}
