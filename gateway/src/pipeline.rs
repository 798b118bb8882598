//! The stages every request passes, whatever protocol it arrived on.
//!
//! HTTP/1.1 ([`crate::proxy`]) and HTTP/2 ([`crate::h2`]) turn what they receive into one
//! [`RequestHead`] and run the same stages in the same order: the audit trail must be taking
//! records, the path must be canonical → [`identify`] → [`authorize`] (policy, with the `model`
//! read from the start of the body by [`crate::lookahead::ModelScan`]) → [`redact_body`] when the deciding rule names
//! a profile for requests → the exchange with the upstream ([`upstream_head`] for an HTTP/1.1
//! upstream) → [`response_redaction`] → one audit record ([`request_record`]) or refusal record
//! ([`record_denial`]). Only framing differs between the protocols.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};

use crate::audit::record::{RejectRecord, RequestRecord, TlsFacts};
use crate::audit::Record;
use crate::config::Credential;
use crate::error::{Reject, Side};
use crate::identity::{PeerCert, Principal};
use crate::policy::{Action, Facts};
use crate::protocol::h1;
use crate::protocol::{BodyKind, RequestHead, ResponseHead};
use crate::proxy::{ClientAddr, Route};
use crate::redact::stream::StreamRedactor;
use crate::redact::Profile;
use crate::upstream::Upstream;

/// A request refused by identity, policy or request redaction.
#[derive(Debug)]
pub(crate) struct Denied {
    /// What the client is told.
    pub reject: Reject,
    /// Why, for the audit record and the log (never shown to the client).
    pub reason: String,
    /// Who asked, when known.
    pub principal: Option<Box<Principal>>,
    /// The deciding rule, when one decided.
    pub rule: Option<String>,
}

/// Identity: who is asking. A failure is a 401 with a generic body; the reason is audited.
pub(crate) fn identify(
    route: &Route,
    req: &RequestHead,
    peer: Option<&PeerCert>,
) -> Result<Principal, Denied> {
    route
        .identifier
        .identify(&route.identity_sources, &req.headers, peer)
        .map_err(|e| Denied {
            reject: Reject::UNAUTHENTICATED,
            reason: e.reason(),
            principal: None,
            rule: None,
        })
}

/// What policy allowed: the rule, the upstream and the redaction profile.
#[derive(Debug)]
pub(crate) struct Authorized {
    /// The deciding rule.
    pub rule: String,
    /// The upstream's name.
    pub upstream_name: String,
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The rule's redaction profile.
    pub profile: Option<Arc<Profile>>,
}

/// Policy: may this principal use this route and model from this region?
pub(crate) fn authorize(
    route: &Route,
    req: &RequestHead,
    client: ClientAddr,
    principal: &Principal,
    model: Option<&str>,
) -> Result<Authorized, Denied> {
    let host = host_without_port(&req.host);
    let facts = Facts {
        principal,
        client: client.0.ip(),
        host: &host,
        method: &req.method,
        path: req.path(),
        model,
    };
    let decision = route.policy.decide(&facts);
    let denied = |reason: String| Denied {
        reject: Reject::FORBIDDEN,
        reason,
        principal: Some(Box::new(principal.clone())),
        rule: Some(decision.rule.clone()),
    };
    if decision.action == Action::Deny {
        return Err(denied(decision.reason.clone()));
    }
    let upstream_name = decision
        .upstream
        .clone()
        .unwrap_or_else(|| route.default_upstream.clone());
    let Some(upstream) = route.upstreams.get(&upstream_name).cloned() else {
        // Validation guarantees rules and listeners name existing upstreams.
        return Err(denied(format!("unknown upstream {upstream_name}")));
    };
    let profile = decision
        .redaction
        .as_ref()
        .and_then(|n| route.profiles.get(n))
        .cloned();
    Ok(Authorized {
        rule: decision.rule,
        upstream_name,
        upstream,
        profile,
    })
}

