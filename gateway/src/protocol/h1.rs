//! moat's HTTP/1.1 codec, on `httparse`.
//!
//! It is strict where leniency lets two parsers disagree about where a message ends (RFC 9112
//! §6.1–6.3, request smuggling): Content-Length with Transfer-Encoding, duplicate or malformed
//! Content-Length, Transfer-Encoding that does not end in `chunked`, odd chunk sizes, bare LF,
//! whitespace before a colon, obs-fold, control characters, missing or duplicate Host. Each such
//! request is refused before anything reaches the upstream.
//!
//! Bodies are never buffered whole: [`Decoder`] yields frames from whatever bytes are buffered,
//! and the encoders frame each piece for the other side.

mod body;
#[cfg(test)]
mod tests;

pub use body::{Decoder, Encoder};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{BodyKind, RequestHead, ResponseHead, Version};

/// Size limits for request heads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line, CRLF excluded.
    pub max_request_line: usize,
    /// Largest head, request line and final empty line included.
    pub max_head: usize,
    /// Most header fields.
    pub max_headers: usize,
}

/// Why a message was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The request line is longer than the limit.
    #[error("request line too long")]
    RequestLineTooLong,
    /// The head is larger than the limit.
    #[error("header block too large")]
    HeadTooLarge,
    /// More header fields than the limit.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The message violates HTTP/1.1 syntax or framing rules.
    #[error("malformed message: {reason}")]
    Malformed {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The body is larger than the limit.
    #[error("body too large")]
    BodyTooLarge,
    /// A transfer coding other than `chunked` was used.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// A method moat does not forward (CONNECT).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An `Expect` other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// The request body stalled for longer than the body idle timeout.
    #[error("request body stalled")]
    BodyTimeout,
    /// The request body fell behind the pace it must keep (`http.body_timeout` and
    /// `http.min_body_rate`).
    #[error("request body slower than {min_rate} bytes/s after its allowance")]
    BodyTooSlow {
        /// The configured minimum rate.
        min_rate: u64,
    },
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed mid-message")]
    UnexpectedEof,
    /// Reading from the peer failed.
    #[error("read failed: {}", plain(.0))]
    Io(#[from] std::io::Error),
}

/// An I/O error's message for logs and audit records, without the documentation links some
/// libraries append (rustls: "peer closed connection without sending TLS close_notify:
/// https://docs.rs/…").
pub fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find("https://") {
        Some(i) => text[..i].trim_end_matches([' ', ':']).to_owned(),
        None => text,
    }
}

fn malformed(reason: &'static str) -> H1Error {
    H1Error::Malformed { reason }
}

/// A read buffer over a byte stream, from which heads are cut and bodies decoded.
#[derive(Debug)]
pub struct Reader<S> {
    /// The underlying stream.
    pub io: S,
    /// Bytes read but not yet consumed.
    pub buf: BytesMut,
    /// How far `buf` has been scanned for the end of a head.
    scanned: usize,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The first read of an idle connection: small, as it lives in the connection's state while
/// the connection waits.
const IDLE_READ: usize = 256;

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Wraps a stream.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            scanned: 0,
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads what the stream holds ready (bytes a TLS record already brought, or the socket
    /// buffer's), without waiting: `None` when nothing is ready, otherwise what [`Self::fill`]
    /// returns.
    pub fn fill_ready(&mut self) -> Option<std::io::Result<usize>> {
        super::io::ready_now(self.fill())
    }

    /// Releases the read buffer's memory when nothing is buffered (between requests on an idle
    /// keep-alive connection).
    pub fn shrink_if_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.scanned = 0;
        }
    }

    /// Waits for the next bytes of an idle connection without holding a read buffer while it
    /// waits: the first bytes are read into a small stack buffer, and the read buffer is
    /// allocated only once they arrived. Returns how many bytes were read (0 at end of stream).
    pub async fn fill_idle(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() > 0 {
            return self.fill().await;
        }
        let mut first = [0u8; IDLE_READ];
        let n = self.io.read(&mut first).await?;
        if n > 0 {
            self.buf.reserve(READ_CHUNK);
            self.buf.extend_from_slice(&first[..n]);
        }
        Ok(n)
    }

    /// Reads until a complete head is buffered and cuts it off the buffer. `Ok(None)` means the
    /// stream ended cleanly before the first byte of a head.
    pub async fn read_head(&mut self, limits: &Limits) -> Result<Option<Bytes>, H1Error> {
        loop {
            if let Some(end) = self.scan_head(limits)? {
                self.scanned = 0;
                return Ok(Some(self.buf.split_to(end).freeze()));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(H1Error::UnexpectedEof)
                };
            }
        }
    }

    /// Looks for the end of the head in the buffered bytes, enforcing limits and refusing bare
    /// LF as soon as it arrives. Returns the head length when complete.
    fn scan_head(&mut self, limits: &Limits) -> Result<Option<usize>, H1Error> {
        // Leading empty lines before a request line are allowed by RFC 9112 §2.2, but a proxy
        // gains nothing from them: refuse them like any other bare line terminator.
        let buf = &self.buf[..];
        let mut i = self.scanned;
        while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
            let lf = i + off;
            if lf == 0 || buf[lf - 1] != b'\r' {
                return Err(malformed("bare LF"));
            }
            if memchr::memchr(b'\n', &buf[..lf]).is_none() && lf - 1 > limits.max_request_line {
                return Err(H1Error::RequestLineTooLong);
            }
            if lf >= 3 && &buf[lf - 3..=lf] == b"\r\n\r\n" {
                return if lf + 1 > limits.max_head {
                    Err(H1Error::HeadTooLarge)
                } else {
                    Ok(Some(lf + 1))
                };
            }
            i = lf + 1;
        }
        self.scanned = buf.len();
        if memchr::memchr(b'\n', buf).is_none() && buf.len() > limits.max_request_line + 1 {
            return Err(H1Error::RequestLineTooLong);
        }
        if buf.len() >= limits.max_head {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Parses and validates a complete request head cut by [`Reader::read_head`].
pub fn parse_request(head: &Bytes, limits: &Limits, max_body: u64) -> Result<RequestHead, H1Error> {
    with_slots(limits.max_headers, |slots| {
        request_in(head, slots, max_body)
    })
}

/// Header slots on the stack for the usual head; a head with more fields than that is parsed
/// again with room for `max` of them, so the common case allocates nothing.
const STACK_SLOTS: usize = 32;

fn with_slots<'h, T>(
    max: usize,
    mut parse: impl FnMut(&mut [httparse::Header<'h>]) -> Result<T, H1Error>,
) -> Result<T, H1Error> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_SLOTS];
    match parse(&mut stack[..max.min(STACK_SLOTS)]) {
        Err(H1Error::TooManyHeaders) if max > STACK_SLOTS => {
            parse(&mut vec![httparse::EMPTY_HEADER; max])
        }
        r => r,
    }
}

