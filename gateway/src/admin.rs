//! The admin endpoint, on loopback only (`[admin] address`): plain HTTP/1.1, one request per
//! connection.
//!
//! - `GET /metrics`: Prometheus text exposition of [`crate::metrics::METRICS`];
//! - `GET /healthz`: 200 while the process serves at all;
//! - `GET /readyz`: 200 when moat should get traffic (listeners up, audit trail taking
//!   records, not shutting down), else 503 with the reason.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::Auditor;
use crate::protocol::h1::{self, Limits, Reader};

/// What readiness depends on.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The audit trail (not ready while it refuses requests).
    pub audit: Auditor,
    /// True once moat is shutting down.
    pub draining: watch::Receiver<bool>,
}

impl Readiness {
    fn check(&self) -> Result<(), &'static str> {
        if *self.draining.borrow() {
            return Err("shutting down");
        }
        if !self.audit.healthy() {
            return Err("audit trail unavailable");
        }
        Ok(())
    }
}

/// Serves the admin endpoint until the task is dropped.
pub async fn serve(listener: TcpListener, ready: Readiness) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(tcp, &ready)).await;
        });
    }
}

async fn answer(tcp: tokio::net::TcpStream, ready: &Readiness) {
    let limits = Limits {
        max_request_line: 1024,
        max_head: 8 * 1024,
        max_headers: 32,
    };
    let mut r = Reader::new(tcp);
    let mut head_only = false;
    let (status, ctype, body) = match r.read_head(&limits).await {
        Ok(Some(head)) => match h1::parse_request(&head, &limits, 0) {
            Ok(req) if req.method == http::Method::GET || req.method == http::Method::HEAD => {
                head_only = req.method == http::Method::HEAD;
                match req.path() {
                    "/metrics" => (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        crate::metrics::METRICS.render(),
                    ),
                    "/healthz" => (200, "text/plain", "ok\n".to_owned()),
                    "/readyz" => match ready.check() {
                        Ok(()) => (200, "text/plain", "ready\n".to_owned()),
                        Err(why) => (503, "text/plain", format!("not ready: {why}\n")),
                    },
                    _ => (404, "text/plain", "not found\n".to_owned()),
                }
            }
            Ok(_) => (405, "text/plain", "method not allowed\n".to_owned()),
            Err(_) => (400, "text/plain", "bad request\n".to_owned()),
        },
        _ => (400, "text/plain", "bad request\n".to_owned()),
    };
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = BytesMut::with_capacity(body.len() + 128);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = r.io.write_all(&out).await;
    let _ = r.io.shutdown().await;
}
