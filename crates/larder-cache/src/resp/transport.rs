//! What a RESP connection reads from and writes to: a TCP socket, or TLS over one.
//!
//! The connection loop (`conn.rs`) works by readiness — wait until readable, read what is
//! there without waiting, write what the socket takes without waiting — so that a batch costs
//! one read and one write. [`Tls`] keeps that shape over rustls's connection state: it reads
//! TLS records the socket has ready, decrypts them, and hands out the plaintext; writes are
//! encrypted into rustls's buffer and pushed to the socket as far as it takes them, the rest
//! on the next write (the loop keeps writing while [`Transport::pending`]). The handshake is
//! done before the connection reaches the loop.

use std::io::{self, Read, Write};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// A connection's byte stream, driven by readiness.
pub(crate) trait Transport: Send {
    /// Whether a read that returned less than it had room for drained the socket (true of a
    /// plain socket; a TLS read counts plaintext, so it says nothing about the socket).
    const SHORT_READ_DRAINS: bool;

    /// The socket underneath.
    fn socket(&self) -> &TcpStream;

    /// Waits until [`Transport::try_read_buf`] may have something (or the peer closed).
    async fn readable(&mut self) -> io::Result<()>;

    /// Appends what can be read without waiting to `buf`: `Ok(0)` when the peer closed,
    /// `WouldBlock` when nothing is there yet.
    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Writes as much of `buf` as can be without waiting (`WouldBlock` if none); an empty `buf`
    /// only pushes out what is pending.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Whether written bytes still wait to reach the socket.
    fn pending(&self) -> bool;

    /// Waits until the socket takes more bytes.
    async fn writable(&mut self) -> io::Result<()>;
}

impl Transport for TcpStream {
    const SHORT_READ_DRAINS: bool = true;

    fn socket(&self) -> &TcpStream {
        self
    }

    async fn readable(&mut self) -> io::Result<()> {
        TcpStream::readable(self).await
    }

    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn pending(&self) -> bool {
        false
    }

    async fn writable(&mut self) -> io::Result<()> {
        TcpStream::writable(self).await
    }
}

/// TLS over a socket, after the handshake.
pub(crate) struct Tls {
    socket: TcpStream,
    conn: ServerConnection,
    /// The peer closed the TCP connection (or sent `close_notify`).
    eof: bool,
}

impl Tls {
    pub(crate) fn new(socket: TcpStream, conn: ServerConnection) -> Self {
        Self {
            socket,
            conn,
            eof: false,
        }
    }

    /// Reads the TLS records the socket has ready into rustls and decrypts them; `Ok(false)`
    /// when the socket had nothing.
    fn pull(&mut self) -> io::Result<bool> {
        let mut records = [0u8; 16 * 1024];
        let n = match self.socket.try_read(&mut records) {
            Ok(0) => {
                self.eof = true;
                return Ok(true);
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) => return Err(err),
        };
        let mut slice = &records[..n];
        while !slice.is_empty() {
            self.conn.read_tls(&mut slice)?;
            if let Err(err) = self.conn.process_new_packets() {
                // Tell the peer why (an alert), then fail the connection.
                let _ = self.push();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
        }
        // Key updates and the like need answers.
        self.push()?;
        Ok(true)
    }

    /// Writes the TLS records rustls holds, as far as the socket takes them.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut socket = SocketWriter(&self.socket);
            match self.conn.write_tls(&mut socket) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// `io::Write` over a socket's non-blocking `try_write`.
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Tls {
    const SHORT_READ_DRAINS: bool = false;

    fn socket(&self) -> &TcpStream {
        &self.socket
    }

    async fn readable(&mut self) -> io::Result<()> {
        loop {
            let buffered = self
                .conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if buffered.plaintext_bytes_to_read() > 0 || self.eof || buffered.peer_has_closed() {
                return Ok(());
            }
            self.socket.readable().await?;
            // Records that arrived (or a close) are looked at on the next turn.
            self.pull()?;
        }
    }

    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            let start = buf.len();
            buf.resize(buf.capacity().max(start + 4096), 0);
            let read = self.conn.reader().read(&mut buf[start..]);
            buf.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof {
                        return Ok(0);
                    }
                    if !self.pull()? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                // The peer closed without close_notify: a truncation, as good as a close here.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
        }
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(buf)?;
        self.push()?;
        Ok(n)
    }

    fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    async fn writable(&mut self) -> io::Result<()> {
        self.socket.writable().await
    }
}
