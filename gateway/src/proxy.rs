//! The HTTP/1.1 exchange: one downstream connection, request after request, each forwarded to
//! the upstream and its response streamed back.
//!
//! Per request, in order: read and validate the head → (identity, policy and redaction will slot
//! in here) → pick an upstream connection → send the head and stream the body → read the
//! response head → stream the response body back → log one metadata-only line.
//!
//! Nothing is buffered whole: bodies move in pieces of at most a socket read, and the write
//! buffer is flushed whenever the next piece would need to wait for I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use crate::audit::record::{GuardFacts, TlsFacts};
use crate::audit::Auditor;
use crate::config::HttpConfig;
use crate::config::UpstreamProtocol;
use crate::error::{Reject, Side};
use crate::identity::{Identifier, PeerCert, Principal, Source};
use crate::pipeline::{
    self, put_header, request_id, upstream_head, NotRedacted, ResponseRedaction,
};
use crate::policy::Policy;
use crate::protocol::h1::{self, Decoder, Encoder, H1Error, Limits, Reader};
use crate::protocol::{BodyKind, Frame, RequestHead, ResponseHead, Version};
use crate::upstream::{trailer_lines, Conn, Stream, UpBody, UpFrame, Upstream, UpstreamError};

/// Address of the client that opened a downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// What a listener's connections share.
#[derive(Debug, Clone)]
pub struct Route {
    /// Listener name, for logs.
    pub listener: String,
    /// HTTP limits and timeouts.
    pub http: HttpConfig,
    /// HTTP/2 limits.
    pub http2: crate::config::Http2Config,
    /// Becomes true when moat shuts down: connections finish what is in flight and close.
    pub drain: tokio::sync::watch::Receiver<bool>,
    /// Upstream used unless the deciding policy rule names another.
    pub default_upstream: String,
    /// Every upstream, by name.
    pub upstreams: Arc<HashMap<String, Arc<Upstream>>>,
    /// The audit trail.
    pub audit: Auditor,
    /// Whether responses wait for their record to be durable (`fsync = "always"`).
    pub audit_waits: bool,
    /// The guard's state, stamped on request records.
    pub guard: GuardFacts,
    /// Identity sources of this listener, in order.
    pub identity_sources: Vec<Source>,
    /// Verifies credentials.
    pub identifier: Arc<Identifier>,
    /// Pass the principal upstream in `x-moat-*` headers.
    pub forward_identity: bool,
    /// Authorization rules.
    pub policy: Arc<Policy>,
    /// Redaction profiles by name.
    pub profiles: Arc<std::collections::BTreeMap<String, Arc<crate::redact::Profile>>>,
    /// This listener's request-duration histogram (looked up once, not per request).
    pub request_seconds: prometheus_client::metrics::histogram::Histogram,
}

/// What the identity, policy and redaction stages hand to the exchange.
struct Forward<'a> {
    upstream: &'a Arc<Upstream>,
    principal: &'a Principal,
    /// `100 Continue` was already sent (to read the body's `model` before deciding).
    continue_sent: bool,
    /// The redacted request body, replacing the client's (which was read in full).
    body: Option<Bytes>,
    /// Bytes of the client's body, when it was read in full.
    body_in: Option<u64>,
    /// The redaction profile of the deciding rule.
    profile: Option<&'a Arc<crate::redact::Profile>>,
}

impl Route {
    fn limits(&self) -> Limits {
        Limits {
            max_request_line: self.http.max_request_line_bytes,
            max_head: self.http.max_header_bytes,
            max_headers: self.http.max_headers,
        }
    }
}

/// Write buffer size past which pending output is flushed without waiting for more.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// How an exchange ended, for the access log.
struct Outcome {
    status: Option<StatusCode>,
    bytes_in: u64,
    bytes_out: u64,
    keep_alive: bool,
    error: Option<(Side, String)>,
    /// Time from the start of sending the request to the response head, in ms.
    upstream_ms: Option<f64>,
    /// Values redacted in the response, by entity.
    response_redactions: std::collections::BTreeMap<&'static str, u64>,
    /// The last bytes for the client, held back until the request's audit record is handed
    /// over (and, with `fsync = "always"`, durable): a client never sees a response complete
    /// before its record exists.
    tail: BytesMut,
}

