//! Running moat as a service: the systemd unit's exposure, the sd_notify conversation.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::gateway;
use crate::origin::Origin;

/// `systemd-analyze security --offline=yes config/moat.service` scores the unit at 2.0 or less.
#[test]
fn systemd_unit_exposure_is_at_most_two() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/moat.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            crate::skip::skip(&format!("systemd-analyze cannot run: {e}"));
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for moat.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// With a fake `NOTIFY_SOCKET`, moat says READY=1 once listening, WATCHDOG=1 at half of
/// WATCHDOG_USEC, RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM, in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_watchdog_reloading_stopping() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut gw = gateway::new(origin.addr.to_string())
        .env("NOTIFY_SOCKET", &path.display().to_string())
        .env("WATCHDOG_USEC", "400000")
        .run();
    let mut seen: Vec<String> = Vec::new();
    let read_for = |ms: u64, seen: &mut Vec<String>| {
        for _ in 0..ms / 200 {
            let mut buf = [0u8; 1024];
            if let Ok(n) = sock.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read_for(1200, &mut seen);
    gw.signal("HUP");
    read_for(800, &mut seen);
    gw.terminate();
    read_for(1000, &mut seen);
    assert!(gw
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let first = |prefix: &str| {
        seen.iter()
            .position(|m| m.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {seen:#?}"))
    };
    let ready = first("READY=1");
    let reloading = first("RELOADING=1");
    let ready_again = seen
        .iter()
        .enumerate()
        .skip(reloading)
        .find(|(_, m)| m.starts_with("READY=1"))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no READY=1 after RELOADING=1 in {seen:#?}"));
    let stopping = first("STOPPING=1");
    assert!(
        ready < reloading && reloading < ready_again && ready_again < stopping,
        "{seen:#?}"
    );
    assert!(seen[ready].contains("STATUS=serving on"), "{}", seen[ready]);
    assert!(
        seen[reloading].contains("MONOTONIC_USEC="),
        "{}",
        seen[reloading]
    );
    let watchdogs = seen[..stopping]
        .iter()
        .filter(|m| m.starts_with("WATCHDOG=1"))
        .count();
    assert!(
        watchdogs >= 3,
        "{watchdogs} watchdog pings in 2 s at a 200 ms interval: {seen:#?}"
    );
}

/// Rule `chat` allows `/echo` with redaction profile `p` (no entities named: all of them), rule
/// `root` allows `/`; nothing else is allowed.
pub(super) const METRICS_POLICY: &str = "[redaction.profiles.p]\n\n[[policy.rules]]\nid = \"chat\"\nrequire_region = false\npaths = [\"/echo\"]\nredaction = \"p\"\naction = \"allow\"\n\n[[policy.rules]]\nid = \"root\"\nrequire_region = false\npaths = [\"/\"]\naction = \"allow\"\n";

/// Under [`METRICS_POLICY`], through `http`: `GET /` is forwarded by rule `root`, `POST /echo`
/// by rule `chat` with one email address masked, and `GET /elsewhere` is refused (403).
pub(super) async fn allowed_masked_denied(http: &reqwest::Client, addr: std::net::SocketAddr) {
    let ok = http
        .get(crate::client::url(addr, "/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(ok.status(), 200);
    let masked = http
        .post(crate::client::url(addr, "/echo"))
        .header("content-type", "text/plain")
        .body("mail jane@example.com")
        .send()
        .await
        .expect("POST /echo");
    assert_eq!(masked.status(), 200);
    let denied = http
        .get(crate::client::url(addr, "/elsewhere"))
        .send()
        .await
        .expect("GET /elsewhere");
    assert_eq!(denied.status(), 403);
}

/// The admin endpoint: `/metrics` counts what happened (requests by status and rule, refusals,
/// redactions, connections, the audit writer) and `promtool check metrics` accepts it;
/// `/healthz` and `/readyz` answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_pass_promtool_and_count_what_happened() {
    let origin = Origin::start().await;
    let port = gateway::free_port();
    let gw = gateway::new(origin.addr.to_string())
        .section(&format!("[admin]\naddress = \"127.0.0.1:{port}\""))
        .policy(METRICS_POLICY)
        .run();
    let http = crate::client::http(&gw.ca);
    allowed_masked_denied(&http, gw.addr).await;

    let admin = crate::client::http(&gw.ca);
    let get = |path: &str| admin.get(format!("http://127.0.0.1:{port}{path}")).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    assert_eq!(get("/nope").await.expect("404").status(), 404);
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for want in [
        r#"moat_requests_total{listener="e2e",protocol="http/1.1",status="200",rule="root"} 1"#,
        r#"moat_requests_total{listener="e2e",protocol="http/1.1",status="200",rule="chat"} 1"#,
        r#"moat_refusals_total{listener="e2e",reason="forbidden",status="403"} 1"#,
        r#"moat_redactions_total{entity="EMAIL_ADDRESS",direction="request"} 1"#,
        "moat_request_duration_seconds_bucket",
        "moat_connections_active",
        "moat_audit_queue_depth",
        "moat_audit_write_seconds_count",
        // Both forwarded requests waited for their records (the default `fsync = "always"`).
        "moat_audit_durable_wait_seconds_count 2",
    ] {
        assert!(metrics.contains(want), "{want} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("jane@example.com"));

    let promtool = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(p) => p,
        Err(e) => {
            crate::skip::skip(&format!("promtool (Debian prometheus) cannot run: {e}"));
            return;
        }
    };
    let mut promtool = promtool;
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(metrics.as_bytes()).expect("write metrics");
    }
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn proxy_header(src: &str, dst: std::net::SocketAddr) -> Vec<u8> {
    let src: std::net::SocketAddr = src.parse().expect("addr");
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    for ip in [src.ip(), dst.ip()] {
        match ip {
            std::net::IpAddr::V4(v4) => h.extend_from_slice(&v4.octets()),
            std::net::IpAddr::V6(_) => panic!("IPv4 only here"),
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// PROXY v2 from a trusted source sets the client address in the audit record; from an
/// untrusted one the connection is refused and the refusal audited; a trusted source that sends
/// no header is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_from_trusted_sources_only() {
    let origin = Origin::start().await;
    let trusted = gateway::new(origin.addr.to_string())
        .listener("proxy_protocol_from = [\"127.0.0.0/8\"]")
        .run();
    let mut c = crate::client::Raw::connect_after(
        trusted.addr,
        &trusted.ca,
        &proxy_header("203.0.113.7:5555", trusted.addr),
    )
    .await
    .expect("TLS after the PROXY header");
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 200);
    let rec = trusted
        .audit_record(r.header("x-request-id").expect("id"))
        .await;
    assert_eq!(rec["client"], "203.0.113.7:5555", "{rec}");
    // A trusted source must send the header.
    assert!(
        crate::client::Raw::try_connect(trusted.addr, &trusted.ca, None)
            .await
            .is_err(),
        "a trusted source without a header was served"
    );

    let untrusted = gateway::new(origin.addr.to_string())
        .listener("proxy_protocol_from = [\"10.0.0.0/8\"]")
        .run();
    let refused = crate::client::Raw::connect_after(
        untrusted.addr,
        &untrusted.ca,
        &proxy_header("203.0.113.7:5555", untrusted.addr),
    )
    .await;
    assert!(
        refused.is_err(),
        "a PROXY header from an untrusted source was accepted"
    );
    // Without a header, the same client is served as usual.
    let (r, _) = crate::client::raw_exchange(
        untrusted.addr,
        &untrusted.ca,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.expect("response").status, 200);
    let mut rejected = false;
    for _ in 0..50 {
        rejected = untrusted.audit_records().iter().any(|r| {
            r["kind"] == "reject"
                && r["reason"] == "proxy_protocol_refused"
                && r["status"] == 0
                && r["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("127.0.0.1:"))
        });
        if rejected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected, "no reject record for the untrusted PROXY header");
}

const ROOT_ONLY: &str = "[[policy.rules]]\nid = \"root\"\nrequire_region = false\npaths = [\"/\"]\naction = \"allow\"\n";
const ROOT_AND_HEADERS: &str = "[[policy.rules]]\nid = \"root\"\nrequire_region = false\npaths = [\"/\", \"/headers\"]\naction = \"allow\"\n";

/// SIGHUP under load: no request fails, the new policy takes effect; a broken file is refused,
/// the running configuration keeps serving, and both reloads are audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_swaps_atomically_and_refuses_a_broken_file() {
    let origin = Origin::start().await;
    let mut gw = gateway::new(origin.addr.to_string())
        .policy(ROOT_ONLY)
        .run();
    let http = crate::client::http(&gw.ca);
    let status = |path: &'static str| {
        let http = http.clone();
        let url = crate::client::url(gw.addr, path);
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(status("/headers").await.expect("before"), 403);

    // Load: four clients asking for / until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, http, url) = (
            stop.clone(),
            crate::client::http(&gw.ca),
            crate::client::url(gw.addr, "/"),
        );
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    // A keep-alive connection opened before the reload.
    let mut kept = crate::client::Raw::connect(gw.addr, &gw.ca).await;
    kept.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(
        kept.read_response(false).await.expect("response").status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(gw.config_file()).expect("config");
    std::fs::write(gw.config_file(), text.replace(ROOT_ONLY, ROOT_AND_HEADERS)).expect("write");
    gw.signal("HUP");
    let mut took_effect = false;
    for _ in 0..50 {
        if status("/headers").await.ok() == Some(200) {
            took_effect = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(took_effect, "the reloaded policy did not take effect");
    // The connection opened before it gets the new policy for its next request.
    kept.send(b"GET /headers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(
        kept.read_response(false).await.expect("response").status,
        200,
        "an open connection kept the old policy for a new request"
    );

    // A broken file: refused, the running configuration stays.
    std::fs::write(gw.config_file(), "[[listener]\nthis is not TOML").expect("write");
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in load {
        let (o, f) = l.await.expect("load task");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "requests failed during the reloads: {failed:?}"
    );
    assert!(ok > 20, "only {ok} requests ran under load");
    assert_eq!(
        status("/headers").await.expect("after"),
        200,
        "the old config stopped serving"
    );

    let mut events = Vec::new();
    for _ in 0..50 {
        events = gw
            .audit_records()
            .iter()
            .filter(|r| r["kind"] == "lifecycle")
            .filter_map(|r| r["event"].as_str().map(str::to_owned))
            .collect();
        if events.iter().any(|e| e == "reload_refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = events.iter().position(|e| e == "reload_accepted");
    let refused = events.iter().position(|e| e == "reload_refused");
    assert!(
        matches!((accepted, refused), (Some(a), Some(r)) if a < r),
        "{events:?}"
    );

    // Each lifecycle record names the configuration in force: the stop record the reloaded
    // one (the refused reload changed nothing), not the one moat started with.
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(10)).is_some(),
        "moat did not stop"
    );
    let digest = |event: &str| {
        gw.audit_records()
            .iter()
            .find(|r| r["kind"] == "lifecycle" && r["event"] == event)
            .and_then(|r| r["config_sha256"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {event} record with a config_sha256"))
    };
    let (start, reloaded) = (digest("start"), digest("reload_accepted"));
    assert_ne!(start, reloaded, "the reload changed the file");
    assert_eq!(digest("reload_refused"), reloaded);
    assert_eq!(digest("stop"), reloaded);
}

/// Started as root with `runtime.user`, moat serves as that user with no capabilities left,
/// and its audit trail goes on being written and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_as_root_moat_drops_to_the_runtime_user() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        crate::skip::skip("needs root");
        return;
    }
    let origin = Origin::start().await;
    // An audit directory the dropped user can reach (the test's own tempdir is root's alone).
    let base = std::env::temp_dir().join(format!("moat-drop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("base");
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut gw = gateway::new(origin.addr.to_string())
        .runtime("user = \"nobody\"")
        .audit_dir(&base.join("audit"))
        .run();
    // The listeners are bound (and accept into their backlog) before root is dropped; nothing
    // is served until it is. Wait for the drop, boundedly, then check it.
    let read_status = || std::fs::read_to_string(format!("/proc/{}/status", gw.pid()));
    let mut status = read_status().expect("status");
    for _ in 0..100 {
        if status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) != Some("0"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = read_status().expect("status");
    }
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Gid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
    let (r, _) = crate::client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let r = r.expect("response");
    assert_eq!(r.status, 200);
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["status"], 200);
    gw.terminate();
    assert!(gw
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let out = Command::new(gateway::binary())
        .args(["audit", "verify"])
        .arg(base.join("audit"))
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// Whether this process may create namespaces and nftables rules (root, `nft` present); under
/// CI it must.
fn root_and_nft() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let nft = Command::new("nft").arg("--version").output().is_ok();
    if !root || !nft {
        crate::skip::skip("needs root and nft (Debian nftables)");
    }
    root && nft
}

/// The test origin, started inside `ns` on its own thread: its address, the sender that stops
/// it, and the thread.
fn origin_in(
    ns: &crate::netns::NetNs,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = crate::netns::NetNs::spawn_in(&ns.name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let o = Origin::start().await;
            addr_tx.send(o.addr).expect("send addr");
            let _ = stop_rx.await;
        });
    });
    (addr_rx.recv().expect("origin address"), stop_tx, thread)
}

/// Transparent mode, in a network namespace the test creates: nftables redirects connections
/// for the model's address (10.99.0.5:8000) and for another one (10.99.0.6:8000) to moat. A
/// client that thinks it talks to the model is served through moat, in plain HTTP and in TLS;
/// the other destination is refused and audited.
#[test]
fn transparent_mode_serves_redirected_clients_and_refuses_other_destinations() {
    if !root_and_nft() {
        return;
    }
    let ns = crate::netns::NetNs::new("tp", &["10.99.0.5/32", "10.99.0.6/32"]);
    // The model server, inside the namespace, on loopback.
    let (origin_addr, stop_tx, origin) = origin_in(&ns);
    let gw = gateway::new(origin_addr.to_string())
        .netns(&ns)
        .listener("mode = \"transparent\"")
        .upstream("transparent_address = \"10.99.0.5:8000\"")
        .run();
    ns.nft(&format!(
        "table ip moat_test {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    ip daddr {{ 10.99.0.5, 10.99.0.6 }} tcp dport 8000 redirect to :{}\n  }}\n}}\n",
        gw.addr.port()
    ));
    let ca = gw.ca.clone();
    let (plain, tls, other) = ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let exchange = |to: &'static str| async move {
                let mut s = tokio::net::TcpStream::connect(to).await.expect("connect");
                s.write_all(b"GET / HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
                    .await
                    .expect("send");
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
                String::from_utf8_lossy(&out).into_owned()
            };
            let plain = exchange("10.99.0.5:8000").await;
            let other = exchange("10.99.0.6:8000").await;
            let tls = match crate::client::Raw::try_connect(
                "10.99.0.5:8000".parse().expect("addr"),
                &ca,
                None,
            )
            .await
            {
                Ok(mut c) => {
                    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .await
                        .expect("send");
                    c.read_response(false).await.map(|r| r.status)
                }
                Err(e) => panic!("TLS to the model's address: {e}"),
            };
            (plain, tls, other)
        })
    });
    let _ = stop_tx.send(());
    let _ = origin.join();
    assert!(plain.starts_with("HTTP/1.1 200"), "plain HTTP: {plain}");
    assert_eq!(tls, Some(200), "TLS terminated by moat");
    assert!(
        !other.contains("200"),
        "an unknown destination was served: {other}"
    );
    let mut records = Vec::new();
    for _ in 0..50 {
        records = gw.audit_records();
        let served = records
            .iter()
            .filter(|r| r["kind"] == "request" && r["status"] == 200)
            .count();
        let refused = records.iter().any(|r| {
            r["kind"] == "reject"
                && r["reason"] == "transparent_destination_refused"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("10.99.0.6:8000"))
        });
        if served >= 2 && refused {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("expected two served requests and one refused destination: {records:#?}");
}

/// With `passthrough = true`, a redirected connection that is not HTTP, or TLS for a name moat
/// holds no certificate for, goes through to its upstream byte for byte, and each is audited as
/// one connection record.
#[test]
fn transparent_passthrough_carries_other_protocols_and_records_each_connection() {
    if !root_and_nft() {
        return;
    }
    let ns = crate::netns::NetNs::new("pt", &["10.99.0.7/32"]);
    // A TCP echo server, inside the namespace, on loopback.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let echo = crate::netns::NetNs::spawn_in(&ns.name, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx.send(l.local_addr().expect("addr")).expect("send");
            let serve = async {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            };
            tokio::select! {
                () = serve => {}
                _ = stop_rx => {}
            }
        });
    });
    let echo_addr = addr_rx.recv().expect("echo address");
    let gw = gateway::new(echo_addr.to_string())
        .netns(&ns)
        .listener("mode = \"transparent\"\npassthrough = true")
        .upstream("transparent_address = \"10.99.0.7:9000\"")
        .run();
    ns.nft(&format!(
        "table ip moat_test {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    ip daddr 10.99.0.7 tcp dport 9000 redirect to :{}\n  }}\n}}\n",
        gw.addr.port()
    ));
    // A ClientHello for a name moat has no certificate for.
    let hello = {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("other.example").expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("hello");
        hello
    };
    let binary = b"\x00\x01 not http at all\n".to_vec();
    let sent = (binary.clone(), hello.clone());
    let got = ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut out = Vec::new();
            for payload in [sent.0, sent.1] {
                let mut s = tokio::net::TcpStream::connect("10.99.0.7:9000")
                    .await
                    .expect("connect");
                s.write_all(&payload).await.expect("send");
                s.shutdown().await.expect("shutdown");
                let mut back = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back)).await;
                out.push(back);
            }
            out
        })
    });
    let _ = stop_tx.send(());
    let _ = echo.join();
    assert_eq!(got[0], binary, "non-HTTP bytes came back changed");
    assert_eq!(
        got[1], hello,
        "the TLS ClientHello was not passed through as it was"
    );
    let mut records = Vec::new();
    for _ in 0..50 {
        records = gw
            .audit_records()
            .into_iter()
            .filter(|r| r["kind"] == "connection")
            .collect();
        if records.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(records.len(), 2, "{records:#?}");
    let tcp = records
        .iter()
        .find(|r| r["protocol"] == "tcp")
        .expect("tcp record");
    assert_eq!(tcp["destination"], "10.99.0.7:9000");
    assert_eq!(tcp["bytes_in"], binary.len());
    assert_eq!(tcp["bytes_out"], binary.len());
    let tls = records
        .iter()
        .find(|r| r["protocol"] == "tls")
        .expect("tls record");
    assert_eq!(tls["sni"], "other.example");
    assert_eq!(tls["bytes_in"], hello.len());
}

