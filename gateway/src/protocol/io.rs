//! Writing to a peer without waiting forever: the few I/O steps both sides of the gateway
//! share.

use std::future::poll_fn;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::SendStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Write buffer size past which pending output is written without waiting for more.
pub const FLUSH_AT: usize = 64 * 1024;

/// The future's output when it is ready without waiting; `None` (and the future dropped) when
/// it is not. Only for futures that lose nothing when dropped while pending, such as one read.
pub fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let f = std::pin::pin!(f);
    match f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// Body pieces gathered into one: a single piece is kept as it is, later ones are copied after
/// the first.
#[derive(Default)]
pub struct Gather {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Gather {
    /// Adds a piece.
    pub fn push(&mut self, piece: Bytes) {
        match &self.first {
            None => self.first = Some(piece),
            Some(first) => {
                if self.joined.is_empty() {
                    self.joined.extend_from_slice(first);
                }
                self.joined.extend_from_slice(&piece);
            }
        }
    }

    /// Whether no piece was added.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Bytes gathered.
    pub fn len(&self) -> usize {
        match &self.first {
            None => 0,
            Some(first) if self.joined.is_empty() => first.len(),
            Some(_) => self.joined.len(),
        }
    }

    /// The pieces as one, `None` if there were none.
    pub fn into_bytes(self) -> Option<Bytes> {
        if self.joined.is_empty() {
            self.first
        } else {
            Some(self.joined.freeze())
        }
    }
}

/// Appends one `name: value` header line.
pub fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes all of `data`. A write that makes no progress for `idle` fails; a slow but moving
/// peer is fine because each `write` call that returns resets the clock.
pub async fn timed_write<W: AsyncWrite + Unpin>(
    io: &mut W,
    data: &[u8],
    idle: Duration,
) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let n = timeout(idle, io.write(rest))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Writes several buffers, in one system call when the peer takes them all, each step bounded
/// by `idle`.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    bufs: &[io::IoSlice<'_>],
    idle: Duration,
) -> io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let n = timeout(idle, io.write_vectored(bufs))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    if n == total {
        return Ok(());
    }
    // Short write: finish with plain writes.
    let mut skip = n;
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        timed_write(io, &b[skip..], idle).await?;
        skip = 0;
    }
    Ok(())
}

/// Sends `data` on an HTTP/2 stream as the peer's flow-control window allows, its last piece
/// carrying END_STREAM when `end` (an empty `data` then sends an empty DATA frame that ends the
/// stream); a window that stays shut for `idle` fails.
pub async fn send_flow_controlled(
    s: &mut SendStream<Bytes>,
    mut data: Bytes,
    idle: Duration,
    end: bool,
) -> io::Result<()> {
    let bodiless = data.is_empty();
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let cap = match timeout(idle, poll_fn(|cx| s.poll_capacity(cx))).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "flow-control window stayed shut",
                ))
            }
            Ok(None) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed")),
            Ok(Some(Err(e))) => return Err(io::Error::other(e)),
            Ok(Some(Ok(n))) => n,
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        s.send_data(piece, end && data.is_empty())
            .map_err(io::Error::other)?;
    }
    if end && bodiless {
        s.send_data(Bytes::new(), true).map_err(io::Error::other)?;
    }
    Ok(())
}
