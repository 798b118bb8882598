//! Audit stage: the tamper-evident record of every decision, kept in-region.
//!
//! Stages hand [`Record`]s to an [`Auditor`] without blocking on I/O; a dedicated writer thread
//! appends them as JSON Lines, each carrying `seq` and `prev` (SHA-256 of the previous record's
//! exact bytes), signs a checkpoint every N records or T seconds with an Ed25519 key, and
//! commits in groups with the configured fsync policy. When records cannot be written, the
//! auditor reports itself unhealthy and the proxy refuses to forward (503) until writing works
//! again. [`verify`] checks a directory offline. Records hold metadata only, never content.

pub mod collected;
pub mod export;
pub mod record;
pub mod report;
pub mod ship;
pub mod syslog;
pub mod tail;
#[cfg(test)]
mod tests;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use record::Record;
pub use writer::Auditor;

/// When the writer calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// After every group of records, before any of them is acknowledged; a response completes
    /// only once its record is durable.
    Always,
    /// At most `batch_delay` after a record was written.
    Batch,
    /// Never (the kernel writes back when it likes).
    Never,
}

impl FsyncMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Batch => "batch",
            Self::Never => "never",
        }
    }
}

/// Validated `[audit]` settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Directory of segment files (`segment-<first seq>.jsonl`), `HEAD.json` and a copy of the
    /// public key.
    pub dir: PathBuf,
    /// Directory of the signing key (`audit-signing.key`, 0600) and its public half.
    pub key_dir: PathBuf,
    /// fsync policy.
    pub fsync: FsyncMode,
    /// Longest delay before an fsync in `batch` mode.
    pub batch_delay: Duration,
    /// A checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this much time, whichever comes first (if anything was written).
    pub checkpoint_interval: Duration,
    /// A new segment when the current one is larger than this…
    pub segment_max_bytes: u64,
    /// …or older than this.
    pub segment_max_age: Duration,
    /// Records that may wait for the writer; past this, requests are refused (503).
    pub queue_capacity: usize,
    /// Where every record is shipped, if anywhere (`[audit.ship]`).
    pub ship: Option<ship::ShipConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/moat/audit"),
            key_dir: PathBuf::from("/var/lib/moat"),
            fsync: FsyncMode::Always,
            batch_delay: Duration::from_millis(20),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            queue_capacity: 65_536,
            ship: None,
        }
    }
}

/// Why the audit trail could not be opened or checked.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signing key file is unusable.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    hex_into(&mut s, bytes);
    s
}

/// Lower-case hex, appended to `s`.
pub fn hex_into(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.reserve(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Parses lower-case or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Name of the public key file (in `key_dir`, and copied into `dir` for auditors).
pub const PUBKEY_FILE: &str = "audit-signing.pub";
/// Name of the private key file in `key_dir`.
pub const KEY_FILE: &str = "audit-signing.key";
/// Name of the signed chain head in `dir`.
pub const HEAD_FILE: &str = "HEAD.json";

/// Segment file name for a first sequence number.
pub fn segment_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.jsonl")
}

/// The records of a segment's bytes: everything before its first NUL byte. The segment being
/// written is zero-filled ahead of its records (see `writer`), and a record never holds a NUL
/// byte (JSON escapes it), so the first NUL is where the written records end.
pub fn written(segment: &[u8]) -> &[u8] {
    &segment[..memchr::memchr(0, segment).unwrap_or(segment.len())]
}

/// Segment files in `dir`, in order.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The time now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}
