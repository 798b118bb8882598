//! Redacting server-sent event streams of model output, event by event, without buffering the
//! stream.
//!
//! Text deltas are redacted through a per-choice [`HoldBack`]: OpenAI chat completion chunks
//! (`choices[i].delta.content`), OpenAI Responses (`response.output_text.delta`) and Anthropic
//! messages (`content_block_delta` with `text_delta`). Each event is re-serialized with the text
//! that is safe now; held text is flushed into the choice's last event (`finish_reason`), or into
//! a delta event synthesized before `content_block_stop`, `response.output_text.done` or
//! `[DONE]`. Any other JSON event has all its strings redacted whole. If an event cannot be
//! redacted (not JSON, hold-back bound exceeded, a `block` operator) the stream ends with an
//! error event: unmasked text is never passed on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::stream::HoldBack;
use super::{Profile, State};

/// The event that ends a stream that could not be redacted.
pub const ERROR_EVENT: &[u8] =
    b"event: error\ndata: {\"error\":{\"type\":\"redaction_failed\",\"message\":\"the response could not be redacted\"}}\n\n";

/// Redaction state of one SSE response.
#[derive(Debug)]
pub struct SseRedactor {
    profile: Arc<Profile>,
    /// Counts of what was redacted (for the audit record).
    pub state: State,
    partial: Vec<u8>,
    holds: BTreeMap<String, HoldBack>,
    /// The last OpenAI chunk seen, as a template for a synthesized flush.
    last_chunk: Option<Value>,
    /// Why the stream was ended, if it was.
    pub failure: Option<String>,
}

impl SseRedactor {
    /// A redactor for one response under `profile`.
    pub fn new(profile: Arc<Profile>) -> Self {
        Self {
            profile,
            state: State::default(),
            partial: Vec::new(),
            holds: BTreeMap::new(),
            last_chunk: None,
            failure: None,
        }
    }

