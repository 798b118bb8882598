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

/// `moat demo` prints curl commands; each works exactly as printed.
#[test]
fn demo_prints_curl_commands_that_work() {
    let port = free_port();
    let mut demo = Command::new(binary())
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat demo");
    let stdout = demo.stdout.take().expect("stdout");
    let mut commands = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("curl ") {
            commands.push(line);
        } else if line.starts_with("Ctrl-C") {
            break;
        }
    }
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
            .contains("You said: Hello, my email is jane@example.com"),
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
