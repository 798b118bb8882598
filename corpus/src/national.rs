//! National identifiers: UK National Insurance numbers, German tax ids (Steuer-ID), Indian
//! Aadhaar numbers and PANs, passport numbers of several countries; and their near misses
//! (forbidden prefixes, wrong check digits, a passport-shaped code without the word).

use crate::checks::{mod11_10_digit, nino_prefix, verhoeff, verhoeff_digit};
use crate::entity::{AADHAAR, DE_TAX_ID, NINO, PAN, PASSPORT};
use crate::rng::{Rng, DIGITS, UPPER};
use crate::{samples, Kind, Sample, Template};

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = Kind::Positive;
    samples(rng, out, p, NINO, &NINO_T, 72, &mut nino);
    samples(rng, out, p, DE_TAX_ID, &TAX_T, 72, &mut tax_id);
    samples(rng, out, p, AADHAAR, &AADHAAR_T, 72, &mut aadhaar);
    samples(rng, out, p, PAN, &PAN_T, 72, &mut pan);
    samples(rng, out, p, PASSPORT, &PASSPORT_T, 80, &mut passport);
    samples(rng, out, p, PASSPORT, &KYC_T, 4, &mut passport);
    samples(rng, out, p, NINO, &HR_T, 4, &mut nino);
    samples(rng, out, p, PAN, &IN_KYC_T, 4, &mut pan);

    let m = Kind::NearMiss;
    samples(rng, out, m, NINO, &NINO_MISS_T, 20, &mut nino_bad_prefix);
    samples(rng, out, m, DE_TAX_ID, &TAX_MISS_T, 20, &mut tax_id_bad);
    samples(rng, out, m, DE_TAX_ID, &NO_WORD_T, 10, &mut |r| {
        tax_id_parts(r).concat()
    });
    samples(rng, out, m, AADHAAR, &AADHAAR_MISS_T, 20, &mut aadhaar_bad);
    samples(rng, out, m, AADHAAR, &NO_WORD_T, 10, &mut |r| {
        aadhaar_digits(r).concat()
    });
    samples(rng, out, m, PAN, &PAN_MISS_T, 16, &mut pan_bad);
    samples(rng, out, m, PASSPORT, &NO_WORD_T, 24, &mut passport);
}

const NINO_T: [Template; 9] = [
    ("chat", "My National Insurance number is {}."),
    ("chat", "NI number: {} - is that the right format for HMRC?"),
    ("chat", "Please update my NI no {} on the payslip"),
    ("chat", "NINO {}"),
    ("json", "{\"nino\": \"{}\", \"employer\": \"Acme Ltd\"}"),
    ("csv", "name,nino,town\n{name},{},Leeds"),
    (
        "log",
        "{ts} INFO payroll: RTI submission for national insurance {}",
    ),
    (
        "chat",
        "HMRC wrote to me about {} - my national insurance record has gaps",
    ),
    ("header", "X-Employee-NINO: {}"),
];

const TAX_T: [Template; 8] = [
    ("de", "Meine Steuer-ID lautet {}."),
    ("de", "Steueridentifikationsnummer: {}"),
    (
        "chat",
        "my German tax id is {} - where does it go on the form?",
    ),
    ("de", "IdNr {} - bitte in die Lohnabrechnung eintragen"),
    ("json", "{\"steuer_id\": \"{}\", \"steuerklasse\": 1}"),
    ("csv", "name,steuer_id\n{name},{}"),
    ("de", "Die Steuer-ID {} steht auf dem Bescheid."),
    ("fr", "Mon numéro fiscal allemand (Steuer-ID) est {}."),
];

const AADHAAR_T: [Template; 8] = [
    ("chat", "My Aadhaar number is {}"),
    ("chat", "Aadhaar: {} - please verify"),
    ("chat", "Please link Aadhaar {} to my bank account"),
    ("json", "{\"aadhaar\": \"{}\", \"state\": \"KA\"}"),
    ("log", "{ts} INFO ekyc: otp sent for aadhaar {}"),
    ("csv", "name,aadhaar,city\n{name},{},Pune"),
    ("chat", "UIDAI shows Aadhaar {} as inactive, what do I do?"),
    ("chat", "aadhaar no. {}"),
];

const PAN_T: [Template; 7] = [
    ("chat", "My PAN is {}"),
    ("chat", "PAN card number: {} - is it linked?"),
    ("json", "{\"pan\": \"{}\", \"name\": \"{name}\"}"),
    ("csv", "name,pan,city\n{name},{},Mumbai"),
    ("chat", "Please link my Aadhaar with PAN {} before March"),
    ("log", "{ts} INFO tds: deducted at source for PAN={}"),
    ("chat", "The form asks for PAN ({}) and address"),
];

