//! One `forward()` for both upstream protocols: the request head and body out, the response
//! head back, with one retry rule.
//!
//! The body is what the request sequence read before deciding (`first`: the model look-ahead,
//! or the whole body when it was redacted) followed, when it still streams, by the rest as the
//! client sends it — read through [`Downstream`] only as fast as the upstream takes it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::time::{timeout, timeout_at, Instant};

use super::body::response_from;
use super::request::{h1_head, h2_request};
use super::{Conn, UpBody, Upstream};
use crate::config::UpstreamProtocol;
use crate::downstream::Downstream;
use crate::error::{Failure, UpstreamError};
use crate::identity::Principal;
use crate::protocol::h1::{self, Decoder, Encoder, H1Error, Limits};
use crate::protocol::io::{send_flow_controlled, timed_write, write_all_vectored};
use crate::protocol::{BodyKind, ClientText, Frame, RequestHead, ResponseHead};

/// A request as moat sends it upstream.
pub(crate) struct Outgoing<'a> {
    /// The request; its body framing as forwarded (a body read whole: its length).
    pub head: &'a RequestHead,
    /// The request id moat set.
    pub request_id: &'a str,
    /// Who asked, for the forwarding headers.
    pub client: &'a ClientText,
    /// The principal, when the listener forwards identity.
    pub identity: Option<&'a Principal>,
    /// The start of the body, or all of it when `streaming` is false.
    pub first: Bytes,
    /// The rest of the body still comes from the client.
    pub streaming: bool,
    /// How long either peer may stall a body write or read.
    pub idle: Duration,
    /// Forward header fields whose names contain `_` (`http.underscores_in_headers`).
    pub underscores: bool,
}

/// Limits on an upstream's response head.
const RESPONSE_LIMITS: Limits = Limits {
    max_request_line: 8 * 1024,
    max_head: 64 * 1024,
    max_headers: 128,
};

impl Upstream {
    /// Sends the request and returns the response head and its body, still to be read.
    ///
    /// A pooled HTTP/1.1 connection the peer closed meanwhile shows as a failed write or an
    /// empty read; the request is sent again on a new connection only when repeating it cannot
    /// change state (an idempotent method) and nothing of it was consumed from the client (its
    /// body, if any, was read whole). An h2c connection that failed is replaced before the
    /// request is sent on it (see [`Upstream::h2c`]).
    pub(crate) async fn forward<D: Downstream>(
        &self,
        o: Outgoing<'_>,
        d: &mut D,
    ) -> Result<(ResponseHead, UpBody), Failure> {
        match self.config().protocol {
            UpstreamProtocol::Http1 => self.forward_h1(o, d).await,
            UpstreamProtocol::H2c => self.forward_h2c(o, d).await,
        }
    }

    async fn forward_h1<D: Downstream>(
        &self,
        mut o: Outgoing<'_>,
        d: &mut D,
    ) -> Result<(ResponseHead, UpBody), Failure> {
        let idle = o.idle;
        let head = h1_head(&o, self.config().credential.as_ref());
        let chunked = o.head.body == BodyKind::Chunked;
        let first = std::mem::take(&mut o.first);
        let first = if chunked && !first.is_empty() {
            let mut framed = BytesMut::new();
            Encoder::Chunked.encode(&Frame::Data(first), &mut framed);
            framed.freeze()
        } else {
            first
        };
        let repeatable = !o.streaming && o.head.is_idempotent();
        let mut conn = self.checkout().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let got = match send_h1(&mut conn, [&head, &first], o.streaming, chunked, d, idle).await
            {
                Ok(()) => {
                    read_response_head(&mut conn, o.head, d, self.config().response_header_timeout)
                        .await
                        .map_err(Failure::Upstream)
                }
                Err(f) => Err(f),
            };
            match got {
                Ok(h) => {
                    let body = UpBody::H1 {
                        decoder: Decoder::new(h.body, u64::MAX),
                        keep_alive: h.keep_alive,
                        conn,
                    };
                    return Ok((h, body));
                }
                Err(Failure::Upstream(e))
                    if conn.reused
                        && attempt == 1
                        && repeatable
                        && !matches!(e, UpstreamError::ResponseTimeout) =>
                {
                    tracing::debug!(error = %e, "pooled upstream connection was closed; retrying on a new one");
                    conn = self.connect().await?;
                }
                Err(f) => return Err(f),
            }
        }
    }

    async fn forward_h2c<D: Downstream>(
        &self,
        o: Outgoing<'_>,
        d: &mut D,
    ) -> Result<(ResponseHead, UpBody), Failure> {
        let idle = o.idle;
        let request = h2_request(&o, self.config().credential.as_ref())
            .map_err(|reason| H1Error::Malformed { reason })?;
        let mut sender = self.h2c().await?;
        let bodiless = o.first.is_empty() && !o.streaming;
        let (response, mut stream) = sender.send_request(request, bodiless).map_err(h2c)?;
        if !bodiless {
            let body_err = |e: std::io::Error| UpstreamError::Protocol {
                reason: format!("h2c request body: {e}"),
            };
            // A body held whole ends with its last DATA frame.
            send_flow_controlled(&mut stream, o.first, idle, !o.streaming)
                .await
                .map_err(body_err)?;
            if o.streaming {
                while let Some(data) = d.read_body().await? {
                    send_flow_controlled(&mut stream, data, idle, false)
                        .await
                        .map_err(body_err)?;
                }
                match d.read_trailers().await? {
                    Some(t) => stream.send_trailers(t),
                    None => stream.send_data(Bytes::new(), true),
                }
                .map_err(h2c)?;
            }
        }
        let resp = timeout(self.config().response_header_timeout, response)
            .await
            .map_err(|_| UpstreamError::ResponseTimeout)?
            .map_err(h2c)?;
        Ok(response_from(resp))
    }
}

