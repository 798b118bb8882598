//! The built-in detectors: for each entity, the regex that finds candidates, the validation that
//! confirms them, and what a scan window must hold for it to run; and the secret prefixes the
//! prefix automaton looks for.

use super::assign::{ASSIGNMENT, SAID};
use super::checks::{
    valid_api_key, valid_card, valid_email, valid_iban, valid_ip, valid_phone, valid_ssn,
    valid_token, valid_url_credential,
};
use super::context::Context;
use super::national::{
    valid_aadhaar, valid_birth_date, valid_nino, valid_passport, valid_steuer_id,
};
use super::prefixes::api_key_entry;
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
    /// Words that must stand near a match (and near the window for the regex to run at all).
    pub(super) context: Option<Context>,
    pub(super) detector: &'static str,
    pub(super) validation: &'static str,
}

/// A built-in detector: what it finds, where it may run, its regex and validation.
pub(super) struct Spec {
    pub(super) entity: Entity,
    pub(super) needs: Needs,
    pub(super) re: &'static str,
    pub(super) valid: Validate,
    pub(super) context: Option<Context>,
    pub(super) detector: &'static str,
    pub(super) validation: &'static str,
}

const fn spec(
    entity: Entity,
    needs: Needs,
    re: &'static str,
    valid: Validate,
    detector: &'static str,
    validation: &'static str,
) -> Spec {
    Spec {
        entity,
        needs,
        re,
        valid,
        context: None,
        detector,
        validation,
    }
}

const fn near(mut s: Spec, context: Context) -> Spec {
    s.context = Some(context);
    s
}

