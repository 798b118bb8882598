//! The report's numbers against counts made here, independently, from the same records read as
//! plain JSON; the filters; the chain status of trails, bundles and collector files; escaping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use super::summary::{Bucket, Builder, Counts, Egress, Filters, Summary};
use super::*;
use crate::audit::record::{
    CheckpointRecord, ConnectionRecord, GuardFacts, GuardRecord, LifecycleRecord, RejectRecord,
    RequestRecord,
};
use crate::audit::tests::{config, trail_lines, write_records};
use crate::audit::{AuditConfig, FsyncMode};

const T0: i64 = 1_796_000_000; // 2026-11-30T…Z

fn rfc(unix_ms: i64) -> String {
    let t =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).expect("time");
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).expect("format")
}

fn envelope(seq: u64, unix_ms: i64, record: Record) -> Envelope {
    Envelope {
        v: 1,
        seq,
        prev: GENESIS.into(),
        time: rfc(unix_ms),
        record,
    }
}

const PRINCIPALS: [Option<(&str, &str)>; 5] = [
    Some(("alice@example.com", "jwt")),
    Some(("batch-job", "api_key")),
    Some(("spiffe://moat.local/svc", "mtls")),
    Some(("<script>alert(1)</script>", "jwt")),
    None,
];
const RULES: [Option<&str>; 4] = [Some("chat"), Some("batch"), Some("default-deny"), None];
const MODES: [&str; 3] = ["enforce", "monitor", "unattached"];
const REASONS: [(&str, u16); 6] = [
    ("forbidden", 403),
    ("unauthenticated", 401),
    ("redaction_refused", 422),
    ("h2_protocol_error", 0),
    ("client_aborted", 0),
    ("bad_request", 400),
];

fn request(i: u64) -> Record {
    let p = PRINCIPALS[(i % 5) as usize];
    let mut redactions = BTreeMap::new();
    if i.is_multiple_of(3) {
        redactions.insert("EMAIL_ADDRESS.request".to_owned(), i % 4 + 1);
    }
    if i.is_multiple_of(7) {
        redactions.insert("CREDIT_CARD.response".to_owned(), 2);
        redactions.insert("IP_ADDRESS.request".to_owned(), 0);
    }
    let regions: Vec<String> = match i % 4 {
        0 => vec![],
        1 => vec!["eu-central".into()],
        2 => vec!["eu-central".into(), "eu-west".into()],
        _ => vec!["us-east".into()],
    };
    Record::Request(Box::new(RequestRecord {
        request_id: format!("r{i}"),
        listener: "main".into(),
        region: (!i.is_multiple_of(6)).then(|| Arc::from("eu-central")),
        client: format!("10.0.{}.{}:{}", i % 2, i % 3, 40000 + i).into(),
        principal: p.map(|p| p.0.to_owned()),
        principal_kind: p.map(|p| p.1.to_owned().into()),
        caller_regions: regions.into(),
        method: "POST".into(),
        host: "localhost".into(),
        path: "/v1/chat/completions".into(),
        rule: RULES[(i % 4) as usize].map(Arc::from),
        decision: "allow".into(),
        upstream: "model@127.0.0.1:9".into(),
        status: 200,
        bytes_in: 100 + i,
        bytes_out: 1000 * (i % 5),
        redactions,
        guard: Arc::new(GuardFacts {
            mode: MODES[((i / 40) % 3) as usize].into(),
            allow_sha256: None,
        }),
        ..RequestRecord::default()
    }))
}

fn reject(i: u64) -> Record {
    let (reason, status) = REASONS[(i % 6) as usize];
    let p = (reason == "forbidden" || reason == "redaction_refused")
        .then(|| PRINCIPALS[(i % 5) as usize])
        .flatten();
    Record::Reject(Box::new(RejectRecord {
        listener: "main".into(),
        region: Some("eu-central".into()),
        client: format!("10.0.{}.{}:{}", i % 2, i % 3, 50000 + i).into(),
        status,
        reason: reason.into(),
        principal: p.map(|p| p.0.to_owned()),
        principal_kind: p.map(|p| p.1.to_owned().into()),
        caller_regions: if i.is_multiple_of(2) {
            vec!["eu-central".to_owned()].into()
        } else {
            Arc::from(Vec::new())
        },
        rule: (reason == "forbidden").then(|| Arc::from("default-deny")),
        ..RejectRecord::default()
    }))
}

