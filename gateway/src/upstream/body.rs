//! The upstream's response body, whichever protocol carried it, and trailer conversions.

use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use http::header;
use tokio::time::timeout;

use super::{Conn, Upstream};
use crate::error::UpstreamError;
use crate::protocol::h1::Decoder;
use crate::protocol::{BodyKind, Frame, ResponseHead, Version};

/// The upstream's response body, whichever protocol carried it.
pub enum UpBody {
    /// From a pooled HTTP/1.1 connection.
    H1 {
        /// The connection.
        conn: Conn,
        /// The body's framing.
        decoder: Decoder,
        /// The connection may be reused after the body.
        keep_alive: bool,
    },
    /// A stream of the h2c connection.
    H2 {
        /// The stream.
        recv: RecvStream,
        /// Bytes received.
        total: u64,
        /// DATA ended.
        data_done: bool,
        /// Trailers read.
        trailers_done: bool,
    },
}

/// A piece of an upstream response body.
pub enum UpFrame {
    /// Body bytes.
    Data(Bytes),
    /// Trailers.
    Trailers(http::HeaderMap),
}

impl UpBody {
    /// A piece already received, without waiting for I/O (HTTP/1.1: decodable from the read
    /// buffer; an h2c stream always waits).
    pub fn ready(&mut self) -> Result<Option<UpFrame>, UpstreamError> {
        match self {
            Self::H1 { conn, decoder, .. } => match decoder.decode(&mut conn.reader.buf) {
                Ok(Some(Frame::Data(d))) => Ok(Some(UpFrame::Data(d))),
                Ok(Some(Frame::Trailers(t))) => Ok(Some(UpFrame::Trailers(parse_trailers(&t)))),
                Ok(None) => Ok(None),
                Err(e) => Err(body_err(e.to_string())),
            },
            Self::H2 { .. } => Ok(None),
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        match self {
            Self::H1 { decoder, .. } => decoder.is_done(),
            Self::H2 {
                data_done,
                trailers_done,
                ..
            } => *data_done && *trailers_done,
        }
    }

    /// The next piece, reading from the upstream as needed; `None` at the end.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<UpFrame>, UpstreamError> {
        match self {
            Self::H1 { conn, decoder, .. } => loop {
                match decoder.decode(&mut conn.reader.buf) {
                    Ok(Some(Frame::Data(d))) => return Ok(Some(UpFrame::Data(d))),
                    Ok(Some(Frame::Trailers(t))) => {
                        return Ok(Some(UpFrame::Trailers(parse_trailers(&t))))
                    }
                    Ok(None) if decoder.is_done() => return Ok(None),
                    Ok(None) => {}
                    Err(e) => return Err(body_err(e.to_string())),
                }
                match timeout(idle, conn.reader.fill()).await {
                    Ok(Ok(0)) => {
                        decoder
                            .finish_at_eof()
                            .map_err(|e| body_err(e.to_string()))?;
                        return Ok(None);
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(body_err(e.to_string())),
                    Err(_) => return Err(body_err("idle timeout".into())),
                }
            },
            Self::H2 {
                recv,
                total,
                data_done,
                trailers_done,
            } => {
                while !*data_done {
                    match timeout(idle, recv.data()).await {
                        Err(_) => return Err(body_err("idle timeout".into())),
                        Ok(None) => *data_done = true,
                        Ok(Some(Err(e))) => return Err(body_err(e.to_string())),
                        Ok(Some(Ok(d))) => {
                            // Taken off the upstream's window; the client's window paces the
                            // next read, since the caller sends this piece first.
                            let _ = recv.flow_control().release_capacity(d.len());
                            *total += d.len() as u64;
                            if !d.is_empty() {
                                return Ok(Some(UpFrame::Data(d)));
                            }
                        }
                    }
                }
                if *trailers_done {
                    return Ok(None);
                }
                *trailers_done = true;
                match timeout(idle, recv.trailers()).await {
                    Err(_) => Err(body_err("idle timeout".into())),
                    Ok(Err(e)) => Err(body_err(e.to_string())),
                    Ok(Ok(t)) => Ok(t.map(UpFrame::Trailers)),
                }
            }
        }
    }

    /// Body bytes received so far.
    pub fn total(&self) -> u64 {
        match self {
            Self::H1 { decoder, .. } => decoder.total,
            Self::H2 { total, .. } => *total,
        }
    }

    /// The body was read to its end: an HTTP/1.1 connection goes back to the pool.
    pub fn done(self, upstream: &Upstream) {
        if let Self::H1 {
            conn,
            decoder,
            keep_alive: true,
        } = self
        {
            if decoder.is_done() {
                upstream.checkin(conn);
            }
        }
    }
}

fn body_err(reason: String) -> UpstreamError {
    UpstreamError::Body { reason }
}

/// An h2c upstream's response as a head and a body.
pub(super) fn response_from(resp: http::Response<RecvStream>) -> (ResponseHead, UpBody) {
    let (parts, recv) = resp.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let head = ResponseHead {
        status: parts.status,
        version: Version::Http11,
        body: match (recv.is_end_stream(), length) {
            (true, _) => BodyKind::Empty,
            (false, Some(n)) => BodyKind::Length(n),
            (false, None) => BodyKind::Chunked,
        },
        headers: parts.headers,
        keep_alive: true,
    };
    (
        head,
        UpBody::H2 {
            recv,
            total: 0,
            data_done: false,
            trailers_done: false,
        },
    )
}

/// Raw trailer lines (`name: value\r\n`) as a header map; lines that do not parse are dropped.
pub fn parse_trailers(raw: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            if !crate::protocol::h1::is_hop_by_hop(&n, &map) {
                map.append(n, v);
            }
        }
    }
    map
}

/// A header map as raw trailer lines (`name: value\r\n`), for an HTTP/1.1 chunked body.
pub fn trailer_lines(map: &http::HeaderMap) -> Bytes {
    let mut out = bytes::BytesMut::new();
    for (name, value) in map {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}
