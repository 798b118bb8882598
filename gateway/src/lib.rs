//! moat keeps a self-hosted model's data inside its region.
//!
//! This crate is the gateway: a TLS-terminating HTTP/1.1 and HTTP/2 gateway in front of a model
//! server that listens on loopback or a unix socket, and the userspace side of the eBPF egress
//! guard. Every request takes one path:
//!
//! ```text
//! client ─TCP─▶ server ─▶ tls ─▶ session ─┬─▶ http1 ─┐  Downstream   ┌─▶ upstream ─▶ model
//!                                         └─▶ http2 ─┴─▶ pipeline ──┘   (HTTP/1.1 pool or h2c)
//! ```
//!
//! - [`server`], [`transparent`], [`session`]: listeners, redirected connections, and the
//!   choice of protocol for an accepted connection.
//! - [`http1`], [`http2`]: framing and I/O of each protocol, behind [`downstream::Downstream`].
//! - [`pipeline`]: the request sequence — admission, canonical path, identity, policy, request
//!   inspection, upstream exchange, response inspection, audit record — once for both.
//! - [`upstream`]: the one upstream client: `forward()` over a pooled HTTP/1.1 connection or
//!   the multiplexed h2c connection.
//! - [`route`]: what a request is served with; [`error`]: each side's error and what the
//!   client is told.
//! - [`identity`], [`policy`], [`lookahead`], [`redact`], [`coding`], [`audit`]: the stages.
//! - [`protocol`]: the HTTP/1.1 codec with strict framing, and the shared I/O steps.
//! - [`config`]: the TOML file, validated per section into typed settings.
//! - [`app`]: the process (run, reload, subcommands); [`guard`]: the eBPF egress fence.
//! - [`certs`]: `moat cert init`; [`demo`]: an embedded demo model and `moat demo`.
//!
//! See `docs/architecture.md` for the long form.

pub mod admin;
pub mod app;
pub mod audit;
pub mod caps;
pub mod certs;
pub mod coding;
pub mod config;
pub mod demo;
pub mod downstream;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
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
