//! `moat audit verify --keys DIR PATH…`: checks what a syslog collector holds of many hosts'
//! trails, host by host, against each host's public key (`DIR/<host>.pub`).
//!
//! A collector receives each record as an RFC 5424 message ([`super::syslog::message`]) and
//! stores it either whole or as the bare record line, in one file per host or all hosts mixed.
//! Delivery is at least once and not in order, so, unlike [`super::verify`], this reads every
//! line first and then checks each host's records by sequence number: identical copies are
//! counted and tolerated, the same seq with a different line is a conflict, missing seqs are
//! gaps (from seq 1: a trail starts there), hash links are checked between consecutive seqs
//! that are both present, and checkpoints are checked with the host's key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::record::{Envelope, Record, SCHEMA_VERSION};
use super::verify::{check_checkpoint, read_pubkey};
use super::writer::key_id;
use super::{io_err, syslog, unhex, AuditError};

/// Suffix of a host's public key file in the key directory: `<host>.pub`.
pub const KEY_SUFFIX: &str = ".pub";

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The invocation is wrong: the key directory is unreadable, holds no key or a bad one, or
    /// a path is neither a file nor a directory (exit status 64).
    #[error("{0}")]
    Usage(String),
    /// A collector file could not be read.
    #[error(transparent)]
    Io(#[from] AuditError),
}

/// OK or BROKEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Every check passed.
    Ok,
    /// At least one problem (see [`HostReport::problems`]).
    Broken,
}

impl Status {
    /// `OK` or `BROKEN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Broken => "BROKEN",
        }
    }
}

/// A record whose chain link or checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The record's seq.
    pub seq: u64,
    /// What is wrong.
    pub what: String,
    /// `file:line` of the record (its first copy).
    pub at: String,
}

/// What the collector holds of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// The host name (the message's `moat@32473` host, else its HOSTNAME, else the file name
    /// without its last extension).
    pub host: String,
    /// Distinct seqs held.
    pub records: u64,
    /// Lowest seq held.
    pub first_seq: Option<u64>,
    /// Highest seq held.
    pub last_seq: Option<u64>,
    /// Copies of a line already seen (at-least-once delivery): tolerated.
    pub duplicates: u64,
    /// Missing seq ranges, inclusive, from seq 1 on.
    pub gaps: Vec<[u64; 2]>,
    /// Seqs held with different lines.
    pub conflicts: Vec<u64>,
    /// Broken hash links and checkpoints that do not verify.
    pub chain_breaks: Vec<ChainBreak>,
    /// Checkpoints whose key id and signature verified with the host's key.
    pub checkpoints: u64,
    /// Seq of the last checkpoint that verified.
    pub last_signed_seq: Option<u64>,
    /// Records held after the last checkpoint that verified (all of them without one).
    pub unsigned_tail: u64,
    /// Lines that could not be read as this host's records.
    pub unreadable: u64,
    /// `file:line: why` of the first of them.
    pub first_unreadable: Option<String>,
    /// Whether the key directory holds this host's key.
    pub key: bool,
    /// OK when nothing below is wrong.
    pub status: Status,
    /// Every problem, one sentence each (empty when OK).
    pub problems: Vec<String>,
}

/// The result: one report per host that sent anything, the hosts that sent nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collected {
    /// Hosts with at least one line, by name.
    pub hosts: Vec<HostReport>,
    /// Hosts whose key is in the key directory but of which the collector holds nothing.
    pub silent: Vec<String>,
    /// Every host OK and none silent.
    pub ok: bool,
}

/// A host's public key and its id.
struct HostKey {
    key: VerifyingKey,
    kid: String,
}

/// Where a line was read: index into the file list, 1-based line.
#[derive(Debug, Clone, Copy)]
struct Loc {
    file: usize,
    line: u64,
}

/// What a checkpoint record's check found.
enum Checkpoint {
    /// Not a checkpoint.
    No,
    /// Key id and signature verified.
    Valid,
    /// Why it does not verify.
    Invalid(String),
    /// No key to check it with.
    Unchecked,
}

