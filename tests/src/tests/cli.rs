//! The command line: `moat check`, `moat cert init`, `moat demo`.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::gateway::{binary, free_port};

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["cert", "init", "--dir"])
        .arg(dir.path().join("tls"))
        .args(["--host", "localhost"])
        .output()
        .expect("cert init");
    assert!(out.status.success());
    let file = dir.path().join("moat.toml");
    std::fs::write(&file, config).expect("write");
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("moat check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const GOOD: &str = r#"
[[listener]]
address = "127.0.0.1:8443"
upstream = "model"

[[tls.certificate]]
cert_file = "tls/server.pem"
key_file = "tls/server.key"

[upstreams.model]
address = "127.0.0.1:8000"
"#;

#[test]
fn check_accepts_a_good_file_and_summarizes_it() {
    let (code, text) = check(GOOD);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(
        text.contains("127.0.0.1:8443 -> upstream model at 127.0.0.1:8000"),
        "{text}"
    );
}

#[test]
fn check_names_each_problem_and_exits_64() {
    let cases = [
        (
            "typo'd key",
            GOOD.replace(
                "address = \"127.0.0.1:8000\"",
                "adress = \"127.0.0.1:8000\"",
            ),
            "upstreams.model.adress (line 11)",
        ),
        (
            "bad address",
            GOOD.replace("127.0.0.1:8443", "127.0.0.1:99999"),
            "listener.0.address (line 3)",
        ),
        (
            "non-local upstream",
            GOOD.replace("127.0.0.1:8000", "203.0.113.7:8000"),
            "upstream is not local",
        ),
        (
            "missing certificate",
            GOOD.replace("tls/server.pem", "tls/nope.pem"),
            "tls.certificate.0.cert_file (line 7)",
        ),
        (
            "key that does not match",
            GOOD.replace("tls/server.key", "tls/client.key"),
            "key does not match",
        ),
        ("not TOML", "[[listener]\n".to_owned(), "(line 1)"),
        (
            "audit shipped out of the region",
            format!("{GOOD}\n[audit.ship]\naddress = \"198.51.100.20:6514\"\nca_file = \"tls/ca.pem\"\n"),
            "audit.ship.address",
        ),
    ];
    for (name, config, expected) in cases {
        let (code, text) = check(&config);
        assert_eq!(code, 64, "{name}: {text}");
        assert!(text.contains("invalid configuration"), "{name}: {text}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in {text}"
        );
    }
}

#[test]
fn run_with_an_invalid_file_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("moat.toml");
    std::fs::write(&file, "[[listener]]\naddress = \"x\"\n").expect("write");
    let out = Command::new(binary())
        .arg("run")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("moat run");
    assert_eq!(out.status.code(), Some(64));
}

/// Starts `moat demo` on `port`; returns it and what it printed up to its "Ctrl-C" line.
fn start_demo(port: u16) -> (std::process::Child, Vec<String>) {
    let mut demo = Command::new(binary())
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat demo");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let last = line.starts_with("Ctrl-C");
        lines.push(line);
        if last {
            break;
        }
    }
    (demo, lines)
}

/// `moat demo` prints curl commands; each works exactly as printed.
#[test]
fn demo_prints_curl_commands_that_work() {
    let port = free_port();
    let (mut demo, lines) = start_demo(port);
    let commands: Vec<String> = lines
        .into_iter()
        .filter(|l| l.starts_with("curl "))
        .collect();
    let outputs: Vec<(bool, String)> = commands
        .iter()
        .map(|cmd| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("{cmd} -sS --fail --max-time 20"))
                .output()
                .expect("curl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .collect();
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert!(
        commands
            .iter()
            .all(|c| c.contains(&format!("localhost:{port}"))),
        "{commands:?}"
    );
    for ((ok, out), cmd) in outputs.iter().zip(&commands) {
        assert!(ok, "{cmd} failed: {out}");
    }
    assert!(outputs[0].1.contains("moat-demo"), "{}", outputs[0].1);
    assert!(
        outputs[1]
            .1
            .contains("You said: Hello, my email is <EMAIL_ADDRESS>"),
        "masked on the way in: {}",
        outputs[1].1
    );
    assert!(
        !outputs[1].1.contains("jane@example.com"),
        "{}",
        outputs[1].1
    );
    let events = outputs[2].1.matches("data: ").count();
    assert!(
        events > 3,
        "streamed answer arrives as several events: {}",
        outputs[2].1
    );
    assert!(
        outputs[2].1.trim_end().ends_with("data: [DONE]"),
        "{}",
        outputs[2].1
    );
}

/// The official `openai` Python client, streaming and not, through `moat demo`: what it gets back
/// is masked as the demo's profile says.
#[test]
fn openai_python_client_through_the_demo() {
    let have = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        crate::skip::skip("the openai Python package is missing (pip install openai)");
        return;
    }
    let port = free_port();
    let (mut demo, lines) = start_demo(port);
    let ca = lines
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.ends_with("ca.pem")))
        .map(str::to_owned);
    let ca = ca.expect("the demo printed its CA path");
    let script = r#"
