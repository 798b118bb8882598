//! Redacting streamed text without buffering the stream.
//!
//! Each push appends text to a hold-back buffer and releases, redacted, everything that can no
//! longer be part of a match: the buffer is cut before the longest suffix that could still grow
//! into a value (a run of characters values are made of, chained over single spaces between
//! digit or capital groups, as in `4111 1111 …` or `DE89 3704 …`), before any match that reaches
//! that suffix, before a URL whose authority is not finished (a password may hold any
//! punctuation), before an escape the stream cut short (`jane%4`, `jane&#6`) with the value it
//! may end, and before an unterminated PEM private key block. Prose is released word by
//! word; a card number split over many tokens waits until it is complete, and comes out masked.
//! A hold-back that grows past its bound fails closed.

use super::normalize::{fold, open_escape};
use super::{Blocked, Redactor, State};

/// Why a stream cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// More text than the bound could still be part of one value.
    #[error("hold-back exceeded {0} bytes")]
    HoldBackExceeded(usize),
    /// A `block` operator matched.
    #[error(transparent)]
    Blocked(#[from] Blocked),
}

/// The hold-back of one text stream (one choice of one response).
#[derive(Debug, Default, Clone)]
pub struct HoldBack {
    held: String,
    /// The end of the text already released (as released, so redacted), read again as context:
    /// `SSN: ` may be released before the number arrives.
    context: String,
}

/// Bytes of released text kept as context for what follows.
const CONTEXT: usize = 64;

/// Characters values are made of.
fn value_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"@._%+-:/=()".contains(&b)
}

/// Characters that make a group worth chaining over a space (digits, capitals, phone/card
/// punctuation).
fn group_char(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_uppercase() || b"()+-.".contains(&b)
}

/// A word a written date is made of: a month name, a number (`12`, `3rd`), a joiner
/// (`de`, `of`).
fn date_word(run: &[u8]) -> bool {
    run.len() <= 10
        && (run.iter().any(u8::is_ascii_digit)
            || matches!(run, b"de" | b"of" | b"the" | b"le")
            || std::str::from_utf8(run).is_ok_and(super::detect::is_month))
}

/// Start of the suffix of `text` that could still be (part of) a value.
pub fn open_suffix(text: &str) -> usize {
    let b = text.as_bytes();
    let mut i = b.len();
    // A trailing single space (or `, `) after a group may be followed by the next group.
    let sep_before = |i: usize| -> usize {
        match (
            i.checked_sub(1).map(|j| b[j]),
            i.checked_sub(2).map(|j| b[j]),
        ) {
            (Some(b' '), Some(b',')) => 2,
            (Some(b' ' | b','), _) => 1,
            _ => 0,
        }
    };
    // A trailing single space after a group, or a space or `, ` after a word of a date, may be
    // followed by the next group or word.
    let trailing = sep_before(i);
    if trailing > 0 && i > trailing {
        let end = i - trailing;
        let mut start = end;
        while start > 0 && value_char(b[start - 1]) {
            start -= 1;
        }
        let group = trailing == 1 && b[i - 1] == b' ' && group_char(b[end - 1]);
        if group || (start < end && date_word(&b[start..end])) {
            i = end;
        }
    }
    loop {
        let run_end = i;
        while i > 0 && value_char(b[i - 1]) {
            i -= 1;
        }
        let run = &b[i..run_end];
        let groupish = !run.is_empty() && run.iter().all(|&c| group_char(c));
        let sep = sep_before(i);
        if sep == 0 || i < sep + 1 {
            return i;
        }
        let before_end = i - sep;
        let mut before_start = before_end;
        while before_start > 0 && value_char(b[before_start - 1]) {
            before_start -= 1;
        }
        let before = &b[before_start..before_end];
        let groups = groupish
            && sep == 1
            && b[i - 1] == b' '
            && before.last().is_some_and(|&c| group_char(c));
        // The last word may still grow into a month name.
        let growing = run_end == b.len() && run.len() <= 10;
        let date = (date_word(run) || growing) && date_word(before) && !before.is_empty();
        if groups || date {
            i = before_end;
            continue;
        }
        return i;
    }
}