/// TPROXY instead of NAT: the listener is bound with `IP_TRANSPARENT` (`tproxy = true`), the
/// original destination is the connection's own local address, and the client is served.
#[test]
fn transparent_mode_with_tproxy() {
    if !root_and_nft() {
        return;
    }
    // Locally generated connections to 10.99.0.9 (not an address of the namespace) loop through
    // lo, where prerouting hands them to the TPROXY listener.
    let ns = crate::netns::NetNs::new("tpx", &["10.99.0.1/32"]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "dev",
        "lo",
        "src",
        "10.99.0.1",
    ]);
    ns.ip(&["rule", "add", "fwmark", "1", "lookup", "100"]);
    ns.ip(&[
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ]);
    let (origin_addr, stop_tx, origin) = origin_in(&ns);
    let gw = gateway::new(origin_addr.to_string())
        .netns(&ns)
        .listener("mode = \"transparent\"\ntproxy = true")
        .upstream("transparent_address = \"10.99.0.9:8000\"")
        .run();
    ns.nft(&format!(
        "table ip moat_test {{\n  chain pre {{\n    type filter hook prerouting priority mangle; policy accept;\n    ip daddr 10.99.0.9 tcp dport 8000 tproxy to 127.0.0.1:{} meta mark set 1 accept\n  }}\n}}\n",
        gw.addr.port()
    ));
    let reply = ns.run(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(
            &"10.99.0.9:8000".parse().expect("addr"),
            Duration::from_secs(3),
        )
        .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let _ = stop_tx.send(());
    let _ = origin.join();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// The backlog each listening socket was given, as the kernel reports it (`ss`: Send-Q of a
/// socket in LISTEN).
fn listen_backlog(addr: std::net::SocketAddr) -> u32 {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("no listening socket on {addr}: {text:?}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

/// A burst of new connections is queued, not dropped: listeners listen with a backlog of 4,096
/// by default (as nginx, HAProxy and Envoy do), or `backlog` when set.
#[tokio::test]
async fn listeners_queue_4096_connections_by_default_or_the_configured_backlog() {
    let origin = Origin::start().await;
    let default = gateway::new(origin.addr.to_string()).run();
    assert_eq!(listen_backlog(default.addr), 4096);
    let set = gateway::new(origin.addr.to_string())
        .listener("backlog = 512")
        .run();
    assert_eq!(listen_backlog(set.addr), 512);
}
