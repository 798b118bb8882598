//! `cargo xtask bench`: HTTP/1.1 load tests of moat against nginx as the peer proxy.
//!
//! Everything runs on loopback (`127.0.0.1` only) and is torn down at the end, also on error:
//!
//! 1. Installs `nginx` and `wrk` with apt-get when they are missing (`h2load` is not needed).
//! 2. Builds `moat` in release and writes a CA and a server certificate (ECDSA P-256) with
//!    `moat cert init` into a temporary directory.
//! 3. Starts a fast upstream (an nginx instance answering fixed bodies with `return 200`), moat in
//!    front of it (one runtime worker) and nginx as a TLS-terminating proxy in front of it (one
//!    process, the same certificate, keep-alive to the upstream).
//! 4. Checks once with curl (when present) that every target gives the expected answers, with the
//!    CA, so the certificate chain is checked too.
//! 5. With the same `wrk` settings drives the upstream directly over plain HTTP, moat over HTTPS
//!    and nginx over HTTPS, for a small GET and a ~1 KiB JSON POST, and prints requests per
//!    second and p50/p99 latency side by side, as a Markdown table on stdout.
//!
//! On a machine with two or more CPUs the proxies run pinned to CPU 1 and the load generator and
//! the upstream share CPU 0 (`taskset`), so each proxy gets exactly one core. Each run also reads
//! `/proc` for the CPU time the measured server used (below ~95% of its core it was not the
//! bottleneck, so requests per CPU-second is shown too) and the CPU time used by anything else on
//! the machine (other work that disturbs the figures; warned about when the machine is busy).
//!
//! A run in which moat answers with non-2xx/3xx statuses, has socket errors or exits fails the
//! command. There are no timing assertions: the figures are printed, not judged.
//!
//! Flags: `--duration SECS` per measured run (default 10), `--connections N` (default 32),
//! `--warmup SECS` before each measured run (default 2), `--rounds N` (default 1; the median
//! round by requests/s is shown), `--fsync MODE` (`always`, `batch` or `never`; default `batch`)
//! for moat's `[audit] fsync`, `--keep` to keep the temporary directory.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// The only address anything in the benchmark listens on or connects to.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Body of the small GET response.
const GET_BODY: &str = "moat bench: a small fixed body\n";
/// Path the JSON POST goes to.
const POST_PATH: &str = "/v1/chat/completions";
/// Body of the JSON POST response.
const POST_REPLY: &str = r#"{"id":"bench","object":"chat.completion","choices":[]}"#;
/// Size of the JSON POST request body.
const POST_SIZE: usize = 1024;
/// How long a started server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(15);
/// Poll interval while waiting for a port or a process.
const POLL: Duration = Duration::from_millis(50);
/// Extra time a load run gets beyond its duration before it is killed.
const GRACE_SECS: u64 = 30;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Options {
    duration: u64,
    warmup: u64,
    connections: u32,
    rounds: usize,
    /// moat's `[audit] fsync`: `always`, `batch` or `never`.
    fsync: String,
    keep: bool,
    /// Drive the proxies over HTTP/2 with h2load instead of HTTP/1.1 with wrk.
    h2: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            duration: 10,
            warmup: 2,
            connections: 32,
            rounds: 1,
            fsync: "batch".into(),
            keep: false,
            h2: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--duration" => o.duration = crate::flag_number(&mut it, a)?,
                "--warmup" => o.warmup = crate::flag_number(&mut it, a)?,
                "--connections" => o.connections = crate::flag_number(&mut it, a)?,
                "--rounds" => o.rounds = crate::flag_number(&mut it, a)?,
                "--fsync" => {
                    let mode = crate::flag_value(&mut it, a)?;
                    ensure!(
                        ["always", "batch", "never"].contains(&mode.as_str()),
                        "--fsync: expected always, batch or never, not {mode:?}"
                    );
                    o.fsync = mode;
                }
                "--keep" => o.keep = true,
                "--h2" => o.h2 = true,
                _ => bail!(
                    "bench: unknown argument {a:?}; flags: --duration SECS, --connections N, \
                     --warmup SECS, --rounds N, --fsync always|batch|never, --keep, --h2"
                ),
            }
        }
        ensure!(o.duration > 0, "--duration must be at least 1");
        ensure!(o.connections > 0, "--connections must be at least 1");
        ensure!(o.rounds > 0, "--rounds must be at least 1");
        Ok(o)
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let tools = Tools::ensure(opts.h2)?;
    let moat = build_moat()?;
    let dir = std::env::temp_dir().join(format!("moat-bench-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut procs = Procs {
        dir,
        keep_dir: opts.keep,
        children: Vec::new(),
    };
    let result = bench(&mut procs, &opts, &tools, &moat);
    if result.is_err() {
        procs.keep_dir = true;
    }
    if procs.keep_dir {
        eprintln!(
            "bench: configurations and logs kept in {}",
            procs.dir.display()
        );
    }
    drop(procs); // kills every process it started, whatever happened
    result
}

