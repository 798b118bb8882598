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

use regex::Regex;

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
    /// A US social security number (area/group/serial rules).
    UsSsn,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A cloud access key id (AWS `AKIA…`/`ASIA…`, Google `AIza…`).
    CloudKey,
    /// A GitHub, GitLab or Slack token.
    AccessToken,
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
            Self::IpAddress => "IP_ADDRESS",
            Self::CloudKey => "CLOUD_ACCESS_KEY",
            Self::AccessToken => "ACCESS_TOKEN",
            Self::PrivateKey => "PRIVATE_KEY",
            Self::Jwt => "JWT",
            Self::Custom => "CUSTOM",
        }
    }

    /// Every built-in entity.
    pub const ALL: [Self; 10] = [
        Self::EmailAddress,
        Self::PhoneNumber,
        Self::CreditCard,
        Self::IbanCode,
        Self::UsSsn,
        Self::IpAddress,
        Self::CloudKey,
        Self::AccessToken,
        Self::PrivateKey,
        Self::Jwt,
    ];

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == s)
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
}

/// What a window must hold for a detector to run on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// At least this many ASCII digits.
    Digits(usize),
    /// Two capitals then two digits, and digits for the rest.
    Iban,
    /// Nine digits and a `-`.
    Ssn,
    /// Four digits and three dots.
    Ipv4,
    /// An `@`.
    At,
    /// A `:`.
    Colon,
    /// A secret prefix (found by the prefix automaton).
    Prefix,
    /// Runs on the whole text (PEM blocks from their header; operator-defined patterns).
    Whole,
}

/// What a window holds, counted in one pass.
#[derive(Debug, Default)]
struct Summary {
    digits: usize,
    dots: usize,
    dash: bool,
    at: bool,
    colon: bool,
    iban: bool,
    prefix: bool,
}

impl Summary {
    fn of(w: &[u8], prefix: bool) -> Self {
        let mut s = Self::default();
        for (i, &c) in w.iter().enumerate() {
            match c {
                b'0'..=b'9' => s.digits += 1,
                b'.' => s.dots += 1,
                b'-' => s.dash = true,
                b'@' => s.at = true,
                b':' => s.colon = true,
                b'A'..=b'Z' if !s.iban => {
                    s.iban = w.get(i + 1).is_some_and(u8::is_ascii_uppercase)
                        && w.get(i + 2).is_some_and(u8::is_ascii_digit)
                        && w.get(i + 3).is_some_and(u8::is_ascii_digit);
                }
                _ => {}
            }
        }
        s.prefix = prefix;
        s
    }

    fn allows(&self, needs: Needs) -> bool {
        match needs {
            Needs::Digits(n) => self.digits >= n,
            Needs::Iban => self.iban && self.digits >= 2,
            Needs::Ssn => self.dash && self.digits >= 9,
            Needs::Ipv4 => self.dots >= 3 && self.digits >= 4,
            Needs::At => self.at,
            Needs::Colon => self.colon,
            Needs::Prefix => self.prefix,
            Needs::Whole => false,
        }
    }
}

struct Pattern {
    entity: Entity,
    re: Regex,
    valid: fn(&str) -> bool,
    needs: Needs,
}

/// The compiled detectors of a profile.
pub struct Detectors {
    patterns: Vec<Pattern>,
    /// Secret prefixes of the enabled secret detectors.
    prefixes: Option<aho_corasick::AhoCorasick>,
    /// Triggers of the enabled windowed detectors (byte classes).
    triggers: u8,
    words: Option<aho_corasick::AhoCorasick>,
}

/// Byte classes of the candidate scan.
const WS: u8 = 1;
const DIGIT: u8 = 2;
const AT: u8 = 4;
const COLON: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = WS;
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[0x0c] = WS;
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t[b'@' as usize] = AT;
    t[b':' as usize] = COLON;
    t
};

/// Words kept on either side of a word holding a trigger.
const CONTEXT_WORDS: usize = 2;

fn is_ws(c: u8) -> bool {
    CLASS[usize::from(c)] & WS != 0
}

/// The first byte at or after `from` whose class is in `triggers`. Runs of 32 bytes without a
/// digit, `:` or `@` are skipped with one vectorized test each.
fn next_trigger(b: &[u8], from: usize, triggers: u8) -> Option<usize> {
    const LANE: usize = 32;
    let mut i = from;
    while i + LANE <= b.len() {
        let chunk = &b[i..i + LANE];
        // Digits and `:` are 0x30..=0x3A; `@` is 0x40.
        let maybe = chunk.iter().fold(false, |a, &c| {
            a | (c.wrapping_sub(b'0') <= 10) | (c == b'@')
        });
        if maybe {
            if let Some(p) = chunk
                .iter()
                .position(|&c| CLASS[usize::from(c)] & triggers != 0)
            {
                return Some(i + p);
            }
        }
        i += LANE;
    }
    b[i.min(b.len())..]
        .iter()
        .position(|&c| CLASS[usize::from(c)] & triggers != 0)
        .map(|p| i + p)
}

