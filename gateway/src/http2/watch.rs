//! The frames a client sends, watched on their way into `h2`.
//!
//! `h2` answers every SETTINGS and PING it reads and ignores PRIORITY and empty frames without
//! counting them, so a client can keep a connection busy with frames that open no stream — and,
//! if it never reads, fill moat's socket buffers with the answers. And `h2` serves a stream whose
//! HEADERS come before the client's SETTINGS, which RFC 9113 §3.4 makes a connection error.
//!
//! [`Watched`] sits between the TLS stream and `h2` and reads the frame headers in the bytes that
//! pass (nothing else is looked at): the first frame after the preface must be SETTINGS, and
//! frames that carry no request — SETTINGS and PING that are not acknowledgements, PRIORITY,
//! DATA and CONTINUATION without payload or end flag, frame types `h2` does not know — each take
//! one from a budget of `http2.max_control_frames` that refills at
//! `http2.control_frames_per_second`. When either is broken, the bytes from the offending frame on
//! are withheld from `h2` (it never acts on that frame) and the connection's loop is told, which
//! sends GOAWAY and writes a `reject` record.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The client connection preface (RFC 9113 §3.4), which `h2` checks itself.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
/// SETTINGS and PING: an acknowledgement; DATA: END_STREAM.
const FLAG_ACK_OR_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// How a client broke the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Breach {
    /// The first frame after the preface was not SETTINGS.
    Preface { frame_type: u8 },
    /// More frames without a request than the budget allows.
    Flood,
}

impl Breach {
    pub(super) fn reason(self) -> h2::Reason {
        match self {
            Self::Preface { .. } => h2::Reason::PROTOCOL_ERROR,
            Self::Flood => h2::Reason::ENHANCE_YOUR_CALM,
        }
    }
}

/// The budget of frames without a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// Frames that may come at once.
    pub(super) burst: u32,
    /// Frames a second the budget refills by.
    pub(super) per_second: u32,
}

/// Shared by the watched stream and the connection's loop: what was breached (the first breach
/// only), and a wake-up.
#[derive(Debug, Default)]
pub(super) struct Alarm {
    breach: OnceLock<Breach>,
    rung: tokio::sync::Notify,
}

impl Alarm {
    fn raise(&self, b: Breach) {
        if self.breach.set(b).is_ok() {
            self.rung.notify_one();
        }
    }

    /// Resolves once a breach is raised, with it.
    pub(super) async fn rung(&self) -> Breach {
        loop {
            if let Some(&b) = self.breach.get() {
                return b;
            }
            self.rung.notified().await;
        }
    }
}

/// Where the scan is in the byte stream.
#[derive(Debug)]
struct Scan {
    /// Preface bytes not yet passed.
    preface_left: usize,
    /// The frame header being read, and how much of it has arrived.
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame not yet passed.
    payload_left: usize,
    /// The next frame is the first after the preface.
    first: bool,
    budget: Budget,
    tokens: f64,
    refilled: Option<Instant>,
}

impl Scan {
    fn new(budget: Budget) -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            payload_left: 0,
            first: true,
            budget,
            tokens: f64::from(budget.burst),
            refilled: None,
        }
    }

    /// Reads the frame headers in `bytes`, the next bytes of the stream. On a breach, returns
    /// it with the offset in `bytes` where the offending frame starts (0 when it started in an
    /// earlier read).
    fn feed(&mut self, bytes: &[u8]) -> Option<(usize, Breach)> {
        let mut i = 0;
        while i < bytes.len() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len() - i);
                self.preface_left -= n;
                i += n;
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() - i);
                self.payload_left -= n;
                i += n;
            } else {
                let start = i.saturating_sub(self.have);
                let n = (FRAME_HEADER_LEN - self.have).min(bytes.len() - i);
                self.header[self.have..self.have + n].copy_from_slice(&bytes[i..i + n]);
                self.have += n;
                i += n;
                if self.have == FRAME_HEADER_LEN {
                    self.have = 0;
                    if let Some(b) = self.frame() {
                        return Some((start, b));
                    }
                }
            }
        }
        None
    }

    /// Judges the frame whose header was just read.
    fn frame(&mut self) -> Option<Breach> {
        let h = &self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (ty, flags) = (h[3], h[4]);
        self.payload_left = len;
        if std::mem::take(&mut self.first) {
            // The client's SETTINGS, which is free.
            return (ty != SETTINGS || flags & FLAG_ACK_OR_END_STREAM != 0)
                .then_some(Breach::Preface { frame_type: ty });
        }
        let carries_nothing = match ty {
            SETTINGS | PING => flags & FLAG_ACK_OR_END_STREAM == 0,
            PRIORITY => true,
            DATA => len == 0 && flags & FLAG_ACK_OR_END_STREAM == 0,
            CONTINUATION => len == 0 && flags & FLAG_END_HEADERS == 0,
            // RST_STREAM is bounded by `h2` itself (`http2.max_pending_accept_resets`).
            HEADERS | RST_STREAM | PUSH_PROMISE | GOAWAY | WINDOW_UPDATE => false,
            // Extension frames, which `h2` reads and drops.
            _ => true,
        };
        (carries_nothing && !self.spend()).then_some(Breach::Flood)
    }

    /// Takes one frame from the budget; `false` when it is spent.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        if let Some(t) = self.refilled {
            let earned = now.duration_since(t).as_secs_f64() * f64::from(self.budget.per_second);
            self.tokens = (self.tokens + earned).min(f64::from(self.budget.burst));
        }
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A client's byte stream with its frames watched (see the module's text).
pub(super) struct Watched<S> {
    io: S,
    scan: Scan,
    alarm: Arc<Alarm>,
    /// A breach was found: nothing more is read for `h2`.
    stopped: bool,
}

