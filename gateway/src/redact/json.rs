//! Redaction inside JSON: detectors run on decoded string values (so `\\u0040` escapes cannot
//! hide an address), and the output is valid JSON with every other field untouched. A value
//! whose operator is `drop` removes its whole field.

use serde_json::Value;

use super::{Blocked, Operator, Redactor, State};

/// Redacts every string in `v` in place.
pub fn redact_value(r: &Redactor, v: &mut Value, st: &mut State) -> Result<(), Blocked> {
    match v {
        Value::String(s) => {
            let out = r.redact(s, st)?;
            if out != *s {
                *s = out;
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_value(r, item, st)?;
            }
        }
        Value::Object(map) => {
            let mut dropped = Vec::new();
            for (k, item) in map.iter_mut() {
                if let Value::String(s) = item {
                    if r.would_drop(s) {
                        dropped.push(k.clone());
                        continue;
                    }
                }
                redact_value(r, item, st)?;
            }
            for k in dropped {
                map.remove(&k);
            }
        }
        _ => {}
    }
    Ok(())
}

impl Redactor {
    /// Whether a string holds a value whose operator is `drop`.
    pub fn would_drop(&self, s: &str) -> bool {
        let folded = super::normalize::fold(s);
        self.detectors()
            .find(&folded.text)
            .iter()
            .any(|f| matches!(self.operator(f.entity), Operator::Drop))
    }
}
