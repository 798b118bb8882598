//! systemd integration without libsystemd: the `sd_notify` datagram protocol.
//!
//! When systemd starts moat with `Type=notify` it sets `NOTIFY_SOCKET` (a path, or an abstract
//! socket name starting with `@`) and, with `WatchdogSec=`, `WATCHDOG_USEC`. moat sends
//! `READY=1` once the audit trail, the guard and every listener are up, `WATCHDOG=1` at half the
//! watchdog interval from a task on its runtime (a stuck runtime stops them, and systemd restarts
//! moat), `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` on shutdown, and `STATUS=`
//! lines saying what it is doing. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, Target)>,
}

#[derive(Debug)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The notifier systemd asked for through `NOTIFY_SOCKET`, or one that does nothing.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let s = s.into_encoded_bytes();
            let target = match s.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None if s.starts_with(b"/") => Target::Path(std::path::PathBuf::from(
                    std::ffi::OsString::from(String::from_utf8_lossy(&s).into_owned()),
                )),
                None => return None,
            };
            UnixDatagram::unbound().ok().map(|sock| (sock, target))
        });
        Self { target }
    }

    /// Sends one notification (`KEY=value` lines). Failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some((sock, target)) = &self.target else {
            return;
        };
        let sent = match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1`, stamped with the monotonic clock as systemd expects.
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=draining connections");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// A `STATUS=` line alone.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            target: Some((UnixDatagram::unbound().expect("socket"), Target::Path(path))),
        };
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        assert!(Notifier { target: None }.target.is_none());
    }
}
