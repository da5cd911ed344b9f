//! The token scanner under the classifier: statement bytes → tokens, following the MySQL
//! lexer's rules for what is code and what is not
//! (<https://dev.mysql.com/doc/refman/8.4/en/comments.html>,
//! <https://dev.mysql.com/doc/refman/8.4/en/string-literals.html>,
//! <https://mariadb.com/kb/en/comment-syntax/>):
//!
//! * `-- ` comments (the second dash followed by a space or control character, or the end
//!   of the text), `#` comments, `/* … */` comments (not nested);
//! * version comments `/*! … */`, `/*!NNNNN … */` and MariaDB's `/*M! … */`,
//!   `/*M!NNNNNN … */`, whose content is code: the scanner reads their content as tokens
//!   and drops only the markers. Some run on one server and not another: `/*M!` is a
//!   plain comment to MySQL, `/*!NNNNN` runs only from version NNNNN on. Those
//!   ("conditional": `/*M!…`, six digits, or five digits from 80000 on; smaller versions
//!   run on every server Sluice supports) can also be skipped ([`Mode::run_conditional`]),
//!   and their tokens are marked ([`Tok::cond`]);
//! * string literals `'…'` and `"…"` with backslash escapes and doubled quotes,
//!   backtick-quoted identifiers with doubled backticks;
//! * user variables (`@v`, `@'v'`, `` @`v` ``, `@"v"`) and system variables (`@@v`,
//!   `@@session.v`, …) as single tokens.
//!
//! It also reads routing hints (`/* sluice: route=primary */`) out of comments, and writes
//! the cache key of a text ([`normalise`]): the token stream with literals abstracted and
//! words lower-cased, so two texts with the same key are the same statement for the
//! classifier.
//!
//! SQL modes change the lexer: `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES` turn the
//! backslash into an ordinary character inside strings. A text whose token boundaries
//! depend on that (a string with `\'` inside `'…'`, or `\"` inside `"…"`) is flagged
//! [`Flags::ambiguous`]; the classifier then scans it under each mode (see [`Mode`]).
//! Bytes ≥ 0x80 are only ever part of words, strings or identifiers, so any
//! ASCII-compatible character set (UTF-8, latin1, …) scans correctly; multi-byte sets
//! whose trailing bytes can be ASCII (SJIS, GBK, Big5) are not supported.

use crate::route::class::Hint;

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum T {
    /// A keyword or an unquoted identifier (also numbers glued to letters: `1e5x`, `0x1F`).
    Word,
    /// A backtick-quoted identifier.
    Quoted,
    /// A `'…'` string literal.
    Str,
    /// A `"…"` string literal (an identifier under `ANSI_QUOTES`). The classifier treats
    /// it like [`T::Str`] except after `USE` (a string followed by `(` is a stored
    /// function call for both, a syntax error in the default mode).
    DqStr,
    /// A number.
    Num,
    /// A user variable: `@v`, `@'v'`, `@"v"`, `` @`v` ``.
    UserVar,
    /// A system variable: `@@v`, `@@session.v`, `@@global.v`, `` @@`v` ``.
    SysVar,
    /// Any other single byte: `(`, `)`, `,`, `;`, `.`, `=`, `@` (not followed by a name), …
    Punct(u8),
}

/// One token: its kind and byte range in the text. `spaced` is true when whitespace or a
/// comment separates it from the previous token; `cond` when it is inside a conditional
/// version comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub t: T,
    pub spaced: bool,
    pub cond: bool,
    pub start: u32,
    pub end: u32,
}

impl Tok {
    pub fn is_punct(&self, c: u8) -> bool {
        self.t == T::Punct(c)
    }
}

/// How backslashes behave inside string literals (the lexer-relevant part of `sql_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// Backslash escapes inside `'…'`: off under `NO_BACKSLASH_ESCAPES`.
    pub escapes_single: bool,
    /// Backslash escapes inside `"…"`: off under `NO_BACKSLASH_ESCAPES`, and under
    /// `ANSI_QUOTES` (where `"…"` is an identifier).
    pub escapes_double: bool,
    /// Whether conditional version comments are code (a server that runs them) or
    /// comments (one that does not).
    pub run_conditional: bool,
}

