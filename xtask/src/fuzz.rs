//! `cargo xtask fuzz [--seconds N] [--sanitizer address|none] [TARGET…]`: builds the fuzz
//! targets in `fuzz/` with cargo-fuzz (nightly; both installed when missing) and runs each for
//! `N` seconds (default 60) from its committed seed corpus. New inputs go to a scratch corpus
//! under `fuzz/target/corpus/`, never into the committed one; a crash fails the run and leaves
//! its input in `fuzz/artifacts/<target>/` — add it to `fuzz/corpus/<target>/` with the fix, and
//! `cargo test` replays it from then on (`moat::fuzz::tests::the_seed_corpora_pass`).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{flag_number, flag_value, root, run};

/// What to fuzz, and how long.
pub(crate) struct Plan {
    pub(crate) seconds: u64,
    /// cargo-fuzz's `--sanitizer`: `address` finds memory errors in unsafe code and C (slower to
    /// build), `none` panics, hangs and runaway memory only.
    pub(crate) sanitizer: String,
    /// Empty: every target.
    pub(crate) targets: Vec<String>,
}

pub(crate) fn run_cli(args: &[String]) -> Result<()> {
    let mut plan = Plan {
        seconds: 60,
        sanitizer: "address".into(),
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => plan.seconds = flag_number(&mut it, a)?,
            "--sanitizer" => plan.sanitizer = flag_value(&mut it, a)?,
            t if !t.starts_with('-') => plan.targets.push(t.to_owned()),
            other => bail!("fuzz: unknown option {other}"),
        }
    }
    fuzz(&plan)
}

/// The targets in `fuzz/fuzz_targets/`, by name.
fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// `cargo +nightly …` in `fuzz/`, without the userspace toolchain's settings.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root().join("fuzz"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    c
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("fuzz: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

pub(crate) fn fuzz(plan: &Plan) -> Result<()> {
    crate::ebpf::ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let chosen = if plan.targets.is_empty() {
        all.clone()
    } else {
        plan.targets.clone()
    };
    if let Some(t) = chosen.iter().find(|t| !all.contains(t)) {
        bail!("fuzz: no target {t} (have: {})", all.join(", "));
    }
    let sanitizer = ["--sanitizer", plan.sanitizer.as_str()];
    run(nightly_cargo().arg("fuzz").arg("build").args(sanitizer))
        .context("building the fuzz targets")?;
    let max_time = format!("-max_total_time={}", plan.seconds);
    for t in &chosen {
        let scratch = root().join("fuzz/target/corpus").join(t);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let seeds = root().join("fuzz/corpus").join(t);
        run(nightly_cargo()
            .args(["fuzz", "run"])
            .args(sanitizer)
            .arg(t)
            .arg(&scratch)
            .arg(&seeds)
            .args(["--", &max_time, "-rss_limit_mb=2048", "-timeout=10"]))
        .with_context(|| {
            format!(
                "fuzz target {t} failed: the input is in fuzz/artifacts/{t}/ \
                 (reproduce with `cargo +nightly fuzz run {t} FILE` in fuzz/)"
            )
        })?;
    }
    eprintln!(
        "fuzz: {} target(s), {} s each, no crash",
        chosen.len(),
        plan.seconds
    );
    Ok(())
}
