//! Redaction stage: masks what may not leave the region, in requests and in responses.
//!
//! - [`detect`]: the detectors (regex candidates, validated by checksums and ranges);
//! - [`normalize`]: folding so zero-width characters, full-width forms and common encodings
//!   (`%40`, `&#64;`, `\u0040` written out) cannot hide a value;
//! - [`Redactor`]: applies a profile's operators (mask, replace, hash, drop, block) to text;
//! - [`stream`]: the hold-back that redacts streamed text (model output, token by token)
//!   without buffering the stream: only text that could still be the start of a match waits;
//! - [`events`]: streams of JSON events, every string inspected, streamed fields held back by
//!   stream position; framed as server-sent events by [`sse`] and as NDJSON by [`ndjson`].
//!
//! Values never leave this module except replaced; counts per entity type go to the audit
//! record.

pub mod detect;
pub mod events;
pub mod json;
pub mod ndjson;
pub mod normalize;
pub mod rewrite;
pub mod sse;
pub mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_encoded;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_national;
#[cfg(test)]
mod tests_regressions;
#[cfg(test)]
mod tests_secrets;

use std::collections::{BTreeMap, HashMap};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use detect::{Detectors, Entity};

/// What to do with a detected value.
#[derive(Clone, PartialEq, Eq)]
pub enum Operator {
    /// Replace every character with `*`, keeping the last `keep_suffix` characters.
    Mask {
        /// Characters left visible at the end.
        keep_suffix: usize,
    },
    /// Replace with `<ENTITY>`, or `<ENTITY_n>` numbered consistently within one request.
    Replace {
        /// Number distinct values.
        numbered: bool,
    },
    /// Replace with `<ENTITY:hash>`: HMAC-SHA256 under a key, hex, truncated; the same value
    /// always maps to the same token, and the token reveals nothing without the key.
    Hash {
        /// The HMAC key.
        key: Vec<u8>,
        /// Hex digits kept.
        len: usize,
    },
    /// Remove the value (in JSON, the whole field).
    Drop,
    /// Refuse the request (422) naming only the entity type.
    Block,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mask { keep_suffix } => write!(f, "Mask({keep_suffix})"),
            Self::Replace { numbered } => write!(f, "Replace(numbered: {numbered})"),
            // The key is secret.
            Self::Hash { len, .. } => write!(f, "Hash(len: {len}, key: <redacted>)"),
            Self::Drop => f.write_str("Drop"),
            Self::Block => f.write_str("Block"),
        }
    }
}

/// A named redaction profile, as policy rules reference it.
#[derive(Debug)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Detectors and operators.
    pub redactor: Redactor,
    /// Applies to request bodies.
    pub requests: bool,
    /// Applies to response bodies.
    pub responses: bool,
    /// `fail = "open"`: a body that cannot be redacted passes unredacted (audited); by default
    /// it is refused.
    pub fail_open: bool,
    /// Bound of a stream's hold-back.
    pub max_hold_back: usize,
    /// Refuse bodies that are neither JSON nor text (else they pass unscanned).
    pub block_other_content: bool,
    /// JSON field paths always redacted whole, or never touched.
    pub paths: json::Paths,
}

/// The request was refused by a `block` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("blocked: {} found", .0.name())]
pub struct Blocked(pub Entity);

/// Per-request state: consistent numbering, and counts for the audit record.
#[derive(Debug, Default, Clone)]
pub struct State {
    numbers: HashMap<(Entity, String), usize>,
    next: HashMap<Entity, usize>,
    /// Values redacted, by entity name.
    pub counts: BTreeMap<&'static str, u64>,
}

/// A profile's detectors and operators.
#[derive(Debug)]
pub struct Redactor {
    detectors: Detectors,
    operators: HashMap<Entity, Operator>,
    default: Operator,
}

impl Redactor {
    /// A redactor applying `operators` per entity and `default` to the others.
    pub fn new(
        detectors: Detectors,
        operators: HashMap<Entity, Operator>,
        default: Operator,
    ) -> Self {
        Self {
            detectors,
            operators,
            default,
        }
    }

    /// The detectors.
    pub fn detectors(&self) -> &Detectors {
        &self.detectors
    }

    /// The operator for an entity.
    pub fn operator(&self, e: Entity) -> &Operator {
        self.operators.get(&e).unwrap_or(&self.default)
    }

    /// What [`Self::redact`] would replace in `text`: the matches, in order, with byte ranges of
    /// `text` itself (folding and decoding undone), as `moat redact --explain` reports them.
    pub fn find(&self, text: &str) -> Vec<detect::Found> {
        let folded = normalize::fold(text);
        let mut found = self.detect(text, &folded);
        for f in &mut found {
            (f.start, f.end) = folded.original(f.start, f.end);
        }
        found
    }

    /// Redacts all of `text`.
    pub fn redact(&self, text: &str, state: &mut State) -> Result<String, Blocked> {
        Ok(self.redact_cow(text, state)?.0.into_owned())
    }

