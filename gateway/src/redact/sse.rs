//! Redacting server-sent event streams of model output, event by event, without buffering the
//! stream.
//!
//! The stream is parsed as the SSE specification reads it: lines end in CRLF, LF or CR, an
//! empty line dispatches an event, a leading BOM is ignored, `data` lines are joined with `\n`.
//! Every line kind is handled, so no byte passes unread:
//!
//! - `data`: JSON goes through [`Events`] (every string inspected, streamed fields held back by
//!   stream position); `[DONE]` first releases every open field; other text is one stream per
//!   event name, through a hold-back;
//! - comments (`: …`): kept as empty comments (keep-alives still flow), their text dropped;
//! - `event` and `id` values: redacted whole as text;
//! - `retry`: kept when it is digits, as the specification requires, else dropped; fields the
//!   specification does not define are dropped (clients ignore them).
//!
//! Events are written back with LF line endings. If an event cannot be redacted (not UTF-8, the
//! hold-back bound exceeded, a `block` operator) the stream ends with an error event: unmasked
//! text is never passed on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::events::{guarded, Event, EventError, Events, Framed};
use super::stream::HoldBack;
use super::Profile;

/// The event that ends a stream that could not be redacted.
pub const ERROR_EVENT: &[u8] =
    b"event: error\ndata: {\"error\":{\"type\":\"redaction_failed\",\"message\":\"the response could not be redacted\"}}\n\n";

/// Room for one event's lines beyond the hold-back bound.
const EVENT_SLACK: usize = 64 * 1024;

/// Redaction state of one SSE response.
#[derive(Debug)]
pub struct SseRedactor {
    events: Events,
    /// Bytes not yet ending a line.
    partial: Vec<u8>,
    /// Lines of the event being read.
    lines: Vec<String>,
    lines_len: usize,
    /// Nothing read yet (a BOM may come).
    at_start: bool,
    /// Plain-text `data` streams, by event name.
    text: BTreeMap<String, HoldBack>,
    /// Why the stream was ended, if it was.
    pub failure: Option<String>,
}

/// One parsed event.
#[derive(Debug, Default)]
struct Fields {
    comments: usize,
    name: Option<String>,
    id: Option<String>,
    retry: Option<String>,
    data: Option<String>,
}

impl SseRedactor {
    /// A redactor for one response under `profile`.
    pub fn new(profile: Arc<Profile>) -> Self {
        Self {
            events: Events::new(profile),
            partial: Vec::new(),
            lines: Vec::new(),
            lines_len: 0,
            at_start: true,
            text: BTreeMap::new(),
            failure: None,
        }
    }

