//! Statement classification: the text of a COM_QUERY or COM_STMT_PREPARE → a
//! [`Classified`] saying where it may run (a replica, or the primary, and why) and what it
//! does to the session.
//!
//! Three layers, cheapest first:
//!
//! 1. `scan`: a token scanner that knows MySQL's comments (including version comments
//!    `/*! … */`, whose content is code), quoting rules and variables, and reads routing
//!    hints (`/* sluice: route=primary */`).
//! 2. The rules in this module, on the tokens of each statement of a (multi-)statement
//!    text: the leading keyword decides the statement type; a query is a read only if
//!    nothing in it locks, assigns, reads session-bound state, or calls anything but a
//!    known built-in function (`names`). Reference:
//!    <https://dev.mysql.com/doc/refman/8.4/en/sql-statements.html>,
//!    <https://mariadb.com/kb/en/sql-statements/>.
//! 3. `parse`: a full `sqlparser` (MySQL dialect) parse when the scan is unsure (a
//!    leading keyword it does not know, a `WITH` whose main statement it cannot find, a
//!    statement keyword inside a query).
//!
//! Anything not understood is [`Kind::Unknown`], which runs on the primary: the
//! classifier may send a read to the primary, but never a write or a session-bound
//! statement to a replica. [`Classifier`] caches results by normalised text (literals,
//! whitespace, case and comments other than hints do not matter), bounded and sharded
//! (`cache`). The rules are listed in docs/routing.md ("Classification").

mod cache;
mod digest;
mod names;
mod parse;
mod scan;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::class::{Bound, Classified, Effect, Kind};
use cache::Cache;
pub use digest::{digest, MAX_DIGEST_LEN};
use names::{
    lower, node_specific_table, previous_statement_function, session_function, sysvar_class, SysVarClass, BUILTIN_INDEX, PAREN_KEYWORD_INDEX,
};
use parse::Parsed;
use scan::{Flags, Lexer, Mode, NoKey, Tok, T};

/// Texts longer than this are classified without the cache.
pub const MAX_CACHED_LEN: usize = 4096;
/// A statement with more tokens than this is not scanned in full: a data change
/// (`INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `LOAD`) is still a [`Kind::Write`],
/// anything else [`Kind::Unknown`].
pub const MAX_STATEMENT_TOKENS: usize = 65_536;
/// A multi-statement with more statements than this is [`Kind::Unknown`] and
/// [`Effect::Unreplayable`] (its effects are not listed one by one).
pub const MAX_STATEMENTS: u32 = 1024;
/// Nesting of statements inside statements (`EXPLAIN`, `ANALYZE`, `SET STATEMENT … FOR`).
const MAX_DEPTH: u32 = 4;

/// Classifies statement texts, with a bounded cache. One per proxy, shared by all
/// sessions (`Send + Sync`).
pub struct Classifier {
    cache: Option<Cache>,
    hits: AtomicU64,
    misses: AtomicU64,
    parses: AtomicU64,
}

/// Counters of a [`Classifier`] since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifierStats {
    /// Results served from the cache.
    pub hits: u64,
    /// Texts classified (not in the cache, not cacheable, or no cache).
    pub misses: u64,
    /// Of the misses, how many needed the full parser.
    pub parses: u64,
}

impl Classifier {
    /// A classifier caching up to `capacity` results (0: no cache).
    pub fn new(capacity: usize) -> Self {
        Classifier {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            parses: AtomicU64::new(0),
        }
    }

    /// Classifies `sql`; texts that normalise to the same key share one result.
    pub fn classify(&self, sql: &[u8]) -> Arc<Classified> {
        let Some(cache) = self.cache.as_ref().filter(|_| sql.len() <= MAX_CACHED_LEN) else {
            return self.miss(sql);
        };
        let mut key = Vec::with_capacity(sql.len() + 8);
        match scan::normalise(sql, &mut key) {
            Ok(()) => {}
            Err(NoKey::Ambiguous | NoKey::Use) => return self.miss(sql),
        }
        let hash = scan::hash_key(&key);
        if let Some(hit) = cache.get(hash, &key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return hit;
        }
        let result = self.miss(sql);
        cache.insert(hash, key.into_boxed_slice(), result.clone());
        result
    }

    fn miss(&self, sql: &[u8]) -> Arc<Classified> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut c = classify_uncached(sql);
        c.digest = digest_slot(sql);
        if c.parsed {
            self.parses.fetch_add(1, Ordering::Relaxed);
        }
        Arc::new(c)
    }

    pub fn stats(&self) -> ClassifierStats {
        ClassifierStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            parses: self.parses.load(Ordering::Relaxed),
        }
    }

    /// Results held in the cache.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}

/// The digest of `sql` for a [`Classified`].
pub fn digest_slot(sql: &[u8]) -> crate::route::class::DigestSlot {
    let mut text = String::new();
    let hash = digest(sql, &mut text);
    crate::route::class::DigestSlot(Some(Arc::new(crate::route::class::DigestId { hash, text: text.into_boxed_str() })))
}

