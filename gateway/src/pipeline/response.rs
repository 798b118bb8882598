//! Response inspection: how a response is redacted under the deciding rule's profile —
//! streamed bodies as they stream (server-sent events, NDJSON, text), other bodies read whole
//! (bounded) — and the one body redaction both directions share.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header;

use crate::error::{Failure, UpstreamError};
use crate::protocol::{BodyKind, ResponseHead};
use crate::redact::stream::StreamRedactor;
use crate::redact::Profile;
use crate::upstream::{UpBody, UpFrame, Upstream};

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
    if !inspects(p, &ct) {
        // Nothing in it can be redacted: it passes as it comes, without a byte being read.
        return ResponseRedaction::None;
    }
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
pub(crate) fn stream_note(r: &dyn StreamRedactor) -> Option<Failure> {
    let note = match r.failure() {
        Some(why) => format!("response redaction failed, stream ended: {why}"),
        None => r.note()?.to_owned(),
    };
    Some(Failure::Redaction(note))
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

/// Reads a response body whole (at most [`MAX_BUFFERED_RESPONSE`]), hands its connection back
/// to `upstream`'s pool, and redacts it under `p`. A compressed body is decoded first (at most
/// [`MAX_BUFFERED_RESPONSE`] decoded, `max_ratio` decoded bytes per encoded byte) and sent
/// decoded, its `Content-Encoding` removed from `resp`; one that cannot be decoded follows the
/// profile's fail mode (open: sent as it came); under a fail-closed profile a body that cannot
/// be redacted is a [`Failure::Redaction`] (the client gets 502).
pub(crate) async fn read_and_redact(
    mut up: UpBody,
    upstream: &Upstream,
    resp: &mut ResponseHead,
    p: &Profile,
    idle: std::time::Duration,
    max_ratio: u64,
) -> Result<Redacted, Failure> {
    let mut body = BytesMut::new();
    while let Some(frame) = up.next(idle).await? {
        if let UpFrame::Data(d) = frame {
            body.extend_from_slice(&d);
            if body.len() as u64 > MAX_BUFFERED_RESPONSE {
                return Err(UpstreamError::Body {
                    reason: "larger than the redaction buffer".into(),
                }
                .into());
            }
        }
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
        Err(e) => return Err(Failure::Redaction(format!("response body: {e}"))),
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
        Err(e) => Err(Failure::Redaction(format!("response redaction: {e}"))),
    }
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

/// Whether profile `p` reads a body of media type `mime` (lower-cased, without parameters):
/// JSON, NDJSON and text (server-sent events included) are scanned, and so is a body without a
/// type; anything else (`application/octet-stream`, images, audio, archives) is passed without
/// per-byte work — unless the profile refuses content it does not scan (`other_content =
/// "block"`), in which case it is read to be refused.
pub(crate) fn inspects(p: &Profile, mime: &str) -> bool {
    p.block_other_content
        || mime.is_empty()
        || mime.starts_with("text/")
        || mime == "application/json"
        || mime.ends_with("+json")
        || is_ndjson(mime)
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
