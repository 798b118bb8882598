//! Values written in an encoding: percent-encoding, HTML character references, `\uXXXX` and
//! `\xXX` written out in the text. Each is found, replaced whole (no part of its escapes is left
//! around the replacement), in a stream cut at any byte too; text that only looks encoded is
//! left alone.

use std::collections::HashMap;

use super::detect::{Detectors, Entity};
use super::stream::HoldBack;
use super::tests_secrets::streamed;
use super::{Operator, Redactor, State};

fn redactor(op: Operator) -> Redactor {
    Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        op,
    )
}

fn replace() -> Redactor {
    redactor(Operator::Replace { numbered: false })
}

const SK: &str = "sk-Tq9vB2nM4kL6jH8gF0dS1aP3oI5uY7tR9eW2qZ4xC6vB8nM";

/// (entity, written form) of values in an encoding.
fn samples() -> Vec<(Entity, String)> {
    let email = [
        "jane%40example.com",
        "jane%40example%2Ecom",
        "%6A%61%6E%65%40%65%78%61%6D%70%6C%65%2E%63%6F%6D",
        "jane%2540example.com",
        "jane&#64;example.com",
        "jane&#x40;example.com",
        "jane&#X40;example.com",
        "jane&commat;example&period;com",
        "jane&amp;#64;example.com",
        r"jane\u0040example.com",
        r"jane\u0040example\u002ecom",
        r"jane\\u0040example.com",
        r"jane\x40example.com",
        "jane&#xFF20;example.com",
        // Punctuation that is not decoded stays part of the address as written.
        "o%27brien%40example.com",
        "jane%2Cdoe@example.com",
        // Mixed.
        "jane%40example&#46;com",
        r"jane\u0040example%2Ecom",
        // The first or the last character encoded.
        "&#106;ane@example.com",
        "jane@example.co&#109;",
        "jane@example.co%6D",
        r"jane@example.co\u006d",
    ];
    let phone = [
        "%2B1%20415%20555%200123",
        "%2B14155550123",
        "&#43;44 20 7946 0958",
        "&plus;44&nbsp;20&nbsp;7946&nbsp;0958",
        r"\u002B44\u002020\u00207946\u00200958",
        "&lpar;415&rpar; 555&hyphen;0123",
    ];
    let card = [
        "4111%201111%201111%201111",
        "4111&#32;1111&#32;1111&#32;1111",
        "4111&nbsp;1111&nbsp;1111&nbsp;1111",
        "&#52;&#49;&#49;&#49;111111111111",
        r"4111\u002d1111\u002d1111\u002d1111",
    ];
    let ip = [
        "192%2E168%2E1%2E20",
        "192&#46;168&#46;1&#46;20",
        r"192\u002e168\u002e1\u002e20",
        "2001%3Adb8%3A%3A8a2e%3A370%3A7334",
    ];
    let key = [
        SK.replacen('-', "%2D", 1),
        SK.replacen('-', "&#45;", 1),
        SK.replacen('-', r"\u002D", 1),
    ];
    let mut all = Vec::new();
    all.extend(email.map(|v| (Entity::EmailAddress, v.to_owned())));
    all.extend(phone.map(|v| (Entity::PhoneNumber, v.to_owned())));
    all.extend(card.map(|v| (Entity::CreditCard, v.to_owned())));
    all.extend(ip.map(|v| (Entity::IpAddress, v.to_owned())));
    all.extend(key.map(|v| (Entity::ApiKey, v)));
    all
}

fn sentence(v: &str) -> String {
    format!("please use {v} today")
}

fn expected(e: Entity) -> String {
    sentence(&format!("<{}>", e.name()))
}

#[test]
fn each_encoded_value_is_replaced_whole() {
    let r = replace();
    for (e, v) in samples() {
        let text = sentence(&v);
        let out = r.redact(&text, &mut State::default()).expect("redact");
        assert_eq!(out, expected(e), "{v}");
    }
}

#[test]
fn find_reports_the_encoded_span() {
    let r = replace();
    for (e, v) in samples() {
        let text = sentence(&v);
        let found = r.find(&text);
        let at = text.find(v.as_str()).expect("value");
        assert!(
            found
                .iter()
                .any(|f| f.entity == e && f.start == at && f.end == at + v.len()),
            "{v}: {found:?}"
        );
    }
}

/// The same value in different encodings is one value: numbered and hashed alike.
#[test]
fn encodings_of_one_value_get_one_number_and_one_hash() {
    let text = r"jane@example.com, jane%40example.com, jane&#64;example.com, jane\u0040example.com";
    let out = redactor(Operator::Replace { numbered: true })
        .redact(text, &mut State::default())
        .expect("redact");
    assert_eq!(out, ["<EMAIL_ADDRESS_1>"; 4].join(", "));
    let out = redactor(Operator::Hash {
        key: b"k".to_vec(),
        len: 8,
    })
    .redact(text, &mut State::default())
    .expect("redact");
    let tokens: Vec<&str> = out.split(", ").collect();
    assert_eq!(tokens.len(), 4, "{out}");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{out}");
}

