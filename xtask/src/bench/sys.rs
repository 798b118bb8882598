//! What the benchmark reads from `/proc`: CPU time of processes and of each CPU (steal time
//! included), a process's resident memory, and the open-files limit.

use std::fs;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Clock ticks of one CPU (or of all of them) from a `/proc/stat` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CpuTimes {
    /// Time spent running something: everything but idle, iowait and steal.
    pub(super) busy: u64,
    /// Time the hypervisor ran something else while this CPU wanted to run.
    pub(super) steal: u64,
    /// All of it (user, nice, system, idle, iowait, irq, softirq, steal).
    pub(super) total: u64,
}

/// The CPU lines of one read of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CpuSnapshot {
    /// The `cpu` line: the whole machine.
    pub(super) all: Option<CpuTimes>,
    /// The `cpuN` lines, as (N, times).
    pub(super) cores: Vec<(usize, CpuTimes)>,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` (empty when it cannot be read).
    pub(super) fn read() -> Self {
        fs::read_to_string("/proc/stat").map_or_else(|_| Self::default(), |t| Self::parse(&t))
    }

    pub(super) fn parse(text: &str) -> Self {
        let mut s = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(name) = words.next().and_then(|w| w.strip_prefix("cpu")) else {
                continue;
            };
            // user nice system idle iowait irq softirq steal (guest and guest_nice are already
            // counted in user and nice).
            let v: Vec<u64> = words.take(8).map_while(|x| x.parse().ok()).collect();
            if v.len() < 4 {
                continue;
            }
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let total: u64 = v.iter().sum();
            let steal = at(7);
            let times = CpuTimes {
                busy: total.saturating_sub(at(3) + at(4) + steal),
                steal,
                total,
            };
            if name.is_empty() {
                s.all = Some(times);
            } else if let Ok(n) = name.parse() {
                s.cores.push((n, times));
            }
        }
        s
    }

    /// The times of CPU `cpu`, or of the whole machine for `None`.
    pub(super) fn cpu(&self, cpu: Option<usize>) -> Option<CpuTimes> {
        match cpu {
            None => self.all,
            Some(n) => self.cores.iter().find(|(c, _)| *c == n).map(|(_, t)| *t),
        }
    }
}

/// Steal time between two reads, in percent of that CPU's time; `None` when no time passed.
pub(super) fn steal_pct(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total).filter(|t| *t > 0)?;
    Some(after.steal.saturating_sub(before.steal) as f64 * 100.0 / total as f64)
}

/// Busy time between two reads, in percent of that CPU's time; `None` when no time passed.
pub(super) fn busy_pct(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total).filter(|t| *t > 0)?;
    Some(after.busy.saturating_sub(before.busy) as f64 * 100.0 / total as f64)
}

/// Fields 14 and 15 (`utime`, `stime`) or 16 and 17 (`cutime`, `cstime`) of a `stat` file,
/// added up.
fn stat_ticks(path: &str, skip: usize) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(skip);
    let a: u64 = fields.next()?.parse().ok()?;
    let b: u64 = fields.next()?.parse().ok()?;
    Some(a + b)
}

/// CPU time (user + system, in clock ticks) a process has used so far.
pub(super) fn process_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"), 11)
}

/// CPU time (user + system, in clock ticks) this process has used so far, all threads.
pub(super) fn own_ticks() -> Option<u64> {
    stat_ticks("/proc/self/stat", 11)
}

/// CPU time (user + system, in clock ticks) of this process's waited-for children so far.
pub(super) fn reaped_children_ticks() -> Option<u64> {
    stat_ticks("/proc/self/stat", 13)
}

/// How busy the machine is while the benchmark is idle (percent of all CPUs over one second),
/// with a warning when other processes would disturb the figures.
pub(super) fn background_load() -> f64 {
    let before = CpuSnapshot::read();
    sleep(Duration::from_secs(1));
    let after = CpuSnapshot::read();
    let pct = before
        .cpu(None)
        .zip(after.cpu(None))
        .and_then(|(b, a)| busy_pct(b, a))
        .unwrap_or(0.0);
    if pct > 10.0 {
        eprintln!(
            "bench: WARNING: the machine is {pct:.0}% busy with other work while the benchmark \
             is idle; the figures will be noisy"
        );
    }
    pct
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub(super) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(n)
}

/// Resident memory of a process, in KiB.
pub(super) fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// The soft and hard "Max open files" of a `/proc/PID/limits` text (`None` for unlimited).
pub(super) fn parse_nofile(limits: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    let mut words = rest.split_whitespace();
    let mut limit = || -> Option<Option<u64>> {
        match words.next()? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some((limit()?, limit()?))
}

/// Raises this process's soft open-files limit to at least `need` (children inherit it), with
/// `prlimit` since the workspace forbids the unsafe call.
pub(super) fn ensure_nofile(need: u64) -> Result<()> {
    let limits =
        fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    let (soft, hard) =
        parse_nofile(&limits).context("no \"Max open files\" line in /proc/self/limits")?;
    if soft.is_none_or(|s| s >= need) {
        return Ok(());
    }
    if hard.is_some_and(|h| h < need) {
        bail!(
            "the open-files hard limit is {} but the benchmark needs {need}: raise it (ulimit -Hn) \
             or lower --idle-connections",
            hard.unwrap_or_default()
        );
    }
    let hard = hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
    let mut cmd = Command::new("prlimit");
    cmd.arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={need}:{hard}"));
    crate::run(&mut cmd).context("cannot raise the open-files limit")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_BEFORE: &str = "cpu  1000 0 500 8000 100 0 50 200 0 0
cpu0 600 0 300 3900 50 0 30 20 0 0
cpu1 400 0 200 4100 50 0 20 180 0 0
intr 12345
ctxt 999
";
    const STAT_AFTER: &str = "cpu  1180 0 560 8090 100 0 60 260 0 0
cpu0 690 0 330 3960 50 0 40 30 0 0
cpu1 490 0 230 4180 50 0 20 230 0 0
";

    #[test]
    fn reads_cpu_lines() {
        let s = CpuSnapshot::parse(STAT_BEFORE);
        assert_eq!(s.cores.len(), 2);
        let cpu1 = s.cpu(Some(1)).expect("cpu1");
        assert_eq!(cpu1.total, 400 + 200 + 4100 + 50 + 20 + 180);
        assert_eq!(cpu1.steal, 180);
        assert_eq!(
            cpu1.busy,
            400 + 200 + 20,
            "idle, iowait and steal are not busy"
        );
        assert_eq!(s.cpu(None).map(|t| t.steal), Some(200));
        assert_eq!(s.cpu(Some(7)), None);
    }

    #[test]
    fn steal_between_two_snapshots() -> Result<()> {
        let (b, a) = (
            CpuSnapshot::parse(STAT_BEFORE),
            CpuSnapshot::parse(STAT_AFTER),
        );
        let core = |s: &CpuSnapshot, n| s.cpu(n).context("no such cpu");
        // cpu1: total advanced 90 + 30 + 80 + 50 = 250 ticks, 50 of them stolen.
        let steal = steal_pct(core(&b, Some(1))?, core(&a, Some(1))?).context("no time")?;
        assert!((steal - 20.0).abs() < 1e-9, "{steal}");
        // cpu1 busy: 90 + 30 = 120 of 250.
        let busy = busy_pct(core(&b, Some(1))?, core(&a, Some(1))?).context("no time")?;
        assert!((busy - 48.0).abs() < 1e-9, "{busy}");
        // The whole machine: 60 of 400 ticks.
        let all = steal_pct(core(&b, None)?, core(&a, None)?).context("no time")?;
        assert!((all - 15.0).abs() < 1e-9, "{all}");
        // No time passed: no figure rather than a division by zero.
        assert_eq!(steal_pct(core(&a, Some(1))?, core(&a, Some(1))?), None);
        Ok(())
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tnginx\nVmPeak:\t  20000 kB\nVmRSS:\t    8312 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(8312));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }

    #[test]
    fn reads_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_nofile(limits), Some((Some(1024), Some(524_288))));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(unlimited), Some((None, None)));
        assert_eq!(parse_nofile("Max processes 10 10\n"), None);
    }
}
