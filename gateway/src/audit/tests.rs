use std::path::Path;
use std::time::Duration;

use super::record::{LifecycleRecord, Record, RejectRecord};
use super::verify::{verify, VerifyError};
use super::*;

pub(super) fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.join("audit"),
        key_dir: dir.join("state"),
        fsync: FsyncMode::Always,
        checkpoint_every: 5,
        checkpoint_interval: Duration::from_secs(3600),
        segment_max_bytes: 2048,
        ..AuditConfig::default()
    }
}

pub(super) fn life(event: &str) -> LifecycleRecord {
    LifecycleRecord {
        event: event.into(),
        version: "test".into(),
        config_sha256: None,
        detail: None,
    }
}

pub(super) fn reject(i: u64) -> Record {
    Record::Reject(Box::new(RejectRecord {
        listener: "l".into(),
        client: format!("127.0.0.1:{i}").into(),
        status: 400,
        reason: "bad_request".into(),
        ..RejectRecord::default()
    }))
}

/// Writes start, `records` (queued, not waited for) and stop, then shuts the writer down.
pub(super) fn write_records(cfg: &AuditConfig, records: impl IntoIterator<Item = Record>) {
    let (a, thread) = Auditor::start(cfg, life("start")).expect("start");
    for r in records {
        a.record(r).expect("queued");
    }
    a.shutdown(life("stop"));
    thread.join().expect("writer thread");
}

