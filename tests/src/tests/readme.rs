//! The README holds to its word: its commands, read from `README.md` itself, run as written.
//!
//! - "Try it": the command is run from the repository root exactly as written, every `curl` line it prints is run as printed and must answer 2xx,
//!   the email address in the chat request must come back masked, and Ctrl-C stops it cleanly.
//! - "Run it": every command is run with `moat` meaning the binary under test and the
//!   documented system directories (`/etc/moat`, `/var/lib/moat`) moved into a temporary
//!   directory, against `config/moat.example.toml`.
//! - "Try a profile on your own samples": the `moat redact` commands print what is shown.
//! - "Test": `.ci/run` runs exactly the README's test command.
//!
//! "Try it" and "Run it" both want port 8443 (the demo's default and the example listener), so
//! they take turns.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use crate::gateway::binary;

/// Held by each test that binds port 8443.
static PORT_8443: Mutex<()> = Mutex::new(());

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The commands in the first `sh` code block of the README section headed `heading`, one per
/// line, trailing `# comments` removed.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("README section {heading:?} has no sh block"));
    block
        .lines()
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Sends `signal` to the process group led by `child`.
fn signal_group(child: &Child, signal: nix::sys::signal::Signal) {
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    nix::sys::signal::killpg(pgid, signal).expect("signal the process group");
}

/// Waits up to `within` for `child` to exit.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let step = Duration::from_millis(50);
    for _ in 0..=within.as_millis() / step.as_millis() {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(step);
    }
    None
}

/// Runs a `curl` command line as printed, adding only output flags; (HTTP status, body).
fn curl(command: &str) -> (u16, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} -sS --max-time 30 -w '\\n%{{http_code}}'"
        ))
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The first word of `command` that looks like an email address, quotes and JSON stripped.
fn email_in(command: &str) -> Option<String> {
    command
        .split(|c: char| c.is_whitespace() || "\"'{}[],:".contains(c))
        .find(|w| w.contains('@') && w.contains('.'))
        .map(str::to_owned)
}

