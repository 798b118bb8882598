//! The downstream interface: what the request sequence ([`crate::pipeline`]) and the upstream
//! client ([`crate::upstream`]) need from a client's request, whatever protocol carries it.
//!
//! [`crate::http1`] implements it over one HTTP/1.1 connection (one request at a time),
//! [`crate::http2`] over one HTTP/2 stream. The protocol modules do framing and I/O only; every
//! decision is taken above this interface, once for both.

use bytes::Bytes;
use http::HeaderMap;

use crate::error::{DownstreamError, Reject};
use crate::protocol::ResponseHead;

/// One request's client side.
#[expect(
    async_fn_in_trait,
    reason = "used only through concrete types inside this crate"
)]
pub trait Downstream {
    /// Protocol name for logs and metrics (`http/1.1`, `h2`).
    const PROTOCOL: &'static str;

    /// The next piece of the request body; `None` at its end. Asking for a piece acknowledges
    /// the one before (HTTP/2 flow control: the client's window is the only buffer), and an
    /// HTTP/1.1 client that asked for `100 Continue` gets it on the first call.
    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError>;

    /// The start of the body that is here already, so that it leaves with the request head, and
    /// whether that is the whole body (no trailers to follow). Waits on the client only for
    /// what its framing needs: HTTP/1.1, at least the first chunk line of a chunked body, so a
    /// malformed body start never reaches the upstream; HTTP/2, nothing (its codec has checked
    /// the framing). Taken from the body: [`Self::read_body`] goes on after it.
    async fn prefetch(&mut self) -> Result<(Bytes, bool), DownstreamError>;

    /// The request's trailers, once the body has ended.
    async fn read_trailers(&mut self) -> Result<Option<HeaderMap>, DownstreamError>;

    /// Request body bytes received so far.
    fn received(&self) -> u64;

    /// An interim (1xx) response from the upstream, passed on where the protocol can.
    async fn send_interim(&mut self, head: &ResponseHead);

    /// The response head, handed over. `head.body` states the body's framing: a length when
    /// known, [`crate::protocol::BodyKind::Chunked`] when not.
    async fn send_head(
        &mut self,
        head: ResponseHead,
        request_id: &str,
    ) -> Result<(), DownstreamError>;

    /// A piece of the response body. The last piece sent may be held until [`Self::finish`], so
    /// that no response looks complete before its audit record exists.
    async fn send_data(&mut self, data: Bytes) -> Result<(), DownstreamError>;

    /// Sends whatever is held, before the sequence waits on the upstream.
    async fn flush(&mut self) -> Result<(), DownstreamError>;

    /// Completes the response (with trailers, when the upstream sent some).
    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), DownstreamError>;

    /// A refusal as the whole response; an HTTP/1.1 connection closes after it.
    async fn reject(&mut self, r: &Reject, request_id: Option<&str>);

    /// Ends a response that cannot complete: the connection closes (HTTP/1.1) or the stream is
    /// reset (HTTP/2).
    async fn abort(&mut self);
}