/// `mask` shows the decoded value's shape over the whole encoded span.
#[test]
fn mask_covers_the_whole_escape() {
    let r = redactor(Operator::Mask { keep_suffix: 4 });
    let out = r
        .redact("to jane%40example.com!", &mut State::default())
        .expect("redact");
    assert_eq!(out, "to ************.com!");
    let out = r
        .redact("to jane@example.co&#109;!", &mut State::default())
        .expect("redact");
    assert_eq!(out, "to ************.com!");
}

#[test]
fn text_that_only_looks_encoded_is_left_alone() {
    let r = replace();
    for text in [
        "100% sure, 50% off",
        "50%25 of it",
        "Tom &amp; Jerry",
        "&amp;",
        "&#64;",
        "%40example",
        r"a literal \n and \t, C:\path\users, \uZZZZ, \u12, \x4",
        "&#99999999999; &#0; &#; &#x;",
        "user&#64; &commat;host",
        "discount%2520code",
        "%",
        "&",
        "\\",
        "&#",
        "ends with %4",
        r"ends with \u00",
    ] {
        let mut st = State::default();
        let (out, _) = r.redact_cow(text, &mut st).expect("redact");
        assert_eq!(out, text);
        assert!(st.counts.is_empty(), "{text}: {:?}", st.counts);
    }
}

/// Control characters and lone surrogates are not decoded: nothing around them changes.
#[test]
fn undecodable_escapes_never_panic() {
    let r = replace();
    for text in [
        "%0A%00 &#0; &#xD800; &#1114112; \\u0000 \\uD83D \\uDE00 %C3 %FF %",
        "&#",
        "&#x",
        "\\u",
        "\\uD83D\\",
        "%2",
        "&amp;amp;amp;amp;amp;#64;",
        "\\\\\\\\\\\\\\\\\\\\u0040",
    ] {
        let (out, _) = r.redact_cow(text, &mut State::default()).expect("redact");
        assert_eq!(out, text);
    }
}

/// A password with `%40`, `%3A` or `%2F` in it is masked whole, as written (decoded, it would
/// end early); the query after it is decoded.
#[test]
fn an_encoded_password_in_a_url_is_masked_whole() {
    let r = replace();
    for (text, want) in [
        (
            "connect postgres://app:p%40ss%3Aw%2Frd@db.internal:5432/orders now",
            "connect postgres://<CREDENTIAL>@db.internal:5432/orders now",
        ),
        (
            "mail smtp://jane%40example.com:pw@smtp.example.com ok",
            "mail smtp://<CREDENTIAL>@smtp.example.com ok",
        ),
        (
            "see https://u:p%2540s@host.example/x?to=jane%40example.com ok",
            "see https://<CREDENTIAL>@host.example/x?to=<EMAIL_ADDRESS> ok",
        ),
    ] {
        assert_eq!(r.redact(text, &mut State::default()).expect("redact"), want);
        for cut in 1..text.len() {
            assert_eq!(streamed(&r, text, cut), want, "cut at {cut}");
        }
    }
    // References and written-out escapes too.
    let text = r"see https://u:p&lt;\u0040s@host.example/ ok";
    assert_eq!(
        r.redact(text, &mut State::default()).expect("redact"),
        "see https://<CREDENTIAL>@host.example/ ok"
    );
}

/// An encoded value a stream cuts at any byte, inside an escape or not, comes out replaced whole.
#[test]
fn a_value_split_inside_an_escape_in_a_stream_is_masked() {
    let r = replace();
    for (e, v) in samples() {
        let text = sentence(&v);
        let want = expected(e);
        for cut in (1..text.len()).filter(|&c| text.is_char_boundary(c)) {
            assert_eq!(streamed(&r, &text, cut), want, "{v} cut at {cut}");
        }
    }
}

/// A stream delivering one byte at a time (every escape split at every position at once).
#[test]
fn a_value_streamed_byte_by_byte_is_masked() {
    let r = replace();
    for (e, v) in samples() {
        let text = sentence(&v);
        let mut hold = HoldBack::default();
        let mut st = State::default();
        let mut out = String::new();
        for (i, c) in text.char_indices() {
            out.push_str(
                &hold
                    .push(&text[i..i + c.len_utf8()], &r, &mut st, 16 * 1024)
                    .expect("push"),
            );
        }
        out.push_str(&hold.finish(&r, &mut st).expect("finish"));
        assert_eq!(out, expected(e), "{v}");
    }
}

