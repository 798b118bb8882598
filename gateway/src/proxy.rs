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
use http::header::{self, HeaderName};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use crate::audit::record::{GuardFacts, RejectRecord, RequestRecord, TlsFacts};
use crate::audit::{Auditor, Record};
use crate::config::{Credential, HttpConfig};
use crate::error::{Reject, Side};
use crate::identity::{Identifier, PeerCert, Principal, Source};
use crate::policy::{Action, Facts, Policy};
use crate::protocol::h1::{self, Decoder, Encoder, H1Error, Limits, Reader};
use crate::protocol::{BodyKind, Frame, RequestHead, ResponseHead, Version};
use crate::upstream::{Conn, Stream, Upstream, UpstreamError};

/// Address of the client that opened a downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// What a listener's connections share.
#[derive(Debug)]
pub struct Route {
    /// Listener name, for logs.
    pub listener: String,
    /// HTTP limits and timeouts.
    pub http: HttpConfig,
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
const FLUSH_AT: usize = 64 * 1024;

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
fn millis(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Serves one downstream connection (already past TLS) until it closes or must be closed.
pub async fn serve<S>(
    io: S,
    client: ClientAddr,
    tls: TlsFacts,
    peer_cert: Option<PeerCert>,
    route: Arc<Route>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
            match timeout(wait, down.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
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
        let req = match h1::parse_request(&head, &limits, route.http.max_request_body_bytes) {
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

        // Identity: who is asking. Failures are 401 with a generic body; the reason is audited.
        let principal = match route.identifier.identify(
            &route.identity_sources,
            &req.headers,
            peer_cert.as_ref(),
        ) {
            Ok(p) => p,
            Err(e) => {
                let denial = Denial {
                    reject: &Reject::UNAUTHENTICATED,
                    reason: e.reason(),
                    principal: None,
                    rule: None,
                };
                return deny(&mut down.io, &denial, &req, &request_id, client, &route).await;
            }
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
        let host = host_without_port(&req.host);
        let facts = Facts {
            principal: &principal,
            client: client.0.ip(),
            host: &host,
            method: &req.method,
            path: req.path(),
            model: model.as_deref(),
        };
        let decision = route.policy.decide(&facts);
        if decision.action == Action::Deny {
            let denial = Denial {
                reject: &Reject::FORBIDDEN,
                reason: decision.reason.clone(),
                principal: Some(&principal),
                rule: Some(&decision.rule),
            };
            return deny(&mut down.io, &denial, &req, &request_id, client, &route).await;
        }
        let upstream_name = decision
            .upstream
            .as_deref()
            .unwrap_or(&route.default_upstream);
        let Some(upstream) = route.upstreams.get(upstream_name) else {
            // Validation guarantees rules and listeners name existing upstreams.
            let denial = Denial {
                reject: &Reject::FORBIDDEN,
                reason: format!("unknown upstream {upstream_name}"),
                principal: Some(&principal),
                rule: Some(&decision.rule),
            };
            return deny(&mut down.io, &denial, &req, &request_id, client, &route).await;
        };
        // Redaction of the request body, when the deciding rule names a profile for requests.
        let profile = decision
            .redaction
            .as_ref()
            .and_then(|n| route.profiles.get(n))
            .cloned();
        let mut redactions = crate::redact::State::default();
        let mut fail_open_note = None;
        let (body, body_in) = match profile
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
                match redact_body(p, &req.headers, &raw, &mut redactions) {
                    Ok(b) => (Some(b), Some(n)),
                    Err(BodyRedaction::Unredactable(why)) if p.fail_open => {
                        fail_open_note = Some(format!(
                            "redaction failed open ({why}): body forwarded unredacted"
                        ));
                        (Some(raw), Some(n))
                    }
                    Err(e) => {
                        let denial = Denial {
                            reject: &Reject::UNPROCESSABLE,
                            reason: e.to_string(),
                            principal: Some(&principal),
                            rule: Some(&decision.rule),
                        };
                        return deny(&mut down.io, &denial, &req, &request_id, client, &route)
                            .await;
                    }
                }
            }
        };
        let fwd = Forward {
            upstream,
            principal: &principal,
            continue_sent,
            body,
            body_in,
            profile: profile.as_ref(),
        };
        let mut outcome = exchange(&mut down, &req, &request_id, client, &route, &fwd).await;
        let status = outcome.status.map_or(0, |s| s.as_u16());
        let duration_ms = millis(started);

        // The record goes to the audit writer before the client sees the response complete.
        let record = Record::Request(Box::new(RequestRecord {
            request_id: request_id.clone(),
            listener: route.listener.clone(),
            client: client.0.to_string(),
            tls: tls.clone(),
            principal: Some(principal.id.clone()),
            principal_kind: Some(principal.kind.as_str().to_owned()),
            method: req.method.to_string(),
            host: String::from_utf8_lossy(&req.host).into_owned(),
            path: req.path().to_owned(),
            model: model.clone(),
            rule: Some(decision.rule.clone()),
            decision: "allow".into(),
            upstream: format!("{upstream_name}@{}", upstream.config().address),
            status,
            bytes_in: outcome.bytes_in,
            bytes_out: outcome.bytes_out,
            duration_ms,
            upstream_ms: outcome.upstream_ms,
            redactions: redactions
                .counts
                .iter()
                .map(|(e, n)| (format!("{e}.request"), *n))
                .chain(
                    outcome
                        .response_redactions
                        .iter()
                        .map(|(e, n)| (format!("{e}.response"), *n)),
                )
                .collect(),
            guard: route.guard.clone(),
            failed: outcome
                .error
                .as_ref()
                .map(|(side, _)| side.as_str().to_owned()),
            reason: outcome
                .error
                .as_ref()
                .map(|(_, d)| d.clone())
                .or(fail_open_note),
        }));
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
        if !outcome.keep_alive {
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
    // Client-caused: info, not warn, so a client cannot raise the log's alarm level at will.
    tracing::info!(target: "moat::access", client = %client.0.ip(), status = r.status.as_u16(), reason = r.kind, detail, "request refused");
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        request_id: None,
        listener: route.listener.clone(),
        client: client.0.to_string(),
        status: r.status.as_u16(),
        reason: r.kind.to_owned(),
        detail: Some(detail.to_owned()),
        method,
        path,
        ..RejectRecord::default()
    })));
    let mut out = BytesMut::new();
    r.write_h1(&mut out, None);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// A request refused by identity or policy.
struct Denial<'a> {
    reject: &'a Reject,
    reason: String,
    principal: Option<&'a Principal>,
    rule: Option<&'a str>,
}

