//! `cargo xtask bench-guard`: what the egress guard costs a process it fences.
//!
//! Everything runs on loopback (`127.0.0.1`) and in one child cgroup created for the run, never
//! the cgroup v2 root; all of it is torn down at the end, also on error (a Drop guard):
//!
//! 1. Needs root. Installs `bpftool` with apt-get when it is missing, builds the guard's kernel
//!    object (`cargo xtask build-ebpf`) and `moat` in release (which embeds it), and writes a
//!    certificate with `moat cert init` into a temporary directory.
//! 2. Creates the cgroup `<cgroup v2 mount>/moat-bench-<pid>` and starts, outside it, a listener
//!    that accepts and at once closes every connection, and a sink that reads and discards.
//! 3. For each round (`--rounds`, default 3) measures three configurations of that cgroup: no
//!    guard; the guard attached (`moat run` with `guard.mode = "enforce"`, `guard.cgroups` = the
//!    child cgroup, `allow = ["127.0.0.1/32"]`, pins in `/sys/fs/bpf/moat-bench-<pid>`); and the
//!    guard attached with `kernel.bpf_stats_enabled = 1`, which makes the kernel time every
//!    program run. moat is stopped and the fence detached (`moat guard detach`) at the end of
//!    every round, so every round loads fresh programs.
//! 4. Each configuration is measured by a probe *inside* the cgroup: this binary again (hidden
//!    subcommand `bench-guard __probe`), which first writes its own pid into the cgroup's
//!    `cgroup.procs`, then
//!    - opens `--connects` TCP connections (default 20,000, after a tenth as many unrecorded)
//!      to the listener one after another, timing `socket()` + `connect()` of each, then waiting
//!      for the listener's close; the figures are mean, p50 and p99;
//!    - streams over one connection to the sink for `--seconds` (default 5); the figure is the
//!      sink's MiB/s (bytes read over the time from the first byte to the end of the stream);
//!    - once per configuration, connects to `127.0.0.2` (not allowed) to check that the guard
//!      refuses (`EPERM`) exactly when it is attached.
//! 5. With stats on, reads `run_time_ns` and `run_cnt` of the programs attached to the cgroup
//!    (`bpftool -j cgroup show`, then `bpftool -j prog show id N`) before and after each phase, so
//!    the nanoseconds per run are those of that phase alone.
//!
//! Other work on the machine (builds, tests) is kept out of the figures: before each measurement
//! the benchmark waits until other processes have used under 5% of a CPU for 2 s in a row, and a
//! measurement during which they used over 10% of a CPU (from /proc/stat, less the ticks of this
//! process, its reaped children and moat) is taken again, up to 5 times; what was kept anyway is
//! named in the output. moat's own CPU use during the measurements is reported too. moat and this
//! program run from copies in the temporary directory, since a build elsewhere in the workspace
//! may replace the originals during the run.
//!
//! Figures are medians over the rounds, printed as Markdown tables on stdout (each round's raw
//! figures go to stderr). With two or more CPUs the probe runs on CPU 1 and everything else (this
//! process and its listener and sink threads, moat) on CPU 0, with `taskset`. Loopback TCP does
//! its transmit work (the eBPF programs included) and most of the receive path in the sending
//! task's context, so the probe's CPU carries the cost being measured.
//!
//! `kernel.bpf_stats_enabled` is set back to its old value after each stats phase and at the end.
//! An interrupted run (Ctrl-C) cannot clean up; the next run removes the cgroups and pins of runs
//! whose process is gone, but cannot know what `bpf_stats_enabled` was before: check it.
//!
//! Flags: `--connects N` (default 20000), `--seconds S` (default 5), `--rounds N` (default 3),
//! `--keep` to keep the temporary directory (moat's configuration and log).

use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, sleep, JoinHandle};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::bench::{apt_install, build_moat, find_tool, pinning};

use clock::Stopwatch;

/// The only address anything listens on; the one the guard allows.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// A loopback address the guard does not allow (the refusal check).
const NOT_ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The hidden subcommand that runs inside the cgroup.
const PROBE: &str = "__probe";
/// The guard's programs, as the kernel names them.
const PROGRAMS: [&str; 5] = [
    "moat_connect4",
    "moat_connect6",
    "moat_sendmsg4",
    "moat_sendmsg6",
    "moat_egress",
];
/// How long moat may take to attach and listen.
const STARTUP: Duration = Duration::from_secs(20);
/// Poll interval while waiting for a process.
const POLL: Duration = Duration::from_millis(20);
/// Longest any single socket operation may block.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of each write of the stream and each read of the sink.
const CHUNK: usize = 256 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

/// The real clock. The workspace bans `std::time::Instant` so that async code uses tokio's
/// pausable one; xtask has no tokio, and a benchmark needs the monotonic clock.
#[expect(
    clippy::disallowed_types,
    reason = "xtask has no tokio; a benchmark needs the real monotonic clock"
)]
mod clock {
    use std::time::{Duration, Instant};

    #[derive(Debug, Clone, Copy)]
    pub(super) struct Stopwatch(Instant);

    impl Stopwatch {
        pub(super) fn start() -> Self {
            Self(Instant::now())
        }

        pub(super) fn elapsed(self) -> Duration {
            self.0.elapsed()
        }
    }
}

