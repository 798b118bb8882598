//! The configurations of the servers: the upstream, moat and the peer proxies.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

/// The only address anything in the benchmark listens on or connects to.
pub(super) const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Body of the small GET response.
pub(super) const GET_BODY: &str = "moat bench: a small fixed body\n";
/// Path the JSON POST goes to.
pub(super) const POST_PATH: &str = "/v1/chat/completions";
/// Body of the JSON POST response.
pub(super) const POST_REPLY: &str = r#"{"id":"bench","object":"chat.completion","choices":[]}"#;
/// Size of the JSON POST request body.
pub(super) const POST_SIZE: usize = 1024;
/// Path of the large response.
pub(super) const DOWNLOAD_PATH: &str = "/download.bin";
/// Size of the large response body.
pub(super) const DOWNLOAD_SIZE: usize = 1 << 20;
/// The id of the API key every load generator sends, and the principal moat's rule allows.
pub(super) const API_KEY_ID: &str = "bench-client";

/// A ~1 KiB chat-completions-like JSON request body.
pub(super) fn post_body() -> String {
    let head = r#"{"model":"bench","messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let fill = POST_SIZE.saturating_sub(head.len() + tail.len());
    let text: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(fill)
        .collect();
    format!("{head}{text}{tail}")
}

/// nginx command-line arguments: prefix, configuration and early error log in `dir`.
pub(super) fn nginx_args(dir: &Path, name: &str, conf: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        format!("{}/", dir.display()),
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        dir.join(format!("{name}-error.log")).display().to_string(),
    ]
}

/// The parts of an nginx configuration both instances share: one process in the foreground,
/// everything in `dir`, no access log, keep-alive connections never closed for request counts.
pub(super) fn nginx_common(dir: &Path, name: &str, connections: usize) -> String {
    let d = dir.display();
    format!(
        "# Written by `cargo xtask bench`.\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}-error.log warn;\n\
         events {{ worker_connections {connections}; }}\n"
    )
}

pub(super) fn nginx_http_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "    access_log off;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   keepalive_timeout 75s;\n\
         \x20   client_body_temp_path {d}/{name}-body;\n\
         \x20   proxy_temp_path {d}/{name}-proxy;\n\
         \x20   fastcgi_temp_path {d}/{name}-fastcgi;\n\
         \x20   uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20   scgi_temp_path {d}/{name}-scgi;\n"
    )
}

/// The large response body: 1 MiB of printable bytes that compress poorly.
pub(super) fn download_body() -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..DOWNLOAD_SIZE)
        .map(|_| {
            // xorshift32: the same bytes every run.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'!' + (x % 94) as u8
        })
        .collect()
}

/// The fast upstream: fixed answers with `return 200` for GET and for the JSON POST, and the
/// 1 MiB file in `www` (`application/octet-stream`) for the download.
pub(super) fn upstream_config(dir: &Path, port: u16, www: &Path) -> String {
    format!(
        "{common}http {{\n{http}\
         \x20   sendfile on;\n\
         \x20   server {{\n\
         \x20       listen {LOOPBACK}:{port};\n\
         \x20       location / {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"{get}\";\n\
         \x20       }}\n\
         \x20       location = {POST_PATH} {{\n\
         \x20           default_type application/json;\n\
         \x20           return 200 '{POST_REPLY}';\n\
         \x20       }}\n\
         \x20       location = {DOWNLOAD_PATH} {{\n\
         \x20           root {www};\n\
         \x20           types {{ }}\n\
         \x20           default_type application/octet-stream;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "upstream", 4096),
        http = nginx_http_common(dir, "upstream"),
        get = GET_BODY.replace('\n', "\\n"),
        www = www.display(),
    )
}

/// nginx as a peer: TLS termination with moat's certificate, HTTP/2 on the same listener,
/// keep-alive to the upstream, responses never spooled to disk, room for `connections`.
pub(super) fn nginx_proxy_config(
    dir: &Path,
    cert: &Path,
    key: &Path,
    (port, upstream): (u16, u16),
    connections: usize,
) -> String {
    format!(
        "{common}http {{\n{http}\
         \x20   upstream fast {{\n\
         \x20       server {LOOPBACK}:{upstream};\n\
         \x20       keepalive 64;\n\
         \x20       keepalive_requests 100000000;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {LOOPBACK}:{port} ssl http2;\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://fast;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20           proxy_max_temp_file_size 0;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "nginx-proxy", connections),
        http = nginx_http_common(dir, "nginx-proxy"),
        cert = cert.display(),
        key = key.display(),
    )
}

