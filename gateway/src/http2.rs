//! HTTP/2 downstream, on the `h2` crate: a connection negotiated with ALPN `h2` on the same TLS
//! listener as HTTP/1.1 (or cleartext h2c on a loopback listener) — framing and I/O only.
//!
//! Each stream becomes one [`RequestHead`] and is driven by the request sequence
//! ([`crate::pipeline`]) through `H2Request`, this protocol's [`Downstream`]: the same stages,
//! in the same order, as an HTTP/1.1 request.
//!
//! Bodies stream both ways under flow control: request DATA is acknowledged (its window
//! released) only when the next piece is asked for, that is once the piece before was passed
//! on, and response bytes are sent only as the client's window allows, so a slow client makes
//! moat wait, not buffer.
//!
//! A refused stream gets its error response and the connection carries on; a connection that
//! breaks the protocol or trips a limit gets GOAWAY from `h2` and a `reject` audit record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{header, HeaderMap, HeaderName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout, Instant};

use crate::downstream::Downstream;
use crate::error::{DownstreamError, Reject};
use crate::pipeline;
use crate::protocol::h1::H1Error;
use crate::protocol::io::{send_flow_controlled, Gather};
use crate::protocol::pace::{BodyClock, BodyPace};
use crate::protocol::{BodyKind, ClientText, RequestHead, ResponseHead, Version};
use crate::route::{Peer, Route, Routes};

mod watch;

/// What every stream of one connection shares.
struct Ctx {
    peer: Peer,
    route: Arc<Route>,
}

/// Serves one HTTP/2 connection (already past TLS, ALPN `h2`) until it closes.
pub async fn serve<S>(io: S, peer: Peer, mut routes: Routes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = peer.text.clone();
    let route = routes.current().clone();
    let l = &route.http2;
    let alarm = Arc::new(watch::Alarm::default());
    let budget = watch::Budget {
        burst: l.max_control_frames,
        per_second: l.control_frames_per_second,
    };
    let io = watch::Watched::new(io, budget, alarm.clone());
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(l.max_concurrent_streams)
        .max_header_list_size(l.max_header_list_bytes)
        .initial_window_size(l.initial_stream_window)
        .initial_connection_window_size(l.initial_connection_window)
        .max_frame_size(l.max_frame_size)
        .max_send_buffer_size(l.max_send_buffer)
        .max_pending_accept_reset_streams(l.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(l.max_local_error_reset_streams));
    let handshake = timeout(route.http.header_timeout, builder.handshake::<_, Bytes>(io));
    let mut conn = tokio::select! {
        c = handshake => match c {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                connection_error(&route, &client, &e);
                return;
            }
            Err(_) => return,
        },
        b = alarm.rung() => {
            breached(&route, &client, b);
            return;
        }
    };
    let mut ctx = Arc::new(Ctx {
        peer,
        route: route.clone(),
    });
    let active = Arc::new(AtomicUsize::new(0));
    // Keep-alive PINGs: a peer that stops answering is cut off.
    let dead = Arc::new(tokio::sync::Notify::new());
    let pinger = conn.ping_pong().map(|mut pp| {
        let (every, within) = (l.keepalive_interval, l.keepalive_timeout);
        let dead = dead.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match timeout(within, pp.ping(h2::Ping::opaque())).await {
                    Ok(Ok(_)) => {}
                    _ => {
                        dead.notify_one();
                        return;
                    }
                }
            }
        })
    });
    let mut drain = route.drain.clone();
    let mut closing = false;
    // Once moat has said GOAWAY abruptly, the connection gets a moment to flush it, no more.
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => route.http.keepalive_timeout,
        };
        let next = tokio::select! {
            n = timeout(wait, conn.accept()) => n,
            b = alarm.rung(), if deadline.is_none() => {
                tracing::debug!(client = %client.addr, breach = ?b, "HTTP/2 client broke the connection's rules: GOAWAY");
                conn.abrupt_shutdown(b.reason());
                breached(&route, &client, b);
                deadline = Some(Instant::now() + Duration::from_secs(1));
                continue;
            }
            () = dead.notified(), if deadline.is_none() => {
                tracing::debug!(client = %client.addr, "HTTP/2 keep-alive PING unanswered: closing");
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                deadline = Some(Instant::now() + Duration::from_secs(1));
                continue;
            }
            r = drain.wait_for(|d| *d), if !closing => {
                // Shutting down: GOAWAY, and the streams in flight finish.
                let _ = r;
                conn.graceful_shutdown();
                closing = true;
                continue;
            }
        };
        let Ok(next) = next else {
            if deadline.is_some() {
                break;
            }
            // An idle connection (no stream open for the keep-alive timeout) is closed gracefully.
            if active.load(Ordering::Relaxed) == 0 && !closing {
                conn.graceful_shutdown();
                closing = true;
            }
            continue;
        };
        match next {
            None => break,
            Some(Ok((req, respond))) => {
                // A reload applies to streams opened after it.
                if !Arc::ptr_eq(&ctx.route, routes.latest()) {
                    ctx = Arc::new(Ctx {
                        peer: ctx.peer.clone(),
                        route: routes.current().clone(),
                    });
                }
                let ctx = ctx.clone();
                let counted = Counted::new(&active);
                tokio::spawn(async move {
                    // Dropped when the task ends, panics included.
                    let _counted = counted;
                    handle(req, respond, &ctx).await;
                });
            }
            Some(Err(e)) => {
                connection_error(&route, &client, &e);
                break;
            }
        }
    }
    if let Some(p) = pinger {
        p.abort();
    }
    // Streams still running hold the connection's handles; wait for them (they are bounded by
    // their own timeouts) so a drain covers them.
    while active.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One running stream task, counted while it lives: the count goes down when the task ends