/// One seq's first line, reduced to what the checks need.
struct Entry {
    hash: [u8; 32],
    /// The `prev` digest; `None` when it is not 64 hex digits.
    prev: Option<[u8; 32]>,
    checkpoint: Checkpoint,
    at: Loc,
}

#[derive(Default)]
struct HostLines {
    entries: BTreeMap<u64, Entry>,
    duplicates: u64,
    /// Per seq, the first conflicting copy (the entry holds the first one).
    conflicts: BTreeMap<u64, Loc>,
    unreadable: u64,
    first_unreadable: Option<(Loc, String)>,
}

impl HostLines {
    fn unreadable(&mut self, at: Loc, why: String) {
        self.unreadable += 1;
        if self.first_unreadable.is_none() {
            self.first_unreadable = Some((at, why));
        }
    }
}

/// Reads `<host>.pub` files from `dir`.
fn load_keys(dir: &Path) -> Result<BTreeMap<String, HostKey>, CollectError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CollectError::Usage(format!("--keys {}: {e}", dir.display())))?;
    let mut keys = BTreeMap::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| CollectError::Usage(format!("--keys {}: {e}", dir.display())))?;
        let path = entry.path();
        let Some(host) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(KEY_SUFFIX))
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
        else {
            continue;
        };
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let key = read_pubkey(&path).map_err(|e| CollectError::Usage(format!("--keys: {e}")))?;
        let kid = key_id(key.as_bytes());
        keys.insert(host, HostKey { key, kid });
    }
    if keys.is_empty() {
        return Err(CollectError::Usage(format!(
            "--keys {}: no key files (<host>{KEY_SUFFIX}) in it",
            dir.display()
        )));
    }
    Ok(keys)
}

/// The files to read: each file named, and every regular file directly inside each directory
/// named (sorted), each once.
fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CollectError> {
    fn add(p: PathBuf, files: &mut Vec<PathBuf>) {
        if !files.contains(&p) {
            files.push(p);
        }
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| CollectError::Usage(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CollectError::Usage(format!("{}: {e}", path.display())))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
                .collect();
            inside.sort();
            for p in inside {
                add(p, &mut files);
            }
        } else if meta.is_file() {
            add(path.clone(), &mut files);
        } else {
            return Err(CollectError::Usage(format!(
                "{}: neither a file nor a directory",
                path.display()
            )));
        }
    }
    Ok(files)
}

/// The host a file's bare record lines belong to: its name without the last extension
/// (`gpu-07.log` → `gpu-07`).
fn file_host(path: &Path) -> String {
    path.file_stem()
        .or_else(|| path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}

/// Reads one file's lines into `hosts`.
fn read_file(
    path: &Path,
    file: usize,
    keys: &BTreeMap<String, HostKey>,
    hosts: &mut BTreeMap<String, HostLines>,
) -> Result<(), CollectError> {
    let default_host = file_host(path);
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, f);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let at = Loc {
            file,
            line: line_no,
        };
        let torn = !buf.ends_with(b"\n");
        // Blank lines, and the zero fill of a live segment copied as it is, hold nothing.
        if buf
            .iter()
            .all(|&b| b == 0 || b == b'\n' || b == b'\r' || b == b' ')
        {
            continue;
        }
        let Ok(stored) = std::str::from_utf8(&buf) else {
            hosts
                .entry(default_host.clone())
                .or_default()
                .unreadable(at, "not UTF-8".into());
            continue;
        };
        // A template that puts a space before the message (`%msg%` sometimes does) changes
        // nothing of the record line.
        let stored = stored.trim_start_matches(' ');
        let Some((host, line)) = syslog::parse(stored) else {
            let why = if torn {
                "torn last line (no newline)"
            } else {
                "neither a moat record line nor an RFC 5424 message carrying one"
            };
            hosts
                .entry(default_host.clone())
                .or_default()
                .unreadable(at, why.into());
            continue;
        };
        let host = host.unwrap_or_else(|| default_host.clone());
        let lines = hosts.entry(host.clone()).or_default();
        let env: Envelope = match serde_json::from_str(line) {
            Ok(env) => env,
            Err(e) => {
                let why = if torn {
                    format!("torn last line (no newline): {e}")
                } else {
                    format!("not a valid record: {e}")
                };
                lines.unreadable(at, why);
                continue;
            }
        };
        if env.v != SCHEMA_VERSION {
            lines.unreadable(at, format!("unknown schema version {}", env.v));
            continue;
        }
        if env.seq == 0 {
            lines.unreadable(at, "seq 0 (a trail starts at seq 1)".into());
            continue;
        }
        let hash = digest(line.as_bytes());
        match lines.entries.entry(env.seq) {
            std::collections::btree_map::Entry::Occupied(first) => {
                if first.get().hash == hash {
                    lines.duplicates += 1;
                } else {
                    lines.conflicts.entry(env.seq).or_insert(at);
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                let checkpoint = match (&env.record, keys.get(&host)) {
                    (Record::Checkpoint(_), None) => Checkpoint::Unchecked,
                    (Record::Checkpoint(cp), Some(k)) => {
                        match check_checkpoint(&k.key, &k.kid, env.seq, &env.prev, cp) {
                            Ok(()) => Checkpoint::Valid,
                            Err(why) => Checkpoint::Invalid(why),
                        }
                    }
                    _ => Checkpoint::No,
                };
                slot.insert(Entry {
                    hash,
                    prev: hex32(&env.prev),
                    checkpoint,
                    at,
                });
            }
        }
    }
}

