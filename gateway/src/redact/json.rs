//! Field paths for redaction inside JSON (the walks themselves are [`super::rewrite`] for bodies
//! and [`super::events`] for parsed values).
//!
//! Field paths (a small JSONPath subset: `$`, `.name`, `[n]`, `[*]`, `.*`) refine this per
//! profile: `always` paths are replaced whole (`"<REDACTED>"`) whatever they hold, `never` paths
//! are left untouched (e.g. `$.model`).

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
    /// Any member or element.
    Any,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Step>);

impl FieldPath {
    /// Parses `$.messages[*].content`, `$.user`, `$.choices[0].delta.content`, `$.*`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut rest = s.strip_prefix('$')?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() {
                    return None;
                }
                steps.push(if name == "*" {
                    Step::Any
                } else {
                    Step::Key(name.to_owned())
                });
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let inner = &r[..end];
                steps.push(if inner == "*" {
                    Step::Any
                } else {
                    Step::Index(inner.parse().ok()?)
                });
                rest = &r[end + 1..];
            } else {
                return None;
            }
        }
        Some(Self(steps))
    }

    pub(crate) fn matches(&self, at: &[Step]) -> bool {
        self.0.len() == at.len()
            && self.0.iter().zip(at).all(|(p, a)| match (p, a) {
                (Step::Any, _) => true,
                (Step::Key(x), Step::Key(y)) => x == y,
                (Step::Index(x), Step::Index(y)) => x == y,
                _ => false,
            })
    }
}

/// Field-path rules of a profile.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// Replaced whole, whatever they hold.
    pub always: Vec<FieldPath>,
    /// Never touched.
    pub never: Vec<FieldPath>,
}

/// The replacement of an `always` path.
pub const REDACTED: &str = "<REDACTED>";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::redact::{Detectors, Entity, Operator, Redactor, State};

    #[test]
    fn field_paths() {
        let r = Redactor::new(
            Detectors::new(&Entity::ALL, &[], &[]).expect("d"),
            HashMap::new(),
            Operator::Replace { numbered: false },
        );
        let paths = Paths {
            always: vec![
                FieldPath::parse("$.user").expect("p"),
                FieldPath::parse("$.metadata.*").expect("p"),
            ],
            never: vec![FieldPath::parse("$.messages[0].content").expect("p")],
        };
        let mut v = json!({
            "user": "customer-8812",
            "metadata": {"a": "x", "b": 3},
            "messages": [{"content": "keep jane@example.com"}, {"content": "mask jane@example.com"}],
            "model": "gpt-x",
        });
        let mut st = State::default();
        crate::redact::events::redact_document(&r, &mut v, &mut st, &paths).expect("redact");
        assert_eq!(v["user"], REDACTED);
        assert_eq!(v["metadata"], json!({"a": REDACTED, "b": REDACTED}));
        assert_eq!(
            v["messages"][0]["content"], "keep jane@example.com",
            "never path untouched"
        );
        assert_eq!(v["messages"][1]["content"], "mask <EMAIL_ADDRESS>");
        assert_eq!(v["model"], "gpt-x");
        for bad in ["user", "$..x", "$.a[", "$[x]", "$."] {
            assert!(FieldPath::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            FieldPath::parse("$.messages[*].content")
                .expect("p")
                .0
                .len(),
            3
        );
    }
}
