//! `moat audit report`: one self-contained HTML file an auditor opens offline — chain status per
//! host, then what the records say (requests, callers, refusals, masking, egress, the guard, top
//! talkers), each as a chart (inline SVG) and a table of the exact numbers.
//!
//! Input is any mix of audit trails (a directory of `segment-*.jsonl`), JSONL export bundles (a
//! directory with `manifest.json`) and collector files (as `moat audit verify --keys` reads
//! them). Chain status comes from [`super::verify`] (trails), from [`super::collected`]
//! (collector files) and, for a bundle, from its manifest, the hash of its records file and the
//! chain of its records. The numbers are counted by [`summary::Summary`] from the records alone;
//! [`html`] only prints them. Records hold no request or response content, so neither does the
//! report.

mod charts;
mod html;
pub mod summary;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

pub use summary::{Filters, Summary};

use super::collected::{self, CollectError, Status, KEY_SUFFIX};
use super::export::{check_bundle, records_file, Format, Manifest};
use super::record::{Envelope, Record, SCHEMA_VERSION};
use super::verify::{check_checkpoint, read_pubkey, verify, VerifyError};
use super::{io_err, segments, sha256_hex, written, AuditError, GENESIS, PUBKEY_FILE};

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    /// Trails, bundles, collector files and directories.
    pub paths: Vec<PathBuf>,
    /// `<host>.pub` per host: needed for collector files; for a trail or bundle, its host's key
    /// (else a trail is checked with its own key copy, a bundle's signatures are not checked).
    pub keys: Option<PathBuf>,
    /// Host names of the trail and bundle PATHs, in order (default: each directory's name).
    pub host_names: Vec<String>,
    /// Time window and hosts.
    pub filters: Filters,
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A bad invocation (exit status 64); the message names the flag or PATH.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] AuditError),
}

impl From<CollectError> for ReportError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::Usage(m) => Self::Usage(m),
            CollectError::Io(e) => Self::Io(e),
        }
    }
}

/// What a PATH is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// An audit directory as moat writes it.
    Trail,
    /// A JSONL export bundle.
    Bundle,
    /// Files a syslog collector wrote.
    Collector,
}

impl SourceKind {
    /// `trail`, `bundle` or `collector`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trail => "trail",
            Self::Bundle => "bundle",
            Self::Collector => "collector",
        }
    }
}

/// One PATH of the invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As given.
    pub path: PathBuf,
    /// What it was read as.
    pub kind: SourceKind,
    /// The host of a trail or bundle (collector files name their hosts).
    pub host: Option<String>,
}

/// Chain status of one host in one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    /// The host.
    pub host: String,
    /// `trail PATH`, `bundle PATH` or `collector`.
    pub source: String,
    /// Which key checked the signatures.
    pub key: String,
    /// OK or BROKEN.
    pub status: Status,
    /// Distinct seqs held.
    pub records: u64,
    /// Lowest seq held.
    pub first_seq: Option<u64>,
    /// Highest seq held.
    pub last_seq: Option<u64>,
    /// Missing seq ranges (inclusive).
    pub gaps: Vec<[u64; 2]>,
    /// Further copies of seqs already held.
    pub duplicates: u64,
    /// Checkpoints whose signature verified (`None`: not checked).
    pub checkpoints: Option<u64>,
    /// The last checkpoint that verified.
    pub last_signed_seq: Option<u64>,
    /// Records after it (`None`: not checked).
    pub unsigned_tail: Option<u64>,
    /// What is wrong (or, for OK rows, what was not checked), one sentence each.
    pub problems: Vec<String>,
}

impl ChainRow {
    /// A BROKEN row that holds nothing (yet), and no problem said.
    fn broken(host: String, source: String, key: String) -> Self {
        Self {
            host,
            source,
            key,
            status: Status::Broken,
            records: 0,
            first_seq: None,
            last_seq: None,
            gaps: Vec::new(),
            duplicates: 0,
            checkpoints: None,
            last_signed_seq: None,
            unsigned_tail: None,
            problems: Vec::new(),
        }
    }
}

