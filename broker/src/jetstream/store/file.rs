//! File storage: a stream's messages in append-only block files (`msgs/<n>.blk`).
//!
//! Every record is `tag u8 | len u32 | body | crc32(tag, len, body)`, little endian:
//! a message (`seq, ts, subject, headers, data`), a delete tombstone, a purge mark (everything
//! below a sequence is gone) or the stream's sequence state, which opens every block so the
//! last sequence survives even when every message has been removed. Blocks roll over at
//! [`BLOCK_SIZE`]; the oldest blocks are deleted once nothing in them is live, which is safe
//! because tombstones only ever refer to earlier records. Recovery replays the blocks in
//! order and cuts a block at the first record that is short or fails its checksum (a torn
//! write from a crash).
//!
//! With encryption at rest (see `crypt.rs`) a block starts with a header naming its cipher and
//! salt, and every record is sealed on its own: `SEALED u8 | len u32 | nonce[12] |
//! AEAD(tag u8 | body) | aead tag[16] | crc32(all before)`, so `get(seq)` reads and
//! authenticates one record. A secure delete turns a sealed record into an `ERASED` one of the
//! same length (zeros, no key use). Blocks written before encryption was enabled, or under
//! another cipher, keep their format; new writes go to a new block.
//!
//! With `compression: s2` a message whose headers and data shrink is written as an S2 record:
//! the same fixed fields (with the uncompressed lengths) and subject, then headers and data as
//! one S2 block. nats-server compresses whole sealed blocks; compressing each record instead
//! keeps `get(seq)` a read of one record, and a record says itself how it is stored, so a
//! stream can switch compression on or off at any time. Inside an encrypted record the
//! compressed body is what is sealed.

mod index;
mod replay;

use index::{
    decode_index, encode_index, encode_mark, encode_msg, encode_rec, finish_index, u64_at,
};
use replay::replay;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::Bytes;

use super::StoreError;
use crate::jetstream::crypt::{self, BlockCipher, BlockStart, CryptError, StreamKey};
use crate::jetstream::crypt::{BLOCK_HEADER, NONCE, TAG};

/// Size after which a new block is started.
pub const BLOCK_SIZE: u64 = 8 << 20;

const TAG_MSG: u8 = 1;
const TAG_DEL: u8 = 2;
const TAG_PURGE: u8 = 3;
const TAG_STATE: u8 = 4;
/// An encrypted record (of one of the tags above).
const TAG_SEALED: u8 = 5;
/// An encrypted message record overwritten by a secure delete.
const TAG_ERASED: u8 = 6;
/// A message whose headers and data are one S2 block.
const TAG_MSG_S2: u8 = 7;
/// Headers and data shorter than this are not worth compressing.
const COMPRESS_FROM: usize = 64;
/// What a sealed record adds around the tag and body: nonce, inner tag, AEAD tag.
const SEALED_EXTRA: usize = NONCE + 1 + TAG;
/// Tag and length before the body.
const HEAD: usize = 5;
/// Body bytes of a message before its subject.
const MSG_FIXED: usize = 8 + 8 + 2 + 4 + 4;

/// Where a message's bytes are in its block.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    pub block: u64,
    /// Offset of the subject (headers and data follow it); of the record in sealed blocks.
    off: u64,
    /// Whether the record is encrypted.
    sealed: bool,
    subj_len: u16,
    hdr_len: u32,
    data_len: u32,
    /// Length of the S2 block holding headers and data; 0 when they are stored as they are.
    packed: u32,
}

/// What recovery found, in write order.
#[derive(Debug)]
pub enum Recovered {
    State {
        first: u64,
        last: u64,
    },
    Msg {
        seq: u64,
        ts: i64,
        subject: String,
        size: u64,
        loc: Loc,
    },
    Delete(u64),
    Purge(u64),
}

#[derive(Debug, Default, Clone, Copy)]
struct BlockMeta {
    live: u64,
    /// Bytes of the live message records, against the file's length for compaction.
    live_bytes: u64,
    /// The file's length (final once the block is no longer the active one).
    len: u64,
}

/// The open block files of one stream.
#[derive(Debug)]
pub struct FileBacking {
    dir: PathBuf,
    sync_always: bool,
    active: u64,
    writer: BufWriter<File>,
    /// Logical length of the active block, buffered bytes included.
    written: u64,
    /// Bytes of the active block that have reached the file.
    flushed: u64,
    readers: HashMap<u64, File>,
    blocks: BTreeMap<u64, BlockMeta>,
    dirty: bool,
    /// The stream's key when it is encrypted: new blocks are sealed.
    key: Option<Arc<StreamKey>>,
    /// The ciphers of the sealed blocks.
    ciphers: HashMap<u64, Arc<BlockCipher>>,
    /// Nonces of sealed records: a random start per open, counting up.
    nonce_base: [u8; NONCE],
    nonce_ctr: u64,
    /// Reused buffer for sealing records.
    scratch: Vec<u8>,
    /// The index entries of the active block's records, so sealing it needs no re-read.
    active_index: Vec<u8>,
    /// Whether new messages are S2-compressed (`compression: s2`).
    compress: bool,
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn block_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.blk"))
}

fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.idx"))
}

fn crypt_err(path: &Path, source: CryptError) -> StoreError {
    StoreError::Crypt {
        path: path.display().to_string(),
        source,
    }
}

