//! A real HTTP/1.1 server (hyper) standing in for the model server, recording what reached it.
//!
//! Routes:
//! - `GET /` → `ok`;
//! - `POST /echo` → the request body, as received;
//! - `GET /headers` → the request headers it received, as a JSON object of arrays;
//! - `POST /sink` → consumes the body, counting bytes as they arrive, and answers
//!   `{"bytes":N,"sum":S,"chunked":bool,"trailers":{..}}` (S: sum of all bytes mod 2^32);
//! - `GET /bytes/N` → N bytes of a repeating pattern with Content-Length;
//! - `GET /chunked/N` → N bytes streamed without a length (chunked on the wire);
//! - `GET /sse` → one event, then waits for [`Origin::release`], then two more events and ends;
//! - `GET /sse-pii` → OpenAI chat chunks with an email split across events (the second waits
//!   for [`Origin::release`]); `GET /sse-bad` → an event stream whose data is not UTF-8;
//! - `GET /slow` → never answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the origin observed.
#[derive(Debug, Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Bytes read from all connections.
    pub bytes: AtomicU64,
    /// Requests that reached a handler.
    pub requests: AtomicU64,
    /// Body bytes received so far by `/sink` (updated as each piece arrives).
    pub sink_progress: AtomicU64,
    /// Requests to `/sink` that came chunked (without a length).
    pub sink_chunked: AtomicU64,
}

/// A running origin.
#[derive(Debug)]
pub struct Origin {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// What reached it.
    pub seen: Arc<Seen>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts an origin on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        Self::serve(listener)
    }

    /// Starts an origin on a given listener.
    pub fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let release = Arc::new(Notify::new());
        let (s, r) = (seen.clone(), release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let io = hyper_util::rt::TokioIo::new(Counted {
                    inner: tcp,
                    seen: s.clone(),
                });
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(req, s.clone(), r.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            release,
            task,
        }
    }

    /// Lets a waiting `/sse` response continue.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.seen.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn pattern(n: u64) -> impl Iterator<Item = Bytes> {
    const PIECE: u64 = 64 * 1024;
    let block: Bytes = (0..PIECE)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    (0..n.div_ceil(PIECE)).map(move |i| block.slice(..(n - i * PIECE).min(PIECE) as usize))
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
    release: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let resp = match (req.method().as_str(), path.as_str()) {
        ("GET" | "HEAD", "/") => Response::new(full("ok")),
        ("POST", "/echo") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::new(full(body))
        }
        ("GET", "/headers") => {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                map.entry(k.to_string())
                    .or_default()
                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            }
            Response::new(full(serde_json::to_vec(&map).unwrap_or_default()))
        }
        ("POST", "/sink" | "/v1/chat/completions") => {
            let chunked = req.headers().get("transfer-encoding").is_some();
            if chunked {
                seen.sink_chunked.fetch_add(1, Ordering::SeqCst);
            }
            let mut body = req.into_body();
            let (mut bytes, mut sum) = (0u64, 0u32);
            let mut trailers = BTreeMap::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                match frame.into_data() {
                    Ok(d) => {
                        bytes += d.len() as u64;
                        sum = d.iter().fold(sum, |s, &b| s.wrapping_add(u32::from(b)));
                        seen.sink_progress.store(bytes, Ordering::SeqCst);
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            for (k, v) in &t {
                                trailers.insert(
                                    k.to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                );
                            }
                        }
                    }
                }
            }
            let reply = serde_json::json!({"bytes": bytes, "sum": sum, "chunked": chunked, "trailers": trailers});
            Response::new(full(reply.to_string()))
        }
        ("GET", p) if p.starts_with("/bytes/") || p.starts_with("/octets/") => {
            // `/octets/` is `/bytes/` labelled as opaque bytes.
            let (_, n) = p[1..].split_once('/').unwrap_or_default();
            let n: u64 = n.parse().unwrap_or(0);
            let body = StreamBody::new(futures_util::stream::iter(
                pattern(n).map(|b| Ok(Frame::data(b))),
            ));
            let mut r = Response::new(body.boxed());
            r.headers_mut().insert("content-length", n.into());
            if p.starts_with("/octets/") {
                r.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/octet-stream"),
                );
            }
            r
        }
        ("GET", p) if p.starts_with("/chunked/") => {
            let n: u64 = p["/chunked/".len()..].parse().unwrap_or(0);
            let body = StreamBody::new(futures_util::stream::iter(
                pattern(n).map(|b| Ok(Frame::data(b))),
            ));
            Response::new(body.boxed())
        }
        ("GET", "/sse") => {
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let release = release.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))), 2))
                        }
                        2 => Some((Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))), 3)),
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(
                "content-type",
                "text/event-stream".parse().expect("static value"),
            );
            r
        }
        ("GET", "/sse-pii") => {
            // An OpenAI-style stream whose email address is split across two events, with the
            // second held back until the test releases it.
            let chunk = |content: &str, finish: Option<&str>| {
                let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                    "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
                Bytes::from(format!("data: {v}\n\n"))
            };
            let first = chunk("Hello, my email is ja", None);
            let second = chunk("ne@example.com. Bye", Some("stop"));
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let (release, first, second) = (release.clone(), first.clone(), second.clone());
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(first)), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(Frame::data(second)), 2))
                        }
                        2 => Some((Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))), 3)),
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(
                "content-type",
                "text/event-stream".parse().expect("static value"),
            );
            r
        }
        ("GET", "/text-pii") => {
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let release = release.clone();
                async move {
                    match step {
                        0 => Some((
                            Ok(Frame::data(Bytes::from_static(b"Hello, my email is ja"))),
                            1,
                        )),
                        1 => {
                            release.notified().await;
                            Some((
                                Ok(Frame::data(Bytes::from_static(b"ne@example.com. Bye"))),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(
                "content-type",
                "text/plain; charset=utf-8".parse().expect("static value"),
            );
            r
        }
        ("GET", "/sse-bad") => {
            let mut r = Response::new(full(
                &b"data: this is not \xff UTF-8\n\ndata: jane@example.com\n\n"[..],
            ));
            r.headers_mut().insert(
                "content-type",
                "text/event-stream".parse().expect("static value"),
            );
            r
        }
        ("GET", "/delay") => {
            // Long enough for concurrent requests to overlap.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Response::new(full("ok"))
        }
        ("GET", "/slow") => {
            std::future::pending::<()>().await;
            Response::new(full(""))
        }
        _ => {
            let mut r = Response::new(full("not found"));
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

/// A stream that counts the bytes read through it.
struct Counted<S> {
    inner: S,
    seen: Arc<Seen>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.seen.bytes.fetch_add(n as u64, Ordering::SeqCst);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads one request head from `s`, byte-exact; `None` when the peer closes first. (Any body
/// is left unread.)
pub async fn read_one_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let mut have = Vec::new();
    while !have.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        have.extend_from_slice(&buf[..n]);
    }
    Some(have)
}

/// Reads one request head from `s` and writes `reply`: the smallest possible HTTP/1.1 server,
/// for upstreams hyper cannot play (unix sockets, connections that vanish).
pub async fn answer_one_head<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, reply: &[u8]) {
    use tokio::io::AsyncWriteExt;
    if read_one_head(s).await.is_some() {
        let _ = s.write_all(reply).await;
    }
}
