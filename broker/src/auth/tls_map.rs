//! Mapping a client certificate to a configured user (`verify_and_map`), as nats-server's
//! `checkClientTLSCertSubject` and the client callback in `processClientOrLeafAuthentication`
//! do it.
//!
//! The rules, in the order nats-server tries them (the first configured user that matches
//! wins):
//! 1. every rfc822Name (email) in the subjectAltName, in certificate order (the subject's
//!    `emailAddress` attribute is *not* used: Go's `cert.EmailAddresses` holds SANs only);
//! 2. every dNSName in the subjectAltName;
//! 3. every uniformResourceIdentifier in the subjectAltName (as written in the certificate);
//! 4. distinguished-name matching ([`Dn`]): each configured user name that parses as an
//!    RFC 4514 DN is compared with the certificate subject taken in its own order (RFC 4517
//!    distinguishedNameMatch: same RDNs by position, attributes within an RDN in any order,
//!    attribute types case-insensitive, values exact); then, failing that, ignoring the order
//!    of the RDNs. This step only applies when every subject attribute is one of CN,
//!    SERIALNUMBER, C, L, ST, STREET, O, OU, POSTALCODE, DC;
//! 5. when the subject has domainComponent attributes: the string of rule 6 followed by
//!    `,DC=<v1>,DC=<v2>...` (DC values in certificate order, unescaped);
//! 6. the subject as Go's `pkix.Name.ToRDNSequence().String()` renders it: the attributes
//!    C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER in that fixed order (not the
//!    certificate's), each type's values joined by `+` in one RDN, the RDNs reversed and
//!    joined by `,`, values escaped as RFC 2253 says (`,+"\<>;` anywhere, a leading `#`, a
//!    leading or trailing space). Other attributes (DC, emailAddress, UID...) are left out.
//!    So `OU=CNCF, CN=example.com` gives `CN=example.com,OU=CNCF`.
//!
//! Like nats-server, a certificate with no email SAN, no URI SAN and an empty subject maps
//! to nobody, even when it has DNS SANs.

use std::fmt::Write as _;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// OIDs of the attributes Go parses into `pkix.Name` fields, with their short names.
const GO_NAMES: &[(&str, &str)] = &[
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];

/// domainComponent.
const DC_OID: &str = "0.9.2342.19200300.100.1.25";

/// One attribute of the subject: dotted OID and the value decoded as Go decodes it
/// (`None` when it is not a string type Go accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atv {
    oid: String,
    value: Option<String>,
}

type RdnSeq = Vec<Vec<Atv>>;

/// What the mapping needs from a parsed certificate.
#[derive(Debug, Clone, Default)]
struct CertInfo {
    emails: Vec<String>,
    dns_names: Vec<String>,
    uris: Vec<String>,
    subject: RdnSeq,
}

impl CertInfo {
    fn parse(der: &[u8]) -> Option<CertInfo> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut info = CertInfo {
            subject: subject_rdns(cert.subject()),
            ..Default::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(s) => info.emails.push(s.to_string()),
                    GeneralName::DNSName(s) => info.dns_names.push(s.to_string()),
                    GeneralName::URI(s) => info.uris.push(s.to_string()),
                    _ => {}
                }
            }
        }
        Some(info)
    }

    /// nats-server's "User required in cert, none found" check.
    fn has_candidates(&self) -> bool {
        !self.emails.is_empty()
            || !self.uris.is_empty()
            || !go_name_string(&self.subject).is_empty()
    }

    /// Rule 6's string.
    fn rdn_string(&self) -> String {
        rdn_sequence_string(&to_rdn_sequence(&self.subject))
    }

    /// `DC=a,DC=b` from the subject in certificate order, or empty.
    fn dcs(&self) -> String {
        let dcs: Vec<String> = self
            .subject
            .iter()
            .flatten()
            .filter(|a| a.oid == DC_OID)
            .filter_map(|a| a.value.as_ref().map(|v| format!("DC={v}")))
            .collect();
        dcs.join(",")
    }
}

/// The subject's RDNs in certificate order.
fn subject_rdns(name: &X509Name<'_>) -> RdnSeq {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| Atv {
                    oid: atv.attr_type().to_id_string(),
                    value: decode_string(atv.attr_value().header.tag().0, atv.as_slice()),
                })
                .collect()
        })
        .collect()
}

/// Decodes a directory string as Go's `parseASN1String` does.
fn decode_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String
        12 => String::from_utf8(data.to_vec()).ok(),
        // PrintableString, NumericString, IA5String: ASCII subsets
        18 | 19 | 22 => data
            .is_ascii()
            .then(|| String::from_utf8_lossy(data).into_owned()),
        // T61String: read as Latin-1
        20 => Some(data.iter().map(|&b| b as char).collect()),
        // BMPString: UTF-16BE
        30 => {
            if data.len() & 1 != 0 {
                return None;
            }
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn go_short_name(oid: &str) -> Option<&'static str> {
    GO_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}

