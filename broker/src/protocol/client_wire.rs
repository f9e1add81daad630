//! The client protocol parser: one complete operation at a time, borrowed from the read buffer.
//!
//! The connection keeps unparsed bytes in its read buffer; `parse` returns `Ok(None)` until a whole
//! operation (control line plus payload, if any) is present, so split reads need no extra state.

use memchr::memchr;

/// One parsed client operation; slices borrow the connection's read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT {json}`.
    Connect(&'a [u8]),
    /// `PUB` or `HPUB`: `headers` is the header block (HPUB only), `payload` what follows it.
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// `SUB subject [queue] sid`.
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `UNSUB sid [max]`.
    Unsub { sid: &'a [u8], max: Option<u64> },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` or `INFO` from a client: accepted and ignored, as nats-server does.
    Ignored,
    /// `-ERR` from a client: nats-server closes the connection.
    ClientError,
}

/// Protocol violations; each maps to nats-server's `-ERR` text in [`ParseError::err_text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A complete control line longer than `max_control_line`.
    #[error("maximum control line exceeded")]
    ControlLineTooLong,
    /// The control line grew past `max_control_line` before its line end arrived.
    #[error("maximum control line exceeded (partial line)")]
    PartialControlLineTooLong,
    /// An operation name we do not know.
    #[error("unknown protocol operation")]
    UnknownOp,
    /// A known operation with bad arguments; the string is the op for the message.
    #[error("{op} parse error: {arg}")]
    BadArgs { op: &'static str, arg: String },
    /// PUB/HPUB size above `max_payload`.
    #[error("maximum payload violation")]
    MaxPayload,
    /// The payload was not followed by CRLF.
    #[error("payload not terminated by CRLF")]
    BadPayloadEnd,
}

impl ParseError {
    /// The reason `/connz` reports for a connection closed by this error.
    pub fn closed_reason(&self) -> super::ClosedReason {
        use super::ClosedReason;
        match self {
            ParseError::ControlLineTooLong | ParseError::PartialControlLineTooLong => {
                ClosedReason::MaxControlLineExceeded
            }
            ParseError::MaxPayload => ClosedReason::MaxPayloadExceeded,
            _ => ClosedReason::ProtocolViolation,
        }
    }

    /// The exact line nats-server sends for this violation.
    pub fn err_text(&self) -> String {
        match self {
            // nats-server sends the same text whether or not the line end has arrived.
            ParseError::ControlLineTooLong | ParseError::PartialControlLineTooLong => {
                "-ERR 'maximum control line exceeded'\r\n".into()
            }
            ParseError::UnknownOp => "-ERR 'Unknown Protocol Operation'\r\n".into(),
            ParseError::MaxPayload => "-ERR 'Maximum Payload Violation'\r\n".into(),
            ParseError::BadPayloadEnd => "-ERR 'Unknown Protocol Operation'\r\n".into(),
            // nats-server closes on bad arguments without telling the client why.
            ParseError::BadArgs { .. } => String::new(),
        }
    }
}

/// Parser limits taken from the server options.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

/// Parses one operation from the front of `buf`.
///
/// Returns the operation and the number of bytes it used, `Ok(None)` when more bytes are
/// needed, or the protocol violation.
pub fn parse<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
    let Some(nl) = memchr(b'\n', buf) else {
        // Garbage is rejected as soon as it cannot start an operation, not at the line end.
        check_op_prefix(buf)?;
        // As nats-server: the arguments received so far count (a trailing CR is not part of
        // them). The whole-buffer bound keeps whitespace runs from growing it without limit.
        let partial = buf.strip_suffix(b"\r").unwrap_or(buf);
        if over_control_line(partial, limits.max_control_line)
            || buf.len() > limits.max_control_line.saturating_add(4096)
        {
            return Err(ParseError::PartialControlLineTooLong);
        }
        return Ok(None);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..line_end];
    let after = nl + 1;
    let (op, args) = split_op(line);
    if over_control_line(line, limits.max_control_line) {
        return Err(ParseError::ControlLineTooLong);
    }
    // An operation that takes arguments but has none is not recognised at all by nats-server.
    let needs_args = |name: &[u8]| eq_ci(op, name) && trim(args).is_empty();
    if needs_args(b"PUB") || needs_args(b"HPUB") || needs_args(b"SUB") || needs_args(b"UNSUB") {
        return Err(ParseError::UnknownOp);
    }
    match op.len() {
        3 if eq_ci(op, b"PUB") => parse_pub(buf, args, after, limits),
        4 if eq_ci(op, b"HPUB") => parse_hpub(buf, args, after, limits),
        3 if eq_ci(op, b"SUB") => parse_sub(args).map(|o| Some((o, after))),
        5 if eq_ci(op, b"UNSUB") => parse_unsub(args).map(|o| Some((o, after))),
        4 if eq_ci(op, b"PING") => Ok(Some((ClientOp::Ping, after))),
        4 if eq_ci(op, b"PONG") => Ok(Some((ClientOp::Pong, after))),
        7 if eq_ci(op, b"CONNECT") => Ok(Some((ClientOp::Connect(trim(args)), after))),
        4 if eq_ci(op, b"INFO") => Ok(Some((ClientOp::Ignored, after))),
        3 if eq_ci(op, b"+OK") => Ok(Some((ClientOp::Ignored, after))),
        4 if eq_ci(op, b"-ERR") => Ok(Some((ClientOp::ClientError, after))),
        _ => Err(ParseError::UnknownOp),
    }
}

