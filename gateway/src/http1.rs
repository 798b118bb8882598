//! HTTP/1.1 downstream: one client connection, request after request — framing and I/O only.
//!
//! Each request head is read and checked here ([`crate::protocol::h1`]); the request sequence
//! ([`crate::pipeline`]) then drives the exchange through `H1Request`, this protocol's
//! [`Downstream`]. Bodies move in pieces of at most a socket read (merged up to 64 KiB); the
//! response's output is written whenever the sequence is about to wait on the upstream, and its
//! last piece only once the request's audit record exists.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use crate::downstream::Downstream;
use crate::error::{DownstreamError, Reject};
use crate::pipeline;
use crate::protocol::h1::{self, Decoder, Encoder, H1Error, Reader};
use crate::protocol::io::{put_header, timed_write, Gather, FLUSH_AT};
use crate::protocol::pace::{BodyClock, BodyPace};
use crate::protocol::{BodyKind, Frame, RequestHead, ResponseHead, Version};
use crate::route::{Peer, Route, Routes};
use crate::upstream::{parse_trailers, trailer_lines};

/// Serves one downstream connection (already past TLS) until it closes or must be closed.
pub async fn serve<S>(io: S, peer: Peer, mut routes: Routes)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut down = Reader::new(io);
    let mut first = true;
    loop {
        // Wait for the first byte of the next request: the keep-alive timeout applies between
        // requests, the header timeout from the first byte to the end of the head.
        if down.buf.is_empty() {
            let route = routes.current();
            let wait = if first {
                route.http.header_timeout
            } else {
                route.http.keepalive_timeout
            };
            down.shrink_if_idle();
            let mut drain = route.drain.clone();
            tokio::select! {
                r = timeout(wait, down.fill_idle()) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                // Shutting down: an idle connection closes now.
                _ = drain.wait_for(|d| *d) => return,
            }
        }
        first = false;
        let route: &Route = routes.latest();
        let limits = route.limits();
        let started = Instant::now();
        let head = match timeout(route.http.header_timeout, down.read_head(&limits)).await {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e @ (H1Error::UnexpectedEof | H1Error::Io(_)))) => {
                // Gone in the middle of a head: nobody to answer.
                pipeline::record_client_abort(route, None, 0, &e, &peer.text);
                return;
            }
            Ok(Err(e)) => {
                return refuse(&mut down.io, &Reject::from(&e), None, &e, &peer, route).await
            }
            Err(_) => {
                let r = Reject::HEADER_TIMEOUT;
                return refuse(&mut down.io, &r, None, "header timeout", &peer, route).await;
            }
        };
        let req = match h1::parse_request(&head, &limits, route.http.max_request_body_bytes) {
            Ok(r) => r,
            Err(e) => {
                let r = Reject::from(&e);
                return refuse(&mut down.io, &r, Some(&head), &e, &peer, route).await;
            }
        };
        let mut r = H1Request::new(
            &mut down,
            &req,
            route.http.body_idle_timeout,
            route.http.max_request_body_bytes,
            route.body_pace(),
        );
        // The request's state lives on the heap while it is served, so an idle connection holds
        // only what it needs between requests (not the largest state a request passes through).
        Box::pin(pipeline::serve(&mut r, route, &peer, req, started)).await;
        // Shutting down: the connection closes after the request in flight.
        if !r.reusable() || *route.drain.borrow() {
            let _ = down.io.shutdown().await;
            return;
        }
    }
}

