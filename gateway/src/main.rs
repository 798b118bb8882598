//! The `moat` binary: arguments → configuration → logging → runtime → exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat::config::Config;

/// mimalloc: many small, short-lived buffers per request (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid configuration or usage (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version,
    about = "Keeps a self-hosted model's data inside its region"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print a summary.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Certificate helpers.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Check and export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inspect or remove the egress guard (works from the pins, with or without a running moat).
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
    /// Start a demo model and the gateway in front of it, and print commands to try.
    Demo {
        /// Gateway port on 127.0.0.1 (a free one is chosen if it is taken).
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every hash link, sequence number, checkpoint signature and the signed head.
    Verify {
        /// The audit directory.
        dir: PathBuf,
        /// The public key to check signatures against (default: the copy in DIR, which only
        /// shows the trail is self-consistent).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Write a signed bundle of records for a SIEM: records, manifest.json, manifest.sig.
    Export {
        /// The audit directory.
        dir: PathBuf,
        /// Records at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// `jsonl` (moat's records as they are) or `ocsf` (OCSF 1.1 events).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output directory (created; must be empty).
        #[arg(long)]
        out: PathBuf,
        /// The trail's signing key (signs the manifest).
        #[arg(long, default_value = "/var/lib/moat/audit-signing.key")]
        key: PathBuf,
        /// Public key to verify the trail against first (default: the copy in DIR).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Print the last records, then follow new ones as they are written.
    Tail {
        /// The audit directory.
        dir: PathBuf,
        /// How many existing records to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// Mode, fenced cgroups, allow-list, counters and drops, read from the pins.
    Status {
        /// Pin directory (default: guard.pin_dir of --config, else /sys/fs/bpf/moat).
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Take the pin directory from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Take the fence down: detach every program and remove every pin.
    Detach {
        /// Pin directory (default: guard.pin_dir of --config, else /sys/fs/bpf/moat).
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Take the pin directory from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Write a local CA, a server certificate and a client certificate.
    Init {
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// Names the server certificate is valid for (DNS names or IP addresses).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            // The certificates and keys are loaded too, so a bad PEM fails here, not at start.
            Ok(c) => match moat::tls::server_config(&c.tls) {
                Ok(_) => {
                    print!("configuration OK: {}\n{}", config.display(), c.summary());
                    for w in &c.warnings {
                        println!("warning: {w}");
                    }
                    if c.guard.mode != moat::guard::GuardMode::Off && moat::guard::OBJECT.is_none()
                    {
                        let consequence = if c.guard.required {
                            "`moat run` will refuse to start"
                        } else {
                            "egress will NOT be fenced"
                        };
                        println!("warning: this moat binary was built without the egress guard; {consequence}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("invalid configuration: {e}");
                    ExitCode::from(EX_USAGE)
                }
            },
            Err(e) => invalid(&e),
        },
        Command::Run { config: path } => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return invalid(&e),
            };
            moat::telemetry::init(config.log.format, &config.log.level);
            run_runtime(config.worker_threads, run(config, path))
        }
        Command::Cert {
            command: CertCommand::Init { dir, hosts },
        } => match moat::certs::init(&dir, &hosts) {
            Ok(files) => {
                println!("wrote {}", files.ca_cert.display());
                println!(
                    "wrote {} (key {})",
                    files.server_cert.display(),
                    files.server_key.display()
                );
                println!(
                    "wrote {} (key {})",
                    files.client_cert.display(),
                    files.client_key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("moat cert init: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Guard { command } => guard_command(command),
        Command::Audit {
            command:
                AuditCommand::Export {
                    dir,
                    since,
                    until,
                    format,
                    out,
                    key,
                    pubkey,
                },
        } => audit_export(dir, since, until, &format, out, key, pubkey),
        Command::Audit {
            command: AuditCommand::Tail { dir, lines },
        } => audit_tail(&dir, lines),
        Command::Audit {
            command: AuditCommand::Verify { dir, pubkey },
        } => {
            if pubkey.is_none() {
                eprintln!("note: checking against the public key stored in {}; pass --pubkey for an independent check", dir.display());
            }
            match moat::audit::verify::verify(&dir, pubkey.as_deref()) {
                Ok(r) => {
                    println!(
                        "audit trail OK: {} record(s) in {} segment(s), seq 1..{}, {} signed checkpoint(s), {} record(s) after the last checkpoint",
                        r.records, r.segments, r.last_seq, r.checkpoints, r.unsigned_tail
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("audit trail NOT intact: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { port } => {
            moat::telemetry::init(moat::config::LogFormat::Text, "info");
            run_runtime(0, demo(port))
        }
    }
}

fn audit_tail(dir: &std::path::Path, lines: usize) -> ExitCode {
    use std::io::Write;
    let stdout = std::io::stdout();
    let emit = |line: &[u8]| {
        let mut out = stdout.lock();
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    match moat::audit::tail::follow(dir, lines, emit, || false) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat audit tail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn audit_export(
    dir: PathBuf,
    since: Option<String>,
    until: Option<String>,
    format: &str,
    out: PathBuf,
    key: PathBuf,
    pubkey: Option<PathBuf>,
) -> ExitCode {
    use moat::audit::export::{export, ExportRequest, Format};
    let parse = |flag: &str, v: Option<String>| -> Result<Option<time::OffsetDateTime>, ExitCode> {
        match v {
            None => Ok(None),
            Some(s) => time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).map(Some).map_err(|_| {
                eprintln!("moat audit export: --{flag} {s}: expected an RFC 3339 time such as 2026-11-30T00:00:00Z");
                ExitCode::from(EX_USAGE)
            }),
        }
    };
    let (since, until) = match (parse("since", since), parse("until", until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let format = match format {
        "jsonl" => Format::Jsonl,
        "ocsf" => Format::Ocsf,
        other => {
            eprintln!("moat audit export: --format {other}: expected jsonl or ocsf");
            return ExitCode::from(EX_USAGE);
        }
    };
    match export(&ExportRequest {
        dir,
        since,
        until,
        format,
        out: out.clone(),
        key,
        pubkey,
    }) {
        Ok(m) => {
            println!(
                "exported {} record(s) (seq {}..{}) to {}",
                m.records,
                m.first_seq,
                m.last_seq,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat audit export: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pin_dir(pin_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    match (pin_dir, config) {
        (Some(p), _) => Ok(p),
        (None, Some(c)) => Config::load(&c)
            .map(|c| c.guard.pin_dir)
            .map_err(|e| invalid(&e)),
        (None, None) => Ok(PathBuf::from(moat::guard::DEFAULT_PIN_DIR)),
    }
}

fn guard_command(command: GuardCommand) -> ExitCode {
    match command {
        GuardCommand::Status { pin_dir: p, config } => {
            let dir = match pin_dir(p, config) {
                Ok(d) => d,
                Err(code) => return code,
            };
            match moat::guard::status::status(&dir) {
                Ok(st) => {
                    print!("egress guard pinned at {}\n{st}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("moat guard status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        GuardCommand::Detach { pin_dir: p, config } => {
            let dir = match pin_dir(p, config) {
                Ok(d) => d,
                Err(code) => return code,
            };
            eprintln!(
                "!!! moat guard detach: taking the egress fence at {} DOWN.",
                dir.display()
            );
            eprintln!("!!! Processes in the fenced cgroups can reach any destination until moat attaches it again.");
            match moat::guard::status::detach(&dir) {
                Ok(d) => {
                    eprintln!(
                        "!!! egress guard detached: {} program link(s) and {} map pin(s) removed",
                        d.links, d.maps
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("moat guard detach: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn invalid(e: &moat::config::ConfigError) -> ExitCode {
    eprintln!("invalid configuration: {e}");
    ExitCode::from(EX_USAGE)
}

fn run_runtime(
    workers: usize,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn lifecycle(
    event: &str,
    config_sha256: Option<&str>,
    detail: Option<String>,
) -> moat::audit::record::LifecycleRecord {
    moat::audit::record::LifecycleRecord {
        event: event.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_sha256: config_sha256.map(str::to_owned),
        detail,
    }
}

/// Runs the gateway until SIGINT/SIGTERM. `on_listening` is called once the listeners are bound.
async fn run_with(
    config: Config,
    path: PathBuf,
    on_listening: impl FnOnce(),
) -> anyhow::Result<()> {
    use moat::audit::record::{GuardFacts, Record};
    // The audit trail opens first: no trail, no service.
    let (audit, writer) = moat::audit::Auditor::start(
        &config.audit,
        lifecycle(
            "start",
            Some(&config.sha256),
            Some(format!("audit fsync {}", config.audit.fsync.as_str())),
        ),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the audit trail: {e}"))?;
    // The fence goes up before the gateway serves anything; when it is required and cannot,
    // moat does not start.
    let fence = start_guard(&config.guard, &audit)?;
    let guard = match &fence {
        Some(f) => {
            let _ = audit.record(Record::Lifecycle(lifecycle(
                "guard_attached",
                None,
                Some(format!(
                    "mode {}, cgroups {:?}, allow-list sha256 {}",
                    config.guard.mode.as_str(),
                    f.cgroups,
                    f.allow_digest
                )),
            )));
            GuardFacts {
                mode: config.guard.mode.as_str().to_owned(),
                allow_sha256: Some(f.allow_digest.clone()),
            }
        }
        None if config.guard.mode == moat::guard::GuardMode::Off => GuardFacts {
            mode: "off".into(),
            allow_sha256: None,
        },
        None => {
            let _ = audit.record(Record::Lifecycle(lifecycle(
                "guard_unattached",
                None,
                Some("guard.required = false".into()),
            )));
            GuardFacts {
                mode: "unattached".into(),
                allow_sha256: None,
            }
        }
    };
    for w in &config.warnings {
        tracing::warn!("configuration: {w}");
    }
    let identifier = std::sync::Arc::new(identifier(&config)?);
    let jwks_poll = spawn_jwks_reload(identifier.clone());
    let guard_mode = guard.mode.clone();
    let gateway =
        moat::server::Gateway::bind(&config, audit.clone(), guard, identifier.clone()).await?;
    let addrs = gateway.local_addrs();
    for addr in &addrs {
        tracing::info!(%addr, "listening");
    }
    if let Some(addr) = config.admin {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on admin.address {addr}: {e}"))?;
        tracing::info!(%addr, "admin endpoint: /metrics, /healthz, /readyz");
        tokio::spawn(moat::admin::serve(
            listener,
            moat::admin::Readiness {
                audit: audit.clone(),
                draining: gateway.draining(),
            },
        ));
    }
    // Everything that needs root is done: become runtime.user.
    if let Some(user) = &config.user {
        match moat::privileges::drop_to(user, &[&config.audit.dir, &config.audit.key_dir]) {
            Ok(true) => tracing::info!(user = %user, "dropped root"),
            Ok(false) => {}
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
    on_listening();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reloader = gateway.reloader();
    let serving = tokio::spawn(gateway.run(stop_rx));
    // systemd: ready once the trail, the guard and the listeners are up.
    let notifier = std::sync::Arc::new(moat::systemd::Notifier::from_env());
    let status = format!(
        "serving on {}; audit fsync {}; guard {guard_mode}",
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        config.audit.fsync.as_str()
    );
    notifier.ready(&status);
    spawn_watchdog(notifier.clone(), audit.clone(), status.clone());
    spawn_reload(Reload {
        notifier: notifier.clone(),
        reloader,
        audit: audit.clone(),
        path,
        running: config.clone(),
        status,
        jwks_poll,
    });
    shutdown_signal().await;
    notifier.stopping();
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    audit.shutdown(lifecycle("stop", Some(&config.sha256), None));
    let _ = writer.join();
    drop(fence);
    Ok(())
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    run_with(config, path, || {}).await
}

/// Builds the identity stage from the configuration (the JWKS file is read here).
fn identifier(config: &Config) -> anyhow::Result<moat::identity::Identifier> {
    let jwt = match &config.identity.jwt {
        None => None,
        Some(settings) => Some(moat::identity::jwt::JwtVerifier::new(settings.clone())?),
    };
    Ok(moat::identity::Identifier {
        jwt,
        api_keys: moat::identity::api_key::ApiKeys::new(config.identity.api_keys.clone()),
    })
}

/// Re-reads the JWKS file when it changes (checked every 2 s); a file that does not load keeps
/// the keys in use.
fn spawn_jwks_reload(
    identifier: std::sync::Arc<moat::identity::Identifier>,
) -> Option<tokio::task::JoinHandle<()>> {
    identifier.jwt.as_ref()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            let Some(jwt) = identifier.jwt.as_ref() else {
                return;
            };
            match jwt.reload_if_changed() {
                Some(Ok(n)) => tracing::info!(keys = n, "JWKS reloaded"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "JWKS reload failed; keeping the keys in use")
                }
                None => {}
            }
        }
    }))
}

/// What a reload needs.
struct Reload {
    notifier: std::sync::Arc<moat::systemd::Notifier>,
    reloader: moat::server::Reloader,
    audit: moat::audit::Auditor,
    path: PathBuf,
    running: Config,
    status: String,
    /// The JWKS file watcher of the identity stage in use.
    jwks_poll: Option<tokio::task::JoinHandle<()>>,
}

/// SIGHUP: re-reads the configuration file, validates all of it and loads what it names
/// (certificates, keys, JWKS, API keys, policy, redaction profiles) before anything changes, then
/// swaps it into every listener at once; connections in flight keep what they started with. A
/// file that does not validate or load changes nothing: the error is logged and audited, and the
/// running configuration keeps serving. Between `RELOADING=1` and `READY=1` for systemd.
fn spawn_reload(mut r: Reload) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            r.notifier.reloading();
            let result = reload_once(&r);
            let record = match &result {
                Ok((config, _)) => {
                    tracing::info!(config = %r.path.display(), sha256 = %config.sha256, "configuration reloaded");
                    lifecycle(
                        "reload_accepted",
                        Some(&config.sha256),
                        restart_only(&r.running, config),
                    )
                }
                Err(e) => {
                    tracing::error!(config = %r.path.display(), error = %e, "reload refused; the running configuration stays");
                    lifecycle("reload_refused", Some(&r.running.sha256), Some(e.clone()))
                }
            };
            let _ = r
                .audit
                .record(moat::audit::record::Record::Lifecycle(record));
            if let Ok((config, identifier)) = result {
                r.running = config;
                if let Some(old) = r.jwks_poll.take() {
                    old.abort();
                }
                r.jwks_poll = spawn_jwks_reload(identifier);
            }
            r.notifier.ready(&r.status);
        }
    });
}

/// Loads, validates and applies the configuration file once.
fn reload_once(r: &Reload) -> Result<(Config, std::sync::Arc<moat::identity::Identifier>), String> {
    let config = Config::load(&r.path).map_err(|e| e.to_string())?;
    let identifier = std::sync::Arc::new(identifier(&config).map_err(|e| e.to_string())?);
    r.reloader.apply(&config, identifier.clone())?;
    Ok((config, identifier))
}

/// What changed in sections a reload does not apply (they need a restart), for the record.
fn restart_only(old: &Config, new: &Config) -> Option<String> {
    let mut changed = Vec::new();
    if format!("{:?}", old.audit) != format!("{:?}", new.audit) {
        changed.push("audit");
    }
    if format!("{:?}", old.guard) != format!("{:?}", new.guard) {
        changed.push("guard");
    }
    if old.worker_threads != new.worker_threads {
        changed.push("runtime");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    if changed.is_empty() {
        return None;
    }
    let note = format!("takes effect on restart: [{}]", changed.join(", "));
    tracing::warn!("configuration reloaded; {note}");
    Some(note)
}

/// `WATCHDOG=1` at half systemd's watchdog interval, from the runtime that serves requests: a
/// stuck runtime stops the pings and systemd restarts moat. The status line says when the audit
/// trail is refusing requests.
fn spawn_watchdog(
    notifier: std::sync::Arc<moat::systemd::Notifier>,
    audit: moat::audit::Auditor,
    status: String,
) {
    let Some(every) = moat::systemd::watchdog_interval() else {
        return;
    };
    tokio::spawn(async move {
        let mut healthy = true;
        loop {
            tokio::time::sleep(every).await;
            notifier.watchdog();
            let now = audit.healthy();
            if now != healthy {
                healthy = now;
                if now {
                    notifier.status(&status);
                } else {
                    notifier.status("audit trail unavailable: refusing requests (503)");
                }
            }
        }
    });
}

/// Attaches (or takes over) the egress guard and starts reading its events into the log and
/// the audit trail.
fn start_guard(
    cfg: &moat::guard::GuardConfig,
    audit: &moat::audit::Auditor,
) -> anyhow::Result<Option<moat::guard::fence::Fence>> {
    let fence = moat::guard::start(cfg, moat::guard::OBJECT)
        .map_err(|e| anyhow::anyhow!("egress guard required but not attached: {e}"))?;
    if let Some(mut f) = fence {
        if let Some(events) = f.take_events() {
            let counters = moat::guard::events::pinned_counters(&cfg.pin_dir);
            tokio::spawn(moat::guard::events::run(events, counters, audit.clone()));
        }
        return Ok(Some(f));
    }
    Ok(None)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn demo(port: u16) -> anyhow::Result<()> {
    let model = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let model_addr = model.local_addr()?;
    tokio::spawn(moat::demo::serve_model(model));

    // Take the requested port if free, else any free port.
    let probe = match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?,
    };
    let gateway_addr = probe.local_addr()?;
    drop(probe);

    let dir = std::env::temp_dir().join(format!("moat-demo-{}", std::process::id()));
    let setup = moat::demo::prepare(&dir, gateway_addr, model_addr)?;
    let config = Config::load(&setup.config_file)?;
    let banner = || {
        println!(
            "moat demo: gateway on https://localhost:{} -> demo model on {model_addr}",
            gateway_addr.port()
        );
        println!(
            "certificates, configuration and audit trail in {}\n",
            setup.dir.display()
        );
        println!("Try:\n{}", moat::demo::curl_commands(&setup, gateway_addr));
        println!("Ctrl-C stops the gateway and the demo model.");
    };
    run_with(config, setup.config_file.clone(), banner).await?;
    let _ = std::fs::remove_dir_all(&setup.dir);
    Ok(())
}
