//! `[audit.ship]` end to end: three moat "hosts" ship their trails to a real rsyslog over TLS
//! while requests flow, through a collector outage and a SIGKILL; `moat audit verify --keys`
//! over what rsyslog wrote finds every host complete, and a line deleted on the collector as a
//! gap with its seq range.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::gateway::{self, Gateway};
use crate::origin::Origin;
use crate::rsyslog::Rsyslog;

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];

/// `n` requests to each running host.
async fn traffic<'a>(hosts: impl IntoIterator<Item = &'a Gateway>, n: usize) {
    for gw in hosts {
        let http = crate::client::http(&gw.ca);
        for _ in 0..n {
            let r = http
                .get(crate::client::url(gw.addr, "/"))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
    }
}

/// The highest `seq` in each stored line of `file`.
fn collected_seqs(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let at = l.find("{\"v\":")?;
            let v: serde_json::Value = serde_json::from_str(&l[at..]).ok()?;
            v["seq"].as_u64()
        })
        .collect()
}

/// Waits until the collector holds each host's last record.
async fn caught_up(hosts: &[Gateway], collector: &Rsyslog) {
    for _ in 0..300 {
        let behind: Vec<String> = hosts
            .iter()
            .zip(HOSTS)
            .filter_map(|(gw, name)| {
                let last = gw
                    .audit_records()
                    .iter()
                    .filter_map(|r| r["seq"].as_u64())
                    .max()?;
                let have = collected_seqs(&collector.out.join(format!("{name}.log")))
                    .into_iter()
                    .max()
                    .unwrap_or(0);
                (have < last).then(|| format!("{name}: {have} of {last}"))
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the collector did not catch up:\n{}", collector.log_text());
}

fn verify(keys: &Path, files: &[std::path::PathBuf]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(gateway::binary())
        .args(["audit", "verify", "--json", "--keys"])
        .arg(keys)
        .args(files)
        .output()
        .expect("moat audit verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_ship_to_rsyslog_through_an_outage_and_a_kill_and_verify_complete() {
    if let Err(why) = Rsyslog::available() {
        crate::skip::skip(&why);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Rsyslog::start(dir.path());
    let origin = Origin::start().await;
    let mut hosts: Vec<Gateway> = HOSTS
        .iter()
        .map(|h| {
            gateway::new(origin.addr.to_string())
                .audit(&format!(
                    "checkpoint_every = 25\n[audit.ship]\naddress = \"{}\"\nca_file = \"{}\"\nhostname = \"{h}\"\nretry_max = \"1s\"",
                    collector.addr,
                    collector.ca.display()
                ))
                .run()
        })
        .collect();
    traffic(&hosts, 20).await;

    // The collector goes away for a while; requests go on being served and recorded.
    collector.pause();
    traffic(&hosts, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    traffic(&hosts, 5).await;
    collector.resume();
    traffic(&hosts, 20).await;

    // One host is killed outright and started again.
    hosts[1].kill9();
    traffic([&hosts[0], &hosts[2]], 10).await;
    hosts[1].restart();
    traffic(&hosts, 20).await;
    // A graceful stop sends the last records, the `stop` record included, before moat exits.
    hosts[0].terminate();
    assert!(
        hosts[0].wait_exit(Duration::from_secs(10)).is_some(),
        "moat did not stop"
    );
    let stopped = collected_seqs(&collector.out.join("host-a.log"));
    let last = hosts[0]
        .audit_records()
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .max();
    assert_eq!(
        stopped.iter().max().copied(),
        last,
        "host-a's last records were not shipped at stop"
    );
    caught_up(&hosts, &collector).await;
    collector.pause();

    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    for (gw, name) in hosts.iter().zip(HOSTS) {
        std::fs::copy(
            gw.audit_dir().join("audit-signing.pub"),
            keys.join(format!("{name}.pub")),
        )
        .expect("public key");
    }
    let files = collector.files();
    assert_eq!(files.len(), 3, "{files:?}");
    let (code, report, text) = verify(&keys, &files);
    assert_eq!(code, Some(0), "{text}");
    let by_host: BTreeMap<String, &serde_json::Value> = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["host"].as_str().unwrap_or_default().to_owned(), h))
        .collect();
    for name in HOSTS {
        let h = by_host
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing: {text}"));
        assert_eq!(h["status"], "OK", "{text}");
        assert_eq!(h["first_seq"], 1, "{text}");
        assert!(h["gaps"].as_array().is_some_and(Vec::is_empty), "{text}");
        assert!(
            h["checkpoints"].as_u64() > Some(0),
            "signatures checked: {text}"
        );
    }
    // Every lifecycle record of the outage reached the collector too.
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    for event in [
        "shipping_stopped",
        "shipping_resumed",
        "\"event\":\"start\"",
    ] {
        assert!(all.contains(event), "no {event} on the collector");
    }
    eprintln!("verify: {text}");

    // A line deleted on the collector is a gap with its seq range.
    let victim = collector.out.join("host-b.log");
    let text_b = std::fs::read_to_string(&victim).expect("host-b.log");
    let lines: Vec<&str> = text_b.lines().collect();
    let middle = lines.len() / 2;
    let seq = collected_seqs(&victim)[middle];
    // Every copy of that record (delivery is at least once).
    let kept: Vec<&str> = lines
        .iter()
        .filter(|l| !l.contains(&format!("seq=\"{seq}\"")))
        .copied()
        .collect();
    std::fs::write(&victim, kept.join("\n") + "\n").expect("rewrite");
    let (code, report, text) = verify(&keys, &files);
    assert_eq!(code, Some(1), "{text}");
    let b = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == "host-b")
        .expect("host-b");
    assert_eq!(b["status"], "BROKEN", "{text}");
    assert_eq!(b["gaps"], serde_json::json!([[seq, seq]]), "{text}");
}