/// Command-line settings.
#[derive(Debug, Clone)]
struct Options {
    connects: u64,
    seconds: u64,
    rounds: usize,
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            connects: 20_000,
            seconds: 5,
            rounds: 3,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--connects" => o.connects = crate::flag_number(&mut it, a)?,
                "--seconds" => o.seconds = crate::flag_number(&mut it, a)?,
                "--rounds" => o.rounds = crate::flag_number(&mut it, a)?,
                "--keep" => o.keep = true,
                _ => bail!(
                    "bench-guard: unknown argument {a:?}; flags: --connects N, --seconds S, \
                     --rounds N, --keep"
                ),
            }
        }
        ensure!(o.connects >= 100, "--connects must be at least 100");
        ensure!(o.seconds > 0, "--seconds must be at least 1");
        ensure!(o.rounds > 0, "--rounds must be at least 1");
        Ok(o)
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some(PROBE) {
        return probe(&args[1..]);
    }
    let opts = Options::parse(args)?;
    ensure!(
        is_root(),
        "bench-guard attaches eBPF programs and creates a cgroup: run it as root"
    );
    let tools = Tools::ensure()?;
    crate::ebpf::build()?;
    let moat = build_moat()?;
    if let Some(t) = &tools.taskset {
        // Threads started from now on (listener, sink) inherit CPU 0.
        let pid = std::process::id().to_string();
        let out = Command::new(t)
            .args(["-a", "-p", "-c", "0", &pid])
            .output()
            .context("taskset for this process")?;
        ensure!(
            out.status.success(),
            "taskset -a -p -c 0 {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    remove_stale()?;
    let mount = cgroup2_mount()?;
    let pid = std::process::id();
    let mut env = Env {
        dir: std::env::temp_dir().join(format!("moat-bench-guard-{pid}")),
        keep_dir: opts.keep,
        cgroup: None,
        pin_dir: PathBuf::from(format!("/sys/fs/bpf/moat-bench-{pid}")),
        moat_bin: moat,
        probe_bin: PathBuf::from("/proc/self/exe"),
        moat: None,
        stats_old: None,
    };
    let result = bench(&mut env, &opts, &tools, &mount);
    if result.is_err() {
        env.keep_dir = true;
    }
    if env.keep_dir {
        eprintln!(
            "bench-guard: configuration and moat's log kept in {}",
            env.dir.display()
        );
    }
    drop(env); // stops moat, empties and removes the cgroup, detaches, restores bpf_stats
    result
}

/// Whether this process runs as root (`Uid:` in /proc/self/status).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// External programs the benchmark uses.
struct Tools {
    bpftool: PathBuf,
    /// `taskset`, when present and there are at least two CPUs to pin to.
    taskset: Option<PathBuf>,
}

impl Tools {
    fn ensure() -> Result<Self> {
        if find_tool("bpftool").is_none() {
            eprintln!("bench-guard: bpftool not found; installing it with apt-get");
            apt_install(&["bpftool"])?;
        }
        let (taskset, cpus) = pinning();
        if taskset.is_none() {
            eprintln!(
                "bench-guard: WARNING: no CPU pinning ({cpus} CPUs); the probe shares its CPU \
                 with the listener and the sink"
            );
        }
        Ok(Self {
            bpftool: find_tool("bpftool").context("bpftool still not found after installing")?,
            taskset,
        })
    }

    /// A command for `program`, pinned to `cpu` when pinning is available.
    fn pinned(&self, cpu: u32, program: &Path) -> Command {
        match &self.taskset {
            Some(t) => {
                let mut c = Command::new(t);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// `bpftool -j ARGS` standard output.
    fn bpftool(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bpftool)
            .arg("-j")
            .args(args)
            .output()
            .with_context(|| format!("cannot run bpftool {}", args.join(" ")))?;
        ensure!(
            out.status.success(),
            "bpftool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The programs attached to `cgroup`: (id, name).
    fn attached(&self, cgroup: &Path) -> Result<Vec<(u64, String)>> {
        let path = cgroup.to_string_lossy();
        let text = self.bpftool(&["cgroup", "show", &path])?;
        Ok(text
            .split('{')
            .filter_map(|obj| Some((json_u64(obj, "id")?, json_str(obj, "name")?)))
            .collect())
    }

    /// Cumulative (run_time_ns, run_cnt) of each guard program attached to `cgroup`.
    fn stats(&self, cgroup: &Path) -> Result<Vec<(String, u64, u64)>> {
        let mut out = Vec::new();
        for (id, name) in self.attached(cgroup)? {
            if !PROGRAMS.contains(&name.as_str()) {
                continue;
            }
            let text = self.bpftool(&["prog", "show", "id", &id.to_string()])?;
            // Both fields are absent while a program has never run with stats on.
            let time = json_u64(&text, "run_time_ns").unwrap_or(0);
            let count = json_u64(&text, "run_cnt").unwrap_or(0);
            out.push((name, time, count));
        }
        Ok(out)
    }
}

/// The number after `"key":` in a flat JSON object's text.
fn json_u64(obj: &str, key: &str) -> Option<u64> {
    let at = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = obj[at..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":` in a flat JSON object's text (names need no unescaping).
fn json_str(obj: &str, key: &str) -> Option<String> {
    let at = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = obj[at..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// The cgroup v2 mount point, from /proc/mounts.
fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(PathBuf::from))
        .context("no cgroup v2 mount in /proc/mounts")
}

/// Removes the cgroups and pins of earlier runs whose process is gone (an interrupted run).
fn remove_stale() -> Result<()> {
    let stale = |dir: &Path| -> Vec<(PathBuf, String)> {
        fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let pid = name.strip_prefix("moat-bench-")?.to_owned();
                        let dead =
                            pid.parse::<u32>().is_ok() && !Path::new("/proc").join(&pid).exists();
                        dead.then(|| (e.path(), pid))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let moat = build_moat_path();
    for (pin_dir, pid) in stale(Path::new("/sys/fs/bpf")) {
        eprintln!(
            "bench-guard: removing the fence of an earlier run (pid {pid} is gone): {}",
            pin_dir.display()
        );
        detach(&moat, &pin_dir);
    }
    if let Ok(mount) = cgroup2_mount() {
        for (cgroup, pid) in stale(&mount) {
            eprintln!(
                "bench-guard: removing the cgroup of an earlier run (pid {pid} is gone): {}",
                cgroup.display()
            );
            empty_and_remove_cgroup(&cgroup)?;
        }
    }
    Ok(())
}

fn build_moat_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::root().join("target"), PathBuf::from)
        .join("release/moat")
}

/// `moat guard detach --pin-dir DIR`, then removes whatever is left of DIR.
fn detach(moat: &Path, pin_dir: &Path) {
    if !pin_dir.exists() {
        return;
    }
    match Command::new(moat)
        .args(["guard", "detach", "--pin-dir"])
        .arg(pin_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("bench-guard: moat guard detach failed with {s}"),
        Err(e) => eprintln!("bench-guard: cannot run moat guard detach: {e}"),
    }
    if pin_dir.exists() {
        // Unpinning a link detaches its program; removing the files is what detach does too.
        if let Err(e) = fs::remove_dir_all(pin_dir) {
            eprintln!("bench-guard: cannot remove {}: {e}", pin_dir.display());
        }
    }
}

/// Kills every process in `cgroup`, waits until it is empty and removes it.
fn empty_and_remove_cgroup(cgroup: &Path) -> Result<()> {
    if !cgroup.exists() {
        return Ok(());
    }
    for _ in 0..250 {
        let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            fs::remove_dir(cgroup)
                .with_context(|| format!("cannot remove the cgroup {}", cgroup.display()))?;
            return Ok(());
        }
        if fs::write(cgroup.join("cgroup.kill"), "1").is_err() {
            for pid in procs.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        sleep(POLL);
    }
    bail!(
        "the cgroup {} still has processes after 5 s",
        cgroup.display()
    )
}

/// What the benchmark set up; everything is undone when it is dropped.
struct Env {
    dir: PathBuf,
    keep_dir: bool,
    /// The child cgroup, once created.
    cgroup: Option<PathBuf>,
    pin_dir: PathBuf,
    /// moat, copied into `dir` (a build elsewhere in the workspace may replace the original).
    moat_bin: PathBuf,
    /// This program, copied into `dir` for the same reason: the probe runs from it.
    probe_bin: PathBuf,
    moat: Option<Child>,
    /// `kernel.bpf_stats_enabled` before the benchmark changed it.
    stats_old: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl Env {
    fn cgroup(&self) -> Result<&Path> {
        self.cgroup.as_deref().context("no cgroup yet")
    }

    /// Turns `kernel.bpf_stats_enabled` on, remembering the old value the first time.
    fn stats_on(&mut self) -> Result<()> {
        if self.stats_old.is_none() {
            let old = fs::read_to_string(BPF_STATS)
                .with_context(|| format!("cannot read {BPF_STATS}"))?;
            self.stats_old = Some(old.trim().to_owned());
        }
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot write {BPF_STATS}"))
    }

    /// Puts `kernel.bpf_stats_enabled` back to what it was.
    fn stats_restore(&mut self) -> Result<()> {
        if let Some(old) = &self.stats_old {
            fs::write(BPF_STATS, old).with_context(|| format!("cannot restore {BPF_STATS}"))?;
        }
        Ok(())
    }

    /// Stops moat (the fence stays pinned) and takes the fence down.
    fn stop_moat(&mut self) {
        if let Some(mut child) = self.moat.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        detach(&self.moat_bin, &self.pin_dir);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_moat();
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(e) = empty_and_remove_cgroup(&cgroup) {
                eprintln!("bench-guard: {e:#}");
            }
        }
        if let Err(e) = self.stats_restore() {
            eprintln!("bench-guard: {e:#}");
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The loopback peers of the probe, outside the cgroup: a listener that accepts and closes,
/// and a sink that reads each connection to its end and reports (bytes, seconds).
struct Servers {
    stop: Arc<AtomicBool>,
    accept_addr: SocketAddr,
    sink_addr: SocketAddr,
    sink_results: mpsc::Receiver<Result<(u64, f64)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn start() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = TcpListener::bind((LOOPBACK, 0)).context("cannot bind the listener")?;
        let sink = TcpListener::bind((LOOPBACK, 0)).context("cannot bind the sink")?;
        let accept_addr = acceptor.local_addr()?;
        let sink_addr = sink.local_addr()?;
        let (tx, sink_results) = mpsc::channel();
        let mut threads = Vec::new();
        let s = Arc::clone(&stop);
        threads.push(thread::spawn(move || {
            for conn in acceptor.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                // Closing at once makes this side the active closer: the TIME_WAIT entries stay
                // here, with the fixed port, and the probe can reuse its ephemeral ports.
                drop(conn);
            }
        }));
        let s = Arc::clone(&stop);
        threads.push(thread::spawn(move || {
            for conn in sink.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let result = conn.map_err(anyhow::Error::from).and_then(drain);
                if tx.send(result).is_err() {
                    break;
                }
            }
        }));
        Ok(Self {
            stop,
            accept_addr,
            sink_addr,
            sink_results,
            threads,
        })
    }
}

/// Reads a connection to its end: (bytes, seconds from the first byte to the end).
fn drain(mut conn: TcpStream) -> Result<(u64, f64)> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0_u8; CHUNK];
    let mut total = 0_u64;
    let first = conn.read(&mut buf).context("sink read")?;
    let clock = Stopwatch::start();
    total += first as u64;
    loop {
        let n = conn.read(&mut buf).context("sink read")?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((total, clock.elapsed().as_secs_f64()))
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake both accept loops so they see the flag.
        let _ = TcpStream::connect_timeout(&self.accept_addr, Duration::from_secs(1));
        let _ = TcpStream::connect_timeout(&self.sink_addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One configuration of the cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    NoGuard,
    Guard,
    GuardStats,
}

impl Config {
    const ALL: [Self; 3] = [Self::NoGuard, Self::Guard, Self::GuardStats];

    fn label(self) -> &'static str {
        match self {
            Self::NoGuard => "no guard",
            Self::Guard => "guard (enforce)",
            Self::GuardStats => "guard + bpf_stats",
        }
    }
}

/// One configuration's figures in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    mib_s: f64,
}

/// One program in one phase: program, phase, ns per run, runs per operation, runs.
type CostRow = (String, &'static str, f64, f64, u64);

/// What the kernel's stats say about the programs in one round.
#[derive(Debug, Clone, Default)]
struct ProgCost {
    /// (program, phase, ns per run, runs per operation) of one round.
    rows: Vec<CostRow>,
}

fn bench(env: &mut Env, opts: &Options, tools: &Tools, mount: &Path) -> Result<()> {
    if fs::read_to_string(BPF_STATS).is_ok_and(|v| v.trim() != "0") {
        eprintln!(
            "bench-guard: WARNING: {BPF_STATS} is already on; the \"guard\" column then pays the \
             stats overhead too"
        );
    }
    fs::create_dir_all(&env.dir).with_context(|| format!("cannot create {}", env.dir.display()))?;
    // Other cargo runs in this workspace may rebuild both binaries while the benchmark runs.
    let moat = env.dir.join("moat");
    fs::copy(&env.moat_bin, &moat)
        .with_context(|| format!("cannot copy {}", env.moat_bin.display()))?;
    env.moat_bin = moat;
    let probe = env.dir.join("xtask-probe");
    fs::copy("/proc/self/exe", &probe).context("cannot copy this program")?;
    env.probe_bin = probe;
    let cgroup = mount.join(format!("moat-bench-{}", std::process::id()));
    fs::create_dir(&cgroup)
        .with_context(|| format!("cannot create the cgroup {}", cgroup.display()))?;
    env.cgroup = Some(cgroup.clone());
    eprintln!("bench-guard: cgroup {}", cgroup.display());

    let tls = env.dir.join("tls");
    crate::run(
        Command::new(&env.moat_bin)
            .args(["cert", "init", "--dir"])
            .arg(&tls)
            .args(["--host", "localhost"])
            .stdout(Stdio::null()),
    )?;
    let servers = Servers::start()?;
    let config = env.dir.join("moat.toml");
    fs::write(&config, moat_config(env, &cgroup, &tls)?)
        .with_context(|| format!("cannot write {}", config.display()))?;

    let mut figures: Vec<[Figures; 3]> = Vec::new();
    let mut costs: Vec<ProgCost> = Vec::new();
    let mut quiet = Quiet::default();
    for round in 1..=opts.rounds {
        let mut row = [Figures::default(); 3];
        let mut cost = ProgCost::default();
        for (i, kind) in Config::ALL.into_iter().enumerate() {
            if kind == Config::Guard {
                start_moat(env, tools, &config)?;
            }
            let guarded = kind != Config::NoGuard;
            check_refusal(env, tools, &servers, guarded)?;
            let stats = kind == Config::GuardStats;
            if stats {
                env.stats_on()?;
            }
            let what = format!("round {round}, {}, connects", kind.label());
            let moat_pid = env.moat.as_ref().map(Child::id);
            let (connect, connect_cost) = quiet.measure(&what, moat_pid, || {
                let before = if stats {
                    tools.stats(&cgroup)?
                } else {
                    Vec::new()
                };
                let allowed_before = if guarded { allowed_count(env)? } else { 0 };
                let figures = connect_run(env, tools, &servers, opts.connects)?;
                let ops = opts.connects + warmup(opts.connects);
                if guarded {
                    // Every connect of the probe (warm-up included) must have passed the guard.
                    let allowed = allowed_count(env)?.saturating_sub(allowed_before);
                    ensure!(
                        allowed >= ops,
                        "the guard counted {allowed} allowed connects, expected {ops}: the \
                         probe does not seem to be fenced"
                    );
                }
                let cost = if stats {
                    deltas(&before, &tools.stats(&cgroup)?, "connect loop", ops)
                } else {
                    Vec::new()
                };
                Ok((figures, cost))
            })?;
            let what = format!("round {round}, {}, stream", kind.label());
            let (mib_s, stream_cost) = quiet.measure(&what, moat_pid, || {
                let before = if stats {
                    tools.stats(&cgroup)?
                } else {
                    Vec::new()
                };
                let mib_s = stream_run(env, tools, &servers, opts.seconds)?;
                let cost = if stats {
                    let mib = (mib_s * opts.seconds as f64).max(1.0) as u64;
                    deltas(&before, &tools.stats(&cgroup)?, "stream", mib)
                } else {
                    Vec::new()
                };
                Ok((mib_s, cost))
            })?;
            if stats {
                env.stats_restore()?;
            }
            cost.rows.extend(connect_cost);
            cost.rows.extend(stream_cost);
            let (mean_us, p50_us, p99_us) = connect;
            row[i] = Figures {
                mean_us,
                p50_us,
                p99_us,
                mib_s,
            };
            eprintln!(
                "bench-guard: round {round} {:<18} connect mean {mean_us:.1} µs, p50 {p50_us:.1} \
                 µs, p99 {p99_us:.1} µs; stream {mib_s:.0} MiB/s",
                kind.label()
            );
        }
        if let Some(child) = env.moat.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "moat exited with {status} during the round; its log:\n{}",
                    tail(&env.dir.join("moat.log"), 40)
                );
            }
        }
        let status = guard_status(env)?;
        eprintln!("bench-guard: round {round}: moat guard status:\n{status}");
        env.stop_moat();
        let left = tools.attached(&cgroup)?;
        ensure!(
            left.is_empty(),
            "programs still attached to {} after moat guard detach: {left:?}",
            cgroup.display()
        );
        figures.push(row);
        costs.push(cost);
    }
    drop(servers);
    println!("{}", report(opts, &figures, &costs, &quiet));
    Ok(())
}

/// The unrecorded connects before the recorded ones.
fn warmup(connects: u64) -> u64 {
    (connects / 10).max(100)
}

fn moat_config(env: &Env, cgroup: &Path, tls: &Path) -> Result<String> {
    // A free port for moat's own listener (moat is not measured; it only holds the fence) and
    // one for an upstream nobody calls.
    let ports = [free_port()?, free_port()?];
    Ok(format!(
        r#"[runtime]
worker_threads = 1

[log]
format = "json"
level = "info"

[[listener]]
address = "127.0.0.1:{listen}"
upstream = "model"

[[tls.certificate]]
cert_file = "{tls}/server.pem"
key_file = "{tls}/server.key"

[upstreams.model]
address = "127.0.0.1:{upstream}"

[guard]
mode = "enforce"
cgroups = ["{cgroup}"]
allow = ["127.0.0.1/32"]
required = true
pin_dir = "{pin_dir}"
"#,
        listen = ports[0],
        upstream = ports[1],
        tls = tls.display(),
        cgroup = cgroup.display(),
        pin_dir = env.pin_dir.display(),
    ))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((LOOPBACK, 0))
        .context("cannot bind a loopback port")?
        .local_addr()?
        .port())
}

/// Starts moat on CPU 0 and waits until its fence is attached to the cgroup.
fn start_moat(env: &mut Env, tools: &Tools, config: &Path) -> Result<()> {
    let log_path = env.dir.join("moat.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = tools.pinned(0, &env.moat_bin);
    cmd.args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("+ {cmd:?}");
    env.moat = Some(cmd.spawn().context("cannot start moat")?);
    let cgroup = env.cgroup()?.to_owned();
    let clock = Stopwatch::start();
    loop {
        let attached: Vec<String> = tools
            .attached(&cgroup)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        if PROGRAMS.iter().all(|p| attached.iter().any(|a| a == p)) {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("egress guard attached") {
                return Ok(());
            }
        }
        if let Some(child) = env.moat.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "moat exited with {status} before its guard was attached; its log:\n{}",
                    tail(&log_path, 40)
                );
            }
        }
        if clock.elapsed() > STARTUP {
            bail!(
                "moat's guard is not attached to {} after {STARTUP:?} (attached: {attached:?}); \
                 its log:\n{}",
                cgroup.display(),
                tail(&log_path, 40)
            );
        }
        sleep(POLL);
    }
}