/// A request body redacted under the rule's profile: the body to forward, and the note for the
/// audit record when the profile failed open. A compressed body is decoded first (bounded by
/// `http.max_request_body_bytes` and `http.max_decompression_ratio`) and forwarded decoded, its
/// `Content-Encoding` removed from `req`; an unknown or stacked coding is refused (415).
pub(crate) fn redact_request(
    p: &Profile,
    req: &mut RequestHead,
    raw: Bytes,
    st: &mut crate::redact::State,
    principal: &Principal,
    rule: &str,
    http: &crate::config::HttpConfig,
) -> Result<(Bytes, Option<String>), Denied> {
    use crate::coding::{decode_all, Coding, Limits};
    let refuse = |reject: Reject, reason: String| Denied {
        reject,
        reason,
        principal: Some(Box::new(principal.clone())),
        rule: Some(rule.to_owned()),
    };
    let raw = match Coding::of(&req.headers) {
        Ok(None) => raw,
        Ok(Some(c)) => {
            let limits = Limits {
                max_bytes: http.max_request_body_bytes,
                max_ratio: http.max_decompression_ratio,
            };
            match decode_all(c, &raw, limits) {
                Ok(plain) => {
                    req.headers.remove(header::CONTENT_ENCODING);
                    Bytes::from(plain)
                }
                Err(e) => return Err(refuse(Reject::from(&e), format!("request body: {e}"))),
            }
        }
        Err(e) => return Err(refuse(Reject::from(&e), format!("request body: {e}"))),
    };
    match redact_body(p, &req.headers, &raw, st) {
        Ok(b) => Ok((b, None)),
        Err(BodyRedaction::Unredactable(why)) if p.fail_open => Ok((
            raw,
            Some(format!(
                "redaction failed open ({why}): body forwarded unredacted"
            )),
        )),
        Err(e) => Err(Denied {
            reject: Reject::UNPROCESSABLE,
            reason: e.to_string(),
            principal: Some(Box::new(principal.clone())),
            rule: Some(rule.to_owned()),
        }),
    }
}

/// How a response is redacted under the rule's profile.
pub(crate) enum ResponseRedaction {
    /// Passed as it comes.
    None,
    /// Redacted as it streams: server-sent events event by event, other streamed text through
    /// one hold-back on its raw text.
    Stream(Box<dyn StreamRedactor>),
    /// Read whole (bounded), redacted, sent with its new length.
    Buffered(Arc<Profile>),
}

/// Picks the response redaction for a response head. A compressed stream is decoded as it
/// streams (bounded by `max_ratio`) and sent decoded, its `Content-Encoding` removed from
/// `resp`; an unknown or stacked coding ends it at once unless the profile fails open (then it
/// passes as it is). Buffered bodies are decoded by [`read_and_redact`].
pub(crate) fn response_redaction(
    profile: Option<&Arc<Profile>>,
    resp: &mut ResponseHead,
    max_ratio: u64,
) -> ResponseRedaction {
    use crate::coding::{Coding, Limits};
    use crate::redact::stream::Decoded;
    let Some(p) = profile.filter(|p| p.responses && resp.body != BodyKind::Empty) else {
        return ResponseRedaction::None;
    };
    let ct = content_type(&resp.headers);
    let stream: Box<dyn StreamRedactor> = if ct.starts_with("text/event-stream") {
        Box::new(crate::redact::sse::SseRedactor::new(p.clone()))
    } else if is_ndjson(&ct) {
        Box::new(crate::redact::ndjson::NdjsonRedactor::new(p.clone()))
    } else if ct.starts_with("text/")
        && matches!(resp.body, BodyKind::Chunked | BodyKind::CloseDelimited)
    {
        Box::new(crate::redact::stream::TextStream::new(p.clone()))
    } else {
        return ResponseRedaction::Buffered(p.clone());
    };
    let limits = Limits {
        max_bytes: u64::MAX,
        max_ratio,
    };
    let coding = match Coding::of(&resp.headers) {
        Ok(None) => return ResponseRedaction::Stream(stream),
        Err(e) if p.fail_open => {
            return ResponseRedaction::Stream(Box::new(crate::redact::stream::PassThrough::new(
                format!("response redaction failed open ({e}): forwarded unredacted"),
            )))
        }
        Ok(Some(c)) => Ok((c, limits)),
        Err(e) => Err(e),
    };
    resp.headers.remove(header::CONTENT_ENCODING);
    ResponseRedaction::Stream(Box::new(Decoded::new(coding, stream)))
}

/// What the audit record says of a redacted stream: why it was ended, or the note of a profile
/// that failed open.
pub(crate) fn stream_note(r: &dyn StreamRedactor) -> Option<String> {
    match r.failure() {
        Some(why) => Some(format!("response redaction failed, stream ended: {why}")),
        None => r.note().map(str::to_owned),
    }
}

