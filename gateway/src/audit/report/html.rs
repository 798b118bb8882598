//! The report as one HTML file: inline CSS, inline SVG charts, no script, nothing fetched. Every
//! string that comes from a record or a file name is escaped ([`esc`]). Each table has a stable
//! `id`, each cell a `data-col`, so the numbers can be read back (the end-to-end test does).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use time::OffsetDateTime;

use super::charts::{self, Mark, Series, Span};
use super::summary::{Bucket, Counts, Egress, Summary, Talker, CLIENT_ABORTED};
use super::{ChainRow, Report, Status};

/// Rows in the top-talker tables.
pub(super) const TOP_TALKERS: usize = 20;
/// Bars in a bar chart (the table holds every row).
const CHART_BARS: usize = 15;
/// Rules drawn as series of their own; the others are drawn together.
const CHART_RULES: usize = 8;
/// Most time buckets drawn on a continuous axis (beyond, only buckets with records are drawn).
const MAX_AXIS_BUCKETS: i64 = 1500;
/// Most rows of the guard's run and event tables (a mode that flips on every request would
/// make one row per request); the rest are counted in a note.
const MAX_GUARD_ROWS: usize = 2000;

/// A note under a table cut to `shown` of `all` rows.
fn cut_note(out: &mut String, what: &str, shown: usize, all: usize) {
    if all > shown {
        let _ = writeln!(
            out,
            "<p class=\"note\">The first {shown} of {all} {what} are listed.</p>"
        );
    }
}

/// Escapes text for HTML text and attribute values (`&`, `<`, `>`, `"`, `'`); control
/// characters other than tab and newline become U+FFFD.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
fn time_ms(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Unix seconds as a short axis label: `12-04 13:05`.
fn axis_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:02}-{:02} {:02}:{:02}",
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A bucket as an axis label (shorter than [`Bucket::label`]).
fn axis_bucket(bucket: Bucket, start: i64) -> String {
    match bucket {
        Bucket::Day => bucket.label(start),
        _ => axis_time(start),
    }
}

struct Col {
    key: String,
    title: String,
    num: bool,
}

fn col(key: &str, title: &str) -> Col {
    Col {
        key: key.to_owned(),
        title: title.to_owned(),
        num: false,
    }
}

fn num(key: &str, title: &str) -> Col {
    Col {
        key: key.to_owned(),
        title: title.to_owned(),
        num: true,
    }
}

/// A table with a stable id; rows of cells in column order.
fn table(out: &mut String, id: &str, cols: &[Col], rows: &[Vec<String>]) {
    let _ = writeln!(out, "<table id=\"{}\">", esc(id));
    out.push_str("<thead><tr>");
    for c in cols {
        let _ = write!(
            out,
            "<th data-col=\"{}\"{}>{}</th>",
            esc(&c.key),
            if c.num { " class=\"n\"" } else { "" },
            esc(&c.title)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (c, cell) in cols.iter().zip(row) {
            let _ = write!(
                out,
                "<td data-col=\"{}\"{}>{}</td>",
                esc(&c.key),
                if c.num { " class=\"n\"" } else { "" },
                esc(cell)
            );
        }
        out.push_str("</tr>\n");
    }
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "<tr class=\"empty\"><td colspan=\"{}\">no records</td></tr>",
            cols.len()
        );
    }
    out.push_str("</tbody></table>\n");
}

/// A chart with its caption and legend; a note instead when there is nothing to draw or drawing
/// failed.
fn figure(
    out: &mut String,
    id: &str,
    caption: &str,
    svg: Option<Result<String, String>>,
    legend: &[(String, String)],
) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" id=\"{}\"><figcaption>{}</figcaption>",
        esc(id),
        esc(caption)
    );
    match svg {
        None => out.push_str("<p class=\"none\">Nothing to draw.</p>\n"),
        Some(Err(e)) => {
            let _ = writeln!(out, "<p class=\"none\">Chart not drawn: {}</p>", esc(&e));
        }
        Some(Ok(svg)) => {
            // plotters writes `<svg …>` first; nothing before it but whitespace.
            out.push_str(svg.trim());
            out.push('\n');
            if !legend.is_empty() {
                out.push_str("<ul class=\"legend\">");
                for (name, colour) in legend {
                    let _ = write!(
                        out,
                        "<li><span class=\"sw\" style=\"background:{}\"></span>{}</li>",
                        esc(colour),
                        esc(name)
                    );
                }
                out.push_str("</ul>\n");
            }
        }
    }
    out.push_str("</figure>\n");
}

