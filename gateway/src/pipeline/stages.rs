//! The deciding stages: identity, policy (with the model look-ahead), request inspection.
//! Each takes what the sequence has read so far and returns what the next needs, or a
//! [`Denied`] naming what the client is told and why.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header;

use super::response::{redact_body, BodyRedaction};
use crate::downstream::Downstream;
use crate::error::{DownstreamError, Reject};
use crate::identity::{PeerCert, Principal};
use crate::policy::{Action, Facts};
use crate::protocol::{ClientAddr, RequestHead};
use crate::redact::Profile;
use crate::route::Route;
use crate::upstream::Upstream;

/// Largest body prefix read to find the `model` field before deciding.
pub(crate) const MODEL_LOOKAHEAD: usize = 64 * 1024;

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
    pub rule: Option<Arc<str>>,
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

/// Reads the start of the body into `prefix` until its top-level JSON `model` is known (at
/// most [`MODEL_LOOKAHEAD`] bytes of JSON); returns the model, if any, and whether the body
/// ended. Each byte is scanned once, however the body is cut into pieces. A compressed body is
/// decoded as it arrives (bounded like any request body) and its JSON scanned; `prefix` keeps
/// the bytes as they came, to be forwarded first. A coding moat cannot read yields no model.
pub(crate) async fn read_model<D: Downstream>(
    d: &mut D,
    prefix: &mut BytesMut,
    req: &RequestHead,
    http: &crate::config::HttpConfig,
) -> Result<(Option<String>, bool), DownstreamError> {
    use crate::coding::{Coding, Decoder, Limits};
    use crate::lookahead::{Model, ModelScan};
    let limits = Limits {
        max_bytes: http.max_request_body_bytes,
        max_ratio: http.max_decompression_ratio,
    };
    let mut decoder = match Coding::of(&req.headers) {
        Ok(None) => None,
        Ok(Some(c)) => Decoder::new(c, limits).ok(),
        Err(_) => return Ok((None, false)),
    };
    let mut scan = ModelScan::new();
    let (mut scanned, mut ended) = (0, false);
    while scanned < MODEL_LOOKAHEAD
        && prefix.len() < 2 * MODEL_LOOKAHEAD
        && *scan.result() == Model::Pending
    {
        let Some(piece) = d.read_body().await? else {
            ended = true;
            break;
        };
        prefix.extend_from_slice(&piece);
        match &mut decoder {
            None => {
                scanned += piece.len();
                scan.push(&piece);
            }
            Some(dec) => match dec.push(&piece) {
                Ok(plain) => {
                    scanned += plain.len();
                    scan.push(&plain);
                }
                // Not decodable: no model; request inspection or the upstream will say why.
                Err(_) => break,
            },
        }
    }
    let model = match scan.result() {
        Model::Found(m) => Some(m.clone()),
        _ => None,
    };
    Ok((model, ended))
}

/// The model a body's start names (its top-level JSON `model` string), without reading more
/// of the body: for the audit record when no rule needs the model. A compressed body's start
/// names none here.
pub(crate) fn model_in(start: &[u8], req: &RequestHead) -> Option<String> {
    use crate::lookahead::{Model, ModelScan};
    if start.is_empty() || !matches!(crate::coding::Coding::of(&req.headers), Ok(None)) {
        return None;
    }
    let mut scan = ModelScan::new();
    match scan.push(start) {
        Model::Found(m) => Some(m.clone()),
        _ => None,
    }
}

/// Reads the rest of the body after `prefix` (bounded by the protocol's body limit).
pub(crate) async fn read_rest<D: Downstream>(
    d: &mut D,
    mut prefix: BytesMut,
) -> Result<Bytes, DownstreamError> {
    while let Some(piece) = d.read_body().await? {
        prefix.extend_from_slice(&piece);
    }
    Ok(prefix.freeze())
}

