//! `moat audit export`: a bundle for a SIEM — the records of a time window as JSON Lines (moat's
//! own schema) or OCSF, a manifest with the SHA-256 of every file, and an Ed25519 signature of
//! the manifest by the trail's key. The trail is verified first; a broken trail is not exported.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::{Envelope, Record};
use super::verify::{verify, VerifyError};
use super::{hex, segments, sha256_hex, unhex, AuditError};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// moat's own records, unchanged (each line is the exact original line).
    Jsonl,
    /// OCSF 1.1 events.
    Ocsf,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The audit directory.
    pub dir: PathBuf,
    /// Records at or after this time (RFC 3339).
    pub since: Option<time::OffsetDateTime>,
    /// Records before this time (RFC 3339).
    pub until: Option<time::OffsetDateTime>,
    /// Output format.
    pub format: Format,
    /// Output directory (created; must not exist or be empty).
    pub out: PathBuf,
    /// Signing key file (hex Ed25519 seed).
    pub key: PathBuf,
    /// Public key to verify the trail against (default: the copy in `dir`).
    pub pubkey: Option<PathBuf>,
}

/// The manifest written beside the records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub v: u32,
    /// `jsonl` or `ocsf`.
    pub format: String,
    /// When the bundle was made.
    pub created: String,
    /// Window start, if any.
    pub since: Option<String>,
    /// Window end, if any.
    pub until: Option<String>,
    /// Lines in the records file: every record of the window for JSONL, one event per record
    /// for OCSF, where checkpoints have no event.
    pub records: u64,
    /// Records of the trail in the window, checkpoints included: `records` plus what the
    /// format does not carry (OCSF: the checkpoints).
    #[serde(default)]
    pub window_records: u64,
    /// First `seq` in the window (0 when none).
    pub first_seq: u64,
    /// Last `seq` in the window.
    pub last_seq: u64,
    /// `prev` of the window's first record: ties the excerpt to the full chain.
    pub chain_prev: Option<String>,
    /// Files in the bundle with their SHA-256 and size.
    pub files: Vec<FileEntry>,
    /// Signing key id.
    pub key_id: String,
}

