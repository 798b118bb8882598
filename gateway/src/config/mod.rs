//! Configuration: one TOML file, parsed into [`raw`] structs and validated into [`Config`].
//!
//! Validation follows "parse, don't validate": the rest of moat only ever sees the typed values
//! built here (socket addresses, CIDR sets, durations, file contents checked to exist). Every
//! error names the key path it concerns and, where the file has it, the line.
//!
//! Residency is enforced here first: an upstream must be on loopback, on a unix socket, or inside
//! a CIDR listed in `residency.in_region_cidrs`. Anything else is refused before moat starts.

pub(crate) mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use raw::RawConfig;

use crate::audit::{AuditConfig, FsyncMode};
use crate::guard::{AllowRule, GuardConfig, GuardMode};
use crate::identity::api_key::ApiKey;
use crate::identity::jwt::{JwtSettings, ALLOWED};
use crate::identity::{PrincipalKind, Source};
use crate::policy::{Action, Policy, Rule};
use crate::redact::{Detectors, Entity, Operator, Profile, Redactor};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tokio worker threads; `0` means one per core.
    pub worker_threads: usize,
    /// Started as root, moat drops to this user (and its primary group) once its listeners are
    /// bound and the guard is attached.
    pub user: Option<String>,
    /// Log output settings.
    pub log: LogConfig,
    /// Addresses moat accepts TLS connections on.
    pub listeners: Vec<ListenerConfig>,
    /// Server certificates and protocol settings.
    pub tls: TlsConfig,
    /// Model servers moat forwards to, by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Networks that count as in-region besides loopback.
    pub in_region: Vec<IpNet>,
    /// HTTP limits and timeouts.
    pub http: HttpConfig,
    /// HTTP/2 limits.
    pub http2: Http2Config,
    /// The egress guard.
    pub guard: GuardConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// The admin endpoint (`/metrics`, `/healthz`, `/readyz`), if enabled: a loopback address.
    pub admin: Option<SocketAddr>,
    /// SHA-256 of the configuration text (recorded in the audit trail).
    pub sha256: String,
    /// moat's own region (`residency.region`).
    pub region: Option<String>,
    /// Identity settings.
    pub identity: IdentitySettings,
    /// Authorization rules.
    pub policy: Policy,
    /// Problems worth a warning but not a refusal (e.g. a rule shadowed by an earlier one).
    pub warnings: Vec<String>,
    /// Redaction profiles by name.
    pub redaction: BTreeMap<String, Arc<Profile>>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    /// JSON objects, one per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `moat=debug`.
    pub level: String,
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Name of the upstream requests on this listener go to.
    pub upstream: String,
    /// Identity sources, in the order they are tried.
    pub identity: Vec<Source>,
    /// CA bundle client certificates are verified against (enables mTLS on this listener).
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required (else optional).
    pub client_cert_required: bool,
    /// Cleartext HTTP/2 with prior knowledge (`protocol = "h2c"`), for clients on this host;
    /// else TLS with ALPN `h2` and `http/1.1`.
    pub h2c: bool,
    /// Sources (load balancers) whose connections start with a PROXY v2 header naming the
    /// client; a header from anyone else is refused.
    pub proxy_protocol_from: Vec<IpNet>,
    /// `mode = "transparent"`: connections redirected here (nftables `redirect`, TPROXY) are
    /// forwarded to the upstream whose address they were meant for, if one is configured.
    pub transparent: bool,
    /// Transparent listeners: pass TLS moat holds no certificate for, and protocols other than
    /// HTTP, through as bytes (audited per connection) instead of refusing them.
    pub passthrough: bool,
    /// Transparent listeners fed by TPROXY: the socket is bound with `IP_TRANSPARENT`, so it
    /// accepts connections for addresses that are not the host's.
    pub tproxy: bool,
}

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// TLS settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Lowest version accepted.
    pub min_version: TlsVersion,
    /// Server certificates; the first is the default when no SNI name matches.
    pub certificates: Vec<CertificateConfig>,
}

/// One server certificate and the names it answers for.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// SNI names; `None` means "the certificate's own DNS names".
    pub server_names: Option<Vec<String>>,
    /// Key path of this entry, for error messages raised when the files are loaded.
    pub key_path: String,
}

/// Where an upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// A TCP address on loopback or inside an in-region network.
    Tcp(SocketAddr),
    /// A unix domain socket path.
    Unix(PathBuf),
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One model server.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where it listens.
    pub address: UpstreamAddr,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit between the end of the request and the response head.
    pub response_header_timeout: Duration,
    /// Most idle keep-alive connections kept.
    pub pool_max_idle: usize,
    /// An idle pooled connection older than this is closed instead of reused.
    pub pool_idle_timeout: Duration,
    /// The model server's own credential, injected by moat: header name and value.
    pub credential: Option<Credential>,
    /// The protocol moat speaks to it.
    pub protocol: UpstreamProtocol,
    /// The address clients use for it when their connections are redirected to a transparent
    /// listener (e.g. the model's service address, while it listens on loopback).
    pub transparent_address: Option<SocketAddr>,
}

/// How moat talks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over a pool of keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext), streams multiplexed over one connection; what
    /// gRPC servers speak.
    H2c,
}

/// A header moat adds toward an upstream; the value is secret and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Header name, lower-case.
    pub header: String,
    /// Header value, from the credential file.
    pub value: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}: <redacted>)", self.header)
    }
}

/// Validated `[identity]` settings.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// Pass the principal upstream in `x-moat-principal`, `x-moat-principal-kind` and
    /// `x-moat-groups`.
    pub forward_headers: bool,
    /// JWT verification.
    pub jwt: Option<JwtSettings>,
    /// API keys.
    pub api_keys: Vec<ApiKey>,
}