fn request_in<'h>(
    head: &'h Bytes,
    slots: &mut [httparse::Header<'h>],
    max_body: u64,
) -> Result<RequestHead, H1Error> {
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(malformed(
                "request line is not METHOD SP target SP HTTP/1.x",
            ))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(malformed(
                "invalid header name (whitespace before colon or obs-fold)",
            ))
        }
        Err(httparse::Error::HeaderValue) => return Err(malformed("invalid header value")),
        Err(httparse::Error::NewLine | httparse::Error::Status) => {
            return Err(malformed("invalid line ending"))
        }
        Err(httparse::Error::Token) => return Err(malformed("invalid request line")),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(malformed("incomplete request line"));
    };
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let method =
        http::Method::from_bytes(method.as_bytes()).map_err(|_| malformed("invalid method"))?;
    if method == http::Method::CONNECT {
        return Err(H1Error::MethodNotAllowed);
    }
    // Only origin-form targets are forwarded: a gateway has no use for absolute-form or
    // asterisk-form, and accepting them widens the parser differential surface.
    if !target.starts_with('/') || target.contains('#') {
        return Err(malformed("request target is not origin-form"));
    }
    let headers = header_map(head, req.headers)?;
    let framing = Framing::of(&headers, version)?;

    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) if valid_host(h.as_bytes()) => head.slice_ref(h.as_bytes()),
        (Some(_), None) => return Err(malformed("invalid Host")),
        (None, _) => return Err(malformed("missing Host")),
        (Some(_), Some(_)) => return Err(malformed("duplicate Host")),
    };

    let body = match framing.body {
        Some(BodyKind::Length(n)) if n > max_body => return Err(H1Error::BodyTooLarge),
        Some(b) => b,
        None => BodyKind::Empty,
    };
    let expect_continue = match headers.get(header::EXPECT) {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => version == Version::Http11,
        Some(_) => return Err(H1Error::ExpectationFailed),
    };
    Ok(RequestHead {
        method,
        target: head.slice_ref(target.as_bytes()),
        version,
        headers,
        host,
        body,
        keep_alive: framing.keep_alive,
        expect_continue,
    })
}

/// Parses and validates a complete response head from an upstream. `request_method` decides
/// whether a body follows (HEAD responses have none).
pub fn parse_response(
    head: &Bytes,
    request_method: &http::Method,
    max_headers: usize,
) -> Result<ResponseHead, H1Error> {
    with_slots(max_headers, |slots| {
        response_in(head, slots, request_method)
    })
}