const PASSPORT_T: [Template; 10] = [
    ("chat", "My passport number is {}, expiring 2031."),
    ("chat", "Passport No: {}"),
    (
        "chat",
        "Can you fill the visa form? passport {} issued in {city}",
    ),
    ("de", "Meine Reisepassnummer: {}"),
    ("de", "Reisepass {} (gültig bis 2030)"),
    ("fr", "Numéro de passeport : {}"),
    ("fr", "Mon passeport {} expire bientôt."),
    ("es", "Mi número de pasaporte es {}."),
    (
        "json",
        "{\"passport_number\": \"{}\", \"nationality\": \"DE\"}",
    ),
    ("csv", "name,passport,nationality\n{name},{},GB"),
];

/// Several values in one sample.
const KYC_T: [Template; 2] = [
    (
        "json",
        "{\"name\": \"{name}\", \"email\": \"{email}\", \"passport_number\": \"{}\", \"phone\": \"{phone}\"}",
    ),
    ("chat", "Booking for {name}: passport {}, email {email}, card {card}"),
];

const HR_T: [Template; 2] = [
    ("csv", "name,nino,email,iban\n{name},{},{email},{iban}"),
    (
        "chat",
        "New starter {name}, NI number {}, phone {phone}, salary to {iban}",
    ),
];

const IN_KYC_T: [Template; 2] = [
    (
        "chat",
        "KYC for {name}: PAN {}, Aadhaar {aadhaar}, mobile {phone}",
    ),
    (
        "json",
        "{\"pan\": \"{}\", \"aadhaar\": \"{aadhaar}\", \"email\": \"{email}\"}",
    ),
];

const NINO_MISS_T: [Template; 3] = [
    ("prefix", "NI number {} was rejected by HMRC"),
    ("prefix", "Is {} a valid NINO?"),
    ("prefix", "{\"nino\": \"{}\"}"),
];

const TAX_MISS_T: [Template; 3] = [
    (
        "checksum",
        "Meine Steuer-ID ist {}, sagt das Portal, ungültig.",
    ),
    ("checksum", "tax id {} fails the check"),
    ("checksum", "{\"steuer_id\": \"{}\"}"),
];

const AADHAAR_MISS_T: [Template; 3] = [
    ("checksum", "Aadhaar {} is rejected by the portal"),
    ("checksum", "{\"aadhaar\": \"{}\"}"),
    ("checksum", "my aadhaar no. {} (typo?)"),
];

const PAN_MISS_T: [Template; 3] = [
    ("shape", "PAN {} is not accepted"),
    ("shape", "{\"pan\": \"{}\"}"),
    ("shape", "the product code {} is discontinued"),
];

/// The same values with no word that names them.
const NO_WORD_T: [Template; 5] = [
    ("no_context", "booking reference {} confirmed"),
    ("no_context", "part number {} is out of stock"),
    ("no_context", "Auftragsnummer {}"),
    ("no_context", "reference {} in the ledger"),
    ("no_context", "{\"ref\": \"{}\"}"),
];

/// A National Insurance number: valid prefix, six digits, suffix A–D; grouped or compact.
fn nino(rng: &mut Rng) -> String {
    let (a, b) = loop {
        let (a, b) = (*rng.pick(UPPER), *rng.pick(UPPER));
        if nino_prefix(a, b) {
            break (a, b);
        }
    };
    nino_with(a, b, *rng.pick(b"ABCD"), rng)
}

fn nino_with(a: u8, b: u8, suffix: u8, rng: &mut Rng) -> String {
    let d = rng.digits(6);
    let (a, b, s) = (char::from(a), char::from(b), char::from(suffix));
    if rng.one_in(2) {
        format!("{a}{b} {} {} {} {s}", &d[..2], &d[2..4], &d[4..])
    } else {
        format!("{a}{b}{d}{s}")
    }
}

fn nino_bad_prefix(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => {
            let p = *rng.pick(&[*b"BG", *b"GB", *b"KN", *b"NK", *b"NT", *b"TN", *b"ZZ"]);
            nino_with(p[0], p[1], b'A', rng)
        }
        1 => nino_with(*rng.pick(b"DFIQUV"), b'A', b'B', rng),
        2 => nino_with(b'A', *rng.pick(b"DFIOQUV"), b'C', rng),
        _ => nino_with(b'A', b'B', *rng.pick(b"EFXZ"), rng),
    }
}