impl Loc {
    /// The whole record's length on disk.
    fn record_len(&self) -> u64 {
        let extra = if self.sealed { SEALED_EXTRA } else { 0 };
        (HEAD + extra + MSG_FIXED + 4) as u64 + self.subj_len as u64 + self.payload_len() as u64
    }

    /// Bytes the headers and data take in the record.
    fn payload_len(&self) -> usize {
        if self.packed > 0 {
            self.packed as usize
        } else {
            self.hdr_len as usize + self.data_len as usize
        }
    }

    /// Offset of the record's first byte.
    fn record_start(&self) -> u64 {
        if self.sealed {
            self.off
        } else {
            self.off - (HEAD + MSG_FIXED) as u64
        }
    }
}

/// A block is rewritten once less than this share of it is live.
const COMPACT_BELOW: f64 = 0.5;

impl FileBacking {
    /// Opens `dir` (creating it), replays its blocks and truncates torn tails; with `key`,
    /// new blocks are encrypted.
    pub fn open(
        dir: &Path,
        sync_always: bool,
        key: Option<Arc<StreamKey>>,
    ) -> Result<(FileBacking, Vec<Recovered>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".blk")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        let mut blocks = BTreeMap::new();
        let mut ciphers = HashMap::new();
        let mut active_index = Vec::new();
        let last = ids.last().copied();
        for &id in &ids {
            let path = block_path(dir, id);
            let mut head = Vec::with_capacity(BLOCK_HEADER);
            File::open(&path)
                .and_then(|f| f.take(BLOCK_HEADER as u64).read_to_end(&mut head))
                .map_err(|e| io_err(&path, e))?;
            let start = crypt::block_start(&head).map_err(|reason| {
                crypt_err(
                    &path,
                    CryptError::Format {
                        path: path.display().to_string(),
                        reason,
                    },
                )
            })?;
            let cipher = match start {
                BlockStart::Sealed(c, salt) => {
                    let k = key
                        .as_ref()
                        .ok_or_else(|| crypt_err(&path, CryptError::NoKey))?;
                    Some(Arc::new(k.block(c, salt)))
                }
                BlockStart::Plain | BlockStart::Torn => None,
            };
            if let Some(c) = &cipher {
                ciphers.insert(id, c.clone());
            }
            // Sealed blocks: their index when it matches the block, without reading the data.
            if Some(id) != last {
                let len = std::fs::metadata(&path)
                    .map_err(|e| io_err(&path, e))?
                    .len();
                let ipath = index_path(dir, id);
                let indexed = std::fs::read(&ipath)
                    .ok()
                    .and_then(|b| crypt::open_bytes(key.as_deref(), b, &ipath).ok())
                    .and_then(|b| decode_index(id, &b, len, cipher.is_some()));
                if let Some(recs) = indexed {
                    out.extend(recs);
                    blocks.insert(
                        id,
                        BlockMeta {
                            len,
                            ..BlockMeta::default()
                        },
                    );
                    continue;
                }
            }
            let buf = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
            let before = out.len();
            let good = match start {
                BlockStart::Torn => 0,
                _ => replay(id, &buf, cipher.as_deref(), &mut out, None)
                    .map_err(|e| crypt_err(&path, e))?,
            };
            if good < buf.len() {
                tracing::warn!(
                    "JetStream store {}: cutting {} bytes of a torn write at offset {good}",
                    path.display(),
                    buf.len() - good
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
                f.set_len(good as u64).map_err(|e| io_err(&path, e))?;
                f.sync_all().map_err(|e| io_err(&path, e))?;
            }
            blocks.insert(
                id,
                BlockMeta {
                    len: good as u64,
                    ..BlockMeta::default()
                },
            );
            if Some(id) == last {
                for r in &out[before..] {
                    encode_rec(&mut active_index, r);
                }
            }
        }
        let active = ids.last().copied().unwrap_or(1);
        blocks.entry(active).or_default();
        let path = block_path(dir, active);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let len = f.metadata().map_err(|e| io_err(&path, e))?.len();
        let nonce_base = match key {
            Some(_) => crypt::random().map_err(|e| io_err(Path::new("/dev/urandom"), e))?,
            None => [0; NONCE],
        };
        let mut fb = FileBacking {
            dir: dir.to_path_buf(),
            sync_always,
            active,
            writer: BufWriter::with_capacity(256 << 10, f),
            written: len,
            flushed: len,
            readers: HashMap::new(),
            blocks,
            dirty: false,
            key,
            ciphers,
            nonce_base,
            nonce_ctr: 0,
            scratch: Vec::new(),
            active_index,
            compress: false,
        };
        if len == 0 {
            // A new (or emptied) active block: encrypted from its first byte if it is to be.
            fb.ciphers.remove(&active);
            fb.start_block()?;
        }
        Ok((fb, out))
    }

    /// Whether new messages are S2-compressed; records already written stay as they are.
    pub fn set_compress(&mut self, on: bool) {
        self.compress = on;
    }

    /// Writes the header of the new, empty active block when the stream is encrypted.
    fn start_block(&mut self) -> Result<(), StoreError> {
        let Some(k) = &self.key else {
            return Ok(());
        };
        let path = block_path(&self.dir, self.active);
        let c = k.new_block().map_err(|e| io_err(&path, e))?;
        self.writer
            .write_all(&c.header())
            .map_err(|e| io_err(&path, e))?;
        self.written += BLOCK_HEADER as u64;
        self.dirty = true;
        self.ciphers.insert(self.active, Arc::new(c));
        Ok(())
    }

