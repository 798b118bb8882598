//! IPv4 and IPv6 addresses (IPv4-mapped IPv6 included) in chat, configuration and log lines.

use crate::entity::IP;
use crate::rng::Rng;
use crate::{samples, Kind, Sample, Template};

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    samples(rng, out, Kind::Positive, IP, &IP_T, 80, &mut ip);
    samples(rng, out, Kind::Positive, IP, &IPV6_T, 12, &mut ipv6);
    samples(rng, out, Kind::Positive, IP, &IPV4_PORT_T, 12, &mut ipv4);
    samples(
        rng,
        out,
        Kind::NearMiss,
        IP,
        &IP_MISS_T,
        16,
        &mut ip_out_of_range,
    );
}

const IP_T: [Template; 14] = [
    ("chat", "Our server at {} keeps timing out, any idea why?"),
    ("chat", "ssh into {} and restart nginx"),
    ("chat", "Please whitelist {} in the firewall."),
    (
        "de",
        "Der Server {} antwortet seit heute morgen nicht mehr.",
    ),
    ("fr", "L'adresse IP de la passerelle est {}."),
    ("es", "La IP del servidor es {}, ¿puedes revisarla?"),
    ("env", "DB_HOST={}\nDB_PORT=5432\nDB_NAME=orders"),
    ("json", "{\"upstream\": \"{}\", \"retries\": 3}"),
    ("header", "X-Forwarded-For: {}, {ip}\nX-Request-Id: abc"),
    ("log", "{ts} {} - - \"GET /api/users HTTP/1.1\" 200 512"),
    (
        "log",
        "{ts} WARN sshd: Failed password for root from {} port 52144 ssh2",
    ),
    ("csv", "host,ip,owner\nweb-{n},{},{name}"),
    ("chat", "nslookup returns {} for our domain, is that right?"),
    ("chat", "ping {} gives 100% packet loss"),
];

/// Addresses where an IPv6 literal reads naturally.
const IPV6_T: [Template; 3] = [
    ("chat", "the container got the address {} on eth0"),
    (
        "log",
        "{ts} INFO listener: accepted connection from {} (tls1.3)",
    ),
    ("header", "X-Real-IP: {}"),
];

/// IPv4 followed by a port.
const IPV4_PORT_T: [Template; 3] = [
    ("chat", "connect to {}:8080 and check the health endpoint"),
    ("env", "REDIS_URL=redis://{}:6379/0"),
    ("log", "{ts} ERROR upstream {}:443 connection refused"),
];

const IP_MISS_T: [Template; 2] = [
    (
        "range",
        "the log shows {} which is not even a valid address",
    ),
    ("range", "ip={} rejected by the parser"),
];

/// An IPv4 address (private or public), octets without leading zeros.
pub(crate) fn ipv4(rng: &mut Rng) -> String {
    let o = |rng: &mut Rng| rng.range(0, 255);
    match rng.below(5) {
        0 => format!("10.{}.{}.{}", o(rng), o(rng), rng.range(1, 254)),
        1 => format!("192.168.{}.{}", o(rng), rng.range(1, 254)),
        2 => format!("172.{}.{}.{}", rng.range(16, 31), o(rng), rng.range(1, 254)),
        _ => format!(
            "{}.{}.{}.{}",
            rng.range(11, 223),
            o(rng),
            o(rng),
            rng.range(1, 254)
        ),
    }
}

/// An IPv6 address: full, compressed, link-local or IPv4-mapped.
pub(crate) fn ipv6(rng: &mut Rng) -> String {
    let mut g: Vec<u16> = (0..8).map(|_| rng.next_u64() as u16).collect();
    match rng.below(5) {
        0 => g
            .iter()
            .map(|x| format!("{x:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
        1 => format!("::ffff:{}", ipv4(rng)),
        2 => {
            let tail: Vec<String> = g[4..].iter().map(|x| format!("{x:x}")).collect();
            format!("fe80::{}", tail.join(":"))
        }
        _ => {
            g[0] = *rng.pick(&[0x2001, 0x2a00, 0x2a02, 0x2606, 0x2c0f]);
            let from = rng.range(2, 5);
            let len = rng.range(2, 7 - from);
            let head: Vec<String> = g[..from].iter().map(|x| format!("{x:x}")).collect();
            let tail: Vec<String> = g[from + len..].iter().map(|x| format!("{x:x}")).collect();
            format!("{}::{}", head.join(":"), tail.join(":"))
        }
    }
}

/// IPv4 three times in four, else IPv6.
pub(crate) fn ip(rng: &mut Rng) -> String {
    if rng.one_in(4) {
        ipv6(rng)
    } else {
        ipv4(rng)
    }
}

fn ip_out_of_range(rng: &mut Rng) -> String {
    let o = |rng: &mut Rng| rng.range(0, 255);
    match rng.below(3) {
        0 => format!("{}.{}.{}.{}", rng.range(256, 999), o(rng), o(rng), o(rng)),
        1 => format!("{}.{}.{}.{}", o(rng), o(rng), o(rng), rng.range(256, 999)),
        _ => format!("{}.{}.{}", rng.range(1, 255), o(rng), o(rng)),
    }
}