fn guard(i: u64) -> Record {
    Record::Guard(GuardRecord {
        verdict: if i % 4 == 3 { "monitored" } else { "refused" }.into(),
        hook: "connect".into(),
        pid: 100 + i as u32,
        comm: ["python3", "curl", "<img src=x onerror=alert(2)>"][(i % 3) as usize].into(),
        uid: 1000,
        cgroup_id: 7,
        addr: if i.is_multiple_of(2) {
            "203.0.113.9"
        } else {
            "2001:db8::1"
        }
        .into(),
        port: 443,
        protocol: "tcp".into(),
        repeats: i % 5,
    })
}

fn lifecycle(event: &str) -> Record {
    Record::Lifecycle(LifecycleRecord {
        event: event.into(),
        version: "test".into(),
        config_sha256: None,
        detail: Some(format!("{event} detail")),
    })
}

/// Records of every kind, `n` of them, one every `step_ms` from `T0`, over two hosts.
fn corpus(n: u64, step_ms: i64) -> Vec<(String, Envelope)> {
    (0..n)
        .map(|i| {
            let host = if i % 9 == 4 { "gpu-08" } else { "gpu-07" };
            let record = match i % 10 {
                0..=4 => request(i),
                5 | 6 => reject(i),
                7 => guard(i),
                8 => match i % 40 {
                    8 => lifecycle("guard_attached"),
                    18 => lifecycle("guard_unattached"),
                    28 => Record::Connection(Box::new(ConnectionRecord {
                        listener: "t".into(),
                        client: "10.0.0.1:1".into(),
                        ..ConnectionRecord::default()
                    })),
                    _ => lifecycle("reload_accepted"),
                },
                _ => Record::Checkpoint(CheckpointRecord::default()),
            };
            (
                host.to_owned(),
                envelope(i + 1, T0 * 1000 + i as i64 * step_ms, record),
            )
        })
        .collect()
}

