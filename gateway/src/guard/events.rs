//! Refusal events: read continuously from the ring buffer, coalesced, logged.
//!
//! A flood (one process hammering one destination) must neither flood the log nor hide other
//! refusals: events with the same process, destination, hook and verdict are counted during a
//! short window and written as one line with a repeat count. Events the kernel could not write
//! (ring buffer full) are counted there and reported here as lost; nothing is dropped silently.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use moat_common::{counter, hook, map, proto, verdict, Event};
use tokio::io::unix::AsyncFd;

/// A refusal (or monitored would-be refusal), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// User id.
    pub uid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port (0 when none).
    pub port: u16,
    /// `tcp`, `udp`, `icmp`, … or the protocol number.
    pub protocol: String,
    /// `refused` or `monitored`.
    pub verdict: &'static str,
    /// Which hook saw it.
    pub hook: &'static str,
}

impl Refusal {
    /// Decodes a ring-buffer record; `None` if it is not a whole event.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Event>() {
            return None;
        }
        // SAFETY-free decode: `Event` is plain old data; read it unaligned from the record.
        let mut ev = Event::default();
        let raw = &bytes[..size_of::<Event>()];
        copy_into(&mut ev, raw);
        let d = ev.dest;
        let addr = if d.family == 4 {
            IpAddr::V4(Ipv4Addr::new(d.addr[0], d.addr[1], d.addr[2], d.addr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(d.addr))
        };
        let comm_len = ev
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(ev.comm.len());
        Some(Self {
            pid: ev.pid,
            comm: String::from_utf8_lossy(&ev.comm[..comm_len]).into_owned(),
            uid: ev.uid,
            cgroup_id: ev.cgroup_id,
            addr,
            port: d.port,
            protocol: protocol_name(d.proto),
            verdict: if ev.verdict == verdict::MONITORED {
                "monitored"
            } else {
                "refused"
            },
            hook: match ev.hook {
                hook::CONNECT4 | hook::CONNECT6 => "connect",
                hook::SENDMSG4 | hook::SENDMSG6 => "sendmsg",
                _ => "egress",
            },
        })
    }
}

/// Copies a record's bytes into an `Event` field by field (records are not aligned for it).
fn copy_into(ev: &mut Event, raw: &[u8]) {
    let u32_at = |o: usize| u32::from_ne_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    ev.pid = u32_at(0);
    ev.tid = u32_at(4);
    ev.uid = u32_at(8);
    let mut cg = [0u8; 8];
    cg.copy_from_slice(&raw[16..24]);
    ev.cgroup_id = u64::from_ne_bytes(cg);
    ev.dest.addr.copy_from_slice(&raw[24..40]);
    ev.dest.port = u16::from_ne_bytes([raw[40], raw[41]]);
    ev.dest.family = raw[42];
    ev.dest.proto = raw[43];
    ev.verdict = raw[44];
    ev.hook = raw[45];
    ev.comm.copy_from_slice(&raw[48..64]);
}

/// Name of an IP protocol number.
pub fn protocol_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// Counts repeats of the same refusal within a window.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: HashMap<Refusal, u64>,
}

impl Coalescer {
    /// Adds one event; returns it when it is the first of its kind in this window (logged at
    /// once, so a single refusal is never delayed).
    pub fn add(&mut self, r: Refusal) -> Option<Refusal> {
        match self.pending.get_mut(&r) {
            Some(n) => {
                *n += 1;
                None
            }
            None => {
                self.pending.insert(r.clone(), 0);
                Some(r)
            }
        }
    }

    /// Ends the window: every refusal that repeated, with how many times after the first.
    pub fn flush(&mut self) -> Vec<(Refusal, u64)> {
        self.pending.drain().filter(|(_, n)| *n > 0).collect()
    }
}

/// Logs one refusal line and hands the same facts to the audit trail.
pub fn log(r: &Refusal, repeats: u64, audit: &crate::audit::Auditor) {
    let _ = audit.record(crate::audit::Record::Guard(
        crate::audit::record::GuardRecord {
            verdict: r.verdict.to_owned(),
            hook: r.hook.to_owned(),
            pid: r.pid,
            comm: r.comm.clone(),
            uid: r.uid,
            cgroup_id: r.cgroup_id,
            addr: r.addr.to_string(),
            port: r.port,
            protocol: r.protocol.clone(),
            repeats,
        },
    ));
    tracing::warn!(
        target: "moat::guard",
        verdict = r.verdict,
        hook = r.hook,
        pid = r.pid,
        comm = %r.comm,
        uid = r.uid,
        cgroup_id = r.cgroup_id,
        addr = %r.addr,
        port = r.port,
        protocol = %r.protocol,
        repeats,
        "egress {}", r.verdict
    );
}

/// Reads events until the task is dropped. `counters` is the pinned counters map, read to
/// report lost events.
pub async fn run(events: Map, counters: Option<Map>, audit: crate::audit::Auditor) {
    let ring = match RingBuf::try_from(events) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(target: "moat::guard", error = %e, "cannot read guard events");
            return;
        }
    };
    // The ring buffer owns its descriptor for as long as the AsyncFd exists, which is the I/O
    // safety `AsyncFd::new` cannot check by itself.
    #[expect(
        deprecated,
        reason = "the safe constructor; its replacement is an unsafe fn"
    )]
    let registered = AsyncFd::with_interest(ring, tokio::io::Interest::READABLE);
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(target: "moat::guard", error = %e, "cannot poll guard events");
            return;
        }
    };
    let counters: Option<PerCpuArray<MapData, u64>> =
        counters.and_then(|m| PerCpuArray::try_from(m).ok());
    let mut lost_seen = lost(counters.as_ref());
    let mut coalescer = Coalescer::default();
    let mut window = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(r) = Refusal::decode(&item) {
                        crate::metrics::METRICS
                            .guard_refusals
                            .get_or_create(&crate::metrics::GuardLabels {
                                hook: r.hook.to_owned(),
                            })
                            .inc();
                        if let Some(first) = coalescer.add(r) {
                            log(&first, 0, &audit);
                        }
                    }
                }
                guard.clear_ready();
            }
            _ = window.tick() => {
                for (r, n) in coalescer.flush() {
                    log(&r, n, &audit);
                }
                let now = lost(counters.as_ref());
                if now > lost_seen {
                    tracing::warn!(target: "moat::guard", lost = now - lost_seen, "guard events lost (ring buffer full); counters still count every refusal");
                    lost_seen = now;
                }
            }
        }
    }
}

fn lost(counters: Option<&PerCpuArray<MapData, u64>>) -> u64 {
    counters
        .and_then(|c| c.get(&counter::EVENTS_LOST, 0).ok())
        .map_or(0, |v| v.iter().sum())
}

/// Opens the pinned counters map (for [`run`]).
pub fn pinned_counters(pin_dir: &std::path::Path) -> Option<Map> {
    MapData::from_pin(super::fence::maps_dir(pin_dir).join(map::COUNTERS))
        .ok()
        .map(Map::PerCpuArray)
}