/// The first ten digits of a tax id: one digit twice or three times (never three in a row),
/// the others at most once, the first not 0.
fn tax_id_digits(rng: &mut Rng) -> Vec<u8> {
    loop {
        let repeated = rng.digit(0, 9);
        let times = if rng.one_in(3) { 3 } else { 2 };
        let mut others: Vec<u8> = (0..10).filter(|&x| x != repeated).collect();
        // The distinct digits besides the repeated one, in random order.
        for i in (1..others.len()).rev() {
            others.swap(i, rng.below(i + 1));
        }
        let mut d: Vec<u8> = others[..10 - times].to_vec();
        for _ in 0..times {
            d.insert(rng.below(d.len() + 1), repeated);
        }
        let triple = d.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]);
        if d[0] != 0 && !triple {
            return d;
        }
    }
}

/// A tax id's 11 digits in the groups it is printed in (2-3-3-3).
fn tax_id_parts(rng: &mut Rng) -> [String; 4] {
    let mut d = tax_id_digits(rng);
    d.push(mod11_10_digit(&d));
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    [
        s[..2].to_string(),
        s[2..5].to_string(),
        s[5..8].to_string(),
        s[8..].to_string(),
    ]
}

fn tax_id(rng: &mut Rng) -> String {
    let parts = tax_id_parts(rng);
    if rng.one_in(3) {
        parts.join(" ")
    } else {
        parts.concat()
    }
}

/// A tax id with a wrong check digit, or with no digit repeated.
fn tax_id_bad(rng: &mut Rng) -> String {
    let mut d = tax_id_digits(rng);
    if rng.one_in(3) {
        let mut all: Vec<u8> = (0..10).collect();
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i + 1));
        }
        if all[0] == 0 {
            all.swap(0, 1);
        }
        d = all;
        d.push(mod11_10_digit(&d));
    } else {
        let check = mod11_10_digit(&d);
        d.push((check + rng.digit(1, 9)) % 10);
    }
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

/// An Aadhaar number's three groups of four: the first digit 2–9, the last the Verhoeff check.
fn aadhaar_digits(rng: &mut Rng) -> [String; 3] {
    let mut d: Vec<u8> = vec![rng.digit(2, 9)];
    d.extend(rng.digits(10).bytes().map(|b| b - b'0'));
    d.push(verhoeff_digit(&d));
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    [s[..4].to_string(), s[4..8].to_string(), s[8..].to_string()]
}

/// Grouped 4-4-4 twice in three, else compact.
pub(crate) fn aadhaar(rng: &mut Rng) -> String {
    let g = aadhaar_digits(rng);
    if rng.one_in(3) {
        g.concat()
    } else {
        g.join(" ")
    }
}

/// A wrong Verhoeff digit, or a first digit of 1; grouped. (A first digit of 0 would make it a
/// national phone number in groups.)
fn aadhaar_bad(rng: &mut Rng) -> String {
    let g = aadhaar_digits(rng);
    let mut d: Vec<u8> = g.concat().bytes().map(|b| b - b'0').collect();
    if rng.one_in(3) {
        d[0] = 1;
    } else {
        d[11] = (d[11] + rng.digit(1, 9)) % 10;
        debug_assert!(!verhoeff(&d));
    }
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    format!("{} {} {}", &s[..4], &s[4..8], &s[8..])
}

/// A PAN: three letters, the holder type, the initial of the name, four digits, a check letter.
fn pan(rng: &mut Rng) -> String {
    format!(
        "{}{}{}{}{}",
        rng.string(UPPER, 3),
        char::from(*rng.pick(b"ABCFGHLJPT")),
        rng.string(UPPER, 1),
        rng.string(DIGITS, 4),
        rng.string(UPPER, 1)
    )
}

/// A holder type no PAN has, or a character short.
fn pan_bad(rng: &mut Rng) -> String {
    let good = pan(rng);
    if rng.one_in(3) {
        good[..9].to_string()
    } else {
        let bad = char::from(*rng.pick(b"DEIKMNOQRSUVWXYZ"));
        format!("{}{bad}{}", &good[..3], &good[4..])
    }
}

/// A passport number: US and UK (9 digits), German (9 characters of its alphabet), Indian (a
/// letter and 7 digits), French (2 digits, 2 letters, 5 digits), Spanish (3 letters, 6 digits).
fn passport(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 | 1 => format!("{}{}", rng.digit(1, 9), rng.digits(8)),
        2 => loop {
            let s = format!(
                "{}{}",
                char::from(*rng.pick(b"CFGHJK")),
                rng.string(b"0123456789CFGHJKLMNPRTVWXYZ", 8)
            );
            if s.bytes().any(|c| c.is_ascii_digit()) {
                break s;
            }
        },
        3 => format!("{}{}", rng.string(b"ABGHJKLMNPRSTVWZ", 1), rng.digits(7)),
        4 => format!("{}{}{}", rng.digits(2), rng.string(UPPER, 2), rng.digits(5)),
        _ => format!("{}{}", rng.string(UPPER, 3), rng.digits(6)),
    }
}