/// One file of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name.
    pub name: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The trail did not verify.
    #[error("the trail does not verify, not exporting: {0}")]
    Verify(#[from] VerifyError),
    /// Files could not be read or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The signing key is unusable.
    #[error("signing key {0}: not a hex Ed25519 seed")]
    Key(PathBuf),
    /// The output directory exists and is not empty.
    #[error("{0} exists and is not empty")]
    OutExists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| {
        ExportError::Audit(AuditError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Name of the records file in a bundle.
pub fn records_file(format: Format) -> &'static str {
    match format {
        Format::Jsonl => "records.jsonl",
        Format::Ocsf => "records.ocsf.jsonl",
    }
}

/// Writes the bundle; returns its manifest.
pub fn export(req: &ExportRequest) -> Result<Manifest, ExportError> {
    verify(&req.dir, req.pubkey.as_deref())?;
    let seed = std::fs::read_to_string(&req.key).map_err(io(&req.key))?;
    let seed: [u8; 32] = unhex(seed.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ExportError::Key(req.key.clone()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    if req.out.exists()
        && std::fs::read_dir(&req.out)
            .map_err(io(&req.out))?
            .next()
            .is_some()
    {
        return Err(ExportError::OutExists(req.out.clone()));
    }
    std::fs::create_dir_all(&req.out).map_err(io(&req.out))?;

    let records_path = req.out.join(records_file(req.format));
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&records_path).map_err(io(&records_path))?);
    let (mut exported, mut in_window) = (0u64, 0u64);
    let (mut first, mut last, mut chain_prev) = (0u64, 0u64, None);
    let rfc = time::format_description::well_known::Rfc3339;
    for seg in segments(&req.dir)? {
        let data = std::fs::read(&seg).map_err(io(&seg))?;
        for raw in super::written(&data)
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            // `verify` already parsed every line; a line that no longer parses changed since.
            let Ok(env) = serde_json::from_slice::<Envelope>(raw) else {
                continue;
            };
            let Ok(t) = time::OffsetDateTime::parse(&env.time, &rfc) else {
                continue;
            };
            if req.since.is_some_and(|s| t < s) || req.until.is_some_and(|u| t >= u) {
                continue;
            }
            let line = match req.format {
                Format::Jsonl => Some(raw.to_vec()),
                Format::Ocsf => serde_json::from_slice::<Value>(raw)
                    .ok()
                    .and_then(|line| ocsf(&env, &line, t))
                    .map(|v| v.to_string().into_bytes()),
            };
            if let Some(line) = line {
                out.write_all(&line)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(io(&records_path))?;
                exported += 1;
            }
            if first == 0 {
                first = env.seq;
                chain_prev = Some(env.prev.clone());
            }
            last = env.seq;
            in_window += 1;
        }
    }
    out.flush().map_err(io(&records_path))?;
    drop(out);

    let name = records_file(req.format);
    let bytes = std::fs::read(&records_path).map_err(io(&records_path))?;
    let files = vec![FileEntry {
        name: name.to_owned(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
    }];
    let manifest = Manifest {
        v: 1,
        format: match req.format {
            Format::Jsonl => "jsonl".into(),
            Format::Ocsf => "ocsf".into(),
        },
        created: super::now_rfc3339(),
        since: req.since.and_then(|t| t.format(&rfc).ok()),
        until: req.until.and_then(|t| t.format(&rfc).ok()),
        records: exported,
        window_records: in_window,
        first_seq: first,
        last_seq: last,
        chain_prev,
        files,
        key_id: super::writer::key_id(key.verifying_key().as_bytes()),
    };
    let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let mpath = req.out.join("manifest.json");
    std::fs::write(&mpath, &body).map_err(io(&mpath))?;
    let spath = req.out.join("manifest.sig");
    std::fs::write(&spath, format!("{}\n", hex(&key.sign(&body).to_bytes())))
        .map_err(io(&spath))?;
    Ok(manifest)
}

/// Checks a bundle: the manifest signature against `pubkey`, and every listed file's hash.
pub fn check_bundle(dir: &Path, pubkey: &Path) -> Result<Manifest, String> {
    use ed25519_dalek::Verifier;
    let key = super::verify::read_pubkey(pubkey).map_err(|e| e.to_string())?;
    let body =
        std::fs::read(dir.join("manifest.json")).map_err(|e| format!("manifest.json: {e}"))?;
    let sig = std::fs::read_to_string(dir.join("manifest.sig"))
        .map_err(|e| format!("manifest.sig: {e}"))?;
    let sig: [u8; 64] = unhex(sig.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or("manifest.sig: not a signature")?;
    key.verify(&body, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "manifest signature does not verify".to_owned())?;
    let manifest: Manifest =
        serde_json::from_slice(&body).map_err(|e| format!("manifest.json: {e}"))?;
    for f in &manifest.files {
        let bytes = std::fs::read(dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
        if sha256_hex(&bytes) != f.sha256 {
            return Err(format!("{}: SHA-256 does not match the manifest", f.name));
        }
    }
    Ok(manifest)
}

/// OCSF activity of an HTTP method (HTTP Activity, class 4002): `Unknown` without a method,
/// `Other` (named by the method itself) for a method OCSF 1.1 has no activity for.
fn http_activity(method: Option<&str>) -> (u32, String) {
    let Some(method) = method else {
        return (0, "Unknown".into());
    };
    let known = match method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        _ => return (99, method.to_owned()),
    };
    (known.0, known.1.to_owned())
}

fn metadata(env: &Envelope) -> Value {
    json!({
        "version": "1.1.0",
        "product": {"name": "moat", "vendor_name": "moat", "version": env!("CARGO_PKG_VERSION")},
        "log_name": "moat-audit",
        "log_version": env.v.to_string(),
        "event_code": env.record.kind(),
        "uid": env.seq.to_string(),
        "sequence": env.seq,
        "original_time": env.time,
    })
}

/// An OCSF network endpoint: `ip` and `port` of a socket address, else the text as `name`.
fn endpoint(addr: &str) -> Value {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => json!({"ip": a.ip().to_string(), "port": a.port()}),
        Err(_) => json!({"name": addr}),
    }
}

/// A Host value as OCSF `url.hostname` and `url.port`. An IPv6 literal keeps its brackets (as a
/// URL writes it); a port is split off only when it is written as the number it is, so joining
/// the two with `:` gives back the Host exactly, whatever the client sent.
fn host_and_port(host: &str) -> (&str, Option<u16>) {
    let Some((name, port)) = host.rsplit_once(':') else {
        return (host, None);
    };
    // Another colon before the last one: an IPv6 literal, which takes a port only after `]`.
    let literal = name.starts_with('[') && name.ends_with(']');
    if name.contains(':') && !literal {
        return (host, None);
    }
    match port.parse::<u16>() {
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) && p.to_string() == port => {
            (name, Some(p))
        }
        _ => (host, None),
    }
}

/// OCSF `tls.version` (`1.2`, `1.3`) for rustls's name of a protocol version (`TLSv1_2`,
/// `TLSv1_3`); a name in another form is passed on as it is.
fn tls_version(v: &str) -> String {
    match v.strip_prefix("TLSv") {
        Some(n) => n.replace('_', "."),
        None => v.to_owned(),
    }
}

/// OCSF `actor`: the caller as `user` (`uid` the principal, `type` its kind, which is no OCSF
/// user type: `type_id` 99, Other) and the policy's decision as `authorizations` (OCSF 1.1 keeps
/// Authorization Results on the actor), the deciding rule as the policy.
fn actor(
    principal: Option<&str>,
    kind: Option<&str>,
    rule: Option<&str>,
    decision: Option<&str>,
) -> Value {
    json!({
        "user": {"uid": principal, "type": kind, "type_id": kind.map(|_| 99)},
        "authorizations": [{"decision": decision, "policy": {"uid": rule, "name": rule}}],
    })
}

/// Drops null members and the objects and arrays they leave empty: OCSF leaves out an
/// attribute it has no value for. Returns whether `v` is now empty.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        Value::Array(a) => {
            a.retain_mut(|x| !prune(x));
            a.is_empty()
        }
        _ => false,
    }
}

