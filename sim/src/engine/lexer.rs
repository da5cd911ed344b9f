//! Hand-written SQL tokenizer.
//!
//! Owns [`Lexer`], which turns query text into [`Token`]s lazily (so that in
//! a multi-statement query a lexical error in a later statement does not
//! prevent earlier ones from running, like the real servers). Handles
//! backtick identifiers, `'…'` / `"…"` strings with backslash escapes,
//! numbers, hex literals, `@user` and `@@[session.|global.]system` variables,
//! `--`/`#`/`/* */` comments and executable comments `/*! … */`,
//! `/*M! … */` (their content is tokenized as normal SQL).

/// A token kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Unquoted word (identifier or keyword).
    Word(String),
    /// `` `quoted` `` identifier.
    QuotedIdent(String),
    /// String literal (already unescaped).
    Str(Vec<u8>),
    /// Unsigned integer literal.
    Int(u64),
    /// Decimal / float literal (text as written).
    Num(String),
    /// Hex literal `0x..` / `X'..'`.
    Hex(Vec<u8>),
    /// `@name`.
    UserVar(String),
    /// `@@name`, `@@session.name`, … (raw text after `@@`).
    SysVar(String),
    /// Punctuation / operator.
    Sym(&'static str),
    Eof,
}

/// A token with its byte span in the query text.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// Case-insensitive keyword test.
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    pub fn is_sym(&self, s: &str) -> bool {
        matches!(&self.tok, Tok::Sym(x) if *x == s)
    }
}

/// A lexical error at a byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub pos: usize,
}

/// Lazy tokenizer over one query string.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    in_exec_comment: bool,
}

const SYMS: &[&str] = &[
    "<=>", "<<", ">>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "=", "<", ">", "(", ")", ",", ";",
    ".", "+", "-", "*", "/", "%", "!", "~", "^", "&", "|", "?",
];

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, start: usize) -> Lexer<'a> {
        Lexer {
            src: src.as_bytes(),
            pos: start,
            in_exec_comment: false,
        }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek_byte(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    /// Skip whitespace and comments. Errors on an unterminated comment.
    fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            let Some(c) = self.peek_byte(0) else {
                return Ok(());
            };
            if c.is_ascii_whitespace() {
                self.pos += 1;
            } else if c == b'#'
                || (c == b'-'
                    && self.peek_byte(1) == Some(b'-')
                    && self
                        .peek_byte(2)
                        .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
            {
                while let Some(c) = self.peek_byte(0) {
                    self.pos += 1;
                    if c == b'\n' {
                        break;
                    }
                }
            } else if c == b'/' && self.peek_byte(1) == Some(b'*') {
                let start = self.pos;
                // executable comment?
                let exec_bang = self.peek_byte(2) == Some(b'!');
                let exec_m = self.peek_byte(2) == Some(b'M') && self.peek_byte(3) == Some(b'!');
                if (exec_bang || exec_m) && !self.in_exec_comment {
                    self.pos += if exec_m { 4 } else { 3 };
                    let mut n = 0;
                    while n < 6 && self.peek_byte(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                        n += 1;
                    }
                    self.in_exec_comment = true;
                    continue;
                }
                self.pos += 2;
                loop {
                    match self.peek_byte(0) {
                        None => return Err(LexError { pos: start }),
                        Some(b'*') if self.peek_byte(1) == Some(b'/') => {
                            self.pos += 2;
                            break;
                        }
                        _ => self.pos += 1,
                    }
                }
            } else if c == b'*' && self.in_exec_comment && self.peek_byte(1) == Some(b'/') {
                self.pos += 2;
                self.in_exec_comment = false;
            } else {
                return Ok(());
            }
        }
    }

    /// Next token (`Tok::Eof` at the end).
    pub fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek_byte(0) else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let tok = match c {
            b'\'' | b'"' => Tok::Str(self.string(c)?),
            b'`' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek_byte(0) {
                        None => return Err(LexError { pos: start }),
                        Some(b'`') if self.peek_byte(1) == Some(b'`') => {
                            out.push(b'`');
                            self.pos += 2;
                        }
                        Some(b'`') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Tok::QuotedIdent(String::from_utf8_lossy(&out).into_owned())
            }
            b'@' => {
                if self.peek_byte(1) == Some(b'@') {
                    self.pos += 2;
                    let s = self.pos;
                    while self
                        .peek_byte(0)
                        .is_some_and(|c| is_ident_byte(c) || c == b'.')
                    {
                        self.pos += 1;
                    }
                    if self.pos == s {
                        return Err(LexError { pos: start });
                    }
                    Tok::SysVar(String::from_utf8_lossy(&self.src[s..self.pos]).into_owned())
                } else {
                    self.pos += 1;
                    match self.peek_byte(0) {
                        Some(q @ (b'\'' | b'"')) => {
                            let s = self.string(q)?;
                            Tok::UserVar(String::from_utf8_lossy(&s).into_owned())
                        }
                        Some(b'`') => {
                            let t = self.next_token()?;
                            match t.tok {
                                Tok::QuotedIdent(s) => Tok::UserVar(s),
                                _ => return Err(LexError { pos: start }),
                            }
                        }
                        _ => {
                            let s = self.pos;
                            while self
                                .peek_byte(0)
                                .is_some_and(|c| is_ident_byte(c) || c == b'.')
                            {
                                self.pos += 1;
                            }
                            Tok::UserVar(
                                String::from_utf8_lossy(&self.src[s..self.pos]).into_owned(),
                            )
                        }
                    }
                }
            }
            b'0' if matches!(self.peek_byte(1), Some(b'x' | b'X'))
                && self.peek_byte(2).is_some_and(|c| c.is_ascii_hexdigit()) =>
            {
                self.pos += 2;
                let s = self.pos;
                while self.peek_byte(0).is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                Tok::Hex(decode_hex(&self.src[s..self.pos]))
            }
            b'x' | b'X' if self.peek_byte(1) == Some(b'\'') => {
                self.pos += 2;
                let s = self.pos;
                while self.peek_byte(0).is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                if self.peek_byte(0) != Some(b'\'') || !(self.pos - s).is_multiple_of(2) {
                    return Err(LexError { pos: start });
                }
                let h = decode_hex(&self.src[s..self.pos]);
                self.pos += 1;
                Tok::Hex(h)
            }
            c if c.is_ascii_digit()
                || (c == b'.' && self.peek_byte(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number()
            }
            c if is_ident_byte(c) => {
                let s = self.pos;
                while self.peek_byte(0).is_some_and(is_ident_byte) {
                    self.pos += 1;
                }
                Tok::Word(String::from_utf8_lossy(&self.src[s..self.pos]).into_owned())
            }
            _ => {
                let rest = &self.src[self.pos..];
                let Some(sym) = SYMS.iter().find(|s| rest.starts_with(s.as_bytes())) else {
                    return Err(LexError { pos: start });
                };
                self.pos += sym.len();
                Tok::Sym(sym)
            }
        };
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    fn number(&mut self) -> Tok {
        let s = self.pos;
        while self.peek_byte(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let mut is_float = false;
        if self.peek_byte(0) == Some(b'.') {
            is_float = true;
            self.pos += 1;
            while self.peek_byte(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek_byte(0), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.peek_byte(0).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                while self.peek_byte(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            } else {
                self.pos = save;
            }
        }
        let text = String::from_utf8_lossy(&self.src[s..self.pos]).into_owned();
        if !is_float {
            if let Ok(v) = text.parse::<u64>() {
                return Tok::Int(v);
            }
        }
        Tok::Num(text)
    }

    fn string(&mut self, q: u8) -> Result<Vec<u8>, LexError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek_byte(0) else {
                return Err(LexError { pos: start });
            };
            if c == q {
                if self.peek_byte(1) == Some(q) {
                    out.push(q);
                    self.pos += 2;
                    continue;
                }
                self.pos += 1;
                return Ok(out);
            }
            if c == b'\\' {
                let Some(n) = self.peek_byte(1) else {
                    return Err(LexError { pos: start });
                };
                self.pos += 2;
                match n {
                    b'0' => out.push(0),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'Z' => out.push(26),
                    b'%' | b'_' => {
                        out.push(b'\\');
                        out.push(n);
                    }
                    other => out.push(other),
                }
                continue;
            }
            out.push(c);
            self.pos += 1;
        }
    }
}

