//! Audit record bodies. Metadata only: who, what route, which decision, how much, how long —
//! never a header value, a query string or a byte of any body. Schema in `docs/audit.md`.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Schema version written in every record's `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// One audit record's body; the writer adds `v`, `seq`, `prev` and `time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A request that was forwarded (or attempted).
    Request(Box<RequestRecord>),
    /// A request refused before anything was forwarded.
    Reject(Box<RejectRecord>),
    /// Egress the guard refused (or, in monitor mode, would have).
    Guard(GuardRecord),
    /// A connection passed through without being parsed (transparent mode).
    Connection(Box<ConnectionRecord>),
    /// Something happened to moat itself.
    Lifecycle(LifecycleRecord),
    /// A signed statement of the chain head.
    Checkpoint(CheckpointRecord),
}

impl Record {
    /// The record's `kind`, as its JSON names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Request(_) => "request",
            Self::Reject(_) => "reject",
            Self::Guard(_) => "guard",
            Self::Connection(_) => "connection",
            Self::Lifecycle(_) => "lifecycle",
            Self::Checkpoint(_) => "checkpoint",
        }
    }
}

/// TLS facts of the connection a request arrived on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher: Option<String>,
    /// SNI name the client sent.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// SHA-256 of the client certificate (DER), when one was presented.
    pub client_cert_sha256: Option<String>,
}

/// The guard's state when a request was served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardFacts {
    /// `enforce`, `monitor`, `off`, or `unattached` (required = false and it failed).
    pub mode: String,
    /// SHA-256 of the allow-list in force.
    pub allow_sha256: Option<String>,
}

/// A forwarded (or attempted) request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// moat's request id (also sent upstream and to the client).
    pub request_id: String,
    /// Listener name.
    pub listener: Arc<str>,
    /// moat's own region (`residency.region`), when set.
    #[serde(default)]
    pub region: Option<Arc<str>>,
    /// Client IP and port (shared by the connection's requests).
    pub client: Arc<str>,
    /// TLS facts (shared by the connection's requests).
    pub tls: Arc<TlsFacts>,
    /// Authenticated principal, once identity exists.
    pub principal: Option<String>,
    /// Kind of principal (`mtls`, `jwt`, `api_key`).
    pub principal_kind: Option<Cow<'static, str>>,
    /// The regions the caller's credential claims (a JWT's regions claim, an API key's
    /// `regions`); empty when it claims none.
    #[serde(default)]
    pub caller_regions: Arc<[String]>,
    /// Method.
    pub method: Cow<'static, str>,
    /// Host header value.
    pub host: String,
    /// Path without the query.
    pub path: String,
    /// The model the request body names (its JSON `model` field), when it names one.
    pub model: Option<String>,
    /// Policy rule that decided, once policy exists.
    pub rule: Option<Arc<str>>,
    /// Decision (`allow` until policy exists).
    pub decision: Cow<'static, str>,
    /// Upstream name and address.
    pub upstream: Arc<str>,
    /// Status sent to the client (0 if none was sent).
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From the first byte of the request head to the end of the response, in ms.
    pub duration_ms: f64,
    /// From the end of the request to the upstream's response head, in ms.
    pub upstream_ms: Option<f64>,
    /// Values masked, per type and direction, once redaction exists.
    pub redactions: std::collections::BTreeMap<String, u64>,
    /// Guard state (shared by the listener's requests).
    pub guard: Arc<GuardFacts>,
    /// `downstream`, `upstream` or `internal` when the exchange failed.
    pub failed: Option<Cow<'static, str>>,
    /// Short reason for a failure (never content).
    pub reason: Option<String>,
}

/// A request refused before forwarding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectRecord {
    /// Request id, when the head was parsed far enough to assign one.
    pub request_id: Option<String>,
    /// Listener name.
    pub listener: Arc<str>,
    /// moat's own region (`residency.region`), when set.
    #[serde(default)]
    pub region: Option<Arc<str>>,
    /// Client IP and port.
    pub client: Arc<str>,
    /// Status sent (0 if the connection was just closed).
    pub status: u16,
    /// Machine-readable reason (`bad_request`, `request_header_too_large`, `request_timeout`, …).
    pub reason: String,
    /// The rule that was broken, for malformed requests.
    pub detail: Option<String>,
    /// Method and path, when the head was parsed.
    pub method: Option<String>,
    /// Path without query, when the head was parsed.
    pub path: Option<String>,
    /// The principal, when identity succeeded (policy refusals).
    pub principal: Option<String>,
    /// Kind of the principal.
    pub principal_kind: Option<Cow<'static, str>>,
    /// The regions the principal's credential claims, when identity succeeded.
    #[serde(default)]
    pub caller_regions: Arc<[String]>,
    /// The model the request body names, when policy read it before refusing.
    #[serde(default)]
    pub model: Option<String>,
    /// The policy rule that decided (`default-deny` when none matched).
    pub rule: Option<Arc<str>>,
}

/// A connection moat passed through as bytes (transparent mode: TLS it holds no certificate
/// for, or a protocol other than HTTP), recorded when it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// Listener name.
    pub listener: Arc<str>,
    /// Client address and port.
    pub client: String,
    /// Where the client meant to connect (the original destination).
    pub destination: String,
    /// `name@address` of the upstream it was passed to.
    pub upstream: String,
    /// `tls` (with the SNI it named) or `tcp`.
    pub protocol: String,
    /// SNI of a passed-through TLS connection.
    pub sni: Option<String>,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// Connection lifetime in ms.
    pub duration_ms: f64,
    /// Why it ended badly, if it did.
    pub failed: Option<String>,
}

/// An egress refusal from the guard (coalesced: `repeats` more of the same followed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardRecord {
    /// `refused` or `monitored`.
    pub verdict: String,
    /// `connect`, `sendmsg` or `egress`.
    pub hook: String,
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// User id.
    pub uid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Destination address.
    pub addr: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// Further identical events in the same window.
    pub repeats: u64,
}

/// Something that happened to moat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRecord {
    /// `start`, `stop`, `config_loaded`, `reload_accepted`, `reload_refused`, `guard_attached`,
    /// `guard_unattached`, `recovered`, `audit_resumed`.
    pub event: String,
    /// moat version.
    pub version: String,
    /// SHA-256 of the configuration file, for config events.
    pub config_sha256: Option<String>,
    /// Free-form facts (never content).
    pub detail: Option<String>,
}

/// A signed statement: "the chain up to `seq - 1` hashes to `prev`".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Records since the previous checkpoint.
    pub records: u64,
    /// Identifies the signing key: the first 16 hex digits of SHA-256(public key).
    pub key_id: String,
    /// Ed25519 signature (hex) over `moat-audit-checkpoint-v1\n{seq}\n{prev}`.
    pub signature: String,
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(seq: u64, prev: &str) -> Vec<u8> {
    format!("moat-audit-checkpoint-v1\n{seq}\n{prev}").into_bytes()
}

/// A whole record line as read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version.
    pub v: u32,
    /// Sequence number, from 1, continuous across segments.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's exact bytes; 64 zeros for the first.
    pub prev: String,
    /// RFC 3339 UTC time with milliseconds.
    pub time: String,
    /// The body.
    #[serde(flatten)]
    pub record: Record,
}
