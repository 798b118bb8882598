//! The built-in detectors: for each entity, the regex that finds candidates, the validation that
//! confirms them, and what a scan window must hold for it to run; and the secret prefixes the
//! prefix automaton looks for.

use super::checks::{
    valid_api_key, valid_card, valid_email, valid_iban, valid_ip, valid_phone, valid_ssn,
    valid_token, valid_url_credential,
};
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
        Entity::CloudKey
        | Entity::AccessToken
        | Entity::ApiKey
        | Entity::Credential
        | Entity::Jwt => Needs::Prefix,
        Entity::PrivateKey | Entity::Custom => Needs::Whole,
    };
    let (re, valid): (&str, Validate) = match e {
        Entity::EmailAddress => (
            r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
            valid_email,
        ),
        Entity::PhoneNumber => (
            r"\+[1-9][0-9 ().\-]{6,20}[0-9]|(?:\b1[ .\-])?\(?\b[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}\b|\(?\b0[1-9][0-9]{0,4}\)?(?:[ \-./][0-9]{2,8}){1,4}\b",
            valid_phone,
        ),
        Entity::CreditCard => (r"\b[0-9](?:[ \-]?[0-9]){12,18}\b", valid_card),
        Entity::IbanCode => (
            r"(?i:\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b)",
            valid_iban,
        ),
        Entity::UsSsn => (r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", valid_ssn),
        Entity::IpAddress => (
            r"(?:[0-9A-Fa-f]{0,4}:){2,6}(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}",
            valid_ip,
        ),
        Entity::CloudKey => (
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b|\bAIza[0-9A-Za-z_\-]{35}\b",
            always,
        ),
        Entity::AccessToken => (
            r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b|\bglpat-[A-Za-z0-9_\-]{20,}\b|\bxox[abposr]-[A-Za-z0-9\-]{10,}\b",
            valid_token,
        ),
        Entity::ApiKey => (
            concat!(
                // OpenAI (`sk-`, `sk-proj-`, `sk-svcacct-`, `sk-admin-`) and Anthropic
                // (`sk-ant-api03-`, `sk-ant-admin01-`).
                r"\bsk-[A-Za-z0-9_\-]{20,300}",
                // Hugging Face.
                r"|\bhf_[A-Za-z0-9]{30,40}\b",
                // Stripe secret and restricted keys.
                r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,247}\b",
                // npm (CRC32 suffix).
                r"|\bnpm_[A-Za-z0-9]{36}\b",
                // SendGrid.
                r"|\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}\b",
                // Slack incoming webhooks and workflow triggers: the URL is the credential.
                r"|(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_]{8,}/[A-Za-z0-9_]{8,}/[A-Za-z0-9_]{16,}",
            ),
            valid_api_key,
        ),
        Entity::Credential => (
            r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s:/@?#]{0,128}:[^\s/@?#]{1,256}@",
            valid_url_credential,
        ),
        Entity::PrivateKey => (
            r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,8000}?-----END [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----",
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

/// Email addresses with letters beyond ASCII (`müller@example.com`, `info@bücher.de`): run only
/// in windows that hold an `@` and a non-ASCII byte, since Unicode classes cost several times
/// the ASCII ones.
pub(super) const EMAIL_UNICODE: &str =
    r"[\p{L}\p{N}._%+\-]{1,64}@[\p{L}\p{N}\-]{1,63}(?:\.[\p{L}\p{N}\-]{1,63})*\.\p{L}{2,24}";

/// The detector and validation names of a match `m` of entity `e`, as `moat redact --explain`
/// and the tests report them; keys and tokens are named by provider.
pub(super) fn describe(e: Entity, m: &str) -> (&'static str, &'static str) {
    match e {
        Entity::EmailAddress => ("email", "shape"),
        Entity::PhoneNumber => ("phone", "numbering plan"),
        Entity::CreditCard => ("credit_card", "luhn+issuer"),
        Entity::IbanCode => ("iban", "mod97+length"),
        Entity::UsSsn => ("us_ssn", "area/group/serial"),
        Entity::IpAddress if m.contains(':') => ("ipv6", "parse"),
        Entity::IpAddress => ("ipv4", "parse+context"),
        Entity::CloudKey if m.starts_with("AIza") => ("google", "pattern"),
        Entity::CloudKey => ("aws", "pattern"),
        Entity::AccessToken if m.starts_with("gh") => ("github", "crc32"),
        Entity::AccessToken if m.starts_with("glpat-") => ("gitlab", "pattern"),
        Entity::AccessToken => ("slack", "pattern"),
        Entity::ApiKey => api_key_provider(m),
        Entity::Credential => ("url_userinfo", "pattern"),
        Entity::PrivateKey => ("private_key_block", "pattern"),
        Entity::Jwt => ("jwt", "pattern"),
        Entity::Custom => ("custom.regex", "pattern"),
    }
}

fn api_key_provider(m: &str) -> (&'static str, &'static str) {
    if m.starts_with("sk-ant-") {
        ("anthropic", "entropy")
    } else if m.starts_with("sk-") {
        ("openai", "entropy")
    } else if m.starts_with("hf_") {
        ("huggingface", "entropy")
    } else if m.starts_with("npm_") {
        ("npm", "crc32")
    } else if m.starts_with("SG.") {
        ("sendgrid", "pattern")
    } else if m.contains("hooks.slack.com/") {
        ("slack_webhook", "pattern")
    } else {
        ("stripe", "entropy")
    }
}

/// Prefixes that start the secret detectors' values.
pub(super) const SECRET_PREFIXES: [(Entity, &[&str]); 5] = [
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
    (
        Entity::ApiKey,
        &[
            "sk-",
            "hf_",
            "sk_live_",
            "sk_test_",
            "rk_live_",
            "rk_test_",
            "npm_",
            "SG.",
            "hooks.slack.com/",
        ],
    ),
    (Entity::Credential, &["://"]),
    (Entity::Jwt, &["eyJ"]),
];

/// The validation of detectors whose regex is precise enough.
pub(super) fn always(_: &str) -> bool {
    true
}
