//! Upstream stage: connections to the model server on loopback TCP or a unix socket.
//!
//! Each upstream keeps a bounded LIFO pool of idle keep-alive connections. A pooled connection
//! is checked before reuse (a peer that closed it, or sent something unasked, makes it unusable)
//! and dropped once it has been idle longer than `pool_idle_timeout`. The pool lock is held only
//! to push or pop one entry.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use bytes::Bytes;
use tokio::time::timeout;

use crate::config::{UpstreamAddr, UpstreamConfig};
use crate::error::Side;
use crate::protocol::h1::{Decoder, Reader};
use crate::protocol::Frame;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection was refused or failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// Upstream address.
        addr: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than `connect_timeout`.
    #[error("connect to {addr} timed out")]
    ConnectTimeout {
        /// Upstream address.
        addr: String,
    },
    /// No response head within `response_header_timeout`.
    #[error("no response head within the timeout")]
    ResponseTimeout,
    /// The upstream closed or broke the connection, or sent something that is not HTTP/1.1.
    #[error("upstream protocol error: {reason}")]
    Protocol {
        /// What went wrong.
        reason: String,
    },
}

/// A connection to an upstream.
#[derive(Debug)]
pub enum Stream {
    /// Loopback or in-region TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// Whether the peer has closed the connection or sent unsolicited bytes, without blocking.
    fn is_stale(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match self {
            Self::Tcp(s) => s.try_read(&mut probe),
            Self::Unix(s) => s.try_read(&mut probe),
        };
        !matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection checked out of (or new to) an upstream's pool.
#[derive(Debug)]
pub struct Conn {
    /// Buffered reader over the connection; write through `reader.io`.
    pub reader: Reader<Stream>,
    /// Whether it came from the pool (and so may have been closed by the peer meanwhile).
    pub reused: bool,
}

struct Idle {
    reader: Reader<Stream>,
    since: Instant,
}

/// One configured upstream and its pool of idle connections.
pub struct Upstream {
    /// Configuration name.
    pub name: String,
    config: UpstreamConfig,
    idle: Mutex<Vec<Idle>>,
    /// The multiplexed connection of an `h2c` upstream, opened on first use and again after
    /// it fails. Held only to read or change the state, never across I/O.
    h2: Mutex<H2c>,
}

/// What a waiting request learns from the one opening the h2c connection.
type Opened = Option<Result<(u64, h2::client::SendRequest<Bytes>), String>>;

/// The h2c connection's state; the number counts connections opened, so a failure seen on an
/// old one never discards its replacement.
enum H2c {
    /// None open (the last one's number).
    Idle(u64),
    /// One request is opening it; the others wait on this.
    Connecting(tokio::sync::watch::Receiver<Opened>),
    /// Open.
    Ready(u64, h2::client::SendRequest<Bytes>),
}

/// What a request does about the h2c connection, decided under the lock.
enum H2cStep {
    Use(u64, h2::client::SendRequest<Bytes>),
    Wait(tokio::sync::watch::Receiver<Opened>),
    Connect(u64, tokio::sync::watch::Sender<Opened>),
}

/// Puts the h2c state back to idle if the request opening the connection goes away mid-way.
struct ResetOnDrop<'a> {
    upstream: &'a Upstream,
    generation: u64,
    armed: bool,
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut state) = self.upstream.h2.lock() {
            if matches!(&*state, H2c::Connecting(_)) {
                *state = H2c::Idle(self.generation);
            }
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("address", &self.config.address)
            .finish()
    }
}

impl Upstream {
    /// An upstream with an empty pool.
    pub fn new(name: String, config: UpstreamConfig) -> Arc<Self> {
        Arc::new(Self {
            name,
            config,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(H2c::Idle(0)),
        })
    }

