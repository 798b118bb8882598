//! Loading, attaching and pinning the fence, and taking over a fence pinned earlier.
//!
//! Layout under `pin_dir`:
//! - `maps/<NAME>`: every map, pinned by name; a later load reuses them, so the programs already
//!   attached and the ones a new moat loads share one allow-list, one config, one ring buffer;
//! - `links/<cgroup>/<program>`: one pinned link per program per cgroup (`<cgroup>` is the
//!   cgroup path relative to the cgroup v2 mount, with `/` written as `%2F`).
//!
//! Order matters for fail-closed behaviour: maps are filled (mode included) before any program
//! is attached, the packet backstop is attached before the socket hooks, and on takeover the
//! allow-list is updated in place by inserting new entries before removing stale ones. A
//! running fence is never detached here: only [`super::status::detach`] does that.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, Program};
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;
use moat_common::{config, map, mode, program, Allow};

use super::{rules, GuardConfig, GuardError, GuardMode};

/// A fence this process attached or took over; holds the loaded object (and so the maps).
pub struct Fence {
    ebpf: Ebpf,
    /// cgroups fenced, as configured.
    pub cgroups: Vec<PathBuf>,
    /// Programs attached by this start (0 when everything was already pinned).
    pub newly_attached: usize,
    /// SHA-256 of the allow-list in force.
    pub allow_digest: String,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("cgroups", &self.cgroups)
            .field("newly_attached", &self.newly_attached)
            .finish()
    }
}

impl Fence {
    /// Takes the ring buffer of refusal events (once).
    pub fn take_events(&mut self) -> Option<Map> {
        self.ebpf.take_map(map::EVENTS)
    }
}

/// Directory holding map pins.
pub fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}

/// Directory holding link pins.
pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// The link pin directory name of a cgroup.
pub fn cgroup_key(cgroup: &Path, mount: &Path) -> String {
    let rel = cgroup.strip_prefix(mount).unwrap_or(cgroup);
    let s = rel.to_string_lossy();
    let s = s.trim_matches('/');
    if s.is_empty() {
        "%2F".to_owned()
    } else {
        s.replace('%', "%25").replace('/', "%2F")
    }
}

/// The cgroup path a link pin directory name stands for.
pub fn cgroup_of_key(key: &str, mount: &Path) -> PathBuf {
    let rel = key.replace("%2F", "/").replace("%25", "%");
    mount.join(rel.trim_start_matches('/'))
}

