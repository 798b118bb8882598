//! The prefixes that start secret values: what the prefix automata search for, and which
//! provider an API key prefix belongs to.

use super::Entity;

/// API key prefixes, longest first where they share a start, with their provider and what
/// validates them beyond the shape.
pub(super) const PROVIDERS: [(&str, &str, &str); 28] = [
    ("sk-ant-", "anthropic", "entropy"),
    ("sk-", "openai", "entropy"),
    ("sk_", "stripe", "entropy"),
    ("rk_", "stripe", "entropy"),
    ("hf_", "huggingface", "entropy"),
    ("npm_", "npm", "crc32"),
    ("SG.", "sendgrid", "pattern"),
    ("gsk_", "groq", "entropy"),
    ("r8_", "replicate", "entropy"),
    ("pplx-", "perplexity", "entropy"),
    ("xai-", "xai", "entropy"),
    ("lsv2_", "langsmith", "entropy"),
    ("pcsk_", "pinecone", "entropy"),
    ("tvly-", "tavily", "entropy"),
    ("GOCSPX-", "google", "entropy"),
    ("key-", "mailgun", "entropy"),
    ("sq0", "square", "entropy"),
    ("shp", "shopify", "entropy"),
    ("do", "digitalocean", "entropy"),
    ("pypi-", "pypi", "entropy"),
    ("dckr_pat_", "docker", "entropy"),
    ("dapi", "databricks", "entropy"),
    ("lin_api_", "linear", "entropy"),
    ("PMAK-", "postman", "entropy"),
    ("sbp_", "supabase", "entropy"),
    ("NRAK-", "newrelic", "entropy"),
    ("hooks.slack.com/", "slack_webhook", "pattern"),
    ("discord", "discord_webhook", "pattern"),
];

/// The provider entry of an API key match.
pub(super) fn api_key_entry(
    m: &str,
) -> Option<&'static (&'static str, &'static str, &'static str)> {
    PROVIDERS
        .iter()
        .find(|(p, _, _)| m.starts_with(p))
        .or_else(|| {
            // A webhook URL starts with its scheme (or a subdomain): its host names it.
            PROVIDERS
                .iter()
                .find(|(p, name, _)| name.ends_with("_webhook") && m.contains(p))
        })
}

/// Token prefixes searched with the API key prefixes, not with the other tokens' (which keeps
/// both automata's vectorized search fast).
pub(super) const SECOND_HALF: [&str; 1] = ["xox"];

/// Prefixes that start the secret detectors' values.
pub(super) const SECRET_PREFIXES: [(Entity, &[&str]); 5] = [
    (
        Entity::CloudKey,
        &[
            "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "AIza", "LTAI", "AKID",
        ],
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
            "sk_",
            "rk_",
            "npm_",
            "SG.",
            "hooks.slack.com/",
        ],
    ),
    (Entity::Credential, &["://"]),
    (Entity::Jwt, &["eyJ"]),
];