/// The trail's lines, segment by segment, each read as `moat audit verify` reads a segment: up
/// to the first NUL.
pub(super) fn trail_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for seg in segments(dir).expect("segments") {
        let data = std::fs::read(&seg).expect("segment");
        let text = std::str::from_utf8(written(&data)).expect("utf-8");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// Writes `n` records plus start/stop, then shuts the writer down.
fn write_trail(cfg: &AuditConfig, n: u64) {
    let (a, thread) = Auditor::start(cfg, life("start")).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for i in 0..n {
        let d = a.record_durable(reject(i)).expect("queued");
        rt.block_on(d.wait()).expect("durable");
    }
    a.shutdown(life("stop"));
    thread.join().expect("writer thread");
}

fn problem(dir: &Path) -> String {
    match verify(dir, None) {
        Ok(r) => panic!("verify passed: {r:?}"),
        Err(VerifyError::Bad(p)) => p.to_string(),
        Err(e) => panic!("verify could not run: {e}"),
    }
}

/// Every segment's text, in order.
fn whole_trail(dir: &Path) -> String {
    segments(dir)
        .expect("segments")
        .iter()
        .map(|s| std::fs::read_to_string(s).expect("read"))
        .collect()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("segment")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write");
}

#[test]
fn an_intact_trail_verifies_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_trail(&cfg, 40);
    let report = verify(&cfg.dir, Some(&cfg.key_dir.join(PUBKEY_FILE))).expect("verify");
    assert!(report.segments > 1, "rotation by size: {report:?}");
    assert_eq!(report.records, report.last_seq);
    assert!(report.checkpoints >= 8, "{report:?}");
    assert_eq!(report.unsigned_tail, 0, "shutdown ends with a checkpoint");
    let key = std::fs::metadata(cfg.key_dir.join(KEY_FILE)).expect("key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}

#[test]
fn restart_continues_the_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_trail(&cfg, 7);
    write_trail(&cfg, 7);
    let r = verify(&cfg.dir, None).expect("verify");
    assert_eq!(r.records, r.last_seq);
}

#[test]
fn verify_detects_tampering() {
    type Tamper = fn(&Path);
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "one byte changed",
            |dir| {
                let seg = &segments(dir).expect("segments")[0];
                let mut lines = lines_of(seg);
                lines[2] = lines[2].replacen("127.0.0.1", "127.0.0.9", 1);
                write_lines(seg, &lines);
            },
            "hash chain broken",
        ),
        (
            "record deleted",
            |dir| {
                let seg = &segments(dir).expect("segments")[0];
                let mut lines = lines_of(seg);
                lines.remove(2);
                write_lines(seg, &lines);
            },
            "sequence gap",
        ),
        (
            "records swapped",
            |dir| {
                let seg = &segments(dir).expect("segments")[0];
                let mut lines = lines_of(seg);
                lines.swap(2, 3);
                write_lines(seg, &lines);
            },
            "sequence gap",
        ),
        (
            "segment removed",
            |dir| {
                let segs = segments(dir).expect("segments");
                std::fs::remove_file(&segs[1]).expect("remove");
            },
            "sequence gap",
        ),
        (
            "tail truncated beyond the last checkpoint",
            |dir| {
                let segs = segments(dir).expect("segments");
                let last = segs.last().expect("last");
                let mut lines = lines_of(last);
                let cut = lines
                    .iter()
                    .rposition(|l| l.contains("\"checkpoint\""))
                    .expect("a checkpoint");
                lines.truncate(cut.saturating_sub(1));
                if lines.is_empty() {
                    std::fs::remove_file(last).expect("remove");
                } else {
                    write_lines(last, &lines);
                }
            },
            "truncated",
        ),
        (
            "forged checkpoint signature",
            |dir| {
                let seg = &segments(dir).expect("segments")[0];
                let mut lines = lines_of(seg);
                let i = lines
                    .iter()
                    .position(|l| l.contains("\"checkpoint\""))
                    .expect("a checkpoint");
                let mut v: serde_json::Value = serde_json::from_str(&lines[i]).expect("json");
                let forged = "ab".repeat(64);
                v["signature"] = serde_json::Value::String(forged);
                lines[i] = v.to_string();
                // Re-link the chain after it so only the signature is wrong.
                let mut prev = sha256_hex(lines[i].as_bytes());
                for l in lines.iter_mut().skip(i + 1) {
                    let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
                    v["prev"] = serde_json::Value::String(prev.clone());
                    *l = v.to_string();
                    prev = sha256_hex(l.as_bytes());
                }
                write_lines(seg, &lines);
            },
            "signature",
        ),
    ];
    for (name, tamper, expected) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = config(tmp.path());
        write_trail(&cfg, 30);
        verify(&cfg.dir, None).expect("intact before tampering");
        tamper(&cfg.dir);
        let p = problem(&cfg.dir);
        assert!(p.contains(expected), "{name}: {p}");
        assert!(
            p.contains("segment-") || p.contains("HEAD"),
            "{name}: names the file: {p}"
        );
    }
}

#[test]
fn a_torn_tail_is_cut_and_the_chain_continues() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_trail(&cfg, 3);
    let last = segments(&cfg.dir)
        .expect("segments")
        .pop()
        .expect("segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .expect("open");
    std::io::Write::write_all(&mut f, b"{\"v\":1,\"seq\":99,\"pr").expect("torn write");
    drop(f);
    assert!(problem(&cfg.dir).contains("torn"));
    write_trail(&cfg, 2);
    let r = verify(&cfg.dir, None).expect("verify after recovery");
    assert_eq!(r.records, r.last_seq);
    let all = whole_trail(&cfg.dir);
    assert!(
        all.contains("\"event\":\"recovered\""),
        "recovery is recorded"
    );
}

#[test]
fn a_wrong_public_key_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_trail(&cfg, 6);
    let other = tempfile::tempdir().expect("tempdir");
    write_trail(&config(other.path()), 1);
    let e = verify(
        &cfg.dir,
        Some(&config(other.path()).key_dir.join(PUBKEY_FILE)),
    )
    .expect_err("wrong key");
    assert!(e.to_string().contains("key"), "{e}");
}

fn guard_record() -> Record {
    Record::Guard(record::GuardRecord {
        verdict: "refused".into(),
        hook: "connect".into(),
        pid: 42,
        comm: "python3".into(),
        uid: 0,
        cgroup_id: 7,
        addr: "203.0.113.9".into(),
        port: 443,
        protocol: "tcp".into(),
        repeats: 2,
    })
}

