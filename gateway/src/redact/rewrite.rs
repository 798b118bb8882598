//! JSON bodies redacted in place, without building a tree.
//!
//! One pass validates the document (RFC 8259: strings, escapes, numbers, literals, nesting up
//! to [`MAX_DEPTH`]) and runs the detectors on every string value as it is met: a string
//! without escapes is scanned where it lies in the body; one with escapes is decoded first, so
//! `\u0040` cannot hide an address. Changes are recorded as edits of byte ranges and applied at
//! the end; a body without a match is returned untouched (no copy). Everything that is not
//! changed keeps its exact bytes: member order, spacing, number spelling, duplicate keys.
//!
//! Field paths (`always`, `never`) and the `drop` operator (which removes the whole member) act
//! as in [`super::json`], which works on parsed values for the streaming cases.

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use super::detect::Found;
use super::json::{Paths, Step, REDACTED};
use super::{Blocked, Redactor, State};

/// Deepest nesting accepted (as serde_json's default).
pub const MAX_DEPTH: usize = 128;

/// Why a JSON body could not be redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// A `block` operator matched.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    /// The body is not valid JSON (what is wrong, and the byte offset).
    #[error("invalid JSON at byte {1}: {0}")]
    Invalid(&'static str, usize),
}

/// Redacts every string value of the JSON document `body`. `Ok(None)`: nothing to change.
pub fn redact_json(
    r: &Redactor,
    body: &[u8],
    st: &mut State,
    paths: &Paths,
) -> Result<Option<Vec<u8>>, RewriteError> {
    let mut edits = Scan::run(r, body, st, paths, None)?;
    if edits.is_empty() {
        return Ok(None);
    }
    // A removal of dropped members is recorded after the edits of the member that ends it.
    edits.sort_by_key(|e| e.start);
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    for e in &edits {
        if e.start < pos {
            // Overlapping removals only: the earlier one already covers this start.
            pos = pos.max(e.end);
            continue;
        }
        out.extend_from_slice(&body[pos..e.start]);
        out.extend_from_slice(&e.with);
        pos = e.end;
    }
    out.extend_from_slice(&body[pos..]);
    Ok(Some(out))
}

/// A string value of a JSON document, or a field an `always` path names, with what
/// [`redact_json`] replaces in it: `moat redact --explain` reports these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Where it is in the document.
    pub path: Vec<Step>,
    /// The decoded string; `None` for an `always` field that is not a string.
    pub text: Option<String>,
    /// A whole field redacted by an `always` path.
    pub field: bool,
    /// The matches, in byte ranges of `text`, in order, overlaps resolved as replaced.
    pub found: Vec<Found>,
}

/// What [`redact_json`] sees and replaces in `body`, string by string in document order
/// (strings with nothing found are left out): the same walk, the same paths, the same
/// decoding.
pub fn inspect_json(
    r: &Redactor,
    body: &[u8],
    paths: &Paths,
) -> Result<Vec<Inspected>, RewriteError> {
    let mut seen = Vec::new();
    Scan::run(r, body, &mut State::default(), paths, Some(&mut seen))?;
    Ok(seen)
}

/// Replace `start..end` of the body with `with`.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Detectors run on strings.
    Redact,
    /// Validated only (a `never` path, or inside an `always` path).
    Inert,
}

struct Scan<'a, 's> {
    b: &'a [u8],
    i: usize,
    edits: Vec<Edit>,
    r: &'a Redactor,
    st: &'s mut State,
    paths: &'a Paths,
    /// The current field path; kept only when the profile has path rules or strings are
    /// inspected.
    path: Vec<Step>,
    /// Strings and fields seen, when inspecting.
    seen: Option<&'s mut Vec<Inspected>>,
}

/// What a value turned out to be, as its member needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Anything kept.
    Kept,
    /// A string holding a value whose operator is `drop`: the member goes.
    Drop,
}