/// Milliseconds since `t`, to the microsecond.
pub(crate) fn millis(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Serves one downstream connection (already past TLS) until it closes or must be closed.
pub async fn serve<S>(
    io: S,
    client: ClientAddr,
    tls: TlsFacts,
    peer_cert: Option<PeerCert>,
    route: Arc<Route>,
    mut updates: tokio::sync::watch::Receiver<Arc<Route>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut route = route;
    let limits = route.limits();
    let mut down = Reader::new(io);
    let mut first = true;
    loop {
        // Wait for the first byte of the next request: the keep-alive timeout applies between
        // requests, the header timeout from the first byte to the end of the head.
        if down.buf.is_empty() {
            let wait = if first {
                route.http.header_timeout
            } else {
                route.http.keepalive_timeout
            };
            down.shrink_if_idle();
            let mut drain = route.drain.clone();
            tokio::select! {
                r = timeout(wait, down.fill()) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                // Shutting down: an idle connection closes now.
                _ = drain.wait_for(|d| *d) => return,
            }
        }
        first = false;
        // A reload applies from the next request on: the one in flight kept its configuration.
        if updates.has_changed().unwrap_or(false) {
            route = updates.borrow_and_update().clone();
        }
        let started = Instant::now();
        let head = match timeout(route.http.header_timeout, down.read_head(&limits)).await {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                return refuse(
                    &mut down.io,
                    &Reject::from(&e),
                    None,
                    &e.to_string(),
                    client,
                    &route,
                )
                .await
            }
            Err(_) => {
                return refuse(
                    &mut down.io,
                    &Reject::HEADER_TIMEOUT,
                    None,
                    "header timeout",
                    client,
                    &route,
                )
                .await
            }
        };
        let mut req = match h1::parse_request(&head, &limits, route.http.max_request_body_bytes) {
            Ok(r) => r,
            Err(e) => {
                return refuse(
                    &mut down.io,
                    &Reject::from(&e),
                    Some(&head),
                    &e.to_string(),
                    client,
                    &route,
                )
                .await
            }
        };
        // Fail closed: nothing is forwarded while the audit trail cannot take records.
        if !route.audit.healthy() {
            route.audit.note_refused();
            crate::metrics::METRICS.refused(&route.listener, Reject::AUDIT_UNAVAILABLE.kind, 503);
            let mut out = BytesMut::new();
            Reject::AUDIT_UNAVAILABLE.write_h1(&mut out, None);
            let _ = down.io.write_all(&out).await;
            let _ = down.io.shutdown().await;
            tracing::warn!(target: "moat::access", client = %client.0.ip(), method = %req.method, path = req.path(), status = 503, "refused: audit trail unavailable");
            return;
        }
        let request_id = request_id(&req, route.http.trust_request_id);

        // What policy matches must be what the upstream routes: refuse non-canonical paths.
        if let Err(e) = crate::policy::canonical_path(req.path()) {
            let r = Reject::from(&H1Error::Malformed {
                reason: "path is not canonical",
            });
            return refuse(
                &mut down.io,
                &r,
                Some(&head),
                &e.to_string(),
                client,
                &route,
            )
            .await;
        }

        // Identity: who is asking.
        let principal = match pipeline::identify(&route, &req, peer_cert.as_ref()) {
            Ok(p) => p,
            Err(d) => return deny(&mut down.io, &d, &req, &request_id, client, &route).await,
        };

        // Policy: may this principal use this route and model from this region?
        let mut continue_sent = false;
        let model = if route.policy.needs_model() && req.body != BodyKind::Empty {
            if req.expect_continue {
                continue_sent = down
                    .io
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_ok();
            }
            peek_model(&mut down, &req, route.http.body_idle_timeout).await
        } else {
            None
        };
        let auth = match pipeline::authorize(&route, &req, client, &principal, model.as_deref()) {
            Ok(a) => a,
            Err(d) => return deny(&mut down.io, &d, &req, &request_id, client, &route).await,
        };
        // Redaction of the request body, when the deciding rule names a profile for requests.
        let mut redactions = crate::redact::State::default();
        let mut fail_open_note = None;
        let (body, body_in) = match auth
            .profile
            .as_ref()
            .filter(|p| p.requests && req.body != BodyKind::Empty)
        {
            None => (None, None),
            Some(p) => {
                if req.expect_continue && !continue_sent {
                    continue_sent = down
                        .io
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .is_ok();
                }
                let raw = match read_whole_body(
                    &mut down,
                    &req,
                    route.http.max_request_body_bytes,
                    route.http.body_idle_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        return refuse(
                            &mut down.io,
                            &Reject::from(&e),
                            Some(&head),
                            &e.to_string(),
                            client,
                            &route,
                        )
                        .await
                    }
                };
                let n = raw.len() as u64;
                match pipeline::redact_request(
                    p,
                    &mut req,
                    raw,
                    &mut redactions,
                    &principal,
                    &auth.rule,
                    &route.http,
                ) {
                    Ok((b, note)) => {
                        fail_open_note = note;
                        (Some(b), Some(n))
                    }
                    Err(d) => {
                        return deny(&mut down.io, &d, &req, &request_id, client, &route).await
                    }
                }
            }
        };
        let fwd = Forward {
            upstream: &auth.upstream,
            principal: &principal,
            continue_sent,
            body,
            body_in,
            profile: auth.profile.as_ref(),
        };
        let mut outcome = exchange(&mut down, &req, &request_id, client, &route, &fwd).await;
        let status = outcome.status.map_or(0, |s| s.as_u16());
        let duration_ms = millis(started);

        // The record goes to the audit writer before the client sees the response complete.
        let record = pipeline::request_record(
            &route,
            client,
            &tls,
            &req,
            &request_id,
            &principal,
            model.as_deref(),
            &auth,
            pipeline::Exchanged {
                status,
                bytes_in: outcome.bytes_in,
                bytes_out: outcome.bytes_out,
                duration_ms,
                upstream_ms: outcome.upstream_ms,
                request_redactions: &redactions.counts,
                response_redactions: &outcome.response_redactions,
                error: outcome.error.as_ref(),
                note: fail_open_note,
            },
        );
        let recorded = match route.audit.record_durable(record) {
            Ok(durable) => durable.wait().await,
            Err(e) => Err(e),
        };
        if recorded.is_err() && route.audit_waits {
            // The record is not durable: the response must not complete.
            tracing::error!(target: "moat::access", request_id = %request_id, "audit record not written: response not completed");
            let _ = down.io.shutdown().await;
            return;
        }
        if !outcome.tail.is_empty() {
            let tail = std::mem::take(&mut outcome.tail);
            if timed_write(&mut down.io, &tail, route.http.body_idle_timeout)
                .await
                .is_err()
            {
                outcome.keep_alive = false;
            }
        }
        let _ = down.io.flush().await;

        // One line per request, metadata only. Failures the client caused stay at info; the
        // upstream's or moat's own go to warn.
        macro_rules! access {
            ($level:ident $(, $field:ident = $value:expr)*) => {
                tracing::$level!(
                    target: "moat::access",
                    listener = %route.listener,
                    client = %client.0.ip(),
                    method = %req.method,
                    path = req.path(),
                    status,
                    bytes_in = outcome.bytes_in,
                    bytes_out = outcome.bytes_out,
                    duration_ms,
                    request_id = %request_id,
                    $($field = $value,)*
                )
            };
        }
        match &outcome.error {
            None => access!(info),
            Some((Side::Downstream, detail)) => {
                access!(info, failed = "downstream", detail = detail.as_str())
            }
            Some((side, detail)) => access!(warn, failed = side.as_str(), detail = detail.as_str()),
        }
        // Shutting down: the connection closes after the request in flight.
        if !outcome.keep_alive || *route.drain.borrow() {
            let _ = down.io.shutdown().await;
            return;
        }
    }
}

