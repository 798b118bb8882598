//! Running the load generators (h2load, wrk and the handshake client) with CPU and steal
//! accounting, and taking a run again when the hypervisor stole too much of the proxy's CPU.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;

use anyhow::{bail, ensure, Context, Result};

use super::client::HandshakeArgs;
use super::options::{Options, Row};
use super::parse::{
    parse_h2load, parse_h2load_log, parse_handshake, parse_slow, parse_wrk, Sample,
};
use super::peers::{DOWNLOAD_PATH, DOWNLOAD_SIZE, POST_PATH};
use super::procs::{Proc, Procs, Tools, POLL};
use super::slow::{SlowArgs, WINDOW};
use super::sys::{
    busy_pct, own_ticks, process_ticks, reaped_children_ticks, steal_pct, CpuSnapshot,
};

/// Extra time a load run gets beyond its duration before it is killed.
pub(super) const GRACE_SECS: u64 = 30;
/// How many times a run is taken again when steal time is above `--max-steal`.
pub(super) const MAX_RERUNS: usize = 3;
/// CPU the load generators run on.
const LOAD_CPU: usize = 0;
/// Slow heads, and slow bodies, of the slow-clients row.
const SLOW_EACH: u32 = 250;

/// What every run of one target needs.
pub(super) struct Load<'a> {
    pub(super) tools: &'a Tools,
    pub(super) opts: &'a Options,
    /// Host name in URLs and SNI.
    pub(super) host: &'a str,
    /// The API key every request carries.
    pub(super) key: &'a str,
    /// The ~1 KiB JSON body of the POST rows.
    pub(super) post_body: PathBuf,
    /// A copy of this program, for the handshake client.
    pub(super) xtask: PathBuf,
}

impl Load<'_> {
    fn auth(&self) -> String {
        format!("authorization: Bearer {}", self.key)
    }

    /// The load generator's command for one run of `row` against `port` for `secs`; with
    /// `log`, h2load writes per-request times there.
    pub(super) fn command(
        &self,
        row: Row,
        port: u16,
        secs: u64,
        log: Option<&PathBuf>,
    ) -> Result<Command> {
        let c = self.opts.connections;
        let url = |path: &str| format!("https://{}:{port}{path}", self.host);
        let mut cmd;
        match row {
            Row::H1Get | Row::H1Post | Row::H2Get | Row::H2Post | Row::Download => {
                cmd = self.tools.pinned(LOAD_CPU, &self.tools.h2load);
                // -N5: a connection without any activity for 5 s is given up (counted as a
                // timeout). Without it, h2load 1.52 was once seen waiting forever after
                // "Stopped all clients" on a busy machine.
                cmd.args(["-t1", "-N5", &format!("-c{c}"), &format!("-D{secs}")])
                    .args(["-H", &self.auth()]);
                if matches!(row, Row::H2Get | Row::H2Post) {
                    cmd.arg("-m10");
                } else {
                    cmd.arg("--h1");
                }
                if matches!(row, Row::H1Post | Row::H2Post) {
                    cmd.arg("-d")
                        .arg(&self.post_body)
                        .args(["-H", "content-type: application/json"]);
                }
                if let Some(log) = log {
                    cmd.arg(format!("--log-file={}", log.display()));
                }
                cmd.arg(url(match row {
                    Row::H1Post | Row::H2Post => POST_PATH,
                    Row::Download => DOWNLOAD_PATH,
                    _ => "/",
                }));
            }
            Row::WrkGet => {
                cmd = self.tools.pinned(LOAD_CPU, &self.tools.wrk);
                cmd.args(["-t1", "--latency", "--timeout", "5s"])
                    .arg(format!("-c{c}"))
                    .arg(format!("-d{secs}s"))
                    .args(["-H", &self.auth()])
                    .arg(url("/"));
            }
            Row::Handshake => {
                cmd = self.tools.pinned(LOAD_CPU, &self.xtask);
                let addr = (super::peers::LOOPBACK, port).into();
                cmd.args(
                    HandshakeArgs {
                        addr,
                        host: self.host.to_owned(),
                        connections: c,
                        duration: secs,
                        key: self.key.to_owned(),
                    }
                    .to_args(),
                );
            }
            Row::SlowClients => {
                cmd = self.tools.pinned(LOAD_CPU, &self.xtask);
                cmd.args(
                    SlowArgs {
                        addr: (super::peers::LOOPBACK, port).into(),
                        host: self.host.to_owned(),
                        key: self.key.to_owned(),
                        heads: SLOW_EACH,
                        bodies: SLOW_EACH,
                        body_path: POST_PATH.to_owned(),
                    }
                    .to_args(),
                );
            }
            Row::IdleH1 | Row::IdleH2 => bail!("{} is not a load run", row.id()),
        }
        Ok(cmd)
    }
}

