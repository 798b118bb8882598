//! Validation of national identifiers and dates: the UK National Insurance number's prefix
//! rules, the German tax id's check digit (ISO 7064 MOD 11,10) and digit pattern, the Indian
//! Aadhaar number's Verhoeff check digit, passport number shapes, and calendar dates.

use super::checks::digits;

/// UK National Insurance number (`QQ 12 34 56 C`, `AB123456C`): the regex admits the allowed
/// letters; the prefixes never issued are refused here, and groups are written all spaced or
/// not at all.
pub(super) fn valid_nino(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    let spaces = s.len() - compact.len();
    if spaces != 0 && spaces != 4 {
        return false;
    }
    compact.len() == 9
        && !matches!(
            &compact[..2],
            "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ"
        )
}

/// German tax identification number (Steuer-ID): eleven digits, the first not 0; among the
/// first ten, one digit occurs two or three times and the others at most once; the last is
/// the ISO 7064 MOD 11,10 check digit.
pub(super) fn valid_steuer_id(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 11 || d[0] == 0 {
        return false;
    }
    let mut count = [0u8; 10];
    for &x in &d[..10] {
        count[usize::from(x)] += 1;
    }
    let repeated = count.iter().filter(|&&c| c >= 2).count();
    if repeated != 1 || count.iter().any(|&c| c > 3) {
        return false;
    }
    let mut product = 10u32;
    for &x in &d[..10] {
        let mut sum = (u32::from(x) + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = (11 - product) % 10;
    check == u32::from(d[10])
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff checksum over the digits (check digit last).
pub(super) fn verhoeff(d: &[u8]) -> bool {
    let mut c = 0u8;
    for (i, &x) in d.iter().rev().enumerate() {
        c = VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(x)])];
    }
    c == 0
}

/// Indian Aadhaar number: twelve digits, the first 2–9, Verhoeff check digit; groups written
/// with one kind of separator.
pub(super) fn valid_aadhaar(s: &str) -> bool {
    let d = digits(s);
    let seps: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_digit()).collect();
    d.len() == 12 && d[0] >= 2 && seps.windows(2).all(|w| w[0] == w[1]) && verhoeff(&d)
}

/// A passport number after a passport word: six to nine letters and digits, at least one digit,
/// not one repeated character, not a year.
pub(super) fn valid_passport(s: &str) -> bool {
    let b = s.as_bytes();
    (6..=9).contains(&b.len()) && b.iter().any(u8::is_ascii_digit) && b.iter().any(|&c| c != b[0])
}

const MONTHS: [(&str, u32); 57] = [
    ("january", 1),
    ("jan", 1),
    ("januar", 1),
    ("janvier", 1),
    ("enero", 1),
    ("february", 2),
    ("feb", 2),
    ("februar", 2),
    ("février", 2),
    ("febrero", 2),
    ("march", 3),
    ("mar", 3),
    ("märz", 3),
    ("mars", 3),
    ("marzo", 3),
    ("april", 4),
    ("apr", 4),
    ("avril", 4),
    ("abril", 4),
    ("may", 5),
    ("mai", 5),
    ("mayo", 5),
    ("june", 6),
    ("jun", 6),
    ("juni", 6),
    ("juin", 6),
    ("junio", 6),
    ("july", 7),
    ("jul", 7),
    ("juli", 7),
    ("juillet", 7),
    ("julio", 7),
    ("august", 8),
    ("aug", 8),
    ("août", 8),
    ("agosto", 8),
    ("september", 9),
    ("sep", 9),
    ("sept", 9),
    ("septembre", 9),
    ("septiembre", 9),
    ("october", 10),
    ("oct", 10),
    ("oktober", 10),
    ("octobre", 10),
    ("octubre", 10),
    ("november", 11),
    ("nov", 11),
    ("novembre", 11),
    ("noviembre", 11),
    ("december", 12),
    ("dec", 12),
    ("dezember", 12),
    ("décembre", 12),
    ("diciembre", 12),
    ("dez", 12),
    ("déc", 12),
];

/// Whether `word` names a month (full or abbreviated; English, German, French, Spanish).
pub fn is_month(word: &str) -> bool {
    month(word).is_some()
}

/// The month a name stands for (full or abbreviated; English, German, French, Spanish).
fn month(name: &str) -> Option<u32> {
    let name = name.trim_end_matches('.').to_lowercase();
    MONTHS.iter().find(|(m, _)| *m == name).map(|(_, n)| *n)
}

/// A date of birth as written after a birth word: day, month and year form a calendar date in
/// 1900–2099 (two-digit years allowed in numeric forms).
pub(super) fn valid_birth_date(s: &str) -> bool {
    let parts: Vec<&str> = s
        .split([' ', ',', '/', '-', '.'])
        .filter(|p| !p.is_empty() && *p != "de" && *p != "of")
        .collect();
    let num = |p: &str| -> Option<u32> {
        p.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .ok()
    };
    let (day, mon, year) = match parts.as_slice() {
        // 1985-03-12
        [y, m, d] if y.len() == 4 && y.bytes().all(|c| c.is_ascii_digit()) => {
            (num(d), num(m), num(y))
        }
        // 12 March 1985 / March 12, 1985
        [a, b, y] if month(a).is_some() => (num(b), month(a), num(y)),
        [a, b, y] if month(b).is_some() => (num(a), month(b), num(y)),
        // 12/03/1985: day first, or month first when the first cannot be a month.
        [a, b, y] => match (num(a), num(b)) {
            (Some(a), Some(b)) if a > 12 => (Some(a), Some(b), num(y)),
            (Some(a), Some(b)) if b > 12 => (Some(b), Some(a), num(y)),
            (a, b) => (a, b, num(y)),
        },
        _ => return false,
    };
    let (Some(day), Some(mon), Some(year)) = (day, mon, year) else {
        return false;
    };
    let year_ok = year < 100 || (1900..=2099).contains(&year);
    year_ok && (1..=12).contains(&mon) && (1..=31).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(valid_nino("AB 12 34 56 C"));
        assert!(valid_nino("AB123456C"));
        assert!(!valid_nino("GB123456C"));
        assert!(!valid_nino("AB 123456C"));
        // Published example Steuer-IDs.
        assert!(valid_steuer_id("86095742719"));
        assert!(valid_steuer_id("65929970489"));
        assert!(!valid_steuer_id("86095742718"));
        assert!(!valid_steuer_id("12345678901"), "no repeated digit");
        assert!(valid_aadhaar("2341 2341 2346"));
        assert!(!valid_aadhaar("2341 2341 2347"));
        assert!(!valid_aadhaar("2341-2341 2346"));
        assert!(verhoeff(&[2, 3, 6, 3]));
        assert!(valid_birth_date("12/03/1985"));
        assert!(valid_birth_date("1985-03-12"));
        assert!(valid_birth_date("March 12, 1985"));
        assert!(valid_birth_date("12 de marzo de 1985"));
        assert!(valid_birth_date("3rd June 1990"));
        assert!(valid_birth_date("June 6, 1975"));
        assert!(!valid_birth_date("32/03/1985"));
        assert!(!valid_birth_date("12/13/1885"));
        assert!(valid_passport("C01X00T47"));
        assert!(!valid_passport("AAAAAA"));
        assert!(!valid_passport("1111111"));
    }
}