    /// Takes raw body bytes; returns the bytes to send now. After a failure the error event has
    /// been returned and everything else is swallowed.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some((end, sep)) = event_end(&self.partial) {
            let event: Vec<u8> = self.partial.drain(..end + sep).collect();
            match self.event(&event[..end]) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(why) => {
                    self.failure = Some(why);
                    out.extend_from_slice(ERROR_EVENT);
                    self.partial.clear();
                    return out;
                }
            }
        }
        if self.partial.len() > self.profile.max_hold_back + 64 * 1024 {
            self.failure = Some("event larger than the hold-back bound".into());
            self.partial.clear();
            out.extend_from_slice(ERROR_EVENT);
        }
        out
    }

    /// End of the body: whatever is still held is flushed (an incomplete last event is dropped
    /// rather than passed unredacted).
    pub fn finish(&mut self) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        match self.flush_all() {
            Ok(bytes) => bytes,
            Err(why) => {
                self.failure = Some(why);
                ERROR_EVENT.to_vec()
            }
        }
    }

    fn event(&mut self, raw: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "event is not UTF-8".to_owned())?;
        let mut data = String::new();
        let mut others = Vec::new();
        let mut has_data = false;
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(d) = line.strip_prefix("data:") {
                if has_data {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
                has_data = true;
            } else {
                others.push(line);
            }
        }
        if !has_data {
            return Ok(with_sep(raw));
        }
        if data.trim() == "[DONE]" {
            let mut out = self.flush_all()?;
            out.extend_from_slice(&with_sep(raw));
            return Ok(out);
        }
        let mut v: Value =
            serde_json::from_str(&data).map_err(|_| "event data is not JSON".to_owned())?;
        let mut prefix = Vec::new();
        self.rewrite(&mut v, &mut prefix)?;
        let mut out = prefix;
        for o in others.iter().filter(|l| !l.is_empty()) {
            out.extend_from_slice(o.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(v.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
        Ok(out)
    }

    fn push_text(&mut self, key: String, text: &str) -> Result<String, String> {
        let max = self.profile.max_hold_back;
        let hold = self.holds.entry(key).or_default();
        hold.push(text, &self.profile.redactor, &mut self.state, max)
            .map_err(|e| e.to_string())
    }

    fn flush(&mut self, key: &str) -> Result<String, String> {
        match self.holds.get_mut(key) {
            Some(h) => h
                .finish(&self.profile.redactor, &mut self.state)
                .map_err(|e| e.to_string()),
            None => Ok(String::new()),
        }
    }

    /// Rewrites one event's JSON in place; `prefix` receives events to send before it.
    fn rewrite(&mut self, v: &mut Value, prefix: &mut Vec<u8>) -> Result<(), String> {
        // OpenAI chat completion chunk.
        if let Some(choices) = v.get("choices").and_then(Value::as_array).cloned() {
            if choices.iter().any(|c| c.get("delta").is_some()) {
                self.last_chunk = Some(v.clone());
                let mut new_choices = Vec::new();
                for mut c in choices {
                    let key = format!("choice:{}", c["index"].as_u64().unwrap_or(0));
                    let mut text = match c["delta"]["content"].as_str() {
                        Some(t) => self.push_text(key.clone(), t)?,
                        None => String::new(),
                    };
                    if !c["finish_reason"].is_null() {
                        text.push_str(&self.flush(&key)?);
                    }
                    if c["delta"]["content"].is_string() || !text.is_empty() {
                        c["delta"]["content"] = Value::String(text);
                    }
                    new_choices.push(c);
                }
                v["choices"] = Value::Array(new_choices);
                return Ok(());
            }
        }
        match v.get("type").and_then(Value::as_str) {
            // Anthropic messages.
            Some("content_block_delta") if v["delta"]["type"] == "text_delta" => {
                let key = format!("block:{}", v["index"].as_u64().unwrap_or(0));
                let t = v["delta"]["text"].as_str().unwrap_or("").to_owned();
                v["delta"]["text"] = Value::String(self.push_text(key, &t)?);
                Ok(())
            }
            Some("content_block_stop") => {
                let idx = v["index"].as_u64().unwrap_or(0);
                let held = self.flush(&format!("block:{idx}"))?;
                if !held.is_empty() {
                    let e = json!({"type": "content_block_delta", "index": idx, "delta": {"type": "text_delta", "text": held}});
                    prefix.extend_from_slice(
                        format!("event: content_block_delta\ndata: {e}\n\n").as_bytes(),
                    );
                }
                Ok(())
            }
            // OpenAI Responses.
            Some("response.output_text.delta") => {
                let key = format!(
                    "output:{}:{}",
                    v["output_index"].as_u64().unwrap_or(0),
                    v["content_index"].as_u64().unwrap_or(0)
                );
                let t = v["delta"].as_str().unwrap_or("").to_owned();
                v["delta"] = Value::String(self.push_text(key, &t)?);
                Ok(())
            }
            Some("response.output_text.done") => {
                let (o, c) = (
                    v["output_index"].as_u64().unwrap_or(0),
                    v["content_index"].as_u64().unwrap_or(0),
                );
                let held = self.flush(&format!("output:{o}:{c}"))?;
                if !held.is_empty() {
                    let e = json!({"type": "response.output_text.delta", "output_index": o, "content_index": c, "delta": held});
                    prefix.extend_from_slice(
                        format!("event: response.output_text.delta\ndata: {e}\n\n").as_bytes(),
                    );
                }
                super::json::redact_with_paths(
                    &self.profile.redactor,
                    v,
                    &mut self.state,
                    &self.profile.paths,
                )
                .map_err(|e| e.to_string())
            }
            // Anything else: every string redacted whole.
            _ => super::json::redact_with_paths(
                &self.profile.redactor,
                v,
                &mut self.state,
                &self.profile.paths,
            )
            .map_err(|e| e.to_string()),
        }
    }

    /// Flushes every hold-back as synthesized events (OpenAI chunks need a template).
    fn flush_all(&mut self) -> Result<Vec<u8>, String> {
        let keys: Vec<String> = self.holds.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let held = self.flush(&key)?;
            if held.is_empty() {
                continue;
            }
            let event = if let Some(i) = key.strip_prefix("choice:") {
                let mut chunk = self
                    .last_chunk
                    .clone()
                    .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
                chunk["choices"] = json!([{"index": i.parse::<u64>().unwrap_or(0), "delta": {"content": held}, "finish_reason": null}]);
                format!("data: {chunk}\n\n")
            } else if let Some(i) = key.strip_prefix("block:") {
                let e = json!({"type": "content_block_delta", "index": i.parse::<u64>().unwrap_or(0), "delta": {"type": "text_delta", "text": held}});
                format!("event: content_block_delta\ndata: {e}\n\n")
            } else {
                let e = json!({"type": "response.output_text.delta", "delta": held});
                format!("event: response.output_text.delta\ndata: {e}\n\n")
            };
            out.extend_from_slice(event.as_bytes());
        }
        Ok(out)
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
        &self.state.counts
    }
}

/// The end of the first complete event in `buf`: (index of the separator, its length).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn with_sep(raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    v.extend_from_slice(b"\n\n");
    v
}
