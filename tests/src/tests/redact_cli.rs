//! `moat redact` gives what the gateway forwards: the same bodies sent through a running gateway
//! to an echoing upstream and through `moat redact` with the same configuration come out byte for
//! byte the same, and `--explain`'s spans, applied to the original strings, give the gateway's
//! strings. Then its errors and exit codes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::client;
use crate::gateway::{self, binary, Gateway};
use crate::origin::Origin;

/// Request-only, so the echoed response is exactly what the upstream received; field paths, so
/// the walk of `--explain` is checked against the gateway's for them too.
const PROFILES: &str = r#"
[redaction.profiles.try]
direction = "request"
never = ["$.model"]
always = ["$.user"]

[[policy.rules]]
id = "redacted"
require_region = false
redaction = "try"
action = "allow"
"#;

/// Samples per chat body.
const BATCH: usize = 200;

/// The corpus seed (the one `gateway/tests/corpus.rs` measures precision and recall on).
const SEED: u64 = 0x6d6f_6174;

/// The texts compared: every sample of the labelled corpus, then a few of JSON's own edge cases
/// (quotes, backslashes, control characters, an empty string).
fn samples() -> Vec<String> {
    let mut texts: Vec<String> = moat_corpus::generate(SEED)
        .into_iter()
        .map(|s| s.text)
        .collect();
    texts.extend(
        [
            "quotes \"jane@example.com\" and a backslash \\ and\ttabs\nand lines",
            "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ and 4111\u{200B}1111\u{200B}1111\u{200B}1111",
            "naïve café 😀 — jane@example.com — 東京 10.0.0.1",
            "",
        ]
        .map(str::to_owned),
    );
    texts
}

/// A chat-completion body carrying `texts` as its messages.
fn chat_body(texts: &[String]) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| serde_json::json!({"role": "user", "content": t}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-x jane@example.com",
        "user": "customer 8812 jane@example.com",
        "temperature": 0.2,
        "messages": messages,
    }))
    .expect("serialize")
}

/// What the upstream received for `body` sent with `content_type`.
async fn through_gateway(gw: &Gateway, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, &req).await;
    let r = r.expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

/// Runs `moat redact` with `args`, `stdin` on its standard input.
fn moat_redact(args: &[&str], config: Option<&Path>, stdin: &[u8]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.arg("redact");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moat redact");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("moat redact output");
    writer.join().expect("stdin writer");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One `--explain` line.
#[derive(Debug)]
struct Span {
    start: usize,
    end: usize,
    entity: String,
    detector: String,
}

/// `--explain` output grouped by file and JSON Pointer (`""` for text), in order.
fn parse_explain(stdout: &[u8]) -> BTreeMap<(String, String), Vec<Span>> {
    let mut out: BTreeMap<(String, String), Vec<Span>> = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let offset = |k: &str| {
            v[k].as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(usize::MAX)
        };
        assert!(v["validation"].is_string(), "{line}");
        out.entry((field("file"), field("path")))
            .or_default()
            .push(Span {
                start: offset("start"),
                end: offset("end"),
                entity: field("entity"),
                detector: field("detector"),
            });
    }
    out
}

/// `text` with each span (character offsets) replaced by `<ENTITY>`.
fn apply(text: &str, spans: &[Span]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    for s in spans {
        assert!(
            pos <= s.start && s.start <= s.end && s.end <= chars.len(),
            "span {s:?} out of order or range (text of {} characters)",
            chars.len()
        );
        out.extend(&chars[pos..s.start]);
        out.push_str(&format!("<{}>", s.entity));
        pos = s.end;
    }
    out.extend(&chars[pos..]);
    out
}

fn write_files(dir: &Path, bodies: &[Vec<u8>]) -> Vec<PathBuf> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = dir.join(format!("body-{i:03}.json"));
            std::fs::write(&f, b).expect("write sample body");
            f
        })
        .collect()
}

/// Escapes the gateway decodes before scanning (`\u0040`, a surrogate pair), member names a
/// pointer escapes, nesting, spacing and number spellings it keeps, an `always` path holding
/// null.
const ODD_BODY: &[u8] = br#"{ "model" : "m", "user": null, "n": 1.50e2,
  "messages": [ {"role": "user", "content": "bob\u0040example.org \ud83d\ude00 jane@example.com"} ],
  "meta": {"a/b~c": ["x 10.20.30.40", {"k": "card 4111 1111 1111 1111"}]} }"#;

