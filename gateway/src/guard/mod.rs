//! Guard stage: the egress fence around the model workload, userspace side.
//!
//! The kernel programs (crate `moat-ebpf`, embedded by `build.rs` when `cargo xtask build-ebpf`
//! has built them) are attached to the configured cgroups and refuse any connection or packet
//! not addressed to the gateway or an allowed destination. This module:
//! - turns `[guard]` settings into allow-list entries ([`rules`]);
//! - loads the programs, fills the maps and attaches them, pinning links and maps in bpffs so the
//!   fence outlives the daemon, and takes pinned state over on start ([`fence`]);
//! - reads refusals from the ring buffer and logs them, coalescing floods ([`events`]);
//! - reports state from the pins alone and takes the fence down ([`status`]).

pub mod events;
pub mod fence;
pub mod rules;
pub mod status;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use rules::AllowRule;

/// The kernel object, when this binary was built with it.
#[cfg(moat_guard)]
pub static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/moat-guard.o"
)));
/// The kernel object, when this binary was built with it.
#[cfg(not(moat_guard))]
pub static OBJECT: Option<&[u8]> = None;

/// What the guard does with traffic the allow-list does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// Refuse it and report it.
    Enforce,
    /// Let it through but report it (for rollouts).
    Monitor,
    /// moat does not manage a guard (a fence pinned earlier stays up).
    Off,
}

impl GuardMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
            Self::Off => "off",
        }
    }
}

/// Validated `[guard]` settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Enforce, monitor or off.
    pub mode: GuardMode,
    /// cgroup v2 directories to fence (absolute paths).
    pub cgroups: Vec<PathBuf>,
    /// Allowed destinations: `allow` and `gateway` entries together.
    pub allow: Vec<AllowRule>,
    /// Local TCP ports whose replies may leave (listeners serving clients from outside).
    pub serve_ports: Vec<u16>,
    /// Refuse to start when the guard cannot be attached.
    pub required: bool,
    /// Where links and maps are pinned (on a bpffs mount).
    pub pin_dir: PathBuf,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            mode: GuardMode::Off,
            cgroups: Vec::new(),
            allow: Vec::new(),
            serve_ports: Vec::new(),
            required: true,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
        }
    }
}

/// Default `guard.pin_dir`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/moat";

/// Why the guard could not be set up or inspected.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// This binary carries no kernel object.
    #[error("this moat binary was built without the egress guard: run `cargo xtask build-ebpf`, then rebuild moat")]
    NotBuilt,
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup v2 mount found in /proc/mounts")]
    NoCgroup2,
    /// bpffs could not be found or mounted.
    #[error("cannot mount bpffs at {path}: {reason}")]
    Bpffs {
        /// Mount point tried.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A configured cgroup cannot be opened.
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel object could not be loaded.
    #[error("cannot load the guard programs: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing, or could not be loaded, attached or pinned.
    #[error("program {name}: {reason}")]
    Program {
        /// Program name.
        name: &'static str,
        /// What failed.
        reason: String,
    },
    /// A map is missing or could not be read or written.
    #[error("map {name}: {reason}")]
    Map {
        /// Map name.
        name: &'static str,
        /// What failed.
        reason: String,
    },
    /// Nothing is pinned at the pin directory.
    #[error("no guard is pinned at {0}")]
    NotPinned(PathBuf),
    /// A file operation on the pin directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Puts the fence up (or takes over a pinned one) as `cfg` says, with the given kernel object.
///
/// - mode `off`: nothing is attached (`Ok(None)`); a fence pinned earlier stays up, with a
///   warning.
/// - otherwise, when the fence cannot go up (no object in this binary, no cgroup, no bpffs,
///   the kernel refused): an error if `required`, else `Ok(None)` and an error-level log line
///   saying egress is not fenced.
pub fn start(cfg: &GuardConfig, object: Option<&[u8]>) -> Result<Option<fence::Fence>, GuardError> {
    if cfg.mode == GuardMode::Off {
        if fence::maps_dir(&cfg.pin_dir).exists() {
            tracing::warn!(
                target: "moat::guard",
                pin_dir = %cfg.pin_dir.display(),
                "guard.mode is off, but a fence pinned earlier is still enforcing; `moat guard detach` removes it"
            );
        }
        return Ok(None);
    }
    let attached = match object {
        None => Err(GuardError::NotBuilt),
        Some(object) => fence::attach(cfg, object),
    };
    match attached {
        Ok(f) => {
            tracing::info!(
                target: "moat::guard",
                mode = cfg.mode.as_str(),
                cgroups = ?f.cgroups,
                newly_attached = f.newly_attached,
                allow_digest = %f.allow_digest,
                pin_dir = %cfg.pin_dir.display(),
                "egress guard attached"
            );
            Ok(Some(f))
        }
        Err(e) if cfg.required => Err(e),
        Err(e) => {
            tracing::error!(
                target: "moat::guard",
                error = %e,
                "egress guard not attached (guard.required = false): egress is NOT fenced"
            );
            Ok(None)
        }
    }
}

/// The cgroup v2 mount point, from `/proc/mounts`.
pub fn cgroup2_mount() -> Result<PathBuf, GuardError> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|_| GuardError::NoCgroup2)?;
    mount_of_type(&mounts, "cgroup2").ok_or(GuardError::NoCgroup2)
}

/// The first mount point of a filesystem type in `/proc/mounts` text.
pub(crate) fn mount_of_type(mounts: &str, fstype: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_src, dir, ty) = (f.next()?, f.next()?, f.next()?);
        (ty == fstype).then(|| PathBuf::from(dir.replace("\\040", " ")))
    })
}
