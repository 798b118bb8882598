//! `moat redact`: a redaction profile applied to the operator's own samples, by the code the
//! gateway runs on request bodies, so the output is byte for byte what the gateway would forward.
//!
//! With `--explain` it prints the matches instead, as JSON Lines: character offsets in each text
//! (for JSON, in each decoded string, named by its JSON Pointer), the entity, the detector and
//! what validated it. Neither mode writes input content anywhere but the redacted body on stdout.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

use super::{invalid, EX_USAGE};
use crate::config::Config;
use crate::redact::json::{Paths, Step};
use crate::redact::rewrite::{inspect_json, redact_json, RewriteError};
use crate::redact::{Blocked, Profile, Redactor, State};

/// Exit code when a `block` operator matched: the gateway would refuse the body (422).
pub const EX_BLOCKED: u8 = 3;
/// Exit code for input that cannot be redacted: not JSON under `--json`, text not UTF-8
/// (sysexits EX_DATAERR).
pub const EX_DATAERR: u8 = 65;
/// Exit code for an input file that cannot be read (sysexits EX_NOINPUT).
pub const EX_NOINPUT: u8 = 66;
/// Exit code when stdout cannot be written (sysexits EX_IOERR).
pub const EX_IOERR: u8 = 74;

/// How the input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// JSON when it is a JSON object or array, else text.
    Auto,
    /// A JSON body, as `Content-Type: application/json`.
    Json,
    /// Plain text, as `Content-Type: text/plain`.
    Text,
}

/// `moat redact` arguments.
#[derive(Debug, Clone)]
pub struct Options {
    /// Configuration file to take the profile from; the built-in profile without one.
    pub config: Option<PathBuf>,
    /// Profile name.
    pub profile: Option<String>,
    /// Print the matches instead of the redacted body.
    pub explain: bool,
    /// How the input is read.
    pub kind: InputKind,
    /// Input files; `-` or none: stdin.
    pub files: Vec<PathBuf>,
}

/// Why one input produced no redacted body.
#[derive(Debug)]
enum Failure {
    /// A `block` operator matched this entity.
    Blocked(&'static str),
    /// The input cannot be redacted as the chosen kind.
    Unredactable(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Self::Blocked(_) => EX_BLOCKED,
            Self::Unredactable(_) => EX_DATAERR,
        }
    }
}

impl From<Blocked> for Failure {
    fn from(b: Blocked) -> Self {
        Self::Blocked(b.0.name())
    }
}

/// Values found or redacted, by entity name.
type Counts = BTreeMap<&'static str, u64>;

/// `moat redact`: redacts (or explains) each input in turn; see `docs/redaction.md`.
pub fn redact(o: &Options) -> ExitCode {
    let profile = match select_profile(o.config.as_deref(), o.profile.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !profile.requests {
        eprintln!(
            "note: profile {} applies to responses only; inputs are redacted as the gateway redacts a response read whole",
            profile.name
        );
    }
    let stdin = [PathBuf::from("-")];
    let files: &[PathBuf] = if o.files.is_empty() { &stdin } else { &o.files };
    let labelled = files.len() > 1;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total = Counts::new();
    let mut code = None;
    for file in files {
        let name = file.display().to_string();
        let body = match read_input(file) {
            Ok(b) => b,
            Err(e) => {
                let what = if name == "-" { "stdin" } else { &name };
                eprintln!("moat redact: cannot read {what}: {e}");
                code.get_or_insert(EX_NOINPUT);
                continue;
            }
        };
        let file_label = labelled.then_some(name.as_str());
        let result = if o.explain {
            explain_input(&profile, &body, o.kind, file_label, &mut out)
        } else {
            redact_input(&profile, &body, o.kind, &mut out)
        };
        let (counts, failure) = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("moat redact: cannot write to stdout: {e}");
                return ExitCode::from(EX_IOERR);
            }
        };
        for (entity, n) in counts {
            *total.entry(entity).or_default() += n;
        }
        if let Some(f) = failure {
            let what = if name == "-" { "input" } else { &name };
            match &f {
                Failure::Blocked(entity) => eprintln!(
                    "moat redact: {what}: refused: profile {} blocks {entity} (the gateway answers 422 and forwards nothing)",
                    profile.name
                ),
                Failure::Unredactable(why) => {
                    let gateway = if profile.fail_open {
                        "the profile fails open: the gateway would forward it unredacted"
                    } else {
                        "the gateway answers 422 and forwards nothing"
                    };
                    eprintln!("moat redact: {what}: cannot be redacted: {why} ({gateway})");
                }
            }
            code.get_or_insert(f.code());
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("moat redact: cannot write to stdout: {e}");
        return ExitCode::from(EX_IOERR);
    }
    let verb = if o.explain { "found" } else { "redacted" };
    eprintln!(
        "moat redact: profile {}: {}",
        profile.name,
        summary(verb, &total)
    );
    code.map_or(ExitCode::SUCCESS, ExitCode::from)
}

