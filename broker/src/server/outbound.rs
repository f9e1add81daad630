//! A connection's outbound queue and how it reaches the socket.
//!
//! Producers append under a short lock. At the end of a read batch the producer flushes every
//! connection it fed with one non-blocking write from its own task (no task hop: that is what
//! keeps request/reply latency low). Only when the socket is full does the connection's write
//! task take over and wait for it to drain, under `write_deadline`.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::transport::{SockIo, Tls};

/// The most the write task hands to the socket in one step.
const MAX_CHUNK: usize = 1 << 20;

/// Why a flush gave up on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushError {
    /// The socket failed.
    Io,
    /// `write_deadline` passed with bytes still unwritten.
    Deadline,
}

#[derive(Debug)]
struct State {
    buf: BytesMut,
    /// Set while the write task owns a chunk taken out of `buf`.
    flushing: bool,
    /// Bytes of that chunk, still counted as pending.
    in_flight: usize,
    closed: bool,
    sock: Option<Arc<TcpStream>>,
    /// The TLS session when the connection is encrypted: plaintext goes through it.
    tls: Option<Tls>,
    /// The producer batch that last queued a flush for this connection (write coalescing).
    wake_mark: u64,
}

/// The pending outbound bytes of one connection.
#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the write task.
    pub(crate) wake: Notify,
    /// Signalled whenever the write task drains a chunk, for stalled producers.
    pub(crate) drained: Notify,
}

impl Outbound {
    /// A queue with no socket, for the server's internal connection.
    pub fn detached() -> Outbound {
        let o = Outbound::new_inner(None, None);
        o.state.lock().closed = true;
        o
    }

    /// A queue writing to `sock`, through `tls` when the connection is encrypted.
    pub fn new(sock: Arc<TcpStream>, tls: Option<Tls>) -> Outbound {
        Self::new_inner(Some(sock), tls)
    }