/// Removes the member at a `.`-separated path, if it is there.
fn remove_path(v: &mut Value, path: &str) {
    match path.split_once('.') {
        Some((head, rest)) => {
            if let Some(inner) = v.get_mut(head) {
                remove_path(inner, rest);
            }
        }
        None => {
            if let Value::Object(m) = v {
                m.remove(path);
            }
        }
    }
}

/// Record fields every event carries in OCSF attributes of its own: `v` (`metadata.log_version`),
/// `seq` (`metadata.uid`, `metadata.sequence`), `time` (`time`, `metadata.original_time`) and
/// `kind` (`metadata.event_code`).
const ENVELOPE_MAPPED: [&str; 4] = ["v", "seq", "time", "kind"];

/// The record fields (paths, `.` between levels) an event of this kind carries in OCSF
/// attributes. Every other field of the record goes to `unmapped`, at its own path: so nothing
/// is lost, a field added to a record later included. `duration_ms` is in `duration` rounded to
/// whole milliseconds, so it stays in `unmapped` too, exact. Must match what [`ocsf`] fills (the
/// export tests compare every field of every kind).
fn mapped_fields(r: &Record) -> &'static [&'static str] {
    match r {
        Record::Request(_) => &[
            "request_id",
            "client",
            "tls.version",
            "tls.cipher",
            "tls.sni",
            "principal",
            "principal_kind",
            "method",
            "host",
            "path",
            "rule",
            "decision",
            "upstream",
            "status",
            "bytes_in",
            "bytes_out",
            "failed",
            "reason",
        ],
        Record::Reject(_) => &[
            "request_id",
            "client",
            "status",
            "reason",
            "detail",
            "method",
            "path",
            "principal",
            "principal_kind",
            "rule",
        ],
        Record::Guard(_) => &["pid", "comm", "uid", "addr", "port", "protocol", "repeats"],
        Record::Connection(_) => &["client", "destination", "bytes_in", "bytes_out", "failed"],
        Record::Lifecycle(_) => &["event", "version", "detail"],
        Record::Checkpoint(_) => &[],
    }
}