/// External programs the benchmark uses.
struct Tools {
    nginx: PathBuf,
    wrk: PathBuf,
    /// `h2load` (Debian `nghttp2-client`), for `--h2`.
    h2load: Option<PathBuf>,
    /// `taskset`, when present and there are at least two CPUs to pin to.
    taskset: Option<PathBuf>,
    curl: Option<PathBuf>,
}

impl Tools {
    fn ensure(h2: bool) -> Result<Self> {
        let mut missing: Vec<&str> = ["nginx", "wrk"]
            .into_iter()
            .filter(|t| find_tool(t).is_none())
            .collect();
        if h2 && find_tool("h2load").is_none() {
            missing.push("nghttp2-client");
        }
        if !missing.is_empty() {
            eprintln!(
                "bench: {} not found; installing with apt-get",
                missing.join(" and ")
            );
            let mut update = Command::new("apt-get");
            update.arg("update");
            crate::run(&mut update)
                .context("apt-get update failed (install nginx and wrk by hand)")?;
            let mut install = Command::new("apt-get");
            install
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive");
            crate::run(&mut install)
                .context("apt-get install failed (install nginx and wrk by hand)")?;
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = if cpus >= 2 {
            find_tool("taskset")
        } else {
            None
        };
        if taskset.is_none() {
            eprintln!(
                "bench: WARNING: no CPU pinning ({cpus} CPUs, taskset {}); figures are not \
                 comparable to one-core-per-proxy measurements",
                if find_tool("taskset").is_some() {
                    "present"
                } else {
                    "missing"
                }
            );
        }
        Ok(Self {
            nginx: find_tool("nginx").context("nginx still not found after installing")?,
            wrk: find_tool("wrk").context("wrk still not found after installing")?,
            h2load: find_tool("h2load"),
            taskset,
            curl: find_tool("curl"),
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
}

/// Finds `name` on PATH or in the sbin directories (nginx lives in /usr/sbin).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", name])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && found.starts_with('/') {
        return Some(PathBuf::from(found));
    }
    ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub(crate) fn build_moat() -> Result<PathBuf> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "moat", "--bin", "moat"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::root().join("target"), PathBuf::from);
    let bin = target.join("release/moat");
    ensure!(bin.is_file(), "built moat not found at {}", bin.display());
    Ok(bin)
}

/// A started process; killed and reaped when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Fails, with the tail of its log, if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited with {status} during the benchmark; its log ({}) ends with:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Everything the benchmark started, and its temporary directory.
struct Procs {
    dir: PathBuf,
    keep_dir: bool,
    children: Vec<Proc>,
}

impl Procs {
    /// Starts `cmd` with its output in `<dir>/<name>.log` and waits until it accepts TCP on
    /// `port`.
    fn start(&mut self, name: &'static str, cmd: &mut Command, port: u16) -> Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        eprintln!("+ {cmd:?}");
        let child = cmd
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        self.children.push(Proc { name, child, log });
        let addr = SocketAddr::from((LOOPBACK, port));
        let polls = STARTUP.as_millis() / POLL.as_millis();
        for _ in 0..polls {
            if TcpStream::connect_timeout(&addr, POLL).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            sleep(POLL);
        }
        bail!("{name} does not accept connections on {addr} after {STARTUP:?}")
    }

    fn check_alive(&mut self) -> Result<()> {
        self.children.iter_mut().try_for_each(Proc::check_alive)
    }

    /// CPU ticks all running children have used so far.
    fn ticks(&self) -> Option<u64> {
        self.children
            .iter()
            .map(|p| process_ticks(p.child.id()))
            .sum()
    }