/// Everything the HTML shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// When it was made (RFC 3339).
    pub generated: String,
    /// The PATHs read.
    pub sources: Vec<Source>,
    /// The window and hosts.
    pub filters: Filters,
    /// Chain status per host and source (all records held, whatever the time window).
    pub chain: Vec<ChainRow>,
    /// The numbers, from the records in the window.
    pub summary: Summary,
    /// Hosts named by `--host` of which no source holds anything.
    pub unmatched_hosts: Vec<String>,
    /// Things the reader should know (conflicting copies across sources).
    pub notes: Vec<String>,
}

/// Most chain problems listed for one bundle; the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// Sequence numbers as read in order: records, range, gaps, and copies of seqs already seen.
#[derive(Debug, Default)]
struct SeqTrack {
    expected: u64,
    records: u64,
    first: Option<u64>,
    last: Option<u64>,
    gaps: Vec<[u64; 2]>,
    duplicates: u64,
}

impl SeqTrack {
    fn from(start: u64) -> Self {
        Self {
            expected: start,
            ..Self::default()
        }
    }

    fn see(&mut self, seq: u64) {
        if seq < self.expected {
            self.duplicates += 1;
            return;
        }
        if seq > self.expected {
            self.gaps.push([self.expected, seq - 1]);
        }
        self.expected = seq.saturating_add(1);
        self.records += 1;
        self.first.get_or_insert(seq);
        self.last = Some(seq);
    }
}

/// Feeds records to the summary once per (host, seq): sources overlap (a trail and its
/// collector copy; at-least-once delivery), and a record is counted once. The first copy read
/// wins; a later copy with different bytes is noted.
struct Sink {
    builder: summary::Builder,
    seen: HashMap<String, HashMap<u64, [u8; 8]>>,
    conflicts: BTreeMap<String, u64>,
}

impl Sink {
    fn add(&mut self, host: &str, line: &str, env: &Envelope) {
        let hash = sha256_prefix(line);
        let seen = match self.seen.get_mut(host) {
            Some(s) => s,
            None => self.seen.entry(host.to_owned()).or_default(),
        };
        match seen.get(&env.seq) {
            Some(h) if *h == hash => {}
            Some(_) => *self.conflicts.entry(host.to_owned()).or_default() += 1,
            None => {
                seen.insert(env.seq, hash);
                self.builder.add(host, env);
            }
        }
    }
}

fn sha256_prefix(line: &str) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(line.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// A record line, when it is one of schema 1.
fn parse(line: &str) -> Option<Envelope> {
    serde_json::from_str::<Envelope>(line)
        .ok()
        .filter(|e| e.v == SCHEMA_VERSION)
}

/// What `path` is: a trail (segment files or the key copy), a bundle (`manifest.json`), or
/// else collector files.
fn classify(path: &Path) -> Result<SourceKind, ReportError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ReportError::Usage(format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(SourceKind::Collector);
    }
    if path.join("manifest.json").is_file() {
        return Ok(SourceKind::Bundle);
    }
    let is_trail = path.join(PUBKEY_FILE).is_file() || !segments(path)?.is_empty();
    Ok(if is_trail {
        SourceKind::Trail
    } else {
        SourceKind::Collector
    })
}

/// The default host of a trail or bundle: its directory's name.
fn dir_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "local".to_owned())
}

/// The key `--keys` holds for `host`, if any: (path, how the table names it).
fn host_key(keys: Option<&Path>, host: &str) -> Option<(PathBuf, String)> {
    let path = keys?.join(format!("{host}{KEY_SUFFIX}"));
    path.is_file()
        .then(|| (path, format!("--keys: {host}{KEY_SUFFIX}")))
}

