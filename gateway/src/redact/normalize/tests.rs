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
