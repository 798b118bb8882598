//! Secrets written in place: `password=…`, `DB_PASSWORD=…`, `"client_secret": "…"`,
//! `AccountKey=…;` in a connection string, `aws_secret_access_key = …`, and the credentials
//! of pasted `Authorization: Bearer …`/`Basic …` headers. Only the value is masked; the name
//! stays, so the text still reads.
//!
//! Password names take any value that is not a placeholder; generic names (`secret`, `token`,
//! `key`) take only values that look random (length, character classes, entropy), so
//! `max_tokens: 100` or `"token": "Hello"` stay.

use base64::Engine;

/// Longest quoted value read past the scan window.
pub const MAX_QUOTED: usize = 256;

/// The regex of assignments (a secret-looking name, `=` or `:`, the value) and of
/// `Authorization` credentials.
pub(super) const ASSIGNMENT: &str = concat!(
    r#"(?i:[A-Za-z0-9_.\-]*(?:password|passwd|passphrase|pass|passwort|kennwort|contrase(?:ñ|n)a|mot de passe|motdepasse|secret|token|api[_\-]?key|access[_\-]?key|accountkey|sharedaccesskey|private[_\-]?key|credentials?|auth[_\-]?key)[A-Za-z0-9_.\-]*)"#,
    r#"["']?[ \t]*(?::=|=|:)[ \t]*"#,
    r#"(?:"[^"\n]{1,256}"|'[^'\n]{1,256}'|[^\s"'`,;&<>(){}\[\]]{1,512})"#,
    r#"|(?i:\b(?:bearer|basic))[ \t]+[A-Za-z0-9._~+/\-]{8,}=*"#,
);

/// The regex of passwords said in a sentence: "my password is …", "mein Passwort ist …",
/// "mon mot de passe est …", "mi contraseña es …".
pub(super) const SAID: &str = concat!(
    r#"(?i:\b(?:password|passwort|kennwort|passphrase|contrase(?:ñ|n)a|mot de passe)[ \t]+(?:is|ist|est|es|lautet)[ \t]+)"#,
    r#"[^\s"'`,;<>(){}\[\]]{3,128}"#,
);

/// The span of the value inside a match of [`ASSIGNMENT`], if it is a secret.
pub(super) fn secret_value(m: &str) -> Option<(usize, usize)> {
    if let Some((scheme, value)) = auth_header(m) {
        let from = m.len() - value.len();
        return credential_ok(scheme, value).then_some((from, m.len()));
    }
    if let Some(from) = said_value(m) {
        // A sentence's full stop is not part of the password.
        let value = m[from..].strip_suffix('.').unwrap_or(&m[from..]);
        let mixed = value.bytes().any(|c| !c.is_ascii_alphabetic());
        // `… ist password=…`: an assignment follows, the assignment's detector reads it.
        let assignment = value.contains(['=', ':']);
        return (mixed && !assignment && value.len() >= 3 && !placeholder(value))
            .then_some((from, from + value.len()));
    }
    let sep = m.find([':', '='])?;
    let name = m[..sep].trim_end_matches([' ', '\t', '"', '\'']);
    let rest = &m[sep..];
    let skip = rest
        .bytes()
        .position(|c| !matches!(c, b':' | b'=' | b' ' | b'\t'))?;
    let mut from = sep + skip;
    let mut to = m.len();
    let quoted = matches!(m.as_bytes()[from], b'"' | b'\'');
    if quoted {
        from += 1;
        to -= 1;
    }
    let value = m.get(from..to)?;
    if super::prefixes::SECRET_PREFIXES
        .iter()
        .flat_map(|(_, p)| p.iter())
        .any(|p| value.starts_with(p))
    {
        // A key or token of a known format is its own detector's: checksum and all.
        return None;
    }
    let colon = m[sep..].starts_with(':') && !m[sep..].starts_with(":=");
    value_ok(name, value, quoted || !colon).then_some((from, to))
}

/// Where the value of "password is …" (or its German, French, Spanish forms) starts.
fn said_value(m: &str) -> Option<usize> {
    let mut words = m.split_inclusive([' ', '\t']);
    let mut at = 0;
    let mut verb = false;
    for w in words.by_ref() {
        at += w.len();
        let word = w.trim_end();
        if word.is_empty() {
            continue;
        }
        if ["is", "ist", "est", "es", "lautet"]
            .iter()
            .any(|v| word.eq_ignore_ascii_case(v))
        {
            verb = true;
            break;
        }
        if word.contains([':', '=']) {
            return None;
        }
    }
    let rest = &m[at..];
    let skip = rest.len() - rest.trim_start().len();
    (verb && at + skip < m.len()).then_some(at + skip)
}

/// `Bearer <token>` / `Basic <base64>`: the scheme and the credential.
fn auth_header(m: &str) -> Option<(&str, &str)> {
    let (scheme, value) = m.split_once([' ', '\t'])?;
    let scheme_ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic");
    scheme_ok.then(|| (scheme, value.trim_start()))
}

fn credential_ok(scheme: &str, value: &str) -> bool {
    if scheme.eq_ignore_ascii_case("basic") {
        // `user:password` in base64.
        return base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_ok_and(|d| d.contains(&b':') && d.iter().all(|c| (0x20..0x7f).contains(c)));
    }
    // A JSON Web Token is the JWT detector's.
    !value.starts_with("eyJ") && random_looking(value, 16)
}