impl<S> Watched<S> {
    pub(super) fn new(io: S, budget: Budget, alarm: Arc<Alarm>) -> Self {
        Self {
            io,
            scan: Scan::new(budget),
            alarm,
            stopped: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped {
            // The connection's loop ends the connection; reading on would feed `h2` the rest.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let Some((at, breach)) = this.scan.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        this.stopped = true;
        this.alarm.raise(breach);
        buf.set_filled(before + at);
        if at == 0 {
            // Nothing to hand over, and an empty read would look like the end of the stream.
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            ty,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    const BUDGET: Budget = Budget {
        burst: 10,
        per_second: 1,
    };

    fn preface() -> Vec<u8> {
        let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        b.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        b
    }

    /// Fed in pieces of every size, the same bytes give the same verdict at the same offset.
    fn verdict(bytes: &[u8]) -> Option<(usize, Breach)> {
        let whole = Scan::new(BUDGET).feed(bytes);
        for piece in 1..bytes.len().min(40) {
            let mut scan = Scan::new(BUDGET);
            let mut offset = 0;
            let mut found = None;
            for chunk in bytes.chunks(piece) {
                if let Some((at, b)) = scan.feed(chunk) {
                    found = Some((offset + at, b));
                    break;
                }
                offset += chunk.len();
            }
            // A frame whose header began in an earlier piece is cut where the piece with the
            // rest of its header starts.
            let expected = whole.map(|(at, b)| {
                let last = at + FRAME_HEADER_LEN - 1;
                if at / piece == last / piece {
                    (at, b)
                } else {
                    (last - last % piece, b)
                }
            });
            assert_eq!(found, expected, "pieces of {piece} bytes");
        }
        whole
    }

    #[test]
    fn requests_and_their_bodies_pass() {
        let mut b = preface();
        b.extend(frame(SETTINGS, FLAG_ACK_OR_END_STREAM, &[]));
        for _ in 0..50 {
            b.extend(frame(HEADERS, FLAG_END_HEADERS, &[0x82, 0x87, 0x84]));
            b.extend(frame(DATA, 0, &[b'x'; 300]));
            b.extend(frame(DATA, FLAG_ACK_OR_END_STREAM, &[]));
            b.extend(frame(WINDOW_UPDATE, 0, &[0, 0, 1, 0]));
            b.extend(frame(PING, FLAG_ACK_OR_END_STREAM, &[0; 8]));
        }
        assert_eq!(verdict(&b), None);
    }

    #[test]
    fn the_first_frame_must_be_settings() {
        let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        b.extend(frame(HEADERS, FLAG_END_HEADERS, &[0x82, 0x87, 0x84]));
        assert_eq!(
            verdict(&b),
            Some((
                24,
                Breach::Preface {
                    frame_type: HEADERS
                }
            ))
        );
        let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        b.extend(frame(SETTINGS, FLAG_ACK_OR_END_STREAM, &[]));
        assert_eq!(
            verdict(&b),
            Some((
                24,
                Breach::Preface {
                    frame_type: SETTINGS
                }
            ))
        );
    }

    #[test]
    fn frames_without_a_request_are_counted_against_the_budget() {
        for (ty, flags, payload) in [
            (SETTINGS, 0, &[][..]),
            (PING, 0, &[0; 8][..]),
            (PRIORITY, 0, &[0, 0, 0, 0, 16][..]),
            (DATA, 0, &[][..]),
            (CONTINUATION, 0, &[][..]),
            (0x20, 0, &[1, 2, 3][..]),
        ] {
            let mut b = preface();
            let start = b.len();
            let one = frame(ty, flags, payload);
            for _ in 0..BUDGET.burst + 5 {
                b.extend(&one);
            }
            // The budget's frames pass; the next one is where the bytes are cut.
            let cut = start + one.len() * BUDGET.burst as usize;
            assert_eq!(
                verdict(&b),
                Some((cut, Breach::Flood)),
                "frame type {ty:#x}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_over_time() {
        let mut scan = Scan::new(BUDGET);
        assert_eq!(scan.feed(&preface()), None);
        let ping = frame(PING, 0, &[0; 8]);
        for _ in 0..BUDGET.burst {
            assert_eq!(scan.feed(&ping), None);
        }
        assert_eq!(scan.feed(&ping).map(|(_, b)| b), Some(Breach::Flood));
        let mut scan = Scan::new(BUDGET);
        assert_eq!(scan.feed(&preface()), None);
        for _ in 0..BUDGET.burst {
            assert_eq!(scan.feed(&ping), None);
        }
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        for _ in 0..3 {
            assert_eq!(scan.feed(&ping), None, "refilled at one a second");
        }
        assert_eq!(scan.feed(&ping).map(|(_, b)| b), Some(Breach::Flood));
    }

    #[tokio::test]
    async fn bytes_from_the_offending_frame_on_never_reach_h2() {
        use tokio::io::AsyncReadExt;
        let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        b.extend(frame(HEADERS, FLAG_END_HEADERS, &[0x82, 0x87, 0x84]));
        let alarm = Arc::new(Alarm::default());
        let mut w = Watched::new(&b[..], BUDGET, alarm.clone());
        let mut got = vec![0; 100];
        let n = w.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], &b[..24], "the preface only");
        assert_eq!(
            alarm.rung().await,
            Breach::Preface {
                frame_type: HEADERS
            }
        );
        let more = tokio::time::timeout(std::time::Duration::from_millis(50), w.read(&mut got));
        assert!(more.await.is_err(), "nothing more is read, not even an end");
    }
}
