//! Command-line options of `cargo xtask bench`, and what they select.

use anyhow::{bail, ensure, Result};

/// Command-line settings.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) duration: u64,
    pub(super) warmup: u64,
    pub(super) connections: u32,
    pub(super) rounds: usize,
    /// moat's `[audit] fsync`: `always`, `batch` or `never`.
    pub(super) fsync: String,
    pub(super) keep: bool,
    /// Drive the proxies over HTTP/2 with h2load instead of HTTP/1.1 with wrk.
    pub(super) h2: bool,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            duration: 10,
            warmup: 2,
            connections: 32,
            rounds: 1,
            fsync: "batch".into(),
            keep: false,
            h2: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--duration" => o.duration = crate::flag_number(&mut it, a)?,
                "--warmup" => o.warmup = crate::flag_number(&mut it, a)?,
                "--connections" => o.connections = crate::flag_number(&mut it, a)?,
                "--rounds" => o.rounds = crate::flag_number(&mut it, a)?,
                "--fsync" => {
                    let mode = crate::flag_value(&mut it, a)?;
                    ensure!(
                        ["always", "batch", "never"].contains(&mode.as_str()),
                        "--fsync: expected always, batch or never, not {mode:?}"
                    );
                    o.fsync = mode;
                }
                "--keep" => o.keep = true,
                "--h2" => o.h2 = true,
                _ => bail!(
                    "bench: unknown argument {a:?}; flags: --duration SECS, --connections N, \
                     --warmup SECS, --rounds N, --fsync always|batch|never, --keep, --h2"
                ),
            }
        }
        ensure!(o.duration > 0, "--duration must be at least 1");
        ensure!(o.connections > 0, "--connections must be at least 1");
        ensure!(o.rounds > 0, "--rounds must be at least 1");
        Ok(o)
    }
}

/// One measured target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Direct,
    Moat,
    Nginx,
}

impl Target {
    pub(super) const ALL: [Self; 3] = [Self::Direct, Self::Moat, Self::Nginx];

    /// Name of the process that serves this target.
    pub(super) fn process(self) -> &'static str {
        match self {
            Self::Direct => "upstream",
            Self::Moat => "moat",
            Self::Nginx => "nginx-proxy",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Direct => "upstream direct (http)",
            Self::Moat => "moat (https)",
            Self::Nginx => "nginx proxy (https)",
        }
    }
}

/// One request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scenario {
    Get,
    Post,
}

impl Scenario {
    pub(super) const ALL: [Self; 2] = [Self::Get, Self::Post];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Get => "GET small body",
            Self::Post => "POST ~1 KiB JSON",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() -> Result<()> {
        let args: Vec<String> = ["--duration", "3", "--connections", "8"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let o = Options::parse(&args)?;
        assert_eq!((o.duration, o.connections, o.rounds), (3, 8, 1));
        assert_eq!(o.fsync, "batch");
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
        let o = Options::parse(&["--fsync".to_owned(), "always".to_owned()])?;
        assert_eq!(o.fsync, "always");
        assert!(Options::parse(&["--fsync".to_owned(), "sometimes".to_owned()]).is_err());
        Ok(())
    }
}
