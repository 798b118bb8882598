//! End-to-end tests for moat: the real `moat` binary, started as a child process in front of a
//! real HTTP server ([`origin`]), driven by real TLS clients ([`client`]).
//!
//! The binary is `$MOAT_BIN` (set by `cargo xtask test`) or `target/debug/moat`.
//! Scenarios live in `src/tests/`.

pub mod client;
pub mod gateway;
pub mod grpc;
pub mod guard;
pub mod h2raw;
pub mod idp;
pub mod model;
pub mod netns;
pub mod origin;
pub mod rsyslog;
pub mod skip;

#[cfg(test)]
mod tests;
