//! National identifiers, context-gated values (SSN without dashes, compact phones, passports,
//! dates of birth) and secrets assigned to names: what each must find, and the near misses and
//! decoys it must leave alone, whole texts and streamed texts cut at every position.

use std::collections::HashMap;

use super::detect::{Detectors, Entity};
use super::tests_secrets::streamed;
use super::{Operator, Redactor, State};

fn redactor() -> Redactor {
    Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    )
}

/// (text, what it must become)
const FOUND: &[(&str, &str)] = &[
    // US SSN without dashes, next to its words.
    ("SSN: 782323220", "SSN: <US_SSN>"),
    ("my SSN is 782 32 3220.", "my SSN is <US_SSN>."),
    (
        "social security number 219099999 on file",
        "social security number <US_SSN> on file",
    ),
    ("Name,SSN\nJane Doe,457555462", "Name,SSN\nJane Doe,<US_SSN>"),
    ("782323220 (SSN)", "<US_SSN> (SSN)"),
    // Compact national phone numbers next to a phone word.
    ("call me on 07911123456", "call me on <PHONE_NUMBER>"),
    ("mobile: 0612345678", "mobile: <PHONE_NUMBER>"),
    ("phone 98765 43210 anytime", "phone <PHONE_NUMBER> anytime"),
    ("Tel. 4155552671", "Tel. <PHONE_NUMBER>"),
    // UK National Insurance numbers.
    ("NI number JG 12 34 56 C", "NI number <UK_NINO>"),
    ("nino AB123456C ok", "nino <UK_NINO> ok"),
    // German tax ids: grouped anywhere, compact next to a tax word.
    ("Steuer-ID: 86095742719", "Steuer-ID: <DE_TAX_ID>"),
    ("IdNr 65 929 970 489", "IdNr <DE_TAX_ID>"),
    ("meine Nummer 65 929 970 489.", "meine Nummer <DE_TAX_ID>."),
    // Aadhaar: grouped anywhere, compact next to its word.
    ("Aadhaar 2341 2341 2346", "Aadhaar <IN_AADHAAR>"),
    ("id 2341-2341-2346 here", "id <IN_AADHAAR> here"),
    ("aadhaar no. 234123412346", "aadhaar no. <IN_AADHAAR>"),
    // PAN.
    ("PAN ABCPE1234F", "PAN <IN_PAN>"),
    // Passport numbers after a passport word.
    ("passport number: 123456789", "passport number: <PASSPORT>"),
    ("Reisepass C01X00T47 gültig", "Reisepass <PASSPORT> gültig"),
    ("my passport is A1234567.", "my passport is <PASSPORT>."),
    // Dates of birth.
    ("born on 12/03/1985 in Leeds", "born on <DATE_OF_BIRTH> in Leeds"),
    ("DOB: 1985-03-12", "DOB: <DATE_OF_BIRTH>"),
    ("date of birth 12 March 1985.", "date of birth <DATE_OF_BIRTH>."),
    ("born March 12, 1985 at noon", "born <DATE_OF_BIRTH> at noon"),
    ("geboren am 12.03.1985", "geboren am <DATE_OF_BIRTH>"),
    ("née le 3 juin 1990", "née le <DATE_OF_BIRTH>"),
    ("nacido el 12 de marzo de 1985", "nacido el <DATE_OF_BIRTH>"),
    // Secrets assigned to names: the value only.
    ("DB_PASSWORD=s3cr3t!", "DB_PASSWORD=<CREDENTIAL>"),
    ("password=hunter22 user=bob", "password=<CREDENTIAL> user=bob"),
    (
        r#"{"username": "bob", "password": "correct horse battery"}"#,
        r#"{"username": "bob", "password": "<CREDENTIAL>"}"#,
    ),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = <CREDENTIAL>",
    ),
    (
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=<CREDENTIAL>;EndpointSuffix=core.windows.net",
    ),
    (
        "Authorization: Bearer 8f3kQ9zLm2PxR7vT1wYbQ4",
        "Authorization: Bearer <CREDENTIAL>",
    ),
    (
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "Authorization: Basic <CREDENTIAL>",
    ),
    ("client_secret: 'Zx9Qw8Er7Ty6Ui5Op4As'", "client_secret: '<CREDENTIAL>'"),
    // Passwords said in a sentence, and in other languages.
    ("my password is Tr0ub4dor&3.", "my password is <CREDENTIAL>."),
    ("mein Passwort ist Sommer2024! danke", "mein Passwort ist <CREDENTIAL> danke"),
    ("Kennwort: Winter2023", "Kennwort: <CREDENTIAL>"),
    ("mon mot de passe est soleil42", "mon mot de passe est <CREDENTIAL>"),
    ("mi contraseña: Gato1234", "mi contraseña: <CREDENTIAL>"),
    // North American numbers with the area code in parentheses, no space after.
    ("call (415)555-2671 now", "call <PHONE_NUMBER> now"),
    ("call 1(415)555-2671 now", "call <PHONE_NUMBER> now"),
];