/// HTTP limits and timeouts.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Keep an incoming `X-Request-Id` instead of replacing it.
    pub trust_request_id: bool,
    /// Longest request line (431 beyond).
    pub max_request_line_bytes: usize,
    /// Largest request head, request line included (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub max_headers: usize,
    /// Largest request body (413 beyond); also the most a compressed request body may decode to.
    pub max_request_body_bytes: u64,
    /// Most decoded bytes per encoded byte of a compressed body that redaction decodes (past the
    /// first MiB): a request beyond it gets 413, a response follows the profile's fail mode.
    pub max_decompression_ratio: u64,
    /// Time allowed to receive a whole request head once it started (and the TLS handshake).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection waits for the next request.
    pub keepalive_timeout: Duration,
    /// Longest pause in a body transfer, either direction; resets on every byte of progress.
    pub body_idle_timeout: Duration,
    /// On shutdown, how long requests and streams in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trust_request_id: false,
            max_request_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_body_bytes: 32 * 1024 * 1024,
            max_decompression_ratio: 100,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// HTTP/2 limits (`[http2]`). The header count limit is `http.max_headers`, shared with HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// Streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Largest decoded header list (`SETTINGS_MAX_HEADER_LIST_SIZE`); bounds HPACK bombs and
    /// CONTINUATION floods, which are refused once past it.
    pub max_header_list_bytes: u32,
    /// Flow-control window of each request stream.
    pub initial_stream_window: u32,
    /// Flow-control window of the whole connection: what one client can make moat hold of
    /// request bodies not yet passed on.
    pub initial_connection_window: u32,
    /// Largest frame payload accepted (`SETTINGS_MAX_FRAME_SIZE`).
    pub max_frame_size: u32,
    /// Response bytes buffered per stream before moat waits for the client's window.
    pub max_send_buffer: usize,
    /// Streams reset by the client before moat accepted them, pending at once; past it the
    /// connection gets GOAWAY (Rapid Reset, CVE-2023-44487).
    pub max_pending_accept_reset_streams: usize,
    /// Streams moat had to reset for the client's protocol errors on one connection; past it
    /// the connection gets GOAWAY ("MadeYouReset").
    pub max_local_error_reset_streams: usize,
    /// How often an HTTP/2 connection is checked with a PING.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_bytes: 16 * 1024,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_send_buffer: 256 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 256,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Upstream defaults, shared by the validator and the example file's test.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `response_header_timeout`: long, because a model may think before it answers.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `pool_max_idle`.
pub const DEFAULT_POOL_MAX_IDLE: usize = 64;
/// Default `pool_idle_timeout`.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("{path}{line}: {message}", line = LineSuffix(*line))]
    Syntax {
        /// Key path, or `(document)` when the error is not under a key.
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("{path}{line}: invalid value `{value}`: {reason}", line = LineSuffix(*line))]
    Invalid {
        /// Key path such as `upstreams.model.address`.
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The offending value as written.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A required key is absent.
    #[error("{path}: missing: {reason}")]
    Missing {
        /// Key path of the absent key.
        path: String,
        /// What it is needed for.
        reason: String,
    },
}

/// Renders ` (line N)` when a line is known.
struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " (line {n})"),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        // Relative certificate paths are taken relative to the configuration file.
        let base = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parses and validates configuration text; relative file paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let spans = Spans::new(text);
        let deserializer = toml::Deserializer::parse(text).map_err(|e| spans.syntax(&e))?;
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut err = spans.syntax(&inner);
            if let ConfigError::Syntax { path: p, .. } = &mut err {
                if path != "." && !path.is_empty() {
                    *p = path;
                }
            }
            err
        })?;
        let mut config = Validator { spans, base }.config(raw)?;
        config.sha256 = crate::audit::sha256_hex(text.as_bytes());
        Ok(config)
    }

    /// A short multi-line summary for `moat check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            let up = &self.upstreams[&l.upstream];
            out.push_str(&format!(
                "listener {} on {} -> upstream {} at {}\n",
                l.name, l.address, l.upstream, up.address
            ));
        }
        out.push_str(&format!(
            "tls: {} certificate(s), minimum version {}\n",
            self.tls.certificates.len(),
            match self.tls.min_version {
                TlsVersion::Tls12 => "1.2",
                TlsVersion::Tls13 => "1.3",
            }
        ));
        out.push_str(&format!(
            "audit: {} (fsync {}), signing key in {}\n",
            self.audit.dir.display(),
            self.audit.fsync.as_str(),
            self.audit.key_dir.display()
        ));
        out.push_str(&format!("guard: {}", self.guard.mode.as_str()));
        if self.guard.mode != GuardMode::Off {
            out.push_str(&format!(
                " on {} cgroup(s), {} allow rule(s), required = {}",
                self.guard.cgroups.len(),
                self.guard.allow.len(),
                self.guard.required
            ));
        }
        out.push('\n');
        if !self.in_region.is_empty() {
            let nets: Vec<String> = self.in_region.iter().map(ToString::to_string).collect();
            out.push_str(&format!("in-region networks: {}\n", nets.join(", ")));
        }
        out
    }
}

/// Finds the line of a key path, or the key path at an error offset, in the source text.
struct Spans {
    doc: Option<toml_edit::Document<String>>,
    text: String,
}

impl Spans {
    fn new(text: &str) -> Self {
        Self {
            doc: toml_edit::Document::parse(text.to_owned()).ok(),
            text: text.to_owned(),
        }
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of the key at `path` (dot-separated, array indexes as numbers).
    fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let parts: Vec<&str> = path.split('.').collect();
        let span = span_in_table(doc.as_table(), &parts)?;
        Some(self.line_of_offset(span.start))
    }

    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let line = e.span().map(|s| self.line_of_offset(s.start));
        ConfigError::Syntax {
            path: "(document)".to_owned(),
            line,
            message: e.message().trim().to_owned(),
        }
    }
}

/// Span of the key (or array element) at `parts` inside `table`; the nearest known ancestor's span
/// when the exact one is unknown.
fn span_in_table(
    table: &dyn toml_edit::TableLike,
    parts: &[&str],
) -> Option<std::ops::Range<usize>> {
    let (first, rest) = parts.split_first()?;
    let (key, item) = table.get_key_value(first)?;
    let here = key.span();
    if rest.is_empty() {
        return here;
    }
    let deeper = match item {
        toml_edit::Item::Table(t) => span_in_table(t, rest),
        toml_edit::Item::ArrayOfTables(a) => {
            let (idx, tail) = rest.split_first()?;
            let t = a.get(idx.parse().ok()?)?;
            if tail.is_empty() {
                t.span()
            } else {
                span_in_table(t, tail)
            }
        }
        toml_edit::Item::Value(v) => span_in_value(v, rest),
        toml_edit::Item::None => None,
    };
    deeper.or(here)
}

