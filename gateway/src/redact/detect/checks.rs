//! Validation of candidates: checksums (Luhn, IBAN mod-97), length tables, ranges and shapes
//! that keep false positives down.

pub(super) fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

pub(super) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with('-')
}

pub(super) fn valid_phone(s: &str) -> bool {
    let d = digits(s);
    if s.starts_with('+') {
        // E.164: up to 15 digits, at least 8; separators only single and between digits.
        return (8..=15).contains(&d.len()) && !s.contains("  ") && !s.contains("--");
    }
    if d.first() == Some(&0) {
        // National, with the trunk prefix 0 (`020 7946 0958`, `030 12345678`, `(02) 9876 5432`,
        // `01 23 45 67 89`, `03-1234-5678`): 9 to 12 digits, written in groups with one kind
        // of separator (so dates such as `01.12.2025 10` and bare numbers stay out).
        // `078-05-1120` is the shape of a social security number, not of a phone number.
        let ssn_shape = s.len() == 11 && s.as_bytes()[3] == b'-' && s.as_bytes()[6] == b'-';
        if ssn_shape {
            return false;
        }
        let mut seps = s.bytes().filter(|c| b" -./".contains(c));
        let first = seps.next();
        return (9..=12).contains(&d.len())
            && first.is_some()
            && seps.all(|c| Some(c) == first)
            && s.starts_with('(') == s.contains(')');
    }
    // North American: 10 digits (after the country code 1, when written), area and exchange
    // codes start 2–9, not N11.
    let d = match d.len() {
        11 if d[0] == 1 => &d[1..],
        _ => &d[..],
    };
    d.len() == 10
        && d[0] >= 2
        && d[3] >= 2
        && !(d[1] == 1 && d[2] == 1)
        && !(d[4] == 1 && d[5] == 1)
}

/// Luhn checksum over the digits.
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

