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
mod tests {
    use super::*;

    #[test]
    fn folds_and_maps_back() {
        let s = "mail: jane\u{FF20}example\u{FF0E}com!";
        let f = fold(s);
        assert_eq!(f.text, "mail: jane@example.com!");
        let start = f.text.find("jane").expect("start");
        let end = start + "jane@example.com".len();
        let (os, oe) = f.original(start, end);
        assert_eq!(&s[os..oe], "jane\u{FF20}example\u{FF0E}com");
    }

    #[test]
    fn drops_invisible_characters() {
        let s = "4111\u{200B}1111\u{200D}1111\u{FEFF}1111 end";
        let f = fold(s);
        assert_eq!(f.text, "4111111111111111 end");
        let (os, oe) = f.original(0, 16);
        assert_eq!(&s[os..oe], "4111\u{200B}1111\u{200D}1111\u{FEFF}1111");
    }

    #[test]
    fn plain_text_is_unchanged() {
        let f = fold("hello");
        assert_eq!(f.text, "hello");
        assert_eq!(f.original(1, 3), (1, 3));
    }

    /// `s` folded, and the original text of every folded character (an escape whole).
    fn pieces(s: &str) -> (String, Vec<&str>) {
        let f = fold(s);
        let pieces = f
            .text
            .char_indices()
            .map(|(i, c)| {
                let (a, b) = f.original(i, i + c.len_utf8());
                &s[a..b]
            })
            .collect();
        (f.text.into_owned(), pieces)
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(fold("jane%40example.com").text, "jane@example.com");
        assert_eq!(fold("%2b1%20415").text, "+1 415");
        assert_eq!(fold("a+b").text, "a+b");
        assert_eq!(
            fold("caf%C3%A9 m%C3%BCller %e2%82%ac").text,
            "café müller %e2%82%ac"
        );
        assert_eq!(fold("%F0%A0%80%80").text, "\u{20000}");
        // Not a letter or digit: stays.
        assert_eq!(fold("%F0%9F%98%80").text, "%F0%9F%98%80");
        // Double encoding, up to the nesting bound.
        assert_eq!(fold("jane%2540x %252540 %25252540").text, "jane@x @ @");
        // Past the bound, the innermost level stays escaped.
        assert_eq!(fold("%2525252540").text, "%40");
        // Punctuation that is not part of values stays encoded.
        assert_eq!(
            fold("o%27brien%2Cx%3D1%26y%3F%23%22%3C").text,
            "o%27brien%2Cx%3D1%26y%3F%23%22%3C"
        );
        assert_eq!(fold("%2527 %2540").text, "%27 @");
        let (text, p) = pieces("a%40b%C3%A9");
        assert_eq!(text, "a@bé");
        assert_eq!(p, ["a", "%40", "b", "%C3%A9"]);
    }

    #[test]
    fn decodes_html_references() {
        assert_eq!(
            fold("jane&#64;a&#x40;b&#X40;c&commat;d&#0064;e").text,
            "jane@a@b@c@d@e"
        );
        assert_eq!(
            fold("&lpar;&rpar;&plus;&period;&hyphen;&dash;&minus;&colon;&sol;").text,
            "()+.---:/"
        );
        assert_eq!(
            fold("4111&nbsp;1111 &lt;&gt;&quot;&apos;").text,
            "4111 1111 <>\"'"
        );
        assert_eq!(fold("Tom &amp; Jerry").text, "Tom & Jerry");
        assert_eq!(fold("jane&amp;#64;x &amp;amp;commat;").text, "jane@x @");
        assert_eq!(fold("&#xFF20;&#8203;!").text, "@!");
        let (text, p) = pieces("x&#64;&amp;commat;");
        assert_eq!(text, "x@@");
        assert_eq!(p, ["x", "&#64;", "&amp;commat;"]);
    }

    #[test]
    fn decodes_backslash_escapes() {
        assert_eq!(fold(r"jane\u0040example\u002Ecom").text, "jane@example.com");
        assert_eq!(
            fold(r"\uD83D\uDE00 \ud83d\ude00").text,
            "\u{1F600} \u{1F600}"
        );
        assert_eq!(fold(r"jane\\u0040x \\\\u0040 \x40").text, "jane@x @ @");
        assert_eq!(fold(r"\u00e9\u20AC").text, "é€");
        let (text, p) = pieces(r"a\\u0040\uD83D\uDE00");
        assert_eq!(text, "a@\u{1F600}");
        assert_eq!(p, ["a", r"\\u0040", r"\uD83D\uDE00"]);
    }

    #[test]
    fn text_without_a_valid_escape_stays_borrowed() {
        for s in [
            "50% off, 100%",
            "Tom & Jerry & co; &",
            r"C:\path\to\file \n \t \u12 \uXYZW \x4",
            "&amp &#; &#x; &#64 &unknown; &AMP;",
            "%zz %4 %",
            "caf\u{e9} \u{e0} la cr\u{e8}me",
        ] {
            let f = fold(s);
            assert!(matches!(f.text, Cow::Borrowed(_)), "{s:?}");
            assert_eq!(f.map, None, "{s:?}");
        }
    }

