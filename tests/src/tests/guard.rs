//! The egress guard, for real: programs attached to a child cgroup this test creates, a probe
//! process inside it, listeners on loopback addresses outside it. Needs root (skipped without,
//! except under CI=true).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use crate::gateway::{self, Gateway};
use crate::guard::{can_run, probe, probe_spawn, section, status, Action, PinDir, TestCgroup};
use crate::origin::Origin;

/// A listener on `ip` (any free port), accepting in the background so connects complete.
fn listen(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    addr
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port)
}

async fn guarded(
    cgroup: &TestCgroup,
    pins: &PinDir,
    mode: &str,
    allow: &[&str],
    serve: &[u16],
) -> (Gateway, Origin) {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .section(&section(mode, cgroup, pins, allow, serve))
        .run();
    (gw, origin)
}

/// Waits for a guard log line matching all `needles`.
async fn guard_line(gw: &Gateway, needles: &[&str]) -> serde_json::Value {
    for _ in 0..100 {
        if let Some(line) = gw
            .log()
            .lines()
            .find(|l| l.contains("moat::guard") && needles.iter().all(|n| l.contains(n)))
        {
            return serde_json::from_str(line).expect("JSON log line");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no guard log line with {needles:?} in:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_allows_only_the_allow_list() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let allowed = listen("127.0.0.1");
    let other = listen("127.0.0.2");
    let pinned_port = listen("127.0.0.3");
    let v6 = listen("::1");
    let allow = [
        "127.0.0.1/32",
        "::1/128",
        &format!("127.0.0.3:{}/tcp", pinned_port.port()),
    ];
    let (gw, _origin) = guarded(&cgroup, &pins, "enforce", &allow, &[]).await;

    let r = probe(
        &cgroup.path,
        &[
            Action::Tcp(allowed),
            Action::Tcp(at("127.0.0.2", other.port())),
            Action::Udp(at("127.0.0.2", 9)),
            Action::Tcp(v6),
            Action::Tcp(at("fd00::1", 80)),
            Action::Tcp(at("::ffff:127.0.0.1", allowed.port())),
            Action::Tcp(at("::ffff:127.0.0.2", other.port())),
            Action::Tcp(pinned_port),
            Action::Tcp(at("127.0.0.3", pinned_port.port().wrapping_add(1))),
            Action::Tcp(at("127.0.0.4", pinned_port.port())),
            Action::Udp(at("127.0.0.3", pinned_port.port())),
        ],
    );
    let expected = [
        ("allowed loopback", "ok"),
        ("other loopback address", "EPERM"),
        ("UDP to other address", "EPERM"),
        ("::1", "ok"),
        ("other IPv6", "EPERM"),
        ("IPv4-mapped allowed", "ok"),
        ("IPv4-mapped refused", "EPERM"),
        ("allowed address and port", "ok"),
        ("allowed address, other port", "EPERM"),
        ("allowed port, other address", "EPERM"),
        ("allowed address and port, other protocol", "EPERM"),
    ];
    for (got, (what, want)) in r.iter().zip(expected) {
        assert_eq!(got, want, "{what}: {r:?}");
    }

    // A process outside the cgroup is unaffected.
    assert!(std::net::TcpStream::connect(at("127.0.0.2", other.port())).is_ok());

    let st = status(&pins);
    assert!(st.contains("mode: enforce"), "{st}");
    assert!(st.contains(&cgroup.path.display().to_string()), "{st}");
    assert!(st.contains("refused: 7"), "{st}");
    drop(gw);
}

/// Each refusal is reported with the process that tried, and where to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_process_and_destination() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let (gw, _origin) = guarded(&cgroup, &pins, "enforce", &["127.0.0.1/32"], &[]).await;
    let r = probe(
        &cgroup.path,
        &[
            Action::Pid,
            Action::Tcp(at("127.0.0.2", 4242)),
            Action::Udp(at("127.0.0.2", 5353)),
        ],
    );
    assert_eq!(r[1..], ["EPERM", "EPERM"]);
    let pid: u64 = r[0].parse().expect("pid");
    let tcp = guard_line(&gw, &["\"port\":4242"]).await;
    assert_eq!(tcp["pid"], pid);
    assert_eq!(tcp["comm"], "python3");
    assert_eq!(tcp["addr"], "127.0.0.2");
    assert_eq!(tcp["protocol"], "tcp");
    assert_eq!(tcp["verdict"], "refused");
    assert_eq!(tcp["hook"], "connect");
    let udp = guard_line(&gw, &["\"port\":5353"]).await;
    assert_eq!(udp["pid"], pid);
    assert_eq!(udp["protocol"], "udp");
    assert_eq!(udp["hook"], "sendmsg");
    drop(gw);
}

/// Raw sockets bypass connect/sendmsg; the packet backstop drops what they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_icmp_to_a_refused_address_is_dropped() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let (gw, _origin) = guarded(&cgroup, &pins, "enforce", &["127.0.0.1/32"], &[]).await;
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let r = probe(
        &cgroup.path,
        &[Action::Icmp(ip("127.0.0.1")), Action::Icmp(ip("127.0.0.2"))],
    );
    assert_eq!(r[0], "ok", "echo to an allowed address is answered");
    assert_ne!(r[1], "ok", "echo to a refused address got through");
    let st = status(&pins);
    assert!(
        st.contains("127.0.0.2 icmp: "),
        "per-destination drop counter: {st}"
    );
    assert!(!st.contains("packets_dropped: 0"), "{st}");
    let line = guard_line(&gw, &["\"hook\":\"egress\"", "127.0.0.2"]).await;
    assert_eq!(line["protocol"], "icmp");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_lets_through_and_still_reports() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let other = listen("127.0.0.2");
    let (gw, _origin) = guarded(&cgroup, &pins, "monitor", &["127.0.0.1/32"], &[]).await;
    let r = probe(
        &cgroup.path,
        &[Action::Tcp(other), Action::Udp(at("127.0.0.2", 9))],
    );
    assert_eq!(r, ["ok", "ok"]);
    let line = guard_line(&gw, &[&format!("\"port\":{}", other.port())]).await;
    assert_eq!(line["verdict"], "monitored");
    assert!(status(&pins).contains("mode: monitor"));
    drop(gw);
}