/// however it ends (a panic unwinds through the drop), so the connection's drain never waits on
/// a task that is gone.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection ended by a protocol error or a tripped limit: logged and recorded.
fn connection_error(route: &Route, client: &ClientText, e: &h2::Error) {
    if e.is_io() && !e.is_go_away() {
        // The client went away.
        return;
    }
    let detail = match e.reason() {
        Some(r) => format!("HTTP/2 connection error: {r:?} ({e})"),
        None => format!("HTTP/2 connection error: {e}"),
    };
    refuse_connection(route, client, &detail);
}

/// A connection cut off for what [`watch`] found: recorded as a refusal.
fn breached(route: &Route, client: &ClientText, b: watch::Breach) {
    let detail = match b {
        watch::Breach::Preface { frame_type } => format!(
            "HTTP/2 connection error: PROTOCOL_ERROR (the client's first frame was of type {frame_type:#x}, not SETTINGS)"
        ),
        watch::Breach::Flood => format!(
            "HTTP/2 connection error: ENHANCE_YOUR_CALM (more than {} frames without a request at once, or more than {} a second)",
            route.http2.max_control_frames, route.http2.control_frames_per_second
        ),
    };
    refuse_connection(route, client, &detail);
}

/// Records a connection ended for breaking the protocol (GOAWAY: no HTTP status was sent).
fn refuse_connection(route: &Route, client: &ClientText, detail: &str) {
    pipeline::record_connection_refusal(route, "h2_protocol_error", detail, client);
}

/// Turns the head of a stream into the request every stage sees.
fn request_head(
    parts: &mut http::request::Parts,
    end_stream: bool,
    route: &Route,
) -> Result<RequestHead, H1Error> {
    let malformed = |reason| H1Error::Malformed { reason };
    if parts.method == http::Method::CONNECT {
        return Err(H1Error::MethodNotAllowed);
    }
    if parts.headers.len() > route.http.max_headers {
        return Err(H1Error::TooManyHeaders);
    }
    let target = parts
        .uri
        .path_and_query()
        .map(http::uri::PathAndQuery::as_str)
        .filter(|t| t.starts_with('/'))
        .ok_or(malformed("target is not origin-form"))?;
    let authority = parts.uri.authority().map(http::uri::Authority::as_str);
    let host_header = match parts.headers.get_all(header::HOST).iter().count() {
        0 => None,
        1 => parts
            .headers
            .get(header::HOST)
            .map(http::HeaderValue::as_bytes),
        _ => return Err(malformed("more than one host")),
    };
    let host: Bytes = match (authority, host_header) {
        (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h) => {
            return Err(malformed("host differs from :authority"))
        }
        (Some(a), _) => Bytes::copy_from_slice(a.as_bytes()),
        (None, Some(h)) => Bytes::copy_from_slice(h),
        (None, None) => return Err(malformed("no :authority or host")),
    };
    let host_value =
        http::HeaderValue::from_maybe_shared(host.clone()).map_err(|_| malformed("bad host"))?;
    let body = if end_stream {
        BodyKind::Empty
    } else {
        let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
        match (lengths.next(), lengths.next()) {
            (None, _) => BodyKind::Chunked,
            (Some(v), None) => {
                let n = crate::protocol::h1::parse_content_length(v.as_bytes())?;
                if n > route.http.max_request_body_bytes {
                    return Err(H1Error::BodyTooLarge);
                }
                if n == 0 {
                    BodyKind::Empty
                } else {
                    BodyKind::Length(n)
                }
            }
            (Some(_), Some(_)) => return Err(malformed("more than one content-length")),
        }
    };
    // Valid: the header map moves into the request (method and path stay for the log).
    let mut headers = std::mem::take(&mut parts.headers);
    headers.insert(header::HOST, host_value);
    Ok(RequestHead {
        method: parts.method.clone(),
        target: Bytes::copy_from_slice(target.as_bytes()),
        version: Version::Http11,
        headers,
        host,
        body,
        keep_alive: true,
        expect_continue: false,
    })
}