import sys
from openai import OpenAI
try:
    import httpx2 as httpx
except ImportError:
    import httpx
client = OpenAI(base_url=sys.argv[1], api_key="unused", http_client=httpx.Client(verify=sys.argv[2]))
msg = [{"role": "user", "content": "mail jane.doe@example.com, card 4111 1111 1111 1111"}]
r = client.chat.completions.create(model="moat-demo", messages=msg)
print("NONSTREAM:" + r.choices[0].message.content)
s = client.chat.completions.create(model="moat-demo", stream=True, messages=msg)
print("STREAM:" + "".join((c.choices[0].delta.content or "") for c in s if c.choices))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &format!("https://localhost:{port}/v1"), &ca])
        .output()
        .expect("python3");
    let _ = demo.kill();
    let _ = demo.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["NONSTREAM:", "STREAM:"] {
        let got = text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in {text}"));
        assert_eq!(
            got, "You said: mail <EMAIL_ADDRESS>, card <CREDIT_CARD>",
            "{line}"
        );
    }
}

/// `curl --http2` and `nghttp` (Debian `nghttp2-client`) against `moat demo`: the demo's own
/// commands over HTTP/2 give the same answers, and nghttp negotiates h2 and streams the SSE
/// answer, masked.
#[test]
fn curl_http2_and_nghttp_against_the_demo() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("nghttp") || !have("curl") {
        crate::skip::skip("curl or nghttp is missing (apt-get install curl nghttp2-client)");
        return;
    }
    let port = free_port();
    let (mut demo, lines) = start_demo(port);
    let commands: Vec<String> = lines
        .into_iter()
        .filter(|l| l.starts_with("curl "))
        .collect();
    let sh = |cmd: &str| {
        let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let curl: Vec<(bool, String)> = commands
        .iter()
        .map(|c| {
            sh(&format!(
                "{c} --http2 -sS --fail --max-time 20 -w '\\nHTTP/%{{http_version}}'"
            ))
        })
        .collect();
    let base = format!("https://localhost:{port}");
    let body = r#"{"model":"moat-demo","stream":true,"messages":[{"role":"user","content":"Mail jane@example.com please"}]}"#;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), body).expect("write body");
    let models = sh(&format!("nghttp -v {base}/v1/models"));
    let stream = sh(&format!(
        "nghttp -H 'content-type: application/json' -d {} {base}/v1/chat/completions",
        file.path().display()
    ));
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(curl.len(), 3, "{commands:?}");
    for ((ok, out), cmd) in curl.iter().zip(&commands) {
        assert!(ok, "{cmd} --http2 failed: {out}");
        assert!(out.trim_end().ends_with("HTTP/2"), "{cmd}: {out}");
    }
    assert!(curl[0].1.contains("moat-demo"), "{}", curl[0].1);
    assert!(curl[1].1.contains("<EMAIL_ADDRESS>"), "{}", curl[1].1);
    assert!(curl[2].1.matches("data: ").count() > 3, "{}", curl[2].1);
    assert!(models.0, "{}", models.1);
    assert!(
        models.1.contains("The negotiated protocol: h2"),
        "{}",
        models.1
    );
    assert!(models.1.contains(":status: 200"), "{}", models.1);
    assert!(models.1.contains("moat-demo"), "{}", models.1);
    assert!(stream.0, "{}", stream.1);
    assert!(
        stream.1.trim_end().ends_with("data: [DONE]"),
        "{}",
        stream.1
    );
    assert!(!stream.1.contains("jane@example.com"), "{}", stream.1);
}

/// `[audit.ship]` to a collector on loopback passes `moat check`, its certificates loaded, and
/// the summary says where the records go.
#[test]
fn check_summarizes_audit_shipping() {
    let (code, text) = check(&format!(
        "{GOOD}\n[audit.ship]\naddress = \"127.0.0.1:6514\"\nca_file = \"tls/ca.pem\"\nhostname = \"gpu-07\"\n"
    ));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("audit shipping: RFC 5424 over TLS to 127.0.0.1:6514 (certificate name 127.0.0.1), as host gpu-07"),
        "{text}"
    );
}
