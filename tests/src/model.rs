//! A model server streaming the shapes real ones stream, with personal data split across events.
//!
//! `GET /case/NAME/SPLIT` answers the stream `NAME` (see [`CASES`]) carrying [`TEXT`], cut into
//! two pieces at byte `SPLIT`, each event written as its own body frame;
//! `GET /case/NAME/SPLIT/CODING` the same compressed (`gzip`, `deflate`, `br`, `zstd`), sent in
//! small frames. `GET /json/CODING` answers a chat completion carrying [`TEXT`], compressed;
//! `GET /bomb/TYPE` 64 MiB of zeros gzipped as `json` or `sse`; `GET /corrupt` a gzip event
//! stream whose deflate data is broken; `GET /labelled/CODING` a plain event stream labelled
//! with any `Content-Encoding`. `POST /echo` answers the request body as received, with
//! the request's content type and coding. Every request body is checked for [`SECRETS`]:
//! [`Model::leaks`] counts the requests that carried one.
//!
//! It serves HTTP/1.1 or, with [`Model::start_h2c`], HTTP/2 with prior knowledge (an h2c
//! upstream).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The text every case streams.
pub const TEXT: &str = "Reach jane.doe@example.com or card 4111 1111 1111 1111, ok";

/// Personal data that must never pass a redacting gateway.
pub const SECRETS: &[&str] = &["jane.doe@example.com", "4111 1111 1111 1111"];

/// The streams served, by name.
pub const CASES: &[&str] = &[
    "chat-content",
    "chat-reasoning",
    "chat-reasoning-content",
    "chat-refusal",
    "chat-tool-arguments",
    "responses-function-arguments",
    "anthropic-partial-json",
    "anthropic-thinking",
    "sse-comment",
    "sse-multiline-data",
    "ollama-chat",
    "ollama-generate",
];

/// A running model server.
#[derive(Debug)]
pub struct Model {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    leaks: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Model {
    /// Starts an HTTP/1.1 model server on 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_with(false, Duration::ZERO).await
    }

    /// Starts an h2c (HTTP/2, prior knowledge) model server on 127.0.0.1.
    pub async fn start_h2c() -> Self {
        Self::start_with(true, Duration::ZERO).await
    }

    /// Starts an h2c model server when `h2c`, else an HTTP/1.1 one.
    pub async fn start_as(h2c: bool) -> Self {
        Self::start_with(h2c, Duration::ZERO).await
    }

    /// Starts an h2c model server that waits `delay` before answering each new connection's
    /// handshake (a slow start, so concurrent first requests overlap it).
    pub async fn start_h2c_slow(delay: Duration) -> Self {
        Self::start_with(true, delay).await
    }

