//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `test`: everything CI checks — format, clippy with warnings denied, the `moat` binary build,
//!   and every workspace test (unit tests and the end-to-end crate, which starts the binary).
//! - `bench`: load tests against a fast upstream, directly, through moat and through nginx.

mod bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <test | bench [--duration SECS] [--connections N]>");
            std::process::exit(2);
        }
    }
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
    let status = cmd
        .current_dir(root())
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
    run(cargo()
        .args(["test", "--workspace"])
        .env("MOAT_BIN", root().join("target/debug/moat")))?;
    Ok(())
}
