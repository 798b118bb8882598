use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A directory with a certificate and key file, so configurations can point at real files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tls")).expect("mkdir");
        std::fs::write(dir.path().join("tls/server.pem"), "cert").expect("cert");
        std::fs::write(dir.path().join("tls/server.key"), "key").expect("key");
        Self { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, self.base())
    }
}

const MINIMAL: &str = r#"
[[listener]]
address = "127.0.0.1:8443"
upstream = "model"

[[tls.certificate]]
cert_file = "tls/server.pem"
key_file = "tls/server.key"

[upstreams.model]
address = "127.0.0.1:8000"
"#;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/moat.example.toml")
}

#[test]
fn example_file_parses_and_shows_the_defaults() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(example_path()).expect("example file");
    let c = fx.parse(&text).expect("example parses");
    let d = HttpConfig::default();
    assert_eq!(c.http.max_header_bytes, d.max_header_bytes);
    assert_eq!(c.http.max_request_line_bytes, d.max_request_line_bytes);
    assert_eq!(c.http.max_headers, d.max_headers);
    assert_eq!(c.http.max_request_body_bytes, d.max_request_body_bytes);
    assert_eq!(c.http.max_decompression_ratio, d.max_decompression_ratio);
    assert_eq!(c.http.header_timeout, d.header_timeout);
    assert_eq!(c.http.keepalive_timeout, d.keepalive_timeout);
    assert_eq!(c.http.body_idle_timeout, d.body_idle_timeout);
    assert_eq!(c.http.trust_request_id, d.trust_request_id);
    assert_eq!(c.http2, Http2Config::default());
    let u = &c.upstreams["model"];
    assert_eq!(u.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(u.response_header_timeout, DEFAULT_RESPONSE_HEADER_TIMEOUT);
    assert_eq!(u.pool_max_idle, DEFAULT_POOL_MAX_IDLE);
    assert_eq!(u.pool_idle_timeout, DEFAULT_POOL_IDLE_TIMEOUT);
    assert_eq!(c.tls.min_version, TlsVersion::Tls12);
    assert_eq!(c.log.format, LogFormat::Auto);
    assert_eq!(c.worker_threads, 0);
    let a = AuditConfig::default();
    assert_eq!(c.audit.dir, a.dir);
    assert_eq!(c.audit.key_dir, a.key_dir);
    assert_eq!(c.listeners[0].backlog, 4096);
    assert_eq!(c.listeners[0].max_connections, 10_000);
    assert_eq!(c.listeners[0].max_connections_per_ip, 1_000);
    assert_eq!(c.http.body_timeout, Duration::from_secs(20));
    assert_eq!(c.http.min_body_rate, 500);
    assert_eq!(c.audit.fsync, a.fsync);
    // Durable by default: a response completes only once its record is on disk.
    assert_eq!(c.audit.fsync, crate::audit::FsyncMode::Always);
    assert_eq!(c.audit.batch_delay, a.batch_delay);
    assert_eq!(c.audit.checkpoint_every, a.checkpoint_every);
    assert_eq!(c.audit.checkpoint_interval, a.checkpoint_interval);
    assert_eq!(c.audit.segment_max_bytes, a.segment_max_bytes);
    assert_eq!(c.audit.segment_max_age, a.segment_max_age);
    assert_eq!(c.audit.queue_capacity, a.queue_capacity);
    let g = GuardConfig::default();
    assert_eq!(c.guard.mode, g.mode);
    assert_eq!(c.guard.required, g.required);
    assert_eq!(c.guard.pin_dir, g.pin_dir);
}

#[test]
fn minimal_file_gets_defaults() {
    let c = Fixture::new().parse(MINIMAL).expect("minimal parses");
    assert_eq!(c.listeners[0].name, "listener0");
    assert_eq!(
        c.upstreams["model"].address,
        UpstreamAddr::Tcp("127.0.0.1:8000".parse().expect("addr"))
    );
    assert_eq!(c.http.header_timeout, HttpConfig::default().header_timeout);
}

