//! `[audit]`: where the signed audit trail is written and how often it is flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use rustls::pki_types::ServerName;

use super::validate::Validator;
use super::{raw, ConfigError};
use crate::audit::ship::ShipConfig;
use crate::audit::{AuditConfig, FsyncMode};

/// Default `audit.ship.retry_max`.
pub(super) const DEFAULT_SHIP_RETRY_MAX: Duration = Duration::from_secs(30);

/// This machine's host name (`/proc/sys/kernel/hostname`), for `audit.ship.hostname`.
fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

impl Validator<'_> {
    /// `[audit.ship]`: the collector must be reachable without leaving the region, as an
    /// upstream must.
    fn ship(&self, s: &raw::RawShip, in_region: &[IpNet]) -> Result<ShipConfig, ConfigError> {
        let key = "audit.ship.address";
        let Some(text) = s.address.as_deref() else {
            return Err(self.invalid(key, "(missing)", "the collector's IP:port is required"));
        };
        let address: SocketAddr = text.parse().map_err(|_| {
            self.invalid(
                key,
                text,
                "expected an IP address and port such as 10.20.0.5:6514",
            )
        })?;
        if !crate::config::upstream::is_local(address.ip(), in_region) {
            return Err(self.invalid(
                key,
                text,
                "not on loopback or in residency.in_region_cidrs: audit records may not leave \
                 the region",
            ));
        }
        let server_name = match s.server_name.as_deref() {
            None => ServerName::IpAddress(address.ip().into()),
            Some(n) => ServerName::try_from(n.to_owned()).map_err(|_| {
                self.invalid(
                    "audit.ship.server_name",
                    n,
                    "expected a DNS name or an IP address",
                )
            })?,
        };
        let Some(ca) = s.ca_file.as_deref() else {
            return Err(self.invalid(
                "audit.ship.ca_file",
                "(missing)",
                "the CA certificate(s) the collector's certificate must chain to are required",
            ));
        };
        let ca_file = self.existing_file("audit.ship.ca_file", ca)?;
        let client_cert = match (s.client_cert.as_deref(), s.client_key.as_deref()) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((
                self.existing_file("audit.ship.client_cert", c)?,
                self.existing_file("audit.ship.client_key", k)?,
            )),
            (Some(_), None) => {
                return Err(self.invalid(
                    "audit.ship.client_key",
                    "(missing)",
                    "client_cert needs client_key",
                ))
            }
            (None, Some(_)) => {
                return Err(self.invalid(
                    "audit.ship.client_cert",
                    "(missing)",
                    "client_key needs client_cert",
                ))
            }
        };
        let hostname = match s.hostname.as_deref() {
            Some(h) => h.to_owned(),
            None => system_hostname().ok_or_else(|| {
                self.invalid(
                    "audit.ship.hostname",
                    "(missing)",
                    "the system has no host name: set one",
                )
            })?,
        };
        if hostname.is_empty()
            || hostname.len() > 255
            || !hostname.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(self.invalid(
                "audit.ship.hostname",
                &hostname,
                "expected 1 to 255 printable ASCII characters without spaces",
            ));
        }
        let cfg = ShipConfig {
            address,
            server_name,
            ca_file,
            client_cert,
            hostname,
            retry_max: self.duration(
                "audit.ship.retry_max",
                s.retry_max.as_deref(),
                DEFAULT_SHIP_RETRY_MAX,
            )?,
        };
        // The certificates load now, so that `moat check` finds what `moat run` would.
        crate::audit::ship::client_config(&cfg)
            .map_err(|e| self.invalid("audit.ship", "(certificates)", e.to_string()))?;
        Ok(cfg)
    }

    pub(super) fn audit(
        &self,
        a: &raw::RawAudit,
        in_region: &[IpNet],
    ) -> Result<AuditConfig, ConfigError> {
        let d = AuditConfig::default();
        let fsync = match a.fsync.as_deref() {
            None | Some("always") => FsyncMode::Always,
            Some("batch") => FsyncMode::Batch,
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
            ship: a
                .ship
                .as_ref()
                .map(|s| self.ship(s, in_region))
                .transpose()?,
        })
    }
}