/// The profile `--config` and `--profile` name; an error has been printed when it is `Err`.
fn select_profile(config: Option<&Path>, name: Option<&str>) -> Result<Arc<Profile>, ExitCode> {
    let Some(file) = config else {
        return match name {
            None | Some(crate::config::BUILTIN_PROFILE) => {
                crate::config::builtin_profile().map_err(|e| invalid(&e))
            }
            Some(other) => {
                eprintln!(
                    "moat redact: no redaction profile {other:?}: without --config only the built-in profile {:?} exists",
                    crate::config::BUILTIN_PROFILE
                );
                Err(ExitCode::from(EX_USAGE))
            }
        };
    };
    let config = Config::load(file).map_err(|e| invalid(&e))?;
    let defined = || {
        config
            .redaction
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => config.redaction.get(n).cloned().ok_or_else(|| {
            eprintln!(
                "moat redact: no redaction profile {n:?} in {} (defined: [{}])",
                file.display(),
                defined()
            );
            ExitCode::from(EX_USAGE)
        }),
        None => {
            let mut all = config.redaction.values();
            match (all.next(), all.next()) {
                (Some(p), None) => Ok(p.clone()),
                (None, _) => {
                    eprintln!(
                        "moat redact: {} defines no redaction profile ([redaction.profiles.NAME])",
                        file.display()
                    );
                    Err(ExitCode::from(EX_USAGE))
                }
                (Some(_), Some(_)) => {
                    eprintln!(
                        "moat redact: {} defines several redaction profiles ([{}]): choose one with --profile",
                        file.display(),
                        defined()
                    );
                    Err(ExitCode::from(EX_USAGE))
                }
            }
        }
    }
}