/// The fence outlives moat: after a graceful stop and after `kill -9` it still refuses, a new moat
/// takes it over with no moment of open egress, and only `moat guard detach` takes it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_survives_kill_and_restart_until_detached() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let other = listen("127.0.0.2");
    let origin = Origin::start().await;
    let builder = gateway::new(origin.addr.to_string()).section(&section(
        "enforce",
        &cgroup,
        &pins,
        &["127.0.0.1/32"],
        &[],
    ));
    let gw = builder.clone().run();
    assert_eq!(probe(&cgroup.path, &[Action::Tcp(other)]), ["EPERM"]);

    // A graceful stop (SIGTERM, as systemd stops moat) leaves the fence up too.
    let mut gw = gw;
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success()),
        "moat did not stop cleanly: {}",
        gw.log()
    );
    assert_eq!(
        probe(&cgroup.path, &[Action::Tcp(other)]),
        ["EPERM"],
        "the fence went down with a graceful stop"
    );
    let mut gw = builder.clone().run();
    assert_eq!(probe(&cgroup.path, &[Action::Tcp(other)]), ["EPERM"]);

    gw.kill9();
    assert_eq!(
        probe(&cgroup.path, &[Action::Tcp(other)]),
        ["EPERM"],
        "the pinned fence stopped refusing"
    );

    // Hammer the refused address while a new moat starts and takes over.
    let hammer = probe_spawn(&cgroup.path, &[Action::LoopTcp(other, 3.0)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gw2 = builder.run();
    assert!(
        gw2.log().contains("\"newly_attached\":0"),
        "takeover re-attached programs: {}",
        gw2.log()
    );
    let out = hammer.wait_with_output().expect("hammer");
    let r: Vec<String> = serde_json::from_slice(&out.stdout).expect("probe output");
    assert!(
        r[0].starts_with("0/"),
        "connections got through during the restart: {}",
        r[0]
    );
    assert_ne!(r[0], "0/0");

    drop(gw2);
    let out = std::process::Command::new(gateway::binary())
        .args(["guard", "detach", "--pin-dir"])
        .arg(&pins.path)
        .output()
        .expect("detach");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DOWN"),
        "detach says so loudly"
    );
    assert!(!pins.path.exists(), "pins left behind");
    assert_eq!(
        probe(&cgroup.path, &[Action::Tcp(other)]),
        ["ok"],
        "programs still attached after detach"
    );
}

/// Replies from a listener inside the fence reach a client outside when its port is a serve
/// port, and not otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_from_serve_ports_keep_flowing() {
    if !can_run() {
        return;
    }
    let (cgroup, pins) = (TestCgroup::new(), PinDir::new());
    let served = TcpListener::bind("127.0.0.6:0").expect("bind");
    let unserved = TcpListener::bind("127.0.0.6:0").expect("bind");
    let (sp, up) = (
        served.local_addr().expect("addr").port(),
        unserved.local_addr().expect("addr").port(),
    );
    drop((served, unserved));
    let (gw, _origin) = guarded(&cgroup, &pins, "enforce", &["127.0.0.5/32"], &[sp]).await;
    // A server inside the fence, on both ports.
    let server = serve_in_cgroup(&cgroup, &[sp, up]);
    let talk = |port: u16| -> bool {
        let sock =
            std::net::TcpStream::connect_timeout(&at("127.0.0.6", port), Duration::from_secs(2));
        // The client's address is 127.0.0.1 (not on the allow-list), so every reply packet is
        // judged by the backstop.
        match sock {
            Ok(mut s) => {
                use std::io::Read;
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).is_ok() && &buf == b"hello"
            }
            Err(_) => false,
        }
    };
    // The server inside the fence may take a moment to start (python, cgroup join): retry the
    // port that must work for a while before concluding its replies are dropped.
    let mut served_ok = false;
    for _ in 0..20 {
        if talk(sp) {
            served_ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(served_ok, "replies on a serve port were dropped");
    // The other port: the server listens there too (a refused connect would prove nothing), but
    // its SYN-ACK is dropped, so the connect times out.
    std::thread::sleep(Duration::from_millis(300));
    let unserved =
        std::net::TcpStream::connect_timeout(&at("127.0.0.6", up), Duration::from_secs(2));
    match unserved {
        Ok(_) => panic!("replies on a port that is not a serve port got through"),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "expected the handshake reply to be dropped: {e}"
        ),
    }
    drop(server);
    drop(gw);
}

/// A python server joined to the cgroup, answering "hello" on each port.
fn serve_in_cgroup(cgroup: &TestCgroup, ports: &[u16]) -> KillOnDrop {
    let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
    let script = r#"
import os, socket, sys, threading
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
def serve(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.6", port)); l.listen(8)
    while True:
        c, _ = l.accept()
        try: c.sendall(b"hello")
        except OSError: pass
        c.close()
for p in sys.argv[2].split(","):
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"#;
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&cgroup.path)
        .arg(ports.join(","))
        .spawn()
        .expect("python3");
    KillOnDrop(child)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
