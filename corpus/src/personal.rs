//! Email addresses, phone numbers, payment cards, IBANs and US social security numbers: their
//! positives in every written form, and their near misses.

use crate::checks::{iban_check, luhn_digit};
use crate::entity::{CARD, EMAIL, IBAN, PHONE, SSN};
use crate::rng::{Rng, UPPER};
use crate::words::{DOMAINS, FIRST, LAST, UNICODE_DOMAINS, UNICODE_LOCAL};
use crate::{samples, Kind, Sample, Template};

/// Positives per entity written with one value each (mixed samples add more).
const N: usize = 72;

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = Kind::Positive;
    samples(rng, out, p, EMAIL, &EMAIL_T, N, &mut email);
    samples(rng, out, p, PHONE, &PHONE_T, N, &mut phone);
    samples(rng, out, p, CARD, &CARD_T, N, &mut card);
    samples(rng, out, p, IBAN, &IBAN_T, N, &mut iban);
    samples(rng, out, p, IBAN, &IBAN_WORD_T, 12, &mut |r| {
        compact_iban(r)
    });
    samples(rng, out, p, SSN, &SSN_T, N, &mut ssn);
    samples(rng, out, p, EMAIL, &MIXED_T, 36, &mut email);

    let m = Kind::NearMiss;
    samples(rng, out, m, CARD, &CARD_MISS_T, 20, &mut card_bad_luhn);
    samples(rng, out, m, CARD, &CARD_LEN_T, 10, &mut card_bad_length);
    samples(rng, out, m, IBAN, &IBAN_MISS_T, 20, &mut iban_bad_check);
    samples(rng, out, m, SSN, &SSN_MISS_T, 20, &mut ssn_bad_range);
    samples(
        rng,
        out,
        m,
        EMAIL,
        &EMAIL_MISS_T,
        EMAIL_MISS_T.len(),
        &mut |_| String::new(),
    );
}

const EMAIL_T: [Template; 14] = [
    ("chat", "Please email me at {} when the report is ready."),
    (
        "chat",
        "my email is {} - can you draft a polite reply to the landlord?",
    ),
    ("chat", "Send the invoice to {} and cc {email} please"),
    (
        "chat",
        "Rewrite this more formally: 'hey, ping {} if you need access'",
    ),
    (
        "de",
        "Bitte schreib mir an {}, ich bin bis Freitag erreichbar.",
    ),
    ("fr", "Vous pouvez me joindre à l'adresse {} demain matin."),
    ("es", "Mi correo es {} y el de mi jefe es {email}."),
    (
        "env",
        "SMTP_USER={}\nSMTP_HOST=smtp.example.com\nSMTP_PORT=587",
    ),
    (
        "json",
        "{\"name\": \"{name}\", \"email\": \"{}\", \"role\": \"admin\"}",
    ),
    (
        "header",
        "From: {name} <{}>\nTo: {email}\nSubject: quarterly numbers",
    ),
    ("csv", "id,name,email\n{n},{name},{}"),
    ("log", "{ts} INFO auth: password reset requested for {}"),
    ("chat", "Contact: {} (billing)"),
    ("de", "Meine neue Adresse ist {}. Die alte bitte löschen."),
];

const PHONE_T: [Template; 12] = [
    ("chat", "Call me at {} after 5pm."),
    ("chat", "my number is {} if the courier needs it"),
    ("chat", "You can reach our office on {} - ask for {first}."),
    ("de", "Ruf mich bitte unter {} an."),
    ("fr", "Mon numéro de portable est le {}, merci."),
    ("es", "Llámame al {} cuando llegues."),
    ("env", "SUPPORT_PHONE=\"{}\""),
    (
        "json",
        "{\"contact\": {\"name\": \"{name}\", \"phone\": \"{}\"}}",
    ),
    ("csv", "name,phone,city\n{name},{},{city}"),
    ("header", "X-Callback-Number: {}"),
    ("log", "{ts} WARN sms: delivery to {} failed, retrying"),
    ("chat", "Tel: {} / Email: {email}"),
];

const CARD_T: [Template; 10] = [
    ("chat", "My card is {} - is this charge legit?"),
    ("chat", "Charge {} for the March invoice please."),
    ("chat", "I paid with card number {} and got charged twice"),
    ("de", "Meine Kreditkartennummer lautet {}."),
    ("fr", "Voici ma carte bancaire : {}, merci."),
    ("es", "El número de mi tarjeta es {}, gracias."),
    (
        "json",
        "{\"payment\": {\"card_number\": \"{}\", \"holder\": \"{name}\"}}",
    ),
    ("csv", "customer,card,city\n{name},{},{city}"),
    (
        "log",
        "{ts} ERROR payments: declined card={} reason=insufficient_funds",
    ),
    ("env", "TEST_CARD={}"),
];