/// Classifies `sql` without a cache.
pub fn classify_uncached(sql: &[u8]) -> Classified {
    if sql.len() > u32::MAX as usize {
        return Classified::new(Kind::Unknown);
    }
    let first = classify_mode(sql, Mode::DEFAULT);
    if !first.flags.ambiguous && !first.flags.conditional_version {
        return first.result;
    }
    // The tokens depend on the server: on its SQL mode (a `\'` inside a string) or on
    // whether it runs a conditional version comment. Classify under each variant; one in
    // which the text does not scan, or holds no statement, is one in which the server
    // refuses it. If the variants disagree, the one that is not a read wins.
    let escapes: &[Mode] = if first.flags.ambiguous { &Mode::ESCAPES } else { &Mode::ESCAPES[..1] };
    let runs: &[bool] = if first.flags.conditional_version { &[true, false] } else { &[true] };
    let mut valid: Vec<Classified> = Vec::with_capacity(escapes.len() * runs.len());
    let mut parsed = false;
    for &m in escapes {
        for &run_conditional in runs {
            let mode = Mode { run_conditional, ..m };
            let v = if mode == Mode::DEFAULT { first.clone() } else { classify_mode(sql, mode) };
            parsed |= v.result.parsed;
            if !v.empty && !v.flags.unterminated && !v.flags.bad_version_comment {
                valid.push(v.result);
            }
        }
    }
    let same = |a: &Classified, b: &Classified| {
        a.kind == b.kind && a.statements == b.statements && a.effects == b.effects && a.hint == b.hint
    };
    let non_reads: Vec<&Classified> = valid.iter().filter(|c| c.kind != Kind::Read).collect();
    let mut out = match (valid.first(), non_reads.split_first()) {
        (None, _) => Classified { hint: first.result.hint, ..Classified::new(Kind::Unknown) },
        (Some(any), None) => any.clone(),
        (_, Some((one, rest))) if rest.iter().all(|r| same(one, r)) => (*one).clone(),
        _ => Classified {
            kind: Kind::Unknown,
            statements: first.result.statements,
            hint: first.result.hint,
            effects: vec![Effect::Unreplayable],
            parsed,
            digest: Default::default(),
        },
    };
    out.parsed = parsed;
    out
}

/// The verdict on a whole text under one lexer mode.
#[derive(Clone)]
struct ModeResult {
    result: Classified,
    flags: Flags,
    /// No statement at all (empty, or only comments).
    empty: bool,
}

/// One statement's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    kind: Kind,
    effects: Vec<Effect>,
    parsed: bool,
}

impl Part {
    fn of(kind: Kind) -> Part {
        Part { kind, effects: Vec::new(), parsed: false }
    }
    fn with(kind: Kind, effect: Effect) -> Part {
        Part { kind, effects: vec![effect], parsed: false }
    }
    fn bound(b: Bound) -> Part {
        Part::of(Kind::SessionBound(b))
    }
}

/// Classifies the whole text under one lexer mode.
fn classify_mode(sql: &[u8], mode: Mode) -> ModeResult {
    let mut lx = Lexer::new(sql, mode);
    // Statements average well over four bytes a token.
    let mut toks: Vec<Tok> = Vec::with_capacity((sql.len() / 4 + 4).min(MAX_STATEMENT_TOKENS));
    let mut statements: u32 = 0;
    let mut first_non_read: Option<Kind> = None;
    let mut effects: Vec<Effect> = Vec::new();
    let mut parsed = false;
    let mut sluice = false;
    let mut too_many = false;
    let mut eof = false;
    while !eof {
        toks.clear();
        let mut overflow = false;
        let mut compound = false;
        loop {
            let Some(t) = lx.next_tok() else {
                eof = true;
                break;
            };
            if t.is_punct(b';') && !compound {
                if overflow || !starts_compound(sql, &toks) {
                    break;
                }
                compound = true;
            }
            if toks.len() < MAX_STATEMENT_TOKENS {
                toks.push(t);
            } else {
                overflow = true;
            }
        }
        if toks.is_empty() {
            continue;
        }
        statements = statements.saturating_add(1);
        if statements > MAX_STATEMENTS {
            too_many = true;
            continue;
        }
        let part = if compound || starts_compound(sql, &toks) {
            // A compound statement (MariaDB's `BEGIN NOT ATOMIC … END`, `IF … END IF`, …)
            // or a stored program definition: one statement, which may do anything.
            if starts_with_create(sql, &toks) {
                Part::of(Kind::Write)
            } else {
                Part::with(Kind::Unknown, Effect::Unreplayable)
            }
        } else if overflow {
            let s = Stmt { src: sql, toks: &toks };
            let data_change = ["insert", "update", "delete", "replace", "load"].iter().any(|w| s.is(0, w));
            Part::of(if data_change { Kind::Write } else { Kind::Unknown })
        } else {
            classify_part(Stmt { src: sql, toks: &toks }, 0)
        };
        parsed |= part.parsed;
        sluice |= matches!(part.kind, Kind::SluiceSet | Kind::SluiceShow);
        if part.kind != Kind::Read && first_non_read.is_none() {
            first_non_read = Some(part.kind);
        }
        for e in part.effects {
            if effects.last() != Some(&e) {
                effects.push(e);
            }
        }
    }
    let flags = lx.flags;
    let mut out = Classified {
        kind: first_non_read.unwrap_or(Kind::Read),
        statements: statements.max(1),
        hint: flags.hint,
        effects,
        parsed,
        digest: Default::default(),
    };
    let empty = statements == 0;
    if empty || flags.unterminated || flags.bad_version_comment {
        out.kind = Kind::Unknown;
        out.effects.clear();
        return ModeResult { result: out, flags, empty };
    }
    if statements > 1 {
        // A SET or USE among several statements cannot be replayed on its own.
        let mut unreplayable = false;
        out.effects.retain(|e| {
            let session = matches!(e, Effect::ReplaySet | Effect::Use(_) | Effect::Unreplayable);
            let keep = !session || !unreplayable;
            unreplayable |= session;
            keep
        });
        for e in out.effects.iter_mut() {
            if matches!(e, Effect::ReplaySet | Effect::Use(_)) {
                *e = Effect::Unreplayable;
            }
        }
        if sluice {
            // Sluice's own commands only as a statement of their own.
            out.kind = Kind::Unknown;
        }
    }
    if too_many {
        out.kind = Kind::Unknown;
        out.effects.retain(|e| *e != Effect::Unreplayable);
        out.effects.push(Effect::Unreplayable);
    }
    ModeResult { result: out, flags, empty }
}

