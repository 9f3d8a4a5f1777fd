//! Resolves snippets and `import`: one flat stream of lexemes, as if everything was written inline.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::lexer::{lex, Kind, Lexeme};
use super::{CorefileError, Loader, Pos, Token};

/// Most lexemes a Corefile may expand to (snippets importing snippets grow exponentially).
const MAX_LEXEMES: usize = 1_000_000;

/// Something being imported, to detect cycles.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Snippet(String),
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Snippet(name) => write!(f, "snippet {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

struct Snippet {
    pos: Pos,
    body: Vec<Lexeme>,
}

pub(super) struct Expander<'a> {
    loader: &'a dyn Loader,
    snippets: HashMap<String, Snippet>,
    /// What is being imported, outermost first.
    chain: Vec<Source>,
    /// Brace depth of the output so far: snippets are defined at depth 0 only.
    depth: usize,
    out: Vec<Lexeme>,
}

impl<'a> Expander<'a> {
    pub(super) fn new(loader: &'a dyn Loader) -> Self {
        Expander {
            loader,
            snippets: HashMap::new(),
            chain: Vec::new(),
            depth: 0,
            out: Vec::new(),
        }
    }

    /// The expanded lexemes of the main file and the position of its end.
    pub(super) fn main(
        mut self,
        file: &Arc<str>,
        text: &str,
    ) -> Result<(Vec<Lexeme>, Pos), CorefileError> {
        let (lexemes, eof) = lex(file, text, &|name| self.loader.env(name))?;
        self.chain.push(Source::File(normalize(Path::new(&**file))));
        self.expand(lexemes, &eof)?;
        Ok((self.out, eof))
    }