/// The most of a refused request's body read and dropped, and how long each piece is waited for.
const DISCARD_BYTES: usize = 1024 * 1024;
const DISCARD_WAIT: Duration = Duration::from_secs(1);

/// Before a refusal of a request whose body has not ended: reads the rest of the body (up to
/// `DISCARD_BYTES`, each piece within `DISCARD_WAIT`) and drops it, as nginx does, so that the
/// stream ends with the client's END_STREAM and the answer after it. Answering first and
/// dropping the stream would reset it (RST_STREAM `NO_ERROR`, which RFC 9113 §8.1 allows), and
/// some clients (curl 7.88) then discard the response they already received; answering first
/// and reading on lets them end the upload short, which `h2` resets as a protocol error.
async fn discard(recv: &mut RecvStream) {
    let mut left = DISCARD_BYTES;
    while !recv.is_end_stream() {
        match timeout(DISCARD_WAIT, recv.data()).await {
            Ok(Some(Ok(d))) if d.len() <= left => {
                left -= d.len();
                let _ = recv.flow_control().release_capacity(d.len());
            }
            _ => return,
        }
    }
}

/// Sends a complete response for a refused stream.
fn send_reject(respond: &mut SendResponse<Bytes>, r: &Reject, request_id: Option<&str>) {
    if let Ok(mut s) = respond.send_response(r.h2_head(request_id), false) {
        let _ = s.send_data(Bytes::from(r.body()), true);
    }
}

/// One stream: its head checked, then the request sequence.
async fn handle(req: http::Request<RecvStream>, mut respond: SendResponse<Bytes>, ctx: &Ctx) {
    let route = &*ctx.route;
    let started = Instant::now();
    let (mut parts, recv) = req.into_parts();
    let refuse = |respond: &mut SendResponse<Bytes>, parts: &http::request::Parts, e: &H1Error| {
        let r = Reject::from(e);
        let (method, path) = (parts.method.to_string(), parts.uri.path().to_owned());
        let detail = e.to_string();
        pipeline::record_refusal(route, &r, Some(method), Some(path), &detail, &ctx.peer.text);
        send_reject(respond, &r, None);
    };
    let head = match request_head(&mut parts, recv.is_end_stream(), route) {
        Ok(r) => r,
        Err(e) => return refuse(&mut respond, &parts, &e),
    };
    let (max, idle) = (
        route.http.max_request_body_bytes,
        route.http.body_idle_timeout,
    );
    let mut stream = H2Request::new(respond, recv, max, idle, route.body_pace());
    if head.body == BodyKind::Empty && !stream.recv.is_end_stream() {
        if let Err(e) = stream.declared_empty().await {
            return refuse(&mut stream.respond, &parts, &e);
        }
    }
    // The request's state lives in its own allocation: the stream task stays small, so
    // spawning and ending it does not copy the whole state (several KiB) around.
    Box::pin(pipeline::serve(
        &mut stream,
        route,
        &ctx.peer,
        head,
        started,
    ))
    .await;
}

/// Body bytes taken with a request's head at most (when already received).
const PREFETCH: usize = 16 * 1024;

