//! HTTP/2 downstream, on the `h2` crate: a connection negotiated with ALPN `h2` on the same TLS
//! listener as HTTP/1.1.
//!
//! Each stream becomes one [`RequestHead`] and runs the same [`pipeline`] stages as an HTTP/1.1
//! request (audit health, canonical path, identity, policy, request redaction, response
//! redaction, one audit record); only the framing differs. Streams are forwarded to the
//! upstream's HTTP/1.1 pool: the body is restated (`content-length` when the client declared
//! one, which `h2` holds the DATA frames to; chunked otherwise), so no length the client sent
//! reaches the upstream unchecked.
//!
//! Bodies stream both ways under flow control: request DATA is acknowledged (its window
//! released) only once written to the upstream, and response bytes are sent only as the
//! client's window allows, so a slow client makes moat wait, not buffer.
//!
//! A refused stream gets its error response and the connection carries on; a connection that
//! breaks the protocol or trips a limit gets GOAWAY from `h2` and a `reject` audit record.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout, Instant};

use crate::audit::record::TlsFacts;
use crate::config::UpstreamProtocol;
use crate::error::{Reject, Side};
use crate::identity::PeerCert;
use crate::pipeline::{self, request_id, upstream_head, ResponseRedaction};
use crate::protocol::h1::{Decoder, Encoder, H1Error};
use crate::protocol::{BodyKind, Frame, RequestHead, ResponseHead, Version};
use crate::proxy::{
    millis, read_response_head, timed_write, write_all_vectored, ClientAddr, Route, MODEL_LOOKAHEAD,
};
use crate::redact::stream::StreamRedactor;
use crate::upstream::{Conn, UpBody, UpFrame, UpstreamError};

/// What every stream of one connection shares.
struct Ctx {
    client: ClientAddr,
    tls: TlsFacts,
    peer_cert: Option<PeerCert>,
    route: Arc<Route>,
}

