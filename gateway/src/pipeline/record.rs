//! What a request leaves behind: one audit record (or refusal record), one metadata-only log
//! line at one level rule, and the metrics. Never any content.

use std::collections::BTreeMap;

use crate::audit::record::{RejectRecord, RequestRecord};
use crate::audit::Record;
use crate::error::{Failure, Reject, Side};
use crate::identity::Principal;
use crate::protocol::{ClientAddr, ClientText, RequestHead};
use crate::route::{Peer, Route};

use super::stages::{Authorized, Denied};

/// Logs and records a refusal by identity, policy or request redaction.
/// `request` is the refused request, its id and the model its body names (when read).
pub(crate) fn record_denial(
    route: &Route,
    d: &Denied,
    (req, request_id, model): (&RequestHead, &str, Option<&str>),
    client: &ClientText,
) {
    crate::metrics::METRICS.refused(&route.listener, d.reject.kind, d.reject.status.as_u16());
    tracing::info!(
        target: "moat::access",
        listener = %route.listener,
        client = %client.addr,
        method = %req.method,
        path = req.path(),
        status = d.reject.status.as_u16(),
        reason = %d.reason,
        principal = d.principal.as_ref().map(|p| p.id.as_str()),
        principal_kind = d.principal.as_ref().map(|p| p.kind.as_str()),
        rule = d.rule.as_deref(),
        request_id,
        "request refused"
    );
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        request_id: Some(request_id.to_owned()),
        listener: route.listener.clone(),
        region: route.region.clone(),
        client: client.addr.clone(),
        status: d.reject.status.as_u16(),
        reason: d.reject.kind.to_owned(),
        detail: Some(d.reason.clone()),
        method: Some(req.method.to_string()),
        path: Some(req.path().to_owned()),
        principal: d.principal.as_ref().map(|p| p.id.clone()),
        principal_kind: d.principal.as_ref().map(|p| p.kind.as_str().into()),
        caller_regions: d
            .principal
            .as_ref()
            .map(|p| p.regions.clone())
            .unwrap_or_default(),
        model: model.map(str::to_owned),
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
    client: &ClientText,
) {
    record_refusal_of(route, r, (None, method, path), detail, client);
}

/// [`record_refusal`] of a request that has its id already (sent to the client in
/// `X-Request-Id`): the record carries it.
pub(crate) fn record_refusal_of(
    route: &Route,
    r: &Reject,
    (request_id, method, path): (Option<&str>, Option<String>, Option<String>),
    detail: &str,
    client: &ClientText,
) {
    crate::metrics::METRICS.refused(&route.listener, r.kind, r.status.as_u16());
    if r.side == Side::Downstream {
        // Client-caused: info, so a client cannot raise the log's alarm level at will.
        tracing::info!(target: "moat::access", listener = %route.listener, client = %client.addr, status = r.status.as_u16(), reason = r.kind, detail, "request refused");
    } else {
        tracing::warn!(target: "moat::access", listener = %route.listener, client = %client.addr, status = r.status.as_u16(), reason = r.kind, detail, "request refused");
    }
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        request_id: request_id.map(str::to_owned),
        listener: route.listener.clone(),
        region: route.region.clone(),
        client: client.addr.clone(),
        status: r.status.as_u16(),
        reason: r.kind.to_owned(),
        detail: Some(detail.to_owned()),
        method,
        path,
        ..RejectRecord::default()
    })));
}

/// Logs and records a connection refused below HTTP (a PROXY header refused, an HTTP/2
/// connection ended with GOAWAY): no HTTP status was sent, so the record's `status` is 0.
pub(crate) fn record_connection_refusal(
    route: &Route,
    kind: &'static str,
    detail: &str,
    client: &ClientText,
) {
    crate::metrics::METRICS.refused(&route.listener, kind, 0);
    // A flood of broken connections must not flood the log: at most one line a second (each
    // is still counted and recorded).
    static LOGGED: crate::caps::OncePerSecond = crate::caps::OncePerSecond::new();
    if LOGGED.ready() {
        tracing::info!(target: "moat::access", listener = %route.listener, client = %client.addr, reason = kind, detail, "connection refused (further ones this second are recorded, not logged)");
    }
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        listener: route.listener.clone(),
        region: route.region.clone(),
        client: client.addr.clone(),
        status: 0,
        reason: kind.to_owned(),
        detail: Some(detail.to_owned()),
        ..RejectRecord::default()
    })));
}

