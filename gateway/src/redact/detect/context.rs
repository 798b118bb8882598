//! Context words: some values have a shape that many harmless numbers share (nine digits, a
//! date, a passport-like code), and count as personal data only where nearby words say what
//! they are (Presidio calls these context words). The check reads a bounded stretch of text
//! around a candidate, so it costs nothing where no candidate of such a shape occurs.

/// Bytes before a candidate searched for a context word.
pub(super) const BEFORE: usize = 64;
/// Bytes after a candidate searched for a context word (`782323220 (SSN)`).
pub(super) const AFTER: usize = 24;

/// What kind of value a context word announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    /// A US social security number.
    Ssn,
    /// A phone number.
    Phone,
    /// A passport number.
    Passport,
    /// A date of birth.
    Birth,
    /// A German tax identification number.
    TaxDe,
    /// An Indian Aadhaar number.
    Aadhaar,
}

impl Context {
    /// The words, lower case; each must stand as a word (letters on neither side).
    pub(super) fn words(self) -> &'static [&'static str] {
        match self {
            Self::Ssn => &[
                "ssn",
                "ssns",
                "ss#",
                "ss #",
                "social security",
                "social-security",
                "socsec",
            ],
            Self::Phone => &[
                "phone",
                "call",
                "call me",
                "mobile",
                "tel",
                "tel.",
                "telephone",
                "cell",
                "cellphone",
                "whatsapp",
                "sms",
                "text me",
                "reach me",
                "contact",
                "telefon",
                "telefonnummer",
                "handy",
                "handynummer",
                "mobil",
                "téléphone",
                "portable",
                "teléfono",
                "móvil",
                "celular",
                "número",
            ],
            Self::Passport => &[
                "passport",
                "passports",
                "passport no",
                "reisepass",
                "reisepassnummer",
                "passnummer",
                "passeport",
                "pasaporte",
                "passaporto",
            ],
            Self::Birth => &[
                "born",
                "dob",
                "d.o.b",
                "d.o.b.",
                "date of birth",
                "date_of_birth",
                "dateofbirth",
                "birth_date",
                "nací",
                "birth date",
                "birthdate",
                "birthday",
                "geboren",
                "geburtsdatum",
                "geburtstag",
                "né",
                "née",
                "naissance",
                "nacimiento",
                "nació",
                "nacido",
                "nacida",
            ],
            Self::TaxDe => &[
                "steuer-id",
                "steuerid",
                "steuer id",
                "steuer-identifikationsnummer",
                "steueridentifikationsnummer",
                "steuerliche identifikationsnummer",
                "identifikationsnummer",
                "idnr",
                "steuer_id",
                "tax_id",
                "tax id",
                "tax-id",
                "tin",
                "tax identification",
            ],
            Self::Aadhaar => &["aadhaar", "aadhar", "adhaar", "uidai", "uid"],
        }
    }
}

impl Context {
    const ALL: [Self; 6] = [
        Self::Ssn,
        Self::Phone,
        Self::Passport,
        Self::Birth,
        Self::TaxDe,
        Self::Aadhaar,
    ];
}

/// Every context word in one automaton (ASCII case-insensitive), and the context of each.
static WORDS: std::sync::LazyLock<Option<(aho_corasick::AhoCorasick, Vec<Context>)>> =
    std::sync::LazyLock::new(|| {
        let mut words = Vec::new();
        let mut contexts = Vec::new();
        for c in Context::ALL {
            for w in c.words() {
                words.push(*w);
                contexts.push(c);
            }
        }
        // Leftmost-longest: `call me` over `call`; a word inside a longer one is of the same
        // context (`tel` in `telephone`, `né` in `née`).
        let ac = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&words)
            .ok()?;
        Some((ac, contexts))
    });

/// Whether a context word of `ctx` stands in `text` between [`BEFORE`] bytes before `start`
/// and [`AFTER`] bytes after `end`.
pub(super) fn near(text: &str, start: usize, end: usize, ctx: Context) -> bool {
    nearby(text, start, end) & ctx.bit() != 0
}

impl Context {
    /// This context's bit in a [`nearby`] mask.
    pub(super) fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The contexts whose words stand in `text` between [`BEFORE`] bytes before `start` and
/// [`AFTER`] bytes after `end`, as a mask of [`Context::bit`]s: one pass of one automaton.
pub(super) fn nearby(text: &str, start: usize, end: usize) -> u8 {
    let Some((ac, contexts)) = WORDS.as_ref() else {
        return 0;
    };
    let from = start.saturating_sub(BEFORE);
    let to = (end + AFTER).min(text.len());
    let b = text.as_bytes();
    let letter = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic() || *c >= 0x80);
    ac.find_iter(&b[from..to])
        .filter(|m| {
            !letter((from + m.start()).checked_sub(1).and_then(|i| b.get(i)))
                && !letter(b.get(from + m.end()))
        })
        .fold(0, |mask, m| mask | contexts[m.pattern().as_usize()].bit())
}