/// Horizontal bars of the first [`CHART_BARS`] items (already in order), or nothing to draw.
fn bar_figure(out: &mut String, id: &str, caption: &str, x_desc: &str, items: &[(String, u64)]) {
    let items: Vec<(String, u64)> = items
        .iter()
        .filter(|i| i.1 > 0)
        .take(CHART_BARS)
        .cloned()
        .collect();
    let svg = (!items.is_empty()).then(|| charts::bars(x_desc, &items));
    figure(out, id, caption, svg, &[]);
}

fn counts_cells(c: &Counts) -> [String; 4] {
    [
        c.forwarded.to_string(),
        c.refused.to_string(),
        c.aborted.to_string(),
        c.total().to_string(),
    ]
}

fn counts_cols() -> [Col; 4] {
    [
        num("forwarded", "forwarded"),
        num("refused", "refused"),
        num("aborted", "client went away"),
        num("total", "total"),
    ]
}

/// Counts per time bucket: a row per bucket, a column per name (in `names`' order), then the
/// row's total.
fn bucket_table(
    out: &mut String,
    id: &str,
    bucket: Bucket,
    names: &[String],
    per_bucket: &BTreeMap<i64, BTreeMap<String, u64>>,
) {
    let mut cols = vec![col("bucket", bucket.name())];
    cols.extend(names.iter().map(|n| num(n, n)));
    cols.push(num("total", "total"));
    let rows: Vec<Vec<String>> = per_bucket
        .iter()
        .map(|(b, per)| {
            let mut row = vec![bucket.label(*b)];
            row.extend(
                names
                    .iter()
                    .map(|n| per.get(n).copied().unwrap_or(0).to_string()),
            );
            row.push(per.values().sum::<u64>().to_string());
            row
        })
        .collect();
    table(out, id, &cols, &rows);
}

