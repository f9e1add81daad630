//! The S2 stream format (klauspost/compress/s2) that nats-server compresses backups with: the
//! Snappy framing format (stream identifier, compressed and uncompressed chunks with masked
//! CRC-32C) with S2's block extensions (repeat-offset copies, blocks up to 4 MiB).
//!
//! [`Encoder`] writes S2 streams whose blocks use only the Snappy subset (literals, 1- and
//! 2-byte-offset copies), which every S2 reader accepts; [`Decoder`] reads S2 and Snappy
//! streams, including S2's repeat copies and 4-byte offsets.

use std::io::{self, Read};

/// The stream identifier chunk of an S2 stream.
const MAGIC_S2: &[u8; 10] = b"\xff\x06\x00\x00S2sTwO";
/// The stream identifier body of a Snappy stream (accepted when reading).
const MAGIC_SNAPPY: &[u8; 6] = b"sNaPpY";
/// Uncompressed bytes per block the encoder writes.
const BLOCK: usize = 64 << 10;
/// The largest decoded block S2 allows.
const MAX_BLOCK: usize = 4 << 20;
const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_PADDING: u8 = 0xfe;
const CHUNK_STREAM_ID: u8 = 0xff;

/// CRC-32C (Castagnoli) lookup table.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The masked checksum the framing format stores for a chunk's uncompressed data.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn emit_literal(out: &mut Vec<u8>, lit: &[u8]) {
    if lit.is_empty() {
        return;
    }
    let n = lit.len() - 1;
    if n < 60 {
        out.push((n as u8) << 2);
    } else {
        let bytes = (64 - (n as u64).leading_zeros()).div_ceil(8) as usize;
        out.push(((59 + bytes) as u8) << 2);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..bytes]);
    }
    out.extend_from_slice(lit);
}

fn emit_copy(out: &mut Vec<u8>, offset: usize, mut len: usize) {
    // Two-byte-offset copies carry 1..=64 bytes; keep at least 4 for the tail.
    while len >= 68 {
        out.extend_from_slice(&[(63 << 2) | 2, offset as u8, (offset >> 8) as u8]);
        len -= 64;
    }
    if len > 64 {
        out.extend_from_slice(&[(59 << 2) | 2, offset as u8, (offset >> 8) as u8]);
        len -= 60;
    }
    if len >= 12 || offset >= 2048 {
        out.extend_from_slice(&[
            (((len - 1) as u8) << 2) | 2,
            offset as u8,
            (offset >> 8) as u8,
        ]);
    } else {
        out.push((((offset >> 8) as u8) << 5) | (((len - 4) as u8) << 2) | 1);
        out.push(offset as u8);
    }
}

/// Compresses one block (at most 64 KiB, so every offset fits two bytes).
pub fn compress_block(src: &[u8], out: &mut Vec<u8>) {
    debug_assert!(src.len() <= BLOCK);
    put_uvarint(out, src.len() as u64);
    if src.len() < 16 {
        emit_literal(out, src);
        return;
    }
    const BITS: u32 = 14;
    let mut table = vec![u32::MAX; 1 << BITS];
    let load = |i: usize| u32::from_le_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
    let hash = |v: u32| (v.wrapping_mul(0x1e35_a7bd) >> (32 - BITS)) as usize;
    let end = src.len() - 4;
    let mut lit = 0;
    let mut i = 0;
    while i <= end {
        let v = load(i);
        let h = hash(v);
        let cand = table[h] as usize;
        table[h] = i as u32;
        if cand != u32::MAX as usize && i - cand < 65536 && load(cand) == v {
            emit_literal(out, &src[lit..i]);
            let mut len = 4;
            while i + len < src.len() && src[cand + len] == src[i + len] {
                len += 1;
            }
            emit_copy(out, i - cand, len);
            i += len;
            lit = i;
            if i - 1 <= end {
                table[hash(load(i - 1))] = (i - 1) as u32;
            }
        } else {
            i += 1;
        }
    }
    emit_literal(out, &src[lit..]);
}

/// Errors reading an S2 stream: nats-server's message (what was wrong shows in debug logs).
fn corrupt(what: &str) -> io::Error {
    tracing::debug!("s2: corrupt input: {what}");
    io::Error::new(io::ErrorKind::InvalidData, "s2: corrupt input")
}