fn guard_status(env: &Env) -> Result<String> {
    let out = Command::new(&env.moat_bin)
        .args(["guard", "status", "--pin-dir"])
        .arg(&env.pin_dir)
        .output()
        .context("cannot run moat guard status")?;
    ensure!(
        out.status.success(),
        "moat guard status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The guard's `allowed` counter (connects and sends that passed).
fn allowed_count(env: &Env) -> Result<u64> {
    let status = guard_status(env)?;
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("allowed:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no allowed counter in moat guard status:\n{status}"))
}

/// Runs the probe in the cgroup (on CPU 1) and returns its result line.
fn run_probe(env: &Env, tools: &Tools, kind: &str, addr: SocketAddr, arg: u64) -> Result<String> {
    let cgroup = env.cgroup()?;
    let mut cmd = tools.pinned(1, &env.probe_bin);
    cmd.args(["bench-guard", PROBE])
        .arg(cgroup)
        .arg(kind)
        .arg(addr.to_string())
        .arg(arg.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the probe: {cmd:?}"))?;
    let clock = Stopwatch::start();
    // Generous: the longest phase is a stream of --seconds, or 20,000 connects of ~50 µs.
    let limit = Duration::from_secs(120 + if kind == "stream" { arg } else { 0 });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if clock.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {kind} probe did not finish within {limit:?}");
        }
        sleep(POLL);
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    ensure!(status.success(), "the {kind} probe failed with {status}");
    out.lines()
        .rev()
        .find(|l| l.starts_with(kind))
        .map(str::to_owned)
        .with_context(|| format!("no result line from the {kind} probe: {out:?}"))
}

/// `key=value` from a probe's result line.
fn field(line: &str, key: &str) -> Result<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .with_context(|| format!("no {key} in {line:?}"))
}

