//! `moat audit verify`: checks a trail offline — every hash link, every sequence number across
//! segments, every checkpoint signature, and the signed head — and names the first bad record
//! by file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::record::{checkpoint_message, CheckpointRecord, Envelope, Record, SCHEMA_VERSION};
use super::writer::{head_message, key_id, Head};
use super::{segments, sha256_hex, unhex, AuditError, GENESIS, HEAD_FILE, PUBKEY_FILE};

/// A trail that checks out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Segment files read.
    pub segments: usize,
    /// Records read.
    pub records: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// Records after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (segment or head) where it was found.
    pub file: PathBuf,
    /// 1-based line in that file (0 for file-level problems).
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.what)
        } else {
            write!(f, "{}: {}", self.file.display(), self.what)
        }
    }
}

/// Why verification could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Files could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The public key is unusable.
    #[error("public key {0}: not a hex Ed25519 public key")]
    Key(PathBuf),
    /// The trail is not intact.
    #[error("{0}")]
    Bad(Problem),
}

/// Reads a hex public key file.
pub fn read_pubkey(path: &Path) -> Result<VerifyingKey, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(super::io_err(path))?;
    let bytes = unhex(text.trim()).ok_or_else(|| VerifyError::Key(path.to_owned()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| VerifyError::Key(path.to_owned()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| VerifyError::Key(path.to_owned()))
}

fn signature(hex_sig: &str) -> Option<Signature> {
    let bytes: [u8; 64] = unhex(hex_sig)?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// Checks a checkpoint record (at `seq`, with `prev`) against `key`, whose id is `kid`: the
/// key id it names, then its signature over [`checkpoint_message`]. The problem, worded as
/// `verify` reports it, when either is wrong.
pub fn check_checkpoint(
    key: &VerifyingKey,
    kid: &str,
    seq: u64,
    prev: &str,
    cp: &CheckpointRecord,
) -> Result<(), String> {
    if cp.key_id != kid {
        return Err(format!(
            "checkpoint signed with key {}, expected {kid}",
            cp.key_id
        ));
    }
    let ok = signature(&cp.signature)
        .is_some_and(|s| key.verify(&checkpoint_message(seq, prev), &s).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!("checkpoint signature at seq {seq} does not verify"))
    }
}

/// Verifies the trail in `dir` against `pubkey` (default: the copy in `dir`, which only proves
/// self-consistency; pass the key you were given for an independent check).
pub fn verify(dir: &Path, pubkey: Option<&Path>) -> Result<Report, VerifyError> {
    let key_path = pubkey.map_or_else(|| dir.join(PUBKEY_FILE), Path::to_path_buf);
    let key = read_pubkey(&key_path)?;
    let kid = key_id(key.as_bytes());
    let mut report = Report::default();
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    // (seq, line hash) of each checkpoint, to check the head against.
    let mut checkpoints: Vec<(u64, String)> = Vec::new();
    let files = segments(dir)?;
    for file in &files {
        report.segments += 1;
        let data = std::fs::read(file).map_err(super::io_err(file))?;
        let data = super::written(&data);
        let bad = |line: usize, what: String| {
            VerifyError::Bad(Problem {
                file: file.clone(),
                line,
                what,
            })
        };
        if !data.is_empty() && !data.ends_with(b"\n") {
            let n = data.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(bad(n, "torn last line (no newline)".into()));
        }
        for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
            if raw.is_empty() {
                continue;
            }
            let line = i + 1;
            let env: Envelope = serde_json::from_slice(raw)
                .map_err(|e| bad(line, format!("not a valid record: {e}")))?;
            if env.v != SCHEMA_VERSION {
                return Err(bad(line, format!("unknown schema version {}", env.v)));
            }
            if env.seq != expected_seq {
                return Err(bad(
                    line,
                    format!(
                        "sequence gap: expected seq {expected_seq}, found {}",
                        env.seq
                    ),
                ));
            }
            if env.prev != prev {
                return Err(bad(
                    line,
                    format!(
                        "hash chain broken at seq {}: prev does not match the previous record",
                        env.seq
                    ),
                ));
            }
            if let Record::Checkpoint(cp) = &env.record {
                check_checkpoint(&key, &kid, env.seq, &env.prev, cp).map_err(|w| bad(line, w))?;
                report.checkpoints += 1;
                report.unsigned_tail = 0;
                checkpoints.push((env.seq, sha256_hex(raw)));
            } else {
                report.unsigned_tail += 1;
            }
            prev = sha256_hex(raw);
            report.records += 1;
            report.last_seq = env.seq;
            expected_seq += 1;
        }
    }
    check_head(dir, &key, &kid, &report, &checkpoints)?;
    Ok(report)
}

/// The signed head names the latest checkpoint moat wrote; a trail that ends before it was
/// truncated, even if what is left is internally consistent.
fn check_head(
    dir: &Path,
    key: &VerifyingKey,
    kid: &str,
    report: &Report,
    checkpoints: &[(u64, String)],
) -> Result<(), VerifyError> {
    let path = dir.join(HEAD_FILE);
    let bad = |what: String| {
        VerifyError::Bad(Problem {
            file: path.clone(),
            line: 0,
            what,
        })
    };
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if report.checkpoints > 0 {
                Err(bad("missing, but the trail has checkpoints".into()))
            } else {
                Ok(())
            };
        }
        Err(e) => return Err(VerifyError::Audit(AuditError::Io { path, source: e })),
    };
    let head: Head =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a valid head: {e}")))?;
    let ok = head.key_id == kid
        && signature(&head.signature)
            .is_some_and(|s| key.verify(&head_message(head.seq, &head.hash), &s).is_ok());
    if !ok {
        return Err(bad("head signature does not verify".into()));
    }
    if head.seq > report.last_seq {
        return Err(bad(format!(
            "trail truncated: the signed head is at seq {}, but the records end at seq {}",
            head.seq, report.last_seq
        )));
    }
    match checkpoints.iter().find(|(s, _)| *s == head.seq) {
        Some((_, h)) if *h == head.hash => Ok(()),
        _ => Err(bad(format!(
            "the signed head names checkpoint seq {}, which the trail does not hold",
            head.seq
        ))),
    }
}
