//! The external programs the benchmark uses and the processes it starts.

use std::ffi::OsString;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use super::peers::LOOPBACK;
use super::sys::process_ticks;

/// How long a started server may take to accept connections.
pub(super) const STARTUP: Duration = Duration::from_secs(15);
/// Poll interval while waiting for a port or a process.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// The CPU the proxies run on when pinned; the load generators and the upstream use CPU 0.
pub(super) const PROXY_CPU: usize = 1;

/// External programs the benchmark uses.
pub(super) struct Tools {
    pub(super) nginx: PathBuf,
    pub(super) haproxy: PathBuf,
    pub(super) wrk: PathBuf,
    /// `h2load` (Debian `nghttp2-client`).
    pub(super) h2load: PathBuf,
    /// `taskset`, when present and there are at least two CPUs to pin to.
    pub(super) taskset: Option<PathBuf>,
    pub(super) curl: Option<PathBuf>,
}

impl Tools {
    /// Finds the programs, installing the missing ones with apt-get.
    pub(super) fn ensure() -> Result<Self> {
        let missing: Vec<&str> = [
            ("nginx", "nginx"),
            ("haproxy", "haproxy"),
            ("wrk", "wrk"),
            ("h2load", "nghttp2-client"),
        ]
        .into_iter()
        .filter(|(tool, _)| find_tool(tool).is_none())
        .map(|(_, package)| package)
        .collect();
        if !missing.is_empty() {
            eprintln!(
                "bench: {} not found; installing with apt-get",
                missing.join(", ")
            );
            apt_install(&missing)?;
        }
        let (taskset, cpus) = pinning();
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
        let found = |name: &str| {
            find_tool(name).with_context(|| format!("{name} still not found after installing"))
        };
        Ok(Self {
            nginx: found("nginx")?,
            haproxy: found("haproxy")?,
            wrk: found("wrk")?,
            h2load: found("h2load")?,
            taskset,
            curl: find_tool("curl"),
        })
    }

    /// A command for `program`, pinned to `cpu` when pinning is available.
    pub(super) fn pinned(&self, cpu: usize, program: &Path) -> Command {
        match &self.taskset {
            Some(t) => {
                let mut c = Command::new(t);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The CPU the proxies are pinned to, or `None` (the whole machine) without pinning.
    pub(super) fn proxy_cpu(&self) -> Option<usize> {
        self.taskset.as_ref().map(|_| PROXY_CPU)
    }
}

/// Installs Debian `packages` with apt-get (non-interactively, without recommends).
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    let hint = format!("install {} by hand", packages.join(" "));
    crate::run(Command::new("apt-get").arg("update"))
        .with_context(|| format!("apt-get update failed ({hint})"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install failed ({hint})"))
}

/// `taskset`, when it is present and there are at least two CPUs to pin to; and the CPU count.
pub(crate) fn pinning() -> (Option<PathBuf>, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset = if cpus >= 2 {
        find_tool("taskset")
    } else {
        None
    };
    (taskset, cpus)
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

/// This program built in release, for the handshake client: a debug build of rustls spends
/// several times the CPU of the proxy on each handshake.
pub(super) fn build_client() -> Result<PathBuf> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "xtask", "--bin", "xtask"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::root().join("target"), PathBuf::from);
    let bin = target.join("release/xtask");
    ensure!(bin.is_file(), "built xtask not found at {}", bin.display());
    Ok(bin)
}

/// A started process; killed and reaped when dropped.
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) log: PathBuf,
    /// How to start it again (servers only).
    pub(super) relaunch: Option<Relaunch>,
}

/// A server's command line and port, to start it again.
pub(super) struct Relaunch {
    program: OsString,
    args: Vec<OsString>,
    port: u16,
}

impl Proc {
    /// Fails, with the tail of its log, if the process has exited.
    pub(super) fn check_alive(&mut self) -> Result<()> {
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
pub(super) struct Procs {
    pub(super) dir: PathBuf,
    pub(super) keep_dir: bool,
    pub(super) children: Vec<Proc>,
}

impl Procs {
    /// Starts `cmd` with its output in `<dir>/<name>.log` and waits until it accepts TCP on
    /// `port`.
    pub(super) fn start(&mut self, name: &'static str, cmd: &mut Command, port: u16) -> Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        let relaunch = Relaunch {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            port,
        };
        eprintln!("+ {cmd:?}");
        let child = cmd
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        self.children.push(Proc {
            name,
            child,
            log,
            relaunch: Some(relaunch),
        });
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

    /// Stops the server `name`, removes the directories `clear` (state it would otherwise
    /// recover), and starts it again with the same command line, so that it starts from a fresh
    /// process (its log goes on in the same file).
    pub(super) fn restart(&mut self, name: &'static str, clear: &[PathBuf]) -> Result<()> {
        let i = self
            .children
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("{name} is not running"))?;
        let mut old = self.children.remove(i);
        let r = old
            .relaunch
            .take()
            .with_context(|| format!("{name} cannot be restarted"))?;
        drop(old); // killed and reaped, so its port is free
        for d in clear.iter().filter(|d| d.exists()) {
            fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
        let mut cmd = Command::new(&r.program);
        cmd.args(&r.args);
        self.start(name, &mut cmd, r.port)
    }

    pub(super) fn check_alive(&mut self) -> Result<()> {
        self.children.iter_mut().try_for_each(Proc::check_alive)
    }

    /// CPU ticks all running children have used so far.
    pub(super) fn ticks(&self) -> Option<u64> {
        self.children
            .iter()
            .map(|p| process_ticks(p.child.id()))
            .sum()
    }

    pub(super) fn pid_of(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.child.id())
    }

    pub(super) fn log_of(&self, name: &str) -> Option<&Path> {
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
pub(super) fn tail(path: &Path, n: usize) -> String {
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
pub(super) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0_u16; N];
    for p in &mut ports {
        let l = TcpListener::bind((LOOPBACK, 0)).context("cannot bind a loopback port")?;
        *p = l.local_addr()?.port();
        held.push(l);
    }
    Ok(ports)
}