/// Records a request whose client went away before its body was read (closed, reset): no
/// status was sent and nothing was refused, so the record says `client_aborted` with the body
/// bytes that had arrived; the log line is at debug.
/// `request` is the request and its id once its head was read; without it the client went away
/// in the middle of a head.
pub(crate) fn record_client_abort(
    route: &Route,
    request: Option<(&RequestHead, &str)>,
    received: u64,
    e: &dyn std::fmt::Display,
    client: &ClientText,
) {
    let request_id = request.map(|(_, id)| id);
    tracing::debug!(target: "moat::access", listener = %route.listener, client = %client.addr, request_id, bytes_in = received, error = %e, "client went away mid-request");
    let detail = match request {
        Some(_) => format!("the client went away after {received} request body bytes: {e}"),
        None => format!("the client went away in the middle of a request head: {e}"),
    };
    let _ = route.audit.record(Record::Reject(Box::new(RejectRecord {
        request_id: request_id.map(str::to_owned),
        listener: route.listener.clone(),
        region: route.region.clone(),
        client: client.addr.clone(),
        status: 0,
        reason: CLIENT_ABORTED.to_owned(),
        detail: Some(detail),
        method: request.map(|(r, _)| r.method.to_string()),
        path: request.map(|(r, _)| r.path().to_owned()),
        ..RejectRecord::default()
    })));
}

/// What a record says of a request its client abandoned.
pub(crate) const CLIENT_ABORTED: &str = "client_aborted";

/// What a record's `failed` says: the side that failed, or `client_aborted` when the client
/// went away.
fn failed_label(f: &Failure) -> &'static str {
    match f {
        Failure::Downstream(e) if e.client_gone() => CLIENT_ABORTED,
        f => f.side().as_str(),
    }
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
    pub error: Option<&'a Failure>,
    /// A note when nothing failed (redaction failed open).
    pub note: Option<String>,
}

/// Counts a forwarded request in the metrics: status and rule, duration, redactions.
fn count_request(route: &Route, protocol: &'static str, auth: &Authorized, done: &Exchanged<'_>) {
    use crate::metrics::{RedactionLabels, RequestLabels, METRICS};
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
    peer: &Peer,
    protocol: &'static str,
    req: &RequestHead,
    request_id: &str,
    principal: &Principal,
    model: Option<&str>,
    auth: &Authorized,
    done: &Exchanged<'_>,
) -> Record {
    count_request(route, protocol, auth, done);
    Record::Request(Box::new(RequestRecord {
        request_id: request_id.to_owned(),
        listener: route.listener.clone(),
        region: route.region.clone(),
        client: peer.text.addr.clone(),
        tls: peer.tls.clone(),
        principal: Some(principal.id.clone()),
        principal_kind: Some(principal.kind.as_str().into()),
        caller_regions: principal.regions.clone(),
        method: crate::protocol::method_name(&req.method),
        host: String::from_utf8_lossy(&req.host).into_owned(),
        path: req.path().to_owned(),
        model: model.map(str::to_owned),
        rule: Some(auth.rule.clone()),
        decision: "allow".into(),
        upstream: auth.upstream.label.clone(),
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
        failed: done.error.map(|f| failed_label(f).into()),
        reason: done
            .error
            .map(ToString::to_string)
            .or_else(|| done.note.clone()),
    }))
}

/// The access log line of a forwarded request, metadata only. Failures the client caused stay
/// at info (a client cannot raise the log's alarm level at will); the upstream's or moat's own
/// go to warn.
pub(crate) fn log_request(
    route: &Route,
    protocol: &'static str,
    client: ClientAddr,
    req: &RequestHead,
    request_id: &str,
    done: &Exchanged<'_>,
) {
    macro_rules! access {
        ($level:ident $(, $field:ident = $value:expr)*) => {
            tracing::$level!(
                target: "moat::access",
                listener = %route.listener,
                protocol,
                client = %client.0,
                method = %req.method,
                path = req.path(),
                status = done.status,
                bytes_in = done.bytes_in,
                bytes_out = done.bytes_out,
                duration_ms = done.duration_ms,
                request_id,
                $($field = $value,)*
            )
        };
    }
    match done.error {
        None => access!(info),
        Some(f) => {
            let (side, detail) = (failed_label(f), f.to_string());
            if f.side() == Side::Downstream {
                access!(info, failed = side, detail = detail.as_str());
            } else {
                access!(warn, failed = side, detail = detail.as_str());
            }
        }
    }
}

/// Counts a request refused because the audit trail cannot take records (moat's own failure:
/// warn).
pub(crate) fn refuse_unaudited(route: &Route, client: ClientAddr, req: &RequestHead) {
    let r = Reject::AUDIT_UNAVAILABLE;
    route.audit.note_refused();
    crate::metrics::METRICS.refused(&route.listener, r.kind, r.status.as_u16());
    tracing::warn!(target: "moat::access", client = %client.0.ip(), method = %req.method, path = req.path(), status = r.status.as_u16(), "refused: audit trail unavailable");
}
