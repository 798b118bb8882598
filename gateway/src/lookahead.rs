//! The model a request asks for, read from the start of its JSON body as the body arrives.
//!
//! Policy may match on the top-level `"model"` string, which comes early in every inference API's
//! request body. [`ModelScan`] reads the body's bytes once, in the pieces they arrive in,
//! keeping its place between pieces: the work is linear in the bytes read however they are cut
//! (a body dripped one byte per read costs no more than one read whole), and it stops as soon as
//! the value is complete or cannot come any more.

/// Longest key worth keeping (`"model"` spelled with escapes fits).
const MAX_KEY: usize = 64;

/// Longest model name read.
const MAX_MODEL: usize = 4096;

/// What the scan knows so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// The top-level `model` string.
    Found(String),
    /// The body is not a JSON object, its `model` is not a string, or the object ended first.
    Absent,
    /// Not known yet: more of the body is needed.
    Pending,
}

/// Where the scan is in the top-level object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before the opening `{`.
    Start,
    /// Expecting a key (or `}`).
    Key,
    /// Inside a key string (`keep`: still short enough to be `model`).
    InKey { keep: bool },
    /// After a key, expecting `:`.
    Colon { model: bool },
    /// Expecting a value.
    Value { model: bool },
    /// Inside the `model` string value.
    InModel,
    /// Inside a string that is skipped.
    SkipString,
    /// Inside a nested object or array that is skipped (its depth).
    SkipNested { depth: usize, in_string: bool },
    /// Inside a number or literal that is skipped.
    SkipScalar,
    /// After a value, expecting `,` or `}`.
    AfterValue,
    /// Decided.
    Done,
}

/// An incremental scan for the top-level `"model"` string of a JSON object.
#[derive(Debug, Clone)]
pub struct ModelScan {
    state: State,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// The current key's or the model value's raw bytes (escapes undecoded).
    raw: Vec<u8>,
    result: Model,
}

impl Default for ModelScan {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelScan {
    /// A scan at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            escaped: false,
            raw: Vec::new(),
            result: Model::Pending,
        }
    }

    /// What is known so far.
    pub fn result(&self) -> &Model {
        &self.result
    }

    /// Reads the next piece of the body.
    pub fn push(&mut self, bytes: &[u8]) -> &Model {
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            // Inside a skipped string only a quote or a backslash matters: jump to the next.
            let skipping = matches!(
                self.state,
                State::SkipString
                    | State::InKey { keep: false }
                    | State::SkipNested {
                        in_string: true,
                        ..
                    }
            );
            if skipping && !self.escaped {
                match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    Some(n) => i += n,
                    None => break,
                }
            }
            self.byte(bytes[i]);
            i += 1;
        }
        &self.result
    }

    /// The body ended: what was not found will not be.
    pub fn finish(&mut self) -> &Model {
        if self.result == Model::Pending {
            self.decide(Model::Absent);
        }
        &self.result
    }

    fn decide(&mut self, m: Model) {
        self.result = m;
        self.state = State::Done;
        self.raw = Vec::new();
    }

    /// Consumes one byte of a string; true at its closing quote.
    fn string_end(&mut self, b: u8) -> bool {
        if self.escaped {
            self.escaped = false;
            return false;
        }
        match b {
            b'\\' => {
                self.escaped = true;
                false
            }
            b'"' => true,
            _ => false,
        }
    }

    fn byte(&mut self, b: u8) {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state.clone() {
            State::Start => match b {
                _ if ws => {}
                b'{' => self.state = State::Key,
                _ => self.decide(Model::Absent),
            },
            State::Key => match b {
                _ if ws => {}
                b'"' => {
                    self.raw.clear();
                    self.state = State::InKey { keep: true };
                }
                _ => self.decide(Model::Absent),
            },
            State::InKey { keep } => {
                if self.string_end(b) {
                    let model = keep && decode(&self.raw).as_deref() == Some("model");
                    self.state = State::Colon { model };
                } else if keep {
                    self.raw.push(b);
                    if self.raw.len() > MAX_KEY {
                        self.state = State::InKey { keep: false };
                    }
                }
            }
            State::Colon { model } => match b {
                _ if ws => {}
                b':' => self.state = State::Value { model },
                _ => self.decide(Model::Absent),
            },
            State::Value { model } => match b {
                _ if ws => {}
                b'"' if model => {
                    self.raw.clear();
                    self.state = State::InModel;
                }
                _ if model => self.decide(Model::Absent),
                b'"' => self.state = State::SkipString,
                b'{' | b'[' => {
                    self.state = State::SkipNested {
                        depth: 1,
                        in_string: false,
                    }
                }
                _ => self.state = State::SkipScalar,
            },
            State::InModel => {
                if self.string_end(b) {
                    let found = decode(&self.raw).map_or(Model::Absent, Model::Found);
                    self.decide(found);
                } else {
                    self.raw.push(b);
                    if self.raw.len() > MAX_MODEL {
                        self.decide(Model::Absent);
                    }
                }
            }
            State::SkipString => {
                if self.string_end(b) {
                    self.state = State::AfterValue;
                }
            }
            State::SkipNested { depth, in_string } => {
                if in_string {
                    if self.string_end(b) {
                        self.state = State::SkipNested {
                            depth,
                            in_string: false,
                        };
                    }
                    return;
                }
                let depth = match b {
                    b'"' => {
                        self.state = State::SkipNested {
                            depth,
                            in_string: true,
                        };
                        return;
                    }
                    b'{' | b'[' => depth + 1,
                    b'}' | b']' => depth - 1,
                    _ => depth,
                };
                self.state = if depth == 0 {
                    State::AfterValue
                } else {
                    State::SkipNested {
                        depth,
                        in_string: false,
                    }
                };
            }
            State::SkipScalar => match b {
                b',' => self.state = State::Key,
                b'}' => self.decide(Model::Absent),
                _ if ws => self.state = State::AfterValue,
                _ => {}
            },
            State::AfterValue => match b {
                _ if ws => {}
                b',' => self.state = State::Key,
                _ => self.decide(Model::Absent),
            },
            State::Done => {}
        }
    }
}

