//! Recursive-descent parser for the engine's SQL subset.
//!
//! Owns [`parse_next`], which parses *one* statement starting at a byte
//! offset of a (possibly multi-statement) query, so the executor can run
//! statements one at a time and stop at the first error — including a syntax
//! error in a later statement — exactly like the servers do. Errors carry the
//! byte offset of the offending token so the executor can build the server's
//! `near '…' at line N` message; constructs that are valid SQL but outside
//! the supported subset are reported as "unsupported" (→ error 1235).

use std::collections::VecDeque;

use super::ast::*;
use super::lexer::{Lexer, Tok, Token};
use super::storage::ColType;
use super::value::Value;

/// Why parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFail {
    /// Byte offset of the offending token (query length at end of input).
    pub pos: usize,
    /// Byte offset where the statement started (for the line number).
    pub stmt_start: usize,
    /// Set when the syntax is recognised but not supported by the engine.
    pub unsupported: Option<String>,
}

/// Result of [`parse_next`].
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A statement spanning `start..end`; the next one starts at `next`.
    Stmt {
        stmt: Statement,
        start: usize,
        end: usize,
        next: usize,
    },
    /// No more statements.
    End,
    /// Nothing but whitespace / comments where a statement was required.
    Empty,
    Error(ParseFail),
}

/// Parse the statement starting at byte `offset` of `sql`. `first` tells
/// whether this is the first statement of the query (an empty first
/// statement is an error, trailing emptiness is not).
pub fn parse_next(sql: &str, offset: usize, first: bool) -> Parsed {
    let mut p = Parser::new(sql, offset);
    // skip leading empty statements `;`
    match p.peek() {
        Err(e) => return Parsed::Error(e),
        Ok(t) if t.tok == Tok::Eof => return if first { Parsed::Empty } else { Parsed::End },
        Ok(_) => {}
    }
    let start = p.peek().map(|t| t.start).unwrap_or(offset);
    p.stmt_start = start;
    match p.statement() {
        Err(e) => Parsed::Error(e),
        Ok(stmt) => {
            let end = p.last_end.max(start);
            match p.next() {
                Err(e) => Parsed::Error(e),
                Ok(t) if t.tok == Tok::Eof => Parsed::Stmt {
                    stmt,
                    start,
                    end,
                    next: t.end,
                },
                Ok(t) if t.is_sym(";") => Parsed::Stmt {
                    stmt,
                    start,
                    end,
                    next: t.end,
                },
                Ok(t) => Parsed::Error(ParseFail {
                    pos: t.start,
                    stmt_start: start,
                    unsupported: None,
                }),
            }
        }
    }
}

const RESERVED: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CHANGE",
    "COLUMN",
    "CREATE",
    "CROSS",
    "DATABASE",
    "DATABASES",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DIV",
    "DROP",
    "ELSE",
    "EXISTS",
    "FALSE",
    "FOR",
    "FOREIGN",
    "FROM",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "KILL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "MOD",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PRIMARY",
    "REFERENCES",
    "REPLACE",
    "RIGHT",
    "SELECT",
    "SET",
    "SHOW",
    "TABLE",
    "THEN",
    "TO",
    "TRUE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "XOR",
];

fn is_reserved(w: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

type PResult<T> = Result<T, ParseFail>;

struct Parser<'a> {
    sql: &'a str,
    lex: Lexer<'a>,
    buf: VecDeque<Token>,
    stmt_start: usize,
    last_end: usize,
}