fn span_in_value(value: &toml_edit::Value, parts: &[&str]) -> Option<std::ops::Range<usize>> {
    let (first, rest) = parts.split_first()?;
    match value {
        toml_edit::Value::Array(a) => {
            let v = a.get(first.parse().ok()?)?;
            if rest.is_empty() {
                v.span()
            } else {
                span_in_value(v, rest).or(v.span())
            }
        }
        toml_edit::Value::InlineTable(t) => span_in_table(t, parts),
        _ => None,
    }
}

/// Turns raw structs into validated ones, attaching line numbers to errors.
struct Validator<'a> {
    spans: Spans,
    base: &'a Path,
}

impl Validator<'_> {
    fn invalid(
        &self,
        path: &str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_owned(),
            line: self.spans.line(path),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn duration(
        &self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = value else { return Ok(default) };
        parse_duration(v).ok_or_else(|| {
            self.invalid(
                path,
                v,
                "expected a duration such as \"500ms\", \"10s\" or \"2m\"",
            )
        })
    }

    fn positive(
        &self,
        path: &str,
        value: Option<usize>,
        default: usize,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default),
            Some(0) => Err(self.invalid(path, 0, "must be greater than zero")),
            Some(v) => Ok(v),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let in_region = raw
            .residency
            .in_region_cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                    self.invalid(
                        &format!("residency.in_region_cidrs.{i}"),
                        c,
                        "expected a CIDR such as 10.20.0.0/16",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut upstreams = BTreeMap::new();
        for (name, u) in &raw.upstreams {
            let p = format!("upstreams.{name}");
            upstreams.insert(name.clone(), self.upstream(&p, u, &in_region)?);
        }

        if raw.listener.is_empty() {
            return Err(ConfigError::Missing {
                path: "listener".to_owned(),
                reason: "at least one [[listener]] with an address and an upstream".to_owned(),
            });
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.listener.iter().enumerate() {
            let p = format!("listener.{i}");
            let address: SocketAddr = l.address.parse().map_err(|_| {
                self.invalid(
                    &format!("{p}.address"),
                    &l.address,
                    "expected IP:port such as 0.0.0.0:8443",
                )
            })?;
            if !upstreams.contains_key(&l.upstream) {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                return Err(self.invalid(
                    &format!("{p}.upstream"),
                    &l.upstream,
                    format!("no such upstream (defined: [{}])", known.join(", ")),
                ));
            }
            let mut identity = Vec::new();
            for (j, name) in l.identity.iter().enumerate() {
                let src = Source::parse(name).ok_or_else(|| {
                    self.invalid(
                        &format!("{p}.identity.{j}"),
                        name,
                        "expected \"mtls\", \"jwt\" or \"api_key\"",
                    )
                })?;
                identity.push(src);
            }
            let client_ca = match &l.client_ca {
                None => None,
                Some(f) => {
                    let path = self.existing_file(&format!("{p}.client_ca"), f)?;
                    let pem = std::fs::read(&path)
                        .map_err(|e| self.invalid(&format!("{p}.client_ca"), f, e.to_string()))?;
                    use rustls_pki_types::pem::PemObject;
                    let n = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                        .filter(Result::is_ok)
                        .count();
                    if n == 0 {
                        return Err(self.invalid(
                            &format!("{p}.client_ca"),
                            f,
                            "no PEM certificate in the file",
                        ));
                    }
                    Some(path)
                }
            };
            let client_cert_required = match l.client_cert.as_deref() {
                None | Some("optional") => false,
                Some("required") => true,
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{p}.client_cert"),
                        v,
                        "expected \"optional\" or \"required\"",
                    ))
                }
            };
            if client_ca.is_none() && (identity.contains(&Source::Mtls) || l.client_cert.is_some())
            {
                return Err(ConfigError::Missing {
                    path: format!("{p}.client_ca"),
                    reason: "a CA bundle to verify client certificates against (mtls)".to_owned(),
                });
            }
            let h2c = match l.protocol.as_deref() {
                None | Some("tls") => false,
                Some("h2c") => true,
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{p}.protocol"),
                        v,
                        "expected \"tls\" or \"h2c\"",
                    ))
                }
            };
            if h2c && !address.ip().is_loopback() {
                return Err(self.invalid(
                    &format!("{p}.address"),
                    &l.address,
                    "an h2c listener carries cleartext: it must be on loopback (127.0.0.1 or ::1)",
                ));
            }
            if h2c && (client_ca.is_some() || identity.contains(&Source::Mtls)) {
                return Err(self.invalid(
                    &format!("{p}.protocol"),
                    "h2c",
                    "an h2c listener has no TLS, so no client certificates (mtls)",
                ));
            }
            let mut proxy_protocol_from = Vec::new();
            for (j, c) in l.proxy_protocol_from.iter().enumerate() {
                let net = c.parse::<IpNet>().map_err(|_| {
                    self.invalid(
                        &format!("{p}.proxy_protocol_from.{j}"),
                        c,
                        "expected a CIDR such as 10.0.0.0/24",
                    )
                })?;
                proxy_protocol_from.push(net.trunc());
            }
            let transparent = match l.mode.as_deref() {
                None | Some("proxy") => false,
                Some("transparent") => true,
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{p}.mode"),
                        v,
                        "expected \"proxy\" or \"transparent\"",
                    ))
                }
            };
            if l.passthrough.is_some() && !transparent {
                return Err(self.invalid(
                    &format!("{p}.passthrough"),
                    "set",
                    "only a transparent listener (mode = \"transparent\") passes connections through",
                ));
            }
            if l.tproxy.is_some() && !transparent {
                return Err(self.invalid(
                    &format!("{p}.tproxy"),
                    "set",
                    "only a transparent listener (mode = \"transparent\") takes TPROXY connections",
                ));
            }
            listeners.push(ListenerConfig {
                tproxy: l.tproxy.unwrap_or(false),
                passthrough: l.passthrough.unwrap_or(false),
                transparent,
                proxy_protocol_from,
                h2c,
                name: l.name.clone().unwrap_or_else(|| format!("listener{i}")),
                address,
                upstream: l.upstream.clone(),
                identity,
                client_ca,
                client_cert_required,
            });
        }

        let min_version = match raw.tls.min_version.as_deref() {
            None | Some("1.2") => TlsVersion::Tls12,
            Some("1.3") => TlsVersion::Tls13,
            Some(v) => {
                return Err(self.invalid("tls.min_version", v, "expected \"1.2\" or \"1.3\""))
            }
        };
        if raw.tls.certificate.is_empty() {
            return Err(ConfigError::Missing {
                path: "tls.certificate".to_owned(),
                reason: "at least one [[tls.certificate]] with cert_file and key_file".to_owned(),
            });
        }
        let mut certificates = Vec::new();
        for (i, c) in raw.tls.certificate.iter().enumerate() {
            let p = format!("tls.certificate.{i}");
            let cert_file = self.existing_file(&format!("{p}.cert_file"), &c.cert_file)?;
            let key_file = self.existing_file(&format!("{p}.key_file"), &c.key_file)?;
            if let Some(names) = &c.server_names {
                for (j, n) in names.iter().enumerate() {
                    if !valid_server_name(n) {
                        return Err(self.invalid(
                            &format!("{p}.server_names.{j}"),
                            n,
                            "expected a DNS name, optionally starting with \"*.\"",
                        ));
                    }
                }
            }
            certificates.push(CertificateConfig {
                cert_file,
                key_file,
                server_names: c.server_names.clone(),
                key_path: p,
            });
        }

        let d = HttpConfig::default();
        let h = &raw.http;
        let http = HttpConfig {
            trust_request_id: h.trust_request_id.unwrap_or(d.trust_request_id),
            max_request_line_bytes: self.positive(
                "http.max_request_line_bytes",
                h.max_request_line_bytes,
                d.max_request_line_bytes,
            )?,
            max_header_bytes: self.positive(
                "http.max_header_bytes",
                h.max_header_bytes,
                d.max_header_bytes,
            )?,
            max_headers: self.positive("http.max_headers", h.max_headers, d.max_headers)?,
            max_request_body_bytes: h.max_request_body_bytes.unwrap_or(d.max_request_body_bytes),
            max_decompression_ratio: self.positive(
                "http.max_decompression_ratio",
                h.max_decompression_ratio,
                100,
            )? as u64,
            header_timeout: self.duration(
                "http.header_timeout",
                h.header_timeout.as_deref(),
                d.header_timeout,
            )?,
            keepalive_timeout: self.duration(
                "http.keepalive_timeout",
                h.keepalive_timeout.as_deref(),
                d.keepalive_timeout,
            )?,
            body_idle_timeout: self.duration(
                "http.body_idle_timeout",
                h.body_idle_timeout.as_deref(),
                d.body_idle_timeout,
            )?,
            drain_timeout: self.duration(
                "http.drain_timeout",
                h.drain_timeout.as_deref(),
                d.drain_timeout,
            )?,
        };
        if http.max_request_line_bytes > http.max_header_bytes {
            return Err(self.invalid(
                "http.max_request_line_bytes",
                http.max_request_line_bytes,
                "must not exceed http.max_header_bytes",
            ));
        }

        let d2 = Http2Config::default();
        let h2 = &raw.http2;
        let int = |path: &str, v: Option<u32>, default: u32, lo: u32, hi: u32| match v {
            None => Ok(default),
            Some(v) if (lo..=hi).contains(&v) => Ok(v),
            Some(v) => Err(self.invalid(path, v, format!("must be between {lo} and {hi}"))),
        };
        let http2 = Http2Config {
            max_concurrent_streams: int(
                "http2.max_concurrent_streams",
                h2.max_concurrent_streams,
                d2.max_concurrent_streams,
                1,
                10_000,
            )?,
            max_header_list_bytes: int(
                "http2.max_header_list_bytes",
                h2.max_header_list_bytes,
                d2.max_header_list_bytes,
                1024,
                1024 * 1024,
            )?,
            // RFC 9113 §6.5.2: windows up to 2^31-1, frames 2^14..2^24-1.
            initial_stream_window: int(
                "http2.initial_stream_window_bytes",
                h2.initial_stream_window_bytes,
                d2.initial_stream_window,
                65_535,
                i32::MAX as u32,
            )?,
            initial_connection_window: int(
                "http2.initial_connection_window_bytes",
                h2.initial_connection_window_bytes,
                d2.initial_connection_window,
                65_535,
                i32::MAX as u32,
            )?,
            max_frame_size: int(
                "http2.max_frame_bytes",
                h2.max_frame_bytes,
                d2.max_frame_size,
                16_384,
                16_777_215,
            )?,
            max_send_buffer: self.positive(
                "http2.max_send_buffer_bytes",
                h2.max_send_buffer_bytes,
                d2.max_send_buffer,
            )?,
            max_pending_accept_reset_streams: self.positive(
                "http2.max_pending_accept_resets",
                h2.max_pending_accept_resets,
                d2.max_pending_accept_reset_streams,
            )?,
            max_local_error_reset_streams: self.positive(
                "http2.max_local_error_resets",
                h2.max_local_error_resets,
                d2.max_local_error_reset_streams,
            )?,
            keepalive_interval: self.duration(
                "http2.keepalive_interval",
                h2.keepalive_interval.as_deref(),
                d2.keepalive_interval,
            )?,
            keepalive_timeout: self.duration(
                "http2.keepalive_timeout",
                h2.keepalive_timeout.as_deref(),
                d2.keepalive_timeout,
            )?,
        };

        let log = LogConfig {
            format: match raw.log.format.as_deref() {
                None | Some("auto") => LogFormat::Auto,
                Some("json") => LogFormat::Json,
                Some("text") => LogFormat::Text,
                Some(v) => {
                    return Err(self.invalid(
                        "log.format",
                        v,
                        "expected \"auto\", \"text\" or \"json\"",
                    ))
                }
            },
            level: match raw.log.level.clone() {
                None => "info".to_owned(),
                Some(v) => {
                    if tracing_subscriber::EnvFilter::try_new(&v).is_err() {
                        return Err(self.invalid(
                            "log.level",
                            &v,
                            "expected a level such as \"info\" or a filter such as \"moat=debug\"",
                        ));
                    }
                    v
                }
            },
        };

        let guard = self.guard(&raw.guard, &listeners)?;
        let audit = self.audit(&raw.audit)?;
        let admin = match &raw.admin.address {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a.parse().map_err(|_| {
                    self.invalid(
                        "admin.address",
                        a,
                        "expected IP:port such as 127.0.0.1:9901",
                    )
                })?;
                if !addr.ip().is_loopback() {
                    return Err(self.invalid(
                        "admin.address",
                        a,
                        "the admin endpoint must be on loopback (127.0.0.1 or ::1)",
                    ));
                }
                Some(addr)
            }
        };
        let region =
            match &raw.residency.region {
                None => None,
                Some(r)
                    if !r.is_empty()
                        && r.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
                {
                    Some(r.clone())
                }
                Some(r) => return Err(self.invalid(
                    "residency.region",
                    r,
                    "expected a region name such as \"eu-central\" (lower-case letters, digits, -)",
                )),
            };
        let identity = self.identity(&raw.identity, &listeners)?;
        let redaction = self.redaction(&raw.redaction)?;
        let (policy, warnings) =
            self.policy(&raw.policy, region.clone(), &upstreams, &redaction)?;

        Ok(Config {
            worker_threads: raw.runtime.worker_threads.unwrap_or(0),
            user: match &raw.runtime.user {
                Some(u) if u.is_empty() => {
                    return Err(self.invalid("runtime.user", u, "must name a user"))
                }
                Some(u) => {
                    if nix::unistd::User::from_name(u).ok().flatten().is_none() {
                        return Err(self.invalid("runtime.user", u, "no such user on this host"));
                    }
                    Some(u.clone())
                }
                None => None,
            },
            log,
            listeners,
            tls: TlsConfig {
                min_version,
                certificates,
            },
            upstreams,
            in_region,
            http,
            http2,
            guard,
            audit,
            admin,
            sha256: String::new(),
            region,
            identity,
            policy,
            warnings,
            redaction,
        })
    }

    fn redaction(
        &self,
        raw: &raw::RawRedaction,
    ) -> Result<BTreeMap<String, Arc<Profile>>, ConfigError> {
        let hash_key = match &raw.hash_key_file {
            None => None,
            Some(f) => {
                let path = self.existing_file("redaction.hash_key_file", f)?;
                let key = std::fs::read(&path)
                    .map_err(|e| self.invalid("redaction.hash_key_file", f, e.to_string()))?;
                if key.len() < 16 {
                    return Err(self.invalid(
                        "redaction.hash_key_file",
                        f,
                        "the key must be at least 16 bytes",
                    ));
                }
                Some(key)
            }
        };
        let mut out = BTreeMap::new();
        for (name, p) in &raw.profiles {
            let k = format!("redaction.profiles.{name}");
            let entities = match &p.entities {
                None => Entity::ALL.to_vec(),
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        Entity::parse(e).ok_or_else(|| {
                            self.invalid(&format!("{k}.entities.{i}"), e, "not a known entity type")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let keep = p.mask_keep_suffix.unwrap_or(4);
            let op = |key: &str, v: &str| -> Result<Operator, ConfigError> {
                Ok(match v {
                    "mask" => Operator::Mask { keep_suffix: keep },
                    "replace" => Operator::Replace { numbered: false },
                    "replace_numbered" => Operator::Replace { numbered: true },
                    "drop" => Operator::Drop,
                    "block" => Operator::Block,
                    "hash" => match &hash_key {
                        Some(key) => Operator::Hash {
                            key: key.clone(),
                            len: 16,
                        },
                        None => {
                            return Err(ConfigError::Missing {
                                path: "redaction.hash_key_file".into(),
                                reason: format!("{key} uses the hash operator"),
                            })
                        }
                    },
                    _ => {
                        return Err(self.invalid(
                            key,
                            v,
                            "expected mask, replace, replace_numbered, hash, drop or block",
                        ))
                    }
                })
            };
            let default = op(
                &format!("{k}.default_operator"),
                p.default_operator.as_deref().unwrap_or("replace"),
            )?;
            let mut operators = std::collections::HashMap::new();
            for (e, v) in &p.operators {
                let ent = Entity::parse(e).ok_or_else(|| {
                    self.invalid(&format!("{k}.operators"), e, "not a known entity type")
                })?;
                operators.insert(ent, op(&format!("{k}.operators.{e}"), v)?);
            }
            let detectors = Detectors::new(&entities, &p.patterns, &p.words)
                .map_err(|e| self.invalid(&format!("{k}.patterns"), "(regex)", e.to_string()))?;
            let (requests, responses) = match p.direction.as_deref() {
                None | Some("both") => (true, true),
                Some("request") => (true, false),
                Some("response") => (false, true),
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{k}.direction"),
                        v,
                        "expected request, response or both",
                    ))
                }
            };
            let fail_open = match p.fail.as_deref() {
                None | Some("closed") => false,
                Some("open") => true,
                Some(v) => {
                    return Err(self.invalid(&format!("{k}.fail"), v, "expected closed or open"))
                }
            };
            let block_other_content = match p.other_content.as_deref() {
                None | Some("pass") => false,
                Some("block") => true,
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{k}.other_content"),
                        v,
                        "expected pass or block",
                    ))
                }
            };
            let parse_paths =
                |key: &str,
                 list: &[String]|
                 -> Result<Vec<crate::redact::json::FieldPath>, ConfigError> {
                    list.iter()
                        .enumerate()
                        .map(|(i, p)| {
                            crate::redact::json::FieldPath::parse(p).ok_or_else(|| {
                                self.invalid(
                                    &format!("{k}.{key}.{i}"),
                                    p,
                                    "expected a field path such as $.messages[*].content",
                                )
                            })
                        })
                        .collect()
                };
            let paths = crate::redact::json::Paths {
                always: parse_paths("always", &p.always)?,
                never: parse_paths("never", &p.never)?,
            };
            out.insert(
                name.clone(),
                Arc::new(Profile {
                    name: name.clone(),
                    redactor: Redactor::new(detectors, operators, default),
                    requests,
                    responses,
                    fail_open,
                    max_hold_back: p.max_hold_back.unwrap_or(crate::redact::detect::MAX_MATCH),
                    block_other_content,
                    paths,
                }),
            );
        }
        Ok(out)
    }

    fn identity(
        &self,
        raw: &raw::RawIdentity,
        listeners: &[ListenerConfig],
    ) -> Result<IdentitySettings, ConfigError> {
        let uses = |s: Source| listeners.iter().any(|l| l.identity.contains(&s));
        let jwt = match &raw.jwt {
            None if uses(Source::Jwt) => {
                return Err(ConfigError::Missing {
                    path: "identity.jwt".into(),
                    reason: "a listener uses the jwt identity source".into(),
                })
            }
            None => None,
            Some(j) => {
                let jwks_file = self.existing_file("identity.jwt.jwks_file", &j.jwks_file)?;
                if j.issuers.is_empty() {
                    return Err(ConfigError::Missing {
                        path: "identity.jwt.issuers".into(),
                        reason: "at least one accepted `iss`".into(),
                    });
                }
                if j.audiences.is_empty() {
                    return Err(ConfigError::Missing {
                        path: "identity.jwt.audiences".into(),
                        reason: "at least one accepted `aud`".into(),
                    });
                }
                let algorithms = match &j.algorithms {
                    None => ALLOWED.to_vec(),
                    Some(names) => {
                        let mut out = Vec::new();
                        for (i, n) in names.iter().enumerate() {
                            let alg = ALLOWED.iter().find(|a| format!("{a:?}") == *n).ok_or_else(
                                || {
                                    self.invalid(
                                        &format!("identity.jwt.algorithms.{i}"),
                                        n,
                                        "expected RS256, PS256, ES256 or EdDSA",
                                    )
                                },
                            )?;
                            out.push(*alg);
                        }
                        out
                    }
                };
                let leeway = self.duration(
                    "identity.jwt.leeway",
                    j.leeway.as_deref(),
                    Duration::from_secs(30),
                )?;
                if leeway > Duration::from_secs(300) {
                    return Err(self.invalid(
                        "identity.jwt.leeway",
                        j.leeway.as_deref().unwrap_or(""),
                        "at most 5m",
                    ));
                }
                let settings = JwtSettings {
                    jwks_file,
                    issuers: j.issuers.clone(),
                    audiences: j.audiences.clone(),
                    algorithms,
                    leeway_secs: leeway.as_secs(),
                    subject_claim: j.subject_claim.clone().unwrap_or_else(|| "sub".into()),
                    groups_claim: j.groups_claim.clone().unwrap_or_else(|| "groups".into()),
                    regions_claim: j.regions_claim.clone().unwrap_or_else(|| "regions".into()),
                    attribute_claims: j.attribute_claims.clone(),
                };
                // Load it now, so a bad JWKS is a configuration error, not a failed start.
                crate::identity::jwt::JwtVerifier::new(settings.clone())
                    .map_err(|e| self.invalid("identity.jwt.jwks_file", &j.jwks_file, e.reason))?;
                Some(settings)
            }
        };
        let mut api_keys = Vec::new();
        let mut add_keys = |keys: &[raw::RawApiKey], prefix: &str| -> Result<(), ConfigError> {
            for (i, k) in keys.iter().enumerate() {
                let p = format!("{prefix}.{i}");
                let sha = crate::audit::unhex(&k.sha256)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        self.invalid(
                            &format!("{p}.sha256"),
                            "(hidden)",
                            "expected the key's SHA-256 as 64 hex digits",
                        )
                    })?;
                if k.id.is_empty() || api_keys.iter().any(|x: &ApiKey| x.id == k.id) {
                    return Err(self.invalid(
                        &format!("{p}.id"),
                        &k.id,
                        "key ids must be present and unique",
                    ));
                }
                api_keys.push(ApiKey {
                    id: k.id.clone(),
                    attributes: k.attributes.clone(),
                    sha256: sha,
                    groups: k.groups.clone(),
                    regions: k.regions.clone(),
                });
            }
            Ok(())
        };
        add_keys(&raw.api_keys, "identity.api_keys")?;
        if let Some(f) = &raw.api_keys_file {
            let path = self.existing_file("identity.api_keys_file", f)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.invalid("identity.api_keys_file", f, e.to_string()))?;
            let file: raw::RawApiKeysFile = toml::from_str(&text)
                .map_err(|e| self.invalid("identity.api_keys_file", f, e.message().to_owned()))?;
            add_keys(&file.api_keys, "identity.api_keys_file: api_keys")?;
        }
        if uses(Source::ApiKey) && api_keys.is_empty() {
            return Err(ConfigError::Missing {
                path: "identity.api_keys".into(),
                reason: "a listener uses the api_key identity source".into(),
            });
        }
        Ok(IdentitySettings {
            forward_headers: raw.forward_headers.unwrap_or(true),
            jwt,
            api_keys,
        })
    }

    fn policy(
        &self,
        raw: &raw::RawPolicy,
        region: Option<String>,
        upstreams: &BTreeMap<String, UpstreamConfig>,
        profiles: &BTreeMap<String, Arc<Profile>>,
    ) -> Result<(Policy, Vec<String>), ConfigError> {
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let p = format!("policy.rules.{i}");
            if r.id.is_empty() || rules.iter().any(|x| x.id == r.id) {
                return Err(self.invalid(
                    &format!("{p}.id"),
                    &r.id,
                    "rule ids must be present and unique",
                ));
            }
            let mut kinds = Vec::new();
            for (j, k) in r.kinds.iter().enumerate() {
                kinds.push(PrincipalKind::parse(k).ok_or_else(|| {
                    self.invalid(
                        &format!("{p}.kinds.{j}"),
                        k,
                        "expected anonymous, api_key, jwt or mtls",
                    )
                })?);
            }
            let mut source_cidrs = Vec::new();
            for (j, c) in r.source_cidrs.iter().enumerate() {
                source_cidrs.push(c.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                    self.invalid(&format!("{p}.source_cidrs.{j}"), c, "expected a CIDR")
                })?);
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                methods.push(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        self.invalid(&format!("{p}.methods.{j}"), m, "not a method")
                    })?,
                );
            }
            for (j, path) in r.paths.iter().enumerate() {
                if !path.starts_with('/') {
                    return Err(self.invalid(
                        &format!("{p}.paths.{j}"),
                        path,
                        "a path pattern starts with /",
                    ));
                }
            }
            let action = match r.action.as_str() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                v => {
                    return Err(self.invalid(
                        &format!("{p}.action"),
                        v,
                        "expected \"allow\" or \"deny\"",
                    ))
                }
            };
            if let Some(u) = &r.upstream {
                if !upstreams.contains_key(u) {
                    return Err(self.invalid(&format!("{p}.upstream"), u, "no such upstream"));
                }
            }
            if let Some(name) = &r.redaction {
                if !profiles.contains_key(name) {
                    let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                    return Err(self.invalid(
                        &format!("{p}.redaction"),
                        name,
                        format!(
                            "no such redaction profile (defined: [{}])",
                            known.join(", ")
                        ),
                    ));
                }
            }
            let require_region = r.require_region.unwrap_or(true);
            if require_region && region.is_none() && action == Action::Allow {
                return Err(self.invalid(
                    &format!("{p}.require_region"),
                    "true",
                    "residency.region is not set; set it, or require_region = false for this rule",
                ));
            }
            rules.push(Rule {
                id: r.id.clone(),
                attributes: r.attributes.clone(),
                kinds,
                principals: r.principals.clone(),
                groups: r.groups.clone(),
                source_cidrs,
                hosts: r.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                methods,
                paths: r.paths.clone(),
                models: r.models.clone(),
                require_region,
                action,
                upstream: r.upstream.clone(),
                redaction: r.redaction.clone(),
            });
        }
        let warnings = shadowed(&rules);
        Ok((Policy { region, rules }, warnings))
    }

    fn audit(&self, a: &raw::RawAudit) -> Result<AuditConfig, ConfigError> {
        let d = AuditConfig::default();
        let fsync = match a.fsync.as_deref() {
            None | Some("batch") => FsyncMode::Batch,
            Some("always") => FsyncMode::Always,
            Some("never") => FsyncMode::Never,
            Some(v) => {
                return Err(self.invalid(
                    "audit.fsync",
                    v,
                    "expected \"always\", \"batch\" or \"never\"",
                ))
            }
        };
        let dir = |key: &str, v: &Option<String>, default: PathBuf| match v {
            None => Ok(default),
            Some(p) if !p.is_empty() => Ok(self.base.join(p)),
            Some(p) => Err(self.invalid(key, p, "expected a directory")),
        };
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            None => Ok(default),
            Some(0) => Err(self.invalid(key, 0, "must be greater than zero")),
            Some(n) => Ok(n),
        };
        Ok(AuditConfig {
            dir: dir("audit.dir", &a.dir, d.dir)?,
            key_dir: dir("audit.key_dir", &a.key_dir, d.key_dir)?,
            fsync,
            batch_delay: self.duration(
                "audit.batch_delay",
                a.batch_delay.as_deref(),
                d.batch_delay,
            )?,
            checkpoint_every: positive(
                "audit.checkpoint_every",
                a.checkpoint_every,
                d.checkpoint_every,
            )?,
            checkpoint_interval: self.duration(
                "audit.checkpoint_interval",
                a.checkpoint_interval.as_deref(),
                d.checkpoint_interval,
            )?,
            segment_max_bytes: positive(
                "audit.segment_max_bytes",
                a.segment_max_bytes,
                d.segment_max_bytes,
            )?,
            segment_max_age: self.duration(
                "audit.segment_max_age",
                a.segment_max_age.as_deref(),
                d.segment_max_age,
            )?,
            queue_capacity: positive(
                "audit.queue_capacity",
                a.queue_capacity.map(|n| n as u64),
                d.queue_capacity as u64,
            )? as usize,
        })
    }

    fn guard(
        &self,
        g: &raw::RawGuard,
        listeners: &[ListenerConfig],
    ) -> Result<GuardConfig, ConfigError> {
        let d = GuardConfig::default();
        let mode = match g.mode.as_deref() {
            None | Some("off") => GuardMode::Off,
            Some("monitor") => GuardMode::Monitor,
            Some("enforce") => GuardMode::Enforce,
            Some(v) => {
                return Err(self.invalid(
                    "guard.mode",
                    v,
                    "expected \"enforce\", \"monitor\" or \"off\"",
                ))
            }
        };
        let mut allow = Vec::new();
        for (i, a) in g.allow.iter().enumerate() {
            let rule: AllowRule = a.parse().map_err(|e: crate::guard::rules::RuleError| {
                self.invalid(
                    &format!("guard.allow.{i}"),
                    a,
                    format!("{e} (expected NET[:PORT][/PROTO], e.g. 10.0.0.53:53/udp)"),
                )
            })?;
            allow.push(rule);
        }
        for (i, a) in g.gateway.iter().enumerate() {
            let addr: SocketAddr = a.parse().map_err(|_| {
                self.invalid(
                    &format!("guard.gateway.{i}"),
                    a,
                    "expected IP:port such as 10.1.2.3:443",
                )
            })?;
            allow.push(AllowRule::gateway(addr));
        }
        if let Err(e) = crate::guard::rules::compile(&allow) {
            return Err(self.invalid("guard.allow", allow.len(), e.to_string()));
        }
        let mut cgroups = Vec::new();
        for (i, c) in g.cgroups.iter().enumerate() {
            let p = PathBuf::from(c);
            if p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
                || c.is_empty()
            {
                return Err(self.invalid(
                    &format!("guard.cgroups.{i}"),
                    c,
                    "expected a cgroup directory without `..`",
                ));
            }
            cgroups.push(p);
        }
        if mode != GuardMode::Off && cgroups.is_empty() {
            return Err(ConfigError::Missing {
                path: "guard.cgroups".to_owned(),
                reason: "at least one cgroup to fence when guard.mode is not \"off\"".to_owned(),
            });
        }
        // moat's own listeners always serve clients from outside: their replies must leave.
        let mut serve_ports: Vec<u16> = listeners.iter().map(|l| l.address.port()).collect();
        serve_ports.extend(g.serve_ports.iter().copied());
        serve_ports.sort_unstable();
        serve_ports.dedup();
        if let Some(i) = g.serve_ports.iter().position(|&p| p == 0) {
            return Err(self.invalid(&format!("guard.serve_ports.{i}"), 0, "a port is 1–65535"));
        }
        let pin_dir = match &g.pin_dir {
            None => d.pin_dir,
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(p) => {
                return Err(self.invalid("guard.pin_dir", p, "expected an absolute path on bpffs"))
            }
        };
        Ok(GuardConfig {
            mode,
            cgroups,
            allow,
            serve_ports,
            required: g.required.unwrap_or(d.required),
            pin_dir,
        })
    }

    fn upstream(
        &self,
        p: &str,
        u: &raw::RawUpstream,
        in_region: &[IpNet],
    ) -> Result<UpstreamConfig, ConfigError> {
        let ap = format!("{p}.address");
        let address = if let Some(path) = u.address.strip_prefix("unix:") {
            if path.is_empty() || !path.starts_with('/') {
                return Err(self.invalid(
                    &ap,
                    &u.address,
                    "a unix socket needs an absolute path, e.g. unix:/run/model.sock",
                ));
            }
            UpstreamAddr::Unix(PathBuf::from(path))
        } else {
            let addr: SocketAddr = u.address.parse().map_err(|_| {
                self.invalid(
                    &ap,
                    &u.address,
                    "expected IP:port (e.g. 127.0.0.1:8000) or unix:/path",
                )
            })?;
            if !is_local(addr.ip(), in_region) {
                return Err(self.invalid(
                    &ap,
                    &u.address,
                    "upstream is not local: it must be on loopback, a unix socket, or inside residency.in_region_cidrs",
                ));
            }
            UpstreamAddr::Tcp(addr)
        };
        let protocol = match u.protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("h2c") => UpstreamProtocol::H2c,
            Some(v) => {
                return Err(self.invalid(
                    &format!("{p}.protocol"),
                    v,
                    "expected \"http1\" or \"h2c\"",
                ))
            }
        };
        let transparent_address = match &u.transparent_address {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                self.invalid(
                    &format!("{p}.transparent_address"),
                    a,
                    "expected IP:port such as 10.0.0.5:8000",
                )
            })?),
        };
        Ok(UpstreamConfig {
            transparent_address,
            protocol,
            address,
            connect_timeout: self.duration(
                &format!("{p}.connect_timeout"),
                u.connect_timeout.as_deref(),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            response_header_timeout: self.duration(
                &format!("{p}.response_header_timeout"),
                u.response_header_timeout.as_deref(),
                DEFAULT_RESPONSE_HEADER_TIMEOUT,
            )?,
            pool_max_idle: u.pool_max_idle.unwrap_or(DEFAULT_POOL_MAX_IDLE),
            pool_idle_timeout: self.duration(
                &format!("{p}.pool_idle_timeout"),
                u.pool_idle_timeout.as_deref(),
                DEFAULT_POOL_IDLE_TIMEOUT,
            )?,
            credential: match &u.credential_file {
                None => None,
                Some(f) => {
                    let key = format!("{p}.credential_file");
                    let path = self.existing_file(&key, f)?;
                    let value = std::fs::read_to_string(&path)
                        .map_err(|e| self.invalid(&key, f, e.to_string()))?;
                    let value = value.trim().to_owned();
                    if value.is_empty() || http::HeaderValue::from_str(&value).is_err() {
                        return Err(self.invalid(
                            &key,
                            f,
                            "the file must hold one header value (e.g. `Bearer …`)",
                        ));
                    }
                    let header = u
                        .credential_header
                        .clone()
                        .unwrap_or_else(|| "authorization".into())
                        .to_ascii_lowercase();
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        return Err(self.invalid(
                            &format!("{p}.credential_header"),
                            &header,
                            "not a header name",
                        ));
                    }
                    Some(Credential { header, value })
                }
            },
        })
    }

    fn existing_file(&self, path: &str, value: &str) -> Result<PathBuf, ConfigError> {
        let f = self.base.join(value);
        match std::fs::metadata(&f) {
            Ok(m) if m.is_file() => Ok(f),
            Ok(_) => Err(self.invalid(path, value, "not a regular file")),
            Err(e) => Err(self.invalid(path, value, format!("cannot open {}: {e}", f.display()))),
        }
    }
}

