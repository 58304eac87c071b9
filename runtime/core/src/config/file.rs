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

/// Flow collections (`[...]`, `{...}`) nested deeper than this are refused
/// before the YAML parser sees them: it reports its own recursion limit
/// only after a time quadratic in the depth (seconds for 100 kB of `[`),
/// and a reload runs on a runtime thread. Configuration files need two or
/// three levels.
const MAX_FLOW_DEPTH: usize = 64;

/// Refuse YAML whose flow collections nest deeper than [`MAX_FLOW_DEPTH`],
/// in one pass: brackets inside quoted scalars and comments do not count.
fn check_flow_depth(text: &str) -> Result<(), ConfigError> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
            comment = false;
            prev = c;
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some('\'') => {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        column += 1;
                    } else {
                        quote = None;
                    }
                }
            }
            Some(_) => {
                if c == '\\' {
                    if chars.next_if(|&n| n != '\n').is_some() {
                        column += 1;
                    }
                } else if c == '"' {
                    quote = None;
                }
            }
            None => match c {
                '#' if prev.is_whitespace() => comment = true,
                '\'' | '"' if prev.is_whitespace() || "[{,:-?".contains(prev) => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(ConfigError::new(
                            format!("line {line}, column {column}"),
                            format!(
                                "invalid YAML: collections nested more than {MAX_FLOW_DEPTH} levels deep; a configuration needs two or three"
                            ),
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    Ok(())
}

/// Parse `text` as `format` into a tree. An empty document is an empty
/// table.
pub(crate) fn parse(text: &str, format: Format) -> Result<Value, ConfigError> {
    let value = match format {
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            syntax_error(format, line, column, e.message())
        })?,
        Format::Yaml => {
            check_flow_depth(text)?;
            serde_norway::from_str::<Value>(text).map_err(|e| {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                syntax_error(format, line, column, &e.to_string())
            })?
        }
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