    fn pid_of(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.child.id())
    }

    fn log_of(&self, name: &str) -> Option<&Path> {
        self.children
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.log.as_path())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Children first (their Drop kills them), then their files.
        self.children.clear();
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The last `n` lines of a file, or a note that it cannot be read.
fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(n);
            if lines.is_empty() {
                "(empty)".into()
            } else {
                lines[from..].join("\n")
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Distinct free loopback ports (a small race with other programs is accepted).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0_u16; N];
    for p in &mut ports {
        let l = TcpListener::bind((LOOPBACK, 0)).context("cannot bind a loopback port")?;
        *p = l.local_addr()?.port();
        held.push(l);
    }
    Ok(ports)
}

/// One measured target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Moat,
    Nginx,
}

impl Target {
    const ALL: [Self; 3] = [Self::Direct, Self::Moat, Self::Nginx];

    /// Name of the process that serves this target.
    fn process(self) -> &'static str {
        match self {
            Self::Direct => "upstream",
            Self::Moat => "moat",
            Self::Nginx => "nginx-proxy",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Direct => "upstream direct (http)",
            Self::Moat => "moat (https)",
            Self::Nginx => "nginx proxy (https)",
        }
    }
}

/// One request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Get,
    Post,
}

impl Scenario {
    const ALL: [Self; 2] = [Self::Get, Self::Post];

    fn label(self) -> &'static str {
        match self {
            Self::Get => "GET small body",
            Self::Post => "POST ~1 KiB JSON",
        }
    }
}

/// What one wrk run reported.
#[derive(Debug, Clone, Default)]
struct WrkResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
    /// CPU time of the measured server process over the run, in percent of one core.
    server_cpu: Option<f64>,
    /// How busy each CPU of the machine was over the run, in percent.
    core_busy: Vec<f64>,
    /// CPU time used over the run by anything but the benchmark's own processes (wrk, the
    /// upstream and the proxies), in percent of one core: other work disturbing the figures.
    other_cpu: Option<f64>,
}