fn read_input(file: &Path) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut body)?;
    } else {
        std::fs::File::open(file)?.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// `counts` as `redacted EMAIL_ADDRESS 2, IP_ADDRESS 1`, or `nothing redacted`.
fn summary(verb: &str, counts: &Counts) -> String {
    if counts.is_empty() {
        return format!("nothing {verb}");
    }
    let list: Vec<String> = counts.iter().map(|(e, n)| format!("{e} {n}")).collect();
    format!("{verb} {}", list.join(", "))
}

/// Whether the input is read as JSON: always with `--json`, never with `--text`; by default
/// when it is an object or array the gateway's JSON validation accepts.
fn is_json(p: &Profile, body: &[u8], kind: InputKind) -> bool {
    match kind {
        InputKind::Json => true,
        InputKind::Text => false,
        InputKind::Auto => {
            let first = body
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            matches!(first, Some(b'{' | b'['))
                && !matches!(
                    redact_json(&p.redactor, body, &mut State::default(), &p.paths),
                    Err(RewriteError::Invalid(..))
                )
        }
    }
}

fn as_text(body: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(body).map_err(|_| Failure::Unredactable("text is not UTF-8".to_owned()))
}

fn json_failure(e: RewriteError) -> Failure {
    match e {
        RewriteError::Blocked(b) => b.into(),
        RewriteError::Invalid(..) => Failure::Unredactable(e.to_string()),
    }
}

/// Redacts one input as the gateway redacts a request body, and writes the result.
fn redact_input(
    p: &Profile,
    body: &[u8],
    kind: InputKind,
    out: &mut impl Write,
) -> std::io::Result<(Counts, Option<Failure>)> {
    let mut st = State::default();
    let redacted: Result<Cow<'_, [u8]>, Failure> = if is_json(p, body, kind) {
        match redact_json(&p.redactor, body, &mut st, &p.paths) {
            Ok(Some(b)) => Ok(Cow::Owned(b)),
            Ok(None) => Ok(Cow::Borrowed(body)),
            Err(e) => Err(json_failure(e)),
        }
    } else {
        as_text(body).and_then(|t| {
            p.redactor
                .redact(t, &mut st)
                .map(|s| Cow::Owned(s.into_bytes()))
                .map_err(Failure::from)
        })
    };
    match redacted {
        Ok(b) => {
            out.write_all(&b)?;
            Ok((st.counts, None))
        }
        // A blocked body is not forwarded: nothing is written, nothing counted.
        Err(f) => Ok((Counts::new(), Some(f))),
    }
}

/// One match, as `--explain` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// JSON Pointer of the string (JSON input only).
    pub path: Option<String>,
    /// Character range in the (decoded) string; absent for a non-string value an `always`
    /// field path replaces.
    pub range: Option<(usize, usize)>,
    /// Entity name (`FIELD` for an `always` field path).
    pub entity: &'static str,
    /// The detector (`path` for an `always` field path).
    pub detector: &'static str,
    /// What validated the match (`always` for an `always` field path).
    pub validation: &'static str,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<usize>,
    entity: &'static str,
    detector: &'static str,
    validation: &'static str,
}

/// Explains one input: the matches as JSON Lines, and whether the gateway would refuse it.
fn explain_input(
    p: &Profile,
    body: &[u8],
    kind: InputKind,
    file: Option<&str>,
    out: &mut impl Write,
) -> std::io::Result<(Counts, Option<Failure>)> {
    let explained = if is_json(p, body, kind) {
        // The gateway's own pass first: the same verdict (blocked, invalid) as the gateway.
        let verdict = redact_json(&p.redactor, body, &mut State::default(), &p.paths);
        match verdict {
            Err(e @ RewriteError::Invalid(..)) => Err(json_failure(e)),
            other => match explain_json(&p.redactor, &p.paths, body) {
                Ok(list) => Ok((list, other.err().map(json_failure))),
                Err(e) => Err(json_failure(e)),
            },
        }
    } else {
        as_text(body).map(|t| {
            let list = explain_text(&p.redactor, t)
                .into_iter()
                .map(|(range, f)| Explained {
                    path: None,
                    range: Some(range),
                    entity: f.entity.name(),
                    detector: f.detector,
                    validation: f.validation,
                })
                .collect();
            (
                list,
                p.redactor
                    .redact(t, &mut State::default())
                    .err()
                    .map(Failure::from),
            )
        })
    };
    let (list, failure) = match explained {
        Ok(r) => r,
        Err(f) => return Ok((Counts::new(), Some(f))),
    };
    let mut counts = Counts::new();
    for e in &list {
        *counts.entry(e.entity).or_default() += 1;
        let line = Line {
            file,
            path: e.path.as_deref(),
            start: e.range.map(|r| r.0),
            end: e.range.map(|r| r.1),
            entity: e.entity,
            detector: e.detector,
            validation: e.validation,
        };
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok((counts, failure))
}

/// The matches [`Redactor::redact`] replaces in `text`, with character ranges: in order, a match
/// starting inside the previous one skipped, as the redactor skips it.
pub fn explain_text(
    r: &Redactor,
    text: &str,
) -> Vec<((usize, usize), crate::redact::detect::Found)> {
    let mut chars = CharOffsets::new(text);
    let mut pos = 0;
    let mut out = Vec::new();
    for f in r.find(text) {
        if f.start < pos {
            continue;
        }
        pos = f.end;
        let start = chars.at(f.start);
        let end = chars.at(f.end);
        out.push(((start, end), f));
    }
    out
}

/// Character (Unicode scalar value) offsets of byte offsets of one text, asked in ascending
/// order (each call continues from the last; an earlier offset starts over).
#[derive(Debug)]
pub struct CharOffsets<'t> {
    bytes: &'t [u8],
    byte: usize,
    chars: usize,
}