/// Mounts bpffs at `/sys/fs/bpf` when `pin_dir` is not on one, then creates the pin directories.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), GuardError> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let on_bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, ty) = (f.next(), f.next(), f.next());
        ty == Some("bpf") && dir.is_some_and(|d| pin_dir.starts_with(d))
    });
    if !on_bpffs {
        let mount_point = Path::new("/sys/fs/bpf");
        if !pin_dir.starts_with(mount_point) {
            return Err(GuardError::Bpffs {
                path: pin_dir.to_owned(),
                reason: "pin_dir is not on a bpffs mount (and not under /sys/fs/bpf, which moat would mount)".into(),
            });
        }
        std::fs::create_dir_all(mount_point).map_err(|e| GuardError::Bpffs {
            path: mount_point.into(),
            reason: e.to_string(),
        })?;
        nix::mount::mount(
            Some("bpf"),
            mount_point,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| GuardError::Bpffs {
            path: mount_point.into(),
            reason: e.to_string(),
        })?;
        tracing::info!(target: "moat::guard", path = %mount_point.display(), "mounted bpffs");
    }
    for dir in [maps_dir(pin_dir), links_dir(pin_dir)] {
        std::fs::create_dir_all(&dir).map_err(|source| GuardError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Loads the object with every map pinned (reusing pins that exist), fills the maps from
/// `cfg`, and attaches the programs to each configured cgroup that is not fenced yet.
pub fn attach(cfg: &GuardConfig, object: &[u8]) -> Result<Fence, GuardError> {
    if cfg.mode == GuardMode::Off {
        return Err(GuardError::Program {
            name: "guard",
            reason: "mode is off".into(),
        });
    }
    ensure_bpffs(&cfg.pin_dir)?;
    let mount = super::cgroup2_mount()?;
    let maps = maps_dir(&cfg.pin_dir);
    let mut loader = EbpfLoader::new();
    for name in map::ALL {
        loader.map_pin_path(name, maps.join(name));
    }
    let mut ebpf = loader.load(object)?;

    let compiled = rules::compile(&cfg.allow).map_err(|e| GuardError::Map {
        name: map::ALLOW_V4,
        reason: e.to_string(),
    })?;
    sync_allow(&mut ebpf, &compiled)?;
    sync_serve_ports(&mut ebpf, &cfg.serve_ports)?;
    set_mode(&mut ebpf, cfg.mode)?;

    let mut newly_attached = 0;
    for cgroup in &cfg.cgroups {
        newly_attached += attach_cgroup(&mut ebpf, cgroup, &mount, &cfg.pin_dir)?;
    }
    Ok(Fence {
        ebpf,
        cgroups: cfg.cgroups.clone(),
        newly_attached,
        allow_digest: rules::digest(&cfg.allow),
    })
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> GuardError {
    move |e| GuardError::Map {
        name,
        reason: e.to_string(),
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, GuardError> {
    ebpf.map_mut(name).ok_or(GuardError::Map {
        name,
        reason: "missing from the object".into(),
    })
}

/// Makes the tries hold exactly `compiled`: new and changed entries first, then stale ones
/// removed, so no destination that stays allowed is ever refused in between.
fn sync_allow(ebpf: &mut Ebpf, compiled: &[(IpNet, Allow)]) -> Result<(), GuardError> {
    let v4 = compiled.iter().filter_map(|(n, a)| match n {
        IpNet::V4(n) => Some((u32::from(n.prefix_len()), n.addr().octets(), *a)),
        IpNet::V6(_) => None,
    });
    sync_trie(map_mut(ebpf, map::ALLOW_V4)?, map::ALLOW_V4, v4.collect())?;
    let v6 = compiled.iter().filter_map(|(n, a)| match n {
        IpNet::V6(n) => Some((u32::from(n.prefix_len()), n.addr().octets(), *a)),
        IpNet::V4(_) => None,
    });
    sync_trie(map_mut(ebpf, map::ALLOW_V6)?, map::ALLOW_V6, v6.collect())
}

/// One trie of [`sync_allow`]; `K` is the address bytes (`[u8; 4]` or `[u8; 16]`).
fn sync_trie<K>(
    m: &mut Map,
    name: &'static str,
    want: Vec<(u32, K, Allow)>,
) -> Result<(), GuardError>
where
    K: aya::Pod + Ord,
{
    let mut trie: LpmTrie<&mut MapData, K, Allow> = LpmTrie::try_from(m).map_err(map_err(name))?;
    for (len, addr, allow) in &want {
        trie.insert(&Key::new(*len, *addr), *allow, 0)
            .map_err(map_err(name))?;
    }
    let keep: BTreeSet<(u32, K)> = want.iter().map(|(l, a, _)| (*l, *a)).collect();
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keep.contains(&(k.prefix_len(), k.data())))
        .collect();
    for k in stale {
        trie.remove(&k).map_err(map_err(name))?;
    }
    Ok(())
}

fn sync_serve_ports(ebpf: &mut Ebpf, ports: &[u16]) -> Result<(), GuardError> {
    let mut m: HashMap<&mut MapData, u16, u8> =
        HashMap::try_from(map_mut(ebpf, map::SERVE_PORTS)?).map_err(map_err(map::SERVE_PORTS))?;
    for p in ports {
        m.insert(p, 1, 0).map_err(map_err(map::SERVE_PORTS))?;
    }
    let stale: Vec<u16> = m
        .keys()
        .filter_map(Result::ok)
        .filter(|p| !ports.contains(p))
        .collect();
    for p in stale {
        m.remove(&p).map_err(map_err(map::SERVE_PORTS))?;
    }
    Ok(())
}

fn set_mode(ebpf: &mut Ebpf, m: GuardMode) -> Result<(), GuardError> {
    let value = match m {
        GuardMode::Enforce => mode::ENFORCE,
        GuardMode::Monitor => mode::MONITOR,
        // Never written: an attached fence with mode "off" would fail closed anyway.
        GuardMode::Off => mode::ENFORCE,
    };
    let mut a: Array<&mut MapData, u32> =
        Array::try_from(map_mut(ebpf, map::CONFIG)?).map_err(map_err(map::CONFIG))?;
    a.set(config::MODE, value, 0).map_err(map_err(map::CONFIG))
}

/// Attaches every program not yet pinned for this cgroup; returns how many were attached.
///
/// Attachments are bpf_links (`Single` only because link creation takes no flags): the kernel
/// runs them alongside other programs on the same cgroup, and every one must allow.
fn attach_cgroup(
    ebpf: &mut Ebpf,
    cgroup: &Path,
    mount: &Path,
    pin_dir: &Path,
) -> Result<usize, GuardError> {
    // Relative paths name a cgroup below the cgroup v2 mount (e.g. `system.slice/model.service`).
    let cgroup = &if cgroup.is_absolute() {
        cgroup.to_owned()
    } else {
        mount.join(cgroup)
    };
    let dir = links_dir(pin_dir).join(cgroup_key(cgroup, mount));
    std::fs::create_dir_all(&dir).map_err(|source| GuardError::Io {
        path: dir.clone(),
        source,
    })?;
    let cg = std::fs::File::open(cgroup).map_err(|source| GuardError::Cgroup {
        path: cgroup.to_owned(),
        source,
    })?;
    let mut attached = 0;
    for name in program::ALL {
        let pin = dir.join(name);
        if pin.exists() {
            continue;
        }
        let perr = |reason: String| GuardError::Program { name, reason };
        let prog = ebpf
            .program_mut(name)
            .ok_or_else(|| perr("missing from the object".into()))?;
        let link: FdLink = match prog {
            Program::CgroupSkb(p) => {
                if p.fd().is_err() {
                    p.load().map_err(|e| perr(format!("load: {e}")))?;
                }
                let id = p
                    .attach(
                        cg.as_fd(),
                        CgroupSkbAttachType::Egress,
                        CgroupAttachMode::Single,
                    )
                    .map_err(|e| perr(format!("attach to {}: {e}", cgroup.display())))?;
                let link = p.take_link(id).map_err(|e| perr(e.to_string()))?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| perr(e.to_string()))?
            }
            Program::CgroupSockAddr(p) => {
                if p.fd().is_err() {
                    p.load().map_err(|e| perr(format!("load: {e}")))?;
                }
                let id = p
                    .attach(cg.as_fd(), CgroupAttachMode::Single)
                    .map_err(|e| perr(format!("attach to {}: {e}", cgroup.display())))?;
                let link = p.take_link(id).map_err(|e| perr(e.to_string()))?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| perr(e.to_string()))?
            }
            _ => return Err(perr("unexpected program type".into())),
        };
        link.pin(&pin)
            .map_err(|e| perr(format!("pin {}: {e}", pin.display())))?;
        attached += 1;
    }
    Ok(attached)
}
