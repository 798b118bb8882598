//! Skipping a test that needs something this machine lacks (root, a tool, a Python package).
//!
//! Under `CI=true` a skip is a failure: CI installs everything the tests need (`.ci/run`), so a
//! skip there means a missing install step. Elsewhere the test returns early as passed, says why
//! on stderr, and, when `cargo xtask test` runs it, appends its name to the file named by
//! `MOAT_SKIP_LOG`, so the run's total reports it as skipped rather than passed.

use std::io::Write;

/// Skips the calling test for `why`; panics under `CI=true`. The caller returns right after.
pub fn skip(why: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name}: {why}; CI=true forbids skipping (.ci/run installs what tests need)"
    );
    eprintln!("skipping {name}: {why}");
    if let Some(log) = std::env::var_os("MOAT_SKIP_LOG") {
        let line = format!("{name}: {why}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot note the skip in {}: {e}", log.to_string_lossy());
        }
    }
}

/// Whether `tool --version` runs; if not, the calling test is skipped (see [`skip`]).
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip(&format!("{tool} is not installed"));
    }
    found
}