/// The records as plain JSON, with their host: what the independent counts read.
fn as_json(records: &[(String, Envelope)]) -> Vec<(String, Value)> {
    records
        .iter()
        .map(|(h, e)| (h.clone(), serde_json::to_value(e).expect("json")))
        .collect()
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Counts made from the JSON alone.
#[derive(Debug, Default)]
struct Expected {
    by_kind: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    rules: BTreeMap<String, [u64; 3]>,
    callers: BTreeMap<(String, String), [u64; 3]>,
    regions: BTreeMap<(String, String), [u64; 3]>,
    refusals: BTreeMap<(String, u16), u64>,
    masked: BTreeMap<String, u64>,
    masked_requests: u64,
    egress_comm: BTreeMap<String, [u64; 4]>,
    egress_dest: BTreeMap<String, [u64; 4]>,
    egress_host: BTreeMap<String, [u64; 4]>,
    guard_events: u64,
    modes: BTreeMap<String, u64>,
    principals: BTreeMap<String, [u64; 5]>,
    clients: BTreeMap<String, [u64; 5]>,
}

fn expected(records: &[(String, Value)]) -> Expected {
    let mut e = Expected::default();
    for (host, r) in records {
        let kind = s(&r["kind"]).expect("kind");
        *e.by_kind.entry(kind.clone()).or_default() += 1;
        if kind == "request" || kind == "reject" {
            // 0 forwarded, 1 refused, 2 aborted
            let slot = match (kind.as_str(), r["reason"].as_str()) {
                ("request", _) => 0,
                (_, Some("client_aborted")) => 2,
                _ => 1,
            };
            let outcome = match slot {
                0 => s(&r["decision"]).expect("decision"),
                1 => "refused".to_owned(),
                _ => "client_aborted".to_owned(),
            };
            *e.outcomes.entry(outcome).or_default() += 1;
            let rule = s(&r["rule"]).unwrap_or_else(|| "(none)".into());
            e.rules.entry(rule).or_default()[slot] += 1;
            let principal = s(&r["principal"]).unwrap_or_else(|| "(none)".into());
            let pkind = s(&r["principal_kind"]).unwrap_or_else(|| "(none)".into());
            e.callers.entry((principal.clone(), pkind)).or_default()[slot] += 1;
            let claimed: Vec<String> = r["caller_regions"]
                .as_array()
                .map(|a| a.iter().filter_map(s).collect())
                .unwrap_or_default();
            let claimed = if claimed.is_empty() {
                "none".to_owned()
            } else {
                claimed.join(",")
            };
            let region = s(&r["region"]).unwrap_or_else(|| "none".into());
            e.regions.entry((claimed, region)).or_default()[slot] += 1;
            let client = s(&r["client"]).expect("client");
            let ip = client
                .rsplit_once(':')
                .map(|(ip, _)| ip.to_owned())
                .expect("ip:port");
            for t in [
                e.principals.entry(principal).or_default(),
                e.clients.entry(ip).or_default(),
            ] {
                t[slot] += 1;
                t[3] += n(&r["bytes_in"]);
                t[4] += n(&r["bytes_out"]);
            }
        }
        match kind.as_str() {
            "request" => {
                let red = r["redactions"].as_object().expect("redactions");
                for (k, v) in red {
                    *e.masked.entry(k.clone()).or_default() += n(v);
                }
                if red.values().any(|v| n(v) > 0) {
                    e.masked_requests += 1;
                }
                *e.modes
                    .entry(s(&r["guard"]["mode"]).expect("mode"))
                    .or_default() += 1;
            }
            "reject" => {
                let status = u16::try_from(n(&r["status"])).expect("status");
                *e.refusals
                    .entry((s(&r["reason"]).expect("reason"), status))
                    .or_default() += 1;
            }
            "guard" => {
                let events = 1 + n(&r["repeats"]);
                let refused = r["verdict"] == "refused";
                let addr = s(&r["addr"]).expect("addr");
                let dest = if addr.contains(':') {
                    format!("[{addr}]:{}", n(&r["port"]))
                } else {
                    format!("{addr}:{}", n(&r["port"]))
                };
                for m in [
                    e.egress_comm
                        .entry(s(&r["comm"]).expect("comm"))
                        .or_default(),
                    e.egress_dest.entry(dest).or_default(),
                    e.egress_host.entry(host.clone()).or_default(),
                ] {
                    if refused {
                        m[0] += events;
                        m[1] += 1;
                    } else {
                        m[2] += events;
                        m[3] += 1;
                    }
                }
            }
            "lifecycle" if r["event"] == "guard_attached" || r["event"] == "guard_unattached" => {
                e.guard_events += 1;
            }
            _ => {}
        }
    }
    e
}

fn c3(c: &Counts) -> [u64; 3] {
    [c.forwarded, c.refused, c.aborted]
}

fn e4(e: &Egress) -> [u64; 4] {
    [
        e.refused_events,
        e.refused_records,
        e.monitored_events,
        e.monitored_records,
    ]
}

/// Every count of `s` against the independent counts of the same records.
fn assert_matches(s: &Summary, e: &Expected) {
    assert_eq!(s.by_kind, e.by_kind);
    assert_eq!(s.records, e.by_kind.values().sum::<u64>());
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for per in s.decisions.values() {
        for (k, v) in per {
            *outcomes.entry(k.clone()).or_default() += v;
        }
    }
    assert_eq!(outcomes, e.outcomes);
    let mut rules: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for per in s.rules.values() {
        for (k, c) in per {
            let r = rules.entry(k.clone()).or_default();
            for (a, b) in r.iter_mut().zip(c3(c)) {
                *a += b;
            }
        }
    }
    assert_eq!(rules, e.rules);
    let callers: BTreeMap<_, _> = s.callers.iter().map(|(k, c)| (k.clone(), c3(c))).collect();
    assert_eq!(callers, e.callers);
    let regions: BTreeMap<_, _> = s.regions.iter().map(|(k, c)| (k.clone(), c3(c))).collect();
    assert_eq!(regions, e.regions);
    assert_eq!(s.refusals, e.refusals);
    let masked: BTreeMap<String, u64> = s
        .masked
        .iter()
        .map(|((ent, dir), v)| (format!("{ent}.{dir}"), *v))
        .collect();
    assert_eq!(masked, e.masked);
    assert_eq!(s.masked_requests, e.masked_requests);
    let eg = |m: &BTreeMap<String, Egress>| -> BTreeMap<String, [u64; 4]> {
        m.iter().map(|(k, v)| (k.clone(), e4(v))).collect()
    };
    assert_eq!(eg(&s.egress_by_process), e.egress_comm);
    assert_eq!(eg(&s.egress_by_destination), e.egress_dest);
    assert_eq!(eg(&s.egress_by_host), e.egress_host);
    assert_eq!(s.guard_events.len() as u64, e.guard_events);
    let mut modes: BTreeMap<String, u64> = BTreeMap::new();
    for per in s.guard_modes.values() {
        for (k, v) in per {
            *modes.entry(k.clone()).or_default() += v;
        }
    }
    assert_eq!(modes, e.modes);
    let runs: u64 = s.guard_runs.iter().map(|r| r.requests).sum();
    assert_eq!(runs, e.modes.values().sum::<u64>());
    let talk = |m: &BTreeMap<String, summary::Talker>| -> BTreeMap<String, [u64; 5]> {
        m.iter()
            .map(|(k, t)| {
                let [a, b, c] = c3(&t.counts);
                (k.clone(), [a, b, c, t.bytes_in, t.bytes_out])
            })
            .collect()
    };
    assert_eq!(talk(&s.principals), e.principals);
    assert_eq!(talk(&s.clients), e.clients);
}

fn summary(records: &[(String, Envelope)], f: &Filters) -> Summary {
    Summary::build(records.iter().map(|(h, e)| (h.as_str(), e)), f)
}

#[test]
fn every_count_matches_an_independent_count_of_the_same_records() {
    let records = corpus(400, 1500);
    let s = summary(&records, &Filters::default());
    let e = expected(&as_json(&records));
    assert_matches(&s, &e);
    // The corpus holds every kind and every case the report distinguishes.
    for k in [
        "request",
        "reject",
        "guard",
        "lifecycle",
        "connection",
        "checkpoint",
    ] {
        assert!(
            s.by_kind.get(k).is_some_and(|n| *n > 0),
            "{k}: {:?}",
            s.by_kind
        );
    }
    assert!(s
        .refusals
        .keys()
        .any(|(r, st)| r == "h2_protocol_error" && *st == 0));
    assert!(s.egress_by_destination.contains_key("[2001:db8::1]:443"));
    assert!(s.egress_by_process.values().any(|e| e.monitored_events > 0));
    assert!(s.regions.contains_key(&("none".into(), "none".into())));
    assert!(s
        .regions
        .contains_key(&("eu-central,eu-west".into(), "eu-central".into())));
    // 400 records 1.5 s apart: 10 minutes, minute buckets.
    assert_eq!(s.bucket, Bucket::Minute);
    assert!(s.decisions.keys().all(|b| b % 60 == 0));
    let minutes = |ms: Option<i64>| ms.expect("time").div_euclid(60_000);
    assert_eq!(
        s.decisions.len() as i64,
        minutes(s.last_ms) - minutes(s.first_ms) + 1
    );
    assert_eq!((s.first_ms, s.untimed), (Some(T0 * 1000), 0));
}

#[test]
fn a_guard_record_stands_for_one_plus_its_repeats() {
    let records = vec![
        ("h".to_owned(), envelope(1, T0 * 1000, guard(4))), // refused, repeats 4
        ("h".to_owned(), envelope(2, T0 * 1000, guard(0))), // refused, repeats 0
        ("h".to_owned(), envelope(3, T0 * 1000, guard(3))), // monitored, repeats 3
    ];
    let s = summary(&records, &Filters::default());
    assert_eq!(
        s.egress_by_host["h"],
        Egress {
            refused_events: 5 + 1,
            refused_records: 2,
            monitored_events: 4,
            monitored_records: 1,
        }
    );
}

#[test]
fn the_time_window_and_the_hosts_filter_records() {
    let records = corpus(400, 1500);
    let since = OffsetDateTime::from_unix_timestamp(T0 + 120).expect("t");
    let until = OffsetDateTime::from_unix_timestamp(T0 + 300).expect("t");
    let f = Filters {
        since: Some(since),
        until: Some(until),
        hosts: vec!["gpu-07".into()],
    };
    let s = summary(&records, &f);
    let kept: Vec<(String, Envelope)> = records
        .iter()
        .filter(|(h, e)| {
            let t = OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
                .expect("time");
            h == "gpu-07" && t >= since && t < until
        })
        .cloned()
        .collect();
    assert!(!kept.is_empty() && kept.len() < records.len());
    assert_matches(&s, &expected(&as_json(&kept)));
    assert_eq!(s.hosts.iter().collect::<Vec<_>>(), ["gpu-07"]);
    // `until` is exclusive, `since` inclusive.
    assert_eq!(s.first_ms, Some((T0 + 120) * 1000));
    assert!(s.last_ms.is_some_and(|l| l < (T0 + 300) * 1000));
    // A record whose time cannot be read: counted without a window, not with one.
    let mut odd = envelope(1, T0 * 1000, request(1));
    odd.time = "yesterday".into();
    let odd = vec![("h".to_owned(), odd)];
    let s = summary(&odd, &Filters::default());
    assert_eq!((s.records, s.untimed), (1, 1));
    assert!(s.decisions.is_empty(), "on no time axis");
    let windowed = Filters {
        since: Some(since),
        ..Filters::default()
    };
    assert_eq!(summary(&odd, &windowed).records, 0);
}

#[test]
fn the_bucket_follows_the_span() {
    for (step_ms, bucket) in [
        (1000, Bucket::Minute),
        (3 * 3600 * 1000 / 399, Bucket::Minute),
        (20 * 60 * 1000, Bucket::Hour),
        (6 * 3600 * 1000, Bucket::Day),
    ] {
        let records = corpus(400, step_ms);
        let s = summary(&records, &Filters::default());
        assert_eq!(s.bucket, bucket, "step {step_ms} ms");
        assert!(s.decisions.keys().all(|b| b % bucket.seconds() == 0));
        assert_matches(&s, &expected(&as_json(&records)));
    }
    assert_eq!(Bucket::Day.label(T0), "2026-11-30");
    assert_eq!(Bucket::Hour.label(T0 - T0 % 3600), "2026-11-30 00:00");
    assert_eq!(Bucket::Minute.label(T0 - T0 % 60), "2026-11-30 00:53");
}

#[test]
fn guard_runs_follow_time_not_input_order() {
    let req = |mode: &str| {
        let mut r = request(1);
        if let Record::Request(b) = &mut r {
            b.guard = Arc::new(GuardFacts {
                mode: mode.into(),
                allow_sha256: None,
            });
        }
        r
    };
    // Delivered out of order (a collector): by time it is enforce ×2, monitor, enforce.
    let records: Vec<(String, Envelope)> = [
        (3, "monitor"),
        (1, "enforce"),
        (4, "enforce"),
        (2, "enforce"),
    ]
    .iter()
    .map(|(i, m)| {
        (
            "h".to_owned(),
            envelope(*i, T0 * 1000 + *i as i64 * 1000, req(m)),
        )
    })
    .collect();
    let s = summary(&records, &Filters::default());
    let runs: Vec<(&str, u64, i64, i64)> = s
        .guard_runs
        .iter()
        .map(|r| (r.mode.as_str(), r.requests, r.from_ms, r.to_ms))
        .collect();
    let t = |i: i64| T0 * 1000 + i * 1000;
    assert_eq!(
        runs,
        [
            ("enforce", 2, t(1), t(2)),
            ("monitor", 1, t(3), t(3)),
            ("enforce", 1, t(4), t(4))
        ]
    );
}

/// The cells of the HTML table `id`: one map (data-col → text) per row.
fn table_rows(html: &str, id: &str) -> Vec<BTreeMap<String, String>> {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = start + html[start..].find("</table>").expect("table end");
    let body = &html[start..end];
    let body = &body[body.find("<tbody>").expect("tbody")..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td data-col=\"")
                .skip(1)
                .map(|cell| {
                    let (col, rest) = cell.split_once('"').expect("col");
                    let text =
                        &rest[rest.find('>').expect(">") + 1..rest.find("</td>").expect("td")];
                    (unescape(col), unescape(text))
                })
                .collect()
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn report_of(records: &[(String, Envelope)]) -> Report {
    Report {
        generated: "now".into(),
        sources: Vec::new(),
        filters: Filters::default(),
        chain: Vec::new(),
        summary: summary(records, &Filters::default()),
        unmatched_hosts: Vec::new(),
        notes: Vec::new(),
    }
}

#[test]
fn the_html_escapes_what_records_say_and_prints_the_summary_numbers() {
    let records = corpus(400, 1500);
    let report = report_of(&records);
    let html = render(&report);
    // Attacker-influenced strings (a principal, a process name) appear escaped, in tables and
    // in the charts' SVG text alike; no markup of theirs survives.
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the principal, escaped"
    );
    assert!(!html.contains("<script"), "no script element at all");
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!html.contains("<img"));
    let svg_text = html
        .split("<text")
        .skip(1)
        .any(|t| t.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(svg_text, "the callers chart labels the principal, escaped");
    // Self-contained: nothing to fetch (an escaped `src=x` of a record is no attribute).
    for external in [" src=\"", " href=\"", "url(", "@import", "<link", "<script"] {
        assert!(!html.contains(external), "{external}");
    }
    // The tables print the summary's numbers.
    let s = &report.summary;
    let callers = table_rows(&html, "callers");
    assert_eq!(callers.len(), s.callers.len());
    for row in &callers {
        let c = s.callers[&(row["principal"].clone(), row["principal_kind"].clone())];
        assert_eq!(row["forwarded"], c.forwarded.to_string());
        assert_eq!(row["refused"], c.refused.to_string());
        assert_eq!(row["aborted"], c.aborted.to_string());
        assert_eq!(row["total"], c.total().to_string());
    }
    let refusals = table_rows(&html, "refusals");
    assert_eq!(refusals.len(), s.refusals.len());
    for row in &refusals {
        let key = (
            row["reason"].clone(),
            row["status"].parse::<u16>().expect("status"),
        );
        assert_eq!(row["records"], s.refusals[&key].to_string());
        if key.1 == 0 {
            assert!(!row["note"].is_empty(), "status 0 is labelled: {row:?}");
        }
    }
    let masked = table_rows(&html, "masked");
    assert_eq!(masked.len(), s.masked.len());
    for row in &masked {
        let key = (row["entity"].clone(), row["direction"].clone());
        assert_eq!(row["values"], s.masked[&key].to_string());
    }
    for (id, col, map) in [
        ("egress-by-process", "process", &s.egress_by_process),
        (
            "egress-by-destination",
            "destination",
            &s.egress_by_destination,
        ),
        ("egress-by-host", "host", &s.egress_by_host),
    ] {
        let rows = table_rows(&html, id);
        assert_eq!(rows.len(), map.len(), "{id}");
        for row in rows {
            let e = map[&row[col]];
            assert_eq!(row["refused_events"], e.refused_events.to_string());
            assert_eq!(row["monitored_events"], e.monitored_events.to_string());
        }
    }
    let decisions = table_rows(&html, "requests-by-decision");
    assert_eq!(decisions.len(), s.decisions.len());
    let total: u64 = decisions
        .iter()
        .map(|r| r["total"].parse::<u64>().expect("n"))
        .sum();
    assert_eq!(
        total,
        s.by_kind["request"] + s.by_kind["reject"],
        "every request and reject record, once"
    );
    let top = table_rows(&html, "talkers-principals-requests");
    assert_eq!(top.len(), s.principals.len().min(html::TOP_TALKERS));
    for row in &top {
        let t = s.principals[&row["principal"]];
        assert_eq!(row["bytes"], t.bytes().to_string());
    }
    assert_eq!(
        table_rows(&html, "guard-events").len(),
        s.guard_events.len()
    );
    assert_eq!(table_rows(&html, "guard-runs").len(), s.guard_runs.len());
    // Every chart with data is drawn.
    for id in [
        "chart-requests-by-decision",
        "chart-requests-by-rule",
        "chart-callers",
        "chart-regions",
        "chart-refusals",
        "chart-masked",
        "chart-egress-by-process",
        "chart-guard-timeline",
        "chart-talkers-clients-bytes",
    ] {
        let at = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id}"));
        let fig = &html[at..at + html[at..].find("</figure>").expect("end")];
        assert!(
            fig.contains("<svg") && fig.contains("<rect"),
            "{id}: {fig:.300}"
        );
    }
}

