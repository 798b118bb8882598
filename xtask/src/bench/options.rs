//! Command-line options of `cargo xtask bench`, and the rows and targets they select.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

/// One measured row of the results table (the latency rows come from `H1Get` and `H2Get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Row {
    /// Small GET over HTTP/1.1 with `h2load --h1`.
    H1Get,
    /// ~1 KiB JSON POST over HTTP/1.1 with `h2load --h1 -d`.
    H1Post,
    /// Small GET over HTTP/2 with `h2load -m 10`.
    H2Get,
    /// ~1 KiB JSON POST over HTTP/2 with `h2load -m 10 -d`.
    H2Post,
    /// Small GET over HTTP/1.1 with wrk.
    WrkGet,
    /// A 1 MiB response body over HTTP/1.1 with `h2load --h1`.
    Download,
    /// A new TLS 1.3 connection (full handshake) for every request.
    Handshake,
    /// Memory per idle HTTP/1.1 TLS connection.
    IdleH1,
    /// Memory per idle HTTP/2 TLS connection (after the preface and SETTINGS exchange).
    IdleH2,
    /// The slowest of a paced normal client's HTTP/1.1 GETs while slow heads and slow bodies
    /// are held against the proxy (the `__slow` subcommand).
    SlowClients,
}

impl Row {
    pub(super) const ALL: [Self; 10] = [
        Self::H1Get,
        Self::H1Post,
        Self::H2Get,
        Self::H2Post,
        Self::WrkGet,
        Self::Download,
        Self::Handshake,
        Self::IdleH1,
        Self::IdleH2,
        Self::SlowClients,
    ];

    /// The name `--rows` knows the row by.
    pub(super) fn id(self) -> &'static str {
        match self {
            Self::H1Get => "h1-get",
            Self::H1Post => "h1-post",
            Self::H2Get => "h2-get",
            Self::H2Post => "h2-post",
            Self::WrkGet => "wrk-get",
            Self::Download => "download",
            Self::Handshake => "handshake",
            Self::IdleH1 => "idle-h1",
            Self::IdleH2 => "idle-h2",
            Self::SlowClients => "slow-clients",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::H1Get => "h1 GET (h2load --h1)",
            Self::H1Post => "h1 POST ~1 KiB JSON (h2load --h1)",
            Self::H2Get => "h2 GET (h2load -m 10)",
            Self::H2Post => "h2 POST ~1 KiB JSON (h2load -m 10)",
            Self::WrkGet => "wrk h1 GET",
            Self::Download => "1 MiB download (h2load --h1)",
            Self::Handshake => "new TLS 1.3 handshakes",
            Self::IdleH1 => "idle TLS connection, h1",
            Self::IdleH2 => "idle TLS connection, h2",
            Self::SlowClients => "slowest h1 GET among 250 slow heads + 250 slow bodies",
        }
    }

    /// Unit of the row's figure.
    pub(super) fn unit(self) -> &'static str {
        match self {
            Self::Download => "MiB/s",
            Self::Handshake => "handshakes/s",
            Self::IdleH1 | Self::IdleH2 => "KiB/conn",
            Self::SlowClients => "ms",
            _ => "req/s",
        }
    }

    /// Memory rows: a smaller figure is better, and no load generator runs.
    pub(super) fn is_idle(self) -> bool {
        matches!(self, Self::IdleH1 | Self::IdleH2)
    }

    /// Whether a larger figure is better (throughput) or a smaller one (memory, latency).
    pub(super) fn higher_is_better(self) -> bool {
        !self.is_idle() && self != Self::SlowClients
    }

    /// Decimals the table shows the row's figure with.
    pub(super) fn decimals(self) -> usize {
        usize::from(self.is_idle() || self == Self::SlowClients)
    }

    /// Rows whose runs also give the p50/p99 latency rows.
    pub(super) fn has_latency(self) -> bool {
        matches!(self, Self::H1Get | Self::H2Get)
    }

    /// The rows a `--rows` list names, in table order: ids separated by commas; `idle` stands
    /// for both idle rows and `all` for every row.
    pub(super) fn parse_list(list: &str) -> Result<Vec<Self>> {
        let mut picked = Vec::new();
        for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match id {
                "all" => picked.extend(Self::ALL),
                "idle" => picked.extend([Self::IdleH1, Self::IdleH2]),
                _ => picked.push(Self::ALL.into_iter().find(|r| r.id() == id).with_context(
                    || {
                        format!(
                            "--rows: unknown row {id:?}; rows: {}, idle, all",
                            Self::ALL.map(Self::id).join(", ")
                        )
                    },
                )?),
            }
        }
        ensure!(!picked.is_empty(), "--rows: no row given");
        picked.sort();
        picked.dedup();
        Ok(picked)
    }
}