fn err(text: &str) -> String {
    match Fixture::new().parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_key_names_its_path_and_line() {
    let text = MINIMAL.replace(
        "address = \"127.0.0.1:8000\"",
        "adress = \"127.0.0.1:8000\"",
    );
    let e = err(&text);
    assert!(e.contains("upstreams.model"), "{e}");
    assert!(e.contains("adress"), "{e}");
    assert!(e.contains("line 11"), "{e}");
}

/// A TOML syntax error is placed in the table it stands in, or at the top level before any.
#[test]
fn syntax_errors_name_their_table_or_the_top_level() {
    let e = err(&format!(
        "{MINIMAL}\n[http2]\nmax_concurrent_streams = = 7\n"
    ));
    assert!(e.starts_with("http2 (line "), "{e}");
    let e = err(&format!("x = \n{MINIMAL}"));
    assert!(e.starts_with("top level (line 1)"), "{e}");
    assert!(!e.contains("(document)"), "{e}");
}

#[test]
fn bad_listener_address_names_the_key() {
    let e = err(&MINIMAL.replace("127.0.0.1:8443", "127.0.0.1:notaport"));
    assert!(e.starts_with("listener.0.address (line 3)"), "{e}");
}

#[test]
fn non_local_upstream_is_refused() {
    let e = err(&MINIMAL.replace("127.0.0.1:8000", "93.184.216.34:443"));
    assert!(e.starts_with("upstreams.model.address (line 11)"), "{e}");
    assert!(e.contains("not local"), "{e}");
    let e = err(&MINIMAL.replace("127.0.0.1:8000", "10.20.0.5:8000"));
    assert!(e.contains("not local"), "{e}");
}

#[test]
fn in_region_cidr_admits_an_upstream() {
    let text = format!("{MINIMAL}\n[residency]\nin_region_cidrs = [\"10.20.0.0/16\"]\n")
        .replace("127.0.0.1:8000", "10.20.0.5:8000");
    let c = Fixture::new().parse(&text).expect("in-region upstream");
    assert_eq!(c.in_region.len(), 1);
    let e = err(&format!(
        "{MINIMAL}\n[residency]\nin_region_cidrs = [\"10.20.0.0/33\"]\n"
    ));
    assert!(e.starts_with("residency.in_region_cidrs.0"), "{e}");
}

#[test]
fn unix_upstream_needs_an_absolute_path() {
    let c = Fixture::new()
        .parse(&MINIMAL.replace("127.0.0.1:8000", "unix:/run/model.sock"))
        .expect("unix");
    assert_eq!(
        c.upstreams["model"].address,
        UpstreamAddr::Unix("/run/model.sock".into())
    );
    let e = err(&MINIMAL.replace("127.0.0.1:8000", "unix:model.sock"));
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn missing_certificate_file_names_the_key() {
    let e = err(&MINIMAL.replace("tls/server.pem", "tls/missing.pem"));
    assert!(e.starts_with("tls.certificate.0.cert_file (line 7)"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");
}

#[test]
fn listener_must_name_a_defined_upstream() {
    let e = err(&MINIMAL.replace("upstream = \"model\"", "upstream = \"other\""));
    assert!(e.starts_with("listener.0.upstream (line 4)"), "{e}");
}

#[test]
fn one_error_per_rejected_value() {
    let cases = [
        (
            "[http]\nheader_timeout = \"10 seconds\"",
            "http.header_timeout",
        ),
        (
            "[http]\nkeepalive_timeout = \"5x\"",
            "http.keepalive_timeout",
        ),
        ("[http]\nmax_headers = 0", "http.max_headers"),
        (
            "[http]\nmax_decompression_ratio = 0",
            "http.max_decompression_ratio",
        ),
        ("[http]\nmax_header_bytes = 0", "http.max_header_bytes"),
        (
            "[http]\nmax_request_line_bytes = 100000",
            "http.max_request_line_bytes",
        ),
        ("[http]\nmax_headers = -1", "http.max_headers"),
        (
            "[http]\ntrust_request_id = \"yes\"",
            "http.trust_request_id",
        ),
        ("[tls]\nmin_version = \"1.1\"", "tls.min_version"),
        ("[log]\nformat = \"xml\"", "log.format"),
        ("[log]\nlevel = \"loud=[\"", "log.level"),
        ("[runtime]\nthreads = 2", "runtime"),
        ("[audit]\nfsync = \"sometimes\"", "audit.fsync"),
        ("[audit]\ncheckpoint_every = 0", "audit.checkpoint_every"),
        ("[audit]\nbatch_delay = \"soon\"", "audit.batch_delay"),
        ("[guard]\nmode = \"block\"", "guard.mode"),
        (
            "[guard]\nmode = \"enforce\"\ncgroups = [\"a\"]\nallow = [\"10.0.0.1:99999\"]",
            "guard.allow.0",
        ),
        ("[guard]\ngateway = [\"gw.example:443\"]", "guard.gateway.0"),
        ("[guard]\npin_dir = \"relative\"", "guard.pin_dir"),
        ("[guard]\ncgroups = [\"../escape\"]", "guard.cgroups.0"),
    ];
    for (extra, path) in cases {
        // Tables named in `extra` must not be repeated: append to the minimal file.
        let text = format!("{MINIMAL}\n{extra}\n");
        let e = err(&text);
        assert!(e.starts_with(path), "{extra}: {e}");
        assert!(e.contains("(line "), "{extra}: {e}");
    }
}

#[test]
fn missing_sections_are_named() {
    assert!(err("").starts_with("listener: missing"));
    let no_tls = MINIMAL.replace(
        "[[tls.certificate]]\ncert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n",
        "",
    );
    assert!(err(&no_tls).starts_with("tls.certificate: missing"));
}

#[test]
fn an_enforcing_guard_needs_cgroups() {
    let e = err(&format!("{MINIMAL}\n[guard]\nmode = \"enforce\"\n"));
    assert!(e.starts_with("guard.cgroups: missing"), "{e}");
}

#[test]
fn guard_serve_ports_include_the_listeners() {
    let c = Fixture::new()
        .parse(&format!("{MINIMAL}\n[guard]\nmode = \"monitor\"\ncgroups = [\"model.slice\"]\nserve_ports = [22]\n"))
        .expect("guard config");
    assert_eq!(c.guard.serve_ports, [22, 8443]);
}

#[test]
fn identity_and_policy_errors_name_the_key() {
    let fx = Fixture::new();
    let parse = |extra: &str| match fx.parse(&format!("{MINIMAL}\n{extra}\n")) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    };
    let cases = [
        ("[[policy.rules]]\nid = \"a\"\nrequire_region = false\naction = \"allow\"\nupstream = \"nope\"", "policy.rules.0.upstream"),
        ("[[policy.rules]]\nid = \"a\"\nrequire_region = false\naction = \"maybe\"", "policy.rules.0.action"),
        ("[[policy.rules]]\nid = \"a\"\naction = \"allow\"", "policy.rules.0.require_region"),
        ("[[policy.rules]]\nid = \"a\"\nrequire_region = false\nkinds = [\"root\"]\naction = \"allow\"", "policy.rules.0.kinds.0"),
        ("[[policy.rules]]\nid = \"a\"\nrequire_region = false\npaths = [\"v1\"]\naction = \"allow\"", "policy.rules.0.paths.0"),
        ("[[policy.rules]]\nid = \"a\"\nrequire_region = false\naction = \"allow\"\n[[policy.rules]]\nid = \"a\"\nrequire_region = false\naction = \"deny\"", "policy.rules.1.id"),
        ("[identity.jwt]\njwks_file = \"missing.json\"\nissuers = [\"i\"]\naudiences = [\"a\"]", "identity.jwt.jwks_file"),
        ("[identity.jwt]\njwks_file = \"tls/server.pem\"\nissuers = [\"i\"]\naudiences = [\"a\"]", "identity.jwt.jwks_file"),
        ("[[identity.api_keys]]\nid = \"k\"\nsha256 = \"abc\"", "identity.api_keys.0.sha256"),
        ("[residency]\nregion = \"EU Central\"", "residency.region"),
    ];
    for (extra, path) in cases {
        let e = parse(extra);
        assert!(e.starts_with(path), "{extra}: {e}");
    }
    // Listener keys: an unreadable client CA, mtls without a CA, an unknown source.
    for (listener, path) in [
        ("client_ca = \"missing.pem\"", "listener.0.client_ca"),
        ("identity = [\"mtls\"]", "listener.0.client_ca"),
        ("identity = [\"kerberos\"]", "listener.0.identity.0"),
        ("identity = [\"jwt\"]", "identity.jwt"),
        ("identity = [\"api_key\"]", "identity.api_keys"),
        ("backlog = 0", "listener.0.backlog"),
        ("backlog = 70000", "listener.0.backlog"),
        ("max_connections = 0", "listener.0.max_connections"),
        (
            "max_connections_per_ip = 0",
            "listener.0.max_connections_per_ip",
        ),
    ] {
        let text = MINIMAL.replace(
            "upstream = \"model\"\n",
            &format!("upstream = \"model\"\n{listener}\n"),
        );
        let e = match fx.parse(&text) {
            Ok(_) => panic!("accepted: {listener}"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with(path), "{listener}: {e}");
    }
    // A secret never appears in an error message.
    let e = parse("[[identity.api_keys]]\nid = \"k\"\nsha256 = \"not-hex-s3cr3t\"");
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[test]
fn a_shadowed_rule_is_a_warning() {
    let text = format!(
        "{MINIMAL}\n[[policy.rules]]\nid = \"all\"\nrequire_region = false\naction = \"deny\"\n\n[[policy.rules]]\nid = \"narrow\"\nrequire_region = false\npaths = [\"/v1/models\"]\naction = \"allow\"\n"
    );
    let c = Fixture::new().parse(&text).expect("valid");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("`narrow` is shadowed by the earlier rule `all`"),
        "{:?}",
        c.warnings
    );
    let reordered = format!(
        "{MINIMAL}\n[[policy.rules]]\nid = \"narrow\"\nrequire_region = false\npaths = [\"/v1/models\"]\naction = \"allow\"\n\n[[policy.rules]]\nid = \"all\"\nrequire_region = false\naction = \"deny\"\n"
    );
    assert!(Fixture::new()
        .parse(&reordered)
        .expect("valid")
        .warnings
        .is_empty());
}

#[test]
fn syntax_error_gives_a_line() {
    let e = err("[[listener]\naddress = 1");
    assert!(e.contains("(line 1)"), "{e}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("-1s"), None);
}

#[test]
fn http2_limits_are_range_checked_by_key() {
    let fx = Fixture::new();
    for (key, value) in [
        ("max_concurrent_streams", "0"),
        ("max_frame_bytes", "100"),
        ("initial_stream_window_bytes", "10"),
        ("max_header_list_bytes", "99999999"),
        ("max_control_frames", "0"),
        ("control_frames_per_second", "0"),
    ] {
        let text = format!("{MINIMAL}\n[http2]\n{key} = {value}\n");
        let e = fx.parse(&text).expect_err(key).to_string();
        assert!(e.contains(&format!("http2.{key}")), "{e}");
    }
    let c = fx
        .parse(&format!(
            "{MINIMAL}\n[http2]\nmax_concurrent_streams = 7\nmax_control_frames = 50\n"
        ))
        .expect("valid");
    assert_eq!(c.http2.max_concurrent_streams, 7);
    assert_eq!(c.http2.max_control_frames, 50);
}

#[test]
fn h2c_listeners_must_be_loopback_and_without_client_certificates() {
    let fx = Fixture::new();
    let text = format!(
        "{MINIMAL}\n[[listener]]\naddress = \"0.0.0.0:8081\"\nupstream = \"model\"\nprotocol = \"h2c\"\n"
    );
    let e = fx.parse(&text).expect_err("non-loopback h2c").to_string();
    assert!(e.contains("listener.1.address"), "{e}");
    let text = format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:8081\"\nupstream = \"model\"\nprotocol = \"h2\"\n"
    );
    let e = fx.parse(&text).expect_err("unknown protocol").to_string();
    assert!(e.contains("listener.1.protocol"), "{e}");
    let text = format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:8081\"\nupstream = \"model\"\nprotocol = \"h2c\"\n"
    );
    let c = fx.parse(&text).expect("loopback h2c");
    assert!(c.listeners[1].h2c && !c.listeners[0].h2c);
}

#[test]
fn admin_endpoint_is_loopback_only() {
    let fx = Fixture::new();
    let e = fx
        .parse(&format!("{MINIMAL}\n[admin]\naddress = \"0.0.0.0:9901\"\n"))
        .expect_err("public admin")
        .to_string();
    assert!(e.contains("admin.address"), "{e}");
    let c = fx
        .parse(&format!(
            "{MINIMAL}\n[admin]\naddress = \"127.0.0.1:9901\"\n"
        ))
        .expect("loopback admin");
    assert_eq!(c.admin.map(|a| a.port()), Some(9901));
    assert_eq!(fx.parse(MINIMAL).expect("minimal").admin, None);
}

#[test]
fn runtime_user_must_exist() {
    let fx = Fixture::new();
    let text = MINIMAL.replacen(
        "[[listener]]",
        "[runtime]\nuser = \"no-such-user-here\"\n\n[[listener]]",
        1,
    );
    let e = fx.parse(&text).expect_err("unknown user").to_string();
    assert!(e.contains("runtime.user"), "{e}");
    let text = MINIMAL.replacen(
        "[[listener]]",
        "[runtime]\nuser = \"root\"\n\n[[listener]]",
        1,
    );
    assert_eq!(
        fx.parse(&text).expect("root exists").user.as_deref(),
        Some("root")
    );
}

#[test]
fn audit_shipping_stays_in_the_region() {
    let ship = |table: &str| format!("{MINIMAL}\n[audit.ship]\n{table}\n");
    // Outside the region: refused, the key named.
    let e = err(&ship(
        "address = \"203.0.113.5:6514\"\nca_file = \"tls/server.pem\"",
    ));
    assert!(e.starts_with("audit.ship.address"), "{e}");
    assert!(e.contains("may not leave the region"), "{e}");
    // In a listed in-region network the address passes (and the next check is the CA file).
    let e = err(&format!(
        "{}\n[residency]\nin_region_cidrs = [\"10.20.0.0/16\"]\n",
        ship("address = \"10.20.0.5:6514\"\nca_file = \"tls/server.pem\"")
    ));
    assert!(e.starts_with("audit.ship"), "{e}");
    assert!(!e.contains("may not leave"), "{e}");
    assert!(e.contains("ca_file"), "the fake CA file does not load: {e}");
    for (table, key) in [
        ("ca_file = \"tls/server.pem\"", "audit.ship.address"),
        ("address = \"collector:6514\"\nca_file = \"tls/server.pem\"", "audit.ship.address"),
        ("address = \"127.0.0.1:6514\"", "audit.ship.ca_file"),
        ("address = \"127.0.0.1:6514\"\nca_file = \"nope.pem\"", "audit.ship.ca_file"),
        (
            "address = \"127.0.0.1:6514\"\nca_file = \"tls/server.pem\"\nclient_cert = \"tls/server.pem\"",
            "audit.ship.client_key",
        ),
        (
            "address = \"127.0.0.1:6514\"\nca_file = \"tls/server.pem\"\nhostname = \"two words\"",
            "audit.ship.hostname",
        ),
        (
            "address = \"127.0.0.1:6514\"\nca_file = \"tls/server.pem\"\nretry_max = \"soon\"",
            "audit.ship.retry_max",
        ),
        ("address = \"127.0.0.1:6514\"\nport = 1", "audit.ship"),
    ] {
        let e = err(&ship(table));
        assert!(e.starts_with(key), "{table:?}: {e}");
    }
}