/// Reads what `req` names and counts it.
pub fn build(req: &ReportRequest) -> Result<Report, ReportError> {
    if let (Some(s), Some(u)) = (req.filters.since, req.filters.until) {
        if s >= u {
            return Err(ReportError::Usage(
                "--since must be before --until".to_owned(),
            ));
        }
    }
    if let Some(keys) = &req.keys {
        if !keys.is_dir() {
            return Err(ReportError::Usage(format!(
                "--keys {}: not a directory",
                keys.display()
            )));
        }
    }
    let mut sources = Vec::new();
    for path in &req.paths {
        sources.push(Source {
            path: path.clone(),
            kind: classify(path)?,
            host: None,
        });
    }
    let locals = sources
        .iter()
        .filter(|s| s.kind != SourceKind::Collector)
        .count();
    if !req.host_names.is_empty() && req.host_names.len() != locals {
        return Err(ReportError::Usage(format!(
            "--host-name: given {} time(s) for {locals} trail or bundle PATH(s); give one per trail or bundle, in their order",
            req.host_names.len()
        )));
    }
    if let Some(empty) = req.host_names.iter().find(|h| h.trim().is_empty()) {
        return Err(ReportError::Usage(format!(
            "--host-name {empty:?}: a host name cannot be empty"
        )));
    }
    let mut names = req.host_names.iter();
    let mut defaults: BTreeMap<String, PathBuf> = BTreeMap::new();
    for s in sources
        .iter_mut()
        .filter(|s| s.kind != SourceKind::Collector)
    {
        let host = match names.next() {
            Some(h) => h.clone(),
            None => {
                let h = dir_name(&s.path);
                if let Some(other) = defaults.insert(h.clone(), s.path.clone()) {
                    return Err(ReportError::Usage(format!(
                        "--host-name: {} and {} would both be host {h:?} (their directory name); name each trail or bundle with --host-name",
                        other.display(),
                        s.path.display()
                    )));
                }
                h
            }
        };
        s.host = Some(host);
    }
    let collectors: Vec<PathBuf> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::Collector)
        .map(|s| s.path.clone())
        .collect();
    let keys = req.keys.as_deref();
    if let (Some(first), None) = (collectors.first(), keys) {
        return Err(ReportError::Usage(format!(
            "--keys DIR is needed: {} is neither an audit trail (segment-*.jsonl) nor an export bundle (manifest.json), so it is read as collector files, which are checked against each host's key",
            first.display()
        )));
    }

    let mut sink = Sink {
        builder: summary::Builder::new(req.filters.clone()),
        seen: HashMap::new(),
        conflicts: BTreeMap::new(),
    };
    let mut chain = Vec::new();
    for s in &sources {
        let Some(host) = &s.host else { continue };
        let row = match s.kind {
            SourceKind::Trail => trail(&s.path, host, keys, &mut sink)?,
            SourceKind::Bundle => bundle(&s.path, host, keys, &mut sink)?,
            SourceKind::Collector => continue,
        };
        chain.push(row);
    }
    if let (false, Some(keys)) = (collectors.is_empty(), keys) {
        chain.extend(collector(&collectors, keys, &mut sink)?);
    }
    chain.retain(|r| req.filters.host(&r.host));

    let summary = sink.builder.finish();
    let notes = sink
        .conflicts
        .iter()
        .filter(|(h, _)| req.filters.host(h))
        .map(|(h, n)| {
            format!("{h}: {n} record(s) held with different lines in different copies; the first copy read was counted (trails, then bundles, then collector files, in PATH order)")
        })
        .collect();
    let unmatched_hosts = req
        .filters
        .hosts
        .iter()
        .filter(|h| !chain.iter().any(|r| &r.host == *h) && !summary.hosts.contains(*h))
        .cloned()
        .collect();
    Ok(Report {
        generated: super::now_rfc3339(),
        sources,
        filters: req.filters.clone(),
        chain,
        summary,
        unmatched_hosts,
        notes,
    })
}

/// The HTML of a report: one self-contained file (inline CSS and SVG, nothing fetched).
pub fn render(report: &Report) -> String {
    html::render(report)
}

