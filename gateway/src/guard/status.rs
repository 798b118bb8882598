//! `moat guard status` and `moat guard detach`: read from the pins alone, so they work whether or
//! not a moat daemon is running.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::programs::links::PinnedLink;
use moat_common::{config, counter, map, mode, Allow, Dest};

use super::fence::{cgroup_of_key, links_dir, maps_dir};
use super::GuardError;

/// What the pins say.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// `enforce`, `monitor`, or `unset`.
    pub mode: String,
    /// Fenced cgroups and the programs pinned for each.
    pub cgroups: Vec<(PathBuf, Vec<String>)>,
    /// Allow-list entries: network and its port/protocol rules.
    pub allow: Vec<(String, Vec<String>)>,
    /// Local ports whose replies may leave.
    pub serve_ports: Vec<u16>,
    /// Counters summed over CPUs, by name.
    pub counters: Vec<(&'static str, u64)>,
    /// Backstop drops per destination, most first.
    pub drops: Vec<(String, u64)>,
}

fn open(pin_dir: &Path, name: &'static str) -> Result<MapData, GuardError> {
    MapData::from_pin(maps_dir(pin_dir).join(name)).map_err(|e| GuardError::Map {
        name,
        reason: e.to_string(),
    })
}

fn rules_text(a: &Allow) -> Vec<String> {
    a.rules[..(a.count as usize).min(a.rules.len())]
        .iter()
        .map(|r| {
            let port = if r.port == 0 {
                "any port".to_owned()
            } else {
                format!("port {}", r.port)
            };
            let proto = if r.proto == 0 {
                "any protocol".to_owned()
            } else {
                super::events::protocol_name(r.proto)
            };
            format!("{port}/{proto}")
        })
        .collect()
}

