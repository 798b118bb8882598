use std::net::SocketAddr;

use moat_common::proto;

use super::rules::{compile, digest, AllowRule};
use super::*;

fn rule(s: &str) -> AllowRule {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn allow_entries_parse() {
    let r = rule("10.0.0.53:53/udp");
    assert_eq!(
        (r.net.to_string().as_str(), r.port, r.proto),
        ("10.0.0.53/32", 53, proto::UDP)
    );
    let r = rule("127.0.0.0/8");
    assert_eq!(
        (r.net.to_string().as_str(), r.port, r.proto),
        ("127.0.0.0/8", 0, proto::ANY)
    );
    let r = rule("::1/128");
    assert_eq!((r.net.to_string().as_str(), r.port), ("::1/128", 0));
    let r = rule("[fd00::/8]:443/tcp");
    assert_eq!(
        (r.net.to_string().as_str(), r.port, r.proto),
        ("fd00::/8", 443, proto::TCP)
    );
    let r = rule("192.0.2.7");
    assert_eq!(r.net.to_string(), "192.0.2.7/32");
    let r = rule("10.1.2.3/16");
    assert_eq!(r.net.to_string(), "10.1.0.0/16", "host bits are cleared");
    let r = rule("::ffff:10.0.0.0/104");
    assert_eq!(
        r.net.to_string(),
        "10.0.0.0/8",
        "IPv4-mapped networks are IPv4"
    );
    let r = rule("10.0.0.1/icmp");
    assert_eq!(r.proto, proto::ICMP);
    for bad in [
        "",
        "10.0.0.1:99999",
        "10.0.0.1/sctp",
        "nonsense",
        "[::1",
        "10.0.0.1:53/icmp",
        "10.0.0.0/33",
    ] {
        assert!(bad.parse::<AllowRule>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn rules_display_round_trip() {
    for s in ["10.0.0.53/32:53/udp", "127.0.0.0/8", "[fd00::/8]:443/tcp"] {
        let r = rule(s);
        assert_eq!(rule(&r.to_string()), r, "{s}");
    }
}

#[test]
fn narrower_prefixes_inherit_wider_rules() {
    let rules = [
        rule("10.0.0.0/8"),
        rule("10.0.0.53:53/udp"),
        rule("10.0.0.53:853/tcp"),
    ];
    let compiled = compile(&rules).expect("compile");
    let host = compiled
        .iter()
        .find(|(n, _)| n.to_string() == "10.0.0.53/32")
        .expect("host entry")
        .1;
    assert_eq!(host.count, 3);
    assert!(
        host.permits(80, proto::TCP),
        "the /8 allows every port, also on the /32"
    );
    let wide = compiled
        .iter()
        .find(|(n, _)| n.to_string() == "10.0.0.0/8")
        .expect("wide entry")
        .1;
    assert_eq!(wide.count, 1);

    let only_dns = compile(&[rule("10.0.0.53:53/udp")]).expect("compile");
    assert!(only_dns[0].1.permits(53, proto::UDP));
    assert!(!only_dns[0].1.permits(53, proto::TCP));
    assert!(!only_dns[0].1.permits(80, proto::UDP));
}

#[test]
fn too_many_rules_on_one_network_is_an_error() {
    let rules: Vec<AllowRule> = (1..=17)
        .map(|p| rule(&format!("10.0.0.1:{p}/tcp")))
        .collect();
    assert!(compile(&rules).is_err());
}

#[test]
fn gateway_entries_are_tcp_to_one_port() {
    let r = AllowRule::gateway("10.1.2.3:443".parse::<SocketAddr>().expect("addr"));
    assert_eq!(
        (r.net.to_string().as_str(), r.port, r.proto),
        ("10.1.2.3/32", 443, proto::TCP)
    );
}

#[test]
fn digest_ignores_order_and_duplicates() {
    let a = [rule("127.0.0.0/8"), rule("::1/128")];
    let b = [rule("::1/128"), rule("127.0.0.0/8"), rule("127.0.0.0/8")];
    assert_eq!(digest(&a), digest(&b));
    assert_ne!(digest(&a), digest(&a[..1]));
    assert_eq!(digest(&a).len(), 64);
}

#[test]
fn cgroup_keys_round_trip() {
    let mount = std::path::Path::new("/sys/fs/cgroup");
    for p in [
        "/sys/fs/cgroup/system.slice/model.service",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/a%b",
    ] {
        let key = fence::cgroup_key(std::path::Path::new(p), mount);
        assert!(!key.contains('/'), "{key}");
        assert_eq!(
            fence::cgroup_of_key(&key, mount),
            std::path::Path::new(p),
            "{p}"
        );
    }
}

#[test]
fn cgroup2_mount_is_found_in_proc_mounts_text() {
    let text = "sysfs /sys sysfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
    assert_eq!(
        mount_of_type(text, "cgroup2"),
        Some("/sys/fs/cgroup/unified".into())
    );
    assert_eq!(mount_of_type(text, "bpf"), None);
}

#[test]
fn events_decode() {
    let mut raw = vec![0u8; 64];
    raw[0..4].copy_from_slice(&1234u32.to_ne_bytes());
    raw[8..12].copy_from_slice(&1000u32.to_ne_bytes());
    raw[24..28].copy_from_slice(&[127, 0, 0, 2]);
    raw[40..42].copy_from_slice(&8080u16.to_ne_bytes());
    raw[42] = 4;
    raw[43] = proto::TCP;
    raw[44] = moat_common::verdict::REFUSED;
    raw[45] = moat_common::hook::CONNECT4;
    raw[48..53].copy_from_slice(b"probe");
    let r = events::Refusal::decode(&raw).expect("decode");
    assert_eq!((r.pid, r.uid, r.port), (1234, 1000, 8080));
    assert_eq!(r.addr.to_string(), "127.0.0.2");
    assert_eq!(
        (r.comm.as_str(), r.protocol.as_str(), r.verdict, r.hook),
        ("probe", "tcp", "refused", "connect")
    );
    assert!(events::Refusal::decode(&raw[..63]).is_none());
}

#[test]
fn floods_are_coalesced() {
    let mut raw = vec![0u8; 64];
    raw[42] = 4;
    let r = events::Refusal::decode(&raw).expect("decode");
    let mut c = events::Coalescer::default();
    assert!(c.add(r.clone()).is_some(), "the first is logged at once");
    for _ in 0..99 {
        assert!(c.add(r.clone()).is_none());
    }
    let flushed = c.flush();
    assert_eq!(flushed.len(), 1);
    assert_eq!(flushed[0].1, 99);
    assert!(c.flush().is_empty());
}

#[test]
fn a_binary_without_the_object_refuses_when_the_guard_is_required() {
    let cfg = GuardConfig {
        mode: GuardMode::Enforce,
        cgroups: vec!["model.slice".into()],
        pin_dir: "/nonexistent/moat-test-pins".into(),
        ..GuardConfig::default()
    };
    let err = start(&cfg, None).expect_err("required guard without object");
    assert!(matches!(err, GuardError::NotBuilt));
    assert!(
        err.to_string().contains("built without the egress guard"),
        "{err}"
    );

    let optional = GuardConfig {
        required: false,
        ..cfg.clone()
    };
    assert!(start(&optional, None).expect("not required").is_none());

    let off = GuardConfig {
        mode: GuardMode::Off,
        ..cfg
    };
    assert!(start(&off, None).expect("off").is_none());
}
