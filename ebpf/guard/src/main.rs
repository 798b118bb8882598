//! moat's egress guard, kernel side.
//!
//! Attached to the model workload's cgroup (or a host's cgroup v2 root), these programs let a
//! process reach only allowed destinations:
//! - `cgroup/connect4|6` judge every `connect()` (TCP, and UDP sockets being connected);
//! - `cgroup/sendmsg4|6` judge every `sendmsg()`/`sendto()` on an unconnected UDP socket;
//! - `cgroup_skb/egress` judges every packet leaving the cgroup: the backstop for raw sockets,
//!   ICMP, and sockets connected before the guard attached.
//!
//! A destination is allowed when the LPM allow-list holds a prefix covering its address with a
//! port/protocol rule that matches. IPv4-mapped IPv6 addresses are judged as IPv4. In monitor
//! mode everything passes but would-be refusals are still reported.
//!
//! Every program fails closed: a missing map entry or an unreadable packet is a refusal.
#![no_std]
#![no_main]

mod egress;
mod sock_addr;

use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::macros::map;
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf};
use moat_common::{config, counter, mode, Allow, Dest, Event};

#[map]
static ALLOW_V4: LpmTrie<[u8; 4], Allow> = LpmTrie::with_max_entries(4096, BPF_F_NO_PREALLOC);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], Allow> = LpmTrie::with_max_entries(4096, BPF_F_NO_PREALLOC);
#[map]
static SERVE_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(256, 0);
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);
#[map]
static DROPS: LruHashMap<Dest, u64> = LruHashMap::with_max_entries(4096, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Program return values for cgroup hooks.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

/// What to do with a destination the allow-list does not cover.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Enforce,
    Monitor,
}

/// The configured mode; `None` (unset or unreadable) means the caller must fail closed.
#[inline(always)]
fn current_mode() -> Option<Mode> {
    match CONFIG.get(config::MODE) {
        Some(&mode::ENFORCE) => Some(Mode::Enforce),
        Some(&mode::MONITOR) => Some(Mode::Monitor),
        _ => None,
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, so no other program writes it concurrently.
        unsafe { *c += 1 };
    }
}

/// Whether `dest` (port and protocol included) is on the allow-list.
#[inline(always)]
fn allowed(dest: &Dest) -> bool {
    let entry = if dest.family == 4 {
        let a = [dest.addr[0], dest.addr[1], dest.addr[2], dest.addr[3]];
        ALLOW_V4.get(&Key::new(32, a))
    } else {
        ALLOW_V6.get(&Key::new(128, dest.addr))
    };
    match entry {
        Some(allow) => allow.permits(dest.port, dest.proto),
        None => false,
    }
}

/// Judges a destination the allow-list does not cover: count it, report it, and say whether it
/// may pass. Unset mode refuses.
#[inline(always)]
fn not_allowed(dest: &Dest, hook: u8, task: Option<Task>, cgroup_id: u64) -> i32 {
    match current_mode() {
        Some(Mode::Monitor) => {
            count(counter::MONITORED);
            report(dest, moat_common::verdict::MONITORED, hook, task, cgroup_id);
            ALLOW
        }
        Some(Mode::Enforce) => {
            count(counter::REFUSED);
            report(dest, moat_common::verdict::REFUSED, hook, task, cgroup_id);
            REFUSE
        }
        None => {
            count(counter::ERRORS);
            REFUSE
        }
    }
}

/// The calling task, where the hook runs in its context.
#[derive(Clone, Copy)]
struct Task {
    pid_tgid: u64,
    uid: u32,
    comm: [u8; 16],
}

impl Task {
    #[inline(always)]
    fn current() -> Self {
        Self {
            pid_tgid: aya_ebpf::helpers::bpf_get_current_pid_tgid(),
            uid: aya_ebpf::helpers::bpf_get_current_uid_gid() as u32,
            comm: aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]),
        }
    }
}

/// Writes an event; a full ring buffer is counted, never silent.
#[inline(always)]
fn report(dest: &Dest, verdict: u8, hook: u8, task: Option<Task>, cgroup_id: u64) {
    let Some(mut slot) = EVENTS.reserve::<Event>(0) else {
        count(counter::EVENTS_LOST);
        return;
    };
    let (pid_tgid, uid, comm) = match task {
        Some(t) => (t.pid_tgid, t.uid, t.comm),
        None => (0, 0, [0; 16]),
    };
    slot.write(Event {
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid,
        pad0: 0,
        cgroup_id,
        dest: *dest,
        verdict,
        hook,
        pad1: [0; 2],
        comm,
    });
    slot.submit(0);
}

/// Whether an IPv6 address is IPv4-mapped (`::ffff:a.b.c.d`).
#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[0] == 0
        && a[1] == 0
        && a[2] == 0
        && a[3] == 0
        && a[4] == 0
        && a[5] == 0
        && a[6] == 0
        && a[7] == 0
        && a[8] == 0
        && a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff
}

/// A destination from an IPv6 address, judged as IPv4 when it is IPv4-mapped.
#[inline(always)]
fn dest_v6(addr: [u8; 16], port: u16, proto: u8) -> Dest {
    if is_v4_mapped(&addr) {
        let mut v4 = [0u8; 16];
        v4[0] = addr[12];
        v4[1] = addr[13];
        v4[2] = addr[14];
        v4[3] = addr[15];
        Dest { addr: v4, port, family: 4, proto }
    } else {
        Dest { addr, port, family: 6, proto }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
