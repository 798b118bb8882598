//! The operations views in `config/`: the Prometheus alerting rules
//! (`prometheus/moat.rules.yml`, unit tests in `prometheus/moat.rules.test.yml`) and the Grafana
//! dashboard (`grafana/moat.json`). promtool accepts the rules, their unit tests pass and every
//! dashboard query parses; every metric either names is one a live moat exposes on `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::ops::{allowed_masked_denied, METRICS_POLICY};
use crate::client::Raw;
use crate::gateway;
use crate::origin::Origin;

const RULES: &str = "config/prometheus/moat.rules.yml";
const RULE_TESTS: &str = "config/prometheus/moat.rules.test.yml";
const DASHBOARD: &str = "config/grafana/moat.json";

/// A file of the repository, by its path from the workspace root.
fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// `promtool ARGS FILE`; `None` when promtool cannot be spawned (the test is then skipped).
fn promtool(args: &[&str], file: &Path) -> Option<Output> {
    match Command::new("promtool").args(args).arg(file).output() {
        Ok(out) => Some(out),
        Err(e) => {
            crate::skip::skip(&format!("promtool (Debian prometheus) cannot run: {e}"));
            None
        }
    }
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `expr:` of every rule in a rules file: a block scalar (`expr: |`, the lines indented
/// under it) or a one-line value.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let key = line.trim_start().trim_start_matches("- ");
        let Some(value) = key.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut expr = String::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
            {
                expr.push_str(lines[i].trim());
                expr.push('\n');
                i += 1;
            }
            exprs.push(expr);
        } else {
            exprs.push(value.trim_matches(['\'', '"']).to_owned());
        }
    }
    exprs
}

/// The metric names (identifiers starting with `moat_`) in a PromQL expression; quoted
/// strings (label values, Grafana text) are not looked into.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for s in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if s == '\\' && c != '`' {
                    escaped = true;
                } else if s == c {
                    break;
                }
            }
            prev = c;
            continue;
        }
        if ident(c) && !ident(prev) {
            let mut word = String::from(c);
            while let Some(&n) = chars.peek().filter(|&&n| ident(n)) {
                word.push(n);
                chars.next();
            }
            prev = word.chars().last().unwrap_or(c);
            if word.starts_with("moat_") {
                names.insert(word);
            }
            continue;
        }
        prev = c;
    }
    names
}

/// The metric families of a `/metrics` exposition (its `# TYPE` lines).
struct Exposed {
    /// Every family but the histograms: their samples carry the family's own name.
    plain: BTreeSet<String>,
    /// Histograms: their samples are `NAME_bucket`, `NAME_sum` and `NAME_count`.
    histograms: BTreeSet<String>,
}

impl Exposed {
    fn parse(metrics: &str) -> Self {
        let mut exposed = Self {
            plain: BTreeSet::new(),
            histograms: BTreeSet::new(),
        };
        for line in metrics.lines() {
            let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|t| t.split_once(' '))
            else {
                continue;
            };
            if kind.trim() == "histogram" {
                exposed.histograms.insert(name.to_owned());
            } else {
                exposed.plain.insert(name.to_owned());
            }
        }
        exposed
    }

    /// Whether Prometheus holds samples named `name` after scraping this exposition.
    fn has(&self, name: &str) -> bool {
        self.plain.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| self.histograms.contains(base))
            })
    }
}

/// Families a live moat prints only once they have a series, and which this test cannot give
/// one: the egress guard counts refusals only as root, with its kernel object built in and a
/// cgroup fenced (`tests::guard`). For these (the full name, and the name
/// `gateway/src/metrics.rs` registers), that registration stands in for the live `/metrics`.
const NOT_DRIVEN_HERE: &[(&str, &str)] = &[("moat_guard_refusals_total", "guard_refusals")];

/// The names `gateway/src/metrics.rs` registers (`registry.register("NAME", …)`, without the
/// `moat_` prefix and the `_total` a counter's samples carry).
fn registered_families() -> BTreeSet<String> {
    let source: String = read("gateway/src/metrics.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    source
        .split("registry.register(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

/// Every query of the dashboard, named by where it is: panel targets and template variables.
fn dashboard_queries(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let panels = dash["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for target in targets {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((format!("panel \"{title}\""), expr.to_owned()));
            }
        }
    }
    let vars = dash["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for var in vars.iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap_or("(unnamed)");
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        if let Some(query) = query {
            queries.push((format!("variable ${name}"), query.to_owned()));
        }
    }
    queries
}