    /// A handle for a new stream on the `h2c` connection, ready to send.
    ///
    /// The connection is opened on first use by one request while the others wait for it (no
    /// lock is held across the connect, and the wait is bounded by `connect_timeout`); a
    /// connection that has failed is replaced once. Waiting for stream capacity (the upstream's
    /// concurrent-stream limit) is bounded by `response_header_timeout`.
    pub async fn h2c(&self) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        for _ in 0..2 {
            let step = {
                let Ok(mut state) = self.h2.lock() else {
                    return Err(UpstreamError::Protocol {
                        reason: "h2c: connection state poisoned".into(),
                    });
                };
                match &*state {
                    H2c::Ready(generation, send) => H2cStep::Use(*generation, send.clone()),
                    H2c::Connecting(rx) => H2cStep::Wait(rx.clone()),
                    H2c::Idle(generation) => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        let next = generation + 1;
                        *state = H2c::Connecting(rx);
                        H2cStep::Connect(next, tx)
                    }
                }
            };
            let (generation, send) = match step {
                H2cStep::Use(generation, send) => (generation, send),
                H2cStep::Wait(mut rx) => {
                    let waited = timeout(self.config.connect_timeout, rx.wait_for(Option::is_some))
                        .await
                        .map_err(|_| UpstreamError::ConnectTimeout {
                            addr: self.config.address.to_string(),
                        })?;
                    match waited.ok().as_deref().cloned().flatten() {
                        Some(Ok(opened)) => opened,
                        Some(Err(reason)) => return Err(UpstreamError::Protocol { reason }),
                        // The connecting request went away before finishing: try again.
                        None => continue,
                    }
                }
                H2cStep::Connect(generation, tx) => {
                    // Should this request go away mid-connect, waiters see the sender dropped
                    // and the state must not stay `Connecting`.
                    let mut reset = ResetOnDrop {
                        upstream: self,
                        generation,
                        armed: true,
                    };
                    let opened = self.open_h2c().await;
                    reset.armed = false;
                    if let Ok(mut state) = self.h2.lock() {
                        *state = match &opened {
                            Ok(send) => H2c::Ready(generation, send.clone()),
                            Err(_) => H2c::Idle(generation),
                        };
                    }
                    let shared = match &opened {
                        Ok(send) => Ok((generation, send.clone())),
                        Err(e) => Err(format!("h2c connection: {e}")),
                    };
                    let _ = tx.send(Some(shared));
                    (generation, opened?)
                }
            };
            match timeout(self.config.response_header_timeout, send.clone().ready()).await {
                Ok(Ok(ready)) => return Ok(ready),
                Ok(Err(_)) => {
                    // The connection is gone: forget it (unless already replaced) and reconnect.
                    if let Ok(mut state) = self.h2.lock() {
                        if matches!(&*state, H2c::Ready(g, _) if *g == generation) {
                            *state = H2c::Idle(generation);
                        }
                    }
                }
                Err(_) => return Err(UpstreamError::ResponseTimeout),
            }
        }
        Err(UpstreamError::Protocol {
            reason: "h2c: connection closed".into(),
        })
    }

    /// Opens the h2c connection and starts driving it.
    async fn open_h2c(&self) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        let conn = self.connect().await?;
        let (send, connection) = timeout(
            self.config.connect_timeout,
            h2::client::Builder::new()
                .initial_window_size(256 * 1024)
                .initial_connection_window_size(1024 * 1024)
                .handshake::<_, Bytes>(conn.reader.io),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout {
            addr: self.config.address.to_string(),
        })?
        .map_err(|e| UpstreamError::Protocol {
            reason: format!("h2c: {e}"),
        })?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(upstream = %name, error = %e, "h2c connection ended");
            }
        });
        Ok(send)
    }

    /// Its settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// A pooled connection if a usable one is idle, else a new one.
    pub async fn checkout(&self) -> Result<Conn, UpstreamError> {
        if let Some(reader) = self.pop_idle() {
            return Ok(Conn {
                reader,
                reused: true,
            });
        }
        self.connect().await
    }

    /// A new connection, bypassing the pool.
    pub async fn connect(&self) -> Result<Conn, UpstreamError> {
        let addr = self.config.address.to_string();
        let connect = async {
            match &self.config.address {
                UpstreamAddr::Tcp(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Ok(Stream::Tcp(s))
                }
                UpstreamAddr::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
            }
        };
        match timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(s)) => Ok(Conn {
                reader: Reader::new(s),
                reused: false,
            }),
            Ok(Err(source)) => Err(UpstreamError::Connect { addr, source }),
            Err(_) => Err(UpstreamError::ConnectTimeout { addr }),
        }
    }

    /// Returns a connection whose last response was fully read and that may be kept alive.
    pub fn checkin(&self, mut conn: Conn) {
        if !conn.reader.buf.is_empty() {
            // Bytes after the end of a response: the connection is out of step; drop it.
            return;
        }
        conn.reader.shrink_if_idle();
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.len() < self.config.pool_max_idle {
            idle.push(Idle {
                reader: conn.reader,
                since: Instant::now(),
            });
        }
    }

    fn pop_idle(&self) -> Option<Reader<Stream>> {
        let max_age: Duration = self.config.pool_idle_timeout;
        loop {
            let entry = self.idle.lock().ok()?.pop()?;
            if entry.since.elapsed() < max_age && !entry.reader.io.is_stale() {
                return Some(entry.reader);
            }
        }
    }

    /// Number of idle pooled connections (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// The upstream's response body, whichever protocol carried it.
