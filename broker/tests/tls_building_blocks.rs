//! TLS building blocks: server configurations from `tls { ... }` options, real handshakes
//! against a rustls client (in memory), and certificate-to-user mapping.

mod common;

use std::sync::Arc;

use common::{
    certs::{self, dns, email, uri, Ca, Issued},
    tempdir::TempDir,
};
use natrix_broker::auth::tls_map::{cert_identities, map_user, subject_string, Dn};
use natrix_broker::options::TlsOptions;
use natrix_broker::server::tls::{install_crypto_provider, server_config, TlsError};
use rcgen::{DnType, DnValue};
use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ServerConfig, ServerConnection, SupportedCipherSuite,
};

/// A CA, a server certificate, and PEM files for them.
struct Setup {
    dir: TempDir,
    ca: Ca,
    opts: TlsOptions,
}

fn setup() -> Setup {
    install_crypto_provider();
    let dir = TempDir::new("tls");
    let ca = Ca::new("Natrix Test CA");
    let server = ca.server();
    let opts = TlsOptions {
        cert_file: dir.write("server-cert.pem", &server.cert_pem),
        key_file: dir.write("server-key.pem", &server.key_pem),
        ca_file: Some(dir.write("ca.pem", &ca.cert_pem)),
        ..Default::default()
    };
    Setup { dir, ca, opts }
}