/// nats-server's `max_control_line` rule: it measures only the arguments of the ops that take
/// them (from the first non-blank byte after the op to the line end, trailing blanks included),
/// so the op itself and ops such as `PING` never count.
fn over_control_line(line: &[u8], max: usize) -> bool {
    if line.len() <= max {
        return false;
    }
    let line = &line[line.iter().position(|&b| !is_ws(b)).unwrap_or(line.len())..];
    let op_end = line.iter().position(|&b| is_ws(b)).unwrap_or(line.len());
    let op = &line[..op_end];
    const ARG_OPS: [&[u8]; 7] = [
        b"PUB", b"HPUB", b"SUB", b"UNSUB", b"CONNECT", b"INFO", b"-ERR",
    ];
    if !ARG_OPS.iter().any(|k| eq_ci(op, k)) {
        return false;
    }
    let rest = &line[op_end..];
    let start = rest.iter().position(|&b| !is_ws(b)).unwrap_or(rest.len());
    rest.len() - start > max
}

/// Fails early on a line that cannot start a known operation, so garbage without a newline is
/// rejected as an unknown op rather than buffered until the control line limit.
fn check_op_prefix(buf: &[u8]) -> Result<(), ParseError> {
    let end = buf
        .iter()
        .position(|&b| b == b' ' || b == b'\t' || b == b'\r')
        .unwrap_or(buf.len());
    let op = &buf[..end];
    const OPS: [&[u8]; 10] = [
        b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK", b"-ERR",
    ];
    if OPS
        .iter()
        .any(|k| op.len() <= k.len() && eq_ci(op, &k[..op.len()]))
    {
        Ok(())
    } else {
        Err(ParseError::UnknownOp)
    }
}

#[inline]
fn eq_ci(a: &[u8], upper: &[u8]) -> bool {
    a.len() == upper.len()
        && a.iter()
            .zip(upper)
            .all(|(x, y)| x.to_ascii_uppercase() == *y)
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim(line);
    match line.iter().position(|&b| is_ws(b)) {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &[]),
    }
}

/// Splits arguments on spaces and tabs; at most `N` of them.
fn split_args<const N: usize>(args: &[u8]) -> Option<([&[u8]; N], usize)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for a in args.split(|&b| is_ws(b)).filter(|a| !a.is_empty()) {
        if n == N {
            return None;
        }
        out[n] = a;
        n += 1;
    }
    Some((out, n))
}

