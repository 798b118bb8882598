//! The results table.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::options::{Options, Scenario, Target};
use super::parse::WrkResult;
use super::procs::Tools;

/// The median of the rounds by requests/s (the upper one for an even count).
pub(super) fn median(rounds: &[WrkResult]) -> WrkResult {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted.get(sorted.len() / 2).cloned().unwrap_or_default()
}

/// The results table (Markdown), with the settings it was measured with.
pub(super) fn report(
    opts: &Options,
    versions: &str,
    pinning: &str,
    background: &str,
    results: &[Vec<Vec<WrkResult>>],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## moat bench\n");
    let tool = if opts.h2 {
        format!(
            "h2load -t1 -c{} -m10 -D{} (HTTP/2 to the proxies; --h1 -m1 to the upstream); \
             latency columns are mean and max, not p50 and p99",
            opts.connections, opts.duration
        )
    } else {
        format!(
            "wrk -t1 -c{} -d{}s --latency (HTTP/1.1)",
            opts.connections, opts.duration
        )
    };
    let _ = writeln!(
        s,
        "{tool}, {}s warm-up, {} round(s) (median by req/s shown); moat audit fsync = \"{}\"; \
         pinning: {pinning}",
        opts.warmup, opts.rounds, opts.fsync
    );
    let _ = writeln!(s, "{versions}");
    let worst = results
        .iter()
        .flatten()
        .flatten()
        .filter_map(|r| r.other_cpu)
        .fold(0.0_f64, f64::max);
    let _ = writeln!(
        s,
        "{background}; most CPU used by other processes during a measured run: {worst:.0}% of a \
         core\n"
    );
    let _ = writeln!(
        s,
        "| scenario | upstream direct req/s | moat req/s | p50 ms | p99 ms | CPU % | nginx req/s \
         | p50 ms | p99 ms | CPU % | moat/nginx req/s | moat/nginx req per CPU-s |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let cpu = |r: &WrkResult| r.server_cpu.map_or("?".into(), |c| format!("{c:.0}"));
    for (si, scenario) in Scenario::ALL.iter().enumerate() {
        let m = |t: Target| {
            let ti = Target::ALL.iter().position(|x| *x == t).unwrap_or(0);
            median(&results[si][ti])
        };
        let (d, mo, ng) = (m(Target::Direct), m(Target::Moat), m(Target::Nginx));
        let ratio = if ng.rps > 0.0 { mo.rps / ng.rps } else { 0.0 };
        let per_cpu = mo
            .per_cpu_second()
            .zip(ng.per_cpu_second())
            .map_or("?".into(), |(a, b)| format!("{:.2}", a / b));
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {} |",
            scenario.label(),
            d.rps,
            mo.rps,
            mo.p50_ms,
            mo.p99_ms,
            cpu(&mo),
            ng.rps,
            ng.p50_ms,
            ng.p99_ms,
            cpu(&ng),
            ratio,
            per_cpu
        );
    }
    let _ = writeln!(
        s,
        "\nCPU % is the CPU time the proxy process used during the run, in percent of one core: \
         below ~95 the proxy was not the bottleneck (the load generator or the upstream was), \
         and req/s understates what it can do; the last column compares requests per CPU-second."
    );
    s
}

/// Versions of the programs measured and the machine, for the report.
pub(super) fn versions(tools: &Tools, moat: &Path) -> String {
    let first_line = |cmd: &mut Command| {
        cmd.output()
            .map(|o| {
                let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.push_str(&String::from_utf8_lossy(&o.stderr));
                t.lines().next().unwrap_or("?").trim().to_owned()
            })
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    let nginx = first_line(Command::new(&tools.nginx).arg("-v"));
    let wrk = first_line(Command::new(&tools.wrk).arg("-v"));
    let moat_v = first_line(Command::new(moat).arg("--version"));
    let rev = first_line(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(crate::root()),
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!(
        "{moat_v} (git {rev}); {nginx}; {wrk}; {cpus} CPUs ({cpu_model}); Linux {kernel}",
        wrk = wrk.split(" Copyright").next().unwrap_or(&wrk).trim()
    )
}
