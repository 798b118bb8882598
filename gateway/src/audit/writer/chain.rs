//! The trail on disk: the signing key, segment files, the hash chain with its signed checkpoints
//! and head, and recovery of a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use tokio::time::Instant;

use crate::audit::record::{checkpoint_message, CheckpointRecord, Record, SCHEMA_VERSION};
use crate::audit::{
    hex, hex_into, io_err, now_rfc3339, segment_name, segments, sha256_hex, AuditConfig,
    AuditError, FsyncMode, GENESIS, HEAD_FILE, KEY_FILE, PUBKEY_FILE,
};

/// Reads the signing key from `dir`, or creates one (private key mode 0600) with its public
/// half beside it.
pub(super) fn load_or_create_key(dir: &Path) -> Result<SigningKey, AuditError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(KEY_FILE);
    let bad = |reason: &str| AuditError::Key {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = crate::audit::unhex(text.trim()).ok_or_else(|| bad("not hex"))?;
            let seed: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad("not a 32-byte Ed25519 seed"))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&path))?;
            f.write_all(format!("{}\n", hex(&key.to_bytes())).as_bytes())
                .map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
            let pubfile = dir.join(PUBKEY_FILE);
            std::fs::write(
                &pubfile,
                format!("{}\n", hex(key.verifying_key().as_bytes())),
            )
            .map_err(io_err(&pubfile))?;
            Ok(key)
        }
        Err(e) => Err(AuditError::Io { path, source: e }),
    }
}

/// The key id written in checkpoints: the first 16 hex digits of SHA-256(public key).
pub fn key_id(public: &[u8; 32]) -> String {
    sha256_hex(public)[..16].to_owned()
}

/// A line of the trail: the chain's fields, then the record's.
#[derive(Serialize)]
pub(super) struct EnvelopeOut<'a> {
    pub(super) v: u32,
    pub(super) seq: u64,
    pub(super) prev: &'a str,
    pub(super) time: &'a str,
    #[serde(flatten)]
    pub(super) record: &'a Record,
}

/// The signed chain head written to `HEAD.json` after each checkpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Head {
    /// Sequence number of the checkpoint record.
    pub seq: u64,
    /// SHA-256 of the checkpoint record's line.
    pub hash: String,
    /// Key id.
    pub key_id: String,
    /// Signature over `moat-audit-head-v1\n{seq}\n{hash}`.
    pub signature: String,
}

/// The bytes a head signature covers.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("moat-audit-head-v1\n{seq}\n{hash}").into_bytes()
}

/// How far ahead of its records a segment is zero-filled.
///
/// Records are written over zeros already on disk, so the file's size and block map do not
/// change when records are added: `fdatasync` then flushes the records alone, with no journal
/// commit. An append, by contrast, commits the filesystem's journal, which waits for every other
/// process's pending writes (on ext4, `data=ordered`): under another process's write load a
/// commit took 0.47 ms at the median and 158 ms at p99, an overwrite 0.13 ms and 1.3 ms. The
/// journal is committed once per extension instead, one per `PREALLOCATE` bytes of records.
const PREALLOCATE: u64 = 1024 * 1024;

/// Zeros written to extend a segment.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

pub(super) struct Segment {
    /// Shared with the syncers, which may still be syncing it after it is closed.
    pub(super) file: std::sync::Arc<File>,
    pub(super) path: PathBuf,
    /// Bytes of records in the file (where the next record goes).
    pub(super) bytes: u64,
    /// Bytes in the file: the records, then zeros.
    pub(super) allocated: u64,
    /// Zero-filling failed (the disk is full): records are appended for the rest of this
    /// segment, and only a failed record write makes the trail unhealthy.
    pub(super) appending: bool,
    pub(super) opened: Instant,
}

