//! `cargo bench -p moat --bench audit_writer`: how fast the audit writer takes records, for each
//! fsync mode, on the disk the trail is written to.
//!
//! Three measurements, each in a fresh temporary trail directory (under `/var/tmp` unless
//! `--dir` says otherwise; tmpfs would make fsync free and the figures meaningless):
//!
//! - **producer**: one thread submits realistic request records with `Auditor::record` as fast as
//!   it can, then calls `Auditor::shutdown` and joins the writer thread. Records/s counts from
//!   the first submission to the writer thread's exit, so the final write, checkpoint and fsync
//!   are included. The queue is sized to hold the whole run, so nothing is refused for overflow.
//! - **durable** (`always` only): N tokio tasks (default 1, then 32) each loop
//!   `record_durable(..)` then `.wait().await`, which is what each request does in
//!   `fsync = "always"` mode; records/s and the wait latency (p50/p99/max, from before
//!   `record_durable` to the end of `wait`). In the other modes `wait` returns as soon as the
//!   record is queued, so there is nothing to measure there that (a) does not.
//! - **fdatasync**: the raw cost of the device: append one record-sized line and `sync_data`, in
//!   a loop, with no auditor involved. A reference for reading the other two.
//!
//! Every run is bounded by `--records` (default 200,000) and `--secs` (default 5). Afterwards
//! the trail is checked with `moat::audit::verify::verify`, and the number of request records
//! in it must equal the number submitted; a shortfall fails the bench.
//!
//! Flags: `--records N`, `--secs S`, `--reps N` (producer repetitions; the median is shown,
//! default 3), `--tasks N[,N…]` (durable concurrency, default 1,32), `--workers N` (tokio worker
//! threads for the durable runs, default 1 as in `cargo xtask bench`), `--mode MODE` (repeatable;
//! default all three), `--dir PATH`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use moat::audit::record::{Envelope, GuardFacts, LifecycleRecord, Record, RequestRecord, TlsFacts};
use moat::audit::{AuditConfig, Auditor, FsyncMode};
use tokio::time::Instant;

struct Options {
    records: u64,
    secs: u64,
    reps: usize,
    tasks: Vec<usize>,
    workers: usize,
    modes: Vec<FsyncMode>,
    base: PathBuf,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut o = Self {
            records: 200_000,
            secs: 5,
            reps: 3,
            tasks: vec![1, 32],
            workers: 1,
            modes: Vec::new(),
            base: PathBuf::from("/var/tmp"),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || args.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "--records" => o.records = value()?.parse().context("--records")?,
                "--secs" => o.secs = value()?.parse().context("--secs")?,
                "--reps" => o.reps = value()?.parse().context("--reps")?,
                "--workers" => o.workers = value()?.parse().context("--workers")?,
                "--tasks" => {
                    o.tasks = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .context("--tasks")?;
                }
                "--mode" => o.modes.push(match value()?.as_str() {
                    "always" => FsyncMode::Always,
                    "batch" => FsyncMode::Batch,
                    "never" => FsyncMode::Never,
                    m => bail!("--mode: expected always, batch or never, not {m:?}"),
                }),
                "--dir" => o.base = PathBuf::from(value()?),
                _ => bail!(
                    "audit_writer: unknown argument {a:?}; flags: --records N, --secs S, \
                     --reps N, --tasks N[,N…], --workers N, --mode always|batch|never, --dir PATH"
                ),
            }
        }
        if o.modes.is_empty() {
            o.modes = vec![FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never];
        }
        ensure!(o.records > 0 && o.secs > 0 && o.reps > 0 && o.workers > 0);
        ensure!(!o.tasks.is_empty() && o.tasks.iter().all(|&t| t > 0));
        Ok(o)
    }
}

fn lifecycle(event: &str) -> LifecycleRecord {
    LifecycleRecord {
        event: event.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        config_sha256: None,
        detail: Some("audit_writer bench".into()),
    }
}

/// A request record shaped like the ones the proxy writes for the bench's JSON POST.
fn request(i: u64) -> Record {
    Record::Request(Box::new(RequestRecord {
        request_id: format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        listener: "127.0.0.1:8443".into(),
        region: Some("eu-central".into()),
        client: format!("127.0.0.1:{}", 40_000 + i % 20_000).into(),
        tls: Arc::new(TlsFacts {
            version: Some("TLSv1_3".into()),
            cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
            sni: Some("localhost".into()),
            alpn: Some("http/1.1".into()),
            client_cert_sha256: None,
        }),
        principal: None,
        principal_kind: None,
        caller_regions: Arc::from([]),
        method: "POST".into(),
        host: "localhost:8443".into(),
        path: "/v1/chat/completions".into(),
        model: Some("llama-3".into()),
        rule: None,
        decision: "allow".into(),
        upstream: "model@127.0.0.1:8080".into(),
        status: 200,
        bytes_in: 1024,
        bytes_out: 54,
        duration_ms: 0.412,
        upstream_ms: Some(0.187),
        redactions: Default::default(),
        guard: Arc::new(GuardFacts {
            mode: "off".into(),
            allow_sha256: None,
        }),
        failed: None,
        reason: None,
    }))
}

