//! Reading and writing NATS header blocks (`NATS/1.0\r\nKey: value\r\n\r\n`).

use crate::server::API_LEVEL;

/// The value of header `name` (case-insensitive name), the first if repeated.
pub fn get<'a>(hdr: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(hdr).ok()?;
    let mut lines = text.split("\r\n");
    lines.next()?;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case(name) {
                return Some(v.trim());
            }
        }
    }
    None
}

/// A status-only header block: `NATS/1.0 <code> <text>` plus extra headers.
pub fn status(code: u16, text: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut h = format!("NATS/1.0 {code} {text}\r\n");
    for (k, v) in extra {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// `hdr` with extra headers appended (a fresh block when `hdr` is empty).
pub fn with(hdr: &[u8], extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = if hdr.len() >= 4 && hdr.ends_with(b"\r\n\r\n") {
        hdr[..hdr.len() - 2].to_vec()
    } else {
        b"NATS/1.0\r\n".to_vec()
    };
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `hdr` without header `name` (case-insensitive); unchanged when absent.
pub fn without(hdr: &[u8], name: &str) -> Vec<u8> {
    if get(hdr, name).is_none() {
        return hdr.to_vec();
    }
    let text = String::from_utf8_lossy(hdr);
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        let drop = i > 0
            && line
                .split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name));
        if !drop {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // The split leaves the block's final empty line and one extra terminator.
    out.truncate(out.len() - 2);
    out.into_bytes()
}

/// Whether an API request's headers ask for a JetStream API level above ours with
/// `Nats-Required-Api-Level` (a value that is not a number counts as above, as in
/// nats-server; a plain publish is not checked, there either).
pub(crate) fn requires_newer_api(hdr: &[u8]) -> bool {
    get(hdr, "Nats-Required-Api-Level")
        .is_some_and(|v| v.trim().parse::<i64>().map_or(true, |l| l > API_LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_extends() {
        let h = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nX: 1\r\n\r\n";
        assert_eq!(get(h, "nats-msg-id"), Some("abc"));
        assert_eq!(get(h, "Y"), None);
        let w = with(h, &[("Z", "2".into())]);
        assert_eq!(
            without(h, "x"),
            b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n".to_vec()
        );
        assert_eq!(without(h, "nope"), h.to_vec());
        assert_eq!(get(&w, "Z"), Some("2"));
        assert_eq!(get(&w, "X"), Some("1"));
        assert_eq!(
            status(404, "No Messages", &[]),
            b"NATS/1.0 404 No Messages\r\n\r\n"
        );
    }
}
