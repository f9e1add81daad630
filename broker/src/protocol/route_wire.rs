//! Wire parsing and encoding for the route protocol (server to server), as nats-server speaks it:
//! `INFO`, `CONNECT`, `PING`/`PONG`, `RS+`/`RS-` (interest), `RMSG`/`HMSG` (messages).

use bytes::{BufMut, BytesMut};

use super::Msg;

use super::put_usize;

/// One operation read from a route.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `INFO {json}`.
    Info(&'a [u8]),
    /// `CONNECT {json}`.
    Connect(&'a [u8]),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `RS+ <account> <subject> [<queue> <weight>]`.
    Sub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        weight: i32,
    },
    /// `RS- <account> <subject> [<queue>]`.
    Unsub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
    /// `RMSG`/`HMSG`: a message for the local subscribers (and queue groups named) here.
    Msg {
        account: &'a [u8],
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        queues: Vec<&'a [u8]>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// `-ERR ...`.
    Err(&'a [u8]),
    /// Anything else we read and drop (`+OK`, `LS+`, `LS-`, ...).
    Ignored,
}

/// A route sent something that is not the route protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route protocol error: {0}")]
pub struct RouteParseError(pub String);

fn bad(line: &[u8]) -> RouteParseError {
    RouteParseError(String::from_utf8_lossy(line).into_owned())
}

fn num(t: &[u8]) -> Option<usize> {
    if t.is_empty() || t.len() > 12 {
        return None;
    }
    t.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + (b - b'0') as usize)
    })
}

/// Parses one operation from `buf`: `Ok(None)` when more bytes are needed, else the op and
/// how many bytes it used. `max_payload` bounds message sizes.
pub fn parse(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(RouteOp<'_>, usize)>, RouteParseError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > 64 * 1024 {
            return Err(RouteParseError("control line too long".into()));
        }
        return Ok(None);
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let used = nl + 1;
    let (verb, rest) = match memchr::memchr2(b' ', b'\t', line) {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &line[line.len()..]),
    };
    let mut toks = rest
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty());
    let op = match verb.to_ascii_uppercase().as_slice() {
        b"INFO" => RouteOp::Info(rest),
        b"CONNECT" => RouteOp::Connect(rest),
        b"PING" => RouteOp::Ping,
        b"PONG" => RouteOp::Pong,
        b"-ERR" => RouteOp::Err(rest),
        b"RS+" => {
            let t: Vec<&[u8]> = toks.collect();
            match t.as_slice() {
                [a, s] => RouteOp::Sub {
                    account: a,
                    subject: s,
                    queue: None,
                    weight: 0,
                },
                [a, s, q] => RouteOp::Sub {
                    account: a,
                    subject: s,
                    queue: Some(q),
                    weight: 1,
                },
                [a, s, q, w, ..] => RouteOp::Sub {
                    account: a,
                    subject: s,
                    queue: Some(q),
                    weight: num(w).unwrap_or(1).min(i32::MAX as usize) as i32,
                },
                _ => return Err(bad(line)),
            }
        }
        b"RS-" => {
            let a = toks.next().ok_or_else(|| bad(line))?;
            let s = toks.next().ok_or_else(|| bad(line))?;
            RouteOp::Unsub {
                account: a,
                subject: s,
                queue: toks.next(),
            }
        }
        b"RMSG" | b"HMSG" => {
            let hdr = verb.eq_ignore_ascii_case(b"HMSG");
            let t: Vec<&[u8]> = toks.collect();
            let sizes = if hdr { 2 } else { 1 };
            if t.len() < 2 + sizes {
                return Err(bad(line));
            }
            let (account, subject) = (t[0], t[1]);
            let mid = &t[2..t.len() - sizes];
            let (hsize, total) = if hdr {
                let h = num(t[t.len() - 2]).ok_or_else(|| bad(line))?;
                let tot = num(t[t.len() - 1]).ok_or_else(|| bad(line))?;
                if h > tot {
                    return Err(bad(line));
                }
                (h, tot)
            } else {
                (0, num(t[t.len() - 1]).ok_or_else(|| bad(line))?)
            };
            if total > max_payload.max(1) * 2 + 1024 * 1024 {
                return Err(bad(line));
            }
            let (reply, queues) = match mid {
                [] => (None, Vec::new()),
                [r] => (Some(*r), Vec::new()),
                [m, r, qs @ ..] if *m == b"+" => (Some(*r), qs.to_vec()),
                [m, qs @ ..] if *m == b"|" => (None, qs.to_vec()),
                _ => return Err(bad(line)),
            };
            if buf.len() < used + total + 2 {
                return Ok(None);
            }
            let body = &buf[used..used + total];
            let (headers, payload) = if hdr {
                (Some(&body[..hsize]), &body[hsize..])
            } else {
                (None, body)
            };
            return Ok(Some((
                RouteOp::Msg {
                    account,
                    subject,
                    reply,
                    queues,
                    headers,
                    payload,
                },
                used + total + 2,
            )));
        }
        _ => RouteOp::Ignored,
    };
    Ok(Some((op, used)))
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &b[s..e.max(s)]
}