/// One HTTP/2 stream, as the request sequence sees it.
pub(crate) struct H2Request {
    respond: SendResponse<Bytes>,
    recv: RecvStream,
    /// The response head, held until the first body piece before the newest goes out (or the
    /// response ends): a small response leaves in one go, after its audit record.
    head: Option<http::Response<()>>,
    /// The response body's stream, once its head is sent.
    send: Option<SendStream<Bytes>>,
    /// The newest response body piece, held: the one that completes the body leaves with the
    /// end of the stream.
    held: Option<Bytes>,
    received: u64,
    max: u64,
    idle: Duration,
    /// The body's account under the listener's pace.
    clock: BodyClock,
    /// Bytes of the last piece handed out, acknowledged when the next is asked for.
    unreleased: usize,
}

impl H2Request {
    fn new(
        respond: SendResponse<Bytes>,
        recv: RecvStream,
        max: u64,
        idle: Duration,
        pace: BodyPace,
    ) -> Self {
        Self {
            respond,
            recv,
            head: None,
            send: None,
            held: None,
            received: 0,
            max,
            idle,
            clock: BodyClock::new(pace),
            unreleased: 0,
        }
    }

    /// Waits for the end of a stream that declared `content-length: 0` but left its stream
    /// open: nothing goes upstream before, so DATA that breaks the declared length (H2.CL) is
    /// refused before the upstream sees the request.
    async fn declared_empty(&mut self) -> Result<(), H1Error> {
        loop {
            match self.clock.wait(0, self.idle, self.recv.data()).await? {
                None => return Ok(()),
                Some(Err(e)) => return Err(body_error(e)),
                Some(Ok(d)) if d.is_empty() => {}
                Some(Ok(_)) => return Err(MISFRAMED),
            }
        }
    }

    /// Gives the client's window back the last piece, now that it has been passed on.
    fn release(&mut self) {
        let n = std::mem::take(&mut self.unreleased);
        if n > 0 {
            let _ = self.recv.flow_control().release_capacity(n);
        }
    }

    /// The response body's stream, its held head sent first.
    fn open(&mut self) -> Result<&mut SendStream<Bytes>, DownstreamError> {
        if let Some(head) = self.head.take() {
            let s = self
                .respond
                .send_response(head, false)
                .map_err(write_error)?;
            self.send = Some(s);
        }
        self.send
            .as_mut()
            .ok_or_else(|| DownstreamError::Write(std::io::Error::other("response head not sent")))
    }

    /// Sends the held body piece (and the head before it), ending the stream when `end`.
    async fn send_held(&mut self, end: bool) -> Result<(), DownstreamError> {
        let (held, idle) = (self.held.take().unwrap_or_default(), self.idle);
        if held.is_empty() && !end {
            return self.open().map(|_| ());
        }
        send_flow_controlled(self.open()?, held, idle, end)
            .await
            .map_err(DownstreamError::Write)
    }
}

fn write_error(e: h2::Error) -> DownstreamError {
    DownstreamError::Write(std::io::Error::other(e))
}

fn stream_error(e: h2::Error) -> DownstreamError {
    DownstreamError::Request(body_error(e))
}

/// A request body that does not add up to its declared length.
const MISFRAMED: H1Error = H1Error::Malformed {
    reason: "the body broke HTTP/2 framing (DATA beyond or short of content-length)",
};

fn body_error(e: h2::Error) -> H1Error {
    if e.is_library() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
        // `h2` reset the stream for what the client sent: the request was malformed (H2.CL
        // among others), not abandoned.
        return MISFRAMED;
    }
    H1Error::Io(std::io::Error::other(e))
}

