//! The `moat` binary: arguments → configuration → logging → runtime → exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat::app::{self, commands};

/// mimalloc: many small, short-lived buffers per request (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version,
    about = "Keeps a self-hosted model's data inside its region"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print a summary.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Certificate helpers.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Check and export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inspect or remove the egress guard (works from the pins, with or without a running moat).
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
    /// Redact samples (files or stdin) with a redaction profile, exactly as the gateway redacts
    /// a request body; or, with --explain, list what matched.
    Redact {
        /// Configuration file to take the profile from (default: the built-in profile
        /// `default`: every built-in entity, replaced by `<ENTITY>`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The profile (`[redaction.profiles.NAME]`); needed when the file defines several.
        #[arg(long, short)]
        profile: Option<String>,
        /// Print one JSON line per match (offsets in characters, entity, detector,
        /// validation) instead of the redacted body; never the matched value.
        #[arg(long)]
        explain: bool,
        /// Read the input as a JSON body (default: JSON when it is a JSON object or array).
        #[arg(long, conflicts_with = "text")]
        json: bool,
        /// Read the input as plain text.
        #[arg(long)]
        text: bool,
        /// Input files, each redacted on its own (`-` or none: stdin).
        files: Vec<PathBuf>,
    },
    /// Start a demo model and the gateway in front of it, and print commands to try.
    Demo {
        /// Gateway port on 127.0.0.1 (a free one is chosen if it is taken).
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every hash link, sequence number, checkpoint signature and the signed head; with
    /// --keys, check what a syslog collector holds of each host's trail.
    Verify {
        /// The audit directory; with --keys, the collector's files and directories (every
        /// regular file in a directory, not recursive).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The public key to check signatures against (default: the copy in the audit
        /// directory, which only shows the trail is self-consistent).
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Check collector files instead of an audit directory: DIR holds each host's public
        /// key as HOST.pub.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// With --keys: print a JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Write a signed bundle of records for a SIEM: records, manifest.json, manifest.sig.
    Export {
        /// The audit directory.
        dir: PathBuf,
        /// Records at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// `jsonl` (moat's records as they are) or `ocsf` (OCSF 1.1 events).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output directory (created; must be empty).
        #[arg(long)]
        out: PathBuf,
        /// The trail's signing key (signs the manifest).
        #[arg(long, default_value = "/var/lib/moat/audit-signing.key")]
        key: PathBuf,
        /// Public key to verify the trail against first (default: the copy in DIR).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Write one self-contained HTML report (tables, and charts as inline SVG) of audit trails,
    /// JSONL export bundles or collector files, for an auditor to open offline.
    Report {
        /// Audit directories (segment-*.jsonl), export bundles (manifest.json), or collector
        /// files and directories (these need --keys).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Each host's public key as HOST.pub: needed for collector files; with it, a trail's or
        /// bundle's signatures are checked against its host's HOST.pub (without it, a trail's
        /// against its own key copy, a bundle's not at all).
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// Count records at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Count records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Report on this host only (repeatable; default: every host).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// The host name of a trail or bundle PATH (repeatable: one per trail or bundle, in
        /// order; default: the directory's name).
        #[arg(long = "host-name", value_name = "NAME")]
        host_names: Vec<String>,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the last records, then follow new ones as they are written.
    Tail {
        /// The audit directory.
        dir: PathBuf,
        /// How many existing records to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// Mode, fenced cgroups, allow-list, counters and drops, read from the pins.
    Status {
        /// Pin directory (default: guard.pin_dir of --config, else /sys/fs/bpf/moat).
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Take the pin directory from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Take the fence down: detach every program and remove every pin.
    Detach {
        /// Pin directory (default: guard.pin_dir of --config, else /sys/fs/bpf/moat).
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Take the pin directory from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Write a local CA, a server certificate and a client certificate.
    Init {
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// Names the server certificate is valid for (DNS names or IP addresses).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => commands::check(&config),
        Command::Run { config } => app::run(config),
        Command::Cert {
            command: CertCommand::Init { dir, hosts },
        } => commands::cert_init(&dir, &hosts),
        Command::Guard {
            command: GuardCommand::Status { pin_dir, config },
        } => commands::guard_status(pin_dir, config),
        Command::Guard {
            command: GuardCommand::Detach { pin_dir, config },
        } => commands::guard_detach(pin_dir, config),
        Command::Audit {
            command:
                AuditCommand::Export {
                    dir,
                    since,
                    until,
                    format,
                    out,
                    key,
                    pubkey,
                },
        } => commands::audit_export(dir, since, until, &format, out, key, pubkey),
        Command::Audit {
            command: AuditCommand::Tail { dir, lines },
        } => commands::audit_tail(&dir, lines),
        Command::Audit {
            command:
                AuditCommand::Report {
                    paths,
                    keys,
                    since,
                    until,
                    hosts,
                    host_names,
                    out,
                },
        } => commands::audit_report(commands::ReportArgs {
            paths,
            keys,
            since,
            until,
            hosts,
            host_names,
            out,
        }),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    paths,
                    pubkey,
                    keys,
                    json,
                },
        } => commands::audit_verify(&paths, pubkey.as_deref(), keys.as_deref(), json),
        Command::Redact {
            config,
            profile,
            explain,
            json,
            text,
            files,
        } => app::redact::redact(&app::redact::Options {
            config,
            profile,
            explain,
            kind: match (json, text) {
                (true, _) => app::redact::InputKind::Json,
                (_, true) => app::redact::InputKind::Text,
                _ => app::redact::InputKind::Auto,
            },
            files,
        }),
        Command::Demo { port } => app::demo::run(port),
    }
}
