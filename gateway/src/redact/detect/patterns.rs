//! The built-in detectors: for each entity, the regex that finds candidates, the validation that
//! confirms them, and what a scan window must hold for it to run; and the secret prefixes the
//! prefix automaton looks for.

use super::checks::{valid_card, valid_email, valid_iban, valid_ip, valid_phone, valid_ssn};
use super::scan::Needs;
use super::Entity;

/// Confirms a candidate the regex found.
pub(super) type Validate = fn(&str) -> bool;

/// A compiled detector.
pub(super) struct Pattern {
    pub(super) entity: Entity,
    pub(super) re: regex::Regex,
    pub(super) valid: Validate,
    pub(super) needs: Needs,
}

/// A built-in entity's window requirement, regex and validation; `None` for
/// [`Entity::Custom`] (operator-defined patterns).
pub(super) fn builtin(e: Entity) -> Option<(Needs, &'static str, Validate)> {
    let needs = match e {
        Entity::EmailAddress => Needs::At,
        Entity::PhoneNumber => Needs::Digits(8),
        Entity::CreditCard => Needs::Digits(13),
        Entity::IbanCode => Needs::Iban,
        Entity::UsSsn => Needs::Ssn,
        Entity::IpAddress => Needs::Ipv4,
        Entity::CloudKey | Entity::AccessToken | Entity::Jwt => Needs::Prefix,
        Entity::PrivateKey | Entity::Custom => Needs::Whole,
    };
    let (re, valid): (&str, Validate) = match e {
        Entity::EmailAddress => (
            r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
            valid_email,
        ),
        Entity::PhoneNumber => (
            r"\+[1-9][0-9 ().\-]{6,20}[0-9]|\(?\b[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}\b|\(?\b0[1-9][0-9]{0,4}\)?(?:[ \-./][0-9]{2,8}){1,4}\b",
            valid_phone,
        ),
        Entity::CreditCard => (r"\b[0-9](?:[ \-]?[0-9]){12,18}\b", valid_card),
        Entity::IbanCode => (r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", valid_iban),
        Entity::UsSsn => (r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", valid_ssn),
        Entity::IpAddress => (
            r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}",
            valid_ip,
        ),
        Entity::CloudKey => (
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b|\bAIza[0-9A-Za-z_\-]{35}\b",
            always,
        ),
        Entity::AccessToken => (
            r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b|\bglpat-[A-Za-z0-9_\-]{20,}\b|\bxox[abposr]-[A-Za-z0-9\-]{10,}\b",
            always,
        ),
        Entity::PrivateKey => (
            r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----[\s\S]{16,8000}?-----END [A-Z ]{0,20}PRIVATE KEY-----",
            always,
        ),
        Entity::Jwt => (
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
            always,
        ),
        Entity::Custom => return None,
    };
    Some((needs, re, valid))
}

/// Prefixes that start the secret detectors' values.
pub(super) const SECRET_PREFIXES: [(Entity, &[&str]); 3] = [
    (
        Entity::CloudKey,
        &["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "AIza"],
    ),
    (
        Entity::AccessToken,
        &[
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "glpat-",
            "xox",
        ],
    ),
    (Entity::Jwt, &["eyJ"]),
];

/// The validation of detectors whose regex is precise enough.
pub(super) fn always(_: &str) -> bool {
    true
}