/// Checks what the collector files in `paths` (files, or directories whose regular files are
/// read) hold, host by host, against the keys in `keys_dir`.
pub fn check(paths: &[PathBuf], keys_dir: &Path) -> Result<Collected, CollectError> {
    let keys = load_keys(keys_dir)?;
    let files = input_files(paths)?;
    let mut hosts: BTreeMap<String, HostLines> = BTreeMap::new();
    for (i, path) in files.iter().enumerate() {
        read_file(path, i, &keys, &mut hosts)?;
    }
    let at = |l: Loc| format!("{}:{}", files[l.file].display(), l.line);
    let reports: Vec<HostReport> = hosts
        .into_iter()
        .map(|(host, lines)| {
            let has_key = keys.contains_key(&host);
            report(host, &lines, has_key, keys_dir, &at)
        })
        .collect();
    let silent: Vec<String> = keys
        .keys()
        .filter(|h| !reports.iter().any(|r| &r.host == *h))
        .cloned()
        .collect();
    let ok = silent.is_empty() && reports.iter().all(|r| r.status == Status::Ok);
    Ok(Collected {
        hosts: reports,
        silent,
        ok,
    })
}

/// Every record line the collector files in `paths` hold, with the host it belongs to, read and
/// attributed as [`check`] reads them (the same files, the `moat@32473` host, else HOSTNAME, else
/// the file's name): `each(host, line)` in file order, duplicates included. Lines that are not
/// record lines are skipped here ([`check`] counts them as unreadable). For `moat audit report`,
/// which counts what the records say.
pub fn record_lines(
    paths: &[PathBuf],
    mut each: impl FnMut(&str, &str),
) -> Result<(), CollectError> {
    for path in input_files(paths)? {
        let default_host = file_host(&path);
        let f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, f);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io_err(&path))? == 0 {
                break;
            }
            let Ok(stored) = std::str::from_utf8(&buf) else {
                continue;
            };
            if let Some((host, line)) = syslog::parse(stored.trim_start_matches(' ')) {
                each(host.as_deref().unwrap_or(&default_host), line);
            }
        }
    }
    Ok(())
}

