//! The OCSF export loses nothing: a trail holding a record of every kind is exported, and every
//! field of every record (found by walking the record's JSON as written, not from a list) must
//! be in its event — at the OCSF attribute [`MAP`] names for it, or else under `unmapped` at its
//! own path. A field added to a record is checked as soon as a fixture gives it a value, and a
//! fixture that never does fails the test with the field's name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use super::{check_bundle, export, host_and_port, ocsf_required, tls_version};
use super::{ExportRequest, Format};
use crate::audit::record::{LifecycleRecord, Record};
use crate::audit::{segments, written, AuditConfig, Auditor, FsyncMode, KEY_FILE, PUBKEY_FILE};

/// How a record value is written in its OCSF attribute.
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// As it is.
    Same,
    /// As a string.
    Text,
    /// `TLSv1_3` as `1.3`.
    TlsVersion,
    /// The host of a Host value (an IPv6 literal with its brackets).
    HostName,
    /// The port of a Host value; absent when it has none.
    HostPort,
    /// The IP of a socket address.
    Ip,
    /// The port of a socket address.
    Port,
    /// Rounded to an integer.
    Round,
    /// Plus one (`repeats` → `count`).
    PlusOne,
}

/// Where record fields go in OCSF: (record kind or `*` for every kind, record path, OCSF path,
/// how the value is written). A field of a kind that is not here must be under `unmapped`.
const MAP: &[(&str, &str, &str, Conv)] = &[
    ("*", "v", "metadata.log_version", Conv::Text),
    ("*", "seq", "metadata.uid", Conv::Text),
    ("*", "seq", "metadata.sequence", Conv::Same),
    ("*", "time", "metadata.original_time", Conv::Same),
    ("*", "kind", "metadata.event_code", Conv::Same),
    // request
    ("request", "request_id", "http_request.uid", Conv::Same),
    ("request", "client", "src_endpoint.ip", Conv::Ip),
    ("request", "client", "src_endpoint.port", Conv::Port),
    ("request", "tls.version", "tls.version", Conv::TlsVersion),
    ("request", "tls.cipher", "tls.cipher", Conv::Same),
    ("request", "tls.sni", "tls.sni", Conv::Same),
    ("request", "principal", "actor.user.uid", Conv::Same),
    ("request", "principal_kind", "actor.user.type", Conv::Same),
    ("request", "method", "http_request.http_method", Conv::Same),
    (
        "request",
        "host",
        "http_request.url.hostname",
        Conv::HostName,
    ),
    ("request", "host", "http_request.url.port", Conv::HostPort),
    ("request", "path", "http_request.url.path", Conv::Same),
    (
        "request",
        "rule",
        "actor.authorizations.0.policy.uid",
        Conv::Same,
    ),
    (
        "request",
        "rule",
        "actor.authorizations.0.policy.name",
        Conv::Same,
    ),
    (
        "request",
        "decision",
        "actor.authorizations.0.decision",
        Conv::Same,
    ),
    ("request", "upstream", "dst_endpoint.name", Conv::Same),
    ("request", "status", "http_response.code", Conv::Same),
    ("request", "bytes_in", "traffic.bytes_in", Conv::Same),
    ("request", "bytes_out", "traffic.bytes_out", Conv::Same),
    ("request", "duration_ms", "duration", Conv::Round),
    ("request", "duration_ms", "unmapped.duration_ms", Conv::Same),
    ("request", "failed", "status_code", Conv::Same),
    ("request", "reason", "status_detail", Conv::Same),
    // reject
    ("reject", "request_id", "http_request.uid", Conv::Same),
    ("reject", "client", "src_endpoint.ip", Conv::Ip),
    ("reject", "client", "src_endpoint.port", Conv::Port),
    ("reject", "status", "http_response.code", Conv::Same),
    ("reject", "reason", "status_code", Conv::Same),
    ("reject", "detail", "status_detail", Conv::Same),
    ("reject", "method", "http_request.http_method", Conv::Same),
    ("reject", "path", "http_request.url.path", Conv::Same),
    ("reject", "principal", "actor.user.uid", Conv::Same),
    ("reject", "principal_kind", "actor.user.type", Conv::Same),
    (
        "reject",
        "rule",
        "actor.authorizations.0.policy.uid",
        Conv::Same,
    ),
    (
        "reject",
        "rule",
        "actor.authorizations.0.policy.name",
        Conv::Same,
    ),
    // guard
    ("guard", "pid", "actor.process.pid", Conv::Same),
    ("guard", "comm", "actor.process.name", Conv::Same),
    ("guard", "uid", "actor.process.user.uid", Conv::Text),
    ("guard", "addr", "dst_endpoint.ip", Conv::Same),
    ("guard", "port", "dst_endpoint.port", Conv::Same),
    (
        "guard",
        "protocol",
        "connection_info.protocol_name",
        Conv::Same,
    ),
    ("guard", "repeats", "count", Conv::PlusOne),
    // connection
    ("connection", "client", "src_endpoint.ip", Conv::Ip),
    ("connection", "client", "src_endpoint.port", Conv::Port),
    ("connection", "destination", "dst_endpoint.ip", Conv::Ip),
    ("connection", "destination", "dst_endpoint.port", Conv::Port),
    ("connection", "bytes_in", "traffic.bytes_in", Conv::Same),
    ("connection", "bytes_out", "traffic.bytes_out", Conv::Same),
    ("connection", "duration_ms", "duration", Conv::Round),
    (
        "connection",
        "duration_ms",
        "unmapped.duration_ms",
        Conv::Same,
    ),
    ("connection", "failed", "status_detail", Conv::Same),
    // lifecycle
    ("lifecycle", "event", "message", Conv::Same),
    ("lifecycle", "version", "app.version", Conv::Same),
    ("lifecycle", "detail", "status_detail", Conv::Same),
];

