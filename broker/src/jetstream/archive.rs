//! nats-server 2.15's stream backup archive (`NATSARC1`): after the magic, entries of
//! `uvarint name length, varint timestamp, uvarint sequence, uvarint header size, uvarint
//! payload size, name, headers, payload`. A backup is `state.json`, then one
//! `consumers/<name>` entry per consumer, then the messages (subject as the name) in
//! ascending sequence order, then a sentinel entry with an empty name and all fields zero.
//! The archive is S2-compressed as one stream (`minlz`'s S2 stream writer and reader).

use std::io::{self, Read};

/// The archive's first eight bytes.
pub const MAGIC: &[u8; 8] = b"NATSARC1";
/// The name of the first entry (the stream state).
pub const STATE: &str = "state.json";
/// The name prefix of consumer entries.
pub const CONSUMER_PREFIX: &str = "consumers/";
/// Longest entry name accepted when reading (as nats-server).
const MAX_NAME: u64 = 1 << 20;

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Unix nanoseconds; 0 when unset.
    pub ts: i64,
    /// Stream sequence; 0 for metadata and the sentinel.
    pub seq: u64,
    pub hdr: Vec<u8>,
    pub data: Vec<u8>,
}

impl Entry {
    /// Whether this is the end-of-backup sentinel.
    pub fn is_sentinel(&self) -> bool {
        self.name.is_empty()
            && self.ts == 0
            && self.seq == 0
            && self.hdr.is_empty()
            && self.data.is_empty()
    }
}

/// Errors reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive: invalid archive stream")]
    Invalid,
    #[error("EOF")]
    Eof,
    #[error("unexpected EOF")]
    UnexpectedEof,
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends one entry to `out`.
pub fn write_entry(out: &mut Vec<u8>, name: &str, ts: i64, seq: u64, hdr: &[u8], data: &[u8]) {
    put_uvarint(out, name.len() as u64);
    // Go's zig-zag varint.
    let zz = ((ts << 1) ^ (ts >> 63)) as u64;
    put_uvarint(out, zz);
    put_uvarint(out, seq);
    put_uvarint(out, hdr.len() as u64);
    put_uvarint(out, data.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(hdr);
    out.extend_from_slice(data);
}

/// Appends the end-of-backup sentinel to `out`.
pub fn write_sentinel(out: &mut Vec<u8>) {
    write_entry(out, "", 0, 0, b"", b"");
}

/// Reads entries from an uncompressed archive.
#[derive(Debug)]
pub struct Reader<R> {
    r: R,
}

impl<R: Read> Reader<R> {
    /// Checks the magic and returns a reader positioned at the first entry.
    pub fn new(mut r: R) -> Result<Reader<R>, ArchiveError> {
        let mut m = [0u8; 8];
        read_full(&mut r, &mut m)?;
        if &m != MAGIC {
            return Err(ArchiveError::Invalid);
        }
        Ok(Reader { r })
    }

    fn uvarint(&mut self) -> Result<u64, ArchiveError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8];
            read_full(&mut self.r, &mut b)?;
            v |= u64::from(b[0] & 0x7f) << shift;
            if b[0] < 0x80 {
                return Ok(v);
            }
        }
        Err(ArchiveError::Invalid)
    }

    /// The next entry; running out of input before the sentinel is an error (`EOF` between
    /// entries, `unexpected EOF` inside one).
    pub fn next_entry(&mut self) -> Result<Entry, ArchiveError> {
        let name_len = self.uvarint()?;
        self.rest_of_entry(name_len).map_err(|e| match e {
            ArchiveError::Eof => ArchiveError::UnexpectedEof,
            e => e,
        })
    }

    fn rest_of_entry(&mut self, name_len: u64) -> Result<Entry, ArchiveError> {
        let zz = self.uvarint()?;
        let ts = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        let seq = self.uvarint()?;
        let hdr_len = self.uvarint()?;
        let data_len = self.uvarint()?;
        if name_len > MAX_NAME || hdr_len > u32::MAX as u64 || data_len > u32::MAX as u64 {
            return Err(ArchiveError::Invalid);
        }
        let mut name = vec![0u8; name_len as usize];
        read_full(&mut self.r, &mut name)?;
        let name = String::from_utf8(name).map_err(|_| ArchiveError::Invalid)?;
        let mut hdr = vec![0u8; hdr_len as usize];
        read_full(&mut self.r, &mut hdr)?;
        let mut data = vec![0u8; data_len as usize];
        read_full(&mut self.r, &mut data)?;
        Ok(Entry {
            name,
            ts,
            seq,
            hdr,
            data,
        })
    }
}

/// minlz's S2 stream reader with its errors in the words of Go's s2 package, which
/// nats-server's restore errors carry: input that ends before a stream identifier is a plain
/// end of input, anything malformed is `s2: corrupt input`.
pub struct S2Reader<R: Read>(minlz::Reader<R>);

impl<R: Read> S2Reader<R> {
    /// Reads the S2 stream `inner`.
    pub fn new(inner: R) -> S2Reader<R> {
        S2Reader(minlz::Reader::new(inner))
    }
}