/// Reads the guard's state from the pins under `pin_dir`.
pub fn status(pin_dir: &Path) -> Result<Status, GuardError> {
    if !maps_dir(pin_dir).join(map::CONFIG).exists() {
        return Err(GuardError::NotPinned(pin_dir.to_owned()));
    }
    let mut st = Status::default();
    let cfg: Array<MapData, u32> = Array::try_from(Map::Array(open(pin_dir, map::CONFIG)?))
        .map_err(|e| GuardError::Map {
            name: map::CONFIG,
            reason: e.to_string(),
        })?;
    st.mode = match cfg.get(&config::MODE, 0) {
        Ok(mode::ENFORCE) => "enforce".into(),
        Ok(mode::MONITOR) => "monitor".into(),
        _ => "unset (programs refuse everything)".into(),
    };

    let mount = super::cgroup2_mount().unwrap_or_else(|_| PathBuf::from("/"));
    if let Ok(dirs) = std::fs::read_dir(links_dir(pin_dir)) {
        for d in dirs.flatten() {
            let key = d.file_name().to_string_lossy().into_owned();
            let mut progs: Vec<String> = std::fs::read_dir(d.path())
                .map(|it| {
                    it.flatten()
                        .map(|p| p.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            progs.sort();
            st.cgroups.push((cgroup_of_key(&key, &mount), progs));
        }
    }
    st.cgroups.sort();

    let v4: LpmTrie<MapData, [u8; 4], Allow> =
        LpmTrie::try_from(Map::LpmTrie(open(pin_dir, map::ALLOW_V4)?)).map_err(|e| {
            GuardError::Map {
                name: map::ALLOW_V4,
                reason: e.to_string(),
            }
        })?;
    for (k, v) in v4.iter().filter_map(Result::ok) {
        st.allow.push((
            format!("{}/{}", Ipv4Addr::from(k.data()), k.prefix_len()),
            rules_text(&v),
        ));
    }
    let v6: LpmTrie<MapData, [u8; 16], Allow> =
        LpmTrie::try_from(Map::LpmTrie(open(pin_dir, map::ALLOW_V6)?)).map_err(|e| {
            GuardError::Map {
                name: map::ALLOW_V6,
                reason: e.to_string(),
            }
        })?;
    for (k, v) in v6.iter().filter_map(Result::ok) {
        st.allow.push((
            format!("{}/{}", Ipv6Addr::from(k.data()), k.prefix_len()),
            rules_text(&v),
        ));
    }

    let ports: HashMap<MapData, u16, u8> =
        HashMap::try_from(Map::HashMap(open(pin_dir, map::SERVE_PORTS)?)).map_err(|e| {
            GuardError::Map {
                name: map::SERVE_PORTS,
                reason: e.to_string(),
            }
        })?;
    st.serve_ports = ports.keys().filter_map(Result::ok).collect();
    st.serve_ports.sort_unstable();

    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(open(pin_dir, map::COUNTERS)?)).map_err(|e| {
            GuardError::Map {
                name: map::COUNTERS,
                reason: e.to_string(),
            }
        })?;
    let names = [
        (counter::ALLOWED, "allowed"),
        (counter::REFUSED, "refused"),
        (counter::MONITORED, "monitored"),
        (counter::PACKETS_DROPPED, "packets_dropped"),
        (counter::PACKETS_MONITORED, "packets_monitored"),
        (counter::EVENTS_LOST, "events_lost"),
        (counter::ERRORS, "errors"),
    ];
    for (i, name) in names {
        let total = counters.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        st.counters.push((name, total));
    }

    let drops: HashMap<MapData, Dest, u64> =
        HashMap::try_from(Map::LruHashMap(open(pin_dir, map::DROPS)?)).map_err(|e| {
            GuardError::Map {
                name: map::DROPS,
                reason: e.to_string(),
            }
        })?;
    for (d, n) in drops.iter().filter_map(Result::ok) {
        let addr = if d.family == 4 {
            IpAddr::V4(Ipv4Addr::new(d.addr[0], d.addr[1], d.addr[2], d.addr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(d.addr))
        };
        let proto = super::events::protocol_name(d.proto);
        let dest = if d.port == 0 {
            format!("{addr} {proto}")
        } else {
            format!("{addr} port {} {proto}", d.port)
        };
        st.drops.push((dest, n));
    }
    st.drops.sort_by_key(|d| std::cmp::Reverse(d.1));
    Ok(st)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode: {}", self.mode)?;
        writeln!(f, "fenced cgroups:")?;
        if self.cgroups.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (cg, progs) in &self.cgroups {
            writeln!(f, "  {} [{}]", cg.display(), progs.join(", "))?;
        }
        writeln!(f, "allowed destinations:")?;
        for (net, rules) in &self.allow {
            writeln!(f, "  {net}: {}", rules.join(", "))?;
        }
        let ports: Vec<String> = self.serve_ports.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "serve ports (replies allowed): {}",
            if ports.is_empty() {
                "(none)".into()
            } else {
                ports.join(", ")
            }
        )?;
        writeln!(f, "counters:")?;
        for (name, n) in &self.counters {
            writeln!(f, "  {name}: {n}")?;
        }
        writeln!(f, "dropped packets by destination:")?;
        if self.drops.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (d, n) in self.drops.iter().take(20) {
            writeln!(f, "  {d}: {n}")?;
        }
        Ok(())
    }
}

/// What [`detach`] removed.
#[derive(Debug, Default)]
pub struct Detached {
    /// Links unpinned (each one detached a program from a cgroup).
    pub links: usize,
    /// Map pins removed.
    pub maps: usize,
}

/// Takes the fence down: unpins (and so detaches) every link, removes every map pin and the pin
/// directories. The only way moat ever opens egress.
pub fn detach(pin_dir: &Path) -> Result<Detached, GuardError> {
    if !pin_dir.exists() {
        return Err(GuardError::NotPinned(pin_dir.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GuardError::Io { path, source }
    };
    let mut out = Detached::default();
    let links = links_dir(pin_dir);
    if let Ok(dirs) = std::fs::read_dir(&links) {
        for d in dirs.flatten() {
            for p in std::fs::read_dir(d.path())
                .map_err(io(&d.path()))?
                .flatten()
            {
                let path = p.path();
                match PinnedLink::from_pin(&path) {
                    // Unpinning drops the last reference: the kernel detaches the program.
                    Ok(link) => {
                        link.unpin().map_err(io(&path))?;
                    }
                    Err(_) => std::fs::remove_file(&path).map_err(io(&path))?,
                }
                out.links += 1;
            }
            std::fs::remove_dir(d.path()).map_err(io(&d.path()))?;
        }
        std::fs::remove_dir(&links).map_err(io(&links))?;
    }
    let maps = maps_dir(pin_dir);
    if let Ok(entries) = std::fs::read_dir(&maps) {
        for m in entries.flatten() {
            std::fs::remove_file(m.path()).map_err(io(&m.path()))?;
            out.maps += 1;
        }
        std::fs::remove_dir(&maps).map_err(io(&maps))?;
    }
    std::fs::remove_dir(pin_dir).map_err(io(pin_dir))?;
    Ok(out)
}