/// Characters that end the authority of a URL (its `user:password@host:port`), as the
/// `CREDENTIAL` detector reads it.
fn ends_authority(c: &u8) -> bool {
    c.is_ascii_whitespace() || b"/?#".contains(c)
}

/// Where a URL whose authority is not finished starts (`postgres://app:pa$`): its
/// `user:password` may hold characters that end a run of value characters, and is found only
/// with the `scheme://` before it.
fn open_authority(text: &str) -> Option<usize> {
    let p = memchr::memmem::rfind(text.as_bytes(), b"://")?;
    let open = !text.as_bytes()[p + 3..].iter().any(ends_authority);
    open.then(|| open_suffix(&text[..p]))
}

/// Where the quoted value of a password name starts when its closing quote has not arrived
/// (`"password": "correct horse` …): a quoted password may hold spaces.
fn open_quoted(text: &str) -> Option<usize> {
    let q = text.rfind(['"', '\''])?;
    if text.len() - q > super::detect::MAX_QUOTED {
        return None;
    }
    let before = text[..q].trim_end_matches([' ', '\t']);
    let before = before.strip_suffix([':', '='])?;
    let before = before.trim_end_matches([' ', '\t', '"', '\'']);
    let name_at = super::detect::after_last(before, |c| {
        !(c.is_ascii_alphanumeric() || "_.-".contains(c))
    });
    super::detect::is_password_name(&before[name_at..]).then_some(q)
}

/// Where an unterminated PEM, OpenSSH or PGP private key block starts, if one does: a block is
/// open until its `-----END …-----` line is complete.
fn open_pem(text: &str) -> Option<usize> {
    let start = text.rfind("-----BEGIN")?;
    let rest = &text[start..];
    // The first 60 bytes, which may end inside a character: compared as bytes.
    let head = &rest.as_bytes()[..rest.len().min(60)];
    let is_key_header = rest.len() < 60 || memchr::memmem::find(head, b"PRIVATE KEY").is_some();
    let closed = rest
        .find("-----END")
        .is_some_and(|e| rest[e + 8..].contains("-----"));
    (is_key_header && !closed).then_some(start)
}

impl HoldBack {
    /// Adds `text`; returns the redacted text that may be released now.
    pub fn push(
        &mut self,
        text: &str,
        r: &Redactor,
        state: &mut State,
        max: usize,
    ) -> Result<String, StreamError> {
        self.held.push_str(text);
        let out = self.release(r, state, false)?;
        if self.held.len() > max {
            return Err(StreamError::HoldBackExceeded(max));
        }
        Ok(out)
    }

    /// Ends the stream: everything held is redacted and released.
    pub fn finish(&mut self, r: &Redactor, state: &mut State) -> Result<String, StreamError> {
        Ok(self.release(r, state, true)?)
    }

