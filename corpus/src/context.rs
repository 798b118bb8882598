//! Values that are numbers like many others and become personal data only next to the word
//! that names them: a US social security number as 9 plain or spaced digits next to "SSN", a
//! compact national phone number next to "phone" or "call me", a date next to "born" or "date
//! of birth". The same values without the word are near misses.

use crate::entity::{DOB, PHONE, SSN};
use crate::personal::ssn_digits;
use crate::rng::Rng;
use crate::{samples, Kind, Sample, Template};

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = Kind::Positive;
    samples(rng, out, p, SSN, &SSN_T, 48, &mut plain_ssn);
    samples(rng, out, p, PHONE, &PHONE_T, 48, &mut compact_phone);
    samples(rng, out, p, DOB, &DOB_EN_T, 42, &mut |r| {
        date(r, true, &[0, 1, 2, 3, 4])
    });
    samples(rng, out, p, DOB, &DOB_DE_T, 12, &mut |r| {
        date(r, true, &[1, 2, 5])
    });
    samples(rng, out, p, DOB, &DOB_FR_T, 12, &mut |r| {
        date(r, true, &[0, 6])
    });
    samples(rng, out, p, DOB, &DOB_ES_T, 12, &mut |r| {
        date(r, true, &[0, 7])
    });

    let m = Kind::NearMiss;
    samples(rng, out, m, SSN, &NO_WORD_T, 24, &mut |r| loop {
        // Area 0xx spaced 3-2-4 is also how a 9-digit national phone number is written.
        let s = plain_ssn(r);
        if !s.starts_with('0') {
            break s;
        }
    });
    samples(rng, out, m, PHONE, &NO_WORD_T, 24, &mut compact_phone);
    samples(rng, out, m, DOB, &NOT_BIRTH_T, 36, &mut |r| {
        date(r, false, &[0, 1, 2, 3, 4, 5, 6, 7])
    });
}

const SSN_T: [Template; 8] = [
    ("context", "My SSN is {} - please keep it private."),
    ("context", "social security number {}"),
    ("context", "SSN: {}"),
    ("context", "{\"ssn\": \"{}\", \"state\": \"TX\"}"),
    (
        "context",
        "Here is my social security no. {} for the tax form",
    ),
    ("context", "ssn={}"),
    ("context", "Mi número de seguro social (SSN) es {}."),
    ("context", "Can you check if {} is a valid SSN format?"),
];

const PHONE_T: [Template; 8] = [
    ("context", "call me on {} tonight"),
    ("context", "My mobile is {}"),
    ("context", "phone: {}"),
    ("context", "Tel {} (after 6pm)"),
    ("context", "Telefon: {} - bitte nur abends anrufen"),
    ("context", "Mon mobile : {}"),
    ("context", "Mi teléfono es {}, llámame mañana."),
    ("context", "{\"name\": \"{name}\", \"phone\": \"{}\"}"),
];

const DOB_EN_T: [Template; 7] = [
    ("context", "I was born on {} in {city}."),
    ("context", "DOB: {}"),
    ("context", "date of birth {} - does that make me eligible?"),
    ("context", "My birthday is {} and I want a reminder."),
    (
        "context",
        "Patient {name}, born {}, allergic to penicillin.",
    ),
    ("json", "{\"name\": \"{name}\", \"date_of_birth\": \"{}\"}"),
    ("csv", "name,dob,city\n{name},{},{city}"),
];

const DOB_DE_T: [Template; 2] = [("de", "Ich bin am {} geboren."), ("de", "Geburtsdatum: {}")];

const DOB_FR_T: [Template; 2] = [
    ("fr", "Je suis né le {} à {city}."),
    ("fr", "Date de naissance : {}"),
];

const DOB_ES_T: [Template; 2] = [
    ("es", "Nací el {} en {city}."),
    ("es", "Fecha de nacimiento: {}"),
];

/// The same numbers with no word that makes them personal data.
const NO_WORD_T: [Template; 6] = [
    ("no_context", "order {} shipped yesterday"),
    (
        "no_context",
        "Customer number {} - please quote it in replies",
    ),
    ("no_context", "ticket #{} was closed"),
    ("no_context", "Rechnungsnummer {}"),
    ("no_context", "the batch id is {}"),
    ("no_context", "{\"reference\": \"{}\"}"),
];

const NOT_BIRTH_T: [Template; 6] = [
    ("no_context", "The meeting is on {}, room 4."),
    ("no_context", "invoice dated {} is overdue"),
    ("no_context", "deadline: {}"),
    ("no_context", "Der Vertrag beginnt am {}."),
    ("no_context", "La facture du {} est impayée."),
    ("no_context", "El plazo termina el {}."),
];

/// 9 digits, compact or spaced 3-2-4, with the social security number rules.
fn plain_ssn(rng: &mut Rng) -> String {
    let (a, g, s) = ssn_digits(rng);
    if rng.one_in(3) {
        format!("{a:03} {g:02} {s:04}")
    } else {
        format!("{a:03}{g:02}{s:04}")
    }
}

/// A national number written without separators (UK and German mobiles, French mobiles, Indian
/// mobiles compact or 5-5).
fn compact_phone(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => format!("07{}{}", rng.digit(4, 9), rng.digits(8)),
        1 => format!("015{}{}", rng.digit(1, 9), rng.digits(7)),
        2 => format!("0{}{}", rng.digit(6, 7), rng.digits(8)),
        3 => format!("{}{} {}", rng.digit(6, 9), rng.digits(4), rng.digits(5)),
        _ => format!("{}{}", rng.digit(6, 9), rng.digits(9)),
    }
}

const MONTHS: [[&str; 4]; 12] = [
    ["January", "Januar", "janvier", "enero"],
    ["February", "Februar", "février", "febrero"],
    ["March", "März", "mars", "marzo"],
    ["April", "April", "avril", "abril"],
    ["May", "Mai", "mai", "mayo"],
    ["June", "Juni", "juin", "junio"],
    ["July", "Juli", "juillet", "julio"],
    ["August", "August", "août", "agosto"],
    ["September", "September", "septembre", "septiembre"],
    ["October", "Oktober", "octobre", "octubre"],
    ["November", "November", "novembre", "noviembre"],
    ["December", "Dezember", "décembre", "diciembre"],
];

/// A date in one of the written `forms` (numbered as below); a birth date (1940–2007) or a
/// recent one.
fn date(rng: &mut Rng, birth: bool, forms: &[usize]) -> String {
    let y = if birth {
        rng.range(1940, 2007)
    } else {
        rng.range(2019, 2027)
    };
    let (m, d) = (rng.range(1, 12), rng.range(1, 28));
    let names = MONTHS[m - 1];
    match *rng.pick(forms) {
        0 => format!("{d:02}/{m:02}/{y}"),
        1 => format!("{y}-{m:02}-{d:02}"),
        2 => format!("{d:02}.{m:02}.{y}"),
        3 => format!("{d} {} {y}", names[0]),
        4 => format!("{} {d}, {y}", names[0]),
        5 => format!("{d}. {} {y}", names[1]),
        6 => format!("{d} {} {y}", names[2]),
        _ => format!("{d} de {} de {y}", names[3]),
    }
}
