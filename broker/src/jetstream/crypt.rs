//! Encryption at rest (`jetstream { cipher, key }`), nats-server's scheme in our own format.
//!
//! Every file stream has a random 32-byte seed in its `key` file, sealed with a key derived
//! from the configured key and the stream's name. Everything else of the stream derives its
//! keys from that seed with HMAC-SHA256 and a random salt, and is sealed with the configured
//! AEAD (ChaCha20-Poly1305 or AES-256-GCM):
//!
//! - `key`: `NXK1 | cipher u8 | salt[16] | sealed seed[32] | tag[16]`; key
//!   `HMAC(configured key, "natrix-kek" | salt | stream name)`, nonce zero (one seal per key).
//! - metadata files (`meta.inf`, consumer `meta.inf` and `o.dat`, block indexes):
//!   `NXF1 | cipher u8 | salt[16] | ciphertext | tag[16]`; key `HMAC(seed, "natrix-file" |
//!   salt)`, nonce zero (a new salt on every write).
//! - message blocks: a header `NXB1 | cipher u8 | salt[16]`, then records each sealed on its
//!   own under `HMAC(seed, "natrix-block" | salt)` with a nonce stored in the record, so any
//!   record can be read and authenticated alone (see `store/file.rs`).
//!
//! Files without these magics are plain (written before encryption was enabled) and stay
//! readable; the cipher byte makes data written under another cipher readable too.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::{Digest, Sha256};

pub use crate::options::JsCipher as Cipher;
use crate::options::JsEncryption;

/// Salt length of derived keys.
pub const SALT: usize = 16;
/// Nonce length of both AEADs.
pub const NONCE: usize = 12;
/// Authentication tag length of both AEADs.
pub const TAG: usize = 16;
/// Length of a message block's header.
pub const BLOCK_HEADER: usize = 4 + 1 + SALT;

const KEY_MAGIC: &[u8; 4] = b"NXK1";
const FILE_MAGIC: &[u8; 4] = b"NXF1";
const BLOCK_MAGIC: &[u8; 4] = b"NXB1";

/// Errors of encryption at rest.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("stream is encrypted but no JetStream encryption key is configured")]
    NoKey,
    #[error("could not decrypt {0}: wrong JetStream encryption key or corrupt file")]
    Open(String),
    #[error("{path} is not a valid encrypted file: {reason}")]
    Format { path: String, reason: &'static str },
    #[error("encryption I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> CryptError {
    CryptError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Cipher {
    /// The cipher's byte on disk.
    fn id(self) -> u8 {
        match self {
            Cipher::ChaChaPoly => 1,
            Cipher::Aes => 2,
        }
    }

    fn from_id(b: u8) -> Option<Cipher> {
        match b {
            1 => Some(Cipher::ChaChaPoly),
            2 => Some(Cipher::Aes),
            _ => None,
        }
    }

    /// The name nats-server's banner uses.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaCha20-Poly1305",
            Cipher::Aes => "AES-GCM",
        }
    }
}

/// HMAC-SHA256 of the concatenated `parts` (RFC 2104).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// One AEAD instance (ChaCha20-Poly1305 or AES-256-GCM) under one key.
pub enum Aead {
    ChaCha(ChaCha20Poly1305),
    Aes(Box<Aes256Gcm>),
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Aead::ChaCha(_) => "Aead(ChaCha20-Poly1305)",
            Aead::Aes(_) => "Aead(AES-256-GCM)",
        })
    }
}

impl Aead {
    /// The AEAD of `cipher` keyed with `key`.
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> Aead {
        match cipher {
            Cipher::ChaChaPoly => Aead::ChaCha(ChaCha20Poly1305::new(key.into())),
            Cipher::Aes => Aead::Aes(Box::new(Aes256Gcm::new(key.into()))),
        }
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal(&self, nonce: &[u8; NONCE], buf: &mut [u8]) -> [u8; TAG] {
        let tag = match self {
            Aead::ChaCha(c) => c.encrypt_in_place_detached(nonce.into(), b"", buf),
            Aead::Aes(c) => c.encrypt_in_place_detached(nonce.into(), b"", buf),
        };
        tag.expect("buffers are far below the AEAD limits").into()
    }

    /// Decrypts `buf` in place; `false` if it does not authenticate.
    pub fn open(&self, nonce: &[u8; NONCE], buf: &mut [u8], tag: &[u8]) -> bool {
        if tag.len() != TAG {
            return false;
        }
        match self {
            Aead::ChaCha(c) => c
                .decrypt_in_place_detached(nonce.into(), b"", buf, tag.into())
                .is_ok(),
            Aead::Aes(c) => c
                .decrypt_in_place_detached(nonce.into(), b"", buf, tag.into())
                .is_ok(),
        }
    }
}

/// The configured key: the cipher new data is written with and the key material.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Cipher,
    key: Vec<u8>,
    /// `prev_key`, tried when `key` does not open a key file.
    prev: Option<Vec<u8>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({:?}, <redacted>)", self.cipher)
    }
}