fn uvarint(src: &[u8], pos: &mut usize) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *src.get(*pos).ok_or_else(|| corrupt("truncated length"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(corrupt("length overflows"))
}

fn le(src: &[u8], at: usize, n: usize) -> io::Result<usize> {
    let b = src
        .get(at..at + n)
        .ok_or_else(|| corrupt("truncated tag"))?;
    Ok(b.iter().rev().fold(0usize, |v, &x| (v << 8) | x as usize))
}

/// Decompresses one S2 (or Snappy) block, appending to `out`.
pub fn decompress_block(src: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut s = 0;
    let n = uvarint(src, &mut s)? as usize;
    if n > MAX_BLOCK {
        return Err(corrupt("block too large"));
    }
    let base = out.len();
    out.reserve(n);
    let mut offset = 0usize;
    while s < src.len() {
        let tag = src[s];
        let (len, off) = match tag & 3 {
            0 => {
                let mut len = (tag >> 2) as usize;
                s += 1;
                if len >= 60 {
                    let bytes = len - 59;
                    len = le(src, s, bytes)?;
                    s += bytes;
                }
                let len = len + 1;
                let lit = src.get(s..s + len).ok_or_else(|| corrupt("literal"))?;
                out.extend_from_slice(lit);
                s += len;
                if out.len() - base > n {
                    return Err(corrupt("literal past block length"));
                }
                continue;
            }
            1 => {
                let mut len = ((tag >> 2) & 7) as usize;
                let toff = (((tag & 0xe0) as usize) << 3) | le(src, s + 1, 1)?;
                s += 2;
                if toff == 0 {
                    // S2: repeat the last offset.
                    match len {
                        5 => {
                            len = le(src, s, 1)? + 4;
                            s += 1;
                        }
                        6 => {
                            len = le(src, s, 2)? + (1 << 8);
                            s += 2;
                        }
                        7 => {
                            len = le(src, s, 3)? + (1 << 16);
                            s += 3;
                        }
                        _ => {}
                    }
                    (len + 4, offset)
                } else {
                    (len + 4, toff)
                }
            }
            2 => {
                let off = le(src, s + 1, 2)?;
                s += 3;
                ((tag >> 2) as usize + 1, off)
            }
            _ => {
                let off = le(src, s + 1, 4)?;
                s += 5;
                ((tag >> 2) as usize + 1, off)
            }
        };
        let have = out.len() - base;
        if off == 0 || off > have || have + len > n {
            return Err(corrupt("copy out of range"));
        }
        offset = off;
        let from = out.len() - off;
        for k in 0..len {
            let b = out[from + k];
            out.push(b);
        }
    }
    if out.len() - base != n {
        return Err(corrupt("block shorter than its length"));
    }
    Ok(())
}

/// Writes an S2 stream into a buffer the caller drains ([`Encoder::take`]).
#[derive(Debug)]
pub struct Encoder {
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// A new stream (its identifier is written first).
    pub fn new() -> Encoder {
        Encoder {
            pending: Vec::with_capacity(BLOCK),
            out: MAGIC_S2.to_vec(),
        }
    }

    /// Adds uncompressed bytes; full blocks are compressed as they fill.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = BLOCK - self.pending.len();
            let take = room.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK {
                self.flush();
            }
        }
    }

    /// Compresses what is buffered into a chunk.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let crc = masked_crc(&self.pending);
        let mut block = Vec::with_capacity(self.pending.len() / 2 + 16);
        compress_block(&self.pending, &mut block);
        let (kind, body) = if block.len() < self.pending.len() {
            (CHUNK_COMPRESSED, &block[..])
        } else {
            (CHUNK_UNCOMPRESSED, &self.pending[..])
        };
        let len = (body.len() + 4) as u32;
        self.out.push(kind);
        self.out.extend_from_slice(&len.to_le_bytes()[..3]);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out.extend_from_slice(body);
        self.pending.clear();
    }

    /// Compressed bytes ready to send.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes up to `max` compressed bytes from the front of the output.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.out.len());
        let rest = self.out.split_off(n);
        std::mem::replace(&mut self.out, rest)
    }
}

/// Compresses `data` into one complete S2 stream.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.write(data);
    e.flush();
    e.take(usize::MAX)
}

/// Reads an S2 or Snappy framed stream from `R`, yielding the uncompressed bytes.
#[derive(Debug)]
pub struct Decoder<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    started: bool,
}

impl<R: Read> Decoder<R> {
    /// A decoder over `inner`.
    pub fn new(inner: R) -> Decoder<R> {
        Decoder {
            inner,
            buf: Vec::new(),
            pos: 0,
            started: false,
        }
    }

