//! Test certificates made with rcgen at test time: a CA, server and client certificates,
//! PEM files in a temporary directory, and rustls client configurations.
#![allow(dead_code)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate with its key, in PEM and DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Issued {
    /// The certificate chain (just this certificate) for a rustls config.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    /// The private key for a rustls config.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA with the given common name (ECDSA P-256).
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, cn)]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a certificate from `params` with a fresh key.
    pub fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name = dn(&[(DnType::CommonName, "localhost")]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with the given subject and subjectAltNames.
    pub fn client(&self, subject: DistinguishedName, sans: Vec<SanType>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// Trust roots holding just this CA.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        Arc::new(roots)
    }
}

/// A distinguished name from (type, value) pairs, in order.
pub fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for (t, v) in entries {
        d.push(t.clone(), *v);
    }
    d
}

/// A distinguished name from (type, value) pairs with explicit string types, in order.
pub fn dn_values(entries: Vec<(DnType, DnValue)>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for (t, v) in entries {
        d.push(t, v);
    }
    d
}

/// An email subjectAltName.
pub fn email(s: &str) -> SanType {
    SanType::Rfc822Name(s.try_into().unwrap())
}

/// A DNS subjectAltName.
pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// A URI subjectAltName.
pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

/// Re-encodes an EC PKCS#8 PEM key as a SEC1 (`EC PRIVATE KEY`) PEM key.
pub fn pkcs8_ec_to_sec1_pem(pkcs8_pem: &str) -> String {
    let der = PrivateKeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
    let PrivateKeyDer::Pkcs8(p8) = der else {
        panic!("not PKCS#8")
    };
    // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING }
    let body = der_body(p8.secret_pkcs8_der(), 0x30);
    let (_, rest) = der_split(body); // version
    let (_, rest) = der_split(rest); // algorithm
    let (octets, _) = der_split(rest);
    let sec1 = der_body(octets, 0x04);
    let b64 = base64_encode(sec1);
    let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END EC PRIVATE KEY-----\n");
    pem
}

/// The contents of a DER element with the given tag.
fn der_body(der: &[u8], tag: u8) -> &[u8] {
    assert_eq!(der[0], tag);
    let (len, hdr) = der_len(der);
    &der[hdr..hdr + len]
}

/// Splits the first DER element off `der`.
fn der_split(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, hdr) = der_len(der);
    der.split_at(hdr + len)
}

fn der_len(der: &[u8]) -> (usize, usize) {
    let first = der[1] as usize;
    if first < 0x80 {
        return (first, 2);
    }
    let n = first & 0x7f;
    let len = der[2..2 + n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    (len, 2 + n)
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
