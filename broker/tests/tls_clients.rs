//! TLS for client connections with async-nats: server-only TLS, required client certificates,
//! certificate-to-user mapping (the two examples of the TLS docs), handshake-first, and the
//! same clients accepted or refused by the reference nats-server.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{
    certs::{dn, email, Ca},
    conf, sync,
    tempdir::TempDir,
    RefServer,
};
use futures::StreamExt;
use rcgen::DnType;

/// Certificates on disk for one test: a CA, a server cert, and client certs by name.
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    clients: Vec<(String, PathBuf, PathBuf)>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let ca = Ca::new("Natrix Test CA");
        let server = ca.server();
        let mut clients = Vec::new();
        let derek = ca.client(
            dn(&[(DnType::CommonName, "Derek")]),
            vec![email("derek@nats.io")],
        );
        let cncf = ca.client(
            dn(&[
                (DnType::OrganizationalUnitName, "CNCF"),
                (DnType::CommonName, "example.com"),
            ]),
            vec![],
        );
        let nobody = ca.client(dn(&[(DnType::CommonName, "nobody")]), vec![]);
        let other_ca = Ca::new("Other CA");
        let stranger = other_ca.client(
            dn(&[(DnType::CommonName, "Derek")]),
            vec![email("derek@nats.io")],
        );
        for (name, c) in [
            ("derek", &derek),
            ("cncf", &cncf),
            ("nobody", &nobody),
            ("stranger", &stranger),
        ] {
            let cert = dir.write(&format!("{name}.pem"), &c.cert_pem);
            let key = dir.write(&format!("{name}-key.pem"), &c.key_pem);
            clients.push((name.to_string(), cert, key));
        }
        Pki {
            ca: dir.write("ca.pem", &ca.cert_pem),
            cert: dir.write("server.pem", &server.cert_pem),
            key: dir.write("server-key.pem", &server.key_pem),
            clients,
            dir,
        }
    }

    fn tls_block(&self, extra: &str) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  {extra}\n}}\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }

    fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let (_, c, k) = self
            .clients
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("client cert");
        (c.clone(), k.clone())
    }

    /// Connect options trusting the CA, with the named client certificate if any.
    fn options(&self, client: Option<&str>) -> async_nats::ConnectOptions {
        let mut o = async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.ca.clone())
            .connection_timeout(Duration::from_secs(3));
        if let Some(name) = client {
            let (c, k) = self.client(name);
            o = o.add_client_certificate(c, k);
        }
        o
    }
}

async fn connects(url: &str, o: async_nats::ConnectOptions) -> Result<async_nats::Client, String> {
    tokio::time::timeout(Duration::from_secs(5), o.connect(url))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())
}