    /// After recovery: when the active block is not written the way new data is to be (plain
    /// while encryption is on, or another cipher), new writes go to a new block.
    pub fn seal_new_writes(&mut self, first: u64, last: u64) -> Result<(), StoreError> {
        let Some(k) = &self.key else {
            return Ok(());
        };
        let current = self.ciphers.get(&self.active).map(|c| c.cipher);
        if current != Some(k.cipher()) {
            self.roll(first, last)?;
        }
        Ok(())
    }

    /// Writes the index of a sealed block (read back from its file), itself sealed when the
    /// stream is encrypted.
    fn write_index(&self, id: u64) -> Result<(), StoreError> {
        let path = block_path(&self.dir, id);
        let buf = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let mut recs = Vec::new();
        let good = replay(
            id,
            &buf,
            self.ciphers.get(&id).map(|c| &**c),
            &mut recs,
            None,
        )
        .map_err(|e| crypt_err(&path, e))?;
        self.store_index(id, encode_index(good as u64, &recs))
    }

    /// Writes index file contents, sealed when the stream is encrypted.
    fn store_index(&self, id: u64, idx: Vec<u8>) -> Result<(), StoreError> {
        let ipath = index_path(&self.dir, id);
        let tmp = ipath.with_extension("itmp");
        let idx = match &self.key {
            Some(k) => k.seal_file(&idx).map_err(|e| io_err(&tmp, e))?,
            None => idx,
        };
        std::fs::write(&tmp, &idx).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &ipath).map_err(|e| io_err(&ipath, e))
    }

    /// Sets the live message counts of each block after recovery.
    pub fn set_live<'a>(&mut self, live: impl Iterator<Item = &'a Loc>) {
        for l in live {
            let b = self.blocks.entry(l.block).or_default();
            b.live += 1;
            b.live_bytes += l.record_len();
        }
    }

    fn write_record(&mut self, tag: u8, parts: &[&[u8]]) -> Result<u64, StoreError> {
        if let Some(c) = self.ciphers.get(&self.active).cloned() {
            return self.write_sealed(&c, tag, parts);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut h = crc32fast::Hasher::new();
        let head = {
            let mut head = [0u8; HEAD];
            head[0] = tag;
            head[1..].copy_from_slice(&(len as u32).to_le_bytes());
            head
        };
        h.update(&head);
        for p in parts {
            h.update(p);
        }
        let crc = h.finalize().to_le_bytes();
        let start = self.written;
        let path = block_path(&self.dir, self.active);
        let w = &mut self.writer;
        w.write_all(&head).map_err(|e| io_err(&path, e))?;
        for p in parts {
            w.write_all(p).map_err(|e| io_err(&path, e))?;
        }
        w.write_all(&crc).map_err(|e| io_err(&path, e))?;
        self.written += (HEAD + len + 4) as u64;
        self.dirty = true;
        Ok(start)
    }

    /// Writes a record sealed with the active block's cipher.
    fn write_sealed(
        &mut self,
        c: &BlockCipher,
        tag: u8,
        parts: &[&[u8]],
    ) -> Result<u64, StoreError> {
        let len: usize = SEALED_EXTRA + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut nonce = [0u8; NONCE];
        nonce[..8].copy_from_slice(
            &u64_at(&self.nonce_base, 0)
                .wrapping_add(self.nonce_ctr)
                .to_le_bytes(),
        );
        nonce[8..].copy_from_slice(&self.nonce_base[8..]);
        self.nonce_ctr += 1;
        let mut rec = std::mem::take(&mut self.scratch);
        rec.clear();
        rec.push(TAG_SEALED);
        rec.extend_from_slice(&(len as u32).to_le_bytes());
        rec.extend_from_slice(&nonce);
        rec.push(tag);
        for p in parts {
            rec.extend_from_slice(p);
        }
        let t = c.aead.seal(&nonce, &mut rec[HEAD + NONCE..]);
        rec.extend_from_slice(&t);
        let crc = crc32fast::hash(&rec).to_le_bytes();
        rec.extend_from_slice(&crc);
        let start = self.written;
        let path = block_path(&self.dir, self.active);
        let r = self.writer.write_all(&rec).map_err(|e| io_err(&path, e));
        self.written += rec.len() as u64;
        self.scratch = rec;
        self.dirty = true;
        r.map(|_| start)
    }

    fn maybe_roll(&mut self, first: u64, last: u64) -> Result<(), StoreError> {
        if self.written < BLOCK_SIZE {
            return Ok(());
        }
        self.roll(first, last)
    }

    /// Seals the active block (with its index) and starts the next one.
    fn roll(&mut self, first: u64, last: u64) -> Result<(), StoreError> {
        self.flush()?;
        if let Some(b) = self.blocks.get_mut(&self.active) {
            b.len = self.written;
        }
        // The sealed block reaches the disk before its index says what is in it.
        let sealed = block_path(&self.dir, self.active);
        self.writer
            .get_ref()
            .sync_data()
            .map_err(|e| io_err(&sealed, e))?;
        let idx = finish_index(self.written, &std::mem::take(&mut self.active_index));
        self.store_index(self.active, idx)?;
        self.active += 1;
        let path = block_path(&self.dir, self.active);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        self.writer = BufWriter::with_capacity(256 << 10, f);
        self.written = 0;
        self.flushed = 0;
        self.blocks.insert(self.active, BlockMeta::default());
        self.start_block()?;
        self.write_state(first, last)
    }

    /// Appends a message record.
    pub fn append(
        &mut self,
        seq: u64,
        ts: i64,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) -> Result<Loc, StoreError> {
        // The state written at the start of a new block: nothing below `seq` matters.
        self.maybe_roll(seq, seq - 1)?;
        let mut fixed = [0u8; MSG_FIXED];
        fixed[0..8].copy_from_slice(&seq.to_le_bytes());
        fixed[8..16].copy_from_slice(&ts.to_le_bytes());
        fixed[16..18].copy_from_slice(&(subject.len() as u16).to_le_bytes());
        fixed[18..22].copy_from_slice(&(hdr.len() as u32).to_le_bytes());
        fixed[22..26].copy_from_slice(&(data.len() as u32).to_le_bytes());
        let packed = self.pack(hdr, data);
        let start = match &packed {
            Some(p) => self.write_record(TAG_MSG_S2, &[&fixed, subject.as_bytes(), p])?,
            None => self.write_record(TAG_MSG, &[&fixed, subject.as_bytes(), hdr, data])?,
        };
        let sealed = self.ciphers.contains_key(&self.active);
        let loc = Loc {
            block: self.active,
            off: if sealed {
                start
            } else {
                start + (HEAD + MSG_FIXED) as u64
            },
            sealed,
            subj_len: subject.len() as u16,
            hdr_len: hdr.len() as u32,
            data_len: data.len() as u32,
            packed: packed.map_or(0, |p| p.len() as u32),
        };
        let b = self.blocks.entry(self.active).or_default();
        b.live += 1;
        b.live_bytes += loc.record_len();
        encode_msg(&mut self.active_index, seq, ts, subject, &loc);
        Ok(loc)
    }

    /// Headers and data as one S2 block, when compression is on and it makes them smaller.
    fn pack(&self, hdr: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        let len = hdr.len() + data.len();
        if !self.compress || len < COMPRESS_FROM {
            return None;
        }
        let packed = if hdr.is_empty() {
            minlz::encode(data)
        } else {
            minlz::encode(&[hdr, data].concat())
        };
        (packed.len() < len).then_some(packed)
    }

    /// Records that message `seq` (at `loc`) is deleted.
    pub fn write_delete(&mut self, seq: u64, loc: &Loc) -> Result<(), StoreError> {
        self.dec_live(loc);
        self.write_record(TAG_DEL, &[&seq.to_le_bytes()])?;
        encode_mark(&mut self.active_index, TAG_DEL, seq);
        Ok(())
    }

    /// One message went away without its own tombstone (covered by a purge mark).
    pub fn dec_live(&mut self, loc: &Loc) {
        if let Some(b) = self.blocks.get_mut(&loc.block) {
            b.live = b.live.saturating_sub(1);
            b.live_bytes = b.live_bytes.saturating_sub(loc.record_len());
        }
    }

    /// Overwrites a message's headers and payload with zeros in place (a secure delete),
    /// keeping the record's checksum valid so recovery still reads past it.
    pub fn erase(&mut self, loc: &Loc) -> Result<(), StoreError> {
        let start = loc.record_start();
        let len = loc.record_len();
        if loc.block == self.active && start + len > self.flushed {
            self.flush()?;
        }
        let path = block_path(&self.dir, loc.block);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut rec = vec![0u8; len as usize];
        f.read_exact_at(&mut rec, start)
            .map_err(|e| io_err(&path, e))?;
        if loc.sealed {
            // Zeros in place of the ciphertext: sealing them would reuse the record's nonce.
            let body_end = rec.len() - 4;
            rec[0] = TAG_ERASED;
            rec[HEAD..body_end].fill(0);
            let crc = crc32fast::hash(&rec[..body_end]).to_le_bytes();
            rec[body_end..].copy_from_slice(&crc);
            f.write_all_at(&rec, start).map_err(|e| io_err(&path, e))?;
            self.readers.remove(&loc.block);
            return Ok(());
        }
        let body_start = HEAD + MSG_FIXED + loc.subj_len as usize;
        let body_end = rec.len() - 4;
        rec[body_start..body_end].fill(0);
        let crc = crc32fast::hash(&rec[..body_end]).to_le_bytes();
        rec[body_end..].copy_from_slice(&crc);
        f.write_all_at(&rec[body_start..], start + body_start as u64)
            .map_err(|e| io_err(&path, e))?;
        Ok(())
    }

    /// Whether `block` is worth rewriting: not the active one, and less than half live.
    pub fn is_sparse(&self, block: u64) -> bool {
        block != self.active
            && self.blocks.get(&block).is_some_and(|b| {
                b.live > 0 && b.len > 0 && (b.live_bytes as f64) < COMPACT_BELOW * b.len as f64
            })
    }

    /// Every block worth rewriting.
    pub fn sparse_blocks(&self) -> Vec<u64> {
        self.blocks
            .keys()
            .copied()
            .filter(|b| self.is_sparse(*b))
            .collect()
    }

    /// Rewrites `block` keeping its live messages (`live(seq)`) and every other record (the
    /// tombstones and marks may concern older blocks); returns the moved messages' new places.
    pub fn compact(
        &mut self,
        block: u64,
        live: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, Loc)>, StoreError> {
        let path = block_path(&self.dir, block);
        let buf = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let mut recs = Vec::new();
        let mut spans = Vec::new();
        let cipher = self.ciphers.get(&block).cloned();
        let good = replay(block, &buf, cipher.as_deref(), &mut recs, Some(&mut spans))
            .map_err(|e| crypt_err(&path, e))?;
        let mut out = Vec::with_capacity(good);
        if cipher.is_some() {
            // The same header, so the same key: the sealed records are copied as they are.
            out.extend_from_slice(&buf[..BLOCK_HEADER]);
        }
        let mut moved = Vec::new();
        for (r, &(i, end)) in recs.iter().zip(&spans) {
            let keep = match r {
                Recovered::Msg { seq, loc, .. } => {
                    if live(*seq) {
                        let new_off = if loc.sealed {
                            out.len() as u64
                        } else {
                            (out.len() + HEAD + MSG_FIXED) as u64
                        };
                        moved.push((
                            *seq,
                            Loc {
                                off: new_off,
                                ..*loc
                            },
                        ));
                        true
                    } else {
                        false
                    }
                }
                _ => true,
            };
            if keep {
                out.extend_from_slice(&buf[i..end]);
            }
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(&out).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        self.write_index(block)?;
        self.readers.remove(&block);
        if let Some(b) = self.blocks.get_mut(&block) {
            b.len = out.len() as u64;
        }
        Ok(moved)
    }

    /// Records that every message below `first` is gone.
    pub fn write_purge(&mut self, first: u64) -> Result<(), StoreError> {
        self.write_record(TAG_PURGE, &[&first.to_le_bytes()])?;
        encode_mark(&mut self.active_index, TAG_PURGE, first);
        Ok(())
    }

    /// Records the stream's sequence state.
    pub fn write_state(&mut self, first: u64, last: u64) -> Result<(), StoreError> {
        self.write_record(TAG_STATE, &[&first.to_le_bytes(), &last.to_le_bytes()])?;
        encode_rec(&mut self.active_index, &Recovered::State { first, last });
        Ok(())
    }

    /// Deletes the oldest blocks with nothing live in them (never the active one).
    pub fn trim_front(&mut self) -> Result<(), StoreError> {
        while let Some((&id, meta)) = self.blocks.iter().next() {
            if id == self.active || meta.live > 0 {
                break;
            }
            self.blocks.remove(&id);
            self.readers.remove(&id);
            self.ciphers.remove(&id);
            let _ = std::fs::remove_file(index_path(&self.dir, id));
            let path = block_path(&self.dir, id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io_err(&path, e));
                }
            }
        }
        Ok(())
    }

    /// Reads a message's headers and data.
    pub fn read(&mut self, loc: &Loc) -> Result<(Bytes, Bytes), StoreError> {
        if loc.sealed {
            return self.read_sealed(loc);
        }
        let start = loc.off + loc.subj_len as u64;
        let buf = self.read_at(loc.block, start, loc.payload_len())?;
        let all = self.unpack(loc, &buf)?.unwrap_or_else(|| Bytes::from(buf));
        Ok(split_payload(all, loc))
    }

    /// A compressed record's headers and data, decompressed; `None` for a plain record.
    fn unpack(&self, loc: &Loc, payload: &[u8]) -> Result<Option<Bytes>, StoreError> {
        if loc.packed == 0 {
            return Ok(None);
        }
        match minlz::decode(payload) {
            Ok(v) if v.len() == loc.hdr_len as usize + loc.data_len as usize => {
                Ok(Some(Bytes::from(v)))
            }
            _ => Err(io_err(
                &block_path(&self.dir, loc.block),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the compressed record at offset {} is corrupt", loc.off),
                ),
            )),
        }
    }

    /// Reads and opens a sealed message record.
    fn read_sealed(&mut self, loc: &Loc) -> Result<(Bytes, Bytes), StoreError> {
        let start = loc.off;
        let len = loc.record_len() as usize;
        let cipher = self
            .ciphers
            .get(&loc.block)
            .cloned()
            .ok_or_else(|| crypt_err(&block_path(&self.dir, loc.block), CryptError::NoKey))?;
        let mut buf = self.read_at(loc.block, start, len)?;
        let nonce: [u8; NONCE] = buf[HEAD..HEAD + NONCE].try_into().expect("nonce");
        let ct_end = len - 4 - TAG;
        let (body, tag) = buf.split_at_mut(ct_end);
        if body[0] != TAG_SEALED
            || !cipher
                .aead
                .open(&nonce, &mut body[HEAD + NONCE..], &tag[..TAG])
        {
            return Err(crypt_err(
                &block_path(&self.dir, loc.block),
                CryptError::Open(format!("the record at offset {start}")),
            ));
        }
        let hdr_at = HEAD + NONCE + 1 + MSG_FIXED + loc.subj_len as usize;
        let payload = hdr_at..hdr_at + loc.payload_len();
        let all = match self.unpack(loc, &buf[payload.clone()])? {
            Some(all) => all,
            None => Bytes::from(buf).slice(payload),
        };
        Ok(split_payload(all, loc))
    }

    /// `len` bytes of `block` from `start`, handing the active block's buffer to the file
    /// first when they are not there yet. A block's reader is opened once and kept, and its
    /// path is only built to open it or to name it in an error: reads are the fetch path.
    fn read_at(&mut self, block: u64, start: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        if block == self.active && start + len as u64 > self.flushed {
            self.flush()?;
        }
        let f = match self.readers.entry(block) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let path = block_path(&self.dir, block);
                v.insert(File::open(&path).map_err(|e| io_err(&path, e))?)
            }
        };
        let mut buf = vec![0u8; len];
        if let Err(e) = f.read_exact_at(&mut buf, start) {
            return Err(io_err(&block_path(&self.dir, block), e));
        }
        Ok(buf)
    }

    /// Hands buffered records to the file.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let path = block_path(&self.dir, self.active);
        self.writer.flush().map_err(|e| io_err(&path, e))?;
        self.flushed = self.written;
        self.dirty = false;
        if self.sync_always {
            self.writer
                .get_ref()
                .sync_data()
                .map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the active block.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let path = block_path(&self.dir, self.active);
        self.writer
            .get_ref()
            .sync_data()
            .map_err(|e| io_err(&path, e))
    }
}

