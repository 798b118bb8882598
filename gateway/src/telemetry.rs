//! Logging setup: human-readable lines on a terminal, JSON objects otherwise or when asked.
//! Log lines carry metadata only (method, path without query, status, sizes, timing, ids),
//! never request or response content.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // rustls and h2 warn about what clients send (an IP address as SNI, a reset flood): any
        // client could fill the log with it, so only their errors are shown unless asked for
        // explicitly. moat logs and records what matters of these itself.
        let mut filter = EnvFilter::new(level);
        for (name, directive) in [("rustls", "rustls=error"), ("h2", "h2=error")] {
            if !level.contains(name) {
                filter = filter.add_directive(directive.parse().unwrap_or_default());
            }
        }
        filter
    });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Milliseconds since `t`, to the microsecond, as logs and audit records state durations.
pub fn millis(t: tokio::time::Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}
