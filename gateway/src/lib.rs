//! moat keeps a self-hosted model's data inside its region.
//!
//! This crate is the gateway: a TLS-terminating HTTP/1.1 proxy in front of a model server that
//! listens on loopback or a unix socket. The pipeline, one module per stage:
//!
//! ```text
//! client ─TCP─▶ server (listener) ─▶ tls ─▶ protocol::h1 ─▶ proxy ─▶ upstream (pool) ─▶ model
//!                                                          ◀─ response streamed back ◀─
//! ```
//!
//! - [`config`]: the TOML file, validated into typed settings (residency checked here first).
//! - [`server`]: binds listeners and wires the stages together.
//! - [`tls`]: rustls, TLS 1.2/1.3, forward-secret AEAD suites, SNI certificate choice.
//! - [`protocol`]: the HTTP/1.1 codec with strict framing.
//! - [`proxy`]: one downstream connection, request by request, bodies streamed both ways.
//! - [`upstream`]: pooled connections to the model server.
//! - [`error`]: what a client is told when a request is refused.
//! - [`guard`]: the eBPF egress fence around the model workload (userspace side).
//! - [`certs`]: `moat cert init`.
//! - [`demo`]: an embedded OpenAI-compatible demo model and `moat demo`.
//!
//! See `docs/architecture.md` for the long form.

pub mod admin;
pub mod app;
pub mod audit;
pub mod certs;
pub mod coding;
pub mod config;
pub mod demo;
pub mod downstream;
pub mod error;
pub mod guard;
pub mod http1;
pub mod http2;
pub mod identity;
pub mod lookahead;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod privileges;
pub mod protocol;
pub mod proxy_protocol;
pub mod redact;
pub mod route;
pub mod server;
pub mod session;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod transparent;
pub mod upstream;