/// Serves one HTTP/2 connection (already past TLS, ALPN `h2`) until it closes.
pub async fn serve<S>(
    io: S,
    client: ClientAddr,
    tls: TlsFacts,
    peer_cert: Option<PeerCert>,
    route: Arc<Route>,
    mut updates: tokio::sync::watch::Receiver<Arc<Route>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let l = &route.http2;
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
    let mut conn = match timeout(route.http.header_timeout, builder.handshake::<_, Bytes>(io)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            connection_error(&route, client, &e);
            return;
        }
        Err(_) => return,
    };
    let mut ctx = Arc::new(Ctx {
        client,
        tls,
        peer_cert,
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
            () = dead.notified(), if deadline.is_none() => {
                tracing::debug!(client = %client.0, "HTTP/2 keep-alive PING unanswered: closing");
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
                if updates.has_changed().unwrap_or(false) {
                    ctx = Arc::new(Ctx {
                        client,
                        tls: ctx.tls.clone(),
                        peer_cert: ctx.peer_cert.clone(),
                        route: updates.borrow_and_update().clone(),
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
                connection_error(&route, client, &e);
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
fn connection_error(route: &Route, client: ClientAddr, e: &h2::Error) {
    if e.is_io() && !e.is_go_away() {
        // The client went away.
        return;
    }
    let detail = match e.reason() {
        Some(r) => format!("HTTP/2 connection error: {r:?} ({e})"),
        None => format!("HTTP/2 connection error: {e}"),
    };
    let r = Reject {
        status: http::StatusCode::BAD_REQUEST,
        kind: "h2_protocol_error",
        message: "HTTP/2 protocol error",
        side: Side::Downstream,
    };
    pipeline::record_refusal(route, &r, None, None, &detail, client);
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
                let n: u64 = std::str::from_utf8(v.as_bytes())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or(malformed("invalid content-length"))?;
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

/// The request body as it arrives: DATA frames, bounded, each acknowledged to the client's
/// flow control by the caller once it has been passed on.
struct Body {
    recv: RecvStream,
    received: u64,
    max: u64,
    idle: Duration,
}

impl Body {
    /// The next piece, `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, H1Error> {
        match timeout(self.idle, self.recv.data()).await {
            Err(_) => Err(H1Error::BodyTimeout),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(H1Error::Io(std::io::Error::other(e))),
            Ok(Some(Ok(d))) => {
                self.received += d.len() as u64;
                if self.received > self.max {
                    return Err(H1Error::BodyTooLarge);
                }
                Ok(Some(d))
            }
        }
    }

    fn release(&mut self, n: usize) {
        let _ = self.recv.flow_control().release_capacity(n);
    }

    /// Everything, up to the bound; `prefix` is what was read before.
    async fn read_all(&mut self, prefix: &mut BytesMut) -> Result<Bytes, H1Error> {
        while let Some(d) = self.next().await? {
            prefix.extend_from_slice(&d);
            self.release(d.len());
        }
        Ok(std::mem::take(prefix).freeze())
    }

    /// Trailers, if the client sent any.
    async fn trailer_map(&mut self) -> Result<Option<http::HeaderMap>, H1Error> {
        match timeout(self.idle, self.recv.trailers()).await {
            Err(_) => Err(H1Error::BodyTimeout),
            Ok(Err(e)) => Err(H1Error::Io(std::io::Error::other(e))),
            Ok(Ok(t)) => Ok(t),
        }
    }

    /// Trailers, as raw header lines for an HTTP/1.1 chunked body.
    async fn trailers(&mut self) -> Result<Bytes, H1Error> {
        match timeout(self.idle, self.recv.trailers()).await {
            Err(_) => Err(H1Error::BodyTimeout),
            Ok(Err(e)) => Err(H1Error::Io(std::io::Error::other(e))),
            Ok(Ok(None)) => Ok(Bytes::new()),
            Ok(Ok(Some(t))) => {
                let mut out = BytesMut::new();
                for (name, value) in &t {
                    pipeline::put_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
                }
                Ok(out.freeze())
            }
        }
    }
}

/// Sends a complete response for a refused stream.
fn send_reject(respond: &mut SendResponse<Bytes>, r: &Reject, request_id: Option<&str>) {
    if let Ok(mut s) = respond.send_response(r.h2_head(request_id), false) {
        let _ = s.send_data(Bytes::from(r.body()), true);
    }
}

/// One stream through the pipeline.
async fn handle(req: http::Request<RecvStream>, mut respond: SendResponse<Bytes>, ctx: &Ctx) {
    let route = &*ctx.route;
    let client = ctx.client;
    let started = Instant::now();
    let (mut parts, recv) = req.into_parts();
    let mut req = match request_head(&mut parts, recv.is_end_stream(), route) {
        Ok(r) => r,
        Err(e) => {
            let r = Reject::from(&e);
            let path = parts.uri.path().to_owned();
            pipeline::record_refusal(
                route,
                &r,
                Some(parts.method.to_string()),
                Some(path),
                &e.to_string(),
                client,
            );
            return send_reject(&mut respond, &r, None);
        }
    };
    // Fail closed: nothing is forwarded while the audit trail cannot take records.
    if !route.audit.healthy() {
        route.audit.note_refused();
        crate::metrics::METRICS.refused(&route.listener, Reject::AUDIT_UNAVAILABLE.kind, 503);
        tracing::warn!(target: "moat::access", client = %client.0.ip(), method = %req.method, path = req.path(), status = 503, "refused: audit trail unavailable");
        return send_reject(&mut respond, &Reject::AUDIT_UNAVAILABLE, None);
    }
    let request_id = request_id(&req, route.http.trust_request_id);
    if let Err(e) = crate::policy::canonical_path(req.path()) {
        let r = Reject::from(&H1Error::Malformed {
            reason: "path is not canonical",
        });
        pipeline::record_refusal(
            route,
            &r,
            Some(req.method.to_string()),
            Some(req.path().to_owned()),
            &e.to_string(),
            client,
        );
        return send_reject(&mut respond, &r, Some(&request_id));
    }
    let deny = |respond: &mut SendResponse<Bytes>, req: &RequestHead, d: &pipeline::Denied| {
        pipeline::record_denial(route, d, req, &request_id, client);
        send_reject(respond, &d.reject, Some(&request_id));
    };
    let principal = match pipeline::identify(route, &req, ctx.peer_cert.as_ref()) {
        Ok(p) => p,
        Err(d) => return deny(&mut respond, &req, &d),
    };
    let mut body = Body {
        recv,
        received: 0,
        max: route.http.max_request_body_bytes,
        idle: route.http.body_idle_timeout,
    };
    let body_fail = |respond: &mut SendResponse<Bytes>, e: H1Error| {
        let r = Reject::from(&e);
        pipeline::record_refusal(
            route,
            &r,
            Some(req.method.to_string()),
            Some(req.path().to_owned()),
            &e.to_string(),
            client,
        );
        if !matches!(e, H1Error::Io(_)) {
            send_reject(respond, &r, Some(&request_id));
        }
    };
    // The start of the body, read (and kept, to forward first) when policy needs the model.
    let mut prefix = BytesMut::new();
    let mut ended = req.body == BodyKind::Empty;
    let model = if route.policy.needs_model() && !ended {
        use crate::lookahead::{Model, ModelScan};
        let mut scan = ModelScan::new();
        while prefix.len() < MODEL_LOOKAHEAD && *scan.result() == Model::Pending {
            match body.next().await {
                Ok(Some(d)) => {
                    prefix.extend_from_slice(&d);
                    body.release(d.len());
                    scan.push(&d);
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => return body_fail(&mut respond, e),
            }
        }
        match scan.result() {
            Model::Found(m) => Some(m.clone()),
            _ => None,
        }
    } else {
        None
    };
    let auth = match pipeline::authorize(route, &req, client, &principal, model.as_deref()) {
        Ok(a) => a,
        Err(d) => return deny(&mut respond, &req, &d),
    };
    let mut redactions = crate::redact::State::default();
    let mut note = None;
    let mut bytes_in = None;
    let mut whole: Option<Bytes> = None;
    if let Some(p) = auth
        .profile
        .as_ref()
        .filter(|p| p.requests && req.body != BodyKind::Empty)
    {
        let raw = match body.read_all(&mut prefix).await {
            Ok(b) => b,
            Err(e) => return body_fail(&mut respond, e),
        };
        bytes_in = Some(raw.len() as u64);
        match pipeline::redact_request(
            p,
            &mut req,
            raw,
            &mut redactions,
            &principal,
            &auth.rule,
            &ctx.route.http,
        ) {
            Ok((b, n)) => {
                whole = Some(b);
                note = n;
            }
            Err(d) => return deny(&mut respond, &req, &d),
        }
    } else if ended && req.body != BodyKind::Empty {
        bytes_in = Some(prefix.len() as u64);
        whole = Some(std::mem::take(&mut prefix).freeze());
    }

    let mut x = Exchange {
        ctx,
        req: &req,
        request_id: &request_id,
        auth: &auth,
        principal: &principal,
        status: None,
        bytes_in: 0,
        bytes_out: 0,
        upstream_ms: None,
        response_redactions: Default::default(),
        error: None,
        end: End::Reset,
    };
    let stream = x.run(&mut respond, &mut body, prefix, whole).await;
    let status = x.status.map_or(0, |s| s.as_u16());
    let duration_ms = millis(started);
    let record = pipeline::request_record(
        route,
        client,
        &ctx.tls,
        &req,
        &request_id,
        &principal,
        model.as_deref(),
        &auth,
        pipeline::Exchanged {
            status,
            bytes_in: bytes_in.unwrap_or(x.bytes_in),
            bytes_out: x.bytes_out,
            duration_ms,
            upstream_ms: x.upstream_ms,
            request_redactions: &redactions.counts,
            response_redactions: &x.response_redactions,
            error: x.error.as_ref(),
            note,
        },
    );
    let recorded = match route.audit.record_durable(record) {
        Ok(durable) => durable.wait().await,
        Err(e) => Err(e),
    };
    // The stream ends only once its record exists (durable, with `fsync = "always"`).
    if let Some(mut s) = stream {
        if recorded.is_err() && route.audit_waits {
            tracing::error!(target: "moat::access", request_id = %request_id, "audit record not written: response not completed");
            s.send_reset(h2::Reason::INTERNAL_ERROR);
        } else {
            match std::mem::replace(&mut x.end, End::Reset) {
                End::Data => {
                    let _ = s.send_data(Bytes::new(), true);
                }
                End::Trailers(t) => {
                    let _ = s.send_trailers(t);
                }
                End::Reset => s.send_reset(h2::Reason::INTERNAL_ERROR),
            }
        }
    }
    let fields = (x.bytes_in, x.bytes_out);
    match &x.error {
        None => {
            tracing::info!(target: "moat::access", listener = %route.listener, protocol = "h2", client = %client.0.ip(), method = %req.method, path = req.path(), status, bytes_in = fields.0, bytes_out = fields.1, duration_ms, request_id = %request_id)
        }
        Some((side, detail)) => {
            tracing::warn!(target: "moat::access", listener = %route.listener, protocol = "h2", client = %client.0.ip(), method = %req.method, path = req.path(), status, bytes_in = fields.0, bytes_out = fields.1, duration_ms, request_id = %request_id, failed = side.as_str(), detail = detail.as_str())
        }
    }
}

/// How a stream whose response is out is ended once its audit record is written.
enum End {
    /// An empty DATA frame with END_STREAM.
    Data,
    /// The upstream's trailers.
    Trailers(http::HeaderMap),
    /// RST_STREAM: the response could not be completed.
    Reset,
}

/// One stream's exchange with an HTTP/1.1 upstream.
struct Exchange<'a> {
    ctx: &'a Ctx,
    req: &'a RequestHead,
    request_id: &'a str,
    auth: &'a pipeline::Authorized,
    principal: &'a crate::identity::Principal,
    status: Option<http::StatusCode>,
    bytes_in: u64,
    bytes_out: u64,
    upstream_ms: Option<f64>,
    response_redactions: std::collections::BTreeMap<&'static str, u64>,
    error: Option<(Side, String)>,
    end: End,
}

impl Exchange<'_> {
    /// Forwards the request and streams the response; returns the response stream, still open,
    /// when a response was sent (its end waits for the audit record).
    async fn run(
        &mut self,
        respond: &mut SendResponse<Bytes>,
        body: &mut Body,
        prefix: BytesMut,
        whole: Option<Bytes>,
    ) -> Option<SendStream<Bytes>> {
        // The body as the upstream gets it: a whole (or redacted) body with its length, else the
        // client's declared length, else chunked (HTTP/1.1) or open-ended DATA (h2c).
        let mut fwd = self.req.clone();
        if let Some(b) = &whole {
            fwd.body = if b.is_empty() {
                BodyKind::Empty
            } else {
                BodyKind::Length(b.len() as u64)
            };
        }
        let streaming = whole.is_none() && fwd.body != BodyKind::Empty;
        let initial = whole.unwrap_or_else(|| prefix.freeze());
        let upstream = self.auth.upstream.clone();
        let sent_at = Instant::now();
        let got = match upstream.config().protocol {
            UpstreamProtocol::Http1 => self.exchange_h1(body, &fwd, initial, streaming).await,
            UpstreamProtocol::H2c => self.exchange_h2c(body, &fwd, initial, streaming).await,
        };
        let (resp, up) = match got {
            Ok(r) => r,
            Err(Failed::Upstream(e)) => return self.upstream_failed(respond, e),
            Err(Failed::Downstream(e)) => {
                self.error = Some((Side::Downstream, e.to_string()));
                let r = Reject::from(&e);
                if !matches!(e, H1Error::Io(_)) {
                    self.status = Some(r.status);
                    send_reject(respond, &r, Some(self.request_id));
                }
                return None;
            }
        };
        self.bytes_in = body.received.max(fwd_len(&fwd));
        self.status = Some(resp.status);
        self.upstream_ms = Some(millis(sent_at));
        let idle = self.ctx.route.http.body_idle_timeout;
        let mut resp = resp;
        let ratio = self.ctx.route.http.max_decompression_ratio;
        match pipeline::response_redaction(self.auth.profile.as_ref(), &mut resp, ratio) {
            ResponseRedaction::Buffered(p) => self.buffered(respond, up, resp, &p, idle).await,
            ResponseRedaction::Stream(r) => self.stream(respond, up, resp, Some(r), idle).await,
            ResponseRedaction::None => self.stream(respond, up, resp, None, idle).await,
        }
    }

    /// Request to an HTTP/1.1 upstream from the pool; returns the response head and body.
    async fn exchange_h1(
        &mut self,
        body: &mut Body,
        fwd: &RequestHead,
        initial: Bytes,
        streaming: bool,
    ) -> Result<(ResponseHead, UpBody), Failed> {
        let route = &*self.ctx.route;
        let encoder = if fwd.body == BodyKind::Chunked {
            Encoder::Chunked
        } else {
            Encoder::Raw
        };
        let identity = route.forward_identity.then_some(self.principal);
        let up_head = upstream_head(
            fwd,
            self.request_id,
            self.ctx.client,
            identity,
            self.auth.upstream.config().credential.as_ref(),
        );
        let mut first = BytesMut::new();
        if !initial.is_empty() {
            if streaming {
                encoder.encode(&Frame::Data(initial), &mut first);
            } else {
                first.extend_from_slice(&initial);
            }
        }
        let upstream = &self.auth.upstream;
        let mut conn = upstream.checkout().await.map_err(Failed::Upstream)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .send_request(&mut conn, &up_head, &first, body, streaming, encoder)
                .await;
            let head = match sent {
                Ok(()) => {
                    read_response_head(
                        &mut conn,
                        fwd,
                        None::<&mut tokio::io::Sink>,
                        upstream.config().response_header_timeout,
                    )
                    .await
                }
                Err(e) => Err(match e {
                    Failed::Upstream(e) => e,
                    other => return Err(other),
                }),
            };
            match head {
                Ok(h) => {
                    let keep_alive = h.keep_alive;
                    let decoder = Decoder::new(h.body, u64::MAX);
                    return Ok((
                        h,
                        UpBody::H1 {
                            conn,
                            decoder,
                            keep_alive,
                        },
                    ));
                }
                Err(e)
                    if conn.reused
                        && attempt == 1
                        && !streaming
                        && fwd.is_idempotent()
                        && !matches!(e, UpstreamError::ResponseTimeout) =>
                {
                    conn = upstream.connect().await.map_err(Failed::Upstream)?;
                }
                Err(e) => return Err(Failed::Upstream(e)),
            }
        }
    }

    /// Request as a new stream on the `h2c` upstream's connection.
    async fn exchange_h2c(
        &mut self,
        body: &mut Body,
        fwd: &RequestHead,
        initial: Bytes,
        streaming: bool,
    ) -> Result<(ResponseHead, UpBody), Failed> {
        let route = &*self.ctx.route;
        let idle = route.http.body_idle_timeout;
        let upstream = &self.auth.upstream;
        let identity = route.forward_identity.then_some(self.principal);
        let request = pipeline::upstream_request_h2(
            fwd,
            self.request_id,
            self.ctx.client,
            identity,
            upstream.config().credential.as_ref(),
        )
        .map_err(|reason| Failed::Downstream(H1Error::Malformed { reason }))?;
        let proto = |e: h2::Error| {
            Failed::Upstream(UpstreamError::Protocol {
                reason: format!("h2c: {e}"),
            })
        };
        let mut sender = upstream.h2c().await.map_err(Failed::Upstream)?;
        let bodiless = initial.is_empty() && !streaming;
        let (response, mut up) = sender.send_request(request, bodiless).map_err(proto)?;
        if !bodiless {
            send_data(&mut up, initial, idle).await.map_err(|e| {
                Failed::Upstream(UpstreamError::Protocol {
                    reason: format!("h2c request body: {e}"),
                })
            })?;
            let mut trailers = None;
            if streaming {
                while let Some(d) = body.next().await.map_err(Failed::Downstream)? {
                    let n = d.len();
                    send_data(&mut up, d, idle).await.map_err(|e| {
                        Failed::Upstream(UpstreamError::Protocol {
                            reason: format!("h2c request body: {e}"),
                        })
                    })?;
                    body.release(n);
                }
                trailers = body.trailer_map().await.map_err(Failed::Downstream)?;
            }
            match trailers {
                Some(t) => up.send_trailers(t).map_err(proto)?,
                None => up.send_data(Bytes::new(), true).map_err(proto)?,
            }
        }
        let resp = match timeout(upstream.config().response_header_timeout, response).await {
            Err(_) => return Err(Failed::Upstream(UpstreamError::ResponseTimeout)),
            Ok(r) => r.map_err(proto)?,
        };
        Ok(response_from(resp))
    }

    fn upstream_failed(
        &mut self,
        respond: &mut SendResponse<Bytes>,
        e: UpstreamError,
    ) -> Option<SendStream<Bytes>> {
        let r = Reject::from(&e);
        self.status = Some(r.status);
        self.error = Some((Side::Upstream, e.to_string()));
        send_reject(respond, &r, Some(self.request_id));
        None
    }

    /// Writes the head, what is already here of the body, then the rest as it arrives.
    async fn send_request(
        &mut self,
        conn: &mut Conn,
        head: &Bytes,
        first: &BytesMut,
        body: &mut Body,
        streaming: bool,
        encoder: Encoder,
    ) -> Result<(), Failed> {
        let idle = self.ctx.route.http.body_idle_timeout;
        let io = &mut conn.reader.io;
        let up_err = |e: std::io::Error| {
            Failed::Upstream(UpstreamError::Protocol {
                reason: format!("write failed: {e}"),
            })
        };
        let bufs = [std::io::IoSlice::new(head), std::io::IoSlice::new(first)];
        write_all_vectored(io, &bufs).await.map_err(up_err)?;
        if !streaming {
            return Ok(());
        }
        let mut out = BytesMut::new();
        while let Some(d) = body.next().await.map_err(Failed::Downstream)? {
            let n = d.len();
            encoder.encode(&Frame::Data(d), &mut out);
            timed_write(io, &out, idle).await.map_err(up_err)?;
            out.clear();
            // Acknowledged only once the upstream has it: the client's window is the buffer.
            body.release(n);
        }
        if encoder == Encoder::Chunked {
            let t = body.trailers().await.map_err(Failed::Downstream)?;
            encoder.encode(&Frame::Trailers(t), &mut out);
            timed_write(io, &out, idle).await.map_err(up_err)?;
        }
        Ok(())
    }

    /// The response head for the client: hop-by-hop and connection-specific fields removed,
    /// the request id added; `length` restates the body's length when it is known.
    fn response_head(&self, resp: &ResponseHead, length: Option<u64>) -> http::Response<()> {
        let mut r = http::Response::new(());
        *r.status_mut() = resp.status;
        let h = r.headers_mut();
        for (name, value) in &resp.headers {
            if crate::protocol::h1::is_hop_by_hop(name, &resp.headers)
                || name == "x-request-id"
                || name == header::CONTENT_LENGTH
            {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if let Some(n) = length {
            h.insert(header::CONTENT_LENGTH, n.into());
        }
        if let Ok(id) = http::HeaderValue::from_str(self.request_id) {
            h.insert("x-request-id", id);
        }
        r
    }

    /// Streams the response body, redacted as it streams when `redactor` is set.
    async fn stream(
        &mut self,
        respond: &mut SendResponse<Bytes>,
        mut up: UpBody,
        resp: ResponseHead,
        mut redactor: Option<Box<dyn StreamRedactor>>,
        idle: Duration,
    ) -> Option<SendStream<Bytes>> {
        let length = match resp.body {
            BodyKind::Length(n) if redactor.is_none() => Some(n),
            BodyKind::Empty => Some(0),
            _ => None,
        };
        let mut s = match respond.send_response(self.response_head(&resp, length), false) {
            Ok(s) => s,
            Err(e) => {
                self.error = Some((Side::Downstream, format!("client stream: {e}")));
                return None;
            }
        };
        let mut trailers = None;
        let result: Result<(), (Side, String)> = loop {
            match up.next(idle).await {
                Ok(Some(UpFrame::Data(d))) => {
                    let d = match &mut redactor {
                        Some(r) => Bytes::from(r.push(&d)),
                        None => d,
                    };
                    if let Err(e) = send_data(&mut s, d, idle).await {
                        break Err((Side::Downstream, e));
                    }
                    if redactor.as_ref().is_some_and(|r| r.failure().is_some()) {
                        break Ok(());
                    }
                }
                Ok(Some(UpFrame::Trailers(t))) => trailers = Some(t),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.bytes_out = up.total();
        if let Err(e) = result {
            self.error = Some(e);
            return Some(s);
        }
        if let Some(r) = &mut redactor {
            let rest = r.finish();
            self.response_redactions = r.counts().clone();
            if let Some(note) = pipeline::stream_note(r.as_ref()) {
                self.error = Some((Side::Internal, note));
            }
            if let Err(e) = send_data(&mut s, Bytes::from(rest), idle).await {
                self.error = Some((Side::Downstream, e));
                return Some(s);
            }
        }
        up.done(&self.auth.upstream);
        self.end = match trailers {
            Some(t) if !t.is_empty() => End::Trailers(t),
            _ => End::Data,
        };
        Some(s)
    }

    /// Reads a response whole (bounded), redacts it, and sends it with its new length.
    async fn buffered(
        &mut self,
        respond: &mut SendResponse<Bytes>,
        up: UpBody,
        mut resp: ResponseHead,
        p: &crate::redact::Profile,
        idle: Duration,
    ) -> Option<SendStream<Bytes>> {
        let ratio = self.ctx.route.http.max_decompression_ratio;
        let redacted =
            match pipeline::read_and_redact(up, &self.auth.upstream, &mut resp, p, idle, ratio)
                .await
            {
                Ok(r) => r,
                Err(pipeline::NotRedacted::Upstream(e)) => return self.upstream_failed(respond, e),
                Err(pipeline::NotRedacted::Refused(why)) => {
                    let r = Reject::REDACTION_FAILED;
                    self.status = Some(r.status);
                    self.error = Some((Side::Internal, why));
                    send_reject(respond, &r, Some(self.request_id));
                    return None;
                }
            };
        if let Some(note) = redacted.note {
            self.error = Some((Side::Internal, note));
        }
        self.response_redactions = redacted.counts;
        let redacted = redacted.body;
        self.bytes_out = redacted.len() as u64;
        let head = self.response_head(&resp, Some(redacted.len() as u64));
        let mut s = match respond.send_response(head, false) {
            Ok(s) => s,
            Err(e) => {
                self.error = Some((Side::Downstream, format!("client stream: {e}")));
                return None;
            }
        };
        if let Err(e) = send_data(&mut s, redacted, idle).await {
            self.error = Some((Side::Downstream, e));
            return Some(s);
        }
        self.end = End::Data;
        Some(s)
    }
}

/// Bytes of a request body with a declared length.
fn fwd_len(r: &RequestHead) -> u64 {
    match r.body {
        BodyKind::Length(n) => n,
        _ => 0,
    }
}

/// An h2c upstream's response as a head and a body.
pub(crate) fn response_from(resp: http::Response<RecvStream>) -> (ResponseHead, UpBody) {
    let (parts, recv) = resp.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let head = ResponseHead {
        status: parts.status,
        version: Version::Http11,
        body: match (recv.is_end_stream(), length) {
            (true, _) => BodyKind::Empty,
            (false, Some(n)) => BodyKind::Length(n),
            (false, None) => BodyKind::Chunked,
        },
        headers: parts.headers,
        keep_alive: true,
    };
    (
        head,
        UpBody::H2 {
            recv,
            total: 0,
            data_done: false,
            trailers_done: false,
        },
    )
}

/// Why an exchange with the upstream failed.
enum Failed {
    /// The client's body was malformed, too large, or stopped.
    Downstream(H1Error),
    /// The upstream connection failed.
    Upstream(UpstreamError),
}

/// Sends `data` as the client's flow-control window allows; a window that stays shut for
/// `idle` fails the stream.
pub(crate) async fn send_data(
    s: &mut SendStream<Bytes>,
    mut data: Bytes,
    idle: Duration,
) -> Result<(), String> {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let cap = match timeout(idle, poll_fn(|cx| s.poll_capacity(cx))).await {
            Err(_) => return Err("client window stayed shut".into()),
            Ok(None) => return Err("client stream closed".into()),
            Ok(Some(Err(e))) => return Err(format!("client stream: {e}")),
            Ok(Some(Ok(n))) => n,
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        s.send_data(piece, false)
            .map_err(|e| format!("client stream: {e}"))?;
    }
    Ok(())
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
}
