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

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use super::Health;

/// A record's acknowledgement: `true` once it is durable, `false` if it could not be made so.
pub(super) type Ack = tokio::sync::oneshot::Sender<bool>;

/// How many `fdatasync` calls may be in flight at once.
const SYNCERS: usize = 2;

#[derive(Default)]
struct Pending {
    /// Groups written and waiting for an `fdatasync`: the file their bytes went to, and their
    /// acknowledgements.
    groups: Vec<(Arc<File>, Vec<Ack>)>,
    stop: bool,
}

/// The syncer threads.
pub(super) struct Syncers {
    state: Arc<(Mutex<Pending>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Syncers {
    pub(super) fn start(health: &Arc<Health>) -> Self {
        let state = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let threads = (0..SYNCERS)
            .filter_map(|i| {
                let (state, health) = (state.clone(), health.clone());
                std::thread::Builder::new()
                    .name(format!("moat-audit-sync{i}"))
                    .spawn(move || run(&state, &health))
                    .ok()
            })
            .collect();
        Self { state, threads }
    }

    /// Whether a syncer runs (threads could be started): otherwise the writer syncs itself.
    pub(super) fn running(&self) -> bool {
        !self.threads.is_empty()
    }

    /// Hands over the acknowledgements of records already written to `file`.
    pub(super) fn submit(&self, file: Arc<File>, acks: Vec<Ack>) {
        if acks.is_empty() {
            return;
        }
        let (lock, ready) = &*self.state;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .groups
            .push((file, acks));
        ready.notify_one();
    }

    /// Syncs what was handed over, then ends the threads.
    pub(super) fn stop(self) {
        let (lock, ready) = &*self.state;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop = true;
        ready.notify_all();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn run(state: &(Mutex<Pending>, Condvar), health: &Health) {
    let (lock, ready) = state;
    loop {
        let groups = {
            let mut p = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while p.groups.is_empty() && !p.stop {
                p = ready
                    .wait(p)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if p.groups.is_empty() {
                return;
            }
            std::mem::take(&mut p.groups)
        };
        let mut synced: Vec<&Arc<File>> = Vec::new();
        let mut ok = true;
        for (file, _) in &groups {
            if synced.iter().any(|f| Arc::ptr_eq(f, file)) {
                continue;
            }
            synced.push(file);
            if let Err(e) = file.sync_data() {
                tracing::error!(target: "moat::audit", error = %e, "audit fsync failed: refusing requests until it works again");
                ok = false;
            }
        }
        if !ok {
            health.io_failed.store(true, Ordering::Release);
        }
        // After a failure anywhere, nothing is acknowledged as durable until the writer has
        // recovered the trail.
        let ok = ok && !health.io_failed.load(Ordering::Acquire);
        for (_, acks) in groups {
            if !ok {
                health.lost.fetch_add(acks.len() as u64, Ordering::AcqRel);
            }
            for a in acks {
                let _ = a.send(ok);
            }
        }
    }
}