fn h2c(e: h2::Error) -> UpstreamError {
    UpstreamError::Protocol {
        reason: format!("h2c: {e}"),
    }
}

/// Writes the head and the body's start in one system call, then the rest as the client sends
/// it (chunked: re-framed, trailers included).
async fn send_h1<D: Downstream>(
    conn: &mut Conn,
    first: [&Bytes; 2],
    streaming: bool,
    chunked: bool,
    d: &mut D,
    idle: Duration,
) -> Result<(), Failure> {
    let io = &mut conn.reader.io;
    let write_failed = |e: std::io::Error| UpstreamError::Protocol {
        reason: format!("write failed: {e}"),
    };
    let bufs = first.map(|b| std::io::IoSlice::new(b));
    write_all_vectored(io, &bufs, idle)
        .await
        .map_err(write_failed)?;
    if !streaming {
        return Ok(());
    }
    let mut out = BytesMut::new();
    while let Some(data) = d.read_body().await? {
        if chunked {
            Encoder::Chunked.encode(&Frame::Data(data), &mut out);
            timed_write(io, &out, idle).await.map_err(write_failed)?;
            out.clear();
        } else {
            timed_write(io, &data, idle).await.map_err(write_failed)?;
        }
    }
    if chunked {
        let trailers = d.read_trailers().await?;
        let lines = trailers.map_or_else(Bytes::new, |t| super::trailer_lines(&t));
        Encoder::Chunked.encode(&Frame::Trailers(lines), &mut out);
        timed_write(io, &out, idle).await.map_err(write_failed)?;
    }
    Ok(())
}

/// Reads the final response head, passing interim 1xx responses (other than 100, which moat
/// answered itself) on to the client.
async fn read_response_head<D: Downstream>(
    conn: &mut Conn,
    req: &RequestHead,
    d: &mut D,
    limit: Duration,
) -> Result<ResponseHead, UpstreamError> {
    let deadline = Instant::now() + limit;
    let protocol = |reason: String| UpstreamError::Protocol { reason };
    loop {
        let head = match timeout_at(deadline, conn.reader.read_head(&RESPONSE_LIMITS)).await {
            Err(_) => return Err(UpstreamError::ResponseTimeout),
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return Err(protocol("closed before responding".into())),
            Ok(Err(e)) => return Err(protocol(e.to_string())),
        };
        let resp = h1::parse_response(&head, &req.method, RESPONSE_LIMITS.max_headers)
            .map_err(|e| protocol(e.to_string()))?;
        if resp.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(protocol("upgrade not supported".into()));
        }
        if resp.status.is_informational() {
            if resp.status != StatusCode::CONTINUE {
                d.send_interim(&resp).await;
            }
            continue;
        }
        return Ok(resp);
    }
}
