//! The gateway process: the runtime, start-up order, lifecycle records, signals and shutdown.
//!
//! The `moat` binary parses its arguments and calls into this module; every subcommand returns
//! the process exit code.

pub mod commands;
pub mod demo;
pub mod redact;
mod reload;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use reload::{spawn_jwks_reload, spawn_reload, Reload};

/// Exit code for invalid configuration or usage (sysexits EX_USAGE).
pub const EX_USAGE: u8 = 64;

/// `moat run`: loads the configuration, starts logging and runs the gateway until SIGINT/SIGTERM.
pub fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return invalid(&e),
    };
    crate::telemetry::init(config.log.format, &config.log.level);
    run_runtime(config.worker_threads, run_with(config, path, || {}))
}

/// Reports an invalid configuration file; exits with [`EX_USAGE`].
pub fn invalid(e: &crate::config::ConfigError) -> ExitCode {
    eprintln!("invalid configuration: {e}");
    ExitCode::from(EX_USAGE)
}

/// Runs `fut` on a runtime with `workers` threads (`0` for one per core) and turns its result
/// into the exit code. One worker is a single-threaded runtime on the main thread: no
/// work-stealing queues, no hand-over between the main thread and a worker.
pub fn run_runtime(
    workers: usize,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    if workers > 1 {
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

/// A lifecycle record for the audit trail, stamped with moat's version.
fn lifecycle(
    event: &str,
    config_sha256: Option<&str>,
    detail: Option<String>,
) -> crate::audit::record::LifecycleRecord {
    crate::audit::record::LifecycleRecord {
        event: event.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_sha256: config_sha256.map(str::to_owned),
        detail,
    }
}

/// Runs the gateway until SIGINT/SIGTERM. `on_listening` is called once the listeners are bound.
pub async fn run_with(
    config: Config,
    path: PathBuf,
    on_listening: impl FnOnce(),
) -> anyhow::Result<()> {
    use crate::audit::record::{GuardFacts, Record};
    // The audit trail opens first: no trail, no service.
    let (audit, writer) = crate::audit::Auditor::start(
        &config.audit,
        lifecycle(
            "start",
            Some(&config.sha256),
            Some(format!("audit fsync {}", config.audit.fsync.as_str())),
        ),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the audit trail: {e}"))?;
    // Shipping reads the trail on a thread of its own; the collector need not be up.
    let shipper = match &config.audit.ship {
        Some(s) => Some(
            crate::audit::ship::Shipper::start(s.clone(), config.audit.dir.clone(), audit.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
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
        None if config.guard.mode == crate::guard::GuardMode::Off => GuardFacts {
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
        crate::server::Gateway::bind(&config, audit.clone(), guard, identifier.clone()).await?;
    let addrs = gateway.local_addrs();
    for addr in &addrs {
        tracing::info!(%addr, "listening");
    }
    if let Some(addr) = config.admin {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on admin.address {addr}: {e}"))?;
        tracing::info!(%addr, "admin endpoint: /metrics, /healthz, /readyz");
        tokio::spawn(crate::admin::serve(
            listener,
            crate::admin::Readiness {
                audit: audit.clone(),
                draining: gateway.draining(),
            },
        ));
    }
    // Everything that needs root is done: become runtime.user.
    if let Some(user) = &config.user {
        match crate::privileges::drop_to(user, &[&config.audit.dir, &config.audit.key_dir]) {
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
    let notifier = std::sync::Arc::new(crate::systemd::Notifier::from_env());
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
    spawn_timer_anchor();
    // The digest of the configuration in force, for the `stop` record after any reloads.
    let in_force = std::sync::Arc::new(std::sync::Mutex::new(config.sha256.clone()));
    spawn_reload(Reload {
        notifier: notifier.clone(),
        reloader,
        audit: audit.clone(),
        path,
        running: config.clone(),
        in_force: in_force.clone(),
        status,
        jwks_poll,
    });
    shutdown_signal().await;
    notifier.stopping();
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    let digest = in_force
        .lock()
        .map_or_else(|p| p.into_inner().clone(), |d| d.clone());
    audit.shutdown(lifecycle("stop", Some(&digest), None));
    let _ = writer.join();
    // The last records (`stop` included) go to the collector if it is there.
    if let Some(s) = shipper {
        s.stop(std::time::Duration::from_secs(5));
    }
    drop(fence);
    Ok(())
}

/// Builds the identity stage from the configuration (the JWKS file is read here).
fn identifier(config: &Config) -> anyhow::Result<crate::identity::Identifier> {
    let jwt = match &config.identity.jwt {
        None => None,
        Some(settings) => Some(crate::identity::jwt::JwtVerifier::new(settings.clone())?),
    };
    Ok(crate::identity::Identifier {
        jwt,
        api_keys: crate::identity::api_key::ApiKeys::new(config.identity.api_keys.clone()),
    })
}

/// Keeps a timer due within half a second on the runtime at all times. The runtime's timer
/// wakes its event loop (a write to its eventfd, then an extra `epoll_wait`) whenever a timeout
/// is armed that falls before the earliest one it knew of when it last waited, and when it
/// waited with no timer at all, that is every timeout armed afterwards. Under load whose
/// requests all wait for the audit trail, no timer is pending while they wait, and each
/// keep-alive or body timeout armed afterwards cost that wake-up (measured: 0.8 eventfd writes
/// per request, h1 GET at 32 connections). With this timer always pending, only timeouts
/// shorter than it do.
fn spawn_timer_anchor() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
        }
    });
}

/// `WATCHDOG=1` at half systemd's watchdog interval, from the runtime that serves requests: a
/// stuck runtime stops the pings and systemd restarts moat. The status line says when the audit
/// trail is refusing requests.
fn spawn_watchdog(
    notifier: std::sync::Arc<crate::systemd::Notifier>,
    audit: crate::audit::Auditor,
    status: String,
) {
    let Some(every) = crate::systemd::watchdog_interval() else {
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
    cfg: &crate::guard::GuardConfig,
    audit: &crate::audit::Auditor,
) -> anyhow::Result<Option<crate::guard::fence::Fence>> {
    let fence = crate::guard::start(cfg, crate::guard::OBJECT)
        .map_err(|e| anyhow::anyhow!("egress guard required but not attached: {e}"))?;
    if let Some(mut f) = fence {
        if let Some(events) = f.take_events() {
            let counters = crate::guard::events::pinned_counters(&cfg.pin_dir);
            tokio::spawn(crate::guard::events::run(events, counters, audit.clone()));
        }
        return Ok(Some(f));
    }
    Ok(None)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
