//! Starts the real `moat` binary with a generated configuration, and stops it on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of the `moat` binary under test.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOAT_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/moat");
    assert!(
        p.exists(),
        "moat binary not found at {}: run `cargo xtask test` (or `cargo build -p moat`)",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Builder for a gateway in front of one upstream.
#[derive(Debug, Clone)]
pub struct Builder {
    upstream: String,
    extra: String,
    audit: String,
    audit_dir: Option<PathBuf>,
    policy: String,
    listener: String,
    upstream_extra: String,
    sections: String,
    env: Vec<(String, String)>,
    runtime: String,
    netns: Option<String>,
}

/// The policy of a test gateway unless [`Builder::policy`] replaces it: everyone may do
/// everything (tests of identity and policy bring their own).
pub const ALLOW_ALL: &str =
    "[[policy.rules]]\nid = \"e2e-allow-all\"\nrequire_region = false\naction = \"allow\"\n";

/// Starts describing a gateway whose upstream is `upstream` (an address or `unix:/path`).
pub fn new(upstream: impl Into<String>) -> Builder {
    Builder {
        upstream: upstream.into(),
        extra: String::new(),
        audit: String::new(),
        audit_dir: None,
        policy: ALLOW_ALL.to_owned(),
        listener: String::new(),
        upstream_extra: String::new(),
        sections: String::new(),
        env: Vec::new(),
        runtime: String::new(),
        netns: None,
    }
}

impl Builder {
    /// Appends raw TOML to the `[http]` table.
    pub fn http(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Appends raw TOML to the `[audit]` table (whose `dir` is `audit/` in the test directory).
    pub fn audit(mut self, toml: &str) -> Self {
        self.audit.push_str(toml);
        self.audit.push('\n');
        self
    }

    /// Appends raw TOML to the `[[listener]]` table (e.g. `identity = ["api_key"]`); relative
    /// paths resolve against the test directory, which holds `tls/` from `moat cert init`.
    pub fn listener(mut self, toml: &str) -> Self {
        self.listener.push_str(toml);
        self.listener.push('\n');
        self
    }

    /// Appends raw TOML to the `[upstreams.model]` table.
    pub fn upstream(mut self, toml: &str) -> Self {
        self.upstream_extra.push_str(toml);
        self.upstream_extra.push('\n');
        self
    }

    /// Replaces the default allow-all policy with these `[[policy.rules]]` (and anything else).
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy = toml.to_owned();
        self
    }

    /// Puts the audit trail in `dir` instead of the test directory.
    pub fn audit_dir(mut self, dir: &Path) -> Self {
        self.audit_dir = Some(dir.to_owned());
        self
    }

    /// Appends raw TOML after the `[http]` table (e.g. a `[guard]` section).
    pub fn section(mut self, toml: &str) -> Self {
        self.sections.push_str(toml);
        self.sections.push('\n');
        self
    }

    /// Appends raw TOML to the `[runtime]` table (e.g. `user = "nobody"`).
    pub fn runtime(mut self, toml: &str) -> Self {
        self.runtime.push_str(toml);
        self.runtime.push('\n');
        self
    }

    /// Runs moat inside a network namespace the test created.
    pub fn netns(mut self, ns: &crate::netns::NetNs) -> Self {
        self.netns = Some(ns.name.clone());
        self
    }

    /// Sets an environment variable for `moat run`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Writes certificates and configuration, starts `moat run`, waits until it accepts TCP.
    pub fn run(self) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(binary())
            .args(["cert", "init", "--dir"])
            .arg(dir.path().join("tls"))
            .args(["--host", "localhost", "--host", "127.0.0.1"])
            .output()
            .expect("moat cert init");
        assert!(
            out.status.success(),
            "cert init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let audit_dir = self
            .audit_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("audit"));
        // Two workers unless the test chose (one runs the single-threaded runtime).
        let workers = if self.runtime.contains("worker_threads") {
            ""
        } else {
            "worker_threads = 2"
        };
        let config = format!(
            r#"[runtime]
{workers}
{runtime}
[log]
format = "json"
level = "info"
[[listener]]
name = "e2e"
address = "{addr}"
upstream = "model"
{listener}
[[tls.certificate]]
cert_file = "tls/server.pem"
key_file = "tls/server.key"
[upstreams.model]
address = "{up}"
connect_timeout = "1s"
response_header_timeout = "2s"
{upstream_extra}
[audit]
dir = "{audit_dir}"
key_dir = "state"
{audit}
[http]
{extra}
{sections}
{policy}"#,
            up = self.upstream,
            extra = self.extra,
            audit = self.audit,
            audit_dir = audit_dir.display(),
            sections = self.sections,
            policy = self.policy,
            listener = self.listener,
            upstream_extra = self.upstream_extra,
            runtime = self.runtime,
        );
        let config_file = dir.path().join("moat.toml");
        std::fs::write(&config_file, config).expect("write config");
        let log_file = dir.path().join("moat.log");
        let log = std::fs::File::create(&log_file).expect("log file");
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config_file)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moat");
        let mut gw = Gateway {
            child,
            addr,
            ca: dir.path().join("tls/ca.pem"),
            log_file,
            config_file,
            audit_dir,
            netns: self.netns,
            _dir: dir,
        };
        gw.wait_ready();
        gw
    }
}