/// A JSON string's raw contents (between the quotes) decoded.
fn decode(raw: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// The top-level `"model"` string of a JSON object, read from a possibly incomplete prefix.
pub fn model_of(prefix: &[u8]) -> Option<String> {
    match ModelScan::new().push(prefix) {
        Model::Found(m) => Some(m.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_model_wherever_the_body_is_cut() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"model":"gpt-x","messages":[]}"#, Some("gpt-x")),
            (
                br#"{"stream":true,"n":-1.5e3,"x":null,"model":"gpt-x","messages":[{"role":"us"#,
                Some("gpt-x"),
            ),
            (br#"{"messages":[{"role":"user","content":"long"#, None),
            (br#"{"model":42}"#, None),
            (br#"[1,2]"#, None),
            (br#"{"nested":{"model":"no"},"model":"yes"}"#, Some("yes")),
            (br#"{"a":"}\"{","model":"q\"uote"}"#, Some("q\"uote")),
            (br#" { "mo\u0064el" : "esc\u00e9" } "#, Some("escé")),
            (br#"{"a":[{"b":"]}"}],"model":"m"}"#, Some("m")),
            (br#"{"a":1}"#, None),
            (br#"{"a":true,"model":"t"}"#, Some("t")),
        ];
        for (body, want) in cases {
            assert_eq!(
                model_of(body).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
            // Every byte on its own read.
            let mut scan = ModelScan::new();
            for b in body.iter() {
                scan.push(&[*b]);
            }
            let got = match scan.finish() {
                Model::Found(m) => Some(m.as_str()),
                _ => None,
            };
            assert_eq!(
                got,
                *want,
                "byte by byte: {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn agrees_with_serde_on_complete_documents() {
        let docs = [
            serde_json::json!({"model": "a", "messages": [{"content": "x"}]}),
            serde_json::json!({"messages": [{"model": "inner"}], "model": "outer"}),
            serde_json::json!({"temperature": 0.5, "stop": ["}", "\""], "model": "z\n\t"}),
            serde_json::json!({"model": null}),
            serde_json::json!({"model": ["x"]}),
            serde_json::json!("model"),
        ];
        for d in docs {
            let want = d.get("model").and_then(|m| m.as_str()).map(str::to_owned);
            let text = d.to_string();
            assert_eq!(model_of(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn stops_once_decided() {
        let mut scan = ModelScan::new();
        assert_eq!(scan.push(br#"{"model":"m"#), &Model::Pending);
        assert_eq!(scan.push(br#"x","rest""#), &Model::Found("mx".into()));
        assert_eq!(ModelScan::new().push(b"not json"), &Model::Absent);
        assert_eq!(ModelScan::new().finish(), &Model::Absent);
    }
}