    /// Redacts and releases what can no longer be part of a match (everything, at the end);
    /// detection reads the released context before the held text, and replaces only in the
    /// held text.
    fn release(&mut self, r: &Redactor, state: &mut State, all: bool) -> Result<String, Blocked> {
        let ctx = self.context.len();
        let joined = format!("{}{}", self.context, self.held);
        let folded = fold(&joined);
        // The folded position where the held text starts.
        let held_at = (0..=folded.text.len())
            .find(|&i| folded.text.is_char_boundary(i) && folded.original(i, i).0 >= ctx)
            .unwrap_or(folded.text.len());
        let mut found = r.detect(&joined, &folded);
        // What starts in the released context was released already.
        found.retain(|f| f.start >= held_at);
        let len = folded.text.len();
        let mut cut = len;
        if !all {
            // An escape the stream cut (`jane%4`, `jane&#6`, `jane\u00`) is held with the value
            // it may end; until it is complete, it may be anything (a URL's authority is still
            // open).
            let head = open_escape(&folded.text)
                .and_then(|e| folded.text.get(..e))
                .unwrap_or(&folded.text);
            cut = open_suffix(&folded.text).min(open_suffix(head));
            if let Some(p) = open_pem(&folded.text) {
                cut = cut.min(p);
            }
            if let Some(p) = open_authority(head) {
                cut = cut.min(p);
            }
            if let Some(q) = open_quoted(&folded.text) {
                cut = cut.min(q);
            }
            // A match the cut falls into, or that reaches the end (it may still grow), is held
            // whole, with the run of value characters just before it (a URL's `user:password`
            // is found only after its `scheme://`, which must stay with it to be found again).
            // Each step moves the cut before a match's start, so this ends.
            while let Some(f) = found
                .iter()
                .find(|f| f.start < cut && (f.end > cut || f.end == len))
            {
                cut = folded.text.get(..f.start).map_or(f.start, open_suffix);
            }
            cut = cut.max(held_at);
            // `cut` must fall on a character boundary of the folded text.
            while !folded.text.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        let out = r.apply(&joined, &folded, &found, cut, state)?;
        let (orig_cut, _) = folded.original(cut, cut);
        self.held
            .drain(..orig_cut.saturating_sub(ctx).min(self.held.len()));
        // The released text is `out` without the context it starts with.
        let released = out.get(ctx..).unwrap_or_default().to_owned();
        self.context.push_str(&released);
        if self.context.len() > CONTEXT {
            let mut from = self.context.len() - CONTEXT;
            while !self.context.is_char_boundary(from) {
                from += 1;
            }
            self.context.drain(..from);
        }
        Ok(released)
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// A streaming body redactor, as the proxy drives it: bytes in, redacted bytes out.
pub trait StreamRedactor: Send {
    /// Takes raw body bytes; returns the bytes to send now.
    fn push(&mut self, data: &[u8]) -> Vec<u8>;
    /// End of the body: returns what is still held, redacted.
    fn finish(&mut self) -> Vec<u8>;
    /// Why the stream was ended early, if it was.
    fn failure(&self) -> Option<&str>;
    /// Values redacted so far, by entity.
    fn counts(&self) -> &std::collections::BTreeMap<&'static str, u64>;
    /// What ends this framing's stream when it cannot be redacted.
    fn error_marker(&self) -> &'static [u8];
    /// Something the audit record should say although the stream went on (a profile that
    /// failed open). Default: nothing.
    fn note(&self) -> Option<&str> {
        None
    }
}

/// A stream passed as it comes under a profile that fails open, because it cannot be read (an
/// unknown or stacked content coding); the audit record says so.
#[derive(Debug)]
pub struct PassThrough {
    note: String,
    counts: std::collections::BTreeMap<&'static str, u64>,
}

impl PassThrough {
    /// A pass-through whose audit note is `note`.
    pub fn new(note: String) -> Self {
        Self {
            note,
            counts: std::collections::BTreeMap::new(),
        }
    }
}

impl StreamRedactor for PassThrough {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        data.to_vec()
    }

    fn finish(&mut self) -> Vec<u8> {
        Vec::new()
    }

    fn failure(&self) -> Option<&str> {
        None
    }

    fn counts(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.counts
    }

    fn error_marker(&self) -> &'static [u8] {
        b""
    }

    fn note(&self) -> Option<&str> {
        Some(&self.note)
    }
}

/// What ends a plain-text stream that could not be redacted.
pub const TEXT_ERROR: &[u8] =
    b"\n[moat: the rest of this response could not be redacted and was withheld]\n";

/// Redacts a streamed text body (other than server-sent events) through one hold-back, UTF-8
/// sequences split across reads included.
#[derive(Debug)]
pub struct TextStream {
    profile: std::sync::Arc<super::Profile>,
    hold: HoldBack,
    pending: Vec<u8>,
    state: State,
    failure: Option<String>,
}

impl TextStream {
    /// A redactor for one response under `profile`.
    pub fn new(profile: std::sync::Arc<super::Profile>) -> Self {
        Self {
            profile,
            hold: HoldBack::default(),
            pending: Vec::new(),
            state: State::default(),
            failure: None,
        }
    }