/// Every string of a JSON value with its JSON Pointer.
fn strings<'v>(v: &'v serde_json::Value, at: String, out: &mut Vec<(String, &'v str)>) {
    match v {
        serde_json::Value::String(s) => out.push((at, s)),
        serde_json::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                strings(e, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, e) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                strings(e, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Every sample, batched into chat bodies, and one body of JSON's odd corners: the gateway's
/// forwarded body and `moat redact --json` agree byte for byte, and `--explain`'s spans applied
/// to each original string give the string the gateway forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_json_matches_what_the_gateway_forwards() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).policy(PROFILES).run();
    let texts = samples();
    let mut bodies: Vec<Vec<u8>> = texts.chunks(BATCH).map(chat_body).collect();
    bodies.push(ODD_BODY.to_vec());
    let mut forwarded = Vec::new();
    for body in &bodies {
        forwarded.push(through_gateway(&gw, "application/json", body).await);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_files(dir.path(), &bodies);
    let file_args: Vec<&str> = files.iter().filter_map(|f| f.to_str()).collect();
    let config = Some(gw.config_file());

    // Redacted bodies, one after another on stdout.
    let mut args = vec!["--profile", "try", "--json"];
    args.extend(&file_args);
    let out = moat_redact(&args, config, b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut at = 0;
    for (i, expected) in forwarded.iter().enumerate() {
        let got = out.stdout.get(at..at + expected.len());
        assert!(
            got == Some(expected.as_slice()),
            "body {i}: moat redact and the gateway differ\n gateway: {}\n    moat: {}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(got.unwrap_or_default())
        );
        at += expected.len();
    }
    assert_eq!(
        at,
        out.stdout.len(),
        "moat redact wrote more than the gateway"
    );
    assert!(
        stderr(&out).contains("moat redact: profile try: redacted "),
        "{}",
        stderr(&out)
    );

    // --explain (JSON detected, not asked for): every string of every body rebuilt.
    let mut args = vec!["--profile", "try", "--explain"];
    args.extend(&file_args);
    let out = moat_redact(&args, config, b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut explained = parse_explain(&out.stdout);
    let mut contents = 0;
    for ((body, fwd), file) in bodies.iter().zip(&forwarded).zip(&file_args) {
        let original: serde_json::Value = serde_json::from_slice(body).expect("JSON");
        let seen: serde_json::Value = serde_json::from_slice(fwd).expect("forwarded JSON");
        let mut all = Vec::new();
        strings(&original, String::new(), &mut all);
        for (path, text) in all {
            let spans = explained
                .remove(&((*file).to_owned(), path.clone()))
                .unwrap_or_default();
            let expected = seen.pointer(&path).and_then(|v| v.as_str());
            if path == "/user" {
                assert!(
                    spans.len() == 1
                        && spans[0].entity == "FIELD"
                        && spans[0].detector == "path"
                        && (spans[0].start, spans[0].end) == (0, text.chars().count()),
                    "an `always` path is one span over the whole string: {spans:?}"
                );
                assert_eq!(expected, Some("<REDACTED>"));
                continue;
            }
            if path == "/model" {
                assert!(spans.is_empty(), "a `never` path is not scanned: {spans:?}");
            }
            assert_eq!(
                Some(apply(text, &spans).as_str()),
                expected,
                "{file} {path}: explained spans {spans:?}"
            );
            contents += usize::from(path.starts_with("/messages/") && path.ends_with("/content"));
        }
    }
    assert!(
        explained.is_empty(),
        "spans on no string of the input: {explained:?}"
    );
    assert_eq!(contents, texts.len() + 1, "every sample compared");
}

/// A `text/plain` body: the gateway redacts it as text; `moat redact --text` (and the default
/// mode, for text that is not a JSON object or array) writes the same bytes, and `--explain`'s
/// spans rebuild them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_text_matches_what_the_gateway_forwards() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).policy(PROFILES).run();
    let text = samples().join("\n\n");
    let forwarded = through_gateway(&gw, "text/plain; charset=utf-8", text.as_bytes()).await;
    let config = Some(gw.config_file());
    let out = moat_redact(&["--profile", "try", "--text"], config, text.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&forwarded)
    );
    let out = moat_redact(
        &["--profile", "try", "--text", "--explain"],
        config,
        text.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let explained = parse_explain(&out.stdout);
    assert_eq!(
        explained.keys().collect::<Vec<_>>(),
        [&(String::new(), String::new())],
        "text spans carry neither file nor path"
    );
    let spans = &explained[&(String::new(), String::new())];
    assert_eq!(
        apply(&text, spans),
        String::from_utf8_lossy(&forwarded),
        "{spans:?}"
    );
    // The summary counts what was redacted, by entity, and never shows a value.
    let err = stderr(&out);
    assert!(
        err.contains("moat redact: profile try: found ") && err.contains("EMAIL_ADDRESS "),
        "{err}"
    );
    assert!(!err.contains("jane"), "{err}");
}

/// Profiles with few detectors each: quick to build, for the tests of errors.
const SMALL: &str = r#"
[redaction.profiles.mail]
entities = ["EMAIL_ADDRESS"]

[redaction.profiles.strict]
entities = ["CLOUD_ACCESS_KEY"]
operators = { CLOUD_ACCESS_KEY = "block" }
"#;

/// Configuration files `name` in `dir` (which holds `tls/` from `moat cert init`): a valid rest
/// and `extra` appended.
fn config_file(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let file = dir.join(name);
    let text = format!(
        r#"
[[listener]]
address = "127.0.0.1:8443"
upstream = "model"

[[tls.certificate]]
cert_file = "tls/server.pem"
key_file = "tls/server.key"

[upstreams.model]
address = "127.0.0.1:8000"
{extra}"#
    );
    std::fs::write(&file, text).expect("write config");
    file
}

#[test]
fn redact_errors_name_the_problem_and_exit_with_their_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["cert", "init", "--dir"])
        .arg(dir.path().join("tls"))
        .args(["--host", "localhost"])
        .output()
        .expect("cert init");
    assert!(out.status.success(), "{}", stderr(&out));
    let file = config_file(dir.path(), "moat.toml", SMALL);
    let config = Some(file.as_path());

    let out = moat_redact(&["--profile", "nope"], config, b"x");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"nope\"") && stderr(&out).contains("[mail, strict]"),
        "names the profile and those defined: {}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    let out = moat_redact(&[], config, b"x");
    assert_eq!(out.status.code(), Some(64), "two profiles, none chosen");
    assert!(stderr(&out).contains("--profile"), "{}", stderr(&out));

    let out = moat_redact(&["--profile", "nope"], None, b"x");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"nope\""), "{}", stderr(&out));

    let bad = config_file(
        dir.path(),
        "bad.toml",
        "[redaction.profiles.x]\nentities = [\"EMAIL\"]\n",
    );
    let out = moat_redact(&[], Some(&bad), b"x");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid configuration: redaction.profiles.x.entities.0"),
        "as moat check says it: {}",
        stderr(&out)
    );

    // An unreadable file is named; the others are still redacted (text, detected).
    let missing = dir.path().join("no-such-sample.txt");
    let present = dir.path().join("sample.txt");
    std::fs::write(&present, "mail jane@example.com").expect("write");
    let out = Command::new(binary())
        .args(["redact", "--profile", "mail", "--config"])
        .arg(&file)
        .arg(&missing)
        .arg(&present)
        .output()
        .expect("moat redact");
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot read {}", missing.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "mail <EMAIL_ADDRESS>",
        "the readable file is still redacted"
    );

    // JSON detected without --json: member names are not scanned (as text, they would be).
    let out = moat_redact(
        &["--profile", "mail"],
        config,
        br#"{"jane@example.com": "to jane@example.com"}"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"jane@example.com": "to <EMAIL_ADDRESS>"}"#
    );

    // A block operator: nothing on stdout, the entity named, never the value.
    let key = "my key is AKIAIOSFODNN7EXAMPLE";
    for args in [
        &["--profile", "strict"][..],
        &["--profile", "strict", "--explain"],
    ] {
        let out = moat_redact(args, config, key.as_bytes());
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("blocks CLOUD_ACCESS_KEY"),
            "{}",
            stderr(&out)
        );
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(!all.contains("AKIAIOSFODNN7EXAMPLE"), "{all}");
    }

    // Input that cannot be redacted as asked.
    let out = moat_redact(&["--profile", "mail", "--json"], config, b"{\"a\":");
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid JSON at byte 5"),
        "{}",
        stderr(&out)
    );
    let out = moat_redact(&["--profile", "mail", "--text"], config, b"\xff\xfe");
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
}
