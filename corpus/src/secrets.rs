//! Cloud key ids, access tokens and provider API keys, pasted into chat, `.env` files, JSON,
//! HTTP headers, shell commands and logs; and the near misses of each (wrong checksum, prefix or
//! length).

use crate::checks::base62_crc;
use crate::entity::{API_KEY, CLOUD, TOKEN};
use crate::rng::{Rng, ALNUM, B64URL, HEX, UPPER_DIGITS};
use crate::{samples, Kind, Sample, Template};

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = Kind::Positive;
    samples(rng, out, p, CLOUD, &AWS_T, 40, &mut aws_key);
    samples(rng, out, p, CLOUD, &GOOGLE_T, 32, &mut google_key);
    samples(rng, out, p, TOKEN, &TOKEN_T, 74, &mut access_token);
    samples(rng, out, p, TOKEN, &CLONE_T, 6, &mut |r| {
        let kind = r.pick(&["ghp", "gho", "ghu", "ghs", "ghr"]);
        format!("{kind}_{}", checksummed(r))
    });
    samples(rng, out, p, API_KEY, &API_T, 80, &mut api_key);
    samples(rng, out, p, API_KEY, &WEBHOOK_T, 12, &mut slack_webhook);

    let m = Kind::NearMiss;
    samples(
        rng,
        out,
        m,
        TOKEN,
        &TOKEN_MISS_T,
        20,
        &mut token_bad_checksum,
    );
    samples(
        rng,
        out,
        m,
        API_KEY,
        &API_MISS_T,
        24,
        &mut api_key_near_miss,
    );
    samples(rng, out, m, CLOUD, &CLOUD_MISS_T, 16, &mut cloud_near_miss);
}

const AWS_T: [Template; 9] = [
    (
        "env",
        "AWS_ACCESS_KEY_ID={}\nAWS_DEFAULT_REGION=eu-central-1",
    ),
    (
        "env",
        "[default]\naws_access_key_id = {}\nregion = eu-west-1",
    ),
    (
        "json",
        "{\"AccessKeyId\": \"{}\", \"Region\": \"eu-west-3\"}",
    ),
    (
        "chat",
        "my access key {} stopped working after the rotation, why?",
    ),
    (
        "log",
        "{ts} ERROR s3: AccessDenied for access key {} on bucket reports",
    ),
    ("de", "Mein AWS-Schlüssel {} funktioniert nicht mehr."),
    ("fr", "Ma clé d'accès AWS est {}, que faire ?"),
    ("es", "La clave de acceso {} da error 403."),
    ("chat", "export AWS_ACCESS_KEY_ID={} && aws s3 ls"),
];

const GOOGLE_T: [Template; 7] = [
    (
        "chat",
        "https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key={} returns 403",
    ),
    ("env", "GOOGLE_API_KEY={}"),
    (
        "json",
        "{\"apiKey\": \"{}\", \"authDomain\": \"shop.firebaseapp.com\"}",
    ),
    ("chat", "Is it safe to ship the key {} in the web app?"),
    ("de", "Der Maps-Schlüssel {} ist abgelaufen."),
    ("header", "X-Goog-Api-Key: {}"),
    ("log", "{ts} WARN geocoder: quota exceeded for key={}"),
];

const TOKEN_T: [Template; 11] = [
    ("chat", "why does git push fail with token {}?"),
    ("chat", "here's my token {} - can you check the scopes?"),
    ("env", "CI_TOKEN={}"),
    (
        "json",
        "{\"auth\": {\"token\": \"{}\", \"user\": \"{first}\"}}",
    ),
    (
        "header",
        "Authorization: token {}\nAccept: application/json",
    ),
    ("header", "Authorization: Bearer {}"),
    ("log", "{ts} DEBUG http: retrying with token={} (attempt 2)"),
    ("yaml", "ci:\n  token: {}\n  branch: main"),
    ("de", "Mein Token ist {}, warum funktioniert es nicht?"),
    ("fr", "Voici mon jeton d'accès : {}"),
    ("es", "Este es mi token: {} ¿por qué falla?"),
];

/// A GitHub token as the user part of a clone URL.
const CLONE_T: [Template; 2] = [
    (
        "chat",
        "git clone https://{}@github.com/acme/app.git gives 403",
    ),
    (
        "shell",
        "git remote set-url origin https://{}@github.com/acme/api.git",
    ),
];

