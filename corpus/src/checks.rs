//! Checksums the generator computes and the validation of every labelled value: Luhn (cards),
//! mod-97 (IBANs), Verhoeff (Aadhaar), ISO 7064 MOD 11,10 (German tax ids), CRC32 in base62
//! (GitHub and npm tokens), and the range and shape rules of the other entities.

/// The decimal digits of `s`, in order.
pub fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

fn number(d: &[u8]) -> u32 {
    d.iter().fold(0, |a, &x| a * 10 + u32::from(x))
}

/// Whether the digits pass the Luhn check.
pub fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let v = u32::from(x) * if i % 2 == 1 { 2 } else { 1 };
            if v > 9 {
                v - 9
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The digit that makes `d` followed by it pass the Luhn check.
pub fn luhn_digit(d: &[u8]) -> u8 {
    let mut with = d.to_vec();
    with.push(0);
    (0..10)
        .find(|&c| {
            with[d.len()] = c;
            luhn(&with)
        })
        .unwrap_or(0)
}

/// The IBAN remainder mod 97 of `s` read as ISO 13616 digits (letters are 10–35), spaces
/// skipped; `None` for any other character.
fn mod97(s: &str) -> Option<u32> {
    let mut rem = 0u32;
    for c in s.chars().filter(|c| *c != ' ') {
        let v = c.to_ascii_uppercase().to_digit(36)?;
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    Some(rem)
}

/// The two check digits of the IBAN of `country` and `bban`.
pub fn iban_check(country: &str, bban: &str) -> String {
    let rem = mod97(&format!("{bban}{country}00")).unwrap_or(0);
    format!("{:02}", 98 - rem)
}

/// Whether `s` (grouped or compact, either case) passes the IBAN mod-97 check.
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    compact.len() >= 15
        && compact.len() <= 34
        && compact.is_ascii()
        && compact[..2].chars().all(|c| c.is_ascii_alphabetic())
        && mod97(&format!("{}{}", &compact[4..], &compact[..4])) == Some(1)
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
const VERHOEFF_INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

fn verhoeff_state(d: &[u8], offset: usize) -> u8 {
    d.iter().rev().enumerate().fold(0, |c, (i, &x)| {
        VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[(i + offset) % 8][usize::from(x)])]
    })
}

/// The Verhoeff check digit of `d`.
pub fn verhoeff_digit(d: &[u8]) -> u8 {
    VERHOEFF_INV[usize::from(verhoeff_state(d, 1))]
}

/// Whether `d` (its last digit the check digit) passes the Verhoeff check.
pub fn verhoeff(d: &[u8]) -> bool {
    verhoeff_state(d, 0) == 0
}

/// The ISO 7064 MOD 11,10 check digit of `d`.
pub fn mod11_10_digit(d: &[u8]) -> u8 {
    let mut product = 10u8;
    for &x in d {
        let mut sum = (x + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = 11 - product;
    if check == 10 {
        0
    } else {
        check
    }
}

/// Whether the digits of `s` are a German tax id (Steuer-ID): 11 digits, the first not 0, in
/// the first ten exactly one digit twice or three times (not three in a row), the last the
/// MOD 11,10 check digit.
pub fn de_tax_id(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 11 || d[0] == 0 || mod11_10_digit(&d[..10]) != d[10] {
        return false;
    }
    let mut counts = [0u8; 10];
    for &x in &d[..10] {
        counts[usize::from(x)] += 1;
    }
    let repeated: Vec<usize> = (0..10).filter(|&i| counts[i] > 1).collect();
    let triple_in_row = d[..10].windows(3).any(|w| w[0] == w[1] && w[1] == w[2]);
    repeated.len() == 1 && counts[repeated[0]] <= 3 && !triple_in_row
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The base62 digits GitHub and npm write their checksums in.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 6 base62 digits of the CRC32 of `body` (GitHub `gh?_` and npm tokens).
pub fn base62_crc(body: &str) -> String {
    let mut n = u64::from(crc32(body.as_bytes()));
    let mut out = [b'0'; 6];
    for c in out.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&c| char::from(c)).collect()
}

/// Whether `body` is 30 base62 characters followed by their CRC32 in 6 base62 digits.
pub fn checksummed(body: &str) -> bool {
    body.len() == 36
        && body.bytes().all(|c| c.is_ascii_alphanumeric())
        && base62_crc(&body[..30]) == body[30..]
}

/// US social security number rules: area not 000, 666 or 9xx, group not 00, serial not 0000.
pub fn ssn(s: &str) -> bool {
    let d = digits(s);
    d.len() == 9 && {
        let area = number(&d[..3]);
        area != 0 && area != 666 && area < 900 && number(&d[3..5]) != 0 && number(&d[5..]) != 0
    }
}

/// UK National Insurance number: prefix rules, six digits, suffix A–D.
pub fn nino(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    c.len() == 9 && nino_prefix(c[0], c[1]) && c[2..8].iter().all(u8::is_ascii_digit) && {
        (b'A'..=b'D').contains(&c[8])
    }
}

/// Whether two letters may start a National Insurance number.
pub fn nino_prefix(a: u8, b: u8) -> bool {
    const BANNED: [&[u8; 2]; 7] = [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"];
    a.is_ascii_uppercase()
        && b.is_ascii_uppercase()
        && !b"DFIQUV".contains(&a)
        && !b"DFIOQUV".contains(&b)
        && !BANNED.iter().any(|p| p[0] == a && p[1] == b)
}

/// Indian PAN: three letters, the holder type (`ABCFGHLJPT`), a letter, four digits, a letter.
pub fn pan(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[..5].iter().all(u8::is_ascii_uppercase)
        && b"ABCFGHLJPT".contains(&b[3])
        && b[5..9].iter().all(u8::is_ascii_digit)
        && b[9].is_ascii_uppercase()
}

/// Aadhaar: 12 digits, the first 2–9, the last the Verhoeff check digit.
pub fn aadhaar(s: &str) -> bool {
    let d = digits(s);
    d.len() == 12 && d[0] >= 2 && verhoeff(&d)
}

/// Undoes the encodings the corpus writes values in (`%40`, `&#64;`, `&#x40;`, `&commat;`,
/// a literal `\u0040`, `%2B`, `%20`, `&#43;`).
pub fn decode(s: &str) -> String {
    let mut out = s.to_string();
    for (from, to) in [
        ("%40", "@"),
        ("&#64;", "@"),
        ("&#x40;", "@"),
        ("&commat;", "@"),
        ("\\u0040", "@"),
        ("%2B", "+"),
        ("%2b", "+"),
        ("&#43;", "+"),
        ("%20", " "),
    ] {
        out = out.replace(from, to);
    }
    out
}