    async fn start_with(h2c: bool, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind model");
        let addr = listener.local_addr().expect("addr");
        let leaks = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (l, c) = (leaks.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let io = hyper_util::rt::TokioIo::new(tcp);
                let l = l.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let service = hyper::service::service_fn(move |req| handle(req, l.clone()));
                    if h2c {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        Self {
            addr,
            leaks,
            connections,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests whose body carried personal data.
    pub fn leaks(&self) -> u64 {
        self.leaks.load(Ordering::SeqCst)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    leaks: Arc<AtomicU64>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let content_type = req.headers().get("content-type").cloned();
    let coding = req.headers().get("content-encoding").cloned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if SECRETS
        .iter()
        .any(|s| String::from_utf8_lossy(&body).contains(s))
    {
        leaks.fetch_add(1, Ordering::SeqCst);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match parts.as_slice() {
        ["echo"] => {
            let mut r = Response::new(Full::new(body).boxed());
            if let Some(ct) = content_type {
                r.headers_mut().insert("content-type", ct);
            }
            if let Some(c) = coding {
                r.headers_mut().insert("content-encoding", c);
            }
            r
        }
        ["case", name, split] => match stream(name, split.parse().unwrap_or(1)) {
            Some((ct, frames)) => streamed(ct, None, frames.into_iter().map(Bytes::from).collect()),
            None => not_found(),
        },
        ["case", name, split, coding] => match stream(name, split.parse().unwrap_or(1)) {
            Some((ct, frames)) => {
                let packed = compress(coding, frames.concat().as_bytes());
                let pieces = packed.chunks(7).map(Bytes::copy_from_slice).collect();
                streamed(ct, Some(coding), pieces)
            }
            None => not_found(),
        },
        ["json", coding] => {
            let doc = json!({"object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}]});
            let packed = compress(coding, doc.to_string().as_bytes());
            streamed("application/json", Some(coding), vec![Bytes::from(packed)])
        }
        ["bomb", kind] => {
            let ct = if *kind == "sse" {
                "text/event-stream"
            } else {
                "application/json"
            };
            let packed = compress("gzip", &vec![0u8; 64 * 1024 * 1024]);
            let pieces = packed.chunks(4096).map(Bytes::copy_from_slice).collect();
            streamed(ct, Some("gzip"), pieces)
        }
        ["labelled", coding] => {
            let body = sse(None, &chat(json!({"content": TEXT}), Some("stop")));
            streamed("text/event-stream", Some(coding), vec![Bytes::from(body)])
        }
        ["corrupt"] => {
            let mut packed = compress(
                "gzip",
                sse(None, &chat(json!({"content": TEXT}), None)).as_bytes(),
            );
            let mid = packed.len() / 2;
            for b in &mut packed[mid..] {
                *b ^= 0xa5;
            }
            streamed("text/event-stream", Some("gzip"), vec![Bytes::from(packed)])
        }
        _ => not_found(),
    };
    Ok(resp)
}

/// A response streamed as `frames`, with a content type and coding.
fn streamed(ct: &str, coding: Option<&str>, frames: Vec<Bytes>) -> Response<Body> {
    let frames = frames
        .into_iter()
        .map(|f| Ok::<_, Infallible>(Frame::data(f)));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        frames,
    ))));
    r.headers_mut()
        .insert("content-type", ct.parse().expect("content type"));
    if let Some(c) = coding {
        r.headers_mut()
            .insert("content-encoding", c.parse().expect("coding"));
    }
    r
}

/// `data` compressed in `coding` (`gzip`, `deflate`, `br`, `zstd`).
pub fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("deflate");
            e.finish().expect("deflate")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("br");
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        other => panic!("no coding {other}"),
    }
}

fn not_found() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found")).boxed());
    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
    r
}

fn sse(name: Option<&str>, v: &Value) -> String {
    match name {
        Some(n) => format!("event: {n}\ndata: {v}\n\n"),
        None => format!("data: {v}\n\n"),
    }
}

fn chat(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// The stream `name` with [`TEXT`] cut at `split`: its content type and body frames.
pub fn stream(name: &str, split: usize) -> Option<(&'static str, Vec<String>)> {
    let split = split.clamp(1, TEXT.len() - 1);
    let pieces = [&TEXT[..split], &TEXT[split..]];
    let chat_case = |field: &str| -> Vec<String> {
        let mut f: Vec<String> = pieces
            .iter()
            .map(|p| sse(None, &chat(json!({ field: p }), None)))
            .collect();
        f.push(sse(None, &chat(json!({}), Some("stop"))));
        f.push("data: [DONE]\n\n".into());
        f
    };
    let es = "text/event-stream";
    let frames = match name {
        "chat-content" => chat_case("content"),
        "chat-reasoning" => chat_case("reasoning"),
        "chat-reasoning-content" => chat_case("reasoning_content"),
        "chat-refusal" => chat_case("refusal"),
        "chat-tool-arguments" => {
            let mut f = vec![sse(
                None,
                &chat(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "send", "arguments": ""}}]}),
                    None,
                ),
            )];
            f.extend(pieces.iter().map(|p| {
                sse(
                    None,
                    &chat(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                        None,
                    ),
                )
            }));
            f.push(sse(None, &chat(json!({}), Some("tool_calls"))));
            f.push("data: [DONE]\n\n".into());
            f
        }
        "responses-function-arguments" => {
            let ev = |t: &str, extra: Value| {
                let mut v = json!({"type": t, "item_id": "fc_1", "output_index": 0});
                if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
                    m.extend(x);
                }
                sse(Some(t), &v)
            };
            let mut f: Vec<String> = pieces
                .iter()
                .map(|p| {
                    ev(
                        "response.function_call_arguments.delta",
                        json!({ "delta": p }),
                    )
                })
                .collect();
            f.push(ev(
                "response.function_call_arguments.done",
                json!({ "arguments": TEXT }),
            ));
            f.push(ev(
                "response.completed",
                json!({"response": {"output": [{"type": "function_call", "arguments": TEXT}]}}),
            ));
            f
        }
        "anthropic-partial-json" | "anthropic-thinking" => {
            let (kind, field) = if name == "anthropic-thinking" {
                ("thinking_delta", "thinking")
            } else {
                ("input_json_delta", "partial_json")
            };
            let mut f = vec![sse(
                Some("message_start"),
                &json!({"type": "message_start", "message": {"id": "msg_1", "content": []}}),
            )];
            f.extend(pieces.iter().map(|p| {
                sse(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": kind, field: p}}),
                )
            }));
            f.push(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            f.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
            f
        }
        "sse-comment" => pieces
            .iter()
            .map(|p| format!(": {p}\n\n"))
            .chain([sse(None, &chat(json!({"content": "hi"}), Some("stop")))])
            .collect(),
        "sse-multiline-data" => {
            let v = chat(json!({"content": TEXT}), Some("stop")).to_string();
            // The JSON cut across two data lines, joined by the client with a newline (JSON
            // whitespace, as the cut falls between tokens: after the choices array opens).
            let (a, b) = v.split_at(v.find('[').map_or(1, |i| i + 1));
            vec![
                format!("data: {a}\ndata: {b}\n\n"),
                "data: [DONE]\n\n".into(),
            ]
        }
        "ollama-chat" | "ollama-generate" => {
            let ev = |p: &str, done: bool| {
                if name == "ollama-chat" {
                    json!({"model": "llama3", "created_at": "2026-12-02T10:00:00Z",
                        "message": {"role": "assistant", "content": p}, "done": done})
                } else {
                    json!({"model": "llama3", "created_at": "2026-12-02T10:00:00Z",
                        "response": p, "done": done})
                }
            };
            let mut f: Vec<String> = pieces
                .iter()
                .map(|p| format!("{}\n", ev(p, false)))
                .collect();
            f.push(format!("{}\n", ev("", true)));
            return Some(("application/x-ndjson", f));
        }
        _ => return None,
    };
    Some((es, frames))
}