/// One trail: its chain status from [`verify`], its records into `sink`.
fn trail(
    dir: &Path,
    host: &str,
    keys: Option<&Path>,
    sink: &mut Sink,
) -> Result<ChainRow, ReportError> {
    let mut problems = Vec::new();
    let (key_path, key) = match (host_key(keys, host), keys) {
        (Some(k), _) => k,
        (None, Some(dir_keys)) => {
            problems.push(format!(
                "no key for host {host} ({host}{KEY_SUFFIX} is not in {}); checked with the trail's own key copy, which shows only that it is self-consistent",
                dir_keys.display()
            ));
            (dir.join(PUBKEY_FILE), "the trail's own copy".to_owned())
        }
        (None, None) => (
            dir.join(PUBKEY_FILE),
            "the trail's own copy (self-consistency only)".to_owned(),
        ),
    };
    let verified = match verify(dir, Some(&key_path)) {
        Ok(r) => Some(r),
        Err(VerifyError::Bad(p)) => {
            problems.push(p.to_string());
            None
        }
        Err(e) => {
            problems.push(format!("not verified: {e}"));
            None
        }
    };
    let mut seqs = SeqTrack::from(1);
    for seg in segments(dir)? {
        let data = std::fs::read(&seg).map_err(io_err(&seg))?;
        let text = String::from_utf8_lossy(written(&data));
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(env) = parse(line) {
                seqs.see(env.seq);
                sink.add(host, line, &env);
            }
        }
    }
    let status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Broken
    };
    Ok(ChainRow {
        host: host.to_owned(),
        source: format!("trail {}", dir.display()),
        key,
        status,
        records: seqs.records,
        first_seq: seqs.first,
        last_seq: seqs.last,
        gaps: seqs.gaps,
        duplicates: seqs.duplicates,
        checkpoints: verified.as_ref().map(|r| r.checkpoints),
        last_signed_seq: verified
            .as_ref()
            .filter(|r| r.checkpoints > 0)
            .map(|r| r.last_seq - r.unsigned_tail),
        unsigned_tail: verified.as_ref().map(|r| r.unsigned_tail),
        problems,
    })
}

