//! The request sequence: the one path every request takes, whatever protocol it arrived on,
//! read top to bottom in `serve`:
//!
//! admission (the audit trail takes records) → canonical path → identity → policy (with the
//! `model` read from the start of the body) → request inspection → upstream exchange →
//! response inspection → audit record → the response completes.
//!
//! HTTP/1.1 ([`crate::http1`]) and HTTP/2 ([`crate::http2`]) turn what they receive into one
//! [`RequestHead`] and drive this sequence through the [`Downstream`] interface; they do
//! framing and I/O only, so both protocols take the same decisions by construction.

mod exchange;
mod record;
mod response;
mod stages;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::downstream::Downstream;
use crate::error::{DownstreamError, Reject};
use crate::protocol::h1::H1Error;
use crate::protocol::{BodyKind, ClientText, RequestHead};
use crate::route::{Peer, Route};
use crate::telemetry::millis;
use crate::upstream::Outgoing;

pub(crate) use record::{record_client_abort, record_connection_refusal, record_refusal};

/// Serves one request on `d`, from admission to the end of its response.
pub(crate) async fn serve<D: Downstream>(
    d: &mut D,
    route: &Route,
    peer: &Peer,
    mut req: RequestHead,
    started: Instant,
) {
    let client = peer.client;

    // Admission: nothing is forwarded while the audit trail cannot take records.
    if !route.audit.healthy() {
        record::refuse_unaudited(route, client, &req);
        return d.reject(&Reject::AUDIT_UNAVAILABLE, None).await;
    }
    let request_id = stages::request_id(&req, route.http.trust_request_id);
    let refused = Refused {
        route,
        request_id: &request_id,
        client: &peer.text,
    };

    // Canonical path: what policy matches must be what the upstream routes.
    if let Err(e) = crate::policy::canonical_path(req.path()) {
        let r = Reject::from(&H1Error::Malformed {
            reason: "path is not canonical",
        });
        return refused.refuse(d, &req, &r, &e.to_string()).await;
    }

    // Identity: who is asking.
    let principal = match stages::identify(route, &req, peer.cert.as_ref()) {
        Ok(p) => p,
        Err(denied) => return refused.deny(d, &req, &denied, None).await,
    };

    // Policy: may this principal use this route and model from this region? The model is read
    // from the start of the body (kept, to be forwarded first): when rules name models, up to
    // 64 KiB of it is waited for; otherwise, for the audit record, what came with the head —
    // unless the client waits for `100 Continue`, which is only sent once policy allowed.
    let mut prefix = BytesMut::new();
    // What `prefetch` took with the head, forwarded as it is (no copy into `prefix`).
    let mut early: Option<Bytes> = None;
    let mut ended = req.body == BodyKind::Empty;
    let mut model = None;
    if route.policy.needs_model() && !ended {
        match stages::read_model(d, &mut prefix, &req, &route.http).await {
            Ok((m, end)) => (model, ended) = (m, end),
            Err(e) => return refused.body(d, &req, &e).await,
        }
    } else if !ended && !req.expect_continue {
        match d.prefetch().await {
            Ok((start, whole)) => {
                model = stages::model_in(&start, &req);
                ended = whole;
                early = Some(start);
            }
            Err(e) => return refused.body(d, &req, &e).await,
        }
    }
    let auth = match stages::authorize(route, &req, client, &principal, model.as_deref()) {
        Ok(a) => a,
        Err(denied) => return refused.deny(d, &req, &denied, model.as_deref()).await,
    };

    // Request inspection: under a profile for requests the body is read whole (bounded),
    // decoded and redacted; otherwise it streams, after what is already here was checked.
    let mut redactions = crate::redact::State::default();
    let mut note = None;
    let profile = auth
        .profile
        .as_ref()
        .filter(|p| p.requests && response::inspects(p, &response::content_type(&req.headers)));
    let (first, streaming) = match profile {
        Some(p) if req.body != BodyKind::Empty => {
            // The look-ahead may have read it to its end already.
            let raw = if ended {
                early.unwrap_or_else(|| prefix.freeze())
            } else {
                if let Some(start) = early {
                    prefix.extend_from_slice(&start);
                }
                match stages::read_rest(d, prefix).await {
                    Ok(b) => b,
                    Err(e) => return refused.body(d, &req, &e).await,
                }
            };
            let st = &mut redactions;
            match stages::redact_request(p, &mut req, raw, st, &principal, &auth.rule, &route.http)
            {
                Ok(inspected) => {
                    note = inspected.note;
                    (inspected.body, false)
                }
                Err(denied) => return refused.deny(d, &req, &denied, model.as_deref()).await,
            }
        }
        _ if ended => (early.unwrap_or_else(|| prefix.freeze()), false),
        _ => match early.filter(|s| !s.is_empty()) {
            Some(start) => (start, true),
            None if !prefix.is_empty() => (prefix.freeze(), true),
            // Nothing came with the head yet.
            None => match d.prefetch().await {
                Ok((start, whole)) => (start, !whole),
                Err(e) => return refused.body(d, &req, &e).await,
            },
        },
    };
    if !streaming {
        // A body read whole is forwarded with its own length.
        req.body = match first.len() {
            0 => BodyKind::Empty,
            n => BodyKind::Length(n as u64),
        };
    }

    // Upstream exchange and response inspection.
    let outgoing = Outgoing {
        head: &req,
        request_id: &request_id,
        client: &peer.text,
        identity: route.forward_identity.then_some(&principal),
        first,
        streaming,
        idle: route.http.body_idle_timeout,
        underscores: route.http.underscores_in_headers,
    };
    let mut x = exchange::Exchange::default();
    let ending = x.run(d, route, &auth, outgoing).await;

    // Audit record: handed over (and, with `fsync = "always"`, durable) before the client sees
    // the response complete.
    let done = record::Exchanged {
        status: x.status,
        bytes_in: d.received(),
        bytes_out: x.bytes_out,
        duration_ms: millis(started),
        upstream_ms: x.upstream_ms,
        request_redactions: &redactions.counts,
        response_redactions: &x.response_redactions,
        error: x.error.as_ref(),
        note,
    };
    let record = record::request_record(
        route,
        peer,
        D::PROTOCOL,
        &req,
        &request_id,
        &principal,
        model.as_deref(),
        &auth,
        &done,
    );
    let recorded = match route.audit.record_durable(record) {
        Ok(durable) => durable.wait().await,
        Err(e) => Err(e),
    };
    if recorded.is_err() && route.audit_waits {
        tracing::error!(target: "moat::access", request_id = %request_id, "audit record not written: response not completed");
        d.abort().await;
    } else {
        match ending {
            exchange::Ending::Finish(trailers) => {
                // A client that went away now has its response anyway; nothing to record.
                let _ = d.finish(trailers).await;
            }
            exchange::Ending::Reject(r) => d.reject(&r, Some(&request_id)).await,
            exchange::Ending::Abort => d.abort().await,
        }
    }
    record::log_request(route, D::PROTOCOL, client, &req, &request_id, &done);
}