/// Whether the statement whose tokens (so far) are `toks` runs up to the end of the text
/// rather than to the next `;`: a compound statement, or a stored program definition
/// with a `BEGIN … END` body.
fn starts_compound(src: &[u8], toks: &[Tok]) -> bool {
    let s = Stmt { src, toks };
    if toks.len() >= 2 && s.word(0).is_some() && s.punct(1, b':') {
        return true; // label: BEGIN / LOOP / WHILE …
    }
    if ["if", "while", "loop", "repeat", "case", "for"].iter().any(|w| s.is(0, w)) {
        return true;
    }
    if s.is(0, "begin") && s.is(1, "not") && s.is(2, "atomic") {
        return true;
    }
    if starts_with_create(src, toks) {
        let program = (1..toks.len().min(64))
            .find(|&i| ["procedure", "function", "trigger", "event", "package"].iter().any(|w| s.is(i, w)));
        if let Some(p) = program {
            return (p..toks.len()).any(|i| s.is(i, "begin"));
        }
    }
    false
}

fn starts_with_create(src: &[u8], toks: &[Tok]) -> bool {
    let s = Stmt { src, toks };
    s.is(0, "create") || (s.is(0, "alter") && s.is(1, "event"))
}

/// One statement's tokens.
#[derive(Clone, Copy)]
struct Stmt<'a> {
    src: &'a [u8],
    toks: &'a [Tok],
}

