//! The writer: one thread that owns the segment file, so appends, hashes and fsyncs are strictly
//! ordered without locks on the request path.
//!
//! Group commit: the thread takes every record already queued, writes them in one `write`, and
//! in `always` mode fsyncs before acknowledging any of them. A write or fsync error is not
//! retried blindly: the writer marks the trail unhealthy (the proxy then answers 503 and forwards
//! nothing), drops what it could not write (counting it), and once a second tries to recover —
//! cut a torn tail, open a new segment, write and fsync an `audit_resumed` record. Only when that
//! succeeds is the trail healthy again.

mod chain;
mod courier;
mod line;
mod sync;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::record::{LifecycleRecord, Record};
use super::{hex, io_err, AuditConfig, AuditError, FsyncMode, PUBKEY_FILE};
use chain::{load_or_create_key, Writer};
use courier::{Batch, Courier};
use sync::Syncers;

pub use chain::{head_message, key_id, recover, Head};

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
    /// Records queued and not yet taken by the writer.
    queued: AtomicUsize,
}

enum Msg {
    Records(Batch),
    Shutdown(Sender<()>),
}

/// The handle stages use to record; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: Sender<Msg>,
    courier: Arc<Courier>,
    health: Arc<Health>,
    fsync: FsyncMode,
    capacity: usize,
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
pub struct Durable(Option<(tokio::sync::oneshot::Receiver<bool>, Instant)>);

