//! The byte stream under a client or route connection: plain TCP, or TLS over it.
//!
//! TLS is rustls driven by hand over the shared socket (no split stream), so that producers can
//! still flush a consumer's queue from their own task: the TLS session sits behind a short lock
//! and every socket operation is non-blocking.

use std::io::{self, Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::Connection;
use tokio::net::TcpStream;

/// A TLS session (server side for accepted connections, client side for dialed routes)
/// shared by a connection's reader and its writers.
pub type Tls = Arc<Mutex<Connection>>;

/// `io::Read`/`io::Write` over a tokio socket with non-blocking calls (`WouldBlock` passes
/// through), for rustls's `read_tls`/`write_tls`.
pub struct SockIo<'a>(pub &'a TcpStream);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes all of `bytes` to the socket, waiting for it as needed.
pub async fn write_raw(sock: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        sock.writable().await?;
        match sock.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs a TLS handshake (either side) to completion; a TLS failure is an `InvalidData` error
/// wrapping the [`rustls::Error`].
pub async fn handshake(sock: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    loop {
        while conn.wants_write() {
            sock.writable().await?;
            match conn.write_tls(&mut SockIo(sock)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        sock.readable().await?;
        match conn.read_tls(&mut SockIo(sock)) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // Tell the peer why before giving up, as a TLS stack does.
                    let _ = conn.write_tls(&mut SockIo(sock));
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// What one read produced.
pub enum ReadOutcome {
    /// Bytes were appended to the buffer.
    Data,
    /// The peer closed the connection.
    Eof,
    /// TLS records were processed and the session has bytes to send (e.g. an alert).
    TlsWantsWrite,
}

/// Reads what is available into `buf` (at most `max` bytes), waiting for the socket as needed.
pub async fn read(
    sock: &TcpStream,
    tls: Option<&Tls>,
    buf: &mut bytes::BytesMut,
    max: usize,
) -> io::Result<ReadOutcome> {
    use bytes::BufMut;
    let Some(tls) = tls else {
        loop {
            sock.readable().await?;
            let mut limited = (&mut *buf).limit(max);
            match sock.try_read_buf(&mut limited) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(_) => return Ok(ReadOutcome::Data),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    };
    let mut tmp = [0u8; 16 * 1024];
    let cap = max.min(tmp.len());
    loop {
        // Plaintext rustls already decrypted comes first (e.g. data that arrived with the
        // handshake's last flight).
        {
            let mut conn = tls.lock();
            match conn.reader().read(&mut tmp[..cap]) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => {
                    buf.put_slice(&tmp[..n]);
                    return Ok(ReadOutcome::Data);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        sock.readable().await?;
        let mut conn = tls.lock();
        match conn.read_tls(&mut SockIo(sock)) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(_) => {
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if conn.wants_write() {
                    return Ok(ReadOutcome::TlsWantsWrite);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}