/// Values that stand for a secret rather than being one.
pub(super) fn placeholder(v: &str) -> bool {
    const WORDS: [&str; 22] = [
        "null",
        "none",
        "nil",
        "true",
        "false",
        "string",
        "str",
        "undefined",
        "required",
        "optional",
        "empty",
        "redacted",
        "hidden",
        "secret",
        "password",
        "changeit",
        "your_password",
        "yourpassword",
        "your-password",
        "xxx",
        "example",
        "placeholder",
    ];
    let lower = v.to_ascii_lowercase();
    v.is_empty()
        || v.bytes()
            .all(|c| matches!(c, b'*' | b'x' | b'X' | b'.' | b'#' | b'-' | b'_'))
        || v.starts_with(['$', '{', '<', '%', '@', '[', '('])
        || v.contains("{{")
        || v.ends_with('(')
        || WORDS.contains(&lower.as_str())
        || (lower.starts_with("your") && lower.ends_with("here"))
        || v.starts_with("os.")
        || v.starts_with("process.env")
        || v.starts_with("env(")
}

/// Whether `value`, assigned to `name`, is a secret. `strong` tells the value was quoted or
/// assigned with `=`: after a bare `:` (`Password: must be 8 characters`), a password must mix
/// in a digit or a symbol.
fn value_ok(name: &str, value: &str, strong: bool) -> bool {
    if placeholder(value) {
        return false;
    }
    if is_password_name(name) {
        let mixed = value.bytes().any(|c| !c.is_ascii_alphabetic());
        return value.chars().count() >= 3 && (strong || mixed) && !value.contains(' ') || {
            // A quoted passphrase may have spaces.
            strong && value.len() >= 8
        };
    }
    if contains_ignore_case(name.as_bytes(), "pass") {
        // `bypass`, `passenger`, `compass`: not secret names.
        return false;
    }
    random_looking(value, 16)
}

/// Whether `name` names a password (`password`, `DB_PASSWORD`, `passphrase`, `pass`, `pwd`),
/// whose value may be any string, spaces included when quoted.
pub fn is_password_name(name: &str) -> bool {
    let n = name.as_bytes();
    [
        "password",
        "passwd",
        "passphrase",
        "passwort",
        "kennwort",
        "contraseña",
        "contrasena",
        "mot de passe",
        "motdepasse",
    ]
    .iter()
    .any(|p| contains_ignore_case(n, p))
        || name.eq_ignore_ascii_case("pass")
        || name.eq_ignore_ascii_case("pwd")
        || (n.len() > 5 && n[n.len() - 5..].eq_ignore_ascii_case(b"_pass")
            || n.len() > 5 && n[n.len() - 5..].eq_ignore_ascii_case(b"-pass"))
}

/// Whether `hay` holds `needle` (lower case), ignoring ASCII case; no allocation.
fn contains_ignore_case(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether the string `value` of a JSON member named `name` is a secret: a password name
/// with any value but a placeholder, or another secret name (`client_secret`, `api_key`,
/// `access_token`) with a random-looking value.
pub fn secret_member(name: &str, value: &str) -> bool {
    const NAMES: [&str; 12] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "accesskey",
        "access_key",
        "private_key",
        "credential",
    ];
    let named = NAMES
        .iter()
        .any(|n| contains_ignore_case(name.as_bytes(), n))
        || is_password_name(name);
    named && !value.contains('\n') && value_ok(name, value, true)
}

/// A generic secret value: long, mixing character classes, high entropy per character.
pub(super) fn random_looking(v: &str, min_len: usize) -> bool {
    let b = v.as_bytes();
    if b.len() < min_len || b.iter().any(|c| c.is_ascii_whitespace()) {
        return false;
    }
    let digit = b.iter().any(u8::is_ascii_digit);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    if usize::from(digit) + usize::from(upper) + usize::from(lower) < 2 {
        return false;
    }
    entropy(b) >= 3.0
}

/// Shannon entropy of the bytes, bits per byte.
fn entropy(b: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in b {
        counts[usize::from(c)] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(m: &str) -> Option<&str> {
        secret_value(m).map(|(s, e)| &m[s..e])
    }

    #[test]
    fn values_of_secret_names() {
        assert_eq!(value("password=hunter22"), Some("hunter22"));
        assert_eq!(value("DB_PASSWORD=s3cr3t"), Some("s3cr3t"));
        assert_eq!(
            value(r#""password": "correct horse battery""#),
            Some("correct horse battery")
        );
        assert_eq!(value("Password: hunter2"), Some("hunter2"));
        assert_eq!(value("Password: must"), None);
        assert_eq!(value("password=${DB_PASSWORD}"), None);
        assert_eq!(value("password=****"), None);
        assert_eq!(value("bypass=true"), None);
        assert_eq!(value("max_tokens: 100"), None);
        assert_eq!(value(r#""token": "Hello""#), None);
        assert_eq!(
            value("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        );
        assert_eq!(
            value("AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="),
            Some("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
        );
        assert_eq!(
            value("Bearer 8f3kQ9zLm2PxR7vT1wYb"),
            Some("8f3kQ9zLm2PxR7vT1wYb")
        );
        assert_eq!(value("Bearer token"), None);
        assert_eq!(
            value("Basic dXNlcjpwYXNzd29yZA=="),
            Some("dXNlcjpwYXNzd29yZA==")
        );
        assert_eq!(value("Basic principles"), None);
        assert_eq!(value("password is Tr0ub4dor&3."), Some("Tr0ub4dor&3"));
        assert_eq!(value("Passwort ist Sommer2024!"), Some("Sommer2024!"));
        assert_eq!(value("mot de passe est soleil42"), Some("soleil42"));
        assert_eq!(value("password is required"), None);
        assert_eq!(value("Passwort ist password=Becker1702*"), None);
        assert_eq!(value("Passwort: Sommer2024"), Some("Sommer2024"));
        assert_eq!(value("contraseña: Gato1234"), Some("Gato1234"));
    }
}