/// Whether an upstream IP keeps traffic on this host or inside the region.
pub fn is_local(ip: IpAddr, in_region: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || in_region.iter().any(|n| n.contains(&ip))
}

/// Parses `"250ms"`, `"10s"`, `"2m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Whether `n` is a DNS name (letters, digits, hyphens; dot-separated), optionally `*.`-prefixed.
pub fn valid_server_name(n: &str) -> bool {
    let n = n.strip_prefix("*.").unwrap_or(n);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Warnings for rules that can never match because an earlier rule matches everything they do.
fn shadowed(rules: &[Rule]) -> Vec<String> {
    fn covers<T: PartialEq>(earlier: &[T], later: &[T]) -> bool {
        earlier.is_empty() || (!later.is_empty() && later.iter().all(|x| earlier.contains(x)))
    }
    let mut out = Vec::new();
    for (i, later) in rules.iter().enumerate() {
        if let Some(earlier) = rules[..i].iter().find(|e| {
            covers(&e.kinds, &later.kinds)
                && covers(&e.principals, &later.principals)
                && covers(&e.groups, &later.groups)
                && e.attributes.iter().all(|(k, v)| {
                    later
                        .attributes
                        .get(k)
                        .is_some_and(|lv| lv.iter().all(|x| v.contains(x)))
                })
                && covers(&e.source_cidrs, &later.source_cidrs)
                && covers(&e.hosts, &later.hosts)
                && covers(&e.methods, &later.methods)
                && covers(&e.paths, &later.paths)
                && covers(&e.models, &later.models)
                && (!e.require_region || later.require_region)
        }) {
            out.push(format!(
                "policy rule `{}` is shadowed by the earlier rule `{}` and never matches",
                later.id, earlier.id
            ));
        }
    }
    out
}
