//! A request record's line, written by hand. Request records are almost every line of the trail,
//! and serde's way to them (a flattened, tagged enum inside the envelope) goes through a generic
//! map serializer, one call and one capacity check per key, punctuation mark and scalar, and
//! scans every string byte by byte through an escape table. This writes the same bytes as
//! serde_json does for the same record (a test holds it to that, byte for byte): keys as
//! literals, and strings copied whole once a word-at-a-time scan finds nothing to escape.

use std::io::Write;

use crate::audit::record::{GuardFacts, RequestRecord, TlsFacts, SCHEMA_VERSION};

/// Writes `,"field":value` for each field, the key being the field's own name and the value
/// written by the function named beside it.
macro_rules! members {
    ($out:ident: $($field:ident => $write:ident),* $(,)?) => {
        $(
            $out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
            $write($out, $field);
        )*
    };
}

/// Appends `{"v":…,"seq":…,"prev":…,"time":…,"kind":"request",…}` (no newline).
pub(super) fn request(out: &mut Vec<u8>, seq: u64, prev: &str, time: &str, r: &RequestRecord) {
    // Every field, by name: a field added to the record does not compile here until it is
    // written.
    let RequestRecord {
        request_id,
        listener,
        region,
        client,
        tls,
        principal,
        principal_kind,
        caller_regions,
        method,
        host,
        path,
        model,
        rule,
        decision,
        upstream,
        status,
        bytes_in,
        bytes_out,
        duration_ms,
        upstream_ms,
        redactions,
        guard,
        failed,
        reason,
    } = r;
    let v = &SCHEMA_VERSION;
    let seq = &seq;
    out.extend_from_slice(b"{\"v\":");
    uint(out, v);
    members!(out: seq => uint, prev => string, time => string);
    out.extend_from_slice(b",\"kind\":\"request\"");
    members!(out:
        request_id => string,
        listener => string,
        region => opt_string,
        client => string,
        tls => tls_facts,
        principal => opt_string,
        principal_kind => opt_string,
        caller_regions => strings,
        method => string,
        host => string,
        path => string,
        model => opt_string,
        rule => opt_string,
        decision => string,
        upstream => string,
        status => uint,
        bytes_in => uint,
        bytes_out => uint,
        duration_ms => float,
        upstream_ms => opt_float,
        redactions => counts,
        guard => guard_facts,
        failed => opt_string,
        reason => opt_string,
    );
    out.push(b'}');
}

fn tls_facts(out: &mut Vec<u8>, t: &TlsFacts) {
    let TlsFacts {
        version,
        cipher,
        sni,
        alpn,
        client_cert_sha256,
    } = t;
    out.extend_from_slice(b"{\"version\":");
    opt_string(out, version);
    members!(out: cipher => opt_string, sni => opt_string, alpn => opt_string, client_cert_sha256 => opt_string);
    out.push(b'}');
}

fn guard_facts(out: &mut Vec<u8>, g: &GuardFacts) {
    let GuardFacts { mode, allow_sha256 } = g;
    out.extend_from_slice(b"{\"mode\":");
    string(out, mode);
    members!(out: allow_sha256 => opt_string);
    out.push(b'}');
}

/// A JSON array of strings.
fn strings(out: &mut Vec<u8>, items: &std::sync::Arc<[String]>) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// Redaction counts by entity, in the map's (sorted) order.
fn counts(out: &mut Vec<u8>, counts: &std::collections::BTreeMap<String, u64>) {
    out.push(b'{');
    for (i, (entity, n)) in counts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, entity);
        out.push(b':');
        uint(out, n);
    }
    out.push(b'}');
}