impl<R: Read> Read for S2Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let words = if e.to_string().contains("CRC") {
                    "s2: corrupt input, crc mismatch"
                } else {
                    "s2: corrupt input"
                };
                Err(io::Error::new(io::ErrorKind::InvalidData, words))
            }
            r => r,
        }
    }
}

/// Fills `buf`: nothing left at all is `EOF`, part of it `unexpected EOF` (as Go's
/// `io.ReadFull`, whose words nats-server's restore errors carry).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), ArchiveError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(ArchiveError::Eof),
            Ok(0) => return Err(ArchiveError::UnexpectedEof),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_including_negative_timestamps() {
        let mut a = MAGIC.to_vec();
        write_entry(&mut a, STATE, 1_795_669_044_137_393_090, 0, b"", b"{}");
        write_entry(&mut a, "s.1", -5, 7, b"NATS/1.0\r\n\r\n", b"body");
        write_sentinel(&mut a);
        let mut r = Reader::new(&a[..]).unwrap();
        let e = r.next_entry().unwrap();
        assert_eq!(
            (e.name.as_str(), e.ts, &e.data[..]),
            (STATE, 1_795_669_044_137_393_090, &b"{}"[..])
        );
        let e = r.next_entry().unwrap();
        assert_eq!(
            (e.ts, e.seq, &e.hdr[..], &e.data[..]),
            (-5, 7, &b"NATS/1.0\r\n\r\n"[..], &b"body"[..])
        );
        assert!(r.next_entry().unwrap().is_sentinel());
        assert!(matches!(r.next_entry(), Err(ArchiveError::Eof)));
    }

    #[test]
    fn matches_nats_server_bytes() {
        // The state entry header nats-server 2.15 writes: name length 10, zig-zag timestamp,
        // sequence 0, no headers, 192 payload bytes.
        let mut a = Vec::new();
        write_entry(
            &mut a,
            STATE,
            1_795_669_044_771_500_886,
            0,
            b"",
            &[b'x'; 192],
        );
        assert_eq!(&a[..1], &[0x0a]);
        assert_eq!(&a[10..14], &[0x00, 0x00, 0xc0, 0x01]);
        assert_eq!(&a[14..24], STATE.as_bytes());
    }

    #[test]
    fn reads_a_nats_server_backup() {
        // `$JS.API.STREAM.SNAPSHOT` output of nats-server 2.15.1 (8 messages, 2 consumers).
        let z = include_bytes!("testdata/nats-server-2.15.1-backup.s2");
        let mut r = Reader::new(S2Reader::new(&z[..])).unwrap();
        let mut names = Vec::new();
        loop {
            let e = r.next_entry().unwrap();
            if e.is_sentinel() {
                break;
            }
            names.push(e.name);
        }
        assert_eq!(names[0], STATE);
        assert!(names.iter().any(|n| n == "consumers/R"));
        assert_eq!(
            names
                .iter()
                .filter(|n| !n.contains('/') && *n != STATE)
                .count(),
            8
        );
    }

    #[test]
    fn written_archives_read_back_through_s2() {
        let mut a = MAGIC.to_vec();
        for i in 0..5000 {
            write_entry(
                &mut a,
                &format!("s.{}", i % 9),
                i,
                i as u64 + 1,
                b"",
                b"payload",
            );
        }
        write_sentinel(&mut a);
        let mut w = minlz::Writer::with_block_size(Vec::new(), 64 << 10);
        std::io::Write::write_all(&mut w, &a).unwrap();
        std::io::Write::flush(&mut w).unwrap();
        let z = w.get_ref().clone();
        assert!(z.len() < a.len() / 2, "{} of {}", z.len(), a.len());
        let mut r = Reader::new(S2Reader::new(&z[..])).unwrap();
        for i in 0..5000 {
            assert_eq!(r.next_entry().unwrap().seq, i + 1);
        }
        assert!(r.next_entry().unwrap().is_sentinel());
        // A flipped bit fails the chunk's checksum.
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = Reader::new(S2Reader::new(&bad[..])).unwrap();
        let err = (0..5001).find_map(|_| r.next_entry().err()).unwrap();
        assert_eq!(err.to_string(), "s2: corrupt input, crc mismatch");
        // Not S2 at all, and nothing at all, as Go's s2 reader says.
        let err = Reader::new(S2Reader::new(&b"garbage-not-s2"[..]))
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "s2: corrupt input");
        let err = Reader::new(S2Reader::new(&b""[..])).err().unwrap();
        assert_eq!(err.to_string(), "EOF");
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        assert!(matches!(
            Reader::new(&b"NATSARC2"[..]),
            Err(ArchiveError::Invalid)
        ));
        let mut a = MAGIC.to_vec();
        write_entry(&mut a, "s", 1, 1, b"", b"0123456789");
        let mut r = Reader::new(&a[..a.len() - 2]).unwrap();
        assert!(matches!(r.next_entry(), Err(ArchiveError::UnexpectedEof)));
    }
}