const CSS: &str = "
body{font-family:sans-serif;margin:24px auto;max-width:1160px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:2px solid #ccc;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td{word-break:break-word;max-width:520px}td:first-child{min-width:6em}
tr.empty td{color:#888;font-style:italic}
figure{margin:12px 0}figcaption{font-weight:bold;margin-bottom:4px}
svg{display:block;max-width:100%;height:auto}
ul.legend{list-style:none;padding:0;margin:4px 0;font-size:13px}
ul.legend li{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.ok{color:#1a7f1a;font-weight:bold}.broken{color:#c01818;font-weight:bold}
p.note{background:#fff6d8;border:1px solid #e8d48a;padding:6px 10px}
p.none{color:#888;font-style:italic}
";

/// The whole document.
pub(super) fn render(r: &Report) -> String {
    let s = &r.summary;
    let mut out = String::with_capacity(256 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>moat audit report</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style></head><body>\n<h1>moat audit report</h1>\n");
    header(&mut out, r);
    chain(&mut out, &r.chain);
    requests(&mut out, s);
    callers(&mut out, s);
    refusals(&mut out, s);
    masked(&mut out, s);
    egress(&mut out, s);
    guard(&mut out, s);
    talkers(&mut out, s);
    out.push_str(
        "<p class=\"none\">Written by moat audit report from the records alone; records hold no request or response content.</p>\n</body></html>\n",
    );
    out
}

fn header(out: &mut String, r: &Report) {
    let s = &r.summary;
    let rfc = time::format_description::well_known::Rfc3339;
    let window = |t: Option<OffsetDateTime>| {
        t.and_then(|t| t.format(&rfc).ok())
            .unwrap_or_else(|| "-".to_owned())
    };
    let hosts = if r.filters.hosts.is_empty() {
        "all".to_owned()
    } else {
        r.filters.hosts.join(", ")
    };
    let _ = writeln!(
        out,
        "<p>Generated {} by moat {}. Records counted: <b>{}</b> from {} host(s), {} to {}; time buckets of one {}.</p>",
        esc(&r.generated),
        esc(env!("CARGO_PKG_VERSION")),
        s.records,
        s.hosts.len(),
        esc(&s.first_ms.map_or_else(|| "-".to_owned(), time_ms)),
        esc(&s.last_ms.map_or_else(|| "-".to_owned(), time_ms)),
        s.bucket.name()
    );
    let filters = [
        ("since", window(r.filters.since)),
        ("until", window(r.filters.until)),
        ("hosts", hosts),
    ];
    table(
        out,
        "filters",
        &[col("filter", "filter"), col("value", "value")],
        &filters
            .iter()
            .map(|(k, v)| vec![(*k).to_owned(), v.clone()])
            .collect::<Vec<_>>(),
    );
    out.push_str("<p>The window is <code>[since, until)</code> by each record's <code>time</code>; it applies to every section but the chain status, which covers every record held.</p>\n");
    table(
        out,
        "sources",
        &[
            col("path", "PATH"),
            col("kind", "read as"),
            col("host", "host"),
        ],
        &r.sources
            .iter()
            .map(|src| {
                vec![
                    src.path.display().to_string(),
                    src.kind.as_str().to_owned(),
                    src.host
                        .clone()
                        .unwrap_or_else(|| "(named in the files)".to_owned()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    for h in &r.unmatched_hosts {
        let _ = writeln!(
            out,
            "<p class=\"note\">--host {}: no source holds anything of this host.</p>",
            esc(h)
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    if s.untimed > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} record(s) have a time that cannot be read: counted, but on no time axis.</p>",
            s.untimed
        );
    }
    let _ = writeln!(out, "<h2 id=\"overview\">Records by kind</h2>");
    table(
        out,
        "records-by-kind",
        &[col("kind", "kind"), num("records", "records")],
        &s.by_kind
            .iter()
            .map(|(k, n)| vec![k.clone(), n.to_string()])
            .collect::<Vec<_>>(),
    );
}

fn chain(out: &mut String, rows: &[ChainRow]) {
    out.push_str("<h2 id=\"chain\">1. Chain status per host</h2>\n");
    out.push_str("<p>Every record held, whatever the time window: trails checked as <code>moat audit verify</code> checks them, collector files as <code>moat audit verify --keys</code> does, bundles by their manifest, the SHA-256 of their records file and the chain of their records from <code>chain_prev</code>. <i>Last signed</i> is the last checkpoint whose signature verified; <i>unsigned</i> counts the records after it.</p>\n");
    let broken = rows.iter().filter(|r| r.status != Status::Ok).count();
    let _ = writeln!(
        out,
        "<p>{} host row(s): <span class=\"ok\">{} OK</span>, <span class=\"broken\">{} BROKEN</span>.</p>",
        rows.len(),
        rows.len() - broken,
        broken
    );
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut gaps: Vec<String> = r
                .gaps
                .iter()
                .take(10)
                .map(|[a, b]| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}..{b}")
                    }
                })
                .collect();
            if r.gaps.len() > 10 {
                gaps.push(format!("… {} more", r.gaps.len() - 10));
            }
            vec![
                r.host.clone(),
                r.source.clone(),
                r.key.clone(),
                r.status.as_str().to_owned(),
                r.records.to_string(),
                opt(r.first_seq),
                opt(r.last_seq),
                r.gaps.len().to_string(),
                gaps.join(", "),
                r.duplicates.to_string(),
                opt(r.checkpoints),
                opt(r.last_signed_seq),
                opt(r.unsigned_tail),
                r.problems.join(" | "),
            ]
        })
        .collect();
    table(
        out,
        "chain-status",
        &[
            col("host", "host"),
            col("source", "source"),
            col("key", "key"),
            col("status", "status"),
            num("records", "records"),
            num("first_seq", "first seq"),
            num("last_seq", "last seq"),
            num("gaps", "gaps"),
            col("missing", "missing seqs"),
            num("duplicates", "duplicates"),
            num("checkpoints", "checkpoints"),
            num("last_signed_seq", "last signed"),
            num("unsigned_tail", "unsigned"),
            col("problems", "problems"),
        ],
        &cells,
    );
}

/// Bucket starts for a chart axis: every bucket from the first to the last when there are not
/// too many, else only those with records.
fn axis(bucket: Bucket, keys: &BTreeSet<i64>) -> Vec<i64> {
    match (keys.first(), keys.last()) {
        (Some(&a), Some(&b)) if (b - a) / bucket.seconds() < MAX_AXIS_BUCKETS => (0..=(b - a)
            / bucket.seconds())
            .map(|i| a + i * bucket.seconds())
            .collect(),
        _ => keys.iter().copied().collect(),
    }
}

fn requests(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"requests\">2. Requests over time</h2>\n");
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for per in s.decisions.values() {
        for (k, n) in per {
            *outcomes.entry(k.clone()).or_default() += n;
        }
    }
    let total: u64 = outcomes.values().sum();
    let _ = writeln!(
        out,
        "<p>Request attempts — <code>request</code> records by their <code>decision</code>, <code>reject</code> records as <code>refused</code> (or <code>client_aborted</code>: the client went away, no refusal) — per {} (UTC): <b>{total}</b> in all.</p>",
        s.bucket.name()
    );
    let keys: BTreeSet<i64> = s.decisions.keys().copied().collect();
    let axis = axis(s.bucket, &keys);
    let labels: Vec<String> = axis.iter().map(|&b| axis_bucket(s.bucket, b)).collect();
    let names: Vec<String> = outcomes.keys().cloned().collect();
    let series: Vec<Series> = names
        .iter()
        .map(|name| Series {
            name: name.clone(),
            values: axis
                .iter()
                .map(|b| {
                    s.decisions
                        .get(b)
                        .and_then(|m| m.get(name))
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        })
        .collect();
    figure(
        out,
        "chart-requests-by-decision",
        "Requests by decision",
        (total > 0).then(|| charts::stacked("requests", &labels, &series)),
        &legend(&names),
    );
    bucket_table(out, "requests-by-decision", s.bucket, &names, &s.decisions);

    // By rule: the busiest rules as series of their own, the rest together.
    let mut rule_totals: BTreeMap<String, Counts> = BTreeMap::new();
    for per in s.rules.values() {
        for (rule, c) in per {
            let t = rule_totals.entry(rule.clone()).or_default();
            t.forwarded += c.forwarded;
            t.refused += c.refused;
            t.aborted += c.aborted;
        }
    }
    let mut ranked: Vec<(&String, &Counts)> = rule_totals.iter().collect();
    ranked.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(b.0)));
    let drawn: Vec<String> = ranked
        .iter()
        .take(CHART_RULES)
        .map(|(r, _)| (*r).clone())
        .collect();
    let others = ranked.len() > CHART_RULES;
    let mut series: Vec<Series> = drawn
        .iter()
        .map(|rule| Series {
            name: rule.clone(),
            values: axis
                .iter()
                .map(|b| {
                    s.rules
                        .get(b)
                        .and_then(|m| m.get(rule))
                        .map_or(0, Counts::total)
                })
                .collect(),
        })
        .collect();
    let mut names = drawn.clone();
    if others {
        let other = "(other rules)".to_owned();
        series.push(Series {
            name: other.clone(),
            values: axis
                .iter()
                .map(|b| {
                    s.rules.get(b).map_or(0, |m| {
                        m.iter()
                            .filter(|(r, _)| !drawn.contains(r))
                            .map(|(_, c)| c.total())
                            .sum()
                    })
                })
                .collect(),
        });
        names.push(other);
    }
    figure(
        out,
        "chart-requests-by-rule",
        "Requests by rule",
        (total > 0).then(|| charts::stacked("requests", &labels, &series)),
        &legend(&names),
    );
    let mut cols = vec![col("rule", "rule")];
    cols.extend(counts_cols());
    let rows: Vec<Vec<String>> = ranked
        .iter()
        .map(|(rule, c)| {
            let mut row = vec![(*rule).clone()];
            row.extend(counts_cells(c));
            row
        })
        .collect();
    table(out, "rules", &cols, &rows);
    let mut cols = vec![col("bucket", s.bucket.name()), col("rule", "rule")];
    cols.extend(counts_cols());
    let rows: Vec<Vec<String>> = s
        .rules
        .iter()
        .flat_map(|(b, per)| {
            per.iter().map(move |(rule, c)| {
                let mut row = vec![s.bucket.label(*b), rule.clone()];
                row.extend(counts_cells(c));
                row
            })
        })
        .collect();
    table(out, "requests-by-rule", &cols, &rows);
}

fn legend(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (charts::short(n, 60), charts::hex(charts::color(n, i))))
        .collect()
}

/// Rows sorted by a count, largest first, then by key.
fn ranked<K: Ord + Clone, V: Copy>(map: &BTreeMap<K, V>, by: impl Fn(&V) -> u64) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| by(&b.1).cmp(&by(&a.1)).then(a.0.cmp(&b.0)));
    v
}

fn callers(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"callers\">3. Callers</h2>\n");
    out.push_str("<p>Request attempts by the caller's identity (<code>principal</code>, <code>principal_kind</code>; <code>(none)</code> before identity or without it), and by the regions the caller's credential claims (<code>caller_regions</code>, joined by commas; <code>none</code> when empty) against moat's own region (<code>region</code>).</p>\n");
    let by_caller = ranked(&s.callers, Counts::total);
    let items: Vec<(String, u64)> = by_caller
        .iter()
        .map(|((p, k), c)| (format!("{p} ({k})"), c.total()))
        .collect();
    bar_figure(
        out,
        "chart-callers",
        "Requests by caller",
        "requests",
        &items,
    );
    let mut cols = vec![col("principal", "principal"), col("principal_kind", "kind")];
    cols.extend(counts_cols());
    let rows: Vec<Vec<String>> = by_caller
        .iter()
        .map(|((p, k), c)| {
            let mut row = vec![p.clone(), k.clone()];
            row.extend(counts_cells(c));
            row
        })
        .collect();
    table(out, "callers", &cols, &rows);

    let by_region = ranked(&s.regions, Counts::total);
    let items: Vec<(String, u64)> = by_region
        .iter()
        .map(|((c, g), n)| (format!("{c} → {g}"), n.total()))
        .collect();
    bar_figure(
        out,
        "chart-regions",
        "Requests by caller region → gateway region",
        "requests",
        &items,
    );
    let mut cols = vec![
        col("caller_regions", "caller regions"),
        col("region", "gateway region"),
    ];
    cols.extend(counts_cols());
    let rows: Vec<Vec<String>> = by_region
        .iter()
        .map(|((c, g), n)| {
            let mut row = vec![c.clone(), g.clone()];
            row.extend(counts_cells(n));
            row
        })
        .collect();
    table(out, "regions", &cols, &rows);
}

/// What a refusal's status says beyond its number.
fn refusal_note(reason: &str, status: u16) -> &'static str {
    if reason == CLIENT_ABORTED {
        "not a refusal: the client went away before its request was forwarded (status 0: nothing sent)"
    } else if status == 0 {
        "status 0: no HTTP status was sent (refused below HTTP, the connection closed)"
    } else {
        ""
    }
}