impl Durable {
    /// Waits; `Err` if the record could not be written. The time waited since the record was
    /// queued goes into `moat_audit_durable_wait_seconds`.
    pub async fn wait(self) -> Result<(), Unavailable> {
        let Some((rx, queued)) = self.0 else {
            return Ok(());
        };
        let durable = rx.await;
        crate::metrics::METRICS
            .audit_durable_wait_seconds
            .observe(queued.elapsed().as_secs_f64());
        match durable {
            Ok(true) => Ok(()),
            _ => Err(Unavailable),
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
        let (tx, rx) = channel();
        let courier = Arc::<Courier>::default();
        let (h, c) = (health.clone(), courier.clone());
        let thread = std::thread::Builder::new()
            .name("moat-audit".into())
            .spawn(move || w.run(&rx, &h, &c))
            .map_err(io_err(&cfg.dir))?;
        Ok((
            Self {
                tx,
                courier,
                health,
                fsync: cfg.fsync,
                capacity: cfg.queue_capacity.max(1),
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
        self.send(r, None)
    }

    /// Queues a record; in `always` mode the returned [`Durable`] resolves once it is on disk.
    pub fn record_durable(&self, r: Record) -> Result<Durable, Unavailable> {
        if self.fsync != FsyncMode::Always {
            return self.record(r).map(|()| Durable(None));
        }
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.send(r, Some(ack))?;
        Ok(Durable(Some((rx, Instant::now()))))
    }

    fn send(&self, r: Record, ack: Option<sync::Ack>) -> Result<(), Unavailable> {
        if self.health.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.health.queued.fetch_sub(1, Ordering::AcqRel);
            self.health.overflowed.store(true, Ordering::Release);
            self.health.lost.fetch_add(1, Ordering::AcqRel);
            return Err(Unavailable);
        }
        crate::metrics::METRICS.audit_queue_depth.inc();
        if self.courier.post(&self.tx, r, ack) {
            return Ok(());
        }
        // The writer has ended: nothing was queued.
        self.health.queued.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::METRICS.audit_queue_depth.dec();
        self.health.io_failed.store(true, Ordering::Release);
        self.health.lost.fetch_add(1, Ordering::AcqRel);
        Err(Unavailable)
    }

    /// Writes a `stop` record and a final checkpoint, fsyncs, and ends the writer.
    pub fn shutdown(&self, stop: LifecycleRecord) {
        let _ = self.send(Record::Lifecycle(stop), None);
        let (done, wait) = channel();
        if self
            .courier
            .send_after_queued(&self.tx, Msg::Shutdown(done))
        {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }
}

impl Writer {
    fn run(mut self, rx: &Receiver<Msg>, health: &Arc<Health>, courier: &Arc<Courier>) {
        let syncers = Syncers::start(health, courier);
        self.deferred = self.cfg.fsync == FsyncMode::Always && syncers.running();
        self.serve(rx, health, courier, &syncers);
        syncers.stop();
    }

    fn serve(
        &mut self,
        rx: &Receiver<Msg>,
        health: &Arc<Health>,
        courier: &Courier,
        syncers: &Syncers,
    ) {
        let mut acks: Vec<sync::Ack> = Vec::new();
        loop {
            if self.deferred {
                syncers.wait_for_idle(Duration::from_millis(5));
            }
            let wait = self.next_deadline();
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut shutdown = None;
            let mut batch: Batch = Vec::new();
            if let Some(m) = first {
                if self.cfg.fsync != FsyncMode::Always && !matches!(m, Msg::Shutdown(_)) {
                    // Gather: senders do not wake a writer that is not waiting on the queue, so
                    // under load one wake-up serves a whole batch instead of one per record.
                    // (With `always`, responses wait for the write: no added delay.)
                    std::thread::sleep(GATHER);
                }
                // Group commit: everything already queued goes in the same write. A shutdown
                // comes after every record queued before it.
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Records(records) if batch.is_empty() => batch = records,
                        Msg::Records(mut records) => batch.append(&mut records),
                        Msg::Shutdown(done) => {
                            shutdown = Some(done);
                            break;
                        }
                    }
                    if batch.len() < 4096 {
                        next = rx.try_recv().ok();
                    }
                }
            }
            health.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            crate::metrics::METRICS
                .audit_queue_depth
                .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
            if health.io_failed.load(Ordering::Acquire) {
                // Not writing: everything queued is lost (and counted) until recovery works.
                health.lost.fetch_add(batch.len() as u64, Ordering::AcqRel);
                courier.acknowledge(batch.into_iter().filter_map(|(_, a)| a).collect(), false);
                if let Some(done) = shutdown {
                    let _ = done.send(());
                    return;
                }
                self.try_recover(health);
                continue;
            }
            let started = Instant::now();
            let mut result = Ok(());
            for (r, ack) in batch {
                if result.is_ok() {
                    result = self.append(&r);
                }
                if let Some(a) = ack {
                    acks.push(a);
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
                match self.commit(shutdown.is_some()) {
                    // Written, not yet synced: the syncers make it durable and acknowledge it.
                    Ok(false) => {
                        let head = self.take_head();
                        if let Some(seg) = &self.seg {
                            syncers.submit(seg.file.clone(), std::mem::take(&mut acks), head);
                        }
                    }
                    Ok(true) => {}
                    Err(e) => result = Err(e),
                }
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
            courier.acknowledge(std::mem::take(&mut acks), ok);
            if ok && health.overflowed.load(Ordering::Acquire) {
                self.resume(health, "queue drained");
            }
            if let Some(done) = shutdown {
                if ok {
                    if let Err(e) = self.close_segment() {
                        tracing::warn!(target: "moat::audit", error = %e, "could not cut the last segment's zero fill; the next start does");
                    }
                }
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
        // A signed checkpoint follows, so `HEAD.json` is written again too (writing it may be
        // what failed).
        let written = self
            .append(&record)
            .and_then(|()| self.checkpoint())
            .and_then(|()| self.commit(true));
        match written {
            Ok(_) => {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::record::{LifecycleRecord, Record};
    use super::{AuditConfig, FsyncMode, Writer};

    /// How long the writer may sleep after a record was written in each mode: until the batch
    /// flush is due with `batch`, a full second (its longest sleep) with `never`, which leaves
    /// flushing to the kernel; an idle writer must not wake every millisecond.
    #[test]
    fn an_idle_writer_sleeps_until_something_is_due() {
        for (fsync, longest) in [
            (FsyncMode::Never, Duration::from_secs(1)),
            (FsyncMode::Batch, Duration::from_millis(50)),
        ] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let cfg = AuditConfig {
                dir: tmp.path().join("audit"),
                key_dir: tmp.path().join("state"),
                fsync,
                batch_delay: Duration::from_millis(50),
                checkpoint_interval: Duration::from_secs(3600),
                ..AuditConfig::default()
            };
            std::fs::create_dir_all(&cfg.dir).expect("audit dir");
            let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            let mut w = Writer::open(cfg, key).expect("open");
            assert_eq!(w.next_deadline(), Duration::from_secs(1), "{fsync:?}");
            let record = Record::Lifecycle(LifecycleRecord {
                event: "start".into(),
                version: "test".into(),
                config_sha256: None,
                detail: None,
            });
            w.append(&record).expect("append");
            w.commit(false).expect("commit");
            let wait = w.next_deadline();
            assert!(
                wait > longest - Duration::from_millis(20) && wait <= longest,
                "{fsync:?}: the writer would sleep {wait:?}"
            );
        }
    }
}
