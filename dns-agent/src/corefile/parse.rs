//! Builds server blocks and directives from the expanded lexemes.

use std::collections::HashMap;

use super::keys::parse_key;
use super::lexer::{Kind, Lexeme};
use super::{Corefile, CorefileError, Directive, Pos, ServerBlock, ServerKey};

const EXPECTED_OPEN: &str = "expected '{' after the server keys";

/// The Corefile in `lexemes`; `eof` is the end of the main file.
pub(super) fn parse(lexemes: Vec<Lexeme>, eof: &Pos) -> Result<Corefile, CorefileError> {
    let mut parser = Parser {
        items: lexemes,
        at: 0,
        eof,
    };
    let mut blocks: Vec<ServerBlock> = Vec::new();
    // (zone, port) -> the block serving it.
    let mut served: HashMap<(String, Option<u16>), Pos> = HashMap::new();
    while let Some(lx) = parser.peek() {
        match lx.kind {
            Kind::Close => return Err(CorefileError::new(&lx.tok.pos, "unexpected '}'")),
            Kind::Open => {
                return Err(CorefileError::new(
                    &lx.tok.pos,
                    "expected server keys before '{'",
                ))
            }
            Kind::Word => {}
        }
        let block = parser.server_block()?;
        for key in &block.keys {
            for zone in &key.zones {
                if let Some(first) = served.get(&(zone.clone(), key.port)) {
                    let port = match key.port {
                        Some(p) => format!("port {p}"),
                        None => "the default port".to_owned(),
                    };
                    return Err(CorefileError::new(
                        &key.pos,
                        format!("zone {zone} on {port} is already served by the block at {first}"),
                    ));
                }
                served.insert((zone.clone(), key.port), block.pos.clone());
            }
        }
        blocks.push(block);
    }
    if blocks.is_empty() {
        let start = Pos {
            line: 1,
            col: 1,
            ..eof.clone()
        };
        return Err(CorefileError::new(
            &start,
            "empty Corefile: no server block",
        ));
    }
    Ok(Corefile { blocks })
}

struct Parser<'a> {
    items: Vec<Lexeme>,
    at: usize,
    eof: &'a Pos,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Lexeme> {
        self.items.get(self.at)
    }

    /// The next lexeme; callers have peeked it.
    fn take(&mut self) -> Lexeme {
        let lx = self.items[self.at].clone();
        self.at += 1;
        lx
    }

    fn at_eof(&self, message: impl Into<String>) -> CorefileError {
        CorefileError::new(self.eof, message)
    }

    /// `keys... {` then the block; the next lexeme is a word.
    fn server_block(&mut self) -> Result<ServerBlock, CorefileError> {
        let mut keys: Vec<ServerKey> = Vec::new();
        let pos = self.take_keys(&mut keys)?;
        let directives = self.block_body(&pos)?;
        Ok(ServerBlock {
            keys,
            directives,
            pos,
        })
    }

    /// Reads the keys up to and including the `{`; returns the first key's position.
    fn take_keys(&mut self, keys: &mut Vec<ServerKey>) -> Result<Pos, CorefileError> {
        let mut first: Option<Pos> = None;
        loop {
            let tok = self.take().tok;
            first.get_or_insert_with(|| tok.pos.clone());
            // `a,b`, `a, b` and `a ,b` all name two keys.
            let mut offset = u32::from(tok.quoted);
            for piece in tok.text.split(',') {
                if !piece.is_empty() {
                    let pos = Pos {
                        col: tok.pos.col + offset,
                        ..tok.pos.clone()
                    };
                    keys.push(parse_key(piece, &pos)?);
                }
                offset += u32::try_from(piece.chars().count()).unwrap_or(0) + 1;
            }
            let another = tok.text.ends_with(',');
            let Some(next) = self.peek() else {
                return Err(self.at_eof(EXPECTED_OPEN));
            };
            match next.kind {
                Kind::Open if another => {
                    return Err(CorefileError::new(
                        &next.tok.pos,
                        "expected another server key after ','",
                    ))
                }
                Kind::Open if keys.is_empty() => {
                    return Err(CorefileError::new(
                        &next.tok.pos,
                        "expected server keys before '{'",
                    ))
                }
                Kind::Open => {
                    self.at += 1;
                    return Ok(first.unwrap_or(tok.pos));
                }
                Kind::Close => return Err(CorefileError::new(&next.tok.pos, EXPECTED_OPEN)),
                Kind::Word if next.line_start && !another => {
                    return Err(CorefileError::new(&next.tok.pos, EXPECTED_OPEN))
                }
                Kind::Word => {}
            }
        }
    }

    /// Directives up to and including the `}` closing the block opened by what is at `opened_at`.
    fn block_body(&mut self, opened_at: &Pos) -> Result<Vec<Directive>, CorefileError> {
        let mut directives = Vec::new();
        loop {
            let Some(lx) = self.peek() else {
                return Err(self.at_eof(format!(
                    "missing '}}' to close the block opened at {opened_at}"
                )));
            };
            match lx.kind {
                Kind::Close => {
                    self.at += 1;
                    return Ok(directives);
                }
                Kind::Open => {
                    return Err(CorefileError::new(
                        &lx.tok.pos,
                        "'{' must be on the same line as the directive whose block it opens",
                    ))
                }
                Kind::Word => directives.push(self.directive()?),
            }
        }
    }

    /// `name args... [{ ... }]`; the next lexeme is a word.
    fn directive(&mut self) -> Result<Directive, CorefileError> {
        let name = self.take().tok;
        let mut args = Vec::new();
        while self
            .peek()
            .is_some_and(|n| !n.line_start && n.kind == Kind::Word)
        {
            args.push(self.take().tok);
        }
        let block = match self.peek() {
            Some(n) if !n.line_start && n.kind == Kind::Open => {
                self.at += 1;
                Some(self.block_body(&name.pos)?)
            }
            _ => None,
        };
        Ok(Directive {
            pos: name.pos.clone(),
            name,
            args,
            block,
        })
    }
}
