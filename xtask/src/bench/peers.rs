//! The configurations of the servers: the upstream, moat and the peer proxies.

use std::net::Ipv4Addr;
use std::path::Path;

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

/// The wrk script for the JSON POST.
pub(super) fn post_script() -> String {
    format!(
        "-- Written by `cargo xtask bench`.\nwrk.method = \"POST\"\nwrk.body = [==[{}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
        post_body()
    )
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
pub(super) fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "# Written by `cargo xtask bench`.\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}-error.log warn;\n\
         events {{ worker_connections 4096; }}\n"
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

/// The fast upstream: fixed answers with `return 200`, for GET and for the JSON POST.
pub(super) fn upstream_config(dir: &Path, port: u16) -> String {
    format!(
        "{common}http {{\n{http}\
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
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "upstream"),
        http = nginx_http_common(dir, "upstream"),
        get = GET_BODY.replace('\n', "\\n"),
    )
}

/// nginx as the peer: TLS termination with moat's certificate, keep-alive to the upstream.
pub(super) fn proxy_config(
    dir: &Path,
    cert: &Path,
    key: &Path,
    port: u16,
    upstream: u16,
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
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        common = nginx_common(dir, "nginx-proxy"),
        http = nginx_http_common(dir, "nginx-proxy"),
        cert = cert.display(),
        key = key.display(),
    )
}

/// moat with one runtime worker in front of the upstream, its audit trail fsynced per `fsync`.
pub(super) fn moat_config(
    cert: &Path,
    key: &Path,
    port: u16,
    upstream: u16,
    fsync: &str,
) -> String {
    format!(
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
         dir = \"audit\"\n\
         key_dir = \"state\"\n\
         fsync = \"{fsync}\"\n\
         \n\
         [[policy.rules]]\n\
         id = \"bench-allow-all\"\n\
         require_region = false\n\
         action = \"allow\"\n",
        cert = cert.display(),
        key = key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_body_is_one_kib_of_json() {
        let body = post_body();
        assert_eq!(body.len(), POST_SIZE);
        assert!(body.starts_with('{') && body.ends_with('}'));
        assert!(!body.contains("]==]"));
    }
}