/// What policy allowed: the rule, the upstream and the redaction profile.
#[derive(Debug)]
pub(crate) struct Authorized {
    /// The deciding rule.
    pub rule: Arc<str>,
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
        return Err(denied(decision.reason.clone().into_owned()));
    }
    let upstream_name = decision
        .upstream
        .as_deref()
        .unwrap_or(&route.default_upstream);
    let Some(upstream) = route.upstreams.get(upstream_name).cloned() else {
        // Validation guarantees rules and listeners name existing upstreams.
        return Err(denied(format!("unknown upstream {upstream_name}")));
    };
    let profile = decision
        .redaction
        .as_ref()
        .and_then(|n| route.profiles.get(&**n))
        .cloned();
    Ok(Authorized {
        rule: decision.rule,
        upstream,
        profile,
    })
}

/// A request body after inspection.
pub(crate) struct Inspected {
    /// What is forwarded.
    pub body: Bytes,
    /// For the audit record, when the profile failed open.
    pub note: Option<String>,
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
    rule: &Arc<str>,
    http: &crate::config::HttpConfig,
) -> Result<Inspected, Denied> {
    use crate::coding::{decode_all, Coding, Limits};
    let refuse = |reject: Reject, reason: String| Denied {
        reject,
        reason,
        principal: Some(Box::new(principal.clone())),
        rule: Some(rule.clone()),
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
        Ok(body) => Ok(Inspected { body, note: None }),
        Err(BodyRedaction::Unredactable(why)) if p.fail_open => Ok(Inspected {
            body: raw,
            note: Some(format!(
                "redaction failed open ({why}): body forwarded unredacted"
            )),
        }),
        Err(e) => Err(Denied {
            reject: Reject::UNPROCESSABLE,
            reason: e.to_string(),
            principal: Some(Box::new(principal.clone())),
            rule: Some(rule.clone()),
        }),
    }
}

/// The Host value without a port, lower-cased (borrowed when it already is).
pub(crate) fn host_without_port(host: &[u8]) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let h = String::from_utf8_lossy(host);
    let name = if h.starts_with('[') {
        // An IPv6 literal: up to and including the `]`.
        match h.find(']') {
            Some(i) => slice(h, ..i + 1),
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                let n = name.len();
                slice(h, ..n)
            }
            _ => h,
        }
    };
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        name
    }
}

/// The start of `s`, borrowed when `s` is.
fn slice(s: std::borrow::Cow<'_, str>, r: std::ops::RangeTo<usize>) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(&b[r]),
        Cow::Owned(mut o) => {
            o.truncate(r.end);
            Cow::Owned(o)
        }
    }
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
    let mut id = String::with_capacity(32);
    crate::audit::hex_into(&mut id, &rand::random::<u128>().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{host_without_port, request_id};
    use crate::protocol::{BodyKind, RequestHead, Version};

    #[test]
    fn request_ids_are_random_hex_or_the_trusted_clients() {
        let mut req = RequestHead {
            method: http::Method::GET,
            target: bytes::Bytes::from_static(b"/"),
            version: Version::Http11,
            headers: http::HeaderMap::new(),
            host: bytes::Bytes::from_static(b"h"),
            body: BodyKind::Empty,
            keep_alive: true,
            expect_continue: false,
        };
        let (a, b) = (request_id(&req, false), request_id(&req, false));
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
        req.headers
            .insert("x-request-id", "abc-123".parse().expect("value"));
        assert_eq!(request_id(&req, true), "abc-123");
        assert_ne!(request_id(&req, false), "abc-123");
    }

    #[test]
    fn host_without_port_lowercases_and_borrows_when_it_can() {
        for (host, want) in [
            ("model.example", "model.example"),
            ("model.example:8443", "model.example"),
            ("Model.EXAMPLE:8443", "model.example"),
            ("[::1]:443", "[::1]"),
            ("[::1]", "[::1]"),
            ("host:abc", "host:abc"),
            ("", ""),
        ] {
            assert_eq!(host_without_port(host.as_bytes()), want, "{host}");
        }
        assert!(matches!(
            host_without_port(b"model.example:8443"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(host_without_port(b"Model.example"), Cow::Owned(_)));
    }
}
