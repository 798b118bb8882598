//! `fsync = "always"`: the threads that make written records durable.
//!
//! The writer serialises, chains and writes records; it hands each written group's
//! acknowledgements to these threads and goes on writing. A syncer takes every group handed
//! over so far, calls `fdatasync` once for all of them (their bytes were written before it
//! started), and acknowledges them. Two syncers run, so a group written while one `fdatasync` is
//! in flight starts its own at once instead of waiting for that one to finish: a record waits
//! about one `fdatasync`, not one and a half, and the device takes two flushes at a time
//! (measured on the benchmark machine: 1,900 flushes/s one at a time, 4,800–5,500 two at a time,
//! each taking about as long).
//!
//! A group holding a signed checkpoint carries that checkpoint's `HEAD.json`: the syncer writes
//! it (synced, renamed into place) after the group's `fdatasync` and before acknowledging the
//! group, so the head never names a record that is not durable, and the writer does not stop
//! for two flushes at every checkpoint.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use super::chain::HeadJob;
use super::{Courier, Health};

/// A record's acknowledgement: `true` once it is durable, `false` if it could not be made so.
pub(super) type Ack = tokio::sync::oneshot::Sender<bool>;

/// How many `fdatasync` calls may be in flight at once.
const SYNCERS: usize = 2;

#[derive(Default)]
struct Pending {
    /// Groups written and waiting for an `fdatasync`: the file their bytes went to, their
    /// acknowledgements, and the head of a checkpoint among them.
    groups: Vec<(Arc<File>, Vec<Ack>, Option<HeadJob>)>,
    /// Syncers waiting for a group (not in an `fdatasync`).
    idle: usize,
    stop: bool,
}

/// What the threads share: the pending groups, a signal for syncers (a group is ready) and one
/// for the writer (a syncer is idle).
#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
    freed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The syncer threads.
pub(super) struct Syncers {
    state: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Syncers {
    pub(super) fn start(health: &Arc<Health>, courier: &Arc<Courier>) -> Self {
        let state = Arc::new(Shared::default());
        let threads = (0..SYNCERS)
            .filter_map(|i| {
                let (state, health, courier) = (state.clone(), health.clone(), courier.clone());
                std::thread::Builder::new()
                    .name(format!("moat-audit-sync{i}"))
                    .spawn(move || run(&state, &health, &courier))
                    .ok()
            })
            .collect();
        Self { state, threads }
    }

    /// Whether a syncer runs (threads could be started): otherwise the writer syncs itself.
    pub(super) fn running(&self) -> bool {
        !self.threads.is_empty()
    }

    /// Hands over a group of records already written to `file`, with the acknowledgements of
    /// those that wait (a group may have none: it is synced all the same) and the head to write
    /// once they are durable, when the group holds a checkpoint. A syncer is woken only if one
    /// is waiting; a busy one takes the group when its `fdatasync` returns.
    pub(super) fn submit(&self, file: Arc<File>, acks: Vec<Ack>, head: Option<HeadJob>) {
        let mut p = self.state.lock();
        p.groups.push((file, acks, head));
        if p.idle > 0 {
            self.state.ready.notify_one();
        }
    }

    /// Waits (at most `max`) until a syncer is idle. The writer waits here before it takes the
    /// next records: while every syncer is in an `fdatasync`, a group written now could not be
    /// synced before one returns anyway, so the records gather in the queue meanwhile, without a
    /// wake-up per record, and go out in one write.
    pub(super) fn wait_for_idle(&self, max: std::time::Duration) {
        let p = self.state.lock();
        if p.idle > 0 || p.stop {
            return;
        }
        let _ = self
            .state
            .freed
            .wait_timeout_while(p, max, |p| p.idle == 0 && !p.stop);
    }

    /// Syncs what was handed over, then ends the threads.
    pub(super) fn stop(self) {
        self.state.lock().stop = true;
        self.state.ready.notify_all();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn run(state: &Shared, health: &Health, courier: &Courier) {
    loop {
        let groups = {
            let mut p = state.lock();
            if p.groups.is_empty() && !p.stop {
                p.idle += 1;
                state.freed.notify_one();
                while p.groups.is_empty() && !p.stop {
                    p = state
                        .ready
                        .wait(p)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                p.idle -= 1;
            }
            if p.groups.is_empty() {
                return;
            }
            std::mem::take(&mut p.groups)
        };
        let mut synced: Vec<&Arc<File>> = Vec::new();
        let mut ok = true;
        for (file, _, _) in &groups {
            if synced.iter().any(|f| Arc::ptr_eq(f, file)) {
                continue;
            }
            synced.push(file);
            if let Err(e) = file.sync_data() {
                tracing::error!(target: "moat::audit", error = %e, "audit fsync failed: refusing requests until it works again");
                ok = false;
            }
        }
        // The newest head among the groups, now that its checkpoint is durable; a group's
        // records are acknowledged after it, as when the writer wrote it.
        if ok {
            if let Some(head) = groups.iter().filter_map(|(_, _, h)| h.as_ref()).next_back() {
                if let Err(e) = head.write() {
                    tracing::error!(target: "moat::audit", error = %e, "audit head could not be written: refusing requests until it works again");
                    ok = false;
                }
            }
        }
        if !ok {
            health.io_failed.store(true, Ordering::Release);
        }
        // After a failure anywhere, nothing is acknowledged as durable until the writer has
        // recovered the trail.
        let ok = ok && !health.io_failed.load(Ordering::Acquire);
        for (_, acks, _) in groups {
            if !ok {
                health.lost.fetch_add(acks.len() as u64, Ordering::AcqRel);
            }
            courier.acknowledge(acks, ok);
        }
    }
}