/// Largest response body read whole for redaction.
pub(crate) const MAX_BUFFERED_RESPONSE: u64 = 16 * 1024 * 1024;

/// A response body read whole and redacted.
pub(crate) struct Redacted {
    /// What the client gets.
    pub body: Bytes,
    /// Values redacted, by entity.
    pub counts: BTreeMap<&'static str, u64>,
    /// Set when the profile failed open and the body went out unredacted.
    pub note: Option<String>,
}

/// Why a response could not be read whole and redacted.
pub(crate) enum NotRedacted {
    /// Reading it from the upstream failed.
    Upstream(crate::upstream::UpstreamError),
    /// It cannot be redacted under a fail-closed profile (the client gets 502).
    Refused(String),
}

/// Reads a response body whole (at most [`MAX_BUFFERED_RESPONSE`]), hands its connection back
/// to `upstream`'s pool, and redacts it under `p`. A compressed body is decoded first (at most
/// [`MAX_BUFFERED_RESPONSE`] decoded, `max_ratio` decoded bytes per encoded byte) and sent
/// decoded, its `Content-Encoding` removed from `resp`; one that cannot be decoded follows the
/// profile's fail mode (open: sent as it came).
pub(crate) async fn read_and_redact(
    mut up: crate::upstream::UpBody,
    upstream: &Upstream,
    resp: &mut ResponseHead,
    p: &Profile,
    idle: std::time::Duration,
    max_ratio: u64,
) -> Result<Redacted, NotRedacted> {
    use crate::upstream::{UpFrame, UpstreamError};
    let mut body = BytesMut::new();
    let read: Result<(), String> = loop {
        match up.next(idle).await {
            Ok(Some(UpFrame::Data(d))) => {
                body.extend_from_slice(&d);
                if body.len() as u64 > MAX_BUFFERED_RESPONSE {
                    break Err("larger than the redaction buffer".into());
                }
            }
            Ok(Some(UpFrame::Trailers(_))) => {}
            Ok(None) => break Ok(()),
            Err((_, e)) => break Err(e),
        }
    };
    if let Err(why) = read {
        return Err(NotRedacted::Upstream(UpstreamError::Protocol {
            reason: format!("response body: {why}"),
        }));
    }
    up.done(upstream);
    let mut st = crate::redact::State::default();
    let limits = crate::coding::Limits {
        max_bytes: MAX_BUFFERED_RESPONSE,
        max_ratio,
    };
    let decoded = crate::coding::Coding::of(&resp.headers).and_then(|c| match c {
        None => Ok(None),
        Some(c) => crate::coding::decode_all(c, &body, limits).map(Some),
    });
    let body = match decoded {
        Ok(None) => body,
        Ok(Some(plain)) => {
            resp.headers.remove(header::CONTENT_ENCODING);
            BytesMut::from(&plain[..])
        }
        Err(e) if p.fail_open => {
            return Ok(Redacted {
                body: body.freeze(),
                counts: st.counts,
                note: Some(format!(
                    "response redaction failed open (body: {e}): forwarded unredacted"
                )),
            })
        }
        Err(e) => return Err(NotRedacted::Refused(format!("response body: {e}"))),
    };
    match redact_body(p, &resp.headers, &body, &mut st) {
        Ok(b) => Ok(Redacted {
            body: b,
            counts: st.counts,
            note: None,
        }),
        Err(BodyRedaction::Unredactable(why)) if p.fail_open => Ok(Redacted {
            body: body.freeze(),
            counts: st.counts,
            note: Some(format!(
                "response redaction failed open ({why}): forwarded unredacted"
            )),
        }),
        Err(e) => Err(NotRedacted::Refused(format!("response redaction: {e}"))),
    }
}

/// Logs and records a refusal by identity, policy or request redaction.
pub(crate) fn record_denial(
    route: &Route,
    d: &Denied,
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
) {
    crate::metrics::METRICS.refused(&route.listener, d.reject.kind, d.reject.status.as_u16());
    tracing::info!(
        target: "moat::access",
        client = %client.0.ip(),
        method = %req.method,
        path = req.path(),
        status = d.reject.status.as_u16(),
        reason = %d.reason,
        principal = d.principal.as_ref().map(|p| p.to_string()),
        rule = d.rule.as_deref(),
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
        principal: d.principal.as_ref().map(|p| p.id.clone()),
        principal_kind: d.principal.as_ref().map(|p| p.kind.as_str().to_owned()),
        rule: d.rule.clone(),
    })));
}