/// Start of the word `CONTEXT_WORDS` words before the word starting at `start` (or 0).
fn words_before(b: &[u8], start: usize) -> usize {
    let mut pos = start;
    for _ in 0..CONTEXT_WORDS {
        while pos > 0 && is_ws(b[pos - 1]) {
            pos -= 1;
        }
        if pos == 0 {
            return 0;
        }
        while pos > 0 && !is_ws(b[pos - 1]) {
            pos -= 1;
        }
    }
    pos
}

/// End of the word `CONTEXT_WORDS` words after the word ending at `end` (or the last word's).
fn words_after(b: &[u8], end: usize) -> usize {
    let mut pos = end;
    for _ in 0..CONTEXT_WORDS {
        let mut next = pos;
        while next < b.len() && is_ws(b[next]) {
            next += 1;
        }
        if next == b.len() {
            break;
        }
        while next < b.len() && !is_ws(b[next]) {
            next += 1;
        }
        pos = next;
    }
    pos
}

/// Prefixes that start the secret detectors' values.
const SECRET_PREFIXES: [(Entity, &[&str]); 3] = [
    (
        Entity::CloudKey,
        &["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "AIza"],
    ),
    (
        Entity::AccessToken,
        &[
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "glpat-",
            "xox",
        ],
    ),
    (Entity::Jwt, &["eyJ"]),
];

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.patterns.iter().map(|p| p.entity.name()).collect();
        f.debug_struct("Detectors")
            .field("entities", &names)
            .finish_non_exhaustive()
    }
}