impl Downstream for H2Request {
    const PROTOCOL: &'static str = "h2";

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        self.release();
        loop {
            match self
                .clock
                .wait(self.received, self.idle, self.recv.data())
                .await
            {
                Err(e) => return Err(e.into()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(stream_error(e)),
                Ok(Some(Ok(d))) => {
                    self.received += d.len() as u64;
                    if self.received > self.max {
                        return Err(H1Error::BodyTooLarge.into());
                    }
                    self.unreleased = d.len();
                    if !d.is_empty() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    async fn prefetch(&mut self) -> Result<(Bytes, bool), DownstreamError> {
        // The DATA frames that came with the head (up to a frame's default size), without
        // waiting for more.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut got = Gather::default();
        while got.len() < PREFETCH {
            let d = match self.recv.poll_data(&mut cx) {
                Poll::Ready(Some(Ok(d))) => d,
                Poll::Ready(Some(Err(e))) => return Err(stream_error(e)),
                Poll::Ready(None) | Poll::Pending => break,
            };
            self.received += d.len() as u64;
            if self.received > self.max {
                return Err(H1Error::BodyTooLarge.into());
            }
            self.unreleased += d.len();
            got.push(d);
        }
        let start = got.into_bytes().unwrap_or_default();
        Ok((start, self.recv.is_end_stream()))
    }

    async fn read_trailers(&mut self) -> Result<Option<HeaderMap>, DownstreamError> {
        self.release();
        match self
            .clock
            .wait(self.received, self.idle, self.recv.trailers())
            .await
        {
            Err(e) => Err(e.into()),
            Ok(Err(e)) => Err(stream_error(e)),
            Ok(Ok(t)) => Ok(t),
        }
    }

    fn received(&self) -> u64 {
        self.received
    }

    async fn send_interim(&mut self, _head: &ResponseHead) {}

    async fn send_head(
        &mut self,
        head: ResponseHead,
        request_id: &str,
    ) -> Result<(), DownstreamError> {
        self.head = Some(response_head(head, request_id));
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes) -> Result<(), DownstreamError> {
        // The newest piece stays held: the one that completes the body leaves with the end.
        if data.is_empty() {
            return Ok(());
        }
        match self.held.replace(data) {
            Some(before) => {
                let idle = self.idle;
                send_flow_controlled(self.open()?, before, idle, false)
                    .await
                    .map_err(DownstreamError::Write)
            }
            None => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), DownstreamError> {
        self.send_held(false).await
    }

    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), DownstreamError> {
        if trailers.is_none() && self.held.is_none() {
            if let Some(head) = self.head.take() {
                // A response without a body: one HEADERS frame that ends the stream.
                self.send = Some(
                    self.respond
                        .send_response(head, true)
                        .map_err(write_error)?,
                );
                return Ok(());
            }
        }
        match trailers {
            None => self.send_held(true).await,
            Some(t) => {
                self.send_held(false).await?;
                self.open()?.send_trailers(t).map_err(write_error)
            }
        }
    }

    async fn reject(&mut self, r: &Reject, request_id: Option<&str>) {
        // The rest of the body first, then the answer: a client that receives a complete
        // response while still uploading may end its stream short of its content-length
        // (curl 7.88 does), which `h2` must reset as a protocol error.
        self.release();
        discard(&mut self.recv).await;
        send_reject(&mut self.respond, r, request_id);
    }

    async fn abort(&mut self) {
        match &mut self.send {
            Some(s) => s.send_reset(h2::Reason::INTERNAL_ERROR),
            None => self.respond.send_reset(h2::Reason::INTERNAL_ERROR),
        }
    }
}

/// The response head for the client: hop-by-hop and connection-specific fields removed, the
/// request id added, the length restated when the body's is known. The upstream's header map
/// is edited in place, not copied.
///
/// `date` and the request id change from one response to the next: they go out as never-indexed
/// literals. Indexed, each new value would take a place in the connection's HPACK table, and the
/// encoder compares every later value with all the earlier ones of the same name (the h2
/// crate keeps them in one list), which under load cost more than the bytes it saves.
fn response_head(resp: ResponseHead, request_id: &str) -> http::Response<()> {
    let ResponseHead {
        status,
        mut headers,
        body,
        ..
    } = resp;
    let length = match body {
        BodyKind::Length(n) => Some(n),
        _ => None,
    };
    // A length the upstream stated as moat sends it (one value, plain decimal) stays as it is.
    let stated = length.is_some_and(|n| {
        let mut all = headers.get_all(header::CONTENT_LENGTH).iter();
        all.next()
            .is_some_and(|v| canonical_length(v.as_bytes()) == Some(n))
            && all.next().is_none()
    });
    let dropped = |name: &HeaderName, hop_by_hop: &dyn Fn(&HeaderName) -> bool| {
        hop_by_hop(name)
            || name == "x-request-id"
            || (name == header::CONTENT_LENGTH && body != BodyKind::Empty && !stated)
    };
    // One name at a time, Connection itself last: the names it lists are hop-by-hop too.
    loop {
        let next = {
            let hop_by_hop = crate::protocol::h1::hop_by_hop(&headers);
            headers
                .keys()
                .find(|n| *n != header::CONNECTION && dropped(n, &hop_by_hop))
                .cloned()
        };
        match next {
            Some(name) => {
                headers.remove(&name);
            }
            None => break,
        }
    }
    headers.remove(header::CONNECTION);
    for (name, value) in headers.iter_mut() {
        if name == header::DATE {
            value.set_sensitive(true);
        }
    }
    if let (Some(n), false) = (length, stated) {
        headers.insert(header::CONTENT_LENGTH, n.into());
    }
    if let Some(id) = crate::protocol::request_id_value(request_id) {
        headers.insert("x-request-id", id);
    }
    let mut r = http::Response::new(());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// The value of a length written as moat writes one: no leading zero.
fn canonical_length(v: &[u8]) -> Option<u64> {
    let leading_zero = v.len() > 1 && v[0] == b'0';
    (!leading_zero)
        .then(|| crate::protocol::h1::parse_content_length(v).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A stream task that panics is no longer counted, so the connection's drain ends.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_stream_task_is_no_longer_counted() {
        let active = Arc::new(AtomicUsize::new(0));
        let counted = super::Counted::new(&active);
        assert_eq!(active.load(Ordering::Acquire), 1);
        let task = tokio::spawn(async move {
            let _counted = counted;
            panic!("a stream task panics");
        });
        assert!(task.await.is_err(), "the task panicked");
        assert_eq!(active.load(Ordering::Acquire), 0);
    }

    /// What a server writes, kept for the test to read.
    struct Recorded {
        io: tokio::io::DuplexStream,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Recorded {
        /// The client's end, the server's recorded end, and what the server writes.
        fn pair() -> (
            tokio::io::DuplexStream,
            Self,
            Arc<std::sync::Mutex<Vec<u8>>>,
        ) {
            let (client_io, io) = tokio::io::duplex(64 * 1024);
            let written = Arc::new(std::sync::Mutex::new(Vec::new()));
            let recorded = Self {
                io,
                written: written.clone(),
            };
            (client_io, recorded, written)
        }
    }

    fn response(
        headers: http::HeaderMap,
        body: crate::protocol::BodyKind,
    ) -> crate::protocol::ResponseHead {
        crate::protocol::ResponseHead {
            status: http::StatusCode::OK,
            version: crate::protocol::Version::Http11,
            headers,
            body,
            keep_alive: true,
        }
    }

    impl tokio::io::AsyncRead for Recorded {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Recorded {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
            if let std::task::Poll::Ready(Ok(n)) = &r {
                self.written
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(&buf[..*n]);
            }
            r
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// The upstream's head becomes the client's in place: hop-by-hop fields go (with the names
    /// Connection lists), the upstream's request id is replaced, and the length is restated
    /// unless the upstream already stated it the way moat would.
    #[test]
    fn the_response_head_keeps_end_to_end_fields_only() {
        let mut h = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "upstream"),
            ("content-length", "007"),
            ("date", "Thu, 03 Dec 2026 19:00:00 GMT"),
            ("x-end", "kept"),
        ] {
            h.append(name, http::HeaderValue::from_static(value));
        }
        let r = super::response_head(response(h, crate::protocol::BodyKind::Length(7)), "ab");
        let h = r.headers();
        let mut names: Vec<&str> = h.keys().map(http::HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "date", "x-end", "x-request-id"]);
        assert_eq!(h["content-length"], "7");
        assert_eq!(h["x-request-id"], "ab");
        assert!(h["date"].is_sensitive());

        let mut h = http::HeaderMap::new();
        h.append("content-length", http::HeaderValue::from_static("12"));
        let r = super::response_head(response(h, crate::protocol::BodyKind::Length(12)), "ab");
        assert_eq!(r.headers().get_all("content-length").iter().count(), 1);
        assert_eq!(r.headers()["content-length"], "12");
        let mut h = http::HeaderMap::new();
        h.append("content-length", http::HeaderValue::from_static("12"));
        let r = super::response_head(response(h, crate::protocol::BodyKind::Chunked), "ab");
        assert!(!r.headers().contains_key("content-length"));

        assert_eq!(super::canonical_length(b"0"), Some(0));
        assert_eq!(super::canonical_length(b"120"), Some(120));
        for bad in [&b""[..], b"012", b"+1", b"1 ", b"99999999999999999999999"] {
            assert_eq!(super::canonical_length(bad), None, "{bad:?}");
        }
    }

    /// The request id and `date` go out as never-indexed literals (RFC 7541 §6.2.3), so values
    /// that change with every response do not take over the connection's HPACK table.
    #[tokio::test(flavor = "current_thread")]
    async fn request_ids_and_dates_are_not_indexed_by_hpack() {
        let (client_io, recorded, written) = Recorded::pair();
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(recorded).await.expect("handshake");
            for i in 0..3 {
                let (_req, mut respond) = conn.accept().await.expect("stream").expect("ok");
                let mut headers = http::HeaderMap::new();
                let date = format!("Thu, 03 Dec 2026 13:34:1{i} GMT");
                headers.insert(http::header::DATE, date.parse().expect("date"));
                let head = response(headers, crate::protocol::BodyKind::Empty);
                let id = format!("{i:032x}");
                respond
                    .send_response(super::response_head(head, &id), true)
                    .expect("response");
            }
            std::future::poll_fn(|cx| conn.poll_closed(cx)).await.ok();
        });
        let (mut client, conn) = h2::client::handshake(client_io).await.expect("handshake");
        tokio::spawn(conn);
        for _ in 0..3 {
            let req = http::Request::get("http://moat.test/")
                .body(())
                .expect("request");
            let (resp, _) = client.send_request(req, true).expect("send");
            let resp = resp.await.expect("response");
            assert!(resp.headers().contains_key("x-request-id"));
        }
        drop(client);
        let _ = server.await;
        let bytes = written.lock().expect("not poisoned").clone();
        // Walk the frames; each HEADERS block is `:status 200` (indexed, 0x88), `date`, then
        // the id.
        let mut blocks = 0;
        for (kind, _, _, payload) in frames(&bytes) {
            if kind == HEADERS {
                blocks += 1;
                assert_eq!(payload[0], 0x88, "{payload:02x?}");
                // Never indexed, name from static entry 33 (`date`): 0x1f then 33 - 15; with
                // incremental indexing it would be 0x61.
                assert_eq!(payload[1..3], [0x1f, 0x12], "{payload:02x?}");
                let id = 3 + 1 + usize::from(payload[3] & 0x7f);
                // 0001 0000: never indexed, new name; with incremental indexing it is 0x40.
                assert_eq!(payload[id], 0x10, "{payload:02x?}");
            }
        }
        assert_eq!(blocks, 3);
    }

    /// The frames a server wrote: type, flags, stream, payload.
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, &[u8])> {
        let (mut at, mut out) = (0, Vec::new());
        while at + 9 <= bytes.len() {
            let len = usize::from(bytes[at]) << 16
                | usize::from(bytes[at + 1]) << 8
                | usize::from(bytes[at + 2]);
            let id =
                u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
            let payload = &bytes[at + 9..(at + 9 + len).min(bytes.len())];
            out.push((bytes[at + 3], bytes[at + 4], id & 0x7fff_ffff, payload));
            at += 9 + len;
        }
        out
    }

    /// A stream's frames as type, flags, stream and payload length.
    fn on_stream(bytes: &[u8], stream: u32) -> Vec<(u8, u8, u32, usize)> {
        frames(bytes)
            .into_iter()
            .filter(|f| f.2 == stream)
            .map(|(kind, flags, id, payload)| (kind, flags, id, payload.len()))
            .collect()
    }

    /// A client's one request on a new connection over `io` (the connection driven by a task).
    async fn client_stream(
        io: tokio::io::DuplexStream,
        method: http::Method,
        end: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
        let (mut client, conn) = h2::client::handshake(io).await.expect("handshake");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri("http://moat.test/")
            .body(())
            .expect("request");
        client.send_request(req, end).expect("send")
    }

    /// The server side of a connection's first stream, and the task that drives the connection.
    async fn first_stream<T>(io: T) -> (super::H2Request, tokio::task::JoinHandle<()>)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut conn = h2::server::handshake(io).await.expect("handshake");
        let (req, respond) = conn.accept().await.expect("stream").expect("ok");
        let driver = tokio::spawn(async move { while conn.accept().await.is_some() {} });
        let idle = std::time::Duration::from_secs(5);
        let pace = crate::protocol::pace::BodyPace {
            allowance: idle,
            min_rate: 0,
        };
        let r = super::H2Request::new(respond, req.into_body(), u64::MAX, idle, pace);
        (r, driver)
    }

    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const END_STREAM: u8 = 0x1;

    /// Drives one response through `H2Request` as the request sequence does: its head, `body`
    /// in pieces, then the end (with `trailers`). Returns the frames written for the stream
    /// before the end, and all of them.
    async fn responded(
        body: &'static [&'static [u8]],
        trailers: bool,
    ) -> (Vec<(u8, u8, u32, usize)>, Vec<(u8, u8, u32, usize)>) {
        let (client_io, recorded, written) = Recorded::pair();
        let client = tokio::spawn(async move {
            let (resp, _) = client_stream(client_io, http::Method::GET, true).await;
            let mut body = resp.await.expect("response").into_body();
            while let Some(d) = body.data().await {
                let n = d.expect("data").len();
                let _ = body.flow_control().release_capacity(n);
            }
            let _ = body.trailers().await;
        });
        let (mut r, driver) = first_stream(recorded).await;
        let head = response(http::HeaderMap::new(), crate::protocol::BodyKind::Chunked);
        use crate::downstream::Downstream;
        r.send_head(head, "0123").await.expect("head");
        for piece in body {
            r.send_data(bytes::Bytes::from_static(piece))
                .await
                .expect("data");
        }
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        let before = on_stream(&written.lock().expect("not poisoned"), 1);
        let t = trailers.then(|| {
            let mut t = http::HeaderMap::new();
            t.insert("x-trailer", http::HeaderValue::from_static("1"));
            t
        });
        r.finish(t).await.expect("finish");
        client.await.expect("client read the response");
        driver.abort();
        let all = on_stream(&written.lock().expect("not poisoned"), 1);
        (before, all)
    }