fn decode_hex(h: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = h
        .iter()
        .map(|c| (*c as char).to_digit(16).unwrap() as u8)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    if digits.len() % 2 == 1 {
        out.push(digits[0]);
        i = 1;
    }
    while i + 1 < digits.len() + 1 && i < digits.len() {
        out.push(digits[i] * 16 + digits[i + 1]);
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let mut l = Lexer::new(s, 0);
        let mut v = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            if t.tok == Tok::Eof {
                return v;
            }
            v.push(t.tok);
        }
    }

    #[test]
    fn tokenizes_variables_strings_and_operators() {
        assert_eq!(
            toks("SELECT @@session.autocommit, @x:='a''b\\n' <=> 1.5e3"),
            vec![
                Tok::Word("SELECT".into()),
                Tok::SysVar("session.autocommit".into()),
                Tok::Sym(","),
                Tok::UserVar("x".into()),
                Tok::Sym(":="),
                Tok::Str(b"a'b\n".to_vec()),
                Tok::Sym("<=>"),
                Tok::Num("1.5e3".into()),
            ]
        );
    }

    #[test]
    fn comments_are_skipped_and_executable_comments_are_code() {
        assert_eq!(
            toks("/* hi */ SELECT -- c\n 1 # x\n /*!40101 , 2 */"),
            vec![
                Tok::Word("SELECT".into()),
                Tok::Int(1),
                Tok::Sym(","),
                Tok::Int(2)
            ]
        );
    }

    #[test]
    fn unterminated_string_is_a_lex_error_at_the_quote() {
        let mut l = Lexer::new("SELECT 'abc", 0);
        l.next_token().unwrap();
        assert_eq!(l.next_token(), Err(LexError { pos: 7 }));
    }

    #[test]
    fn hex_and_backtick_identifiers() {
        assert_eq!(
            toks("0x4142 X'43' `a``b`"),
            vec![
                Tok::Hex(b"AB".to_vec()),
                Tok::Hex(b"C".to_vec()),
                Tok::QuotedIdent("a`b".into())
            ]
        );
    }
}
