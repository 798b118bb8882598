//! `[[listener]]` and `[tls]`: the sockets moat accepts connections on and its certificates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::validate::Validator;
use super::{raw, ConfigError, UpstreamConfig};
use crate::identity::Source;

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
    /// Connections the kernel queues for `accept` (`listen(2)` backlog; the kernel also caps it
    /// at `net.core.somaxconn`).
    pub backlog: u32,
    /// Client connections held at once; more are closed before TLS starts.
    pub max_connections: usize,
    /// Client connections from one address (after a PROXY header, the client it names) at once.
    pub max_connections_per_ip: usize,
}

/// `max_connections` when not set.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `max_connections_per_ip` when not set.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// The listen backlog when `backlog` is not set: what nginx, HAProxy and Envoy use, so a burst
/// of new connections is queued rather than dropped (a dropped SYN costs the client a 1 s
/// retransmission).
pub(crate) const DEFAULT_BACKLOG: u32 = 4096;

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

impl Validator<'_> {
    /// Validates the `[[listener]]` entries; each must name a defined upstream.
    pub(super) fn listeners(
        &self,
        raw: &[raw::RawListener],
        upstreams: &BTreeMap<String, UpstreamConfig>,
    ) -> Result<Vec<ListenerConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(ConfigError::Missing {
                path: "listener".to_owned(),
                reason: "at least one [[listener]] with an address and an upstream".to_owned(),
            });
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.iter().enumerate() {
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
            let backlog = match l.backlog {
                None => DEFAULT_BACKLOG,
                Some(n @ 1..=65_535) => u32::try_from(n).unwrap_or(DEFAULT_BACKLOG),
                Some(n) => {
                    return Err(self.invalid(
                        &format!("{p}.backlog"),
                        n,
                        "expected 1 to 65535 connections",
                    ))
                }
            };
            let max_connections = self.positive(
                &format!("{p}.max_connections"),
                l.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?;
            let max_connections_per_ip = self.positive(
                &format!("{p}.max_connections_per_ip"),
                l.max_connections_per_ip,
                DEFAULT_MAX_CONNECTIONS_PER_IP,
            )?;
            listeners.push(ListenerConfig {
                backlog,
                max_connections,
                max_connections_per_ip,
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
        Ok(listeners)
    }

    /// Validates `[tls]`: the minimum version and at least one certificate.
    pub(super) fn tls(&self, raw: &raw::RawTls) -> Result<TlsConfig, ConfigError> {
        let min_version = match raw.min_version.as_deref() {
            None | Some("1.2") => TlsVersion::Tls12,
            Some("1.3") => TlsVersion::Tls13,
            Some(v) => {
                return Err(self.invalid("tls.min_version", v, "expected \"1.2\" or \"1.3\""))
            }
        };
        if raw.certificate.is_empty() {
            return Err(ConfigError::Missing {
                path: "tls.certificate".to_owned(),
                reason: "at least one [[tls.certificate]] with cert_file and key_file".to_owned(),
            });
        }
        let mut certificates = Vec::new();
        for (i, c) in raw.certificate.iter().enumerate() {
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
        Ok(TlsConfig {
            min_version,
            certificates,
        })
    }
}