impl<'a, 's> Scan<'a, 's> {
    /// Walks `body`, returning the edits that redact it.
    fn run(
        r: &'a Redactor,
        body: &'a [u8],
        st: &'s mut State,
        paths: &'a Paths,
        seen: Option<&'s mut Vec<Inspected>>,
    ) -> Result<Vec<Edit>, RewriteError> {
        let mut scan = Scan {
            b: body,
            i: 0,
            edits: Vec::new(),
            r,
            st,
            paths,
            path: Vec::new(),
            seen,
        };
        scan.ws();
        scan.value(Mode::Redact, 0, None)?;
        scan.ws();
        if scan.i != body.len() {
            return Err(scan.invalid("trailing characters"));
        }
        Ok(scan.edits)
    }

    fn invalid(&self, why: &'static str) -> RewriteError {
        RewriteError::Invalid(why, self.i)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8, why: &'static str) -> Result<(), RewriteError> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.invalid(why))
        }
    }

    fn has_paths(&self) -> bool {
        !self.paths.always.is_empty() || !self.paths.never.is_empty()
    }

    fn tracks_paths(&self) -> bool {
        self.has_paths() || self.seen.is_some()
    }

    /// One value at `self.i`. `member`: the name of the object member it is the value of (a
    /// member may be dropped; a secret's name makes its string a credential).
    fn value(
        &mut self,
        mode: Mode,
        depth: usize,
        member: Option<&str>,
    ) -> Result<Seen, RewriteError> {
        let mut mode = mode;
        if mode == Mode::Redact && self.has_paths() {
            if self.paths.never.iter().any(|p| p.matches(&self.path)) {
                mode = Mode::Inert;
            } else if self.paths.always.iter().any(|p| p.matches(&self.path)) {
                let start = self.i;
                self.value(Mode::Inert, depth, None)?;
                if &self.b[start..self.i] != b"null" {
                    if let Some(seen) = self.seen.as_deref_mut() {
                        let text = serde_json::from_slice::<String>(&self.b[start..self.i]).ok();
                        seen.push(Inspected {
                            path: self.path.clone(),
                            found: Vec::new(),
                            text,
                            field: true,
                        });
                    }
                    self.edits.push(Edit {
                        start,
                        end: self.i,
                        with: format!("\"{REDACTED}\"").into_bytes(),
                    });
                    *self.st.counts.entry("FIELD").or_default() += 1;
                }
                return Ok(Seen::Kept);
            }
        }
        match self.b.get(self.i) {
            Some(b'{') => self.object(mode, depth + 1).map(|()| Seen::Kept),
            Some(b'[') => self.array(mode, depth + 1).map(|()| Seen::Kept),
            Some(b'"') => self.string_value(mode, member),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| Seen::Kept),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.invalid("unexpected character")),
            None => Err(self.invalid("unexpected end")),
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<Seen, RewriteError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(Seen::Kept)
        } else {
            Err(self.invalid("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<(), RewriteError> {
        let digits = |s: &mut Self| {
            let from = s.i;
            while s.b.get(s.i).is_some_and(u8::is_ascii_digit) {
                s.i += 1;
            }
            s.i > from
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.invalid("invalid number")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.invalid("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.invalid("invalid number"));
            }
        }
        Ok(())
    }

    /// A string at `self.i` (on its opening quote): its text, decoded when it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, RewriteError> {
        let b: &'a [u8] = self.b;
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.i..];
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                self.i = self.b.len();
                return Err(self.invalid("unterminated string"));
            };
            if rest[..at].iter().fold(false, |a, &c| a | (c < 0x20)) {
                self.i += rest[..at].iter().position(|&c| c < 0x20).unwrap_or(0);
                return Err(self.invalid("control character in string"));
            }
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                break;
            }
            // An escape: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` or `\uXXXX`.
            escaped = true;
            match self.b.get(self.i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                Some(b'u')
                    if self
                        .b
                        .get(self.i + 2..self.i + 6)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    self.i += 6;
                }
                _ => return Err(self.invalid("invalid escape")),
            }
        }
        let raw = &b[start..self.i];
        if escaped {
            // Surrogate pairs and the rest of the decoding: serde_json's.
            serde_json::from_slice::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| RewriteError::Invalid("invalid escape", start))
        } else {
            std::str::from_utf8(&raw[1..raw.len() - 1])
                .map(Cow::Borrowed)
                .map_err(|_| RewriteError::Invalid("string is not UTF-8", start))
        }
    }

    fn string_value(&mut self, mode: Mode, member: Option<&str>) -> Result<Seen, RewriteError> {
        let start = self.i;
        let text = self.string()?;
        if mode == Mode::Inert {
            return Ok(Seen::Kept);
        }
        let (out, dropped, found) = self.r.redact_member(member, &text, self.st)?;
        if let Some(seen) = self.seen.as_deref_mut() {
            if !found.is_empty() {
                seen.push(Inspected {
                    path: self.path.clone(),
                    text: Some(text.clone().into_owned()),
                    field: false,
                    found,
                });
            }
        }
        if dropped && member.is_some() {
            return Ok(Seen::Drop);
        }
        if let Cow::Owned(s) = out {
            let plain = |t: &str| {
                !t.bytes()
                    .fold(false, |a, c| a | (c == b'"') | (c == b'\\') | (c < 0x20))
            };
            let with = if matches!(text, Cow::Borrowed(_)) && plain(&s) {
                // Nothing to escape (the usual case: the body's own unescaped text around
                // replacement tokens): quoted as is.
                let mut w = Vec::with_capacity(s.len() + 2);
                w.push(b'"');
                w.extend_from_slice(s.as_bytes());
                w.push(b'"');
                w
            } else {
                serde_json::to_vec(&s).map_err(|_| RewriteError::Invalid("output", start))?
            };
            self.edits.push(Edit {
                start,
                end: self.i,
                with,
            });
        }
        Ok(Seen::Kept)
    }

    fn array(&mut self, mode: Mode, depth: usize) -> Result<(), RewriteError> {
        if depth > MAX_DEPTH {
            return Err(self.invalid("nested too deeply"));
        }
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        let paths = self.tracks_paths();
        let mut index = 0;
        loop {
            if paths {
                self.path.push(Step::Index(index));
            }
            let res = self.value(mode, depth, None);
            if paths {
                self.path.pop();
            }
            res?;
            index += 1;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.invalid("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, mode: Mode, depth: usize) -> Result<(), RewriteError> {
        if depth > MAX_DEPTH {
            return Err(self.invalid("nested too deeply"));
        }
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        let paths = self.tracks_paths();
        // Dropped members are removed with their commas: a run of dropped members followed by
        // a kept one goes up to that member's key; a run at the end goes from the end of the
        // last kept member (its comma included) or, with none kept, is the whole content.
        let mut last_kept_end: Option<usize> = None;
        let mut run: Option<(usize, usize)> = None;
        loop {
            let key_start = self.i;
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.invalid("expected a member name"));
            }
            let key = self.string()?;
            self.ws();
            self.eat(b':', "expected `:`")?;
            self.ws();
            if paths {
                self.path.push(Step::Key(key.clone().into_owned()));
            }
            let seen = self.value(mode, depth, Some(&key));
            if paths {
                self.path.pop();
            }
            let value_end = self.i;
            match seen? {
                Seen::Drop => {
                    run = Some(match run {
                        Some((s, _)) => (s, value_end),
                        None => (key_start, value_end),
                    });
                }
                Seen::Kept => {
                    if let Some((s, _)) = run.take() {
                        self.edits.push(Edit {
                            start: s,
                            end: key_start,
                            with: Vec::new(),
                        });
                    }
                    last_kept_end = Some(value_end);
                }
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    if let Some((s, e)) = run {
                        self.edits.push(Edit {
                            start: last_kept_end.unwrap_or(s),
                            end: e,
                            with: Vec::new(),
                        });
                    }
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.invalid("expected `,` or `}`")),
            }
        }
    }
}