fn refusals(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"refusals\">4. Refusals by reason</h2>\n");
    let total: u64 = s.refusals.values().sum();
    let _ = writeln!(
        out,
        "<p><code>reject</code> records by <code>reason</code> and <code>status</code>: <b>{total}</b>. Status 0 means no HTTP status was sent; <code>client_aborted</code> is listed but is no refusal.</p>"
    );
    let by = ranked(&s.refusals, |n| *n);
    let items: Vec<(String, u64)> = by
        .iter()
        .map(|((reason, status), n)| (format!("{reason} ({status})"), *n))
        .collect();
    bar_figure(
        out,
        "chart-refusals",
        "Refusals by reason (status)",
        "records",
        &items,
    );
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|((reason, status), n)| {
            vec![
                reason.clone(),
                status.to_string(),
                refusal_note(reason, *status).to_owned(),
                n.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "refusals",
        &[
            col("reason", "reason"),
            num("status", "status"),
            col("note", "note"),
            num("records", "records"),
        ],
        &rows,
    );
}

fn masked(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"masked\">5. Masked values</h2>\n");
    let total: u64 = s.masked.values().sum();
    let _ = writeln!(
        out,
        "<p>Values masked, by entity and direction, summed from <code>request</code> records' <code>redactions</code> (keys <code>ENTITY.direction</code>): <b>{total}</b> value(s) in <b>{}</b> request(s). Counts only: the values themselves are never recorded.</p>",
        s.masked_requests
    );
    let by = ranked(&s.masked, |n| *n);
    let items: Vec<(String, u64)> = by
        .iter()
        .map(|((e, d), n)| (format!("{e}.{d}"), *n))
        .collect();
    bar_figure(
        out,
        "chart-masked",
        "Masked values by entity.direction",
        "values",
        &items,
    );
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|((e, d), n)| vec![e.clone(), d.clone(), n.to_string()])
        .collect();
    table(
        out,
        "masked",
        &[
            col("entity", "entity"),
            col("direction", "direction"),
            num("values", "values"),
        ],
        &rows,
    );
}

