//! `cargo xtask bench`: moat against nginx and HAProxy, each terminating TLS on one core, over
//! every row of the peer table in one run.
//!
//! Everything runs on loopback (`127.0.0.1` only) and is torn down at the end, also on error:
//!
//! 1. Installs nginx, HAProxy, wrk and h2load with apt-get when they are missing; builds `moat`
//!    in release unless `--moat-bin` names a binary; writes a CA and an ECDSA P-256 server
//!    certificate with `moat cert init` into a temporary directory.
//! 2. Starts a fast upstream (nginx answering fixed bodies, and a 1 MiB file), then on CPU 1
//!    moat as production runs it (one runtime worker, API-key identity, an allow rule for that
//!    key, the audit trail at its default fsync mode; with `--redaction` a second moat with the
//!    default redaction profile), nginx and HAProxy (one process or thread each, the same
//!    certificate, keep-alive to the upstream).
//! 3. Checks once with curl that every target answers every request correctly.
//! 4. For each round, row and target: a warm-up run, then the measured run (h2load, wrk, or this
//!    program's own TLS client for new handshakes and idle connections; see the modules), with
//!    the proxy's CPU time, the steal time of its CPU and other processes' CPU time read from
//!    `/proc`. A run whose steal is above `--max-steal` is taken again, up to three times.
//! 5. Prints a Markdown table of medians over the rounds: moat, nginx, HAProxy, moat's ratio to
//!    the best peer, and the proxies' CPU and steal percentages.
//!
//! Errors through moat (non-2xx/3xx answers, socket errors, failed handshakes or connections,
//! moat exiting) fail the command; errors through a peer are reported. Figures are printed, not
//! judged. `docs/benchmarks.md` describes the harness and its flags.

mod client;
mod idle;
mod load;
mod options;
mod parse;
mod peers;
mod procs;
mod report;
mod slow;
mod smoke;
mod sys;

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use load::Load;
use options::{Options, Row, Target};
use peers::{
    download_body, haproxy_config, haproxy_pem, moat_config, nginx_args, nginx_proxy_config,
    post_body, upstream_config, MoatConf, LOOPBACK,
};
pub(crate) use procs::{apt_install, build_moat, find_tool, pinning};
use procs::{build_client, free_ports, tail, Procs, Tools, PROXY_CPU};
use report::{reruns, table, versions, Results};
use sys::background_load;

