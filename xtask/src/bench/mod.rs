//! `cargo xtask bench`: HTTP/1.1 load tests of moat against nginx as the peer proxy.
//!
//! Everything runs on loopback (`127.0.0.1` only) and is torn down at the end, also on error:
//!
//! 1. Installs `nginx` and `wrk` with apt-get when they are missing (`h2load` is not needed).
//! 2. Builds `moat` in release and writes a CA and a server certificate (ECDSA P-256) with
//!    `moat cert init` into a temporary directory.
//! 3. Starts a fast upstream (an nginx instance answering fixed bodies with `return 200`), moat in
//!    front of it (one runtime worker) and nginx as a TLS-terminating proxy in front of it (one
//!    process, the same certificate, keep-alive to the upstream).
//! 4. Checks once with curl (when present) that every target gives the expected answers, with the
//!    CA, so the certificate chain is checked too.
//! 5. With the same `wrk` settings drives the upstream directly over plain HTTP, moat over HTTPS
//!    and nginx over HTTPS, for a small GET and a ~1 KiB JSON POST, and prints requests per
//!    second and p50/p99 latency side by side, as a Markdown table on stdout.
//!
//! On a machine with two or more CPUs the proxies run pinned to CPU 1 and the load generator and
//! the upstream share CPU 0 (`taskset`), so each proxy gets exactly one core. Each run also reads
//! `/proc` for the CPU time the measured server used (below ~95% of its core it was not the
//! bottleneck, so requests per CPU-second is shown too) and the CPU time used by anything else on
//! the machine (other work that disturbs the figures; warned about when the machine is busy).
//!
//! A run in which moat answers with non-2xx/3xx statuses, has socket errors or exits fails the
//! command. There are no timing assertions: the figures are printed, not judged.
//!
//! Flags: `--duration SECS` per measured run (default 10), `--connections N` (default 32),
//! `--warmup SECS` before each measured run (default 2), `--rounds N` (default 1; the median
//! round by requests/s is shown), `--fsync MODE` (`always`, `batch` or `never`; default `batch`)
//! for moat's `[audit] fsync`, `--keep` to keep the temporary directory.

mod load;
mod options;
mod parse;
mod peers;
mod procs;
mod report;
mod sys;

use std::fs;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use load::wrk;
use options::{Options, Scenario, Target};
use parse::WrkResult;
use peers::{
    moat_config, nginx_args, post_body, post_script, proxy_config, upstream_config, GET_BODY,
    LOOPBACK, POST_PATH, POST_REPLY,
};
pub(crate) use procs::{build_moat, find_tool};
use procs::{free_ports, tail, Procs, Tools};
use report::{report, versions};
use sys::background_load;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let tools = Tools::ensure(opts.h2)?;
    let moat = build_moat()?;
    let dir = std::env::temp_dir().join(format!("moat-bench-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut procs = Procs {
        dir,
        keep_dir: opts.keep,
        children: Vec::new(),
    };
    let result = bench(&mut procs, &opts, &tools, &moat);
    if result.is_err() {
        procs.keep_dir = true;
    }
    if procs.keep_dir {
        eprintln!(
            "bench: configurations and logs kept in {}",
            procs.dir.display()
        );
    }
    drop(procs); // kills every process it started, whatever happened
    result
}

/// Addresses and files of the running setup.
struct Setup {
    /// Host name in the URLs: `localhost` when it resolves to 127.0.0.1 first (so TLS clients
    /// send a host name, not an IP address, as SNI), else 127.0.0.1.
    host: String,
    upstream_port: u16,
    moat_port: u16,
    nginx_port: u16,
    post_script: PathBuf,
}

impl Setup {
    fn url(&self, target: Target, scenario: Scenario) -> String {
        let (scheme, port) = match target {
            Target::Direct => ("http", self.upstream_port),
            Target::Moat => ("https", self.moat_port),
            Target::Nginx => ("https", self.nginx_port),
        };
        let path = match scenario {
            Scenario::Get => "/",
            Scenario::Post => POST_PATH,
        };
        format!("{scheme}://{}:{port}{path}", self.host)
    }
}

