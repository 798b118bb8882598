//! `cargo xtask bench` (filled in below).
use anyhow::{bail, Result};

pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!("bench: not available yet")
}