/// A dashboard query as plain PromQL: Grafana's interval variables become `5m`, template
/// variables (used in label matchers) `.*`.
fn as_promql(expr: &str, variables: &[&str]) -> String {
    let mut promql = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    let mut variables = variables.to_vec();
    variables.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in variables {
        promql = promql
            .replace(&format!("${{{v}}}"), ".*")
            .replace(&format!("${v}"), ".*");
    }
    promql
}

/// `promtool check rules` and `promtool test rules` accept the alerting rules and their unit
/// tests (which fire the 5xx, audit, redaction, guard, TLS and cap alerts from synthetic
/// series), and every dashboard panel query parses as PromQL.
#[test]
fn alert_rules_and_dashboard_queries_pass_promtool() {
    let Some(out) = promtool(&["check", "rules"], &repo_file(RULES)) else {
        return;
    };
    assert_success("promtool check rules", &out);
    let Some(out) = promtool(&["test", "rules"], &repo_file(RULE_TESTS)) else {
        return;
    };
    assert_success("promtool test rules", &out);

    let dash = dashboard();
    let variables: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let queries = dashboard_queries(&dash);
    let panel_queries = queries.iter().filter(|(at, _)| at.starts_with("panel"));
    for (i, (_, expr)) in panel_queries.enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        let expr = serde_json::Value::from(as_promql(expr, &variables)).to_string();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).expect("write dashboard rules");
    let Some(out) = promtool(&["check", "rules"], &file) else {
        return;
    };
    assert_success(&format!("dashboard queries as rules:\n{rules}"), &out);
}