/// A record's headers and data, from the bytes holding both.
fn split_payload(mut all: Bytes, loc: &Loc) -> (Bytes, Bytes) {
    let data = all.split_off(loc.hdr_len as usize);
    (all, data)
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::index::u32_at;
    use super::*;
    use crate::jetstream::crypt::{Cipher, MasterKey};
    use crate::options::JsEncryption;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("natrix-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn recovers_messages_deletes_and_purges() {
        let d = tmp("recover");
        {
            let mut s = Store::open_file(&d, false).unwrap();
            for i in 0..10 {
                s.store(&format!("a.{}", i % 3), b"", format!("m{i}").as_bytes(), i)
                    .unwrap();
            }
            assert!(s.remove(5).unwrap());
            s.purge_below(3).unwrap();
            s.flush().unwrap();
        }
        let mut s = Store::open_file(&d, false).unwrap();
        let st = s.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq, st.num_deleted),
            (7, 3, 10, 1)
        );
        assert_eq!(&s.get(4).unwrap().data[..], b"m3");
        assert!(s.get(5).is_none());
        assert_eq!(s.last_for("a.0"), Some(10));
        // Everything purged: the sequence carries on.
        s.purge_below(11).unwrap();
        s.flush().unwrap();
        drop(s);
        let mut s = Store::open_file(&d, false).unwrap();
        assert_eq!((s.state().msgs, s.state().last_seq), (0, 10));
        assert_eq!(s.store("x", b"", b"y", 1).unwrap(), 11);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The bytes of every block file under `dir`.
    fn disk_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "blk"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn compressed_records_read_back_after_restart_compaction_and_with_encryption() {
        let hdr = b"NATS/1.0\r\nKV-Operation: PUT\r\n\r\n";
        let data: Vec<u8> = (0..4000u32).flat_map(|i| (i % 17).to_le_bytes()).collect();
        for (name, cipher) in [("s2", None), ("s2-enc", Some(Cipher::ChaChaPoly))] {
            let d = tmp(name);
            let m = d.join("msgs");
            let open = || {
                let k = cipher.and_then(|c| key(&d, c));
                let mut s = Store::open_file_keyed(&m, false, k).unwrap();
                s.set_compress(true);
                s
            };
            {
                let mut s = open();
                // Compressible with and without headers, a tiny one, an incompressible one.
                s.store("c.h", hdr, &data, 1).unwrap();
                s.store("c.p", b"", &data, 2).unwrap();
                s.store("c.tiny", b"", b"x", 3).unwrap();
                let noise: Vec<u8> = (0..512).map(|_| fastrand::u8(..)).collect();
                s.store("c.noise", b"", &noise, 4).unwrap();
                // Enough to seal a block, so the next open reads its index.
                for i in 0..700 {
                    s.store(&format!("bulk.{}", i % 3), b"", &data, i).unwrap();
                }
                s.flush().unwrap();
                assert_eq!(&s.get(4).unwrap().data[..], &noise[..]);
            }
            assert!(
                disk_bytes(&m) < 704 * data.len() as u64 / 4,
                "{name}: {} bytes on disk",
                disk_bytes(&m)
            );
            let mut s = open();
            let st = s.state();
            assert_eq!((st.msgs, st.last_seq), (704, 704));
            // Bytes are accounted uncompressed, as nats-server reports them.
            assert!(st.bytes > 702 * data.len() as u64);
            let m1 = s.get(1).unwrap();
            assert_eq!((&m1.hdr[..], &m1.data[..]), (&hdr[..], &data[..]));
            assert_eq!(&s.get(2).unwrap().data[..], &data[..]);
            assert!(s.get(2).unwrap().hdr.is_empty());
            assert_eq!(&s.get(3).unwrap().data[..], b"x");
            assert_eq!(s.get(700).unwrap().data.len(), data.len());
            // Compaction moves compressed records; a secure delete erases one.
            for seq in 5..650 {
                assert!(s.remove_with(seq, seq == 5).unwrap());
            }
            assert!(s.file.as_ref().unwrap().sparse_blocks().is_empty());
            s.flush().unwrap();
            drop(s);
            let mut s = open();
            assert_eq!(s.state().msgs, 59);
            assert_eq!(&s.get(1).unwrap().hdr[..], &hdr[..]);
            assert_eq!(&s.get(650).unwrap().data[..], &data[..]);
            // Switched off: new records are plain, old ones still read.
            s.set_compress(false);
            let seq = s.store("c.h", hdr, &data, 9).unwrap();
            s.flush().unwrap();
            drop(s);
            let mut s = open();
            assert_eq!(&s.get(seq).unwrap().data[..], &data[..]);
            assert_eq!(&s.get(2).unwrap().data[..], &data[..]);
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn torn_tail_is_cut() {
        let d = tmp("torn");
        {
            let mut s = Store::open_file(&d, false).unwrap();
            s.store("a", b"", b"one", 1).unwrap();
            s.store("a", b"NATS/1.0\r\n\r\n", b"two", 2).unwrap();
            s.flush().unwrap();
        }
        let blk = d.join("1.blk");
        let len = std::fs::metadata(&blk).unwrap().len();
        // A crash in the middle of the second record.
        let f = std::fs::OpenOptions::new().write(true).open(&blk).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let mut s = Store::open_file(&d, false).unwrap();
        assert_eq!(s.state().msgs, 1);
        assert_eq!(s.store("a", b"", b"three", 3).unwrap(), 2);
        s.flush().unwrap();
        drop(s);
        let mut s = Store::open_file(&d, false).unwrap();
        assert_eq!(&s.get(2).unwrap().data[..], b"three");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sparse_blocks_are_compacted_and_erased_data_is_gone() {
        let d = tmp("compact");
        let mut s = Store::open_file(&d, false).unwrap();
        let big = vec![b'q'; 1 << 20];
        for i in 0..20 {
            s.store(&format!("k.{}", i % 2), b"", &big, i).unwrap();
        }
        s.store("secret", b"", b"MARKER-PAYLOAD", 99).unwrap();
        s.flush().unwrap();
        let size = |d: &std::path::Path| -> u64 {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let before = size(&d);
        // Three in four messages of the old blocks go: they are rewritten smaller.
        for seq in (1..=16).filter(|s| s % 4 != 0) {
            assert!(s.remove(seq).unwrap());
        }
        assert!(s.remove_with(21, true).unwrap());
        s.flush().unwrap();
        assert!(size(&d) < before * 3 / 4, "{} -> {}", before, size(&d));
        for e in std::fs::read_dir(&d).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(!bytes.windows(14).any(|w| w == b"MARKER-PAYLOAD"));
        }
        // Moved messages are still readable, before and after a restart.
        assert_eq!(s.get(8).unwrap().data.len(), big.len());
        drop(s);
        let mut s = Store::open_file(&d, false).unwrap();
        assert_eq!(s.state().msgs, 8);
        assert_eq!(s.get(4).unwrap().data[..], big[..]);
        assert_eq!(s.get(12).unwrap().data[..], big[..]);
        assert!(s.get(3).is_none() && s.get(21).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sealed_blocks_recover_from_their_index() {
        let d = tmp("index");
        let big = vec![3u8; 1 << 20];
        {
            let mut s = Store::open_file(&d, false).unwrap();
            for i in 0..20 {
                s.store(
                    &format!("i.{}", i % 4),
                    b"NATS/1.0\r\nA: b\r\n\r\n",
                    &big,
                    i,
                )
                .unwrap();
            }
            s.remove(5).unwrap();
            s.flush().unwrap();
        }
        assert!(d.join("1.idx").exists() && d.join("2.idx").exists());
        // Make the data of block 1 unreadable by scanning: recovery must come from the index.
        let blk = d.join("1.blk");
        let mut bytes = std::fs::read(&blk).unwrap();
        bytes[5] ^= 0xff; // the first record's length
        std::fs::write(&blk, &bytes).unwrap();
        let mut s = Store::open_file(&d, false).unwrap();
        assert_eq!((s.state().msgs, s.state().last_seq), (19, 20));
        assert_eq!(s.last_for("i.1"), Some(18));
        assert_eq!(s.get(20).unwrap().data.len(), big.len());
        assert_eq!(&s.get(2).unwrap().hdr[..], b"NATS/1.0\r\nA: b\r\n\r\n");
        // An index that does not match its block (length differs) is ignored.
        drop(s);
        std::fs::write(&blk, &bytes[..bytes.len() - 10]).unwrap();
        let s = Store::open_file(&d, false).unwrap();
        assert!(s.state().msgs < 19);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn key(dir: &std::path::Path, cipher: Cipher) -> Option<Arc<StreamKey>> {
        let m = MasterKey::new(&JsEncryption {
            cipher,
            key: "unit-test-key".into(),
            prev_key: None,
        });
        crate::jetstream::crypt::stream_key(dir, "S", Some(&m)).unwrap()
    }

    /// Whether `needle` is in any file under `dir`.
    fn found(dir: &std::path::Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    }

    #[test]
    fn encrypted_blocks_hide_contents_and_read_back() {
        for cipher in [Cipher::ChaChaPoly, Cipher::Aes] {
            let d = tmp(&format!("enc-{cipher:?}"));
            let m = d.join("msgs");
            let big = vec![b'z'; 1 << 20];
            {
                let mut s = Store::open_file_keyed(&m, false, key(&d, cipher)).unwrap();
                s.store(
                    "secret.subject",
                    b"NATS/1.0\r\nX: HDRMARK\r\n\r\n",
                    b"MARKER-ONE",
                    1,
                )
                .unwrap();
                for i in 0..12 {
                    s.store(&format!("bulk.{}", i % 2), b"", &big, i).unwrap();
                }
                s.store("secret.subject", b"", b"MARKER-TWO", 2).unwrap();
                s.flush().unwrap();
                // The cache is bypassed: a fresh store reads from disk.
            }
            assert!(m.join("1.idx").exists());
            for needle in [&b"MARKER"[..], b"HDRMARK", b"secret.subject", b"zzzzzzzz"] {
                assert!(
                    !found(&m, needle),
                    "{cipher:?}: {}",
                    String::from_utf8_lossy(needle)
                );
            }
            let mut s = Store::open_file_keyed(&m, false, key(&d, cipher)).unwrap();
            assert_eq!((s.state().msgs, s.state().last_seq), (14, 14));
            assert_eq!(&s.get(1).unwrap().data[..], b"MARKER-ONE");
            assert_eq!(
                &s.get(1).unwrap().hdr[..],
                b"NATS/1.0\r\nX: HDRMARK\r\n\r\n"
            );
            assert_eq!(&s.get(14).unwrap().data[..], b"MARKER-TWO");
            assert_eq!(s.get(7).unwrap().data[..], big[..]);
            assert_eq!(s.last_for("secret.subject"), Some(14));
            // Secure delete and compaction of sealed blocks.
            assert!(s.remove_with(14, true).unwrap());
            for seq in 2..=10 {
                assert!(s.remove(seq).unwrap());
            }
            s.flush().unwrap();
            assert_eq!(s.get(12).unwrap().data[..], big[..]);
            drop(s);
            let mut s = Store::open_file_keyed(&m, false, key(&d, cipher)).unwrap();
            assert_eq!(s.state().msgs, 4);
            assert_eq!(&s.get(1).unwrap().data[..], b"MARKER-ONE");
            assert_eq!(s.get(11).unwrap().data[..], big[..]);
            assert!(s.get(14).is_none());
            assert_eq!(s.store("x", b"", b"y", 3).unwrap(), 15);
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn plain_data_stays_readable_when_encryption_is_enabled_and_cipher_changes() {
        let d = tmp("enc-enable");
        let m = d.join("msgs");
        {
            let mut s = Store::open_file(&m, false).unwrap();
            s.store("p", b"", b"PLAIN-OLD", 1).unwrap();
            s.flush().unwrap();
        }
        {
            let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::ChaChaPoly)).unwrap();
            assert_eq!(&s.get(1).unwrap().data[..], b"PLAIN-OLD");
            s.store("p", b"", b"SEALED-CHACHA", 2).unwrap();
            s.flush().unwrap();
        }
        assert!(found(&m, b"PLAIN-OLD") && !found(&m, b"SEALED-CHACHA"));
        assert_eq!(std::fs::read(m.join("2.blk")).unwrap()[4], 1);
        {
            let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::Aes)).unwrap();
            assert_eq!(&s.get(2).unwrap().data[..], b"SEALED-CHACHA");
            s.store("p", b"", b"SEALED-AES", 3).unwrap();
            s.flush().unwrap();
        }
        assert_eq!(std::fs::read(m.join("3.blk")).unwrap()[4], 2);
        let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::Aes)).unwrap();
        let got: Vec<_> = (1..=3).map(|q| s.get(q).unwrap().data).collect();
        assert_eq!(got, [&b"PLAIN-OLD"[..], b"SEALED-CHACHA", b"SEALED-AES"]);
        // Without the key the sealed blocks do not open.
        drop(s);
        assert!(matches!(
            Store::open_file(&m, false),
            Err(crate::jetstream::store::StoreError::Crypt { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sealed_torn_tail_is_cut_and_tampering_is_refused() {
        let d = tmp("enc-torn");
        let m = d.join("msgs");
        {
            let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::ChaChaPoly)).unwrap();
            s.store("a", b"", b"one", 1).unwrap();
            s.store("a", b"", b"two", 2).unwrap();
            s.flush().unwrap();
        }
        let blk = m.join("1.blk");
        let len = std::fs::metadata(&blk).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&blk).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        {
            let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::ChaChaPoly)).unwrap();
            assert_eq!(s.state().msgs, 1);
            assert_eq!(s.store("a", b"", b"three", 3).unwrap(), 2);
            s.flush().unwrap();
        }
        let mut s = Store::open_file_keyed(&m, false, key(&d, Cipher::ChaChaPoly)).unwrap();
        assert_eq!(&s.get(2).unwrap().data[..], b"three");
        drop(s);
        // A flipped ciphertext bit with a matching checksum is an error, not a torn write.
        let mut bytes = std::fs::read(&blk).unwrap();
        let at = crate::jetstream::crypt::BLOCK_HEADER + HEAD + NONCE + 2;
        bytes[at] ^= 1;
        let rec_end = crate::jetstream::crypt::BLOCK_HEADER
            + HEAD
            + u32_at(&bytes, crate::jetstream::crypt::BLOCK_HEADER + 1) as usize;
        let crc = crc32fast::hash(&bytes[crate::jetstream::crypt::BLOCK_HEADER..rec_end]);
        bytes[rec_end..rec_end + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&blk, &bytes).unwrap();
        assert!(Store::open_file_keyed(&m, false, key(&d, Cipher::ChaChaPoly)).is_err());
        assert_eq!(std::fs::read(&blk).unwrap().len(), bytes.len());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn old_blocks_are_removed() {
        let d = tmp("blocks");
        let mut s = Store::open_file(&d, false).unwrap();
        let big = vec![7u8; 1 << 20];
        for i in 0..20 {
            s.store("big", b"", &big, i).unwrap();
        }
        s.flush().unwrap();
        let count = || std::fs::read_dir(&d).unwrap().count();
        assert!(count() >= 3);
        s.purge_below(21).unwrap();
        assert_eq!(count(), 1);
        drop(s);
        let s = Store::open_file(&d, false).unwrap();
        assert_eq!((s.state().msgs, s.state().last_seq), (0, 20));
        let _ = std::fs::remove_dir_all(&d);
    }
}