/// Answers 401 or 403, records the refusal (with the reason the client is not told), closes.
async fn deny<S: AsyncWrite + Unpin>(
    io: &mut S,
    d: &Denial<'_>,
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    route: &Route,
) {
    tracing::info!(
        target: "moat::access",
        client = %client.0.ip(),
        method = %req.method,
        path = req.path(),
        status = d.reject.status.as_u16(),
        reason = %d.reason,
        principal = d.principal.map(|p| p.to_string()),
        rule = d.rule,
        request_id,
        "request refused"
    );
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        request_id: Some(request_id.to_owned()),
        listener: route.listener.clone(),
        client: client.0.to_string(),
        status: d.reject.status.as_u16(),
        reason: d.reject.kind.to_owned(),
        detail: Some(d.reason.clone()),
        method: Some(req.method.to_string()),
        path: Some(req.path().to_owned()),
        principal: d.principal.map(|p| p.id.clone()),
        principal_kind: d.principal.map(|p| p.kind.as_str().to_owned()),
        rule: d.rule.map(str::to_owned),
    })));
    let mut out = BytesMut::new();
    d.reject.write_h1(&mut out, Some(request_id));
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// The media type of a message, lower-cased, without parameters.
fn content_type(headers: &http::HeaderMap) -> String {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Largest response body read whole for redaction.
const MAX_BUFFERED_RESPONSE: u64 = 16 * 1024 * 1024;

/// Reads a non-streamed response whole, redacts it, and leaves head and body in
/// `outcome.tail`. A response that cannot be redacted under a fail-closed profile becomes a 502.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, the exchange's own state"
)]
async fn buffered_response(
    mut conn: Conn,
    mut resp: ResponseHead,
    p: &Arc<crate::redact::Profile>,
    req: &RequestHead,
    request_id: &str,
    mut outcome: Outcome,
    upstream: &Arc<Upstream>,
    idle: Duration,
) -> Outcome {
    let mut dec = Decoder::new(resp.body, MAX_BUFFERED_RESPONSE);
    let mut body = BytesMut::new();
    let read: Result<(), String> = loop {
        match dec.decode(&mut conn.reader.buf) {
            Ok(Some(Frame::Data(d))) => body.extend_from_slice(&d),
            Ok(Some(Frame::Trailers(_))) => {}
            Ok(None) if dec.is_done() => break Ok(()),
            Ok(None) => match timeout(idle, conn.reader.fill()).await {
                Ok(Ok(0)) => break dec.finish_at_eof().map_err(|e| e.to_string()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Err(e.to_string()),
                Err(_) => break Err("response body idle timeout".into()),
            },
            Err(e) => break Err(e.to_string()),
        }
    };
    if let Err(why) = read {
        return upstream_failure(
            UpstreamError::Protocol {
                reason: format!("response body: {why}"),
            },
            request_id,
            outcome,
        )
        .await;
    }
    let mut st = crate::redact::State::default();
    let redacted = match redact_body(p, &resp.headers, &body, &mut st) {
        Ok(b) => b,
        Err(BodyRedaction::Unredactable(why)) if p.fail_open => {
            outcome.error = Some((
                Side::Internal,
                format!("response redaction failed open ({why}): forwarded unredacted"),
            ));
            body.freeze()
        }
        Err(e) => {
            let r = Reject {
                status: StatusCode::BAD_GATEWAY,
                kind: "redaction_failed",
                message: "the response could not be redacted",
                side: Side::Internal,
            };
            r.write_h1(&mut outcome.tail, Some(request_id));
            outcome.status = Some(r.status);
            outcome.error = Some((Side::Internal, format!("response redaction: {e}")));
            return outcome;
        }
    };
    outcome.response_redactions = st.counts;
    outcome.bytes_out = redacted.len() as u64;
    if resp.keep_alive && dec.is_done() {
        upstream.checkin(conn);
    }
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

/// Why a request body could not be redacted.
#[derive(Debug, thiserror::Error)]
enum BodyRedaction {
    /// A `block` operator matched.
    #[error(transparent)]
    Blocked(#[from] crate::redact::Blocked),
    /// The body is not what its content type says, or not a type the profile scans.
    #[error("body cannot be redacted: {0}")]
    Unredactable(&'static str),
}

/// Redacts a request body per profile: JSON string values (decoded, so escapes cannot hide a
/// value), or text as is. JSON is rewritten in place: every byte outside a changed value is kept.
fn redact_body(
    p: &crate::redact::Profile,
    headers: &http::HeaderMap,
    body: &[u8],
    st: &mut crate::redact::State,
) -> Result<Bytes, BodyRedaction> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || mime.ends_with("+json") {
        use crate::redact::rewrite::{redact_json, RewriteError};
        return match redact_json(&p.redactor, body, st, &p.paths) {
            Ok(Some(out)) => Ok(Bytes::from(out)),
            Ok(None) => Ok(Bytes::copy_from_slice(body)),
            Err(RewriteError::Blocked(b)) => Err(b.into()),
            Err(RewriteError::Invalid(..)) => Err(BodyRedaction::Unredactable("invalid JSON")),
        };
    }
    if mime.starts_with("text/") || mime.is_empty() {
        let text = std::str::from_utf8(body)
            .map_err(|_| BodyRedaction::Unredactable("text is not UTF-8"))?;
        return Ok(Bytes::from(p.redactor.redact(text, st)?));
    }
    if p.block_other_content {
        return Err(BodyRedaction::Unredactable("content type not scanned"));
    }
    Ok(Bytes::copy_from_slice(body))
}

/// Largest body prefix read to find the `model` field before deciding.
const MODEL_LOOKAHEAD: usize = 64 * 1024;

/// Reads (without consuming) up to [`MODEL_LOOKAHEAD`] bytes of the body and returns the
/// top-level JSON `model` string if it appears in them. The bytes stay in the read buffer and
/// are forwarded as usual; nothing is buffered beyond the look-ahead.
async fn peek_model<S: AsyncRead + Unpin>(
    down: &mut Reader<S>,
    req: &RequestHead,
    idle: Duration,
) -> Option<String> {
    let want = match req.body {
        BodyKind::Length(n) => (n as usize).min(MODEL_LOOKAHEAD),
        _ => MODEL_LOOKAHEAD,
    };
    loop {
        let mut copy = down.buf.clone();
        let mut dec = Decoder::new(req.body, u64::MAX);
        let mut prefix = BytesMut::new();
        while let Ok(Some(f)) = dec.decode(&mut copy) {
            if let Frame::Data(d) = f {
                prefix.extend_from_slice(&d);
            }
        }
        if let Some(m) = model_of(&prefix) {
            return Some(m);
        }
        if prefix.len() >= want || dec.is_done() || down.buf.len() >= MODEL_LOOKAHEAD + 1024 {
            return None;
        }
        match timeout(idle, down.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// The top-level `"model"` string of a JSON object, read from a possibly incomplete prefix.
fn model_of(prefix: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    /// Stops at the `model` key; the parse "fails" right after (the rest of the object is not
    /// read, and may not even be in the prefix), so the value is handed out through `found`.
    struct Model<'a> {
        found: &'a mut Option<String>,
    }
    impl<'de> Visitor<'de> for Model<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "model" {
                    *self.found = map.next_value::<String>().ok();
                    return Ok(());
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(prefix);
    let _ = de.deserialize_map(Model { found: &mut found });
    found
}

/// The Host value without a port, lower-cased.
fn host_without_port(host: &[u8]) -> String {
    let h = String::from_utf8_lossy(host).to_ascii_lowercase();
    if h.starts_with('[') {
        return h.split(']').next().map(|s| format!("{s}]")).unwrap_or(h);
    }
    h.rsplit_once(':').map_or(h.clone(), |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name.to_owned()
        } else {
            h.clone()
        }
    })
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

/// The request id moat sets: the client's when trusted and well-formed, else a new random one.
fn request_id(req: &RequestHead, trust: bool) -> String {
    if trust {
        if let Some(v) = req.headers.get("x-request-id") {
            let b = v.as_bytes();
            if !b.is_empty()
                && b.len() <= 128
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
            {
                return String::from_utf8_lossy(b).into_owned();
            }
        }
    }
    format!("{:032x}", rand::random::<u128>())
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
    let encoder = if req.body == BodyKind::Chunked {
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
    let mut conn = match upstream.checkout().await {
        Ok(c) => c,
        Err(e) => return upstream_failure(e, request_id, outcome).await,
    };

    // Send the head with the body bytes already decoded, then the rest of the body.
    let sent_at = Instant::now();
    let mut attempt = 0;
    let (resp, mut conn) = loop {
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
                    down,
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
    outcome.bytes_in = fwd.body_in.unwrap_or(decoder.total);
    outcome.status = Some(resp.status);
    outcome.upstream_ms = Some(millis(sent_at));

    // Response redaction, when the deciding rule's profile covers responses: server-sent events
    // are redacted event by event as they stream; other bodies are read whole (bounded), redacted
    // and sent with their new length.
    let profile = fwd
        .profile
        .filter(|p| p.responses && resp.body != BodyKind::Empty);
    let is_sse = content_type(&resp.headers).starts_with("text/event-stream");
    // Streamed text (chunked or close-delimited) goes through one hold-back on its raw text.
    let is_streamed_text = content_type(&resp.headers).starts_with("text/")
        && matches!(resp.body, BodyKind::Chunked | BodyKind::CloseDelimited);
    let mut sse: Option<Box<dyn crate::redact::stream::StreamRedactor>> = match profile {
        Some(p) if is_sse => Some(Box::new(crate::redact::sse::SseRedactor::new(p.clone()))),
        Some(p) if is_streamed_text => {
            Some(Box::new(crate::redact::stream::TextStream::new(p.clone())))
        }
        _ => None,
    };
    let mut resp = resp;
    let upstream_body = resp.body;
    if let Some(p) = profile.filter(|_| sse.is_none()) {
        return buffered_response(
            conn,
            resp,
            p,
            req,
            request_id,
            outcome,
            upstream,
            http.body_idle_timeout,
        )
        .await;
    }
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
    let mut decoder = Decoder::new(upstream_body, u64::MAX);
    let streamed = stream_response(
        &mut conn,
        &mut decoder,
        encoder,
        &mut out,
        down,
        http.body_idle_timeout,
        sse.as_deref_mut(),
    )
    .await;
    if let Some(r) = &sse {
        outcome.response_redactions = r.counts().clone();
        if let Some(why) = r.failure() {
            outcome.error = Some((
                Side::Internal,
                format!("response redaction failed, stream ended: {why}"),
            ));
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
    if resp.keep_alive && decoder.is_done() {
        upstream.checkin(conn);
    }
    outcome.keep_alive = keep_alive;
    outcome
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
async fn fill_body<S: AsyncRead + Unpin>(
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

async fn write_all_vectored(io: &mut Stream, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<()> {
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

async fn timed_write<W: AsyncWrite + Unpin>(
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
async fn read_response_head<S: AsyncWrite + Unpin>(
    conn: &mut Conn,
    req: &RequestHead,
    down: &mut Reader<S>,
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
            if resp.status != StatusCode::CONTINUE && req.version == Version::Http11 {
                let mut out = BytesMut::new();
                write_response_head(&mut out, &resp, "", Encoder::Raw, true, req.version);
                let _ = down.io.write_all(&out).await;
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

/// The request head sent upstream: hop-by-hop headers, client-supplied forwarding headers and
/// every client credential removed; moat's own forwarding headers, request id, identity headers
/// and the upstream's own credential added; framing restated.
fn upstream_head(
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    identity: Option<&Principal>,
    credential: Option<&Credential>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(512 + req.target.len() + req.headers.len() * 32);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(&req.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        if h1::is_hop_by_hop(name, &req.headers) || is_replaced_upstream(name) {
            continue;
        }
        if credential.is_some_and(|c| c.header == name.as_str()) {
            continue;
        }
        put_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    let ip = client.0.ip();
    put_header(&mut out, b"x-request-id", request_id.as_bytes());
    put_header(&mut out, b"x-forwarded-for", ip.to_string().as_bytes());
    put_header(&mut out, b"x-forwarded-proto", b"https");
    let for_ = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host = String::from_utf8_lossy(&req.host);
    put_header(
        &mut out,
        b"forwarded",
        format!("for={for_};proto=https;host=\"{host}\"").as_bytes(),
    );
    if let Some(p) = identity {
        // Ids and groups are configuration- or IdP-controlled; drop any that could not be a
        // header value rather than forward something malformed.
        for (name, value) in [
            ("x-moat-principal", p.id.clone()),
            ("x-moat-principal-kind", p.kind.as_str().to_owned()),
            ("x-moat-groups", p.groups.join(",")),
        ] {
            if http::HeaderValue::from_str(&value).is_ok() && !value.is_empty() {
                put_header(&mut out, name.as_bytes(), value.as_bytes());
            }
        }
    }
    if let Some(c) = credential {
        put_header(&mut out, c.header.as_bytes(), c.value.as_bytes());
    }
    match req.body {
        BodyKind::Empty | BodyKind::CloseDelimited => {}
        BodyKind::Length(n) => put_header(&mut out, b"content-length", n.to_string().as_bytes()),
        BodyKind::Chunked => put_header(&mut out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// Headers moat sets itself toward the upstream, or that carry the caller's credentials: the
/// client's values are dropped (identity is forwarded only as moat's own `x-moat-*` headers).
fn is_replaced_upstream(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::EXPECT
        || name == header::FORWARDED
        || name == header::AUTHORIZATION
        || name == header::COOKIE
        || name.as_str().starts_with("x-moat-")
        || matches!(
            name.as_str(),
            "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-request-id"
                | "x-api-key"
        )
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
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
async fn stream_response<S: AsyncWrite + Unpin>(
    conn: &mut Conn,
    decoder: &mut Decoder,
    encoder: Encoder,
    out: &mut BytesMut,
    down: &mut Reader<S>,
    idle: Duration,
    mut sse: Option<&mut (dyn crate::redact::stream::StreamRedactor + 'static)>,
) -> Result<u64, (Side, String)> {
    let client_err = |e: std::io::Error| (Side::Downstream, format!("client write failed: {e}"));
    let mut ended_with_trailers = false;
    let mut held_trailers = None;
    loop {
        match decoder.decode(&mut conn.reader.buf) {
            Ok(Some(f)) => {
                match (&mut sse, &f) {
                    (Some(r), Frame::Data(d)) => {
                        encoder.encode(&Frame::Data(Bytes::from(r.push(d))), out);
                        if r.failure().is_some() {
                            // The error event ends the stream; nothing more is read or sent.
                            break;
                        }
                    }
                    // Trailers end the chunked body: with a redactor they wait until its held
                    // text is out.
                    (Some(_), Frame::Trailers(_)) => held_trailers = Some(f.clone()),
                    _ => {
                        ended_with_trailers |= matches!(f, Frame::Trailers(_));
                        encoder.encode(&f, out);
                    }
                }
                // The piece that completes the body stays in `out` (see `Outcome::tail`).
                if out.len() >= FLUSH_AT && !decoder.is_done() {
                    timed_write(&mut down.io, out, idle)
                        .await
                        .map_err(client_err)?;
                    out.clear();
                }
                continue;
            }
            Ok(None) if decoder.is_done() => break,
            Ok(None) => {}
            Err(e) => return Err((Side::Upstream, format!("response body: {e}"))),
        }
        // Needs more from the upstream: first hand the client what is ready (this is what makes
        // each SSE event leave as soon as it arrives).
        if !out.is_empty() {
            timed_write(&mut down.io, out, idle)
                .await
                .map_err(client_err)?;
            out.clear();
        }
        match timeout(idle, conn.reader.fill()).await {
            Ok(Ok(0)) => {
                decoder
                    .finish_at_eof()
                    .map_err(|e| (Side::Upstream, format!("response body: {e}")))?;
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err((Side::Upstream, format!("response read failed: {e}"))),
            Err(_) => return Err((Side::Upstream, "response body idle timeout".into())),
        }
    }
    if let Some(r) = sse {
        let rest = r.finish();
        encoder.encode(&Frame::Data(Bytes::from(rest)), out);
    }
    if let Some(t) = held_trailers {
        encoder.encode(&t, out);
        ended_with_trailers = true;
    }
    if !ended_with_trailers {
        encoder.finish(out);
    }
    Ok(decoder.total)
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

#[cfg(test)]
mod tests {
    use super::model_of;

    #[test]
    fn model_is_read_from_a_prefix() {
        assert_eq!(
            model_of(br#"{"model":"gpt-x","messages":[]}"#).as_deref(),
            Some("gpt-x")
        );
        assert_eq!(
            model_of(br#"{"stream":true,"model":"gpt-x","messages":[{"role":"us"#).as_deref(),
            Some("gpt-x")
        );
        assert_eq!(
            model_of(br#"{"messages":[{"role":"user","content":"long"#),
            None,
            "model after the prefix"
        );
        assert_eq!(model_of(br#"{"model":42}"#), None);
        assert_eq!(model_of(br#"[1,2]"#), None);
        assert_eq!(
            model_of(br#"{"nested":{"model":"no"},"model":"yes"}"#).as_deref(),
            Some("yes")
        );
    }
}