/// Parses a non-negative decimal as nats-server does (no sign, digits only).
pub fn parse_size(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut n: usize = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

fn bad(op: &'static str, args: &[u8]) -> ParseError {
    ParseError::BadArgs {
        op,
        arg: String::from_utf8_lossy(trim(args)).into_owned(),
    }
}

fn parse_pub<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    after: usize,
    limits: &Limits,
) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
    let (a, n) = split_args::<3>(args).ok_or_else(|| bad("PUB", args))?;
    let (subject, reply, size) = match n {
        2 => (a[0], None, a[1]),
        3 => (a[0], Some(a[1]), a[2]),
        _ => return Err(bad("PUB", args)),
    };
    let size = parse_size(size).ok_or_else(|| bad("PUB", args))?;
    if size > limits.max_payload {
        return Err(ParseError::MaxPayload);
    }
    let Some(payload) = take_payload(buf, after, size)? else {
        return Ok(None);
    };
    let used = after + size + 2;
    Ok(Some((
        ClientOp::Pub {
            subject,
            reply,
            headers: None,
            payload,
        },
        used,
    )))
}

fn parse_hpub<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    after: usize,
    limits: &Limits,
) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
    let (a, n) = split_args::<4>(args).ok_or_else(|| bad("HPUB", args))?;
    let (subject, reply, hsize, tsize) = match n {
        3 => (a[0], None, a[1], a[2]),
        4 => (a[0], Some(a[1]), a[2], a[3]),
        _ => return Err(bad("HPUB", args)),
    };
    let hsize = parse_size(hsize).ok_or_else(|| bad("HPUB", args))?;
    let tsize = parse_size(tsize).ok_or_else(|| bad("HPUB", args))?;
    if hsize > tsize {
        return Err(bad("HPUB", args));
    }
    if tsize > limits.max_payload {
        return Err(ParseError::MaxPayload);
    }
    let Some(msg) = take_payload(buf, after, tsize)? else {
        return Ok(None);
    };
    Ok(Some((
        ClientOp::Pub {
            subject,
            reply,
            headers: Some(&msg[..hsize]),
            payload: &msg[hsize..],
        },
        after + tsize + 2,
    )))
}

/// The `size` bytes after the control line, once they and their CRLF have arrived.
fn take_payload(buf: &[u8], start: usize, size: usize) -> Result<Option<&[u8]>, ParseError> {
    let end = start + size;
    if buf.len() < end + 2 {
        // The payload must end in exactly CRLF (a bare LF is fine only after a control line).
        if buf.len() > end && buf[end] != b'\r' {
            return Err(ParseError::BadPayloadEnd);
        }
        return Ok(None);
    }
    if buf[end] != b'\r' || buf[end + 1] != b'\n' {
        return Err(ParseError::BadPayloadEnd);
    }
    Ok(Some(&buf[start..end]))
}

fn parse_sub(args: &[u8]) -> Result<ClientOp<'_>, ParseError> {
    let (a, n) = split_args::<3>(args).ok_or_else(|| bad("SUB", args))?;
    match n {
        2 => Ok(ClientOp::Sub {
            subject: a[0],
            queue: None,
            sid: a[1],
        }),
        3 => Ok(ClientOp::Sub {
            subject: a[0],
            queue: Some(a[1]),
            sid: a[2],
        }),
        _ => Err(bad("SUB", args)),
    }
}

