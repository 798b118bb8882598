//! `cgroup_skb/egress`: the backstop. Every packet leaving the cgroup is judged by destination,
//! which catches what the socket hooks cannot see (raw sockets, ICMP, sockets connected before
//! the guard attached). Dropped packets are counted per destination.
//!
//! Replies on connections accepted from outside (a listener serving remote clients) pass when
//! the packet is TCP from a socket whose local port is in `SERVE_PORTS` and that did not itself
//! initiate the connection: such sockets can only come from `accept()`, since an outgoing
//! `connect()` from a bound serve port is still judged by `cgroup/connect4|6`.

use aya_ebpf::macros::cgroup_skb;
use aya_ebpf::programs::SkBuffContext;
use moat_common::{counter, hook, proto, Dest};

use crate::{allowed, count, dest_v6, current_mode, Mode, ALLOW, DROPS, REFUSE, SERVE_PORTS};

/// `TCP_SYN_SENT` in the kernel's TCP state numbering.
const TCP_SYN_SENT: u32 = 2;

#[cgroup_skb]
pub fn moat_egress(ctx: SkBuffContext) -> i32 {
    match try_egress(&ctx) {
        Ok(verdict) => verdict,
        // Fail closed: a packet that cannot be read cannot be judged.
        Err(()) => {
            count(counter::ERRORS);
            REFUSE
        }
    }
}

/// Destination and source port of a packet.
struct Parsed {
    dest: Dest,
    src_port: u16,
}

#[inline(always)]
fn try_egress(ctx: &SkBuffContext) -> Result<i32, ()> {
    let first: u8 = ctx.load(0).map_err(|_| ())?;
    let parsed = match first >> 4 {
        4 => parse_v4(ctx, first)?,
        6 => parse_v6(ctx)?,
        // Not IP (cannot leave through an IP route anyway): nothing to judge.
        _ => return Ok(ALLOW),
    };
    if allowed(&parsed.dest) {
        return Ok(ALLOW);
    }
    if parsed.dest.proto == proto::TCP && is_served_reply(ctx, parsed.src_port) {
        return Ok(ALLOW);
    }
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_skb_cgroup_id(ctx.skb.skb) };
    match current_mode() {
        Some(Mode::Monitor) => {
            count(counter::PACKETS_MONITORED);
            crate::report(&parsed.dest, moat_common::verdict::MONITORED, hook::EGRESS, None, cgroup_id);
            Ok(ALLOW)
        }
        Some(Mode::Enforce) => {
            count(counter::PACKETS_DROPPED);
            count_drop(&parsed.dest);
            crate::report(&parsed.dest, moat_common::verdict::REFUSED, hook::EGRESS, None, cgroup_id);
            Ok(REFUSE)
        }
        None => Err(()),
    }
}

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext, first: u8) -> Result<Parsed, ()> {
    let ihl = usize::from(first & 0x0f) * 4;
    let protocol: u8 = ctx.load(9).map_err(|_| ())?;
    let daddr: [u8; 4] = ctx.load(16).map_err(|_| ())?;
    let frag: u16 = u16::from_be(ctx.load(6).map_err(|_| ())?);
    let mut addr = [0u8; 16];
    addr[0] = daddr[0];
    addr[1] = daddr[1];
    addr[2] = daddr[2];
    addr[3] = daddr[3];
    // Only the first fragment carries ports; later fragments are judged with port 0.
    let (src_port, port) = if frag & 0x1fff == 0 && (protocol == proto::TCP || protocol == proto::UDP) {
        ports(ctx, ihl)?
    } else {
        (0, 0)
    };
    Ok(Parsed { dest: Dest { addr, port, family: 4, proto: protocol }, src_port })
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext) -> Result<Parsed, ()> {
    let next: u8 = ctx.load(6).map_err(|_| ())?;
    let daddr: [u8; 16] = ctx.load(24).map_err(|_| ())?;
    // Extension headers are not walked: such packets are judged with port 0.
    let (src_port, port) = if next == proto::TCP || next == proto::UDP { ports(ctx, 40)? } else { (0, 0) };
    Ok(Parsed { dest: dest_v6(daddr, port, next), src_port })
}

#[inline(always)]
fn ports(ctx: &SkBuffContext, l4: usize) -> Result<(u16, u16), ()> {
    let src: u16 = ctx.load(l4).map_err(|_| ())?;
    let dst: u16 = ctx.load(l4 + 2).map_err(|_| ())?;
    Ok((u16::from_be(src), u16::from_be(dst)))
}

/// Whether this TCP packet comes from a socket serving a configured local port (a reply on an
/// accepted connection, a SYN-ACK from a listener).
#[inline(always)]
fn is_served_reply(ctx: &SkBuffContext, src_port: u16) -> bool {
    if unsafe { SERVE_PORTS.get(&src_port) }.is_none() {
        return false;
    }
    // SAFETY: `sk` is a field of the context the kernel passed; it may be null, checked below.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // `src_port` and `state` are readable on every socket kind (full, request, timewait).
    let (sk_port, state) = unsafe { ((*sk).src_port, (*sk).state) };
    sk_port == u32::from(src_port) && state != TCP_SYN_SENT
}

/// Adds one to the drop counter of a destination.
#[inline(always)]
fn count_drop(dest: &Dest) {
    match DROPS.get_ptr_mut(dest) {
        // SAFETY: a valid map value pointer; a racing increment on another CPU can be lost,
        // which only makes a counter low by one.
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = DROPS.insert(dest, &1, 0);
        }
    }
}