fn opt_string<S: AsRef<str>>(out: &mut Vec<u8>, s: &Option<S>) {
    match s {
        Some(s) => string(out, s.as_ref()),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_float(out: &mut Vec<u8>, x: &Option<f64>) {
    match x {
        Some(x) => float(out, x),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string, escaped as serde_json escapes it: `"` and `\`, the control characters with a
/// short form as such, the others as `\u00xx`; everything else (DEL and non-ASCII included)
/// as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if needs_escape(b) {
        escaped(out, b);
    } else {
        out.extend_from_slice(b);
    }
    out.push(b'"');
}

/// Whether any byte of `b` is a control character, `"` or `\`: eight bytes at a time.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // Whether any byte of `x` is zero (exact for the word as a whole).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        // Below 0x20: the subtraction borrows into the high bit of a byte that had it clear.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if control || zero(x ^ (ONES * u64::from(b'"'))) || zero(x ^ (ONES * u64::from(b'\\'))) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

fn escaped(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

fn uint<N: Copy + Into<u64>>(out: &mut Vec<u8>, n: &N) {
    // Digits of a u64: at most 20.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n: u64 = (*n).into();
    loop {
        at -= 1;
        // `n % 10` is below 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A float as serde_json writes it (shortest round-trip form; `null` when not finite).
fn float(out: &mut Vec<u8>, x: &f64) {
    if serde_json::to_writer(&mut *out, x).is_err() {
        // Writing to a Vec cannot fail; keep the line valid whatever happens.
        let _ = out.write_all(b"null");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::request;
    use crate::audit::record::{GuardFacts, Record, RequestRecord, TlsFacts};

    /// What serde_json writes for the same line.
    fn by_serde(seq: u64, prev: &str, time: &str, r: &RequestRecord) -> Vec<u8> {
        serde_json::to_vec(&crate::audit::writer::chain::EnvelopeOut {
            v: crate::audit::record::SCHEMA_VERSION,
            seq,
            prev,
            time,
            record: &Record::Request(Box::new(r.clone())),
        })
        .expect("serializes")
    }

    fn by_hand(seq: u64, prev: &str, time: &str, r: &RequestRecord) -> Vec<u8> {
        let mut out = Vec::new();
        request(&mut out, seq, prev, time, r);
        out
    }

    fn full(text: &str, x: f64) -> RequestRecord {
        RequestRecord {
            request_id: format!("{text}-id"),
            listener: text.into(),
            region: Some(text.into()),
            client: "[2001:db8::7]:443".into(),
            tls: Arc::new(TlsFacts {
                version: Some("TLSv1_3".into()),
                cipher: Some(text.into()),
                sni: Some("model.example".into()),
                alpn: None,
                client_cert_sha256: Some("ab".repeat(32)),
            }),
            principal: Some(text.into()),
            principal_kind: Some("jwt".into()),
            caller_regions: [text.to_owned(), "eu-central".to_owned()].into(),
            method: "POST".into(),
            host: format!("{text}:8443"),
            path: format!("/v1/{text}"),
            model: Some(text.into()),
            rule: Some(text.into()),
            decision: "allow".into(),
            upstream: "model@unix:/run/model.sock".into(),
            status: 502,
            bytes_in: u64::MAX,
            bytes_out: 0,
            duration_ms: x,
            upstream_ms: Some(-x),
            redactions: [(format!("{text}.request"), 3), ("email.response".into(), 1)]
                .into_iter()
                .collect(),
            guard: Arc::new(GuardFacts {
                mode: "enforce".into(),
                allow_sha256: Some(text.into()),
            }),
            failed: Some("upstream".into()),
            reason: Some(format!("upstream closed: {text}")),
        }
    }

    #[test]
    fn finds_every_byte_that_needs_escaping_wherever_it_is() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert!(!super::needs_escape(plain.as_bytes()), "{len}");
            for at in 0..len {
                for c in (0u8..=0xff).filter(|&c| c < 0x20 || c == b'"' || c == b'\\') {
                    let mut b = plain.clone().into_bytes();
                    b[at] = c;
                    assert!(super::needs_escape(&b), "{len} {at} {c:#x}");
                }
                for c in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
                    let mut b = plain.clone().into_bytes();
                    b[at] = c;
                    assert!(!super::needs_escape(&b), "{len} {at} {c:#x}");
                }
            }
        }
    }

    #[test]
    fn agrees_with_a_byte_by_byte_scan_on_random_bytes() {
        for _ in 0..20_000 {
            let len = rand::random_range(0..40);
            // Mostly harmless bytes, so that the ones to escape stand alone.
            let b: Vec<u8> = (0..len)
                .map(|_| match rand::random_range(0..16) {
                    0 => rand::random::<u8>(),
                    _ => rand::random_range(0x20..=0xff),
                })
                .collect();
            let naive = b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(super::needs_escape(&b), naive, "{b:02x?}");
        }
    }

    #[test]
    fn writes_what_serde_writes() {
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        let texts = [
            "",
            "plain",
            "quote\" backslash\\ slash/",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "ünïcödé — 模型 🚀",
            every_byte.as_str(),
        ];
        let floats = [
            0.0,
            -0.0,
            0.412,
            1.0,
            1e-7,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ];
        for text in texts {
            for x in floats {
                let r = full(text, x);
                assert_eq!(
                    String::from_utf8_lossy(&by_hand(7, text, text, &r)),
                    String::from_utf8_lossy(&by_serde(7, text, text, &r)),
                );
            }
        }
        let empty = RequestRecord::default();
        assert_eq!(
            by_hand(0, "", "", &empty),
            by_serde(0, "", "", &empty),
            "every optional field absent"
        );
        for seq in [0, 9, 10, 99, 1_000_000_007, u64::MAX] {
            assert_eq!(
                by_hand(seq, "p", "t", &empty),
                by_serde(seq, "p", "t", &empty)
            );
        }
    }
}