/// The fixtures' Host values split as the export should: the port after the last colon, unless
/// that colon is inside an IPv6 literal.
fn split_host(h: &str) -> (&str, Option<u16>) {
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => {
            (name, port.parse().ok())
        }
        _ => (h, None),
    }
}

/// What `conv` makes of `v`; `Null` for "absent".
fn convert(conv: Conv, v: &Value) -> Value {
    let addr = || {
        v.as_str()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    };
    match conv {
        Conv::Same => v.clone(),
        Conv::Text => match v {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        Conv::TlsVersion => json!(v
            .as_str()
            .map(|s| s.trim_start_matches("TLSv").replace('_', "."))),
        Conv::HostName => json!(v.as_str().map(|h| split_host(h).0)),
        Conv::HostPort => json!(v.as_str().and_then(|h| split_host(h).1)),
        Conv::Ip => json!(addr().map(|a| a.ip().to_string())),
        Conv::Port => json!(addr().map(|a| a.port())),
        Conv::Round => json!(v.as_f64().map(|f| f.round() as i64)),
        Conv::PlusOne => json!(v.as_u64().map(|n| n + 1)),
    }
}

/// A JSON pointer for path segments.
fn pointer<S: AsRef<str>>(segments: &[S]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", s.as_ref().replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Every leaf of a record as (path, value): objects are walked into; arrays, scalars and empty
/// objects are values.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

/// Null, `[]` or `{}`: nothing to carry.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn record(v: Value) -> Record {
    serde_json::from_value(v).expect("a record")
}

fn lifecycle(v: Value) -> LifecycleRecord {
    serde_json::from_value(v).expect("a lifecycle record")
}

const SHA_A: &str = "a3f1c0de5e7b9a2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c";
const SHA_B: &str = "5e7b9a2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6ca3f1c0de";

/// One record of every kind (several where a kind has shapes of its own), every field filled in
/// at least one of them. Fields the schema does not have (yet) are ignored by serde.
fn fixtures() -> Vec<Record> {
    vec![
        record(json!({
            "kind": "request", "request_id": "req-allowed", "listener": "public",
            "region": "eu-west-1", "client": "192.0.2.10:50123",
            "tls": {"version": "TLSv1_2", "cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "sni": "model.example.internal", "alpn": "http/1.1",
                    "client_cert_sha256": SHA_A},
            "principal": "CN=batch-job", "principal_kind": "mtls",
            "caller_regions": ["eu-west-1"],
            "method": "GET", "host": "model.example.internal", "path": "/v1/models",
            "model": null, "rule": "models-read", "decision": "allow",
            "upstream": "vllm@127.0.0.1:8000", "status": 200, "bytes_in": 0, "bytes_out": 512,
            "duration_ms": 3.25, "upstream_ms": null, "redactions": {},
            "guard": {"mode": "enforce", "allow_sha256": SHA_B},
            "failed": null, "reason": null,
        })),
        record(json!({
            "kind": "request", "request_id": "req-redacted", "listener": "public",
            "region": "eu-west-1", "client": "[2001:db8::7]:50124",
            "tls": {"version": "TLSv1_3", "cipher": "TLS13_AES_256_GCM_SHA384",
                    "sni": "localhost", "alpn": "h2", "client_cert_sha256": null},
            "principal": "team-a", "principal_kind": "api_key",
            "caller_regions": ["eu-west-1", "eu-central-1"],
            "method": "POST", "host": "[::1]:8443", "path": "/v1/chat/completions",
            "model": "llama-3-8b", "rule": "chat-eu", "decision": "allow",
            "upstream": "vllm@127.0.0.1:8000", "status": 502, "bytes_in": 1234, "bytes_out": 56,
            "duration_ms": 812.5, "upstream_ms": 640.25,
            "redactions": {"EMAIL_ADDRESS.request": 2, "PHONE_NUMBER.response": 1},
            "guard": {"mode": "monitor", "allow_sha256": null},
            "failed": "upstream", "reason": "response body: the upstream closed the connection",
        })),
        // Plain HTTP, a method OCSF 1.1 has no activity for, a Host with a port.
        record(json!({
            "kind": "request", "request_id": "req-patch", "listener": "plain",
            "client": "127.0.0.1:40100", "tls": {},
            "principal": "team-b", "principal_kind": "jwt",
            "method": "PATCH", "host": "localhost:8443", "path": "/v1/files/1",
            "rule": "files", "decision": "allow", "upstream": "vllm@127.0.0.1:8000",
            "status": 200, "bytes_in": 7, "bytes_out": 9, "duration_ms": 1.0,
            "redactions": {}, "guard": {"mode": "off"},
        })),
        record(json!({
            "kind": "reject", "request_id": "req-denied", "listener": "public",
            "region": "eu-west-1", "client": "192.0.2.11:40000", "status": 403,
            "reason": "forbidden", "detail": "no rule allows POST /v1/chat/completions",
            "method": "POST", "path": "/v1/chat/completions",
            "principal": "alice@example.com", "principal_kind": "jwt",
            "caller_regions": ["us-east-1"], "model": "gpt-4o", "rule": "default-deny",
        })),
        record(json!({
            "kind": "reject", "request_id": "req-blocked", "listener": "public",
            "client": "192.0.2.11:40001", "status": 422, "reason": "redaction_refused",
            "detail": "a block operator matched CREDIT_CARD", "method": "POST",
            "path": "/v1/chat/completions", "principal": "team-a", "principal_kind": "api_key",
            "rule": "chat-eu",
        })),
        record(json!({
            "kind": "reject", "listener": "public", "client": "192.0.2.12:40002", "status": 0,
            "reason": "h2_protocol_error", "detail": "GOAWAY PROTOCOL_ERROR",
        })),
        record(json!({
            "kind": "reject", "request_id": "req-gone", "listener": "public",
            "client": "192.0.2.12:40003", "status": 0, "reason": "client_aborted",
            "detail": "the client went away after 10 request body bytes: connection reset",
            "method": "POST", "path": "/v1/completions",
        })),
        record(json!({
            "kind": "connection", "listener": "transparent", "client": "192.0.2.13:40004",
            "destination": "10.0.0.5:443", "upstream": "vllm@127.0.0.1:8000", "protocol": "tls",
            "sni": "other.example", "bytes_in": 10, "bytes_out": 20, "duration_ms": 1500.75,
            "failed": "connection reset by peer",
        })),
        record(json!({
            "kind": "guard", "verdict": "refused", "hook": "connect", "pid": 4242,
            "comm": "python3", "uid": 1000, "cgroup_id": 7, "addr": "203.0.113.9", "port": 443,
            "protocol": "tcp", "repeats": 2,
        })),
        record(json!({
            "kind": "lifecycle", "event": "reload_accepted", "version": "0.0.0-test",
            "config_sha256": SHA_B, "detail": "listeners change at the next restart",
        })),
        record(json!({
            "kind": "lifecycle", "event": "reload_refused", "version": "0.0.0-test",
            "config_sha256": SHA_A, "detail": "policy.rules[2].models: expected a list",
        })),
    ]
}

/// The trail's records, each as written.
fn trail(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for seg in segments(dir).expect("segments") {
        let data = std::fs::read(&seg).expect("segment");
        for line in written(&data)
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            out.push(serde_json::from_slice(line).expect("a record line"));
        }
    }
    out
}

