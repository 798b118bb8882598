//! `[upstreams]` and `[residency]` networks: the model servers moat forwards to, kept in-region.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::validate::Validator;
use super::{raw, ConfigError};

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

/// Upstream defaults, shared by the validator and the example file's test.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `response_header_timeout`: long, because a model may think before it answers.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `pool_max_idle`.
pub const DEFAULT_POOL_MAX_IDLE: usize = 1024;
/// Default `pool_idle_timeout`.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether an upstream IP keeps traffic on this host or inside the region.
pub fn is_local(ip: IpAddr, in_region: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || in_region.iter().any(|n| n.contains(&ip))
}

impl Validator<'_> {
    /// Validates `residency.in_region_cidrs`: the networks that count as in-region.
    pub(super) fn in_region(&self, cidrs: &[String]) -> Result<Vec<IpNet>, ConfigError> {
        cidrs
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
            .collect()
    }

    /// Validates every `[upstreams.NAME]` table.
    pub(super) fn upstreams(
        &self,
        raw: &BTreeMap<String, raw::RawUpstream>,
        in_region: &[IpNet],
    ) -> Result<BTreeMap<String, UpstreamConfig>, ConfigError> {
        let mut upstreams = BTreeMap::new();
        for (name, u) in raw {
            let p = format!("upstreams.{name}");
            upstreams.insert(name.clone(), self.upstream(&p, u, in_region)?);
        }
        Ok(upstreams)
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
}