    fn expand(&mut self, input: Vec<Lexeme>, eof: &Pos) -> Result<(), CorefileError> {
        let mut input = input.into_iter().peekable();
        // The first lexeme of a file or snippet starts a line wherever it is pasted.
        let mut after_brace = true;
        while let Some(lx) = input.next() {
            if self.out.len() >= MAX_LEXEMES {
                return Err(CorefileError::new(
                    &lx.tok.pos,
                    format!("the Corefile expands to more than {MAX_LEXEMES} tokens"),
                ));
            }
            let starts = lx.line_start || after_brace;
            after_brace = lx.kind != Kind::Word;
            match lx.kind {
                Kind::Open => self.depth += 1,
                // An unmatched `}` is reported by the parser.
                Kind::Close => self.depth = self.depth.saturating_sub(1),
                Kind::Word => {}
            }
            let word = starts && lx.kind == Kind::Word && !lx.tok.quoted;
            if word
                && self.depth == 0
                && snippet_name(&lx.tok.text).is_some()
                && input.peek().is_some_and(|n| n.kind == Kind::Open)
            {
                input.next();
                let mut body = Vec::new();
                let mut depth = 1usize;
                loop {
                    let Some(b) = input.next() else {
                        return Err(CorefileError::new(
                            eof,
                            format!("missing '}}' to close the snippet opened at {}", lx.tok.pos),
                        ));
                    };
                    match b.kind {
                        Kind::Open => depth += 1,
                        Kind::Close => depth -= 1,
                        Kind::Word => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    body.push(b);
                }
                self.define(&lx.tok, body)?;
                after_brace = true;
                continue;
            }
            if word && lx.tok.text == "import" {
                let mut args = Vec::new();
                while let Some(arg) = input.next_if(|n| !n.line_start && n.kind == Kind::Word) {
                    args.push(arg.tok);
                }
                if let Some(open) = input.next_if(|n| !n.line_start && n.kind == Kind::Open) {
                    return Err(CorefileError::new(
                        &open.tok.pos,
                        "import takes no block: expected the end of the line",
                    ));
                }
                match args.as_slice() {
                    [] => {
                        return Err(CorefileError::new(
                            &lx.tok.pos,
                            "import needs a snippet name or a file path",
                        ))
                    }
                    [target] => self.import(&lx.tok, target)?,
                    [_, extra, ..] => {
                        return Err(CorefileError::new(
                            &extra.pos,
                            "import takes one snippet name or file path \
                             (arguments to snippets are not supported)",
                        ))
                    }
                }
                continue;
            }
            self.out.push(lx);
        }
        Ok(())
    }

    fn define(&mut self, name: &Token, body: Vec<Lexeme>) -> Result<(), CorefileError> {
        let key = snippet_name(&name.text).unwrap_or_default().to_owned();
        if let Some(old) = self.snippets.get(&key) {
            return Err(CorefileError::new(
                &name.pos,
                format!("snippet {key} is already defined at {}", old.pos),
            ));
        }
        let snippet = Snippet {
            pos: name.pos.clone(),
            body,
        };
        self.snippets.insert(key, snippet);
        Ok(())
    }

    /// Pastes what `import target` names in place of the import line.
    fn import(&mut self, import: &Token, target: &Token) -> Result<(), CorefileError> {
        let name = target.text.as_str();
        if let Some(snippet) = self.snippets.get(name) {
            let body = snippet.body.clone();
            let end = snippet.pos.clone();
            return self.paste(import, Source::Snippet(name.to_owned()), |this| {
                this.expand(body, &end)
            });
        }
        let base = Path::new(&*import.pos.file)
            .parent()
            .unwrap_or(Path::new(""));
        let path = base.join(name);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let glob_in_dir = path
            .parent()
            .is_some_and(|dir| dir.to_string_lossy().contains('*'));
        if glob_in_dir {
            return Err(CorefileError::new(
                &target.pos,
                format!("import {name}: '*' is allowed only in the last path component"),
            ));
        }
        if !file_name.contains('*') {
            return self.import_file(import, name, &path, false);
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        let listing = match self.loader.list_dir(dir) {
            Ok(files) => files,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(CorefileError::new(
                    &import.pos,
                    format!("import {name}: cannot list {}: {e}", dir.display()),
                ))
            }
        };
        let mut matches: Vec<PathBuf> = listing
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| glob_match(&file_name, &n.to_string_lossy()))
            })
            .map(|p| dir.join(p.file_name().unwrap_or_default()))
            .collect();
        matches.sort();
        if matches.is_empty() {
            log::warn!("{}: import {name}: no file matches", import.pos);
        }
        for path in matches {
            self.import_file(import, name, &path, true)?;
        }
        Ok(())
    }

    fn import_file(
        &mut self,
        import: &Token,
        name: &str,
        path: &Path,
        from_glob: bool,
    ) -> Result<(), CorefileError> {
        let source = Source::File(normalize(path));
        self.check_cycle(import, &source)?;
        let text = self.loader.read(path).map_err(|e| {
            let message = if e.kind() == io::ErrorKind::NotFound && !from_glob {
                format!("import {name}: no snippet or file named {name}")
            } else {
                format!("import {name}: cannot read {}: {e}", path.display())
            };
            CorefileError::new(&import.pos, message)
        })?;
        let file: Arc<str> = path.display().to_string().into();
        let (lexemes, eof) = lex(&file, &text, &|n| self.loader.env(n))?;
        self.paste(import, source, |this| this.expand(lexemes, &eof))
    }

    /// Runs `expand` with `source` on the chain; its first lexeme starts a line.
    fn paste(
        &mut self,
        import: &Token,
        source: Source,
        expand: impl FnOnce(&mut Self) -> Result<(), CorefileError>,
    ) -> Result<(), CorefileError> {
        self.check_cycle(import, &source)?;
        let start = self.out.len();
        self.chain.push(source);
        expand(self)?;
        self.chain.pop();
        if let Some(first) = self.out.get_mut(start) {
            first.line_start = true;
        }
        Ok(())
    }
}

impl Expander<'_> {
    /// An error when `source` is already being imported.
    fn check_cycle(&self, import: &Token, source: &Source) -> Result<(), CorefileError> {
        if !self.chain.contains(source) {
            return Ok(());
        }
        let chain: Vec<String> = self
            .chain
            .iter()
            .chain(std::iter::once(source))
            .map(ToString::to_string)
            .collect();
        Err(CorefileError::new(
            &import.pos,
            format!("import cycle: {}", chain.join(" -> ")),
        ))
    }
}

/// `name` for a snippet definition `(name)`.
fn snippet_name(text: &str) -> Option<&str> {
    text.strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .filter(|name| !name.is_empty())
}

/// The path without `.` components and with `..` applied where it can be.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters. A name starting
/// with `.` matches only a pattern that does too (as in a shell).
fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().unwrap_or((&"", &[]));
    let Some(mut left) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for part in middle {
        match left.find(part) {
            Some(i) => left = &left[i + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

#[cfg(test)]
mod glob_tests {
    use super::glob_match;

    #[test]
    fn glob() {
        let cases = [
            ("*", "a.conf", true),
            ("*", ".hidden", false),
            (".*", ".hidden", true),
            ("*.conf", "a.conf", true),
            ("*.conf", "a.conf.bak", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), want, "{pattern} vs {name}");
        }
    }
}