#[test]
fn an_empty_report_still_has_every_table() {
    let html = render(&report_of(&[]));
    for id in [
        "chain-status",
        "requests-by-decision",
        "rules",
        "callers",
        "regions",
        "refusals",
        "masked",
        "egress-by-process",
        "guard-runs",
        "guard-events",
        "talkers-clients-bytes",
    ] {
        assert!(table_rows(&html, id).iter().all(BTreeMap::is_empty), "{id}");
    }
    assert!(!html.contains("<svg"));
}

// Real files: a trail written by moat's writer, an export bundle of it, its shipped messages.

/// Writes a trail of `n` records of every kind into `root/name/audit`; returns the config.
fn write_trail(root: &Path, name: &str, n: u64) -> AuditConfig {
    let cfg = AuditConfig {
        fsync: FsyncMode::Never,
        checkpoint_every: 7,
        segment_max_bytes: 4096,
        ..config(&root.join(name))
    };
    write_records(
        &cfg,
        corpus(n, 10)
            .into_iter()
            .map(|(_, e)| e.record)
            .filter(|r| !matches!(r, Record::Checkpoint(_))),
    );
    cfg
}

fn trail_json(dir: &Path, host: &str) -> Vec<(String, Value)> {
    trail_lines(dir)
        .iter()
        .map(|l| (host.to_owned(), serde_json::from_str(l).expect("json")))
        .collect()
}

