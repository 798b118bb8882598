//! Detectors: each finds candidate spans with a regular expression, then validates them
//! (checksums, ranges, length tables) to keep false positives down. Entity names follow
//! Presidio's where one exists, so policies port.
//!
//! One cheap pass picks where the built-in regexes need to look: a byte-class scan splits the
//! text into whitespace-separated words and keeps the words that hold a trigger (a digit, `@`,
//! `:`) plus two words either side (a card or IBAN written in groups, `GB82 WEST 1234 …`);
//! secret prefixes (`AKIA`, `ghp_`, `eyJ`, …) are found by one Aho-Corasick pass and PEM blocks
//! by their `-----BEGIN` line. Each window then runs only the detectors its content can satisfy
//! (an email needs an `@`, a card 13 digits). Windows start and end at whitespace, so word
//! boundaries inside them read as they do in the whole text. Prose without triggers costs one
//! table lookup per byte. Operator-defined regexes and words scan the whole text.

mod assign;
mod checks;
mod context;
mod national;
mod patterns;
mod prefixes;
mod scan;

use regex::Regex;

pub use assign::{is_password_name, secret_member, MAX_QUOTED};
pub use checks::luhn;
pub use national::is_month;
use patterns::{always, Pattern, SPECS};
use prefixes::SECRET_PREFIXES;
use scan::{
    is_ws, next_trigger, words_after, words_before, Needs, Summary, AT, COLON, DIGIT, EQUALS,
};

/// One kind of value that may not leave the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// An email address.
    EmailAddress,
    /// A phone number (E.164; North American and national formats with separators).
    PhoneNumber,
    /// A payment card number (Luhn and issuer ranges).
    CreditCard,
    /// An IBAN (country length and mod-97).
    IbanCode,
    /// A US social security number (area/group/serial rules; without dashes, next to
    /// "SSN"/"social security").
    UsSsn,
    /// A UK National Insurance number (prefix rules).
    UkNino,
    /// A German tax identification number (Steuer-ID: check digit; compact, next to a tax word).
    DeTaxId,
    /// An Indian Aadhaar number (Verhoeff check digit; compact, next to "Aadhaar").
    InAadhaar,
    /// An Indian permanent account number (PAN: structure).
    InPan,
    /// A passport number, next to a passport word.
    Passport,
    /// A date next to "born"/"DOB"/"date of birth".
    DateOfBirth,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A cloud access key id (AWS `AKIA…`/`ASIA…`, Google `AIza…`).
    CloudKey,
    /// A GitHub (checksummed), GitLab or Slack token.
    AccessToken,
    /// An API key of an AI, payment or messaging provider (OpenAI, Anthropic, Hugging Face,
    /// Stripe, npm, SendGrid), or a Slack webhook URL.
    ApiKey,
    /// A password or secret written in place: the `user:password` of a URL
    /// (`postgres://app:s3cret@db`), the value of a secret-looking name (`password=…`,
    /// `"client_secret": "…"`, `AccountKey=…`), an `Authorization` credential.
    Credential,
    /// A PEM private key block.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// An operator-defined pattern or word list.
    Custom,
}

impl Entity {
    /// The entity's name in configuration, audit records and replacements.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmailAddress => "EMAIL_ADDRESS",
            Self::PhoneNumber => "PHONE_NUMBER",
            Self::CreditCard => "CREDIT_CARD",
            Self::IbanCode => "IBAN_CODE",
            Self::UsSsn => "US_SSN",
            Self::UkNino => "UK_NINO",
            Self::DeTaxId => "DE_TAX_ID",
            Self::InAadhaar => "IN_AADHAAR",
            Self::InPan => "IN_PAN",
            Self::Passport => "PASSPORT",
            Self::DateOfBirth => "DATE_OF_BIRTH",
            Self::IpAddress => "IP_ADDRESS",
            Self::CloudKey => "CLOUD_ACCESS_KEY",
            Self::AccessToken => "ACCESS_TOKEN",
            Self::ApiKey => "API_KEY",
            Self::Credential => "CREDENTIAL",
            Self::PrivateKey => "PRIVATE_KEY",
            Self::Jwt => "JWT",
            Self::Custom => "CUSTOM",
        }
    }

    /// Every built-in entity.
    pub const ALL: [Self; 18] = [
        Self::EmailAddress,
        Self::PhoneNumber,
        Self::CreditCard,
        Self::IbanCode,
        Self::UsSsn,
        Self::UkNino,
        Self::DeTaxId,
        Self::InAadhaar,
        Self::InPan,
        Self::Passport,
        Self::DateOfBirth,
        Self::IpAddress,
        Self::CloudKey,
        Self::AccessToken,
        Self::ApiKey,
        Self::Credential,
        Self::PrivateKey,
        Self::Jwt,
    ];

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// The secret prefixes, split over two automata: the automaton's vectorized search (Teddy)
/// slows down several times over prose when one automaton holds them all (2 GB/s against 12
/// and 17 GB/s for the two halves, measured on English text).
struct PrefixSearch(Vec<aho_corasick::AhoCorasick>);

