//! Protocol stage: turns bytes from a TLS session into typed request heads and body frames, and
//! typed response heads back into bytes.
//!
//! [`h1`] is moat's own HTTP/1.1 codec on `httparse`. The types here are what every later stage
//! sees, whatever protocol the request arrived on.

pub mod h1;
pub mod io;

use std::net::SocketAddr;

use bytes::Bytes;

/// Address of the client that opened a downstream connection (the PROXY header's, when a load
/// balancer in front sends one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// HTTP version of a message on an HTTP/1 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, possibly with trailers.
    Chunked,
    /// Until the connection closes (responses only).
    CloseDelimited,
}

/// A request head as received, after strict validation.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Request method.
    pub method: http::Method,
    /// Origin-form target: path and query.
    pub target: Bytes,
    /// Protocol version.
    pub version: Version,
    /// Header fields, names lower-cased.
    pub headers: http::HeaderMap,
    /// The single Host value.
    pub host: Bytes,
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The path without the query, for logs and (later) policy. Never includes the query string,
    /// which may carry content.
    pub fn path(&self) -> &str {
        let t = &self.target[..];
        let end = memchr::memchr(b'?', t).unwrap_or(t.len());
        // The target was checked to be visible ASCII by the parser.
        std::str::from_utf8(&t[..end]).unwrap_or("/")
    }

    /// Whether repeating this request cannot change state on the upstream (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::OPTIONS
                | http::Method::TRACE
                | http::Method::PUT
                | http::Method::DELETE
        )
    }
}

/// A response head as received from an upstream.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: http::StatusCode,
    /// Protocol version of the upstream's response.
    pub version: Version,
    /// Header fields, names lower-cased.
    pub headers: http::HeaderMap,
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the upstream connection may be reused after this response.
    pub keep_alive: bool,
}

/// A piece of a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section of a chunked body: raw header lines, each ending in CRLF, without the
    /// final empty line. Empty when there were no trailers.
    Trailers(Bytes),
}