const API_T: [Template; 13] = [
    ("env", "OPENAI_API_KEY={}"),
    ("env", "export API_KEY={}"),
    ("json", "{\"api_key\": \"{}\", \"model\": \"gpt-4o\"}"),
    (
        "header",
        "Authorization: Bearer {}\nContent-Type: application/json",
    ),
    ("header", "x-api-key: {}"),
    (
        "chat",
        "curl https://api.example.com/v1/models -H \"Authorization: Bearer {}\"",
    ),
    (
        "chat",
        "client = Client(api_key=\"{}\")  # why does this 401?",
    ),
    ("chat", "my key is {} is it still valid?"),
    ("log", "{ts} ERROR llm: 401 Unauthorized key={} model=large"),
    (
        "yaml",
        "providers:\n  default:\n    api_key: {}\n    timeout: 30",
    ),
    ("de", "Hier ist mein API-Schlüssel: {}"),
    ("fr", "Ma clé API est {} et elle ne marche plus."),
    ("es", "Mi clave de API es {}, ¿la puedes probar?"),
];

const WEBHOOK_T: [Template; 4] = [
    (
        "chat",
        "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"hi\"}' {}",
    ),
    ("env", "SLACK_WEBHOOK_URL={}"),
    ("json", "{\"alerts\": {\"slack\": \"{}\"}}"),
    ("chat", "post the build status to {} when done"),
];

const TOKEN_MISS_T: [Template; 3] = [
    ("checksum", "this token {} is rejected, is it a typo?"),
    ("checksum", "GITHUB_TOKEN={}"),
    ("checksum", "{\"token\": \"{}\"}"),
];

const API_MISS_T: [Template; 4] = [
    ("prefix", "we use {} in the pipeline"),
    ("prefix", "STRIPE_PUBLISHABLE_KEY={}"),
    ("prefix", "the config value is {}"),
    ("prefix", "{\"name\": \"{}\"}"),
];

const CLOUD_MISS_T: [Template; 2] = [
    ("prefix", "the id {} shows up in the report"),
    ("prefix", "resource={}"),
];

/// An AWS access key id (`AKIA…`, one in five a temporary `ASIA…`).
pub(crate) fn aws_key(rng: &mut Rng) -> String {
    let prefix = if rng.one_in(5) { "ASIA" } else { "AKIA" };
    format!("{prefix}{}", rng.mixed(UPPER_DIGITS, 16))
}

fn google_key(rng: &mut Rng) -> String {
    match rng.below(6) {
        // Alibaba Cloud and Tencent Cloud access key ids.
        0 => format!("LTAI{}", rng.mixed(ALNUM, 20)),
        1 => format!("AKID{}", rng.mixed(ALNUM, 32)),
        _ => format!("AIza{}", rng.mixed(B64URL, 35)),
    }
}

/// 30 random base62 characters and their CRC32 in 6 base62 digits.
fn checksummed(rng: &mut Rng) -> String {
    let body = rng.mixed(ALNUM, 30);
    let crc = base62_crc(&body);
    format!("{body}{crc}")
}

fn access_token(rng: &mut Rng) -> String {
    match rng.below(12) {
        8 => format!("glptt-{}", rng.mixed(HEX, 40)),
        9 => format!("ATBB{}", rng.mixed(ALNUM, 32)),
        10 => format!("hvs.{}", rng.mixed(ALNUM, 95)),
        11 => format!("{}:AA{}", rng.digits(10), rng.mixed(ALNUM, 33)),
        0..=3 => {
            let kind = rng.pick(&["ghp", "gho", "ghu", "ghs", "ghr"]);
            format!("{kind}_{}", checksummed(rng))
        }
        4 => format!(
            "github_pat_11{}_{}",
            rng.string(UPPER_DIGITS, 20),
            rng.mixed(ALNUM, 59)
        ),
        5 => format!("glpat-{}", rng.mixed(B64URL, 20)),
        6 => format!(
            "xoxb-{}-{}-{}",
            rng.digits(12),
            rng.digits(13),
            rng.mixed(ALNUM, 24)
        ),
        _ => format!(
            "xoxp-{}-{}-{}-{}",
            rng.digits(12),
            rng.digits(12),
            rng.digits(13),
            rng.string(HEX, 32)
        ),
    }
}

/// A provider API key: OpenAI (legacy, project, service account), Anthropic, Hugging Face,
/// Stripe (secret, restricted), npm, SendGrid, and (one in three) a newer provider's.
pub(crate) fn api_key(rng: &mut Rng) -> String {
    if rng.one_in(3) {
        return newer_api_key(rng);
    }
    let long = rng.range(74, 156);
    let stripe = *rng.pick(&[24, 99]);
    match rng.below(10) {
        0 => format!(
            "sk-{}T3BlbkFJ{}",
            rng.mixed(ALNUM, 20),
            rng.mixed(ALNUM, 20)
        ),
        1 => format!("sk-proj-{}", rng.mixed(B64URL, long)),
        2 => format!("sk-svcacct-{}", rng.mixed(B64URL, long)),
        3 => format!("sk-ant-api03-{}AA", rng.mixed(B64URL, 93)),
        4 => format!("hf_{}", rng.mixed(ALNUM, 34)),
        5 => format!("sk_live_{}", rng.mixed(ALNUM, stripe)),
        6 => format!("rk_live_{}", rng.mixed(ALNUM, stripe)),
        7 => format!("npm_{}", checksummed(rng)),
        8 => format!("SG.{}.{}", rng.mixed(B64URL, 22), rng.mixed(B64URL, 43)),
        _ => format!("sk-proj-{}", rng.mixed(ALNUM, 48)),
    }
}