/// Logs and records a request refused before identity (malformed, limits, timeouts).
pub(crate) fn record_refusal(
    route: &Route,
    r: &Reject,
    method: Option<String>,
    path: Option<String>,
    detail: &str,
    client: ClientAddr,
) {
    crate::metrics::METRICS.refused(&route.listener, r.kind, r.status.as_u16());
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
}

/// What the exchange reports for the request's audit record.
pub(crate) struct Exchanged<'a> {
    /// Status sent to the client (0: none).
    pub status: u16,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes received from the upstream.
    pub bytes_out: u64,
    /// Whole request, ms.
    pub duration_ms: f64,
    /// Request sent to response head, ms.
    pub upstream_ms: Option<f64>,
    /// Values redacted in the request, by entity.
    pub request_redactions: &'a BTreeMap<&'static str, u64>,
    /// Values redacted in the response, by entity.
    pub response_redactions: &'a BTreeMap<&'static str, u64>,
    /// Which side failed, and why.
    pub error: Option<&'a (Side, String)>,
    /// A note when nothing failed (redaction failed open).
    pub note: Option<String>,
}

/// Counts a forwarded request in the metrics: status and rule, duration, redactions.
fn count_request(route: &Route, tls: &TlsFacts, auth: &Authorized, done: &Exchanged<'_>) {
    use crate::metrics::{RedactionLabels, RequestLabels, METRICS};
    let protocol = if tls.alpn.as_deref() == Some("h2") || tls.version.is_none() {
        "h2"
    } else {
        "http/1.1"
    };
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            listener: route.listener.clone(),
            protocol,
            status: done.status,
            rule: auth.rule.clone(),
        })
        .inc();
    route.request_seconds.observe(done.duration_ms / 1000.0);
    for (counts, direction) in [
        (done.request_redactions, "request"),
        (done.response_redactions, "response"),
    ] {
        for (entity, n) in counts {
            METRICS
                .redactions
                .get_or_create(&RedactionLabels {
                    entity: (*entity).to_owned(),
                    direction,
                })
                .inc_by(*n);
        }
    }
}

/// The audit record of one forwarded request.
#[expect(clippy::too_many_arguments, reason = "the record's own facts")]
pub(crate) fn request_record(
    route: &Route,
    client: ClientAddr,
    tls: &TlsFacts,
    req: &RequestHead,
    request_id: &str,
    principal: &Principal,
    model: Option<&str>,
    auth: &Authorized,
    done: Exchanged<'_>,
) -> Record {
    count_request(route, tls, auth, &done);
    Record::Request(Box::new(RequestRecord {
        request_id: request_id.to_owned(),
        listener: route.listener.clone(),
        client: client.0.to_string(),
        tls: tls.clone(),
        principal: Some(principal.id.clone()),
        principal_kind: Some(principal.kind.as_str().to_owned()),
        method: req.method.to_string(),
        host: String::from_utf8_lossy(&req.host).into_owned(),
        path: req.path().to_owned(),
        model: model.map(str::to_owned),
        rule: Some(auth.rule.clone()),
        decision: "allow".into(),
        upstream: format!("{}@{}", auth.upstream_name, auth.upstream.config().address),
        status: done.status,
        bytes_in: done.bytes_in,
        bytes_out: done.bytes_out,
        duration_ms: done.duration_ms,
        upstream_ms: done.upstream_ms,
        redactions: done
            .request_redactions
            .iter()
            .map(|(e, n)| (format!("{e}.request"), *n))
            .chain(
                done.response_redactions
                    .iter()
                    .map(|(e, n)| (format!("{e}.response"), *n)),
            )
            .collect(),
        guard: route.guard.clone(),
        failed: done.error.map(|(side, _)| side.as_str().to_owned()),
        reason: done.error.map(|(_, d)| d.clone()).or(done.note),
    }))
}

