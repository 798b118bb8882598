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
    /// Records exported.
    pub records: u64,
    /// First and last `seq` exported (0 when none).
    pub first_seq: u64,
    /// Last `seq` exported.
    pub last_seq: u64,
    /// `prev` of the first exported record: ties the excerpt to the full chain.
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
    let (mut count, mut first, mut last, mut chain_prev) = (0u64, 0u64, 0u64, None);
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
                Format::Ocsf => ocsf(&env, t).map(|v| v.to_string().into_bytes()),
            };
            if let Some(line) = line {
                out.write_all(&line)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(io(&records_path))?;
            }
            if first == 0 {
                first = env.seq;
                chain_prev = Some(env.prev.clone());
            }
            last = env.seq;
            count += 1;
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
        records: count,
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

/// OCSF class and activity of an HTTP method (HTTP Activity, class 4002).
fn http_activity(method: &str) -> (u32, &'static str) {
    match method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        _ => (99, "Other"),
    }
}

fn metadata(env: &Envelope) -> Value {
    json!({
        "version": "1.1.0",
        "product": {"name": "moat", "vendor_name": "moat", "version": env!("CARGO_PKG_VERSION")},
        "log_name": "moat-audit",
        "uid": env.seq.to_string(),
        "original_time": env.time,
    })
}

fn endpoint(addr: &str) -> Value {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => json!({"ip": a.ip().to_string(), "port": a.port()}),
        Err(_) => json!({"name": addr}),
    }
}

/// OCSF classes moat exports, with their category: (uid, name) each.
const HTTP_ACTIVITY: [(u32, &str); 2] = [(4002, "HTTP Activity"), (4, "Network Activity")];
const NETWORK_ACTIVITY: [(u32, &str); 2] = [(4001, "Network Activity"), (4, "Network Activity")];
const APP_LIFECYCLE: [(u32, &str); 2] =
    [(6002, "Application Lifecycle"), (6, "Application Activity")];

/// The OCSF event for a record; `None` for records with no OCSF counterpart (checkpoints).
pub fn ocsf(env: &Envelope, t: time::OffsetDateTime) -> Option<Value> {
    let (class, activity, members) = match &env.record {
        Record::Request(r) => {
            let ok = r.failed.is_none() && r.status < 500;
            let members = json!({
                "severity_id": if ok { 1 } else { 3 },
                "status_id": if ok { 1 } else { 2 },
                "duration": r.duration_ms.round() as i64,
                "http_request": {
                    "uid": r.request_id, "http_method": r.method,
                    "url": {"hostname": r.host, "path": r.path, "scheme": "https"},
                },
                "http_response": {"code": r.status},
                "src_endpoint": endpoint(&r.client),
                "dst_endpoint": {"name": r.upstream},
                "tls": {"version": r.tls.version, "cipher": r.tls.cipher, "sni": r.tls.sni},
                "traffic": {"bytes_in": r.bytes_in, "bytes_out": r.bytes_out},
                "disposition_id": 1, "disposition": "Allowed",
                "unmapped": {"listener": r.listener, "decision": r.decision, "guard_mode": r.guard.mode,
                             "guard_allow_sha256": r.guard.allow_sha256, "failed": r.failed},
            });
            (HTTP_ACTIVITY, http_activity(&r.method), members)
        }
        Record::Reject(r) => {
            let members = json!({
                "severity_id": 2, "status_id": 2,
                "status_detail": r.reason,
                "http_request": {"http_method": r.method, "url": {"path": r.path}},
                "http_response": {"code": r.status},
                "src_endpoint": endpoint(&r.client),
                "disposition_id": 2, "disposition": "Blocked",
                "unmapped": {"listener": r.listener, "detail": r.detail},
            });
            let activity = http_activity(r.method.as_deref().unwrap_or(""));
            (HTTP_ACTIVITY, activity, members)
        }
        Record::Guard(g) => {
            let refused = g.verdict == "refused";
            let activity = if refused {
                (5, "Refuse")
            } else {
                (6, "Traffic")
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
                "unmapped": {"hook": g.hook, "cgroup_id": g.cgroup_id, "verdict": g.verdict},
            });
            (NETWORK_ACTIVITY, activity, members)
        }
        Record::Connection(c) => {
            let members = json!({
                "severity_id": 1,
                "status_id": if c.failed.is_some() { 2 } else { 1 },
                "src_endpoint": endpoint(&c.client),
                "dst_endpoint": endpoint(&c.destination),
                "connection_info": {"protocol_name": "tcp", "direction_id": 1, "direction": "Inbound"},
                "traffic": {"bytes_in": c.bytes_in, "bytes_out": c.bytes_out},
                "disposition_id": 1, "disposition": "Allowed",
                "unmapped": {"listener": c.listener, "upstream": c.upstream, "protocol": c.protocol, "sni": c.sni, "duration_ms": c.duration_ms, "failed": c.failed},
            });
            (NETWORK_ACTIVITY, (2, "Close"), members)
        }
        Record::Lifecycle(l) => {
            let activity = match l.event.as_str() {
                "start" => (3, "Start"),
                "stop" => (4, "Stop"),
                _ => (99, "Other"),
            };
            let members = json!({
                "severity_id": 1, "status_id": 1,
                "app": {"name": "moat", "version": l.version},
                "message": l.event,
                "unmapped": {"config_sha256": l.config_sha256, "detail": l.detail},
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
    });
    if let (Value::Object(v), Value::Object(members)) = (&mut v, members) {
        v.extend(members);
    }
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
        4002 => &["http_request", "http_response", "src_endpoint"],
        4001 => &["dst_endpoint", "connection_info", "actor"],
        6002 => &["app"],
        _ => &[],
    };
    EVERY.iter().chain(class).copied().collect()
}