fn always(_: &str) -> bool {
    true
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
        for e in entities {
            let needs = match e {
                Entity::EmailAddress => Needs::At,
                Entity::PhoneNumber => Needs::Digits(8),
                Entity::CreditCard => Needs::Digits(13),
                Entity::IbanCode => Needs::Iban,
                Entity::UsSsn => Needs::Ssn,
                Entity::IpAddress => Needs::Ipv4,
                Entity::CloudKey | Entity::AccessToken | Entity::Jwt => Needs::Prefix,
                Entity::PrivateKey | Entity::Custom => Needs::Whole,
            };
            let (re, valid): (&str, fn(&str) -> bool) = match e {
                Entity::EmailAddress => (
                    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
                    valid_email,
                ),
                Entity::PhoneNumber => (
                    r"\+[1-9][0-9 ().\-]{6,20}[0-9]|\(?\b[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}\b|\(?\b0[1-9][0-9]{0,4}\)?(?:[ \-./][0-9]{2,8}){1,4}\b",
                    valid_phone,
                ),
                Entity::CreditCard => (r"\b[0-9](?:[ \-]?[0-9]){12,18}\b", valid_card),
                Entity::IbanCode => (r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", valid_iban),
                Entity::UsSsn => (r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", valid_ssn),
                Entity::IpAddress => (
                    r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}",
                    valid_ip,
                ),
                Entity::CloudKey => (
                    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b|\bAIza[0-9A-Za-z_\-]{35}\b",
                    always,
                ),
                Entity::AccessToken => (
                    r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b|\bglpat-[A-Za-z0-9_\-]{20,}\b|\bxox[abposr]-[A-Za-z0-9\-]{10,}\b",
                    always,
                ),
                Entity::PrivateKey => (
                    r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----[\s\S]{16,8000}?-----END [A-Z ]{0,20}PRIVATE KEY-----",
                    always,
                ),
                Entity::Jwt => (
                    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
                    always,
                ),
                Entity::Custom => continue,
            };
            patterns.push(Pattern {
                entity: *e,
                re: Regex::new(re)?,
                valid,
                needs,
            });
            if *e == Entity::IpAddress {
                // IPv6 has its own trigger; the same regex and validation.
                patterns.push(Pattern {
                    entity: *e,
                    re: Regex::new(re)?,
                    valid,
                    needs: Needs::Colon,
                });
            }
        }
        for c in custom {
            patterns.push(Pattern {
                entity: Entity::Custom,
                re: Regex::new(c)?,
                valid: always,
                needs: Needs::Whole,
            });
        }
        let prefixes: Vec<&str> = SECRET_PREFIXES
            .iter()
            .filter(|(e, _)| entities.contains(e))
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let prefixes = if prefixes.is_empty() {
            None
        } else {
            Some(
                // Leftmost semantics let the automaton use its SIMD prefilter.
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(&prefixes)
                    .map_err(|e| regex::Error::Syntax(e.to_string()))?,
            )
        };
        let triggers = patterns.iter().fold(0, |t, p| {
            t | match p.needs {
                Needs::Digits(_) | Needs::Iban | Needs::Ssn | Needs::Ipv4 => DIGIT,
                Needs::At => AT,
                Needs::Colon => COLON,
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
        if let Some(ac) = &self.prefixes {
            let mut words: Vec<(usize, usize, bool)> = Vec::new();
            for m in ac.find_iter(text) {
                if words.last().is_some_and(|w| m.start() < w.1) {
                    continue;
                }
                let s = b[..m.start()]
                    .iter()
                    .rposition(|&c| is_ws(c))
                    .map_or(0, |p| p + 1);
                let e = b[m.start()..]
                    .iter()
                    .position(|&c| is_ws(c))
                    .map_or(b.len(), |p| m.start() + p);
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
            if (p.valid)(m.as_str()) {
                all.push(Found {
                    start: at + m.start(),
                    end: at + m.end(),
                    entity: p.entity,
                });
            }
        };
        for (s, e, prefix) in self.windows(text) {
            let w = &text[s..e];
            let summary = Summary::of(w.as_bytes(), prefix);
            for p in &self.patterns {
                let run = summary.allows(p.needs);
                if run {
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
                if (p.valid)(m.as_str()) {
                    all.push(Found {
                        start: m.start(),
                        end: m.end(),
                        entity: p.entity,
                    });
                }
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
                });
            }
        }
    }
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

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with('-')
}

fn valid_phone(s: &str) -> bool {
    let d = digits(s);
    if s.starts_with('+') {
        // E.164: up to 15 digits, at least 8; separators only single and between digits.
        return (8..=15).contains(&d.len()) && !s.contains("  ") && !s.contains("--");
    }
    if d.first() == Some(&0) {
        // National, with the trunk prefix 0 (`020 7946 0958`, `030 12345678`, `(02) 9876 5432`,
        // `01 23 45 67 89`, `03-1234-5678`): 9 to 12 digits, written in groups with one kind
        // of separator (so dates such as `01.12.2025 10` and bare numbers stay out).
        // `078-05-1120` is the shape of a social security number, not of a phone number.
        let ssn_shape = s.len() == 11 && s.as_bytes()[3] == b'-' && s.as_bytes()[6] == b'-';
        if ssn_shape {
            return false;
        }
        let mut seps = s.bytes().filter(|c| b" -./".contains(c));
        let first = seps.next();
        return (9..=12).contains(&d.len())
            && first.is_some()
            && seps.all(|c| Some(c) == first)
            && s.starts_with('(') == s.contains(')');
    }
    // North American: 10 digits, area and exchange codes start 2–9, not N11.
    d.len() == 10
        && d[0] >= 2
        && d[3] >= 2
        && !(d[1] == 1 && d[2] == 1)
        && !(d[4] == 1 && d[5] == 1)
}

/// Luhn checksum over the digits.
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn valid_card(s: &str) -> bool {
    // Separators, if any, must be consistent (all spaces or all dashes).
    if s.contains(' ') && s.contains('-') {
        return false;
    }
    let d = digits(s);
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    let issuer_ok = match d.first() {
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(3) => {
            ((prefix(2) == 34 || prefix(2) == 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
                || ((300..=305).contains(&prefix(3)) || prefix(2) == 36 || prefix(2) == 38)
                    && (14..=19).contains(&len)
        }
        Some(6) => {
            (prefix(4) == 6011
                || prefix(2) == 65
                || (644..=649).contains(&prefix(3))
                || (622_126..=622_925).contains(&prefix(6)))
                && (16..=19).contains(&len)
        }
        _ => false,
    };
    issuer_ok && luhn(&d)
}

/// IBAN lengths by country (ISO 13616 registry, common countries).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

fn valid_iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(len) = iban_length(&compact[..2]) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn valid_ssn(s: &str) -> bool {
    let d = digits(s);
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn valid_ip(s: &str) -> bool {
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().is_ok()
            && s.matches(':').count() >= 2
            && s.chars().any(|c| c.is_ascii_hexdigit());
    }
    // Dotted quads whose octets have no leading zeros; version-like strings ("1.2.3.4" after a
    // `v`) are excluded by the caller's context check.
    s.parse::<std::net::Ipv4Addr>().is_ok() && s.split('.').all(|o| o == "0" || !o.starts_with('0'))
}
