//! Wire parsing and encoding for the client protocol.

pub mod client_wire;
pub mod closed;
pub mod info;
pub mod msg;
pub mod route_wire;

pub use closed::ClosedReason;
pub use msg::Msg;

use bytes::{BufMut, BytesMut};

/// Appends a decimal number without allocating.
#[inline]
pub fn put_usize(out: &mut BytesMut, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&tmp[i..]);
}

/// Encodes `MSG`/`HMSG` for one delivery into an outbound buffer.
///
/// `headers` is `Some` only when the receiving client supports headers; a message published with
/// headers to a client without them is delivered as a plain `MSG` with the payload only.
#[inline]
pub fn encode_msg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let hlen = headers.map_or(0, |h| h.len());
    out.reserve(
        subject.len() + sid.len() + reply.map_or(0, |r| r.len()) + hlen + payload.len() + 40,
    );
    if headers.is_some() {
        out.put_slice(b"HMSG ");
    } else {
        out.put_slice(b"MSG ");
    }
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r);
        out.put_u8(b' ');
    }
    if let Some(h) = headers {
        put_usize(out, h.len());
        out.put_u8(b' ');
        put_usize(out, h.len() + payload.len());
        out.put_slice(b"\r\n");
        out.put_slice(h);
    } else {
        put_usize(out, payload.len());
        out.put_slice(b"\r\n");
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_msg_and_hmsg() {
        let mut b = BytesMut::new();
        encode_msg(&mut b, b"foo", b"1", None, None, b"hello");
        assert_eq!(&b[..], b"MSG foo 1 5\r\nhello\r\n");
        b.clear();
        encode_msg(
            &mut b,
            b"foo",
            b"22",
            Some(b"bar"),
            Some(b"NATS/1.0\r\n\r\n"),
            b"hi",
        );
        assert_eq!(&b[..], b"HMSG foo 22 bar 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        b.clear();
        put_usize(&mut b, 0);
        put_usize(&mut b, 1234567);
        assert_eq!(&b[..], b"01234567");
    }
}