/// Sends a refusal, records and logs it; the caller closes the connection. `head` is the
/// request head when it was complete enough to name a method and path.
async fn refuse<S: AsyncWrite + Unpin>(
    io: &mut S,
    r: &Reject,
    head: Option<&Bytes>,
    detail: &str,
    client: ClientAddr,
    route: &Route,
) {
    let (method, path) = head.map_or((None, None), |h| request_line(h));
    pipeline::record_refusal(route, r, method, path, detail, client);
    let mut out = BytesMut::new();
    r.write_h1(&mut out, None);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// Answers 401, 403 or 422, records the refusal (with the reason the client is not told),
/// closes.
async fn deny<S: AsyncWrite + Unpin>(
    io: &mut S,
    d: &pipeline::Denied,
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    route: &Route,
) {
    pipeline::record_denial(route, d, req, request_id, client);
    let mut out = BytesMut::new();
    d.reject.write_h1(&mut out, Some(request_id));
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// Reads a non-streamed response whole, redacts it, and leaves head and body in
/// `outcome.tail`. A response that cannot be redacted under a fail-closed profile becomes a 502.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, the exchange's own state"
)]
async fn buffered_response(
    up: UpBody,
    mut resp: ResponseHead,
    p: &Arc<crate::redact::Profile>,
    req: &RequestHead,
    request_id: &str,
    mut outcome: Outcome,
    upstream: &Arc<Upstream>,
    http: &HttpConfig,
) -> Outcome {
    let (idle, ratio) = (http.body_idle_timeout, http.max_decompression_ratio);
    let redacted = match pipeline::read_and_redact(up, upstream, &mut resp, p, idle, ratio).await {
        Ok(r) => r,
        Err(NotRedacted::Upstream(e)) => return upstream_failure(e, request_id, outcome).await,
        Err(NotRedacted::Refused(why)) => {
            let r = Reject::REDACTION_FAILED;
            r.write_h1(&mut outcome.tail, Some(request_id));
            outcome.status = Some(r.status);
            outcome.error = Some((Side::Internal, why));
            return outcome;
        }
    };
    if let Some(note) = redacted.note {
        outcome.error = Some((Side::Internal, note));
    }
    outcome.response_redactions = redacted.counts;
    let redacted = redacted.body;
    outcome.bytes_out = redacted.len() as u64;
    resp.headers.remove(header::TRANSFER_ENCODING);
    resp.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(redacted.len()),
    );
    resp.body = BodyKind::Length(redacted.len() as u64);
    let (encoder, keep_alive) = response_framing(req, &resp, req.keep_alive);
    write_response_head(
        &mut outcome.tail,
        &resp,
        request_id,
        encoder,
        keep_alive,
        req.version,
    );
    outcome.tail.extend_from_slice(&redacted);
    outcome.keep_alive = keep_alive;
    outcome
}

