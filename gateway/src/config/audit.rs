//! `[audit]`: where the signed audit trail is written and how often it is flushed.

use std::path::PathBuf;

use super::validate::Validator;
use super::{raw, ConfigError};
use crate::audit::{AuditConfig, FsyncMode};

impl Validator<'_> {
    pub(super) fn audit(&self, a: &raw::RawAudit) -> Result<AuditConfig, ConfigError> {
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
        })
    }
}
