//! A small gRPC-shaped server over h2c (HTTP/2 with prior knowledge, no TLS), as gRPC model
//! servers listen: `/moat.test.Echo/Unary` answers one message, `/moat.test.Echo/Stream`
//! answers the request's message three times; both end with `grpc-status` trailers and report
//! what they saw (`te`, content type) in `x-seen-*` response headers.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One gRPC message frame: uncompressed flag, big-endian length, payload.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(msg.len()).expect("small message"));
    b.put_slice(msg);
    b.freeze()
}

/// The messages of a gRPC body.
pub fn messages(mut body: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        body.advance(1);
        let n = body.get_u32() as usize;
        if body.len() < n {
            break;
        }
        out.push(body.split_to(n));
    }
    out
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let te = req
        .headers()
        .get("te")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = messages(body).into_iter().next().unwrap_or_default();
    let copies = if path.ends_with("/Stream") { 3 } else { 1 };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("done"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..copies)
        .map(|_| Ok(Frame::data(frame(&msg))))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))))
        .collect();
    let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    let h = r.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&te) {
        h.insert("x-seen-te", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&ct) {
        h.insert("x-seen-content-type", v);
    }
    Ok(r)
}

/// Starts the server on 127.0.0.1 with a free port.
pub async fn start() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
    (addr, task)
}