fn egress_table(out: &mut String, id: &str, key: (&str, &str), map: &BTreeMap<String, Egress>) {
    let rows: Vec<Vec<String>> = ranked(map, |e| e.refused_events)
        .iter()
        .map(|(k, e)| {
            vec![
                k.clone(),
                e.refused_events.to_string(),
                e.refused_records.to_string(),
                e.monitored_events.to_string(),
                e.monitored_records.to_string(),
            ]
        })
        .collect();
    table(
        out,
        id,
        &[
            col(key.0, key.1),
            num("refused_events", "refused events"),
            num("refused_records", "refused records"),
            num("monitored_events", "monitored events"),
            num("monitored_records", "monitored records"),
        ],
        &rows,
    );
}

fn egress(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"egress\">6. Egress refused by the guard</h2>\n");
    let refused: u64 = s.egress_by_host.values().map(|e| e.refused_events).sum();
    let monitored: u64 = s.egress_by_host.values().map(|e| e.monitored_events).sum();
    let _ = writeln!(
        out,
        "<p>From <code>guard</code> records. A record stands for 1 + <code>repeats</code> events (identical events coalesced within one second), so events are counted as that. Refused: <b>{refused}</b> event(s); monitored (let through in monitor mode, and reported): <b>{monitored}</b>.</p>"
    );
    for (id, caption, key, map) in [
        (
            "egress-by-process",
            "Refused egress by process (comm)",
            ("process", "process (comm)"),
            &s.egress_by_process,
        ),
        (
            "egress-by-destination",
            "Refused egress by destination (addr:port)",
            ("destination", "destination"),
            &s.egress_by_destination,
        ),
        (
            "egress-by-host",
            "Refused egress by host",
            ("host", "host"),
            &s.egress_by_host,
        ),
    ] {
        let items: Vec<(String, u64)> = ranked(map, |e| e.refused_events)
            .into_iter()
            .map(|(k, e)| (k, e.refused_events))
            .collect();
        bar_figure(
            out,
            &format!("chart-{id}"),
            caption,
            "refused events",
            &items,
        );
        egress_table(out, id, key, map);
    }
}

