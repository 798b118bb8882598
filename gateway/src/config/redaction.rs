//! `[redaction]`: the profiles that find and rewrite sensitive data in bodies.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::spans::Spans;
use super::validate::Validator;
use super::{raw, ConfigError};
use crate::redact::{Detectors, Entity, Operator, Profile, Redactor};

/// Name of the profile [`builtin_profile`] builds.
pub const BUILTIN_PROFILE: &str = "default";

/// The profile a `[redaction.profiles.default]` table with no keys gives: every built-in entity,
/// `replace`, both directions, no field paths. Built by the same validation as a configuration
/// file's profiles (what `moat redact` uses without `--config`).
pub fn builtin_profile() -> Result<Arc<Profile>, ConfigError> {
    let raw = raw::RawRedaction {
        hash_key_file: None,
        profiles: BTreeMap::from([(BUILTIN_PROFILE.to_owned(), raw::RawProfile::default())]),
    };
    let v = Validator {
        spans: Spans::new(""),
        base: std::path::Path::new("."),
    };
    v.redaction(&raw)?
        .remove(BUILTIN_PROFILE)
        .ok_or_else(|| ConfigError::Missing {
            path: format!("redaction.profiles.{BUILTIN_PROFILE}"),
            reason: "the built-in profile".into(),
        })
}

impl Validator<'_> {
    pub(super) fn redaction(
        &self,
        raw: &raw::RawRedaction,
    ) -> Result<BTreeMap<String, Arc<Profile>>, ConfigError> {
        let hash_key = match &raw.hash_key_file {
            None => None,
            Some(f) => {
                let path = self.existing_file("redaction.hash_key_file", f)?;
                let key = std::fs::read(&path)
                    .map_err(|e| self.invalid("redaction.hash_key_file", f, e.to_string()))?;
                if key.len() < 16 {
                    return Err(self.invalid(
                        "redaction.hash_key_file",
                        f,
                        "the key must be at least 16 bytes",
                    ));
                }
                Some(key)
            }
        };
        let mut out = BTreeMap::new();
        for (name, p) in &raw.profiles {
            let k = format!("redaction.profiles.{name}");
            let entities = match &p.entities {
                None => Entity::ALL.to_vec(),
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        Entity::parse(e).ok_or_else(|| {
                            self.invalid(&format!("{k}.entities.{i}"), e, "not a known entity type")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let keep = p.mask_keep_suffix.unwrap_or(4);
            let op = |key: &str, v: &str| -> Result<Operator, ConfigError> {
                Ok(match v {
                    "mask" => Operator::Mask { keep_suffix: keep },
                    "replace" => Operator::Replace { numbered: false },
                    "replace_numbered" => Operator::Replace { numbered: true },
                    "drop" => Operator::Drop,
                    "block" => Operator::Block,
                    "hash" => match &hash_key {
                        Some(key) => Operator::Hash {
                            key: key.clone(),
                            len: 16,
                        },
                        None => {
                            return Err(ConfigError::Missing {
                                path: "redaction.hash_key_file".into(),
                                reason: format!("{key} uses the hash operator"),
                            })
                        }
                    },
                    _ => {
                        return Err(self.invalid(
                            key,
                            v,
                            "expected mask, replace, replace_numbered, hash, drop or block",
                        ))
                    }
                })
            };
            let default = op(
                &format!("{k}.default_operator"),
                p.default_operator.as_deref().unwrap_or("replace"),
            )?;
            let mut operators = std::collections::HashMap::new();
            for (e, v) in &p.operators {
                let ent = Entity::parse(e).ok_or_else(|| {
                    self.invalid(&format!("{k}.operators"), e, "not a known entity type")
                })?;
                operators.insert(ent, op(&format!("{k}.operators.{e}"), v)?);
            }
            let detectors = Detectors::new(&entities, &p.patterns, &p.words)
                .map_err(|e| self.invalid(&format!("{k}.patterns"), "(regex)", e.to_string()))?;
            let (requests, responses) = match p.direction.as_deref() {
                None | Some("both") => (true, true),
                Some("request") => (true, false),
                Some("response") => (false, true),
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{k}.direction"),
                        v,
                        "expected request, response or both",
                    ))
                }
            };
            let fail_open = match p.fail.as_deref() {
                None | Some("closed") => false,
                Some("open") => true,
                Some(v) => {
                    return Err(self.invalid(&format!("{k}.fail"), v, "expected closed or open"))
                }
            };
            let block_other_content = match p.other_content.as_deref() {
                None | Some("pass") => false,
                Some("block") => true,
                Some(v) => {
                    return Err(self.invalid(
                        &format!("{k}.other_content"),
                        v,
                        "expected pass or block",
                    ))
                }
            };
            let parse_paths =
                |key: &str,
                 list: &[String]|
                 -> Result<Vec<crate::redact::json::FieldPath>, ConfigError> {
                    list.iter()
                        .enumerate()
                        .map(|(i, p)| {
                            crate::redact::json::FieldPath::parse(p).ok_or_else(|| {
                                self.invalid(
                                    &format!("{k}.{key}.{i}"),
                                    p,
                                    "expected a field path such as $.messages[*].content",
                                )
                            })
                        })
                        .collect()
                };
            let paths = crate::redact::json::Paths {
                always: parse_paths("always", &p.always)?,
                never: parse_paths("never", &p.never)?,
            };
            out.insert(
                name.clone(),
                Arc::new(Profile {
                    name: name.clone(),
                    redactor: Redactor::new(detectors, operators, default),
                    requests,
                    responses,
                    fail_open,
                    max_hold_back: p.max_hold_back.unwrap_or(crate::redact::detect::MAX_MATCH),
                    block_other_content,
                    paths,
                }),
            );
        }
        Ok(out)
    }
}
