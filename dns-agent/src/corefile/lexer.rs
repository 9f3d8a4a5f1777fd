//! Splits Corefile text into words, braces and line starts; substitutes environment variables.

use std::sync::Arc;

use super::{CorefileError, Pos, Token};

/// What a lexeme is to the structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    /// An unquoted `{` standing alone.
    Open,
    /// An unquoted `}` standing alone.
    Close,
}

/// A token and whether it is the first one on its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Lexeme {
    pub tok: Token,
    pub kind: Kind,
    pub line_start: bool,
}

/// The lexemes of `text` and the position of its end.
pub(super) fn lex(
    file: &Arc<str>,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Lexeme>, Pos), CorefileError> {
    let pos = |line: u32, col: u32| Pos {
        file: file.clone(),
        line,
        col,
    };
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    // `col` is the column of the last character consumed.
    let (mut line, mut col) = (1u32, 0u32);
    let mut line_start = true;
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            chars.next();
            line += 1;
            col = 0;
            line_start = true;
            continue;
        }
        if c.is_whitespace() {
            chars.next();
            col += 1;
            continue;
        }
        if c == '#' {
            while chars.next_if(|&c| c != '\n').is_some() {}
            continue;
        }
        let start = pos(line, col + 1);
        let before = out.len();
        if c == '"' {
            chars.next();
            col += 1;
            let mut raw = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\n' {
                    line += 1;
                    col = 0;
                } else {
                    col += 1;
                }
                match c {
                    '\\' => match chars.next_if(|&n| n == '"' || n == '\\') {
                        Some(n) => {
                            col += 1;
                            raw.push(n);
                        }
                        None => raw.push('\\'),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => raw.push(c),
                }
            }
            if !closed {
                return Err(CorefileError::new(
                    &start,
                    "unterminated quoted string: missing the closing '\"'",
                ));
            }
            let (text, _) = substitute(&raw, &start, env);
            out.push(Lexeme {
                tok: Token {
                    text,
                    pos: start,
                    quoted: true,
                },
                kind: Kind::Word,
                line_start,
            });
        } else {
            let mut raw = String::new();
            while let Some(c) = chars.next_if(|&c| !c.is_whitespace() && c != '#') {
                col += 1;
                raw.push(c);
            }
            let kind = match raw.as_str() {
                "{" => Kind::Open,
                "}" => Kind::Close,
                _ => Kind::Word,
            };
            let (text, substituted) = substitute(&raw, &start, env);
            if kind == Kind::Word && substituted {
                for word in text.split_whitespace() {
                    out.push(Lexeme {
                        tok: Token {
                            text: word.to_owned(),
                            pos: start.clone(),
                            quoted: false,
                        },
                        kind: Kind::Word,
                        line_start: line_start && out.len() == before,
                    });
                }
            } else {
                out.push(Lexeme {
                    tok: Token {
                        text,
                        pos: start,
                        quoted: false,
                    },
                    kind,
                    line_start,
                });
            }
        }
        if out.len() > before {
            line_start = false;
        }
    }
    let last_line = text.lines().count().max(1);
    let eof = pos(u32::try_from(last_line).unwrap_or(u32::MAX), 0);
    Ok((out, eof))
}

/// Replaces `{$NAME}` and `{%NAME%}` with the variable's value (empty when unset, with a
/// warning). Returns the text and whether anything was substituted.
fn substitute(raw: &str, pos: &Pos, env: &dyn Fn(&str) -> Option<String>) -> (String, bool) {
    let mut out = String::new();
    let mut rest = raw;
    let mut substituted = false;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let here = &rest[i..];
        let found = if let Some(body) = here.strip_prefix("{$") {
            body.find('}').map(|end| (&body[..end], end + 3))
        } else if let Some(body) = here.strip_prefix("{%") {
            body.find("%}").map(|end| (&body[..end], end + 4))
        } else {
            None
        };
        match found {
            Some((name, len)) if !name.is_empty() => {
                substituted = true;
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => log::warn!(
                        "{pos}: environment variable {name} is not set; substituting an empty value"
                    ),
                }
                rest = &here[len..];
            }
            _ => {
                out.push('{');
                rest = &here[1..];
            }
        }
    }
    out.push_str(rest);
    (out, substituted)
}
