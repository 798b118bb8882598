//! The labelled corpus: chat prompts, pasted `.env` lines, JSON configuration, HTTP headers, CSV
//! rows and log lines, in English, German, French and Spanish, holding personal data and secrets
//! at known byte offsets; near misses (a wrong checksum, length or prefix, a number without the
//! word that makes it one) and decoys (versions, ids, hashes, timestamps) that must not be
//! flagged.
//!
//! Every value is drawn from a seeded generator and is valid for its entity (checksums
//! included), so a seed always gives the same corpus and no fixed list goes stale. Each part of
//! the corpus draws from its own stream: adding a part leaves the others' samples unchanged.

pub mod checks;
mod context;
mod credentials;
mod decoys;
mod encoded;
mod national;
mod network;
mod personal;
mod rng;
mod secrets;
mod words;

use rng::Rng;

/// A labelled value: byte offsets in the sample's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start (inclusive).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// The entity, as the gateway names it (`EMAIL_ADDRESS`, …).
    pub entity: &'static str,
}

/// What a sample is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Holds labelled values, each of which must be found.
    Positive,
    /// Looks like a value but is not one (wrong checksum, length or prefix; no context word):
    /// nothing may be flagged.
    NearMiss,
    /// Ordinary numbers and ids (versions, hashes, timestamps, prices): nothing may be flagged.
    Decoy,
}

/// One text and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The text, as a user would send it.
    pub text: String,
    /// The values it holds, in order.
    pub spans: Vec<Span>,
    /// Positive, near miss or decoy.
    pub kind: Kind,
    /// How a positive is written (`chat`, `de`, `fr`, `es`, `env`, `json`, `yaml`, `header`,
    /// `shell`, `csv`, `log`, `context`, `encoded`); what makes a near miss one (`checksum`,
    /// `length`, `prefix`, `range`, `shape`, `no_context`, `placeholder`); which kind of decoy it
    /// is (`version`, `uuid`, `hash`, …).
    pub family: &'static str,
}

/// The entity names the corpus labels.
pub mod entity {
    /// An email address.
    pub const EMAIL: &str = "EMAIL_ADDRESS";
    /// A phone number.
    pub const PHONE: &str = "PHONE_NUMBER";
    /// A payment card number.
    pub const CARD: &str = "CREDIT_CARD";
    /// An IBAN.
    pub const IBAN: &str = "IBAN_CODE";
    /// A US social security number.
    pub const SSN: &str = "US_SSN";
    /// An IPv4 or IPv6 address.
    pub const IP: &str = "IP_ADDRESS";
    /// An AWS or Google key id.
    pub const CLOUD: &str = "CLOUD_ACCESS_KEY";
    /// A GitHub, GitLab or Slack token.
    pub const TOKEN: &str = "ACCESS_TOKEN";
    /// A provider API key or a Slack webhook URL.
    pub const API_KEY: &str = "API_KEY";
    /// A password or secret written in place.
    pub const CREDENTIAL: &str = "CREDENTIAL";
    /// A PEM, OpenSSH or PGP private key block.
    pub const PRIVATE_KEY: &str = "PRIVATE_KEY";
    /// A JSON Web Token.
    pub const JWT: &str = "JWT";
    /// A UK National Insurance number.
    pub const NINO: &str = "UK_NINO";
    /// A German tax id (Steuer-ID).
    pub const DE_TAX_ID: &str = "DE_TAX_ID";
    /// An Indian Aadhaar number.
    pub const AADHAAR: &str = "IN_AADHAAR";
    /// An Indian PAN.
    pub const PAN: &str = "IN_PAN";
    /// A passport number.
    pub const PASSPORT: &str = "PASSPORT";
    /// A date of birth.
    pub const DOB: &str = "DATE_OF_BIRTH";

    /// Every entity the corpus labels.
    pub const ALL: [&str; 18] = [
        EMAIL,
        PHONE,
        CARD,
        IBAN,
        SSN,
        IP,
        CLOUD,
        TOKEN,
        API_KEY,
        CREDENTIAL,
        PRIVATE_KEY,
        JWT,
        NINO,
        DE_TAX_ID,
        AADHAAR,
        PAN,
        PASSPORT,
        DOB,
    ];
}

