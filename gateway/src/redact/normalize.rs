//! Folding text before detection, so that zero-width characters and full-width forms cannot hide
//! a value: `jane＠example．com` and `4111\u{200B}1111…` are detected like their plain forms.
//! A byte map leads every position of the folded text back to the original, so operators
//! replace the original span (zero-width characters included).

use std::borrow::Cow;

/// Folded text and a map from each of its bytes to the offset of the original character it came
/// from. Text that needed no folding (the common case: plain ASCII, or text without the folded
/// characters) is borrowed, and its map is the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded<'a> {
    /// The folded text.
    pub text: Cow<'a, str>,
    /// `map[i]` = original byte offset of folded byte `i`; `map[text.len()]` = original length.
    /// `None`: the identity.
    map: Option<Vec<usize>>,
}

impl Folded<'_> {
    /// The original byte range of a folded range.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let Some(map) = &self.map else {
            return (start, end);
        };
        let s = map[start];
        // The end maps to the start of the next original character, so a match's last
        // character is replaced whole (and trailing zero-width characters inside it too).
        let e = if end < map.len() {
            map[end]
        } else {
            map[map.len() - 1]
        };
        (s, e)
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

/// Folds `s`: drops invisible characters, maps full-width ASCII forms (U+FF01–U+FF5E) and the
/// ideographic space to ASCII. Text without such characters is borrowed as is (cheap path: an
/// ASCII check, no copy, no map).
pub fn fold(s: &str) -> Folded<'_> {
    if s.is_ascii() || !s.chars().any(is_folded) {
        return Folded {
            text: Cow::Borrowed(s),
            map: None,
        };
    }
    let mut text = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len() + 1);
    for (i, c) in s.char_indices() {
        if is_invisible(c) {
            continue;
        }
        let folded = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        };
        let before = text.len();
        text.push(folded);
        map.extend(std::iter::repeat_n(i, text.len() - before));
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
}