pub(crate) fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some(client::HANDSHAKE) {
        return client::handshake_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some(slow::SLOW) {
        return slow::slow_main(&args[1..]);
    }
    let opts = Options::parse(args)?;
    let tools = Tools::ensure()?;
    let client = opts
        .rows
        .iter()
        .any(|r| matches!(r, Row::Handshake | Row::SlowClients))
        .then(build_client)
        .transpose()?;
    let moat = match &opts.moat_bin {
        Some(bin) => {
            ensure!(bin.is_file(), "--moat-bin: {} is not a file", bin.display());
            bin.canonicalize()
                .with_context(|| format!("--moat-bin: cannot resolve {}", bin.display()))?
        }
        None => build_moat()?,
    };
    if opts.rows.iter().any(|r| r.is_idle()) {
        // The idle rows hold twice that many sockets (warm-up and measured connections) here
        // and in the proxy, which inherits the limit.
        sys::ensure_nofile(2 * opts.idle_connections as u64 + 1024)?;
    }
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
    let result = bench(&mut procs, &opts, &tools, &moat, client.as_deref());
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

/// Addresses of the running setup.
struct Setup {
    /// Host name in the URLs: `localhost` when it resolves to 127.0.0.1 first (so TLS clients
    /// send a host name, not an IP address, as SNI), else 127.0.0.1.
    host: String,
    ports: BTreeMap<Target, u16>,
}

impl Setup {
    fn port(&self, target: Target) -> Result<u16> {
        self.ports
            .get(&target)
            .copied()
            .with_context(|| format!("{} is not running", target.label()))
    }
}

/// Hex SHA-256 (with the hash rustls already carries).
fn sha256_hex(data: &[u8]) -> Result<String> {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let rustls::SupportedCipherSuite::Tls13(s) = suite else {
        bail!("not a TLS 1.3 suite");
    };
    let digest = s.common.hash_provider.hash(data);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh random API key (hex of 24 bytes from the kernel).
fn new_api_key() -> Result<String> {
    use std::io::Read as _;
    let mut bytes = [0_u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes moat's configuration for `target`, checks it with `moat check` and starts it.
fn start_moat(
    procs: &mut Procs,
    tools: &Tools,
    moat: &Path,
    conf: &MoatConf<'_>,
    target: Target,
) -> Result<()> {
    let path = procs.dir.join(format!("{}-config.toml", target.process()));
    fs::write(&path, moat_config(conf))?;
    crate::run(Command::new(moat).args(["check", "--config"]).arg(&path))?;
    procs.start(
        target.process(),
        tools
            .pinned(PROXY_CPU, moat)
            .args(["run", "--config"])
            .arg(&path),
        conf.port,
    )
}

fn bench(
    procs: &mut Procs,
    opts: &Options,
    tools: &Tools,
    moat: &Path,
    client: Option<&Path>,
) -> Result<()> {
    let dir = procs.dir.clone();
    let versions = versions(tools, moat);
    eprintln!("bench: working in {}", dir.display());

    // Certificates: the same ECDSA P-256 leaf (with its CA in the chain) for every proxy.
    crate::run(
        Command::new(moat)
            .args(["cert", "init", "--dir"])
            .arg(&dir)
            .args(["--host", "localhost", "--host", "127.0.0.1"]),
    )?;
    let cert = dir.join("server.pem");
    let cert_key = dir.join("server.key");
    let ca = dir.join("ca.pem");

    let [upstream_port, moat_port, nginx_port, haproxy_port, redaction_port] = free_ports()?;
    let localhost_first = ("localhost", upstream_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.ip() == LOOPBACK);
    let targets = opts.targets();
    let setup = Setup {
        host: if localhost_first {
            "localhost".into()
        } else {
            LOOPBACK.to_string()
        },
        ports: [
            (Target::Moat, moat_port),
            (Target::Nginx, nginx_port),
            (Target::Haproxy, haproxy_port),
            (Target::MoatRedaction, redaction_port),
        ]
        .into_iter()
        .filter(|(t, _)| targets.contains(t))
        .collect(),
    };
    let api_key = new_api_key()?;
    let post_file = dir.join("post.json");
    fs::write(&post_file, post_body())?;
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    fs::write(www.join("download.bin"), download_body())?;

    // Fast upstream on CPU 0 (shared with the load generator).
    let upstream_conf = dir.join("upstream.conf");
    fs::write(&upstream_conf, upstream_config(&dir, upstream_port, &www))?;
    procs.start(
        "upstream",
        tools
            .pinned(0, &tools.nginx)
            .args(nginx_args(&dir, "upstream", &upstream_conf)),
        upstream_port,
    )?;

    // The proxies, each alone on CPU 1 while it is measured.
    let sha = sha256_hex(api_key.as_bytes())?;
    let mut conf = MoatConf {
        cert: &cert,
        key: &cert_key,
        port: moat_port,
        upstream: upstream_port,
        fsync: opts.fsync.as_deref(),
        api_key_sha256: &sha,
        redaction: false,
        state: Target::Moat.process(),
    };
    start_moat(procs, tools, moat, &conf, Target::Moat)?;
    if opts.redaction {
        conf.port = redaction_port;
        conf.redaction = true;
        conf.state = Target::MoatRedaction.process();
        start_moat(procs, tools, moat, &conf, Target::MoatRedaction)?;
    }
    // Room for the idle rows' connections (warm-up and measured) and the upstream's.
    let proxy_connections = (2 * opts.idle_connections + 1024).max(4096);
    let nginx_conf = dir.join("nginx-proxy.conf");
    fs::write(
        &nginx_conf,
        nginx_proxy_config(
            &dir,
            &cert,
            &cert_key,
            (nginx_port, upstream_port),
            proxy_connections,
        ),
    )?;
    procs.start(
        Target::Nginx.process(),
        tools
            .pinned(PROXY_CPU, &tools.nginx)
            .args(nginx_args(&dir, "nginx-proxy", &nginx_conf)),
        nginx_port,
    )?;
    let pem = dir.join("haproxy.pem");
    fs::write(&pem, haproxy_pem(&cert, &cert_key)?)?;
    let haproxy_conf = dir.join("haproxy.cfg");
    fs::write(
        &haproxy_conf,
        haproxy_config(&pem, haproxy_port, upstream_port, proxy_connections),
    )?;
    crate::run(
        Command::new(&tools.haproxy)
            .args(["-c", "-q", "-f"])
            .arg(&haproxy_conf),
    )?;
    procs.start(
        Target::Haproxy.process(),
        tools
            .pinned(PROXY_CPU, &tools.haproxy)
            .args(["-db", "-f"])
            .arg(&haproxy_conf),
        haproxy_port,
    )?;

    let target_ports: Vec<(Target, u16)> = setup.ports.iter().map(|(t, p)| (*t, *p)).collect();
    smoke::check(tools, &target_ports, upstream_port, &ca, &api_key, &dir)?;

    // The handshake and slow clients are this program in release; run a copy, as a build may replace the
    // original.
    let xtask = dir.join("xtask");
    if let Some(client) = client {
        fs::copy(client, &xtask).with_context(|| format!("cannot copy {}", client.display()))?;
    }
    let load = Load {
        tools,
        opts,
        host: &setup.host,
        key: &api_key,
        post_body: post_file,
        xtask,
    };
    let background = background_load();
    let pinning = if tools.taskset.is_some() {
        "proxies on CPU 1; upstream and load generators on CPU 0 (taskset)"
    } else {
        "none"
    };
    eprintln!(
        "bench: {} row(s) x {} target(s), {}s runs after {}s warm-ups, {} round(s); pinning: \
         {pinning}",
        opts.rows.len(),
        targets.len(),
        opts.duration,
        opts.warmup,
        opts.rounds
    );

    let mut results = Results::default();
    let mut warmup_errors = Vec::new();
    for round in 1..=opts.rounds {
        for &row in &opts.rows {
            for &target in &targets {
                let port = setup.port(target)?;
                let s = if row.is_idle() {
                    let idle = idle::Idle {
                        addr: SocketAddr::from((LOOPBACK, port)),
                        host: &setup.host,
                        h2: row == Row::IdleH2,
                        connections: opts.idle_connections,
                    };
                    let trail = dir.join(format!("{}-audit", target.process()));
                    let clear = if target.is_moat() {
                        vec![trail]
                    } else {
                        Vec::new()
                    };
                    idle::measure(procs, target.process(), &clear, &idle)?
                } else {
                    load::measure(
                        procs,
                        &load,
                        row,
                        (target.process(), port),
                        &mut warmup_errors,
                    )?
                };
                let pct = |v: Option<f64>, d: usize| v.map_or("?".into(), |v| format!("{v:.d$}%"));
                let cores: Vec<String> = s.core_busy.iter().map(|c| format!("{c:.0}%")).collect();
                eprintln!(
                    "bench: round {round} {:<10} {:<16} {:>10.1} {:<12} p50 {} p99 {} CPU {} \
                     steal {} (machine {}) cores busy {} other CPU {} non-2xx {} errors {}",
                    row.id(),
                    target.label(),
                    s.value,
                    row.unit(),
                    s.p50_ms.map_or("-".into(), |v| format!("{v:.2}ms")),
                    s.p99_ms.map_or("-".into(), |v| format!("{v:.2}ms")),
                    pct(s.server_cpu, 0),
                    pct(s.steal, 1),
                    pct(s.machine_steal, 1),
                    cores.join("/"),
                    pct(s.other_cpu, 0),
                    s.non_2xx,
                    s.errors
                );
                results.push(row, target, s);
            }
        }
    }
    procs.check_alive()?;
    let background_after = background_load();

    let fsync = opts
        .fsync
        .as_deref()
        .map_or_else(|| "moat's default".to_owned(), |m| format!("\"{m}\""));
    let worst_other = results
        .iter()
        .flat_map(|(_, _, s)| s.iter().filter_map(|x| x.other_cpu))
        .fold(0.0_f64, f64::max);
    println!("\n## moat bench\n");
    println!(
        "One proxy core each; {} connections; {}s runs after {}s warm-ups; median of {} \
         round(s); moat audit fsync: {fsync}; {} idle connections; runs with over {}% steal on \
         the proxy CPU taken again (up to {} times); pinning: {pinning}",
        opts.connections,
        opts.duration,
        opts.warmup,
        opts.rounds,
        opts.idle_connections,
        opts.max_steal,
        load::MAX_RERUNS
    );
    println!("{versions}");
    println!(
        "machine busy before the runs {background:.0}%, after {background_after:.0}% (other \
         processes; should be near 0); most CPU used by other processes during a measured run: \
         {worst_other:.0}% of a core\n"
    );
    print!("{}", table(&opts.rows, &targets, &results));
    println!(
        "\nmoat / best peer: moat's figure over the best of nginx and HAProxy (the highest rate; \
         the lowest latency or memory), so above 1 is better for rates and below 1 is better \
         for latency and memory. CPU % is the proxy's CPU time over the run, in percent of \
         one core; below ~95 the proxy was not the bottleneck. Steal % is the time the \
         hypervisor ran something else on the proxy's CPU."
    );
    let reruns = reruns(&results);
    if reruns.is_empty() {
        println!("\nNo run was taken again for steal time.");
    } else {
        println!("\nTaken again for steal time:\n");
        for r in &reruns {
            println!("- {r}");
        }
    }

    let details: Vec<String> = results
        .iter()
        .flat_map(|(row, target, samples)| {
            samples.iter().enumerate().filter_map(move |(i, s)| {
                let d = s.detail.as_deref()?;
                Some(format!(
                    "{} via {}, round {}: {d}",
                    row.id(),
                    target.label(),
                    i + 1
                ))
            })
        })
        .collect();
    if !details.is_empty() {
        println!("\nWhat the slow-clients runs saw (times in the normal line are per request):\n");
        for d in &details {
            println!("- {d}");
        }
    }

    for target in targets.iter().filter(|t| t.is_moat()) {
        if let Some(log) = procs.log_of(target.process()) {
            let text = fs::read_to_string(log).unwrap_or_default();
            if !text.trim().is_empty() {
                eprintln!(
                    "bench: {} wrote to its log (level warn):\n{}",
                    target.process(),
                    tail(log, 40)
                );
            }
        }
    }
    check_errors(&results, &warmup_errors)
}

/// Errors through moat fail the command; errors through a peer are only reported.
fn check_errors(results: &Results, warmup_errors: &[String]) -> Result<()> {
    let mut failures = Vec::new();
    for (row, target, samples) in results.iter() {
        let non_2xx: u64 = samples.iter().map(|r| r.non_2xx).sum();
        let errors: u64 = samples.iter().map(|r| r.errors).sum();
        let requests: u64 = samples.iter().map(|r| r.requests).sum();
        if non_2xx == 0 && errors == 0 && requests > 0 {
            continue;
        }
        let what = format!(
            "{} via {}: {requests} requests, {non_2xx} non-2xx/3xx responses, {errors} errors",
            row.id(),
            target.label()
        );
        if target.is_moat() {
            failures.push(what);
        } else {
            eprintln!("bench: WARNING: {what}");
        }
    }
    let moat_names = [Target::Moat.process(), Target::MoatRedaction.process()];
    for e in warmup_errors {
        eprintln!("bench: WARNING: {e}");
        if moat_names.iter().any(|m| e.contains(&format!(" via {m} "))) {
            failures.push(e.clone());
        }
    }
    if !failures.is_empty() {
        bail!(
            "moat FAILED under load:\n  {}\nsee the moat log above",
            failures.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_value() -> Result<()> {
        assert_eq!(
            sha256_hex(b"abc")?,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }

    #[test]
    fn api_keys_are_fresh_hex() -> Result<()> {
        let (a, b) = (new_api_key()?, new_api_key()?);
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn errors_through_moat_fail_and_through_peers_warn() {
        let ok = parse::Sample {
            requests: 10,
            ..parse::Sample::default()
        };
        let bad = parse::Sample {
            requests: 10,
            non_2xx: 1,
            ..parse::Sample::default()
        };
        let mut r = Results::default();
        r.push(Row::H1Get, Target::Moat, ok.clone());
        r.push(Row::H1Get, Target::Nginx, bad.clone());
        assert!(check_errors(&r, &[]).is_ok());
        r.push(Row::H2Get, Target::MoatRedaction, bad);
        assert!(check_errors(&r, &[]).is_err());
        let mut r = Results::default();
        r.push(Row::H1Get, Target::Moat, ok);
        assert!(check_errors(&r, &["h1-get via nginx-proxy during the warm-up: 1".into()]).is_ok());
        assert!(check_errors(&r, &["h1-get via moat during the warm-up: 1".into()]).is_err());
    }
}
