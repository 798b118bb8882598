//! The audit trail end to end: records survive SIGKILL, a full disk stops forwarding, content
//! never reaches it.

use std::process::Command;
use std::time::Duration;

use crate::client::{self, Raw};
use crate::gateway::{self, binary};
use crate::origin::Origin;

fn verify(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["audit", "verify"])
        .arg(dir)
        .output()
        .expect("audit verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn all_records(dir: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("audit dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// With the default `fsync` (`always`), every response a client saw complete has a durable
/// record, even when moat is killed under load (16 keep-alive connections); the restarted moat
/// recovers the tail and the trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_completed_request_survives_sigkill() {
    let origin = Origin::start().await;
    // One worker: the single-threaded runtime, as a one-core deployment runs.
    let mut gw = gateway::new(origin.addr.to_string())
        .audit("checkpoint_every = 7")
        .runtime("worker_threads = 1")
        .run();
    let (addr, ca) = (gw.addr, gw.ca.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (ca, stop) = (ca.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut c = Raw::connect(addr, &ca).await;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if c.send(
                    b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
                )
                .await
                .is_err()
                {
                    break;
                }
                match c.read_response(false).await {
                    Some(r) if r.status == 200 => {
                        done.push(r.header("x-request-id").unwrap_or_default().to_owned())
                    }
                    _ => break,
                }
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut completed = Vec::new();
    for c in clients {
        completed.extend(c.await.expect("client"));
    }
    assert!(
        completed.len() > 20,
        "too little load to mean anything: {}",
        completed.len()
    );

    gw.restart();
    let (r, _) = client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.expect("after restart").status, 200);
    gw.kill9();
    let (ok, report) = verify(&gw.audit_dir());
    assert!(ok, "{report}");
    let records = all_records(&gw.audit_dir());
    let missing: Vec<&String> = completed
        .iter()
        .filter(|id| !records.contains(&format!("\"request_id\":\"{id}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed requests have no record: {missing:?}",
        missing.len(),
        completed.len()
    );
}

/// Request content never reaches the audit trail or the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_never_reaches_audit_or_log() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let marker = format!("m4rk3r{:016x}", std::process::id() as u64 * 7919);
    let req = format!(
        "POST /sink?q={marker} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {marker}\r\nX-Note: {marker}\r\nContent-Length: {}\r\n\r\n{marker}",
        marker.len()
    );
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, req.as_bytes()).await;
    assert_eq!(r.expect("response").status, 200);
    // A refused request carrying the marker too.
    let bad = format!("POST /sink?q={marker} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{marker}");
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, bad.as_bytes()).await;
    assert_eq!(r.expect("refusal").status, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = all_records(&gw.audit_dir());
    assert!(records.contains("\"kind\":\"request\""), "{records}");
    assert!(records.contains("\"kind\":\"reject\""), "{records}");
    assert!(records.contains("\"path\":\"/sink\""), "{records}");
    assert!(
        !records.contains(&marker),
        "content reached the audit trail"
    );
    assert!(!gw.log().contains(&marker), "content reached the log");
}

/// A full audit disk: requests get 503 and the upstream receives nothing; when space returns,
/// service resumes and the gap is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_audit_disk_fails_closed_and_recovers() {
    if !crate::guard::can_run() {
        return;
    }
    let origin = Origin::start().await;
    let mnt = tempfile::tempdir().expect("tempdir");
    let tiny = TinyFs::mount(mnt.path(), "4m");
    let audit_dir = mnt.path().join("audit");
    let gw = gateway::new(origin.addr.to_string())
        .audit("fsync = \"always\"")
        .audit_dir(&audit_dir)
        .run();
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, get).await;
    assert_eq!(r.expect("before").status, 200);

    tiny.fill();
    // Records go on into the space zero-filled ahead of them (1 MiB, under 2,000 records)
    // until it is used up. The first request after that may be forwarded
    // (its record then fails and its response is not completed); from then on nothing is.
    let mut refused = false;
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    for _ in 0..4000 {
        let r = match c.send(get).await {
            Ok(()) => c.read_response(false).await,
            Err(_) => None,
        };
        match r {
            Some(r) if r.status == 503 => {
                refused = true;
                break;
            }
            Some(r) if r.status == 200 => {}
            _ => c = Raw::connect(gw.addr, &gw.ca).await,
        }
    }
    assert!(refused, "no 503 with a full audit disk");
    let forwarded = origin
        .seen
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        let (r, _) = client::raw_exchange(gw.addr, &gw.ca, get).await;
        let r = r.expect("503 response");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("audit_unavailable"));
    }
    assert_eq!(
        origin
            .seen
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        forwarded,
        "forwarded while unaudited"
    );

    tiny.free();
    let mut back = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (r, _) = client::raw_exchange(gw.addr, &gw.ca, get).await;
        if r.is_some_and(|r| r.status == 200) {
            back = true;
            break;
        }
    }
    assert!(back, "service did not resume when space returned");
    drop(gw);
    let records = all_records(&audit_dir);
    let resumed = records
        .lines()
        .find(|l| l.contains("audit_resumed"))
        .expect("an audit_resumed record");
    assert!(
        !resumed.contains(" 0 request(s) were refused"),
        "the outage's refusals are counted: {resumed}"
    );
    let (ok, report) = verify(&audit_dir);
    assert!(ok, "{report}");
}

/// A tmpfs of a given size, mounted for one test and unmounted on drop.
struct TinyFs {
    path: std::path::PathBuf,
}

impl TinyFs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs");
        Self {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem to the last byte.
    fn fill(&self) {
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.path.join("filler").display()))
            .arg("bs=4k")
            .status();
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