/// The media type of a message, lower-cased, without parameters.
pub(crate) fn content_type(headers: &http::HeaderMap) -> String {
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

/// Newline-delimited JSON (Ollama's streams, JSON Lines), by media type.
fn is_ndjson(mime: &str) -> bool {
    matches!(
        mime.split(';').next().unwrap_or("").trim(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
    )
}

/// Why a request body could not be redacted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyRedaction {
    /// A `block` operator matched.
    #[error(transparent)]
    Blocked(#[from] crate::redact::Blocked),
    /// The body is not what its content type says, or not a type the profile scans.
    #[error("body cannot be redacted: {0}")]
    Unredactable(&'static str),
}

/// Redacts a request body per profile: JSON string values (decoded, so escapes cannot hide a
/// value), or text as is. JSON is rewritten in place: every byte outside a changed value is kept.
pub(crate) fn redact_body(
    p: &Profile,
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
    if is_ndjson(mime) {
        use crate::redact::rewrite::RewriteError;
        return match crate::redact::ndjson::redact_lines(&p.redactor, body, st, &p.paths) {
            Ok(Some(out)) => Ok(Bytes::from(out)),
            Ok(None) => Ok(Bytes::copy_from_slice(body)),
            Err(RewriteError::Blocked(b)) => Err(b.into()),
            Err(RewriteError::Invalid(..)) => Err(BodyRedaction::Unredactable("invalid NDJSON")),
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

/// The Host value without a port, lower-cased.
pub(crate) fn host_without_port(host: &[u8]) -> String {
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

/// The request id moat sets: the client's when trusted and well-formed, else a new random one.
pub(crate) fn request_id(req: &RequestHead, trust: bool) -> String {
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

/// The request head sent to an HTTP/1.1 upstream: hop-by-hop headers, client-supplied
/// forwarding headers and every client credential removed; moat's own forwarding headers,
/// request id, identity headers and the upstream's own credential added; framing restated.
pub(crate) fn upstream_head(
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
    upstream_fields(req, request_id, client, identity, credential, |n, v| {
        put_header(&mut out, n, v);
    });
    match req.body {
        BodyKind::Empty | BodyKind::CloseDelimited => {}
        BodyKind::Length(n) => put_header(&mut out, b"content-length", n.to_string().as_bytes()),
        BodyKind::Chunked => put_header(&mut out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// The same request for an `h2c` upstream: the same fields (the host as `:authority`),
/// `te: trailers` kept when the client sent it (gRPC needs it), the length restated when known.
pub(crate) fn upstream_request_h2(
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    identity: Option<&Principal>,
    credential: Option<&Credential>,
) -> Result<http::Request<()>, &'static str> {
    let host = std::str::from_utf8(&req.host).map_err(|_| "host is not ASCII")?;
    let target = std::str::from_utf8(&req.target).map_err(|_| "target is not ASCII")?;
    let uri: http::Uri = format!("http://{host}{target}")
        .parse()
        .map_err(|_| "host and target do not make a URI")?;
    let mut r = http::Request::new(());
    *r.method_mut() = req.method.clone();
    *r.uri_mut() = uri;
    let h = r.headers_mut();
    upstream_fields(req, request_id, client, identity, credential, |n, v| {
        if n == b"host" {
            return;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), http::HeaderValue::from_bytes(v)) {
            h.append(n, v);
        }
    });
    let trailers = req.headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    if trailers {
        h.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    if let BodyKind::Length(n) = req.body {
        h.insert(header::CONTENT_LENGTH, n.into());
    }
    Ok(r)
}

/// Every field moat sends upstream, whatever the protocol, except the framing.
fn upstream_fields(
    req: &RequestHead,
    request_id: &str,
    client: ClientAddr,
    identity: Option<&Principal>,
    credential: Option<&Credential>,
    mut put: impl FnMut(&[u8], &[u8]),
) {
    for (name, value) in &req.headers {
        if h1::is_hop_by_hop(name, &req.headers) || is_replaced_upstream(name) {
            continue;
        }
        if credential.is_some_and(|c| c.header == name.as_str()) {
            continue;
        }
        put(name.as_str().as_bytes(), value.as_bytes());
    }
    let ip = client.0.ip();
    put(b"x-request-id", request_id.as_bytes());
    put(b"x-forwarded-for", ip.to_string().as_bytes());
    put(b"x-forwarded-proto", b"https");
    let for_ = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host = String::from_utf8_lossy(&req.host);
    put(
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
                put(name.as_bytes(), value.as_bytes());
            }
        }
    }
    if let Some(c) = credential {
        put(c.header.as_bytes(), c.value.as_bytes());
    }
}

/// Headers moat sets itself toward the upstream, or that carry the caller's credentials: the
/// client's values are dropped (identity is forwarded only as moat's own `x-moat-*` headers).
pub(crate) fn is_replaced_upstream(name: &HeaderName) -> bool {
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

pub(crate) fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
