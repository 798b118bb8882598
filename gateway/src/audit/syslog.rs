//! Audit records as RFC 5424 syslog messages: what `[audit.ship]` sends to a collector (framed
//! by octet counting over RFC 5425 TLS), and what `moat audit verify --keys` reads back from the
//! files a collector such as rsyslog wrote.
//!
//! One record, one message, the record's line unchanged as the MSG:
//!
//! ```text
//! <PRI>1 TIME HOST moat PID KIND [moat@32473 host="HOST" seq="SEQ" hash="SHA256"] LINE
//! ```
//!
//! - PRI: facility 13 (log audit); severity 6 (informational), 5 (notice) for refusals, 4
//!   (warning) for egress the guard refused and for lifecycle events that report trouble.
//! - TIME: the record's own `time`; HOST: the configured host name; KIND: the record's `kind`.
//! - The structured data element `moat@32473` (32473 is the enterprise number RFC 5612 reserves
//!   for documentation: moat has no number of its own) names the host again (relays rewrite
//!   HOSTNAME; this survives), the record's `seq`, and the SHA-256 of the line, which is what the
//!   next record's `prev` holds.

use std::fmt::Write as _;

/// The structured-data id of moat's element.
pub const SD_ID: &str = "moat@32473";
/// Facility 13: log audit.
const FACILITY: u8 = 13;

/// What a shipped message says about its record, besides the line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped<'a> {
    /// The host name the message names (from the `moat@32473` element, or HOSTNAME).
    pub host: &'a str,
    /// The record's line, exactly as written to the trail.
    pub line: &'a str,
}

/// Severity of a record line, from its `kind` (and, for lifecycle and guard records, its event
/// or verdict).
fn severity(kind: &str, line: &str) -> u8 {
    match kind {
        "reject" => 5,
        "guard" if line.contains("\"verdict\":\"refused\"") => 4,
        "lifecycle"
            if [
                "\"event\":\"reload_refused\"",
                "\"event\":\"guard_unattached\"",
                "\"event\":\"recovered\"",
                "\"event\":\"audit_resumed\"",
                "\"event\":\"shipping_stopped\"",
            ]
            .iter()
            .any(|e| line.contains(e)) =>
        {
            4
        }
        _ => 6,
    }
}

/// A structured-data parameter value, escaped as RFC 5424 §6.3.3 requires (`"`, `\` and `]`).
fn sd_value(out: &mut String, v: &str) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; `-` when empty.
fn header_field(out: &mut String, v: &str, max: usize) {
    let clean: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    out.push_str(if clean.is_empty() { "-" } else { &clean });
}

/// The RFC 5424 message for one trail line (`seq`, `time`, `kind` and `hash` already read from
/// it), without framing.
pub fn message(host: &str, pid: u32, line: &str, fields: &LineFields<'_>) -> String {
    let mut m = String::with_capacity(line.len() + 200);
    let pri = FACILITY * 8 + severity(fields.kind, line);
    let _ = write!(m, "<{pri}>1 ");
    header_field(&mut m, fields.time, 64);
    m.push(' ');
    header_field(&mut m, host, 255);
    let _ = write!(m, " moat {pid} ");
    header_field(&mut m, fields.kind, 32);
    let _ = write!(m, " [{SD_ID} host=\"");
    sd_value(&mut m, host);
    let _ = write!(m, "\" seq=\"{}\" hash=\"{}\"] ", fields.seq, fields.hash);
    m.push_str(line);
    m
}

/// Octet-counting framing (RFC 6587 §3.4.1, as RFC 5425 uses it): `LEN SP MSG`.
pub fn frame(out: &mut Vec<u8>, message: &str) {
    let _ = write!(LenWriter(out), "{} ", message.len());
    out.extend_from_slice(message.as_bytes());
}

struct LenWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for LenWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// What the shipper reads from a trail line without parsing all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFields<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub kind: &'a str,
    /// SHA-256 (hex) of the line.
    pub hash: String,
}

/// The `seq` of a trail line as moat writes it, without hashing the line.
pub fn line_seq(line: &str) -> Option<u64> {
    let at = line.find("\"seq\":")? + "\"seq\":".len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `seq`, `time` and `kind` of a trail line as moat writes them (`{"v":1,"seq":N,"prev":"…",
/// "time":"…","kind":"…",…}`), and its hash. `None` for anything else.
pub fn line_fields(line: &str) -> Option<LineFields<'_>> {
    let value_after = |key: &str| -> Option<&str> {
        let at = line.find(key)? + key.len();
        Some(&line[at..])
    };
    let seq = line_seq(line)?;
    let quoted = |key: &str| -> Option<&str> {
        let rest = value_after(key)?.strip_prefix('"')?;
        Some(&rest[..rest.find('"')?])
    };
    Some(LineFields {
        seq,
        time: quoted("\"time\":")?,
        kind: quoted("\"kind\":")?,
        hash: super::sha256_hex(line.as_bytes()),
    })
}