/// Prose with `%`, `&` and `\` that are not escapes is released as it comes, not held.
#[test]
fn a_stream_does_not_hold_text_that_cannot_be_an_escape() {
    let r = replace();
    let mut hold = HoldBack::default();
    let mut st = State::default();
    let out = hold
        .push("half & half, 50% off, C:\\dir ", &r, &mut st, 1024)
        .expect("push");
    assert_eq!(out, "half & half, 50% off, C:\\dir ");
    assert_eq!(hold.held(), 0);
    // An unfinished escape is held, with the word it may end.
    let out = hold.push("mail jane&#6", &r, &mut st, 1024).expect("push");
    assert_eq!(out, "mail ");
    let out = hold
        .push("4;example.com ok", &r, &mut st, 1024)
        .expect("push");
    assert_eq!(out, "<EMAIL_ADDRESS> ");
}

/// A JSON body whose text holds `\u0040` written out (`\\u0040` in the JSON itself).
#[test]
fn json_strings_holding_written_out_escapes_are_redacted() {
    let r = replace();
    let body = serde_json::to_vec(&serde_json::json!({
        "messages": [{"role": "user", "content":
            r"pasted: {'to': 'jane\u0040example.com'} and jane%40example.com"}]
    }))
    .expect("json");
    assert!(body.windows(7).any(|w| w == br"\\u0040"));
    let out = super::rewrite::redact_json(&r, &body, &mut State::default(), &Default::default())
        .expect("redact")
        .expect("changed");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json out");
    assert_eq!(
        v["messages"][0]["content"],
        "pasted: {'to': '<EMAIL_ADDRESS>'} and <EMAIL_ADDRESS>"
    );
}

/// Server-sent chat chunks whose content cuts an escape, at every position.
#[test]
fn sse_chunks_splitting_an_escape_are_masked() {
    use super::sse::SseRedactor;
    use super::stream::StreamRedactor;
    let profile = std::sync::Arc::new(super::Profile {
        name: "test".into(),
        redactor: replace(),
        requests: true,
        responses: true,
        fail_open: false,
        max_hold_back: 8 * 1024,
        block_other_content: false,
        paths: Default::default(),
    });
    let text = r"write to jane\u0040example.com or jane&#64;example.com now";
    for cut in 1..text.len() {
        let mut sse = SseRedactor::new(profile.clone());
        let mut out = Vec::new();
        for piece in [&text[..cut], &text[cut..]] {
            let event = serde_json::json!({"choices": [{"index": 0,
                "delta": {"content": piece}, "finish_reason": null}]});
            out.extend(sse.push(format!("data: {event}\n\n").as_bytes()));
        }
        out.extend(sse.push(b"data: [DONE]\n\n"));
        out.extend(sse.finish());
        assert!(sse.failure().is_none(), "{:?}", sse.failure());
        let content: String = String::from_utf8(out)
            .expect("utf8")
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        assert_eq!(
            content, "write to <EMAIL_ADDRESS> or <EMAIL_ADDRESS> now",
            "cut at {cut}"
        );
    }
}

/// Random text made of escape fragments never panics, maps onto character boundaries, and
/// (when it folds to ASCII) streams to what whole-text redaction gives.
#[test]
fn random_escape_soup_never_panics_and_streams_like_whole_text() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const PARTS: &[&str] = &[
        "%",
        "%4",
        "%40",
        "%25",
        "%2",
        "%C3",
        "%A9",
        "%E2%80%8B",
        "&",
        "&#",
        "&#6",
        "&#64;",
        "&#x",
        "&#x40;",
        "&amp;",
        "&commat;",
        "&co",
        ";",
        "\\",
        "\\u",
        "\\u00",
        "\\u0040",
        "\\uD83D",
        "\\uDE00",
        "\\x40",
        "jane",
        "example",
        ".com",
        "@",
        " ",
        "4111",
        "1111",
        "+1 415 555 0123",
        "://",
        "u:p",
        "é",
        "\u{200B}",
        "\u{FF20}",
        "0",
        "9",
        "F",
        "x",
    ];
    let r = replace();
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let n = rng.random_range(1..12);
        let text: String = (0..n)
            .map(|_| PARTS[rng.random_range(0..PARTS.len())])
            .collect();
        let f = super::normalize::fold(&text);
        for i in (0..=f.text.len()).filter(|&i| f.text.is_char_boundary(i)) {
            let (a, b) = f.original(i, i);
            assert!(text.is_char_boundary(a) && a == b, "{text:?} {i}");
        }
        let whole = r.redact(&text, &mut State::default()).expect("redact");
        let cuts: Vec<usize> = (1..text.len())
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        // The hold-back chains ASCII value characters only: a letter beyond ASCII ends a run.
        if !f.text.is_ascii() {
            continue;
        }
        if let Some(&cut) = cuts.get(rng.random_range(0..cuts.len().max(1))) {
            // A zero-width character goes with the value after it, unless the stream released
            // it before the value came.
            let visible = |s: &str| s.replace(['\u{200B}'], "").replace("%E2%80%8B", "");
            let out = streamed(&r, &text, cut);
            assert_eq!(visible(&out), visible(&whole), "{text:?} cut at {cut}");
        }
    }
}