impl<'t> CharOffsets<'t> {
    /// Offsets in `text`.
    pub fn new(text: &'t str) -> Self {
        Self {
            bytes: text.as_bytes(),
            byte: 0,
            chars: 0,
        }
    }

    /// The number of characters that start before byte `byte` (past the end: the length).
    pub fn at(&mut self, byte: usize) -> usize {
        let byte = byte.min(self.bytes.len());
        if byte < self.byte {
            (self.byte, self.chars) = (0, 0);
        }
        let starts = self.bytes[self.byte..byte]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        self.chars += starts;
        self.byte = byte;
        self.chars
    }
}

/// The JSON Pointer (RFC 6901) of a field path: `/messages/0/content`; `~` and `/` in member
/// names escaped as `~0` and `~1`; the whole document is the empty pointer.
pub fn json_pointer(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        s.push('/');
        match step {
            Step::Key(k) => {
                for c in k.chars() {
                    match c {
                        '~' => s.push_str("~0"),
                        '/' => s.push_str("~1"),
                        c => s.push(c),
                    }
                }
            }
            Step::Index(i) => s.push_str(&i.to_string()),
            // A concrete path has no wildcard.
            Step::Any => s.push('*'),
        }
    }
    s
}

/// The matches in every string value of a JSON document, as [`redact_json`] walks and
/// replaces them ([`inspect_json`]): member names are not scanned, `never` paths are skipped,
/// `always` paths are one whole-field entry (`FIELD`, detector `path`) unless they hold `null`.
pub fn explain_json(
    r: &Redactor,
    paths: &Paths,
    body: &[u8],
) -> Result<Vec<Explained>, RewriteError> {
    let mut out = Vec::new();
    for seen in inspect_json(r, body, paths)? {
        let path = Some(json_pointer(&seen.path));
        if seen.field {
            out.push(Explained {
                path,
                range: seen.text.map(|t| (0, t.chars().count())),
                entity: "FIELD",
                detector: "path",
                validation: "always",
            });
            continue;
        }
        let text = seen.text.unwrap_or_default();
        let mut chars = CharOffsets::new(&text);
        for f in seen.found {
            out.push(Explained {
                path: path.clone(),
                range: Some((chars.at(f.start), chars.at(f.end))),
                entity: f.entity.name(),
                detector: f.detector,
                validation: f.validation,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::json::FieldPath;
    use crate::redact::{Detectors, Entity, Operator};

    fn redactor() -> Redactor {
        Redactor::new(
            Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
            std::collections::HashMap::new(),
            Operator::Replace { numbered: false },
        )
    }

    /// Without `--config`: an empty profile table's profile — every built-in entity, `replace`.
    #[test]
    fn the_builtin_profile_is_an_empty_profile_table() {
        let p = select_profile(None, None).expect("built-in profile");
        assert_eq!(p.name, "default");
        assert!(p.requests && p.responses && !p.fail_open);
        assert!(p.paths.always.is_empty() && p.paths.never.is_empty());
        for e in Entity::ALL {
            assert_eq!(
                p.redactor.operator(e),
                &Operator::Replace { numbered: false }
            );
        }
        let out = p
            .redactor
            .redact(
                "jane@example.com 4111 1111 1111 1111 AKIAIOSFODNN7EXAMPLE",
                &mut State::default(),
            )
            .expect("redact");
        assert_eq!(out, "<EMAIL_ADDRESS> <CREDIT_CARD> <CLOUD_ACCESS_KEY>");
        assert!(select_profile(None, Some("default")).is_ok());
        assert!(select_profile(None, Some("other")).is_err());
    }

    #[test]
    fn char_offsets_count_scalar_values() {
        let text = "aé😀b€";
        let mut c = CharOffsets::new(text);
        assert_eq!(c.at(0), 0);
        assert_eq!(c.at(1), 1);
        assert_eq!(c.at(3), 2, "é is two bytes");
        assert_eq!(c.at(7), 3, "😀 is four bytes");
        assert_eq!(c.at(8), 4);
        assert_eq!(c.at(text.len()), 5);
        assert_eq!(c.at(100), 5, "past the end: the length");
        assert_eq!(c.at(3), 2, "an earlier offset starts over");
        assert_eq!(CharOffsets::new("").at(0), 0);
    }

    #[test]
    fn json_pointers_escape_tilde_and_slash() {
        let path = [
            Step::Key("messages".into()),
            Step::Index(0),
            Step::Key("a/b~c".into()),
            Step::Key("~1".into()),
            Step::Key(String::new()),
        ];
        assert_eq!(json_pointer(&path), "/messages/0/a~1b~0c/~01/");
        assert_eq!(json_pointer(&[]), "");
    }

    /// Spans applied as `<ENTITY>` give exactly what the redactor writes, with characters beyond
    /// ASCII before, inside (full-width, zero-width) and between the values.
    #[test]
    fn text_spans_reproduce_the_redaction() {
        let r = redactor();
        for text in [
            "naïve 😀 jane@example.com and ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ, card 4111\u{200B}1111 1111 1111 — ip 10.20.30.40",
            "nothing here",
            "",
        ] {
            let spans = explain_text(&r, text);
            let chars: Vec<char> = text.chars().collect();
            let mut rebuilt = String::new();
            let mut pos = 0;
            for ((s, e), f) in &spans {
                rebuilt.extend(&chars[pos..*s]);
                rebuilt.push_str(&format!("<{}>", f.entity.name()));
                pos = *e;
            }
            rebuilt.extend(&chars[pos..]);
            let expected = r.redact(text, &mut State::default()).expect("redact");
            assert_eq!(rebuilt, expected);
        }
    }

    #[test]
    fn json_walk_names_strings_by_pointer_and_follows_field_paths() {
        let r = redactor();
        let paths = Paths {
            always: vec![
                FieldPath::parse("$.user").expect("path"),
                FieldPath::parse("$.meta.*").expect("path"),
            ],
            never: vec![FieldPath::parse("$.model").expect("path")],
        };
        let body = br#"{"model":"jane@example.com","user":"bob","meta":{"n":3,"z":null},
            "a/b":[{"c~d":"x jane\u0040example.com"}],"jane@example.com":1}"#;
        let list = explain_json(&r, &paths, body).expect("walk");
        let got: Vec<String> = list
            .iter()
            .map(|e| format!("{:?} {:?} {} {}", e.path, e.range, e.entity, e.detector))
            .collect();
        assert_eq!(
            got,
            [
                r#"Some("/user") Some((0, 3)) FIELD path"#,
                r#"Some("/meta/n") None FIELD path"#,
                r#"Some("/a~1b/0/c~0d") Some((2, 18)) EMAIL_ADDRESS email"#,
            ]
        );
        assert!(explain_json(&r, &Paths::default(), b"{\"a\":").is_err());
        assert!(explain_json(&r, &Paths::default(), b"[1] x").is_err());
        assert!(explain_json(&r, &Paths::default(), b"\"\\").is_err());
    }
}