impl<'a> Stmt<'a> {
    fn len(&self) -> usize {
        self.toks.len()
    }
    fn text(&self, i: usize) -> &'a [u8] {
        let t = &self.toks[i];
        &self.src[t.start as usize..t.end as usize]
    }
    /// The text of token `i` if it is a word.
    fn word(&self, i: usize) -> Option<&'a [u8]> {
        match self.toks.get(i) {
            Some(t) if t.t == T::Word => Some(self.text(i)),
            _ => None,
        }
    }
    /// Token `i` is the word `kw` (lower-case), in any case.
    fn is(&self, i: usize, kw: &str) -> bool {
        self.word(i).is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
    }
    fn is_any(&self, i: usize, kws: &[&str]) -> bool {
        self.word(i).is_some_and(|w| kws.iter().any(|k| w.eq_ignore_ascii_case(k.as_bytes())))
    }
    fn punct(&self, i: usize, c: u8) -> bool {
        self.toks.get(i).is_some_and(|t| t.is_punct(c))
    }
    fn kind(&self, i: usize) -> Option<T> {
        self.toks.get(i).map(|t| t.t)
    }
    fn from(&self, i: usize) -> Stmt<'a> {
        Stmt { src: self.src, toks: &self.toks[i.min(self.toks.len())..] }
    }
    fn range(&self, a: usize, b: usize) -> Stmt<'a> {
        Stmt { src: self.src, toks: &self.toks[a..b] }
    }
    /// The index after the `)` matching the `(` at `i`.
    fn skip_parens(&self, i: usize) -> Option<usize> {
        let mut depth = 0usize;
        for j in i..self.len() {
            match self.toks[j].t {
                T::Punct(b'(') => depth += 1,
                T::Punct(b')') => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(j + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }
    /// Parses the statement with the full parser.
    fn parse(&self) -> Parsed {
        match parse::render(self.src, self.toks) {
            Some(text) => parse::parse_one(&text),
            None => Parsed::Failed,
        }
    }
}

/// Classifies one statement.
fn classify_part(s: Stmt, depth: u32) -> Part {
    if depth > MAX_DEPTH {
        return Part::of(Kind::Unknown);
    }
    let mut i = 0;
    while s.punct(i, b'(') {
        i += 1;
    }
    let Some(w) = s.word(i) else {
        return Part::of(Kind::Unknown);
    };
    let mut buf = [0u8; 48];
    let Some(lw) = lower(w, &mut buf) else {
        return unknown_statement(s);
    };
    if i > 0 {
        // `(SELECT …) UNION (SELECT …)`, `((WITH …))`
        return match lw {
            b"select" | b"values" | b"table" => read_path(s, &[]),
            b"with" => with_path(s, i),
            _ => Part::of(Kind::Unknown),
        };
    }
    match lw {
        b"select" | b"values" | b"table" => read_path(s, &[]),
        b"with" => with_path(s, 0),
        b"show" => show(s),
        // `SLUICE SWITCHOVER …`: a Sluice command, answered by Sluice.
        b"sluice" => Part::of(Kind::SluiceShow),
        b"set" => set_stmt(s, depth),
        b"use" => use_stmt(s),
        b"begin" => {
            if s.len() == 1 || (s.len() == 2 && s.is(1, "work")) {
                Part::of(Kind::Begin { read_only: false })
            } else {
                Part::of(Kind::Unknown)
            }
        }
        b"start" => start(s),
        b"commit" | b"rollback" => commit_rollback(s),
        b"savepoint" => name_after(s, 1, Kind::TransactionControl),
        b"release" if s.is(1, "savepoint") => name_after(s, 2, Kind::TransactionControl),
        b"lock" => {
            if s.is_any(1, &["table", "tables"]) {
                Part::with(Kind::SessionBound(Bound::LockTables), Effect::LocksTables)
            } else if s.is(1, "instance") {
                Part::bound(Bound::Other)
            } else {
                Part::of(Kind::Unknown)
            }
        }
        b"unlock" => {
            if s.is_any(1, &["table", "tables"]) && s.len() == 2 {
                Part::with(Kind::SessionBound(Bound::LockTables), Effect::UnlocksTables)
            } else if s.is(1, "instance") {
                Part::bound(Bound::Other)
            } else {
                Part::of(Kind::Unknown)
            }
        }
        b"flush" => flush(s),
        b"create" => {
            let t = if s.is(1, "or") && s.is(2, "replace") { 3 } else { 1 };
            if s.is(t, "temporary") {
                Part::with(Kind::SessionBound(Bound::TemporaryTable), Effect::CreatesTemporaryTable)
            } else {
                Part::of(Kind::Write)
            }
        }
        b"drop" => {
            if s.is(1, "temporary") {
                Part::bound(Bound::TemporaryTable)
            } else if s.is(1, "prepare") {
                Part::bound(Bound::SqlPrepare)
            } else {
                Part::of(Kind::Write)
            }
        }
        b"prepare" | b"execute" => Part::bound(Bound::SqlPrepare),
        b"deallocate" if s.is(1, "prepare") => Part::bound(Bound::SqlPrepare),
        b"call" => Part::bound(Bound::StoredRoutine),
        b"handler" | b"xa" | b"backup" => Part::bound(Bound::Other),
        b"get" => {
            let d = if s.is_any(1, &["current", "stacked"]) { 2 } else { 1 };
            if s.is(d, "diagnostics") {
                Part::of(Kind::Diagnostics)
            } else {
                Part::of(Kind::Unknown)
            }
        }
        b"help" => Part::of(Kind::Read),
        b"explain" | b"describe" | b"desc" => explain(s, depth),
        b"analyze" => analyze(s, depth),
        // Expressions of `DO`, `UPDATE` and `DELETE` may use session-bound state (a user
        // lock, a user variable, a sequence): still primary-bound, but the session must
        // keep the connection that holds it.
        b"update" | b"delete" | b"do" => match features(s, &[]).bound {
            Some(b) => Part::bound(b),
            None => Part::of(Kind::Write),
        },
        b"insert" | b"replace" | b"load" | b"alter" | b"rename" | b"truncate" | b"grant"
        | b"revoke" | b"kill" | b"optimize" | b"repair" | b"check" | b"checksum" | b"install" | b"uninstall"
        | b"change" | b"stop" | b"reset" | b"purge" | b"shutdown" | b"binlog" | b"restart" | b"clone" | b"import"
        | b"cache" => Part::of(Kind::Write),
        _ => unknown_statement(s),
    }
}

/// A statement whose leading keyword the scan does not know: the parser may still
/// recognise a data or schema change; anything else is unknown.
fn unknown_statement(s: Stmt) -> Part {
    let kind = match s.parse() {
        Parsed::Write => Kind::Write,
        _ => Kind::Unknown,
    };
    Part { kind, effects: Vec::new(), parsed: true }
}

/// `kind` if the statement is exactly one more token (a name) after index `at`.
fn name_after(s: Stmt, at: usize, kind: Kind) -> Part {
    if s.len() == at + 1 && matches!(s.kind(at), Some(T::Word | T::Quoted)) {
        Part::of(kind)
    } else {
        Part::of(Kind::Unknown)
    }
}

fn start(s: Stmt) -> Part {
    if s.is_any(1, &["slave", "replica", "group_replication", "all"]) {
        return Part::of(Kind::Write);
    }
    if !s.is(1, "transaction") {
        return Part::of(Kind::Unknown);
    }
    let (mut read_only, mut read_write) = (false, false);
    let mut i = 2;
    while i < s.len() {
        if s.is(i, "with") && s.is(i + 1, "consistent") && s.is(i + 2, "snapshot") {
            i += 3;
        } else if s.is(i, "read") && s.is(i + 1, "only") {
            read_only = true;
            i += 2;
        } else if s.is(i, "read") && s.is(i + 1, "write") {
            read_write = true;
            i += 2;
        } else {
            return Part::of(Kind::Unknown);
        }
        if s.punct(i, b',') && i + 1 < s.len() {
            i += 1;
        } else if i < s.len() {
            return Part::of(Kind::Unknown);
        }
    }
    if read_only && read_write {
        return Part::of(Kind::Unknown);
    }
    Part::of(Kind::Begin { read_only })
}

fn commit_rollback(s: Stmt) -> Part {
    let mut i = 1;
    if s.is(i, "work") {
        i += 1;
    }
    if s.is(0, "rollback") && s.is(i, "to") {
        i += 1;
        if s.is(i, "savepoint") {
            i += 1;
        }
        return name_after(s, i, Kind::TransactionControl);
    }
    if s.is(i, "and") {
        i += 1;
        if s.is(i, "no") {
            i += 1;
        }
        if !s.is(i, "chain") {
            return Part::of(Kind::Unknown);
        }
        i += 1;
    }
    if s.is(i, "no") && s.is(i + 1, "release") {
        i += 2;
    } else if s.is(i, "release") {
        i += 1;
    }
    Part::of(if i == s.len() { Kind::TransactionControl } else { Kind::Unknown })
}

fn flush(s: Stmt) -> Part {
    let mut i = 1;
    if s.is_any(i, &["no_write_to_binlog", "local"]) {
        i += 1;
    }
    if s.is_any(i, &["table", "tables"]) {
        let locks = (i..s.len()).any(|j| {
            (s.is(j, "with") && s.is(j + 1, "read") && s.is(j + 2, "lock")) || (s.is(j, "for") && s.is(j + 1, "export"))
        });
        if locks {
            return Part::with(Kind::SessionBound(Bound::LockTables), Effect::LocksTables);
        }
    }
    Part::of(Kind::Write)
}

fn use_stmt(s: Stmt) -> Part {
    if s.len() != 2 {
        return Part::of(Kind::Unknown);
    }
    let text = s.text(1);
    let db = match s.kind(1) {
        Some(T::Word) => text.to_vec(),
        Some(T::Quoted) => scan::quoted_name(text),
        // A "…" name (ANSI_QUOTES); a backslash in it would depend on the mode.
        Some(T::DqStr) if !text.contains(&b'\\') => scan::unquote_string(text),
        _ => return Part::of(Kind::Unknown),
    };
    if db.is_empty() {
        return Part::of(Kind::Unknown);
    }
    Part::with(Kind::Use, Effect::Use(db))
}

fn is_statement_start(s: Stmt, i: usize) -> bool {
    s.punct(i, b'(') || s.is_any(i, &["select", "with", "values", "table", "insert", "update", "delete", "replace"])
}

/// `EXPLAIN` / `DESCRIBE` / `DESC`.
fn explain(s: Stmt, depth: u32) -> Part {
    let mut i = 1;
    loop {
        // EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not, but the server may
        // evaluate constant subqueries while optimising: both are a read only if the
        // statement is one.
        if s.is_any(i, &["extended", "partitions", "analyze"]) {
            i += 1;
        } else if s.is(i, "format") && s.punct(i + 1, b'=') {
            i += 3;
        } else if s.is(i, "into") {
            // MySQL's EXPLAIN … INTO @var
            return Part::bound(Bound::UserVariable);
        } else {
            break;
        }
    }
    if s.is(i, "for") {
        // EXPLAIN FOR CONNECTION n: another connection on this node.
        return Part::bound(Bound::Other);
    }
    if is_statement_start(s, i) {
        let inner = classify_part(s.from(i), depth + 1);
        return Part { kind: inner.kind, effects: Vec::new(), parsed: inner.parsed };
    }
    // DESCRIBE table [column | 'pattern']
    let name = |j: usize| matches!(s.kind(j), Some(T::Word | T::Quoted));
    if !name(i) {
        return Part::of(Kind::Unknown);
    }
    i += 1;
    if s.punct(i, b'.') && name(i + 1) {
        i += 2;
    }
    if matches!(s.kind(i), Some(T::Word | T::Quoted | T::Str | T::DqStr)) {
        i += 1;
    }
    Part::of(if i == s.len() { Kind::Read } else { Kind::Unknown })
}

/// `ANALYZE TABLE` (a write) or MariaDB's `ANALYZE [FORMAT=…] <statement>`, which runs
/// the statement.
fn analyze(s: Stmt, depth: u32) -> Part {
    let mut i = 1;
    if s.is_any(i, &["no_write_to_binlog", "local"]) {
        i += 1;
    }
    if s.is_any(i, &["table", "tables"]) {
        return Part::of(Kind::Write);
    }
    if s.is(i, "format") && s.punct(i + 1, b'=') {
        i += 3;
    }
    if is_statement_start(s, i) {
        let inner = classify_part(s.from(i), depth + 1);
        return Part { kind: inner.kind, effects: Vec::new(), parsed: inner.parsed };
    }
    Part::of(Kind::Unknown)
}

fn show(s: Stmt) -> Part {
    if s.is(1, "sluice") {
        return Part::of(Kind::SluiceShow);
    }
    if s.is_any(1, &["warnings", "errors"])
        || (s.is(1, "count")
            && s.punct(2, b'(')
            && s.punct(3, b'*')
            && s.punct(4, b')')
            && s.is_any(5, &["warnings", "errors"]))
    {
        return Part::of(Kind::Diagnostics);
    }
    let mut i = 1;
    while s.is_any(i, &["full", "extended", "global", "session", "local"]) {
        i += 1;
    }
    const READS: &[&str] = &[
        "databases",
        "schemas",
        "tables",
        "columns",
        "fields",
        "index",
        "indexes",
        "keys",
        "create",
        "table",
        "variables",
        "character",
        "charset",
        "collation",
        "engines",
        "storage",
        "plugins",
        "privileges",
        "triggers",
        "events",
        "function",
        "procedure",
        "package",
        "authors",
        "contributors",
        "locales",
    ];
    const NODE: &[&str] = &[
        "status",
        "processlist",
        "master",
        "slave",
        "replica",
        "replicas",
        "binlog",
        "binary",
        "relaylog",
        "profile",
        "profiles",
        "engine",
        "open",
        "explain",
        "analyze",
        "grants",
        "all",
        "user_statistics",
        "client_statistics",
        "index_statistics",
        "table_statistics",
        "query_response_time",
    ];
    if s.is_any(i, NODE) {
        return Part::bound(Bound::Other);
    }
    if s.is_any(i, READS) {
        // LIKE / WHERE may still hold an expression.
        let f = features(s.from(i), &[]);
        return Part::of(match f.bound {
            Some(b) => Kind::SessionBound(b),
            None => Kind::Read,
        });
    }
    Part::of(Kind::Unknown)
}

/// What the token scan found in a query.
#[derive(Debug, Default)]
struct Features {
    /// The first session-bound use, in text order.
    bound: Option<Bound>,
    locking: bool,
    into: bool,
    diagnostics: bool,
    /// A statement keyword inside the query: the scan is not sure what this is.
    unsure: bool,
}

impl Features {
    fn bind(&mut self, b: Bound) {
        if self.bound.is_none() {
            self.bound = Some(b);
        }
    }

    fn read_kind(&self) -> Kind {
        if self.into {
            Kind::SessionBound(Bound::SelectInto)
        } else if self.locking {
            Kind::LockingRead
        } else if let Some(b) = self.bound {
            Kind::SessionBound(b)
        } else if self.diagnostics {
            Kind::Diagnostics
        } else {
            Kind::Read
        }
    }
}

/// Scans a query's tokens for locking clauses, `INTO`, variables and function calls.
/// `exempt`: indices of words followed by `(` that are not calls (CTE names with a column
/// list).
fn features(s: Stmt, exempt: &[usize]) -> Features {
    let mut f = Features::default();
    let toks = s.toks;
    for (i, tok) in toks.iter().enumerate() {
        match tok.t {
            T::UserVar | T::Punct(b'@') => f.bind(Bound::UserVariable),
            T::SysVar => match scan::sysvar_name(s.text(i)) {
                Some((name, _)) => match sysvar_class(&name) {
                    SysVarClass::Plain => {}
                    SysVarClass::Bound(b) => f.bind(b),
                    SysVarClass::Diagnostics => f.diagnostics = true,
                },
                None => f.bind(Bound::Other),
            },
            // `f`(…), "f"(…) under ANSI_QUOTES ('f'(…) is refused by the server: no matter).
            T::Quoted | T::DqStr | T::Str if s.punct(i + 1, b'(') => f.bind(Bound::StoredRoutine),
            T::Word => word_feature(s, i, exempt, &mut f),
            _ => {}
        }
        if matches!(tok.t, T::Word | T::Quoted) && s.punct(i + 1, b'.') && !(i > 0 && s.punct(i - 1, b'.')) {
            let (mut sb, mut tb) = ([0u8; 48], [0u8; 48]);
            if let Some(schema) = ident_lower(s, i, &mut sb) {
                if matches!(schema, b"performance_schema" | b"sys" | b"information_schema" | b"mysql") {
                    let table = ident_lower(s, i + 2, &mut tb).unwrap_or(b"");
                    if node_specific_table(schema, table) {
                        f.bind(Bound::Other);
                    }
                }
            }
        }
    }
    f
}

/// The lower-cased name of a word or backtick-quoted identifier token (`None` for other
/// tokens and names longer than the buffer).
fn ident_lower<'b>(s: Stmt, i: usize, buf: &'b mut [u8; 48]) -> Option<&'b [u8]> {
    match s.kind(i)? {
        T::Word => lower(s.text(i), buf),
        T::Quoted => {
            let text = s.text(i);
            if text.len() < 2 || text[1..text.len() - 1].contains(&b'`') {
                return None;
            }
            lower(&text[1..text.len() - 1], buf)
        }
        _ => None,
    }
}

