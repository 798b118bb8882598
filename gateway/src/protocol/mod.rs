//! Protocol stage: turns bytes from a TLS session into typed request heads and body frames, and
//! typed response heads back into bytes.
//!
//! [`h1`] is moat's own HTTP/1.1 codec on `httparse`. The types here are what every later stage
//! sees, whatever protocol the request arrived on.

pub mod h1;
pub mod io;
pub mod pace;

use std::net::SocketAddr;

use bytes::Bytes;

/// Address of the client that opened a downstream connection (the PROXY header's, when a load
/// balancer in front sends one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A client address as the records and the forwarding headers write it.
#[derive(Debug, Clone)]
pub struct ClientText {
    /// `ip:port` (`[ip]:port` for IPv6), as audit records carry it.
    pub addr: std::sync::Arc<str>,
    /// The IP, as `X-Forwarded-For` carries it.
    pub ip: std::sync::Arc<str>,
    /// The IP as `Forwarded: for=` carries it (RFC 7239: an IPv6 address quoted, in brackets).
    pub forwarded_for: std::sync::Arc<str>,
}

impl ClientText {
    /// The texts of `client`.
    pub fn of(client: ClientAddr) -> Self {
        let ip = client.0.ip();
        let forwarded_for = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        Self {
            addr: client.0.to_string().into(),
            ip: ip.to_string().into(),
            forwarded_for: forwarded_for.into(),
        }
    }
}

/// The `x-request-id` value for an HTTP/2 header block. Marked sensitive, so HPACK sends it as a
/// never-indexed literal: an id is unique to its message, and indexing each one would fill the
/// connection's dynamic table with entries never used again, evicting the ones that are (and make
/// every later id walk the list of earlier ones).
pub fn request_id_value(id: &str) -> Option<http::HeaderValue> {
    let mut v = http::HeaderValue::from_str(id).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// A method's name for records: the standard methods without an allocation.
pub fn method_name(m: &http::Method) -> std::borrow::Cow<'static, str> {
    const NAMES: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match NAMES.iter().find(|n| **n == m.as_str()) {
        Some(n) => std::borrow::Cow::Borrowed(n),
        None => std::borrow::Cow::Owned(m.as_str().to_owned()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_texts() {
        let t = ClientText::of(ClientAddr("192.0.2.7:50123".parse().expect("addr")));
        assert_eq!(
            (&*t.addr, &*t.ip, &*t.forwarded_for),
            ("192.0.2.7:50123", "192.0.2.7", "192.0.2.7")
        );
        let t = ClientText::of(ClientAddr("[2001:db8::7]:443".parse().expect("addr")));
        assert_eq!(
            (&*t.addr, &*t.ip, &*t.forwarded_for),
            ("[2001:db8::7]:443", "2001:db8::7", "\"[2001:db8::7]\"")
        );
    }

    #[test]
    fn method_names() {
        assert!(matches!(
            method_name(&http::Method::POST),
            std::borrow::Cow::Borrowed("POST")
        ));
        let custom = http::Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(method_name(&custom), "PURGE");
    }
}