    /// A response leaves whole at its end: nothing before (the head and the newest piece wait
    /// for it, as for the audit record), and the last DATA frame carries END_STREAM (no empty
    /// frame after it); a response without a body is one HEADERS frame that ends the stream.
    #[tokio::test(flavor = "current_thread")]
    async fn a_response_leaves_whole_with_its_end() {
        let (before, all) = responded(&[b"hello"], false).await;
        assert_eq!(before, []);
        assert_eq!(all, [(HEADERS, 0x4, 1, all[0].3), (DATA, END_STREAM, 1, 5)]);

        let (before, all) = responded(&[], false).await;
        assert_eq!(before, []);
        assert_eq!(all, [(HEADERS, 0x4 | END_STREAM, 1, all[0].3)]);

        // Earlier pieces go out as the next arrives; the newest waits for the end.
        let (before, all) = responded(&[b"one", b"two!"], false).await;
        assert_eq!(before, [(HEADERS, 0x4, 1, before[0].3), (DATA, 0, 1, 3)]);
        assert_eq!(all[1..], [(DATA, 0, 1, 3), (DATA, END_STREAM, 1, 4)]);

        let (_, all) = responded(&[b"hello"], true).await;
        assert_eq!(
            all[1..3],
            [(DATA, 0, 1, 5), (HEADERS, 0x4 | END_STREAM, 1, all[2].3)]
        );
    }