/// Farthest back a table's header row is looked for.
const TABLE: usize = 16 * 1024;
/// Longest table row read before a candidate.
const ROW: usize = 512;

/// The header of the comma-, semicolon- or tab-separated table whose row is the line
/// `text[line_start..line_end]`: the first of the lines above with as many separators, and the
/// separator.
fn table_header(text: &[u8], line_start: usize, line_end: usize) -> Option<(&[u8], u8)> {
    let line = &text[line_start..line_end];
    let sep = *[b',', b';', b'\t']
        .iter()
        .max_by_key(|&&s| line.iter().filter(|&&c| c == s).count())?;
    let seps = |l: &[u8]| l.iter().filter(|&&c| c == sep).count();
    let count = seps(line);
    if count == 0 {
        return None;
    }
    let mut header = None;
    let mut at = line_start;
    while at > 0 && line_start - at < TABLE {
        let prev_end = at - 1;
        let prev_start = memchr::memrchr(b'\n', &text[prev_end.saturating_sub(ROW)..prev_end])
            .map_or(prev_end.saturating_sub(ROW), |p| {
                prev_end.saturating_sub(ROW) + p + 1
            });
        let prev = &text[prev_start..prev_end];
        if seps(prev) != count {
            break;
        }
        header = Some(prev);
        at = prev_start;
    }
    header.map(|h| (h, sep))
}

/// The line around `at`, when it starts at most [`ROW`] bytes before it.
fn line_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let from = at.saturating_sub(ROW);
    let start = match memchr::memrchr(b'\n', &b[from..at]) {
        Some(p) => from + p + 1,
        None if from == 0 => 0,
        None => return None,
    };
    let end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |p| at + p);
    Some((start, end))
}

/// Whether some line of `text[start..end]` is a row of a table with a header (where a
/// column name may give a cell its context).
pub(super) fn in_table(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let mut at = start;
    loop {
        let Some((s, e)) = line_at(b, at) else {
            return false;
        };
        if s > 0 && table_header(b, s, e).is_some() {
            return true;
        }
        if e >= end {
            return false;
        }
        at = e + 1;
    }
}

/// Whether `text[start..end]` is a cell of a comma-, semicolon- or tab-separated table whose
/// header names its column with a word of `ctx` (`name,ssn` above `Jane Doe,457555462`).
pub(super) fn column_says(text: &str, start: usize, end: usize, ctx: Context) -> bool {
    let b = text.as_bytes();
    let Some((line_start, line_end)) = line_at(b, start) else {
        return false;
    };
    if end > line_end {
        return false;
    }
    let Some((header, sep)) = table_header(b, line_start, line_end) else {
        return false;
    };
    let column = b[line_start..start].iter().filter(|&&c| c == sep).count();
    let Some(cell) = header.split(|&c| c == sep).nth(column) else {
        return false;
    };
    let cell = String::from_utf8_lossy(cell).to_lowercase();
    let cell = cell.trim().trim_matches('"');
    ctx.words().iter().any(|w| {
        cell == *w
            || cell.replace(['_', '-'], " ") == *w
            || cell.split([' ', '_', '-']).any(|p| p == *w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_must_stand_alone_and_near() {
        let t = "my SSN is 782323220 ok";
        let s = t.find("782").expect("value");
        assert!(near(t, s, s + 9, Context::Ssn));
        let t = "classn 782323220";
        let s = t.find("782").expect("value");
        assert!(!near(t, s, s + 9, Context::Ssn), "inside a word");
        let far = format!("SSN {} 782323220", "x".repeat(80));
        let s = far.find("782").expect("value");
        assert!(!near(&far, s, s + 9, Context::Ssn), "too far");
        let t = "782323220 (SSN)";
        assert!(near(t, 0, 9, Context::Ssn), "after");
        let t = "meeting at 0612345678";
        let s = t.find("06").expect("value");
        assert!(
            !near(t, s, s + 10, Context::TaxDe),
            "`tin` inside `meeting`"
        );
        let t = "Geburtsdatum: 12.03.1985";
        assert!(near(t, 14, 24, Context::Birth));
        let t = "née le 12 mars 1985";
        assert!(near(t, 7, 19, Context::Birth));
    }
}