/// The PEM file HAProxy loads: the certificate chain and its key in one file.
pub(super) fn haproxy_pem(cert: &Path, key: &Path) -> Result<String> {
    let mut pem =
        fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(
        &fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?,
    );
    Ok(pem)
}

/// HAProxy as a peer: one thread in the foreground (`-db`), TLS with moat's certificate and
/// key (`pem`, see [`haproxy_pem`]), ALPN h2 and http/1.1, keep-alive to the upstream with
/// `http-reuse always`, no logging (no `log` line anywhere), `tune.bufsize` left at its default,
/// room for `connections`.
pub(super) fn haproxy_config(pem: &Path, port: u16, upstream: u16, connections: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# Written by `cargo xtask bench`. No `log` line: HAProxy logs nothing.\n\
         global\n\
         \x20   nbthread 1\n\
         \x20   maxconn {connections}\n\
         \x20   ssl-default-bind-options ssl-min-ver TLSv1.2\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   option http-keep-alive\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 75s\n\
         \x20   timeout server 120s\n\
         \x20   timeout http-request 10s\n\
         \x20   timeout http-keep-alive 75s\n\
         \n\
         frontend bench\n\
         \x20   bind {LOOPBACK}:{port} ssl crt {pem} alpn h2,http/1.1\n\
         \x20   default_backend fast\n\
         \n\
         backend fast\n\
         \x20   http-reuse always\n\
         \x20   server upstream {LOOPBACK}:{upstream}\n",
        pem = pem.display(),
    );
    s
}

/// What moat's configuration varies in.
pub(super) struct MoatConf<'a> {
    pub(super) cert: &'a Path,
    pub(super) key: &'a Path,
    pub(super) port: u16,
    pub(super) upstream: u16,
    /// `[audit] fsync`; `None` leaves moat's default.
    pub(super) fsync: Option<&'a str>,
    /// Hex SHA-256 of the API key the load generators send.
    pub(super) api_key_sha256: &'a str,
    /// Attach the default redaction profile (every built-in entity) to the allow rule.
    pub(super) redaction: bool,
    /// Prefix of the audit trail's and signing key's directories (relative to the file).
    pub(super) state: &'a str,
}