/// Texts that must come out unchanged.
const LEFT: &[&str] = &[
    // Nine digits with no SSN word, an invalid SSN next to one.
    "order 782323220 shipped",
    "SSN 000123456 is not valid",
    "SSN 666123456",
    // Compact numbers with no phone word.
    "invoice 07911123456 paid",
    "reference 0612345678",
    // NINO with a prefix never issued, or a suffix beyond D.
    "code GB123456C",
    "code AB123456E",
    // Steuer-ID with a wrong check digit; compact without a tax word.
    "Steuer-ID: 86095742718",
    "number 86095742719",
    // Aadhaar with a wrong check digit; compact without its word; the start of an invalid card.
    "Aadhaar 2341 2341 2347",
    "ref 234123412346",
    "card 4485 2817 3342 8871 declined",
    // Passport-shaped codes without the word; a passport word with no number.
    "ticket C01X00T47",
    "passport photo booth",
    "passport expires in 2030",
    // Dates without birth words; a birth word with an impossible date.
    "meeting on 12/03/1985",
    "released 1985-03-12",
    "born on 32/13/1985",
    // Assignments of placeholders, of names that are no secret, and short generic values.
    "password=${DB_PASSWORD}",
    "password=****",
    "password: <your password here>",
    "Password: must be at least 8 characters",
    "bypass=true",
    "max_tokens: 100",
    r#"{"token": "Hello", "logprob": -0.1}"#,
    "secret = 42",
    "Authorization: Bearer token",
    "Basic principles apply",
    "the password is required",
    "your password is incorrect",
    // A phone number's digits inside an asset tag, an invalid card number.
    "asset AT-0612-3456-789",
    "card 4855 0612 3456 789 declined",
];

#[test]
fn national_ids_context_and_assignments() {
    let r = redactor();
    let mut wrong = Vec::new();
    for (text, want) in FOUND {
        let got = r.redact(text, &mut State::default()).expect("redact");
        if &got != want {
            wrong.push(format!("{text:?} became {got:?}, not {want:?}"));
        }
    }
    for text in LEFT {
        let got = r.redact(text, &mut State::default()).expect("redact");
        if &got != text {
            wrong.push(format!("{text:?} became {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Streamed text cut anywhere comes out as the whole text does: the context word may have
/// been released before the value arrives, a date in words may be cut between its words.
#[test]
fn streamed_cuts_find_the_same() {
    let r = redactor();
    for (text, want) in FOUND {
        for cut in (0..=text.len()).filter(|&c| text.is_char_boundary(c)) {
            assert_eq!(&streamed(&r, text, cut), want, "{text:?} cut at {cut}");
        }
    }
}

#[test]
fn matches_name_their_detector() {
    let r = redactor();
    let f = r.find("SSN 782323220, PAN ABCPE1234F");
    let names: Vec<(&str, &str)> = f.iter().map(|f| (f.entity.name(), f.detector)).collect();
    assert_eq!(
        names,
        [("US_SSN", "us_ssn.context"), ("IN_PAN", "in_pan")],
        "{f:?}"
    );
}

/// A table's column name gives its cells their context however many rows down they are, and
/// the windowed scan finds what a whole-text scan finds there.
#[test]
fn table_columns_give_their_cells_context() {
    let r = redactor();
    let mut csv = String::from("name,ssn,date of birth,city\n");
    let mut want = csv.clone();
    for i in 0..30 {
        csv.push_str(&format!(
            "Person {i},78232{:04},1{}.03.1985,Leeds\n",
            i + 1,
            i % 10
        ));
        want.push_str(&format!("Person {i},<US_SSN>,<DATE_OF_BIRTH>,Leeds\n"));
    }
    assert_eq!(r.redact(&csv, &mut State::default()).expect("redact"), want);
    let d = r.detectors();
    assert_eq!(d.find(&csv), d.find_everywhere(&csv));
    // Other columns, and rows of a table without such a header, stay.
    let plain = "id;order;placed\n1;782320001;12.03.1985\n2;782320002;13.03.1985\n";
    assert_eq!(
        r.redact(plain, &mut State::default()).expect("redact"),
        plain
    );
    assert_eq!(d.find(plain), d.find_everywhere(plain));
}
