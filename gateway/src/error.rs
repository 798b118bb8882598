//! What can fail on each side of a request, and what the client is told, in one place.
//!
//! Each side has one error type: [`DownstreamError`] (the client's request or connection),
//! [`UpstreamError`] (the model server); [`Failure`] is either, or moat's own redaction. Each
//! maps to one [`Reject`]: a status and a small generic JSON body
//! (`{"error":{"type":…,"message":…}}`); the details (which rule, which upstream address, the
//! I/O error) go only to the log and the audit record.

use std::io;

use bytes::BytesMut;
use http::StatusCode;

use crate::protocol::h1::H1Error;

/// Why an exchange with the upstream failed. Cloneable, so requests waiting on one connection
/// attempt all learn why it failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The connection was refused or failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// Upstream address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::sync::Arc<io::Error>,
    },
    /// Connecting took longer than `connect_timeout`.
    #[error("connect to {addr} timed out")]
    ConnectTimeout {
        /// Upstream address.
        addr: String,
    },
    /// No response head within `response_header_timeout`.
    #[error("no response head within the timeout")]
    ResponseTimeout,
    /// The upstream closed or broke the connection, or sent something that is not HTTP.
    #[error("upstream protocol error: {reason}")]
    Protocol {
        /// What went wrong.
        reason: String,
    },
    /// The response body broke off, stalled or was malformed.
    #[error("response body: {reason}")]
    Body {
        /// What went wrong.
        reason: String,
    },
}

/// Why the client's side of an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// The request (head or body) broke a rule or a limit, stalled, or was cut off.
    #[error(transparent)]
    Request(#[from] H1Error),
    /// Writing the response to the client failed (it went away, or stopped reading).
    #[error("client write failed: {}", crate::protocol::h1::plain(.0))]
    Write(io::Error),
}

impl DownstreamError {
    /// The client went away: there is no one to answer.
    pub fn client_gone(&self) -> bool {
        matches!(
            self,
            Self::Write(_) | Self::Request(H1Error::Io(_) | H1Error::UnexpectedEof)
        )
    }
}

/// Why a forwarded request did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The client's side.
    #[error(transparent)]
    Downstream(#[from] DownstreamError),
    /// The model server's side.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A response could not be redacted (or passed unredacted under a fail-open profile).
    #[error("{0}")]
    Redaction(String),
}

impl Failure {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Self::Downstream(_) => Side::Downstream,
            Self::Upstream(_) => Side::Upstream,
            Self::Redaction(_) => Side::Internal,
        }
    }

    /// What the client is told, when it is still there to be told.
    pub fn reject(&self) -> Option<Reject> {
        match self {
            Self::Downstream(e) if e.client_gone() => None,
            Self::Downstream(e) => Some(Reject::from(e)),
            Self::Upstream(e) => Some(Reject::from(e)),
            Self::Redaction(_) => Some(Reject::REDACTION_FAILED),
        }
    }
}

impl From<&DownstreamError> for Reject {
    fn from(e: &DownstreamError) -> Self {
        match e {
            DownstreamError::Request(e) => Self::from(e),
            DownstreamError::Write(_) => Self::from(&H1Error::UnexpectedEof),
        }
    }
}

impl From<H1Error> for Failure {
    fn from(e: H1Error) -> Self {
        Self::Downstream(DownstreamError::Request(e))
    }
}

/// Which side of the gateway a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something unacceptable, or went away.
    Downstream,
    /// moat itself.
    Internal,
    /// The model server failed or misbehaved.
    Upstream,
}

impl Side {
    /// Lower-case name for logs and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downstream => "downstream",
            Self::Internal => "internal",
            Self::Upstream => "upstream",
        }
    }
}

/// A refusal as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable `error.type`.
    pub kind: &'static str,
    /// Generic human-readable `error.message`.
    pub message: &'static str,
    /// Who caused it.
    pub side: Side,
}

/// A compressed request body redaction could not decode.
impl From<&crate::coding::CodingError> for Reject {
    fn from(e: &crate::coding::CodingError) -> Self {
        use crate::coding::CodingError;
        let (status, kind, message) = match e {
            CodingError::Unsupported(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "the request body's content encoding is not supported here",
            ),
            CodingError::TooLarge(_) | CodingError::Ratio(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_body_too_large",
                "request body too large once decoded",
            ),
            CodingError::Corrupt { .. } | CodingError::Truncated(_) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body does not decode",
            ),
        };
        Self {
            status,
            kind,
            message,
            side: Side::Downstream,
        }
    }
}

