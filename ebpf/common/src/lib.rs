//! Types shared by the guard's kernel programs (`moat-ebpf`) and its userspace side (`moat`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so both sides agree on the bytes.
//! Map and program names are constants, so userspace never spells a name the kernel side did
//! not define.
#![no_std]

/// Program names (the kernel functions' names, which aya uses to find them).
pub mod program {
    /// `cgroup/connect4`.
    pub const CONNECT4: &str = "moat_connect4";
    /// `cgroup/connect6`.
    pub const CONNECT6: &str = "moat_connect6";
    /// `cgroup/sendmsg4`.
    pub const SENDMSG4: &str = "moat_sendmsg4";
    /// `cgroup/sendmsg6`.
    pub const SENDMSG6: &str = "moat_sendmsg6";
    /// `cgroup_skb/egress`.
    pub const EGRESS: &str = "moat_egress";
    /// Every program, in attach order (the packet backstop first, so no gap opens while the
    /// socket hooks are attached).
    pub const ALL: [&str; 5] = [EGRESS, CONNECT4, CONNECT6, SENDMSG4, SENDMSG6];
}

/// Map names.
pub mod map {
    /// `LpmTrie<[u8; 4], Allow>`: IPv4 allow-list (address in network order).
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// `LpmTrie<[u8; 16], Allow>`: IPv6 allow-list.
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// `HashMap<u16, u8>`: local TCP ports whose replies may leave (listeners serving clients).
    pub const SERVE_PORTS: &str = "SERVE_PORTS";
    /// `Array<u32>`: settings, indexed by [`crate::config`].
    pub const CONFIG: &str = "CONFIG";
    /// `PerCpuArray<u64>`: counters, indexed by [`crate::counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `LruHashMap<Dest, u64>`: packets dropped by the backstop, per destination.
    pub const DROPS: &str = "DROPS";
    /// `RingBuf` of [`crate::Event`].
    pub const EVENTS: &str = "EVENTS";
    /// Every map, for pinning.
    pub const ALL: [&str; 7] = [
        ALLOW_V4,
        ALLOW_V6,
        SERVE_PORTS,
        CONFIG,
        COUNTERS,
        DROPS,
        EVENTS,
    ];
}

/// Indexes into the `CONFIG` array.
pub mod config {
    /// The mode, one of [`crate::mode`].
    pub const MODE: u32 = 0;
    /// Number of entries.
    pub const LEN: u32 = 4;
}

/// Guard modes.
pub mod mode {
    /// Programs attached but everything allowed and nothing reported (never written by moat;
    /// an unset array slot reads as this, and the programs then fail closed).
    pub const UNSET: u32 = 0;
    /// Allow, but report what enforce would refuse.
    pub const MONITOR: u32 = 1;
    /// Refuse and report.
    pub const ENFORCE: u32 = 2;
}

/// Indexes into the `COUNTERS` per-CPU array.
pub mod counter {
    /// Connects or sends checked and allowed.
    pub const ALLOWED: u32 = 0;
    /// Connects or sends refused.
    pub const REFUSED: u32 = 1;
    /// Connects or sends that enforce mode would refuse, let through in monitor mode.
    pub const MONITORED: u32 = 2;
    /// Packets dropped by the egress backstop.
    pub const PACKETS_DROPPED: u32 = 3;
    /// Packets the backstop would drop, let through in monitor mode.
    pub const PACKETS_MONITORED: u32 = 4;
    /// Events that could not be written to the ring buffer (full).
    pub const EVENTS_LOST: u32 = 5;
    /// Internal errors (missing map entry and the like); the programs refused in each case.
    pub const ERRORS: u32 = 6;
    /// Number of counters.
    pub const LEN: u32 = 8;
}

/// Values of [`Event::verdict`].
pub mod verdict {
    /// Refused (enforce).
    pub const REFUSED: u8 = 1;
    /// Allowed, but enforce would have refused (monitor).
    pub const MONITORED: u8 = 2;
}

