//! Folding text before detection, so that invisible characters, full-width forms and common
//! encodings cannot hide a value: `jane＠example．com`, `4111\u{200B}1111…`,
//! `jane%40example.com`, `jane&#64;example.com` and `jane\u0040example.com` (the backslash
//! written out, as in pasted JSON) are detected like their plain forms. A byte map leads every
//! position of the folded text back to the original, so operators replace the original span:
//! zero-width characters and whole escape sequences included.
//!
//! The escapes decoded, each to one character (anything else stays as written):
//! - percent-encoding: `%XX` (hex digits in either case) when it is a character values are
//!   made of or separated by (letters, digits, space and `@ . + - _ : / ( ) %`), and a whole
//!   UTF-8 sequence such as `%C3%BC` when it is a letter or digit (or a character folded below);
//!   `+` is not a space. Other punctuation stays as written: `%` is itself a character of
//!   email addresses, so `o%27brien%40example.com` reads `o%27brien@example.com`, matched
//!   whole, where a decoded `'` would cut it;
//! - HTML character references, with their `;`: `&#64;`, `&#x40;`, and the few named ones in
//!   [`NAMED`];
//! - `\uXXXX` as JSON and JavaScript write it (a surrogate pair `\uD83D\uDE00` to one character,
//!   a lone surrogate stays as written), and `\xXX` when it is a printable ASCII character;
//! - an escape escaped again, up to [`MAX_NEST`] more times: `%2540`, `&amp;#64;`,
//!   `\\u0040` (a run of up to [`MAX_BACKSLASHES`] backslashes).
//!
//! Control characters are never decoded (`%0A`, `&#0;`, `\u0000` stay as written), and a
//! decoded character is folded like a written one (`&#xFF20;` is `@`, `%E2%80%8B` vanishes).
//! Decoding depends on the escape alone, never on the text around it, so a stream cut anywhere
//! decodes as the whole text does. A decoded `@`, `:` or `/` can end a value its written form
//! holds (the password of `postgres://app:p%40ss@db`): when [`Folded::changed`], the caller
//! looks for values in the written text too.

use std::borrow::Cow;

/// Folded text and a map from each of its bytes to the offset of the original character it came
/// from (dropped characters count with the character after them). Text that needed no folding
/// (the common case: plain ASCII, or text without the folded characters and without escapes) is
/// borrowed, and its map is the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded<'a> {
    /// The folded text.
    pub text: Cow<'a, str>,
    /// `map[i]` = original byte offset of folded byte `i` (for a decoded character, the start
    /// of its escape; for a character after dropped ones, the first of those);
    /// `map[text.len()]` = original length. `None`: the identity.
    map: Option<Vec<usize>>,
}

impl Folded<'_> {
    /// The original byte range of a folded range.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let Some(map) = &self.map else {
            return (start, end);
        };
        let s = map[start];
        // The end maps to the start of the next folded character, so a match's last character
        // is replaced whole (a whole escape; zero-width characters inside the match too).
        let e = if end < map.len() {
            map[end]
        } else {
            map[map.len() - 1]
        };
        (s, e)
    }

    /// The folded range that covers an original range: every folded character whose original
    /// overlaps it (a whole escape when the range starts or ends inside one).
    pub fn folded(&self, start: usize, end: usize) -> (usize, usize) {
        let Some(map) = &self.map else {
            return (start, end);
        };
        // The last character whose original starts at or before `start`.
        let mut s = map.partition_point(|&m| m <= start).saturating_sub(1);
        while !self.text.is_char_boundary(s) {
            s -= 1;
        }
        let e = map.partition_point(|&m| m < end).max(s);
        (s, e)
    }

    /// Whether folding changed the text: a value the written text holds may then read
    /// differently in the folded text.
    pub fn changed(&self) -> bool {
        self.map.is_some()
    }
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

fn is_folded(c: char) -> bool {
    is_invisible(c) || ('\u{FF01}'..='\u{FF5E}').contains(&c) || c == '\u{3000}'
}