fn parse_unsub(args: &[u8]) -> Result<ClientOp<'_>, ParseError> {
    let (a, n) = split_args::<2>(args).ok_or_else(|| bad("UNSUB", args))?;
    match n {
        1 => Ok(ClientOp::Unsub {
            sid: a[0],
            max: None,
        }),
        // An unparsable max means no max in nats-server: the UNSUB takes effect at once.
        2 => Ok(ClientOp::Unsub {
            sid: a[0],
            max: parse_size(a[1]).map(|m| m as u64),
        }),
        _ => Err(bad("UNSUB", args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1024 * 1024,
    };

    fn one(buf: &[u8]) -> ClientOp<'_> {
        let (op, n) = parse(buf, &L).unwrap().unwrap();
        assert_eq!(
            n,
            buf.len(),
            "consumed all of {:?}",
            String::from_utf8_lossy(buf)
        );
        op
    }

    #[test]
    fn parses_every_op() {
        assert_eq!(one(b"PING\r\n"), ClientOp::Ping);
        assert_eq!(one(b"pong\r\n"), ClientOp::Pong);
        assert_eq!(
            one(b"CONNECT {\"verbose\":false}\r\n"),
            ClientOp::Connect(b"{\"verbose\":false}")
        );
        assert_eq!(
            one(b"PUB foo.bar 5\r\nhello\r\n"),
            ClientOp::Pub {
                subject: b"foo.bar",
                reply: None,
                headers: None,
                payload: b"hello"
            }
        );
        assert_eq!(
            one(b"pub foo  INBOX.1\t2\r\nhi\r\n"),
            ClientOp::Pub {
                subject: b"foo",
                reply: Some(b"INBOX.1"),
                headers: None,
                payload: b"hi"
            }
        );
        assert_eq!(
            one(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            ClientOp::Pub {
                subject: b"foo",
                reply: None,
                headers: Some(b"NATS/1.0\r\n\r\n"),
                payload: b"hi"
            }
        );
        assert_eq!(
            one(b"SUB foo 1\r\n"),
            ClientOp::Sub {
                subject: b"foo",
                queue: None,
                sid: b"1"
            }
        );
        assert_eq!(
            one(b"SUB foo q 1\r\n"),
            ClientOp::Sub {
                subject: b"foo",
                queue: Some(b"q"),
                sid: b"1"
            }
        );
        assert_eq!(
            one(b"UNSUB 1 5\r\n"),
            ClientOp::Unsub {
                sid: b"1",
                max: Some(5)
            }
        );
        assert_eq!(
            one(b"UNSUB 1\r\n"),
            ClientOp::Unsub {
                sid: b"1",
                max: None
            }
        );
        assert_eq!(one(b"+OK\r\n"), ClientOp::Ignored);
    }

    #[test]
    fn waits_for_whole_op_byte_by_byte() {
        let full = b"PUB foo reply 11\r\nhello world\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut], &L).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(full, &L).unwrap().is_some());
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"FOO\r\n", &L), Err(ParseError::UnknownOp));
        assert_eq!(parse(b"XYZ", &L), Err(ParseError::UnknownOp));
        assert_eq!(parse(b"PUB\r\n", &L), Err(ParseError::UnknownOp));
        assert!(matches!(
            parse(b"PUB foo\r\n", &L),
            Err(ParseError::BadArgs { .. })
        ));
        assert!(matches!(
            parse(b"PUB foo -1\r\n", &L),
            Err(ParseError::BadArgs { .. })
        ));
        assert!(matches!(
            parse(b"PUB a b c d\r\n", &L),
            Err(ParseError::BadArgs { .. })
        ));
        assert_eq!(
            parse(b"PUB foo 2\r\nhello\r\n", &L),
            Err(ParseError::BadPayloadEnd)
        );
        let small = Limits {
            max_control_line: 8,
            max_payload: 4,
        };
        assert_eq!(
            parse(b"PUB foo.bar 5\r\n", &small),
            Err(ParseError::ControlLineTooLong)
        );
        // Only the arguments count, and only for ops that take them.
        assert_eq!(parse(b"PUB foo 5\r\n", &small), Err(ParseError::MaxPayload));
        assert_eq!(
            parse(b"PING            \r\n", &small),
            Ok(Some((ClientOp::Ping, 18)))
        );
        assert_eq!(parse(b"SUB foo.bar", &small), Ok(None));
        assert_eq!(parse(b"PUB f 5\r\n", &small), Err(ParseError::MaxPayload));
        assert_eq!(
            parse(b"PUB foo.bar.baz", &small),
            Err(ParseError::PartialControlLineTooLong)
        );
    }
}
