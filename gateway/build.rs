//! Embeds the guard's kernel object when `cargo xtask build-ebpf` has built it.
//!
//! The object is looked for at one fixed path, `target/ebpf/moat-guard.o` under the workspace
//! root (or `$MOAT_GUARD_OBJECT`). When it is there, it is copied into `OUT_DIR` and the
//! `moat_guard` cfg is set, so `guard::OBJECT` holds it. When it is not, moat builds without the
//! guard and says so at run time; `cargo check/clippy/test -p moat` thus work without nightly or
//! bpf-linker.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(moat_guard)");
    println!("cargo::rerun-if-env-changed=MOAT_GUARD_OBJECT");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let object = std::env::var_os("MOAT_GUARD_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/moat-guard.o"));
    // Watch the directory, created empty when missing, so the first build of the object is
    // noticed; a watched path that does not exist would make every build rerun this script and
    // recompile the crate.
    if let Some(dir) = object.parent() {
        let _ = std::fs::create_dir_all(dir);
        if dir.exists() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    if object.exists() {
        println!("cargo::rerun-if-changed={}", object.display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("moat-guard.o");
    if object.is_file() && std::fs::copy(&object, &out).is_ok() {
        println!("cargo::rustc-cfg=moat_guard");
    } else if let Err(e) = std::fs::write(&out, []) {
        println!("cargo::warning=cannot write {}: {e}", out.display());
    }
}