/// moat as production runs it: one runtime worker, callers identified by API key, a policy
/// rule allowing that key's principal, the audit trail on (fsynced per moat's default unless
/// `fsync` is set), and with `redaction` the default profile on that rule.
pub(super) fn moat_config(c: &MoatConf<'_>) -> String {
    let mut s = format!(
        "# Written by `cargo xtask bench`.\n\
         [runtime]\n\
         worker_threads = 1\n\
         \n\
         [log]\n\
         level = \"warn\"\n\
         format = \"text\"\n\
         \n\
         [[listener]]\n\
         address = \"{LOOPBACK}:{port}\"\n\
         upstream = \"model\"\n\
         identity = [\"api_key\"]\n\
         \n\
         [[tls.certificate]]\n\
         cert_file = \"{cert}\"\n\
         key_file = \"{key}\"\n\
         \n\
         [upstreams.model]\n\
         address = \"{LOOPBACK}:{upstream}\"\n\
         \n\
         # The audit trail lives in the bench's own directory (relative to this file).\n\
         [audit]\n\
         dir = \"{state}-audit\"\n\
         key_dir = \"{state}-state\"\n",
        port = c.port,
        upstream = c.upstream,
        cert = c.cert.display(),
        key = c.key.display(),
        state = c.state,
    );
    if let Some(mode) = c.fsync {
        let _ = writeln!(s, "fsync = \"{mode}\"");
    }
    let _ = write!(
        s,
        "\n\
         [[identity.api_keys]]\n\
         id = \"{API_KEY_ID}\"\n\
         sha256 = \"{sha}\"\n\
         groups = [\"bench\"]\n\
         \n\
         [[policy.rules]]\n\
         id = \"bench-client\"\n\
         kinds = [\"api_key\"]\n\
         principals = [\"{API_KEY_ID}\"]\n\
         require_region = false\n\
         action = \"allow\"\n",
        sha = c.api_key_sha256,
    );
    if c.redaction {
        s.push_str(
            "redaction = \"default\"\n\
             \n\
             # No settings: every built-in entity, both directions, `replace`.\n\
             [redaction.profiles.default]\n",
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_body_is_one_kib_of_json() {
        let body = post_body();
        assert_eq!(body.len(), POST_SIZE);
        assert!(body.starts_with('{') && body.ends_with('}'));
        assert!(body.contains(r#""model":"bench""#));
    }

    fn conf<'a>(fsync: Option<&'a str>, redaction: bool) -> MoatConf<'a> {
        MoatConf {
            cert: Path::new("/b/server.pem"),
            key: Path::new("/b/server.key"),
            port: 8443,
            upstream: 8080,
            fsync,
            api_key_sha256: "ab12",
            redaction,
            state: "moat",
        }
    }

    #[test]
    fn moat_runs_as_production_would() {
        let c = moat_config(&conf(None, false));
        for want in [
            "worker_threads = 1",
            "identity = [\"api_key\"]",
            "[[identity.api_keys]]\nid = \"bench-client\"\nsha256 = \"ab12\"",
            "kinds = [\"api_key\"]\nprincipals = [\"bench-client\"]",
            "action = \"allow\"",
            "dir = \"moat-audit\"",
            "address = \"127.0.0.1:8443\"",
        ] {
            assert!(c.contains(want), "{want:?} missing from\n{c}");
        }
        assert!(!c.contains("fsync"), "moat's default fsync unless asked");
        assert!(!c.contains("redaction"));
        let c = moat_config(&conf(Some("always"), true));
        assert!(c.contains(
            "[audit]\ndir = \"moat-audit\"\nkey_dir = \"moat-state\"\nfsync = \"always\"\n"
        ));
        assert!(c.contains("action = \"allow\"\nredaction = \"default\"\n"));
        assert!(c.trim_end().ends_with("[redaction.profiles.default]"));
    }

    #[test]
    fn haproxy_config_has_the_key_settings() {
        let c = haproxy_config(Path::new("/b/haproxy.pem"), 9443, 8080, 3024);
        let lines: Vec<&str> = c.lines().map(str::trim).collect();
        for want in [
            "nbthread 1",
            "mode http",
            "bind 127.0.0.1:9443 ssl crt /b/haproxy.pem alpn h2,http/1.1",
            "http-reuse always",
            "option http-keep-alive",
            "server upstream 127.0.0.1:8080",
            "maxconn 3024",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from\n{c}");
        }
        assert!(
            !lines.iter().any(|l| l.starts_with("log ")),
            "logging is off"
        );
        assert!(!c.contains("tune.bufsize"), "default buffer size");
        assert!(!c.contains("daemon"), "runs in the foreground with -db");
        assert!(!c.contains("0.0.0.0"));
    }

    #[test]
    fn haproxy_pem_is_chain_then_key() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("moat-bench-pem-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----",
        )?;
        fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n",
        )?;
        let pem = haproxy_pem(&cert, &key)?;
        fs::remove_dir_all(&dir)?;
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pem.contains("-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----"));
        Ok(())
    }

    #[test]
    fn nginx_proxy_speaks_h2_and_keeps_upstream_connections() {
        let c = nginx_proxy_config(
            Path::new("/b"),
            Path::new("/b/c"),
            Path::new("/b/k"),
            (9443, 8080),
            3024,
        );
        assert!(c.contains("listen 127.0.0.1:9443 ssl http2;"));
        assert!(c.contains("server 127.0.0.1:8080;"));
        assert!(c.contains("events { worker_connections 3024; }"));
        assert!(c.contains("keepalive 64;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
        assert!(c.contains("master_process off;"));
    }

    #[test]
    fn upstream_serves_the_download() {
        let c = upstream_config(Path::new("/b"), 8080, Path::new("/b/www"));
        assert!(c.contains("location = /download.bin {"));
        assert!(c.contains("default_type application/octet-stream;"));
        let body = download_body();
        assert_eq!(body.len(), 1 << 20);
        assert_eq!(body, download_body(), "the same bytes every time");
        assert!(body.iter().all(|b| b.is_ascii_graphic()));
    }
}