/// The connect loop: (mean, p50, p99) in µs.
fn connect_run(env: &Env, tools: &Tools, servers: &Servers, n: u64) -> Result<(f64, f64, f64)> {
    let line = run_probe(env, tools, "connect", servers.accept_addr, n)?;
    let us = |key: &str| -> Result<f64> {
        Ok(crate::parse_as::<f64>(&field(&line, key)?, key)? / 1000.0)
    };
    Ok((us("mean_ns")?, us("p50_ns")?, us("p99_ns")?))
}

/// The stream: MiB/s as the sink saw it.
fn stream_run(env: &Env, tools: &Tools, servers: &Servers, seconds: u64) -> Result<f64> {
    // A result left over from a wake-up connection would be stale: drop anything queued.
    while servers.sink_results.try_recv().is_ok() {}
    let line = run_probe(env, tools, "stream", servers.sink_addr, seconds)?;
    let (bytes, secs) = servers
        .sink_results
        .recv_timeout(IO_TIMEOUT)
        .context("the sink reported nothing")??;
    let sent: u64 = crate::parse_as(&field(&line, "bytes")?, "bytes")?;
    ensure!(
        bytes == sent,
        "the probe sent {sent} bytes but the sink read {bytes}"
    );
    ensure!(secs > 0.0, "the stream took no time");
    Ok(bytes as f64 / MIB / secs)
}

