//! Source positions: the line of a key path in the configuration text, for error messages.

use super::ConfigError;

/// Finds the line of a key path, or the key path at an error offset, in the source text.
pub(super) struct Spans {
    doc: Option<toml_edit::Document<String>>,
    text: String,
}

impl Spans {
    /// Positions in `text`, which the `toml` parser has accepted: `toml_edit` reads only valid
    /// TOML here (its error recovery can panic on some broken files, found by fuzzing).
    pub(super) fn new(text: &str) -> Self {
        Self {
            doc: toml_edit::Document::parse(text.to_owned()).ok(),
            text: text.to_owned(),
        }
    }

    /// Positions in text the `toml` parser refused: by line and table header only.
    pub(super) fn text_only(text: &str) -> Self {
        Self {
            doc: None,
            text: text.to_owned(),
        }
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of the key at `path` (dot-separated, array indexes as numbers).
    pub(super) fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let parts: Vec<&str> = path.split('.').collect();
        let span = span_in_table(doc.as_table(), &parts)?;
        Some(self.line_of_offset(span.start))
    }

    /// A parse error, under the table it stands in (the nearest `[table]` header above it), or
    /// `top level` before any.
    pub(super) fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let at = e.span().map(|s| s.start);
        ConfigError::Syntax {
            path: at
                .and_then(|offset| self.table_at(offset))
                .unwrap_or_else(|| "top level".to_owned()),
            line: at.map(|offset| self.line_of_offset(offset)),
            message: e.message().trim().to_owned(),
        }
    }

    /// The name of the table whose header is the last one before `offset` (`listener` for
    /// `[[listener]]`, `upstreams.model` for `[upstreams.model]`).
    fn table_at(&self, offset: usize) -> Option<String> {
        let before = self.text.get(..offset.min(self.text.len()))?;
        before.lines().rev().find_map(|line| {
            let line = line.trim();
            let name = line
                .strip_prefix("[[")
                .and_then(|l| l.split("]]").next())
                .or_else(|| line.strip_prefix('[').and_then(|l| l.split(']').next()))?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
    }
}

/// Span of the key (or array element) at `parts` inside `table`; the nearest known ancestor's span
/// when the exact one is unknown.
fn span_in_table(
    table: &dyn toml_edit::TableLike,
    parts: &[&str],
) -> Option<std::ops::Range<usize>> {
    let (first, rest) = parts.split_first()?;
    let (key, item) = table.get_key_value(first)?;
    let here = key.span();
    if rest.is_empty() {
        return here;
    }
    let deeper = match item {
        toml_edit::Item::Table(t) => span_in_table(t, rest),
        toml_edit::Item::ArrayOfTables(a) => {
            let (idx, tail) = rest.split_first()?;
            let t = a.get(idx.parse().ok()?)?;
            if tail.is_empty() {
                t.span()
            } else {
                span_in_table(t, tail)
            }
        }
        toml_edit::Item::Value(v) => span_in_value(v, rest),
        toml_edit::Item::None => None,
    };
    deeper.or(here)
}

fn span_in_value(value: &toml_edit::Value, parts: &[&str]) -> Option<std::ops::Range<usize>> {
    let (first, rest) = parts.split_first()?;
    match value {
        toml_edit::Value::Array(a) => {
            let v = a.get(first.parse().ok()?)?;
            if rest.is_empty() {
                v.span()
            } else {
                span_in_value(v, rest).or(v.span())
            }
        }
        toml_edit::Value::InlineTable(t) => span_in_table(t, parts),
        _ => None,
    }
}