/// Values of [`Event::hook`].
pub mod hook {
    /// `connect()` on an IPv4 socket.
    pub const CONNECT4: u8 = 1;
    /// `connect()` on an IPv6 socket.
    pub const CONNECT6: u8 = 2;
    /// `sendmsg()`/`sendto()` on an unconnected IPv4 UDP socket.
    pub const SENDMSG4: u8 = 3;
    /// `sendmsg()`/`sendto()` on an unconnected IPv6 UDP socket.
    pub const SENDMSG6: u8 = 4;
    /// A packet caught by the egress backstop.
    pub const EGRESS: u8 = 5;
}

/// IP protocol numbers used in rules and events.
pub mod proto {
    /// Any protocol (rules only).
    pub const ANY: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// One port/protocol condition of an allow-list entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRule {
    /// Destination port in host byte order; 0 = any port.
    pub port: u16,
    /// IP protocol; [`proto::ANY`] = any.
    pub proto: u8,
    /// Padding, always 0.
    pub pad: u8,
}

impl PortRule {
    /// Whether a destination port and protocol satisfy this rule.
    #[inline(always)]
    pub fn matches(&self, port: u16, protocol: u8) -> bool {
        (self.port == 0 || self.port == port)
            && (self.proto == proto::ANY || self.proto == protocol)
    }
}

/// Most rules one prefix can carry (after userspace folds in the rules of wider prefixes).
pub const MAX_RULES: usize = 16;

/// The value of an allow-list entry: the port/protocol rules for one prefix, including those
/// inherited from every shorter prefix that covers it (an LPM lookup returns only the longest
/// match, so userspace folds them in).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    /// How many of `rules` are in use.
    pub count: u32,
    /// The rules; entries past `count` are ignored.
    pub rules: [PortRule; MAX_RULES],
}

impl Allow {
    /// Whether a destination port and protocol are allowed by this entry.
    #[inline(always)]
    pub fn permits(&self, port: u16, protocol: u8) -> bool {
        let mut i = 0;
        // A bounded loop the verifier can follow.
        while i < MAX_RULES {
            if (i as u32) < self.count && self.rules[i].matches(port, protocol) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// A destination, for per-destination drop counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Dest {
    /// Address: IPv4 in the first 4 bytes (network order), or IPv6.
    pub addr: [u8; 16],
    /// Destination port in host byte order (0 when the protocol has none).
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
}

/// A refusal (or, in monitor mode, what would have been one), as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Process id (thread group id) of the caller; for packets, of whatever task was current.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Padding, always 0.
    pub pad0: u32,
    /// cgroup v2 id of the caller.
    pub cgroup_id: u64,
    /// Where it tried to go.
    pub dest: Dest,
    /// One of [`verdict`].
    pub verdict: u8,
    /// One of [`hook`].
    pub hook: u8,
    /// Padding, always 0.
    pub pad1: [u8; 2],
    /// The task's command name, NUL-padded.
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
mod pod {
    #![expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    // SAFETY (all four): `#[repr(C)]`, only integer fields and arrays of them, padding made
    // explicit, so every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::PortRule {}
    unsafe impl aya::Pod for super::Allow {}
    unsafe impl aya::Pod for super::Dest {}
    unsafe impl aya::Pod for super::Event {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_fixed() {
        assert_eq!(size_of::<PortRule>(), 4);
        assert_eq!(size_of::<Allow>(), 4 + 4 * MAX_RULES);
        assert_eq!(size_of::<Dest>(), 20);
        assert_eq!(size_of::<Event>(), 64);
    }

    #[test]
    fn rules_match_port_and_protocol() {
        let mut a = Allow::default();
        a.rules[0] = PortRule {
            port: 53,
            proto: proto::UDP,
            pad: 0,
        };
        a.rules[1] = PortRule {
            port: 443,
            proto: proto::ANY,
            pad: 0,
        };
        a.count = 2;
        assert!(a.permits(53, proto::UDP));
        assert!(!a.permits(53, proto::TCP));
        assert!(a.permits(443, proto::TCP));
        assert!(!a.permits(80, proto::TCP));
        a.count = 1;
        assert!(!a.permits(443, proto::TCP), "rules past count are ignored");
        assert!(!Allow::default().permits(1, proto::TCP));
    }
}