    /// Redacts all of `text`, borrowing it when nothing matched. The flag tells whether a
    /// match's operator is `drop` (a JSON member holding it is removed whole).
    pub fn redact_cow<'t>(
        &self,
        text: &'t str,
        state: &mut State,
    ) -> Result<(std::borrow::Cow<'t, str>, bool), Blocked> {
        let (out, dropped, _) = self.redact_found(text, state)?;
        Ok((out, dropped))
    }

    /// [`Self::redact_cow`], and the matches replaced (byte ranges of `text`).
    pub(crate) fn redact_found<'t>(
        &self,
        text: &'t str,
        state: &mut State,
    ) -> Result<(std::borrow::Cow<'t, str>, bool, Vec<detect::Found>), Blocked> {
        let folded = normalize::fold(text);
        let found = self.detect(text, &folded);
        if found.is_empty() {
            return Ok((std::borrow::Cow::Borrowed(text), false, found));
        }
        let dropped = found
            .iter()
            .any(|f| matches!(self.operator(f.entity), Operator::Drop));
        let out = self.apply(text, &folded, &found, folded.text.len(), state)?;
        let mut replaced = Vec::with_capacity(found.len());
        let mut pos = 0;
        for mut f in found {
            (f.start, f.end) = folded.original(f.start, f.end);
            // As `apply` skips a match that starts inside the previous one.
            if f.start >= pos {
                pos = f.end;
                replaced.push(f);
            }
        }
        Ok((std::borrow::Cow::Owned(out), dropped, replaced))
    }

    /// [`Self::redact_found`] for the string value of a JSON member named `name`: when
    /// nothing in the text matched but the name says the value is a secret
    /// (`"password": "hunter2"`, `"client_secret": "…"`), the whole string is a
    /// [`Entity::Credential`].
    pub(crate) fn redact_member<'t>(
        &self,
        name: Option<&str>,
        text: &'t str,
        state: &mut State,
    ) -> Result<(std::borrow::Cow<'t, str>, bool, Vec<detect::Found>), Blocked> {
        let found = self.redact_found(text, state)?;
        let secret = |name: &str| {
            self.detectors.enabled(Entity::Credential) && detect::secret_member(name, text)
        };
        if !found.2.is_empty() || !name.is_some_and(secret) {
            return Ok(found);
        }
        let whole = detect::Found {
            start: 0,
            end: text.len(),
            entity: Entity::Credential,
            detector: "json_member",
            validation: "name+value",
        };
        let out = self.replacement(whole.entity, text, state)?;
        *state.counts.entry(whole.entity.name()).or_default() += 1;
        let dropped = matches!(self.operator(whole.entity), Operator::Drop);
        Ok((std::borrow::Cow::Owned(out), dropped, vec![whole]))
    }

    /// The matches of `text`, folded as `folded`, in folded coordinates, in order and without
    /// overlaps. When folding changed the text, the written text is searched too, so that
    /// decoding never loses a value its written form holds (a decoded `@` in a URL's password,
    /// `postgres://app:p%40ss@db`, would end the password early); of overlapping matches the
    /// earliest wins, then the longest.
    pub(crate) fn detect(&self, text: &str, folded: &normalize::Folded<'_>) -> Vec<detect::Found> {
        let mut found = self.detectors.find(&folded.text);
        if !folded.changed() {
            return found;
        }
        let written = self.detectors.find(text);
        if written.is_empty() {
            return found;
        }
        found.extend(written.into_iter().map(|mut f| {
            (f.start, f.end) = folded.folded(f.start, f.end);
            f
        }));
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut end = 0;
        found.retain(|f| {
            let keep = f.start >= end && f.end > f.start;
            if keep {
                end = f.end;
            }
            keep
        });
        found
    }

    /// Rewrites `text[..folded.original(cut)]`, replacing every match that ends at or before
    /// `cut` (folded coordinates). Returns the rewritten prefix.
    pub(crate) fn apply(
        &self,
        text: &str,
        folded: &normalize::Folded<'_>,
        found: &[detect::Found],
        cut: usize,
        state: &mut State,
    ) -> Result<String, Blocked> {
        let (orig_cut, _) = folded.original(cut, cut);
        let mut out = String::with_capacity(orig_cut);
        let mut pos = 0;
        for f in found.iter().filter(|f| f.end <= cut) {
            let (s, e) = folded.original(f.start, f.end);
            if s < pos {
                continue;
            }
            out.push_str(&text[pos..s]);
            let value = &folded.text[f.start..f.end];
            out.push_str(&self.replacement(f.entity, value, state)?);
            *state.counts.entry(f.entity.name()).or_default() += 1;
            pos = e;
        }
        out.push_str(&text[pos..orig_cut]);
        Ok(out)
    }

    fn replacement(
        &self,
        entity: Entity,
        value: &str,
        state: &mut State,
    ) -> Result<String, Blocked> {
        Ok(match self.operators.get(&entity).unwrap_or(&self.default) {
            Operator::Mask { keep_suffix } => {
                // Whitespace inside a value (card groups) is kept, so the shape stays readable.
                let n = value.chars().count();
                value
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i + keep_suffix >= n || c.is_whitespace() {
                            c
                        } else {
                            '*'
                        }
                    })
                    .collect()
            }
            Operator::Replace { numbered: false } => format!("<{}>", entity.name()),
            Operator::Replace { numbered: true } => {
                let key = (entity, value.to_owned());
                let n = match state.numbers.get(&key) {
                    Some(n) => *n,
                    None => {
                        let n = state.next.entry(entity).or_insert(0);
                        *n += 1;
                        let n = *n;
                        state.numbers.insert(key, n);
                        n
                    }
                };
                format!("<{}_{n}>", entity.name())
            }
            Operator::Hash { key, len } => {
                // An HMAC key of any length is accepted; construction cannot fail.
                let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
                    return Ok(format!("<{}>", entity.name()));
                };
                mac.update(value.as_bytes());
                let hex = crate::audit::hex(&mac.finalize().into_bytes());
                format!("<{}:{}>", entity.name(), &hex[..(*len).min(hex.len())])
            }
            Operator::Drop => String::new(),
            Operator::Block => return Err(Blocked(entity)),
        })
    }
}
