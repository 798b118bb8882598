//! Passwords and secrets written in place (the `user:password` of a URL, assignments in `.env`
//! files, JSON and YAML, Azure connection strings, AWS secret keys, opaque bearer tokens), PEM,
//! OpenSSH and PGP private key blocks, and JSON Web Tokens; and the placeholders that look like
//! an assignment but hold no secret.

use crate::entity::{CREDENTIAL, JWT, PRIVATE_KEY};
use crate::rng::{Rng, ALNUM, B64, B64URL, HEX};
use crate::words::{FIRST, LAST};
use crate::{samples, Kind, Sample, Template};

pub(crate) fn generate(rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = Kind::Positive;
    samples(rng, out, p, CREDENTIAL, &URL_T, 36, &mut userinfo);
    samples(rng, out, p, CREDENTIAL, &ASSIGN_T, 30, &mut password);
    samples(rng, out, p, CREDENTIAL, &AZURE_T, 8, &mut |r| b64(r, 64));
    samples(rng, out, p, CREDENTIAL, &AWS_SECRET_T, 8, &mut |r| {
        r.mixed(B64, 40)
    });
    samples(rng, out, p, CREDENTIAL, &BEARER_T, 8, &mut opaque_token);
    samples(rng, out, p, PRIVATE_KEY, &KEY_T, 64, &mut private_key);
    samples(rng, out, p, PRIVATE_KEY, &KEY_JSON_T, 8, &mut |r| {
        private_key(r).replace('\n', "\\n")
    });
    samples(rng, out, p, JWT, &JWT_T, 72, &mut jwt);

    let m = Kind::NearMiss;
    samples(
        rng,
        out,
        m,
        CREDENTIAL,
        &PLACEHOLDER_T,
        24,
        &mut placeholder,
    );
}

const URL_T: [Template; 9] = [
    ("env", "DATABASE_URL=postgres://{}@{host}:5432/app"),
    (
        "chat",
        "why can't I connect with mysql://{}@{ip}:3306/shop ?",
    ),
    (
        "json",
        "{\"broker\": \"amqp://{}@{host}:5672/\", \"prefetch\": 10}",
    ),
    (
        "log",
        "{ts} ERROR db: could not connect to postgresql://{}@{host}/orders",
    ),
    (
        "chat",
        "mongodb+srv://{}@cluster0.ab1cd.mongodb.net/test does not work",
    ),
    ("env", "REDIS_URL=redis://{}@{host}:6379/0"),
    (
        "de",
        "Die Verbindung über ftp://{}@files.example.com/upload schlägt fehl.",
    ),
    (
        "fr",
        "La chaîne de connexion est postgres://{}@{host}/compta",
    ),
    (
        "yaml",
        "spring:\n  datasource:\n    url: jdbc:mysql://{}@{host}/shop",
    ),
];

const ASSIGN_T: [Template; 10] = [
    (
        "chat",
        "login fails with user=admin password={} on the staging box",
    ),
    ("env", "DB_USER=app\nDB_PASSWORD={}\nDB_NAME=orders"),
    ("env", "POSTGRES_PASSWORD={}"),
    ("env", "MYSQL_ROOT_PASSWORD={}"),
    ("json", "{\"username\": \"{first}\", \"password\": \"{}\"}"),
    ("yaml", "database:\n  user: app\n  password: {}\n  pool: 5"),
    (
        "de",
        "Das Passwort ist password={} - bitte nicht weitergeben.",
    ),
    (
        "fr",
        "Mon fichier contient DB_PASSWORD={} et ça ne marche pas.",
    ),
    ("es", "En el .env tengo SECRET_KEY={} y falla el login."),
    ("log", "{ts} DEBUG config: loaded password={} from env"),
];

const AZURE_T: [Template; 2] = [
    (
        "env",
        "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=moatstore;AccountKey={};EndpointSuffix=core.windows.net",
    ),
    (
        "json",
        "{\"storage\": \"DefaultEndpointsProtocol=https;AccountName=reports{n};AccountKey={};EndpointSuffix=core.windows.net\"}",
    ),
];