const IBAN_T: [Template; 9] = [
    ("chat", "Please transfer the deposit to IBAN {}."),
    ("chat", "my iban: {}"),
    (
        "de",
        "Bitte überweisen Sie den Betrag auf {} (Kontoinhaber: {name}).",
    ),
    ("fr", "Mon IBAN est le {}, merci de faire le virement."),
    (
        "es",
        "Puedes hacer la transferencia a la cuenta {} antes del lunes.",
    ),
    (
        "json",
        "{\"beneficiary\": \"{name}\", \"iban\": \"{}\", \"currency\": \"EUR\"}",
    ),
    ("csv", "name,iban,city\n{name},{},{city}"),
    ("env", "PAYOUT_IBAN={}"),
    (
        "log",
        "{ts} INFO sepa: mandate created iban={} status=active",
    ),
];

/// A compact IBAN followed by a short word.
const IBAN_WORD_T: [Template; 3] = [
    ("chat", "my iban is {} I already sent the form"),
    ("chat", "IBAN {} ok? thanks"),
    ("de", "Konto {} an Max bitte"),
];

const SSN_T: [Template; 9] = [
    ("chat", "My SSN is {} - can you fill in the W-9 for me?"),
    ("chat", "social security number: {}"),
    ("chat", "Applicant: {name}, SSN {}, start date next Monday."),
    (
        "chat",
        "Please redact {} from the HR export before sharing.",
    ),
    ("es", "Mi número de seguro social es {}."),
    (
        "json",
        "{\"applicant\": {\"name\": \"{name}\", \"ssn\": \"{}\"}}",
    ),
    ("csv", "name,ssn,state\n{name},{},CA"),
    ("log", "{ts} DEBUG kyc: verifying ssn={} for applicant"),
    ("chat", "SSN: {}\nEmployer: Acme Corp"),
];

/// Several values in one sample.
const MIXED_T: [Template; 6] = [
    (
        "csv",
        "name,email,phone,iban\n{name},{},{phone},{iban}\n{name},{email},{phone},{iban}",
    ),
    (
        "de",
        "Hallo, ich bin {name}. Mail: {}, Tel. {phone}, IBAN {iban}. Danke!",
    ),
    (
        "fr",
        "Bonjour, c'est {name} : écrivez à {} ou appelez le {phone}.",
    ),
    ("es", "Soy {name}, mi correo es {} y mi teléfono {phone}."),
    (
        "json",
        "{\"customer\": {\"email\": \"{}\", \"phone\": \"{phone}\", \"card\": \"{card}\"}}",
    ),
    ("log", "{ts} INFO checkout: user={} ip={ip} card={card}"),
];

const CARD_MISS_T: [Template; 4] = [
    ("checksum", "Order reference {} - please check the status"),
    ("checksum", "my card is {} (the app says it is invalid)"),
    ("checksum", "{\"card_number\": \"{}\"}"),
    ("checksum", "Meine Karte: {}"),
];

const CARD_LEN_T: [Template; 2] = [
    ("length", "tracking code {} from the warehouse"),
    ("length", "card {} was rejected as too short"),
];

const IBAN_MISS_T: [Template; 3] = [
    ("checksum", "Is this IBAN valid? {}"),
    ("checksum", "Bitte auf {} überweisen (Prüfziffer falsch?)"),
    ("checksum", "{\"iban\": \"{}\"}"),
];

const SSN_MISS_T: [Template; 3] = [
    ("range", "The sample SSN {} in the docs is not a real one"),
    ("range", "ssn={} rejected by validation"),
    ("range", "form field SSN: {}"),
];

const EMAIL_MISS_T: [Template; 8] = [
    ("shape", "ping @jane.doe on Slack about the release"),
    ("shape", "install @types/node@20.11.5 and rerun"),
    ("shape", "decorate it with @app.route('/login') in Flask"),
    ("shape", "reply to the @support alias, not to me"),
    ("shape", "my handle is @carmen_ruiz everywhere"),
    ("shape", "use the @Override annotation on toString()"),
    ("shape", "pip install requests@2.31.0 fails"),
    ("shape", "see commit a1b2c3d@main for the fix"),
];

