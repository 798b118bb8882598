//! Running the load generators with CPU accounting.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;

use anyhow::{bail, ensure, Context, Result};

use super::options::Options;
use super::parse::{parse_h2load, parse_wrk, WrkResult};
use super::procs::{Proc, Procs, Tools, POLL};
use super::sys::{core_ticks, process_ticks, reaped_children_ticks};

/// Extra time a load run gets beyond its duration before it is killed.
pub(super) const GRACE_SECS: u64 = 30;

/// Runs wrk once against `url` for `secs`, killing it if it overruns, and measures the CPU time
/// the `server` process used meanwhile.
pub(super) fn wrk(
    procs: &mut Procs,
    tools: &Tools,
    opts: &Options,
    (url, server): (&str, &str),
    script: Option<&Path>,
    secs: u64,
) -> Result<WrkResult> {
    let server_pid = procs.pid_of(server);
    let out_file = procs.dir.join("wrk.out");
    let out = fs::File::create(&out_file)?;
    let err = out.try_clone()?;
    let mut cmd;
    if let Some(h2load) = tools.h2load.as_ref().filter(|_| opts.h2) {
        // h2load: HTTP/2 with 10 streams per connection to the proxies (ALPN h2), HTTP/1.1 to
        // the plain upstream; the POST body comes from the file next to the wrk script.
        cmd = tools.pinned(0, h2load);
        cmd.args(["-t1", "-T5"])
            .arg(format!("-c{}", opts.connections))
            .arg(format!("-D{secs}"));
        if url.starts_with("http:") {
            cmd.args(["--h1", "-m1"]);
        } else {
            cmd.arg("-m10");
        }
        if let Some(s) = script {
            cmd.arg("-d")
                .arg(s.with_extension("json"))
                .args(["-H", "content-type: application/json"]);
        }
    } else {
        cmd = tools.pinned(0, &tools.wrk);
        cmd.args(["-t1", "--latency", "--timeout", "5s"])
            .arg(format!("-c{}", opts.connections))
            .arg(format!("-d{secs}s"));
        if let Some(s) = script {
            cmd.arg("-s").arg(s);
        }
    }
    cmd.arg(url);
    let server_before = server_pid.and_then(process_ticks);
    let ours_before = procs.ticks();
    let reaped_before = reaped_children_ticks();
    let cores_before = core_ticks();
    let child = cmd
        .current_dir(&procs.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut load = Proc {
        name: "wrk",
        child,
        log: out_file.clone(),
    };
    let polls = (secs + GRACE_SECS) * 1000 / 50;
    let mut status = None;
    for _ in 0..polls {
        if let Some(s) = load.child.try_wait()? {
            status = Some(s);
            break;
        }
        sleep(POLL);
    }
    drop(load); // kills wrk if it overran
    let server_after = server_pid.and_then(process_ticks);
    let ours_after = procs.ticks();
    let reaped_after = reaped_children_ticks(); // includes wrk, reaped above
    let cores_after = core_ticks();
    let text = fs::read_to_string(&out_file)?;
    let Some(status) = status else {
        bail!("{cmd:?} did not finish within {GRACE_SECS}s of its duration:\n{text}");
    };
    ensure!(status.success(), "{cmd:?} failed with {status}:\n{text}");
    procs.check_alive()?;
    let parsed = if opts.h2 {
        parse_h2load(&text)
    } else {
        parse_wrk(&text)
    };
    let mut r = parsed.with_context(|| format!("cannot read the output of {cmd:?}:\n{text}"))?;
    // Elapsed ticks: every CPU's total advances by the same wall-clock time.
    let elapsed = cores_before
        .first()
        .zip(cores_after.first())
        .map_or(0, |(b, a)| a.1.saturating_sub(b.1));
    if elapsed > 0 {
        let pct = |used: u64| used as f64 * 100.0 / elapsed as f64;
        r.server_cpu = server_before
            .zip(server_after)
            .map(|(b, a)| pct(a.saturating_sub(b)));
        r.core_busy = cores_before
            .iter()
            .zip(&cores_after)
            .map(|(b, a)| {
                let total = a.1.saturating_sub(b.1);
                if total == 0 {
                    0.0
                } else {
                    a.0.saturating_sub(b.0) as f64 * 100.0 / total as f64
                }
            })
            .collect();
        let busy: u64 = cores_before
            .iter()
            .zip(&cores_after)
            .map(|(b, a)| a.0.saturating_sub(b.0))
            .sum();
        r.other_cpu = ours_before
            .zip(ours_after)
            .zip(reaped_before.zip(reaped_after))
            .map(|((ob, oa), (rb, ra))| {
                let ours = oa.saturating_sub(ob) + ra.saturating_sub(rb);
                pct(busy.saturating_sub(ours))
            });
    }
    Ok(r)
}