const AWS_SECRET_T: [Template; 2] = [
    (
        "env",
        "[default]\naws_access_key_id = {awskey}\naws_secret_access_key = {}\n",
    ),
    (
        "env",
        "AWS_ACCESS_KEY_ID={awskey}\nAWS_SECRET_ACCESS_KEY={}",
    ),
];

const BEARER_T: [Template; 2] = [
    (
        "header",
        "GET /v1/orders HTTP/1.1\nHost: api.example.com\nAuthorization: Bearer {}\n",
    ),
    (
        "chat",
        "curl -H \"Authorization: Bearer {}\" https://api.example.com/v1/me returns 401",
    ),
];

const KEY_T: [Template; 7] = [
    (
        "chat",
        "Here is my deploy key, why does ssh reject it?\n{}\n",
    ),
    (
        "chat",
        "{}\nthat's the key from the old server, can you convert it to PKCS8?",
    ),
    ("env", "SSH_PRIVATE_KEY=\"{}\""),
    ("yaml", "tls:\n  key: |\n{}\n  cert: server.pem"),
    ("de", "Hier ist mein privater Schlüssel:\n{}"),
    ("fr", "Voici ma clé privée :\n{}\nMerci !"),
    ("es", "Esta es mi clave privada:\n{}"),
];

/// A service account file: the PEM block with its newlines escaped.
const KEY_JSON_T: [Template; 1] = [(
    "json",
    "{\"type\": \"service_account\", \"private_key\": \"{}\", \"project_id\": \"shop-prod\"}",
)];

const JWT_T: [Template; 10] = [
    ("header", "Authorization: Bearer {}"),
    ("header", "Cookie: session={}; theme=dark"),
    ("chat", "Can you decode this token? {}"),
    (
        "json",
        "{\"access_token\": \"{}\", \"token_type\": \"Bearer\", \"expires_in\": 3600}",
    ),
    ("log", "{ts} WARN auth: expired token {} for user {first}"),
    ("env", "SERVICE_JWT={}"),
    (
        "chat",
        "https://app.example.com/callback#id_token={}&state=xyz is the redirect",
    ),
    ("de", "Warum ist das Token {} ungültig?"),
    ("fr", "Le jeton {} a expiré ?"),
    ("es", "¿Por qué el token {} no es válido?"),
];

const PLACEHOLDER_T: [Template; 6] = [
    ("placeholder", "DB_PASSWORD={}\nDB_USER=app"),
    ("placeholder", "set password={} in the config and restart"),
    (
        "placeholder",
        "{\"username\": \"admin\", \"password\": \"{}\"}",
    ),
    ("placeholder", "POSTGRES_PASSWORD={}"),
    ("placeholder", "database:\n  password: {}\n"),
    (
        "placeholder",
        "connect with postgres://app:{}@db.internal/orders",
    ),
];

/// Base64 of `n` random bytes.
fn b64(rng: &mut Rng, n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    encode(&bytes, B64, true)
}

