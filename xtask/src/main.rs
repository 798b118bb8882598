//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `test`: everything CI checks — format, clippy with warnings denied, the `moat` binary build
//!   (debug, and release for the README's `cargo run --release -- demo`), and every workspace
//!   test (unit tests and the end-to-end crate, which starts the binary).
//! - `build-ebpf`: the guard's kernel object, with nightly, rust-src and bpf-linker set up
//!   when missing.
//! - `bench`: moat against nginx and HAProxy, one proxy core each, over every row of the peer
//!   table (see docs/benchmarks.md).
//! - `bench-guard`: what the egress guard costs a fenced process (connect latency, loopback
//!   throughput, ns per program run), with and without the guard, in a child cgroup; needs root.
//! - `fuzz`: the parsers' fuzz targets (`fuzz/`, cargo-fuzz on nightly), each for a bounded time
//!   from its committed seed corpus; `test` runs them briefly too.
//! - `install`: builds moat with the guard and installs the binary, the systemd unit, an example
//!   configuration (never over an existing one) and the docs; `--uninstall` reverses it.

mod bench;
mod bench_guard;
mod ebpf;
mod fuzz;
mod install;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-guard") => bench_guard::run(&args[1..]),
        Some("build-ebpf") => ebpf::build().map(|_| ()),
        Some("fuzz") => fuzz::run_cli(&args[1..]),
        Some("install") => install::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test | build-ebpf | fuzz [--seconds N] [--sanitizer address|none] [TARGET…] \
                 | bench [--duration SECS] [--rows LIST] [--moat-bin PATH] [--redaction] … \
                 | bench-guard [--connects N] [--seconds S] [--rounds N] \
                 | install [--prefix P] [--destdir D] [--uninstall]>"
            );
            std::process::exit(2);
        }
    }
}

/// The value that follows `flag` on the command line.
pub(crate) fn flag_value<'a>(
    it: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<String> {
    it.next()
        .cloned()
        .with_context(|| format!("{flag} needs a value"))
}

/// The number that follows `flag` on the command line.
pub(crate) fn flag_number<'a, T: std::str::FromStr>(
    it: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<T> {
    parse_as(&flag_value(it, flag)?, flag)
}

/// `s` parsed as a `T`; the error names `what`.
pub(crate) fn parse_as<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .ok()
        .with_context(|| format!("{what}: cannot read {s:?}"))
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command in the workspace root, failing with its name when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("+ {shown}");
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    // The guard's kernel object first, so the moat binary under test embeds it and the guard
    // tests run against real programs.
    ebpf::build()?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The end-to-end tests start this binary; build it first so they test the current code.
    run(cargo().args(["build", "-p", "moat", "--bin", "moat"]))?;
    // The README test runs `cargo run --release -- demo` as written; the same selection built
    // here first (default members, binary `moat`) leaves it nothing to compile while the other
    // tests run.
    run(cargo().args(["build", "--release", "--bin", "moat"]))?;
    // Tests that skip for something this machine lacks name themselves in this file (see
    // `tests/src/skip.rs`); they count as skipped, not passed.
    let skip_log = std::env::temp_dir().join(format!("moat-skipped-{}", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    let mut tests = cargo();
    tests
        .args(["test", "--workspace"])
        .env("MOAT_BIN", root().join("target/debug/moat"))
        .env("MOAT_SKIP_LOG", &skip_log);
    let ((passed, failed), outcome) = run_counting(&mut tests);
    // Then the parsers' fuzz targets, briefly, from their seed corpora (a crash fails the run).
    let outcome = outcome.and_then(|()| {
        fuzz::fuzz(&fuzz::Plan {
            seconds: 10,
            sanitizer: "none".into(),
            targets: Vec::new(),
        })
    });
    let skipped: Vec<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&skip_log);
    for s in &skipped {
        println!("skipped: {s}");
    }
    // One closing line for the whole run, so the total comes last rather than the last crate's
    // (often empty) doc-test count.
    println!("{}", total(passed, failed, skipped.len() as u64));
    outcome
}

/// The closing line: tests that skipped returned early as passed, so they come off `passed`.
fn total(passed: u64, failed: u64, skipped: u64) -> String {
    format!(
        "xtask test: {} passed, {failed} failed, {skipped} skipped",
        passed.saturating_sub(skipped)
    )
}

/// Runs `cargo test`, echoing its output, and adds up the `test result:` lines: (passed,
/// failed) as far as it got, and whether it succeeded.
fn run_counting(cmd: &mut Command) -> ((u64, u64), Result<()>) {
    use std::io::{BufRead, BufReader};
    let shown = format!("{cmd:?}");
    eprintln!("+ {shown}");
    let mut counts = (0, 0);
    let outcome = (|| {
        let mut child = cmd
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.context("reading test output")?;
                println!("{line}");
                if let Some(rest) = line.strip_prefix("test result: ") {
                    counts.0 += count(rest, "passed");
                    counts.1 += count(rest, "failed");
                }
            }
        }
        let status = child.wait().context("waiting for cargo test")?;
        if !status.success() {
            bail!("{shown} failed with {status}");
        }
        Ok(())
    })();
    (counts, outcome)
}

/// The number before `label` in a `test result:` line (`ok. 12 passed; 0 failed; …`).
fn count(line: &str, label: &str) -> u64 {
    line.split(['.', ';'])
        .find_map(|part| part.trim().strip_suffix(label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_test_result_lines() {
        let line =
            "ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s";
        assert_eq!(super::count(line, "passed"), 12);
        assert_eq!(super::count(line, "failed"), 3);
        assert_eq!(
            super::count("FAILED. 1 passed; 2 failed; 0 ignored", "failed"),
            2
        );
    }

    #[test]
    fn skipped_tests_are_not_counted_as_passed() {
        assert_eq!(
            super::total(40, 1, 3),
            "xtask test: 37 passed, 1 failed, 3 skipped"
        );
        assert_eq!(
            super::total(5, 0, 0),
            "xtask test: 5 passed, 0 failed, 0 skipped"
        );
    }
}