/// `c` folded: `None` for an invisible character, ASCII for a full-width form.
fn fold_char(c: char) -> Option<char> {
    match c {
        _ if is_invisible(c) => None,
        '\u{FF01}'..='\u{FF5E}' => Some(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
        '\u{3000}' => Some(' '),
        _ => Some(c),
    }
}

/// The longest escape in bytes: an unfinished escape at the end of a stream's text starts at
/// most this far back.
pub const MAX_ESCAPE: usize = 32;

/// Times an escape may itself be escaped again (`%2540`, `&amp;#64;`).
pub const MAX_NEST: usize = 3;

/// Longest run of backslashes before `u` or `x` (`\\u0040` is `\u0040` escaped again).
pub const MAX_BACKSLASHES: usize = 8;

/// Digits of a numeric character reference, leading zeros included.
const MAX_REF_DIGITS: usize = 8;

/// The named character references decoded: those that can stand inside a value detectors look
/// for, or around it. Each is decoded to the ASCII character detectors expect (`&nbsp;` to a
/// space, the dashes to `-`).
pub const NAMED: [(&str, char); 25] = [
    ("amp", '&'),
    ("apos", '\''),
    ("bsol", '\\'),
    ("colon", ':'),
    ("comma", ','),
    ("commat", '@'),
    ("dash", '-'),
    ("equals", '='),
    ("excl", '!'),
    ("gt", '>'),
    ("hyphen", '-'),
    ("lowbar", '_'),
    ("lpar", '('),
    ("lt", '<'),
    ("minus", '-'),
    ("nbsp", ' '),
    ("num", '#'),
    ("percnt", '%'),
    ("period", '.'),
    ("plus", '+'),
    ("quest", '?'),
    ("quot", '"'),
    ("rpar", ')'),
    ("semi", ';'),
    ("sol", '/'),
];

/// Reads the bytes of a candidate escape, and remembers whether a read went past the end of the
/// text: then more text could still change what the escape is.
struct Reader<'a> {
    b: &'a [u8],
    open: bool,
}

impl Reader<'_> {
    fn get(&mut self, i: usize) -> Option<u8> {
        let c = self.b.get(i).copied();
        self.open |= c.is_none();
        c
    }

    /// `n` hex digits at `i`, read up to the first that is not one.
    fn hex(&mut self, i: usize, n: usize) -> Option<u32> {
        let mut v = 0;
        for k in 0..n {
            v = v * 16 + char::from(self.get(i + k)?).to_digit(16)?;
        }
        Some(v)
    }
}

fn printable(b: u8) -> bool {
    (0x20..=0x7E).contains(&b)
}

/// The ASCII characters a `%XX` is decoded to.
fn percent_decoded(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" @.+-_:/()%".contains(&b)
}

/// The escape at the start of `b`: its character and its length, if it is one; and whether more
/// text after `b` could still make it one, or a longer one.
fn escape(b: &[u8]) -> (Option<(char, usize)>, bool) {
    let mut r = Reader { b, open: false };
    let d = match b.first() {
        Some(b'%') => percent(&mut r),
        Some(b'&') => reference(&mut r, 1, 0),
        Some(b'\\') => backslash(&mut r),
        _ => None,
    };
    (d, r.open)
}

/// `%XX`: one of the ASCII characters decoded, or the lead byte of a UTF-8 sequence of `%XX`.
fn percent(r: &mut Reader<'_>) -> Option<(char, usize)> {
    let (v, n) = percent_pair(r, 1, 0)?;
    if percent_decoded(v) {
        return Some((char::from(v), 1 + n));
    }
    let more = match v {
        0xC2..=0xDF => 1,
        0xE0..=0xEF => 2,
        0xF0..=0xF4 => 3,
        _ => return None,
    };
    let mut bytes = [v, 0, 0, 0];
    for (k, byte) in bytes.iter_mut().enumerate().take(more + 1).skip(1) {
        if r.get(3 * k)? != b'%' {
            return None;
        }
        *byte = u8::try_from(r.hex(3 * k + 1, 2)?).ok()?;
    }
    let c = std::str::from_utf8(&bytes[..=more]).ok()?.chars().next()?;
    (c.is_alphanumeric() || is_folded(c)).then_some((c, 3 * (more + 1)))
}

/// The two hex digits at `j` of a `%XX`, and how many bytes they take: `25` (`%`) followed by
/// more hex digits is a `%` escaped again, taken when it ends in an ASCII character decoded.
fn percent_pair(r: &mut Reader<'_>, j: usize, depth: usize) -> Option<(u8, usize)> {
    let v = u8::try_from(r.hex(j, 2)?).ok()?;
    if v == b'%' && depth < MAX_NEST {
        if let Some((w, n)) = percent_pair(r, j + 2, depth + 1) {
            if percent_decoded(w) {
                return Some((w, 2 + n));
            }
        }
    }
    Some((v, 2))
}

/// An HTML character reference whose name or number starts at `j`, `;` included; `&amp;`
/// followed by another reference is that reference escaped again.
fn reference(r: &mut Reader<'_>, j: usize, depth: usize) -> Option<(char, usize)> {
    if r.get(j)? == b'#' {
        let (radix, from) = match r.get(j + 1)? {
            b'x' | b'X' => (16, j + 2),
            _ => (10, j + 1),
        };
        let mut v: u32 = 0;
        let mut k = from;
        loop {
            let c = r.get(k)?;
            if c == b';' && k > from {
                break;
            }
            if k - from == MAX_REF_DIGITS {
                return None;
            }
            v = v * radix + char::from(c).to_digit(radix)?;
            k += 1;
        }
        let c = char::from_u32(v)?;
        return (!c.is_control()).then_some((c, k + 1));
    }
    // The name is read only while it may still be one of the table's, so that a stream holds
    // back `&com` (maybe `&commat;`) but not `&co` followed by a space.
    let mut k = j;
    loop {
        let c = r.get(k)?;
        if c == b';' {
            break;
        }
        let name = r.b.get(j..=k)?;
        if !NAMED.iter().any(|(n, _)| n.as_bytes().starts_with(name)) {
            return None;
        }
        k += 1;
    }
    let name = r.b.get(j..k)?;
    let &(_, c) = NAMED.iter().find(|(n, _)| n.as_bytes() == name)?;
    if c == '&' && depth < MAX_NEST {
        if let Some(d) = reference(r, k + 1, depth + 1) {
            return Some(d);
        }
    }
    Some((c, k + 1))
}

