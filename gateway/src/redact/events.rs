//! Redacting streams of JSON events (server-sent events, NDJSON lines): every string of every
//! event is inspected; strings that continue across events go through a hold-back.
//!
//! Walking every string is what makes inspection complete: a field moat has never heard of is
//! redacted whole like any other. What needs knowing is only which strings *continue* in the next
//! event, since a value split across two events must be matched as one:
//!
//! - any string under a `delta` member (OpenAI chat `choices[i].delta.{content, reasoning,
//!   reasoning_content, refusal, tool_calls[j].function.arguments, …}`, Anthropic
//!   `content_block_delta.delta.{text, partial_json, thinking, …}`, OpenAI Responses
//!   `response.*.delta` events' `delta`), except identifiers and enumerations ([`WHOLE`]);
//! - Ollama's streamed fields (an event with a boolean `done`): `message.content`,
//!   `message.thinking`, `response`, `thinking`.
//!
//! Each continuing string is keyed by its stream position: the event type's stem
//! (`response.function_call_arguments`), the event's position fields (`index`, `output_index`,
//! `content_index`, `summary_index`, `item_id`) and its path, with array elements named by their
//! own `index` member where they have one (`choices[0].delta.tool_calls[1].function.arguments`).
//! What a hold-back keeps is released when its stream closes: inline when the closing event
//! carries the same field, otherwise as an event synthesized from the last one that fed it,
//! placed before the closing event. A stream closes on a choice's `finish_reason`, Anthropic's
//! `content_block_stop`, a Responses `*.done` event of the same stem, Ollama's `done: true`, or
//! the end of the whole stream.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::json::{Paths, Step, REDACTED};
use super::stream::{HoldBack, StreamError};
use super::{Blocked, Profile, Redactor, State};

/// Strings under `delta` that are identifiers or enumerations, not streamed text: redacted whole.
pub const WHOLE: &[&str] = &[
    "call_id",
    "finish_reason",
    "id",
    "item_id",
    "name",
    "object",
    "role",
    "status",
    "stop_reason",
    "stop_sequence",
    "type",
];

/// Top-level members that place an event in a stream.
const POSITION: &[&str] = &[
    "index",
    "output_index",
    "content_index",
    "summary_index",
    "item_id",
];

/// Most streams (keys) one response may have open at once.
pub const MAX_STREAMS: usize = 1024;

/// Why a stream of events cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A hold-back failed (bound exceeded, or a `block` operator matched).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// More concurrent streams than [`MAX_STREAMS`].
    #[error("more than {MAX_STREAMS} streamed fields open at once")]
    TooManyStreams,
    /// A line or event of the framing is not UTF-8 (what names it: `event`, `line`).
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A line or event of the framing outgrew the hold-back bound before it ended.
    #[error("{0} larger than the hold-back bound")]
    TooLarge(&'static str),
}

impl From<Blocked> for EventError {
    fn from(b: Blocked) -> Self {
        Self::Stream(StreamError::Blocked(b))
    }
}

/// One event to send: its frame name (the SSE `event:` field, if any) and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// SSE event name; `None` in NDJSON.
    pub name: Option<String>,
    /// The event's data.
    pub data: Value,
}

/// A framing of JSON events on a byte stream (SSE, NDJSON); the first failure ends the stream
/// for good with the framing's error marker.
pub(crate) trait Framed {
    /// The bytes that end a stream that could not be redacted.
    const ERROR: &'static [u8];
    /// Where the failure is kept.
    fn failure_slot(&mut self) -> &mut Option<String>;
    /// Forgets what was buffered, after a failure.
    fn reset(&mut self);
}

/// Runs `work` on `r` unless its stream already failed (then nothing is sent); a failure of
/// `work` is recorded and the stream ends with the error marker after what `work` produced.
pub(crate) fn guarded<R: Framed>(
    r: &mut R,
    work: impl FnOnce(&mut R, &mut Vec<u8>) -> Result<(), EventError>,
) -> Vec<u8> {
    if r.failure_slot().is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Err(why) = work(r, &mut out) {
        *r.failure_slot() = Some(why.to_string());
        r.reset();
        out.extend_from_slice(R::ERROR);
    }
    out
}

/// One open streamed field.
#[derive(Debug)]
struct Open {
    hold: HoldBack,
    /// The last event that fed it (after redaction), to synthesize a release from.
    template: Arc<Event>,
    /// Where the field sits in `template`.
    path: Vec<Step>,
}