/// Sends a refusal for a request that did not parse, records and logs it; the caller closes
/// the connection. `head` is the request head when it was complete enough to name a method
/// and path.
async fn refuse<S: AsyncWrite + Unpin>(
    io: &mut S,
    r: &Reject,
    head: Option<&Bytes>,
    detail: &(impl std::fmt::Display + ?Sized),
    peer: &Peer,
    route: &Route,
) {
    let (method, path) = head.map_or((None, None), |h| request_line(h));
    pipeline::record_refusal(route, r, method, path, &detail.to_string(), &peer.text);
    let mut out = BytesMut::new();
    r.write_h1(&mut out, None, false);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// One request on an HTTP/1.1 connection, as the request sequence sees it.
pub(crate) struct H1Request<'a, S> {
    down: &'a mut Reader<S>,
    /// The request body's framing.
    decoder: Decoder,
    /// It is chunked.
    chunked: bool,
    /// Its trailer lines, once decoded.
    trailers: Option<Bytes>,
    /// `Expect: 100-continue` not answered yet.
    continue_owed: bool,
    version: Version,
    client_keep_alive: bool,
    idle: Duration,
    /// Response output not yet written.
    out: BytesMut,
    /// The response body's framing toward the client.
    encoder: Encoder,
    /// The response's framing lets the connection serve another request.
    keep_alive: bool,
    /// The connection is done (refused, aborted, or a write failed).
    closed: bool,
    /// The body's account under the listener's pace.
    clock: BodyClock,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> H1Request<'a, S> {
    fn new(
        down: &'a mut Reader<S>,
        req: &RequestHead,
        idle: Duration,
        max_body: u64,
        pace: BodyPace,
    ) -> Self {
        Self {
            down,
            decoder: Decoder::new(req.body, max_body),
            chunked: req.body == BodyKind::Chunked,
            trailers: None,
            continue_owed: req.expect_continue && req.body != BodyKind::Empty,
            version: req.version,
            client_keep_alive: req.keep_alive,
            idle,
            out: BytesMut::new(),
            encoder: Encoder::Raw,
            keep_alive: false,
            closed: false,
            clock: BodyClock::new(pace),
        }
    }

    /// Whether the connection can take the next request.
    fn reusable(&self) -> bool {
        !self.closed && self.keep_alive && self.decoder.is_done()
    }

    /// Tells a client waiting on `Expect: 100-continue` to send its body.
    async fn go_on(&mut self) -> Result<(), DownstreamError> {
        if std::mem::take(&mut self.continue_owed) {
            timed_write(
                &mut self.down.io,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                self.idle,
            )
            .await
            .map_err(DownstreamError::Write)?;
        }
        Ok(())
    }

    /// Decodes body bytes from what has been read (up to 64 KiB); with `wait`, reading from the
    /// client until one piece is there or the body ends; without, taking what one read finds
    /// ready too.
    async fn decode(&mut self, wait: bool) -> Result<Option<Bytes>, DownstreamError> {
        self.go_on().await?;
        let mut got = Gather::default();
        let mut looked = false;
        loop {
            match self.decoder.decode(&mut self.down.buf)? {
                Some(Frame::Data(d)) => {
                    got.push(d);
                    if got.len() >= FLUSH_AT {
                        break;
                    }
                }
                Some(Frame::Trailers(t)) => self.trailers = Some(t),
                None if self.decoder.is_done() => break,
                // Not waiting (the body's start, before the upstream is contacted): also what
                // the client has ready to read, once (the rest of the TLS record that brought
                // the head); the end of stream or an error shows on the next read that waits.
                None if !wait && !std::mem::replace(&mut looked, true) => {
                    match self.down.fill_ready() {
                        Some(Ok(n)) if n > 0 => {}
                        _ => break,
                    }
                }
                None if !wait => break,
                None if !got.is_empty() => break,
                None => self.fill().await?,
            }
        }
        Ok(got.into_bytes())
    }

    /// Reads more of the request body, within the body idle timeout.
    async fn fill(&mut self) -> Result<(), H1Error> {
        let received = self.decoder.total;
        match self
            .clock
            .wait(received, self.idle, self.down.fill())
            .await?
        {
            Ok(0) => Err(H1Error::UnexpectedEof),
            Ok(_) => Ok(()),
            Err(e) => Err(H1Error::Io(e)),
        }
    }

    async fn write_out(&mut self) -> Result<(), DownstreamError> {
        let written = timed_write(&mut self.down.io, &self.out, self.idle).await;
        self.out.clear();
        written.map_err(|e| {
            self.closed = true;
            DownstreamError::Write(e)
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Downstream for H1Request<'_, S> {
    const PROTOCOL: &'static str = "http/1.1";

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        self.decode(true).await
    }

    async fn prefetch(&mut self) -> Result<(Bytes, bool), DownstreamError> {
        // A Content-Length body can start streaming as it is; a chunked one must show a valid
        // first chunk line first (and keeps its framing, for its trailers).
        let start = self.decode(self.chunked).await?.unwrap_or_default();
        Ok((start, !self.chunked && self.decoder.is_done()))
    }

    async fn read_trailers(&mut self) -> Result<Option<HeaderMap>, DownstreamError> {
        Ok(self
            .trailers
            .take()
            .map(|t| parse_trailers(&t))
            .filter(|t| !t.is_empty()))
    }

    fn received(&self) -> u64 {
        self.decoder.total
    }

    async fn send_interim(&mut self, head: &ResponseHead) {
        if self.version == Version::Http11 {
            let mut out = BytesMut::new();
            write_response_head(&mut out, head, "", Encoder::Raw, true, self.version);
            let _ = timed_write(&mut self.down.io, &out, self.idle).await;
        }
    }

    async fn send_head(
        &mut self,
        head: ResponseHead,
        request_id: &str,
    ) -> Result<(), DownstreamError> {
        let head = &head;
        let (encoder, keep_alive) = response_framing(self.version, head, self.client_keep_alive);
        self.encoder = encoder;
        self.keep_alive = keep_alive;
        // One allocation for the head and a small body, not a growth step per header line.
        self.out.reserve(8 * 1024);
        let version = self.version;
        write_response_head(
            &mut self.out,
            head,
            request_id,
            encoder,
            keep_alive,
            version,
        );
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes) -> Result<(), DownstreamError> {
        // The newest piece stays held: the one that completes the body leaves with the end.
        if !self.out.is_empty() && self.out.len() + data.len() > FLUSH_AT {
            self.write_out().await?;
        }
        self.encoder.encode(&Frame::Data(data), &mut self.out);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DownstreamError> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.write_out().await
    }

    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), DownstreamError> {
        match trailers {
            Some(t) => self
                .encoder
                .encode(&Frame::Trailers(trailer_lines(&t)), &mut self.out),
            None => self.encoder.finish(&mut self.out),
        }
        self.write_out().await?;
        self.down.io.flush().await.map_err(|e| {
            self.closed = true;
            DownstreamError::Write(e)
        })
    }

    /// Sends a refusal. The connection stays open for the next request when the client keeps
    /// it alive and nothing of this request is left unread (no body, or all of it read);
    /// otherwise it closes, since the rest of the body would be read as the next request.
    async fn reject(&mut self, r: &Reject, request_id: Option<&str>) {
        // A body that is already here whole (it came with the head) is dropped unread.
        while !self.continue_owed && !self.decoder.is_done() {
            match self.decoder.decode(&mut self.down.buf) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let keep =
            !self.closed && self.client_keep_alive && !self.continue_owed && self.decoder.is_done();
        self.out.clear();
        r.write_h1(&mut self.out, request_id, keep);
        if self.write_out().await.is_ok() && keep {
            self.keep_alive = true;
            return;
        }
        self.abort().await;
    }

    async fn abort(&mut self) {
        self.closed = true;
        let _ = self.down.io.shutdown().await;
    }
}

/// How the response body is framed toward the client, and whether the client connection stays
/// open after it.
fn response_framing(
    version: Version,
    resp: &ResponseHead,
    client_keep_alive: bool,
) -> (Encoder, bool) {
    match resp.body {
        BodyKind::Empty | BodyKind::Length(_) => (Encoder::Raw, client_keep_alive),
        BodyKind::Chunked | BodyKind::CloseDelimited => {
            if version == Version::Http11 {
                (Encoder::Chunked, client_keep_alive)
            } else {
                // An HTTP/1.0 client cannot take chunked: the body ends when the connection does.
                (Encoder::Raw, false)
            }
        }
    }
}

/// Method and path (without query) from a head that failed validation, when they are plain
/// visible ASCII; nothing else of the request is kept.
fn request_line(head: &[u8]) -> (Option<String>, Option<String>) {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(head.len()).min(2048);
    let mut parts = head[..line_end].split(|&b| b == b' ');
    let ascii = |b: &[u8]| {
        (!b.is_empty() && b.iter().all(|c| c.is_ascii_graphic()))
            .then(|| String::from_utf8_lossy(b).into_owned())
    };
    let method = parts.next().and_then(ascii).filter(|m| m.len() <= 16);
    let path = parts
        .next()
        .and_then(|t| ascii(&t[..memchr::memchr(b'?', t).unwrap_or(t.len())]))
        .filter(|p| p.starts_with('/') && p.len() <= 256);
    (method, path)
}

fn write_response_head(
    out: &mut BytesMut,
    resp: &ResponseHead,
    request_id: &str,
    encoder: Encoder,
    keep_alive: bool,
    client_version: Version,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(resp.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let hop_by_hop = h1::hop_by_hop(&resp.headers);
    for (name, value) in &resp.headers {
        if hop_by_hop(name) || name == "x-request-id" {
            continue;
        }
        if name == header::CONTENT_LENGTH
            && !matches!(resp.body, BodyKind::Length(_) | BodyKind::Empty)
        {
            continue;
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if resp.status.is_informational() {
        out.extend_from_slice(b"\r\n");
        return;
    }
    if !request_id.is_empty() {
        put_header(out, b"x-request-id", request_id.as_bytes());
    }
    if encoder == Encoder::Chunked {
        put_header(out, b"transfer-encoding", b"chunked");
    }
    match (keep_alive, client_version) {
        (false, _) => put_header(out, b"connection", b"close"),
        (true, Version::Http10) => put_header(out, b"connection", b"keep-alive"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::H1Request;
    use crate::downstream::Downstream;
    use crate::protocol::h1::{self, Limits, Reader};

    const LIMITS: Limits = Limits {
        max_request_line: 8 * 1024,
        max_head: 64 * 1024,
        max_headers: 100,
    };

    /// A request sent at once, read as a connection reads it: the head from the first small read
    /// of an idle connection, then the body's start as the request sequence asks for it.
    async fn prefetched(request: &[u8]) -> (String, bool) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(request).await.expect("write");
        let mut down = Reader::new(server);
        assert!(down.fill_idle().await.expect("read") > 0);
        let head = down
            .read_head(&LIMITS)
            .await
            .expect("head")
            .expect("a head");
        let req = h1::parse_request(&head, &LIMITS, u64::MAX).expect("parse");
        let pace = crate::protocol::pace::BodyPace {
            allowance: Duration::from_secs(5),
            min_rate: 0,
        };
        let mut r = H1Request::new(&mut down, &req, Duration::from_secs(5), u64::MAX, pace);
        let (start, whole) = r.prefetch().await.expect("prefetch");
        (String::from_utf8_lossy(&start).into_owned(), whole)
    }

    /// A small body sent with its head is taken whole before the upstream is contacted, even
    /// past the connection's first small read, so head and body leave in one write; only bytes
    /// already there are taken.
    #[tokio::test(flavor = "current_thread")]
    async fn a_body_sent_with_its_head_is_prefetched_whole() {
        let body = "b".repeat(1024);
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: moat.test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(prefetched(request.as_bytes()).await, (body, true));

        // Half of the body sent: what is there, and the rest streams.
        let request = "POST / HTTP/1.1\r\nhost: moat.test\r\ncontent-length: 10\r\n\r\n01234";
        assert_eq!(
            prefetched(request.as_bytes()).await,
            ("01234".to_owned(), false)
        );

        // A chunked body keeps its framing (trailers may follow), however much of it is here.
        let request = "POST / HTTP/1.1\r\nhost: moat.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            prefetched(request.as_bytes()).await,
            ("hello".to_owned(), false)
        );
    }
}
