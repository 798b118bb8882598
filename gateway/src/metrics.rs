//! Prometheus metrics, served by the admin endpoint ([`crate::admin`]).
//!
//! One process-wide set ([`METRICS`]): every stage counts into it without passing handles
//! around. Labels carry metadata only (listener, protocol, status, rule, entity type, reason),
//! never request content; label values come from configuration or fixed sets, so their number
//! is bounded.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Listener name.
    pub listener: std::sync::Arc<str>,
    /// `http/1.1` or `h2`.
    pub protocol: &'static str,
    /// Status sent to the client (0 when none was).
    pub status: u16,
    /// The policy rule that allowed it.
    pub rule: std::sync::Arc<str>,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Listener name.
    pub listener: std::sync::Arc<str>,
}

/// Labels of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Listener name.
    pub listener: String,
    /// The refusal's `error.type` (`forbidden`, `unauthenticated`, `redaction_refused`, …).
    pub reason: String,
    /// Status sent.
    pub status: u16,
}

/// Labels of a connection refused for a cap.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapLabels {
    /// Listener name.
    pub listener: std::sync::Arc<str>,
    /// `max_connections` or `max_connections_per_ip`.
    pub reason: &'static str,
}

/// Labels of a redacted value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedactionLabels {
    /// Entity type (`EMAIL_ADDRESS`, …).
    pub entity: String,
    /// `request` or `response`.
    pub direction: &'static str,
}

/// Labels of a guard refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    /// Which program refused (`connect4`, `sendmsg6`, `egress`, …).
    pub hook: String,
}

/// Every metric moat exposes.
pub struct Metrics {
    registry: Registry,
    /// Requests forwarded, by listener, protocol, status and rule.
    pub requests: Family<RequestLabels, Counter>,
    /// Whole-request durations, by listener.
    pub request_seconds: Family<ListenerLabels, Histogram, fn() -> Histogram>,
    /// Client connections open now.
    pub connections_active: Gauge,
    /// TLS handshakes that failed or timed out, by listener.
    pub tls_handshake_failures: Family<ListenerLabels, Counter>,
    /// Client connections closed unserved for a connection cap, by listener and cap.
    pub connections_refused: Family<CapLabels, Counter>,
    /// Requests refused (identity, policy, redaction, malformed, audit down), by reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Values redacted, by entity and direction.
    pub redactions: Family<RedactionLabels, Counter>,
    /// Connections and packets the egress guard refused (events seen), by hook.
    pub guard_refusals: Family<GuardLabels, Counter>,
    /// Records waiting for the audit writer.
    pub audit_queue_depth: Gauge,
    /// Time the audit writer takes per batch (write, and fsync when it syncs).
    pub audit_write_seconds: Histogram,
    /// Time a response waited for its audit record to be durable (`fsync = "always"`).
    pub audit_durable_wait_seconds: Histogram,
    /// Trail records not yet sent to the collector (`[audit.ship]`).
    pub audit_ship_lag_records: Gauge,
    /// While records wait: how long ago the newest record the collector has was written.
    pub audit_ship_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Records sent to the collector (again after a failure included).
    pub audit_ship_sent: Counter,
    /// 1 while connected to the collector.
    pub audit_ship_connected: Gauge,
}

fn request_histogram() -> Histogram {
    // 100 µs to ~3.3 min.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("moat");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests forwarded, by listener, protocol, status and rule",
            requests.clone(),
        );
        let request_seconds =
            Family::<ListenerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from the first byte of a request to the end of its response",
            request_seconds.clone(),
        );
        let connections_active = Gauge::default();
        registry.register(
            "connections_active",
            "Client connections open now",
            connections_active.clone(),
        );
        let tls_handshake_failures = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let connections_refused = Family::<CapLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections closed before TLS for a connection cap",
            connections_refused.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused (identity, policy, redaction, malformed, audit unavailable)",
            refusals.clone(),
        );
        let redactions = Family::<RedactionLabels, Counter>::default();
        registry.register(
            "redactions",
            "Values redacted, by entity type and direction",
            redactions.clone(),
        );
        let guard_refusals = Family::<GuardLabels, Counter>::default();
        registry.register(
            "guard_refusals",
            "Connections and packets the egress guard refused, by hook",
            guard_refusals.clone(),
        );
        let audit_queue_depth = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Records waiting for the audit writer",
            audit_queue_depth.clone(),
        );
        let audit_write_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        registry.register(
            "audit_write_seconds",
            "Time the audit writer takes per batch",
            audit_write_seconds.clone(),
        );
        let audit_durable_wait_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        registry.register(
            "audit_durable_wait_seconds",
            "Time a response waited for its audit record to be on disk",
            audit_durable_wait_seconds.clone(),
        );
        let audit_ship_lag_records = Gauge::default();
        registry.register(
            "audit_ship_lag_records",
            "Audit records not yet sent to the collector",
            audit_ship_lag_records.clone(),
        );
        let audit_ship_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "audit_ship_lag_seconds",
            "While audit records wait to be shipped, the age of the newest one the collector has",
            audit_ship_lag_seconds.clone(),
        );
        let audit_ship_sent = Counter::default();
        registry.register(
            "audit_ship_sent",
            "Audit records sent to the collector",
            audit_ship_sent.clone(),
        );
        let audit_ship_connected = Gauge::default();
        registry.register(
            "audit_ship_connected",
            "1 while moat is connected to the audit collector",
            audit_ship_connected.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            connections_active,
            tls_handshake_failures,
            connections_refused,
            refusals,
            redactions,
            guard_refusals,
            audit_queue_depth,
            audit_write_seconds,
            audit_durable_wait_seconds,
            audit_ship_lag_records,
            audit_ship_lag_seconds,
            audit_ship_sent,
            audit_ship_connected,
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut open = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut open, &self.registry);
        prometheus_text(&open)
    }

    /// Counts a refused request.
    pub fn refused(&self, listener: &str, reason: &str, status: u16) {
        self.refusals
            .get_or_create(&RefusalLabels {
                listener: listener.to_owned(),
                reason: reason.to_owned(),
                status,
            })
            .inc();
    }
}

/// OpenMetrics text as the Prometheus text format: a counter's `# HELP` and `# TYPE` lines
/// name it with its `_total` suffix, as its samples do (OpenMetrics names the family without
/// it, which Prometheus-format parsers such as `promtool check metrics` reject).
fn prometheus_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + counters.len() * 16);
    for line in open.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_help_and_type() {
        let open = "# HELP moat_requests Requests.\n# TYPE moat_requests counter\nmoat_requests_total{a=\"b\"} 1\n# HELP moat_up Up.\n# TYPE moat_up gauge\nmoat_up 1\n";
        assert_eq!(
            prometheus_text(open),
            "# HELP moat_requests_total Requests.\n# TYPE moat_requests_total counter\nmoat_requests_total{a=\"b\"} 1\n# HELP moat_up Up.\n# TYPE moat_up gauge\nmoat_up 1\n"
        );
    }
}