fn response_in<'h>(
    head: &'h Bytes,
    slots: &mut [httparse::Header<'h>],
    request_method: &http::Method,
) -> Result<ResponseHead, H1Error> {
    let mut res = httparse::Response::new(slots);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete response head")),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::TooManyHeaders),
        Err(_) => return Err(malformed("invalid response head")),
    }
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err(malformed("incomplete status line"));
    };
    let status = http::StatusCode::from_u16(code).map_err(|_| malformed("invalid status code"))?;
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let headers = header_map(head, res.headers)?;
    let framing = Framing::of(&headers, version)?;
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || request_method == http::Method::HEAD;
    let (body, keep_alive) = match framing.body {
        _ if bodiless => (BodyKind::Empty, framing.keep_alive),
        Some(b) => (b, framing.keep_alive),
        None => (BodyKind::CloseDelimited, false),
    };
    Ok(ResponseHead {
        status,
        version,
        headers,
        body,
        keep_alive,
    })
}

/// Builds a header map whose values share the head's buffer.
fn header_map(head: &Bytes, fields: &[httparse::Header<'_>]) -> Result<HeaderMap, H1Error> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| malformed("invalid header name"))?;
        // `from_maybe_shared` refuses NUL, CR, LF and other controls except HTAB.
        let value = HeaderValue::from_maybe_shared(head.slice_ref(f.value))
            .map_err(|_| malformed("control character in header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// What the framing headers of a message say.
struct Framing {
    /// `None` when neither Content-Length nor Transfer-Encoding is present.
    body: Option<BodyKind>,
    keep_alive: bool,
}

impl Framing {
    fn of(headers: &HeaderMap, version: Version) -> Result<Self, H1Error> {
        let te = headers.get_all(header::TRANSFER_ENCODING);
        let has_te = te.iter().next().is_some();
        let mut cls = headers.get_all(header::CONTENT_LENGTH).iter();
        let cl = match (cls.next(), cls.next()) {
            (None, _) => None,
            (Some(v), None) => Some(parse_content_length(v.as_bytes())?),
            (Some(_), Some(_)) => return Err(malformed("duplicate Content-Length")),
        };
        let body = if has_te {
            if cl.is_some() {
                return Err(malformed("Content-Length with Transfer-Encoding"));
            }
            if version == Version::Http10 {
                return Err(malformed("Transfer-Encoding in HTTP/1.0"));
            }
            let mut codings = Vec::new();
            for v in te.iter() {
                let v = v
                    .to_str()
                    .map_err(|_| malformed("invalid Transfer-Encoding"))?;
                for c in v.split(',') {
                    let c = c.trim_matches([' ', '\t']);
                    if c.is_empty() || !c.bytes().all(is_token_byte) {
                        return Err(malformed("obfuscated Transfer-Encoding"));
                    }
                    codings.push(c);
                }
            }
            let chunked_at: Vec<usize> = codings
                .iter()
                .enumerate()
                .filter(|(_, c)| c.eq_ignore_ascii_case("chunked"))
                .map(|(i, _)| i)
                .collect();
            match chunked_at.as_slice() {
                [last] if *last + 1 == codings.len() => {
                    if codings.len() > 1 {
                        return Err(H1Error::UnsupportedTransferCoding);
                    }
                    Some(BodyKind::Chunked)
                }
                _ => {
                    return Err(malformed(
                        "Transfer-Encoding does not end in a single chunked",
                    ))
                }
            }
        } else {
            cl.map(|n| {
                if n == 0 {
                    BodyKind::Empty
                } else {
                    BodyKind::Length(n)
                }
            })
        };

        let mut close = false;
        let mut keep = false;
        for v in headers.get_all(header::CONNECTION) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = trim_ows(t);
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        let keep_alive = match version {
            Version::Http11 => !close,
            Version::Http10 => keep && !close,
        };
        Ok(Self { body, keep_alive })
    }
}

/// A Content-Length value: decimal digits only, within `u64`.
pub(crate) fn parse_content_length(v: &[u8]) -> Result<u64, H1Error> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(malformed("malformed Content-Length"));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(malformed("malformed Content-Length"))
}

fn valid_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether a header is hop-by-hop and must not be forwarded: the fixed set of RFC 9110 §7.6.1
/// plus whatever the message's Connection header names.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    hop_by_hop(headers)(name)
}

/// [`is_hop_by_hop`] for the fields of one message, its Connection header looked up once
/// rather than once per field.
pub fn hop_by_hop(headers: &HeaderMap) -> impl Fn(&HeaderName) -> bool + '_ {
    let connection = headers.get_all(header::CONNECTION);
    let listed = connection.iter().next().is_some();
    move |name| {
        fixed_hop_by_hop(name)
            || (listed
                && connection.iter().any(|v| {
                    v.as_bytes()
                        .split(|&b| b == b',')
                        .any(|t| trim_ows(t).eq_ignore_ascii_case(name.as_str().as_bytes()))
                }))
    }
}

/// The hop-by-hop fields whatever the Connection header says.
fn fixed_hop_by_hop(name: &HeaderName) -> bool {
    // Standard names compare without looking at their text.
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name.as_str().starts_with("proxy-")
}