fn request_record() -> Record {
    Record::Request(Box::new(record::RequestRecord {
        request_id: "abc".into(),
        listener: "l".into(),
        client: "127.0.0.1:5555".into(),
        method: "POST".into(),
        host: "localhost".into(),
        path: "/v1/chat/completions".into(),
        decision: "allow".into(),
        upstream: "model@127.0.0.1:8000".into(),
        status: 200,
        ..Default::default()
    }))
}

fn mixed_trail(cfg: &AuditConfig) {
    let (a, thread) = Auditor::start(cfg, life("start")).expect("start");
    for _ in 0..4 {
        a.record(request_record()).expect("queued");
        a.record(guard_record()).expect("queued");
        a.record(reject(1)).expect("queued");
    }
    a.shutdown(life("stop"));
    thread.join().expect("writer");
}

#[test]
fn jsonl_export_is_signed_and_chained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    mixed_trail(&cfg);
    let out = tmp.path().join("bundle");
    let req = export::ExportRequest {
        dir: cfg.dir.clone(),
        since: None,
        until: None,
        format: export::Format::Jsonl,
        out: out.clone(),
        key: cfg.key_dir.join(KEY_FILE),
        pubkey: None,
    };
    let m = export::export(&req).expect("export");
    let checked =
        export::check_bundle(&out, &cfg.key_dir.join(PUBKEY_FILE)).expect("bundle verifies");
    assert_eq!(checked.records, m.records);
    let text = std::fs::read_to_string(out.join("records.jsonl")).expect("records");
    let mut prev = m.chain_prev.clone().expect("chain_prev");
    for line in text.lines() {
        let env: record::Envelope = serde_json::from_str(line).expect("schema");
        assert_eq!(env.prev, prev, "the excerpt is one unbroken chain");
        prev = sha256_hex(line.as_bytes());
    }
    assert_eq!(text.lines().count() as u64, m.records);

    // Tampering with the bundle is caught.
    std::fs::write(
        out.join("records.jsonl"),
        text.replacen("203.0.113.9", "203.0.113.8", 1),
    )
    .expect("tamper");
    assert!(export::check_bundle(&out, &cfg.key_dir.join(PUBKEY_FILE)).is_err());
    // An existing non-empty output directory is refused.
    assert!(matches!(
        export::export(&req),
        Err(export::ExportError::OutExists(_))
    ));
}

#[test]
fn ocsf_export_carries_each_class_required_attributes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    mixed_trail(&cfg);
    let out = tmp.path().join("ocsf");
    export::export(&export::ExportRequest {
        dir: cfg.dir.clone(),
        since: None,
        until: None,
        format: export::Format::Ocsf,
        out: out.clone(),
        key: cfg.key_dir.join(KEY_FILE),
        pubkey: None,
    })
    .expect("export");
    let text = std::fs::read_to_string(out.join("records.ocsf.jsonl")).expect("records");
    let mut classes = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let class = v["class_uid"].as_u64().expect("class_uid");
        for attr in export::ocsf_required(class) {
            assert!(!v[attr].is_null(), "class {class} lacks {attr}: {v}");
        }
        let activity = v["activity_id"].as_u64().expect("activity_id");
        assert_eq!(v["type_uid"].as_u64(), Some(class * 100 + activity));
        assert!(
            v["time"].as_i64().is_some_and(|t| t > 1_700_000_000_000),
            "time in ms: {v}"
        );
        assert_eq!(v["metadata"]["product"]["name"], "moat");
        assert!(v["metadata"]["version"].is_string());
        classes.insert(class);
        if class == 4001 {
            assert_eq!(v["actor"]["process"]["pid"], 42);
            assert_eq!(v["dst_endpoint"]["ip"], "203.0.113.9");
            assert_eq!(v["disposition"], "Blocked");
            assert_eq!(v["count"], 3);
        }
    }
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), [4001, 4002, 6002]);
}

