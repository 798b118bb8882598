//! Configuration: one TOML file, parsed into `raw` structs and validated into [`Config`].
//!
//! Validation follows "parse, don't validate": the rest of moat only ever sees the typed values
//! built here (socket addresses, CIDR sets, durations, file contents checked to exist). Every
//! error names the key path it concerns and, where the file has it, the line.
//!
//! Residency is enforced here first: an upstream must be on loopback, on a unix socket, or inside
//! a CIDR listed in `residency.in_region_cidrs`. Anything else is refused before moat starts.
mod audit;
mod guard;
mod http;
mod identity;
mod listener;
mod policy;
pub(crate) mod raw;
mod redaction;
mod spans;
#[cfg(test)]
mod tests;
mod upstream;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use raw::RawConfig;
use spans::Spans;
use validate::Validator;

pub use http::{Http2Config, HttpConfig};
pub use identity::IdentitySettings;
pub use listener::{valid_server_name, CertificateConfig, ListenerConfig, TlsConfig, TlsVersion};
pub use redaction::{builtin_profile, BUILTIN_PROFILE};
pub use upstream::{
    is_local, Credential, UpstreamAddr, UpstreamConfig, UpstreamProtocol, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE, DEFAULT_RESPONSE_HEADER_TIMEOUT,
};
pub use validate::parse_duration;

use crate::audit::AuditConfig;
use crate::guard::{GuardConfig, GuardMode};
use crate::policy::Policy;
use crate::redact::Profile;

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
        /// Key path, the table the error stands in, or `top level`.
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
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| Spans::text_only(text).syntax(&e))?;
        let spans = Spans::new(text);
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
        if let Some(s) = &self.audit.ship {
            out.push_str(&format!(
                "audit shipping: RFC 5424 over TLS to {} (certificate name {}{}), as host {}\n",
                s.address,
                s.server_name.to_str(),
                if s.client_cert.is_some() {
                    ", with a client certificate"
                } else {
                    ""
                },
                s.hostname
            ));
        }
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