impl MasterKey {
    /// The key of `jetstream { cipher, key }`.
    pub fn new(enc: &JsEncryption) -> MasterKey {
        MasterKey {
            cipher: enc.cipher,
            key: enc.key.as_bytes().to_vec(),
            prev: enc.prev_key.as_ref().map(|k| k.as_bytes().to_vec()),
        }
    }

    /// The cipher new data is sealed with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    fn kek(&self, salt: &[u8], stream: &str) -> [u8; 32] {
        hmac(&self.key, &[b"natrix-kek", salt, stream.as_bytes()])
    }

    fn prev_kek(&self, salt: &[u8], stream: &str) -> Option<[u8; 32]> {
        let prev = self.prev.as_ref()?;
        Some(hmac(prev, &[b"natrix-kek", salt, stream.as_bytes()]))
    }
}

/// A stream's key: its random seed and the cipher new data is sealed with.
pub struct StreamKey {
    cipher: Cipher,
    seed: [u8; 32],
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamKey({:?}, <redacted>)", self.cipher)
    }
}

/// The cipher of one message block: its AEAD and header.
#[derive(Debug)]
pub struct BlockCipher {
    pub cipher: Cipher,
    salt: [u8; SALT],
    pub aead: Aead,
}

impl BlockCipher {
    /// The header the block file starts with.
    pub fn header(&self) -> [u8; BLOCK_HEADER] {
        let mut h = [0u8; BLOCK_HEADER];
        h[..4].copy_from_slice(BLOCK_MAGIC);
        h[4] = self.cipher.id();
        h[5..].copy_from_slice(&self.salt);
        h
    }
}

/// What the first bytes of a block file say.
pub enum BlockStart {
    /// A plain block (or an empty file).
    Plain,
    /// An encrypted block: its cipher and salt.
    Sealed(Cipher, [u8; SALT]),
    /// The start of a header cut short by a crash (nothing was written after it).
    Torn,
}

/// Reads the header at the start of a block file.
pub fn block_start(buf: &[u8]) -> Result<BlockStart, &'static str> {
    if buf.is_empty() || buf[0] != BLOCK_MAGIC[0] {
        return Ok(BlockStart::Plain);
    }
    if buf.len() < BLOCK_HEADER {
        return if BLOCK_MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            Ok(BlockStart::Torn)
        } else {
            Err("unknown block header")
        };
    }
    if &buf[..4] != BLOCK_MAGIC {
        return Err("unknown block header");
    }
    let cipher = Cipher::from_id(buf[4]).ok_or("unknown cipher")?;
    Ok(BlockStart::Sealed(
        cipher,
        buf[5..BLOCK_HEADER].try_into().expect("salt"),
    ))
}

impl StreamKey {
    /// The cipher new data is sealed with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The cipher of an existing block.
    pub fn block(&self, cipher: Cipher, salt: [u8; SALT]) -> BlockCipher {
        let key = hmac(&self.seed, &[b"natrix-block", &salt]);
        BlockCipher {
            cipher,
            salt,
            aead: Aead::new(cipher, &key),
        }
    }

    /// The cipher of a new block (a fresh salt, the configured cipher).
    pub fn new_block(&self) -> std::io::Result<BlockCipher> {
        Ok(self.block(self.cipher, random()?))
    }

    /// Seals a metadata file's contents.
    pub fn seal_file(&self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        let salt: [u8; SALT] = random()?;
        let key = hmac(&self.seed, &[b"natrix-file", &salt]);
        let mut out = Vec::with_capacity(4 + 1 + SALT + plain.len() + TAG);
        out.extend_from_slice(FILE_MAGIC);
        out.push(self.cipher.id());
        out.extend_from_slice(&salt);
        out.extend_from_slice(plain);
        let tag = Aead::new(self.cipher, &key).seal(&[0; NONCE], &mut out[4 + 1 + SALT..]);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens what [`StreamKey::seal_file`] sealed; `what` names it in errors.
    fn open_file(&self, mut buf: Vec<u8>, what: &Path) -> Result<Vec<u8>, CryptError> {
        let head = 4 + 1 + SALT;
        if buf.len() < head + TAG {
            return Err(CryptError::Format {
                path: what.display().to_string(),
                reason: "too short",
            });
        }
        let cipher = Cipher::from_id(buf[4]).ok_or_else(|| CryptError::Format {
            path: what.display().to_string(),
            reason: "unknown cipher",
        })?;
        let key = hmac(&self.seed, &[b"natrix-file", &buf[5..head]]);
        let end = buf.len() - TAG;
        let (body, tag) = buf.split_at_mut(end);
        if !Aead::new(cipher, &key).open(&[0; NONCE], &mut body[head..], tag) {
            return Err(CryptError::Open(what.display().to_string()));
        }
        buf.truncate(end);
        buf.drain(..head);
        Ok(buf)
    }
}

/// Whether `bytes` are a sealed metadata file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_MAGIC)
}