/// One JSONL export bundle: the manifest (and its signature, with the host's key), the records
/// file's hash, and the excerpt's chain from `chain_prev`; its records into `sink`.
fn bundle(
    dir: &Path,
    host: &str,
    keys: Option<&Path>,
    sink: &mut Sink,
) -> Result<ChainRow, ReportError> {
    let mut problems = Vec::new();
    let mpath = dir.join("manifest.json");
    let body = std::fs::read(&mpath).map_err(io_err(&mpath))?;
    let mut row = ChainRow::broken(
        host.to_owned(),
        format!("bundle {}", dir.display()),
        "none: signatures not checked (give --keys DIR with HOST.pub)".to_owned(),
    );
    let manifest: Manifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            row.problems.push(format!("manifest.json: {e}"));
            return Ok(row);
        }
    };
    if manifest.format != "jsonl" {
        return Err(ReportError::Usage(format!(
            "{}: a bundle in format {:?}; the report reads JSONL bundles (moat audit export --format jsonl), whose records are moat's own lines",
            dir.display(),
            manifest.format
        )));
    }
    let name = records_file(Format::Jsonl);
    let rpath = dir.join(name);
    let data = std::fs::read(&rpath).map_err(io_err(&rpath))?;
    match manifest.files.iter().find(|f| f.name == name) {
        Some(f) if f.sha256 == sha256_hex(&data) => {}
        Some(_) => problems.push(format!("{name}: SHA-256 does not match the manifest")),
        None => problems.push(format!("{name}: not listed in the manifest")),
    }
    let key: Option<VerifyingKey> = match (host_key(keys, host), keys) {
        (Some((path, label)), _) => {
            row.key = label;
            if let Err(e) = check_bundle(dir, &path) {
                problems.push(e);
            }
            match read_pubkey(&path) {
                Ok(k) => Some(k),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            }
        }
        (None, Some(dir_keys)) => {
            problems.push(format!(
                "no key for host {host} ({host}{KEY_SUFFIX} is not in {}): the manifest signature and checkpoints are not checked",
                dir_keys.display()
            ));
            None
        }
        (None, None) => None,
    };
    let kid = key
        .as_ref()
        .map(|k| super::writer::key_id(k.as_bytes()))
        .unwrap_or_default();
    let mut seqs = SeqTrack::from(manifest.first_seq.max(1));
    let mut prev = manifest
        .chain_prev
        .clone()
        .unwrap_or_else(|| GENESIS.into());
    let (mut breaks, mut checkpoints, mut last_signed, mut lines) = (Vec::new(), 0u64, None, 0u64);
    let text = String::from_utf8_lossy(written(&data));
    for line in text.lines().filter(|l| !l.is_empty()) {
        lines += 1;
        let Some(env) = parse(line) else {
            breaks.push(format!("{name}:{lines}: not a record of schema 1"));
            continue;
        };
        if env.prev != prev {
            breaks.push(format!(
                "seq {}: hash chain broken: prev does not match the previous record",
                env.seq
            ));
        }
        prev = sha256_hex(line.as_bytes());
        if let (Record::Checkpoint(cp), Some(k)) = (&env.record, &key) {
            match check_checkpoint(k, &kid, env.seq, &env.prev, cp) {
                Ok(()) => {
                    checkpoints += 1;
                    last_signed = Some(env.seq);
                }
                Err(why) => breaks.push(why),
            }
        }
        seqs.see(env.seq);
        sink.add(host, line, &env);
    }
    if lines != manifest.records {
        problems.push(format!(
            "{name} holds {lines} line(s), the manifest says {}",
            manifest.records
        ));
    }
    if seqs.last.unwrap_or(0) != manifest.last_seq {
        problems.push(format!(
            "the records end at seq {}, the manifest says {}",
            seqs.last.unwrap_or(0),
            manifest.last_seq
        ));
    }
    for &[from, to] in &seqs.gaps {
        problems.push(format!("gap: seq {from}..{to} missing"));
    }
    if breaks.len() > MAX_PROBLEMS {
        let more = breaks.len() - MAX_PROBLEMS;
        breaks.truncate(MAX_PROBLEMS);
        breaks.push(format!("… and {more} more"));
    }
    problems.extend(breaks);
    row.status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Broken
    };
    if key.is_some() {
        row.checkpoints = Some(checkpoints);
        row.last_signed_seq = last_signed;
        row.unsigned_tail = Some(match last_signed {
            Some(s) => seqs.last.unwrap_or(s).saturating_sub(s),
            None => seqs.records,
        });
    }
    row.records = seqs.records;
    row.first_seq = seqs.first;
    row.last_seq = seqs.last;
    row.gaps = seqs.gaps;
    row.duplicates = seqs.duplicates;
    row.problems = problems;
    Ok(row)
}

/// Collector files: chain status per host from [`collected::check`], records from
/// [`collected::record_lines`].
fn collector(
    paths: &[PathBuf],
    keys: &Path,
    sink: &mut Sink,
) -> Result<Vec<ChainRow>, ReportError> {
    let c = collected::check(paths, keys)?;
    let mut rows: Vec<ChainRow> = c
        .hosts
        .iter()
        .map(|h| ChainRow {
            host: h.host.clone(),
            source: "collector".to_owned(),
            key: if h.key {
                format!("--keys: {}{KEY_SUFFIX}", h.host)
            } else {
                "none".to_owned()
            },
            status: h.status,
            records: h.records,
            first_seq: h.first_seq,
            last_seq: h.last_seq,
            gaps: h.gaps.clone(),
            duplicates: h.duplicates,
            checkpoints: Some(h.checkpoints),
            last_signed_seq: h.last_signed_seq,
            unsigned_tail: Some(h.unsigned_tail),
            problems: h.problems.clone(),
        })
        .collect();
    rows.extend(c.silent.iter().map(|s| ChainRow {
        problems: vec![format!(
            "silent: its key is in the key directory ({s}{KEY_SUFFIX}), but the collector holds nothing from it"
        )],
        ..ChainRow::broken(
            s.clone(),
            "collector".to_owned(),
            format!("--keys: {s}{KEY_SUFFIX}"),
        )
    }));
    collected::record_lines(paths, |host, line| {
        if let Some(env) = parse(line) {
            sink.add(host, line, &env);
        }
    })?;
    Ok(rows)
}