/// Kills the whole process group when the test ends early.
struct GroupGuard(Option<Child>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if let Ok(None) = child.try_wait() {
                signal_group(child, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

/// README "Try it": run as written from the repository root (a release build, as it says), each
/// printed `curl` line answers 2xx, the email address comes back masked, Ctrl-C stops it cleanly.
#[test]
fn readme_try_it_works_as_written() {
    if !crate::skip::have("curl") {
        return;
    }
    let _port = PORT_8443.lock().unwrap_or_else(|e| e.into_inner());
    let commands = readme_commands("Try it");
    assert_eq!(
        commands,
        ["cargo run --release -- demo"],
        "the README's first command"
    );
    // Plain words, no shell syntax: run as a terminal's shell would, without a shell between
    // the terminal's Ctrl-C and the command.
    let words: Vec<&str> = commands[0].split_whitespace().collect();
    let mut demo = Command::new(words[0])
        .args(&words[1..])
        .current_dir(root())
        // Its own process group, so Ctrl-C can be sent as a terminal would: to the group.
        .process_group(0)
        .env_remove("CARGO_TARGET_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the README's first command");
    let stdout = demo.stdout.take().expect("stdout");
    let stderr = demo.stderr.take().expect("stderr");
    let mut demo = GroupGuard(Some(demo));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    // `cargo xtask test` builds the release binary first; on its own the build may take minutes.
    let mut printed = Vec::new();
    while !printed
        .last()
        .is_some_and(|l: &String| l.starts_with("Ctrl-C"))
    {
        // Each line within 20 minutes: the first may wait for a whole release build.
        match rx.recv_timeout(Duration::from_secs(1200)) {
            Ok(line) => printed.push(line),
            Err(_) => {
                drop(demo);
                panic!(
                    "no Ctrl-C line; printed {printed:?}; stderr: {}",
                    errors.join().unwrap_or_default()
                );
            }
        }
    }
    let curls: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 3, "{printed:?}");
    let answers: Vec<(u16, String)> = curls.iter().map(|c| curl(c)).collect();
    for (command, (status, body)) in curls.iter().zip(&answers) {
        assert!((200..300).contains(status), "{command} -> {status}: {body}");
    }
    let email = email_in(curls[1]).expect("the second command carries an email address");
    assert!(!answers[1].1.contains(&email), "{}", answers[1].1);
    assert!(answers[1].1.contains("<EMAIL_ADDRESS>"), "{}", answers[1].1);
    let dir = printed
        .iter()
        .find_map(|l| l.strip_prefix("certificates, configuration and audit trail in "))
        .map(PathBuf::from)
        .expect("the demo names its directory");
    assert!(dir.exists(), "{}", dir.display());

    let child = demo.0.as_mut().expect("running");
    signal_group(child, nix::sys::signal::Signal::SIGINT);
    let status = wait_exit(child, Duration::from_secs(30)).expect("Ctrl-C stops the demo");
    assert!(status.success(), "exit status after Ctrl-C: {status}");
    assert!(!dir.exists(), "the demo removes {} on exit", dir.display());
}

/// README "Run it": `moat cert init`, `moat check` against the example configuration with the
/// certificates just written, `moat run` serving, and `moat --help`.
#[test]
fn readme_run_it_works_as_written() {
    if !crate::skip::have("curl") {
        return;
    }
    let _port = PORT_8443.lock().unwrap_or_else(|e| e.into_inner());
    let commands = readme_commands("Run it");
    let names: Vec<&str> = commands
        .iter()
        .map(|c| c.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(names, ["cert", "check", "run", "--help"], "{commands:?}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let etc = tmp.path().join("etc/moat");
    let var = tmp.path().join("var/lib/moat");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let relocate = |s: &str| {
        s.replace("/etc/moat", &etc.display().to_string())
            .replace("/var/lib/moat", &var.display().to_string())
    };
    let example =
        std::fs::read_to_string(root().join("config/moat.example.toml")).expect("example");
    std::fs::write(etc.join("moat.toml"), relocate(&example)).expect("write config");
    let host = commands[0]
        .split_whitespace()
        .skip_while(|w| *w != "--host")
        .nth(1)
        .expect("cert init names a host")
        .to_owned();

    let command = |line: &str| {
        let mut words = relocate(line)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .into_iter();
        assert_eq!(words.next().as_deref(), Some("moat"), "{line}");
        let mut cmd = Command::new(binary());
        cmd.args(words);
        cmd
    };
    let finished = |line: &str| {
        let out = command(line).output().expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{line}: {text}");
        text
    };

    finished(&commands[0]);
    for file in ["ca.pem", "server.pem", "server.key"] {
        assert!(
            etc.join("tls").join(file).exists(),
            "cert init wrote {file}"
        );
    }
    let summary = finished(&commands[1]);
    assert!(summary.contains("configuration OK"), "{summary}");
    let help = finished(&commands[3]);
    for sub in ["run", "check", "cert", "demo", "audit", "guard"] {
        assert!(help.contains(sub), "--help lists {sub}: {help}");
    }

    // `moat run` serves the example configuration: a TLS request for the certificate's host is
    // answered (403: the example's policy denies by default), SIGTERM stops it with status 0.
    let log = std::fs::File::create(tmp.path().join("moat.log")).expect("log file");
    let mut run = command(&commands[2])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("moat run");
    let ca = etc.join("tls/ca.pem");
    let probe = format!(
        "curl --cacert {} --resolve {host}:8443:127.0.0.1 https://{host}:8443/v1/models",
        ca.display()
    );
    let mut answer = (0, String::new());
    for _ in 0..300 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{probe} -sS --max-time 5 -o /dev/null -w '%{{http_code}}'"
            ))
            .output()
            .expect("curl");
        answer = (
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        if answer.0 != 0 || !matches!(run.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = wait_exit(&mut run, Duration::from_secs(30));
    if status.is_none() {
        let _ = run.kill();
        let _ = run.wait();
    }
    let log = std::fs::read_to_string(tmp.path().join("moat.log")).unwrap_or_default();
    assert_eq!(
        answer.0, 403,
        "moat run answers over TLS: {answer:?}\n{log}"
    );
    let status = status.expect("SIGTERM stops moat run");
    assert!(status.success(), "{status}: {log}");
    let trail = var.join("audit");
    let verify = Command::new(binary())
        .args(["audit", "verify"])
        .arg(&trail)
        .arg("--pubkey")
        .arg(var.join("audit-signing.pub"))
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "the trail moat run wrote verifies: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// README "Try a profile on your own samples": each command, run by `sh` with `moat` meaning the
/// binary under test, prints exactly the output shown below it.
#[test]
fn readme_redact_example_works_as_written() {
    let heading = "Try a profile on your own samples";
    let commands = readme_commands(heading);
    assert!(
        !commands.is_empty() && commands.iter().all(|c| c.contains("| moat redact")),
        "{commands:?}"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let shown = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .and_then(|s| s.split("```text\n").nth(1))
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("README section {heading:?} has no text block"))
        .to_owned();
    let mut printed = String::new();
    for line in &commands {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("moat() {{ \"$MOAT\" \"$@\"; }}\n{line}"))
            .env("MOAT", binary())
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        if !printed.ends_with('\n') {
            printed.push('\n');
        }
    }
    assert_eq!(printed, shown);
}

/// README "Test": `.ci/run` ends by running exactly the README's test command.
#[test]
fn ci_runs_the_readme_test_command() {
    let commands = readme_commands("Test");
    assert_eq!(commands, ["cargo xtask test"]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .expect(".ci/run runs something");
    assert_eq!(last, commands[0]);
}