impl From<&H1Error> for Reject {
    fn from(e: &H1Error) -> Self {
        let (status, kind, message) = match e {
            H1Error::RequestLineTooLong | H1Error::HeadTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_too_large",
                "request header too large",
            ),
            H1Error::TooManyHeaders => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too_many_headers",
                "too many header fields",
            ),
            H1Error::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_body_too_large",
                "request body too large",
            ),
            H1Error::UnsupportedTransferCoding => (
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_transfer_coding",
                "transfer coding not supported",
            ),
            H1Error::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
            H1Error::ExpectationFailed => (
                StatusCode::EXPECTATION_FAILED,
                "expectation_failed",
                "expectation not supported",
            ),
            H1Error::BodyTimeout | H1Error::BodyTooSlow { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            ),
            H1Error::Malformed { .. } | H1Error::UnexpectedEof | H1Error::Io(_) => {
                (StatusCode::BAD_REQUEST, "bad_request", "malformed request")
            }
        };
        Self {
            status,
            kind,
            message,
            side: Side::Downstream,
        }
    }
}

impl From<&UpstreamError> for Reject {
    fn from(e: &UpstreamError) -> Self {
        let (status, kind, message) = match e {
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the model server did not answer in time",
            ),
            UpstreamError::Connect { .. }
            | UpstreamError::Protocol { .. }
            | UpstreamError::Body { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "the model server is unavailable",
            ),
        };
        Self {
            status,
            kind,
            message,
            side: Side::Upstream,
        }
    }
}

impl Reject {
    /// A refusal: its status, `error.type`, `error.message` and the side that caused it.
    pub const fn new(
        status: StatusCode,
        kind: &'static str,
        message: &'static str,
        side: Side,
    ) -> Self {
        Self {
            status,
            kind,
            message,
            side,
        }
    }

    /// The JSON body telling the client what happened.
    pub fn body(&self) -> String {
        format!(
            r#"{{"error":{{"type":"{}","message":"{}"}}}}"#,
            self.kind, self.message
        )
    }

    /// The head of an HTTP/2 response carrying this refusal (the body is [`Self::body`]).
    pub fn h2_head(&self, request_id: Option<&str>) -> http::Response<()> {
        let mut r = http::Response::new(());
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(http::header::CONTENT_LENGTH, self.body().len().into());
        if let Some(id) = request_id.and_then(crate::protocol::request_id_value) {
            h.insert("x-request-id", id);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"moat\""),
            );
        }
        r
    }

    /// The reply to a client whose request head did not arrive in time.
    pub const HEADER_TIMEOUT: Self = Self::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "request header not received in time",
        Side::Downstream,
    );

    /// Missing or invalid credentials (the reason goes only to log and audit).
    pub const UNAUTHENTICATED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "authentication required",
        Side::Downstream,
    );

    /// Redaction refused the request (a `block` operator matched, or the body cannot be scanned
    /// under a fail-closed profile); the entity type goes to the audit record only.
    pub const UNPROCESSABLE: Self = Self::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "redaction_refused",
        "the request contains data that may not leave the region",
        Side::Downstream,
    );

    /// Policy refused the request.
    pub const FORBIDDEN: Self = Self::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the request is not allowed",
        Side::Downstream,
    );

    /// A response that cannot be redacted under a fail-closed profile.
    pub const REDACTION_FAILED: Self = Self::new(
        StatusCode::BAD_GATEWAY,
        "redaction_failed",
        "the response could not be redacted",
        Side::Internal,
    );

    /// The reply while the audit trail cannot take records: nothing is forwarded unaudited.
    pub const AUDIT_UNAVAILABLE: Self = Self::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the service cannot record requests right now",
        Side::Internal,
    );

    /// Appends a complete HTTP/1.1 response carrying this refusal; the connection is closed after.
    pub fn write_h1(&self, out: &mut BytesMut, request_id: Option<&str>, keep_alive: bool) {
        let body = self.body();
        let reason = self.status.canonical_reason().unwrap_or("");
        out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status.as_u16()).as_bytes());
        out.extend_from_slice(b"content-type: application/json\r\n");
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        if let Some(id) = request_id {
            out.extend_from_slice(format!("x-request-id: {id}\r\n").as_bytes());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            out.extend_from_slice(b"www-authenticate: Bearer realm=\"moat\"\r\n");
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    }
}