/// The plain contents of a metadata file's bytes: sealed ones are opened with `key`, plain
/// ones (written before encryption was enabled) are returned as they are.
pub fn open_bytes(
    key: Option<&StreamKey>,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<Vec<u8>, CryptError> {
    if !is_sealed(&bytes) {
        return Ok(bytes);
    }
    match key {
        Some(k) => k.open_file(bytes, path),
        None => Err(CryptError::NoKey),
    }
}

/// Reads a metadata file (see [`open_bytes`]).
pub fn read_file(key: Option<&StreamKey>, path: &Path) -> Result<Vec<u8>, CryptError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    open_bytes(key, bytes, path)
}

/// Writes `bytes` to `path` atomically (temp file, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes a metadata file atomically (temp file, then rename), sealed when there is a key.
pub fn write_file(key: Option<&StreamKey>, path: &Path, plain: &[u8]) -> std::io::Result<()> {
    let sealed;
    let bytes = match key {
        Some(k) => {
            sealed = k.seal_file(plain)?;
            &sealed[..]
        }
        None => plain,
    };
    write_atomic(path, bytes)
}

/// Name of a stream's key file.
pub const KEY_FILE: &str = "key";

fn seal_seed(master: &MasterKey, stream: &str, seed: &[u8; 32]) -> std::io::Result<Vec<u8>> {
    let salt: [u8; SALT] = random()?;
    let mut out = Vec::with_capacity(4 + 1 + SALT + 32 + TAG);
    out.extend_from_slice(KEY_MAGIC);
    out.push(master.cipher.id());
    out.extend_from_slice(&salt);
    out.extend_from_slice(seed);
    let tag = Aead::new(master.cipher, &master.kek(&salt, stream))
        .seal(&[0; NONCE], &mut out[4 + 1 + SALT..]);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The key of the stream `stream` in `dir`: opened from its `key` file, or made and written
/// when encryption is configured and the stream has none yet (a new stream, or one written
/// before encryption was enabled). `None`: the stream is not encrypted. A key file sealed
/// with another cipher is sealed again with the configured one.
pub fn stream_key(
    dir: &Path,
    stream: &str,
    master: Option<&MasterKey>,
) -> Result<Option<Arc<StreamKey>>, CryptError> {
    let path = dir.join(KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(master) = master else {
                return Ok(None);
            };
            let seed: [u8; 32] = random().map_err(|e| io_err(&path, e))?;
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            seal_seed(master, stream, &seed)
                .and_then(|b| write_file(None, &path, &b))
                .map_err(|e| io_err(&path, e))?;
            return Ok(Some(Arc::new(StreamKey {
                cipher: master.cipher,
                seed,
            })));
        }
        Err(e) => return Err(io_err(&path, e)),
    };
    let Some(master) = master else {
        return Err(CryptError::NoKey);
    };
    let head = 4 + 1 + SALT;
    let format = |reason| CryptError::Format {
        path: path.display().to_string(),
        reason,
    };
    if bytes.len() != head + 32 + TAG || !bytes.starts_with(KEY_MAGIC) {
        return Err(format("bad length or magic"));
    }
    let cipher = Cipher::from_id(bytes[4]).ok_or_else(|| format("unknown cipher"))?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[head..head + 32]);
    let sealed = seed;
    let aead = Aead::new(cipher, &master.kek(&bytes[5..head], stream));
    let mut rotated = false;
    if !aead.open(&[0; NONCE], &mut seed, &bytes[head + 32..]) {
        // Key rotation: the previous key opens it, the new one seals it again below.
        seed = sealed;
        let prev = master
            .prev_kek(&bytes[5..head], stream)
            .map(|k| Aead::new(cipher, &k));
        if !prev.is_some_and(|p| p.open(&[0; NONCE], &mut seed, &bytes[head + 32..])) {
            return Err(CryptError::Open(path.display().to_string()));
        }
        rotated = true;
    }
    if rotated {
        seal_seed(master, stream, &seed)
            .and_then(|b| write_file(None, &path, &b))
            .map_err(|e| io_err(&path, e))?;
        tracing::info!("JetStream stream '{stream}': key file sealed again with the new key");
    } else if cipher != master.cipher {
        seal_seed(master, stream, &seed)
            .and_then(|b| write_file(None, &path, &b))
            .map_err(|e| io_err(&path, e))?;
        tracing::info!(
            "JetStream stream '{stream}': key file sealed again with {}",
            master.cipher.name()
        );
    }
    Ok(Some(Arc::new(StreamKey {
        cipher: master.cipher,
        seed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(cipher: Cipher, key: &str) -> MasterKey {
        MasterKey::new(&JsEncryption {
            cipher,
            key: key.into(),
            prev_key: None,
        })
    }

    #[test]
    fn prev_key_rotates_key_files() {
        let d = std::env::temp_dir().join(format!("natrix-crypt-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let old = master(Cipher::Aes, "old-key");
        let k = stream_key(&d, "S", Some(&old)).unwrap().unwrap();
        let sealed = k.seal_file(b"payload").unwrap();
        // The new key alone cannot open it; with prev_key it can, and seals it again.
        assert!(matches!(
            stream_key(&d, "S", Some(&master(Cipher::Aes, "new-key"))),
            Err(CryptError::Open(_))
        ));
        let rotating = MasterKey::new(&JsEncryption {
            cipher: Cipher::Aes,
            key: "new-key".into(),
            prev_key: Some("old-key".into()),
        });
        let k2 = stream_key(&d, "S", Some(&rotating)).unwrap().unwrap();
        assert_eq!(
            open_bytes(Some(&k2), sealed.clone(), Path::new("m")).unwrap(),
            b"payload"
        );
        // After the rotation the new key alone opens it and the old one no longer does.
        let k3 = stream_key(&d, "S", Some(&master(Cipher::Aes, "new-key")))
            .unwrap()
            .unwrap();
        assert_eq!(
            open_bytes(Some(&k3), sealed, Path::new("m")).unwrap(),
            b"payload"
        );
        assert!(stream_key(&d, "S", Some(&old)).is_err());
        // A wrong prev_key still fails.
        let wrong = MasterKey::new(&JsEncryption {
            cipher: Cipher::Aes,
            key: "other".into(),
            prev_key: Some("nope".into()),
        });
        assert!(stream_key(&d, "S", Some(&wrong)).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn hmac_matches_rfc4231() {
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            data_encoding::HEXLOWER.encode(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_files_open_with_the_right_key_only() {
        let d = std::env::temp_dir().join(format!("natrix-crypt-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(stream_key(&d, "S", None).unwrap().is_none());
        let m = master(Cipher::ChaChaPoly, "s3cret");
        let k = stream_key(&d, "S", Some(&m)).unwrap().unwrap();
        let sealed = k.seal_file(b"{\"config\":1}").unwrap();
        assert!(is_sealed(&sealed) && !sealed.windows(6).any(|w| w == b"config"));
        // Wrong key, another stream's name, no key: refused.
        let wrong = master(Cipher::ChaChaPoly, "other");
        assert!(matches!(
            stream_key(&d, "S", Some(&wrong)),
            Err(CryptError::Open(_))
        ));
        assert!(matches!(
            stream_key(&d, "T", Some(&m)),
            Err(CryptError::Open(_))
        ));
        assert!(matches!(stream_key(&d, "S", None), Err(CryptError::NoKey)));
        // Another cipher with the same key: the seed is the same, the file is resealed.
        let aes = master(Cipher::Aes, "s3cret");
        let k2 = stream_key(&d, "S", Some(&aes)).unwrap().unwrap();
        assert_eq!(k2.cipher(), Cipher::Aes);
        assert_eq!(
            open_bytes(Some(&k2), sealed.clone(), Path::new("m")).unwrap(),
            b"{\"config\":1}"
        );
        assert_eq!(std::fs::read(d.join(KEY_FILE)).unwrap()[4], 2);
        assert!(stream_key(&d, "S", Some(&m)).is_ok());
        // Tampering is detected; plain bytes pass through.
        let mut bad = sealed;
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(open_bytes(Some(&k2), bad, Path::new("m")).is_err());
        assert_eq!(
            open_bytes(Some(&k2), b"{}".to_vec(), Path::new("m")).unwrap(),
            b"{}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