/// An email address; every fourth has letters beyond ASCII.
pub(crate) fn email(rng: &mut Rng) -> String {
    let first = *rng.pick(&FIRST);
    let last = *rng.pick(&LAST);
    let local = match rng.below(8) {
        0 => format!("{first}.{last}"),
        1 => format!("{}{last}", &first[..1]),
        2 => format!("{first}_{last}{}", rng.range(1, 99)),
        3 => format!("{first}+{}", rng.pick(&["news", "billing", "work", "shop"])),
        4 => first.to_string(),
        5 => (*rng.pick(&UNICODE_LOCAL)).to_string(),
        6 => format!("{first}.{last}{}", rng.digits(2)),
        _ => format!("{}.{}", first.to_uppercase(), last),
    };
    let domain = if rng.one_in(6) {
        *rng.pick(&UNICODE_DOMAINS)
    } else {
        *rng.pick(&DOMAINS)
    };
    let local = if rng.one_in(7) {
        "info".to_string()
    } else {
        local
    };
    format!("{local}@{domain}")
}

/// A NANP area or exchange code: first digit 2–9, not N11.
fn nanp_code(rng: &mut Rng, area: bool) -> String {
    loop {
        let d = [
            rng.digit(2, 9),
            rng.digit(0, if area { 8 } else { 9 }),
            rng.digit(0, 9),
        ];
        if !(d[1] == 1 && d[2] == 1) {
            return d.iter().map(|x| char::from(b'0' + x)).collect();
        }
    }
}

/// A phone number in one of the written forms: E.164 (several countries), North American,
/// national with the trunk prefix 0 in groups.
pub(crate) fn phone(rng: &mut Rng) -> String {
    let (a, x, l) = (nanp_code(rng, true), nanp_code(rng, false), rng.digits(4));
    let two = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.digits(2)).collect::<Vec<_>>();
    match rng.below(14) {
        0 => format!("+44 20 7946 0{}", rng.digits(3)),
        1 => format!("+44 7700 900{}", rng.digits(3)),
        2 => format!("+49 30 {}{}", rng.digit(1, 9), rng.digits(7)),
        3 => format!(
            "+49 15{} {} {}",
            rng.digit(1, 7),
            rng.digits(4),
            rng.digits(4)
        ),
        4 => format!("+33 {} {}", rng.digit(1, 7), two(rng, 4).join(" ")),
        5 => format!("+34 6{} {} {}", rng.digits(2), rng.digits(3), rng.digits(3)),
        6 => format!("+91 {}{} {}", rng.digit(7, 9), rng.digits(4), rng.digits(5)),
        7 => format!("+1 {a} {x} {l}"),
        8 => format!("+1-{a}-{x}-{l}"),
        9 => format!("({a}) {x}-{l}"),
        10 => format!("{a}-{x}-{l}"),
        11 => format!("1-{a}-{x}-{l}"),
        12 => format!("{a}.{x}.{l}"),
        _ => national(rng),
    }
}

/// A national number with the trunk prefix 0, in groups.
fn national(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => format!("020 7946 0{}", rng.digits(3)),
        1 => format!("0161 496 0{}", rng.digits(3)),
        2 => format!("030 {}{}", rng.digit(1, 9), rng.digits(7)),
        3 => format!("089 {}{}", rng.digit(1, 9), rng.digits(6)),
        4 => {
            let g: Vec<String> = (0..4).map(|_| rng.digits(2)).collect();
            format!("0{} {}", rng.digit(1, 7), g.join(" "))
        }
        5 => {
            let g: Vec<String> = (0..4).map(|_| rng.digits(2)).collect();
            format!("06.{}", g.join("."))
        }
        _ => format!("07700 900{}", rng.digits(3)),
    }
}

/// Issuer prefix and length of a random card.
fn card_digits(rng: &mut Rng) -> Vec<u8> {
    let (prefix, len): (String, usize) = match rng.below(7) {
        0 | 1 => ("4".into(), 16),
        2 => (format!("5{}", rng.digit(1, 5)), 16),
        3 => (format!("{}", rng.range(2221, 2720)), 16),
        4 => (format!("3{}", rng.pick(&["4", "7"])), 15),
        5 => ((*rng.pick(&["6011", "65", "644", "649"])).to_string(), 16),
        _ => ("62".into(), *rng.pick(&[16, 16, 19])),
    };
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.digit(0, 9));
    }
    let check = luhn_digit(&d);
    d.push(check);
    d
}

/// Digits written compact or in the usual groups (4-6-5 for 15 digits), with spaces or dashes.
fn group_card(rng: &mut Rng, d: &[u8]) -> String {
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    let sep = match rng.below(5) {
        0 => return s,
        1 => "-",
        _ => " ",
    };
    let cuts: &[usize] = if d.len() == 15 {
        &[4, 10]
    } else {
        &[4, 8, 12, 16]
    };
    let mut out = String::new();
    let mut from = 0;
    for &c in cuts.iter().filter(|&&c| c < d.len()) {
        out.push_str(&s[from..c]);
        out.push_str(sep);
        from = c;
    }
    out.push_str(&s[from..]);
    out
}

