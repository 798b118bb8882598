//! The results table: medians over the rounds, moat against the best peer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::options::{Row, Target};
use super::parse::Sample;
use super::procs::Tools;

/// The median (the mean of the middle two for an even count); `None` for no values.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Every sample taken, by row and target, one per round.
#[derive(Debug, Default)]
pub(super) struct Results {
    samples: BTreeMap<(Row, Target), Vec<Sample>>,
}

impl Results {
    pub(super) fn push(&mut self, row: Row, target: Target, sample: Sample) {
        self.samples.entry((row, target)).or_default().push(sample);
    }

    pub(super) fn get(&self, row: Row, target: Target) -> &[Sample] {
        self.samples.get(&(row, target)).map_or(&[], Vec::as_slice)
    }

    /// The median over the rounds of one quantity.
    pub(super) fn median_of(
        &self,
        row: Row,
        target: Target,
        f: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<f64> {
        let v: Vec<f64> = self.get(row, target).iter().filter_map(f).collect();
        median(&v)
    }

    /// Every (row, target) that has samples.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Row, Target, &[Sample])> {
        self.samples
            .iter()
            .map(|((r, t), s)| (*r, *t, s.as_slice()))
    }
}

/// The best peer figure: the largest for throughput, the smallest for latency and memory.
pub(super) fn best(values: &[Option<f64>], higher_is_better: bool) -> Option<f64> {
    let known = values.iter().flatten().copied();
    if higher_is_better {
        known.reduce(f64::max)
    } else {
        known.reduce(f64::min)
    }
}

/// `value / best`, when both are known and `best` is not zero.
pub(super) fn ratio(value: Option<f64>, best: Option<f64>) -> Option<f64> {
    value.zip(best.filter(|b| *b != 0.0)).map(|(v, b)| v / b)
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.decimals$}"))
}

/// A figure cell: whole numbers for rates, one decimal for KiB and milliseconds.
fn figure(row: Row, v: Option<f64>) -> String {
    cell(v, row.decimals())
}

