//! Allow-list entries: parsing `allow` and `gateway` strings, and compiling them into the
//! kernel's LPM tries.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use moat_common::{proto, Allow, PortRule, MAX_RULES};

/// One allowed destination: a network, optionally a port, optionally a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    /// Destination network (IPv4-mapped IPv6 networks are stored as IPv4).
    pub net: IpNet,
    /// Destination port; 0 = any.
    pub port: u16,
    /// IP protocol; 0 = any.
    pub proto: u8,
}

impl AllowRule {
    /// TCP to exactly this address and port (a `gateway` entry).
    pub fn gateway(addr: SocketAddr) -> Self {
        Self {
            net: IpNet::from(canonical(addr.ip())),
            port: addr.port(),
            proto: proto::TCP,
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        other => other,
    }
    .trunc()
}

/// Why an allow entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub &'static str);

impl FromStr for AllowRule {
    type Err = RuleError;

    /// `NET[:PORT][/PROTO]`: `10.0.0.0/8`, `10.0.0.53:53/udp`, `::1/128`, `[fd00::/8]:443/tcp`,
    /// `192.0.2.1` (a host). PROTO is `tcp`, `udp` or `icmp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, p)) if p.chars().all(|c| c.is_ascii_alphabetic()) && !p.is_empty() => {
                let proto = match p.to_ascii_lowercase().as_str() {
                    "tcp" => proto::TCP,
                    "udp" => proto::UDP,
                    "icmp" => proto::ICMP,
                    _ => return Err(RuleError("protocol must be tcp, udp or icmp")),
                };
                (r, proto)
            }
            _ => (s, proto::ANY),
        };
        let (net, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (net, after) = inner.split_once(']').ok_or(RuleError("missing `]`"))?;
            let port = match after {
                "" => 0,
                p => p
                    .strip_prefix(':')
                    .ok_or(RuleError("expected `:PORT` after `]`"))?
                    .parse()
                    .map_err(|_| RuleError("invalid port"))?,
            };
            (net, port)
        } else if rest.matches(':').count() == 1 {
            let (net, port) = rest.split_once(':').ok_or(RuleError("invalid entry"))?;
            (net, port.parse().map_err(|_| RuleError("invalid port"))?)
        } else {
            (rest, 0)
        };
        let net = match net.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => IpNet::from(
                net.parse::<IpAddr>()
                    .map_err(|_| RuleError("expected an IP address or CIDR"))?,
            ),
        };
        if port != 0 && proto == proto::ICMP {
            return Err(RuleError("icmp has no ports"));
        }
        Ok(Self {
            net: canonical_net(net),
            port,
            proto,
        })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (IpNet::V6(n), p) if p != 0 => write!(f, "[{n}]:{p}")?,
            (n, 0) => write!(f, "{n}")?,
            (n, p) => write!(f, "{n}:{p}")?,
        }
        match self.proto {
            proto::TCP => write!(f, "/tcp"),
            proto::UDP => write!(f, "/udp"),
            proto::ICMP => write!(f, "/icmp"),
            _ => Ok(()),
        }
    }
}

/// The trie contents for a set of rules: one entry per distinct network, each carrying its own
/// rules plus those of every wider network covering it (the kernel's longest-prefix lookup
/// sees only the most specific entry, so it must hold everything that applies there).
pub fn compile(rules: &[AllowRule]) -> Result<Vec<(IpNet, Allow)>, RuleError> {
    let mut by_net: BTreeMap<IpNet, Vec<PortRule>> = BTreeMap::new();
    for r in rules {
        by_net.entry(r.net).or_default();
    }
    let nets: Vec<IpNet> = by_net.keys().copied().collect();
    let mut out = Vec::new();
    for net in nets {
        let mut entry = Allow::default();
        let mut seen: Vec<PortRule> = Vec::new();
        for r in rules.iter().filter(|r| r.net.contains(&net)) {
            let pr = PortRule {
                port: r.port,
                proto: r.proto,
                pad: 0,
            };
            if seen.contains(&pr) {
                continue;
            }
            if seen.len() == MAX_RULES {
                return Err(RuleError(
                    "too many port rules apply to one network (at most 16)",
                ));
            }
            seen.push(pr);
        }
        entry.count = seen.len() as u32;
        entry.rules[..seen.len()].copy_from_slice(&seen);
        out.push((net, entry));
    }
    Ok(out)
}

/// SHA-256 of the allow-list in a canonical order (sorted, deduplicated), hex-encoded: two
/// configurations that allow the same destinations have the same digest.
pub fn digest(rules: &[AllowRule]) -> String {
    use sha2::{Digest, Sha256};
    let mut text: Vec<String> = rules.iter().map(ToString::to_string).collect();
    text.sort();
    text.dedup();
    let hash = Sha256::digest(text.join(",").as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