impl PrefixSearch {
    /// The searchers for the prefixes of the enabled `entities`.
    fn build(entities: &[Entity]) -> Result<Self, regex::Error> {
        let mut halves: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
        for (e, prefixes) in SECRET_PREFIXES.iter().filter(|(e, _)| entities.contains(e)) {
            for p in prefixes.iter() {
                let first = matches!(e, Entity::CloudKey | Entity::AccessToken)
                    && !prefixes::SECOND_HALF.contains(p);
                halves[usize::from(!first)].push(p);
            }
        }
        let mut out = Vec::new();
        for half in halves.iter().filter(|h| !h.is_empty()) {
            out.push(
                // Leftmost semantics let the automaton use its vectorized search.
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(half)
                    .map_err(|e| regex::Error::Syntax(e.to_string()))?,
            );
        }
        Ok(Self(out))
    }

    /// Where the prefixes start in `b`, in order.
    fn starts(&self, b: &[u8]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for ac in &self.0 {
            out.extend(ac.find_iter(b).map(|m| m.start()));
        }
        if self.0.len() > 1 {
            out.sort_unstable();
        }
        out
    }
}

/// A validated match: byte range in the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Start (inclusive).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// What it is.
    pub entity: Entity,
    /// The detector that found it (`email`, `credit_card`, `openai`, `github`, `custom.regex`,
    /// …): with API and access keys, the provider.
    pub detector: &'static str,
    /// What confirmed it beyond the pattern (`luhn`, `mod97`, `crc32`, `context`, `pattern`, …).
    pub validation: &'static str,
}

/// The compiled detectors of a profile.
pub struct Detectors {
    patterns: Vec<Pattern>,
    /// Searchers for the secret prefixes of the enabled secret detectors.
    prefixes: PrefixSearch,
    /// Triggers of the enabled windowed detectors (byte classes).
    triggers: u8,
    words: Option<aho_corasick::AhoCorasick>,
}

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.patterns.iter().map(|p| p.entity.name()).collect();
        f.debug_struct("Detectors")
            .field("entities", &names)
            .finish_non_exhaustive()
    }
}

/// Longest span a streamed match may have before the hold-back gives up (fails closed); a PEM
/// private key is the longest built-in entity.
pub const MAX_MATCH: usize = 8 * 1024;

impl Detectors {
    /// Detectors for `entities`, plus custom regexes and words (matched case-insensitively).
    pub fn new(
        entities: &[Entity],
        custom: &[String],
        words: &[String],
    ) -> Result<Self, regex::Error> {
        let mut patterns = Vec::new();
        for spec in SPECS.iter().filter(|s| entities.contains(&s.entity)) {
            patterns.push(Pattern {
                entity: spec.entity,
                re: Regex::new(spec.re)?,
                valid: spec.valid,
                needs: spec.needs,
                context: spec.context,
                detector: spec.detector,
                validation: spec.validation,
            });
        }
        for c in custom {
            patterns.push(Pattern {
                entity: Entity::Custom,
                re: Regex::new(c)?,
                valid: always,
                needs: Needs::Whole,
                context: None,
                detector: "custom.regex",
                validation: "pattern",
            });
        }
        let prefixes = PrefixSearch::build(entities)?;
        let triggers = patterns.iter().fold(0, |t, p| {
            t | match p.needs {
                Needs::Digits(_)
                | Needs::Upper(..)
                | Needs::LongToken
                | Needs::Run(_)
                | Needs::Runs(..)
                | Needs::Code
                | Needs::Said
                | Needs::Iban
                | Needs::Ssn
                | Needs::Ipv4 => DIGIT,
                Needs::At | Needs::AtUnicode => AT,
                Needs::Colon => COLON,
                Needs::Assign => COLON | EQUALS,
                Needs::Prefix | Needs::Whole => 0,
            }
        });
        let words = if words.is_empty() {
            None
        } else {
            Some(
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(words)
                    .map_err(|e| regex::Error::Syntax(e.to_string()))?,
            )
        };
        Ok(Self {
            patterns,
            prefixes,
            triggers,
            words,
        })
    }