impl Segment {
    /// Makes room for `n` more bytes of records: the file is zero-filled, `PREALLOCATE` at a
    /// time, ahead of them. When that fails (a full disk), the records are appended instead.
    fn reserve(&mut self, n: u64) {
        let need = self.bytes + n;
        if need <= self.allocated || self.appending {
            return;
        }
        let target = need.div_ceil(PREALLOCATE) * PREALLOCATE;
        while self.allocated < target {
            let chunk = (target - self.allocated).min(ZEROS.len() as u64);
            let zeros = &ZEROS[..usize::try_from(chunk).unwrap_or(ZEROS.len())];
            if let Err(e) = self.file.write_all_at(zeros, self.allocated) {
                tracing::warn!(target: "moat::audit", error = %e, path = %self.path.display(), "cannot zero-fill the audit segment ahead of its records: appending instead");
                self.appending = true;
                return;
            }
            self.allocated += chunk;
        }
    }

    /// Cuts the zeros off the end, so a closed segment holds its records and nothing else.
    fn trim(&mut self) -> Result<(), AuditError> {
        if self.allocated > self.bytes {
            self.file.set_len(self.bytes).map_err(io_err(&self.path))?;
            self.file.sync_all().map_err(io_err(&self.path))?;
            self.allocated = self.bytes;
        }
        Ok(())
    }
}

pub(super) struct Writer {
    pub(super) cfg: AuditConfig,
    pub(super) key: SigningKey,
    pub(super) key_id: String,
    pub(super) seg: Option<Segment>,
    /// Next sequence number.
    pub(super) seq: u64,
    /// Hash of the last record written.
    pub(super) prev: String,
    /// Bytes appended but not yet written to the file.
    pub(super) buf: Vec<u8>,
    pub(super) since_checkpoint: u64,
    pub(super) last_checkpoint: Instant,
    pub(super) unsynced_since: Option<Instant>,
    pub(super) recovered_bytes: Option<u64>,
    /// A checkpoint whose `HEAD.json` is written once its bytes are committed.
    pub(super) pending_head: Option<(u64, String)>,
    /// The sequence number of the newest `HEAD.json` written, shared with the syncers (which
    /// write the heads of the groups they sync): a head never replaces a newer one.
    pub(super) heads: std::sync::Arc<std::sync::Mutex<u64>>,
    /// `fsync = "always"` with syncer threads running: `commit` leaves the `fdatasync` to them.
    pub(super) deferred: bool,
    /// The timestamp records get (millisecond precision), and when it was taken: it is formatted
    /// again only when a millisecond has passed, not for every record of a batch.
    time: String,
    stamped: Option<Instant>,
}

impl Writer {
    pub(super) fn open(cfg: AuditConfig, key: SigningKey) -> Result<Self, AuditError> {
        let key_id = key_id(key.verifying_key().as_bytes());
        let (seq, prev, recovered_bytes) = recover(&cfg.dir)?;
        let mut w = Self {
            cfg,
            key,
            key_id,
            seg: None,
            seq,
            prev,
            buf: Vec::with_capacity(64 * 1024),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            unsynced_since: None,
            recovered_bytes,
            pending_head: None,
            heads: std::sync::Arc::default(),
            deferred: false,
            time: String::new(),
            stamped: None,
        };
        w.new_segment()?;
        Ok(w)
    }