fn bench(procs: &mut Procs, opts: &Options, tools: &Tools, moat: &Path) -> Result<()> {
    let dir = procs.dir.clone();
    let versions = versions(tools, moat);
    eprintln!("bench: working in {}", dir.display());

    // Certificates: the same ECDSA P-256 leaf (with its CA in the chain) for moat and nginx.
    crate::run(
        Command::new(moat)
            .args(["cert", "init", "--dir"])
            .arg(&dir)
            .args(["--host", "localhost", "--host", "127.0.0.1"]),
    )?;
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let ca = dir.join("ca.pem");

    let [upstream_port, moat_port, nginx_port] = free_ports()?;
    let localhost_first = ("localhost", upstream_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.ip() == LOOPBACK);
    let setup = Setup {
        host: if localhost_first {
            "localhost".into()
        } else {
            LOOPBACK.to_string()
        },
        upstream_port,
        moat_port,
        nginx_port,
        post_script: dir.join("post.lua"),
    };
    fs::write(&setup.post_script, post_script())?;
    fs::write(setup.post_script.with_extension("json"), post_body())?;

    // Fast upstream on CPU 0 (shared with the load generator).
    let upstream_conf = dir.join("upstream.conf");
    fs::write(&upstream_conf, upstream_config(&dir, upstream_port))?;
    procs.start(
        "upstream",
        tools
            .pinned(0, &tools.nginx)
            .args(nginx_args(&dir, "upstream", &upstream_conf)),
        upstream_port,
    )?;

    // moat on CPU 1.
    let moat_conf = dir.join("moat.toml");
    fs::write(
        &moat_conf,
        moat_config(&cert, &key, moat_port, upstream_port, &opts.fsync),
    )?;
    crate::run(
        Command::new(moat)
            .args(["check", "--config"])
            .arg(&moat_conf),
    )?;
    procs.start(
        "moat",
        tools
            .pinned(1, moat)
            .args(["run", "--config"])
            .arg(&moat_conf),
        moat_port,
    )?;

    // nginx as the peer proxy on CPU 1.
    let proxy_conf = dir.join("proxy.conf");
    fs::write(
        &proxy_conf,
        proxy_config(&dir, &cert, &key, nginx_port, upstream_port),
    )?;
    procs.start(
        "nginx-proxy",
        tools
            .pinned(1, &tools.nginx)
            .args(nginx_args(&dir, "nginx-proxy", &proxy_conf)),
        nginx_port,
    )?;

    smoke_test(tools, &setup, &ca)?;
    let background = background_load();

    let pinning = if tools.taskset.is_some() {
        "moat and nginx proxy on CPU 1; upstream nginx and wrk on CPU 0 (taskset)"
    } else {
        "none"
    };
    eprintln!(
        "bench: wrk -t1 -c{c} -d{d}s --latency (after a {w}s warm-up), {r} round(s); pinning: \
         {pinning}",
        c = opts.connections,
        d = opts.duration,
        w = opts.warmup,
        r = opts.rounds,
    );

    // results[scenario][target] holds one result per round.
    let mut results = vec![vec![Vec::<WrkResult>::new(); Target::ALL.len()]; Scenario::ALL.len()];
    let mut warmup_errors = Vec::new();
    let mut warmup_moat_failed = false;
    for round in 1..=opts.rounds {
        for (si, &scenario) in Scenario::ALL.iter().enumerate() {
            for (ti, &target) in Target::ALL.iter().enumerate() {
                let url = setup.url(target, scenario);
                let script = (scenario == Scenario::Post).then_some(setup.post_script.as_path());
                let run = (url.as_str(), target.process());
                if opts.warmup > 0 {
                    let w = wrk(procs, tools, opts, run, script, opts.warmup)?;
                    if w.non_2xx > 0 || w.socket_errors > 0 {
                        warmup_errors.push(format!(
                            "{} via {} during the warm-up: {} non-2xx/3xx responses, {} socket \
                             errors",
                            scenario.label(),
                            target.label(),
                            w.non_2xx,
                            w.socket_errors
                        ));
                        warmup_moat_failed |= target == Target::Moat;
                    }
                }
                let r = wrk(procs, tools, opts, run, script, opts.duration)?;
                let cores: Vec<String> = r.core_busy.iter().map(|c| format!("{c:.0}%")).collect();
                let (l1, l2) = if opts.h2 {
                    ("mean", "max")
                } else {
                    ("p50", "p99")
                };
                eprintln!(
                    "bench: round {round} {:<20} {:<24} {:>8.0} req/s  {l1} {:.2} ms  {l2} {:.2} ms  \
                     server CPU {}  cores busy {}  other CPU {}  non-2xx {}  socket errors {}",
                    scenario.label(),
                    target.label(),
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.server_cpu.map_or("?".into(), |c| format!("{c:.0}%")),
                    cores.join("/"),
                    r.other_cpu.map_or("?".into(), |c| format!("{c:.0}%")),
                    r.non_2xx,
                    r.socket_errors
                );
                results[si][ti].push(r);
            }
        }
    }
    procs.check_alive()?;

    let background_after = background_load();
    let background = format!(
        "machine busy before the runs {background:.0}%, after {background_after:.0}% (other \
         processes; should be near 0)"
    );
    println!(
        "{}",
        report(opts, &versions, pinning, &background, &results)
    );

    if let Some(log) = procs.log_of("moat") {
        let text = fs::read_to_string(log).unwrap_or_default();
        if !text.trim().is_empty() {
            eprintln!(
                "bench: moat wrote to its log (level warn):\n{}",
                tail(log, 40)
            );
        }
    }

    // Errors through moat fail the command; errors elsewhere are only reported.
    let mut failures = Vec::new();
    for (si, &scenario) in Scenario::ALL.iter().enumerate() {
        for (ti, &target) in Target::ALL.iter().enumerate() {
            let non_2xx: u64 = results[si][ti].iter().map(|r| r.non_2xx).sum();
            let socket: u64 = results[si][ti].iter().map(|r| r.socket_errors).sum();
            let requests: u64 = results[si][ti].iter().map(|r| r.requests).sum();
            if non_2xx == 0 && socket == 0 && requests > 0 {
                continue;
            }
            let what = format!(
                "{} via {}: {requests} requests, {non_2xx} non-2xx/3xx responses, {socket} \
                 socket errors",
                scenario.label(),
                target.label()
            );
            if target == Target::Moat {
                failures.push(what);
            } else {
                eprintln!("bench: WARNING: {what}");
            }
        }
    }
    for e in &warmup_errors {
        eprintln!("bench: WARNING: {e}");
    }
    if warmup_moat_failed {
        failures.push("errors through moat during a warm-up run (see above)".into());
    }
    if !failures.is_empty() {
        bail!(
            "moat FAILED under load:\n  {}\nsee the moat log above",
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Checks each target answers each scenario correctly once (with curl, when present), so the
/// load runs measure real answers. Uses the CA for the TLS targets, so the chain is checked too.
fn smoke_test(tools: &Tools, setup: &Setup, ca: &Path) -> Result<()> {
    let Some(curl) = &tools.curl else {
        eprintln!("bench: curl not found; skipping the answer check before the load runs");
        return Ok(());
    };
    let body = post_body();
    for target in Target::ALL {
        for scenario in Scenario::ALL {
            let url = setup.url(target, scenario).replacen(
                &format!("//{}:", setup.host),
                "//localhost:",
                1,
            );
            let port = match target {
                Target::Direct => setup.upstream_port,
                Target::Moat => setup.moat_port,
                Target::Nginx => setup.nginx_port,
            };
            let mut cmd = Command::new(curl);
            cmd.args(["-sS", "--max-time", "10", "--cacert"])
                .arg(ca)
                .arg("--resolve")
                .arg(format!("localhost:{port}:{LOOPBACK}"));
            if scenario == Scenario::Post {
                cmd.args(["-H", "content-type: application/json", "--data-binary"])
                    .arg(&body);
            }
            let out = cmd.arg(&url).output()?;
            let got = String::from_utf8_lossy(&out.stdout);
            let want = match scenario {
                Scenario::Get => GET_BODY,
                Scenario::Post => POST_REPLY,
            };
            ensure!(
                out.status.success() && got == want,
                "{} via {} ({url}) answered {got:?} instead of {want:?}: {}",
                scenario.label(),
                target.label(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    eprintln!("bench: every target answers every scenario correctly");
    Ok(())
}