/// One host's checks over its lines.
fn report(
    host: String,
    lines: &HostLines,
    has_key: bool,
    keys_dir: &Path,
    at: &dyn Fn(Loc) -> String,
) -> HostReport {
    let entries = &lines.entries;
    let mut gaps = Vec::new();
    let mut chain_breaks = Vec::new();
    let mut checkpoints = 0;
    let mut last_signed_seq = None;
    let mut expected = 1u64;
    let mut previous: Option<(u64, &Entry)> = None;
    for (&seq, e) in entries {
        if seq > expected {
            gaps.push([expected, seq - 1]);
        }
        expected = seq.saturating_add(1);
        let link = match (e.prev, previous) {
            (None, _) => Some("prev is not a SHA-256 hex digest".to_owned()),
            (Some(p), _) if seq == 1 && p != [0; 32] => {
                Some("hash chain broken: the first record's prev is not 64 zeros".to_owned())
            }
            (Some(p), Some((s, before))) if s + 1 == seq && p != before.hash => Some(format!(
                "hash chain broken: prev does not match the hash of seq {s}"
            )),
            _ => None,
        };
        if let Some(what) = link {
            chain_breaks.push(ChainBreak {
                seq,
                what,
                at: at(e.at),
            });
        }
        match &e.checkpoint {
            Checkpoint::Valid => {
                checkpoints += 1;
                last_signed_seq = Some(seq);
            }
            Checkpoint::Invalid(what) => chain_breaks.push(ChainBreak {
                seq,
                what: what.clone(),
                at: at(e.at),
            }),
            Checkpoint::No | Checkpoint::Unchecked => {}
        }
        previous = Some((seq, e));
    }
    let unsigned_tail = match last_signed_seq {
        Some(s) => entries.range(s + 1..).count() as u64,
        None => entries.len() as u64,
    };
    let first_unreadable = lines
        .first_unreadable
        .as_ref()
        .map(|(l, why)| format!("{}: {why}", at(*l)));

    let mut problems = Vec::new();
    if !has_key {
        problems.push(format!(
            "no key for host {host} ({}{KEY_SUFFIX} is not in {})",
            host,
            keys_dir.display()
        ));
    }
    if let Some(first) = &first_unreadable {
        problems.push(format!(
            "{} line(s) could not be read; the first: {first}",
            lines.unreadable
        ));
    }
    for &[from, to] in &gaps {
        let missing = if from == to {
            format!("gap: seq {from} missing (1 record)")
        } else {
            format!("gap: seq {from}..{to} missing ({} records)", to - from + 1)
        };
        if from == 1 {
            problems.push(format!(
                "{missing}: the collector holds nothing before seq {}, and a trail starts at seq 1",
                to + 1
            ));
        } else {
            problems.push(missing);
        }
    }
    for (seq, other) in &lines.conflicts {
        if let Some(first) = entries.get(seq) {
            problems.push(format!(
                "conflict: seq {seq} is held with different lines at {} and {}",
                at(first.at),
                at(*other)
            ));
        }
    }
    for b in &chain_breaks {
        problems.push(format!("seq {} ({}): {}", b.seq, b.at, b.what));
    }
    let status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Broken
    };
    HostReport {
        host,
        records: entries.len() as u64,
        first_seq: entries.keys().next().copied(),
        last_seq: entries.keys().next_back().copied(),
        duplicates: lines.duplicates,
        gaps,
        conflicts: lines.conflicts.keys().copied().collect(),
        chain_breaks,
        checkpoints,
        last_signed_seq,
        unsigned_tail,
        unreadable: lines.unreadable,
        first_unreadable,
        key: has_key,
        status,
        problems,
    }
}