/// A Luhn-valid card number of a real issuer range.
pub(crate) fn card(rng: &mut Rng) -> String {
    let d = card_digits(rng);
    group_card(rng, &d)
}

fn card_bad_luhn(rng: &mut Rng) -> String {
    let mut d = card_digits(rng);
    let last = d.len() - 1;
    d[last] = (d[last] + rng.digit(1, 9)) % 10;
    group_card(rng, &d)
}

/// A Luhn-valid number of an issuer prefix at a length the issuer does not use.
fn card_bad_length(rng: &mut Rng) -> String {
    let mut d: Vec<u8> = vec![4];
    while d.len() < 14 {
        d.push(rng.digit(0, 9));
    }
    let check = luhn_digit(&d);
    d.push(check);
    group_card(rng, &d)
}

/// A French RIB key.
fn rib_key(bank: &str, branch: &str, account: &str) -> String {
    let n = |s: &str| s.parse::<u64>().unwrap_or(0);
    let key = 97 - (89 * n(bank) + 15 * n(branch) + 3 * n(account)) % 97;
    format!("{key:02}")
}

/// A country and a BBAN of its national format.
fn bban(rng: &mut Rng) -> (&'static str, String) {
    let bank = |rng: &mut Rng| rng.string(UPPER, 4);
    match rng.below(11) {
        0 | 1 => ("DE", rng.digits(18)),
        2 => ("GB", format!("{}{}", bank(rng), rng.digits(14))),
        3 => {
            let (b, g, a) = (rng.digits(5), rng.digits(5), rng.digits(11));
            let key = rib_key(&b, &g, &a);
            ("FR", format!("{b}{g}{a}{key}"))
        }
        4 => ("ES", rng.digits(20)),
        5 => {
            let b = *rng.pick(&["ABNA", "INGB", "RABO", "TRIO"]);
            ("NL", format!("{b}{}", rng.digits(10)))
        }
        6 => ("IT", format!("{}{}", rng.string(UPPER, 1), rng.digits(22))),
        7 => {
            let a = rng.digits(10);
            let r = a.parse::<u64>().unwrap_or(0) % 97;
            ("BE", format!("{a}{:02}", if r == 0 { 97 } else { r }))
        }
        8 => ("CH", rng.digits(17)),
        9 => ("AT", rng.digits(16)),
        _ => ("PL", rng.digits(24)),
    }
}

/// A valid compact IBAN, upper case.
pub(crate) fn compact_iban(rng: &mut Rng) -> String {
    let (country, bban) = bban(rng);
    format!("{country}{}{bban}", iban_check(country, &bban))
}

/// Groups of four, as IBANs are printed.
fn group4(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A valid IBAN, grouped or compact, in upper or (one in five) lower case.
pub(crate) fn iban(rng: &mut Rng) -> String {
    let compact = compact_iban(rng);
    let s = if rng.one_in(2) {
        group4(&compact)
    } else {
        compact
    };
    if rng.one_in(5) {
        s.to_lowercase()
    } else {
        s
    }
}

fn iban_bad_check(rng: &mut Rng) -> String {
    let compact = compact_iban(rng);
    let check: u32 = compact[2..4].parse().unwrap_or(0);
    let wrong = format!("{:02}", (check + rng.range(1, 90) as u32) % 97 + 2);
    let s = format!(
        "{}{}{}",
        &compact[..2],
        &wrong[wrong.len() - 2..],
        &compact[4..]
    );
    if rng.one_in(2) {
        group4(&s)
    } else {
        s
    }
}

/// A US social security number: area 001–899 but 666, group 01–99, serial 0001–9999.
pub(crate) fn ssn_digits(rng: &mut Rng) -> (u32, u32, u32) {
    let area = loop {
        let a = rng.range(1, 899) as u32;
        if a != 666 {
            break a;
        }
    };
    (area, rng.range(1, 99) as u32, rng.range(1, 9999) as u32)
}

pub(crate) fn ssn(rng: &mut Rng) -> String {
    let (a, g, s) = ssn_digits(rng);
    format!("{a:03}-{g:02}-{s:04}")
}

fn ssn_bad_range(rng: &mut Rng) -> String {
    let (a, g, s) = ssn_digits(rng);
    match rng.below(5) {
        0 => format!("000-{g:02}-{s:04}"),
        1 => format!("666-{g:02}-{s:04}"),
        2 => format!("9{:02}-{g:02}-{s:04}", rng.below(100)),
        3 => format!("{a:03}-00-{s:04}"),
        _ => format!("{a:03}-{g:02}-0000"),
    }
}
