//! What the benchmark reads from `/proc`: CPU time of processes and of each CPU.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

/// CPU time (user + system, in clock ticks) a process has used so far.
pub(super) fn process_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime are
    // fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system, in clock ticks) of this process's waited-for children so far.
pub(super) fn reaped_children_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // cutime and cstime are fields 16 and 17.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(13);
    let cutime: u64 = fields.next()?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    Some(cutime + cstime)
}

/// How busy the machine is while the benchmark is idle (percent of all CPUs over one second),
/// with a warning when other processes would disturb the figures.
pub(super) fn background_load() -> f64 {
    let before = core_ticks();
    sleep(Duration::from_secs(1));
    let after = core_ticks();
    let (busy, total) = before
        .iter()
        .zip(&after)
        .fold((0, 0), |(busy, total), (b, a)| {
            (
                busy + a.0.saturating_sub(b.0),
                total + a.1.saturating_sub(b.1),
            )
        });
    let pct = if total == 0 {
        0.0
    } else {
        busy as f64 * 100.0 / total as f64
    };
    if pct > 10.0 {
        eprintln!(
            "bench: WARNING: the machine is {pct:.0}% busy with other work while the benchmark \
             is idle; the figures will be noisy"
        );
    }
    pct
}

/// (busy, total) clock ticks of each CPU so far, from /proc/stat.
pub(super) fn core_ticks() -> Vec<(u64, u64)> {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            // user nice system idle iowait irq softirq steal
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}
