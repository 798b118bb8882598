//! Values written encoded, as they reach the gateway inside URLs, HTML and JSON: `%40`,
//! `&#64;`, `&#x40;`, `&commat;`, a literal `\u0040` for the `@` of an email address; `%2B`,
//! `&#43;` and `%20` in a phone number. The label covers the whole encoded value.

use crate::entity::{EMAIL, PHONE};
use crate::personal::{email, phone};
use crate::rng::Rng;
use crate::{render, Kind, Sample};

/// How a template writes its value.
#[derive(Clone, Copy)]
enum Encoding {
    /// Percent-encoding (`%40`, `%2B`, `%20`).
    Url,
    /// An HTML character reference for `@` (`&#64;`, `&#x40;`, `&commat;`) and `+` (`&#43;`).
    Html,
    /// A JSON `\u0040` escape, as a serialiser that escapes `@` writes it.
    Json,
}

const EMAIL_T: [(&str, Encoding); 10] = [
    ("GET /api/v1/users?email={} HTTP/1.1", Encoding::Url),
    (
        "https://shop.example.com/unsubscribe?e={}&list=news",
        Encoding::Url,
    ),
    (
        "curl 'https://api.example.com/search?q={}&limit=5'",
        Encoding::Url,
    ),
    ("login_hint={}&prompt=consent", Encoding::Url),
    ("<a href=\"mailto:{}\">Write to us</a>", Encoding::Html),
    ("<p>Kontakt: {}</p>", Encoding::Html),
    ("Contact: {} (copied from the web page)", Encoding::Html),
    ("{\"email\": \"{}\"}", Encoding::Json),
    (
        "{\"to\": [\"{}\"], \"subject\": \"Invoice\"}",
        Encoding::Json,
    ),
    (
        "data: {\"delta\": \"Reach me at {} please\"}",
        Encoding::Json,
    ),
];

const PHONE_T: [(&str, Encoding); 4] = [
    ("GET /callback?phone={}&sms=1 HTTP/1.1", Encoding::Url),
    ("https://wa.example.com/send?phone={}", Encoding::Url),
    ("<span class=\"tel\">{}</span>", Encoding::Html),
    ("Tél : {}", Encoding::Html),
];

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    for i in 0..66 {
        let (template, enc) = EMAIL_T[i % EMAIL_T.len()];
        out.push(render(
            rng,
            Kind::Positive,
            "encoded",
            template,
            EMAIL,
            &mut |r| {
                let mut e = email(r);
                while matches!(enc, Encoding::Url) && !e.is_ascii() {
                    e = email(r);
                }
                encode(r, &e, enc)
            },
        ));
    }
    for i in 0..20 {
        let (template, enc) = PHONE_T[i % PHONE_T.len()];
        out.push(render(
            rng,
            Kind::Positive,
            "encoded",
            template,
            PHONE,
            &mut |r| {
                let mut p = phone(r);
                while !p.starts_with('+') {
                    p = phone(r);
                }
                encode(r, &p, enc)
            },
        ));
    }
}

fn encode(rng: &mut Rng, s: &str, enc: Encoding) -> String {
    let at = match enc {
        Encoding::Url => "%40",
        Encoding::Html => *rng.pick(&["&#64;", "&#x40;", "&commat;"]),
        Encoding::Json => "\\u0040",
    };
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match (c, enc) {
            ('@', _) => out.push_str(at),
            ('+', Encoding::Url) => out.push_str("%2B"),
            (' ', Encoding::Url) => out.push_str("%20"),
            ('+', Encoding::Html) => out.push_str("&#43;"),
            _ => out.push(c),
        }
    }
    out
}