/// The record's fields that no OCSF attribute carries, at their own paths (`line` is the record
/// as written, so a field this moat does not know is kept too).
fn unmapped(line: &Value, r: &Record) -> Value {
    let mut rest = line.clone();
    for path in ENVELOPE_MAPPED.iter().chain(mapped_fields(r)) {
        remove_path(&mut rest, path);
    }
    rest
}

/// OCSF classes moat exports, with their category: (uid, name) each.
const HTTP_ACTIVITY: [(u32, &str); 2] = [(4002, "HTTP Activity"), (4, "Network Activity")];
const NETWORK_ACTIVITY: [(u32, &str); 2] = [(4001, "Network Activity"), (4, "Network Activity")];
const APP_LIFECYCLE: [(u32, &str); 2] =
    [(6002, "Application Lifecycle"), (6, "Application Activity")];

/// A `reject` record's `reason` when the client went away before its request was forwarded.
const CLIENT_ABORTED: &str = "client_aborted";

/// Lifecycle events that report a failure: the new configuration was refused (the old one stays
/// in force), the egress guard could not be attached.
const LIFECYCLE_FAILURES: [&str; 2] = ["reload_refused", "guard_unattached"];

/// The OCSF event for a record; `None` for records with no OCSF counterpart (checkpoints).
/// `line` is the record as written (its JSON): the fields no OCSF attribute carries are taken
/// from it into `unmapped`.
pub fn ocsf(env: &Envelope, line: &Value, t: time::OffsetDateTime) -> Option<Value> {
    let (class, activity, members) = match &env.record {
        Record::Request(r) => {
            let ok = r.failed.is_none() && r.status < 500;
            let (hostname, port) = host_and_port(&r.host);
            let scheme = if r.tls.version.is_some() {
                "https"
            } else {
                "http"
            };
            let members = json!({
                "severity_id": if ok { 1 } else { 3 },
                "status_id": if ok { 1 } else { 2 },
                "status_code": r.failed,
                "status_detail": r.reason,
                "duration": r.duration_ms.round() as i64,
                "actor": actor(r.principal.as_deref(), r.principal_kind.as_deref(), r.rule.as_deref(), Some(r.decision.as_ref())),
                "http_request": {
                    "uid": r.request_id, "http_method": r.method,
                    "url": {"hostname": hostname, "port": port, "path": r.path, "scheme": scheme},
                },
                "http_response": {"code": r.status},
                "src_endpoint": endpoint(&r.client),
                "dst_endpoint": {"name": r.upstream},
                "tls": {"version": r.tls.version.as_deref().map(tls_version), "cipher": r.tls.cipher, "sni": r.tls.sni},
                "traffic": {"bytes_in": r.bytes_in, "bytes_out": r.bytes_out},
                "disposition_id": 1, "disposition": "Allowed",
            });
            (HTTP_ACTIVITY, http_activity(Some(&r.method)), members)
        }
        Record::Reject(r) => {
            // Not a refusal: the client went away before anything was forwarded.
            let aborted = r.reason == CLIENT_ABORTED;
            // The rule decided: it denied (`forbidden`), or it allowed and a later stage (request
            // redaction) refused.
            let decision = r.rule.as_ref().map(|_| {
                if r.reason == crate::error::Reject::FORBIDDEN.kind {
                    "deny"
                } else {
                    "allow"
                }
            });
            let members = json!({
                "severity_id": if aborted { 1 } else { 2 },
                "status_id": 2,
                "status_code": r.reason,
                "status_detail": r.detail,
                "actor": actor(r.principal.as_deref(), r.principal_kind.as_deref(), r.rule.as_deref(), decision),
                "http_request": {"uid": r.request_id, "http_method": r.method, "url": {"path": r.path}},
                "http_response": {"code": r.status},
                "src_endpoint": endpoint(&r.client),
                "disposition_id": if aborted { 99 } else { 2 },
                "disposition": if aborted { "Client Aborted" } else { "Blocked" },
            });
            (HTTP_ACTIVITY, http_activity(r.method.as_deref()), members)
        }
        Record::Guard(g) => {
            let refused = g.verdict == "refused";
            let activity = if refused {
                (5, "Refuse".to_owned())
            } else {
                (6, "Traffic".to_owned())
            };
            let members = json!({
                "severity_id": if refused { 4 } else { 3 },
                "status_id": if refused { 2 } else { 1 },
                "count": g.repeats + 1,
                "dst_endpoint": {"ip": g.addr, "port": g.port},
                "connection_info": {"protocol_name": g.protocol, "direction_id": 2, "direction": "Outbound"},
                "actor": {"process": {"pid": g.pid, "name": g.comm, "user": {"uid": g.uid.to_string()}}},
                "disposition_id": if refused { 2 } else { 1 },
                "disposition": if refused { "Blocked" } else { "Allowed" },
            });
            (NETWORK_ACTIVITY, activity, members)
        }
        Record::Connection(c) => {
            let members = json!({
                "severity_id": 1,
                "status_id": if c.failed.is_some() { 2 } else { 1 },
                "status_detail": c.failed,
                "duration": c.duration_ms.round() as i64,
                "src_endpoint": endpoint(&c.client),
                "dst_endpoint": endpoint(&c.destination),
                "connection_info": {"protocol_name": "tcp", "direction_id": 1, "direction": "Inbound"},
                "traffic": {"bytes_in": c.bytes_in, "bytes_out": c.bytes_out},
                "disposition_id": 1, "disposition": "Allowed",
            });
            (NETWORK_ACTIVITY, (2, "Close".to_owned()), members)
        }
        Record::Lifecycle(l) => {
            let activity = match l.event.as_str() {
                "start" => (3, "Start".to_owned()),
                "stop" => (4, "Stop".to_owned()),
                other => (99, other.to_owned()),
            };
            let failed = LIFECYCLE_FAILURES.contains(&l.event.as_str());
            let members = json!({
                "severity_id": if failed { 3 } else { 1 },
                "status_id": if failed { 2 } else { 1 },
                "app": {"name": "moat", "version": l.version},
                "message": l.event,
                "status_detail": l.detail,
            });
            (APP_LIFECYCLE, activity, members)
        }
        Record::Checkpoint(_) => return None,
    };
    let [(class_uid, class_name), (category_uid, category_name)] = class;
    let (activity_id, activity_name) = activity;
    let mut v = json!({
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": (t.unix_timestamp_nanos() / 1_000_000) as i64,
        "metadata": metadata(env),
        "unmapped": unmapped(line, &env.record),
    });
    if let (Value::Object(v), Value::Object(members)) = (&mut v, members) {
        v.extend(members);
    }
    prune(&mut v);
    Some(v)
}

/// Attributes every exported OCSF event carries, and those its class requires (as documented in
/// `docs/audit.md`).
pub fn ocsf_required(class_uid: u64) -> Vec<&'static str> {
    const EVERY: [&str; 7] = [
        "activity_id",
        "category_uid",
        "class_uid",
        "metadata",
        "severity_id",
        "time",
        "type_uid",
    ];
    let class: &[&str] = match class_uid {
        // `http_request` only when the request was read: a refusal below HTTP has none.
        4002 => &["http_response", "src_endpoint"],
        // `actor` (the process) on guard events only: a passed-through connection has none.
        4001 => &["dst_endpoint", "connection_info"],
        6002 => &["app"],
        _ => &[],
    };
    EVERY.iter().chain(class).copied().collect()
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod export_tests;