    /// Takes raw body bytes; returns the bytes to send now. After a failure the error event has
    /// been returned and everything else is swallowed.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        guarded(self, |r, out| {
            r.partial.extend_from_slice(data);
            r.lines_out(out)
        })
    }

    /// End of the body: whatever is still held is released (an incomplete last event is
    /// dropped, as a client would drop it).
    pub fn finish(&mut self) -> Vec<u8> {
        guarded(self, Self::release_all)
    }

    /// Splits complete lines off `partial`, dispatching each event an empty line ends.
    fn lines_out(&mut self, out: &mut Vec<u8>) -> Result<(), EventError> {
        let mut start = 0;
        while let Some(i) = memchr::memchr2(b'\r', b'\n', &self.partial[start..]) {
            let i = start + i;
            let eol = if self.partial[i] == b'\r' {
                match self.partial.get(i + 1) {
                    // A CR at the end of what came so far may be the first half of a CRLF.
                    None => break,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line = std::str::from_utf8(&self.partial[start..i])
                .map_err(|_| EventError::NotUtf8("event"))?;
            let line = if self.at_start {
                self.at_start = false;
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            if line.is_empty() {
                let lines = std::mem::take(&mut self.lines);
                self.lines_len = 0;
                self.dispatch(&lines, out)?;
            } else {
                self.lines_len += line.len();
                self.lines.push(line.to_owned());
            }
            start = i + eol;
        }
        self.partial.drain(..start);
        if self.partial.len() + self.lines_len > self.events.max_hold_back() + EVENT_SLACK {
            return Err(EventError::TooLarge("event"));
        }
        Ok(())
    }

    /// Redacts and writes one event.
    fn dispatch(&mut self, lines: &[String], out: &mut Vec<u8>) -> Result<(), EventError> {
        let f = parse(lines);
        // Comments keep their place (a comment-only event is a keep-alive) but not their text:
        // clients ignore it, and a value split across comments could not be held back.
        let head = b":\n".repeat(f.comments);
        let name = f.name.as_deref().map(|n| self.whole(n)).transpose()?;
        let id = f.id.as_deref().map(|n| self.whole(n)).transpose()?;
        let mut fields = Vec::new();
        if let Some(n) = &name {
            field(&mut fields, "event", n);
        }
        if let Some(i) = &id {
            field(&mut fields, "id", i);
        }
        if let Some(r) = &f.retry {
            field(&mut fields, "retry", r);
        }
        let Some(data) = f.data else {
            out.extend_from_slice(&head);
            out.extend_from_slice(&fields);
            if !head.is_empty() || !fields.is_empty() {
                out.push(b'\n');
            }
            return Ok(());
        };
        if data.trim() == "[DONE]" {
            self.release_all(out)?;
            out.extend_from_slice(&head);
            out.extend_from_slice(&fields);
            field(out, "data", &data);
            out.push(b'\n');
            return Ok(());
        }
        let body = match serde_json::from_str::<Value>(&data) {
            Ok(v) => {
                let mut ev = Event { name, data: v };
                for before in self.events.event(&mut ev)? {
                    write_event(out, &before);
                }
                ev.data.to_string()
            }
            Err(_) => self.text_stream(name.unwrap_or_default(), &data)?,
        };
        out.extend_from_slice(&head);
        out.extend_from_slice(&fields);
        field(out, "data", &body);
        out.push(b'\n');
        Ok(())
    }

    /// Text redacted whole.
    fn whole(&mut self, text: &str) -> Result<String, EventError> {
        let (profile, state) = self.events.parts();
        Ok(profile.redactor.redact(text, state)?)
    }

    /// Plain-text data, one stream per event name.
    fn text_stream(&mut self, name: String, data: &str) -> Result<String, EventError> {
        if !self.text.contains_key(&name) && self.text.len() >= super::events::MAX_STREAMS {
            return Err(EventError::TooManyStreams);
        }
        let hold = self.text.entry(name).or_default();
        let (profile, state) = self.events.parts();
        Ok(hold.push(data, &profile.redactor, state, profile.max_hold_back)?)
    }

    /// Releases every open stream as synthesized events.
    fn release_all(&mut self, out: &mut Vec<u8>) -> Result<(), EventError> {
        for ev in self.events.finish()? {
            write_event(out, &ev);
        }
        for (name, mut hold) in std::mem::take(&mut self.text) {
            let (profile, state) = self.events.parts();
            let held = hold.finish(&profile.redactor, state)?;
            if !held.is_empty() {
                if !name.is_empty() {
                    field(out, "event", &name);
                }
                field(out, "data", &held);
                out.push(b'\n');
            }
        }
        Ok(())
    }
}

impl Framed for SseRedactor {
    const ERROR: &'static [u8] = ERROR_EVENT;

    fn failure_slot(&mut self) -> &mut Option<String> {
        &mut self.failure
    }

    fn reset(&mut self) {
        self.partial.clear();
        self.lines.clear();
    }
}

impl super::stream::StreamRedactor for SseRedactor {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        Self::push(self, data)
    }

    fn finish(&mut self) -> Vec<u8> {
        Self::finish(self)
    }

    fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.events.state.counts
    }

    fn error_marker(&self) -> &'static [u8] {
        ERROR_EVENT
    }
}

/// The fields of one event's lines, as the specification interprets them.
fn parse(lines: &[String]) -> Fields {
    let mut f = Fields::default();
    for line in lines {
        if line.starts_with(':') {
            f.comments += 1;
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match name {
            "data" => match &mut f.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => f.data = Some(value.to_owned()),
            },
            "event" => f.name = Some(value.to_owned()),
            // An id holding NUL is ignored by clients.
            "id" if !value.contains('\0') => f.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                f.retry = Some(value.to_owned());
            }
            _ => {}
        }
    }
    f
}

/// Writes `name: value`, one line per line of `value` (so `data` with newlines round-trips).
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    for line in value.split('\n') {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

/// Writes a synthesized event.
fn write_event(out: &mut Vec<u8>, ev: &Event) {
    if let Some(n) = &ev.name {
        field(out, "event", n);
    }
    field(out, "data", &ev.data.to_string());
    out.push(b'\n');
}
