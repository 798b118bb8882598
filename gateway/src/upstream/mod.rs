//! Upstream stage: the one client moat has for the model server, on loopback TCP or a unix
//! socket, speaking HTTP/1.1 (`forward`: a pooled connection per request) or h2c (`h2c`: one
//! multiplexed connection).
//!
//! Each HTTP/1.1 upstream keeps a bounded LIFO pool of idle keep-alive connections. A pooled connection
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

use tokio::time::timeout;

use crate::config::{UpstreamAddr, UpstreamConfig};
use crate::error::UpstreamError;
use crate::protocol::h1::Reader;

mod body;
mod forward;
mod h2c;
mod request;

pub use body::{parse_trailers, trailer_lines, UpBody, UpFrame};
pub(crate) use forward::Outgoing;

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
    /// `name@address`, as audit records name it (shared by them, not formatted per request).
    pub label: Arc<str>,
    config: UpstreamConfig,
    idle: Mutex<Vec<Idle>>,
    /// The multiplexed connection of an `h2c` upstream, opened on first use and again after
    /// it fails. Held only to read or change the state, never across I/O.
    h2: Mutex<h2c::H2c>,
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
            label: format!("{name}@{}", config.address).into(),
            name,
            config,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(h2c::H2c::Idle(0)),
        })
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
            Ok(Err(source)) => Err(UpstreamError::Connect {
                addr,
                source: Arc::new(source),
            }),
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