#[test]
fn export_window_selects_by_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    mixed_trail(&cfg);
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let m = export::export(&export::ExportRequest {
        dir: cfg.dir.clone(),
        since: Some(future),
        until: None,
        format: export::Format::Jsonl,
        out: tmp.path().join("empty"),
        key: cfg.key_dir.join(KEY_FILE),
        pubkey: None,
    })
    .expect("export");
    assert_eq!(m.records, 0);
}

#[test]
fn tail_follows_new_records_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_trail(&cfg, 3);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let dir = cfg.dir.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let follower = std::thread::spawn(move || {
        tail::follow(
            &dir,
            2,
            |l| drop(tx.send(String::from_utf8_lossy(l).into_owned())),
            || s.load(std::sync::atomic::Ordering::SeqCst),
        )
    });
    let first: Vec<String> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("backlog"))
        .collect();
    assert!(
        first[1].contains("checkpoint") || first[1].contains("stop"),
        "{first:?}"
    );
    // A restart writes a new segment; its records arrive too.
    write_trail(&cfg, 40);
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(3)) {
        seen.push(l);
        if seen.iter().any(|l| l.contains("\"event\":\"stop\"")) {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    follower.join().expect("thread").expect("follow");
    let rejects = seen
        .iter()
        .filter(|l| l.contains("\"kind\":\"reject\""))
        .count();
    assert_eq!(rejects, 40, "every new record followed, across rotations");
}

/// While moat writes, its segment is zero-filled a MiB ahead of the records, so a record is an
/// overwrite, never an append; readers see the records only, and a closed segment holds its
/// records and nothing else.
#[test]
fn the_live_segment_is_zero_filled_ahead_and_cut_when_closed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        segment_max_bytes: 64 * 1024 * 1024,
        ..config(tmp.path())
    };
    let (a, thread) = Auditor::start(&cfg, life("start")).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for i in 0..20 {
        let d = a.record_durable(reject(i)).expect("queued");
        rt.block_on(d.wait()).expect("durable");
    }
    let live = segments(&cfg.dir)
        .expect("segments")
        .pop()
        .expect("segment");
    let data = std::fs::read(&live).expect("read");
    assert_eq!(data.len(), 1024 * 1024, "zero-filled a MiB ahead");
    let records = written(&data);
    assert!(records.ends_with(b"\n") && records.len() > 20 * 100);
    assert!(data[records.len()..].iter().all(|&b| b == 0));
    let r = verify(&cfg.dir, None).expect("a live trail verifies");
    assert_eq!(r.records, 25, "start, 20 records, 4 checkpoints: {r:?}");
    a.shutdown(life("stop"));
    thread.join().expect("writer thread");
    let closed = std::fs::read(&live).expect("read");
    assert!(!closed.contains(&0), "a closed segment has no zero fill");
    assert!(closed.starts_with(records));
    verify(&cfg.dir, None).expect("verifies when closed");
}