    fn new_inner(sock: Option<Arc<TcpStream>>, tls: Option<Tls>) -> Outbound {
        Outbound {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(1024),
                flushing: false,
                in_flight: 0,
                closed: false,
                sock,
                tls,
                wake_mark: 0,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        let s = self.state.lock();
        s.buf.len() + s.in_flight
    }

    /// Appends with `f` unless closed; returns (pending bytes after, whether this batch `mark`
    /// must still flush this connection), or `None` when closed.
    #[inline]
    pub fn append(&self, mark: u64, f: impl FnOnce(&mut BytesMut)) -> Option<(usize, bool)> {
        let mut s = self.state.lock();
        if s.closed {
            return None;
        }
        f(&mut s.buf);
        let first = s.wake_mark != mark;
        s.wake_mark = mark;
        Some((s.buf.len() + s.in_flight, first))
    }

    /// Appends raw protocol bytes without flushing.
    pub fn queue(&self, bytes: &[u8]) {
        let mut s = self.state.lock();
        if !s.closed {
            s.buf.put_slice(bytes);
        }
    }

    /// Writes what is queued without blocking; hands the rest to the write task.
    pub fn try_flush(&self) -> Result<(), FlushError> {
        let mut s = self.state.lock();
        if s.flushing || s.closed || (s.buf.is_empty() && !tls_wants_write(&s)) {
            return Ok(());
        }
        let Some(sock) = s.sock.clone() else {
            return Ok(());
        };
        if let Some(tls) = s.tls.clone() {
            let mut conn = tls.lock();
            if !s.buf.is_empty() {
                conn.writer()
                    .write_all(&s.buf)
                    .map_err(|_| FlushError::Io)?;
                s.buf.clear();
            }
            loop {
                if !conn.wants_write() {
                    return Ok(());
                }
                match conn.write_tls(&mut SockIo(&sock)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Err(FlushError::Io),
                }
            }
            drop(conn);
            drop(s);
            self.wake.notify_one();
            return Ok(());
        }
        // A non-blocking write: the lock is held for one syscall at most.
        match sock.try_write(&s.buf) {
            Ok(n) => {
                s.buf.advance(n);
                if s.buf.is_empty() {
                    s.buf.clear();
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(FlushError::Io),
        }
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    /// Marks the queue closed: nothing more is appended; the write task flushes what is left.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    /// Drains the queue through the socket, waiting for it to accept data, until empty.
    ///
    /// Returns `Ok(true)` once the queue is closed and fully written (the socket is released).
    pub async fn drain(&self, deadline: Duration) -> Result<bool, FlushError> {
        let mut spare = BytesMut::new();
        loop {
            let (mut chunk, sock, tls) = {
                let mut s = self.state.lock();
                if s.buf.is_empty() && !tls_wants_write(&s) {
                    s.flushing = false;
                    s.in_flight = 0;
                    if s.closed {
                        s.sock = None;
                        s.buf = BytesMut::new();
                        return Ok(true);
                    }
                    return Ok(false);
                }
                let Some(sock) = s.sock.clone() else {
                    return Ok(true);
                };
                s.flushing = true;
                // Bounded chunks let a large backlog drain in steps, so stalled producers
                // resume as soon as the consumer is below its high-water mark.
                // TLS encrypts a chunk at once, so it takes bounded steps; plain TCP takes the
                // whole backlog (keeping the buffer's allocation) and reports progress as it goes.
                let chunk = if s.tls.is_some() && s.buf.len() > MAX_CHUNK {
                    s.buf.split_to(MAX_CHUNK)
                } else {
                    spare.clear();
                    std::mem::replace(&mut s.buf, spare)
                };
                s.in_flight = chunk.len();
                (chunk, sock, s.tls.clone())
            };
            let res =
                tokio::time::timeout(deadline, self.write_all(&sock, tls.as_ref(), &mut chunk))
                    .await;
            {
                let mut s = self.state.lock();
                if matches!(res, Ok(Ok(()))) {
                    s.in_flight = 0;
                } else {
                    // `in_flight` stays: the slow-consumer log names the bytes left unwritten.
                    s.flushing = false;
                    s.closed = true;
                    s.sock = None;
                }
            }
            self.drained.notify_waiters();
            match res {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(FlushError::Io),
                Err(_) => return Err(FlushError::Deadline),
            }
            chunk.clear();
            spare = if chunk.capacity() > 8 << 20 {
                BytesMut::new()
            } else {
                chunk
            };
        }
    }

    /// Drops the socket so the connection closes once every task lets go of it, and frees the
    /// buffer (closed connections stay listed in `/connz?state=closed` for a while).
    pub fn release(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.sock = None;
        s.buf = BytesMut::new();
    }
}

/// Whether the TLS session holds encrypted bytes not yet on the socket.
fn tls_wants_write(s: &State) -> bool {
    s.tls.as_ref().is_some_and(|t| t.lock().wants_write())
}

impl Outbound {
    /// Writes one chunk; on plain TCP it lowers the in-flight count as bytes leave and wakes
    /// stalled producers every `PROGRESS_STEP` bytes.
    async fn write_all(
        &self,
        sock: &TcpStream,
        tls: Option<&Tls>,
        chunk: &mut BytesMut,
    ) -> io::Result<()> {
        if let Some(tls) = tls {
            return write_tls(sock, tls, chunk).await;
        }
        let mut since_notify = 0;
        while !chunk.is_empty() {
            sock.writable().await?;
            match sock.try_write(chunk) {
                Ok(n) => {
                    chunk.advance(n);
                    since_notify += n;
                    if since_notify >= PROGRESS_STEP && !chunk.is_empty() {
                        since_notify = 0;
                        self.state.lock().in_flight = chunk.len();
                        self.drained.notify_waiters();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// How often a large write reports progress to stalled producers.
const PROGRESS_STEP: usize = 256 * 1024;

async fn write_tls(sock: &TcpStream, tls: &Tls, chunk: &mut BytesMut) -> io::Result<()> {
    {
        tls.lock().writer().write_all(chunk)?;
        chunk.clear();
        loop {
            {
                let mut conn = tls.lock();
                if !conn.wants_write() {
                    return Ok(());
                }
                match conn.write_tls(&mut SockIo(sock)) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            sock.writable().await?;
        }
    }
}