/// The redaction state of one stream of JSON events.
#[derive(Debug)]
pub struct Events {
    profile: Arc<Profile>,
    /// Counts of what was redacted (for the audit record).
    pub state: State,
    open: BTreeMap<String, Open>,
    /// Short strings already found to hold nothing (ids, model names, enumerations repeat in
    /// every event of a stream); bounded by [`CLEAN_CACHE`].
    clean: HashSet<String>,
}

/// Most strings remembered as clean per stream, and the longest.
const CLEAN_CACHE: (usize, usize) = (256, 128);

/// Which open streams an event closes.
#[derive(Debug, Default)]
struct Closing {
    /// Every stream.
    all: bool,
    /// Streams whose key starts with one of these.
    prefixes: Vec<String>,
}

impl Closing {
    fn closes(&self, key: &str) -> bool {
        self.all || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// Walk state for one event.
struct Walk<'a> {
    /// Field path with real array positions (for `never`/`always` paths).
    steps: Vec<Step>,
    /// Stream identity of the current position.
    key: String,
    /// Under a `delta` member.
    in_delta: bool,
    /// An Ollama event (boolean `done`).
    ollama: bool,
    closing: &'a Closing,
    /// Streams this event fed, with their paths.
    fed: Vec<(String, Vec<Step>)>,
}

impl Events {
    /// The state for one response (or request) under `profile`.
    pub fn new(profile: Arc<Profile>) -> Self {
        Self {
            profile,
            state: State::default(),
            open: BTreeMap::new(),
            clean: HashSet::new(),
        }
    }

    /// The profile and the counts, borrowed apart (for text redacted beside the events).
    pub(crate) fn parts(&mut self) -> (&Profile, &mut State) {
        (&self.profile, &mut self.state)
    }

    /// The profile's hold-back bound.
    pub fn max_hold_back(&self) -> usize {
        self.profile.max_hold_back
    }

    /// Redacts one event in place. Returns the events to send before it (releases of streams it
    /// closes without carrying their field).
    pub fn event(&mut self, ev: &mut Event) -> Result<Vec<Event>, EventError> {
        let base = stream_base(&ev.data);
        let closing = closing(&ev.data, &base);
        let mut walk = Walk {
            steps: Vec::new(),
            key: base,
            in_delta: false,
            ollama: matches!(&ev.data, Value::Object(m) if m.get("done").is_some_and(Value::is_boolean)),
            closing: &closing,
            fed: Vec::new(),
        };
        let mut redacting = Redacting {
            redactor: &self.profile.redactor,
            paths: &self.profile.paths,
            state: &mut self.state,
            streams: Some((&mut self.open, self.profile.max_hold_back)),
            clean: Some(&mut self.clean),
        };
        if redacting.value(&mut ev.data, &mut walk, false)? {
            // A top-level string whose operator is `drop`.
            ev.data = Value::String(String::new());
        }
        // The event is kept as the template of the fields it left something held in (one copy
        // for all of them); a field held empty needs no release.
        let mut template: Option<Arc<Event>> = None;
        for (key, path) in &walk.fed {
            if let Some(open) = self.open.get_mut(key) {
                if open.hold.held() > 0 {
                    open.template = template.get_or_insert_with(|| Arc::new(ev.clone())).clone();
                    open.path.clone_from(path);
                }
            }
        }
        let mut before = Vec::new();
        let closed: Vec<String> = self
            .open
            .keys()
            .filter(|k| closing.closes(k))
            .cloned()
            .collect();
        for key in closed {
            if let Some(mut open) = self.open.remove(&key) {
                let held = open.hold.finish(&self.profile.redactor, &mut self.state)?;
                if !held.is_empty() {
                    before.push(release(&open.template, &open.path, held));
                }
            }
        }
        Ok(before)
    }