/// Go's `pkix.Name.FillFromRDNSequence` followed by `ToRDNSequence`: known attributes only,
/// in Go's fixed order, one (possibly multi-valued) RDN per type; the last CN and
/// SERIALNUMBER win.
fn to_rdn_sequence(subject: &RdnSeq) -> RdnSeq {
    let mut out = RdnSeq::new();
    for (oid, _) in GO_NAMES {
        let values: Vec<&String> = subject
            .iter()
            .flatten()
            .filter(|a| a.oid == *oid)
            .filter_map(|a| a.value.as_ref())
            .collect();
        let values: Vec<&String> = match *oid {
            "2.5.4.3" | "2.5.4.5" => values
                .last()
                .filter(|v| !v.is_empty())
                .into_iter()
                .copied()
                .collect(),
            _ => values,
        };
        if !values.is_empty() {
            out.push(
                values
                    .into_iter()
                    .map(|v| Atv {
                        oid: oid.to_string(),
                        value: Some(v.clone()),
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Go's `pkix.Name.String()`: attributes Go has no field for first (so they print last),
/// then `ToRDNSequence`.
fn go_name_string(subject: &RdnSeq) -> String {
    let mut rdns: RdnSeq = subject
        .iter()
        .flatten()
        .filter(|a| go_short_name(&a.oid).is_none())
        .map(|a| vec![a.clone()])
        .collect();
    rdns.extend(to_rdn_sequence(subject));
    rdn_sequence_string(&rdns)
}

/// Go's `pkix.RDNSequence.String()`: RDNs reversed, joined by `,`; attributes joined by `+`;
/// unknown types as `<oid>=#<hex of the value's DER>`.
fn rdn_sequence_string(rdns: &RdnSeq) -> String {
    let mut s = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                s.push('+');
            }
            let value = atv.value.as_deref().unwrap_or("");
            match go_short_name(&atv.oid) {
                Some(name) => {
                    s.push_str(name);
                    s.push('=');
                    escape_value(&mut s, value);
                }
                None => {
                    s.push_str(&atv.oid);
                    s.push_str("=#");
                    for b in marshal_go_string(value) {
                        let _ = write!(s, "{b:02x}");
                    }
                }
            }
        }
    }
    s
}

/// RFC 2253 escaping as Go does it.
fn escape_value(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (k, c) in value.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == last,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Go's `asn1.Marshal` of a string: PrintableString when every character allows it,
/// else UTF8String.
fn marshal_go_string(value: &str) -> Vec<u8> {
    let printable = value.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b' ' | b':' | b'=' | b'?'
            )
    });
    let mut out = vec![if printable { 19 } else { 12 }];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value.as_bytes());
    out
}

/// The candidate user names for `verify_and_map` in nats-server's order (rules 1-3, 5, 6 of
/// the module docs; rule 4 needs the configured names, see [`map_user`]). Empty when the
/// certificate cannot be parsed or carries nothing to map.
pub fn cert_identities(der: &[u8]) -> Vec<String> {
    let Some(info) = CertInfo::parse(der) else {
        return Vec::new();
    };
    if !info.has_candidates() {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.extend(info.emails.iter().cloned());
    out.extend(info.dns_names.iter().cloned());
    out.extend(info.uris.iter().cloned());
    let rdn = info.rdn_string();
    let dcs = info.dcs();
    if !dcs.is_empty() {
        out.push(format!("{rdn},{dcs}"));
    }
    if !rdn.is_empty() {
        out.push(rdn);
    }
    out
}

/// Picks the configured user a client certificate maps to, applying every rule of the module
/// docs in order; `users` are the configured user names, in configuration order.
pub fn map_user<'a>(der: &[u8], users: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let users: Vec<&'a str> = users.into_iter().collect();
    let info = CertInfo::parse(der)?;
    if !info.has_candidates() {
        return None;
    }
    let find = |cand: &str| users.iter().copied().find(|u| *u == cand);
    for cand in info.emails.iter().chain(&info.dns_names).chain(&info.uris) {
        if let Some(u) = find(cand) {
            return Some(u);
        }
    }
    if let Some(cert_dn) = Dn::from_subject(&info.subject) {
        let parsed: Vec<(&'a str, Dn)> = users
            .iter()
            .filter_map(|u| Dn::parse(u).ok().map(|d| (*u, d)))
            .collect();
        if let Some((u, _)) = parsed.iter().find(|(_, d)| d.equal(&cert_dn)) {
            return Some(u);
        }
        if let Some((u, _)) = parsed.iter().find(|(_, d)| d.rdns_match(&cert_dn)) {
            return Some(u);
        }
    }
    let rdn = info.rdn_string();
    let dcs = info.dcs();
    if !dcs.is_empty() {
        if let Some(u) = find(&format!("{rdn},{dcs}")) {
            return Some(u);
        }
    }
    if rdn.is_empty() {
        return None;
    }
    find(&rdn)
}

/// The certificate subject as Go's `pkix.Name.String()` prints it (for logs).
pub fn subject_string(der: &[u8]) -> Option<String> {
    CertInfo::parse(der).map(|i| go_name_string(&i.subject))
}

/// The short names nats-server's DN matching knows (its copy of go-ldap).
const LDAP_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
    (DC_OID, "DC"),
];