fn config(dir: &Path, fsync: FsyncMode, queue_capacity: usize) -> AuditConfig {
    AuditConfig {
        dir: dir.join("audit"),
        key_dir: dir.join("state"),
        fsync,
        queue_capacity,
        ..AuditConfig::default()
    }
}

fn scratch(base: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("moat-audit-bench-")
        .tempdir_in(base)
        .with_context(|| format!("cannot create a directory in {}", base.display()))
}

/// What the trail holds after a run.
struct Trail {
    records: u64,
    requests: u64,
    checkpoints: u64,
    bytes: u64,
}

/// Verifies the trail and counts its request records, which must equal `expected`.
fn check_trail(dir: &Path, expected: u64) -> Result<Trail> {
    let report = moat::audit::verify::verify(dir, None)
        .map_err(|e| anyhow!("the trail does not verify: {e}"))?;
    let mut requests = 0;
    let mut bytes = 0;
    for seg in moat::audit::segments(dir)? {
        let data = std::fs::read(&seg)?;
        bytes += data.len() as u64;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let env: Envelope = serde_json::from_slice(line)?;
            if matches!(env.record, Record::Request(_)) {
                requests += 1;
            }
        }
    }
    ensure!(
        requests == expected,
        "RECORDS LOST: {expected} request records were accepted, the trail holds {requests}"
    );
    Ok(Trail {
        records: report.records,
        requests,
        checkpoints: report.checkpoints,
        bytes,
    })
}

struct ProducerRun {
    records: u64,
    submit: Duration,
    total: Duration,
    trail: Trail,
}

impl ProducerRun {
    fn rate(&self) -> f64 {
        self.records as f64 / self.total.as_secs_f64()
    }
}

/// One producer, `record()` as fast as it can, then shutdown and join.
fn producer(opts: &Options, mode: FsyncMode) -> Result<ProducerRun> {
    let tmp = scratch(&opts.base)?;
    let capacity = usize::try_from(opts.records)?.saturating_add(64);
    let cfg = config(tmp.path(), mode, capacity);
    let (audit, writer) = Auditor::start(&cfg, lifecycle("start"))?;
    let limit = Duration::from_secs(opts.secs);
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < opts.records {
        if sent % 1024 == 0 && t0.elapsed() >= limit {
            break;
        }
        if audit.record(request(sent)).is_err() {
            bail!(
                "record() refused record {sent} (queue of {capacity}, healthy: {})",
                audit.healthy()
            );
        }
        sent += 1;
    }
    let submit = t0.elapsed();
    audit.shutdown(lifecycle("stop"));
    writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))?;
    let total = t0.elapsed();
    let trail = check_trail(&cfg.dir, sent)?;
    Ok(ProducerRun {
        records: sent,
        submit,
        total,
        trail,
    })
}

struct DurableRun {
    records: u64,
    failed: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    trail: Trail,
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `tasks` tokio tasks, each `record_durable(..).wait().await` in a loop.
fn durable(opts: &Options, mode: FsyncMode, tasks: usize) -> Result<DurableRun> {
    let tmp = scratch(&opts.base)?;
    let cfg = config(tmp.path(), mode, AuditConfig::default().queue_capacity);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.workers)
        .enable_all()
        .build()?;
    let (audit, writer) = Auditor::start(&cfg, lifecycle("start"))?;
    let next = Arc::new(AtomicU64::new(0));
    let (limit, records) = (Duration::from_secs(opts.secs), opts.records);
    let t0 = Instant::now();
    let per_task = rt.block_on(async {
        let mut handles = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let (audit, next) = (audit.clone(), next.clone());
            handles.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0_u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= records || t0.elapsed() >= limit {
                        break;
                    }
                    let start = Instant::now();
                    let ok = match audit.record_durable(request(i)) {
                        Ok(d) => d.wait().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    if !ok {
                        failed += 1;
                    }
                    // In batch/never modes `wait` is ready at once; let the other tasks run.
                    if mode != FsyncMode::Always {
                        tokio::task::yield_now().await;
                    }
                }
                (latencies, failed)
            }));
        }
        let mut out = Vec::with_capacity(tasks);
        for h in handles {
            out.push(h.await?);
        }
        Ok::<_, tokio::task::JoinError>(out)
    })?;
    let elapsed = t0.elapsed();
    audit.shutdown(lifecycle("stop"));
    writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))?;
    drop(rt);
    let failed: u64 = per_task.iter().map(|(_, f)| f).sum();
    let mut all: Vec<u64> = per_task.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_unstable();
    let attempted = all.len() as u64;
    let trail = check_trail(&cfg.dir, attempted - failed)?;
    Ok(DurableRun {
        records: attempted - failed,
        failed,
        elapsed,
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        max: Duration::from_nanos(all.last().copied().unwrap_or(0)),
        trail,
    })
}