/// Every built-in detector, in the order they run.
pub(super) const SPECS: &[Spec] = &[
    spec(
        Entity::EmailAddress,
        Needs::At,
        r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
        valid_email,
        "email",
        "shape",
    ),
    // Letters beyond ASCII (`müller@example.com`, `info@bücher.de`): only in windows that hold
    // an `@` and a byte beyond ASCII, since Unicode classes cost several times the ASCII ones.
    spec(
        Entity::EmailAddress,
        Needs::AtUnicode,
        r"[\p{L}\p{N}._%+\-]{1,64}@[\p{L}\p{N}\-]{1,63}(?:\.[\p{L}\p{N}\-]{1,63})*\.\p{L}{2,24}",
        valid_email,
        "email",
        "shape",
    ),
    spec(
        Entity::UsSsn,
        Needs::Ssn,
        r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
        valid_ssn,
        "us_ssn",
        "area/group/serial",
    ),
    // Nine plain digits or `782 32 3220`, next to "SSN"/"social security".
    near(
        spec(
            Entity::UsSsn,
            Needs::Run(1 << 9 | 1 << 3),
            r"\b(?:[0-9]{9}|[0-9]{3} [0-9]{2} [0-9]{4})\b",
            valid_ssn,
            "us_ssn.context",
            "area/group/serial+context",
        ),
        Context::Ssn,
    ),
    spec(
        Entity::PhoneNumber,
        Needs::Digits(8),
        r"\+[1-9][0-9 ().\-]{6,20}[0-9]|(?:\b1[ .\-]?)?(?:\(\b[2-9][0-9]{2}\)[ .\-]?|\b[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}\b|\(?\b0[1-9][0-9]{0,4}\)?(?:[ \-./][0-9]{2,8}){1,4}\b",
        valid_phone,
        "phone",
        "numbering plan",
    ),
    // Compact national numbers (`07911123456`, `0612345678`, `98765 43210`) next to a phone word.
    near(
        spec(
            Entity::PhoneNumber,
            Needs::Run(1 << 10 | 1 << 11 | 1 << 12 | 1 << 5),
            r"\b(?:0[1-9][0-9]{8,10}|[2-9][0-9]{9}|[6-9][0-9]{4} [0-9]{5})\b",
            always,
            "phone.compact",
            "context",
        ),
        Context::Phone,
    ),
    spec(
        Entity::CreditCard,
        Needs::Digits(13),
        r"\b[0-9](?:[ \-]?[0-9]){12,18}\b",
        valid_card,
        "credit_card",
        "luhn+issuer",
    ),
    spec(
        Entity::IbanCode,
        Needs::Iban,
        r"(?i:\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b)",
        valid_iban,
        "iban",
        "mod97+length",
    ),
    spec(Entity::IpAddress, Needs::Ipv4, IP, valid_ip, "", ""),
    // IPv6 has its own trigger; the same regex and validation.
    spec(Entity::IpAddress, Needs::Colon, IP, valid_ip, "", ""),
    spec(
        Entity::UkNino,
        Needs::Upper(6, 3),
        r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
        valid_nino,
        "uk_nino",
        "prefix rules",
    ),
    spec(
        Entity::DeTaxId,
        Needs::Runs(1 << 2 | 1 << 3, 11),
        r"\b[1-9][0-9] [0-9]{3} [0-9]{3} [0-9]{3}\b",
        valid_steuer_id,
        "de_tax_id",
        "iso7064",
    ),
    near(
        spec(
            Entity::DeTaxId,
            Needs::Run(1 << 11),
            r"\b[1-9][0-9]{10}\b",
            valid_steuer_id,
            "de_tax_id.context",
            "iso7064+context",
        ),
        Context::TaxDe,
    ),
    spec(
        Entity::InAadhaar,
        Needs::Runs(1 << 4, 12),
        r"\b[2-9][0-9]{3}[ \-][0-9]{4}[ \-][0-9]{4}\b",
        valid_aadhaar,
        "in_aadhaar",
        "verhoeff",
    ),
    near(
        spec(
            Entity::InAadhaar,
            Needs::Run(1 << 12),
            r"\b[2-9][0-9]{11}\b",
            valid_aadhaar,
            "in_aadhaar.context",
            "verhoeff+context",
        ),
        Context::Aadhaar,
    ),
    spec(
        Entity::InPan,
        Needs::Upper(4, 5),
        r"\b[A-Z]{3}[ABCFGHLJPT][A-Z][0-9]{4}[A-Z]\b",
        always,
        "in_pan",
        "structure",
    ),
    near(
        spec(
            Entity::Passport,
            Needs::Code,
            r"\b[A-Z0-9]{6,9}\b",
            valid_passport,
            "passport",
            "context",
        ),
        Context::Passport,
    ),
    near(
        spec(
            Entity::DateOfBirth,
            Needs::Run(1 << 1 | 1 << 2),
            DATE,
            valid_birth_date,
            "date_of_birth",
            "calendar+context",
        ),
        Context::Birth,
    ),
    spec(
        Entity::CloudKey,
        Needs::Prefix,
        concat!(
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b|\bAIza[0-9A-Za-z_\-]{35}",
            // Alibaba Cloud and Tencent Cloud access key ids.
            r"|\bLTAI[A-Za-z0-9]{20}\b|\bAKID[A-Za-z0-9]{32}\b",
        ),
        always,
        "",
        "pattern",
    ),
    // Providers found in windows holding a long token (their prefixes would slow the prefix
    // automaton's vectorized search for all text).
    spec(
        Entity::ApiKey,
        Needs::LongToken,
        concat!(
            // AI providers with their own prefixes: Groq, Replicate, Perplexity, xAI,
            // LangSmith, Pinecone, Tavily.
            r"\bgsk_[A-Za-z0-9]{52}\b|\br8_[A-Za-z0-9]{37}\b|\bpplx-[A-Za-z0-9]{48}\b",
            r"|\bxai-[A-Za-z0-9]{80}\b|\blsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}\b",
            r"|\bpcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{40,80}\b|\btvly-(?:dev-)?[A-Za-z0-9]{32}\b",
            // Google OAuth client secrets, Mailgun, Square, Shopify,
            // DigitalOcean, PyPI, Docker Hub, Databricks, Linear, Postman, Supabase, New Relic.
            r"|\bGOCSPX-[A-Za-z0-9_\-]{28}\b|\bkey-[a-f0-9]{32}\b",
            r"|\bsq0(?:atp|csp)-[A-Za-z0-9_\-]{22,43}\b|\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b",
            r"|\bdo[por]_v1_[a-f0-9]{64}\b|\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
            r"|\bdckr_pat_[A-Za-z0-9_\-]{27}\b|\bdapi[a-f0-9]{32}(?:-[0-9])?\b",
            r"|\blin_api_[A-Za-z0-9]{40}\b|\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b",
            r"|\bsbp_[a-f0-9]{40}\b|\bNRAK-[A-Z0-9]{27}\b",
            // Discord webhooks: the URL is the credential.
            r"|(?:https?://)?(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_\-]{60,68}",
        ),
        valid_api_key,
        "",
        "",
    ),
    spec(
        Entity::AccessToken,
        Needs::Prefix,
        concat!(
            r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
            r"|\bglpat-[A-Za-z0-9_\-]{20,}\b",
            r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}\b",
        ),
        valid_token,
        "",
        "",
    ),
    spec(
        Entity::ApiKey,
        Needs::Prefix,
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
        "",
        "",
    ),
    spec(
        Entity::AccessToken,
        Needs::LongToken,
        concat!(
            // GitLab pipeline-trigger, deploy, runner, feed and OAuth tokens.
            r"\bgl(?:ptt|dt|rt|ft|soat|oas)-[A-Za-z0-9_\-]{20,}\b",
            // Bitbucket app passwords, Heroku, Sentry, HashiCorp Vault.
            r"|\bATBB[A-Za-z0-9_=.\-]{32}\b|\bHRKU-[A-Za-z0-9_\-]{60}\b",
            r"|\bsntr[ysu]s?_[A-Za-z0-9+/=_]{40,}|\bhvs\.[A-Za-z0-9_\-]{90,}",
        ),
        valid_token,
        "",
        "",
    ),
    // Telegram bot tokens: the bot's id, `:`, a 35-character secret starting `AA`.
    spec(
        Entity::AccessToken,
        Needs::Colon,
        r"\b[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}\b",
        always,
        "telegram",
        "pattern",
    ),
    spec(
        Entity::Credential,
        Needs::Prefix,
        r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s:/@?#]{0,128}:[^\s/@?#]{1,256}@",
        valid_url_credential,
        "url_userinfo",
        "pattern",
    ),
    spec(
        Entity::Credential,
        Needs::Assign,
        ASSIGNMENT,
        always,
        "assignment",
        "name+value",
    ),
    spec(
        Entity::Credential,
        Needs::Said,
        SAID,
        always,
        "password_said",
        "name+value",
    ),
    spec(
        Entity::PrivateKey,
        Needs::Whole,
        r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,8000}?-----END [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----",
        always,
        "private_key_block",
        "pattern",
    ),
    spec(
        Entity::Jwt,
        Needs::Prefix,
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
        always,
        "jwt",
        "pattern",
    ),
];