    pub(super) fn new_segment(&mut self) -> Result<(), AuditError> {
        let path = self.cfg.dir.join(segment_name(self.seq));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(io_err(&path))?;
        // A segment of the same name exists only when `recover` found it and cut it to its
        // records: new records continue after them.
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.seg = Some(Segment {
            file: std::sync::Arc::new(file),
            path,
            bytes,
            allocated: bytes,
            appending: false,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Serializes a record into the pending buffer, advancing `seq` and `prev`.
    pub(super) fn append(&mut self, record: &Record) -> Result<(), AuditError> {
        self.link(record)?;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.cfg.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Chains one record: its line names the hash of the line before, and becomes the last.
    /// The line is serialised straight into the pending buffer: no allocation per record.
    fn link(&mut self, record: &Record) -> Result<(), AuditError> {
        if self
            .stamped
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(1))
        {
            self.time = now_rfc3339();
            self.stamped = Some(Instant::now());
        }
        let start = self.buf.len();
        if let Record::Request(r) = record {
            // Almost every line: written by hand, the same bytes serde writes.
            super::line::request(&mut self.buf, self.seq, &self.prev, &self.time, r);
        } else if let Err(e) = serde_json::to_writer(
            &mut self.buf,
            &EnvelopeOut {
                v: SCHEMA_VERSION,
                seq: self.seq,
                prev: &self.prev,
                time: &self.time,
                record,
            },
        ) {
            self.buf.truncate(start);
            return Err(AuditError::Io {
                path: self.cfg.dir.clone(),
                source: std::io::Error::other(e),
            });
        }
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&self.buf[start..]);
        self.prev.clear();
        hex_into(&mut self.prev, &digest);
        self.buf.push(b'\n');
        self.seq += 1;
        Ok(())
    }

    /// Appends a signed checkpoint; `HEAD.json` is updated once it is written.
    pub(super) fn checkpoint(&mut self) -> Result<(), AuditError> {
        let records = self.since_checkpoint;
        let signature = self.key.sign(&checkpoint_message(self.seq, &self.prev));
        let cp = Record::Checkpoint(CheckpointRecord {
            records,
            key_id: self.key_id.clone(),
            signature: hex(&signature.to_bytes()),
        });
        let seq = self.seq;
        self.link(&cp)?;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        // HEAD is written after the segment bytes are durable (see `commit`).
        self.pending_head = Some((seq, self.prev.clone()));
        Ok(())
    }

    /// Writes the pending buffer; fsyncs when `sync` (or the policy says so now). Returns whether
    /// everything written is durable now; `false` when the syncers are to make it so.
    pub(super) fn commit(&mut self, sync: bool) -> Result<bool, AuditError> {
        let Some(seg) = self.seg.as_mut() else {
            return Err(AuditError::Io {
                path: self.cfg.dir.clone(),
                source: std::io::Error::other("no open segment"),
            });
        };
        if !self.buf.is_empty() {
            let n = self.buf.len() as u64;
            seg.reserve(n);
            seg.file
                .write_all_at(&self.buf, seg.bytes)
                .map_err(io_err(&seg.path))?;
            seg.bytes += n;
            seg.allocated = seg.allocated.max(seg.bytes);
            self.buf.clear();
            // `never` leaves flushing to the kernel: nothing comes due.
            if self.cfg.fsync != FsyncMode::Never {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        let due = match self.cfg.fsync {
            // With syncers, they sync, and write a checkpoint's head after (`take_head`).
            FsyncMode::Always => !self.deferred,
            FsyncMode::Batch => self
                .unsynced_since
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_delay),
            FsyncMode::Never => false,
        };
        if (sync || due) && self.unsynced_since.is_some() && self.cfg.fsync != FsyncMode::Never {
            seg.file.sync_data().map_err(io_err(&seg.path))?;
            self.unsynced_since = None;
        }
        // What is still unsynced in `always` mode goes to the syncers, with its head.
        let durable =
            !(self.cfg.fsync == FsyncMode::Always && self.unsynced_since.take().is_some());
        if durable {
            if let Some((seq, hash)) = self.pending_head.take() {
                self.write_head(seq, &hash)?;
            }
        }
        Ok(durable)
    }

    /// The head of a checkpoint written but not yet synced, signed, for the syncer that makes
    /// its bytes durable to write after its `fdatasync` (so the writer does not stop for two
    /// flushes at every checkpoint).
    pub(super) fn take_head(&mut self) -> Option<HeadJob> {
        let (seq, hash) = self.pending_head.take()?;
        Some(self.head_job(seq, &hash))
    }

    pub(super) fn write_head(&self, seq: u64, hash: &str) -> Result<(), AuditError> {
        self.head_job(seq, hash).write()
    }

    fn head_job(&self, seq: u64, hash: &str) -> HeadJob {
        let head = Head {
            seq,
            hash: hash.to_owned(),
            key_id: self.key_id.clone(),
            signature: hex(&self.key.sign(&head_message(seq, hash)).to_bytes()),
        };
        HeadJob {
            seq,
            body: serde_json::to_vec(&head).unwrap_or_default(),
            dir: self.cfg.dir.clone(),
            fsync: self.cfg.fsync != FsyncMode::Never,
            newest: self.heads.clone(),
        }
    }

    pub(super) fn rotate_if_due(&mut self) -> Result<(), AuditError> {
        let due = self.seg.as_ref().is_some_and(|s| {
            s.bytes >= self.cfg.segment_max_bytes || s.opened.elapsed() >= self.cfg.segment_max_age
        });
        if due {
            let _ = self.commit(true)?;
            self.close_segment()?;
            // The next record's `prev` links the new segment to the last hash of this one.
            self.new_segment()?;
        }
        Ok(())
    }

    /// Cuts the current segment to its records (at rotation and shutdown; after a crash,
    /// `recover` does it).
    pub(super) fn close_segment(&mut self) -> Result<(), AuditError> {
        match self.seg.as_mut() {
            Some(seg) => seg.trim(),
            None => Ok(()),
        }
    }
}

/// A signed `HEAD.json`, ready to be written once the checkpoint it names is durable.
pub(super) struct HeadJob {
    seq: u64,
    body: Vec<u8>,
    dir: PathBuf,
    fsync: bool,
    newest: std::sync::Arc<std::sync::Mutex<u64>>,
}

impl HeadJob {
    /// Writes it (a temporary file, synced, renamed over the last), unless a newer head is
    /// already written: heads are written by the writer and by either syncer, and a slower one
    /// must not put an older head back.
    pub(super) fn write(&self) -> Result<(), AuditError> {
        let mut newest = self
            .newest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *newest > self.seq {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{HEAD_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&self.body).map_err(io_err(&tmp))?;
        if self.fsync {
            f.sync_data().map_err(io_err(&tmp))?;
        }
        let dest = self.dir.join(HEAD_FILE);
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        *newest = self.seq;
        Ok(())
    }
}

/// Finds where the chain ends: the next sequence number and the last record's hash. A torn last
/// line (no newline, or not a whole record) is cut off; returns how many bytes were cut.
pub fn recover(dir: &Path) -> Result<(u64, String, Option<u64>), AuditError> {
    let mut cut_total: Option<u64> = None;
    for path in segments(dir)?.iter().rev() {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data).map_err(io_err(path))?;
        // The zero-filled space ahead of the records (and anything after a hole a crash left in
        // bytes that were never synced) is not part of the trail, and not a torn record.
        let records = crate::audit::written(&data).len();
        if records < data.len() {
            // Bytes of records past a hole were written but never synced: they are cut, and
            // counted as cut.
            let unsynced = data[records..].iter().filter(|&&b| b != 0).count() as u64;
            if unsynced > 0 {
                *cut_total.get_or_insert(0) += unsynced;
            }
            f.set_len(records as u64).map_err(io_err(path))?;
            f.sync_data().map_err(io_err(path))?;
            data.truncate(records);
        }
        loop {
            if data.is_empty() {
                break; // nothing whole here: the chain ends in an earlier segment
            }
            let keep = if data.ends_with(b"\n") {
                let body = &data[..data.len() - 1];
                let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let last = &body[start..];
                if let Ok(env) = serde_json::from_slice::<crate::audit::record::Envelope>(last) {
                    return Ok((env.seq + 1, sha256_hex(last), cut_total));
                }
                start // a whole line that is not a record: cut it too
            } else {
                data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            f.set_len(keep as u64).map_err(io_err(path))?;
            f.seek(SeekFrom::Start(keep as u64)).map_err(io_err(path))?;
            f.sync_data().map_err(io_err(path))?;
            *cut_total.get_or_insert(0) += (data.len() - keep) as u64;
            data.truncate(keep);
        }
    }
    Ok((1, GENESIS.to_owned(), cut_total))
}
