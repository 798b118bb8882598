use std::collections::BTreeMap;

use crate::checks::{self, digits};
use crate::{entity, generate, Kind};

/// Whether `value`, labelled `entity`, is valid for it: checksums and ranges where the entity
/// has them, its shape otherwise.
fn valid(entity: &str, value: &str) -> bool {
    let v = checks::decode(value);
    let v = v.as_str();
    match entity {
        entity::EMAIL => v
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.ends_with('.')),
        entity::PHONE => (8..=15).contains(&digits(v).len()),
        entity::CARD => (13..=19).contains(&digits(v).len()) && checks::luhn(&digits(v)),
        entity::IBAN => checks::iban_valid(v),
        entity::SSN => checks::ssn(v),
        entity::IP => v.parse::<std::net::IpAddr>().is_ok(),
        entity::CLOUD => {
            let len = match v.get(..4) {
                Some("AKIA" | "ASIA") => 20,
                Some("LTAI") => 24,
                Some("AKID") => 36,
                Some("AIza") => 39,
                _ => 0,
            };
            v.len() == len
        }
        entity::TOKEN => match v.get(..4) {
            Some("ghp_" | "gho_" | "ghu_" | "ghs_" | "ghr_") => checks::checksummed(&v[4..]),
            _ => {
                [
                    "github_pat_",
                    "glpat-",
                    "xoxb-",
                    "xoxp-",
                    "glptt-",
                    "ATBB",
                    "hvs.",
                ]
                .iter()
                .any(|p| v.starts_with(p))
                    || v.split_once(":AA").is_some_and(|(id, _)| {
                        id.len() == 10 && id.bytes().all(|c| c.is_ascii_digit())
                    })
            }
        },
        entity::API_KEY => match v.strip_prefix("npm_") {
            Some(body) => checks::checksummed(body),
            None => [
                "sk-",
                "hf_",
                "sk_live_",
                "rk_live_",
                "SG.",
                "https://hooks.slack.com/",
                "gsk_",
                "r8_",
                "pplx-",
                "xai-",
                "lsv2_",
                "pcsk_",
                "tvly-",
                "GOCSPX-",
                "key-",
                "sq0atp-",
                "shpat_",
                "dop_v1_",
                "pypi-",
                "dckr_pat_",
                "dapi",
                "lin_api_",
                "PMAK-",
                "sbp_",
                "NRAK-",
            ]
            .iter()
            .any(|p| v.starts_with(p)),
        },
        entity::CREDENTIAL => !v.is_empty() && !v.contains(char::is_whitespace),
        entity::PRIVATE_KEY => {
            v.starts_with("-----BEGIN ") && v.ends_with("-----") && v.contains("-----END ")
        }
        entity::JWT => v.starts_with("eyJ") && v.split('.').count() == 3,
        entity::NINO => checks::nino(v),
        entity::DE_TAX_ID => checks::de_tax_id(v),
        entity::AADHAAR => checks::aadhaar(v),
        entity::PAN => checks::pan(v),
        entity::PASSPORT => {
            (6..=9).contains(&v.len())
                && v.bytes().all(|c| c.is_ascii_alphanumeric())
                && v.bytes().any(|c| c.is_ascii_digit())
        }
        entity::DOB => v.as_bytes().windows(4).any(|w| {
            std::str::from_utf8(w)
                .ok()
                .and_then(|y| y.parse::<u32>().ok())
                .is_some_and(|y| (1940..=2007).contains(&y))
        }),
        _ => false,
    }
}

#[test]
fn the_same_seed_gives_the_same_corpus() {
    assert_eq!(generate(7), generate(7));
    assert_ne!(generate(7), generate(8));
}

#[test]
fn every_label_is_a_valid_value_at_its_offsets() {
    for seed in [0, 1, 42, 0xDEAD_BEEF] {
        for s in generate(seed) {
            assert!(!s.text.contains("{}"), "unfilled template: {}", s.text);
            if s.kind != Kind::Positive {
                assert!(s.spans.is_empty(), "{s:?}");
                continue;
            }
            assert!(!s.spans.is_empty(), "{s:?}");
            for w in s.spans.windows(2) {
                assert!(w[0].end <= w[1].start, "overlapping labels: {s:?}");
            }
            for span in &s.spans {
                let value = s.text.get(span.start..span.end);
                let value = value.unwrap_or_else(|| panic!("span off a boundary: {s:?}"));
                assert!(
                    valid(span.entity, value),
                    "{} {value:?} in {:?}",
                    span.entity,
                    s.text
                );
            }
        }
    }
}

#[test]
fn every_entity_has_sixty_positives_and_there_are_three_hundred_decoys() {
    let corpus = generate(42);
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    for span in corpus.iter().flat_map(|s| &s.spans) {
        *labels.entry(span.entity).or_default() += 1;
    }
    for e in entity::ALL {
        let n = labels.get(e).copied().unwrap_or(0);
        assert!(n >= 60, "{e}: {n} labels");
    }
    let decoys = corpus.iter().filter(|s| s.kind == Kind::Decoy).count();
    assert!(decoys >= 300, "{decoys} decoys");
}

#[test]
fn the_checksums_agree_with_known_values() {
    // Published examples.
    assert!(checks::luhn(&digits("4111 1111 1111 1111")));
    assert!(!checks::luhn(&digits("4111 1111 1111 1112")));
    assert_eq!(checks::luhn_digit(&digits("411111111111111")), 1);
    assert!(checks::iban_valid("GB82 WEST 1234 5698 7654 32"));
    assert!(checks::iban_valid("de89370400440532013000"));
    assert!(!checks::iban_valid("GB83 WEST 1234 5698 7654 32"));
    assert_eq!(checks::iban_check("DE", "370400440532013000"), "89");
    assert!(checks::verhoeff(&digits("2363")));
    assert_eq!(checks::verhoeff_digit(&digits("236")), 3);
    assert!(!checks::verhoeff(&digits("2364")));
    assert_eq!(checks::mod11_10_digit(&digits("8609574271")), 9);
    assert!(checks::de_tax_id("86095742719"));
    assert!(!checks::de_tax_id("86095742718"));
    assert!(!checks::de_tax_id("12345678903"), "no digit repeated");
    assert_eq!(checks::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(checks::crc32(b""), 0);
    assert!(checks::ssn("123-45-6789"));
    assert!(!checks::ssn("666-45-6789") && !checks::ssn("900-45-6789"));
    assert!(!checks::ssn("123-00-6789") && !checks::ssn("123-45-0000"));
    assert!(checks::nino("AB 12 34 56 C") && checks::nino("AB123456C"));
    assert!(!checks::nino("QQ123456C") && !checks::nino("BG123456A"));
    assert!(!checks::nino("AB123456E") && !checks::nino("AO123456A"));
    assert!(checks::pan("ABCPE1234F") && !checks::pan("ABCXE1234F"));
    assert_eq!(checks::decode("jane%40example.com"), "jane@example.com");
    assert_eq!(checks::decode("jane\\u0040example.com"), "jane@example.com");
}

#[test]
fn a_generated_checksum_token_validates_and_a_changed_one_does_not() {
    let body = "abcdefghijklmnopqrstuvwxyz0123";
    let token = format!("{body}{}", checks::base62_crc(body));
    assert!(checks::checksummed(&token));
    let mut changed = token.into_bytes();
    changed[0] = b'A';
    assert!(!checks::checksummed(
        &String::from_utf8(changed).unwrap_or_default()
    ));
}