/// Reads one stored message back: an RFC 5424 message as [`message`] writes it (the host from
/// the `moat@32473` element, else HOSTNAME), or a bare record line (`{…}`, the host unknown:
/// `None`). A UTF-8 byte-order mark before the line is skipped. `None` for a line that is
/// neither, or an RFC 5424 message without a JSON MSG.
pub fn parse(stored: &str) -> Option<(Option<String>, &str)> {
    let stored = stored.trim_end_matches(['\r', '\n']);
    if stored.starts_with('{') {
        return Some((None, stored));
    }
    let rest = stored.strip_prefix('<')?;
    let rest = &rest[rest.find('>')? + 1..];
    // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then STRUCTURED-DATA.
    let mut fields = rest.splitn(7, ' ');
    let _version = fields.next()?;
    let _time = fields.next()?;
    let hostname = fields.next()?;
    let (_app, _pid, _msgid) = (fields.next()?, fields.next()?, fields.next()?);
    let mut sd_and_msg = fields.next()?;
    let mut host = (hostname != "-").then(|| hostname.to_owned());
    if let Some(after_nil) = sd_and_msg.strip_prefix('-') {
        sd_and_msg = after_nil;
    } else {
        while sd_and_msg.starts_with('[') {
            let (element, after) = sd_element(sd_and_msg)?;
            if let Some(h) = element.param("host").filter(|_| element.id == SD_ID) {
                host = Some(h);
            }
            sd_and_msg = after;
        }
    }
    let msg = sd_and_msg.strip_prefix(' ').unwrap_or(sd_and_msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    msg.starts_with('{').then_some((host, msg))
}

/// One structured-data element: its id and its raw parameters.
struct Element<'a> {
    id: &'a str,
    params: Vec<(&'a str, String)>,
}

impl Element<'_> {
    fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

/// Splits `[id name="value" …]rest` into the element and `rest`.
fn sd_element(s: &str) -> Option<(Element<'_>, &str)> {
    let body = s.strip_prefix('[')?;
    let id_end = body.find([' ', ']'])?;
    let mut element = Element {
        id: &body[..id_end],
        params: Vec::new(),
    };
    let mut rest = &body[id_end..];
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Some((element, after));
        }
        let eq = rest.find('=')?;
        let name = &rest[..eq];
        let mut chars = rest[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        element.params.push((name, value));
        rest = &rest[eq + 1 + 1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"v":1,"seq":42,"prev":"00","time":"2026-12-04T01:41:03.935Z","kind":"reject","listener":"l","reason":"forbidden"}"#;

    #[test]
    fn a_record_line_becomes_one_message_and_reads_back() {
        let f = line_fields(LINE).expect("fields");
        assert_eq!(
            (f.seq, f.time, f.kind),
            (42, "2026-12-04T01:41:03.935Z", "reject")
        );
        let m = message("gpu-07 \"a]\\", 4711, LINE, &f);
        assert!(
            m.starts_with("<109>1 2026-12-04T01:41:03.935Z gpu-07\"a]\\ moat 4711 reject [moat@32473 host=\"gpu-07 \\\"a\\]\\\\\" seq=\"42\" hash=\""),
            "{m}"
        );
        assert!(m.ends_with(&format!("\"] {LINE}")));
        let (host, line) = parse(&m).expect("parses");
        assert_eq!(
            host.as_deref(),
            Some("gpu-07 \"a]\\"),
            "the element's host, unescaped"
        );
        assert_eq!(line, LINE);
        let mut framed = Vec::new();
        frame(&mut framed, &m);
        assert_eq!(framed, format!("{} {m}", m.len()).into_bytes());
    }

    #[test]
    fn stored_forms() {
        assert_eq!(parse(&format!("{LINE}\n")), Some((None, LINE)));
        let plain = format!("<110>1 2026-12-04T01:41:03.935Z host-a moat 1 request - {LINE}");
        assert_eq!(parse(&plain), Some((Some("host-a".into()), LINE)));
        let bom = format!("<110>1 - host-b moat 1 request [x@1 a=\"b\"] \u{feff}{LINE}");
        assert_eq!(parse(&bom), Some((Some("host-b".into()), LINE)));
        for bad in [
            "",
            "hello",
            "<110>1 - h moat 1 request - not json",
            "<110>1 - h moat 1 request [moat@32473 host=\"x] {}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn severities() {
        assert_eq!(severity("request", ""), 6);
        assert_eq!(severity("reject", ""), 5);
        assert_eq!(severity("guard", r#""verdict":"refused""#), 4);
        assert_eq!(severity("guard", r#""verdict":"monitored""#), 6);
        assert_eq!(severity("lifecycle", r#""event":"reload_refused""#), 4);
        assert_eq!(severity("lifecycle", r#""event":"start""#), 6);
        assert!(line_fields("{\"v\":1}").is_none());
    }
}