/// Encodes `RMSG`/`HMSG <account> <subject> [+ <reply> <queues>| | <queues> | <reply>] <size>`.
pub fn encode_rmsg(out: &mut BytesMut, account: &[u8], msg: &Msg<'_>, queues: &[&[u8]]) {
    let (subject, reply) = (msg.subject.as_bytes(), msg.reply);
    let (headers, payload) = (msg.headers, msg.payload);
    let hlen = headers.map_or(0, |h| h.len());
    out.reserve(account.len() + subject.len() + hlen + payload.len() + 64);
    out.put_slice(if headers.is_some() {
        b"HMSG "
    } else {
        b"RMSG "
    });
    out.put_slice(account);
    out.put_u8(b' ');
    out.put_slice(subject);
    out.put_u8(b' ');
    match (reply, queues.is_empty()) {
        (Some(r), true) => {
            out.put_slice(r);
            out.put_u8(b' ');
        }
        (Some(r), false) => {
            out.put_slice(b"+ ");
            out.put_slice(r);
            out.put_u8(b' ');
        }
        (None, false) => out.put_slice(b"| "),
        (None, true) => {}
    }
    for q in queues {
        out.put_slice(q);
        out.put_u8(b' ');
    }
    if let Some(h) = headers {
        put_usize(out, h.len());
        out.put_u8(b' ');
    }
    put_usize(out, hlen + payload.len());
    out.put_slice(b"\r\n");
    if let Some(h) = headers {
        out.put_slice(h);
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// Encodes `RS+ <account> <subject> [<queue> <weight>]`.
pub fn encode_sub(out: &mut Vec<u8>, account: &str, subject: &str, queue: Option<(&str, i32)>) {
    out.extend_from_slice(b"RS+ ");
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject.as_bytes());
    if let Some((q, w)) = queue {
        out.push(b' ');
        out.extend_from_slice(q.as_bytes());
        out.extend_from_slice(format!(" {w}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Encodes `RS- <account> <subject> [<queue>]`.
pub fn encode_unsub(out: &mut Vec<u8>, account: &str, subject: &str, queue: Option<&str>) {
    out.extend_from_slice(b"RS- ");
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject.as_bytes());
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8]) -> RouteOp<'_> {
        parse(s, 1 << 20).unwrap().unwrap().0
    }

    #[test]
    fn interest_ops() {
        assert_eq!(
            one(b"RS+ $G foo.* q 3\r\n"),
            RouteOp::Sub {
                account: b"$G",
                subject: b"foo.*",
                queue: Some(b"q"),
                weight: 3
            }
        );
        assert_eq!(
            one(b"RS- $G foo\r\n"),
            RouteOp::Unsub {
                account: b"$G",
                subject: b"foo",
                queue: None
            }
        );
    }

    #[test]
    fn messages_round_trip() {
        let mut b = BytesMut::new();
        encode_rmsg(
            &mut b,
            b"$G",
            &Msg::new("x", b"hi").with_reply("r"),
            &[b"q1", b"q2"],
        );
        assert_eq!(&b[..], b"RMSG $G x + r q1 q2 2\r\nhi\r\n");
        match one(&b) {
            RouteOp::Msg {
                reply,
                queues,
                payload,
                ..
            } => {
                assert_eq!(reply, Some(&b"r"[..]));
                assert_eq!(queues, vec![&b"q1"[..], b"q2"]);
                assert_eq!(payload, b"hi");
            }
            o => panic!("{o:?}"),
        }
        let mut b = BytesMut::new();
        encode_rmsg(&mut b, b"$G", &Msg::new("y", b"yo"), &[b"qq"]);
        assert_eq!(&b[..], b"RMSG $G y | qq 2\r\nyo\r\n");
        let mut b = BytesMut::new();
        encode_rmsg(
            &mut b,
            b"$G",
            &Msg::new("x", b"hi").with_headers(b"NATS/1.0\r\n\r\n"),
            &[],
        );
        assert_eq!(&b[..], b"HMSG $G x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        match one(&b) {
            RouteOp::Msg {
                headers, payload, ..
            } => {
                assert_eq!(headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
                assert_eq!(payload, b"hi");
            }
            o => panic!("{o:?}"),
        }
        assert!(parse(b"RMSG $G x 5\r\nhe", 1 << 20).unwrap().is_none());
    }
}