/// One `type=value` of a [`Dn`]; values are bytes because `\XX` escapes may form any byte.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DnAttr {
    kind: String,
    value: Vec<u8>,
}

impl DnAttr {
    fn matches(&self, other: &DnAttr) -> bool {
        self.kind.eq_ignore_ascii_case(&other.kind) && self.value == other.value
    }
}

/// Whether two RDNs hold the same attributes in any order.
fn rdn_equal(a: &[DnAttr], b: &[DnAttr]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| b.iter().any(|y| y.matches(x)))
        && b.iter().all(|x| a.iter().any(|y| y.matches(x)))
}

/// A distinguished name as nats-server's go-ldap copy models it, for rule 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<Vec<DnAttr>>,
}

/// Why a user name is not a DN (the go-ldap messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("got corrupted escaped character")]
    CorruptedEscape,
    #[error("failed to decode escaped character")]
    BadHexEscape,
    #[error("unsupported BER encoding")]
    BerEncoding,
    #[error("incomplete type, value pair")]
    IncompletePair,
    #[error("DN ended with incomplete type, value pair")]
    IncompleteEnd,
}

impl Dn {
    /// Parses an RFC 4514 string with go-ldap's `ParseDN` rules (and its quirks).
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        let bytes = s.as_bytes();
        let mut rdns = Vec::new();
        let mut rdn: Vec<DnAttr> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut kind = String::new();
        let mut escaping = false;
        let mut trailing_spaces = 0usize;
        let take = |buf: &mut Vec<u8>, trailing: &mut usize| {
            let mut v = std::mem::take(buf);
            v.truncate(v.len() - *trailing);
            *trailing = 0;
            v
        };
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if escaping {
                trailing_spaces = 0;
                escaping = false;
                if matches!(
                    c,
                    b' ' | b'"' | b'#' | b'+' | b',' | b';' | b'<' | b'=' | b'>' | b'\\'
                ) {
                    buf.push(c);
                    i += 1;
                    continue;
                }
                if i + 1 == bytes.len() {
                    return Err(DnError::CorruptedEscape);
                }
                let hex =
                    std::str::from_utf8(&bytes[i..i + 2]).map_err(|_| DnError::BadHexEscape)?;
                buf.push(u8::from_str_radix(hex, 16).map_err(|_| DnError::BadHexEscape)?);
                i += 2;
                continue;
            }
            match c {
                b'\\' => {
                    trailing_spaces = 0;
                    escaping = true;
                }
                b'=' => {
                    kind =
                        String::from_utf8_lossy(&take(&mut buf, &mut trailing_spaces)).into_owned();
                    if bytes.get(i + 1) == Some(&b'#') {
                        return Err(DnError::BerEncoding);
                    }
                }
                b',' | b'+' => {
                    if kind.is_empty() {
                        return Err(DnError::IncompletePair);
                    }
                    let value = take(&mut buf, &mut trailing_spaces);
                    rdn.push(DnAttr {
                        kind: std::mem::take(&mut kind),
                        value,
                    });
                    if c == b',' {
                        rdns.push(std::mem::take(&mut rdn));
                    }
                }
                b' ' if buf.is_empty() => {}
                _ => {
                    if c == b' ' {
                        trailing_spaces += 1;
                    } else {
                        trailing_spaces = 0;
                    }
                    buf.push(c);
                }
            }
            i += 1;
        }
        if !buf.is_empty() {
            if kind.is_empty() {
                return Err(DnError::IncompleteEnd);
            }
            let value = take(&mut buf, &mut trailing_spaces);
            rdn.push(DnAttr { kind, value });
            rdns.push(rdn);
        }
        Ok(Dn { rdns })
    }

    /// go-ldap's `FromRawCertSubject`: RDNs and their attributes reversed; `None` when an
    /// attribute is of a type it does not know or not a string.
    fn from_subject(subject: &RdnSeq) -> Option<Dn> {
        let mut rdns = Vec::new();
        for rdn in subject.iter().rev() {
            if rdn.is_empty() {
                continue;
            }
            let mut attrs = Vec::new();
            for atv in rdn.iter().rev() {
                let (_, name) = LDAP_NAMES.iter().find(|(o, _)| *o == atv.oid)?;
                attrs.push(DnAttr {
                    kind: name.to_string(),
                    value: atv.value.clone()?.into_bytes(),
                });
            }
            rdns.push(attrs);
        }
        Some(Dn { rdns })
    }

    /// The DN of a certificate's subject, if every attribute is one go-ldap knows.
    pub fn from_cert(der: &[u8]) -> Option<Dn> {
        Dn::from_subject(&CertInfo::parse(der)?.subject)
    }

    /// RFC 4517 distinguishedNameMatch: the same RDNs, position by position.
    pub fn equal(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|(a, b)| rdn_equal(a, b))
    }

    /// The same number of RDNs and each of ours found somewhere in `other` (order ignored).
    pub fn rdns_match(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .all(|a| other.rdns.iter().any(|b| rdn_equal(a, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atv(oid: &str, v: &str) -> Atv {
        Atv {
            oid: oid.into(),
            value: Some(v.into()),
        }
    }

    #[test]
    fn go_order_and_grouping() {
        // Certificate order: CN, O, OU, OU, C. Go prints C last-reversed and groups the OUs.
        let subject = vec![
            vec![atv("2.5.4.3", "host")],
            vec![atv("2.5.4.10", "Acme")],
            vec![atv("2.5.4.11", "a")],
            vec![atv("2.5.4.11", "b")],
            vec![atv("2.5.4.6", "US")],
            vec![atv(DC_OID, "example")],
        ];
        assert_eq!(
            rdn_sequence_string(&to_rdn_sequence(&subject)),
            "CN=host,OU=a+OU=b,O=Acme,C=US"
        );
        assert_eq!(
            go_name_string(&subject),
            "CN=host,OU=a+OU=b,O=Acme,C=US,0.9.2342.19200300.100.1.25=#13076578616d706c65"
        );
    }

    #[test]
    fn go_marshal_picks_utf8_for_at_sign() {
        assert_eq!(marshal_go_string("a@b"), vec![12, 3, b'a', b'@', b'b']);
        assert_eq!(marshal_go_string("ab"), vec![19, 2, b'a', b'b']);
        assert_eq!(marshal_go_string(&"x".repeat(200))[..3], [19, 0x81, 200]);
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_value(&mut s, "#a, b+c\"d\\e<f>g;h #");
        assert_eq!(s, r#"\#a\, b\+c\"d\\e\<f\>g\;h #"#);
        let mut s = String::new();
        escape_value(&mut s, " lead and trail ");
        assert_eq!(s, r"\ lead and trail\ ");
    }

    #[test]
    fn parse_dn_like_go_ldap() {
        let d = Dn::parse("CN=example.com, OU=CNCF").unwrap();
        assert_eq!(d.rdns.len(), 2);
        assert_eq!(d.rdns[0][0].value, b"example.com");
        assert_eq!(d.rdns[1][0].kind, "OU");
        let d = Dn::parse(r"cn=a\,b\2Bc + ou=x  ").unwrap();
        assert_eq!(d.rdns[0].len(), 2);
        assert_eq!(d.rdns[0][0].value, b"a,b+c");
        assert_eq!(d.rdns[0][1].value, b"x");
        assert_eq!(Dn::parse("CN=#0400"), Err(DnError::BerEncoding));
        assert_eq!(Dn::parse("derek@nats.io"), Err(DnError::IncompleteEnd));
        assert_eq!(Dn::parse(r"CN=a\x"), Err(DnError::CorruptedEscape));
        assert_eq!(Dn::parse(r"CN=a\zz"), Err(DnError::BadHexEscape));
        let cert = Dn::from_subject(&vec![
            vec![atv("2.5.4.11", "CNCF")],
            vec![atv("2.5.4.3", "example.com")],
        ])
        .unwrap();
        assert!(Dn::parse("cn=example.com,ou=CNCF").unwrap().equal(&cert));
        assert!(!Dn::parse("OU=CNCF,CN=example.com").unwrap().equal(&cert));
        assert!(Dn::parse("OU=CNCF,CN=example.com")
            .unwrap()
            .rdns_match(&cert));
        assert!(!Dn::parse("CN=example.com").unwrap().rdns_match(&cert));
        // Unknown attribute types make the DN unusable.
        assert!(Dn::from_subject(&vec![vec![atv("1.2.840.113549.1.9.1", "a@b")]]).is_none());
    }
}
