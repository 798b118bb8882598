//! Detectors: each finds candidate spans with a regular expression, then validates them
//! (checksums, ranges, length tables) to keep false positives down. Entity names follow
//! Presidio's where one exists, so policies port.

use regex::Regex;

/// One kind of value that may not leave the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// An email address.
    EmailAddress,
    /// A phone number (E.164, or North American with separators).
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

struct Pattern {
    entity: Entity,
    re: Regex,
    valid: fn(&str) -> bool,
}

/// The compiled detectors of a profile.
pub struct Detectors {
    patterns: Vec<Pattern>,
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
            let (re, valid): (&str, fn(&str) -> bool) = match e {
                Entity::EmailAddress => (
                    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
                    valid_email,
                ),
                Entity::PhoneNumber => (
                    r"\+[1-9][0-9 ().\-]{6,20}[0-9]|\(?\b[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}\b",
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
            });
        }
        for c in custom {
            patterns.push(Pattern {
                entity: Entity::Custom,
                re: Regex::new(c)?,
                valid: always,
            });
        }
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
        Ok(Self { patterns, words })
    }

    /// Every validated match in `text`, sorted, overlaps resolved (earliest, then longest).
    pub fn find(&self, text: &str) -> Vec<Found> {
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
        if let Some(ac) = &self.words {
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
        all.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut out: Vec<Found> = Vec::new();
        for f in all {
            match out.last() {
                Some(last) if f.start < last.end => {}
                _ => out.push(f),
            }
        }
        out
    }
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
