//! The full-parse fallback: when the token scan cannot decide what a statement is, the
//! statement goes through `sqlparser`'s MySQL dialect, which says whether it is a query
//! (and whether that query holds a data change), a data or schema change, or something
//! else.
//!
//! The parser never sees the client's text itself but a rendering of its tokens with
//! every literal replaced by a fixed one ([`render`]): the outcome then depends only on
//! what the cache key holds, and the parser cannot be driven by literal contents.
//! Renderings over [`MAX_PARSE_BYTES`] or [`MAX_PARSE_TOKENS`] are not parsed, and the
//! parser's recursion is limited to [`RECURSION_LIMIT`], so a hostile text can neither
//! exhaust the stack (also when the syntax tree is dropped) nor take long.

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::scan::{Tok, T};

/// Longest rendering that is parsed.
pub(crate) const MAX_PARSE_BYTES: usize = 16 * 1024;
/// Most tokens that are parsed (bounds the depth of left-nested expression trees).
pub(crate) const MAX_PARSE_TOKENS: usize = 4096;
/// Nesting depth the parser may reach.
pub(crate) const RECURSION_LIMIT: usize = 40;

/// What the parser made of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A query (`SELECT`, `VALUES`, `TABLE`, set operations, CTEs) without a data change.
    Query,
    /// A data, schema or privilege change.
    Write,
    /// Some other statement.
    Other,
    /// Not parseable (or over the limits).
    Failed,
}

/// Renders tokens as SQL for the parser: words, quoted identifiers and system variables
/// lower-cased, string literals as `'s'`, numbers as `1`, user variables as `@v`.
pub(crate) fn render(src: &[u8], toks: &[Tok]) -> Option<String> {
    if toks.len() > MAX_PARSE_TOKENS {
        return None;
    }
    let mut out = String::with_capacity(toks.len() * 6);
    for t in toks {
        // cannot fail: the lexer's tokens are byte ranges inside `src`.
        let text = &src[t.start as usize..t.end as usize];
        if !out.is_empty() {
            out.push(' ');
        }
        match t.t {
            T::Word | T::Quoted | T::SysVar => {
                let lower = text.to_ascii_lowercase();
                out.push_str(&String::from_utf8_lossy(&lower));
            }
            T::Str | T::DqStr => out.push_str("'s'"),
            T::Num => out.push('1'),
            T::UserVar => out.push_str("@v"),
            T::Punct(c) => out.push(if c.is_ascii() { c as char } else { '?' }),
        }
        if out.len() > MAX_PARSE_BYTES {
            return None;
        }
    }
    Some(out)
}

/// Parses one statement (the rendering of one statement's tokens).
pub(crate) fn parse_one(sql: &str) -> Parsed {
    if sql.len() > MAX_PARSE_BYTES {
        return Parsed::Failed;
    }
    let dialect = MySqlDialect {};
    let parser = match Parser::new(&dialect).with_recursion_limit(RECURSION_LIMIT).try_with_sql(sql) {
        Ok(p) => p,
        Err(_) => return Parsed::Failed,
    };
    let mut parser = parser;
    let statements = match parser.parse_statements() {
        Ok(s) => s,
        Err(_) => return Parsed::Failed,
    };
    match statements.as_slice() {
        [one] => statement_kind(one),
        _ => Parsed::Failed,
    }
}

fn statement_kind(s: &Statement) -> Parsed {
    match s {
        Statement::Query(q) => query_kind(q),
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_)
        | Statement::LoadData { .. }
        | Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateIndex(_)
        | Statement::CreateDatabase { .. }
        | Statement::CreateSchema { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateTrigger(_)
        | Statement::CreateRole(_)
        | Statement::CreateUser(_)
        | Statement::CreateSequence { .. }
        | Statement::AlterTable(_)
        | Statement::AlterView(_)
        | Statement::AlterUser(_)
        | Statement::AlterSchema(_)
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropProcedure { .. }
        | Statement::DropTrigger(_)
        | Statement::RenameTable(_)
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::Flush { .. }
        | Statement::Kill { .. }
        | Statement::OptimizeTable { .. }
        | Statement::Analyze(_)
        | Statement::Install { .. } => Parsed::Write,
        _ => Parsed::Other,
    }
}

fn query_kind(q: &sqlparser::ast::Query) -> Parsed {
    if !q.pipe_operators.is_empty() || q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() {
        return Parsed::Other;
    }
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            let k = query_kind(&cte.query);
            if k != Parsed::Query {
                return k;
            }
        }
    }
    set_expr_kind(&q.body)
}

fn set_expr_kind(e: &SetExpr) -> Parsed {
    match e {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Parsed::Query,
        SetExpr::Query(q) => query_kind(q),
        SetExpr::SetOperation { left, right, .. } => match set_expr_kind(left) {
            Parsed::Query => set_expr_kind(right),
            other => other,
        },
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => Parsed::Write,
        #[allow(unreachable_patterns)]
        _ => Parsed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_writes_and_failures() {
        assert_eq!(parse_one("select a from t where b in (select 1)"), Parsed::Query);
        assert_eq!(parse_one("with c as (select 1) select * from c"), Parsed::Query);
        assert_eq!(parse_one("insert into t values (1)"), Parsed::Write);
        assert_eq!(parse_one("select from from from"), Parsed::Failed);
        assert_eq!(parse_one("select 1; select 2"), Parsed::Failed);
    }

    #[test]
    fn deep_nesting_fails_instead_of_overflowing_the_stack() {
        let deep = format!("select {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(parse_one(&deep), Parsed::Failed);
        let long = format!("select 1{}", "+1".repeat(MAX_PARSE_TOKENS / 2 - 4));
        assert_eq!(parse_one(&long), Parsed::Query);
    }
}