/// The corpus of a seed. Deterministic for a seed.
pub fn generate(seed: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    personal::generate(&mut Rng::fork(seed, 1), &mut out);
    network::generate(&mut Rng::fork(seed, 2), &mut out);
    secrets::generate(&mut Rng::fork(seed, 3), &mut out);
    credentials::generate(&mut Rng::fork(seed, 7), &mut out);
    national::generate(&mut Rng::fork(seed, 4), &mut out);
    context::generate(&mut Rng::fork(seed, 8), &mut out);
    encoded::generate(&mut Rng::fork(seed, 5), &mut out);
    decoys::generate(&mut Rng::fork(seed, 6), &mut out);
    out
}

/// A template and the family it belongs to.
pub(crate) type Template = (&'static str, &'static str);

/// Draws a value.
pub(crate) type Gen<'a> = &'a mut dyn FnMut(&mut Rng) -> String;

/// The sample of `template`: `{}` is a value of `gen`, labelled `entity` in a positive sample;
/// `{name}`, `{first}`, `{city}`, `{host}`, `{n}` and `{ts}` are filler (a name, a city, a host,
/// a small number, a timestamp); `{email}`, `{phone}`, `{ip}`, `{iban}`, `{card}`, `{awskey}`
/// and `{aadhaar}` are further labelled values. Any other brace is literal (JSON).
pub(crate) fn render(
    rng: &mut Rng,
    kind: Kind,
    family: &'static str,
    template: &str,
    entity: &'static str,
    gen: Gen<'_>,
) -> Sample {
    let mut text = String::with_capacity(template.len() + 64);
    let mut spans = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let token = after
            .find('}')
            .map(|j| &after[..j])
            .filter(|t| t.bytes().all(|c| c.is_ascii_lowercase()));
        let value = token.and_then(|t| {
            Some(match t {
                "" => (gen(rng), Some(entity)),
                "name" => (words::full_name(rng), None),
                "first" => (words::pick_capitalised(rng, &words::FIRST), None),
                "city" => ((*rng.pick(&words::CITIES)).to_string(), None),
                "host" => ((*rng.pick(&words::HOSTS)).to_string(), None),
                "n" => (rng.range(2, 9999).to_string(), None),
                "ts" => (words::timestamp(rng), None),
                "email" => (personal::email(rng), Some(entity::EMAIL)),
                "phone" => (personal::phone(rng), Some(entity::PHONE)),
                "iban" => (personal::iban(rng), Some(entity::IBAN)),
                "card" => (personal::card(rng), Some(entity::CARD)),
                "ip" => (network::ipv4(rng), Some(entity::IP)),
                "awskey" => (secrets::aws_key(rng), Some(entity::CLOUD)),
                "aadhaar" => (national::aadhaar(rng), Some(entity::AADHAAR)),
                _ => return None,
            })
        });
        match (token, value) {
            (Some(t), Some((value, label))) => {
                let start = text.len();
                text.push_str(&value);
                if let (Some(entity), Kind::Positive) = (label, kind) {
                    spans.push(Span {
                        start,
                        end: text.len(),
                        entity,
                    });
                }
                rest = &after[t.len() + 1..];
            }
            _ => {
                text.push('{');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    Sample {
        text,
        spans,
        kind,
        family,
    }
}

/// `n` samples of `kind`, one per template in turn, each holding a value of `gen`.
pub(crate) fn samples(
    rng: &mut Rng,
    out: &mut Vec<Sample>,
    kind: Kind,
    entity: &'static str,
    templates: &[Template],
    n: usize,
    gen: Gen<'_>,
) {
    for i in 0..n {
        let (family, template) = templates[i % templates.len()];
        out.push(render(rng, kind, family, template, entity, gen));
    }
}

#[cfg(test)]
mod tests;
