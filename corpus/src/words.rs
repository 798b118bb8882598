//! Names, domains and hosts the samples are written with. None of them is a value an entity
//! detector should flag.

use crate::rng::Rng;

pub(crate) const FIRST: [&str; 24] = [
    "jane", "john", "maria", "lukas", "sophie", "pierre", "carmen", "ravi", "priya", "oliver",
    "emma", "noah", "lea", "hugo", "lucia", "javier", "anna", "max", "chloe", "arjun", "fatima",
    "tom", "ines", "paul",
];

pub(crate) const LAST: [&str; 20] = [
    "doe",
    "smith",
    "schmidt",
    "dubois",
    "garcia",
    "patel",
    "sharma",
    "weber",
    "martin",
    "lopez",
    "fischer",
    "bernard",
    "fernandez",
    "kumar",
    "brown",
    "wagner",
    "moreau",
    "ruiz",
    "taylor",
    "becker",
];

/// Names with letters beyond ASCII, as they appear in local parts.
pub(crate) const UNICODE_LOCAL: [&str; 10] = [
    "müller",
    "jürgen.groß",
    "françois",
    "josé.garcía",
    "zoë",
    "björn",
    "søren",
    "ana.muñoz",
    "hélène.dupré",
    "çağla",
];

pub(crate) const DOMAINS: [&str; 14] = [
    "example.com",
    "example.org",
    "mail.example.net",
    "gmail.com",
    "outlook.com",
    "web.de",
    "gmx.de",
    "orange.fr",
    "free.fr",
    "yahoo.es",
    "acme-corp.com",
    "eu.contoso.io",
    "uni-heidelberg.de",
    "company.co.uk",
];

pub(crate) const UNICODE_DOMAINS: [&str; 5] = [
    "bücher.de",
    "müller-bau.de",
    "café-paris.fr",
    "españa-viajes.es",
    "straße.example",
];

pub(crate) const HOSTS: [&str; 8] = [
    "db.internal",
    "db-primary.prod.example.com",
    "localhost",
    "pg.acme-corp.com",
    "mysql.eu-west-1.rds.amazonaws.com",
    "cache.local",
    "orders-db",
    "warehouse.example.net",
];

pub(crate) const CITIES: [&str; 8] = [
    "Berlin",
    "Paris",
    "Madrid",
    "London",
    "Munich",
    "Lyon",
    "Sevilla",
    "Manchester",
];

/// A display name (`Jane Doe`).
pub(crate) fn full_name(rng: &mut Rng) -> String {
    format!(
        "{} {}",
        pick_capitalised(rng, &FIRST),
        pick_capitalised(rng, &LAST)
    )
}

pub(crate) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| {
        f.to_uppercase().chain(c).collect::<String>()
    })
}

/// An ISO 8601 timestamp of a log line (`2026-03-12T10:15:30Z`).
pub(crate) fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        rng.range(1, 12),
        rng.range(1, 28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// One of `words`, capitalised.
pub(crate) fn pick_capitalised(rng: &mut Rng, words: &[&str]) -> String {
    capitalise(words[rng.below(words.len())])
}
