//! One check per target and request before the load runs (with curl, when present), so the runs
//! measure real answers. curl checks the certificate chain against the CA.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::options::Target;
use super::peers::{
    post_body, DOWNLOAD_PATH, DOWNLOAD_SIZE, GET_BODY, LOOPBACK, POST_PATH, POST_REPLY,
};
use super::procs::Tools;

/// One request to check.
struct Probe {
    what: &'static str,
    path: &'static str,
    post: bool,
    http2: bool,
    with_key: bool,
    status: &'static str,
    version: &'static str,
    /// The body expected, or only its size.
    body: Result<&'static str, usize>,
}

const PROBES: [Probe; 4] = [
    Probe {
        what: "h1 GET",
        path: "/",
        post: false,
        http2: false,
        with_key: true,
        status: "200",
        version: "1.1",
        body: Ok(GET_BODY),
    },
    Probe {
        what: "h1 POST",
        path: POST_PATH,
        post: true,
        http2: false,
        with_key: true,
        status: "200",
        version: "1.1",
        body: Ok(POST_REPLY),
    },
    Probe {
        what: "h2 GET",
        path: "/",
        post: false,
        http2: true,
        with_key: true,
        status: "200",
        version: "2",
        body: Ok(GET_BODY),
    },
    Probe {
        what: "1 MiB download",
        path: DOWNLOAD_PATH,
        post: false,
        http2: false,
        with_key: true,
        status: "200",
        version: "1.1",
        body: Err(DOWNLOAD_SIZE),
    },
];

/// moat without the API key: refused.
const NO_KEY: Probe = Probe {
    what: "GET without the API key",
    path: "/",
    post: false,
    http2: false,
    with_key: false,
    status: "401",
    version: "1.1",
    body: Err(usize::MAX),
};

/// Checks every target's answers (and that moat refuses a request without the key).
pub(super) fn check(
    tools: &Tools,
    targets: &[(Target, u16)],
    upstream_port: u16,
    ca: &Path,
    key: &str,
    dir: &Path,
) -> Result<()> {
    let Some(curl) = &tools.curl else {
        eprintln!("bench: curl not found; skipping the answer check before the load runs");
        return Ok(());
    };
    let post = post_body();
    let out = dir.join("smoke.out");
    for &(target, port) in targets {
        let probes = PROBES.iter().chain(target.is_moat().then_some(&NO_KEY));
        for p in probes {
            let url = format!("https://localhost:{port}{}", p.path);
            let mut cmd = Command::new(curl);
            cmd.args(["-sS", "--max-time", "10", "--cacert"])
                .arg(ca)
                .arg("--resolve")
                .arg(format!("localhost:{port}:{LOOPBACK}"))
                .arg(if p.http2 { "--http2" } else { "--http1.1" })
                .arg("-o")
                .arg(&out)
                .args(["-w", "%{http_code} %{http_version}"]);
            if p.with_key {
                cmd.args(["-H", &format!("authorization: Bearer {key}")]);
            }
            if p.post {
                cmd.args(["-H", "content-type: application/json", "--data-binary"])
                    .arg(&post);
            }
            let result = cmd
                .arg(&url)
                .output()
                .with_context(|| format!("cannot run {cmd:?}"))?;
            let got = String::from_utf8_lossy(&result.stdout);
            let body = fs::read(&out).unwrap_or_default();
            let want = format!("{} {}", p.status, p.version);
            let body_ok = match p.body {
                Ok(text) => body == text.as_bytes(),
                Err(usize::MAX) => true,
                Err(size) => body.len() == size,
            };
            ensure!(
                result.status.success() && got == want && body_ok,
                "{} via {} ({url}) answered {got:?} (want {want:?}) with {} body bytes: {} {}",
                p.what,
                target.label(),
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(200)]),
                String::from_utf8_lossy(&result.stderr).trim()
            );
        }
    }
    // The upstream on its own, over plain HTTP.
    let direct = Command::new(curl)
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{LOOPBACK}:{}/", upstream_port))
        .output()?;
    ensure!(
        direct.status.success() && direct.stdout == GET_BODY.as_bytes(),
        "the upstream answered {:?}",
        String::from_utf8_lossy(&direct.stdout)
    );
    let _ = fs::remove_file(&out);
    eprintln!(
        "bench: every target answers h1 GET, h1 POST, h2 GET and the 1 MiB download correctly"
    );
    Ok(())
}
