//! `moat audit report` end to end: a gateway serves allowed, refused and redacted requests (one
//! caller's JWT names a principal that is HTML), the report is written from its trail, every
//! table's numbers are read back and compared with counts made here from the trail's records,
//! and headless Chromium renders the file: every chart's SVG is in the DOM, drawn, and the
//! screenshot is not blank.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::client;
use crate::gateway::{self, Gateway};
use crate::idp::{Idp, ISS};
use crate::origin::Origin;

/// A principal an attacker chose: it must reach the report as text, never as markup.
const HOSTILE: &str = "<script>alert(1)</script>";

fn config(idp: &Idp) -> String {
    format!(
        r#"[residency]
region = "eu-central"

[identity.jwt]
jwks_file = "{}"
issuers = ["{ISS}"]
audiences = ["moat"]
leeway = "5s"

[redaction.profiles.mask]
entities = ["EMAIL_ADDRESS"]
direction = "request"
"#,
        idp.jwks()
    )
}

const POLICY: &str = r#"
[[policy.rules]]
id = "ml-users"
kinds = ["jwt"]
groups = ["ml-users"]
paths = ["/echo", "/bytes/*"]
redaction = "mask"
action = "allow"
"#;

async fn send(gw: &Gateway, request: &str) -> u16 {
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, request.as_bytes()).await;
    r.expect("response").status
}

