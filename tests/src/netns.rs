//! A network namespace a test creates for itself (root only), removed when dropped: commands and
//! threads can run inside it, so nftables rules and addresses there never touch the machine's
//! own network.

use std::process::Command;

/// A named network namespace with loopback up.
#[derive(Debug)]
pub struct NetNs {
    /// Its name (`ip netns` name).
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Creates `moat-<tag>-<pid>` with loopback up and `addrs` (CIDRs) on loopback.
    pub fn new(tag: &str, addrs: &[&str]) -> Self {
        let name = format!("moat-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for a in addrs {
            ip(&["-n", &ns.name, "addr", "add", a, "dev", "lo"]);
        }
        ns
    }

    /// Runs `ip -n <namespace> <args>` (routes, rules).
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Loads nftables rules (`nft -f -` syntax) inside the namespace.
    pub fn nft(&self, rules: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules");
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it creates live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        Self::enter(&self.name, f)
    }

    /// Runs `f` on a thread inside the namespace called `name`.
    pub fn enter<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        Self::spawn_in(name, f)
            .join()
            .expect("thread in the namespace")
    }

    /// Starts `f` on a thread inside the namespace called `name`.
    pub fn spawn_in<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{name}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
