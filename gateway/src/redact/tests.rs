use std::collections::{BTreeMap, HashMap};

use super::detect::{luhn, Detectors, Entity};
use super::stream::{HoldBack, StreamError};
use super::*;

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

// ---- A labelled corpus, generated -------------------------------------------------------

/// Completes `prefix` (digits) to `len` digits with a valid Luhn check digit.
fn card(prefix: &str, len: usize, seed: u64) -> String {
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    let mut x = seed;
    while d.len() < len - 1 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        d.push(((x >> 33) % 10) as u8);
    }
    for check in 0..10 {
        let mut t = d.clone();
        t.push(check);
        if luhn(&t) {
            return t.iter().map(|v| char::from(b'0' + v)).collect();
        }
    }
    unreachable!("some check digit satisfies Luhn")
}

fn iban(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = if c.is_ascii_digit() {
            u64::from(c as u8 - b'0')
        } else {
            u64::from(c as u8 - b'A' + 10)
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

/// (text, expected entity or None) pairs: every text is a short sentence around one candidate.
fn corpus() -> Vec<(String, Option<Entity>)> {
    let mut c: Vec<(String, Option<Entity>)> = Vec::new();
    let mut pos = |e: Entity, v: String| c.push((format!("please use {v} today"), Some(e)));
    for (i, (prefix, len)) in [
        ("4", 16),
        ("4", 13),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("2720", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("65", 16),
        ("3530", 16),
    ]
    .iter()
    .enumerate()
    {
        for seed in 0..5u64 {
            let n = card(prefix, *len, seed * 31 + i as u64);
            pos(Entity::CreditCard, n.clone());
            if *len == 16 {
                let spaced: Vec<String> = n
                    .as_bytes()
                    .chunks(4)
                    .map(|g| String::from_utf8_lossy(g).into_owned())
                    .collect();
                pos(Entity::CreditCard, spaced.join(" "));
                pos(Entity::CreditCard, spaced.join("-"));
            }
        }
    }
    for (country, bban) in [
        ("DE", "370400440532013000"),
        ("GB", "NWBK60161331926819"),
        ("FR", "20041010050500013M02606"),
        ("NL", "ABNA0417164300"),
        ("ES", "21000418450200051332"),
        ("IT", "X0542811101000000123456"),
        ("CH", "00762011623852957"),
    ] {
        let v = iban(country, bban);
        pos(Entity::IbanCode, v.clone());
        let grouped: Vec<String> = v
            .as_bytes()
            .chunks(4)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        pos(Entity::IbanCode, grouped.join(" "));
    }
    for v in [
        "123-45-6789",
        "078-05-1120",
        "219-09-9999",
        "457-55-5462",
        "001-01-0001",
        "899-99-9998",
    ] {
        pos(Entity::UsSsn, v.into());
    }
    for v in [
        "jane.doe@example.com",
        "a.b-c+tag@sub.example.co.uk",
        "x_y@mail.example.org",
        "first.last@company.io",
        "u123@example.travel",
    ] {
        pos(Entity::EmailAddress, v.into());
    }
    for v in [
        "+14155550123",
        "+44 20 7946 0958",
        "+49 30 901820",
        "(415) 555-0123",
        "415-555-0123",
        "212.555.0199",
        "020 7946 0958",
        "07700 900123",
        "030 12345678",
        "(030) 1234567",
        "01 23 45 67 89",
        "06.12.34.56.78",
        "06-12345678",
        "03-1234-5678",
        "(02) 9876 5432",
        "0412 345 678",
    ] {
        pos(Entity::PhoneNumber, v.into());
    }
    for v in [
        "192.168.1.20",
        "10.0.0.1",
        "203.0.113.77",
        "2001:db8::8a2e:370:7334",
        "fe80::1",
        "::ffff:10.1.2.3",
    ] {
        pos(Entity::IpAddress, v.into());
    }
    for v in [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    ] {
        pos(Entity::CloudKey, v.into());
    }
    for v in [
        "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",
        "glpat-xxxxxxxxxxxxxxxxxxxx",
        "xoxb-123456789012-abcdefghijkl",
    ] {
        pos(Entity::AccessToken, v.into());
    }
    pos(Entity::PrivateKey, "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----".into());
    pos(
        Entity::Jwt,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
    );
    let mut neg = |v: &str| c.push((format!("please use {v} today"), None));
    for v in [
        "123e4567-e89b-12d3-a456-426614174000",
        "550e8400-e29b-41d4-a716-446655440000",
        "ORD-2024-000123",
        "order 48213377",
        "2026-11-30T12:30:45Z",
        "12:30:45",
        "1700000000123",
        "v2.14.0",
        "1.2.3",
        "ISBN 978-3-16-148410-0",
        "978-0-306-40615-7",
        "4111111111111112",
        "4111 1111 1111 1112",
        "DE89370400440532013001",
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "555-0100",
        "ext 4471",
        "ticket #20261130",
        "build 20261130.4",
        "x@y",
        "user@localhost",
        "256.1.1.1",
        "call 123",
        "AKIA12345",
        "99.5%",
        "version 10.0.19045",
        "01.12.2025",
        "01/12/2025 10:30",
        "0.12.3",
        "invoice 0123456789",
        "09:30 - 10:45",
        "ref 0042-1234",
        "02/03/2026",
        "01.12.2025 14",
    ] {
        neg(v);
    }
    c
}

#[test]
fn corpus_precision_and_recall() {
    let r = replace();
    let mut tp: BTreeMap<&str, u32> = BTreeMap::new();
    let mut fp: BTreeMap<&str, u32> = BTreeMap::new();
    let mut fn_: BTreeMap<&str, u32> = BTreeMap::new();
    let mut misses = Vec::new();
    for (text, want) in corpus() {
        let found = r.detectors().find(&text);
        match want {
            Some(e) => {
                if found.iter().any(|f| f.entity == e) {
                    *tp.entry(e.name()).or_default() += 1;
                } else {
                    *fn_.entry(e.name()).or_default() += 1;
                    misses.push(format!("missed {}: {text}", e.name()));
                }
                for f in found.iter().filter(|f| f.entity != e) {
                    *fp.entry(f.entity.name()).or_default() += 1;
                    misses.push(format!("extra {} in {text}", f.entity.name()));
                }
            }
            None => {
                for f in &found {
                    *fp.entry(f.entity.name()).or_default() += 1;
                    misses.push(format!("false {}: {text}", f.entity.name()));
                }
            }
        }
    }
    println!("| entity | true pos | false pos | false neg | precision | recall |");
    let mut failures = Vec::new();
    for e in Entity::ALL {
        let (t, f, n) = (
            tp.get(e.name()).copied().unwrap_or(0),
            fp.get(e.name()).copied().unwrap_or(0),
            fn_.get(e.name()).copied().unwrap_or(0),
        );
        let precision = if t + f == 0 {
            1.0
        } else {
            f64::from(t) / f64::from(t + f)
        };
        let recall = if t + n == 0 {
            1.0
        } else {
            f64::from(t) / f64::from(t + n)
        };
        println!(
            "| {} | {t} | {f} | {n} | {precision:.3} | {recall:.3} |",
            e.name()
        );
        // Checksum-validated types: every positive found, at most 1% false positives. Others:
        // at least 95% of each.
        let (min_p, min_r) = match e {
            Entity::CreditCard | Entity::IbanCode | Entity::UsSsn => (0.99, 1.0),
            _ => (0.95, 0.95),
        };
        if precision < min_p || recall < min_r {
            failures.push(format!(
                "{}: precision {precision:.3} (min {min_p}), recall {recall:.3} (min {min_r})",
                e.name()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{misses:#?}");
}

/// The windowed scan finds exactly what running every detector over the whole text finds: on
/// each corpus sentence, on the corpus run together with different separators (values next to
/// each other, across lines, inside punctuation), and on generated word soup mixing values,
/// digit groups, capitals and prose.
#[test]
fn windows_find_what_a_whole_text_scan_finds() {
    let r = Redactor::new(
        Detectors::new(
            &Entity::ALL,
            &[r"order-[0-9]{4}".into()],
            &["Project Falcon".into()],
        )
        .expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    let d = r.detectors();
    let texts: Vec<String> = corpus().into_iter().map(|(t, _)| t).collect();
    let mut checked = 0;
    let mut check = |text: &str| {
        assert_eq!(d.find(text), d.find_everywhere(text), "{text:?}");
        checked += 1;
    };
    for t in &texts {
        check(t);
    }
    // Two groups of capitals inside a grouped IBAN: the widest context the windows need.
    let two_letter_groups = iban("GB", "WESTABCD1234567890");
    let grouped: Vec<&str> = (0..two_letter_groups.len())
        .step_by(4)
        .map(|i| &two_letter_groups[i..(i + 4).min(two_letter_groups.len())])
        .collect();
    let text = format!("pay to {} now", grouped.join(" "));
    assert_eq!(d.find(&text).len(), 1, "{text}");
    check(&text);
    for sep in [" ", "\n", ", ", "\t", " and ", "", "\r\n"] {
        check(&texts.join(sep));
    }
    let values: Vec<String> = texts
        .iter()
        .map(|t| {
            t.trim_start_matches("please use ")
                .trim_end_matches(" today")
                .to_owned()
        })
        .collect();
    let filler = [
        "the",
        "WEST",
        "(",
        ")",
        "-",
        "+1",
        "555",
        "1234",
        "Note:",
        "a",
        "at",
        "DE89",
        "eyJ",
        "ghp_",
        "AKIA",
        "x@",
        "@y.com",
        "::",
        "Project",
        "Falcon",
        "order-1234",
        "4111",
        "é",
        "日本",
        "\u{3000}",
        "v1.2.3",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..400 {
        let mut text = String::new();
        for _ in 0..next(30) + 1 {
            if next(4) == 0 {
                text.push_str(&values[next(values.len())]);
            } else {
                text.push_str(filler[next(filler.len())]);
            }
            text.push_str([" ", " ", "  ", "\n", ""][next(5)]);
        }
        check(&text);
    }
    assert!(checked > 500);
}

// ---- Operators ---------------------------------------------------------------------------

#[test]
fn operators() {
    let mut st = State::default();
    let text = "mail jane@example.com and bob@example.com, again jane@example.com";
    let numbered = redactor(Operator::Replace { numbered: true })
        .redact(text, &mut st)
        .expect("redact");
    assert_eq!(
        numbered,
        "mail <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>, again <EMAIL_ADDRESS_1>"
    );
    assert_eq!(st.counts.get("EMAIL_ADDRESS"), Some(&3));

    let masked = redactor(Operator::Mask { keep_suffix: 4 })
        .redact("card 4111 1111 1111 1111", &mut State::default())
        .expect("mask");
    assert_eq!(masked, "card **** **** **** 1111");

    let h = redactor(Operator::Hash {
        key: b"k1".to_vec(),
        len: 12,
    });
    let a = h
        .redact("jane@example.com", &mut State::default())
        .expect("hash");
    let b = h
        .redact("jane@example.com", &mut State::default())
        .expect("hash");
    let other_key = redactor(Operator::Hash {
        key: b"k2".to_vec(),
        len: 12,
    })
    .redact("jane@example.com", &mut State::default())
    .expect("hash");
    assert_eq!(a, b, "same value, same token");
    assert_ne!(a, other_key, "keyed");
    assert!(
        a.starts_with("<EMAIL_ADDRESS:") && !a.contains("jane"),
        "{a}"
    );

    let blocked =
        redactor(Operator::Block).redact("key AKIAIOSFODNN7EXAMPLE", &mut State::default());
    assert_eq!(blocked, Err(Blocked(Entity::CloudKey)));
    assert_eq!(
        blocked.err().map(|b| b.to_string()).as_deref(),
        Some("blocked: CLOUD_ACCESS_KEY found")
    );
}

#[test]
fn evasion_by_zero_width_and_full_width_characters() {
    let r = replace();
    let cases = [
        "mail jane\u{FF20}example\u{FF0E}com now",
        "card 4111\u{200B}1111\u{200B}1111\u{200B}1111 now",
        "card \u{FF14}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11} now",
        "ssn 123\u{2060}-45-6789 now",
    ];
    for c in cases {
        let out = r.redact(c, &mut State::default()).expect("redact");
        assert!(out.contains('<'), "not detected: {c:?} -> {out:?}");
        assert!(out.ends_with(" now") && out.starts_with(&c[..4]), "{out:?}");
        assert!(
            !out.contains("1111") && !out.contains("jane") && !out.contains("6789"),
            "{out:?}"
        );
    }
}

// ---- Streaming ---------------------------------------------------------------------------

const MAX: usize = 8 * 1024;

fn stream_pieces(r: &Redactor, pieces: &[&str]) -> Result<(String, Vec<String>), StreamError> {
    let mut hb = HoldBack::default();
    let mut st = State::default();
    let mut released = Vec::new();
    for p in pieces {
        released.push(hb.push(p, r, &mut st, MAX)?);
    }
    released.push(hb.finish(r, &mut st)?);
    Ok((released.concat(), released))
}

#[test]
fn a_value_split_anywhere_is_still_masked() {
    let r = replace();
    let text = "Sure: write to jane.doe@example.com, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, ip 10.1.2.3 - done.";
    let whole = r.redact(text, &mut State::default()).expect("whole");
    assert_eq!(whole, "Sure: write to <EMAIL_ADDRESS>, card <CREDIT_CARD>, IBAN <IBAN_CODE>, ip <IP_ADDRESS> - done.");
    let bounds: Vec<usize> = (1..text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    // Two events: every split point.
    for &i in &bounds {
        let (out, _) = stream_pieces(&r, &[&text[..i], &text[i..]]).expect("stream");
        assert_eq!(out, whole, "split at {i}");
    }
    // Three events: every pair of split points (a stride keeps the test fast but covers all
    // positions as first and as second cut).
    for (n, &i) in bounds.iter().enumerate() {
        for &j in bounds.iter().skip(n + 1).step_by(7) {
            let (out, _) =
                stream_pieces(&r, &[&text[..i], &text[i..j], &text[j..]]).expect("stream");
            assert_eq!(out, whole, "split at {i} and {j}");
        }
    }
    // Token by token (one character per event).
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(stream_pieces(&r, &pieces).expect("stream").0, whole);
}

#[test]
fn text_that_cannot_be_a_value_is_released_at_once() {
    let r = replace();
    let mut hb = HoldBack::default();
    let mut st = State::default();
    let out = hb
        .push("The answer is forty two. Ne", &r, &mut st, MAX)
        .expect("push");
    assert_eq!(
        out, "The answer is forty two. ",
        "only the unfinished word waits"
    );
    let out = hb
        .push("xt, my card is 4111 1111", &r, &mut st, MAX)
        .expect("push");
    assert_eq!(
        out, "Next, my card is ",
        "a possible card number waits whole"
    );
    let out = hb
        .push(" 1111 1111 and more", &r, &mut st, MAX)
        .expect("push");
    assert_eq!(out, "<CREDIT_CARD> and ");
    assert_eq!(hb.finish(&r, &mut st).expect("finish"), "more");
}

#[test]
fn a_private_key_block_is_held_until_it_ends() {
    let r = replace();
    let mut hb = HoldBack::default();
    let mut st = State::default();
    let out = hb
        .push(
            "key: -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49",
            &r,
            &mut st,
            MAX,
        )
        .expect("push");
    assert_eq!(out, "key: ");
    let out = hb
        .push("AgEGCCqGSM49AwEHBG0wawIBAQQg\nabc\n", &r, &mut st, MAX)
        .expect("push");
    assert_eq!(out, "");
    let out = hb
        .push("-----END PRIVATE KEY----- ok", &r, &mut st, MAX)
        .expect("push");
    assert_eq!(out, "<PRIVATE_KEY> ");
}

#[test]
fn an_endless_value_fails_closed() {
    let r = replace();
    let mut hb = HoldBack::default();
    let mut st = State::default();
    let chunk = "A".repeat(1024);
    let mut result = Ok(String::new());
    for _ in 0..10 {
        result = hb.push(&chunk, &r, &mut st, MAX);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(StreamError::HoldBackExceeded(MAX)));
}

#[test]
fn custom_patterns_and_words() {
    let d = Detectors::new(
        &[],
        &[r"\bPRJ-[0-9]{4}\b".into()],
        &["Project Falcon".into()],
    )
    .expect("detectors");
    let r = Redactor::new(d, HashMap::new(), Operator::Replace { numbered: false });
    let out = r
        .redact(
            "see PRJ-1234 about project falcon, not falconry",
            &mut State::default(),
        )
        .expect("redact");
    assert_eq!(out, "see <CUSTOM> about <CUSTOM>, not falconry");
}

// ---- Server-sent events ------------------------------------------------------------------

fn profile() -> std::sync::Arc<Profile> {
    std::sync::Arc::new(Profile {
        name: "test".into(),
        redactor: replace(),
        requests: true,
        responses: true,
        fail_open: false,
        max_hold_back: MAX,
        block_other_content: false,
        paths: Default::default(),
    })
}

fn openai_event(content: &str, finish: Option<&str>) -> String {
    let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
    format!("data: {v}\n\n")
}

/// The text a client reassembles from OpenAI chunks.
fn openai_text(sse: &[u8]) -> String {
    String::from_utf8_lossy(sse)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn sse_chunks_are_masked_wherever_the_value_is_split() {
    let text = "Your contact is jane.doe@example.com and card 5555 5555 5555 4444, thanks.";
    let want = "Your contact is <EMAIL_ADDRESS> and card <CREDIT_CARD>, thanks.";
    for i in (1..text.len()).filter(|&i| text.is_char_boundary(i)) {
        let mut r = sse::SseRedactor::new(profile());
        let mut out = r.push(openai_event(&text[..i], None).as_bytes());
        out.extend(r.push(openai_event(&text[i..], Some("stop")).as_bytes()));
        out.extend(r.push(b"data: [DONE]\n\n"));
        out.extend(r.finish());
        assert_eq!(openai_text(&out), want, "split at {i}");
        assert!(String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"));
    }
}

#[test]
fn sse_releases_safe_text_before_the_stream_ends() {
    let mut r = sse::SseRedactor::new(profile());
    // Events may also arrive split across reads.
    let e = openai_event("Hello, my email is ja", None);
    let (a, b) = e.split_at(10);
    let mut out = r.push(a.as_bytes());
    assert!(out.is_empty(), "an incomplete event waits");
    out.extend(r.push(b.as_bytes()));
    assert_eq!(openai_text(&out), "Hello, my email is ");
    let out = r.push(openai_event("ne@example.com.", Some("stop")).as_bytes());
    assert_eq!(openai_text(&out), "<EMAIL_ADDRESS>.");
    assert_eq!(
        stream::StreamRedactor::counts(&r).get("EMAIL_ADDRESS"),
        Some(&1)
    );
}

#[test]
fn sse_anthropic_deltas_are_flushed_before_the_block_stops() {
    let mut r = sse::SseRedactor::new(profile());
    let delta = |t: &str| {
        format!(
            "event: content_block_delta\ndata: {}\n\n",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
        )
    };
    let mut out = r.push(delta("call +44 20 79").as_bytes());
    out.extend(r.push(delta("46 0958").as_bytes()));
    out.extend(r.push(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    ));
    let s = String::from_utf8_lossy(&out);
    let texts: String = s
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, "call <PHONE_NUMBER>");
    assert!(s.contains("content_block_stop"));
}

#[test]
fn sse_that_cannot_be_redacted_ends_with_an_error_event() {
    let mut r = sse::SseRedactor::new(profile());
    let out = r.push(b"data: not \xff UTF-8\n\n");
    assert_eq!(out, sse::ERROR_EVENT);
    assert!(r.failure.is_some());
    assert!(
        r.push(openai_event("more", None).as_bytes()).is_empty(),
        "nothing after the error"
    );
}

#[test]
fn streamed_text_is_masked_across_reads_and_utf8_splits() {
    use super::stream::{StreamRedactor, TextStream};
    let text = "Grüße — write to jane.doe@example.com, ok?";
    let bytes = text.as_bytes();
    let want = "Grüße — write to <EMAIL_ADDRESS>, ok?";
    for i in 1..bytes.len() {
        let mut r = TextStream::new(profile());
        let mut out = r.push(&bytes[..i]);
        out.extend(r.push(&bytes[i..]));
        out.extend(r.finish());
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            want,
            "split at byte {i}"
        );
        assert!(r.failure().is_none());
    }
    let mut r = TextStream::new(profile());
    let first = r.push("Hello there, mail ja".as_bytes());
    assert_eq!(
        first, b"Hello there, mail ",
        "safe text is released at once"
    );
    let mut bad = TextStream::new(profile());
    assert_eq!(bad.push(&[b'a', 0xff, b'b']), stream::TEXT_ERROR);
}
