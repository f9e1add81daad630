//! A server's peer id in its Raft groups, as nats-server derives it: the server name hashed, so
//! the same server keeps its id across restarts and tools name peers as they do for nats-server.

use sha2::{Digest, Sha256};

/// nats-server's base62 digits for the hash.
const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The length of a peer id.
pub const PEER_ID_LEN: usize = 8;

/// nats-server's `getHash`: the first 8 bytes of SHA-256 of `name`, each as a base62 digit.
pub fn peer_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())[..PEER_ID_LEN]
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
    }
}