impl Mode {
    pub const DEFAULT: Mode = Mode { escapes_single: true, escapes_double: true, run_conditional: true };
    /// The modes a server can be in, as far as string literals are concerned: default,
    /// `NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES` (without `NO_BACKSLASH_ESCAPES`).
    pub const ESCAPES: [Mode; 3] = [
        Mode::DEFAULT,
        Mode { escapes_single: false, escapes_double: false, run_conditional: true },
        Mode { escapes_single: true, escapes_double: false, run_conditional: true },
    ];
}

/// What the scan saw besides tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// The first routing hint.
    pub hint: Option<Hint>,
    /// An unterminated string, identifier or comment: the server refuses the text.
    pub unterminated: bool,
    /// A comment inside a version comment: how servers read that is not pinned down, so
    /// the text is not classified.
    pub bad_version_comment: bool,
    /// A conditional version comment (see the module doc).
    pub conditional_version: bool,
    /// A conditional version comment with quotes or comment markers inside: its tokens
    /// differ between the modes that run and skip it, so the text gets no cache key.
    pub conditional_quoted: bool,
    /// A backslash before the closing quote inside a string: the token boundaries depend
    /// on the SQL mode.
    pub ambiguous: bool,
}

const C_WORD: u8 = 1;
const C_SPACE: u8 = 2;

/// Byte classes: letters, digits, `_`, `$` and bytes ≥ 0x80 make words; space, `\t`,
/// `\n`, `\v`, `\f`, `\r` are whitespace.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            t[b] = C_WORD;
        } else if c == b' ' || (c >= b'\t' && c <= b'\r') {
            t[b] = C_SPACE;
        }
        b += 1;
    }
    t
};

#[inline]
pub(crate) fn is_word_byte(b: u8) -> bool {
    CLASS[b as usize] & C_WORD != 0
}

#[inline]
fn is_space(b: u8) -> bool {
    CLASS[b as usize] & C_SPACE != 0
}