/// Base64 (standard or URL alphabet), padded or not.
fn encode(data: &[u8], alphabet: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// A password a person would choose or a generator would produce.
fn password(rng: &mut Rng) -> String {
    let word = crate::words::pick_capitalised(rng, &LAST);
    match rng.below(4) {
        0 => format!("{word}{}{}", rng.digits(4), rng.pick(&["!", "?", "*", "."])),
        1 => {
            let n = rng.range(12, 24);
            rng.mixed(ALNUM, n)
        }
        2 => format!(
            "{}-{}-{}",
            rng.mixed(ALNUM, 6),
            rng.mixed(ALNUM, 6),
            rng.digits(3)
        ),
        _ => format!(
            "{}{}%{}",
            rng.pick(&FIRST),
            rng.digits(2),
            rng.mixed(ALNUM, 6)
        ),
    }
}

/// `user:password` of a URL (one in eight with no user, as Redis writes it).
fn userinfo(rng: &mut Rng) -> String {
    let user = *rng.pick(&[
        "admin",
        "root",
        "app",
        "postgres",
        "svc_orders",
        "deploy",
        "jane",
    ]);
    let pass = password(rng).replace(['%', '?'], "_");
    if rng.one_in(8) {
        format!(":{pass}")
    } else {
        format!("{user}:{pass}")
    }
}

/// An opaque bearer token (no provider prefix).
fn opaque_token(rng: &mut Rng) -> String {
    let n = rng.range(30, 62);
    format!("tk{}", rng.mixed(ALNUM, n))
}

/// A private key block: RSA, PKCS#8, EC, encrypted, OpenSSH or PGP.
fn private_key(rng: &mut Rng) -> String {
    let (label, lead, width, lines): (&str, &str, usize, usize) = match rng.below(6) {
        0 => ("RSA PRIVATE KEY", "MIIEpAIBAAKCAQEA", 64, rng.range(8, 25)),
        1 => (
            "PRIVATE KEY",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            64,
            rng.range(8, 25),
        ),
        2 => ("EC PRIVATE KEY", "MHcCAQEEI", 64, 3),
        3 => (
            "ENCRYPTED PRIVATE KEY",
            "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq",
            64,
            rng.range(8, 25),
        ),
        4 => (
            "OPENSSH PRIVATE KEY",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAA",
            70,
            rng.range(4, 20),
        ),
        _ => ("PGP PRIVATE KEY BLOCK", "lQOYBF", 64, rng.range(8, 25)),
    };
    let mut body = String::from(lead);
    body.push_str(&rng.string(B64, width - lead.len()));
    let mut out = format!("-----BEGIN {label}-----\n");
    if label.starts_with("PGP") {
        out.push('\n');
    }
    out.push_str(&body);
    out.push('\n');
    for _ in 1..lines {
        out.push_str(&rng.string(B64, width));
        out.push('\n');
    }
    let last = rng.range(8, width - 4);
    out.push_str(&rng.string(B64, last));
    out.push_str("==\n");
    if label.starts_with("PGP") {
        out.push('=');
        out.push_str(&rng.string(B64, 4));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----"));
    out
}

/// A JSON Web Token: HS256, RS256 or ES256, with a realistic payload.
fn jwt(rng: &mut Rng) -> String {
    let (alg, sig) = *rng.pick(&[("HS256", 32), ("RS256", 256), ("ES256", 64)]);
    let header = if rng.one_in(2) {
        format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}")
    } else {
        format!(
            "{{\"alg\":\"{alg}\",\"kid\":\"{}\",\"typ\":\"JWT\"}}",
            rng.string(HEX, 16)
        )
    };
    let payload = format!(
        "{{\"sub\":\"{}\",\"name\":\"{} {}\",\"iat\":{},\"exp\":{}}}",
        rng.digits(8),
        crate::words::pick_capitalised(rng, &FIRST),
        crate::words::pick_capitalised(rng, &LAST),
        1_700_000_000 + rng.below(100_000_000),
        1_800_000_000 + rng.below(100_000_000),
    );
    let sig: Vec<u8> = (0..sig).map(|_| rng.next_u64() as u8).collect();
    format!(
        "{}.{}.{}",
        encode(header.as_bytes(), B64URL, false),
        encode(payload.as_bytes(), B64URL, false),
        encode(&sig, B64URL, false)
    )
}

/// What stands after `password=` when there is no secret: nothing, stars, a variable, a hint.
fn placeholder(rng: &mut Rng) -> String {
    (*rng.pick(&[
        "",
        "****",
        "********",
        "${DB_PASSWORD}",
        "<password>",
        "$PASSWORD",
        "xxx",
        "{{ .Values.db.password }}",
        "%DB_PASS%",
    ]))
    .to_string()
}
