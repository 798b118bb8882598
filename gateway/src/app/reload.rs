//! Live reload: SIGHUP swaps in a new configuration, and the JWKS file is re-read when it changes.

use std::path::PathBuf;

use super::{identifier, lifecycle};
use crate::config::Config;

/// Re-reads the JWKS file when it changes (checked every 2 s); a file that does not load keeps
/// the keys in use.
pub(super) fn spawn_jwks_reload(
    identifier: std::sync::Arc<crate::identity::Identifier>,
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
pub(super) struct Reload {
    pub(super) notifier: std::sync::Arc<crate::systemd::Notifier>,
    pub(super) reloader: crate::server::Reloader,
    pub(super) audit: crate::audit::Auditor,
    pub(super) path: PathBuf,
    pub(super) running: Config,
    /// The running configuration's digest, shared with the `stop` record.
    pub(super) in_force: std::sync::Arc<std::sync::Mutex<String>>,
    pub(super) status: String,
    /// The JWKS file watcher of the identity stage in use.
    pub(super) jwks_poll: Option<tokio::task::JoinHandle<()>>,
}

/// SIGHUP: re-reads the configuration file, validates all of it and loads what it names
/// (certificates, keys, JWKS, API keys, policy, redaction profiles) before anything changes, then
/// swaps it into every listener at once; connections in flight keep what they started with. A
/// file that does not validate or load changes nothing: the error is logged and audited, and the
/// running configuration keeps serving. Between `RELOADING=1` and `READY=1` for systemd.
pub(super) fn spawn_reload(mut r: Reload) {
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
                .record(crate::audit::record::Record::Lifecycle(record));
            if let Ok((config, identifier)) = result {
                match r.in_force.lock() {
                    Ok(mut d) => d.clone_from(&config.sha256),
                    Err(p) => p.into_inner().clone_from(&config.sha256),
                }
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
fn reload_once(
    r: &Reload,
) -> Result<(Config, std::sync::Arc<crate::identity::Identifier>), String> {
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