fn request_for(paths: Vec<PathBuf>) -> ReportRequest {
    ReportRequest {
        paths,
        ..ReportRequest::default()
    }
}

#[test]
fn a_trail_is_verified_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = write_trail(tmp.path(), "gpu-07", 120);
    let r = build(&request_for(vec![cfg.dir.clone()])).expect("report");
    assert_eq!(r.sources[0].kind, SourceKind::Trail);
    assert_eq!(
        r.sources[0].host.as_deref(),
        Some("audit"),
        "the directory's name"
    );
    let lines = trail_lines(&cfg.dir);
    let row = &r.chain[0];
    assert_eq!(row.status, Status::Ok, "{row:#?}");
    let n = lines.len() as u64;
    assert_eq!(
        (row.records, row.first_seq, row.last_seq, row.duplicates),
        (n, Some(1), Some(n), 0)
    );
    assert!(row.gaps.is_empty());
    assert_eq!(
        row.last_signed_seq,
        Some(n),
        "shutdown ends with a checkpoint"
    );
    assert_eq!(row.unsigned_tail, Some(0));
    assert!(row.checkpoints.is_some_and(|c| c > 5), "{row:#?}");
    assert_matches(&r.summary, &expected(&trail_json(&cfg.dir, "audit")));

    // Named, and checked against --keys.
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    std::fs::copy(cfg.key_dir.join(PUBKEY_FILE), keys.join("gpu-07.pub")).expect("copy");
    let mut req = request_for(vec![cfg.dir.clone()]);
    req.keys = Some(keys);
    req.host_names = vec!["gpu-07".into()];
    let r = build(&req).expect("report");
    assert_eq!(
        (r.chain[0].host.as_str(), r.chain[0].status),
        ("gpu-07", Status::Ok)
    );
    assert_eq!(r.chain[0].key, "--keys: gpu-07.pub");

    // A record changed: BROKEN, named by verify's own words; its records are still counted.
    let seg = segments(&cfg.dir).expect("segments")[0].clone();
    let text = std::fs::read_to_string(&seg).expect("read");
    std::fs::write(&seg, text.replacen("10.0.1.1:", "10.0.1.9:", 1)).expect("write");
    let r = build(&req).expect("report");
    let row = &r.chain[0];
    assert_eq!(row.status, Status::Broken);
    assert!(row.problems[0].contains("hash chain broken"), "{row:#?}");
    assert_eq!(row.records, n);
    assert_eq!(r.summary.records, n);
}