    /// Reads the next chunk into `buf`; `false` at a clean end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            let mut hdr = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                let n = self.inner.read(&mut hdr[got..])?;
                if n == 0 {
                    if got == 0 {
                        return Ok(false);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "s2: truncated chunk header",
                    ));
                }
                got += n;
            }
            let kind = hdr[0];
            let len = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], 0]) as usize;
            if len > MAX_BLOCK + 16 {
                return Err(corrupt("chunk too large"));
            }
            let mut body = vec![0u8; len];
            self.inner.read_exact(&mut body)?;
            if !self.started && kind != CHUNK_STREAM_ID {
                return Err(corrupt("missing stream identifier"));
            }
            match kind {
                CHUNK_STREAM_ID => {
                    if body != MAGIC_S2[4..] && body != MAGIC_SNAPPY {
                        return Err(corrupt("unknown stream identifier"));
                    }
                    self.started = true;
                }
                CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                    if len < 4 {
                        return Err(corrupt("short chunk"));
                    }
                    let crc = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    self.buf.clear();
                    self.pos = 0;
                    if kind == CHUNK_COMPRESSED {
                        decompress_block(&body[4..], &mut self.buf)?;
                    } else {
                        self.buf.extend_from_slice(&body[4..]);
                    }
                    if masked_crc(&self.buf) != crc {
                        return Err(corrupt("crc mismatch"));
                    }
                    return Ok(true);
                }
                // Padding and skippable chunks (S2's index among them).
                CHUNK_PADDING | 0x80..=0xfd => {}
                _ => return Err(corrupt("unskippable chunk")),
            }
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if out.is_empty() || !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Decoder::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn round_trips_text_random_and_repetitive_data() {
        let mut rng = fastrand::Rng::with_seed(7);
        let random: Vec<u8> = (0..200_000).map(|_| rng.u8(..)).collect();
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("subject.{} payload {}\n", i % 37, i % 11).into_bytes())
            .collect();
        let runs = vec![b'x'; 300_000];
        for data in [&random[..], &text[..], &runs[..], b"", b"short"] {
            let z = compress(data);
            assert_eq!(&z[..10], MAGIC_S2);
            assert_eq!(decode(&z).unwrap(), data);
        }
        // Repetitive data compresses.
        assert!(compress(&text).len() < text.len() / 3);
        assert!(compress(&runs).len() < 20_000);
    }

    #[test]
    fn output_taken_in_pieces_is_the_same_stream() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let mut e = Encoder::new();
        let mut out = Vec::new();
        for piece in data.chunks(999) {
            e.write(piece);
            out.extend(e.take(1000));
        }
        e.flush();
        out.extend(e.take(usize::MAX));
        assert_eq!(decode(&out).unwrap(), data);
    }

    #[test]
    fn decodes_s2_repeat_and_long_offset_copies() {
        // "abcd" literal, copy1 offset 4 len 4, repeat (offset 0) len 8, copy4 offset 12 len 4.
        let mut block = vec![16u8];
        block.extend_from_slice(&[3 << 2, b'a', b'b', b'c', b'd']);
        block.extend_from_slice(&[1, 4]); // copy1: len 4, offset 4
        block.extend_from_slice(&[(4 << 2) | 1, 0]); // repeat: len 4+4
        let mut out = Vec::new();
        decompress_block(&block, &mut out).unwrap();
        assert_eq!(out, b"abcdabcdabcdabcd");
        let mut block = vec![8u8, 3 << 2, b'w', b'x', b'y', b'z'];
        block.extend_from_slice(&[(3 << 2) | 3, 4, 0, 0, 0]); // copy4: len 4, offset 4
        out.clear();
        decompress_block(&block, &mut out).unwrap();
        assert_eq!(out, b"wxyzwxyz");
    }

    #[test]
    fn reads_snappy_framing_and_skips_padding() {
        let mut s = b"\xff\x06\x00\x00sNaPpY".to_vec();
        s.extend_from_slice(&[CHUNK_PADDING, 2, 0, 0, 0, 0]);
        let data = b"hello, snappy";
        s.push(CHUNK_UNCOMPRESSED);
        s.extend_from_slice(&((data.len() + 4) as u32).to_le_bytes()[..3]);
        s.extend_from_slice(&masked_crc(data).to_le_bytes());
        s.extend_from_slice(data);
        assert_eq!(decode(&s).unwrap(), data);
    }

    #[test]
    fn decodes_a_nats_server_backup() {
        // `$JS.API.STREAM.SNAPSHOT` output of nats-server 2.15.1 (8 messages, 2 consumers).
        let z = include_bytes!("testdata/nats-server-2.15.1-backup.s2");
        let raw = decode(z).unwrap();
        assert!(raw.starts_with(b"NATSARC1"));
        assert!(raw.ends_with(&[0, 0, 0, 0, 0]));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("state.json") && text.contains("consumers/R"));
        assert!(text.contains("data-8"));
    }

    #[test]
    fn rejects_corruption() {
        let mut z = compress(b"some bytes that will be checked by their crc");
        let last = z.len() - 1;
        z[last] ^= 1;
        assert!(decode(&z).is_err());
        assert!(decode(b"garbage-not-s2").is_err());
        let z = compress(&[7u8; 5000]);
        assert!(decode(&z[..z.len() - 3]).is_err());
        let mut bad = vec![5u8, (1 << 2) | 2, 9, 0]; // copy before any output
        bad.insert(0, 0);
        assert!(decompress_block(&bad[1..], &mut Vec::new()).is_err());
    }
}