/// Checks that a connect to a destination outside the allow-list is refused with EPERM exactly
/// when the guard is attached (and is an ordinary "connection refused" otherwise).
fn check_refusal(env: &Env, tools: &Tools, servers: &Servers, guarded: bool) -> Result<()> {
    let target = SocketAddr::new(IpAddr::V4(NOT_ALLOWED), servers.accept_addr.port());
    let line = run_probe(env, tools, "refused", target, 1)?;
    let os = field(&line, "os")?;
    let expected = if guarded { "1" } else { "111" };
    ensure!(
        os == expected,
        "connect to {target} from the cgroup ({}): got {line:?}, expected os={expected} ({})",
        if guarded { "guarded" } else { "not guarded" },
        if guarded {
            "EPERM from the guard"
        } else {
            "ECONNREFUSED: nothing listens there"
        }
    );
    Ok(())
}

/// Per program, the ns per run and runs per operation between two stats snapshots.
fn deltas(
    before: &[(String, u64, u64)],
    after: &[(String, u64, u64)],
    phase: &'static str,
    ops: u64,
) -> Vec<CostRow> {
    after
        .iter()
        .map(|(name, time, count)| {
            let (t0, c0) = before
                .iter()
                .find(|b| &b.0 == name)
                .map_or((0, 0), |b| (b.1, b.2));
            let runs = count.saturating_sub(c0);
            let ns = time.saturating_sub(t0);
            let per_run = if runs == 0 {
                f64::NAN
            } else {
                ns as f64 / runs as f64
            };
            (name.clone(), phase, per_run, runs as f64 / ops as f64, runs)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A row of the main table: label, figure, decimals.
type TableRow = (&'static str, fn(&Figures) -> f64, usize);

fn report(opts: &Options, figures: &[[Figures; 3]], costs: &[ProgCost], quiet: &Quiet) -> String {
    let mut s = String::new();
    let med = |i: usize, f: fn(&Figures) -> f64| median(figures.iter().map(|r| f(&r[i])).collect());
    let _ = writeln!(
        s,
        "\nMedians of {} round(s); {} connects per run (after {} unrecorded), {} s streams. \
         Other work on the machine: {} measurement(s) taken again, at most {:.0}% of a CPU \
         during a kept one{}. moat (idle, holding the fence) used at most {:.1}% of a CPU during \
         a measurement.\n",
        figures.len(),
        opts.connects,
        warmup(opts.connects),
        opts.seconds,
        quiet.retaken,
        quiet.worst_kept,
        if quiet.disturbed.is_empty() {
            String::new()
        } else {
            format!("; DISTURBED (kept anyway): {}", quiet.disturbed.join(", "))
        },
        quiet.moat_worst
    );
    let _ = writeln!(
        s,
        "| measure (probe in the cgroup, CPU 1) | {} | {} | {} | guard vs none |",
        Config::ALL[0].label(),
        Config::ALL[1].label(),
        Config::ALL[2].label()
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let rows: [TableRow; 4] = [
        ("socket()+connect() mean, µs", |f| f.mean_us, 1),
        ("socket()+connect() p50, µs", |f| f.p50_us, 1),
        ("socket()+connect() p99, µs", |f| f.p99_us, 1),
        ("TCP stream, MiB/s", |f| f.mib_s, 0),
    ];
    for (label, f, digits) in rows {
        let v = [med(0, f), med(1, f), med(2, f)];
        let change = (v[1] / v[0] - 1.0) * 100.0;
        let _ = writeln!(
            s,
            "| {label} | {:.digits$} | {:.digits$} | {:.digits$} | {change:+.1}% |",
            v[0], v[1], v[2]
        );
    }
    let _ = writeln!(
        s,
        "\nRefusal check, every configuration of every round: connect() from the cgroup to \
         {NOT_ALLOWED} (not allowed) failed with ECONNREFUSED without the guard and with EPERM \
         with it."
    );
    let _ = writeln!(
        s,
        "\n| program | phase | runs | ns per run (median) | ns per run, each round |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|");
    for phase in ["connect loop", "stream"] {
        for prog in PROGRAMS {
            let rounds: Vec<(f64, f64, f64)> = costs
                .iter()
                .filter_map(|c| {
                    c.rows
                        .iter()
                        .find(|r| r.0 == prog && r.1 == phase)
                        .map(|r| (r.2, r.3, r.4 as f64))
                })
                .collect();
            let per_op = median(rounds.iter().map(|r| r.1).collect());
            let runs = median(rounds.iter().map(|r| r.2).collect());
            let ns = median(rounds.iter().map(|r| r.0).collect());
            let each: Vec<String> = rounds
                .iter()
                .map(|r| {
                    if r.0.is_nan() {
                        "-".to_owned()
                    } else {
                        format!("{:.0}", r.0)
                    }
                })
                .collect();
            let op = if phase == "stream" {
                "per MiB"
            } else {
                "per connect"
            };
            let runs = if per_op >= 0.01 {
                format!("{runs:.0} ({per_op:.2} {op})")
            } else {
                format!("{runs:.0}")
            };
            if ns.is_nan() {
                let _ = writeln!(s, "| {prog} | {phase} | 0 | not run | |");
            } else {
                let _ = writeln!(
                    s,
                    "| {prog} | {phase} | {runs} | {ns:.0} | {} |",
                    each.join(", ")
                );
            }
        }
    }
    s
}

/// Most CPU other work may use during a measurement, in percent of one CPU, before the
/// measurement is taken again.
const MAX_OTHERS: f64 = 10.0;
/// Most CPU other work may use while the benchmark waits to start a measurement.
const QUIET: f64 = 5.0;
/// Seconds in a row the machine must be quiet before a measurement starts.
const QUIET_SECS: u32 = 2;
/// How long the whole benchmark may wait for a quiet machine; after that it measures without
/// waiting (and still reports disturbed measurements).
const QUIET_BUDGET: Duration = Duration::from_secs(20 * 60);
/// How often a disturbed measurement is taken in all.
const ATTEMPTS: usize = 5;

/// CPU ticks so far.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    /// The whole machine's busy ticks: user, nice, system, irq and softirq (with tick-based
    /// accounting a tick in softirq is also charged to the task it interrupted).
    busy: u64,
    /// The whole machine's ticks, busy, idle and stolen.
    total: u64,
    /// This process's, and its reaped children's (the probe, bpftool), user and system ticks,
    /// and moat's.
    ours: u64,
    /// moat's user and system ticks.
    moat: u64,
}

impl Ticks {
    /// `moat` is the pid of the running moat, which is not reaped until it is stopped.
    fn now(moat: Option<u32>) -> Option<Self> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6);
        let total = (0..8).map(at).sum();
        // utime, stime, cutime, cstime are fields 14 to 17, the 12th to 15th after the name.
        let times = |pid: &str, fields: usize| -> Option<u64> {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .skip(11)
                    .take(fields)
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum(),
            )
        };
        let moat = moat.and_then(|pid| times(&pid.to_string(), 2)).unwrap_or(0);
        let ours = times("self", 4)? + moat;
        Some(Self {
            busy,
            total,
            ours,
            moat,
        })
    }

    /// CPU used by work other than this benchmark since `earlier`, in percent of one CPU.
    fn others_since(self, earlier: Self) -> f64 {
        let cpus = thread::available_parallelism().map_or(1, usize::from);
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let others = self
            .busy
            .saturating_sub(earlier.busy)
            .saturating_sub(self.ours.saturating_sub(earlier.ours));
        others as f64 * 100.0 * cpus as f64 / total as f64
    }

    /// CPU moat used since `earlier`, in percent of one CPU.
    fn moat_since(self, earlier: Self) -> f64 {
        let cpus = thread::available_parallelism().map_or(1, usize::from);
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.moat.saturating_sub(earlier.moat) as f64 * 100.0 * cpus as f64 / total as f64
    }
}

/// Keeps other work on the machine out of the figures: waits for a quiet machine before each
/// measurement and takes a measurement again when other work ran during it.
#[derive(Debug, Default)]
struct Quiet {
    /// Measurements taken again.
    retaken: usize,
    /// Measurements kept although other work ran during every attempt.
    disturbed: Vec<String>,
    /// Highest CPU share other work had during a kept measurement, in percent of one CPU.
    worst_kept: f64,
    /// Highest CPU share moat had during a measurement, in percent of one CPU.
    moat_worst: f64,
    /// Time spent waiting for a quiet machine so far.
    waited: Duration,
    /// Whether the waiting budget is spent.
    gave_up: bool,
}

impl Quiet {
    /// Waits until other work has used less than [`QUIET`] for [`QUIET_SECS`] seconds in a row
    /// (while the [`QUIET_BUDGET`] lasts).
    fn wait(&mut self, what: &str, moat: Option<u32>) {
        if self.gave_up {
            return;
        }
        let clock = Stopwatch::start();
        let mut said = false;
        let mut quiet_secs = 0;
        while quiet_secs < QUIET_SECS {
            let Some(a) = Ticks::now(moat) else { return };
            sleep(Duration::from_secs(1));
            let Some(b) = Ticks::now(moat) else { return };
            let others = b.others_since(a);
            if others < QUIET {
                quiet_secs += 1;
                continue;
            }
            quiet_secs = 0;
            if self.waited + clock.elapsed() > QUIET_BUDGET {
                if !self.gave_up {
                    eprintln!(
                        "bench-guard: WARNING: waited {QUIET_BUDGET:?} in all for a quiet \
                         machine; measuring without waiting from now on"
                    );
                    self.gave_up = true;
                }
                break;
            }
            if !said {
                eprintln!(
                    "bench-guard: other work uses {others:.0}% of a CPU; waiting before {what}"
                );
                said = true;
            }
        }
        self.waited += clock.elapsed();
    }

    fn measure<T>(
        &mut self,
        what: &str,
        moat: Option<u32>,
        mut f: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 1;
        loop {
            self.wait(what, moat);
            let before = Ticks::now(moat);
            let result = f()?;
            let (others, moat_cpu) = match (before, Ticks::now(moat)) {
                (Some(a), Some(b)) => (b.others_since(a), b.moat_since(a)),
                _ => (0.0, 0.0),
            };
            self.moat_worst = self.moat_worst.max(moat_cpu);
            if others <= MAX_OTHERS {
                eprintln!(
                    "bench-guard: {what}: other work {others:.1}% of a CPU, moat {moat_cpu:.1}%"
                );
                self.worst_kept = self.worst_kept.max(others);
                return Ok(result);
            }
            if attempt == ATTEMPTS {
                eprintln!(
                    "bench-guard: WARNING: {what}: other work used {others:.0}% of a CPU in \
                     each of {ATTEMPTS} attempts; keeping the last"
                );
                self.disturbed.push(format!("{what} ({others:.0}%)"));
                return Ok(result);
            }
            eprintln!(
                "bench-guard: {what}: other work used {others:.0}% of a CPU during the run; \
                 measuring again"
            );
            self.retaken += 1;
            attempt += 1;
        }
    }
}

/// The last `n` lines of a file, or a note that it cannot be read.
fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The hidden subcommand: joins the cgroup, runs one measurement, prints one result line.
fn probe(args: &[String]) -> Result<()> {
    let [cgroup, kind, addr, arg] = args else {
        bail!("usage: bench-guard {PROBE} CGROUP connect|stream|refused ADDR N");
    };
    let cgroup = Path::new(cgroup);
    join_cgroup(cgroup)?;
    let addr: SocketAddr = crate::parse_as(addr, "ADDR")?;
    let arg: u64 = crate::parse_as(arg, "N")?;
    let line = match kind.as_str() {
        "connect" => probe_connect(addr, arg)?,
        "stream" => probe_stream(addr, arg)?,
        "refused" => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => "os=0 result=connected".to_owned(),
            Err(e) => format!(
                "os={} result={:?}",
                e.raw_os_error().unwrap_or(-1),
                e.kind()
            ),
        },
        _ => bail!("unknown probe {kind:?}"),
    };
    println!("{kind} {line}");
    Ok(())
}

