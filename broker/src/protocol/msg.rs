//! The message as it travels through the broker: parsed from a client or a route, matched and
//! delivered, forwarded to routes, handed to JetStream and internal subscribers.

/// One message, borrowed from wherever it was read (a connection's read buffer, a stream's
/// store, a request being answered). It is `Copy`: a hop that changes one part (a mapped
/// subject, a reply leading back through an import) makes a new `Msg` with `..*msg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// The subject subscribers see (valid UTF-8: checked once, where the message enters).
    pub subject: &'a str,
    /// Where answers go, if anywhere.
    pub reply: Option<&'a [u8]>,
    /// The header block (`NATS/1.0\r\n…\r\n\r\n`), when the message has one.
    pub headers: Option<&'a [u8]>,
    /// The body.
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// A message without reply or headers.
    pub fn new(subject: &'a str, payload: &'a [u8]) -> Msg<'a> {
        Msg {
            subject,
            reply: None,
            headers: None,
            payload,
        }
    }

    /// The same message with `reply` as its reply subject.
    pub fn with_reply(self, reply: &'a str) -> Msg<'a> {
        Msg {
            reply: Some(reply.as_bytes()),
            ..self
        }
    }

    /// The same message with `headers` as its header block.
    pub fn with_headers(self, headers: &'a [u8]) -> Msg<'a> {
        Msg {
            headers: Some(headers),
            ..self
        }
    }

    /// Header and payload bytes, as `max_payload` and the byte counters count them.
    pub fn size(&self) -> usize {
        self.headers.map_or(0, <[u8]>::len) + self.payload.len()
    }
}
