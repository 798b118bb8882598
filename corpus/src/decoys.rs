//! Decoys: numbers and ids that fill ordinary prompts and logs and are none of the entities —
//! version and build numbers, dotted ids, UUIDs, hashes, order, invoice and tracking numbers,
//! timestamps, ISBNs, prices, constants, asset tags, postal codes. Nothing in them may be
//! flagged.

use crate::rng::{Rng, DIGITS, HEX, UPPER, UPPER_DIGITS};
use crate::{render, Kind, Sample};

/// Decoy samples.
const N: usize = 364;

type Family = (
    &'static str,
    &'static [&'static str],
    fn(&mut Rng) -> String,
);

const FAMILIES: [Family; 14] = [
    ("version", &VERSION_T, version),
    ("dotted_id", &DOTTED_T, dotted_id),
    ("uuid", &UUID_T, uuid),
    ("hash", &HASH_T, hash),
    ("order", &ORDER_T, order),
    ("timestamp", &TIME_T, timestamp),
    ("isbn", &ISBN_T, isbn),
    ("invoice", &INVOICE_T, invoice),
    ("tracking", &TRACKING_T, tracking),
    ("price", &PRICE_T, price),
    ("math", &MATH_T, math),
    ("asset", &ASSET_T, asset),
    ("postal", &POSTAL_T, postal),
    ("quantity", &QUANTITY_T, quantity),
];

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    for i in 0..N {
        let (family, templates, gen) = FAMILIES[i % FAMILIES.len()];
        let template = templates[(i / FAMILIES.len()) % templates.len()];
        out.push(render(rng, Kind::Decoy, family, template, "", &mut |r| {
            gen(r)
        }));
    }
}

const VERSION_T: [&str; 6] = [
    "We upgraded to {} last night and the login broke.",
    "Fehler tritt erst ab {} auf.",
    "Le correctif est dans la {}.",
    "pip says: Successfully installed toolkit-{}",
    "Running on {} - is that still supported?",
    "La versión instalada es {}.",
];

const DOTTED_T: [&str; 4] = [
    "the OID {} identifies the certificate template",
    "SNMP walk returned {} for the interface",
    "section {} of the spec describes the retry rules",
    "metric id {} spiked at noon",
];

const UUID_T: [&str; 4] = [
    "request id {} failed with 502",
    "{\"trace_id\": \"{}\", \"span\": \"db.query\"}",
    "Die Sitzung {} ist abgelaufen.",
    "{ts} ERROR job {} exceeded its deadline",
];

const HASH_T: [&str; 4] = [
    "revert commit {} please",
    "the image digest is sha256:{}",
    "git cherry-pick {} fails with a conflict",
    "checksum mismatch: expected {}",
];

const ORDER_T: [&str; 4] = [
    "Where is my order {}? It has been two weeks.",
    "Ma commande {} n'est jamais arrivée.",
    "Bestellung {} wurde storniert.",
    "{\"order_id\": \"{}\", \"status\": \"shipped\"}",
];

const TIME_T: [&str; 4] = [
    "The job ran at {} and again an hour later.",
    "[{}] worker-3 heartbeat ok",
    "Die Wartung ist um {} geplant.",
    "{\"created_at\": \"{}\", \"items\": 3}",
];

const ISBN_T: [&str; 4] = [
    "Can you summarise the book with ISBN {}?",
    "Das Buch (ISBN {}) ist vergriffen.",
    "cite {} in the bibliography",
    "Le livre ISBN {} est en rupture de stock.",
];

const INVOICE_T: [&str; 4] = [
    "Invoice {} is still unpaid.",
    "Rechnung Nr. {} bitte prüfen",
    "La factura {} tiene un error.",
    "{\"invoice\": \"{}\", \"amount\": 120}",
];

const TRACKING_T: [&str; 4] = [
    "tracking number {} shows no movement since Monday",
    "Sendungsnummer {} - Zustellung morgen",
    "Le colis {} est bloqué en douane.",
    "the courier gave me {} as reference",
];

const PRICE_T: [&str; 4] = [
    "The quote came to {} including VAT.",
    "Der Preis liegt bei {}.",
    "Budget: {} for Q3",
    "El total es {} con envío.",
];

const MATH_T: [&str; 4] = [
    "Why does my loop print {} instead of the exact value?",
    "round {} to three decimals",
    "the regression coefficient was {}",
    "assert abs(x - {}) < 1e-9",
];

const ASSET_T: [&str; 4] = [
    "Laptop {} needs a new battery.",
    "Inventarnummer {} ist defekt.",
    "please reassign {} to the new hire",
    "serial {} returned for repair",
];

const POSTAL_T: [&str; 4] = [
    "Ship it to the office, postcode {}.",
    "Wir sind nach {} umgezogen.",
    "Le bureau est au {}.",
    "delivery area {} only",
];

const QUANTITY_T: [&str; 4] = [
    "We processed {} requests yesterday.",
    "page {} of the report has a typo",
    "the table has {} rows after the import",
    "Es waren {} Besucher auf der Messe.",
];