    /// Whether the detectors of `entity` are enabled.
    pub fn enabled(&self, entity: Entity) -> bool {
        self.patterns.iter().any(|p| p.entity == entity)
    }

    /// Windows of `text` that hold a trigger, with their context words, merged, in order; the
    /// flag tells whether a window holds a secret prefix.
    fn windows(&self, text: &str) -> Vec<(usize, usize, bool)> {
        let b = text.as_bytes();
        let mut out: Vec<(usize, usize, bool)> = Vec::new();
        let mut open: Option<(usize, usize, bool)> = None;
        let mut i = 0;
        while let Some(p) = next_trigger(b, i, self.triggers) {
            let start = b[..p].iter().rposition(|&c| is_ws(c)).map_or(0, |w| w + 1);
            let end = b[p..]
                .iter()
                .position(|&c| is_ws(c))
                .map_or(b.len(), |w| p + w);
            let (from, to) = (words_before(b, start), words_after(b, end));
            open = match open {
                Some((s, e, _)) if from <= e => Some((s, e.max(to), false)),
                Some(w) => {
                    out.push(w);
                    Some((from, to, false))
                }
                None => Some((from, to, false)),
            };
            i = end;
        }
        out.extend(open);
        // Words holding a secret prefix.
        if !self.prefixes.0.is_empty() {
            let starts = self.prefixes.starts(text.as_bytes());
            let mut words: Vec<(usize, usize, bool)> = Vec::new();
            for at in starts {
                if words.last().is_some_and(|w| at < w.1) {
                    continue;
                }
                let s = b[..at].iter().rposition(|&c| is_ws(c)).map_or(0, |p| p + 1);
                let e = b[at..]
                    .iter()
                    .position(|&c| is_ws(c))
                    .map_or(b.len(), |p| at + p);
                words.push((s, e, true));
            }
            if !words.is_empty() {
                out.extend(words);
                out.sort_unstable();
                let mut merged: Vec<(usize, usize, bool)> = Vec::with_capacity(out.len());
                for w in out {
                    match merged.last_mut() {
                        Some(last) if w.0 <= last.1 => {
                            last.1 = last.1.max(w.1);
                            last.2 |= w.2;
                        }
                        _ => merged.push(w),
                    }
                }
                out = merged;
            }
        }
        out
    }

    /// Every validated match in `text`, sorted, overlaps resolved (earliest, then longest).
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut all = Vec::new();
        let mut push = |p: &Pattern, at: usize, m: regex::Match<'_>| {
            all.extend(accept(p, text, at + m.start(), m.as_str()));
        };
        for (s, e, prefix) in self.windows(text) {
            let w = &text[s..e];
            let summary = Summary::of(w.as_bytes(), prefix);
            // Contexts near the window, looked up once, when a detector needing one may run.
            let mut contexts: Option<u8> = None;
            for p in &self.patterns {
                if !summary.allows(p.needs) {
                    continue;
                }
                if let Some(c) = p.context {
                    let near = *contexts.get_or_insert_with(|| {
                        if context::in_table(text, s, e) {
                            u8::MAX
                        } else {
                            context::nearby(text, s, e)
                        }
                    });
                    if near & c.bit() == 0 {
                        continue;
                    }
                }
                if p.needs == Needs::Assign {
                    // A quoted value may hold spaces: read on to the end of the line.
                    let line = text.as_bytes()[e..]
                        .iter()
                        .take(MAX_QUOTED)
                        .position(|&c| c == b'\n')
                        .map_or((e + MAX_QUOTED).min(text.len()), |n| e + n);
                    let mut end = line;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    for m in p.re.find_iter(&text[s..end]) {
                        push(p, s, m);
                    }
                } else if p.needs == Needs::Said {
                    // The name may be words longer than the window's context (`mot de passe`).
                    let mut from = s.saturating_sub(16);
                    while !text.is_char_boundary(from) {
                        from -= 1;
                    }
                    for m in p.re.find_iter(&text[from..e]) {
                        push(p, from, m);
                    }
                } else {
                    for m in p.re.find_iter(w) {
                        push(p, s, m);
                    }
                }
            }
        }
        for p in self.patterns.iter().filter(|p| p.needs == Needs::Whole) {
            if p.entity == Entity::PrivateKey {
                // From each header only: a block is rare, the text around it long.
                let mut from = 0;
                while let Some(h) = memchr::memmem::find(&text.as_bytes()[from..], b"-----BEGIN") {
                    let at = from + h;
                    // A block is at most MAX_MATCH bytes: search only that far.
                    let mut end = (at + MAX_MATCH + 128).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    match p.re.find(&text[at..end]) {
                        Some(m) if m.start() == 0 => {
                            from = at + m.end();
                            push(p, at, m);
                        }
                        _ => from = at + 1,
                    }
                }
            } else {
                for m in p.re.find_iter(text) {
                    push(p, 0, m);
                }
            }
        }
        self.add_words(text, &mut all);
        resolve(all)
    }

    /// What [`Self::find`] finds, by running every detector over the whole text (the windows'
    /// reference).
    #[cfg(test)]
    pub(crate) fn find_everywhere(&self, text: &str) -> Vec<Found> {
        let mut all = Vec::new();
        for p in &self.patterns {
            for m in p.re.find_iter(text) {
                all.extend(accept(p, text, m.start(), m.as_str()));
            }
        }
        self.add_words(text, &mut all);
        resolve(all)
    }

    fn add_words(&self, text: &str, all: &mut Vec<Found>) {
        let Some(ac) = &self.words else {
            return;
        };
        for m in ac.find_iter(text) {
            let word_edge = |i: usize| {
                text[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric())
            };
            let after = text[m.end()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric());
            if word_edge(m.start()) && after {
                all.push(Found {
                    start: m.start(),
                    end: m.end(),
                    entity: Entity::Custom,
                    detector: "custom.word",
                    validation: "word",
                });
            }
        }
    }
}