/// Reads a whole request body (bounded by `max`), for redaction.
async fn read_whole_body<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    req: &RequestHead,
    max: u64,
    idle: Duration,
) -> Result<Bytes, H1Error> {
    let mut dec = Decoder::new(req.body, max);
    let mut body = BytesMut::new();
    loop {
        match dec.decode(&mut down.buf)? {
            Some(Frame::Data(d)) => body.extend_from_slice(&d),
            Some(Frame::Trailers(_)) => {}
            None if dec.is_done() => return Ok(body.freeze()),
            None => fill_body(down, idle).await?,
        }
    }
}

/// Largest body prefix read to find the `model` field before deciding.
pub(crate) const MODEL_LOOKAHEAD: usize = 64 * 1024;

/// Reads (without consuming) up to [`MODEL_LOOKAHEAD`] bytes of the body and returns the
/// top-level JSON `model` string if it appears in them. The bytes stay in the read buffer and
/// are forwarded as usual; nothing is buffered beyond the look-ahead. Each byte is decoded and
/// scanned once, however the body is cut into reads.
async fn peek_model<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    req: &RequestHead,
    idle: Duration,
) -> Option<String> {
    use crate::lookahead::{Model, ModelScan};
    let want = match req.body {
        BodyKind::Length(n) => (n as usize).min(MODEL_LOOKAHEAD),
        _ => MODEL_LOOKAHEAD,
    };
    let mut dec = Decoder::new(req.body, u64::MAX);
    let mut scan = ModelScan::new();
    // Bytes of the read buffer the decoder has consumed, and body bytes scanned.
    let (mut offset, mut scanned) = (0, 0);
    loop {
        let mut rest = BytesMut::from(&down.buf[offset..]);
        let before = rest.len();
        while let Ok(Some(f)) = dec.decode(&mut rest) {
            if let Frame::Data(d) = f {
                scanned += d.len();
                scan.push(&d);
            }
        }
        offset += before - rest.len();
        match scan.result() {
            Model::Found(m) => return Some(m.clone()),
            Model::Absent => return None,
            Model::Pending => {}
        }
        if scanned >= want || dec.is_done() || down.buf.len() >= MODEL_LOOKAHEAD + 1024 {
            return None;
        }
        match timeout(idle, down.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
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

/// Forwards one request and streams its response back.
async fn exchange<S>(
    down: &mut Reader<S>,
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    route: &Route,
    fwd: &Forward<'_>,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let http = &route.http;
    let mut outcome = Outcome {
        status: None,
        bytes_in: 0,
        bytes_out: 0,
        keep_alive: false,
        error: None,
        upstream_ms: None,
        response_redactions: Default::default(),
        tail: BytesMut::new(),
    };

    // 100-continue: the client waits before sending the body; tell it to go on now that the head
    // is acceptable.
    let go_on = b"HTTP/1.1 100 Continue\r\n\r\n";
    if req.expect_continue
        && !fwd.continue_sent
        && req.body != BodyKind::Empty
        && down.io.write_all(go_on).await.is_err()
    {
        outcome.error = Some((Side::Downstream, "write 100 Continue failed".into()));
        return outcome;
    }

    // A redacted body replaces the client's: it is sent with its own Content-Length.
    let replaced;
    let req: &RequestHead = match &fwd.body {
        Some(b) => {
            let mut r = req.clone();
            r.body = if b.is_empty() {
                BodyKind::Empty
            } else {
                BodyKind::Length(b.len() as u64)
            };
            replaced = r;
            &replaced
        }
        None => req,
    };

    // Validate what is already buffered of the body (and at least the first chunk line) before
    // contacting the upstream, so that a malformed body start never reaches it.
    let mut decoder = Decoder::new(
        if fwd.body.is_some() {
            BodyKind::Empty
        } else {
            req.body
        },
        http.max_request_body_bytes,
    );
    let h2c = fwd.upstream.config().protocol == UpstreamProtocol::H2c;
    let encoder = if req.body == BodyKind::Chunked && !h2c {
        Encoder::Chunked
    } else {
        Encoder::Raw
    };
    let identity = route.forward_identity.then_some(fwd.principal);
    let up_head = upstream_head(
        req,
        request_id,
        client,
        identity,
        fwd.upstream.config().credential.as_ref(),
    );
    let mut pending = BytesMut::new();
    if let Some(b) = &fwd.body {
        pending.extend_from_slice(b);
    } else if h2c {
        // Sent as DATA frames as it is decoded (trailers included).
    } else if let Err(e) = prefetch_body(
        down,
        &mut decoder,
        encoder,
        &mut pending,
        http.body_idle_timeout,
    )
    .await
    {
        return downstream_failure(e, request_id, outcome).await;
    }
    outcome.bytes_in = fwd.body_in.unwrap_or(decoder.total);

    let upstream = fwd.upstream;
    let bodiless = req.body == BodyKind::Empty;
    let sent_at = Instant::now();
    let (resp, mut up) = if h2c {
        let request = match pipeline::upstream_request_h2(
            req,
            request_id,
            client,
            identity,
            upstream.config().credential.as_ref(),
        ) {
            Ok(r) => r,
            Err(reason) => {
                return downstream_failure(H1Error::Malformed { reason }, request_id, outcome).await
            }
        };
        match h2c_exchange(
            down,
            request,
            pending.freeze(),
            &mut decoder,
            upstream,
            http,
        )
        .await
        {
            Ok(r) => r,
            Err(SendError::Upstream(e)) => return upstream_failure(e, request_id, outcome).await,
            Err(SendError::Downstream(e)) => {
                return downstream_failure(e, request_id, outcome).await
            }
        }
    } else {
        let mut conn = match upstream.checkout().await {
            Ok(c) => c,
            Err(e) => return upstream_failure(e, request_id, outcome).await,
        };

        // Send the head with the body bytes already decoded, then the rest of the body.
        let mut attempt = 0;
        let (resp, conn) = loop {
            attempt += 1;
            let sent = send_request(
                &mut conn,
                &up_head,
                &mut pending,
                down,
                &mut decoder,
                encoder,
                http,
            )
            .await;
            // A peer that closed a pooled connection shows as a failed write or an empty read; only a
            // request that can safely be repeated, and whose body is not consumed, is sent again.
            let head = match sent {
                Ok(()) => {
                    read_response_head(
                        &mut conn,
                        req,
                        Some(&mut down.io),
                        upstream.config().response_header_timeout,
                    )
                    .await
                }
                Err(SendError::Upstream(e)) => Err(e),
                Err(SendError::Downstream(e)) => {
                    return downstream_failure(e, request_id, outcome).await
                }
            };
            match head {
                Ok(h) => break (h, conn),
                Err(e)
                    if conn.reused
                        && attempt == 1
                        && bodiless
                        && req.is_idempotent()
                        && !matches!(e, UpstreamError::ResponseTimeout) =>
                {
                    tracing::debug!(error = %e, "pooled upstream connection was closed; retrying on a new one");
                    conn = match upstream.connect().await {
                        Ok(c) => c,
                        Err(e) => return upstream_failure(e, request_id, outcome).await,
                    };
                }
                Err(e) => return upstream_failure(e, request_id, outcome).await,
            }
        };
        let body = UpBody::H1 {
            decoder: Decoder::new(resp.body, u64::MAX),
            keep_alive: resp.keep_alive,
            conn,
        };
        (resp, body)
    };
    outcome.bytes_in = fwd.body_in.unwrap_or(decoder.total);
    outcome.status = Some(resp.status);
    outcome.upstream_ms = Some(millis(sent_at));

    // Response redaction, when the deciding rule's profile covers responses: streamed bodies
    // are redacted as they stream; other bodies are read whole (bounded), redacted and sent
    // with their new length.
    let mut resp = resp;
    let ratio = http.max_decompression_ratio;
    let mut sse = match pipeline::response_redaction(fwd.profile, &mut resp, ratio) {
        ResponseRedaction::None => None,
        ResponseRedaction::Stream(r) => Some(r),
        ResponseRedaction::Buffered(p) => {
            return buffered_response(up, resp, &p, req, request_id, outcome, upstream, http).await;
        }
    };
    if sse.is_some() {
        // The redacted stream's length differs from the upstream's: always chunked (or
        // close-delimited to an HTTP/1.0 client).
        resp.body = BodyKind::Chunked;
        resp.keep_alive = false;
        resp.headers.remove(header::CONTENT_LENGTH);
    }

    // Response head to the client.
    let client_keep_alive = req.keep_alive;
    let (encoder, keep_alive) = response_framing(req, &resp, client_keep_alive);
    let mut out = BytesMut::with_capacity(8 * 1024);
    write_response_head(
        &mut out,
        &resp,
        request_id,
        encoder,
        keep_alive,
        req.version,
    );

    // Response body.
    let streamed = stream_response(
        &mut up,
        encoder,
        &mut out,
        down,
        http.body_idle_timeout,
        sse.as_deref_mut(),
    )
    .await;
    if let Some(r) = &sse {
        outcome.response_redactions = r.counts().clone();
        if let Some(note) = pipeline::stream_note(r.as_ref()) {
            outcome.error = Some((Side::Internal, note));
        }
    }
    match streamed {
        Ok(bytes) => {
            outcome.bytes_out = bytes;
            outcome.tail = out;
        }
        Err((side, detail)) => {
            outcome.error = Some((side, detail));
            return outcome;
        }
    }
    up.done(upstream);
    outcome.keep_alive = keep_alive;
    outcome
}

/// Sends a request from an HTTP/1.1 client as a stream on an h2c upstream's connection: `first`
/// (a whole or redacted body), or the client's body decoded frame by frame, trailers included.
async fn h2c_exchange<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    request: http::Request<()>,
    first: Bytes,
    decoder: &mut Decoder,
    upstream: &Upstream,
    http: &HttpConfig,
) -> Result<(ResponseHead, UpBody), SendError> {
    let idle = http.body_idle_timeout;
    let proto = |e: String| {
        SendError::Upstream(UpstreamError::Protocol {
            reason: format!("h2c: {e}"),
        })
    };
    let mut sender = upstream.h2c().await.map_err(SendError::Upstream)?;
    let bodiless = first.is_empty() && decoder.is_done();
    let (response, mut stream) = sender
        .send_request(request, bodiless)
        .map_err(|e| proto(e.to_string()))?;
    if !bodiless {
        crate::h2::send_data(&mut stream, first, idle)
            .await
            .map_err(proto)?;
        let mut trailers = None;
        while !decoder.is_done() {
            match decoder
                .decode(&mut down.buf)
                .map_err(SendError::Downstream)?
            {
                Some(Frame::Data(d)) => crate::h2::send_data(&mut stream, d, idle)
                    .await
                    .map_err(proto)?,
                Some(Frame::Trailers(t)) => {
                    let t = crate::upstream::parse_trailers(&t);
                    trailers = (!t.is_empty()).then_some(t);
                }
                None => fill_body(down, idle).await.map_err(SendError::Downstream)?,
            }
        }
        match trailers {
            Some(t) => stream.send_trailers(t),
            None => stream.send_data(Bytes::new(), true),
        }
        .map_err(|e| proto(e.to_string()))?;
    }
    let resp = timeout(upstream.config().response_header_timeout, response)
        .await
        .map_err(|_| SendError::Upstream(UpstreamError::ResponseTimeout))?
        .map_err(|e| proto(e.to_string()))?;
    Ok(crate::h2::response_from(resp))
}

/// Why sending a request upstream failed.
enum SendError {
    /// The client's body was malformed, too large, or stopped.
    Downstream(H1Error),
    /// The upstream connection failed.
    Upstream(UpstreamError),
}

/// Decodes whatever body bytes are already buffered (waiting for at least the first chunk line
/// of a chunked body) into `pending`, framed for the upstream.
async fn prefetch_body<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    decoder: &mut Decoder,
    encoder: Encoder,
    pending: &mut BytesMut,
    idle: Duration,
) -> Result<(), H1Error> {
    let mut decoded_any = decoder.is_done();
    loop {
        match decoder.decode(&mut down.buf)? {
            Some(f) => {
                encoder.encode(&f, pending);
                decoded_any = true;
            }
            None if decoded_any || decoder.is_done() => return Ok(()),
            None => {
                // Nothing decodable yet. A Content-Length body can start streaming as is; a chunked
                // one must show a valid first chunk line first.
                if encoder == Encoder::Raw {
                    return Ok(());
                }
                fill_body(down, idle).await?;
            }
        }
    }
}

/// Writes the request head and the whole body to the upstream.
async fn send_request<S: AsyncRead + Unpin>(
    conn: &mut Conn,
    head: &Bytes,
    pending: &mut BytesMut,
    down: &mut Reader<S>,
    decoder: &mut Decoder,
    encoder: Encoder,
    http: &HttpConfig,
) -> Result<(), SendError> {
    let io = &mut conn.reader.io;
    let up_err = |e: std::io::Error| {
        SendError::Upstream(UpstreamError::Protocol {
            reason: format!("write failed: {e}"),
        })
    };
    // One write for the head and whatever body is already here (small requests: one syscall).
    let first = [std::io::IoSlice::new(head), std::io::IoSlice::new(pending)];
    write_all_vectored(io, &first).await.map_err(up_err)?;
    pending.clear();
    // A chunked body always ends with a trailer frame (possibly empty), which the encoder turns
    // into the last chunk; a Content-Length body needs no terminator.
    let mut out = BytesMut::new();
    while !decoder.is_done() {
        match decoder
            .decode(&mut down.buf)
            .map_err(SendError::Downstream)?
        {
            Some(f) => {
                encoder.encode(&f, &mut out);
                if out.len() >= FLUSH_AT {
                    timed_write(io, &out, http.body_idle_timeout)
                        .await
                        .map_err(up_err)?;
                    out.clear();
                }
            }
            None => {
                if !out.is_empty() {
                    timed_write(io, &out, http.body_idle_timeout)
                        .await
                        .map_err(up_err)?;
                    out.clear();
                }
                fill_body(down, http.body_idle_timeout)
                    .await
                    .map_err(SendError::Downstream)?;
            }
        }
    }
    if !out.is_empty() {
        timed_write(io, &out, http.body_idle_timeout)
            .await
            .map_err(up_err)?;
    }
    Ok(())
}

/// Reads more of a request body, within the body idle timeout.
pub(crate) async fn fill_body<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    idle: Duration,
) -> Result<(), H1Error> {
    match timeout(idle, down.fill()).await {
        Ok(Ok(0)) => Err(H1Error::UnexpectedEof),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(H1Error::Io(e)),
        Err(_) => Err(H1Error::BodyTimeout),
    }
}