/// Keys of Groq, Replicate, Perplexity, xAI, LangSmith, Pinecone, Tavily, Google OAuth,
/// Mailgun, Square, Shopify, DigitalOcean, PyPI, Docker Hub, Databricks, Linear, Postman,
/// Supabase, New Relic.
fn newer_api_key(rng: &mut Rng) -> String {
    match rng.below(19) {
        0 => format!("gsk_{}", rng.mixed(ALNUM, 52)),
        1 => format!("r8_{}", rng.mixed(ALNUM, 37)),
        2 => format!("pplx-{}", rng.mixed(ALNUM, 48)),
        3 => format!("xai-{}", rng.mixed(ALNUM, 80)),
        4 => format!("lsv2_pt_{}_{}", rng.mixed(HEX, 32), rng.mixed(HEX, 10)),
        5 => format!("pcsk_{}_{}", rng.mixed(ALNUM, 5), rng.mixed(ALNUM, 60)),
        6 => format!("tvly-{}", rng.mixed(ALNUM, 32)),
        7 => format!("GOCSPX-{}", rng.mixed(ALNUM, 28)),
        8 => format!("key-{}", rng.mixed(HEX, 32)),
        9 => format!("sq0atp-{}", rng.mixed(ALNUM, 22)),
        10 => format!("shpat_{}", rng.mixed(HEX, 32)),
        11 => format!("dop_v1_{}", rng.mixed(HEX, 64)),
        12 => format!("pypi-AgEIcHlwaS5vcmc{}", rng.mixed(ALNUM, 60)),
        13 => format!("dckr_pat_{}", rng.mixed(ALNUM, 27)),
        14 => format!("dapi{}", rng.mixed(HEX, 32)),
        15 => format!("lin_api_{}", rng.mixed(ALNUM, 40)),
        16 => format!("PMAK-{}-{}", rng.mixed(HEX, 24), rng.mixed(HEX, 34)),
        17 => format!("sbp_{}", rng.mixed(HEX, 40)),
        _ => format!("NRAK-{}", rng.mixed(UPPER_DIGITS, 27)),
    }
}

fn slack_webhook(rng: &mut Rng) -> String {
    let n = rng.range(8, 10);
    format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        rng.string(UPPER_DIGITS, 8),
        rng.string(UPPER_DIGITS, n),
        rng.mixed(ALNUM, 24)
    )
}

/// A GitHub or npm token whose checksum does not match, or whose body is a character short.
fn token_bad_checksum(rng: &mut Rng) -> String {
    let good = checksummed(rng);
    let mut b = good.into_bytes();
    let last = b.len() - 1;
    b[last] = if b[last] == b'x' { b'y' } else { b'x' };
    let body = String::from_utf8(b).unwrap_or_default();
    let prefix = *rng.pick(&["ghp_", "gho_", "ghs_", "npm_"]);
    if rng.one_in(4) {
        format!("{prefix}{}", &body[..35])
    } else {
        format!("{prefix}{body}")
    }
}

/// Identifiers that start like a key but are not one: library names, publishable keys, short
/// bodies.
fn api_key_near_miss(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => (*rng.pick(&[
            "sk-learn-model-name",
            "sk-learn",
            "sk-some-long-name",
            "sk-image-classifier",
        ]))
        .to_string(),
        1 => format!("pk_live_{}", rng.mixed(ALNUM, 24)),
        2 => format!("pk_test_{}", rng.mixed(ALNUM, 24)),
        3 => format!("sk-{}", rng.mixed(ALNUM, 12)),
        4 => "hf_hub_download".to_string(),
        _ => format!("npm_{}", rng.mixed(ALNUM, 20)),
    }
}

/// Cloud-key-shaped ids with a prefix no provider uses, or a character short.
fn cloud_near_miss(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("AKIB{}", rng.mixed(UPPER_DIGITS, 16)),
        1 => format!("AKIA{}", rng.mixed(UPPER_DIGITS, 12)),
        _ => format!("AIzb{}", rng.mixed(B64URL, 35)),
    }
}