    #[test]
    fn what_is_not_decoded_stays_as_written() {
        for s in [
            // Control characters.
            "%0A%00%7F&#0;&#10;&#x9;\\u0000\\u000a\\x0a%C2%80",
            // Not text: lone surrogates, out of range, too many digits, broken UTF-8.
            r"\uD83D \uDE00 \uD83Dx \uD83D\u0041",
            "&#xD800; &#1114112; &#99999999999; &#000000064; &#x110000;",
            "%C3 %C3%28 %E2%82 %FF %80 %C0%80",
            // Too deep.
            "%2525252540 &amp;amp;amp;amp;#64; \\\\\\\\\\\\\\\\\\u0040",
            // Incomplete at the end.
            "%4",
            "&#6",
            "&comma",
            r"\u00",
            "%",
            "&",
            "\\",
            "&#",
            "&#x",
        ] {
            let f = fold(s);
            for (i, c) in f.text.char_indices() {
                // Whatever was decoded maps back to text that is not one of these controls.
                assert!(!c.is_control() || s.contains(c), "{s:?}: {i}");
            }
        }
        assert_eq!(fold("%0A%00%7F").text, "%0A%00%7F");
        assert_eq!(fold("&#0;&#10;").text, "&#0;&#10;");
        assert_eq!(
            fold(r"\uD83D \uDE00 \uD83Dx").text,
            r"\uD83D \uDE00 \uD83Dx"
        );
        assert_eq!(fold(r"\uD83D\u0041").text, r"\uD83DA");
        assert_eq!(
            fold("&#xD800; &#1114112; &#99999999999;").text,
            "&#xD800; &#1114112; &#99999999999;"
        );
        assert_eq!(fold("&#000000064;").text, "&#000000064;");
        assert_eq!(fold("&#00000064;").text, "@");
        assert_eq!(
            fold("%C3 %C3%28 %FF %80 %C0%80").text,
            "%C3 %C3( %FF %80 %C0%80"
        );
        // The innermost level past the bound stays escaped.
        assert_eq!(fold("&amp;amp;amp;amp;#64;").text, "&#64;");
        let nine = format!("{}u0040", "\\".repeat(9));
        assert_eq!(fold(&nine).text, format!("{}@", "\\"));
    }

    #[test]
    fn folded_ranges_cover_whole_escapes() {
        let s = "a%40b\\u0040c&#64;d\u{200B}e";
        let f = fold(s);
        assert!(f.changed());
        assert_eq!(f.text, "a@b@c@de");
        // Exact, and from inside an escape (outward).
        assert_eq!(f.folded(0, s.len()), (0, f.text.len()));
        assert_eq!(f.folded(1, 4), (1, 2));
        assert_eq!(f.folded(2, 5), (1, 3));
        let u = s.find('u').expect("u");
        assert_eq!(f.folded(u, u + 5), (3, 4));
        for a in 0..=s.len() {
            for b in a..=s.len() {
                let (x, y) = f.folded(a, b);
                assert!(x <= y && f.text.is_char_boundary(x) && f.text.is_char_boundary(y));
                let (oa, ob) = f.original(x, y);
                assert!(oa <= a && (b <= ob || y == f.text.len()), "{a}..{b}");
            }
        }
        assert!(fold("x\u{FF20}y").changed());
        assert!(!fold("plain").changed());
    }

    #[test]
    fn open_escapes_at_the_end() {
        for s in [
            "%",
            "%4",
            "%2",
            "%25",
            "%2525",
            "%C3",
            "%C3%",
            "%C3%A",
            "&",
            "&#",
            "&#6",
            "&#64",
            "&#x",
            "&#x4",
            "&c",
            "&com",
            "&commat",
            "&amp;",
            "&amp;#6",
            "\\",
            "\\\\",
            "\\u",
            "\\u00",
            "\\u004",
            "\\x4",
            "\\uD83D",
            "\\uD83D\\",
            "\\uD83D\\uDE0",
        ] {
            let text = format!("mail jane{s}");
            assert_eq!(open_escape(&text), Some(9), "{text:?}");
        }
        for s in [
            "jane",
            "%40",
            "&#64;",
            "&commat;",
            "\\u0040",
            "50% ",
            "& ",
            "&co ",
            "&xyz",
            "\\n",
            "%zz",
            "&#99999999999",
            "\\uD83Dx",
        ] {
            let text = format!("mail jane{s}");
            assert_eq!(open_escape(&text), None, "{text:?}");
        }
    }

    /// No input panics: every prefix and every slice of escape-laden text folds, and the map
    /// lands on character boundaries of the original.
    #[test]
    fn any_input_folds_and_maps_onto_boundaries() {
        let s = "é%40&#64;&#x1F600;\\uD83D\\uDE00%F0%9F%98%80\u{200B}\u{FF20}&amp;#6%25\\\\u00";
        for a in (0..=s.len()).filter(|&a| s.is_char_boundary(a)) {
            for b in (a..=s.len()).filter(|&b| s.is_char_boundary(b)) {
                let t = &s[a..b];
                let f = fold(t);
                let _ = open_escape(t);
                for (i, _) in f.text.char_indices().chain([(f.text.len(), ' ')]) {
                    let (x, y) = f.original(i, i);
                    assert!(t.is_char_boundary(x) && t.is_char_boundary(y), "{t:?} {i}");
                }
            }
        }
    }
}