fn version(rng: &mut Rng) -> String {
    let (a, b, c) = (rng.range(1, 20), rng.range(0, 30), rng.range(0, 300));
    match rng.below(7) {
        0 => format!("v{a}.{b}.{c}.{}", rng.range(0, 9)),
        1 => format!(
            "build {}.{b}.{}.{}",
            rng.range(1, 9),
            rng.range(10, 99),
            rng.range(100, 250)
        ),
        2 => format!(
            "version 10.0.{}.{}",
            rng.range(17763, 26100),
            rng.range(1, 4000)
        ),
        3 => format!("firmware {a}.{b}.{}.{}", rng.range(0, 20), rng.range(0, 20)),
        4 => format!("release {a}.{b}.{c}.{}", rng.range(0, 99)),
        5 => format!("{a}.{b}.{c}"),
        _ => format!("v{a}.{b}.{c}-rc.{}", rng.range(1, 5)),
    }
}

fn dotted_id(rng: &mut Rng) -> String {
    let n = rng.range(5, 9);
    let parts: Vec<String> = (0..n).map(|_| rng.range(0, 99).to_string()).collect();
    if rng.one_in(3) {
        format!("1.3.6.1.4.1.{}", parts.join("."))
    } else {
        parts.join(".")
    }
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rng.string(HEX, 8),
        rng.string(HEX, 4),
        rng.string(HEX, 3),
        rng.pick(&["8", "9", "a", "b"]),
        rng.string(HEX, 3),
        rng.string(HEX, 12)
    )
}

fn hash(rng: &mut Rng) -> String {
    let n = *rng.pick(&[7, 12, 40, 64]);
    rng.string(HEX, n)
}

fn order(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("ORD-{}-{}", rng.range(2019, 2026), rng.digits(6)),
        1 => format!("#{}-{}", rng.string(UPPER, 1), rng.digits(5)),
        2 => format!("{}-{}", rng.range(100, 999), rng.digits(7)),
        _ => format!("AMZ{}", rng.string(UPPER_DIGITS, 10)),
    }
}

fn timestamp(rng: &mut Rng) -> String {
    let (h, m, s) = (rng.below(24), rng.below(60), rng.below(60));
    match rng.below(4) {
        0 => crate::words::timestamp(rng),
        1 => format!("{h:02}:{m:02}:{s:02}"),
        2 => format!(
            "2026-{:02}-{:02} {h:02}:{m:02}:{s:02}.{:03}+01:00",
            rng.range(1, 12),
            rng.range(1, 28),
            rng.below(1000)
        ),
        _ => format!("{h:02}:{m:02}"),
    }
}

fn isbn(rng: &mut Rng) -> String {
    let d: Vec<u32> = format!("978{}", rng.digits(9))
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 0 { x } else { 3 * x })
        .sum();
    let check = (10 - sum % 10) % 10;
    let s: String = d.iter().map(|x| x.to_string()).collect();
    format!("{}-{}-{}-{}-{check}", &s[..3], &s[3..4], &s[4..7], &s[7..])
}

fn invoice(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("INV-{}-{}", rng.range(2019, 2026), rng.digits(5)),
        1 => format!("{}-{}", rng.range(2019, 2026), rng.digits(4)),
        _ => format!("F{}/{}", rng.range(19, 26), rng.digits(6)),
    }
}

fn tracking(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("1Z{}{}", rng.string(UPPER_DIGITS, 6), rng.digits(10)),
        1 => format!("JJD{}", rng.digits(18)),
        _ => format!("LX{}DE", rng.digits(9)),
    }
}

fn price(rng: &mut Rng) -> String {
    let (a, c) = (rng.range(1, 999), rng.range(0, 99));
    match rng.below(5) {
        0 => format!("${a},{:03}.{c:02}", rng.range(0, 999)),
        1 => format!("€{a},{c:02}"),
        2 => format!("{a}.{:03},{c:02} EUR", rng.range(0, 999)),
        3 => format!("£{a}.{c:02}"),
        _ => format!("USD {a},{:03},000.00", rng.range(0, 999)),
    }
}

fn math(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => (*rng.pick(&["3.14159", "2.71828", "1.41421356", "0.5772156649"])).to_string(),
        1 => {
            let n = rng.range(3, 8);
            format!("0.{}", rng.digits(n))
        }
        2 => format!(
            "{}.{}e-{}",
            rng.range(1, 9),
            rng.digits(3),
            rng.range(2, 12)
        ),
        _ => format!("{}.{}", rng.range(10, 9999), rng.digits(4)),
    }
}

fn asset(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("ASSET-{}", rng.digits(5)),
        1 => format!("IT-{}-{}", rng.range(2019, 2026), rng.digits(4)),
        _ => format!("C02{}", rng.string(UPPER_DIGITS, 9)),
    }
}

fn postal(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => (*rng.pick(&["SW1A 1AA", "EC1A 1BB", "M1 1AE", "B33 8TH"])).to_string(),
        1 => format!(
            "{} {}",
            rng.digits(5),
            rng.pick(&["Berlin", "Hamburg", "Köln"])
        ),
        2 => format!(
            "{} rue de Rivoli, 750{:02} Paris",
            rng.range(1, 200),
            rng.range(1, 20)
        ),
        _ => format!("{}{}", rng.digit(1, 9), rng.string(DIGITS, 4)),
    }
}

fn quantity(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!(
            "{},{:03},{:03}",
            rng.range(1, 99),
            rng.below(1000),
            rng.below(1000)
        ),
        1 => rng.range(1, 9999).to_string(),
        _ => format!("{}.{:03}", rng.range(1, 999), rng.below(1000)),
    }
}