const IP: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,6}(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}";

/// Month names and abbreviations: English, German, French, Spanish.
macro_rules! months {
    () => {
        "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec|januar|februar|märz|mai|juni|juli|oktober|dezember|dez|janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|déc|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
    };
}

/// Dates as written: `12/03/1985`, `12.03.85`, `1985-03-12`, `12 March 1985`, `March 12, 1985`,
/// `3rd June 1990`, `12 de marzo de 1985` (English, German, French and Spanish month names).
const DATE: &str = concat!(
    r"\b(?:[0-3]?[0-9][./\-][01]?[0-9][./\-](?:[0-9]{4}|[0-9]{2})",
    r"|(?:19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]",
    r"|[0-3]?[0-9](?:st|nd|rd|th|er)?\.? (?:de )?(?i:",
    months!(),
    r")\.?,? (?:de )?(?:19|20)[0-9]{2}",
    r"|(?i:",
    months!(),
    r")\.? [0-3]?[0-9](?:st|nd|rd|th)?,? (?:19|20)[0-9]{2})\b",
);

/// The detector of a match `m` whose name depends on it (an address's version, a key's
/// provider) and what validated it.
pub(super) fn provider(e: Entity, m: &str) -> (&'static str, &'static str) {
    match e {
        Entity::IpAddress if m.contains(':') => ("ipv6", "parse"),
        Entity::IpAddress => ("ipv4", "parse+context"),
        Entity::CloudKey if m.starts_with("AIza") => ("google", "pattern"),
        Entity::CloudKey if m.starts_with("LTAI") => ("alibaba", "pattern"),
        Entity::CloudKey if m.starts_with("AKID") => ("tencent", "pattern"),
        Entity::CloudKey => ("aws", "pattern"),
        Entity::AccessToken if m.starts_with("gh") => ("github", "crc32"),
        Entity::AccessToken if m.starts_with("github_pat_") => ("github", "pattern"),
        Entity::AccessToken if m.starts_with("gl") => ("gitlab", "pattern"),
        Entity::AccessToken if m.starts_with("xox") => ("slack", "pattern"),
        Entity::AccessToken if m.starts_with("ATBB") => ("bitbucket", "pattern"),
        Entity::AccessToken if m.starts_with("HRKU-") => ("heroku", "pattern"),
        Entity::AccessToken if m.starts_with("sntr") => ("sentry", "pattern"),
        Entity::AccessToken => ("vault", "pattern"),
        _ => api_key_provider(m),
    }
}

fn api_key_provider(m: &str) -> (&'static str, &'static str) {
    api_key_entry(m).map_or(("api_key", "pattern"), |(_, name, how)| (name, how))
}

/// The validation of detectors whose regex is precise enough.
pub(super) fn always(_: &str) -> bool {
    true
}
