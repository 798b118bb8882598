//! `cgroup/connect4|6` and `cgroup/sendmsg4|6`: judge a socket's destination in the caller's
//! context, so the refusal is an EPERM from the syscall and the event names the process.

use aya_ebpf::macros::cgroup_sock_addr;
use aya_ebpf::programs::SockAddrContext;
use moat_common::{counter, hook, Dest};

use crate::{allowed, count, dest_v6, not_allowed, Task, ALLOW};

#[cgroup_sock_addr(connect4)]
pub fn moat_connect4(ctx: SockAddrContext) -> i32 {
    judge_v4(&ctx, hook::CONNECT4)
}

#[cgroup_sock_addr(connect6)]
pub fn moat_connect6(ctx: SockAddrContext) -> i32 {
    judge_v6(&ctx, hook::CONNECT6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn moat_sendmsg4(ctx: SockAddrContext) -> i32 {
    judge_v4(&ctx, hook::SENDMSG4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn moat_sendmsg6(ctx: SockAddrContext) -> i32 {
    judge_v6(&ctx, hook::SENDMSG6)
}

#[inline(always)]
fn judge_v4(ctx: &SockAddrContext, hook: u8) -> i32 {
    // SAFETY: the kernel hands every cgroup/sock_addr program a valid `bpf_sock_addr`.
    let sa = unsafe { &*ctx.sock_addr };
    let ip = sa.user_ip4.to_ne_bytes(); // network order as stored
    let mut addr = [0u8; 16];
    addr[0] = ip[0];
    addr[1] = ip[1];
    addr[2] = ip[2];
    addr[3] = ip[3];
    let dest = Dest { addr, port: u16::from_be(sa.user_port as u16), family: 4, proto: sa.protocol as u8 };
    judge(&dest, hook)
}

#[inline(always)]
fn judge_v6(ctx: &SockAddrContext, hook: u8) -> i32 {
    // SAFETY: as in `judge_v4`.
    let sa = unsafe { &*ctx.sock_addr };
    let mut addr = [0u8; 16];
    let w0 = sa.user_ip6[0].to_ne_bytes();
    let w1 = sa.user_ip6[1].to_ne_bytes();
    let w2 = sa.user_ip6[2].to_ne_bytes();
    let w3 = sa.user_ip6[3].to_ne_bytes();
    let mut i = 0;
    while i < 4 {
        addr[i] = w0[i];
        addr[4 + i] = w1[i];
        addr[8 + i] = w2[i];
        addr[12 + i] = w3[i];
        i += 1;
    }
    let dest = dest_v6(addr, u16::from_be(sa.user_port as u16), sa.protocol as u8);
    judge(&dest, hook)
}

#[inline(always)]
fn judge(dest: &Dest, hook: u8) -> i32 {
    if allowed(dest) {
        count(counter::ALLOWED);
        return ALLOW;
    }
    // SAFETY: a helper without arguments, allowed in cgroup/sock_addr programs.
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
    not_allowed(dest, hook, Some(Task::current()), cgroup_id)
}