fn word_feature(s: Stmt, i: usize, exempt: &[usize], f: &mut Features) {
    let mut buf = [0u8; 48];
    let next_paren = s.punct(i + 1, b'(');
    let Some(lw) = lower(s.text(i), &mut buf) else {
        if next_paren {
            f.bind(Bound::StoredRoutine);
        }
        return;
    };
    let after_dot = i > 0 && s.punct(i - 1, b'.');
    if lw == b"sql_calc_found_rows" && !after_dot {
        f.bind(Bound::FoundRows);
    }
    if next_paren {
        if after_dot {
            // db.f(…): always a stored function.
            f.bind(Bound::StoredRoutine);
            return;
        }
        if exempt.contains(&i) {
            return;
        }
        if let Some(b) = session_function(lw) {
            f.bind(b);
            return;
        }
        if previous_statement_function(lw) {
            f.diagnostics = true;
            return;
        }
        if PAREN_KEYWORD_INDEX.contains(lw) {
            return;
        }
        let prev = i.checked_sub(1);
        let prev_is = |kw: &str| prev.is_some_and(|p| s.is(p, kw));
        let contextual = match lw {
            // `AS alias (cols)`, `CAST(x AS DATETIME(6))`
            _ if prev_is("as") => true,
            // JSON_TABLE(doc, '$[*]' COLUMNS (…)), NESTED PATH '$.a' COLUMNS (…)
            b"columns" => prev.is_some_and(|p| matches!(s.kind(p), Some(T::Str | T::DqStr))),
            b"of" => prev_is("member"),
            b"against" => prev.is_some_and(|p| s.punct(p, b')')),
            // SELECT SQL_NO_CACHE (subquery) …: a modifier, not a call.
            _ if SELECT_MODIFIERS.iter().any(|m| m.as_bytes() == lw) => {
                prev.is_some_and(|p| s.is(p, "select") || s.is_any(p, SELECT_MODIFIERS))
            }
            // x > ANY (subquery)
            b"any" | b"some" => prev.is_some_and(|p| s.punct(p, b'=') || s.punct(p, b'<') || s.punct(p, b'>')),
            _ => false,
        };
        if contextual {
            return;
        }
        // A built-in name followed by a space may resolve to a stored function.
        if BUILTIN_INDEX.contains(lw) && !s.toks[i + 1].spaced {
            return;
        }
        f.bind(Bound::StoredRoutine);
        return;
    }
    if after_dot {
        // MariaDB: seq.nextval / seq.currval
        if matches!(lw, b"nextval" | b"currval" | b"lastval") {
            f.bind(Bound::Sequence);
        }
        return;
    }
    match lw {
        b"for" if s.is_any(i + 1, &["update", "share"]) => f.locking = true,
        b"lock" if s.is(i + 1, "in") => f.locking = true,
        b"into" => f.into = true,
        b"next" | b"previous" if s.is(i + 1, "value") && s.is(i + 2, "for") => f.bind(Bound::Sequence),
        b"update" if i > 0 && s.is(i - 1, "for") => {}
        b"use" if s.is_any(i + 1, &["index", "key"]) => {}
        b"insert" | b"update" | b"delete" | b"replace" | b"create" | b"drop" | b"alter" | b"rename" | b"grant"
        | b"revoke" | b"load" | b"call" | b"lock" | b"unlock" | b"kill" | b"show" | b"use" => f.unsure = true,
        _ => {}
    }
}