/// Moves this process into `cgroup` and checks that it is there.
fn join_cgroup(cgroup: &Path) -> Result<()> {
    let procs = cgroup.join("cgroup.procs");
    fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("cannot write {}", procs.display()))?;
    let name = cgroup
        .file_name()
        .context("cgroup path has no name")?
        .to_string_lossy();
    let mine = fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    ensure!(
        mine.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{name}"))),
        "not in the cgroup {} after joining it: {mine}",
        cgroup.display()
    );
    Ok(())
}

/// `n` connects after a warm-up, each timed from `socket()` to the end of `connect()`; then the
/// probe waits for the listener to close (not timed), so it never is the active closer.
fn probe_connect(addr: SocketAddr, n: u64) -> Result<String> {
    let warm = warmup(n);
    let mut samples: Vec<u64> = Vec::with_capacity(usize::try_from(n)?);
    let mut buf = [0_u8; 16];
    for i in 0..warm + n {
        let clock = Stopwatch::start();
        let conn = TcpStream::connect(addr);
        let took = clock.elapsed();
        let mut conn = conn.with_context(|| format!("connect {} to {addr}", i + 1))?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        let got = conn
            .read(&mut buf)
            .with_context(|| format!("waiting for the listener to close connection {}", i + 1))?;
        ensure!(got == 0, "the listener sent data");
        if i >= warm {
            samples.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<u64>() / samples.len() as u64;
    Ok(format!(
        "n={} mean_ns={mean} p50_ns={} p99_ns={} max_ns={} cpus={}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        cpus_allowed()
    ))
}

/// Writes to `addr` for `seconds`, then waits until the sink has read everything.
fn probe_stream(addr: SocketAddr, seconds: u64) -> Result<String> {
    let mut conn = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let chunk = vec![0x5a_u8; CHUNK];
    let limit = Duration::from_secs(seconds);
    let clock = Stopwatch::start();
    let mut sent = 0_u64;
    while clock.elapsed() < limit {
        conn.write_all(&chunk).context("stream write")?;
        sent += CHUNK as u64;
    }
    conn.shutdown(Shutdown::Write)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0_u8; 16];
    match conn.read(&mut buf) {
        Ok(0) => {}
        Ok(_) => bail!("the sink sent data"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e).context("waiting for the sink to finish"),
    }
    Ok(format!(
        "bytes={sent} secs={:.3} cpus={}",
        clock.elapsed().as_secs_f64(),
        cpus_allowed()
    ))
}

/// This process's `Cpus_allowed_list`.
fn cpus_allowed() -> String {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bpftool_json() {
        let cg = r#"[{"id":41,"attach_type":"cgroup_inet_egress","attach_flags":"multi","name":"moat_egress"},{"id":42,"attach_type":"cgroup_inet4_connect","name":"moat_connect4"}]"#;
        let found: Vec<(u64, String)> = cg
            .split('{')
            .filter_map(|o| Some((json_u64(o, "id")?, json_str(o, "name")?)))
            .collect();
        assert_eq!(
            found,
            vec![(41, "moat_egress".into()), (42, "moat_connect4".into())]
        );
        let prog = r#"{"id":41,"type":"cgroup_skb","name":"moat_egress","run_time_ns":123456,"run_cnt":789,"map_ids":[1,2]}"#;
        assert_eq!(json_u64(prog, "run_time_ns"), Some(123_456));
        assert_eq!(json_u64(prog, "run_cnt"), Some(789));
        assert_eq!(json_u64(r#"{"id":1}"#, "run_cnt"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
    }

    #[test]
    fn probe_fields() -> Result<()> {
        let line = "connect n=10 mean_ns=1500 p50_ns=1400 p99_ns=3000";
        assert_eq!(field(line, "p50_ns")?, "1400");
        assert!(field(line, "p9").is_err());
        Ok(())
    }
}