/// A candidate `m` found at `start` of `text`, as a match if it validates where it stands. An
/// IBAN that does not validate is tried without its last groups (a compact IBAN followed by a
/// short word: `NL91ABNA0417164300 I …`); a dotted quad must read as an address in its context.
fn accept(p: &Pattern, text: &str, start: usize, m: &str) -> Option<Found> {
    let (detector, validation) = if p.detector.is_empty() || p.validation.is_empty() {
        patterns::provider(p.entity, m)
    } else {
        (p.detector, p.validation)
    };
    let span = |from: usize, to: usize| Found {
        start: start + from,
        end: start + to,
        entity: p.entity,
        detector,
        validation,
    };
    if p.entity == Entity::Credential {
        if matches!(p.needs, Needs::Assign | Needs::Said) {
            let (from, to) = assign::secret_value(m)?;
            return Some(span(from, to));
        }
        // Only `user:password` is masked: the scheme and the host stay readable.
        let from = m.find("://")? + 3;
        let to = m.rfind('@')?;
        return (p.valid)(m).then_some(span(from, to));
    }
    let end = start + m.len();
    if p.entity == Entity::EmailAddress {
        // `https://ghp_…@github.com`, `postgres://app:%PASS%@db`: the userinfo of a URL,
        // not an address.
        let word = after_last(&text[..start], |c| {
            c.is_whitespace() || c == '"' || c == '\''
        });
        let before = &text[word..start];
        let in_authority = before
            .rfind("://")
            .is_some_and(|p| !before[p + 3..].contains(['/', '?', '#']));
        if in_authority {
            return None;
        }
    }
    if let Some(c) = p.context {
        if !context::near(text, start, end, c) && !context::column_says(text, start, end, c) {
            return None;
        }
    }
    if (p.valid)(m) {
        let fits = match p.entity {
            Entity::IpAddress => m.contains(':') || checks::ipv4_in_context(text, start, end),
            Entity::PhoneNumber
            | Entity::UsSsn
            | Entity::InAadhaar
            | Entity::DeTaxId
            | Entity::UkNino => checks::stands_alone(text, start, end),
            _ => true,
        };
        return fits.then_some(span(0, m.len()));
    }
    if p.entity == Entity::IbanCode {
        let mut end = m.len();
        while let Some(space) = m[..end].rfind(' ') {
            end = space;
            if (p.valid)(&m[..end]) {
                return Some(span(0, end));
            }
        }
    }
    None
}

/// Sorts matches and resolves overlaps: the earliest wins, then the longest.
fn resolve(mut all: Vec<Found>) -> Vec<Found> {
    all.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut out: Vec<Found> = Vec::with_capacity(all.len());
    for f in all {
        match out.last() {
            Some(last) if f.start < last.end => {}
            _ => out.push(f),
        }
    }
    out
}

/// Where the text after the last character `stop` accepts begins (0 when there is none): past
/// that character whole, however many bytes it takes (a no-break space is two).
pub(crate) fn after_last(text: &str, stop: impl Fn(char) -> bool) -> usize {
    text.char_indices()
        .rev()
        .find(|&(_, c)| stop(c))
        .map_or(0, |(p, c)| p + c.len_utf8())
}
