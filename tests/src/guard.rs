//! Support for egress-guard tests: root check, a throwaway child cgroup, a throwaway pin
//! directory, and a probe process that joins the cgroup and tries connections.
//!
//! Nothing here touches the root cgroup or a real interface: programs attach only to the child
//! cgroup a test creates, and both the cgroup and the pins are removed on drop (also when the
//! test fails).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::gateway::binary;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether guard tests can run here. Without root they are skipped, except under `CI=true`,
/// where a skipped guard test is a failure.
pub fn can_run() -> bool {
    let root = nix_is_root();
    if !root {
        crate::skip::skip("guard tests need root");
    }
    root
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The cgroup v2 mount point, from `/proc/mounts`.
pub fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}

/// A child cgroup of the cgroup v2 root, removed on drop (its processes killed first).
#[derive(Debug)]
pub struct TestCgroup {
    /// Its directory.
    pub path: PathBuf,
}

impl TestCgroup {
    /// Creates `<cgroup2 mount>/moat-test-<pid>-<n>`.
    pub fn new() -> Self {
        let path = cgroup2_mount().join(unique("moat-test"));
        std::fs::create_dir(&path).expect("create test cgroup");
        Self { path }
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A bpffs pin directory for one test; the fence pinned there is detached on drop.
#[derive(Debug)]
pub struct PinDir {
    /// The directory.
    pub path: PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/moat-test-<pid>-<n>` (not created: moat creates it).
    pub fn new() -> Self {
        Self {
            path: Path::new("/sys/fs/bpf").join(unique("moat-test")),
        }
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = Command::new(binary())
                .args(["guard", "detach", "--pin-dir"])
                .arg(&self.path)
                .output();
        }
    }
}

/// `[guard]` TOML for a fence on `cgroup` pinned at `pins`.
pub fn section(
    mode: &str,
    cgroup: &TestCgroup,
    pins: &PinDir,
    allow: &[&str],
    serve_ports: &[u16],
) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    let ports: Vec<String> = serve_ports.iter().map(ToString::to_string).collect();
    format!(
        "[guard]\nmode = \"{mode}\"\ncgroups = [\"{}\"]\nallow = [{}]\nserve_ports = [{}]\nrequired = true\npin_dir = \"{}\"\n",
        cgroup.path.display(),
        allow.join(", "),
        ports.join(", "),
        pins.path.display()
    )
}

/// The probe: joins the cgroup given as its first argument, runs the actions given as JSON in
/// its second, prints one JSON result per action: `"ok"`, `"EPERM"`, another errno name, or
/// `"timeout"`.
const PROBE: &str = r#"
import errno, json, os, socket, struct, sys, time
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
def err(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    return errno.errorcode.get(e.errno, str(e.errno))
def tcp(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return "ok"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def udp(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(b"probe", (host, port))
        return "ok"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
def icmp(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(1)
    ident = os.getpid() & 0xffff
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"moat-probe"
    pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, 1) + payload
    try:
        s.sendto(pkt, (host, 0))
    except OSError as e:
        return err(e)
    deadline = time.time() + 1
    try:
        while time.time() < deadline:
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 0x0f) * 4
            t, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if t == 0 and rid == ident and addr[0] == host:
                return "ok"
        return "timeout"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def loop_tcp(host, port, seconds):
    # Connects again and again for `seconds`; reports how many got through.
    end = time.time() + seconds
    n = ok = 0
    while time.time() < end:
        n += 1
        if tcp(host, port) == "ok":
            ok += 1
        time.sleep(0.002)
    return "%d/%d" % (ok, n)
out = []
for a in json.loads(sys.argv[2]):
    kind = a[0]
    if kind == "tcp":
        out.append(tcp(a[1], a[2]))
    elif kind == "udp":
        out.append(udp(a[1], a[2]))
    elif kind == "icmp":
        out.append(icmp(a[1]))
    elif kind == "loop_tcp":
        out.append(loop_tcp(a[1], a[2], a[3]))
    elif kind == "pid":
        out.append(str(os.getpid()))
print(json.dumps(out), flush=True)
"#;

/// One action for the probe.
#[derive(Debug, Clone)]
pub enum Action {
    /// TCP connect to an address.
    Tcp(SocketAddr),
    /// UDP `sendto` an address.
    Udp(SocketAddr),
    /// ICMP echo through a raw socket, waiting up to 1 s for the reply.
    Icmp(std::net::IpAddr),
    /// TCP connects in a loop for some seconds; result `"<ok>/<tried>"`.
    LoopTcp(SocketAddr, f64),
    /// The probe's pid.
    Pid,
}

fn json(actions: &[Action]) -> String {
    let items: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Tcp(s) => format!("[\"tcp\", \"{}\", {}]", s.ip(), s.port()),
            Action::Udp(s) => format!("[\"udp\", \"{}\", {}]", s.ip(), s.port()),
            Action::Icmp(ip) => format!("[\"icmp\", \"{ip}\"]"),
            Action::LoopTcp(s, secs) => {
                format!("[\"loop_tcp\", \"{}\", {}, {secs}]", s.ip(), s.port())
            }
            Action::Pid => "[\"pid\"]".to_owned(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Runs the probe inside `cgroup` and returns one result per action.
pub fn probe(cgroup: &Path, actions: &[Action]) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PROBE)
        .arg(cgroup)
        .arg(json(actions))
        .output()
        .expect("python3 (the probe) must be installed");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("probe output: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Starts the probe in the background (for actions that must overlap with something else).
pub fn probe_spawn(cgroup: &Path, actions: &[Action]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(PROBE)
        .arg(cgroup)
        .arg(json(actions))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the probe) must be installed")
}

/// `moat guard status --pin-dir`.
pub fn status(pins: &PinDir) -> String {
    let out = Command::new(binary())
        .args(["guard", "status", "--pin-dir"])
        .arg(&pins.path)
        .output()
        .expect("guard status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