#[test]
fn ocsf_export_carries_every_field_of_every_record_kind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        dir: tmp.path().join("audit"),
        key_dir: tmp.path().join("state"),
        fsync: FsyncMode::Always,
        checkpoint_every: 4,
        ..AuditConfig::default()
    };
    let start = lifecycle(json!({"event": "start", "version": "0.0.0-test",
        "config_sha256": SHA_A, "detail": "3 listeners"}));
    let (a, thread) = Auditor::start(&cfg, start).expect("start");
    for r in fixtures() {
        a.record(r).expect("queued");
    }
    a.shutdown(lifecycle(
        json!({"event": "stop", "version": "0.0.0-test", "config_sha256": SHA_B}),
    ));
    thread.join().expect("writer");

    let out = tmp.path().join("bundle");
    let m = export(&ExportRequest {
        dir: cfg.dir.clone(),
        since: None,
        until: None,
        format: Format::Ocsf,
        out: out.clone(),
        key: cfg.key_dir.join(KEY_FILE),
        pubkey: None,
    })
    .expect("export");
    check_bundle(&out, &cfg.key_dir.join(PUBKEY_FILE)).expect("bundle verifies");
    let text = std::fs::read_to_string(out.join("records.ocsf.jsonl")).expect("events");
    let mut events = BTreeMap::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).expect("an event");
        let seq = e["metadata"]["sequence"]
            .as_u64()
            .expect("metadata.sequence");
        assert!(events.insert(seq, e).is_none(), "one event per record");
    }

    let records = trail(&cfg.dir);
    let kinds: BTreeSet<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "checkpoint",
            "connection",
            "guard",
            "lifecycle",
            "reject",
            "request"
        ],
        "a record of every kind"
    );
    let checkpoints = records.iter().filter(|r| r["kind"] == "checkpoint").count() as u64;
    assert!(checkpoints >= 2, "mid-trail and at shutdown");
    // The manifest counts what was exported, and the window apart.
    assert_eq!(m.records, events.len() as u64);
    assert_eq!(m.window_records, records.len() as u64);
    assert_eq!(m.records + checkpoints, m.window_records);

    let mut problems = Vec::new();
    // Per kind: every field path seen, and those some fixture gives a value.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut filled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &records {
        let kind = r["kind"].as_str().expect("kind").to_owned();
        let seq = r["seq"].as_u64().expect("seq");
        let Some(event) = events.get(&seq) else {
            // Checkpoints alone have no OCSF event (chain metadata, counted in the manifest).
            if kind != "checkpoint" {
                problems.push(format!("{kind} record seq {seq}: not exported"));
            }
            continue;
        };
        assert_ne!(kind, "checkpoint", "a checkpoint has no OCSF event");
        let mut fields = Vec::new();
        leaves(r, &mut Vec::new(), &mut fields);
        for (path, value) in fields {
            let name = path.join(".");
            seen.entry(kind.clone()).or_default().insert(name.clone());
            if is_empty(&value) {
                continue;
            }
            filled.entry(kind.clone()).or_default().insert(name.clone());
            let mapped: Vec<_> = MAP
                .iter()
                .filter(|(k, p, _, _)| (*k == "*" || *k == kind) && *p == name)
                .collect();
            if mapped.is_empty() {
                let mut at = vec!["unmapped".to_owned()];
                at.extend(path.iter().cloned());
                if event.pointer(&pointer(&at)) != Some(&value) {
                    problems.push(format!(
                        "{kind}.{name} = {value} (seq {seq}): in no mapped attribute and not at unmapped.{name}"
                    ));
                }
                continue;
            }
            for (_, _, ocsf, conv) in mapped {
                let want = convert(*conv, &value);
                let at: Vec<&str> = ocsf.split('.').collect();
                let got = event.pointer(&pointer(&at)).unwrap_or(&Value::Null);
                if *got != want {
                    problems.push(format!(
                        "{kind}.{name} = {value} (seq {seq}): {ocsf} should be {want}, is {got}"
                    ));
                }
            }
        }
        // `unmapped` holds the record's own values only, at their own paths.
        let mut extra = Vec::new();
        if let Some(u) = event.get("unmapped") {
            leaves(u, &mut Vec::new(), &mut extra);
        }
        for (path, value) in extra {
            if r.pointer(&pointer(&path)) != Some(&value) {
                problems.push(format!(
                    "{kind} seq {seq}: unmapped.{} = {value} is no field of the record",
                    path.join(".")
                ));
            }
        }
        // Required attributes, and no nulls: OCSF leaves out what it has no value for.
        let class = event["class_uid"].as_u64().expect("class_uid");
        for attr in ocsf_required(class) {
            if event[attr].is_null() {
                problems.push(format!("{kind} seq {seq}: class {class} lacks {attr}"));
            }
        }
        let mut all = Vec::new();
        leaves(event, &mut Vec::new(), &mut all);
        for (path, value) in all {
            if value.is_null() {
                problems.push(format!("{kind} seq {seq}: {} is null", path.join(".")));
            }
        }
    }
    for (kind, paths) in &seen {
        let filled = filled.get(kind).cloned().unwrap_or_default();
        // An object is filled when one of its members is (`redactions` by its entries).
        let is_filled = |p: &String| {
            filled
                .iter()
                .any(|f| f == p || f.starts_with(&format!("{p}.")))
        };
        for p in paths.iter().filter(|p| !is_filled(p)) {
            problems.push(format!(
                "no fixture gives {kind}.{p} a value: give it one in `fixtures()` so its export is checked"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));

    // Who and why, spelled out.
    let by_id = |id: &str| {
        events
            .values()
            .find(|e| e["http_request"]["uid"] == id)
            .unwrap_or_else(|| panic!("no event for {id}"))
    };
    let allowed = by_id("req-allowed");
    assert_eq!(allowed["actor"]["user"]["uid"], "CN=batch-job");
    assert_eq!(allowed["actor"]["user"]["type"], "mtls");
    assert_eq!(allowed["actor"]["user"]["type_id"], 99);
    assert_eq!(allowed["actor"]["authorizations"][0]["decision"], "allow");
    assert_eq!(
        allowed["actor"]["authorizations"][0]["policy"]["uid"],
        "models-read"
    );
    assert_eq!(allowed["tls"]["version"], "1.2");
    assert_eq!(
        allowed["http_request"]["url"]["hostname"],
        "model.example.internal"
    );
    assert!(allowed["http_request"]["url"].get("port").is_none());
    assert_eq!(allowed["http_request"]["url"]["scheme"], "https");
    let redacted = by_id("req-redacted");
    assert_eq!(redacted["tls"]["version"], "1.3");
    assert_eq!(redacted["http_request"]["url"]["hostname"], "[::1]");
    assert_eq!(redacted["http_request"]["url"]["port"], 8443);
    assert_eq!(redacted["unmapped"]["tls"]["alpn"], "h2");
    assert_eq!(redacted["unmapped"]["upstream_ms"], 640.25);
    assert_eq!(
        redacted["unmapped"]["redactions"]["EMAIL_ADDRESS.request"],
        2
    );
    assert_eq!(redacted["status_id"], 2);
    let patch = by_id("req-patch");
    assert_eq!(
        (&patch["activity_id"], &patch["activity_name"]),
        (&json!(99), &json!("PATCH"))
    );
    assert_eq!(patch["http_request"]["url"]["scheme"], "http");
    assert_eq!(patch["http_request"]["url"]["hostname"], "localhost");
    assert_eq!(patch["http_request"]["url"]["port"], 8443);
    let denied = by_id("req-denied");
    assert_eq!(denied["disposition"], "Blocked");
    assert_eq!(denied["status_code"], "forbidden");
    assert_eq!(denied["actor"]["user"]["uid"], "alice@example.com");
    assert_eq!(denied["actor"]["authorizations"][0]["decision"], "deny");
    assert_eq!(
        denied["actor"]["authorizations"][0]["policy"]["name"],
        "default-deny"
    );
    // The rule allowed; request redaction refused.
    let blocked = by_id("req-blocked");
    assert_eq!(blocked["actor"]["authorizations"][0]["decision"], "allow");
    assert_eq!(blocked["disposition"], "Blocked");
    let gone = by_id("req-gone");
    assert_eq!(gone["disposition_id"], 99);
    let below_http = events
        .values()
        .find(|e| e["status_code"] == "h2_protocol_error")
        .expect("the GOAWAY refusal");
    assert_eq!(below_http["activity_id"], 0);
    assert!(below_http.get("http_request").is_none());
    assert!(below_http.get("actor").is_none(), "no principal, no rule");
    let life = |event: &str| {
        events
            .values()
            .find(|e| e["message"] == event)
            .unwrap_or_else(|| panic!("no {event} event"))
    };
    let refused = life("reload_refused");
    assert_eq!(refused["status_id"], 2, "a refused reload is a failure");
    assert!(refused["severity_id"].as_u64() > Some(1));
    assert_eq!(refused["activity_name"], "reload_refused");
    assert_eq!(life("reload_accepted")["status_id"], 1);
    assert_eq!(life("start")["activity_id"], 3);
    assert_eq!(life("stop")["activity_id"], 4);
}

#[test]
fn a_host_splits_into_hostname_and_port_only_where_it_joins_back() {
    for (host, want) in [
        ("localhost:8443", ("localhost", Some(8443))),
        ("localhost", ("localhost", None)),
        ("[::1]:8443", ("[::1]", Some(8443))),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),
        ("[fe80::1%25eth0]:443", ("[fe80::1%25eth0]", Some(443))),
        ("192.0.2.1:80", ("192.0.2.1", Some(80))),
        ("example.com:", ("example.com:", None)),
        ("example.com:http", ("example.com:http", None)),
        ("example.com:080", ("example.com:080", None)),
        ("example.com:+80", ("example.com:+80", None)),
        ("example.com:65536", ("example.com:65536", None)),
        ("", ("", None)),
    ] {
        assert_eq!(host_and_port(host), want, "{host}");
        let (name, port) = host_and_port(host);
        let joined = port.map_or_else(|| name.to_owned(), |p| format!("{name}:{p}"));
        assert_eq!(joined, host, "nothing lost");
    }
}

#[test]
fn tls_versions_are_written_as_ocsf_numbers() {
    assert_eq!(tls_version("TLSv1_3"), "1.3");
    assert_eq!(tls_version("TLSv1_2"), "1.2");
    assert_eq!(tls_version("1.3"), "1.3");
}
