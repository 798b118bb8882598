//! The external programs the benchmark uses and the processes it starts.

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

/// External programs the benchmark uses.
pub(super) struct Tools {
    pub(super) nginx: PathBuf,
    pub(super) wrk: PathBuf,
    /// `h2load` (Debian `nghttp2-client`), for `--h2`.
    pub(super) h2load: Option<PathBuf>,
    /// `taskset`, when present and there are at least two CPUs to pin to.
    pub(super) taskset: Option<PathBuf>,
    pub(super) curl: Option<PathBuf>,
}

impl Tools {
    pub(super) fn ensure(h2: bool) -> Result<Self> {
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
    pub(super) fn pinned(&self, cpu: u32, program: &Path) -> Command {
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
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) log: PathBuf,
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
