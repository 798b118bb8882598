//! The courier: carries records from the serving tasks to the writer thread, and durability
//! acknowledgements back, in batches, so the threads wake each other once per batch instead of
//! once per record.
//!
//! Outward: a request's record goes into the outbox; the first record of a batch wakes the
//! courier task, a task on the serving runtime. Waking a task from its own runtime thread costs
//! no system call, and the courier runs only after the tasks already woken, so every record
//! those tasks finish joins the same batch: one hand-over (and at most one writer wake-up) per
//! turn of the event loop. Inward: a syncer puts a synced group's acknowledgements in the
//! courier's inbox and wakes it once; the courier completes them on the runtime thread, where
//! waking each waiting request is again free (from a foreign thread, every request woken would
//! be a write to the runtime's eventfd).
//!
//! Callers off any runtime (the guard's event thread, shutdown, tests) and every caller while no
//! courier runs (before the first record on a runtime, after the runtime has gone) hand their
//! records over and complete acknowledgements themselves. Records keep their order either way:
//! the outbox is emptied into the writer's queue under its lock.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::super::Record;
use super::sync::Ack;
use super::Msg;

/// Records waiting for the writer, with the acknowledgement of each that waits.
pub(super) type Batch = Vec<(Record, Option<Ack>)>;

#[derive(Default)]
struct State {
    /// Records not yet handed to the writer.
    outbox: Batch,
    /// Acknowledgements not yet completed, per group: `true` once durable.
    inbox: Vec<(Vec<Ack>, bool)>,
    /// A courier task is running on some runtime.
    running: bool,
}

/// Shared by the auditor handles, the writer, the syncers and the courier task. The writer's
/// queue is not in here (callers pass it), so the writer holding the courier does not keep its
/// own queue open.
#[derive(Default)]
pub(super) struct Courier {
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl Courier {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record for the writer. `false` if the writer has ended.
    pub(super) fn post(
        self: &Arc<Self>,
        writer: &Sender<Msg>,
        record: Record,
        ack: Option<Ack>,
    ) -> bool {
        let mut s = self.lock();
        if !s.running {
            self.start(&mut s, writer);
        }
        s.outbox.push((record, ack));
        if !s.running {
            return hand_over(&mut s, writer);
        }
        if s.outbox.len() == 1 {
            self.wake.notify_one();
        }
        true
    }

    /// Sends a message to the writer after everything already queued. `false` if the writer
    /// has ended.
    pub(super) fn send_after_queued(&self, writer: &Sender<Msg>, m: Msg) -> bool {
        let mut s = self.lock();
        hand_over(&mut s, writer) && writer.send(m).is_ok()
    }

    /// Completes a group's acknowledgements: on the courier's runtime if one runs, here if not.
    pub(super) fn acknowledge(&self, acks: Vec<Ack>, durable: bool) {
        if acks.is_empty() {
            return;
        }
        let mut s = self.lock();
        if s.running {
            s.inbox.push((acks, durable));
            if s.inbox.len() == 1 {
                self.wake.notify_one();
            }
            return;
        }
        drop(s);
        complete(acks, durable);
    }

    /// Starts the courier task on the current runtime, if there is one.
    fn start(self: &Arc<Self>, s: &mut State, writer: &Sender<Msg>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        s.running = true;
        runtime.spawn(run(Running {
            courier: self.clone(),
            writer: writer.clone(),
        }));
    }

    /// Hands the outbox over and completes the inbox: one round of the courier task, and what
    /// is left when it ends (`running` then false).
    fn round(&self, writer: &Sender<Msg>, running: bool) {
        let inbox = {
            let mut s = self.lock();
            s.running = running;
            // A failed hand-over means the writer has ended: the records are dropped with their
            // acknowledgements, and their waiters see the trail fail.
            let _ = hand_over(&mut s, writer);
            std::mem::take(&mut s.inbox)
        };
        for (acks, durable) in inbox {
            complete(acks, durable);
        }
    }
}

fn hand_over(s: &mut State, writer: &Sender<Msg>) -> bool {
    if s.outbox.is_empty() {
        return true;
    }
    writer
        .send(Msg::Records(std::mem::take(&mut s.outbox)))
        .is_ok()
}

fn complete(acks: Vec<Ack>, durable: bool) {
    for a in acks {
        let _ = a.send(durable);
    }
}

/// The courier task's hold on the courier: when the task ends (its runtime shuts down), what
/// it had not done yet is done here, and callers do their own hand-over from then on.
struct Running {
    courier: Arc<Courier>,
    writer: Sender<Msg>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.courier.round(&self.writer, false);
    }
}

async fn run(task: Running) {
    loop {
        task.courier.wake.notified().await;
        task.courier.round(&task.writer, true);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Receiver};

    use super::*;
    use crate::audit::record::LifecycleRecord;

    fn record(event: &str) -> Record {
        Record::Lifecycle(LifecycleRecord {
            event: event.into(),
            version: "test".into(),
            config_sha256: None,
            detail: None,
        })
    }

    /// The events of each message the writer received, in order.
    fn received(rx: &Receiver<Msg>) -> Vec<Vec<String>> {
        rx.try_iter()
            .map(|m| match m {
                Msg::Records(b) => b
                    .into_iter()
                    .map(|(r, _)| match r {
                        Record::Lifecycle(l) => l.event,
                        _ => String::new(),
                    })
                    .collect(),
                Msg::Shutdown(_) => vec!["shutdown".into()],
            })
            .collect()
    }

    #[test]
    fn records_of_one_turn_reach_the_writer_in_one_batch() {
        let (tx, rx) = channel();
        let courier = Arc::<Courier>::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let tasks: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .map(|e| {
                    let (c, tx) = (courier.clone(), tx.clone());
                    tokio::spawn(async move { assert!(c.post(&tx, record(e), None)) })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            tokio::task::yield_now().await;
            assert_eq!(received(&rx), vec![vec!["a", "b", "c"]]);
            // A shutdown goes after what is still in the outbox.
            assert!(courier.post(&tx, record("d"), None));
            assert!(courier.send_after_queued(&tx, Msg::Shutdown(channel().0)));
            assert_eq!(received(&rx), vec![vec!["d"], vec!["shutdown"]]);
        });
    }

    #[test]
    fn without_a_runtime_records_go_at_once_and_in_order() {
        let (tx, rx) = channel();
        let courier = Arc::<Courier>::default();
        assert!(courier.post(&tx, record("a"), None));
        assert!(courier.post(&tx, record("b"), None));
        assert_eq!(received(&rx), vec![vec!["a"], vec!["b"]]);
        drop(rx);
        assert!(!courier.post(&tx, record("c"), None), "writer gone");
    }

    #[test]
    fn acknowledgements_complete_on_the_runtime_and_after_it_ends() {
        let (tx, _rx) = channel();
        let courier = Arc::<Courier>::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (ack, wait) = tokio::sync::oneshot::channel();
        rt.block_on(async {
            // The first record on the runtime starts the courier.
            assert!(courier.post(&tx, record("a"), None));
            let c = courier.clone();
            std::thread::spawn(move || c.acknowledge(vec![ack], true))
                .join()
                .expect("syncer");
            assert_eq!(wait.await, Ok(true));
        });
        drop(rt);
        // The courier ended with its runtime: acknowledgements complete where they are given.
        let (ack, mut wait) = tokio::sync::oneshot::channel();
        courier.acknowledge(vec![ack], false);
        assert_eq!(wait.try_recv(), Ok(false));
    }
}