impl<'a> Parser<'a> {
    fn new(sql: &'a str, offset: usize) -> Parser<'a> {
        Parser {
            sql,
            lex: Lexer::new(sql, offset),
            buf: VecDeque::new(),
            stmt_start: offset,
            last_end: offset,
        }
    }

    fn fail_at(&self, pos: usize) -> ParseFail {
        ParseFail {
            pos,
            stmt_start: self.stmt_start,
            unsupported: None,
        }
    }

    fn fill(&mut self, n: usize) -> PResult<()> {
        while self.buf.len() <= n {
            let t = self.lex.next_token().map_err(|e| self.fail_at(e.pos))?;
            self.buf.push_back(t);
        }
        Ok(())
    }

    fn peek(&mut self) -> PResult<&Token> {
        self.fill(0)?;
        Ok(&self.buf[0])
    }

    fn peek_n(&mut self, n: usize) -> PResult<&Token> {
        self.fill(n)?;
        Ok(&self.buf[n])
    }

    fn next(&mut self) -> PResult<Token> {
        self.fill(0)?;
        let t = self.buf.pop_front().unwrap();
        if t.tok != Tok::Eof {
            self.last_end = t.end;
        }
        Ok(t)
    }

    /// Error at the current token.
    fn err<T>(&mut self) -> PResult<T> {
        let pos = self.peek()?.start;
        Err(self.fail_at(pos))
    }

    fn unsupported<T>(&mut self, what: &str) -> PResult<T> {
        let pos = self.peek().map(|t| t.start).unwrap_or(self.stmt_start);
        Err(ParseFail {
            pos,
            stmt_start: self.stmt_start,
            unsupported: Some(what.to_string()),
        })
    }

    fn is_kw(&mut self, kw: &str) -> PResult<bool> {
        Ok(self.peek()?.is_kw(kw))
    }

    fn accept_kw(&mut self, kw: &str) -> PResult<bool> {
        if self.peek()?.is_kw(kw) {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.accept_kw(kw)? {
            Ok(())
        } else {
            self.err()
        }
    }

    fn accept_sym(&mut self, s: &str) -> PResult<bool> {
        if self.peek()?.is_sym(s) {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.accept_sym(s)? {
            Ok(())
        } else {
            self.err()
        }
    }

    fn at_end(&mut self) -> PResult<bool> {
        let t = self.peek()?;
        Ok(t.tok == Tok::Eof || t.is_sym(";"))
    }

    /// Skip tokens up to the end of the statement.
    fn skip_rest(&mut self) -> PResult<()> {
        while !self.at_end()? {
            self.next()?;
        }
        Ok(())
    }

    /// An identifier (unreserved word or backtick-quoted).
    fn ident(&mut self) -> PResult<String> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Word(w) if !is_reserved(&w) => {
                self.next()?;
                Ok(w)
            }
            Tok::QuotedIdent(q) => {
                self.next()?;
                Ok(q)
            }
            _ => self.err(),
        }
    }

    /// An identifier or a string literal (for names like `'utf8mb4'`).
    fn ident_or_string(&mut self) -> PResult<String> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Str(s) => {
                self.next()?;
                Ok(String::from_utf8_lossy(&s).into_owned())
            }
            Tok::Word(w) => {
                self.next()?;
                Ok(w)
            }
            _ => self.ident(),
        }
    }

    fn string_lit(&mut self) -> PResult<String> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Str(s) => {
                self.next()?;
                Ok(String::from_utf8_lossy(&s).into_owned())
            }
            _ => self.err(),
        }
    }

    fn uint(&mut self) -> PResult<u64> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Int(v) => {
                self.next()?;
                Ok(v)
            }
            _ => self.err(),
        }
    }

    fn table_name(&mut self) -> PResult<TableName> {
        let first = self.ident()?;
        if self.peek()?.is_sym(".") {
            self.next()?;
            let second = self.ident()?;
            Ok(TableName {
                db: Some(first),
                name: second,
            })
        } else {
            Ok(TableName {
                db: None,
                name: first,
            })
        }
    }

    fn like_clause(&mut self) -> PResult<Option<String>> {
        if self.accept_kw("LIKE")? {
            Ok(Some(self.string_lit()?))
        } else if self.is_kw("WHERE")? {
            self.unsupported("SHOW ... WHERE")
        } else {
            Ok(None)
        }
    }

    // ------------------------------------------------------------------
    // statements
    // ------------------------------------------------------------------

    fn statement(&mut self) -> PResult<Statement> {
        let t = self.peek()?.clone();
        let Tok::Word(w) = &t.tok else {
            if t.is_sym("(") {
                return self.unsupported("parenthesized query");
            }
            return self.err();
        };
        match w.to_ascii_uppercase().as_str() {
            "SELECT" => Ok(Statement::Select(self.select()?)),
            "INSERT" | "REPLACE" => Ok(Statement::Insert(self.insert()?)),
            "UPDATE" => Ok(Statement::Update(self.update()?)),
            "DELETE" => Ok(Statement::Delete(self.delete()?)),
            "CREATE" => self.create(),
            "DROP" => self.drop(),
            "TRUNCATE" => {
                self.next()?;
                self.accept_kw("TABLE")?;
                Ok(Statement::Truncate(self.table_name()?))
            }
            "USE" => {
                self.next()?;
                Ok(Statement::Use(self.ident()?))
            }
            "BEGIN" => {
                self.next()?;
                self.accept_kw("WORK")?;
                Ok(Statement::Begin { read_only: None })
            }
            "START" => self.start(),
            "COMMIT" => {
                self.next()?;
                self.accept_kw("WORK")?;
                self.chain_release()?;
                Ok(Statement::Commit)
            }
            "ROLLBACK" => {
                self.next()?;
                self.accept_kw("WORK")?;
                if self.accept_kw("TO")? {
                    self.accept_kw("SAVEPOINT")?;
                    let name = self.ident()?;
                    return Ok(Statement::Rollback {
                        to_savepoint: Some(name),
                    });
                }
                self.chain_release()?;
                Ok(Statement::Rollback { to_savepoint: None })
            }
            "SAVEPOINT" => {
                self.next()?;
                Ok(Statement::Savepoint(self.ident()?))
            }
            "RELEASE" => {
                self.next()?;
                self.expect_kw("SAVEPOINT")?;
                Ok(Statement::ReleaseSavepoint(self.ident()?))
            }
            "SET" => self.set(),
            "SHOW" => self.show(),
            "CHANGE" => self.change_master(),
            "STOP" => {
                self.next()?;
                if !(self.accept_kw("SLAVE")? || self.accept_kw("REPLICA")?) {
                    return self.err();
                }
                Ok(Statement::StopSlave(self.slave_threads()?))
            }
            "RESET" => {
                self.next()?;
                if self.accept_kw("SLAVE")? || self.accept_kw("REPLICA")? {
                    let all = self.accept_kw("ALL")?;
                    return Ok(Statement::ResetSlave { all });
                }
                if self.accept_kw("MASTER")? {
                    return Ok(Statement::ResetMaster);
                }
                if self.accept_kw("BINARY")? {
                    self.expect_kw("LOGS")?;
                    self.expect_kw("AND")?;
                    self.expect_kw("GTIDS")?;
                    return Ok(Statement::ResetMaster);
                }
                self.err()
            }
            "KILL" => {
                self.next()?;
                let _ = self.accept_kw("HARD")? || self.accept_kw("SOFT")?;
                let mut query_only = false;
                if self.accept_kw("QUERY")? {
                    query_only = true;
                    if self.is_kw("ID")? {
                        return self.unsupported("KILL QUERY ID");
                    }
                } else {
                    self.accept_kw("CONNECTION")?;
                }
                let id = self.expr()?;
                Ok(Statement::Kill { query_only, id })
            }
            "DO" => {
                self.next()?;
                let mut v = vec![self.expr()?];
                while self.accept_sym(",")? {
                    v.push(self.expr()?);
                }
                Ok(Statement::Do(v))
            }
            "FLUSH" | "ANALYZE" | "OPTIMIZE" => {
                self.next()?;
                self.skip_rest()?;
                Ok(Statement::NoOp)
            }
            "ALTER" | "LOCK" | "UNLOCK" | "XA" | "CALL" | "PREPARE" | "EXECUTE" | "DEALLOCATE"
            | "GRANT" | "REVOKE" | "LOAD" | "HANDLER" | "EXPLAIN" | "DESCRIBE" | "DESC"
            | "WITH" | "RENAME" => {
                let what = w.to_ascii_uppercase();
                self.unsupported(&what)
            }
            _ => self.err(),
        }
    }

    fn chain_release(&mut self) -> PResult<()> {
        if self.accept_kw("AND")? {
            self.accept_kw("NO")?;
            self.expect_kw("CHAIN")?;
        }
        if self.accept_kw("NO")? {
            self.expect_kw("RELEASE")?;
        } else {
            self.accept_kw("RELEASE")?;
        }
        Ok(())
    }

    fn start(&mut self) -> PResult<Statement> {
        self.next()?; // START
        if self.accept_kw("TRANSACTION")? {
            let mut read_only = None;
            if !self.at_end()? {
                loop {
                    if self.accept_kw("READ")? {
                        if self.accept_kw("ONLY")? {
                            read_only = Some(true);
                        } else {
                            self.expect_kw("WRITE")?;
                            read_only = Some(false);
                        }
                    } else if self.accept_kw("WITH")? {
                        self.expect_kw("CONSISTENT")?;
                        self.expect_kw("SNAPSHOT")?;
                    } else {
                        return self.err();
                    }
                    if !self.accept_sym(",")? {
                        break;
                    }
                }
            }
            return Ok(Statement::Begin { read_only });
        }
        if self.accept_kw("SLAVE")? || self.accept_kw("REPLICA")? {
            let th = self.slave_threads()?;
            if self.is_kw("UNTIL")? {
                return self.unsupported("START SLAVE UNTIL");
            }
            return Ok(Statement::StartSlave(th));
        }
        self.err()
    }

    fn slave_threads(&mut self) -> PResult<SlaveThreads> {
        let mut io = false;
        let mut sql = false;
        loop {
            if self.accept_kw("IO_THREAD")? {
                io = true;
            } else if self.accept_kw("SQL_THREAD")? {
                sql = true;
            } else {
                break;
            }
            if !self.accept_sym(",")? {
                break;
            }
        }
        if !io && !sql {
            io = true;
            sql = true;
        }
        if self.is_kw("FOR")? {
            // FOR CHANNEL '' (MySQL): only the default channel exists
            self.next()?;
            self.expect_kw("CHANNEL")?;
            let ch = self.string_lit()?;
            if !ch.is_empty() {
                return self.unsupported("replication channels");
            }
        }
        Ok(SlaveThreads { io, sql })
    }

    fn change_master(&mut self) -> PResult<Statement> {
        self.next()?; // CHANGE
        if self.accept_kw("MASTER")? {
            if let Tok::Str(_) = self.peek()?.tok {
                let name = self.string_lit()?;
                if !name.is_empty() {
                    return self.unsupported("multi-source replication");
                }
            }
        } else if self.accept_kw("REPLICATION")? {
            if !self.accept_kw("SOURCE")? {
                return self.unsupported("CHANGE REPLICATION FILTER");
            }
        } else {
            return self.err();
        }
        self.expect_kw("TO")?;
        let mut opts = Vec::new();
        loop {
            let t = self.next()?;
            let Tok::Word(name) = t.tok else {
                return Err(self.fail_at(t.start));
            };
            self.expect_sym("=")?;
            let vt = self.next()?;
            let v = match vt.tok {
                Tok::Str(s) => Value::Bytes(s),
                Tok::Int(i) => Value::UInt(i),
                Tok::Num(n) => Value::Double(n.parse().unwrap_or(0.0)),
                Tok::Word(w) => Value::str(w),
                _ => return Err(self.fail_at(vt.start)),
            };
            opts.push((name.to_ascii_uppercase(), v));
            if !self.accept_sym(",")? {
                break;
            }
        }
        if self.is_kw("FOR")? {
            self.next()?;
            self.expect_kw("CHANNEL")?;
            self.string_lit()?;
        }
        Ok(Statement::ChangeMaster(opts))
    }

    fn show(&mut self) -> PResult<Statement> {
        self.next()?; // SHOW
        let mut global = false;
        if self.accept_kw("GLOBAL")? {
            global = true;
        } else {
            let _ = self.accept_kw("SESSION")? || self.accept_kw("LOCAL")?;
        }
        let full = self.accept_kw("FULL")?;
        let t = self.next()?;
        let Tok::Word(w) = &t.tok else {
            return Err(self.fail_at(t.start));
        };
        let s = match w.to_ascii_uppercase().as_str() {
            "VARIABLES" => ShowStmt::Variables {
                global,
                like: self.like_clause()?,
            },
            "STATUS" => ShowStmt::Status {
                global,
                like: self.like_clause()?,
            },
            "DATABASES" | "SCHEMAS" => ShowStmt::Databases {
                like: self.like_clause()?,
            },
            "TABLES" => {
                let db = if self.accept_kw("FROM")? || self.accept_kw("IN")? {
                    Some(self.ident()?)
                } else {
                    None
                };
                ShowStmt::Tables {
                    db,
                    like: self.like_clause()?,
                }
            }
            "SLAVE" | "REPLICA" => {
                let replica_words = w.eq_ignore_ascii_case("REPLICA");
                if self.accept_kw("HOSTS")? {
                    return self.unsupported("SHOW SLAVE HOSTS");
                }
                if let Tok::Str(_) = self.peek()?.tok {
                    let name = self.string_lit()?;
                    if !name.is_empty() {
                        return self.unsupported("multi-source replication");
                    }
                }
                self.expect_kw("STATUS")?;
                if self.accept_kw("FOR")? {
                    self.expect_kw("CHANNEL")?;
                    self.string_lit()?;
                }
                ShowStmt::ReplicaStatus {
                    all: false,
                    replica_words,
                }
            }
            "REPLICAS" => return self.unsupported("SHOW REPLICAS"),
            "ALL" => {
                if !(self.accept_kw("SLAVES")? || self.accept_kw("REPLICAS")?) {
                    return self.err();
                }
                self.expect_kw("STATUS")?;
                ShowStmt::ReplicaStatus {
                    all: true,
                    replica_words: false,
                }
            }
            "MASTER" => {
                self.expect_kw("STATUS")?;
                ShowStmt::MasterStatus
            }
            "BINLOG" => {
                self.expect_kw("STATUS")?;
                ShowStmt::MasterStatus
            }
            "BINARY" => {
                if self.accept_kw("LOG")? {
                    self.expect_kw("STATUS")?;
                    ShowStmt::MasterStatus
                } else {
                    return self.unsupported("SHOW BINARY LOGS");
                }
            }
            "WARNINGS" => {
                self.skip_rest()?;
                ShowStmt::Warnings
            }
            "ERRORS" => {
                self.skip_rest()?;
                ShowStmt::Errors
            }
            "PROCESSLIST" => ShowStmt::ProcessList,
            "CREATE" => {
                self.expect_kw("TABLE")?;
                ShowStmt::CreateTable(self.table_name()?)
            }
            _ => {
                let _ = full;
                return Err(ParseFail {
                    pos: t.start,
                    stmt_start: self.stmt_start,
                    unsupported: Some(format!("SHOW {w}")),
                });
            }
        };
        Ok(Statement::Show(s))
    }

    fn set(&mut self) -> PResult<Statement> {
        self.next()?; // SET
        let mut items = Vec::new();
        loop {
            items.push(self.set_item()?);
            if !self.accept_sym(",")? {
                break;
            }
        }
        Ok(Statement::Set(items))
    }

    fn set_item(&mut self) -> PResult<SetItem> {
        let t = self.peek()?.clone();
        match &t.tok {
            Tok::UserVar(name) => {
                self.next()?;
                if !(self.accept_sym("=")? || self.accept_sym(":=")?) {
                    return self.err();
                }
                let value = self.expr()?;
                return Ok(SetItem::UserVar {
                    name: name.clone(),
                    value,
                });
            }
            Tok::SysVar(raw) => {
                self.next()?;
                let (scope, name) = split_sysvar(raw);
                if !(self.accept_sym("=")? || self.accept_sym(":=")?) {
                    return self.err();
                }
                let value = self.set_value()?;
                return Ok(SetItem::SysVar { scope, name, value });
            }
            _ => {}
        }
        let mut scope = None;
        if self.accept_kw("GLOBAL")? {
            scope = Some(VarScope::Global);
        } else if self.accept_kw("SESSION")? || self.accept_kw("LOCAL")? {
            scope = Some(VarScope::Session);
        }
        if self.is_kw("TRANSACTION")? && !self.peek_n(1)?.is_sym("=") {
            self.next()?;
            let mut isolation = None;
            let mut read_only = None;
            loop {
                if self.accept_kw("ISOLATION")? {
                    self.expect_kw("LEVEL")?;
                    let lvl = if self.accept_kw("READ")? {
                        if self.accept_kw("UNCOMMITTED")? {
                            "READ-UNCOMMITTED"
                        } else {
                            self.expect_kw("COMMITTED")?;
                            "READ-COMMITTED"
                        }
                    } else if self.accept_kw("REPEATABLE")? {
                        self.expect_kw("READ")?;
                        "REPEATABLE-READ"
                    } else {
                        self.expect_kw("SERIALIZABLE")?;
                        "SERIALIZABLE"
                    };
                    isolation = Some(lvl.to_string());
                } else if self.accept_kw("READ")? {
                    if self.accept_kw("ONLY")? {
                        read_only = Some(true);
                    } else {
                        self.expect_kw("WRITE")?;
                        read_only = Some(false);
                    }
                } else {
                    return self.err();
                }
                if !(self.peek()?.is_sym(",")
                    && (self.peek_n(1)?.is_kw("ISOLATION") || self.peek_n(1)?.is_kw("READ")))
                {
                    break;
                }
                self.next()?;
            }
            return Ok(SetItem::Transaction {
                scope,
                isolation,
                read_only,
            });
        }
        if scope.is_none()
            && (self.is_kw("NAMES")?
                || self.is_kw("CHARSET")?
                || (self.is_kw("CHARACTER")? && self.peek_n(1)?.is_kw("SET")))
        {
            let names = self.accept_kw("NAMES")?;
            if !names && !self.accept_kw("CHARSET")? {
                self.expect_kw("CHARACTER")?;
                self.expect_kw("SET")?;
            }
            let charset = if self.accept_kw("DEFAULT")? {
                "utf8mb4".to_string()
            } else {
                self.ident_or_string()?
            };
            let collation = if self.accept_kw("COLLATE")? {
                Some(self.ident_or_string()?)
            } else {
                None
            };
            return Ok(SetItem::Names { charset, collation });
        }
        if self.is_kw("PASSWORD")? {
            return self.unsupported("SET PASSWORD");
        }
        // [scope] name = value ; also @@scope.name after GLOBAL is an error in servers, keep simple
        let t = self.next()?;
        let name = match t.tok {
            Tok::Word(w) => w,
            Tok::QuotedIdent(q) => q,
            Tok::SysVar(raw) => split_sysvar(&raw).1,
            _ => return Err(self.fail_at(t.start)),
        };
        let mut name = name.to_ascii_lowercase();
        // `SET GLOBAL rpl_semi_sync_master.enabled` style dotted names are not a thing; but
        // MySQL accepts `SET @@session.x`; handled above.
        if self.peek()?.is_sym(".") {
            self.next()?;
            let rest = self.ident()?;
            name = format!("{name}.{}", rest.to_ascii_lowercase());
        }
        if !(self.accept_sym("=")? || self.accept_sym(":=")?) {
            return self.err();
        }
        let value = self.set_value()?;
        Ok(SetItem::SysVar {
            scope: scope.unwrap_or(VarScope::Default),
            name,
            value,
        })
    }

    /// The right-hand side of a system-variable assignment: bare words such
    /// as `ON`, `OFF`, `OWN_GTID` are kept as words (Expr::Column) and
    /// `DEFAULT` as [`Expr::Default`].
    fn set_value(&mut self) -> PResult<Expr> {
        let t = self.peek()?.clone();
        if let Tok::Word(w) = &t.tok {
            let after = self.peek_n(1)?.clone();
            if after.tok == Tok::Eof || after.is_sym(",") || after.is_sym(";") {
                self.next()?;
                if w.eq_ignore_ascii_case("DEFAULT") {
                    return Ok(Expr::Default);
                }
                return Ok(Expr::Column {
                    table: None,
                    name: w.clone(),
                });
            }
        }
        self.expr()
    }

    fn create(&mut self) -> PResult<Statement> {
        self.next()?; // CREATE
        if self.accept_kw("OR")? {
            return self.unsupported("CREATE OR REPLACE");
        }
        let temporary = self.accept_kw("TEMPORARY")?;
        if self.accept_kw("DATABASE")? || (!temporary && self.accept_kw("SCHEMA")?) {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            self.skip_rest()?; // CHARACTER SET etc.
            return Ok(Statement::CreateDatabase {
                name,
                if_not_exists,
            });
        }
        if !self.accept_kw("TABLE")? {
            if temporary {
                return self.err();
            }
            let t = self.peek()?.clone();
            let what = match &t.tok {
                Tok::Word(w) => format!("CREATE {}", w.to_ascii_uppercase()),
                _ => return self.err(),
            };
            return self.unsupported(&what);
        }
        let if_not_exists = self.if_not_exists()?;
        let table = self.table_name()?;
        if self.is_kw("LIKE")? || self.is_kw("AS")? || self.is_kw("SELECT")? {
            return self.unsupported("CREATE TABLE ... LIKE/SELECT");
        }
        self.expect_sym("(")?;
        let mut columns = Vec::new();
        let mut primary_key: Option<Vec<String>> = None;
        loop {
            if self.is_kw("PRIMARY")? || (self.is_kw("CONSTRAINT")?) {
                if self.accept_kw("CONSTRAINT")?
                    && !(self.is_kw("PRIMARY")?
                        || self.is_kw("UNIQUE")?
                        || self.is_kw("FOREIGN")?
                        || self.is_kw("CHECK")?)
                {
                    self.ident()?;
                }
                if self.is_kw("PRIMARY")? {
                    let pk_pos = self.peek()?.start;
                    self.next()?;
                    self.expect_kw("KEY")?;
                    if !self.peek()?.is_sym("(") {
                        self.ident()?;
                    }
                    let cols = self.key_columns()?;
                    if primary_key.is_some() {
                        return Err(ParseFail {
                            pos: pk_pos,
                            stmt_start: self.stmt_start,
                            unsupported: Some("__MULTIPLE_PK".into()),
                        });
                    }
                    primary_key = Some(cols);
                    self.skip_key_options()?;
                } else {
                    self.skip_definition()?;
                }
            } else if self.is_kw("UNIQUE")?
                || self.is_kw("KEY")?
                || self.is_kw("INDEX")?
                || self.is_kw("FOREIGN")?
                || self.is_kw("FULLTEXT")?
                || self.is_kw("SPATIAL")?
                || self.is_kw("CHECK")?
            {
                self.skip_definition()?;
            } else {
                let spec = self.column_spec()?;
                columns.push(spec);
            }
            if !self.accept_sym(",")? {
                break;
            }
        }
        self.expect_sym(")")?;
        // table options
        self.skip_rest()?;
        Ok(Statement::CreateTable(CreateTable {
            table,
            temporary,
            if_not_exists,
            columns,
            primary_key,
        }))
    }

    fn key_columns(&mut self) -> PResult<Vec<String>> {
        self.expect_sym("(")?;
        let mut cols = Vec::new();
        loop {
            cols.push(self.ident()?);
            if self.accept_sym("(")? {
                self.uint()?;
                self.expect_sym(")")?;
            }
            let _ = self.accept_kw("ASC")? || self.accept_kw("DESC")?;
            if !self.accept_sym(",")? {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(cols)
    }

    fn skip_key_options(&mut self) -> PResult<()> {
        while !(self.peek()?.is_sym(",") || self.peek()?.is_sym(")") || self.at_end()?) {
            self.next()?;
        }
        Ok(())
    }

    /// Skip one table-level definition up to the next top-level `,` or `)`.
    fn skip_definition(&mut self) -> PResult<()> {
        let mut depth = 0usize;
        loop {
            let t = self.peek()?.clone();
            if t.tok == Tok::Eof || t.is_sym(";") {
                return self.err();
            }
            if depth == 0 && (t.is_sym(",") || t.is_sym(")")) {
                return Ok(());
            }
            if t.is_sym("(") {
                depth += 1;
            } else if t.is_sym(")") {
                depth -= 1;
            }
            self.next()?;
        }
    }

    fn paren_uint(&mut self) -> PResult<Option<u64>> {
        if self.accept_sym("(")? {
            let n = self.uint()?;
            self.expect_sym(")")?;
            Ok(Some(n))
        } else {
            Ok(None)
        }
    }

    fn paren_precision(&mut self) -> PResult<(Option<u64>, Option<u64>)> {
        if self.accept_sym("(")? {
            let p = self.uint()?;
            let s = if self.accept_sym(",")? {
                Some(self.uint()?)
            } else {
                None
            };
            self.expect_sym(")")?;
            Ok((Some(p), s))
        } else {
            Ok((None, None))
        }
    }

    fn column_type(&mut self) -> PResult<ColType> {
        let t = self.next()?;
        let Tok::Word(w) = &t.tok else {
            return Err(self.fail_at(t.start));
        };
        let ty = match w.to_ascii_uppercase().as_str() {
            "TINYINT" => {
                let w = self.paren_uint()?;
                let _ = w;
                ColType::TinyInt
            }
            "BOOL" | "BOOLEAN" => ColType::TinyInt,
            "SMALLINT" => {
                self.paren_uint()?;
                ColType::SmallInt
            }
            "MEDIUMINT" => {
                self.paren_uint()?;
                ColType::MediumInt
            }
            "INT" | "INTEGER" => {
                self.paren_uint()?;
                ColType::Int
            }
            "BIGINT" => {
                self.paren_uint()?;
                ColType::BigInt
            }
            "SERIAL" => ColType::BigInt,
            "FLOAT" => {
                self.paren_precision()?;
                ColType::Float
            }
            "DOUBLE" | "REAL" => {
                self.accept_kw("PRECISION")?;
                self.paren_precision()?;
                ColType::Double
            }
            "DECIMAL" | "NUMERIC" | "DEC" | "FIXED" => {
                let (p, s) = self.paren_precision()?;
                let p = p.unwrap_or(10).min(65) as u8;
                let s = s.unwrap_or(0).min(30) as u8;
                if s > p {
                    return Err(self.fail_at(t.start));
                }
                ColType::Decimal {
                    precision: p,
                    scale: s,
                }
            }
            "CHAR" | "CHARACTER" => {
                self.accept_kw("VARYING")?;
                ColType::Char(self.paren_uint()?.unwrap_or(1) as u32)
            }
            "VARCHAR" => match self.paren_uint()? {
                Some(n) => ColType::VarChar(n as u32),
                None => return self.err(),
            },
            "BINARY" => ColType::Binary(self.paren_uint()?.unwrap_or(1) as u32),
            "VARBINARY" => match self.paren_uint()? {
                Some(n) => ColType::VarBinary(n as u32),
                None => return self.err(),
            },
            "TINYTEXT" => ColType::Text(255),
            "TEXT" => {
                self.paren_uint()?;
                ColType::Text(65_535)
            }
            "MEDIUMTEXT" => ColType::Text(16_777_215),
            "LONGTEXT" => ColType::Text(u32::MAX),
            "TINYBLOB" => ColType::Blob(255),
            "BLOB" => {
                self.paren_uint()?;
                ColType::Blob(65_535)
            }
            "MEDIUMBLOB" => ColType::Blob(16_777_215),
            "LONGBLOB" => ColType::Blob(u32::MAX),
            "DATE" => ColType::Date,
            "DATETIME" => {
                self.paren_uint()?;
                ColType::DateTime
            }
            "TIMESTAMP" => {
                self.paren_uint()?;
                ColType::Timestamp
            }
            "TIME" => {
                self.paren_uint()?;
                ColType::Time
            }
            "YEAR" => {
                self.paren_uint()?;
                ColType::Year
            }
            "JSON" => ColType::Json,
            "ENUM" | "SET" => {
                self.expect_sym("(")?;
                let mut vals = Vec::new();
                loop {
                    vals.push(self.string_lit()?);
                    if !self.accept_sym(",")? {
                        break;
                    }
                }
                self.expect_sym(")")?;
                ColType::Enum(vals)
            }
            _ => return Err(self.fail_at(t.start)),
        };
        Ok(ty)
    }

    fn column_spec(&mut self) -> PResult<ColumnSpec> {
        let name = self.ident()?;
        let ty = self.column_type()?;
        let mut spec = ColumnSpec {
            name,
            ty,
            unsigned: false,
            nullable: None,
            default: None,
            auto_increment: false,
            primary_key: false,
            unique: false,
        };
        loop {
            if self.accept_kw("UNSIGNED")? {
                spec.unsigned = true;
            } else if self.accept_kw("SIGNED")?
                || self.accept_kw("ZEROFILL")?
                || self.accept_kw("BINARY")?
            {
            } else if self.accept_kw("NOT")? {
                self.expect_kw("NULL")?;
                spec.nullable = Some(false);
            } else if self.accept_kw("NULL")? {
                spec.nullable = Some(true);
            } else if self.accept_kw("DEFAULT")? {
                let e = if self.accept_sym("(")? {
                    let e = self.expr()?;
                    self.expect_sym(")")?;
                    e
                } else {
                    self.unary()?
                };
                spec.default = Some(e);
            } else if self.accept_kw("AUTO_INCREMENT")? {
                spec.auto_increment = true;
            } else if self.accept_kw("PRIMARY")? {
                self.expect_kw("KEY")?;
                spec.primary_key = true;
            } else if self.accept_kw("KEY")? {
                spec.primary_key = true;
            } else if self.accept_kw("UNIQUE")? {
                self.accept_kw("KEY")?;
                spec.unique = true;
            } else if self.accept_kw("COMMENT")? {
                self.string_lit()?;
            } else if self.accept_kw("CHARACTER")? {
                self.expect_kw("SET")?;
                self.ident_or_string()?;
            } else if self.accept_kw("CHARSET")? || self.accept_kw("COLLATE")? {
                self.ident_or_string()?;
            } else if self.accept_kw("ON")? {
                self.expect_kw("UPDATE")?;
                let t = self.next()?;
                if !(t.is_kw("CURRENT_TIMESTAMP") || t.is_kw("NOW") || t.is_kw("LOCALTIMESTAMP")) {
                    return Err(self.fail_at(t.start));
                }
                if self.accept_sym("(")? && !self.accept_sym(")")? {
                    self.uint()?;
                    self.expect_sym(")")?;
                }
            } else if self.is_kw("GENERATED")? || self.is_kw("AS")? {
                return self.unsupported("generated columns");
            } else if self.is_kw("REFERENCES")? || self.is_kw("CHECK")? {
                // inline FK / CHECK: ignore
                self.next()?;
                while !(self.peek()?.is_sym(",") || self.peek()?.is_sym(")") || self.at_end()?) {
                    if self.peek()?.is_sym("(") {
                        self.next()?;
                        let mut depth = 1;
                        while depth > 0 {
                            let t = self.next()?;
                            if t.tok == Tok::Eof {
                                return Err(self.fail_at(t.start));
                            }
                            if t.is_sym("(") {
                                depth += 1;
                            } else if t.is_sym(")") {
                                depth -= 1;
                            }
                        }
                    } else {
                        self.next()?;
                    }
                }
            } else {
                break;
            }
        }
        Ok(spec)
    }

    fn if_not_exists(&mut self) -> PResult<bool> {
        if self.accept_kw("IF")? {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn drop(&mut self) -> PResult<Statement> {
        self.next()?; // DROP
        let temporary = self.accept_kw("TEMPORARY")?;
        if !temporary && (self.accept_kw("DATABASE")? || self.accept_kw("SCHEMA")?) {
            let if_exists = if self.accept_kw("IF")? {
                self.expect_kw("EXISTS")?;
                true
            } else {
                false
            };
            let name = self.ident()?;
            return Ok(Statement::DropDatabase { name, if_exists });
        }
        if !self.accept_kw("TABLE")? {
            if self.accept_kw("TABLES")? {
                // DROP TABLES is a synonym
            } else if temporary {
                return self.err();
            } else {
                let t = self.peek()?.clone();
                return match &t.tok {
                    Tok::Word(w) => {
                        let what = format!("DROP {}", w.to_ascii_uppercase());
                        self.unsupported(&what)
                    }
                    _ => self.err(),
                };
            }
        }
        let if_exists = if self.accept_kw("IF")? {
            self.expect_kw("EXISTS")?;
            true
        } else {
            false
        };
        let mut tables = vec![self.table_name()?];
        while self.accept_sym(",")? {
            tables.push(self.table_name()?);
        }
        let _ = self.accept_kw("RESTRICT")? || self.accept_kw("CASCADE")?;
        Ok(Statement::DropTable {
            tables,
            if_exists,
            temporary,
        })
    }

    fn select(&mut self) -> PResult<Select> {
        self.next()?; // SELECT
        loop {
            if self.is_kw("DISTINCT")? || self.is_kw("DISTINCTROW")? {
                return self.unsupported("SELECT DISTINCT");
            }
            if self.accept_kw("ALL")?
                || self.accept_kw("SQL_NO_CACHE")?
                || self.accept_kw("SQL_CACHE")?
                || self.accept_kw("SQL_CALC_FOUND_ROWS")?
                || self.accept_kw("STRAIGHT_JOIN")?
                || self.accept_kw("HIGH_PRIORITY")?
                || self.accept_kw("SQL_BUFFER_RESULT")?
                || self.accept_kw("SQL_SMALL_RESULT")?
                || self.accept_kw("SQL_BIG_RESULT")?
            {
                continue;
            }
            break;
        }
        let mut items = Vec::new();
        loop {
            items.push(self.select_item()?);
            if !self.accept_sym(",")? {
                break;
            }
        }
        let mut sel = Select {
            items,
            from: None,
            alias: None,
            where_: None,
            order_by: Vec::new(),
            limit: None,
            lock: None,
        };
        if self.accept_kw("FROM")? {
            if self.accept_kw("DUAL")? {
                // no table
            } else {
                if self.peek()?.is_sym("(") {
                    return self.unsupported("derived tables");
                }
                let table = self.table_name()?;
                sel.alias = self.table_alias()?;
                if self.peek()?.is_sym(",")
                    || self.is_kw("JOIN")?
                    || self.is_kw("INNER")?
                    || self.is_kw("LEFT")?
                    || self.is_kw("RIGHT")?
                    || self.is_kw("CROSS")?
                    || self.is_kw("NATURAL")?
                    || self.is_kw("STRAIGHT_JOIN")?
                {
                    return self.unsupported("joins");
                }
                if self.is_kw("FORCE")? || self.is_kw("USE")? || self.is_kw("IGNORE")? {
                    // index hints: skip `FORCE INDEX (x)`
                    self.next()?;
                    if !(self.accept_kw("INDEX")? || self.accept_kw("KEY")?) {
                        return self.err();
                    }
                    self.skip_parens()?;
                }
                sel.from = Some(table);
            }
        }
        if self.accept_kw("WHERE")? {
            sel.where_ = Some(self.expr()?);
        }
        if self.is_kw("GROUP")? || self.is_kw("HAVING")? {
            return self.unsupported("GROUP BY / HAVING");
        }
        if self.is_kw("UNION")? {
            return self.unsupported("UNION");
        }
        sel.order_by = self.order_by()?;
        if self.accept_kw("LIMIT")? {
            let a = self.uint()?;
            if self.accept_sym(",")? {
                let b = self.uint()?;
                sel.limit = Some((a, b));
            } else if self.accept_kw("OFFSET")? {
                let off = self.uint()?;
                sel.limit = Some((off, a));
            } else {
                sel.limit = Some((0, a));
            }
        }
        if self.accept_kw("FOR")? {
            let mode = if self.accept_kw("UPDATE")? {
                LockMode::ForUpdate
            } else {
                self.expect_kw("SHARE")?;
                LockMode::ForShare
            };
            if self.accept_kw("OF")? {
                self.ident()?;
            }
            let wait = if self.accept_kw("NOWAIT")? {
                LockWait::NoWait
            } else if self.accept_kw("SKIP")? {
                self.expect_kw("LOCKED")?;
                LockWait::SkipLocked
            } else if self.accept_kw("WAIT")? {
                self.uint()?;
                LockWait::Wait
            } else {
                LockWait::Wait
            };
            sel.lock = Some((mode, wait));
        } else if self.accept_kw("LOCK")? {
            self.expect_kw("IN")?;
            self.expect_kw("SHARE")?;
            self.expect_kw("MODE")?;
            sel.lock = Some((LockMode::ForShare, LockWait::Wait));
        }
        if self.is_kw("INTO")? {
            return self.unsupported("SELECT ... INTO");
        }
        Ok(sel)
    }

    fn skip_parens(&mut self) -> PResult<()> {
        self.expect_sym("(")?;
        let mut depth = 1;
        while depth > 0 {
            let t = self.next()?;
            if t.tok == Tok::Eof {
                return Err(self.fail_at(t.start));
            }
            if t.is_sym("(") {
                depth += 1;
            } else if t.is_sym(")") {
                depth -= 1;
            }
        }
        Ok(())
    }

    fn table_alias(&mut self) -> PResult<Option<String>> {
        if self.accept_kw("AS")? {
            return Ok(Some(self.ident()?));
        }
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Word(w)
                if !is_reserved(&w)
                    && ![
                        "FORCE",
                        "IGNORE",
                        "NATURAL",
                        "STRAIGHT_JOIN",
                        "OFFSET",
                        "NOWAIT",
                    ]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&w)) =>
            {
                self.next()?;
                Ok(Some(w))
            }
            Tok::QuotedIdent(q) => {
                self.next()?;
                Ok(Some(q))
            }
            _ => Ok(None),
        }
    }

    fn order_by(&mut self) -> PResult<Vec<OrderBy>> {
        let mut v = Vec::new();
        if self.accept_kw("ORDER")? {
            self.expect_kw("BY")?;
            loop {
                let expr = self.expr()?;
                let desc = if self.accept_kw("DESC")? {
                    true
                } else {
                    self.accept_kw("ASC")?;
                    false
                };
                v.push(OrderBy { expr, desc });
                if !self.accept_sym(",")? {
                    break;
                }
            }
        }
        Ok(v)
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        let start = self.peek()?.start;
        if self.peek()?.is_sym("*") {
            self.next()?;
            return Ok(SelectItem {
                expr: SelectExpr::Star(None),
                alias: None,
                text: "*".into(),
            });
        }
        // t.*
        let t0 = self.peek()?.clone();
        if matches!(t0.tok, Tok::Word(_) | Tok::QuotedIdent(_))
            && self.peek_n(1)?.is_sym(".")
            && self.peek_n(2)?.is_sym("*")
        {
            let q = self.ident()?;
            self.next()?;
            self.next()?;
            let text = format!("{q}.*");
            return Ok(SelectItem {
                expr: SelectExpr::Star(Some(q)),
                alias: None,
                text,
            });
        }
        let e = self.expr()?;
        let text = self.sql[start..self.last_end].to_string();
        let alias = if self.accept_kw("AS")? {
            Some(self.ident_or_string()?)
        } else {
            let t = self.peek()?.clone();
            match t.tok {
                Tok::Word(w) if !is_reserved(&w) => {
                    self.next()?;
                    Some(w)
                }
                Tok::QuotedIdent(q) => {
                    self.next()?;
                    Some(q)
                }
                Tok::Str(s) => {
                    self.next()?;
                    Some(String::from_utf8_lossy(&s).into_owned())
                }
                _ => None,
            }
        };
        // Unqualified column names are reported without the table qualifier.
        let text = match &e {
            Expr::Column {
                table: Some(_),
                name,
            } => name.clone(),
            _ => text,
        };
        Ok(SelectItem {
            expr: SelectExpr::Expr(e),
            alias,
            text,
        })
    }

    fn insert(&mut self) -> PResult<Insert> {
        let t = self.next()?;
        let replace = t.is_kw("REPLACE");
        let _ = self.accept_kw("LOW_PRIORITY")?
            || self.accept_kw("DELAYED")?
            || self.accept_kw("HIGH_PRIORITY")?;
        let ignore = self.accept_kw("IGNORE")?;
        self.accept_kw("INTO")?;
        let table = self.table_name()?;
        let mut ins = Insert {
            table,
            columns: None,
            rows: Vec::new(),
            ignore,
            replace,
            on_dup: Vec::new(),
        };
        if self.accept_kw("SET")? {
            let mut cols = Vec::new();
            let mut row = Vec::new();
            loop {
                cols.push(self.column_ref_name()?);
                self.expect_sym("=")?;
                row.push(self.expr_or_default()?);
                if !self.accept_sym(",")? {
                    break;
                }
            }
            ins.columns = Some(cols);
            ins.rows.push(row);
        } else {
            if self.peek()?.is_sym("(") && !self.peek_n(1)?.is_kw("SELECT") {
                self.next()?;
                let mut cols = Vec::new();
                if !self.peek()?.is_sym(")") {
                    loop {
                        cols.push(self.column_ref_name()?);
                        if !self.accept_sym(",")? {
                            break;
                        }
                    }
                }
                self.expect_sym(")")?;
                ins.columns = Some(cols);
            }
            if self.is_kw("SELECT")? || self.peek()?.is_sym("(") {
                return self.unsupported("INSERT ... SELECT");
            }
            if !(self.accept_kw("VALUES")? || self.accept_kw("VALUE")?) {
                return self.err();
            }
            loop {
                self.expect_sym("(")?;
                let mut row = Vec::new();
                if !self.peek()?.is_sym(")") {
                    loop {
                        row.push(self.expr_or_default()?);
                        if !self.accept_sym(",")? {
                            break;
                        }
                    }
                }
                self.expect_sym(")")?;
                ins.rows.push(row);
                if !self.accept_sym(",")? {
                    break;
                }
            }
        }
        if self.accept_kw("ON")? {
            self.expect_kw("DUPLICATE")?;
            self.expect_kw("KEY")?;
            self.expect_kw("UPDATE")?;
            loop {
                let c = self.column_ref_name()?;
                self.expect_sym("=")?;
                let e = self.expr_or_default()?;
                ins.on_dup.push((c, e));
                if !self.accept_sym(",")? {
                    break;
                }
            }
        }
        Ok(ins)
    }

    fn expr_or_default(&mut self) -> PResult<Expr> {
        if self.is_kw("DEFAULT")? && !self.peek_n(1)?.is_sym("(") {
            self.next()?;
            return Ok(Expr::Default);
        }
        self.expr()
    }

    /// `col` or `t.col` → `col`.
    fn column_ref_name(&mut self) -> PResult<String> {
        let mut name = self.ident()?;
        while self.accept_sym(".")? {
            name = self.ident()?;
        }
        Ok(name)
    }

    fn update(&mut self) -> PResult<Update> {
        self.next()?; // UPDATE
        let _ = self.accept_kw("LOW_PRIORITY")?;
        if self.is_kw("IGNORE")? {
            return self.unsupported("UPDATE IGNORE");
        }
        let table = self.table_name()?;
        let alias = if self.is_kw("SET")? {
            None
        } else {
            self.table_alias()?
        };
        if self.peek()?.is_sym(",") || self.is_kw("JOIN")? {
            return self.unsupported("multi-table UPDATE");
        }
        self.expect_kw("SET")?;
        let mut sets = Vec::new();
        loop {
            let c = self.column_ref_name()?;
            self.expect_sym("=")?;
            let e = self.expr_or_default()?;
            sets.push((c, e));
            if !self.accept_sym(",")? {
                break;
            }
        }
        let where_ = if self.accept_kw("WHERE")? {
            Some(self.expr()?)
        } else {
            None
        };
        let order_by = self.order_by()?;
        let limit = if self.accept_kw("LIMIT")? {
            Some(self.uint()?)
        } else {
            None
        };
        Ok(Update {
            table,
            alias,
            sets,
            where_,
            order_by,
            limit,
        })
    }

    fn delete(&mut self) -> PResult<Delete> {
        self.next()?; // DELETE
        let _ = self.accept_kw("LOW_PRIORITY")? || self.accept_kw("QUICK")?;
        if self.is_kw("IGNORE")? {
            return self.unsupported("DELETE IGNORE");
        }
        self.expect_kw("FROM")?;
        let table = self.table_name()?;
        if self.peek()?.is_sym(",") || self.is_kw("USING")? || self.is_kw("JOIN")? {
            return self.unsupported("multi-table DELETE");
        }
        let where_ = if self.accept_kw("WHERE")? {
            Some(self.expr()?)
        } else {
            None
        };
        let order_by = self.order_by()?;
        let limit = if self.accept_kw("LIMIT")? {
            Some(self.uint()?)
        } else {
            None
        };
        Ok(Delete {
            table,
            where_,
            order_by,
            limit,
        })
    }

    // ------------------------------------------------------------------
    // expressions
    // ------------------------------------------------------------------

    pub fn expr(&mut self) -> PResult<Expr> {
        // Fast path for the commonest expression of all, a lone number or string
        // literal ending at `,` `)` `;` or the end (INSERT values, SET values): every
        // precedence level would only pass it through to `primary`.
        if matches!(self.peek()?.tok, Tok::Int(_) | Tok::Str(_)) {
            let t = self.peek_n(1)?;
            if t.is_sym(",") || t.is_sym(")") || t.is_sym(";") || t.tok == Tok::Eof {
                return self.primary();
            }
        }
        self.or_expr()
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let mut l = self.xor_expr()?;
        while self.accept_kw("OR")? || self.accept_sym("||")? {
            let r = self.xor_expr()?;
            l = Expr::Bin {
                op: BinOp::Or,
                l: Box::new(l),
                r: Box::new(r),
            };
        }
        Ok(l)
    }

    fn xor_expr(&mut self) -> PResult<Expr> {
        let mut l = self.and_expr()?;
        while self.accept_kw("XOR")? {
            let r = self.and_expr()?;
            l = Expr::Bin {
                op: BinOp::Xor,
                l: Box::new(l),
                r: Box::new(r),
            };
        }
        Ok(l)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut l = self.not_expr()?;
        while self.accept_kw("AND")? || self.accept_sym("&&")? {
            let r = self.not_expr()?;
            l = Expr::Bin {
                op: BinOp::And,
                l: Box::new(l),
                r: Box::new(r),
            };
        }
        Ok(l)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.accept_kw("NOT")? {
            let e = self.not_expr()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let mut l = self.additive()?;
        loop {
            let t = self.peek()?.clone();
            let op = match &t.tok {
                Tok::Sym("=") => Some(BinOp::Eq),
                Tok::Sym("<=>") => Some(BinOp::NullSafeEq),
                Tok::Sym("<>") | Tok::Sym("!=") => Some(BinOp::Ne),
                Tok::Sym("<") => Some(BinOp::Lt),
                Tok::Sym("<=") => Some(BinOp::Le),
                Tok::Sym(">") => Some(BinOp::Gt),
                Tok::Sym(">=") => Some(BinOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.next()?;
                if self.is_kw("ANY")? || self.is_kw("ALL")? || self.is_kw("SOME")? {
                    return self.unsupported("subqueries");
                }
                let r = self.additive()?;
                l = Expr::Bin {
                    op,
                    l: Box::new(l),
                    r: Box::new(r),
                };
                continue;
            }
            if self.accept_kw("IS")? {
                let negated = self.accept_kw("NOT")?;
                if self.accept_kw("NULL")? {
                    l = Expr::IsNull {
                        e: Box::new(l),
                        negated,
                    };
                } else if self.accept_kw("TRUE")? {
                    let e = Expr::Bin {
                        op: BinOp::NullSafeEq,
                        l: Box::new(Expr::Func {
                            name: "ISTRUE".into(),
                            args: vec![l],
                        }),
                        r: Box::new(Expr::Lit(Value::Int(1))),
                    };
                    l = if negated { Expr::Not(Box::new(e)) } else { e };
                } else if self.accept_kw("FALSE")? {
                    let e = Expr::Bin {
                        op: BinOp::NullSafeEq,
                        l: Box::new(Expr::Func {
                            name: "ISFALSE".into(),
                            args: vec![l],
                        }),
                        r: Box::new(Expr::Lit(Value::Int(1))),
                    };
                    l = if negated { Expr::Not(Box::new(e)) } else { e };
                } else {
                    return self.err();
                }
                continue;
            }
            let negated = if self.is_kw("NOT")?
                && (self.peek_n(1)?.is_kw("IN")
                    || self.peek_n(1)?.is_kw("BETWEEN")
                    || self.peek_n(1)?.is_kw("LIKE"))
            {
                self.next()?;
                true
            } else {
                false
            };
            if self.accept_kw("IN")? {
                self.expect_sym("(")?;
                if self.is_kw("SELECT")? {
                    return self.unsupported("subqueries");
                }
                let mut list = Vec::new();
                loop {
                    list.push(self.expr()?);
                    if !self.accept_sym(",")? {
                        break;
                    }
                }
                self.expect_sym(")")?;
                l = Expr::InList {
                    e: Box::new(l),
                    list,
                    negated,
                };
                continue;
            }
            if self.accept_kw("BETWEEN")? {
                let lo = self.additive()?;
                self.expect_kw("AND")?;
                let hi = self.additive()?;
                l = Expr::Between {
                    e: Box::new(l),
                    lo: Box::new(lo),
                    hi: Box::new(hi),
                    negated,
                };
                continue;
            }
            if self.accept_kw("LIKE")? {
                let pat = self.additive()?;
                if self.accept_kw("ESCAPE")? {
                    return self.unsupported("LIKE ... ESCAPE");
                }
                l = Expr::Like {
                    e: Box::new(l),
                    pat: Box::new(pat),
                    negated,
                };
                continue;
            }
            if negated {
                return self.err();
            }
            return Ok(l);
        }
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut l = self.multiplicative()?;
        loop {
            let op = if self.accept_sym("+")? {
                BinOp::Add
            } else if self.accept_sym("-")? {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            let r = self.multiplicative()?;
            l = Expr::Bin {
                op,
                l: Box::new(l),
                r: Box::new(r),
            };
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut l = self.unary()?;
        loop {
            let op = if self.accept_sym("*")? {
                BinOp::Mul
            } else if self.accept_sym("/")? {
                BinOp::Div
            } else if self.accept_sym("%")? || self.accept_kw("MOD")? {
                BinOp::Mod
            } else if self.accept_kw("DIV")? {
                BinOp::IntDiv
            } else {
                return Ok(l);
            };
            let r = self.unary()?;
            l = Expr::Bin {
                op,
                l: Box::new(l),
                r: Box::new(r),
            };
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.accept_sym("-")? {
            let e = self.unary()?;
            return Ok(match e {
                Expr::Lit(Value::Int(i)) => Expr::Lit(Value::Int(-i)),
                Expr::Lit(Value::UInt(u)) if u == i64::MAX as u64 + 1 => {
                    Expr::Lit(Value::Int(i64::MIN))
                }
                Expr::Lit(Value::Double(d)) => Expr::Lit(Value::Double(-d)),
                other => Expr::Neg(Box::new(other)),
            });
        }
        if self.accept_sym("+")? {
            return self.unary();
        }
        if self.accept_sym("!")? {
            let e = self.unary()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek()?.is_kw("BINARY") && !self.peek_n(1)?.is_sym("(") {
            self.next()?;
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Int(v) => {
                self.next()?;
                Ok(Expr::Lit(if v > i64::MAX as u64 {
                    Value::UInt(v)
                } else {
                    Value::Int(v as i64)
                }))
            }
            Tok::Num(n) => {
                self.next()?;
                Ok(Expr::Lit(Value::Double(n.parse().unwrap_or(0.0))))
            }
            Tok::Str(mut s) => {
                self.next()?;
                // adjacent literals concatenate
                while let Tok::Str(more) = &self.peek()?.tok {
                    s.extend_from_slice(more);
                    self.next()?;
                }
                Ok(Expr::Lit(Value::Bytes(s)))
            }
            Tok::Hex(h) => {
                self.next()?;
                Ok(Expr::Lit(Value::Bytes(h)))
            }
            Tok::UserVar(name) => {
                self.next()?;
                if self.accept_sym(":=")? {
                    let e = self.expr()?;
                    return Ok(Expr::AssignUserVar {
                        name,
                        e: Box::new(e),
                    });
                }
                Ok(Expr::UserVar(name))
            }
            Tok::SysVar(raw) => {
                self.next()?;
                let (scope, name) = split_sysvar(&raw);
                Ok(Expr::SysVar { scope, name })
            }
            Tok::Sym("(") => {
                self.next()?;
                if self.is_kw("SELECT")? {
                    return self.unsupported("subqueries");
                }
                let e = self.expr()?;
                if self.peek()?.is_sym(",") {
                    return self.unsupported("row constructors");
                }
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::QuotedIdent(_) => self.column_ref(),
            Tok::Word(w) => {
                let upper = w.to_ascii_uppercase();
                let next_is_paren = self.peek_n(1)?.is_sym("(");
                match upper.as_str() {
                    "NULL" => {
                        self.next()?;
                        return Ok(Expr::Lit(Value::Null));
                    }
                    "TRUE" => {
                        self.next()?;
                        return Ok(Expr::Lit(Value::Int(1)));
                    }
                    "FALSE" => {
                        self.next()?;
                        return Ok(Expr::Lit(Value::Int(0)));
                    }
                    "CASE" => return self.case_expr(),
                    "EXISTS" => return self.unsupported("subqueries"),
                    "INTERVAL" => return self.unsupported("INTERVAL"),
                    "DEFAULT" if !next_is_paren => {
                        self.next()?;
                        return Ok(Expr::Default);
                    }
                    "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "CURRENT_TIME" | "CURRENT_USER"
                    | "LOCALTIME" | "LOCALTIMESTAMP" | "UTC_TIMESTAMP" | "UTC_DATE"
                        if !next_is_paren =>
                    {
                        self.next()?;
                        return Ok(Expr::Func {
                            name: upper,
                            args: vec![],
                        });
                    }
                    _ => {}
                }
                if w.starts_with('_') && matches!(self.peek_n(1)?.tok, Tok::Str(_)) {
                    // charset introducer: _utf8mb4'abc'
                    self.next()?;
                    return self.primary();
                }
                let callable = !is_reserved(&w)
                    || matches!(
                        upper.as_str(),
                        "IF" | "REPLACE"
                            | "INSERT"
                            | "LEFT"
                            | "RIGHT"
                            | "VALUES"
                            | "DATABASE"
                            | "MOD"
                            | "CHAR"
                    );
                if next_is_paren && callable {
                    return self.function_call(w.clone());
                }
                self.column_ref()
            }
            _ => self.err(),
        }
    }

    fn case_expr(&mut self) -> PResult<Expr> {
        self.next()?; // CASE
        let operand = if self.is_kw("WHEN")? {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut whens = Vec::new();
        while self.accept_kw("WHEN")? {
            let w = self.expr()?;
            self.expect_kw("THEN")?;
            let t = self.expr()?;
            whens.push((w, t));
        }
        if whens.is_empty() {
            return self.err();
        }
        let else_ = if self.accept_kw("ELSE")? {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("END")?;
        Ok(Expr::Case {
            operand,
            whens,
            else_,
        })
    }

    fn function_call(&mut self, name: String) -> PResult<Expr> {
        self.next()?; // name
        self.expect_sym("(")?;
        let upper = name.to_ascii_uppercase();
        let agg = match upper.as_str() {
            "COUNT" => Some(AggFunc::Count),
            "SUM" => Some(AggFunc::Sum),
            "MIN" => Some(AggFunc::Min),
            "MAX" => Some(AggFunc::Max),
            "AVG" => Some(AggFunc::Avg),
            _ => None,
        };
        if let Some(func) = agg {
            if func == AggFunc::Count && self.accept_sym("*")? {
                self.expect_sym(")")?;
                return Ok(Expr::CountStar);
            }
            let distinct = self.accept_kw("DISTINCT")?;
            let arg = self.expr()?;
            self.expect_sym(")")?;
            return Ok(Expr::Agg {
                func,
                arg: Box::new(arg),
                distinct,
            });
        }
        if upper == "CAST" || upper == "CONVERT" {
            let e = self.expr()?;
            if upper == "CAST" {
                self.expect_kw("AS")?;
            } else if !self.accept_sym(",")? {
                return self.unsupported("CONVERT ... USING");
            }
            let t = self.next()?;
            let Tok::Word(ty) = t.tok else {
                return Err(self.fail_at(t.start));
            };
            let mut ty = ty.to_ascii_uppercase();
            if ty == "SIGNED" || ty == "UNSIGNED" {
                self.accept_kw("INTEGER")?;
            }
            if (ty == "CHAR" || ty == "DECIMAL" || ty == "BINARY") && self.accept_sym("(")? {
                self.uint()?;
                if self.accept_sym(",")? {
                    self.uint()?;
                }
                self.expect_sym(")")?;
            }
            if ty == "DOUBLE" && self.accept_kw("PRECISION")? {
                ty = "DOUBLE".into();
            }
            self.expect_sym(")")?;
            return Ok(Expr::Func {
                name: "CAST".into(),
                args: vec![e, Expr::Lit(Value::str(ty))],
            });
        }
        let mut args = Vec::new();
        if !self.peek()?.is_sym(")") {
            loop {
                args.push(self.expr()?);
                if !self.accept_sym(",")? {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        Ok(Expr::Func { name, args })
    }

    fn column_ref(&mut self) -> PResult<Expr> {
        let a = self.ident()?;
        if self.accept_sym(".")? {
            let b = self.ident()?;
            if self.accept_sym(".")? {
                let c = self.ident()?;
                return Ok(Expr::Column {
                    table: Some(b),
                    name: c,
                });
            }
            return Ok(Expr::Column {
                table: Some(a),
                name: b,
            });
        }
        Ok(Expr::Column {
            table: None,
            name: a,
        })
    }
}

/// Split the raw text after `@@` into scope and lower-cased name.
pub fn split_sysvar(raw: &str) -> (VarScope, String) {
    let lower = raw.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("session.") {
        (VarScope::Session, rest.to_string())
    } else if let Some(rest) = lower.strip_prefix("local.") {
        (VarScope::Session, rest.to_string())
    } else if let Some(rest) = lower.strip_prefix("global.") {
        (VarScope::Global, rest.to_string())
    } else {
        (VarScope::Default, lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        match parse_next(sql, 0, true) {
            Parsed::Stmt { stmt, .. } => stmt,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn fail(sql: &str) -> ParseFail {
        match parse_next(sql, 0, true) {
            Parsed::Error(e) => e,
            other => panic!("{sql}: expected error, got {other:?}"),
        }
    }

    #[test]
    fn parses_select_with_where_order_limit_and_lock() {
        let Statement::Select(s) = one("SELECT id, name AS n FROM db.t WHERE id IN (1,2) AND x >= 3 ORDER BY id DESC LIMIT 5 FOR UPDATE") else { panic!() };
        assert_eq!(s.items.len(), 2);
        assert_eq!(s.items[1].alias.as_deref(), Some("n"));
        assert_eq!(
            s.from,
            Some(TableName {
                db: Some("db".into()),
                name: "t".into()
            })
        );
        assert!(s.where_.is_some());
        assert_eq!(s.order_by.len(), 1);
        assert!(s.order_by[0].desc);
        assert_eq!(s.limit, Some((0, 5)));
        assert_eq!(s.lock, Some((LockMode::ForUpdate, LockWait::Wait)));
    }

    #[test]
    fn select_item_text_is_the_source_text() {
        let Statement::Select(s) = one("SELECT @@session.autocommit, LAST_INSERT_ID(),  1 + 1")
        else {
            panic!()
        };
        let texts: Vec<_> = s.items.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(
            texts,
            vec!["@@session.autocommit", "LAST_INSERT_ID()", "1 + 1"]
        );
    }

    #[test]
    fn parses_create_table_with_inline_and_table_primary_keys() {
        let Statement::CreateTable(c) = one("CREATE TABLE IF NOT EXISTS t (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, v VARCHAR(20) DEFAULT 'x', KEY k (v), PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") else { panic!() };
        assert!(c.if_not_exists);
        assert_eq!(c.columns.len(), 2);
        assert!(c.columns[0].auto_increment && c.columns[0].unsigned);
        assert_eq!(c.primary_key, Some(vec!["id".to_string()]));
        assert_eq!(c.columns[1].ty, ColType::VarChar(20));
    }

    #[test]
    fn parses_set_forms() {
        let Statement::Set(items) = one("SET @x = 1, SESSION autocommit = OFF, @@global.read_only = 1, NAMES utf8mb4 COLLATE utf8mb4_bin, session_track_gtids = OWN_GTID") else { panic!() };
        assert_eq!(items.len(), 5);
        assert!(
            matches!(&items[1], SetItem::SysVar { scope: VarScope::Session, name, value: Expr::Column { name: v, .. } } if name == "autocommit" && v == "OFF")
        );
        assert!(
            matches!(&items[2], SetItem::SysVar { scope: VarScope::Global, name, .. } if name == "read_only")
        );
        assert!(
            matches!(&items[3], SetItem::Names { charset, collation: Some(_) } if charset == "utf8mb4")
        );
        let Statement::Set(items) =
            one("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
        else {
            panic!()
        };
        assert_eq!(
            items,
            vec![SetItem::Transaction {
                scope: Some(VarScope::Session),
                isolation: Some("READ-COMMITTED".into()),
                read_only: Some(true)
            }]
        );
    }

    #[test]
    fn parses_replication_admin_statements() {
        let Statement::ChangeMaster(opts) =
            one("CHANGE MASTER TO MASTER_HOST='db2', MASTER_PORT=3306, MASTER_USE_GTID=slave_pos")
        else {
            panic!()
        };
        assert_eq!(opts[0], ("MASTER_HOST".into(), Value::str("db2")));
        assert_eq!(opts[2], ("MASTER_USE_GTID".into(), Value::str("slave_pos")));
        assert_eq!(
            one("STOP SLAVE"),
            Statement::StopSlave(SlaveThreads {
                io: true,
                sql: true
            })
        );
        assert_eq!(
            one("START REPLICA IO_THREAD"),
            Statement::StartSlave(SlaveThreads {
                io: true,
                sql: false
            })
        );
        assert_eq!(one("RESET SLAVE ALL"), Statement::ResetSlave { all: true });
        assert!(matches!(
            one("SHOW ALL SLAVES STATUS"),
            Statement::Show(ShowStmt::ReplicaStatus { all: true, .. })
        ));
    }

    #[test]
    fn multi_statement_offsets_chain() {
        let sql = "SELECT 1; SELECT 2 ;";
        let Parsed::Stmt {
            next, start, end, ..
        } = parse_next(sql, 0, true)
        else {
            panic!()
        };
        assert_eq!(&sql[start..end], "SELECT 1");
        let Parsed::Stmt {
            next: n2,
            start,
            end,
            ..
        } = parse_next(sql, next, false)
        else {
            panic!()
        };
        assert_eq!(&sql[start..end], "SELECT 2");
        assert_eq!(parse_next(sql, n2, false), Parsed::End);
        assert_eq!(parse_next("  -- c\n", 0, true), Parsed::Empty);
    }

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        assert_eq!(fail("SELEC 1").pos, 0);
        assert_eq!(fail("SELECT 1 FROM").pos, 13);
        assert_eq!(fail("SELECT * FROM t WHERE").pos, 21);
        let f = fail("SELECT a FROM t JOIN u");
        assert!(f.unsupported.is_some());
    }

    #[test]
    fn operator_precedence() {
        let Statement::Select(s) = one("SELECT 1 + 2 * 3 = 7 AND NOT 0 OR 0") else {
            panic!()
        };
        let SelectExpr::Expr(Expr::Bin {
            op: BinOp::Or, l, ..
        }) = &s.items[0].expr
        else {
            panic!()
        };
        assert!(matches!(**l, Expr::Bin { op: BinOp::And, .. }));
    }
}
