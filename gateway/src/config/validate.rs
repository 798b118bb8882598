//! Validation: turns the [`raw`](super::raw) structs into typed settings, section by section,
//! attaching the line of the offending key to every error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{self, RawConfig};
use super::spans::Spans;
use super::{Config, ConfigError, LogConfig, LogFormat};

/// Turns raw structs into validated ones, attaching line numbers to errors.
pub(super) struct Validator<'a> {
    pub(super) spans: Spans,
    pub(super) base: &'a Path,
}

impl Validator<'_> {
    pub(super) fn invalid(
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

    pub(super) fn duration(
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

    pub(super) fn positive(
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

    pub(super) fn existing_file(&self, path: &str, value: &str) -> Result<PathBuf, ConfigError> {
        let f = self.base.join(value);
        match std::fs::metadata(&f) {
            Ok(m) if m.is_file() => Ok(f),
            Ok(_) => Err(self.invalid(path, value, "not a regular file")),
            Err(e) => Err(self.invalid(path, value, format!("cannot open {}: {e}", f.display()))),
        }
    }

    /// Validates the whole file, section by section.
    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let in_region = self.in_region(&raw.residency.in_region_cidrs)?;
        let upstreams = self.upstreams(&raw.upstreams, &in_region)?;
        let listeners = self.listeners(&raw.listener, &upstreams)?;
        let tls = self.tls(&raw.tls)?;
        let http = self.http(&raw.http)?;
        let http2 = self.http2(&raw.http2)?;
        let log = self.log(&raw.log)?;
        let guard = self.guard(&raw.guard, &listeners)?;
        let audit = self.audit(&raw.audit, &in_region)?;
        let admin = self.admin(&raw.admin)?;
        let region = self.region(&raw.residency.region)?;
        let identity = self.identity(&raw.identity, &listeners)?;
        let redaction = self.redaction(&raw.redaction)?;
        let (policy, warnings) =
            self.policy(&raw.policy, region.clone(), &upstreams, &redaction)?;

        Ok(Config {
            worker_threads: raw.runtime.worker_threads.unwrap_or(0),
            user: self.user(&raw.runtime.user)?,
            log,
            listeners,
            tls,
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

    /// Validates `runtime.user`: it must exist on this host.
    fn user(&self, user: &Option<String>) -> Result<Option<String>, ConfigError> {
        Ok(match user {
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
        })
    }

    /// Validates `[log]`.
    fn log(&self, raw: &raw::RawLog) -> Result<LogConfig, ConfigError> {
        Ok(LogConfig {
            format: match raw.format.as_deref() {
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
            level: match raw.level.clone() {
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
        })
    }

    /// Validates `admin.address`: the admin endpoint stays on loopback.
    fn admin(&self, raw: &raw::RawAdmin) -> Result<Option<SocketAddr>, ConfigError> {
        Ok(match &raw.address {
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
        })
    }

    /// Validates `residency.region`, moat's own region name.
    fn region(&self, region: &Option<String>) -> Result<Option<String>, ConfigError> {
        Ok(match region {
            None => None,
            Some(r)
                if !r.is_empty()
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Some(r.clone())
            }
            Some(r) => {
                return Err(self.invalid(
                    "residency.region",
                    r,
                    "expected a region name such as \"eu-central\" (lower-case letters, digits, -)",
                ))
            }
        })
    }
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