/// A running gateway; killed on drop.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// Listening address.
    pub addr: SocketAddr,
    /// CA certificate that signed the gateway's certificate.
    pub ca: PathBuf,
    log_file: PathBuf,
    config_file: PathBuf,
    audit_dir: PathBuf,
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn wait_ready(&mut self) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moat exited with {status}: {}", self.log());
            }
            let addr = self.addr;
            let up = match &self.netns {
                None => {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
                }
                Some(ns) => crate::netns::NetNs::enter(ns, move || {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
                }),
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "moat did not start listening on {}: {}",
            self.addr,
            self.log()
        );
    }

    /// The directory `moat cert init` wrote (`ca.pem`, `client.pem`, `client.key`, …).
    pub fn tls_dir(&self) -> PathBuf {
        self._dir.path().join("tls")
    }

    /// The audit directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.audit_dir.clone()
    }

    /// Every audit record written so far, in order.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.audit_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// The audit records `accept` takes, once there are at least `at_least` of them (waiting up
    /// to 5 s for the writer; fewer if that time passes).
    pub async fn wait_for_records(
        &self,
        at_least: usize,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        for _ in 0..50 {
            found = self
                .audit_records()
                .into_iter()
                .filter(|r| accept(r))
                .collect();
            if found.len() >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found
    }

    /// The audit record carrying `request_id`, waiting up to 3 s for the writer.
    pub async fn audit_record(&self, request_id: &str) -> serde_json::Value {
        for _ in 0..100 {
            if let Some(r) = self
                .audit_records()
                .into_iter()
                .find(|r| r["request_id"] == request_id)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("no audit record for {request_id}");
    }

    /// The configuration file.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// Starts `moat run` again with the same configuration (after [`Self::kill9`]).
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_file)
            .expect("log file");
        self.child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&self.config_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart moat");
        self.wait_ready();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `within` for moat to exit; its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let step = Duration::from_millis(20);
        for _ in 0..=within.as_millis() / step.as_millis() {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(step);
        }
        None
    }

    /// Kills the process with SIGKILL (no cleanup of any kind) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything moat logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The resident set now, in KiB, after resetting the peak (`VmHWM`) to it, so that a later
    /// `memory_kib("VmHWM")` measures the highest point reached from here on, not a peak left
    /// from start-up (building the redaction engine allocates and frees more than a transfer
    /// should; the allocator returns it to the system at a moment of its choosing).
    pub fn memory_baseline_kib(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("reset the peak resident set (clear_refs 5)");
        self.memory_kib("VmRSS")
    }

    /// A field from `/proc/<pid>/status`, in KiB (e.g. `VmHWM`, `VmRSS`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.trim_start_matches(':').trim().strip_suffix(" kB"))
            })
            .and_then(|v| v.trim().parse().ok())
            .expect("memory field")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