/// One measured proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Target {
    Moat,
    Nginx,
    Haproxy,
    /// moat again, with the default redaction profile on its allow rule (`--redaction`).
    MoatRedaction,
}

impl Target {
    /// The peers moat is compared with.
    pub(super) const PEERS: [Self; 2] = [Self::Nginx, Self::Haproxy];

    /// Name of the process that serves this target (also its log's name).
    pub(super) fn process(self) -> &'static str {
        match self {
            Self::Moat => "moat",
            Self::Nginx => "nginx-proxy",
            Self::Haproxy => "haproxy",
            Self::MoatRedaction => "moat-redaction",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Moat => "moat",
            Self::Nginx => "nginx",
            Self::Haproxy => "HAProxy",
            Self::MoatRedaction => "moat + redaction",
        }
    }

    /// Whether this is moat (errors through it fail the command).
    pub(super) fn is_moat(self) -> bool {
        matches!(self, Self::Moat | Self::MoatRedaction)
    }
}

/// Command-line settings.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) duration: u64,
    pub(super) warmup: u64,
    pub(super) connections: u32,
    pub(super) rounds: usize,
    /// moat's `[audit] fsync`; `None` leaves moat's default (nothing is written).
    pub(super) fsync: Option<String>,
    pub(super) keep: bool,
    /// A prebuilt moat instead of `cargo build --release`.
    pub(super) moat_bin: Option<PathBuf>,
    pub(super) rows: Vec<Row>,
    /// Also measure moat with the default redaction profile.
    pub(super) redaction: bool,
    /// Steal time of the proxy's CPU, in percent, above which a run is taken again.
    pub(super) max_steal: f64,
    /// Connections held open by the idle rows.
    pub(super) idle_connections: usize,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            duration: 10,
            warmup: 2,
            connections: 32,
            rounds: 1,
            fsync: None,
            keep: false,
            moat_bin: None,
            rows: Row::ALL.to_vec(),
            redaction: false,
            max_steal: 5.0,
            idle_connections: 1000,
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
                    o.fsync = Some(mode);
                }
                "--keep" => o.keep = true,
                "--moat-bin" => o.moat_bin = Some(PathBuf::from(crate::flag_value(&mut it, a)?)),
                "--rows" => o.rows = Row::parse_list(&crate::flag_value(&mut it, a)?)?,
                "--redaction" => o.redaction = true,
                "--max-steal" => o.max_steal = crate::flag_number(&mut it, a)?,
                "--idle-connections" => o.idle_connections = crate::flag_number(&mut it, a)?,
                _ => bail!(
                    "bench: unknown argument {a:?}; flags: --duration SECS, --warmup SECS, \
                     --connections N, --rounds N, --rows LIST, --moat-bin PATH, --redaction, \
                     --fsync always|batch|never, --max-steal PCT, --idle-connections N, --keep"
                ),
            }
        }
        ensure!(o.duration > 0, "--duration must be at least 1");
        ensure!(o.connections > 0, "--connections must be at least 1");
        ensure!(o.rounds > 0, "--rounds must be at least 1");
        ensure!(
            o.max_steal.is_finite() && o.max_steal >= 0.0,
            "--max-steal must be a percentage"
        );
        ensure!(
            o.idle_connections > 0,
            "--idle-connections must be at least 1"
        );
        Ok(o)
    }

    /// The targets measured, in the order each row runs them.
    pub(super) fn targets(&self) -> Vec<Target> {
        let mut t = vec![Target::Moat, Target::Nginx, Target::Haproxy];
        if self.redaction {
            t.push(Target::MoatRedaction);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults() -> Result<()> {
        let o = Options::parse(&[])?;
        assert_eq!(
            (o.duration, o.warmup, o.connections, o.rounds),
            (10, 2, 32, 1)
        );
        assert_eq!(o.fsync, None, "moat's own default unless --fsync is given");
        assert_eq!(o.rows, Row::ALL.to_vec());
        assert!(!o.redaction && !o.keep && o.moat_bin.is_none());
        assert!((o.max_steal - 5.0).abs() < 1e-9);
        assert_eq!(o.idle_connections, 1000);
        assert_eq!(
            o.targets(),
            vec![Target::Moat, Target::Nginx, Target::Haproxy]
        );
        Ok(())
    }

    #[test]
    fn every_flag() -> Result<()> {
        let o = Options::parse(&args(&[
            "--duration",
            "3",
            "--warmup",
            "1",
            "--connections",
            "8",
            "--rounds",
            "3",
            "--fsync",
            "always",
            "--moat-bin",
            "/opt/moat",
            "--rows",
            "h2-get, h1-get,idle",
            "--redaction",
            "--max-steal",
            "2.5",
            "--idle-connections",
            "50",
            "--keep",
        ]))?;
        assert_eq!(
            (o.duration, o.warmup, o.connections, o.rounds),
            (3, 1, 8, 3)
        );
        assert_eq!(o.fsync.as_deref(), Some("always"));
        assert_eq!(o.moat_bin, Some(PathBuf::from("/opt/moat")));
        assert_eq!(
            o.rows,
            vec![Row::H1Get, Row::H2Get, Row::IdleH1, Row::IdleH2],
            "table order, not command-line order"
        );
        assert!(o.redaction && o.keep);
        assert!((o.max_steal - 2.5).abs() < 1e-9);
        assert_eq!(o.idle_connections, 50);
        assert_eq!(o.targets().last(), Some(&Target::MoatRedaction));
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            &["--bogus"][..],
            &["--fsync", "sometimes"],
            &["--duration", "0"],
            &["--duration", "ten"],
            &["--rounds"],
            &["--rows", "h3-get"],
            &["--rows", ","],
            &["--max-steal", "-1"],
            &["--max-steal", "NaN"],
            &["--idle-connections", "0"],
            &["--h2"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn row_lists() -> Result<()> {
        assert_eq!(Row::parse_list("all")?, Row::ALL.to_vec());
        assert_eq!(
            Row::parse_list("download,download,handshake")?,
            vec![Row::Download, Row::Handshake]
        );
        for row in Row::ALL {
            assert_eq!(Row::parse_list(row.id())?, vec![row]);
        }
        Ok(())
    }

    #[test]
    fn row_directions() {
        assert!(Row::H1Get.higher_is_better() && Row::Handshake.higher_is_better());
        assert!(!Row::IdleH1.higher_is_better() && !Row::IdleH2.higher_is_better());
        assert!(!Row::SlowClients.higher_is_better(), "milliseconds");
        assert_eq!((Row::H1Get.decimals(), Row::SlowClients.decimals()), (0, 1));
        let with_latency: Vec<Row> = Row::ALL.into_iter().filter(|r| r.has_latency()).collect();
        assert_eq!(with_latency, vec![Row::H1Get, Row::H2Get]);
    }
}