impl Collected {
    /// The summary table (one row per host, silent ones included), then one line per problem
    /// (`host: problem`).
    pub fn text(&self) -> String {
        let header = [
            "host",
            "records",
            "seqs",
            "gaps",
            "duplicates",
            "checkpoints",
            "last signed",
            "status",
        ];
        let mut rows: Vec<[String; 8]> = self
            .hosts
            .iter()
            .map(|h| {
                let seqs = match (h.first_seq, h.last_seq) {
                    (Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => "-".into(),
                };
                let signed = match h.last_signed_seq {
                    Some(s) => format!("{s} (+{})", h.unsigned_tail),
                    None => format!("- (+{})", h.unsigned_tail),
                };
                [
                    h.host.clone(),
                    h.records.to_string(),
                    seqs,
                    h.gaps.len().to_string(),
                    h.duplicates.to_string(),
                    h.checkpoints.to_string(),
                    signed,
                    h.status.as_str().into(),
                ]
            })
            .collect();
        for s in &self.silent {
            rows.push([
                s.clone(),
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                Status::Broken.as_str().into(),
            ]);
        }
        rows.sort_by(|a, b| a[0].cmp(&b[0]));
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut put = |cells: &mut dyn Iterator<Item = &str>| {
            let mut line = String::new();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<w$}", w = widths[i]);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        };
        put(&mut header.iter().copied());
        for row in &rows {
            put(&mut row.iter().map(String::as_str));
        }
        let mut problems: Vec<(String, String)> = self
            .hosts
            .iter()
            .flat_map(|h| h.problems.iter().map(|p| (h.host.clone(), p.clone())))
            .collect();
        for s in &self.silent {
            problems.push((
                s.clone(),
                format!("silent: its key is in the key directory ({s}{KEY_SUFFIX}), but the collector holds nothing from it"),
            ));
        }
        problems.sort_by(|a, b| a.0.cmp(&b.0));
        for (host, p) in problems {
            let _ = writeln!(out, "{host}: {p}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{config, reject, trail_lines, write_records};
    use crate::audit::{AuditConfig, FsyncMode, PUBKEY_FILE};

    /// A host's trail, written by the real writer: its lines (read as `moat audit verify`
    /// reads a segment: up to the first NUL) and its public key file.
    struct Trail {
        lines: Vec<String>,
        pubkey: PathBuf,
    }

    /// Writes start, `n` records and stop (checkpoints every 5 records and at shutdown) into
    /// `root/name`.
    fn trail(root: &Path, name: &str, n: u64) -> Trail {
        let cfg = AuditConfig {
            fsync: FsyncMode::Never,
            ..config(&root.join(name))
        };
        write_records(&cfg, (0..n).map(reject));
        let lines = trail_lines(&cfg.dir);
        assert!(lines.len() as u64 > n + 2, "records plus checkpoints");
        Trail {
            lines,
            pubkey: cfg.key_dir.join(PUBKEY_FILE),
        }
    }

    /// The RFC 5424 message the shipper sends for `line` from `host`.
    fn message(host: &str, line: &str) -> String {
        let fields = syslog::line_fields(line).expect("a trail line");
        syslog::message(host, 4711, line, &fields)
    }

    fn messages(host: &str, lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| message(host, l)).collect()
    }

    fn write(path: &Path, lines: &[String]) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).expect("write");
    }

    /// A key directory holding `host.pub` for each (host, key file).
    fn keys(root: &Path, hosts: &[(&str, &Path)]) -> PathBuf {
        let dir = root.join("keys");
        std::fs::create_dir_all(&dir).expect("keys");
        for (host, key) in hosts {
            std::fs::copy(key, dir.join(format!("{host}.pub"))).expect("copy key");
        }
        dir
    }

    fn host<'a>(c: &'a Collected, name: &str) -> &'a HostReport {
        c.hosts
            .iter()
            .find(|h| h.host == name)
            .unwrap_or_else(|| panic!("no host {name}: {c:#?}"))
    }

    /// The seq of a line.
    fn seq(line: &str) -> u64 {
        syslog::line_fields(line).expect("fields").seq
    }

    /// Checks one host's lines, stored as messages in `gpu-07.log`, against its own key.
    fn check_one(lines: &[String], t: &Trail, tmp: &Path) -> Collected {
        check_stored(&messages("gpu-07", lines), t, tmp)
    }

    /// Checks stored lines in `gpu-07.log` against that host's own key.
    fn check_stored(stored: &[String], t: &Trail, tmp: &Path) -> Collected {
        let dir = tmp.join("collector");
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir.join("gpu-07.log"), stored);
        let k = keys(tmp, &[("gpu-07", &t.pubkey)]);
        check(&[dir], &k).expect("check runs")
    }

    #[test]
    fn a_complete_host_is_ok() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 20);
        let c = check_one(&t.lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        let n = t.lines.len() as u64;
        assert_eq!(h.status, Status::Ok, "{h:#?}");
        assert!(c.ok && c.silent.is_empty());
        assert_eq!((h.records, h.first_seq, h.last_seq), (n, Some(1), Some(n)));
        assert!(h.gaps.is_empty() && h.conflicts.is_empty() && h.chain_breaks.is_empty());
        assert!(h.checkpoints >= 4, "{h:#?}");
        assert_eq!(
            (h.last_signed_seq, h.unsigned_tail),
            (Some(n), 0),
            "shutdown ends with a checkpoint"
        );
        assert!(h.problems.is_empty() && h.key && h.unreadable == 0);
        let text = c.text();
        assert!(text.starts_with("host "), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|r| r.starts_with("gpu-07") && r.ends_with("OK")),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2, "no problem lines: {text}");
    }

    #[test]
    fn duplicates_and_disorder_are_tolerated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 20);
        // Out of order (a deterministic shuffle), and three lines delivered twice.
        let mut lines = t.lines.clone();
        lines.reverse();
        lines.rotate_left(7);
        lines.push(t.lines[0].clone());
        lines.push(t.lines[4].clone());
        lines.insert(3, t.lines[10].clone());
        let c = check_one(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Ok, "{h:#?}");
        assert_eq!(h.duplicates, 3);
        assert_eq!(h.records, t.lines.len() as u64);
        assert!(c.ok);
    }

    #[test]
    fn a_deleted_line_is_a_gap_with_its_exact_range() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 20);
        // seqs 7, 8, 9 and 15 lost.
        let lines: Vec<String> = t
            .lines
            .iter()
            .filter(|l| !matches!(seq(l), 7..=9 | 15))
            .cloned()
            .collect();
        let c = check_one(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Broken);
        assert!(!c.ok);
        assert_eq!(h.gaps, vec![[7, 9], [15, 15]]);
        assert!(
            h.chain_breaks.is_empty(),
            "links are checked only between present seqs: {h:#?}"
        );
        assert!(
            h.problems
                == [
                    "gap: seq 7..9 missing (3 records)",
                    "gap: seq 15 missing (1 record)"
                ],
            "{h:#?}"
        );
        // The start missing: a gap from seq 1, said so.
        let late: Vec<String> = t.lines[3..].to_vec();
        let c = check_one(&late, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!((h.first_seq, h.gaps.clone()), (Some(4), vec![[1, 3]]));
        assert_eq!(h.status, Status::Broken);
        assert!(
            h.problems[0].contains("nothing before seq 4, and a trail starts at seq 1"),
            "{h:#?}"
        );
    }

    #[test]
    fn a_modified_line_breaks_the_chain_or_conflicts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 20);
        let i = t
            .lines
            .iter()
            .position(|l| l.contains("127.0.0.1:3\""))
            .expect("record 3");
        let s = seq(&t.lines[i]);
        let mut lines = t.lines.clone();
        lines[i] = lines[i].replacen("127.0.0.1:3\"", "127.0.0.9:3\"", 1);
        let c = check_one(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Broken);
        assert_eq!(h.chain_breaks.len(), 1, "{h:#?}");
        assert_eq!(h.chain_breaks[0].seq, s + 1);
        assert_eq!(
            h.chain_breaks[0].what,
            format!("hash chain broken: prev does not match the hash of seq {s}")
        );
        assert!(h.chain_breaks[0]
            .at
            .ends_with(&format!("gpu-07.log:{}", i + 2)));
        assert!(h.conflicts.is_empty() && h.gaps.is_empty());

        // The original delivered too (after the forgery): the same seq with two lines.
        lines.push(t.lines[i].clone());
        let c = check_one(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.conflicts, vec![s]);
        assert_eq!(h.status, Status::Broken);
        assert!(
            h.problems.iter().any(|p| p.starts_with(&format!(
                "conflict: seq {s} is held with different lines at "
            ))),
            "{h:#?}"
        );
    }

    #[test]
    fn a_wrong_key_or_a_forged_signature_fails_the_checkpoints() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 12);
        let other = trail(tmp.path(), "b", 1);
        let dir = tmp.path().join("collector");
        write(&dir.join("gpu-07.log"), &messages("gpu-07", &t.lines));
        let k = keys(tmp.path(), &[("gpu-07", &other.pubkey)]);
        let c = check(std::slice::from_ref(&dir), &k).expect("check runs");
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Broken);
        assert_eq!((h.checkpoints, h.last_signed_seq), (0, None));
        assert_eq!(h.unsigned_tail, h.records);
        assert!(!h.chain_breaks.is_empty());
        assert!(
            h.chain_breaks
                .iter()
                .all(|b| b.what.starts_with("checkpoint signed with key ")),
            "{h:#?}"
        );

        // The right key, the last checkpoint's signature altered.
        let mut lines = t.lines.clone();
        let last = lines.len() - 1;
        assert!(lines[last].contains("\"kind\":\"checkpoint\""));
        let at = lines[last].find("\"signature\":\"").expect("signature") + 13;
        let flipped = if &lines[last][at..=at] == "0" {
            "1"
        } else {
            "0"
        };
        lines[last].replace_range(at..=at, flipped);
        let c = check_one(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Broken);
        let n = lines.len() as u64;
        assert_eq!(
            h.chain_breaks,
            vec![ChainBreak {
                seq: n,
                what: format!("checkpoint signature at seq {n} does not verify"),
                at: format!("{}:{n}", dir.join("gpu-07.log").display()),
            }]
        );
        assert!(h.last_signed_seq.is_some_and(|s| s < n));
        assert!(h.unsigned_tail >= 1);
    }

    #[test]
    fn a_silent_host_and_a_host_without_a_key_are_breaks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = trail(tmp.path(), "a", 3);
        let b = trail(tmp.path(), "b", 3);
        let dir = tmp.path().join("collector");
        write(&dir.join("gpu-07.log"), &messages("gpu-07", &a.lines));
        write(&dir.join("gpu-09.log"), &messages("gpu-09", &b.lines));
        let k = keys(tmp.path(), &[("gpu-07", &a.pubkey), ("gpu-08", &b.pubkey)]);
        let c = check(std::slice::from_ref(&dir), &k).expect("check runs");
        assert_eq!(c.silent, vec!["gpu-08".to_owned()]);
        assert!(!c.ok);
        assert_eq!(host(&c, "gpu-07").status, Status::Ok);
        let stranger = host(&c, "gpu-09");
        assert_eq!(stranger.status, Status::Broken);
        assert!(!stranger.key);
        assert_eq!(stranger.checkpoints, 0, "nothing to check them with");
        assert!(
            stranger.problems[0].starts_with("no key for host gpu-09"),
            "{stranger:#?}"
        );
        let text = c.text();
        assert!(
            text.lines()
                .any(|l| l.starts_with("gpu-08") && l.ends_with("BROKEN")),
            "a row for the silent host: {text}"
        );
        assert!(text.contains("gpu-08: silent: "), "{text}");
        assert!(text.contains("gpu-09: no key for host gpu-09"), "{text}");
    }

    #[test]
    fn a_mixed_file_holds_two_hosts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = trail(tmp.path(), "a", 10);
        let b = trail(tmp.path(), "b", 14);
        let mut mixed = Vec::new();
        let (ma, mb) = (messages("gpu-07", &a.lines), messages("gpu-08", &b.lines));
        for i in 0..ma.len().max(mb.len()) {
            mixed.extend(mb.get(i).cloned());
            mixed.extend(ma.get(i).cloned());
        }
        let file = tmp.path().join("collector").join("all.log");
        write(&file, &mixed);
        let k = keys(tmp.path(), &[("gpu-07", &a.pubkey), ("gpu-08", &b.pubkey)]);
        let c = check(&[file], &k).expect("check runs");
        assert!(c.ok, "{c:#?}");
        assert_eq!(
            c.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(),
            ["gpu-07", "gpu-08"],
            "no host named after the file"
        );
        assert_eq!(host(&c, "gpu-07").records, a.lines.len() as u64);
        assert_eq!(host(&c, "gpu-08").records, b.lines.len() as u64);
    }

    #[test]
    fn bare_record_lines_take_the_host_from_the_file_name() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = trail(tmp.path(), "a", 6);
        let b = trail(tmp.path(), "b", 6);
        let dir = tmp.path().join("collector");
        // `%msg%` with a space before it, on some lines.
        let spaced: Vec<String> = a
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i % 2 == 0 {
                    format!(" {l}")
                } else {
                    l.clone()
                }
            })
            .collect();
        write(&dir.join("gpu-07.log"), &spaced);
        // A live segment copied as it is: its records, then the zero fill.
        let mut live: Vec<u8> = b
            .lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        live.extend([0u8; 4096]);
        std::fs::write(dir.join("gpu-08.jsonl"), live).expect("write");
        let k = keys(tmp.path(), &[("gpu-07", &a.pubkey), ("gpu-08", &b.pubkey)]);
        let c = check(std::slice::from_ref(&dir), &k).expect("check runs");
        assert!(c.ok, "{c:#?}");
        assert_eq!(host(&c, "gpu-08").records, b.lines.len() as u64);
        // Files and directories together; a file named twice is read once.
        let c = check(&[dir.join("gpu-07.log"), dir.clone()], &k).expect("check runs");
        assert!(c.ok && host(&c, "gpu-07").duplicates == 0, "{c:#?}");
    }

    #[test]
    fn unreadable_lines_are_counted_with_the_first_location() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 6);
        let mut lines = messages("gpu-07", &t.lines);
        lines.insert(2, "garbage".into());
        lines.insert(5, r#"{"v":1,"seq":"x"}"#.into());
        lines.push(String::new());
        let c = check_stored(&lines, &t, tmp.path());
        let h = host(&c, "gpu-07");
        assert_eq!(h.status, Status::Broken);
        assert_eq!(h.unreadable, 2);
        assert_eq!(
            h.records,
            t.lines.len() as u64,
            "the records around them still count"
        );
        let first = h.first_unreadable.as_deref().expect("first");
        assert!(
            first.ends_with(
                "gpu-07.log:3: neither a moat record line nor an RFC 5424 message carrying one"
            ),
            "{first}"
        );
        assert!(h.problems[0].starts_with("2 line(s) could not be read; the first: "));
    }

    #[test]
    fn the_json_document_has_the_documented_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 20);
        let lines: Vec<String> = t.lines.iter().filter(|l| seq(l) != 12).cloned().collect();
        let c = check_one(&lines, &t, tmp.path());
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["ok"], false);
        assert_eq!(v["silent"], serde_json::json!([]));
        let h = &v["hosts"][0];
        assert_eq!(h["host"], "gpu-07");
        assert_eq!(h["gaps"], serde_json::json!([[12, 12]]));
        assert_eq!(h["status"], "BROKEN");
        assert_eq!(h["first_seq"], 1);
        for field in [
            "records",
            "last_seq",
            "duplicates",
            "conflicts",
            "chain_breaks",
            "checkpoints",
            "last_signed_seq",
            "unsigned_tail",
            "unreadable",
        ] {
            assert!(h.get(field).is_some(), "{field}: {h}");
        }
    }

    #[test]
    fn bad_invocations_are_usage_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = trail(tmp.path(), "a", 1);
        let dir = tmp.path().join("collector");
        write(&dir.join("gpu-07.log"), &messages("gpu-07", &t.lines));
        let usage = |paths: &[PathBuf], keys: &Path| match check(paths, keys) {
            Err(CollectError::Usage(m)) => m,
            other => panic!("not a usage error: {other:?}"),
        };
        let missing = tmp.path().join("nowhere");
        assert!(usage(std::slice::from_ref(&dir), &missing).starts_with("--keys "));
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).expect("dir");
        assert!(usage(std::slice::from_ref(&dir), &empty).contains("no key files"));
        let bad = tmp.path().join("bad");
        std::fs::create_dir_all(&bad).expect("dir");
        std::fs::write(bad.join("gpu-07.pub"), "not hex\n").expect("write");
        assert!(usage(std::slice::from_ref(&dir), &bad).contains("not a hex Ed25519 public key"));
        let k = keys(tmp.path(), &[("gpu-07", &t.pubkey)]);
        assert!(
            usage(std::slice::from_ref(&missing), &k).starts_with(&missing.display().to_string())
        );
    }
}