/// Words between `SELECT` and the select list.
const SELECT_MODIFIERS: &[&str] = &[
    "all",
    "distinct",
    "distinctrow",
    "high_priority",
    "straight_join",
    "sql_small_result",
    "sql_big_result",
    "sql_buffer_result",
    "sql_no_cache",
    "sql_cache",
    "sql_calc_found_rows",
];

/// A query: `SELECT`, `VALUES`, `TABLE`, parenthesised, or the main part of a `WITH`.
fn read_path(s: Stmt, exempt: &[usize]) -> Part {
    let f = features(s, exempt);
    if !f.unsure {
        return Part::of(f.read_kind());
    }
    let kind = match s.parse() {
        Parsed::Query => f.read_kind(),
        Parsed::Write => Kind::Write,
        _ => Kind::Unknown,
    };
    Part { kind, effects: Vec::new(), parsed: true }
}

/// `WITH [RECURSIVE] name [(cols)] AS (…) [, …] <main statement>`.
fn with_path(s: Stmt, at: usize) -> Part {
    let mut i = at + 1;
    if s.is(i, "recursive") {
        i += 1;
    }
    let mut exempt = Vec::new();
    let main = loop {
        if !matches!(s.kind(i), Some(T::Word | T::Quoted)) {
            break None;
        }
        if s.punct(i + 1, b'(') {
            exempt.push(i);
            match s.skip_parens(i + 1) {
                Some(j) => i = j,
                None => break None,
            }
        } else {
            i += 1;
        }
        if !s.is(i, "as") || !s.punct(i + 1, b'(') {
            break None;
        }
        match s.skip_parens(i + 1) {
            Some(j) => i = j,
            None => break None,
        }
        if s.punct(i, b',') {
            i += 1;
        } else {
            break Some(i);
        }
    };
    if let Some(mut m) = main {
        while s.punct(m, b'(') {
            m += 1;
        }
        if s.is_any(m, &["select", "values", "table"]) {
            return read_path(s, &exempt);
        }
        if s.is_any(m, &["insert", "update", "delete", "replace"]) {
            return Part::of(Kind::Write);
        }
    }
    let kind = match s.parse() {
        Parsed::Query => features(s, &exempt).read_kind(),
        Parsed::Write => Kind::Write,
        _ => Kind::Unknown,
    };
    Part { kind, effects: Vec::new(), parsed: true }
}