#[test]
fn a_bundle_and_collector_files_are_checked_and_each_record_counted_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = write_trail(tmp.path(), "gpu-07", 90);
    let lines = trail_lines(&cfg.dir);
    let n = lines.len() as u64;
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    std::fs::copy(cfg.key_dir.join(PUBKEY_FILE), keys.join("gpu-07.pub")).expect("copy");

    // The bundle: every record (no window).
    let bundle = tmp.path().join("bundle");
    crate::audit::export::export(&crate::audit::export::ExportRequest {
        dir: cfg.dir.clone(),
        since: None,
        until: None,
        format: Format::Jsonl,
        out: bundle.clone(),
        key: cfg.key_dir.join(crate::audit::KEY_FILE),
        pubkey: None,
    })
    .expect("export");
    let mut req = request_for(vec![bundle.clone()]);
    req.host_names = vec!["gpu-07".into()];
    let r = build(&req).expect("report");
    let row = &r.chain[0];
    assert_eq!((row.status, row.records), (Status::Ok, n), "{row:#?}");
    assert!(
        row.key.starts_with("none"),
        "no key: signatures not checked"
    );
    assert_eq!(row.checkpoints, None);
    req.keys = Some(keys.clone());
    let r = build(&req).expect("report");
    let row = &r.chain[0];
    assert_eq!(row.status, Status::Ok, "{row:#?}");
    assert_eq!((row.last_signed_seq, row.unsigned_tail), (Some(n), Some(0)));
    assert_matches(&r.summary, &expected(&trail_json(&cfg.dir, "gpu-07")));

    // The collector: every record shipped as a message, a few twice, one line lost.
    let collector = tmp.path().join("collector");
    std::fs::create_dir_all(&collector).expect("dir");
    let msg = |l: &String| {
        let f = crate::audit::syslog::line_fields(l).expect("fields");
        crate::audit::syslog::message("gpu-07", 1, l, &f)
    };
    let mut stored: Vec<String> = lines.iter().map(msg).collect();
    stored.extend(lines[..5].iter().map(msg));
    let lost = stored.remove(20);
    std::fs::write(collector.join("all.log"), stored.join("\n") + "\n").expect("write");
    let mut req = request_for(vec![collector.clone()]);
    req.keys = Some(keys.clone());
    let r = build(&req).expect("report");
    let row = &r.chain[0];
    assert_eq!((row.host.as_str(), row.status), ("gpu-07", Status::Broken));
    assert_eq!((row.records, row.duplicates), (n - 1, 5));
    assert_eq!(row.gaps, vec![[21, 21]]);
    let mut held = trail_json(&cfg.dir, "gpu-07");
    held.remove(20);
    assert_matches(&r.summary, &expected(&held));
    assert!(lost.contains("\"seq\":21,"));

    // The trail, the bundle and the collector together: each record counted once.
    let mut req = request_for(vec![cfg.dir.clone(), bundle, collector]);
    req.keys = Some(keys);
    req.host_names = vec!["gpu-07".into(), "gpu-07".into()];
    let r = build(&req).expect("report");
    assert_eq!(r.chain.len(), 3);
    assert_matches(&r.summary, &expected(&trail_json(&cfg.dir, "gpu-07")));
    assert!(r.notes.is_empty(), "{:?}", r.notes);

    // --host filters the chain rows and the records.
    req.filters.hosts = vec!["gpu-09".into()];
    let r = build(&req).expect("report");
    assert!(r.chain.is_empty() && r.summary.records == 0);
    assert_eq!(r.unmatched_hosts, vec!["gpu-09".to_owned()]);
}