    /// The body's start as the request sequence sees it, when the client sent `body` after its
    /// head, with or without ending the stream.
    async fn prefetched(body: &'static [u8], end: bool) -> (Vec<u8>, bool) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            let (_resp, mut send) = client_stream(client_io, http::Method::POST, false).await;
            send.send_data(bytes::Bytes::from_static(body), end)
                .expect("data");
            // Keeps the stream open while the server looks.
            std::future::pending::<()>().await;
        });
        let (mut r, driver) = first_stream(server_io).await;
        // Until the DATA frame has been received by the connection.
        while r.recv.flow_control().used_capacity() < body.len() {
            tokio::task::yield_now().await;
        }
        let (start, whole) = crate::downstream::Downstream::prefetch(&mut r)
            .await
            .expect("prefetch");
        client.abort();
        driver.abort();
        (start.to_vec(), whole)
    }

    /// DATA frames received with the head are taken before the upstream is contacted, without
    /// waiting for more; the body is whole when the client ended the stream with them.
    #[tokio::test(flavor = "current_thread")]
    async fn data_received_with_the_head_is_prefetched() {
        assert_eq!(
            prefetched(b"{\"model\":\"m\"}", true).await,
            (b"{\"model\":\"m\"}".to_vec(), true)
        );
        assert_eq!(prefetched(b"part", false).await, (b"part".to_vec(), false));
    }
}