async fn round_trip(nc: &async_nats::Client) {
    let mut sub = nc.subscribe("tls.test").await.unwrap();
    sync(nc).await;
    nc.publish("tls.test", "secret over tls".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "secret over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_without_client_certificates() {
    let pki = Pki::new("tls-plain");
    let s = conf::start_conf(&pki.tls_block(""), false).await;
    let nc = connects(&s.url(), pki.options(None))
        .await
        .expect("TLS client connects");
    round_trip(&nc).await;
    // A client that will not do TLS gets nowhere.
    let plain = connects(
        &s.url(),
        async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(plain.is_err());
    // INFO says TLS is required.
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut raw, &mut buf)
        .await
        .unwrap();
    let info = String::from_utf8_lossy(&buf[..n]);
    assert!(info.contains("\"tls_required\":true"), "{info}");
    assert!(!info.contains("tls_verify"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_requires_a_certificate_from_the_ca() {
    let pki = Pki::new("tls-verify");
    let s = conf::start_conf(&pki.tls_block("verify: true"), false).await;
    let nc = connects(&s.url(), pki.options(Some("nobody")))
        .await
        .expect("client with cert");
    round_trip(&nc).await;
    assert!(
        connects(&s.url(), pki.options(None)).await.is_err(),
        "no client cert"
    );
    assert!(
        connects(&s.url(), pki.options(Some("stranger")))
            .await
            .is_err(),
        "cert from another CA"
    );
}

const MAP_USERS: &str = r#"
authorization {
  users = [
    {user: "derek@nats.io", permissions: {publish: ["tls.>", "_INBOX.>"], subscribe: ["tls.>", "_INBOX.>"]}}
    {user: "CN=example.com,OU=CNCF"}
  ]
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_map_maps_certificates_to_users() {
    let pki = Pki::new("tls-map");
    let body = format!("{}{MAP_USERS}", pki.tls_block("verify_and_map: true"));
    let s = conf::start_conf(&body, false).await;
    let derek = connects(&s.url(), pki.options(Some("derek")))
        .await
        .expect("email SAN maps");
    round_trip(&derek).await;
    let cncf = connects(&s.url(), pki.options(Some("cncf")))
        .await
        .expect("subject DN maps");
    round_trip(&cncf).await;
    let users: Vec<Option<String>> = s.server.clients().iter().map(|c| c.user_name()).collect();
    assert!(users.contains(&Some("derek@nats.io".into())), "{users:?}");
    assert!(
        users.contains(&Some("CN=example.com,OU=CNCF".into())),
        "{users:?}"
    );
    assert!(
        connects(&s.url(), pki.options(Some("nobody")))
            .await
            .is_err(),
        "unmapped cert"
    );
    assert!(
        connects(&s.url(), pki.options(None)).await.is_err(),
        "no cert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first() {
    let pki = Pki::new("tls-first");
    let s = conf::start_conf(&pki.tls_block("handshake_first: true"), false).await;
    let nc = connects(&s.url(), pki.options(None).tls_first())
        .await
        .expect("TLS-first client");
    round_trip(&nc).await;
    // Nothing in the clear: a plain read sees no INFO before the handshake.
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = vec![0u8; 64];
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
    )
    .await;
    assert!(r.is_err(), "server spoke before the TLS handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_with_fallback_serves_both_kinds_of_client() {
    let pki = Pki::new("tls-first-fallback");
    for setting in ["handshake_first: 300ms", "handshake_first: auto"] {
        let body = pki.tls_block(setting);
        let reference = RefServer::start(Some(&body), &[]);
        let natrix = conf::start_conf(&body, false).await;
        for url in [format!("nats://{}", reference.addr), natrix.url()] {
            // A client that starts TLS at once, and one that waits for INFO first.
            let nc = connects(&url, pki.options(None).tls_first())
                .await
                .unwrap_or_else(|e| panic!("{setting}: TLS-first client on {url}: {e}"));
            round_trip(&nc).await;
            let nc = connects(&url, pki.options(None))
                .await
                .unwrap_or_else(|e| panic!("{setting}: INFO-first client on {url}: {e}"));
            round_trip(&nc).await;
        }
        // A silent client gets the plain INFO after the delay.
        let mut raw = tokio::net::TcpStream::connect(natrix.addr).await.unwrap();
        let mut buf = vec![0u8; 5];
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_exact(&mut raw, &mut buf),
        )
        .await
        .expect("INFO after the fallback delay")
        .unwrap();
        assert_eq!(&buf, b"INFO ", "{setting}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_are_chosen_by_the_name_the_client_asks_for() {
    let dir = TempDir::new("tls-certs");
    let ca = Ca::new("Natrix Test CA");
    let mut params = rcgen::CertificateParams::new(vec!["other.test".to_string()]).unwrap();
    params.distinguished_name = dn(&[(DnType::CommonName, "other.test")]);
    let other = ca.issue(params);
    let local = ca.server();
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let mut pairs = String::new();
    for (name, c) in [("other", &other), ("local", &local)] {
        let cert = dir.write(&format!("{name}.pem"), &c.cert_pem);
        let key = dir.write(&format!("{name}-key.pem"), &c.key_pem);
        pairs.push_str(&format!(
            "{{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            cert.display(),
            key.display()
        ));
    }
    // The first pair serves clients that name no host (an IP address) or an unknown one.
    let body = format!("tls {{\n  certs: [\n{pairs}  ]\n}}\n");
    let reference = RefServer::start(Some(&body), &[]);
    let natrix = conf::start_conf(&body, false).await;
    let options = || {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca_file.clone())
            .connection_timeout(Duration::from_secs(3))
    };
    let mut outcomes = Vec::new();
    for port in [reference.addr.port(), natrix.addr.port()] {
        let by_name = connects(&format!("nats://localhost:{port}"), options()).await;
        if let Ok(nc) = &by_name {
            round_trip(nc).await;
        }
        let by_ip = connects(&format!("nats://127.0.0.1:{port}"), options()).await;
        outcomes.push((by_name.is_ok(), by_ip.is_ok()));
    }
    assert_eq!(
        outcomes[1], outcomes[0],
        "natrix vs nats-server (localhost, 127.0.0.1)"
    );
    assert_eq!(outcomes[0], (true, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_non_tls_serves_plain_and_tls_clients_on_one_port() {
    let pki = Pki::new("tls-mixed");
    let body = format!("{}allow_non_tls: true\n", pki.tls_block(""));
    let reference = RefServer::start(Some(&body), &[]);
    let natrix = conf::start_conf(&body, false).await;
    for (who, addr) in [("nats-server", reference.addr), ("natrix", natrix.addr)] {
        let url = format!("nats://{addr}");
        let nc = connects(&url, pki.options(None))
            .await
            .unwrap_or_else(|e| panic!("{who}: TLS client: {e}"));
        round_trip(&nc).await;
        let nc = connects(&url, async_nats::ConnectOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{who}: plain client: {e}"));
        round_trip(&nc).await;
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        let info = String::from_utf8_lossy(&buf[..n]);
        assert!(info.contains("\"tls_available\":true"), "{who}: {info}");
        assert!(!info.contains("tls_required"), "{who}: {info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_clients_accepted_and_refused_as_reference() {
    let pki = Pki::new("tls-diff");
    let body = format!("{}{MAP_USERS}", pki.tls_block("verify_and_map: true"));
    let reference = RefServer::start(Some(&body), &[]);
    let natrix = conf::start_conf(&body, false).await;
    for client in [
        None,
        Some("derek"),
        Some("cncf"),
        Some("nobody"),
        Some("stranger"),
    ] {
        let want = connects(&format!("nats://{}", reference.addr), pki.options(client))
            .await
            .is_ok();
        let got = connects(&natrix.url(), pki.options(client)).await.is_ok();
        assert_eq!(
            got, want,
            "client cert {client:?}: reference accepted={want}"
        );
    }
    drop(pki.dir);
}