pub enum UpBody {
    /// From a pooled HTTP/1.1 connection.
    H1 {
        /// The connection.
        conn: Conn,
        /// The body's framing.
        decoder: Decoder,
        /// The connection may be reused after the body.
        keep_alive: bool,
    },
    /// A stream of the h2c connection.
    H2 {
        /// The stream.
        recv: h2::RecvStream,
        /// Bytes received.
        total: u64,
        /// DATA ended.
        data_done: bool,
        /// Trailers read.
        trailers_done: bool,
    },
}

/// A piece of an upstream response body.
pub enum UpFrame {
    /// Body bytes.
    Data(Bytes),
    /// Trailers.
    Trailers(http::HeaderMap),
}

impl UpBody {
    /// A piece already received, without waiting for I/O (HTTP/1.1: decodable from the read
    /// buffer; an h2c stream always waits).
    pub fn ready(&mut self) -> Result<Option<UpFrame>, (Side, String)> {
        match self {
            Self::H1 { conn, decoder, .. } => match decoder.decode(&mut conn.reader.buf) {
                Ok(Some(Frame::Data(d))) => Ok(Some(UpFrame::Data(d))),
                Ok(Some(Frame::Trailers(t))) => Ok(Some(UpFrame::Trailers(parse_trailers(&t)))),
                Ok(None) => Ok(None),
                Err(e) => Err((Side::Upstream, format!("response body: {e}"))),
            },
            Self::H2 { .. } => Ok(None),
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        match self {
            Self::H1 { decoder, .. } => decoder.is_done(),
            Self::H2 {
                data_done,
                trailers_done,
                ..
            } => *data_done && *trailers_done,
        }
    }

    /// The next piece, reading from the upstream as needed; `None` at the end.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<UpFrame>, (Side, String)> {
        let body_err = |e: String| (Side::Upstream, format!("response body: {e}"));
        match self {
            Self::H1 { conn, decoder, .. } => loop {
                match decoder.decode(&mut conn.reader.buf) {
                    Ok(Some(Frame::Data(d))) => return Ok(Some(UpFrame::Data(d))),
                    Ok(Some(Frame::Trailers(t))) => {
                        return Ok(Some(UpFrame::Trailers(parse_trailers(&t))))
                    }
                    Ok(None) if decoder.is_done() => return Ok(None),
                    Ok(None) => {}
                    Err(e) => return Err(body_err(e.to_string())),
                }
                match timeout(idle, conn.reader.fill()).await {
                    Ok(Ok(0)) => {
                        decoder
                            .finish_at_eof()
                            .map_err(|e| body_err(e.to_string()))?;
                        return Ok(None);
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(body_err(e.to_string())),
                    Err(_) => return Err(body_err("idle timeout".into())),
                }
            },
            Self::H2 {
                recv,
                total,
                data_done,
                trailers_done,
            } => {
                while !*data_done {
                    match timeout(idle, recv.data()).await {
                        Err(_) => return Err(body_err("idle timeout".into())),
                        Ok(None) => *data_done = true,
                        Ok(Some(Err(e))) => return Err(body_err(e.to_string())),
                        Ok(Some(Ok(d))) => {
                            // Taken off the upstream's window; the client's window paces the
                            // next read, since the caller sends this piece first.
                            let _ = recv.flow_control().release_capacity(d.len());
                            *total += d.len() as u64;
                            if !d.is_empty() {
                                return Ok(Some(UpFrame::Data(d)));
                            }
                        }
                    }
                }
                if *trailers_done {
                    return Ok(None);
                }
                *trailers_done = true;
                match timeout(idle, recv.trailers()).await {
                    Err(_) => Err(body_err("idle timeout".into())),
                    Ok(Err(e)) => Err(body_err(e.to_string())),
                    Ok(Ok(t)) => Ok(t.map(UpFrame::Trailers)),
                }
            }
        }
    }

    /// Body bytes received so far.
    pub fn total(&self) -> u64 {
        match self {
            Self::H1 { decoder, .. } => decoder.total,
            Self::H2 { total, .. } => *total,
        }
    }

    /// The body was read to its end: an HTTP/1.1 connection goes back to the pool.
    pub fn done(self, upstream: &Upstream) {
        if let Self::H1 {
            conn,
            decoder,
            keep_alive: true,
        } = self
        {
            if decoder.is_done() {
                upstream.checkin(conn);
            }
        }
    }
}

/// Raw trailer lines (`name: value\r\n`) as a header map; lines that do not parse are dropped.
pub fn parse_trailers(raw: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            if !crate::protocol::h1::is_hop_by_hop(&n, &map) {
                map.append(n, v);
            }
        }
    }
    map
}

/// A header map as raw trailer lines (`name: value\r\n`), for an HTTP/1.1 chunked body.
pub fn trailer_lines(map: &http::HeaderMap) -> Bytes {
    let mut out = bytes::BytesMut::new();
    for (name, value) in map {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}