    /// End of the stream: every open field is released as a synthesized event.
    pub fn finish(&mut self) -> Result<Vec<Event>, EventError> {
        let mut out = Vec::new();
        for (_, mut open) in std::mem::take(&mut self.open) {
            let held = open.hold.finish(&self.profile.redactor, &mut self.state)?;
            if !held.is_empty() {
                out.push(release(&open.template, &open.path, held));
            }
        }
        Ok(out)
    }
}

/// What a walk redacts with, borrowed apart from [`Events`] (or from a caller redacting one
/// document, with no streams).
struct Redacting<'a> {
    redactor: &'a Redactor,
    paths: &'a Paths,
    state: &'a mut State,
    /// Open streamed fields and the hold-back bound; `None` redacts every string whole.
    streams: Option<(&'a mut BTreeMap<String, Open>, usize)>,
    /// Strings known to hold nothing, when the caller keeps them.
    clean: Option<&'a mut HashSet<String>>,
}

impl Redacting<'_> {
    /// Redacts `v`. `member`: `v` is an object member's value; returns true when it is a string
    /// holding a value whose operator is `drop`, and the member must go.
    fn value(&mut self, v: &mut Value, w: &mut Walk<'_>, member: bool) -> Result<bool, EventError> {
        if self.paths.never.iter().any(|p| p.matches(&w.steps)) {
            return Ok(false);
        }
        if self.paths.always.iter().any(|p| p.matches(&w.steps)) {
            if !v.is_null() {
                *v = Value::String(REDACTED.into());
                *self.state.counts.entry("FIELD").or_default() += 1;
            }
            return Ok(false);
        }
        match v {
            Value::String(s) => {
                if self.streams.is_some() && continues(w) {
                    let key = w.key.clone();
                    *s = self.stream(&key, s, w.closing.closes(&key))?;
                    w.fed.push((key, w.steps.clone()));
                    return Ok(false);
                }
                let name = match w.steps.last() {
                    Some(Step::Key(k)) if member => Some(k.as_str()),
                    _ => None,
                };
                // A string known clean is clean under any name but a secret's.
                let secret = name.is_some_and(|n| super::detect::secret_member(n, s));
                if !secret && self.clean.as_ref().is_some_and(|c| c.contains(s.as_str())) {
                    return Ok(false);
                }
                let (out, dropped, _) = self.redactor.redact_member(name, s, self.state)?;
                if dropped && member {
                    return Ok(true);
                }
                match out {
                    std::borrow::Cow::Owned(out) => *s = out,
                    std::borrow::Cow::Borrowed(_) => {
                        if let Some(c) = self.clean.as_mut() {
                            if c.len() < CLEAN_CACHE.0 && s.len() <= CLEAN_CACHE.1 {
                                c.insert(s.clone());
                            }
                        }
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let id = match item {
                        Value::Object(m) => m.get("index").and_then(Value::as_u64),
                        _ => None,
                    };
                    let saved = w.key.len();
                    // Writing to a String cannot fail.
                    let _ = match id {
                        Some(n) => write!(w.key, "[i{n}]"),
                        None => write!(w.key, "[{i}]"),
                    };
                    w.steps.push(Step::Index(i));
                    let res = self.value(item, w, false);
                    w.steps.pop();
                    w.key.truncate(saved);
                    res?;
                }
            }
            Value::Object(map) => {
                let mut dropped = Vec::new();
                for (k, item) in map.iter_mut() {
                    let saved = (w.key.len(), w.in_delta);
                    w.key.push('.');
                    w.key.push_str(k);
                    w.in_delta |= k == "delta";
                    w.steps.push(Step::Key(k.clone()));
                    let res = self.value(item, w, true);
                    w.steps.pop();
                    w.key.truncate(saved.0);
                    w.in_delta = saved.1;
                    if res? {
                        dropped.push(k.clone());
                    }
                }
                for k in dropped {
                    map.remove(&k);
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// Feeds `text` to the stream `key`; returns what may be sent now (everything, when the
    /// event closes the stream).
    fn stream(&mut self, key: &str, text: &str, closes: bool) -> Result<String, EventError> {
        let Some((open, max)) = self.streams.as_mut() else {
            return Ok(self.redactor.redact(text, self.state)?);
        };
        if !open.contains_key(key) && open.len() >= MAX_STREAMS {
            return Err(EventError::TooManyStreams);
        }
        let open = open.entry(key.to_owned()).or_insert_with(|| Open {
            hold: HoldBack::default(),
            template: Arc::new(Event {
                name: None,
                data: Value::Null,
            }),
            path: Vec::new(),
        });
        let mut out = open.hold.push(text, self.redactor, self.state, *max)?;
        if closes {
            out.push_str(&open.hold.finish(self.redactor, self.state)?);
        }
        Ok(out)
    }
}

/// Redacts every string of the document `v` whole, under field-path rules (nothing streams).
pub fn redact_document(
    r: &Redactor,
    v: &mut Value,
    state: &mut State,
    paths: &Paths,
) -> Result<(), Blocked> {
    let closing = Closing::default();
    let mut walk = Walk {
        steps: Vec::new(),
        key: String::new(),
        in_delta: false,
        ollama: false,
        closing: &closing,
        fed: Vec::new(),
    };
    let mut redacting = Redacting {
        redactor: r,
        paths,
        state,
        streams: None,
        clean: None,
    };
    match redacting.value(v, &mut walk, false) {
        Ok(true) => *v = Value::String(String::new()),
        Ok(false) => {}
        Err(EventError::Stream(StreamError::Blocked(b))) => return Err(b),
        // Without streams no hold-back exists to fail.
        Err(_) => {}
    }
    Ok(())
}

/// Whether the string at the walk's position continues in later events.
fn continues(w: &Walk<'_>) -> bool {
    let last = match w.steps.last() {
        Some(Step::Key(k)) => k.as_str(),
        _ => "",
    };
    if w.ollama {
        let at: Vec<&str> = w
            .steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => k.as_str(),
                _ => "",
            })
            .collect();
        return matches!(
            at.as_slice(),
            ["message", "content" | "thinking"] | ["response"] | ["thinking"]
        );
    }
    w.in_delta && !WHOLE.contains(&last)
}

/// The stream identity shared by every field of an event: its type's stem and position fields.
fn stream_base(v: &Value) -> String {
    let Value::Object(m) = v else {
        return String::new();
    };
    let mut base = String::new();
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        base.push_str(stem(t));
    }
    for p in POSITION {
        match m.get(*p) {
            Some(Value::Number(n)) => base.push_str(&format!("|{p}={n}")),
            Some(Value::String(s)) => base.push_str(&format!("|{p}={s}")),
            _ => {}
        }
    }
    base.push('|');
    base
}

/// `response.output_text.delta` and `response.output_text.done` share `response.output_text`.
fn stem(t: &str) -> &str {
    t.strip_suffix(".delta")
        .or_else(|| t.strip_suffix(".done"))
        .unwrap_or(t)
}

/// Which streams `v` closes, `base` being its own stream base.
fn closing(v: &Value, base: &str) -> Closing {
    let mut c = Closing::default();
    let Value::Object(m) = v else {
        return c;
    };
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    if m.get("done") == Some(&Value::Bool(true))
        || matches!(
            ty,
            "message_stop"
                | "response.completed"
                | "response.done"
                | "response.failed"
                | "response.incomplete"
                | "error"
        )
    {
        c.all = true;
    }
    if ty.ends_with(".done") {
        c.prefixes.push(base.to_owned());
    }
    if ty == "content_block_stop" {
        // Every field of the block, whatever type its deltas had.
        if let Some(i) = m.get("index").and_then(Value::as_u64) {
            c.prefixes.push(format!("content_block_delta|index={i}|"));
        }
    }
    if let Some(Value::Array(choices)) = m.get("choices") {
        for (pos, choice) in choices.iter().enumerate() {
            let Value::Object(ch) = choice else { continue };
            if ch.get("finish_reason").is_some_and(|f| !f.is_null()) {
                let id = match ch.get("index").and_then(Value::as_u64) {
                    Some(n) => format!("[i{n}]"),
                    None => format!("[{pos}]"),
                };
                c.prefixes.push(format!("{base}.choices{id}."));
            }
        }
    }
    c
}

/// An event carrying only `held` at `path`, made from `template`: every other streamed string is
/// removed, and arrays on the path keep only the element the path goes through.
fn release(template: &Event, path: &[Step], held: String) -> Event {
    let mut data = template.data.clone();
    strip(&mut data, false);
    set(&mut data, path, held);
    Event {
        name: template.name.clone(),
        data,
    }
}

/// Removes every continuing string from `v` (`in_delta`: `v` is under a `delta` member).
fn strip(v: &mut Value, in_delta: bool) {
    match v {
        Value::Object(m) => {
            if !in_delta && m.get("done").is_some_and(Value::is_boolean) {
                for k in ["response", "thinking"] {
                    if m.get(k).is_some_and(Value::is_string) {
                        m.remove(k);
                    }
                }
                if let Some(Value::Object(msg)) = m.get_mut("message") {
                    msg.remove("content");
                    msg.remove("thinking");
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let d = in_delta || k == "delta";
                let remove =
                    d && !WHOLE.contains(&k.as_str()) && m.get(&k).is_some_and(Value::is_string);
                if remove {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    strip(child, d);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                strip(item, in_delta);
            }
        }
        _ => {}
    }
}

/// Puts `held` at `path` in `v`, keeping only the path's element in arrays along it. Shapes
/// that do not fit are left as they are (the template had the path when it was recorded).
fn set(v: &mut Value, path: &[Step], held: String) {
    let Some((first, rest)) = path.split_first() else {
        *v = Value::String(held);
        return;
    };
    match (first, v) {
        (Step::Key(k), Value::Object(m)) => {
            let child = m.entry(k.clone()).or_insert(Value::Null);
            if rest.is_empty() {
                *child = Value::String(held);
            } else {
                if child.is_null() {
                    *child = Value::Object(Map::new());
                }
                set(child, rest, held);
            }
        }
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            let mut item = items.swap_remove(*i);
            items.clear();
            set(&mut item, rest, held);
            items.push(item);
        }
        _ => {}
    }
}