fn guard(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"guard\">7. The egress guard over time</h2>\n");
    out.push_str("<p>Per host: runs of consecutive requests (by time) served under one <code>guard.mode</code> (bars), and the lifecycle records <code>guard_attached</code> and <code>guard_unattached</code> (strokes).</p>\n");
    let mut lanes: Vec<String> = s
        .guard_runs
        .iter()
        .map(|r| r.host.clone())
        .chain(s.guard_events.iter().map(|e| e.host.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    lanes.sort();
    let lane = |h: &str| lanes.iter().position(|l| l == h).unwrap_or(0);
    let mut modes: Vec<String> = s
        .guard_runs
        .iter()
        .map(|r| r.mode.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    modes.sort();
    let mode_index = |m: &str| modes.iter().position(|x| x == m).unwrap_or(0);
    let spans: Vec<Span> = s
        .guard_runs
        .iter()
        .map(|r| Span {
            lane: lane(&r.host),
            from: r.from_ms.div_euclid(1000),
            to: r.to_ms.div_euclid(1000),
            color: charts::color(&r.mode, mode_index(&r.mode)),
        })
        .collect();
    let marks: Vec<Mark> = s
        .guard_events
        .iter()
        .filter_map(|e| {
            Some(Mark {
                lane: lane(&e.host),
                at: e.unix?,
                color: charts::color(&e.event, 0),
            })
        })
        .collect();
    let times: Vec<i64> = spans
        .iter()
        .flat_map(|s| [s.from, s.to])
        .chain(marks.iter().map(|m| m.at))
        .collect();
    let svg = match (times.iter().min(), times.iter().max()) {
        (Some(&t0), Some(&t1)) => Some(charts::timeline(
            &lanes,
            &spans,
            &marks,
            (t0, t1),
            &axis_time,
        )),
        _ => None,
    };
    let mut keys = legend(&modes);
    for e in ["guard_attached", "guard_unattached"] {
        if s.guard_events.iter().any(|x| x.event == e) {
            keys.push((e.to_owned(), charts::hex(charts::color(e, 0))));
        }
    }
    figure(
        out,
        "chart-guard-timeline",
        "Guard mode per host over time",
        svg,
        &keys,
    );
    let rows: Vec<Vec<String>> = s
        .guard_runs
        .iter()
        .take(MAX_GUARD_ROWS)
        .map(|r| {
            vec![
                r.host.clone(),
                r.mode.clone(),
                time_ms(r.from_ms),
                time_ms(r.to_ms),
                r.requests.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "guard-runs",
        &[
            col("host", "host"),
            col("mode", "guard.mode"),
            col("from", "first request"),
            col("to", "last request"),
            num("requests", "requests"),
        ],
        &rows,
    );
    cut_note(out, "runs", rows.len(), s.guard_runs.len());
    let rows: Vec<Vec<String>> = s
        .guard_events
        .iter()
        .take(MAX_GUARD_ROWS)
        .map(|e| {
            vec![
                e.time.clone(),
                e.host.clone(),
                e.event.clone(),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        out,
        "guard-events",
        &[
            col("time", "time"),
            col("host", "host"),
            col("event", "event"),
            col("detail", "detail"),
        ],
        &rows,
    );
    cut_note(out, "guard events", rows.len(), s.guard_events.len());
    let names: Vec<String> = s
        .guard_modes
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = writeln!(
        out,
        "<p>Requests per {} by the guard mode they were served under:</p>",
        s.bucket.name()
    );
    bucket_table(out, "guard-modes", s.bucket, &names, &s.guard_modes);
}

fn talker_table(out: &mut String, id: &str, key: (&str, &str), rows: &[(String, Talker)]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, t)| {
            let mut row = vec![k.clone()];
            row.extend(counts_cells(&t.counts));
            row.extend([
                t.bytes_in.to_string(),
                t.bytes_out.to_string(),
                t.bytes().to_string(),
            ]);
            row
        })
        .collect();
    let mut cols = vec![col(key.0, key.1)];
    cols.extend(counts_cols());
    cols.extend([
        num("bytes_in", "bytes in"),
        num("bytes_out", "bytes out"),
        num("bytes", "bytes in + out"),
    ]);
    table(out, id, &cols, &cells);
}

fn talkers(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"talkers\">8. Top talkers</h2>\n");
    let _ = writeln!(
        out,
        "<p>The {TOP_TALKERS} principals and client IPs (the <code>client</code> without its port) with the most request attempts, and with the most body bytes (<code>bytes_in</code> + <code>bytes_out</code> of <code>request</code> records). {} principal(s) and {} client IP(s) in all.</p>",
        s.principals.len(),
        s.clients.len()
    );
    for (what, key, map) in [
        ("principals", ("principal", "principal"), &s.principals),
        ("clients", ("client_ip", "client IP"), &s.clients),
    ] {
        let by_requests: Vec<(String, Talker)> = ranked(map, |t| t.counts.total())
            .into_iter()
            .take(TOP_TALKERS)
            .collect();
        let by_bytes: Vec<(String, Talker)> = ranked(map, Talker::bytes)
            .into_iter()
            .take(TOP_TALKERS)
            .collect();
        let items: Vec<(String, u64)> = by_requests
            .iter()
            .map(|(k, t)| (k.clone(), t.counts.total()))
            .collect();
        bar_figure(
            out,
            &format!("chart-talkers-{what}-requests"),
            &format!("Top {what} by requests"),
            "requests",
            &items,
        );
        talker_table(out, &format!("talkers-{what}-requests"), key, &by_requests);
        let items: Vec<(String, u64)> = by_bytes
            .iter()
            .map(|(k, t)| (k.clone(), t.bytes()))
            .collect();
        bar_figure(
            out,
            &format!("chart-talkers-{what}-bytes"),
            &format!("Top {what} by bytes in + out"),
            "bytes",
            &items,
        );
        talker_table(out, &format!("talkers-{what}-bytes"), key, &by_bytes);
    }
}