/// A crash leaves the zero fill, and possibly records that were written but never synced
/// beyond a hole of zeros: the next start cuts both, counts the cut records' bytes, and the
/// chain continues from the last record before the hole.
#[test]
fn after_a_crash_the_zero_fill_and_unsynced_records_past_a_hole_are_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        segment_max_bytes: 64 * 1024 * 1024,
        ..config(tmp.path())
    };
    write_trail(&cfg, 4);
    let last = segments(&cfg.dir)
        .expect("segments")
        .pop()
        .expect("segment");
    let clean = std::fs::read(&last).expect("read");
    // What a crash leaves: the zero fill, without a hole …
    let mut crashed = clean;
    crashed.resize(1024 * 1024, 0);
    std::fs::write(&last, &crashed).expect("write");
    verify(&cfg.dir, None).expect("zero fill is not a torn record");
    write_trail(&cfg, 1);
    let all = whole_trail(&cfg.dir);
    assert!(!all.contains('\0'));
    assert!(
        !all.contains("\"event\":\"recovered\""),
        "zero fill alone is not a cut: {all}"
    );
    // … and with a record past a hole.
    let last = segments(&cfg.dir)
        .expect("segments")
        .pop()
        .expect("segment");
    let mut crashed = std::fs::read(&last).expect("read");
    crashed.extend_from_slice(&[0; 4096]);
    crashed.extend_from_slice(b"{\"v\":1,\"seq\":777777,\"prev\":\"x\"}\n");
    crashed.resize(1024 * 1024, 0);
    std::fs::write(&last, &crashed).expect("write");
    write_trail(&cfg, 1);
    let r = verify(&cfg.dir, None).expect("verifies after recovery");
    assert_eq!(r.records, r.last_seq);
    let all = whole_trail(&cfg.dir);
    assert!(
        !all.contains("\"seq\":777777"),
        "the record past the hole is gone"
    );
    assert!(
        all.contains("cut a torn tail of 32 bytes"),
        "the cut is recorded: {all}"
    );
}

#[test]
fn a_full_queue_refuses_records_until_the_writer_has_taken_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        queue_capacity: 2,
        ..config(tmp.path())
    };
    let (a, thread) = Auditor::start(&cfg, life("start")).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Within one turn of the runtime the records wait in the courier's outbox: the third
        // finds the queue full.
        let first = a.record_durable(reject(1)).expect("queued");
        let second = a.record_durable(reject(2)).expect("queued");
        assert!(a.record(reject(3)).is_err(), "over capacity");
        assert!(!a.healthy(), "an overflow refuses requests");
        first.wait().await.expect("durable");
        second.wait().await.expect("durable");
        for _ in 0..200 {
            if a.healthy() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.healthy(), "healthy again once the writer caught up");
        a.record_durable(reject(4))
            .expect("queued")
            .wait()
            .await
            .expect("durable");
    });
    a.shutdown(life("stop"));
    thread.join().expect("writer");
    let trail = whole_trail(&cfg.dir);
    assert!(
        trail.contains("queue drained; 1 record(s) could not be written"),
        "{trail}"
    );
    assert!(trail.contains("127.0.0.1:4") && !trail.contains("127.0.0.1:3"));
    verify(&cfg.dir, None).expect("verifies");
}

/// With `fsync = "always"`, a checkpoint's `HEAD.json` is written by the syncer that makes the
/// checkpoint durable, before the records synced with it are acknowledged: once a record's
/// wait returns, the head names the newest checkpoint at or before it, and a head never goes
/// back to an older one.
#[test]
fn heads_follow_the_checkpoints_as_records_become_durable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        segment_max_bytes: 1 << 20,
        ..config(tmp.path())
    };
    let (a, thread) = Auditor::start(&cfg, life("start")).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let head_seq = || -> u64 {
        let text = std::fs::read_to_string(cfg.dir.join(HEAD_FILE)).expect("HEAD.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["seq"].as_u64().expect("seq")
    };
    let mut last = 0;
    for i in 0..40u64 {
        rt.block_on(a.record_durable(reject(i)).expect("queued").wait())
            .expect("durable");
        // The newest checkpoint in the trail so far (one follows every 5 records).
        let lines = whole_trail(&cfg.dir);
        let newest = lines
            .lines()
            .filter(|l| l.contains("\"kind\":\"checkpoint\""))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["seq"].as_u64())
            .max();
        if let Some(cp) = newest {
            let head = head_seq();
            assert_eq!(
                head, cp,
                "after record {i}: HEAD names the newest checkpoint"
            );
            assert!(head >= last, "HEAD went back from {last} to {head}");
            last = head;
        }
    }
    assert!(last > 0, "checkpoints were written");
    a.shutdown(life("stop"));
    thread.join().expect("writer");
    verify(&cfg.dir, None).expect("verifies");
}
