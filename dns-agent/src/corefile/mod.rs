//! The Corefile language (CoreDNS's Caddyfile dialect): text in, a tree of server blocks out.
//!
//! The only I/O is reading imported files and environment variables, both behind [`Loader`] so
//! tests can inject them. What the directives mean is decided elsewhere (by the plugins).
//!
//! Choices where the language is loose:
//! - `{` and `}` are structural only as whole, unquoted words; `{` opens a block when it follows
//!   a directive (or the server keys) on the same line, so `health { lameduck 5s }` on one line
//!   works; a `{` at the start of a line inside a block is an error. The `{` of a server block
//!   may be on the line after its keys.
//! - `{$NAME}` and `{%NAME%}` are substituted in every token. In an unquoted token the result
//!   is split on whitespace into several tokens (an empty result yields no token); a quoted
//!   token stays one token.
//! - `import` is recognised where a directive (or a server key, at top level) starts. A name
//!   that is a snippet wins over a file of that name. Snippets must be defined before use.
//! - A port left out (`None`) and an explicit port are different ports for the duplicate check:
//!   the default port is the caller's choice.

mod expand;
mod keys;
mod lexer;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a token came from: 1-based line and column (in characters).
///
/// Column 0 means the end of the file (`line` is then its last line); line 0 means the file
/// as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    /// True for the position that stands for the end of a file.
    pub fn is_end_of_file(&self) -> bool {
        self.line > 0 && self.col == 0
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}", self.file),
            (line, 0) => write!(f, "{}:{line}:0 (end of file)", self.file),
            (line, col) => write!(f, "{}:{line}:{col}", self.file),
        }
    }
}

/// One word of the Corefile, after quotes, escapes and environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub pos: Pos,
    /// Written in `"..."`: may hold spaces, never a brace of the structure.
    pub quoted: bool,
}

/// A parsed Corefile: its server blocks in order, snippets and imports resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corefile {
    pub blocks: Vec<ServerBlock>,
}

/// `keys... { directives }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBlock {
    pub keys: Vec<ServerKey>,
    pub directives: Vec<Directive>,
    /// The first key.
    pub pos: Pos,
}

impl ServerBlock {
    /// The directives of this block with that name, in order.
    pub fn directives_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Directive> {
        self.directives.iter().filter(move |d| d.name.text == name)
    }
}

/// The protocol a server block answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain DNS over UDP and TCP (`dns://` or no scheme).
    Dns,
}

/// One server key such as `.:53`, `example.org` or `10.0.0.0/24`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerKey {
    pub transport: Transport,
    /// Lower-case, fully qualified (trailing dot, `.` for the root). A network gives its
    /// reverse zones.
    pub zones: Vec<String>,
    /// `None`: the default port, chosen by the caller.
    pub port: Option<u16>,
    pub pos: Pos,
}

/// `name args... [{ directives }]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    /// The `{ ... }` block, when one was given (possibly empty).
    pub block: Option<Vec<Directive>>,
    /// The name's position.
    pub pos: Pos,
}

impl Directive {
    /// The arguments' texts.
    pub fn arg_texts(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }

    /// The directives of the block, empty when there is no block.
    pub fn block_directives(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// A Corefile that cannot be used: where, and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct CorefileError {
    pub pos: Pos,
    pub message: String,
}

impl CorefileError {
    pub(crate) fn new(pos: &Pos, message: impl Into<String>) -> Self {
        CorefileError {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}

/// What the parser reads besides the Corefile text: environment variables and imported files.
pub trait Loader {
    /// The value of an environment variable, `None` when unset.
    fn env(&self, name: &str) -> Option<String>;
    /// The text of a file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The regular files (symbolic links followed) directly in a directory, in any order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The process environment and the real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLoader;

impl Loader for SystemLoader {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        list_regular_files(dir)
    }
}

fn list_regular_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // `metadata` follows symbolic links, as a ConfigMap volume's files are.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    Ok(files)
}

/// Injected environment and file reader; directories are listed from the real file system.
struct FnLoader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    fs: &'a dyn Fn(&Path) -> io::Result<String>,
}

impl Loader for FnLoader<'_> {
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        (self.fs)(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        list_regular_files(dir)
    }
}

/// Parses a Corefile named `file` (used in positions; imports are relative to its directory),
/// reading imported files and environment variables from the system.
pub fn parse(file: &str, text: &str) -> Result<Corefile, CorefileError> {
    parse_with_loader(file, text, &SystemLoader)
}

/// Reads and parses the Corefile at `path`.
pub fn parse_file(path: &Path) -> Result<Corefile, CorefileError> {
    let name = path.display().to_string();
    let text = SystemLoader.read(path).map_err(|e| {
        let pos = Pos {
            file: name.as_str().into(),
            line: 0,
            col: 0,
        };
        CorefileError::new(&pos, format!("cannot read the Corefile: {e}"))
    })?;
    parse(&name, &text)
}

/// [`parse`] with an injected environment and file reader (glob imports list the real
/// directory; use [`parse_with_loader`] to inject that too).
pub fn parse_with(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    fs: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Corefile, CorefileError> {
    parse_with_loader(file, text, &FnLoader { env, fs })
}

/// [`parse`] with everything it reads coming from `loader`.
pub fn parse_with_loader(
    file: &str,
    text: &str,
    loader: &dyn Loader,
) -> Result<Corefile, CorefileError> {
    let file: Arc<str> = file.into();
    let (lexemes, eof) = expand::Expander::new(loader).main(&file, text)?;
    parse::parse(lexemes, &eof)
}

/// A Go-style duration (`300ms`, `1.5s`, `1h30m`, `0`): numbers with units ns, us (µs), ms, s,
/// m, h. Negative durations and numbers without a unit (other than 0) are rejected.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The ```corefile examples of a README, in order: what the tests of each plugin (and the
/// config tests, for every plugin) run.
#[cfg(test)]
pub fn readme_examples(readme: &str) -> Vec<&str> {
    readme
        .split("```corefile\n")
        .skip(1)
        .map(|rest| {
            let end = rest.find("```").expect("a closing ``` fence");
            &rest[..end]
        })
        .collect()
}
