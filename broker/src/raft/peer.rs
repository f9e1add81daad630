//! A server's peer id in its Raft groups, as nats-server derives it: the server name hashed, so
//! the same server keeps its id across restarts and tools name peers as they do for nats-server.

use sha2::{Digest, Sha256};

/// nats-server's base62 digits for the hash.
const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The length of a peer id.
pub const PEER_ID_LEN: usize = 8;

/// nats-server's `getHash`: the first 8 bytes of SHA-256 of `name`, each as a base62 digit.
pub fn peer_id(name: &str) -> String {
    peer_of(node_id(name))
}

/// The member id of the server called `name` in its Raft groups: the same 8 bytes as its peer
/// id, as a number.
pub fn node_id(name: &str) -> u64 {
    let h = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(h[..PEER_ID_LEN].try_into().expect("8 bytes"))
}

/// The peer id (as nats-server names it) of member `id`.
pub fn peer_of(id: u64) -> String {
    id.to_be_bytes()
        .iter()
        .map(|b| DIGITS[(*b % 62) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nats_servers() {
        // nats-server 2.15 logs `Node: IPyngTPY` for a server named `alpha`.
        assert_eq!(peer_id("alpha"), "IPyngTPY");
        assert_eq!(peer_id("alpha").len(), PEER_ID_LEN);
        assert_ne!(peer_id("alpha"), peer_id("beta"));
        assert_eq!(peer_of(node_id("alpha")), "IPyngTPY");
    }
}