fn client_config(ca: &Ca, provider: CryptoProvider, cert: Option<&Issued>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    Arc::new(match cert {
        Some(c) => builder.with_client_auth_cert(c.chain(), c.key()).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn provider_with(
    suites: &[SupportedCipherSuite],
    groups: &[&'static dyn SupportedKxGroup],
) -> CryptoProvider {
    let mut p = default_provider();
    if !suites.is_empty() {
        p.cipher_suites = suites.to_vec();
    }
    if !groups.is_empty() {
        p.kx_groups = groups.to_vec();
    }
    p
}

/// Which side failed a handshake (the errors are shown through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
enum Failed {
    Server(rustls::Error),
    Client(rustls::Error),
}

/// Runs a full handshake in memory; both sides must finish and exchange a byte each way.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ServerConnection, ClientConnection), Failed> {
    use std::io::{Read, Write};
    let mut s = ServerConnection::new(server).unwrap();
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    c.writer().write_all(b"c").unwrap();
    s.writer().write_all(b"s").unwrap();
    let (mut got_c, mut got_s) = (false, false);
    for _ in 0..32 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().map_err(Failed::Server)?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().map_err(Failed::Client)?;
        }
        let mut b = [0u8; 1];
        got_s |= s
            .reader()
            .read(&mut b)
            .is_ok_and(|n| n == 1 && b[0] == b'c');
        got_c |= c
            .reader()
            .read(&mut b)
            .is_ok_and(|n| n == 1 && b[0] == b's');
        if got_s && got_c && !s.is_handshaking() && !c.is_handshaking() {
            return Ok((s, c));
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn no_client_auth_by_default() {
    let st = setup();
    // ca_file without verify: no certificate is requested (as Go's ClientAuth = NoClientCert).
    let cfg = server_config(&st.opts).unwrap();
    let (s, _) = handshake(cfg.clone(), client_config(&st.ca, default_provider(), None)).unwrap();
    assert!(s.peer_certificates().is_none());
    assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(s.alpn_protocol().is_none());
    // Without ca_file at all.
    let opts = TlsOptions {
        ca_file: None,
        ..st.opts.clone()
    };
    handshake(
        server_config(&opts).unwrap(),
        client_config(&st.ca, default_provider(), None),
    )
    .unwrap();
}

#[test]
fn verify_requires_a_cert_from_the_ca() {
    let st = setup();
    for map in [false, true] {
        let opts = TlsOptions {
            verify: !map,
            verify_and_map: map,
            ..st.opts.clone()
        };
        let cfg = server_config(&opts).unwrap();
        let good = st
            .ca
            .client(certs::dn(&[(DnType::CommonName, "alice")]), vec![]);
        let (s, _) = handshake(
            cfg.clone(),
            client_config(&st.ca, default_provider(), Some(&good)),
        )
        .unwrap();
        let peer = s.peer_certificates().unwrap();
        assert_eq!(peer[0], good.der);
        assert_eq!(cert_identities(&peer[0]), vec!["CN=alice".to_string()]);

        // No certificate.
        match handshake(cfg.clone(), client_config(&st.ca, default_provider(), None)) {
            Err(Failed::Server(rustls::Error::NoCertificatesPresented)) => {}
            other => panic!(
                "expected NoCertificatesPresented, got {:?}",
                other.map(|_| ())
            ),
        }

        // A certificate from another CA.
        let other_ca = Ca::new("Other CA");
        let stranger = other_ca.client(certs::dn(&[(DnType::CommonName, "mallory")]), vec![]);
        match handshake(
            cfg.clone(),
            client_config(&st.ca, default_provider(), Some(&stranger)),
        ) {
            Err(Failed::Server(rustls::Error::InvalidCertificate(_))) => {}
            other => panic!("expected InvalidCertificate, got {:?}", other.map(|_| ())),
        }

        // TLS 1.2 clients are verified too.
        let tls12 = provider_with(
            &[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            &[],
        );
        let (s, _) = handshake(cfg.clone(), client_config(&st.ca, tls12, Some(&good))).unwrap();
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        let tls12 = provider_with(
            &[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            &[],
        );
        assert!(handshake(cfg, client_config(&st.ca, tls12, None)).is_err());
    }
}

#[test]
fn cipher_suites_restrict_tls12_and_named_tls13() {
    let st = setup();
    let opts = TlsOptions {
        cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
        ..st.opts.clone()
    };
    let cfg = server_config(&opts).unwrap();
    // A TLS 1.2 client offering only a suite not in the list fails.
    let other = provider_with(
        &[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
        &[],
    );
    assert!(matches!(
        handshake(cfg.clone(), client_config(&st.ca, other, None)),
        Err(Failed::Server(_))
    ));
    // The listed one works.
    let listed = provider_with(
        &[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
        &[],
    );
    let (s, _) = handshake(cfg.clone(), client_config(&st.ca, listed, None)).unwrap();
    assert_eq!(
        s.negotiated_cipher_suite().unwrap().suite(),
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite()
    );
    // As in Go, a list of TLS 1.2 suites leaves TLS 1.3 alone.
    let (s, _) = handshake(cfg, client_config(&st.ca, default_provider(), None)).unwrap();
    assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

    // Naming a TLS 1.3 suite restricts TLS 1.3 too, and without TLS 1.2 names disables TLS 1.2.
    let opts = TlsOptions {
        cipher_suites: vec!["TLS_AES_256_GCM_SHA384".into()],
        ..st.opts.clone()
    };
    let cfg = server_config(&opts).unwrap();
    let aes128 = provider_with(&[cipher_suite::TLS13_AES_128_GCM_SHA256], &[]);
    assert!(handshake(cfg.clone(), client_config(&st.ca, aes128, None)).is_err());
    let tls12 = provider_with(
        &[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
        &[],
    );
    assert!(handshake(cfg.clone(), client_config(&st.ca, tls12, None)).is_err());
    let (s, _) = handshake(cfg, client_config(&st.ca, default_provider(), None)).unwrap();
    assert_eq!(
        s.negotiated_cipher_suite().unwrap().suite(),
        cipher_suite::TLS13_AES_256_GCM_SHA384.suite()
    );
}

#[test]
fn curve_preferences_restrict_key_exchange() {
    let st = setup();
    let opts = TlsOptions {
        curve_preferences: vec!["CurveP384".into()],
        ..st.opts.clone()
    };
    let cfg = server_config(&opts).unwrap();
    let x25519 = provider_with(&[], &[kx_group::X25519]);
    assert!(matches!(
        handshake(cfg.clone(), client_config(&st.ca, x25519, None)),
        Err(Failed::Server(_))
    ));
    let both = provider_with(&[], &[kx_group::X25519, kx_group::SECP384R1]);
    let (s, _) = handshake(cfg, client_config(&st.ca, both, None)).unwrap();
    assert_eq!(
        s.negotiated_key_exchange_group().unwrap().name(),
        kx_group::SECP384R1.name()
    );
}

#[test]
fn configuration_errors_name_the_problem() {
    let st = setup();
    let err = |opts: TlsOptions| server_config(&opts).unwrap_err();

    let missing = st.dir.path().join("nope.pem");
    let e = err(TlsOptions {
        cert_file: missing.clone(),
        ..st.opts.clone()
    });
    assert!(matches!(e, TlsError::CertFile { .. }), "{e}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    let e = err(TlsOptions {
        key_file: missing.clone(),
        ..st.opts.clone()
    });
    assert!(
        e.to_string().contains("private key file") && e.to_string().contains("nope.pem"),
        "{e}"
    );

    let e = err(TlsOptions {
        ca_file: Some(st.dir.write("empty-ca.pem", "nothing here\n")),
        ..st.opts.clone()
    });
    assert!(e.to_string().contains("empty-ca.pem"), "{e}");

    // A key that does not belong to the certificate.
    let other = st.ca.server();
    let e = err(TlsOptions {
        key_file: st.dir.write("other-key.pem", &other.key_pem),
        ..st.opts.clone()
    });
    assert!(matches!(e, TlsError::KeyPair { .. }), "{e}");

    let e = err(TlsOptions {
        verify: true,
        ca_file: None,
        ..st.opts.clone()
    });
    assert!(matches!(e, TlsError::VerifyWithoutCa), "{e}");

    let e = err(TlsOptions {
        cipher_suites: vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()],
        ..st.opts.clone()
    });
    assert!(
        e.to_string()
            .contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
        "{e}"
    );
    let e = err(TlsOptions {
        cipher_suites: vec!["TLS_NOPE".into()],
        ..st.opts.clone()
    });
    assert_eq!(e.to_string(), "unrecognized cipher TLS_NOPE");
    let e = err(TlsOptions {
        curve_preferences: vec!["CurveP521".into()],
        ..st.opts.clone()
    });
    assert!(e.to_string().contains("CurveP521 is not supported"), "{e}");
    let e = err(TlsOptions {
        curve_preferences: vec!["Curve25519".into()],
        ..st.opts.clone()
    });
    assert_eq!(e.to_string(), "unrecognized curve preference Curve25519");
}

#[test]
fn sec1_keys_load() {
    let st = setup();
    let server = st.ca.server();
    let opts = TlsOptions {
        cert_file: st.dir.write("sec1-cert.pem", &server.cert_pem),
        key_file: st.dir.write(
            "sec1-key.pem",
            &certs::pkcs8_ec_to_sec1_pem(&server.key_pem),
        ),
        ..st.opts.clone()
    };
    assert!(std::fs::read_to_string(&opts.key_file)
        .unwrap()
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    handshake(
        server_config(&opts).unwrap(),
        client_config(&st.ca, default_provider(), None),
    )
    .unwrap();
}

#[test]
fn install_is_idempotent() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(CryptoProvider::get_default().is_some());
}

// ---- certificate to user mapping ----

#[test]
fn doc_example_email_san() {
    let ca = Ca::new("ca");
    let c = ca.client(
        certs::dn(&[(DnType::CommonName, "derek")]),
        vec![
            dns("localhost"),
            rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
            email("derek@nats.io"),
        ],
    );
    assert_eq!(
        cert_identities(&c.der),
        vec!["derek@nats.io", "localhost", "CN=derek"]
    );
    assert_eq!(
        map_user(&c.der, ["CN=derek", "derek@nats.io"]),
        Some("derek@nats.io")
    );
    assert_eq!(map_user(&c.der, ["CN=derek", "bob"]), Some("CN=derek"));
    assert_eq!(map_user(&c.der, ["bob"]), None);
}

#[test]
fn doc_example_subject_dn() {
    let ca = Ca::new("ca");
    let c = ca.client(
        certs::dn(&[
            (DnType::OrganizationalUnitName, "CNCF"),
            (DnType::CommonName, "example.com"),
        ]),
        vec![],
    );
    assert_eq!(subject_string(&c.der).unwrap(), "CN=example.com,OU=CNCF");
    assert_eq!(cert_identities(&c.der), vec!["CN=example.com,OU=CNCF"]);
    assert_eq!(
        map_user(&c.der, ["CN=example.com,OU=CNCF"]),
        Some("CN=example.com,OU=CNCF")
    );
    // DN matching: spaces and case of types do not matter, nor the order of RDNs.
    assert_eq!(
        map_user(&c.der, ["x", "cn=example.com, ou=CNCF"]),
        Some("cn=example.com, ou=CNCF")
    );
    assert_eq!(
        map_user(&c.der, ["OU=CNCF,CN=example.com"]),
        Some("OU=CNCF,CN=example.com")
    );
    // Values are compared exactly.
    assert_eq!(map_user(&c.der, ["CN=Example.com,OU=CNCF"]), None);
    let dn = Dn::from_cert(&c.der).unwrap();
    assert!(Dn::parse("CN=example.com,OU=CNCF").unwrap().equal(&dn));
}

#[test]
fn go_reorders_known_attributes() {
    let ca = Ca::new("ca");
    // Certificate order CN, O, C, L, ST: Go prints in its own fixed order, reversed.
    let c = ca.client(
        certs::dn(&[
            (DnType::CommonName, "svc"),
            (DnType::OrganizationName, "Acme"),
            (DnType::CountryName, "US"),
            (DnType::LocalityName, "Los Angeles"),
            (DnType::StateOrProvinceName, "CA"),
            (DnType::CustomDnType(vec![2, 5, 4, 9]), "1 Main St"),
            (DnType::CustomDnType(vec![2, 5, 4, 17]), "90001"),
            (DnType::CustomDnType(vec![2, 5, 4, 5]), "42"),
        ]),
        vec![],
    );
    assert_eq!(
        cert_identities(&c.der),
        vec!["SERIALNUMBER=42,CN=svc,O=Acme,POSTALCODE=90001,STREET=1 Main St,L=Los Angeles,ST=CA,C=US"]
    );
    // The certificate's own order still matches through DN matching (RFC 4514 order is reversed).
    let own =
        "SERIALNUMBER=42,POSTALCODE=90001,STREET=1 Main St,ST=CA,L=Los Angeles,C=US,O=Acme,CN=svc";
    assert_eq!(map_user(&c.der, [own]), Some(own));
}

#[test]
fn escaping_in_subject() {
    let ca = Ca::new("ca");
    let c = ca.client(
        certs::dn(&[
            (DnType::CommonName, "a,b+c"),
            (DnType::OrganizationName, "\"quoted\" <x>;y\\z"),
            (DnType::OrganizationalUnitName, "#hash # inside"),
            (DnType::LocalityName, " padded "),
        ]),
        vec![],
    );
    let want = r#"CN=a\,b\+c,OU=\#hash # inside,O=\"quoted\" \<x\>\;y\\z,L=\ padded\ "#;
    assert_eq!(cert_identities(&c.der), vec![want]);
    assert_eq!(map_user(&c.der, [want]), Some(want));
    // The same DN written with hex escapes matches through DN matching.
    let hex = r#"CN=a\2cb\2bc,OU=\#hash # inside,O=\"quoted\" \<x\>\;y\\z,L=\ padded\ "#;
    assert_eq!(map_user(&c.der, [hex]), Some(hex));
}

#[test]
fn non_ascii_and_string_types() {
    let ca = Ca::new("ca");
    let c = ca.client(
        certs::dn_values(vec![
            (DnType::CommonName, "José".into()),
            (
                DnType::OrganizationName,
                DnValue::PrintableString("Acme".try_into().unwrap()),
            ),
            (
                DnType::OrganizationalUnitName,
                DnValue::BmpString("Ünit".try_into().unwrap()),
            ),
        ]),
        vec![],
    );
    assert_eq!(cert_identities(&c.der), vec!["CN=José,OU=Ünit,O=Acme"]);
}

#[test]
fn domain_components_and_unknown_attributes() {
    let ca = Ca::new("ca");
    let dc = vec![0, 9, 2342, 19200300, 100, 1, 25];
    let email_attr = vec![1, 2, 840, 113549, 1, 9, 1];
    let c = ca.client(
        certs::dn(&[
            (DnType::CustomDnType(dc.clone()), "org"),
            (DnType::CommonName, "host"),
            (DnType::CustomDnType(email_attr), "a@b.c"),
        ]),
        vec![],
    );
    // The subject emailAddress is not an identity; DCs give an extra candidate first.
    assert_eq!(cert_identities(&c.der), vec!["CN=host,DC=org", "CN=host"]);
    // Go's Name.String(): unknown attributes as OID=#DER (re-encoded as Go would).
    assert_eq!(
        subject_string(&c.der).unwrap(),
        "CN=host,1.2.840.113549.1.9.1=#0c056140622e63,0.9.2342.19200300.100.1.25=#13036f7267"
    );
    // An attribute go-ldap does not know disables DN matching.
    assert!(Dn::from_cert(&c.der).is_none());
    assert_eq!(map_user(&c.der, ["CN=host, DC=org"]), None);
    assert_eq!(map_user(&c.der, ["CN=host,DC=org"]), Some("CN=host,DC=org"));

    let c = ca.client(
        certs::dn(&[
            (DnType::CustomDnType(dc), "org"),
            (DnType::CommonName, "host"),
        ]),
        vec![],
    );
    assert!(Dn::from_cert(&c.der).is_some());
    assert_eq!(
        map_user(&c.der, ["CN=host, DC=org"]),
        Some("CN=host, DC=org")
    );
}

#[test]
fn san_order_and_uris() {
    let ca = Ca::new("ca");
    let c = ca.client(
        certs::dn(&[(DnType::CommonName, "x")]),
        vec![
            uri("spiffe://example.org/svc"),
            dns("b.example"),
            email("one@example.org"),
            dns("a.example"),
            email("two@example.org"),
        ],
    );
    assert_eq!(
        cert_identities(&c.der),
        vec![
            "one@example.org",
            "two@example.org",
            "b.example",
            "a.example",
            "spiffe://example.org/svc",
            "CN=x"
        ]
    );
    assert_eq!(
        map_user(&c.der, ["CN=x", "spiffe://example.org/svc"]),
        Some("spiffe://example.org/svc")
    );
}

#[test]
fn dns_only_with_empty_subject_maps_to_nobody() {
    let ca = Ca::new("ca");
    let c = ca.client(rcgen::DistinguishedName::new(), vec![dns("only.example")]);
    assert!(cert_identities(&c.der).is_empty());
    assert_eq!(map_user(&c.der, ["only.example"]), None);
    let c = ca.client(
        rcgen::DistinguishedName::new(),
        vec![dns("only.example"), uri("urn:x")],
    );
    assert_eq!(cert_identities(&c.der), vec!["only.example", "urn:x"]);
    assert!(cert_identities(b"not a certificate").is_empty());
}