/// One run of `row` against the proxy `server` listening on `port`, for `secs`, with its
/// accounting: the proxy's CPU time, steal time of the proxy's CPU and of the machine, how busy
/// each CPU was, and CPU time used by other processes.
pub(super) fn run_once(
    procs: &mut Procs,
    load: &Load<'_>,
    row: Row,
    (server, port): (&str, u16),
    secs: u64,
    latency: bool,
) -> Result<Sample> {
    let server_pid = procs.pid_of(server);
    let out_file = procs.dir.join("load.out");
    let log_file = procs.dir.join("h2load-requests.log");
    let log = (latency && row.has_latency()).then_some(&log_file);
    let out = fs::File::create(&out_file)?;
    let err = out.try_clone()?;
    let mut cmd = load.command(row, port, secs, log)?;
    let proxy_cpu = load.tools.proxy_cpu();
    let server_before = server_pid.and_then(process_ticks);
    let ours_before = procs.ticks().zip(own_ticks());
    let reaped_before = reaped_children_ticks();
    let cpus_before = CpuSnapshot::read();
    let child = cmd
        .current_dir(&procs.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut gen = Proc {
        name: "load generator",
        child,
        log: out_file.clone(),
        relaunch: None,
    };
    let polls = (secs + GRACE_SECS) * 1000 / POLL.as_millis() as u64;
    let mut status = None;
    for _ in 0..polls {
        if let Some(s) = gen.child.try_wait()? {
            status = Some(s);
            break;
        }
        sleep(POLL);
    }
    drop(gen); // kills the load generator if it overran
    let server_after = server_pid.and_then(process_ticks);
    let ours_after = procs.ticks().zip(own_ticks());
    let reaped_after = reaped_children_ticks(); // includes the load generator, reaped above
    let cpus_after = CpuSnapshot::read();
    let text = fs::read_to_string(&out_file)?;
    let Some(status) = status else {
        bail!("{cmd:?} did not finish within {GRACE_SECS}s of its duration:\n{text}");
    };
    ensure!(status.success(), "{cmd:?} failed with {status}:\n{text}");
    procs.check_alive()?;
    let parsed = match row {
        Row::WrkGet => parse_wrk(&text),
        Row::Handshake => parse_handshake(&text),
        Row::SlowClients => parse_slow(&text),
        _ => parse_h2load(&text),
    };
    let mut r = parsed.with_context(|| format!("cannot read the output of {cmd:?}:\n{text}"))?;
    if let Some(log) = log {
        let requests = fs::read_to_string(log)
            .with_context(|| format!("cannot read h2load's log {}", log.display()))?;
        let (p50, p99) = parse_h2load_log(&requests)?;
        (r.p50_ms, r.p99_ms) = (Some(p50), Some(p99));
        fs::remove_file(log)?;
    }
    if row == Row::Download {
        r.value *= DOWNLOAD_SIZE as f64 / f64::from(1 << 20);
    }
    if let Some(tls) = r.tls.as_deref() {
        ensure!(
            tls == "TLSv1.3",
            "{} to {server} negotiated {tls}",
            row.id()
        );
    }
    let want_alpn = if matches!(row, Row::H2Get | Row::H2Post) {
        "h2"
    } else {
        "http/1.1"
    };
    if let Some(alpn) = r.alpn.as_deref() {
        ensure!(
            alpn == want_alpn,
            "{} to {server} negotiated {alpn}, not {want_alpn}",
            row.id()
        );
    }

    // Elapsed ticks: every CPU's total advances with the same wall-clock time.
    let (Some(all_before), Some(all_after)) = (cpus_before.cpu(None), cpus_after.cpu(None)) else {
        return Ok(r);
    };
    let cpus = cpus_after.cores.len().max(1) as u64;
    let elapsed = all_after.total.saturating_sub(all_before.total) / cpus;
    if elapsed == 0 {
        return Ok(r);
    }
    let pct = |used: u64| used as f64 * 100.0 / elapsed as f64;
    r.server_cpu = server_before
        .zip(server_after)
        .map(|(b, a)| pct(a.saturating_sub(b)));
    r.steal = cpus_before
        .cpu(proxy_cpu)
        .zip(cpus_after.cpu(proxy_cpu))
        .and_then(|(b, a)| steal_pct(b, a));
    r.machine_steal = steal_pct(all_before, all_after);
    r.core_busy = cpus_before
        .cores
        .iter()
        .zip(&cpus_after.cores)
        .filter_map(|((_, b), (_, a))| busy_pct(*b, *a))
        .collect();
    let busy = all_after.busy.saturating_sub(all_before.busy);
    r.other_cpu = ours_before
        .zip(ours_after)
        .zip(reaped_before.zip(reaped_after))
        .map(|(((cb, ob), (ca, oa)), (rb, ra))| {
            let ours = ca.saturating_sub(cb) + oa.saturating_sub(ob) + ra.saturating_sub(rb);
            pct(busy.saturating_sub(ours))
        });
    Ok(r)
}

/// Whether a run must be taken again: its proxy-CPU steal is above `max` percent.
pub(super) fn too_much_steal(sample: &Sample, max: f64) -> bool {
    sample.steal.is_some_and(|s| s > max)
}

/// Of the runs taken, the one to keep (least steal) with the steal of the others noted in
/// `discarded_steal`.
pub(super) fn keep_least_stolen(mut runs: Vec<Sample>) -> Option<Sample> {
    let best = runs
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.steal.unwrap_or(0.0).total_cmp(&b.steal.unwrap_or(0.0)))
        .map(|(i, _)| i)?;
    let mut kept = runs.swap_remove(best);
    kept.discarded_steal = runs.iter().filter_map(|r| r.steal).collect();
    Some(kept)
}

