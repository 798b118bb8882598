//! The writer: one thread that owns the segment file, so appends, hashes and fsyncs are strictly
//! ordered without locks on the request path.
//!
//! Group commit: the thread takes every record already queued, writes them in one `write`, and
//! in `always` mode fsyncs before acknowledging any of them. A write or fsync error is not
//! retried blindly: the writer marks the trail unhealthy (the proxy then answers 503 and forwards
//! nothing), drops what it could not write (counting it), and once a second tries to recover —
//! cut a torn tail, open a new segment, write and fsync an `audit_resumed` record. Only when that
//! succeeds is the trail healthy again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use tokio::time::Instant;

use super::record::{
    checkpoint_message, CheckpointRecord, LifecycleRecord, Record, SCHEMA_VERSION,
};
use super::{
    hex, io_err, now_rfc3339, segment_name, segments, sha256_hex, AuditConfig, AuditError,
    FsyncMode, GENESIS, HEAD_FILE, KEY_FILE, PUBKEY_FILE,
};

/// How long the writer lets records gather after the first one arrives (`batch` and `never`).
const GATHER: Duration = Duration::from_micros(500);

/// Shared health of the trail.
#[derive(Debug, Default)]
struct Health {
    /// A write or fsync failed and has not been recovered from.
    io_failed: AtomicBool,
    /// The queue overflowed; cleared when the writer catches up.
    overflowed: AtomicBool,
    /// Records that could not be written (reported in the next `audit_resumed`).
    lost: AtomicU64,
    /// Requests refused with 503 while the trail was down (reported in `audit_resumed`).
    refused: AtomicU64,
}

enum Msg {
    Record(Record, Option<tokio::sync::oneshot::Sender<bool>>),
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// The handle stages use to record; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: SyncSender<Msg>,
    health: Arc<Health>,
    fsync: FsyncMode,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("healthy", &self.healthy())
            .field("fsync", &self.fsync)
            .finish()
    }
}

/// The trail cannot take records now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit trail unavailable")]
pub struct Unavailable;

/// Resolves once a record is durable (in `always` mode) or queued (otherwise).
#[derive(Debug)]
pub struct Durable(Option<tokio::sync::oneshot::Receiver<bool>>);

impl Durable {
    /// Waits; `Err` if the record could not be written.
    pub async fn wait(self) -> Result<(), Unavailable> {
        match self.0 {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(true) => Ok(()),
                _ => Err(Unavailable),
            },
        }
    }
}