#[test]
fn bad_invocations_are_usage_errors_naming_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = write_trail(tmp.path(), "a", 3);
    let b = write_trail(tmp.path(), "b", 3);
    let usage = |req: &ReportRequest| match build(req) {
        Err(ReportError::Usage(m)) => m,
        other => panic!("not a usage error: {other:?}"),
    };
    // Two trails both named `audit`.
    let m = usage(&request_for(vec![a.dir.clone(), b.dir.clone()]));
    assert!(m.starts_with("--host-name: "), "{m}");
    let mut req = request_for(vec![a.dir.clone(), b.dir]);
    req.host_names = vec!["a".into()];
    assert!(usage(&req).starts_with("--host-name: given 1 time(s) for 2"));
    req.host_names = vec!["a".into(), "b".into()];
    assert!(build(&req).is_ok());
    // Collector files without --keys.
    let file = tmp.path().join("x.log");
    std::fs::write(&file, "").expect("write");
    assert!(usage(&request_for(vec![file.clone()])).starts_with("--keys DIR is needed"));
    let mut req = request_for(vec![file]);
    req.keys = Some(tmp.path().join("nowhere"));
    assert!(usage(&req).starts_with("--keys "));
    // A PATH that does not exist; a window that is empty.
    let missing = tmp.path().join("missing");
    assert!(usage(&request_for(vec![missing.clone()])).starts_with(&missing.display().to_string()));
    let mut req = request_for(vec![a.dir]);
    req.filters.since = Some(OffsetDateTime::from_unix_timestamp(T0).expect("t"));
    req.filters.until = req.filters.since;
    assert!(usage(&req).starts_with("--since"));
}

#[test]
fn builder_and_build_agree() {
    let records = corpus(100, 700);
    let mut b = Builder::new(Filters::default());
    for (h, e) in &records {
        b.add(h, e);
    }
    assert_eq!(b.finish(), summary(&records, &Filters::default()));
}