/// `SET …`.
fn set_stmt(s: Stmt, depth: u32) -> Part {
    if s.is(1, "statement") {
        return set_statement(s, depth);
    }
    if s.is_any(1, &["password", "role"]) || (s.is(1, "default") && s.is(2, "role")) {
        return Part::of(Kind::Write);
    }
    let mut has_session = false;
    let mut has_global = false;
    let mut has_sluice = false;
    let mut has_other = false;
    let mut sql_log_bin = false;
    let mut side_effect = false;
    let mut first_bound: Option<Bound> = None;
    let unknown = Part::of(Kind::Unknown);
    let mut i = 1;
    loop {
        let mut scope_global = false;
        if s.is_any(i, &["session", "local"]) {
            i += 1;
        } else if s.is_any(i, &["global", "persist", "persist_only"]) {
            scope_global = true;
            i += 1;
        }
        if s.is(i, "transaction") {
            // SET [scope] TRANSACTION characteristics: the rest of the statement.
            if scope_global {
                has_global = true;
            } else {
                has_session = true;
            }
            has_other = true;
            break;
        }
        let special = if s.is_any(i, &["names", "charset"]) {
            Some(i + 1)
        } else if s.is(i, "character") && s.is(i + 1, "set") {
            Some(i + 2)
        } else {
            None
        };
        let value_from = if let Some(v) = special {
            has_session = true;
            has_other = true;
            v
        } else {
            let name: Vec<u8>;
            let mut global = scope_global;
            match s.kind(i) {
                Some(T::UserVar) => {
                    first_bound.get_or_insert(Bound::UserVariable);
                    has_other = true;
                    i += 1;
                    name = Vec::new();
                }
                Some(T::SysVar) => {
                    let Some((n, g)) = scan::sysvar_name(s.text(i)) else {
                        return unknown;
                    };
                    global |= g;
                    name = n;
                    i += 1;
                }
                Some(T::Word) => {
                    let mut n = s.text(i).to_ascii_lowercase();
                    i += 1;
                    // component.variable
                    while s.punct(i, b'.') && matches!(s.kind(i + 1), Some(T::Word | T::Quoted)) {
                        n.push(b'.');
                        n.extend(s.text(i + 1).to_ascii_lowercase());
                        i += 2;
                    }
                    name = n;
                }
                Some(T::Quoted) => {
                    let t = s.text(i);
                    name = scan::quoted_name(t).to_ascii_lowercase();
                    i += 1;
                }
                _ => return unknown,
            }
            if s.punct(i, b'.') {
                return unknown;
            }
            if !name.is_empty() {
                if name.starts_with(b"sluice_") {
                    has_sluice = true;
                } else if name == b"sql_log_bin" {
                    has_other = true;
                    if global {
                        has_global = true;
                    } else {
                        sql_log_bin = true;
                    }
                } else {
                    has_other = true;
                    if global {
                        has_global = true;
                    } else {
                        has_session = true;
                    }
                }
            }
            if s.punct(i, b'=') {
                i + 1
            } else if s.punct(i, b':') && s.punct(i + 1, b'=') {
                i + 2
            } else {
                return unknown;
            }
        };
        // The value: up to the next top-level comma.
        let mut j = value_from;
        let mut depth_p = 0usize;
        while j < s.len() {
            match s.toks[j].t {
                T::Punct(b'(') => depth_p += 1,
                T::Punct(b')') => depth_p = depth_p.saturating_sub(1),
                T::Punct(b',') if depth_p == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if j == value_from {
            return unknown;
        }
        let f = features(s.range(value_from, j), &[]);
        if f.unsure || f.into || f.locking {
            return unknown;
        }
        if let Some(b) = f.bound {
            first_bound.get_or_insert(b);
            if b != Bound::UserVariable {
                side_effect = true;
            }
        }
        i = j;
        if s.punct(i, b',') {
            i += 1;
            continue;
        }
        break;
    }
    if has_sluice {
        return Part::of(if has_other { Kind::Unknown } else { Kind::SluiceSet });
    }
    if has_global {
        return Part::of(Kind::Write);
    }
    if sql_log_bin {
        return Part::bound(Bound::SqlLogBin);
    }
    let kind = match first_bound {
        Some(b) => Kind::SessionBound(b),
        None if has_session => Kind::SessionSet,
        None => return unknown,
    };
    let mut p = Part::of(kind);
    if has_session {
        // A value computed by a function with effects, or from primary-only state, would
        // come out differently (or do something again) where the text is replayed.
        p.effects.push(if side_effect { Effect::Unreplayable } else { Effect::ReplaySet });
    }
    p
}

/// MariaDB's `SET STATEMENT var = value [, …] FOR <statement>`: the statement decides.
fn set_statement(s: Stmt, depth: u32) -> Part {
    let mut paren = 0usize;
    let mut for_at = None;
    for j in 2..s.len() {
        match s.toks[j].t {
            T::Punct(b'(') => paren += 1,
            T::Punct(b')') => paren = paren.saturating_sub(1),
            T::Word if paren == 0 && s.is(j, "for") => {
                for_at = Some(j);
                break;
            }
            _ => {}
        }
    }
    let Some(f) = for_at else {
        return Part::of(Kind::Unknown);
    };
    let assigned = features(s.range(2, f), &[]);
    if assigned.unsure || assigned.into || assigned.locking {
        return Part::of(Kind::Unknown);
    }
    let inner = classify_part(s.from(f + 1), depth + 1);
    let kind = match inner.kind {
        Kind::SessionSet | Kind::Use | Kind::SluiceSet | Kind::SluiceShow | Kind::Unknown => Kind::Unknown,
        Kind::Read => match assigned.bound {
            Some(b) => Kind::SessionBound(b),
            None => Kind::Read,
        },
        k => k,
    };
    let effects = inner.effects.into_iter().filter(|e| !matches!(e, Effect::ReplaySet | Effect::Use(_))).collect();
    Part { kind, effects, parsed: inner.parsed }
}

/// `SET @@sluice_x = v, …` / `SET sluice_x = v` / `SET SESSION sluice_x = v`: the
/// assignments (lower-cased names without `@@`/`session.`, values unquoted, lower-cased)
/// or a message saying what is wrong (the session answers it as a MySQL error 1064/1231).
pub fn sluice_set(sql: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut lx = Lexer::new(sql, Mode::DEFAULT);
    let mut toks = Vec::new();
    let mut trailing = false;
    while let Some(t) = lx.next_tok() {
        if trailing {
            return Err("Sluice variables must be set in a statement of their own".into());
        }
        if t.is_punct(b';') {
            trailing = true;
            continue;
        }
        if toks.len() >= 4096 {
            return Err("statement too long".into());
        }
        toks.push(t);
    }
    if lx.flags.unterminated || lx.flags.bad_version_comment {
        return Err("syntax error in SET".into());
    }
    let s = Stmt { src: sql, toks: &toks };
    if !s.is(0, "set") {
        return Err("not a SET statement".into());
    }
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).to_lowercase();
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        if s.is_any(i, &["session", "local"]) {
            i += 1;
        } else if s.is_any(i, &["global", "persist", "persist_only"]) {
            return Err("Sluice variables are per session: SET GLOBAL is not supported".into());
        }
        let name = match s.kind(i) {
            Some(T::SysVar) => match scan::sysvar_name(s.text(i)) {
                Some((n, false)) => n,
                Some((_, true)) => return Err("Sluice variables are per session: SET GLOBAL is not supported".into()),
                None => return Err(format!("unknown variable '{}'", lossy(s.text(i)))),
            },
            Some(T::Word) => s.text(i).to_ascii_lowercase(),
            Some(T::Quoted) => {
                let t = s.text(i);
                scan::quoted_name(t).to_ascii_lowercase()
            }
            Some(_) => return Err(format!("syntax error near '{}'", lossy(s.text(i)))),
            None => return Err("syntax error: SET without a variable".into()),
        };
        let name = lossy(&name);
        if !name.starts_with("sluice_") {
            return Err(format!("'{name}' cannot be set together with Sluice variables"));
        }
        i += 1;
        if s.punct(i, b'=') {
            i += 1;
        } else if s.punct(i, b':') && s.punct(i + 1, b'=') {
            i += 2;
        } else {
            return Err(format!("syntax error: expected '=' after '{name}'"));
        }
        let value = match s.kind(i) {
            Some(T::Str | T::DqStr) => lossy(&scan::unquote_string(s.text(i))),
            Some(T::Word | T::Num) => lossy(s.text(i)),
            Some(T::Punct(b'-')) if s.kind(i + 1) == Some(T::Num) => {
                i += 1;
                format!("-{}", lossy(s.text(i)))
            }
            _ => return Err(format!("missing or invalid value for '{name}'")),
        };
        i += 1;
        out.push((name, value));
        if s.punct(i, b',') {
            i += 1;
            continue;
        }
        if i == s.len() {
            return Ok(out);
        }
        return Err(format!("syntax error near '{}'", lossy(s.text(i))));
    }
}

/// `SHOW SLUICE ROUTE FOR <statement>`: the byte offset where `<statement>` starts.
pub fn show_sluice_route_for(sql: &[u8]) -> Option<usize> {
    let mut lx = Lexer::new(sql, Mode::DEFAULT);
    let mut end = 0;
    for kw in ["show", "sluice", "route", "for"] {
        let t = lx.next_tok()?;
        if t.t != T::Word || !sql[t.start as usize..t.end as usize].eq_ignore_ascii_case(kw.as_bytes()) {
            return None;
        }
        end = t.end as usize;
    }
    // Something must follow; it starts right after FOR (and its whitespace), so comments
    // (hints) before the statement stay with it.
    lx.next_tok()?;
    let skip = sql[end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    Some(end + skip)
}
