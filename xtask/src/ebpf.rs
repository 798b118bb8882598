//! `cargo xtask build-ebpf`: builds the guard's kernel object, installing what the build needs
//! when it is missing (printing each step):
//!
//! 1. the nightly toolchain (`rustup toolchain install nightly`);
//! 2. its `rust-src` component (the kernel crate builds `core` itself);
//! 3. `bpf-linker`, built against nightly's own LLVM (a prefix directory holding links to
//!    nightly's `libLLVM`, passed as `LLVM_PREFIX`), since Debian ships no matching libLLVM.
//!
//! The object lands at `target/ebpf/moat-guard.o`, the one path `gateway/build.rs` embeds.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, run};

/// Where the object is written; `gateway/build.rs` reads it from here.
pub(crate) fn object_path() -> PathBuf {
    root().join("target/ebpf/moat-guard.o")
}

pub(crate) fn build() -> Result<PathBuf> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    let guard = root().join("ebpf/guard");
    // The crate's own rust-toolchain.toml selects nightly and its .cargo/config.toml the target,
    // build-std and RUSTFLAGS; the userspace RUSTFLAGS must not leak in.
    run(Command::new("cargo")
        .args(["+nightly", "build", "--release"])
        .current_dir(&guard)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC"))
    .context("building the guard programs")?;
    let built = root().join("target/ebpf/bpfel-unknown-none/release/moat-guard");
    let out = object_path();
    std::fs::copy(&built, &out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    eprintln!("guard object: {}", out.display());
    Ok(out)
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ensure_nightly() -> Result<()> {
    let have = output(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|t| t.lines().any(|l| l.starts_with("nightly")));
    if !have {
        eprintln!("build-ebpf: installing the nightly toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let have = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .is_some_and(|c| c.lines().any(|l| l.starts_with("rust-src")));
    if !have {
        eprintln!("build-ebpf: adding rust-src to nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// A directory that stays put across clones (bpf-linker's runpath points into it).
fn llvm_prefix() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("moat/llvm-prefix")
}

/// Links every `libLLVM*` of nightly into `<prefix>/lib` (both the plain name the build looks
/// for and the versioned name the binary needs at run time).
fn link_llvm(prefix: &std::path::Path) -> Result<String> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("nightly rustc --print sysroot")?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let mut major = None;
    for entry in std::fs::read_dir(&libdir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("libLLVM") {
            continue;
        }
        let link = lib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(entry.path(), &link)?;
        if let Some(v) = name
            .strip_prefix("libLLVM.so.")
            .and_then(|r| r.split('.').next())
        {
            major = Some(v.to_owned());
            let plain = lib.join("libLLVM.so");
            let _ = std::fs::remove_file(&plain);
            std::os::unix::fs::symlink(entry.path(), &plain)?;
        }
    }
    match major {
        Some(m) => Ok(m),
        None => bail!("no libLLVM.so.* in {}", libdir.display()),
    }
}

fn ensure_bpf_linker() -> Result<()> {
    let prefix = llvm_prefix();
    // Refresh the links every time: a nightly update moves the library.
    let major = link_llvm(&prefix)?;
    if output(Command::new("bpf-linker").arg("--version")).is_some() {
        return Ok(());
    }
    eprintln!(
        "build-ebpf: installing bpf-linker against nightly's LLVM {major} (prefix {})",
        prefix.display()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .current_dir(std::env::temp_dir()))
    .context("installing bpf-linker")?;
    if output(Command::new("bpf-linker").arg("--version")).is_none() {
        bail!("bpf-linker was installed but does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}