impl Auditor {
    /// Opens the trail (recovering a torn tail), loads or creates the signing key, writes a
    /// `start` record and starts the writer thread.
    pub fn start(
        cfg: &AuditConfig,
        start: LifecycleRecord,
    ) -> Result<(Self, std::thread::JoinHandle<()>), AuditError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let key = load_or_create_key(&cfg.key_dir)?;
        let pubkey_hex = hex(key.verifying_key().as_bytes());
        let pub_copy = cfg.dir.join(PUBKEY_FILE);
        std::fs::write(&pub_copy, format!("{pubkey_hex}\n")).map_err(io_err(&pub_copy))?;
        let mut w = Writer::open(cfg.clone(), key)?;
        let health = Arc::new(Health::default());
        // The start record (and a recovery record, if a tail was cut) is durable before moat
        // serves anything.
        if let Some(cut) = w.recovered_bytes {
            w.append(&Record::Lifecycle(LifecycleRecord {
                event: "recovered".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                config_sha256: None,
                detail: Some(format!(
                    "cut a torn tail of {cut} bytes; the chain continues from seq {}",
                    w.seq - 1
                )),
            }))?;
        }
        w.append(&Record::Lifecycle(start))?;
        w.commit(true)?;
        let (tx, rx) = sync_channel(cfg.queue_capacity.max(1));
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("moat-audit".into())
            .spawn(move || w.run(rx, h))
            .map_err(io_err(&cfg.dir))?;
        Ok((
            Self {
                tx,
                health,
                fsync: cfg.fsync,
            },
            thread,
        ))
    }

    /// Whether records can be written now. The proxy forwards nothing while this is false.
    pub fn healthy(&self) -> bool {
        !self.health.io_failed.load(Ordering::Acquire)
            && !self.health.overflowed.load(Ordering::Acquire)
    }

    /// Counts a request refused because the trail was down; the count goes into the
    /// `audit_resumed` record written when writing works again.
    pub fn note_refused(&self) {
        self.health.refused.fetch_add(1, Ordering::AcqRel);
    }

    /// Queues a record without waiting.
    pub fn record(&self, r: Record) -> Result<(), Unavailable> {
        self.send(Msg::Record(r, None))
    }

    /// Queues a record; in `always` mode the returned [`Durable`] resolves once it is on disk.
    pub fn record_durable(&self, r: Record) -> Result<Durable, Unavailable> {
        if self.fsync != FsyncMode::Always {
            return self.record(r).map(|()| Durable(None));
        }
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Record(r, Some(ack)))?;
        Ok(Durable(Some(rx)))
    }

    fn send(&self, m: Msg) -> Result<(), Unavailable> {
        match self.tx.try_send(m) {
            Ok(()) => {
                crate::metrics::METRICS.audit_queue_depth.inc();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.health.overflowed.store(true, Ordering::Release);
                self.health.lost.fetch_add(1, Ordering::AcqRel);
                Err(Unavailable)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.health.io_failed.store(true, Ordering::Release);
                self.health.lost.fetch_add(1, Ordering::AcqRel);
                Err(Unavailable)
            }
        }
    }

    /// Writes a `stop` record and a final checkpoint, fsyncs, and ends the writer.
    pub fn shutdown(&self, stop: LifecycleRecord) {
        if self
            .tx
            .send(Msg::Record(Record::Lifecycle(stop), None))
            .is_ok()
        {
            crate::metrics::METRICS.audit_queue_depth.inc();
        }
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Shutdown(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// Reads the signing key from `dir`, or creates one (private key mode 0600) with its public
/// half beside it.
fn load_or_create_key(dir: &Path) -> Result<SigningKey, AuditError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(KEY_FILE);
    let bad = |reason: &str| AuditError::Key {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = super::unhex(text.trim()).ok_or_else(|| bad("not hex"))?;
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

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    time: String,
    #[serde(flatten)]
    record: &'a Record,
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

struct Segment {
    file: File,
    path: PathBuf,
    bytes: u64,
    opened: Instant,
}

struct Writer {
    cfg: AuditConfig,
    key: SigningKey,
    key_id: String,
    seg: Option<Segment>,
    /// Next sequence number.
    seq: u64,
    /// Hash of the last record written.
    prev: String,
    /// Bytes appended but not yet written to the file.
    buf: Vec<u8>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    unsynced_since: Option<Instant>,
    recovered_bytes: Option<u64>,
    /// A checkpoint whose `HEAD.json` is written once its bytes are committed.
    pending_head: Option<(u64, String)>,
}

impl Writer {
    fn open(cfg: AuditConfig, key: SigningKey) -> Result<Self, AuditError> {
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
        };
        w.new_segment()?;
        Ok(w)
    }

    fn new_segment(&mut self) -> Result<(), AuditError> {
        let path = self.cfg.dir.join(segment_name(self.seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_err(&path))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.seg = Some(Segment {
            file,
            path,
            bytes,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Serializes a record into the pending buffer, advancing `seq` and `prev`.
    fn append(&mut self, record: &Record) -> Result<(), AuditError> {
        let env = EnvelopeOut {
            v: SCHEMA_VERSION,
            seq: self.seq,
            prev: &self.prev,
            time: now_rfc3339(),
            record,
        };
        let line = serde_json::to_vec(&env).map_err(|e| AuditError::Io {
            path: self.cfg.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        self.prev = sha256_hex(&line);
        self.buf.extend_from_slice(&line);
        self.buf.push(b'\n');
        self.seq += 1;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.cfg.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Appends a signed checkpoint; `HEAD.json` is updated once it is written.
    fn checkpoint(&mut self) -> Result<(), AuditError> {
        let records = self.since_checkpoint;
        let signature = self.key.sign(&checkpoint_message(self.seq, &self.prev));
        let cp = Record::Checkpoint(CheckpointRecord {
            records,
            key_id: self.key_id.clone(),
            signature: hex(&signature.to_bytes()),
        });
        let seq = self.seq;
        let env = EnvelopeOut {
            v: SCHEMA_VERSION,
            seq,
            prev: &self.prev,
            time: now_rfc3339(),
            record: &cp,
        };
        let line = serde_json::to_vec(&env).map_err(|e| AuditError::Io {
            path: self.cfg.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        self.prev = sha256_hex(&line);
        self.buf.extend_from_slice(&line);
        self.buf.push(b'\n');
        self.seq += 1;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        // HEAD is written after the segment bytes are durable (see `commit`).
        self.pending_head = Some((seq, self.prev.clone()));
        Ok(())
    }

    /// Writes the pending buffer; fsyncs when `sync` (or the policy says so now).
    fn commit(&mut self, sync: bool) -> Result<(), AuditError> {
        let Some(seg) = self.seg.as_mut() else {
            return Err(AuditError::Io {
                path: self.cfg.dir.clone(),
                source: std::io::Error::other("no open segment"),
            });
        };
        if !self.buf.is_empty() {
            seg.file.write_all(&self.buf).map_err(io_err(&seg.path))?;
            seg.bytes += self.buf.len() as u64;
            self.buf.clear();
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        let due = match self.cfg.fsync {
            FsyncMode::Always => true,
            FsyncMode::Batch => self
                .unsynced_since
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_delay),
            FsyncMode::Never => false,
        };
        if (sync || due) && self.unsynced_since.is_some() && self.cfg.fsync != FsyncMode::Never {
            seg.file.sync_data().map_err(io_err(&seg.path))?;
            self.unsynced_since = None;
        }
        if let Some((seq, hash)) = self.pending_head.take() {
            self.write_head(seq, &hash)?;
        }
        Ok(())
    }

    fn write_head(&self, seq: u64, hash: &str) -> Result<(), AuditError> {
        let head = Head {
            seq,
            hash: hash.to_owned(),
            key_id: self.key_id.clone(),
            signature: hex(&self.key.sign(&head_message(seq, hash)).to_bytes()),
        };
        let tmp = self.cfg.dir.join(format!("{HEAD_FILE}.tmp"));
        let body = serde_json::to_vec(&head).unwrap_or_default();
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        if self.cfg.fsync != FsyncMode::Never {
            f.sync_data().map_err(io_err(&tmp))?;
        }
        let dest = self.cfg.dir.join(HEAD_FILE);
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))
    }

    fn rotate_if_due(&mut self) -> Result<(), AuditError> {
        let due = self.seg.as_ref().is_some_and(|s| {
            s.bytes >= self.cfg.segment_max_bytes || s.opened.elapsed() >= self.cfg.segment_max_age
        });
        if due {
            self.commit(true)?;
            // The next record's `prev` links the new segment to the last hash of this one.
            self.new_segment()?;
        }
        Ok(())
    }

    fn run(mut self, rx: Receiver<Msg>, health: Arc<Health>) {
        let mut acks: Vec<tokio::sync::oneshot::Sender<bool>> = Vec::new();
        loop {
            let wait = self.next_deadline();
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut shutdown = None;
            let mut batch = Vec::new();
            if let Some(m) = first {
                if self.cfg.fsync != FsyncMode::Always && !matches!(m, Msg::Shutdown(_)) {
                    // Gather: senders do not wake a writer that is not waiting on the queue, so
                    // under load one wake-up serves a whole batch instead of one per record.
                    // (With `always`, responses wait for the write: no added delay.)
                    std::thread::sleep(GATHER);
                }
                batch.push(m);
                // Group commit: everything already queued goes in the same write.
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
            }
            let records = batch
                .iter()
                .filter(|m| matches!(m, Msg::Record(..)))
                .count();
            crate::metrics::METRICS
                .audit_queue_depth
                .dec_by(i64::try_from(records).unwrap_or(i64::MAX));
            if health.io_failed.load(Ordering::Acquire) {
                // Not writing: everything queued is lost (and counted) until recovery works.
                for m in batch {
                    match m {
                        Msg::Record(_, ack) => {
                            health.lost.fetch_add(1, Ordering::AcqRel);
                            if let Some(a) = ack {
                                let _ = a.send(false);
                            }
                        }
                        Msg::Shutdown(done) => {
                            let _ = done.send(());
                            return;
                        }
                    }
                }
                self.try_recover(&health);
                continue;
            }
            let started = Instant::now();
            let mut result = Ok(());
            for m in batch {
                match m {
                    Msg::Record(r, ack) => {
                        if result.is_ok() {
                            result = self.append(&r);
                        }
                        if let Some(a) = ack {
                            acks.push(a);
                        }
                    }
                    Msg::Shutdown(done) => shutdown = Some(done),
                }
            }
            if result.is_ok()
                && self.since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval
            {
                result = self.checkpoint();
            }
            if result.is_ok() && shutdown.is_some() && self.since_checkpoint > 0 {
                result = self.checkpoint();
            }
            if result.is_ok() {
                result = self.commit(shutdown.is_some());
            }
            if result.is_ok() {
                result = self.rotate_if_due();
            }
            crate::metrics::METRICS
                .audit_write_seconds
                .observe(started.elapsed().as_secs_f64());
            let ok = result.is_ok();
            if let Err(e) = result {
                tracing::error!(target: "moat::audit", error = %e, "audit write failed: refusing requests until it works again");
                health.lost.fetch_add(acks.len() as u64, Ordering::AcqRel);
                health.io_failed.store(true, Ordering::Release);
                self.buf.clear();
                self.seg = None;
            }
            for a in acks.drain(..) {
                let _ = a.send(ok);
            }
            if ok && health.overflowed.load(Ordering::Acquire) {
                self.resume(&health, "queue drained");
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
        }
    }

    /// How long the loop may sleep before a batch fsync or a timed checkpoint is due.
    fn next_deadline(&self) -> Duration {
        let mut d = Duration::from_secs(1);
        if self.since_checkpoint > 0 {
            d = d.min(
                self.cfg
                    .checkpoint_interval
                    .saturating_sub(self.last_checkpoint.elapsed()),
            );
        }
        if let Some(t) = self.unsynced_since {
            d = d.min(self.cfg.batch_delay.saturating_sub(t.elapsed()));
        }
        d.max(Duration::from_millis(1))
    }

    /// After a failure: cut whatever half-written tail the failure left, open a fresh segment,
    /// and write (durably) a record saying how many records were lost.
    fn try_recover(&mut self, health: &Health) {
        let attempt = (|| -> Result<(), AuditError> {
            let (seq, prev, _) = recover(&self.cfg.dir)?;
            self.seq = seq;
            self.prev = prev;
            self.buf.clear();
            self.new_segment()?;
            Ok(())
        })();
        if attempt.is_ok() {
            health.io_failed.store(false, Ordering::Release);
            self.resume(health, "writing works again");
        }
    }

    fn resume(&mut self, health: &Health, why: &str) {
        let lost = health.lost.swap(0, Ordering::AcqRel);
        let refused = health.refused.swap(0, Ordering::AcqRel);
        let record = Record::Lifecycle(LifecycleRecord {
            event: "audit_resumed".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_sha256: None,
            detail: Some(format!(
                "{why}; {lost} record(s) could not be written; {refused} request(s) were refused with 503 meanwhile"
            )),
        });
        let written = self.append(&record).and_then(|()| self.commit(true));
        match written {
            Ok(()) => {
                health.overflowed.store(false, Ordering::Release);
                tracing::warn!(target: "moat::audit", lost, "audit trail writable again; serving resumes");
            }
            Err(_) => {
                health.lost.fetch_add(lost + 1, Ordering::AcqRel);
                health.refused.fetch_add(refused, Ordering::AcqRel);
                health.io_failed.store(true, Ordering::Release);
                self.buf.clear();
                self.seg = None;
            }
        }
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
        loop {
            if data.is_empty() {
                break; // nothing whole here: the chain ends in an earlier segment
            }
            let keep = if data.ends_with(b"\n") {
                let body = &data[..data.len() - 1];
                let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let last = &body[start..];
                if let Ok(env) = serde_json::from_slice::<super::record::Envelope>(last) {
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