pub(super) fn valid_card(s: &str) -> bool {
    // Separators, if any, must be consistent (all spaces or all dashes).
    if s.contains(' ') && s.contains('-') {
        return false;
    }
    let d = digits(s);
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    let issuer_ok = match d.first() {
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(3) => {
            ((prefix(2) == 34 || prefix(2) == 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
                || ((300..=305).contains(&prefix(3)) || prefix(2) == 36 || prefix(2) == 38)
                    && (14..=19).contains(&len)
        }
        Some(6) => {
            // Discover (6011, 644–649, 65) and UnionPay (62, which includes Discover's
            // co-branded 622126–622925).
            (prefix(4) == 6011
                || prefix(2) == 65
                || prefix(2) == 62
                || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&len)
        }
        _ => false,
    };
    issuer_ok && luhn(&d)
}

/// IBAN lengths by country (ISO 13616 registry, common countries).
pub(super) fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

pub(super) fn valid_iban(s: &str) -> bool {
    let compact: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.len() < 4 || !compact.is_ascii() {
        return false;
    }
    let Some(len) = iban_length(&compact[..2]) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub(super) fn valid_ssn(s: &str) -> bool {
    let d = digits(s);
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

pub(super) fn valid_ip(s: &str) -> bool {
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().is_ok()
            && s.matches(':').count() >= 2
            && s.chars().any(|c| c.is_ascii_hexdigit());
    }
    // Dotted quads whose octets have no leading zeros; version-like strings ("1.2.3.4" after a
    // `v`) are excluded by the caller's context check.
    s.parse::<std::net::Ipv4Addr>().is_ok() && s.split('.').all(|o| o == "0" || !o.starts_with('0'))
}

/// The base62 digits GitHub and npm write their checksums in.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A token of the GitHub and npm format: 30 random base62 characters, then the CRC32 of those
/// 30 characters in 6 base62 digits.
fn checksummed(body: &str) -> bool {
    let b = body.as_bytes();
    if b.len() != 36 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut crc = flate2::Crc::new();
    crc.update(&b[..30]);
    let mut want = u64::from(crc.sum());
    for &c in b[30..].iter().rev() {
        if c != BASE62[(want % 62) as usize] {
            return false;
        }
        want /= 62;
    }
    want == 0
}

/// Code-host and messaging tokens: GitHub's `gh?_` tokens carry a CRC32 checksum; the other
/// formats are fixed shapes.
pub(super) fn valid_token(s: &str) -> bool {
    let gh = s.len() > 4 && s.starts_with("gh") && s.as_bytes()[3] == b'_';
    !gh || checksummed(&s[4..])
}

/// Looks random enough to be a key: at least 20 characters mixing at least two of digits,
/// upper and lower case letters (an identifier such as `sk-learn-model-name` does not).
fn random_looking(s: &str, need_digit: bool) -> bool {
    let b = s.as_bytes();
    let digit = b.iter().any(u8::is_ascii_digit);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    b.len() >= 20
        && (digit || !need_digit)
        && usize::from(digit) + usize::from(upper) + usize::from(lower) >= 2
}

/// Provider API keys: npm's checksum; SendGrid and webhook URLs are exact shapes; the others
/// must look random past their prefix (an identifier such as `sk-learn-model-name` does not).
pub(super) fn valid_api_key(s: &str) -> bool {
    let Some((prefix, _, how)) = super::prefixes::api_key_entry(s) else {
        return false;
    };
    if let Some(body) = s.strip_prefix("npm_") {
        return checksummed(body);
    }
    if *how == "pattern" {
        return true;
    }
    if let Some(rest) = s.strip_prefix("sk-") {
        let body = ["proj-", "svcacct-", "admin-", "ant-api03-", "ant-admin01-"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
            .unwrap_or(rest);
        return random_looking(body, true);
    }
    if s.starts_with("sk_") || s.starts_with("rk_") {
        return random_looking(s.rsplit('_').next().unwrap_or(s), false);
    }
    random_looking(&s[prefix.len()..], false)
}

/// Words that make a dotted quad a version, not an address, when they come just before it.
const VERSION_WORDS: [&str; 6] = ["version", "ver", "build", "release", "rel", "firmware"];

/// Whether the IPv4-shaped `text[start..end]` reads as an address where it stands: not one
/// part of a longer dotted id (`11.94.75.64.60`), not after a version word
/// (`build 6.20.25.199`).
pub(super) fn ipv4_in_context(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let dotted =
        |i: usize, j: usize| b.get(i) == Some(&b'.') && b.get(j).is_some_and(u8::is_ascii_digit);
    if dotted(end, end + 1) || (start >= 2 && dotted(start - 1, start - 2)) {
        return false;
    }
    let before = text[..start].trim_end_matches([' ', ':', '=']);
    let word_start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[word_start..];
    !VERSION_WORDS.iter().any(|v| word.eq_ignore_ascii_case(v))
}

/// `scheme://user:password@`: a password is there (an empty one is no secret), and the part
/// after `://` is not an IPv6 literal or a port (`http://[::1]:8080@…` does not occur).
pub(super) fn valid_url_credential(s: &str) -> bool {
    let Some(rest) = s.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let Some(userinfo) = rest.strip_suffix('@') else {
        return false;
    };
    matches!(userinfo.split_once(':'), Some((_, pass)) if !super::assign::placeholder(pass))
}

/// Whether a number `text[start..end]` stands on its own, not as a piece of a longer run of
/// digit groups or of a code: `4855 0612 3456 789` (an invalid card) holds no phone number,
/// `AT-0612-3456-78` (an asset tag) none either.
pub(super) fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(b' ');
    let before_ok = match start.checked_sub(1).map(at) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() => false,
        Some(b'-' | b'.' | b'/' | b'_') => start < 2 || !at(start - 2).is_ascii_alphanumeric(),
        Some(b' ') => start < 2 || !at(start - 2).is_ascii_digit(),
        Some(_) => true,
    };
    let after_ok = match at(end) {
        b' ' | b'-' | b'.' | b'/' => !at(end + 1).is_ascii_digit() || end == b.len(),
        c => !c.is_ascii_alphanumeric() || end == b.len(),
    };
    before_ok && after_ok
}
