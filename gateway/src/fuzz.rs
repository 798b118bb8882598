//! Entry points for the fuzz targets in `fuzz/` (`cargo xtask fuzz`), one per parser that reads
//! what a peer or an operator sends: each takes arbitrary bytes and must return without
//! panicking, whatever they are. The seed corpora in `fuzz/corpus/<target>/` (and every input a
//! fuzzer once crashed on, added there) run through the same functions in `cargo test`
//! (`tests::the_seed_corpora_pass`), so a crash found once stays a regression test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::protocol::h1::{self, Decoder, Limits};
use crate::redact::ndjson::NdjsonRedactor;
use crate::redact::sse::SseRedactor;
use crate::redact::stream::StreamRedactor;
use crate::redact::{Profile, State};

/// A target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// The targets, by name (the file names in `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("h1_request", h1_request),
    ("proxy_header", proxy_header),
    ("json_rewrite", json_rewrite),
    ("sse_stream", sse_stream),
    ("ndjson_stream", ndjson_stream),
    ("config", config),
    ("audit_verify", audit_verify),
];

const LIMITS: Limits = Limits {
    max_request_line: 8 * 1024,
    max_head: 32 * 1024,
    max_headers: 100,
};

/// An HTTP/1.1 request: the head (up to its empty line) through the strict parser, then what
/// follows through the body decoder its framing selects.
pub fn h1_request(data: &[u8]) {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        let _ = h1::parse_request(&Bytes::copy_from_slice(data), &LIMITS, 1 << 20);
        return;
    };
    let head = Bytes::copy_from_slice(&data[..end + 4]);
    let Ok(req) = h1::parse_request(&head, &LIMITS, 1 << 20) else {
        return;
    };
    let mut decoder = Decoder::new(req.body, 1 << 20);
    let mut buf = BytesMut::from(&data[end + 4..]);
    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
}

/// A PROXY protocol v2 header.
pub fn proxy_header(data: &[u8]) {
    let _ = crate::proxy_protocol::parse(data);
}

/// The profile every redaction target uses: the built-in one (every entity, both directions).
fn profile() -> Option<Arc<Profile>> {
    static PROFILE: OnceLock<Option<Arc<Profile>>> = OnceLock::new();
    PROFILE
        .get_or_init(|| crate::config::builtin_profile().ok())
        .clone()
}

/// A JSON request body rewritten in place, value by value.
pub fn json_rewrite(data: &[u8]) {
    if let Some(p) = profile() {
        let _ =
            crate::redact::rewrite::redact_json(&p.redactor, data, &mut State::default(), &p.paths);
    }
}

/// A streamed body fed to `r` in pieces whose sizes the input's first byte chooses.
fn stream(mut r: Box<dyn StreamRedactor>, data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    for piece in rest.chunks(usize::from(size).max(1)) {
        let _ = r.push(piece);
    }
    let _ = r.finish();
}

/// A server-sent event stream redacted event by event.
pub fn sse_stream(data: &[u8]) {
    if let Some(p) = profile() {
        stream(Box::new(SseRedactor::new(p)), data);
    }
}

/// An NDJSON stream redacted line by line.
pub fn ndjson_stream(data: &[u8]) {
    if let Some(p) = profile() {
        stream(Box::new(NdjsonRedactor::new(p)), data);
    }
}

/// A configuration file (paths in it resolve against a directory that does not exist).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, Path::new("/nonexistent/moat-fuzz"));
    }
}

/// An audit trail segment checked by `moat audit verify` (against a fixed public key).
pub fn audit_verify(data: &[u8]) {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("moat-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public = crate::audit::hex(key.verifying_key().as_bytes());
        std::fs::write(dir.join(crate::audit::PUBKEY_FILE), format!("{public}\n")).ok()?;
        Some(dir)
    }) else {
        return;
    };
    let segment = dir.join(crate::audit::segment_name(1));
    if std::fs::write(&segment, data).is_ok() {
        let _ = crate::audit::verify::verify(dir, None);
    }
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every input in `fuzz/corpus/<target>/` passes through its target without a panic: the
    /// seeds, and each input a fuzzer ever crashed on.
    #[test]
    fn the_seed_corpora_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let inputs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            assert!(!inputs.is_empty(), "{name}: no seed inputs");
            for input in inputs {
                let data = std::fs::read(&input).expect("seed");
                target(&data);
            }
        }
    }
}
