//! Redacting newline-delimited JSON streams (`application/x-ndjson`, `application/jsonl`,
//! Ollama's default), line by line, without buffering the stream.
//!
//! Each line is one JSON event for [`Events`]: every string inspected, Ollama's streamed fields
//! (`message.content`, `message.thinking`, `response`, `thinking`) held back across lines. A
//! line that is not JSON is redacted whole as text. If a line cannot be redacted the stream ends
//! with an error line (`{"error":…}`, as Ollama reports errors mid-stream).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::events::{guarded, Event, EventError, Events, Framed};
use super::json::Paths;
use super::rewrite::{redact_json, RewriteError};
use super::{Profile, Redactor, State};

/// The line that ends a stream that could not be redacted.
pub const ERROR_LINE: &[u8] = b"{\"error\":\"the response could not be redacted\"}\n";

/// Room for one line beyond the hold-back bound.
const LINE_SLACK: usize = 64 * 1024;

/// Redacts a whole NDJSON body (a request) line by line, each line rewritten in place as
/// [`redact_json`] does; blank lines are kept. `Ok(None)`: nothing to change.
pub fn redact_lines(
    r: &Redactor,
    body: &[u8],
    st: &mut State,
    paths: &Paths,
) -> Result<Option<Vec<u8>>, RewriteError> {
    let mut out = Vec::new();
    let mut changed = false;
    let mut offset = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let json = line.strip_suffix(b"\n").unwrap_or(line);
        let redacted = if json.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            redact_json(r, json, st, paths).map_err(|e| match e {
                RewriteError::Invalid(why, at) => RewriteError::Invalid(why, offset + at),
                blocked => blocked,
            })?
        };
        match redacted {
            Some(new) => {
                changed = true;
                out.extend_from_slice(&new);
                out.extend_from_slice(&line[json.len()..]);
            }
            None => out.extend_from_slice(line),
        }
        offset += line.len();
    }
    Ok(changed.then_some(out))
}

/// Redaction state of one NDJSON body.
#[derive(Debug)]
pub struct NdjsonRedactor {
    events: Events,
    partial: Vec<u8>,
    /// Why the stream was ended, if it was.
    pub failure: Option<String>,
}

impl NdjsonRedactor {
    /// A redactor for one body under `profile`.
    pub fn new(profile: Arc<Profile>) -> Self {
        Self {
            events: Events::new(profile),
            partial: Vec::new(),
            failure: None,
        }
    }

    /// Redacts one line (without its end) into `out`, followed by `end`.
    fn line(&mut self, raw: &[u8], end: &[u8], out: &mut Vec<u8>) -> Result<(), EventError> {
        let line = std::str::from_utf8(raw).map_err(|_| EventError::NotUtf8("line"))?;
        if line.trim().is_empty() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(end);
            return Ok(());
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                let mut ev = Event {
                    name: None,
                    data: v,
                };
                for before in self.events.event(&mut ev)? {
                    out.extend_from_slice(before.data.to_string().as_bytes());
                    out.push(b'\n');
                }
                out.extend_from_slice(ev.data.to_string().as_bytes());
            }
            Err(_) => {
                let (profile, state) = self.events.parts();
                let text = profile.redactor.redact(line, state)?;
                out.extend_from_slice(text.as_bytes());
            }
        }
        out.extend_from_slice(end);
        Ok(())
    }

    fn lines_out(&mut self, out: &mut Vec<u8>) -> Result<(), EventError> {
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.partial[start..]) {
            let i = start + i;
            let raw = self.partial[start..i].to_vec();
            let (raw, end): (&[u8], &[u8]) = match raw.strip_suffix(b"\r") {
                Some(r) => (r, b"\r\n"),
                None => (&raw, b"\n"),
            };
            self.line(raw, end, out)?;
            start = i + 1;
        }
        self.partial.drain(..start);
        if self.partial.len() > self.events.max_hold_back() + LINE_SLACK {
            return Err(EventError::TooLarge("line"));
        }
        Ok(())
    }
}

impl Framed for NdjsonRedactor {
    const ERROR: &'static [u8] = ERROR_LINE;

    fn failure_slot(&mut self) -> &mut Option<String> {
        &mut self.failure
    }

    fn reset(&mut self) {
        self.partial.clear();
    }
}

impl super::stream::StreamRedactor for NdjsonRedactor {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        guarded(self, |r, out| {
            r.partial.extend_from_slice(data);
            r.lines_out(out)
        })
    }

    /// A last line without its newline is redacted as any other; then every open stream is
    /// released as synthesized lines.
    fn finish(&mut self) -> Vec<u8> {
        guarded(self, |r, out| {
            let last = std::mem::take(&mut r.partial);
            if !last.is_empty() {
                r.line(&last, b"", out)?;
            }
            let released = r.events.finish()?;
            if !last.is_empty() && !released.is_empty() {
                // The last line came without its end; releases go on lines of their own.
                out.push(b'\n');
            }
            for ev in released {
                out.extend_from_slice(ev.data.to_string().as_bytes());
                out.push(b'\n');
            }
            Ok(())
        })
    }

    fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.events.state.counts
    }

    fn error_marker(&self) -> &'static [u8] {
        ERROR_LINE
    }
}