fn post(token: Option<&str>, body: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(token: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
}

/// The rows of the HTML table `id`: data-col → text, one map per row.
fn table(html: &str, id: &str) -> Vec<BTreeMap<String, String>> {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id} in the report"));
    let end = start + html[start..].find("</table>").expect("table end");
    let body = &html[start..end];
    let body = &body[body.find("<tbody>").expect("tbody")..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td data-col=\"")
                .skip(1)
                .map(|cell| {
                    let (col, rest) = cell.split_once('"').expect("data-col");
                    let open = rest.find('>').expect("cell") + 1;
                    let close = rest.find("</td>").expect("cell end");
                    (unescape(col), unescape(&rest[open..close]))
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

fn num(row: &BTreeMap<String, String>, col: &str) -> u64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no {col} in {row:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{col} is no number in {row:?}"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("(none)").to_owned()
}

fn report(args: &[&str]) -> std::process::Output {
    Command::new(gateway::binary())
        .args(["audit", "report"])
        .args(args)
        .output()
        .expect("moat audit report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_what_the_trail_holds_and_renders_offline() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let mut gw = gateway::new(origin.addr.to_string())
        .listener("identity = [\"jwt\"]")
        .section(&config(&idp))
        .policy(POLICY)
        .run();
    let hostile = idp.token(|c| c["sub"] = HOSTILE.into());
    let alice = idp.token(|_| {});
    for i in 0..3 {
        let status = send(&gw, &post(Some(&hostile), &format!("{{\"n\":{i}}}"))).await;
        assert_eq!(status, 200);
    }
    assert_eq!(send(&gw, &get(&alice, "/bytes/5000")).await, 200);
    let masked = r#"{"messages":[{"role":"user","content":"mail jane.doe@example.com"}]}"#;
    assert_eq!(send(&gw, &post(Some(&alice), masked)).await, 200);
    assert_eq!(
        send(&gw, &get(&hostile, "/admin")).await,
        403,
        "no rule allows it"
    );
    assert_eq!(send(&gw, &post(None, "{}")).await, 401, "no credentials");
    // A graceful stop: the trail ends with a signed checkpoint, and holds nothing more after.
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(10)).is_some(),
        "moat stopped"
    );

    let out_dir = tempfile::tempdir().expect("tempdir");
    let html_path = out_dir.path().join("report.html");
    let audit_dir = gw.audit_dir();
    let out = report(&[
        "--out",
        &html_path.display().to_string(),
        &audit_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).expect("the report");
    let records = gw.audit_records();
    let host = audit_dir
        .file_name()
        .expect("dir name")
        .to_string_lossy()
        .into_owned();

    // 1. Chain status: the trail, whole and signed.
    let chain = table(&html, "chain-status");
    assert_eq!(chain.len(), 1, "{chain:?}");
    let row = &chain[0];
    let last = records
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .max();
    assert_eq!(
        (row["host"].as_str(), row["status"].as_str()),
        (host.as_str(), "OK")
    );
    assert_eq!(num(row, "records"), records.len() as u64);
    assert_eq!(
        (num(row, "first_seq"), Some(num(row, "last_seq"))),
        (1, last)
    );
    assert_eq!((num(row, "gaps"), num(row, "duplicates")), (0, 0));
    assert_eq!(
        Some(num(row, "last_signed_seq")),
        last,
        "stop ends with a checkpoint"
    );
    assert_eq!(num(row, "unsigned_tail"), 0);

    // Records by kind.
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        *kinds.entry(text(&r["kind"])).or_default() += 1;
    }
    let shown: BTreeMap<String, u64> = table(&html, "records-by-kind")
        .iter()
        .map(|r| (r["kind"].clone(), num(r, "records")))
        .collect();
    assert_eq!(shown, kinds);
    let attempts: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" || r["kind"] == "reject")
        .collect();
    assert_eq!(kinds["request"], 5);
    assert!(kinds["reject"] >= 2);

    // 2. Requests by decision (every bucket added up).
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for r in &attempts {
        let o = match (r["kind"].as_str(), r["reason"].as_str()) {
            (Some("request"), _) => text(&r["decision"]),
            (_, Some("client_aborted")) => "client_aborted".to_owned(),
            _ => "refused".to_owned(),
        };
        *outcomes.entry(o).or_default() += 1;
    }
    let mut shown: BTreeMap<String, u64> = BTreeMap::new();
    for row in table(&html, "requests-by-decision") {
        for (col, v) in &row {
            if col != "bucket" && col != "total" {
                *shown.entry(col.clone()).or_default() += v.parse::<u64>().expect("n");
            }
        }
    }
    assert_eq!(shown, outcomes);
    // By rule.
    let mut rules: BTreeMap<String, u64> = BTreeMap::new();
    for r in &attempts {
        *rules.entry(text(&r["rule"])).or_default() += 1;
    }
    let shown: BTreeMap<String, u64> = table(&html, "rules")
        .iter()
        .map(|r| (r["rule"].clone(), num(r, "total")))
        .collect();
    assert_eq!(shown, rules);
    assert_eq!(rules["ml-users"], 5);
    assert!(rules["default-deny"] >= 1);

    // 3. Callers and regions.
    let mut callers: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut regions: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &attempts {
        *callers
            .entry((text(&r["principal"]), text(&r["principal_kind"])))
            .or_default() += 1;
        let claimed: Vec<String> = r["caller_regions"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        let claimed = if claimed.is_empty() {
            "none".to_owned()
        } else {
            claimed.join(",")
        };
        let own = r["region"].as_str().unwrap_or("none").to_owned();
        *regions.entry((claimed, own)).or_default() += 1;
    }
    let shown: BTreeMap<(String, String), u64> = table(&html, "callers")
        .iter()
        .map(|r| {
            (
                (r["principal"].clone(), r["principal_kind"].clone()),
                num(r, "total"),
            )
        })
        .collect();
    assert_eq!(shown, callers);
    assert_eq!(callers[&(HOSTILE.to_owned(), "jwt".to_owned())], 4);
    let shown: BTreeMap<(String, String), u64> = table(&html, "regions")
        .iter()
        .map(|r| {
            (
                (r["caller_regions"].clone(), r["region"].clone()),
                num(r, "total"),
            )
        })
        .collect();
    assert_eq!(shown, regions);
    assert!(regions.contains_key(&("eu-central".to_owned(), "eu-central".to_owned())));

    // 4. Refusals.
    let mut refusals: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "reject") {
        *refusals
            .entry((text(&r["reason"]), r["status"].as_u64().expect("status")))
            .or_default() += 1;
    }
    let shown: BTreeMap<(String, u64), u64> = table(&html, "refusals")
        .iter()
        .map(|r| ((r["reason"].clone(), num(r, "status")), num(r, "records")))
        .collect();
    assert_eq!(shown, refusals);
    assert!(refusals.contains_key(&("forbidden".to_owned(), 403)));
    assert!(refusals.contains_key(&("unauthenticated".to_owned(), 401)));

    // 5. Masked values.
    let mut masked: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "request") {
        for (k, v) in r["redactions"].as_object().expect("redactions") {
            let (entity, direction) = k.rsplit_once('.').expect("ENTITY.direction");
            *masked
                .entry((entity.to_owned(), direction.to_owned()))
                .or_default() += v.as_u64().expect("count");
        }
    }
    let shown: BTreeMap<(String, String), u64> = table(&html, "masked")
        .iter()
        .map(|r| {
            (
                (r["entity"].clone(), r["direction"].clone()),
                num(r, "values"),
            )
        })
        .collect();
    assert_eq!(shown, masked);
    assert_eq!(
        masked[&("EMAIL_ADDRESS".to_owned(), "request".to_owned())],
        1
    );

    // 6. No guard in this test: no egress rows. 7. Every request under the guard mode recorded.
    assert!(table(&html, "egress-by-process")
        .iter()
        .all(BTreeMap::is_empty));
    let mut modes: BTreeMap<String, u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "request") {
        *modes.entry(text(&r["guard"]["mode"])).or_default() += 1;
    }
    let mut shown: BTreeMap<String, u64> = BTreeMap::new();
    for row in table(&html, "guard-runs") {
        *shown.entry(row["mode"].clone()).or_default() += num(&row, "requests");
    }
    assert_eq!(shown, modes);

    // 8. Top talkers: requests and bytes per principal and per client IP.
    let mut principals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut ips: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &attempts {
        let bytes = r["bytes_in"].as_u64().unwrap_or(0) + r["bytes_out"].as_u64().unwrap_or(0);
        let client = text(&r["client"]);
        let ip = client.rsplit_once(':').expect("IP:port").0.to_owned();
        for e in [
            principals.entry(text(&r["principal"])).or_default(),
            ips.entry(ip).or_default(),
        ] {
            e.0 += 1;
            e.1 += bytes;
        }
    }
    for (id, key, expected) in [
        ("talkers-principals-requests", "principal", &principals),
        ("talkers-principals-bytes", "principal", &principals),
        ("talkers-clients-requests", "client_ip", &ips),
        ("talkers-clients-bytes", "client_ip", &ips),
    ] {
        let shown: BTreeMap<String, (u64, u64)> = table(&html, id)
            .iter()
            .map(|r| (r[key].clone(), (num(r, "total"), num(r, "bytes"))))
            .collect();
        assert_eq!(&shown, expected, "{id}");
    }
    assert!(principals["alice@example.com"].1 >= 5000, "{principals:?}");

    // The hostile principal is text, escaped, in tables and charts; nothing is fetched.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for bad in ["<script", " src=\"", " href=\"", "url(", "@import", "<link"] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    // No content: the masked address never reached a record, nor the report.
    assert!(!html.contains("jane.doe"));

    // The filters: a window in the future counts nothing, the chain is still shown.
    let empty = out_dir.path().join("empty.html");
    let out = report(&[
        "--since",
        "2099-01-01T00:00:00Z",
        "--out",
        &empty.display().to_string(),
        &audit_dir.display().to_string(),
    ]);
    assert!(out.status.success());
    let empty = std::fs::read_to_string(&empty).expect("report");
    assert!(table(&empty, "records-by-kind")
        .iter()
        .all(BTreeMap::is_empty));
    assert_eq!(table(&empty, "chain-status").len(), 1);
    // Bad arguments: exit 64, the flag named.
    let out = report(&["--since", "yesterday", "--out", "x.html", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since yesterday"));
    let out = report(&[
        "--out",
        "/nonexistent-dir/x.html",
        &audit_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));

    render_in_chromium(&html_path, &html);
}

/// Opens the report in headless Chromium: each chart's SVG must be in the rendered DOM with
/// shapes drawn, and the screenshot must show something.
fn render_in_chromium(html_path: &Path, html: &str) {
    if Command::new("chromium").arg("--version").output().is_err() {
        crate::skip::skip("chromium (Debian chromium) is not installed");
        return;
    }
    let profile = tempfile::tempdir().expect("profile");
    let png = html_path.with_extension("png");
    let url = format!("file://{}", html_path.display());
    let chromium = |extra: &[String]| {
        Command::new("timeout")
            .arg("120")
            .arg("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,3000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    };
    let shot = chromium(&[format!("--screenshot={}", png.display())]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10 * 1024,
        "screenshot of {size} bytes: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let dump = chromium(&["--dump-dom".to_owned()]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dom = String::from_utf8_lossy(&dump.stdout);
    // Every chart the file holds, drawn: in the DOM, an <svg> with shapes in it.
    let charts: Vec<&str> = html
        .split("<figure class=\"chart\" id=\"")
        .skip(1)
        .filter_map(|f| {
            let id = f.split('"').next()?;
            f[..f.find("</figure>")?].contains("<svg").then_some(id)
        })
        .collect();
    for id in [
        "chart-requests-by-decision",
        "chart-requests-by-rule",
        "chart-callers",
        "chart-regions",
        "chart-refusals",
        "chart-masked",
        "chart-guard-timeline",
        "chart-talkers-principals-requests",
        "chart-talkers-clients-bytes",
    ] {
        assert!(charts.contains(&id), "{id} has a chart: {charts:?}");
    }
    for id in &charts {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} is not in the rendered DOM"));
        let figure = &dom[at..at + dom[at..].find("</figure>").expect("figure end")];
        let svg = &figure[figure
            .find("<svg")
            .unwrap_or_else(|| panic!("{id}: no <svg>"))..];
        let shapes = svg.matches("<rect").count() + svg.matches("<polyline").count();
        assert!(shapes > 2, "{id}: {shapes} shapes drawn");
        assert!(svg.contains("<text"), "{id}: no labels");
    }
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the DOM holds the principal as text"
    );
    assert!(!dom.contains("<script"), "and no script element");
}
