//! Raft messages on the wire between servers: one NATS message in the system account per
//! group, destination and turn of the runtime, on `$NRG.<group>.<peer id>`, carrying every
//! Raft message of that turn for that member (length-prefixed, [`crate::raft::codec`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::raft::codec;
use crate::raft::peer::peer_of;
use crate::raft::{Message, NodeId};

/// The subject prefix of consensus traffic (nats-server's, so tools that exclude it from
/// account exports and streams keep doing so).
pub const PREFIX: &str = "$NRG.";

/// The subject member `to` of `group` listens on.
pub fn subject(group: &str, to: NodeId) -> String {
    format!("{PREFIX}{group}.{}", peer_of(to))
}

/// What a server subscribes to: every group's messages for it.
pub fn inbox(me: NodeId) -> String {
    format!("{PREFIX}*.{}", peer_of(me))
}

/// The group a message on `subject` is for.
pub fn group_of(subject: &str) -> Option<&str> {
    subject.strip_prefix(PREFIX)?.split('.').next()
}

/// Appends `m` to a batch.
pub fn push(batch: &mut BytesMut, m: &Message) {
    let mut one = BytesMut::new();
    codec::encode(m, &mut one);
    batch.put_u32(one.len() as u32);
    batch.extend_from_slice(&one);
}

/// The messages of a batch; a damaged batch yields what came before the damage (Raft
/// tolerates lost messages, never wrong ones).
pub fn unpack(mut buf: Bytes) -> Vec<Message> {
    let mut out = Vec::new();
    while buf.remaining() >= 4 {
        let n = buf.get_u32() as usize;
        if n > buf.remaining() {
            break;
        }
        match codec::decode(buf.split_to(n)) {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::debug!("JetStream cluster: dropped a damaged Raft message: {e}");
                break;
            }
        }
    }
    out
}
