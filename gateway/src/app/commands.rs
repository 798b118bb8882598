//! The offline subcommands: `moat check`, `moat cert`, `moat audit` and `moat guard`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{invalid, EX_USAGE};
use crate::config::Config;

/// `moat check`: validates a configuration file, loads its certificates and keys, and prints a
/// summary and the warnings.
pub fn check(config: &Path) -> ExitCode {
    match Config::load(config) {
        // The certificates and keys are loaded too, so a bad PEM fails here, not at start.
        Ok(c) => match crate::tls::server_config(&c.tls) {
            Ok(_) => {
                print!("configuration OK: {}\n{}", config.display(), c.summary());
                for w in &c.warnings {
                    println!("warning: {w}");
                }
                if c.guard.mode != crate::guard::GuardMode::Off && crate::guard::OBJECT.is_none() {
                    let consequence = if c.guard.required {
                        "`moat run` will refuse to start"
                    } else {
                        "egress will NOT be fenced"
                    };
                    println!("warning: this moat binary was built without the egress guard; {consequence}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Err(e) => invalid(&e),
    }
}

/// `moat cert init`: writes a local CA, a server certificate for `hosts` and a client
/// certificate into `dir`.
pub fn cert_init(dir: &Path, hosts: &[String]) -> ExitCode {
    match crate::certs::init(dir, hosts) {
        Ok(files) => {
            println!("wrote {}", files.ca_cert.display());
            println!(
                "wrote {} (key {})",
                files.server_cert.display(),
                files.server_key.display()
            );
            println!(
                "wrote {} (key {})",
                files.client_cert.display(),
                files.client_key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat cert init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moat audit verify`: checks every hash link, sequence number, checkpoint signature and the
/// signed head of the trail in one audit directory; with `keys`, what a syslog collector holds
/// of each host's trail in `paths` (see [`crate::audit::collected`]).
pub fn audit_verify(
    paths: &[PathBuf],
    pubkey: Option<&Path>,
    keys: Option<&Path>,
    json: bool,
) -> ExitCode {
    let usage = |what: &str| {
        eprintln!("moat audit verify: {what}");
        ExitCode::from(EX_USAGE)
    };
    if let Some(keys) = keys {
        if pubkey.is_some() {
            return usage("--pubkey checks one audit directory; with --keys, each host's key is HOST.pub in the --keys directory");
        }
        return audit_verify_collected(paths, keys, json);
    }
    if json {
        return usage("--json needs --keys (it reports on collector files)");
    }
    match paths {
        [dir] => audit_verify_trail(dir, pubkey),
        _ => usage("one audit directory at a time; several paths are collector files, which need --keys DIR"),
    }
}

/// `moat audit verify --keys DIR [--json] PATH…`: the table (or JSON document) and one line
/// per problem; exit status 1 unless every host is OK and none is silent.
fn audit_verify_collected(paths: &[PathBuf], keys: &Path, json: bool) -> ExitCode {
    use crate::audit::collected::{check, CollectError};
    match check(paths, keys) {
        Ok(c) => {
            if json {
                match serde_json::to_string_pretty(&c) {
                    Ok(doc) => println!("{doc}"),
                    Err(e) => {
                        eprintln!("moat audit verify: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", c.text());
            }
            if c.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(CollectError::Usage(what)) => {
            eprintln!("moat audit verify: {what}");
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            eprintln!("moat audit verify: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moat audit verify DIR [--pubkey FILE]`: one trail, as moat wrote it.
fn audit_verify_trail(dir: &Path, pubkey: Option<&Path>) -> ExitCode {
    if pubkey.is_none() {
        eprintln!("note: checking against the public key stored in {}; pass --pubkey for an independent check", dir.display());
    }
    match crate::audit::verify::verify(dir, pubkey) {
        Ok(r) => {
            println!(
                "audit trail OK: {} record(s) in {} segment(s), seq 1..{}, {} signed checkpoint(s), {} record(s) after the last checkpoint",
                r.records, r.segments, r.last_seq, r.checkpoints, r.unsigned_tail
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit trail NOT intact: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moat audit tail`: prints the last `lines` records, then follows new ones as they are written.
pub fn audit_tail(dir: &Path, lines: usize) -> ExitCode {
    use std::io::Write;
    let stdout = std::io::stdout();
    let emit = |line: &[u8]| {
        let mut out = stdout.lock();
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    match crate::audit::tail::follow(dir, lines, emit, || false) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat audit tail: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moat audit export`: writes a signed bundle of records for a SIEM.
pub fn audit_export(
    dir: PathBuf,
    since: Option<String>,
    until: Option<String>,
    format: &str,
    out: PathBuf,
    key: PathBuf,
    pubkey: Option<PathBuf>,
) -> ExitCode {
    use crate::audit::export::{export, ExportRequest, Format};
    let parse = |flag: &str, v: Option<String>| -> Result<Option<time::OffsetDateTime>, ExitCode> {
        match v {
            None => Ok(None),
            Some(s) => time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).map(Some).map_err(|_| {
                eprintln!("moat audit export: --{flag} {s}: expected an RFC 3339 time such as 2026-11-30T00:00:00Z");
                ExitCode::from(EX_USAGE)
            }),
        }
    };
    let (since, until) = match (parse("since", since), parse("until", until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let format = match format {
        "jsonl" => Format::Jsonl,
        "ocsf" => Format::Ocsf,
        other => {
            eprintln!("moat audit export: --format {other}: expected jsonl or ocsf");
            return ExitCode::from(EX_USAGE);
        }
    };
    match export(&ExportRequest {
        dir,
        since,
        until,
        format,
        out: out.clone(),
        key,
        pubkey,
    }) {
        Ok(m) => {
            println!(
                "exported {} record(s) (seq {}..{}) to {}",
                m.records,
                m.first_seq,
                m.last_seq,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat audit export: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The arguments of `moat audit report`, as given.
#[derive(Debug, Clone, Default)]
pub struct ReportArgs {
    /// Trails, bundles, collector files and directories.
    pub paths: Vec<PathBuf>,
    /// `--keys DIR`.
    pub keys: Option<PathBuf>,
    /// `--since` (RFC 3339).
    pub since: Option<String>,
    /// `--until` (RFC 3339).
    pub until: Option<String>,
    /// `--host`, repeated.
    pub hosts: Vec<String>,
    /// `--host-name`, repeated.
    pub host_names: Vec<String>,
    /// `--out FILE`.
    pub out: PathBuf,
}

/// `moat audit report`: writes one self-contained HTML report of trails, bundles or collector
/// files (see [`crate::audit::report`]). Exit status 0 once it is written (a BROKEN chain is
/// in the report, and named on stderr), 64 for a bad argument, 1 when a file cannot be read or
/// the report cannot be written.
pub fn audit_report(args: ReportArgs) -> ExitCode {
    use crate::audit::report::{build, render, Filters, ReportError, ReportRequest};
    let usage = |what: &str| {
        eprintln!("moat audit report: {what}");
        ExitCode::from(EX_USAGE)
    };
    let rfc = time::format_description::well_known::Rfc3339;
    let mut window = [None, None];
    for (slot, (flag, value)) in window
        .iter_mut()
        .zip([("since", &args.since), ("until", &args.until)])
    {
        if let Some(v) = value {
            match time::OffsetDateTime::parse(v, &rfc) {
                Ok(t) => *slot = Some(t),
                Err(_) => {
                    return usage(&format!(
                        "--{flag} {v}: expected an RFC 3339 time such as 2026-11-30T00:00:00Z"
                    ))
                }
            }
        }
    }
    if args.out.is_dir() {
        return usage(&format!("--out {}: is a directory", args.out.display()));
    }
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return usage(&format!(
            "--out {}: {} is not a directory",
            args.out.display(),
            parent.display()
        ));
    }
    if let Some(bad) = args.hosts.iter().find(|h| h.is_empty()) {
        return usage(&format!("--host {bad:?}: a host name cannot be empty"));
    }
    let [since, until] = window;
    let req = ReportRequest {
        paths: args.paths,
        keys: args.keys,
        host_names: args.host_names,
        filters: Filters {
            since,
            until,
            hosts: args.hosts,
        },
    };
    let report = match build(&req) {
        Ok(r) => r,
        Err(ReportError::Usage(what)) => return usage(&what),
        Err(e) => {
            eprintln!("moat audit report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&args.out, render(&report)) {
        eprintln!("moat audit report: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let broken: Vec<&str> = report
        .chain
        .iter()
        .filter(|r| r.status != crate::audit::collected::Status::Ok)
        .map(|r| r.host.as_str())
        .collect();
    println!(
        "wrote {}: {} record(s) from {} host(s); chain status: {} OK, {} BROKEN",
        args.out.display(),
        report.summary.records,
        report.summary.hosts.len(),
        report.chain.len() - broken.len(),
        broken.len()
    );
    if !broken.is_empty() {
        eprintln!(
            "moat audit report: chain BROKEN for {} (see the report's chain status)",
            broken.join(", ")
        );
    }
    for h in &report.unmatched_hosts {
        eprintln!("moat audit report: --host {h}: no source holds anything of this host");
    }
    ExitCode::SUCCESS
}

/// The guard's pin directory: `--pin-dir`, else `guard.pin_dir` of `--config`, else the default.
fn pin_dir(pin_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    match (pin_dir, config) {
        (Some(p), _) => Ok(p),
        (None, Some(c)) => Config::load(&c)
            .map(|c| c.guard.pin_dir)
            .map_err(|e| invalid(&e)),
        (None, None) => Ok(PathBuf::from(crate::guard::DEFAULT_PIN_DIR)),
    }
}

/// `moat guard status`: mode, fenced cgroups, allow-list, counters and drops, read from the pins.
pub fn guard_status(pin_dir_arg: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let dir = match pin_dir(pin_dir_arg, config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match crate::guard::status::status(&dir) {
        Ok(st) => {
            print!("egress guard pinned at {}\n{st}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat guard status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moat guard detach`: takes the fence down, detaching every program and removing every pin.
pub fn guard_detach(pin_dir_arg: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let dir = match pin_dir(pin_dir_arg, config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    eprintln!(
        "!!! moat guard detach: taking the egress fence at {} DOWN.",
        dir.display()
    );
    eprintln!("!!! Processes in the fenced cgroups can reach any destination until moat attaches it again.");
    match crate::guard::status::detach(&dir) {
        Ok(d) => {
            eprintln!(
                "!!! egress guard detached: {} program link(s) and {} map pin(s) removed",
                d.links, d.maps
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat guard detach: {e}");
            ExitCode::FAILURE
        }
    }
}