pub(crate) async fn write_all_vectored(
    io: &mut Stream,
    bufs: &[std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let n = io.write_vectored(bufs).await?;
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
        io.write_all(&b[skip..]).await?;
        skip = 0;
    }
    Ok(())
}

pub(crate) async fn timed_write<W: AsyncWrite + Unpin>(
    io: &mut W,
    data: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    // A write that makes no progress for `idle` fails; a slow but moving peer is fine because
    // each `write` call that returns resets the clock.
    let mut rest = data;
    while !rest.is_empty() {
        let n = timeout(idle, io.write(rest))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Reads the final response head, passing interim 1xx responses (other than 100, which moat
/// answered itself) on to the client.
pub(crate) async fn read_response_head<W: AsyncWrite + Unpin>(
    conn: &mut Conn,
    req: &RequestHead,
    mut interim: Option<&mut W>,
    limit: Duration,
) -> Result<ResponseHead, UpstreamError> {
    let deadline = Instant::now() + limit;
    let limits = Limits {
        max_request_line: 8 * 1024,
        max_head: 64 * 1024,
        max_headers: 128,
    };
    loop {
        let head = match tokio::time::timeout_at(deadline, conn.reader.read_head(&limits)).await {
            Err(_) => return Err(UpstreamError::ResponseTimeout),
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => {
                return Err(UpstreamError::Protocol {
                    reason: "closed before responding".into(),
                })
            }
            Ok(Err(e)) => {
                return Err(UpstreamError::Protocol {
                    reason: e.to_string(),
                })
            }
        };
        let resp = h1::parse_response(&head, &req.method, limits.max_headers).map_err(|e| {
            UpstreamError::Protocol {
                reason: e.to_string(),
            }
        })?;
        if resp.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(UpstreamError::Protocol {
                reason: "upgrade not supported".into(),
            });
        }
        if resp.status.is_informational() {
            if let Some(w) = interim
                .as_mut()
                .filter(|_| resp.status != StatusCode::CONTINUE && req.version == Version::Http11)
            {
                let mut out = BytesMut::new();
                write_response_head(&mut out, &resp, "", Encoder::Raw, true, req.version);
                let _ = w.write_all(&out).await;
            }
            continue;
        }
        return Ok(resp);
    }
}

/// How the response body is framed toward the client, and whether the client connection stays
/// open after it.
fn response_framing(
    req: &RequestHead,
    resp: &ResponseHead,
    client_keep_alive: bool,
) -> (Encoder, bool) {
    match resp.body {
        BodyKind::Empty | BodyKind::Length(_) => (Encoder::Raw, client_keep_alive),
        BodyKind::Chunked | BodyKind::CloseDelimited => {
            if req.version == Version::Http11 {
                (Encoder::Chunked, client_keep_alive)
            } else {
                // An HTTP/1.0 client cannot take chunked: the body ends when the connection does.
                (Encoder::Raw, false)
            }
        }
    }
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
    for (name, value) in &resp.headers {
        if h1::is_hop_by_hop(name, &resp.headers) || name == "x-request-id" {
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

/// Streams the response body from the upstream to the client; returns body bytes relayed.
/// Pieces that arrived together leave together; before waiting on the upstream, whatever is
/// ready goes to the client (this is what makes each SSE event leave as soon as it arrives).
async fn stream_response<S: AsyncWrite + Unpin>(
    up: &mut UpBody,
    encoder: Encoder,
    out: &mut BytesMut,
    down: &mut Reader<S>,
    idle: Duration,
    mut sse: Option<&mut (dyn crate::redact::stream::StreamRedactor + 'static)>,
) -> Result<u64, (Side, String)> {
    let client_err = |e: std::io::Error| (Side::Downstream, format!("client write failed: {e}"));
    let mut trailers = None;
    loop {
        let frame = match up.ready()? {
            Some(f) => Some(f),
            None if up.is_done() => None,
            None => {
                if !out.is_empty() {
                    timed_write(&mut down.io, out, idle)
                        .await
                        .map_err(client_err)?;
                    out.clear();
                }
                up.next(idle).await?
            }
        };
        match frame {
            None => break,
            Some(UpFrame::Data(d)) => match &mut sse {
                Some(r) => {
                    encoder.encode(&Frame::Data(Bytes::from(r.push(&d))), out);
                    if r.failure().is_some() {
                        // The error event ends the stream; nothing more is read or sent.
                        break;
                    }
                }
                None => encoder.encode(&Frame::Data(d), out),
            },
            // Trailers end the body; with a redactor they wait until its held text is out.
            Some(UpFrame::Trailers(t)) => trailers = Some(t),
        }
        // The piece that completes the body stays in `out` (see `Outcome::tail`).
        if out.len() >= FLUSH_AT && !up.is_done() {
            timed_write(&mut down.io, out, idle)
                .await
                .map_err(client_err)?;
            out.clear();
        }
    }
    if let Some(r) = sse {
        let rest = r.finish();
        encoder.encode(&Frame::Data(Bytes::from(rest)), out);
    }
    match trailers.filter(|t| !t.is_empty()) {
        Some(t) => encoder.encode(&Frame::Trailers(trailer_lines(&t)), out),
        None => encoder.finish(out),
    }
    Ok(up.total())
}

async fn downstream_failure(e: H1Error, request_id: &str, mut outcome: Outcome) -> Outcome {
    let r = Reject::from(&e);
    // A client that went away gets no answer; one that sent a bad body, or stalled, does.
    if !matches!(e, H1Error::Io(_) | H1Error::UnexpectedEof) {
        r.write_h1(&mut outcome.tail, Some(request_id));
        outcome.status = Some(r.status);
    }
    outcome.error = Some((Side::Downstream, e.to_string()));
    outcome.keep_alive = false;
    outcome
}

async fn upstream_failure(e: UpstreamError, request_id: &str, mut outcome: Outcome) -> Outcome {
    let r = Reject::from(&e);
    r.write_h1(&mut outcome.tail, Some(request_id));
    outcome.status = Some(r.status);
    outcome.error = Some((Side::Upstream, e.to_string()));
    outcome.keep_alive = false;
    outcome
}