    fn fail(&mut self, why: String) -> Vec<u8> {
        self.failure = Some(why);
        TEXT_ERROR.to_vec()
    }
}

impl StreamRedactor for TextStream {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        self.pending.extend_from_slice(data);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            // A sequence cut at the end of this read completes with the next one.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => return self.fail("text is not UTF-8".into()),
        };
        let bytes: Vec<u8> = self.pending.drain(..valid).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let max = self.profile.max_hold_back;
        match self
            .hold
            .push(&text, &self.profile.redactor, &mut self.state, max)
        {
            Ok(out) => out.into_bytes(),
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        if !self.pending.is_empty() {
            return self.fail("text ends inside a UTF-8 sequence".into());
        }
        match self.hold.finish(&self.profile.redactor, &mut self.state) {
            Ok(out) => out.into_bytes(),
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn counts(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.state.counts
    }

    fn error_marker(&self) -> &'static [u8] {
        TEXT_ERROR
    }
}

/// A compressed body's stream redactor: decodes as it streams (bounded), then redacts through
/// `inner`. A body that cannot be decoded (corrupt, a bomb, an unknown coding) ends with the
/// inner framing's error marker; what `inner` still holds is dropped, never sent unredacted.
pub struct Decoded {
    decoder: Result<crate::coding::Decoder, crate::coding::CodingError>,
    inner: Box<dyn StreamRedactor>,
    failure: Option<String>,
}

impl Decoded {
    /// `coding`: the body's coding and its bounds, or why it cannot be decoded at all.
    pub fn new(
        coding: Result<(crate::coding::Coding, crate::coding::Limits), crate::coding::CodingError>,
        inner: Box<dyn StreamRedactor>,
    ) -> Self {
        Self {
            decoder: coding.and_then(|(c, limits)| crate::coding::Decoder::new(c, limits)),
            inner,
            failure: None,
        }
    }

    fn fail(&mut self, e: &crate::coding::CodingError) -> Vec<u8> {
        self.failure = Some(format!("response body: {e}"));
        self.inner.error_marker().to_vec()
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl StreamRedactor for Decoded {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        let decoded = match &mut self.decoder {
            Ok(d) => d.push(data),
            Err(e) => Err(e.clone()),
        };
        match decoded {
            Ok(plain) => self.inner.push(&plain),
            Err(e) => self.fail(&e),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        if self.failure.is_some() {
            return Vec::new();
        }
        let ended = match &mut self.decoder {
            Ok(d) => d.finish(),
            Err(e) => Err(e.clone()),
        };
        match ended {
            Ok(()) => self.inner.finish(),
            Err(e) => self.fail(&e),
        }
    }

    fn failure(&self) -> Option<&str> {
        self.failure.as_deref().or_else(|| self.inner.failure())
    }

    fn counts(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        self.inner.counts()
    }

    fn error_marker(&self) -> &'static [u8] {
        self.inner.error_marker()
    }
}

#[cfg(test)]
mod cut_text {
    /// Text cut inside a multi-byte character is read without slicing through it (both were
    /// found by the `sse_stream` fuzz target).
    #[test]
    fn open_values_are_found_in_text_with_multibyte_characters() {
        assert_eq!(super::open_quoted("passwordé: \"sec"), None);
        assert_eq!(super::open_quoted("é password: \"sec"), Some(13));
        let pem = format!("-----BEGIN {}", "é".repeat(30));
        assert_eq!(super::open_pem(&pem), None);
        let key = format!("-----BEGIN PRIVATE KEY-----\n{}", "é".repeat(30));
        assert_eq!(super::open_pem(&key), Some(0));
    }
}
