//! Creds files, as nats-io/jwt creds_utils.go writes and parses them.

use nkeys::KeyPair;

use crate::{Error, Result};

/// Formats a user creds file (decorated JWT + decorated seed), byte-for-byte as `FormatUserConfig`.
pub fn format_user_creds(jwt: &str, seed: &str) -> Result<String> {
    let seed = seed.trim();
    if !seed.starts_with("SU") {
        return Err(Error::Creds("nkey seed is not an user seed".into()));
    }
    Ok(format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    ))
}

/// A `---...---` marker line (at least 3 dashes at each end).
fn is_marker(line: &str) -> bool {
    let l = line.trim_end_matches('\r');
    l.len() >= 6 && l.starts_with("---") && l.ends_with("---")
}

fn is_body(line: &str) -> bool {
    !line.is_empty()
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '='))
}

/// The bodies of `marker / body / marker` blocks, in order (Go `userConfigRE`).
fn blocks(contents: &str) -> Vec<String> {
    let lines: Vec<&str> = contents
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < lines.len() {
        if is_marker(lines[i].trim_start()) && is_body(lines[i + 1]) && is_marker(lines[i + 2]) {
            out.push(lines[i + 1].to_string());
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The JWT of a creds file (the first block), or the whole input when undecorated.
pub fn parse_decorated_jwt(contents: &str) -> String {
    blocks(contents)
        .into_iter()
        .next()
        .unwrap_or_else(|| contents.to_string())
}

/// The nkey of a creds file (the second block, else the first line starting with SO/SA/SU).
pub fn parse_decorated_nkey(contents: &str) -> Result<KeyPair> {
    let b = blocks(contents);
    let seed = if b.len() > 1 {
        b[1].clone()
    } else {
        contents
            .split('\n')
            .map(str::trim)
            .find(|l| l.starts_with("SO") || l.starts_with("SA") || l.starts_with("SU"))
            .ok_or_else(|| Error::Creds("no nkey seed found".into()))?
            .to_string()
    };
    if !(seed.starts_with("SO") || seed.starts_with("SA") || seed.starts_with("SU")) {
        return Err(Error::Creds("doesn't contain a seed nkey".into()));
    }
    Ok(KeyPair::from_seed(&seed)?)
}

/// Parses a user creds file into (jwt, user key pair).
pub fn parse_creds(contents: &str) -> Result<(String, KeyPair)> {
    let jwt = parse_decorated_jwt(contents);
    if jwt == contents {
        return Err(Error::Creds("no decorated JWT found".into()));
    }
    let kp = parse_decorated_nkey(contents)?;
    if !kp.seed()?.starts_with("SU") {
        return Err(Error::Creds("doesn't contain an user seed nkey".into()));
    }
    Ok((jwt, kp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let kp = KeyPair::new_user();
        let s = format_user_creds("aaa.bbb.ccc", &kp.seed().unwrap()).unwrap();
        assert!(s.starts_with(
            "-----BEGIN NATS USER JWT-----\naaa.bbb.ccc\n------END NATS USER JWT------\n\n"
        ));
        assert!(s.contains("\n-----BEGIN USER NKEY SEED-----\nSU"));
        assert!(s.ends_with("------END USER NKEY SEED------\n\n*************************************************************\n"));
        let (jwt, k2) = parse_creds(&s).unwrap();
        assert_eq!(jwt, "aaa.bbb.ccc");
        assert_eq!(k2.public_key(), kp.public_key());
        // CRLF and leading whitespace tolerated
        let crlf = s.replace('\n', "\r\n");
        let (jwt, k3) = parse_creds(&format!("  \r\n{crlf}")).unwrap();
        assert_eq!(jwt, "aaa.bbb.ccc");
        assert_eq!(k3.public_key(), kp.public_key());
        assert!(format_user_creds("x", &KeyPair::new_account().seed().unwrap()).is_err());
    }

    #[test]
    fn bare_seed_and_missing() {
        let kp = KeyPair::new_account();
        let k = parse_decorated_nkey(&format!("hello\n  {}\n", kp.seed().unwrap())).unwrap();
        assert_eq!(k.public_key(), kp.public_key());
        assert!(parse_decorated_nkey("nothing").is_err());
        assert_eq!(parse_decorated_jwt("plain.jwt.x"), "plain.jwt.x");
        assert!(parse_creds("plain").is_err());
    }
}