/// A warm-up run (not counted, but its errors are: `warmup_errors` gets a note), then the
/// measured run, taken again up to [`MAX_RERUNS`] times while the steal time of the proxy's CPU
/// is above `--max-steal`.
pub(super) fn measure(
    procs: &mut Procs,
    load: &Load<'_>,
    row: Row,
    server: (&str, u16),
    warmup_errors: &mut Vec<String>,
) -> Result<Sample> {
    let opts = load.opts;
    // The slow-clients row runs until the slow connections are done (at most their window and
    // the time to open them), whatever `--duration` says, and needs no warm-up.
    let slow = row == Row::SlowClients;
    let secs = if slow {
        WINDOW.as_secs() + 2 * u64::from(SLOW_EACH) / u64::from(super::slow::OPEN_RATE) + 1
    } else {
        opts.duration
    };
    if opts.warmup > 0 && !slow {
        let w = run_once(procs, load, row, server, opts.warmup, false)?;
        if w.non_2xx > 0 || w.errors > 0 {
            warmup_errors.push(format!(
                "{} via {} during the warm-up: {} non-2xx/3xx responses, {} errors",
                row.id(),
                server.0,
                w.non_2xx,
                w.errors
            ));
        }
    }
    let mut runs = Vec::new();
    for attempt in 0..=MAX_RERUNS {
        let r = run_once(procs, load, row, server, secs, true)?;
        let again = too_much_steal(&r, opts.max_steal) && attempt < MAX_RERUNS;
        if too_much_steal(&r, opts.max_steal) {
            eprintln!(
                "bench: {} via {}: {:.1}% of CPU {} stolen (over {}%){}",
                row.id(),
                server.0,
                r.steal.unwrap_or(0.0),
                load.tools
                    .proxy_cpu()
                    .map_or_else(|| "s".to_owned(), |c| c.to_string()),
                opts.max_steal,
                if again {
                    "; taking it again"
                } else {
                    "; keeping the least stolen run"
                }
            );
        }
        runs.push(r);
        if !again {
            break;
        }
    }
    keep_least_stolen(runs).context("no run was taken")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stolen(steal: f64, value: f64) -> Sample {
        Sample {
            steal: Some(steal),
            value,
            ..Sample::default()
        }
    }

    #[test]
    fn reruns_only_above_the_threshold() {
        assert!(too_much_steal(&stolen(5.1, 1.0), 5.0));
        assert!(!too_much_steal(&stolen(5.0, 1.0), 5.0));
        assert!(!too_much_steal(&Sample::default(), 0.0), "unknown steal");
    }

    #[test]
    fn keeps_the_least_stolen_run() -> Result<()> {
        let kept = keep_least_stolen(vec![
            stolen(9.0, 100.0),
            stolen(2.0, 120.0),
            stolen(7.0, 110.0),
        ])
        .context("nothing kept")?;
        assert!((kept.value - 120.0).abs() < 1e-9);
        let mut others = kept.discarded_steal;
        others.sort_by(f64::total_cmp);
        assert_eq!(others, vec![7.0, 9.0]);
        let single = keep_least_stolen(vec![stolen(0.0, 5.0)]).context("nothing kept")?;
        assert!(single.discarded_steal.is_empty());
        assert!(keep_least_stolen(Vec::new()).is_none());
        Ok(())
    }

    fn words(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn load_generator_command_lines() -> Result<()> {
        let tools = Tools {
            nginx: "/usr/sbin/nginx".into(),
            haproxy: "/usr/sbin/haproxy".into(),
            wrk: "/usr/bin/wrk".into(),
            h2load: "/usr/bin/h2load".into(),
            taskset: None,
            curl: None,
        };
        let opts = Options::parse(&[])?;
        let load = Load {
            tools: &tools,
            opts: &opts,
            host: "localhost",
            key: "KEY",
            post_body: "/b/post.json".into(),
            xtask: "/b/xtask".into(),
        };
        let has = |w: &[String], want: &[&str]| want.iter().all(|x| w.iter().any(|a| a == x));
        let log = PathBuf::from("/b/requests.log");
        let h1 = words(&load.command(Row::H1Get, 8443, 3, Some(&log))?);
        assert_eq!(h1[0], "/usr/bin/h2load");
        assert!(
            has(
                &h1,
                &["--h1", "-c32", "-D3", "-t1", "authorization: Bearer KEY"]
            ),
            "{h1:?}"
        );
        assert!(has(&h1, &["--log-file=/b/requests.log"]));
        assert_eq!(
            h1.last().map(String::as_str),
            Some("https://localhost:8443/")
        );
        let h2 = words(&load.command(Row::H2Post, 8443, 3, None)?);
        assert!(has(
            &h2,
            &[
                "-m10",
                "-d",
                "/b/post.json",
                "content-type: application/json"
            ]
        ));
        assert!(!has(&h2, &["--h1"]) && !h2.iter().any(|a| a.starts_with("--log-file")));
        assert_eq!(
            h2.last().map(String::as_str),
            Some("https://localhost:8443/v1/chat/completions")
        );
        let dl = words(&load.command(Row::Download, 8443, 3, None)?);
        assert!(has(&dl, &["--h1"]));
        assert_eq!(
            dl.last().map(String::as_str),
            Some("https://localhost:8443/download.bin")
        );
        let wrk = words(&load.command(Row::WrkGet, 8443, 3, None)?);
        assert_eq!(wrk[0], "/usr/bin/wrk");
        assert!(has(
            &wrk,
            &["--latency", "-c32", "-d3s", "authorization: Bearer KEY"]
        ));
        let hs = words(&load.command(Row::Handshake, 8443, 3, None)?);
        assert_eq!(&hs[..3], ["/b/xtask", "bench", "__handshake"]);
        assert!(has(&hs, &["127.0.0.1:8443", "localhost", "32", "3", "KEY"]));
        assert!(load.command(Row::IdleH1, 8443, 3, None).is_err());
        Ok(())
    }
}
