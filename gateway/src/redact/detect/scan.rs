//! The candidate scan: byte classes that find trigger bytes (digits, `@`, `:`) 32 bytes at a
//! time, the words of context kept around them, and what a window holds, so each detector runs
//! only on windows it could match.

/// What a window must hold for a detector to run on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    /// At least this many ASCII digits.
    Digits(usize),
    /// At least this many digits and this many capitals.
    Upper(usize, usize),
    /// A digit, and a run of 20 or more token characters (letters, digits, `_`, `-`).
    LongToken,
    /// A run of digits of one of these lengths (bit `n`: `n` digits in a row).
    Run(u32),
    /// Runs of digits of all of these lengths, and this many digits.
    Runs(u32, usize),
    /// A run of six to nine letters and digits holding a digit.
    Code,
    /// Two capitals then two digits, and digits for the rest.
    Iban,
    /// Nine digits and a `-`.
    Ssn,
    /// Four digits and three dots.
    Ipv4,
    /// An `@`.
    At,
    /// An `@` and a byte beyond ASCII.
    AtUnicode,
    /// A `:`.
    Colon,
    /// A `:` or `=` (a name and its value).
    Assign,
    /// A digit, a password word and a word such as `is` (`my password is …`).
    Said,
    /// A secret prefix (found by the prefix automaton).
    Prefix,
    /// Runs on the whole text (PEM blocks from their header; operator-defined patterns).
    Whole,
}

/// What a window holds, counted in one pass.
#[derive(Debug, Default)]
pub(super) struct Summary {
    digits: usize,
    upper: usize,
    long_token: bool,
    /// Bit `n`: a run of exactly `n` digits (31: 31 or more).
    runs: u32,
    code: bool,
    said: bool,
    password: bool,
    dots: usize,
    dash: bool,
    at: bool,
    colon: bool,
    equals: bool,
    iban: bool,
    non_ascii: bool,
    prefix: bool,
}

impl Summary {
    pub(super) fn of(w: &[u8], prefix: bool) -> Self {
        let mut s = Self::default();
        let mut run = 0;
        let (mut digit_run, mut alnum_run, mut alnum_digit) = (0u32, 0usize, false);
        for (i, &c) in w.iter().enumerate() {
            if c.is_ascii_digit() {
                digit_run += 1;
            } else if digit_run > 0 {
                s.runs |= 1 << digit_run.min(31);
                digit_run = 0;
            }
            if c.is_ascii_alphanumeric() {
                alnum_run += 1;
                alnum_digit |= c.is_ascii_digit();
            } else {
                if alnum_run >= 2 && !alnum_digit {
                    let word = &w[i - alnum_run..i];
                    s.said |= ["is", "ist", "est", "es", "lautet"]
                        .iter()
                        .any(|v| word.eq_ignore_ascii_case(v.as_bytes()));
                    // `password`, `passe`, `Passwort`, `Kennwort`, `contraseña`.
                    s.password |= ["pass", "kennw", "contras"].iter().any(|p| {
                        word.len() >= p.len() && word[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                    });
                }
                s.code |= alnum_digit && (6..=9).contains(&alnum_run);
                (alnum_run, alnum_digit) = (0, false);
            }
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
                run += 1;
                s.long_token |= run >= 20;
            } else {
                run = 0;
            }
            if c.is_ascii_uppercase() {
                s.upper += 1;
            }
            match c {
                b'0'..=b'9' => s.digits += 1,
                b'.' => s.dots += 1,
                b'-' => s.dash = true,
                b'@' => s.at = true,
                b':' => s.colon = true,
                b'=' => s.equals = true,
                0x80.. => s.non_ascii = true,
                b'A'..=b'Z' | b'a'..=b'z' if !s.iban => {
                    s.iban = w.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
                        && w.get(i + 2).is_some_and(u8::is_ascii_digit)
                        && w.get(i + 3).is_some_and(u8::is_ascii_digit);
                }
                _ => {}
            }
        }
        if digit_run > 0 {
            s.runs |= 1 << digit_run.min(31);
        }
        s.code |= alnum_digit && (6..=9).contains(&alnum_run);
        s.prefix = prefix;
        s
    }

    pub(super) fn allows(&self, needs: Needs) -> bool {
        match needs {
            Needs::Digits(n) => self.digits >= n,
            Needs::Upper(d, u) => self.digits >= d && self.upper >= u,
            Needs::LongToken => self.long_token && self.digits > 0,
            Needs::Run(lengths) => self.runs & lengths != 0,
            Needs::Runs(lengths, n) => self.runs & lengths == lengths && self.digits >= n,
            Needs::Code => self.code,
            Needs::Iban => self.iban && self.digits >= 2,
            Needs::Ssn => self.dash && self.digits >= 9,
            Needs::Ipv4 => self.dots >= 3 && self.digits >= 4,
            Needs::At => self.at,
            Needs::AtUnicode => self.at && self.non_ascii,
            Needs::Colon => self.colon,
            Needs::Assign => self.colon || self.equals,
            Needs::Said => self.said && self.password && self.digits > 0,
            Needs::Prefix => self.prefix,
            Needs::Whole => false,
        }
    }
}

/// Byte classes of the candidate scan.
pub(super) const WS: u8 = 1;
pub(super) const DIGIT: u8 = 2;
pub(super) const AT: u8 = 4;
pub(super) const COLON: u8 = 8;
pub(super) const EQUALS: u8 = 16;

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
    t[b'=' as usize] = EQUALS;
    t
};

/// Words kept on either side of a word holding a trigger.
const CONTEXT_WORDS: usize = 2;

pub(super) fn is_ws(c: u8) -> bool {
    CLASS[usize::from(c)] & WS != 0
}

/// The first byte at or after `from` whose class is in `triggers`. Runs of 32 bytes without a
/// digit, `:` or `@` are skipped with one vectorized test each.
pub(super) fn next_trigger(b: &[u8], from: usize, triggers: u8) -> Option<usize> {
    const LANE: usize = 32;
    let mut i = from;
    while i + LANE <= b.len() {
        let chunk = &b[i..i + LANE];
        // Digits, `:` and `=` are within 0x30..=0x3D; `@` is 0x40.
        let maybe = chunk.iter().fold(false, |a, &c| {
            a | (c.wrapping_sub(b'0') <= 13) | (c == b'@')
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
pub(super) fn words_before(b: &[u8], start: usize) -> usize {
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
pub(super) fn words_after(b: &[u8], end: usize) -> usize {
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
