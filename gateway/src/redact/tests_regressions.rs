//! Values that leaked or were cut wrongly, and decoys that were flagged: one case each.

use std::collections::HashMap;

use super::detect::{Detectors, Entity};
use super::{Operator, Redactor, State};

fn redact(text: &str) -> String {
    let r = Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    r.redact(text, &mut State::default()).expect("redact")
}

/// (text, what it must become)
const CASES: &[(&str, &str)] = &[
    // An IPv4-mapped IPv6 address is one address: no octet is left behind.
    (
        "from ::ffff:212.103.145.74 today",
        "from <IP_ADDRESS> today",
    ),
    // A compact IBAN followed by a short word.
    (
        "NL91ABNA0417164300 I already paid",
        "<IBAN_CODE> I already paid",
    ),
    ("send to NL91ABNA0417164300 ok", "send to <IBAN_CODE> ok"),
    // A lower-case IBAN is an IBAN, whole.
    ("iban nl91abna0417164300 please", "iban <IBAN_CODE> please"),
    // Non-ASCII letters in an email address.
    (
        "write to müller@example.com now",
        "write to <EMAIL_ADDRESS> now",
    ),
    (
        "write to info@bücher.de now",
        "write to <EMAIL_ADDRESS> now",
    ),
    // UnionPay (issuer 62).
    ("card 6212345678901232 thanks", "card <CREDIT_CARD> thanks"),
    // The country code of a North American number belongs to it.
    ("call 1-510-680-5408 today", "call <PHONE_NUMBER> today"),
    // Version numbers and dotted ids are not addresses.
    ("build 6.20.25.199 is out", "build 6.20.25.199 is out"),
    ("version 10.2.14.7 released", "version 10.2.14.7 released"),
    ("v1.2.3.4 fixed it", "v1.2.3.4 fixed it"),
    ("id 11.94.75.64.60 assigned", "id 11.94.75.64.60 assigned"),
    // Credentials in a URL: user and password masked, scheme and host kept.
    (
        "DATABASE_URL=postgres://app:s3cret-Pw@db.internal:5432/orders",
        "DATABASE_URL=postgres://<CREDENTIAL>@db.internal:5432/orders",
    ),
    (
        "use mysql://root:pw@10.1.2.3 now",
        "use mysql://<CREDENTIAL>@<IP_ADDRESS> now",
    ),
    (
        "see https://example.com:8443/path ok",
        "see https://example.com:8443/path ok",
    ),
    // An address is still an address.
    ("server 212.103.145.74 down", "server <IP_ADDRESS> down"),
];

#[test]
fn each_case_is_masked_as_it_should_be() {
    let mut wrong = Vec::new();
    for (text, want) in CASES {
        let got = redact(text);
        if got != *want {
            wrong.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A URL's credentials are masked wherever a stream cuts them.
#[test]
fn url_credentials_split_anywhere_are_masked() {
    let r = Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    let text = "connect postgres://app:s3cret-Pw@db.internal:5432/orders now";
    for cut in 1..text.len() {
        let out = super::tests_secrets::streamed(&r, text, cut);
        assert!(!out.contains("s3cret"), "leaked at cut {cut}: {out}");
    }
}

/// A password with characters that end a run of value characters (`;`, `$`, `!`, `'`) is
/// masked wherever a stream cuts it, while its URL may still grow and after.
#[test]
fn url_credentials_with_punctuation_split_anywhere_are_masked() {
    let r = Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    for text in [
        "connect postgres://app:pa$$w0rd!@db.internal:5432/orders now",
        "see jane://a;u:s3cret@x",
        "see ftp://a'b:s3cret@h ok",
        "use postgres://a;b:s3cret@host/db ok",
    ] {
        let want = r.redact(text, &mut State::default()).expect("redact");
        assert!(want.contains("<CREDENTIAL>"), "{want}");
        for cut in 1..text.len() {
            let out = super::tests_secrets::streamed(&r, text, cut);
            assert_eq!(out, want, "cut at {cut}");
        }
    }
}