/// A live moat with an admin endpoint serves requests (one value masked), refuses one by
/// policy, fails a TLS handshake and closes a connection for its per-address cap, so that every
/// family it can count here has a series (a family without one is not printed). Every metric
/// named by the alerting rules, their unit tests' series and the dashboard's queries is then a
/// family of its `/metrics` (histograms through `_bucket`, `_sum` and `_count`), except those in
/// [`NOT_DRIVEN_HERE`], which must be registered in `gateway/src/metrics.rs`; every dashboard
/// panel has a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_metrics_moat_exposes() {
    let origin = Origin::start().await;
    let port = gateway::free_port();
    let gw = gateway::new(origin.addr.to_string())
        .listener("max_connections_per_ip = 2")
        .section(&format!("[admin]\naddress = \"127.0.0.1:{port}\""))
        .policy(METRICS_POLICY)
        .run();
    let http = crate::client::http(&gw.ca);
    allowed_masked_denied(&http, gw.addr).await;
    let garbled = Raw::connect_after(gw.addr, &gw.ca, b"not TLS\r\n\r\n").await;
    assert!(garbled.is_err(), "a handshake after plain text succeeded");
    // From 127.0.0.2 (loopback too), which nothing else connects from: two are served, the
    // third is over `max_connections_per_ip`.
    let from_other = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        let tcp = socket.connect(gw.addr).await.expect("tcp");
        Raw::over(tcp, &gw.ca).await
    };
    let held = (from_other().await, from_other().await);
    assert!(
        held.0.is_ok() && held.1.is_ok(),
        "two connections from one address refused"
    );
    assert!(
        from_other().await.is_err(),
        "a third connection from one address got TLS"
    );
    drop(held);

    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for want in [
        r#"moat_requests_total{listener="e2e",protocol="http/1.1",status="200",rule="root"} 1"#,
        r#"moat_refusals_total{listener="e2e",reason="forbidden",status="403"} 1"#,
        r#"moat_redactions_total{entity="EMAIL_ADDRESS",direction="request"} 1"#,
        r#"moat_connections_refused_total{listener="e2e",reason="max_connections_per_ip"}"#,
        r#"moat_tls_handshake_failures_total{listener="e2e"}"#,
    ] {
        assert!(metrics.contains(want), "{want} missing from:\n{metrics}");
    }
    let exposed = Exposed::parse(&metrics);

    // Metric name -> where it is used.
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut note = |names: BTreeSet<String>, at: &str| {
        for name in names {
            used.entry(name).or_default().insert(at.to_owned());
        }
    };

    let rules = read(RULES);
    let exprs = rule_exprs(&rules);
    let alerts = rules
        .lines()
        .filter(|l| {
            l.trim_start()
                .trim_start_matches("- ")
                .starts_with("alert:")
        })
        .count();
    assert!(alerts > 0, "no alerts in {RULES}");
    assert_eq!(
        exprs.len(),
        alerts,
        "{RULES}: one expr per alert: {exprs:#?}"
    );
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{RULES}: no moat metric in {expr}");
        note(names, RULES);
    }
    for line in read(RULE_TESTS).lines() {
        if let Some(series) = line.trim_start().strip_prefix("- series:") {
            let series = series.trim().trim_matches(['\'', '"']);
            let name = series.split('{').next().unwrap_or(series);
            note(metric_names(name), RULE_TESTS);
        }
    }

    let dash = dashboard();
    assert_eq!(dash["uid"], "moat", "{DASHBOARD}: uid");
    assert_eq!(dash["title"], "moat", "{DASHBOARD}: title");
    let panels = dash["panels"].as_array().expect("dashboard panels");
    assert!(!panels.is_empty(), "{DASHBOARD} has no panels");
    for panel in panels {
        let has_query = panel["targets"].as_array().is_some_and(|targets| {
            targets
                .iter()
                .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
        });
        assert!(has_query, "{DASHBOARD}: panel without a query: {panel}");
    }
    for (at, expr) in dashboard_queries(&dash) {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "{DASHBOARD} {at}: no moat metric in {expr}"
        );
        note(names, &format!("{DASHBOARD} {at}"));
    }

    let registered = registered_families();
    let unknown: Vec<String> = used
        .iter()
        .filter(|(name, _)| {
            !exposed.has(name)
                && !NOT_DRIVEN_HERE
                    .iter()
                    .any(|(n, stem)| n == name && registered.contains(*stem))
        })
        .map(|(name, at)| {
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            format!("{name} (in {})", at.join("; "))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics moat does not expose:\n  {}\nmoat's /metrics:\n{metrics}",
        unknown.join("\n  ")
    );
    let (live, by_registration): (Vec<&String>, Vec<&String>) =
        used.keys().partition(|name| exposed.has(name));
    println!("in moat's /metrics: {live:?}; registered, no series here: {by_registration:?}");
}

/// The check itself: names are found outside quoted strings only; a histogram counts through
/// its sample suffixes, not by its bare name; a counter only by the name its samples carry.
#[test]
fn metric_name_check_flags_what_is_not_exposed() {
    assert_eq!(
        metric_names(
            r#"sum(rate(moat_a_total{x="moat_b",y=~'moat_c'}[5m])) / ignoring(moat) moat_d:e"#
        ),
        BTreeSet::from(["moat_a_total".to_owned(), "moat_d:e".to_owned()])
    );
    assert_eq!(
        rule_exprs("  - alert: A\n    expr: |\n      sum(moat_x)\n        > 0\n    for: 1m\n  - alert: B\n    expr: moat_y > 0\n"),
        vec!["sum(moat_x)\n> 0\n".to_owned(), "moat_y > 0".to_owned()]
    );
    let exposed = Exposed::parse(
        "# HELP moat_requests_total R.\n# TYPE moat_requests_total counter\nmoat_requests_total 1\n# TYPE moat_wait_seconds histogram\nmoat_wait_seconds_bucket{le=\"+Inf\"} 0\n# TYPE moat_depth gauge\nmoat_depth 0\n",
    );
    for name in [
        "moat_requests_total",
        "moat_depth",
        "moat_wait_seconds_bucket",
        "moat_wait_seconds_sum",
        "moat_wait_seconds_count",
    ] {
        assert!(exposed.has(name), "{name}");
    }
    for name in [
        "moat_requests",
        "moat_wait_seconds",
        "moat_requests_total_bucket",
        "moat_depth_count",
        "moat_bogus_total",
    ] {
        assert!(!exposed.has(name), "{name}");
    }
}