/// A request refused before it was forwarded: recorded, then answered.
struct Refused<'a> {
    route: &'a Route,
    request_id: &'a str,
    client: &'a ClientText,
}

impl Refused<'_> {
    /// Refused before identity (not canonical).
    async fn refuse<D: Downstream>(&self, d: &mut D, req: &RequestHead, r: &Reject, detail: &str) {
        let request = self.head_of(req);
        record::record_refusal_of(self.route, r, request, detail, self.client);
        d.reject(r, Some(self.request_id)).await;
    }

    /// Refused by identity, policy or request redaction: 401, 403, 413, 415 or 422, with the
    /// reason the client is not told in the record.
    async fn deny<D: Downstream>(
        &self,
        d: &mut D,
        req: &RequestHead,
        denied: &stages::Denied,
        model: Option<&str>,
    ) {
        let request = (req, self.request_id, model);
        record::record_denial(self.route, denied, request, self.client);
        d.reject(&denied.reject, Some(self.request_id)).await;
    }

    /// The body could not be read before forwarding (too large, stalled, malformed, cut off).
    async fn body<D: Downstream>(&self, d: &mut D, req: &RequestHead, e: &DownstreamError) {
        if e.client_gone() {
            // Not a refusal: nobody is left to answer.
            let request = Some((req, self.request_id));
            record_client_abort(self.route, request, d.received(), e, self.client);
            return d.abort().await;
        }
        let r = Reject::from(e);
        let request = self.head_of(req);
        record::record_refusal_of(self.route, &r, request, &e.to_string(), self.client);
        d.reject(&r, Some(self.request_id)).await;
    }

    /// The request's id, method and path, for its refusal record.
    fn head_of(&self, req: &RequestHead) -> (Option<&str>, Option<String>, Option<String>) {
        (
            Some(self.request_id),
            Some(req.method.to_string()),
            Some(req.path().to_owned()),
        )
    }
}