/// The end of a run of 1 to [`MAX_BACKSLASHES`] backslashes at `j`.
fn backslashes(r: &mut Reader<'_>, j: usize) -> Option<usize> {
    let mut k = j;
    while r.get(k)? == b'\\' {
        k += 1;
        if k - j > MAX_BACKSLASHES {
            return None;
        }
    }
    (k > j).then_some(k)
}

/// `\uXXXX` (a surrogate pair as two of them) or `\xXX`, behind a run of backslashes.
fn backslash(r: &mut Reader<'_>) -> Option<(char, usize)> {
    let k = backslashes(r, 0)?;
    match r.get(k)? {
        b'x' => {
            let v = u8::try_from(r.hex(k + 1, 2)?).ok()?;
            printable(v).then_some((char::from(v), k + 3))
        }
        b'u' => {
            let u = r.hex(k + 1, 4)?;
            if (0xD800..=0xDBFF).contains(&u) {
                // The low half follows as its own escape; a lone half is not a character.
                let k2 = backslashes(r, k + 5)?;
                if r.get(k2)? != b'u' {
                    return None;
                }
                let lo = r.hex(k2 + 1, 4)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return None;
                }
                let c = char::from_u32(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))?;
                return Some((c, k2 + 5));
            }
            let c = char::from_u32(u)?;
            (!c.is_control()).then_some((c, k + 5))
        }
        _ => None,
    }
}

/// Where the first escape of `b` starts.
fn first_escape(b: &[u8]) -> Option<usize> {
    memchr::memchr3_iter(b'%', b'&', b'\\', b).find(|&i| escape(&b[i..]).0.is_some())
}

/// Where an escape that more text could still complete or lengthen starts, near the end of
/// `text` (`jane%4`, `&#6`, `\u00`, `%25`): a stream holds it back with the value it may end.
pub fn open_escape(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let from = b.len().saturating_sub(MAX_ESCAPE);
    memchr::memchr3_iter(b'%', b'&', b'\\', &b[from..])
        .map(|i| from + i)
        .find(|&i| escape(&b[i..]).1)
}

/// Folds `s`: decodes escapes, drops invisible characters, maps full-width ASCII forms
/// (U+FF01–U+FF5E) and the ideographic space to ASCII. Text with none of these is borrowed as
/// is (cheap path: a search for `%`, `&` and `\` and an ASCII check, no copy, no map).
pub fn fold(s: &str) -> Folded<'_> {
    let b = s.as_bytes();
    if first_escape(b).is_none() && (s.is_ascii() || !s.chars().any(is_folded)) {
        return Folded {
            text: Cow::Borrowed(s),
            map: None,
        };
    }
    let mut text = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len() + 1);
    let special = |c: &u8| *c >= 0x80 || matches!(c, b'%' | b'&' | b'\\');
    // Where the characters dropped since the last folded character start.
    let mut dropped = None;
    let mut i = 0;
    while i < b.len() {
        // A run of bytes that stay as they are.
        let run = b[i..].iter().position(special).map_or(b.len(), |n| i + n);
        if run > i {
            text.push_str(&s[i..run]);
            map.push(dropped.take().unwrap_or(i));
            map.extend(i + 1..run);
            i = run;
            continue;
        }
        let (c, next) = if b[i] < 0x80 {
            match escape(&b[i..]).0 {
                Some((c, n)) => (c, i + n),
                None => (char::from(b[i]), i + 1),
            }
        } else {
            // `i` is on a character boundary: only whole characters and escapes (ASCII) are
            // stepped over.
            let Some(c) = s.get(i..).and_then(|t| t.chars().next()) else {
                break;
            };
            (c, i + c.len_utf8())
        };
        match fold_char(c) {
            Some(c) => {
                let before = text.len();
                text.push(c);
                let at = dropped.take().unwrap_or(i);
                map.extend(std::iter::repeat_n(at, text.len() - before));
            }
            None => {
                dropped.get_or_insert(i);
            }
        }
        i = next;
    }
    map.push(s.len());
    Folded {
        text: Cow::Owned(text),
        map: Some(map),
    }
}

#[cfg(test)]
mod tests;