/// The device alone: append a record-sized line and `sync_data`, `n` times or for `limit`.
fn fdatasync(base: &Path, n: u64, limit: Duration) -> Result<(u64, Duration, Vec<u64>)> {
    let tmp = scratch(base)?;
    let path = tmp.path().join("fdatasync.jsonl");
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    let line = [b'x'; 700];
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for _ in 0..n {
        if t0.elapsed() >= limit {
            break;
        }
        let s = Instant::now();
        f.write_all(&line)?;
        f.sync_data()?;
        lat.push(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let elapsed = t0.elapsed();
    lat.sort_unstable();
    Ok((lat.len() as u64, elapsed, lat))
}

fn filesystem(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-n", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS", "-T"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "? (findmnt failed)".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let opts = Options::parse()?;
    std::fs::create_dir_all(&opts.base)?;
    println!("# audit_writer");
    println!();
    println!(
        "directory {} on: {}",
        opts.base.display(),
        filesystem(&opts.base)
    );
    println!(
        "bounds: {} records or {} s per run; producer runs: median of {}; durable runs: {} tokio \
         worker thread(s)",
        opts.records, opts.secs, opts.reps, opts.workers
    );
    println!();

    let (n, elapsed, lat) = fdatasync(&opts.base, 2000, Duration::from_secs(opts.secs))?;
    println!(
        "raw device: {n} × (append 700 B + fdatasync) in {:.2} s = {:.0}/s; p50 {:.3} ms, p99 \
         {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(percentile(&lat, 100.0)),
    );
    println!();

    println!("## (a) one producer, record() then shutdown");
    println!();
    println!(
        "| fsync | records | records/s (median) | range over reps | submit-only records/s | \
         bytes/record | checkpoints |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|");
    for &mode in &opts.modes {
        let mut runs = Vec::with_capacity(opts.reps);
        for rep in 1..=opts.reps {
            let r = producer(&opts, mode)?;
            eprintln!(
                "producer fsync={} rep {rep}: {} records, submitted in {:.3} s, written in \
                 {:.3} s = {:.0} records/s; trail {} records ({} requests, {} checkpoints), {} \
                 bytes",
                mode.as_str(),
                r.records,
                r.submit.as_secs_f64(),
                r.total.as_secs_f64(),
                r.rate(),
                r.trail.records,
                r.trail.requests,
                r.trail.checkpoints,
                r.trail.bytes
            );
            runs.push(r);
        }
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let lo = runs.first().map_or(0.0, ProducerRun::rate);
        let hi = runs.last().map_or(0.0, ProducerRun::rate);
        let m = &runs[runs.len() / 2];
        println!(
            "| {} | {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {} |",
            mode.as_str(),
            m.records,
            m.rate(),
            lo,
            hi,
            m.records as f64 / m.submit.as_secs_f64(),
            m.trail.bytes as f64 / m.trail.records as f64,
            m.trail.checkpoints
        );
    }
    println!();

    println!("## (b) fsync = always: concurrent tasks, record_durable().wait() in a loop");
    println!();
    println!(
        "| fsync | tasks | records | records/s | wait p50 ms | wait p99 ms | wait max ms | failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    // Only `always` waits for anything: in the other modes `wait` is ready as soon as the record
    // is queued, so these runs would measure the queue, not the disk.
    for &mode in opts.modes.iter().filter(|&&m| m == FsyncMode::Always) {
        for &tasks in &opts.tasks {
            let r = durable(&opts, mode, tasks)?;
            eprintln!(
                "durable fsync={} tasks={tasks}: {} records in {:.3} s; trail {} records ({} \
                 requests, {} checkpoints)",
                mode.as_str(),
                r.records,
                r.elapsed.as_secs_f64(),
                r.trail.records,
                r.trail.requests,
                r.trail.checkpoints
            );
            println!(
                "| {} | {tasks} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
                mode.as_str(),
                r.records,
                r.records as f64 / r.elapsed.as_secs_f64(),
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                r.failed
            );
        }
    }
    Ok(())
}