impl WrkResult {
    /// Requests served per second of the measured server's CPU time.
    fn per_cpu_second(&self) -> Option<f64> {
        self.server_cpu
            .filter(|c| *c > 0.0)
            .map(|c| self.rps * 100.0 / c)
    }
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn process_ticks(pid: u32) -> Option<u64> {
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
fn reaped_children_ticks() -> Option<u64> {
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
fn background_load() -> f64 {
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
fn core_ticks() -> Vec<(u64, u64)> {
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

/// Addresses and files of the running setup.
struct Setup {
    /// Host name in the URLs: `localhost` when it resolves to 127.0.0.1 first (so TLS clients
    /// send a host name, not an IP address, as SNI), else 127.0.0.1.
    host: String,
    upstream_port: u16,
    moat_port: u16,
    nginx_port: u16,
    post_script: PathBuf,
}

impl Setup {
    fn url(&self, target: Target, scenario: Scenario) -> String {
        let (scheme, port) = match target {
            Target::Direct => ("http", self.upstream_port),
            Target::Moat => ("https", self.moat_port),
            Target::Nginx => ("https", self.nginx_port),
        };
        let path = match scenario {
            Scenario::Get => "/",
            Scenario::Post => POST_PATH,
        };
        format!("{scheme}://{}:{port}{path}", self.host)
    }
}

fn bench(procs: &mut Procs, opts: &Options, tools: &Tools, moat: &Path) -> Result<()> {
    let dir = procs.dir.clone();
    let versions = versions(tools, moat);
    eprintln!("bench: working in {}", dir.display());

    // Certificates: the same ECDSA P-256 leaf (with its CA in the chain) for moat and nginx.
    crate::run(
        Command::new(moat)
            .args(["cert", "init", "--dir"])
            .arg(&dir)
            .args(["--host", "localhost", "--host", "127.0.0.1"]),
    )?;
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let ca = dir.join("ca.pem");

    let [upstream_port, moat_port, nginx_port] = free_ports()?;
    let localhost_first = ("localhost", upstream_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.ip() == LOOPBACK);
    let setup = Setup {
        host: if localhost_first {
            "localhost".into()
        } else {
            LOOPBACK.to_string()
        },
        upstream_port,
        moat_port,
        nginx_port,
        post_script: dir.join("post.lua"),
    };
    fs::write(&setup.post_script, post_script())?;
    fs::write(setup.post_script.with_extension("json"), post_body())?;

    // Fast upstream on CPU 0 (shared with the load generator).
    let upstream_conf = dir.join("upstream.conf");
    fs::write(&upstream_conf, upstream_config(&dir, upstream_port))?;
    procs.start(
        "upstream",
        tools
            .pinned(0, &tools.nginx)
            .args(nginx_args(&dir, "upstream", &upstream_conf)),
        upstream_port,
    )?;

    // moat on CPU 1.
    let moat_conf = dir.join("moat.toml");
    fs::write(
        &moat_conf,
        moat_config(&cert, &key, moat_port, upstream_port, &opts.fsync),
    )?;
    crate::run(
        Command::new(moat)
            .args(["check", "--config"])
            .arg(&moat_conf),
    )?;
    procs.start(
        "moat",
        tools
            .pinned(1, moat)
            .args(["run", "--config"])
            .arg(&moat_conf),
        moat_port,
    )?;

    // nginx as the peer proxy on CPU 1.
    let proxy_conf = dir.join("proxy.conf");
    fs::write(
        &proxy_conf,
        proxy_config(&dir, &cert, &key, nginx_port, upstream_port),
    )?;
    procs.start(
        "nginx-proxy",
        tools
            .pinned(1, &tools.nginx)
            .args(nginx_args(&dir, "nginx-proxy", &proxy_conf)),
        nginx_port,
    )?;

    smoke_test(tools, &setup, &ca)?;
    let background = background_load();

    let pinning = if tools.taskset.is_some() {
        "moat and nginx proxy on CPU 1; upstream nginx and wrk on CPU 0 (taskset)"
    } else {
        "none"
    };
    eprintln!(
        "bench: wrk -t1 -c{c} -d{d}s --latency (after a {w}s warm-up), {r} round(s); pinning: \
         {pinning}",
        c = opts.connections,
        d = opts.duration,
        w = opts.warmup,
        r = opts.rounds,
    );

    // results[scenario][target] holds one result per round.
    let mut results = vec![vec![Vec::<WrkResult>::new(); Target::ALL.len()]; Scenario::ALL.len()];
    let mut warmup_errors = Vec::new();
    let mut warmup_moat_failed = false;
    for round in 1..=opts.rounds {
        for (si, &scenario) in Scenario::ALL.iter().enumerate() {
            for (ti, &target) in Target::ALL.iter().enumerate() {
                let url = setup.url(target, scenario);
                let script = (scenario == Scenario::Post).then_some(setup.post_script.as_path());
                let run = (url.as_str(), target.process());
                if opts.warmup > 0 {
                    let w = wrk(procs, tools, opts, run, script, opts.warmup)?;
                    if w.non_2xx > 0 || w.socket_errors > 0 {
                        warmup_errors.push(format!(
                            "{} via {} during the warm-up: {} non-2xx/3xx responses, {} socket \
                             errors",
                            scenario.label(),
                            target.label(),
                            w.non_2xx,
                            w.socket_errors
                        ));
                        warmup_moat_failed |= target == Target::Moat;
                    }
                }
                let r = wrk(procs, tools, opts, run, script, opts.duration)?;
                let cores: Vec<String> = r.core_busy.iter().map(|c| format!("{c:.0}%")).collect();
                let (l1, l2) = if opts.h2 {
                    ("mean", "max")
                } else {
                    ("p50", "p99")
                };
                eprintln!(
                    "bench: round {round} {:<20} {:<24} {:>8.0} req/s  {l1} {:.2} ms  {l2} {:.2} ms  \
                     server CPU {}  cores busy {}  other CPU {}  non-2xx {}  socket errors {}",
                    scenario.label(),
                    target.label(),
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.server_cpu.map_or("?".into(), |c| format!("{c:.0}%")),
                    cores.join("/"),
                    r.other_cpu.map_or("?".into(), |c| format!("{c:.0}%")),
                    r.non_2xx,
                    r.socket_errors
                );
                results[si][ti].push(r);
            }
        }
    }
    procs.check_alive()?;

    let background_after = background_load();
    let background = format!(
        "machine busy before the runs {background:.0}%, after {background_after:.0}% (other \
         processes; should be near 0)"
    );
    println!(
        "{}",
        report(opts, &versions, pinning, &background, &results)
    );

    if let Some(log) = procs.log_of("moat") {
        let text = fs::read_to_string(log).unwrap_or_default();
        if !text.trim().is_empty() {
            eprintln!(
                "bench: moat wrote to its log (level warn):\n{}",
                tail(log, 40)
            );
        }
    }

    // Errors through moat fail the command; errors elsewhere are only reported.
    let mut failures = Vec::new();
    for (si, &scenario) in Scenario::ALL.iter().enumerate() {
        for (ti, &target) in Target::ALL.iter().enumerate() {
            let non_2xx: u64 = results[si][ti].iter().map(|r| r.non_2xx).sum();
            let socket: u64 = results[si][ti].iter().map(|r| r.socket_errors).sum();
            let requests: u64 = results[si][ti].iter().map(|r| r.requests).sum();
            if non_2xx == 0 && socket == 0 && requests > 0 {
                continue;
            }
            let what = format!(
                "{} via {}: {requests} requests, {non_2xx} non-2xx/3xx responses, {socket} \
                 socket errors",
                scenario.label(),
                target.label()
            );
            if target == Target::Moat {
                failures.push(what);
            } else {
                eprintln!("bench: WARNING: {what}");
            }
        }
    }
    for e in &warmup_errors {
        eprintln!("bench: WARNING: {e}");
    }
    if warmup_moat_failed {
        failures.push("errors through moat during a warm-up run (see above)".into());
    }
    if !failures.is_empty() {
        bail!(
            "moat FAILED under load:\n  {}\nsee the moat log above",
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Checks each target answers each scenario correctly once (with curl, when present), so the
/// load runs measure real answers. Uses the CA for the TLS targets, so the chain is checked too.
fn smoke_test(tools: &Tools, setup: &Setup, ca: &Path) -> Result<()> {
    let Some(curl) = &tools.curl else {
        eprintln!("bench: curl not found; skipping the answer check before the load runs");
        return Ok(());
    };
    let body = post_body();
    for target in Target::ALL {
        for scenario in Scenario::ALL {
            let url = setup.url(target, scenario).replacen(
                &format!("//{}:", setup.host),
                "//localhost:",
                1,
            );
            let port = match target {
                Target::Direct => setup.upstream_port,
                Target::Moat => setup.moat_port,
                Target::Nginx => setup.nginx_port,
            };
            let mut cmd = Command::new(curl);
            cmd.args(["-sS", "--max-time", "10", "--cacert"])
                .arg(ca)
                .arg("--resolve")
                .arg(format!("localhost:{port}:{LOOPBACK}"));
            if scenario == Scenario::Post {
                cmd.args(["-H", "content-type: application/json", "--data-binary"])
                    .arg(&body);
            }
            let out = cmd.arg(&url).output()?;
            let got = String::from_utf8_lossy(&out.stdout);
            let want = match scenario {
                Scenario::Get => GET_BODY,
                Scenario::Post => POST_REPLY,
            };
            ensure!(
                out.status.success() && got == want,
                "{} via {} ({url}) answered {got:?} instead of {want:?}: {}",
                scenario.label(),
                target.label(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    eprintln!("bench: every target answers every scenario correctly");
    Ok(())
}

/// Runs wrk once against `url` for `secs`, killing it if it overruns, and measures the CPU time
/// the `server` process used meanwhile.
fn wrk(
    procs: &mut Procs,
    tools: &Tools,
    opts: &Options,
    (url, server): (&str, &str),
    script: Option<&Path>,
    secs: u64,
) -> Result<WrkResult> {
    let server_pid = procs.pid_of(server);
    let out_file = procs.dir.join("wrk.out");
    let out = fs::File::create(&out_file)?;
    let err = out.try_clone()?;
    let mut cmd;
    if let Some(h2load) = tools.h2load.as_ref().filter(|_| opts.h2) {
        // h2load: HTTP/2 with 10 streams per connection to the proxies (ALPN h2), HTTP/1.1 to
        // the plain upstream; the POST body comes from the file next to the wrk script.
        cmd = tools.pinned(0, h2load);
        cmd.args(["-t1", "-T5"])
            .arg(format!("-c{}", opts.connections))
            .arg(format!("-D{secs}"));
        if url.starts_with("http:") {
            cmd.args(["--h1", "-m1"]);
        } else {
            cmd.arg("-m10");
        }
        if let Some(s) = script {
            cmd.arg("-d")
                .arg(s.with_extension("json"))
                .args(["-H", "content-type: application/json"]);
        }
    } else {
        cmd = tools.pinned(0, &tools.wrk);
        cmd.args(["-t1", "--latency", "--timeout", "5s"])
            .arg(format!("-c{}", opts.connections))
            .arg(format!("-d{secs}s"));
        if let Some(s) = script {
            cmd.arg("-s").arg(s);
        }
    }
    cmd.arg(url);
    let server_before = server_pid.and_then(process_ticks);
    let ours_before = procs.ticks();
    let reaped_before = reaped_children_ticks();
    let cores_before = core_ticks();
    let child = cmd
        .current_dir(&procs.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut load = Proc {
        name: "wrk",
        child,
        log: out_file.clone(),
    };
    let polls = (secs + GRACE_SECS) * 1000 / 50;
    let mut status = None;
    for _ in 0..polls {
        if let Some(s) = load.child.try_wait()? {
            status = Some(s);
            break;
        }
        sleep(POLL);
    }
    drop(load); // kills wrk if it overran
    let server_after = server_pid.and_then(process_ticks);
    let ours_after = procs.ticks();
    let reaped_after = reaped_children_ticks(); // includes wrk, reaped above
    let cores_after = core_ticks();
    let text = fs::read_to_string(&out_file)?;
    let Some(status) = status else {
        bail!("{cmd:?} did not finish within {GRACE_SECS}s of its duration:\n{text}");
    };
    ensure!(status.success(), "{cmd:?} failed with {status}:\n{text}");
    procs.check_alive()?;
    let parsed = if opts.h2 {
        parse_h2load(&text)
    } else {
        parse_wrk(&text)
    };
    let mut r = parsed.with_context(|| format!("cannot read the output of {cmd:?}:\n{text}"))?;
    // Elapsed ticks: every CPU's total advances by the same wall-clock time.
    let elapsed = cores_before
        .first()
        .zip(cores_after.first())
        .map_or(0, |(b, a)| a.1.saturating_sub(b.1));
    if elapsed > 0 {
        let pct = |used: u64| used as f64 * 100.0 / elapsed as f64;
        r.server_cpu = server_before
            .zip(server_after)
            .map(|(b, a)| pct(a.saturating_sub(b)));
        r.core_busy = cores_before
            .iter()
            .zip(&cores_after)
            .map(|(b, a)| {
                let total = a.1.saturating_sub(b.1);
                if total == 0 {
                    0.0
                } else {
                    a.0.saturating_sub(b.0) as f64 * 100.0 / total as f64
                }
            })
            .collect();
        let busy: u64 = cores_before
            .iter()
            .zip(&cores_after)
            .map(|(b, a)| a.0.saturating_sub(b.0))
            .sum();
        r.other_cpu = ours_before
            .zip(ours_after)
            .zip(reaped_before.zip(reaped_after))
            .map(|((ob, oa), (rb, ra))| {
                let ours = oa.saturating_sub(ob) + ra.saturating_sub(rb);
                pct(busy.saturating_sub(ours))
            });
    }
    Ok(r)
}

/// Reads requests/s, the mean and longest request time (in the p50 and p99 fields: h2load
/// reports no percentiles) and the failures from h2load's output.
fn parse_h2load(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut rps, mut mean) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            rps = rest
                .split(", ")
                .nth(1)
                .and_then(|v| v.strip_suffix(" req/s"))
                .and_then(|v| v.parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let mut it = part.split(' ');
                let n: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                match it.next() {
                    Some("total") => r.requests = n,
                    Some("failed" | "errored" | "timeout") => r.socket_errors += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            r.non_2xx = rest
                .split(", ")
                .filter(|p| !p.ends_with(" 2xx") && !p.ends_with(" 3xx"))
                .filter_map(|p| p.split(' ').next()?.parse::<u64>().ok())
                .sum();
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            let cols: Vec<&str> = rest.split_whitespace().collect();
            // min, max, mean, sd, +/- sd
            if cols.len() >= 3 {
                mean = Some(duration_ms(cols[2])?);
                r.p99_ms = duration_ms(cols[1])?;
            }
        }
    }
    r.rps = rps.context("no req/s line")?;
    r.p50_ms = mean.context("no request time line")?;
    Ok(r)
}

/// Reads requests/s, the 50th and 99th percentiles and the error counts from wrk's output.
fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut rps, mut p50, mut p99) = (None, None, None);
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().context("bad Non-2xx count")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let n = part.split_whitespace().last().unwrap_or("0");
                r.socket_errors += n.parse::<u64>().context("bad socket error count")?;
            }
        } else if line.contains(" requests in ") {
            r.requests = words
                .next()
                .and_then(|w| w.parse().ok())
                .context("bad request count")?;
        } else if let (Some(pct), Some(v), None) = (words.next(), words.next(), words.next()) {
            match pct {
                "50%" => p50 = Some(duration_ms(v)?),
                "99%" => p99 = Some(duration_ms(v)?),
                _ => {}
            }
        }
    }
    r.rps = rps.context("no Requests/sec line")?;
    r.p50_ms = p50.context("no 50% latency line (was --latency given?)")?;
    r.p99_ms = p99.context("no 99% latency line")?;
    Ok(r)
}

/// wrk's durations ("812.00us", "1.05ms", "2.00s", "1.00m") in milliseconds.
fn duration_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {v:?}"))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("bad number in {v:?}"))?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {v:?}"),
    };
    Ok(n * factor)
}

/// The median of the rounds by requests/s (the upper one for an even count).
fn median(rounds: &[WrkResult]) -> WrkResult {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted.get(sorted.len() / 2).cloned().unwrap_or_default()
}

/// The results table (Markdown), with the settings it was measured with.
fn report(
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
fn versions(tools: &Tools, moat: &Path) -> String {
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

/// A ~1 KiB chat-completions-like JSON request body.
fn post_body() -> String {
    let head = r#"{"model":"bench","messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let fill = POST_SIZE.saturating_sub(head.len() + tail.len());
    let text: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(fill)
        .collect();
    format!("{head}{text}{tail}")
}

/// The wrk script for the JSON POST.
fn post_script() -> String {
    format!(
        "-- Written by `cargo xtask bench`.\nwrk.method = \"POST\"\nwrk.body = [==[{}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
        post_body()
    )
}

/// nginx command-line arguments: prefix, configuration and early error log in `dir`.
fn nginx_args(dir: &Path, name: &str, conf: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        format!("{}/", dir.display()),
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        dir.join(format!("{name}-error.log")).display().to_string(),
    ]
}

/// The parts of an nginx configuration both instances share: one process in the foreground,
/// everything in `dir`, no access log, keep-alive connections never closed for request counts.
fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "# Written by `cargo xtask bench`.\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}-error.log warn;\n\
         events {{ worker_connections 4096; }}\n"
    )
}

fn nginx_http_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "    access_log off;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   keepalive_timeout 75s;\n\
         \x20   client_body_temp_path {d}/{name}-body;\n\
         \x20   proxy_temp_path {d}/{name}-proxy;\n\
         \x20   fastcgi_temp_path {d}/{name}-fastcgi;\n\
         \x20   uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20   scgi_temp_path {d}/{name}-scgi;\n"
    )
}

/// The fast upstream: fixed answers with `return 200`, for GET and for the JSON POST.
fn upstream_config(dir: &Path, port: u16) -> String {
    format!(
        "{common}http {{\n{http}\
         \x20   server {{\n\
         \x20       listen {LOOPBACK}:{port};\n\
         \x20       location / {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"{get}\";\n\
         \x20       }}\n\
         \x20       location = {POST_PATH} {{\n\
         \x20           default_type application/json;\n\
         \x20           return 200 '{POST_REPLY}';\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "upstream"),
        http = nginx_http_common(dir, "upstream"),
        get = GET_BODY.replace('\n', "\\n"),
    )
}

/// nginx as the peer: TLS termination with moat's certificate, keep-alive to the upstream.
fn proxy_config(dir: &Path, cert: &Path, key: &Path, port: u16, upstream: u16) -> String {
    format!(
        "{common}http {{\n{http}\
         \x20   upstream fast {{\n\
         \x20       server {LOOPBACK}:{upstream};\n\
         \x20       keepalive 64;\n\
         \x20       keepalive_requests 100000000;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {LOOPBACK}:{port} ssl http2;\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://fast;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "nginx-proxy"),
        http = nginx_http_common(dir, "nginx-proxy"),
        cert = cert.display(),
        key = key.display(),
    )
}

/// moat with one runtime worker in front of the upstream, its audit trail fsynced per `fsync`.
fn moat_config(cert: &Path, key: &Path, port: u16, upstream: u16, fsync: &str) -> String {
    format!(
        "# Written by `cargo xtask bench`.\n\
         [runtime]\n\
         worker_threads = 1\n\
         \n\
         [log]\n\
         level = \"warn\"\n\
         format = \"text\"\n\
         \n\
         [[listener]]\n\
         address = \"{LOOPBACK}:{port}\"\n\
         upstream = \"model\"\n\
         \n\
         [[tls.certificate]]\n\
         cert_file = \"{cert}\"\n\
         key_file = \"{key}\"\n\
         \n\
         [upstreams.model]\n\
         address = \"{LOOPBACK}:{upstream}\"\n\
         \n\
         # The audit trail lives in the bench's own directory (relative to this file).\n\
         [audit]\n\
         dir = \"audit\"\n\
         key_dir = \"state\"\n\
         fsync = \"{fsync}\"\n\
         \n\
         [[policy.rules]]\n\
         id = \"bench-allow-all\"\n\
         require_region = false\n\
         action = \"allow\"\n",
        cert = cert.display(),
        key = key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2LOAD_OUTPUT: &str = "starting benchmark...
finished in 10.00s, 35243.10 req/s, 2.34MB/s
requests: 352431 total, 352431 started, 352431 done, 352430 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 352430 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 23.40MB (24536789) total, 1.02MB (1069842) headers (space savings 95.31%), 10.72MB (11234567) data
                     min         max         mean         sd        +/- sd
time for request:      123us     45.67ms      8.91ms      1.23ms    75.00%
";

    #[test]
    fn parses_h2load_output() -> Result<()> {
        let r = parse_h2load(H2LOAD_OUTPUT)?;
        assert_eq!(r.requests, 352_431);
        assert!((r.rps - 35_243.1).abs() < 0.01);
        assert!((r.p50_ms - 8.91).abs() < 1e-9, "mean");
        assert!((r.p99_ms - 45.67).abs() < 1e-9, "max");
        assert_eq!((r.non_2xx, r.socket_errors), (1, 1));
        assert!(parse_h2load("requests: 1 total\n").is_err());
        Ok(())
    }

    const WRK_OUTPUT: &str = "Running 10s test @ https://127.0.0.1:8443/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  200.00us   9.00ms   90.00%
    Req/Sec    29.10k     1.00k   31.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.21ms
  290000 requests in 10.00s, 40.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  29000.50
Transfer/sec:      4.00MB
";

    #[test]
    fn parses_wrk_output() -> Result<()> {
        let r = parse_wrk(WRK_OUTPUT)?;
        assert_eq!(r.requests, 290_000);
        assert!((r.rps - 29_000.5).abs() < 1e-9);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 2.21).abs() < 1e-9);
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.socket_errors, 3);
        Ok(())
    }

    #[test]
    fn missing_latency_is_an_error() {
        assert!(parse_wrk("Requests/sec: 10.0\n").is_err());
    }

    #[test]
    fn converts_units() -> Result<()> {
        assert!((duration_ms("1.50s")? - 1500.0).abs() < 1e-9);
        assert!((duration_ms("250.00us")? - 0.25).abs() < 1e-9);
        assert!(duration_ms("3.0x").is_err());
        Ok(())
    }

    #[test]
    fn post_body_is_one_kib_of_json() {
        let body = post_body();
        assert_eq!(body.len(), POST_SIZE);
        assert!(body.starts_with('{') && body.ends_with('}'));
        assert!(!body.contains("]==]"));
    }

    #[test]
    fn options_parse() -> Result<()> {
        let args: Vec<String> = ["--duration", "3", "--connections", "8"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let o = Options::parse(&args)?;
        assert_eq!((o.duration, o.connections, o.rounds), (3, 8, 1));
        assert_eq!(o.fsync, "batch");
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
        let o = Options::parse(&["--fsync".to_owned(), "always".to_owned()])?;
        assert_eq!(o.fsync, "always");
        assert!(Options::parse(&["--fsync".to_owned(), "sometimes".to_owned()]).is_err());
        Ok(())
    }
}
