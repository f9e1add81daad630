//! The Stream reconciler's connection to a cluster that is not in operator mode but has client
//! TLS with client verification and users: the operator's TLS and login come from the
//! NatsCluster's Secrets (`spec.tls`, `spec.auth.operatorClient`) and a stream is created
//! through them on an in-process natrix-broker; what is missing is an error naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use natrix_broker::options::{JetStreamOptions, Options, TlsOptions, User};
use natrix_controller::client_auth::{self, ClientAuth, Login};
use natrix_controller::context::NatsClients;
use natrix_controller::crd::{NatsCluster, StreamSpec};
use natrix_controller::stream::config::to_config;
use natrix_controller::stream::sync::{self, Outcome};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const T: Duration = Duration::from_secs(5);

struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for the operator.
fn pki() -> (String, Pem, Pem) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "natrix test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let issue = |cn: &str, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        Pem {
            cert: p.signed_by(&key, &issuer).unwrap().pem(),
            key: key.serialize_pem(),
        }
    };
    let server = issue("nats", ExtendedKeyUsagePurpose::ServerAuth);
    let operator = issue("natrix-controller", ExtendedKeyUsagePurpose::ClientAuth);
    (ca_pem, server, operator)
}

fn secret(name: &str, kv: &[(&str, &str)]) -> (String, Secret) {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some("prod".into());
    s.data = Some(
        kv.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    (name.to_string(), s)
}

fn cluster(v: serde_json::Value) -> NatsCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1",
        "kind": "NatsCluster",
        "metadata": {"name": "nats", "namespace": "prod"},
        "spec": v,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_a_tls_cluster_with_users() {
    natrix_broker::server::tls::install_crypto_provider();
    let (ca, server_cert, operator_cert) = pki();
    let dir = std::env::temp_dir().join(format!("natrix-stream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        tls: Some(TlsOptions {
            cert_file: write("server.crt", &server_cert.cert),
            key_file: write("server.key", &server_cert.key),
            ca_file: Some(write("ca.crt", &ca)),
            verify: true,
            timeout: Duration::from_secs(2),
            ..TlsOptions::default()
        }),
        users: vec![User {
            username: Some("natrix".into()),
            password: Some("s3cr3t-pw".into()),
            ..User::default()
        }],
        jetstream: Some(JetStreamOptions {
            store_dir: dir.join("js"),
            ..Default::default()
        }),
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let url = format!("nats://{}", server.client_addr.read().unwrap());

    // What a user writes: client TLS verifying clients, the CA, and the operator's Secrets.
    let nc = cluster(serde_json::json!({
        "jetstream": {"enabled": true},
        "tls": {"client": {"secretName": "nats-tls", "verify": true},
                "ca": {"secretName": "nats-ca"}},
        "config": {"authorization": {"users": [{"user": "natrix", "password": "s3cr3t-pw"}]}},
        "auth": {"operatorClient": {"credentialsSecretName": "natrix-login",
                                    "tlsSecretName": "natrix-operator-tls"}},
    }));
    let secrets: BTreeMap<String, Secret> = [
        secret("nats-ca", &[("ca.crt", &ca)]),
        secret(
            "nats-tls",
            &[
                ("tls.crt", &server_cert.cert),
                ("tls.key", &server_cert.key),
            ],
        ),
        secret(
            "natrix-login",
            &[("username", "natrix"), ("password", "s3cr3t-pw")],
        ),
        secret(
            "natrix-operator-tls",
            &[
                ("tls.crt", &operator_cert.cert),
                ("tls.key", &operator_cert.key),
            ],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        client_auth::secret_names(&nc),
        ["natrix-login", "natrix-operator-tls", "nats-ca", "nats-tls"]
    );
    let auth = client_auth::from_secrets(&nc, &secrets).unwrap();
    assert!(auth.tls.as_ref().unwrap().client_cert.is_some());
    assert!(matches!(auth.login, Login::UserPassword { .. }));

    // The reconciler's connection: TLS with the operator's certificate, logged in.
    let clients = NatsClients::default();
    let client = clients.connect(&url, &auth, T).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let spec: StreamSpec = serde_json::from_value(serde_json::json!({
        "clusterRef": {"name": "nats"}, "name": "ORDERS", "subjects": ["orders.>"],
    }))
    .unwrap();
    let want = to_config(&spec).unwrap();
    assert_eq!(
        sync::sync(&js, &want, false, false).await.unwrap(),
        Outcome::Created
    );
    assert_eq!(
        sync::sync(&js, &want, true, false).await.unwrap(),
        Outcome::InSync
    );

    // What the reconciler did before: plain and anonymous. Refused.
    assert!(clients.get(&url, T).await.is_err());
    // TLS without the login: refused by authorization.
    let no_login = ClientAuth {
        login: Login::None,
        ..auth.clone()
    };
    let e = clients.connect(&url, &no_login, T).await.unwrap_err();
    assert!(!e.contains("s3cr3t-pw"), "{e}");
    // A wrong password: refused, and the password is in no message.
    let mut wrong = secrets.clone();
    wrong.extend([secret(
        "natrix-login",
        &[("username", "natrix"), ("password", "wrong-pw")],
    )]);
    let bad = client_auth::from_secrets(&nc, &wrong).unwrap();
    let e = clients.connect(&url, &bad, T).await.unwrap_err();
    assert!(!e.contains("wrong-pw"), "{e}");
    // The login without the client certificate: the TLS handshake fails.
    let no_cert = ClientAuth {
        tls: auth.tls.clone().map(|mut t| {
            t.client_cert = None;
            t
        }),
        ..auth.clone()
    };
    assert!(clients.connect(&url, &no_cert, T).await.is_err());

    // Missing settings are conditions that name what to fix.
    let mut no_cert_spec = nc.clone();
    no_cert_spec
        .spec
        .auth
        .operator_client
        .as_mut()
        .unwrap()
        .tls_secret_name = None;
    let e = client_auth::from_secrets(&no_cert_spec, &secrets).unwrap_err();
    assert!(e.contains("spec.auth.operatorClient.tlsSecretName"), "{e}");
    let mut missing = secrets.clone();
    missing.remove("natrix-login");
    let e = client_auth::from_secrets(&nc, &missing).unwrap_err();
    assert!(
        e.contains("prod/natrix-login") && e.contains("credentialsSecretName"),
        "{e}"
    );
    let mut no_ca = nc.clone();
    no_ca.spec.tls.as_mut().unwrap().ca = None;
    let e = client_auth::from_secrets(&no_ca, &secrets).unwrap_err();
    assert!(e.contains("spec.tls.ca"), "{e}");
    // ... unless the listener's Secret carries ca.crt (as cert-manager writes it).
    let mut with_ca = secrets.clone();
    with_ca.extend([secret(
        "nats-tls",
        &[
            ("tls.crt", &server_cert.cert),
            ("tls.key", &server_cert.key),
            ("ca.crt", &ca),
        ],
    )]);
    let auth2 = client_auth::from_secrets(&no_ca, &with_ca).unwrap();
    assert!(clients.connect(&url, &auth2, T).await.is_ok());

    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
