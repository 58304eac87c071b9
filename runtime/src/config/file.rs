//! The three file formats, parsed into one tree so that a single checker
//! reports every mistake with the same paths and words whatever the format.

use std::path::Path;

use serde_json::Value;

use crate::error::ConfigError;

/// The format of a configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file's extension names: `.toml`, `.yaml`/`.yml` or
    /// `.json` (any case); `None` for anything else.
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Toml => "TOML",
            Self::Yaml => "YAML",
            Self::Json => "JSON",
        }
    }
}

/// Line and column (both 1-based) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

fn syntax_error(format: Format, line: usize, column: usize, message: &str) -> ConfigError {
    // Parsers repeat the position in their message; it is already in the
    // path.
    let message = message
        .replace(&format!(" at line {line} column {column}"), "")
        .trim()
        .to_owned();
    ConfigError::new(
        format!("line {line}, column {column}"),
        format!("invalid {}: {message}", format.name()),
    )
}

/// Parse `text` as `format` into a tree. An empty document is an empty
/// table.
pub(crate) fn parse(text: &str, format: Format) -> Result<Value, ConfigError> {
    let value = match format {
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            syntax_error(format, line, column, e.message())
        })?,
        Format::Yaml => serde_norway::from_str::<Value>(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            syntax_error(format, line, column, &e.to_string())
        })?,
        Format::Json => serde_json::from_str::<Value>(text)
            .map_err(|e| syntax_error(format, e.line(), e.column(), &e.to_string()))?,
    };
    Ok(match value {
        Value::Null => Value::Object(serde_json::Map::new()),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        // Never panics, whatever a parser reports.
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
