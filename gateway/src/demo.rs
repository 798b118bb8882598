//! `moat demo`: a throwaway setup that shows the data path on a fresh machine.
//!
//! It writes certificates and a configuration into a temporary directory, starts an embedded
//! OpenAI-compatible demo model on loopback, starts the gateway in front of it and prints curl
//! commands to try. The demo model answers deterministically by echoing the prompt, so masking
//! (once configured) is visible in both directions. Streamed answers go out as server-sent
//! events a few characters at a time.
//!
//! The demo model speaks HTTP/1.1 through moat's own codec.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::protocol::h1::{self, Decoder, Limits, Reader};
use crate::protocol::Frame;

/// Name the demo model reports.
pub const MODEL: &str = "moat-demo";
/// Characters per streamed event.
const STREAM_PIECE: usize = 4;
/// Pause between streamed events, so streaming is visible in a terminal.
const STREAM_PAUSE: Duration = Duration::from_millis(40);
/// Largest request body the demo model reads.
const MAX_BODY: u64 = 1024 * 1024;

/// Serves the demo model on `listener` until the task is dropped.
pub async fn serve_model(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(model_connection(tcp));
    }
}

async fn model_connection<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let limits = Limits {
        max_request_line: 8192,
        max_head: 32 * 1024,
        max_headers: 100,
    };
    let mut r = Reader::new(io);
    loop {
        let Ok(Some(head)) = r.read_head(&limits).await else {
            return;
        };
        let Ok(req) = h1::parse_request(&head, &limits, MAX_BODY) else {
            let _ =
                r.io.write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let mut body = BytesMut::new();
        let mut dec = Decoder::new(req.body, MAX_BODY);
        loop {
            match dec.decode(&mut r.buf) {
                Ok(Some(Frame::Data(d))) => body.extend_from_slice(&d),
                Ok(Some(Frame::Trailers(_))) => {}
                Ok(None) if dec.is_done() => break,
                Ok(None) => match r.fill().await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                Err(_) => return,
            }
        }
        let ok = match (req.method.as_str(), req.path()) {
            ("GET", "/v1/models") => {
                let list = json!({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "moat"}]});
                respond(&mut r.io, 200, &list).await
            }
            ("POST", "/v1/chat/completions") => chat(&mut r.io, &body).await,
            _ => {
                respond(
                    &mut r.io,
                    404,
                    &json!({"error": {"type": "not_found", "message": "no such route"}}),
                )
                .await
            }
        };
        if !ok || !req.keep_alive {
            return;
        }
    }
}

async fn respond<W: AsyncWrite + Unpin>(io: &mut W, status: u16, body: &serde_json::Value) -> bool {
    let body = body.to_string();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(msg.as_bytes()).await.is_ok()
}

/// The answer for a chat request: "You said: " and the last user message.
pub fn answer(request: &serde_json::Value) -> String {
    let prompt = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    format!("You said: {prompt}")
}

async fn chat<W: AsyncWrite + Unpin>(io: &mut W, body: &[u8]) -> bool {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return respond(
            io,
            400,
            &json!({"error": {"type": "invalid_request", "message": "body is not JSON"}}),
        )
        .await;
    };
    let text = answer(&request);
    if request["stream"] != true {
        let reply = json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        });
        return respond(io, 200, &reply).await;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if io.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(STREAM_PIECE) {
        let piece: String = piece.iter().collect();
        let event = json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
        });
        if !send_event(io, &format!("data: {event}\n\n")).await {
            return false;
        }
        tokio::time::sleep(STREAM_PAUSE).await;
    }
    send_event(io, "data: [DONE]\n\n").await && io.write_all(b"0\r\n\r\n").await.is_ok()
}

async fn send_event<W: AsyncWrite + Unpin>(io: &mut W, event: &str) -> bool {
    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
    io.write_all(chunk.as_bytes()).await.is_ok() && io.flush().await.is_ok()
}

/// Files and addresses of a prepared demo.
#[derive(Debug)]
pub struct DemoSetup {
    /// Directory holding certificates and the configuration.
    pub dir: PathBuf,
    /// The configuration file written for the gateway.
    pub config_file: PathBuf,
    /// CA certificate clients should trust.
    pub ca_file: PathBuf,
}

/// Writes certificates and a configuration for a gateway on `gateway` in front of a model on
/// `model`.
pub fn prepare(dir: &Path, gateway: SocketAddr, model: SocketAddr) -> anyhow::Result<DemoSetup> {
    let files = crate::certs::init(dir, &["localhost".into(), "127.0.0.1".into()])?;
    let config = format!(
        r#"# Written by `moat demo`.
[log]
format = "text"

[[listener]]
name = "demo"
address = "{gateway}"
upstream = "model"

[[tls.certificate]]
cert_file = "server.pem"
key_file = "server.key"

[upstreams.model]
address = "{model}"

[audit]
dir = "audit"
key_dir = "state"

# Personal data and secrets are masked both ways; see docs/redaction.md.
[redaction.profiles.demo]
direction = "both"

# The demo lets anyone in; see docs/identity.md for mTLS, OIDC tokens and API keys.
[[policy.rules]]
id = "demo-allow-anonymous"
kinds = ["anonymous"]
require_region = false
redaction = "demo"
action = "allow"
"#
    );
    let config_file = dir.join("moat.toml");
    std::fs::write(&config_file, config)?;
    Ok(DemoSetup {
        dir: dir.to_owned(),
        config_file,
        ca_file: files.ca_cert,
    })
}

/// The curl commands `moat demo` prints.
pub fn curl_commands(setup: &DemoSetup, gateway: SocketAddr) -> String {
    let ca = setup.ca_file.display();
    let url = format!("https://localhost:{}", gateway.port());
    format!(
        "curl --cacert {ca} {url}/v1/models\n\
         curl --cacert {ca} {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"{MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello, my email is jane@example.com\"}}]}}'\n\
         curl --cacert {ca} -N {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"{MODEL}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Stream this back to me\"}}]}}'\n"
    )
}