/// One Markdown line of the table.
fn line(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// A p50 and a p99.
type Pair = (Option<f64>, Option<f64>);

/// The table: one line per row (and two latency lines, from the h1 GET and h2 GET runs), the
/// median of each target, moat's ratio to the best peer (and moat with redaction's), and the
/// proxies' CPU and steal percentages.
pub(super) fn table(rows: &[Row], targets: &[Target], results: &Results) -> String {
    let peers: Vec<Target> = Target::PEERS
        .into_iter()
        .filter(|p| targets.contains(p))
        .collect();
    let redaction = targets.contains(&Target::MoatRedaction);
    let names: Vec<&str> = targets.iter().map(|t| t.label()).collect();
    let mut head = vec!["row".to_owned(), "unit".to_owned()];
    head.extend(names.iter().map(|n| (*n).to_owned()));
    head.push("moat / best peer".into());
    if redaction {
        head.push("moat + redaction / best peer".into());
    }
    head.push(format!("CPU % ({})", names.join(" / ")));
    head.push(format!("steal % ({})", names.join(" / ")));
    let mut s = line(&head) + "\n";
    let mut align = vec!["---".to_owned(); 2];
    align.extend(std::iter::repeat_n("---:".to_owned(), head.len() - 2));
    s += &(line(&align) + "\n");

    let value = |r: Row, t: Target| results.median_of(r, t, |x| Some(x.value));
    for &row in rows {
        let mut cells = vec![row.label().to_owned(), row.unit().to_owned()];
        cells.extend(targets.iter().map(|&t| figure(row, value(row, t))));
        let peer_best = best(
            &peers.iter().map(|&p| value(row, p)).collect::<Vec<_>>(),
            row.higher_is_better(),
        );
        cells.push(cell(ratio(value(row, Target::Moat), peer_best), 2));
        if redaction {
            cells.push(cell(ratio(value(row, Target::MoatRedaction), peer_best), 2));
        }
        let joined = |f: &dyn Fn(&Sample) -> Option<f64>, decimals: usize| {
            targets
                .iter()
                .map(|&t| cell(results.median_of(row, t, f), decimals))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        if row.is_idle() {
            cells.extend(["–".to_owned(), "–".to_owned()]);
        } else {
            cells.push(joined(&|x| x.server_cpu, 0));
            cells.push(joined(&|x| x.steal, 1));
        }
        s += &(line(&cells) + "\n");
        if row == Row::Handshake {
            s += &(per_cpu_line(targets, &peers, results) + "\n");
        }
    }
    for &row in rows.iter().filter(|r| r.has_latency()) {
        let short = if row == Row::H1Get {
            "h1 GET"
        } else {
            "h2 GET"
        };
        let mut cells = vec![format!("p50 / p99, {short}"), "ms".to_owned()];
        let p = |t: Target| {
            (
                results.median_of(row, t, |x| x.p50_ms),
                results.median_of(row, t, |x| x.p99_ms),
            )
        };
        cells.extend(targets.iter().map(|&t| {
            let (a, b) = p(t);
            format!("{} / {}", cell(a, 2), cell(b, 2))
        }));
        let best_of = |pick: fn(Pair) -> Option<f64>| {
            best(
                &peers.iter().map(|&t| pick(p(t))).collect::<Vec<_>>(),
                false,
            )
        };
        let (b50, b99) = (best_of(|x| x.0), best_of(|x| x.1));
        let ratios = |t: Target| {
            let (a, b) = p(t);
            format!("{} / {}", cell(ratio(a, b50), 2), cell(ratio(b, b99), 2))
        };
        cells.push(ratios(Target::Moat));
        if redaction {
            cells.push(ratios(Target::MoatRedaction));
        }
        cells.extend([format!("as {}", row.id()), format!("as {}", row.id())]);
        s += &(line(&cells) + "\n");
    }
    s
}

/// Handshakes per second of the proxy's CPU time: what the handshake row means when the client,
/// not the proxy, set the pace (the proxy's CPU % well below 100).
fn per_cpu_line(targets: &[Target], peers: &[Target], results: &Results) -> String {
    let row = Row::Handshake;
    let per_cpu = |t: Target| {
        results.median_of(row, t, |x| {
            x.server_cpu
                .filter(|c| *c > 0.0)
                .map(|c| x.value * 100.0 / c)
        })
    };
    let mut cells = vec![
        "new TLS 1.3 handshakes per proxy CPU-second".to_owned(),
        "handshakes/CPU-s".to_owned(),
    ];
    cells.extend(targets.iter().map(|&t| cell(per_cpu(t), 0)));
    let peer_best = best(&peers.iter().map(|&p| per_cpu(p)).collect::<Vec<_>>(), true);
    cells.push(cell(ratio(per_cpu(Target::Moat), peer_best), 2));
    if targets.contains(&Target::MoatRedaction) {
        cells.push(cell(ratio(per_cpu(Target::MoatRedaction), peer_best), 2));
    }
    cells.extend([format!("as {}", row.id()), format!("as {}", row.id())]);
    line(&cells)
}

/// Runs taken again for steal time, one line each.
pub(super) fn reruns(results: &Results) -> Vec<String> {
    results
        .iter()
        .flat_map(|(row, target, samples)| {
            samples
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.discarded_steal.is_empty())
                .map(move |(round, s)| {
                    let thrown: Vec<String> = s
                        .discarded_steal
                        .iter()
                        .map(|x| format!("{x:.1}%"))
                        .collect();
                    format!(
                        "{} via {} in round {}: taken {} more time(s) (steal {}); kept the run \
                         with {}",
                        row.id(),
                        target.label(),
                        round + 1,
                        thrown.len(),
                        thrown.join(", "),
                        cell(s.steal, 1) + "%"
                    )
                })
        })
        .collect()
}

/// Versions of the programs measured and the machine, for the report.
pub(super) fn versions(tools: &Tools, moat: &Path) -> String {
    let first_line = |cmd: &mut Command| {
        cmd.output()
            .map(|o| {
                let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.push_str(&String::from_utf8_lossy(&o.stderr));
                t.lines().next().unwrap_or("?").trim().to_owned()
            })
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    let nginx = first_line(Command::new(&tools.nginx).arg("-v"));
    let haproxy = first_line(Command::new(&tools.haproxy).arg("-v"));
    let haproxy = haproxy.split(" - ").next().unwrap_or(&haproxy).to_owned();
    let wrk = first_line(Command::new(&tools.wrk).arg("-v"));
    let h2load = first_line(Command::new(&tools.h2load).arg("--version"));
    let moat_v = first_line(Command::new(moat).arg("--version"));
    let rev = first_line(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(crate::root()),
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let mut s = String::new();
    let _ = write!(
        s,
        "{moat_v} ({}, git {rev}); {nginx}; {haproxy}; {wrk}; {h2load}; {cpus} CPUs \
         ({cpu_model}); Linux {kernel}",
        moat.display(),
        wrk = wrk.split(" Copyright").next().unwrap_or(&wrk).trim()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0), "NaN is left out");
    }

    #[test]
    fn best_peer_by_direction() {
        let v = [Some(10.0), None, Some(12.0)];
        assert_eq!(best(&v, true), Some(12.0));
        assert_eq!(best(&v, false), Some(10.0));
        assert_eq!(best(&[None, None], true), None);
        assert_eq!(ratio(Some(6.0), Some(12.0)), Some(0.5));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
    }

    fn sample(value: f64, cpu: f64, steal: f64) -> Sample {
        Sample {
            value,
            server_cpu: Some(cpu),
            steal: Some(steal),
            p50_ms: Some(value / 1000.0),
            p99_ms: Some(value / 100.0),
            ..Sample::default()
        }
    }

    #[test]
    fn table_has_medians_and_ratios() {
        let mut r = Results::default();
        let targets = [Target::Moat, Target::Nginx, Target::Haproxy];
        for (t, values) in [
            (Target::Moat, [900.0, 1000.0, 1100.0]),
            (Target::Nginx, [700.0, 800.0, 900.0]),
            (Target::Haproxy, [400.0, 900.0, 2000.0]),
        ] {
            for v in values {
                r.push(Row::H1Get, t, sample(v, 99.0, 0.5));
            }
        }
        r.push(
            Row::IdleH1,
            Target::Moat,
            Sample {
                value: 20.0,
                ..Sample::default()
            },
        );
        r.push(
            Row::IdleH1,
            Target::Nginx,
            Sample {
                value: 40.0,
                ..Sample::default()
            },
        );
        r.push(
            Row::IdleH1,
            Target::Haproxy,
            Sample {
                value: 25.0,
                ..Sample::default()
            },
        );
        let t = table(&[Row::H1Get, Row::IdleH1], &targets, &r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines.len(),
            5,
            "head, alignment, two rows, one latency row:\n{t}"
        );
        assert!(lines[0].starts_with("| row | unit | moat | nginx | HAProxy | moat / best peer |"));
        // Medians 1000, 800 and 900: moat / best = 1000 / 900.
        assert_eq!(
            lines[2],
            "| h1 GET (h2load --h1) | req/s | 1000 | 800 | 900 | 1.11 | 99 / 99 / 99 | 0.5 / 0.5 / 0.5 |"
        );
        // Memory: smaller is better, so the best peer is HAProxy's 25.
        assert_eq!(
            lines[3],
            "| idle TLS connection, h1 | KiB/conn | 20.0 | 40.0 | 25.0 | 0.80 | – | – |"
        );
        // Latency: the best peer is the smallest (nginx 0.80 / 8.00).
        assert!(
            lines[4].starts_with(
                "| p50 / p99, h1 GET | ms | 1.00 / 10.00 | 0.80 / 8.00 | 0.90 / 9.00 | 1.25 / 1.25 |"
            ),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn table_with_redaction_and_missing_figures() {
        let mut r = Results::default();
        r.push(Row::Download, Target::Moat, sample(100.0, 90.0, 0.0));
        r.push(
            Row::Download,
            Target::MoatRedaction,
            sample(50.0, 95.0, 0.0),
        );
        r.push(Row::Download, Target::Nginx, sample(200.0, 80.0, 0.0));
        let targets = [
            Target::Moat,
            Target::Nginx,
            Target::Haproxy,
            Target::MoatRedaction,
        ];
        let t = table(&[Row::Download], &targets, &r);
        let row = t.lines().nth(2).unwrap_or_default();
        assert_eq!(
            row,
            "| 1 MiB download (h2load --h1) | MiB/s | 100 | 200 | ? | 50 | 0.50 | 0.25 \
             | 90 / 80 / ? / 95 | 0.0 / 0.0 / ? / 0.0 |"
        );
    }

    #[test]
    fn handshakes_per_cpu_second() {
        let mut r = Results::default();
        r.push(Row::Handshake, Target::Moat, sample(3000.0, 50.0, 0.0));
        r.push(Row::Handshake, Target::Nginx, sample(2000.0, 50.0, 0.0));
        r.push(Row::Handshake, Target::Haproxy, sample(2500.0, 100.0, 0.0));
        let t = table(
            &[Row::Handshake],
            &[Target::Moat, Target::Nginx, Target::Haproxy],
            &r,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[2]
            .starts_with("| new TLS 1.3 handshakes | handshakes/s | 3000 | 2000 | 2500 | 1.20 |"));
        assert_eq!(
            lines[3],
            "| new TLS 1.3 handshakes per proxy CPU-second | handshakes/CPU-s | 6000 | 4000 | 2500 \
             | 1.50 | as handshake | as handshake |"
        );
    }

    #[test]
    fn lists_reruns() {
        let mut r = Results::default();
        r.push(Row::H2Get, Target::Nginx, sample(1.0, 1.0, 1.0));
        let mut s = sample(1.0, 1.0, 2.0);
        s.discarded_steal = vec![8.0, 6.5];
        r.push(Row::H2Get, Target::Nginx, s);
        let lines = reruns(&r);
        assert_eq!(
            lines,
            vec![
                "h2-get via nginx in round 2: taken 2 more time(s) (steal 8.0%, 6.5%); kept the \
                 run with 2.0%"
                    .to_owned()
            ]
        );
    }
}