/// The lexer. Iterate with [`Lexer::next_tok`]; [`Lexer::flags`] afterwards.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: Mode,
    in_version: bool,
    in_cond: bool,
    /// The previous token was a word or quoted identifier ending right here (so a `.`
    /// followed by digits is a qualifier dot, not a number).
    prev_ident_end: usize,
    pub flags: Flags,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8], mode: Mode) -> Self {
        Lexer {
            src,
            pos: 0,
            mode,
            in_version: false,
            in_cond: false,
            prev_ident_end: usize::MAX,
            flags: Flags::default(),
        }
    }

    #[inline]
    fn peek(&self, at: usize) -> u8 {
        self.src.get(at).copied().unwrap_or(0)
    }

    /// The next token, or `None` at the end of the text.
    #[inline]
    pub fn next_tok(&mut self) -> Option<Tok> {
        let src = self.src;
        let mut spaced = false;
        loop {
            while self.pos < src.len() && is_space(src[self.pos]) {
                self.pos += 1;
                spaced = true;
            }
            if self.pos >= src.len() {
                if self.in_version {
                    self.flags.unterminated = true;
                    self.in_version = false;
                }
                return None;
            }
            let c = src[self.pos];
            let start = self.pos;
            match c {
                b'#' => {
                    self.line_comment(start + 1);
                    spaced = true;
                    continue;
                }
                b'-' if self.peek(start + 1) == b'-' && {
                    let n = self.peek(start + 2);
                    n <= b' ' || n == 0x7f
                } =>
                {
                    self.line_comment(start + 2);
                    spaced = true;
                    continue;
                }
                b'/' if self.peek(start + 1) == b'*' => {
                    let (version, skip) = match (self.peek(start + 2), self.peek(start + 3)) {
                        (b'!', _) => (true, 3),
                        (b'M', b'!') => (true, 4),
                        _ => (false, 2),
                    };
                    if version {
                        if self.in_version {
                            self.flags.bad_version_comment = true;
                        }
                        let body = start + skip;
                        let digits =
                            src[body.min(src.len())..].iter().take(7).take_while(|b| b.is_ascii_digit()).count();
                        let digits = if digits == 5 || digits == 6 { digits } else { 0 };
                        let version: u32 = std::str::from_utf8(&src[body..body + digits])
                            .ok()
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(0);
                        let conditional = skip == 4 || digits == 6 || (digits == 5 && version >= 80_000);
                        self.pos = body + digits;
                        if conditional {
                            self.flags.conditional_version = true;
                            let end = find_close(src, self.pos);
                            let content = &src[self.pos..end.unwrap_or(src.len())];
                            if content.iter().any(|&b| matches!(b, b'\'' | b'"' | b'`' | b'#'))
                                || memchr::memmem::find(content, b"/*").is_some()
                                || memchr::memmem::find(content, b"--").is_some()
                            {
                                self.flags.conditional_quoted = true;
                            }
                            if !self.mode.run_conditional {
                                // A server that does not run it skips to the first `*/`.
                                match end {
                                    Some(e) => self.pos = e + 2,
                                    None => {
                                        self.flags.unterminated = true;
                                        self.pos = src.len();
                                    }
                                }
                                spaced = true;
                                continue;
                            }
                        }
                        self.in_version = true;
                        self.in_cond = conditional;
                    } else {
                        if self.in_version {
                            self.flags.bad_version_comment = true;
                        }
                        let body = start + 2;
                        match find_close(src, body) {
                            Some(end) => {
                                self.hint_in(body, end);
                                self.pos = end + 2;
                            }
                            None => {
                                self.flags.unterminated = true;
                                self.pos = src.len();
                            }
                        }
                    }
                    spaced = true;
                    continue;
                }
                b'*' if self.in_version && self.peek(start + 1) == b'/' => {
                    self.in_version = false;
                    self.in_cond = false;
                    self.pos = start + 2;
                    spaced = true;
                    continue;
                }
                _ => {}
            }
            let t = match c {
                b'\'' | b'"' => {
                    self.pos = self.string_end(start + 1, c);
                    if c == b'\'' {
                        T::Str
                    } else {
                        T::DqStr
                    }
                }
                b'`' => {
                    self.pos = self.backtick_end(start + 1);
                    T::Quoted
                }
                b'@' => self.variable(start),
                b'0'..=b'9' => self.number(start),
                b'.' if self.peek(start + 1).is_ascii_digit() && self.prev_ident_end != start => self.number(start),
                _ if is_word_byte(c) => {
                    self.pos = word_end(src, start);
                    let word = &src[start..self.pos];
                    let quote = self.peek(self.pos);
                    // Introduced and prefixed literals: _utf8mb4'x', N'x', X'0F', B'01'.
                    if (quote == b'\'' && (word[0] == b'_' || matches!(word, b"n" | b"N" | b"x" | b"X" | b"b" | b"B")))
                        || (quote == b'"' && word[0] == b'_')
                    {
                        self.pos = self.string_end(self.pos + 1, quote);
                        if quote == b'\'' {
                            T::Str
                        } else {
                            T::DqStr
                        }
                    } else {
                        T::Word
                    }
                }
                _ => {
                    self.pos = start + 1;
                    T::Punct(c)
                }
            };
            if matches!(t, T::Word | T::Quoted) {
                self.prev_ident_end = self.pos;
            }
            return Some(Tok { t, spaced, cond: self.in_cond, start: start as u32, end: self.pos as u32 });
        }
    }

    fn line_comment(&mut self, body: usize) {
        if self.in_version {
            self.flags.bad_version_comment = true;
        }
        let end = memchr::memchr(b'\n', &self.src[body.min(self.src.len())..]).map_or(self.src.len(), |p| body + p);
        self.hint_in(body, end);
        self.pos = end;
    }

    fn hint_in(&mut self, from: usize, to: usize) {
        if self.flags.hint.is_none() {
            self.flags.hint = parse_hint(&self.src[from.min(to)..to]);
        }
    }

    /// The end (exclusive) of a string literal whose body starts at `from`.
    fn string_end(&mut self, from: usize, quote: u8) -> usize {
        let escapes = if quote == b'\'' { self.mode.escapes_single } else { self.mode.escapes_double };
        let src = self.src;
        let mut i = from;
        while i < src.len() {
            let rest = &src[i..];
            let found = if escapes { memchr::memchr2(quote, b'\\', rest) } else { memchr::memchr(quote, rest) };
            let Some(off) = found else { break };
            i += off;
            if src[i] == quote {
                if self.peek(i + 1) == quote {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            // A backslash escape.
            if self.peek(i + 1) == quote {
                self.flags.ambiguous = true;
            }
            i += 2;
        }
        self.flags.unterminated = true;
        src.len()
    }

    fn backtick_end(&mut self, from: usize) -> usize {
        let src = self.src;
        let mut i = from;
        while i < src.len() {
            let Some(off) = memchr::memchr(b'`', &src[i..]) else { break };
            i += off;
            if self.peek(i + 1) == b'`' {
                i += 2;
                continue;
            }
            return i + 1;
        }
        self.flags.unterminated = true;
        src.len()
    }

    fn variable(&mut self, start: usize) -> T {
        let src = self.src;
        if self.peek(start + 1) == b'@' {
            // @@[scope.]name, @@`name`
            let mut i = start + 2;
            loop {
                let b = self.peek(i);
                if i < src.len() && (is_word_byte(b) || b == b'.') {
                    i += 1;
                } else if b == b'`' && i < src.len() {
                    i = self.backtick_end(i + 1);
                } else {
                    break;
                }
            }
            if i == start + 2 {
                self.pos = start + 1;
                return T::Punct(b'@');
            }
            self.pos = i;
            return T::SysVar;
        }
        let n = self.peek(start + 1);
        if start + 1 < src.len() && (is_word_byte(n) || n == b'.') {
            let mut i = start + 1;
            while i < src.len() && (is_word_byte(src[i]) || src[i] == b'.') {
                i += 1;
            }
            self.pos = i;
            return T::UserVar;
        }
        match n {
            b'\'' | b'"' => {
                self.pos = self.string_end(start + 2, n);
                T::UserVar
            }
            b'`' => {
                self.pos = self.backtick_end(start + 2);
                T::UserVar
            }
            _ => {
                self.pos = start + 1;
                T::Punct(b'@')
            }
        }
    }

    fn number(&mut self, start: usize) -> T {
        let src = self.src;
        // 0x1F, 0b101
        if src[start] == b'0' && matches!(self.peek(start + 1), b'x' | b'b') {
            let hex = self.peek(start + 1) == b'x';
            let digits = src[start + 2..]
                .iter()
                .take_while(|b| if hex { b.is_ascii_hexdigit() } else { matches!(b, b'0' | b'1') })
                .count();
            let end = start + 2 + digits;
            if digits > 0 && !(end < src.len() && is_word_byte(src[end])) {
                self.pos = end;
                return T::Num;
            }
        }
        let mut i = start;
        while i < src.len() && src[i].is_ascii_digit() {
            i += 1;
        }
        if self.peek(i) == b'.' {
            i += 1;
            while i < src.len() && src[i].is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(self.peek(i), b'e' | b'E') {
            let d = if matches!(self.peek(i + 1), b'+' | b'-') { i + 2 } else { i + 1 };
            if self.peek(d).is_ascii_digit() {
                i = d;
                while i < src.len() && src[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        if i < src.len() && is_word_byte(src[i]) && src[start] != b'.' {
            // `1abc` is an identifier, `0x1F` a hex literal: one word either way.
            self.pos = word_end(src, i);
            return T::Word;
        }
        self.pos = i;
        T::Num
    }
}

fn word_end(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && is_word_byte(src[i]) {
        i += 1;
    }
    i
}

/// The index of the first `*/` at or after `from`.
fn find_close(src: &[u8], from: usize) -> Option<usize> {
    let from = from.min(src.len());
    memchr::memmem::find(&src[from..], b"*/").map(|p| from + p)
}

/// `sluice: route=primary` / `route=replica` (case-insensitive, any whitespace around the
/// parts) as the whole content of a comment.
pub(crate) fn parse_hint(body: &[u8]) -> Option<Hint> {
    let mut s = trim(body);
    for part in [&b"sluice"[..], b":", b"route", b"="] {
        if s.len() < part.len() || !s[..part.len()].eq_ignore_ascii_case(part) {
            return None;
        }
        s = trim(&s[part.len()..]);
    }
    if s.eq_ignore_ascii_case(b"primary") {
        Some(Hint::Primary)
    } else if s.eq_ignore_ascii_case(b"replica") {
        Some(Hint::Replica)
    } else {
        None
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_space(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_space(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Why a text gets no cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoKey {
    /// Its tokens depend on the SQL mode ([`Flags::ambiguous`]) or on whether a
    /// conditional version comment runs ([`Flags::conditional_quoted`]).
    Ambiguous,
    /// A statement starts with `USE`: its effect carries the schema name as written.
    Use,
}

// Tags of the key encoding. A token is one tag byte (plus, for words, quoted identifiers
// and system variables, a length and the lower-cased text); punctuation is its own byte
// (all ≥ 0x21, above every tag). A token inside a conditional version comment is
// prefixed with `K_COND`.
const K_WORD: u8 = 1;
const K_QUOTED: u8 = 2;
const K_STR: u8 = 3;
const K_NUM: u8 = 4;
const K_USERVAR: u8 = 5;
const K_SYSVAR: u8 = 6;
/// `(` with whitespace or a comment before it (a function name followed by a space is
/// resolved differently by the server).
const K_SPACED_PAREN: u8 = 7;
const K_COND: u8 = 8;

/// Writes the cache key of `src` to `out` (cleared first): the tokens with literals
/// replaced by their kind, words, quoted identifiers and system variables lower-cased,
/// comments and whitespace dropped (except whether a `(` follows whitespace), then the
/// hint and the flags. The classifier reads nothing from a text that its key does not
/// hold, so two texts with one key classify identically.
pub(crate) fn normalise(src: &[u8], out: &mut Vec<u8>) -> Result<(), NoKey> {
    out.clear();
    out.reserve(src.len() + src.len() / 2 + 8);
    let mut lx = Lexer::new(src, Mode::DEFAULT);
    let mut part_start = true;
    while let Some(tok) = lx.next_tok() {
        // cannot fail: the lexer's tokens are byte ranges inside `src`.
        let text = &src[tok.start as usize..tok.end as usize];
        if tok.cond {
            out.push(K_COND);
        }
        match tok.t {
            T::Word => {
                if part_start && text.eq_ignore_ascii_case(b"use") {
                    return Err(NoKey::Use);
                }
                put_text(out, K_WORD, text);
            }
            T::Quoted => put_text(out, K_QUOTED, text),
            T::SysVar => put_text(out, K_SYSVAR, text),
            // The classifier reads '…' and "…" alike (see `T::DqStr`), except after USE.
            T::Str | T::DqStr => out.push(K_STR),
            T::Num => out.push(K_NUM),
            T::UserVar => out.push(K_USERVAR),
            T::Punct(b'(') if tok.spaced => out.push(K_SPACED_PAREN),
            T::Punct(c) => out.push(c),
        }
        part_start = tok.is_punct(b';');
    }
    let f = lx.flags;
    if f.ambiguous || f.conditional_quoted {
        return Err(NoKey::Ambiguous);
    }
    out.push(match f.hint {
        None => 0,
        Some(Hint::Primary) => 1,
        Some(Hint::Replica) => 2,
    });
    out.push(f.unterminated as u8 | (f.bad_version_comment as u8) << 1);
    Ok(())
}

#[inline(always)]
fn put_text(out: &mut Vec<u8>, tag: u8, text: &[u8]) {
    out.push(tag);
    let mut n = text.len();
    // Length as a little-endian base-128 varint.
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    for &b in text {
        out.push(b.to_ascii_lowercase());
    }
}

/// The lower-cased name of a system variable token (`@@Session.X` → `x`) and whether it
/// names the global (or persisted) scope. `None` for forms the classifier does not read
/// (a scope without a name, more than one dot).
pub(crate) fn sysvar_name(text: &[u8]) -> Option<(Vec<u8>, bool)> {
    let body = text.strip_prefix(b"@@")?;
    let lower: Vec<u8> = body.iter().map(u8::to_ascii_lowercase).collect();
    let (scope, name) = match lower.iter().position(|&b| b == b'.') {
        Some(dot) => (&lower[..dot], &lower[dot + 1..]),
        None => (&b""[..], &lower[..]),
    };
    let global = match scope {
        b"" | b"session" | b"local" => false,
        b"global" | b"persist" | b"persist_only" => true,
        _ => return None,
    };
    if name.is_empty() || name.contains(&b'.') {
        return None;
    }
    let name = match name {
        [b'`', inner @ .., b'`'] => unquote_backticks(inner),
        _ => name.to_vec(),
    };
    if name.is_empty() {
        return None;
    }
    Some((name, global))
}

/// The name of a backtick-quoted identifier token (`` `a``b` `` → ``a`b``); an
/// unterminated one (only at the end of a text) has no closing backtick.
pub(crate) fn quoted_name(token: &[u8]) -> Vec<u8> {
    let body = token.strip_prefix(b"`").unwrap_or(token);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'`' {
            if body.get(i + 1) != Some(&b'`') {
                break;
            }
            i += 1;
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// The name inside backticks with doubled backticks undone.
pub(crate) fn unquote_backticks(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        out.push(inner[i]);
        i += if inner[i] == b'`' && inner.get(i + 1) == Some(&b'`') { 2 } else { 1 };
    }
    out
}

/// The value of a `'…'` / `"…"` literal (quotes included in `lit`): escapes resolved as
/// the server does by default, doubled quotes undone.
pub(crate) fn unquote_string(lit: &[u8]) -> Vec<u8> {
    let Some((&quote, rest)) = lit.split_first() else {
        return Vec::new();
    };
    let body = rest.strip_suffix(&[quote]).unwrap_or(rest);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\\' && i + 1 < body.len() {
            out.push(match body[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'0' => 0,
                b'b' => 8,
                b'Z' => 26,
                other => other,
            });
            i += 2;
        } else if b == quote && body.get(i + 1) == Some(&quote) {
            out.push(quote);
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// Fast 64-bit hash of a key (word-at-a-time multiply/rotate, then a final mix so the
/// low bits are usable for shard selection).
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rem.len()].copy_from_slice(rem);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    // fmix64 (MurmurHash3's finaliser).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(T, String)> {
        let mut lx = Lexer::new(sql.as_bytes(), Mode::DEFAULT);
        let mut v = Vec::new();
        while let Some(t) = lx.next_tok() {
            v.push((t.t, sql[t.start as usize..t.end as usize].to_string()));
        }
        v
    }

    #[test]
    fn double_dash_needs_a_space_to_start_a_comment() {
        let k = kinds("SELECT 1--1");
        assert_eq!(k.len(), 5, "{k:?}");
        let k = kinds("SELECT 1 -- 2\n, 3");
        assert_eq!(k.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(), ["SELECT", "1", ",", "3"]);
        assert_eq!(kinds("SELECT 1 --").len(), 2);
    }

    #[test]
    fn version_comment_content_is_code_and_markers_are_dropped() {
        let k = kinds("SELECT /*!40001 SQL_NO_CACHE */ a /*M!100100 FOR UPDATE*/");
        let words: Vec<_> = k.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(words, ["SELECT", "SQL_NO_CACHE", "a", "FOR", "UPDATE"]);
    }

    #[test]
    fn conditional_version_comments_are_marked_and_can_be_skipped() {
        let sql = b"SELECT /*!40001 a */ /*!80000 b */ /*M! c */ /*!100100 d */ e";
        let mut lx = Lexer::new(sql, Mode::DEFAULT);
        let mut run = Vec::new();
        while let Some(t) = lx.next_tok() {
            run.push((String::from_utf8_lossy(&sql[t.start as usize..t.end as usize]).to_string(), t.cond));
        }
        assert!(lx.flags.conditional_version && !lx.flags.conditional_quoted);
        let names: Vec<_> = run.iter().map(|(n, c)| format!("{n}{}", if *c { "?" } else { "" })).collect();
        assert_eq!(names, ["SELECT", "a", "b?", "c?", "d?", "e"]);
        let mut lx = Lexer::new(sql, Mode { run_conditional: false, ..Mode::DEFAULT });
        let mut n = 0;
        while lx.next_tok().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        let mut lx = Lexer::new(b"SELECT /*!99999 ' */ @v /* ' */", Mode::DEFAULT);
        while lx.next_tok().is_some() {}
        assert!(lx.flags.conditional_quoted);
    }

    #[test]
    fn backslash_before_quote_is_ambiguous_and_other_escapes_are_not() {
        for (sql, amb) in
            [(r"SELECT 'a\'b'", true), (r"SELECT 'a\nb'", false), (r#"SELECT 'a\"b'"#, false), (r"SELECT 'a\\'", false)]
        {
            let mut lx = Lexer::new(sql.as_bytes(), Mode::DEFAULT);
            while lx.next_tok().is_some() {}
            assert_eq!(lx.flags.ambiguous, amb, "{sql}");
        }
    }

    #[test]
    fn no_backslash_escapes_mode_ends_the_string_at_the_backslash_quote() {
        let sql = br"SELECT 'a\'; DELETE FROM t; -- '";
        let mut lx = Lexer::new(sql, Mode::ESCAPES[1]);
        let mut n = 0;
        while let Some(t) = lx.next_tok() {
            n += t.is_punct(b';') as usize;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn variables_are_single_tokens() {
        let k = kinds("SELECT @a.b, @'x y', @`z`, @@session.sql_mode, @@`x`, @ , 'u'@'h'");
        let ts: Vec<T> = k.iter().map(|x| x.0).collect();
        assert_eq!(
            ts,
            [
                T::Word,
                T::UserVar,
                T::Punct(b','),
                T::UserVar,
                T::Punct(b','),
                T::UserVar,
                T::Punct(b','),
                T::SysVar,
                T::Punct(b','),
                T::SysVar,
                T::Punct(b','),
                T::Punct(b'@'),
                T::Punct(b','),
                T::Str,
                T::UserVar
            ]
        );
    }

    #[test]
    fn hints_are_read_from_comments_only() {
        for (sql, h) in [
            ("SELECT 1 /* sluice: route=primary */", Some(Hint::Primary)),
            ("/*SLUICE:ROUTE = Replica*/ SELECT 1", Some(Hint::Replica)),
            ("SELECT 1 -- sluice: route=replica", Some(Hint::Replica)),
            ("SELECT '/* sluice: route=primary */'", None),
            ("SELECT 1 /* sluice: route=elsewhere */", None),
            ("/* sluice: route=replica */ SELECT /* sluice: route=primary */ 1", Some(Hint::Replica)),
        ] {
            let mut lx = Lexer::new(sql.as_bytes(), Mode::DEFAULT);
            while lx.next_tok().is_some() {}
            assert_eq!(lx.flags.hint, h, "{sql}");
        }
    }

    #[test]
    fn keys_ignore_literals_whitespace_case_and_comments() {
        let key = |s: &str| {
            let mut k = Vec::new();
            normalise(s.as_bytes(), &mut k).unwrap();
            k
        };
        assert_eq!(key("SELECT a FROM t WHERE id = 5"), key("select  A from T /* c */ where ID=  17 -- x"));
        assert_eq!(key("SELECT 'x'"), key("SELECT 'a long string'"));
        assert_eq!(key("SELECT 'x', 1"), key("SELECT _utf8mb4'y', 0x1F"));
        assert_eq!(key("SELECT X'0F', N'x', 0b101, \"s\""), key("SELECT 'a', 'b', 7, 'c'"));
        assert_ne!(key("SELECT 'x'"), key("SELECT 1"));
        assert_ne!(key("SELECT f(1)"), key("SELECT f (1)"));
        assert_ne!(key("SELECT 1"), key("SELECT 1 /* sluice: route=primary */"));
        let mut k = Vec::new();
        assert_eq!(normalise(b"USE db", &mut k), Err(NoKey::Use));
        assert_eq!(normalise(br"SELECT 'a\'b'", &mut k), Err(NoKey::Ambiguous));
    }

    #[test]
    fn sysvar_names_and_scopes() {
        assert_eq!(sysvar_name(b"@@Session.SQL_MODE"), Some((b"sql_mode".to_vec(), false)));
        assert_eq!(sysvar_name(b"@@global.x"), Some((b"x".to_vec(), true)));
        assert_eq!(sysvar_name(b"@@x"), Some((b"x".to_vec(), false)));
        assert_eq!(sysvar_name(b"@@`x`"), Some((b"x".to_vec(), false)));
        assert_eq!(sysvar_name(b"@@global."), None);
        assert_eq!(sysvar_name(b"@@a.b.c"), None);
    }

    #[test]
    fn quoted_names_undo_doubling_and_tolerate_a_missing_close() {
        assert_eq!(quoted_name(b"`a``b`"), b"a`b");
        assert_eq!(quoted_name(b"`a```"), b"a`");
        assert_eq!(quoted_name(b"`"), b"");
        assert_eq!(quoted_name(b"`ab"), b"ab");
    }
}
