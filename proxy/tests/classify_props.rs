//! Property tests of the statement classifier (`sluice::route::classify`).
//!
//! Statements come from a small grammar that mixes in the tricky forms: comments of every
//! kind in every gap, version comments (run and conditional), keywords inside strings and
//! quoted identifiers, nested selects, unions, CTEs, multi-statements, hints, user
//! variables, session functions, locking clauses, temporary tables, sequences, stored
//! functions, SET variants, transaction control. Each generated statement carries its
//! truth: whether it must go to the primary (writes, anything session-bound, locking
//! reads, SETs, …) or is a plain read.
//!
//! * `primary_statements_are_never_reads_and_reads_are_reads`: no statement that must go
//!   to the primary classifies as [`Kind::Read`], and every generated plain read does
//!   (so the first half cannot hold by calling everything unknown);
//! * `literals_whitespace_and_case_do_not_change_the_result`: two renderings of one
//!   statement that differ only in literal values, whitespace, comments and letter case
//!   classify identically, and the second one is a cache hit;
//! * `cache_hit_equals_uncached`: whatever the cache returns equals the uncached result.
//!
//! 1000 cases each by default (`PROPTEST_CASES` overrides).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;
use sluice::route::class::{Classified, Kind};
use sluice::route::classify::{classify_uncached, Classifier};

/// One piece of a generated statement.
#[derive(Clone, Debug)]
enum P {
    /// Keywords, identifiers, operators: rendered as written or in another letter case.
    Code(&'static str),
    /// Rendered exactly (comment and version-comment markers, hints).
    Fixed(&'static str),
    /// A number literal.
    Num,
    /// A string literal.
    Str,
    /// A gap: whitespace or a comment.
    Gap,
    /// Whitespace only (inside version comments).
    Space,
}

use P::*;

/// A generated statement (or multi-statement) and its truth.
#[derive(Clone, Debug)]
struct Gen {
    pieces: Vec<P>,
    /// Must run on the primary (never classify as a read).
    primary: bool,
    /// Without `USE` (whose result keeps the schema name as written, so it is not cached).
    cacheable: bool,
}

impl Gen {
    fn new(primary: bool, pieces: Vec<P>) -> Gen {
        Gen { pieces, primary, cacheable: true }
    }
    fn then(mut self, other: Gen) -> Gen {
        self.pieces.push(Gap);
        self.pieces.extend(other.pieces);
        self.primary |= other.primary;
        self.cacheable &= other.cacheable;
        self
    }
}

/// How to render gaps and literals: a different `Style` gives a text with the same key.
#[derive(Clone, Debug)]
struct Style {
    seed: u64,
    /// Strings whose lexing depends on the SQL mode (`'O\'Brien'`) may be used.
    backslashes: bool,
}

const NUMS: &[&str] = &["1", "42", "0", "3.14", "1e3", ".5", "18446744073709551615", "0x1F", "0b101"];
const STRS: &[&str] = &[
    "'x'",
    "''",
    "'UPDATE t SET a = 1'",
    "'; DELETE FROM t; '",
    "'it''s'",
    "'FOR UPDATE'",
    "'@v'",
    "'/* sluice: route=replica */'",
    "'-- '",
    "\"GET_LOCK('a', 1)\"",
    "'\\n\\\\'",
    "'a\"b'",
    "_utf8mb4'x'",
    "X'0F'",
    "N'x'",
];
const BACKSLASH_STRS: &[&str] = &["'O\\'Brien'", "'\\''"];
const GAPS: &[&str] = &[
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    " /* c */ ",
    " /* UPDATE t SET a = 1; */ ",
    " -- x; DELETE FROM t\n",
    " # FOR UPDATE @v\n",
    " /*+ NO_INDEX(t) */ ",
    "/**/",
    " --\t\n",
];

fn render(g: &Gen, style: &Style) -> String {
    let mut x = style.seed | 1;
    let mut next = move || {
        // xorshift64: a deterministic rendering per style
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::new();
    for p in &g.pieces {
        match p {
            Code(c) => {
                let r = next() % 3;
                // Letter case may change outside quotes; inside `…` and '…' too, since
                // identifiers and user variable names are case-insensitive.
                match r {
                    0 => out.push_str(c),
                    1 => out.push_str(&c.to_ascii_uppercase()),
                    _ => out.push_str(&c.to_ascii_lowercase()),
                }
            }
            Fixed(f) => out.push_str(f),
            Num => out.push_str(NUMS[next() as usize % NUMS.len()]),
            Str => {
                let n = next() as usize;
                if style.backslashes && n.is_multiple_of(5) {
                    out.push_str(BACKSLASH_STRS[n / 5 % BACKSLASH_STRS.len()]);
                } else {
                    out.push_str(STRS[n % STRS.len()]);
                }
            }
            Gap => out.push_str(GAPS[next() as usize % GAPS.len()]),
            Space => out.push_str([" ", "  ", "\n", "\t"][next() as usize % 4]),
        }
    }
    out
}

fn code(c: &'static str) -> Vec<P> {
    vec![Code(c)]
}

// --- expressions ------------------------------------------------------------------------

/// Expressions that keep a query a read.
fn read_atom() -> impl Strategy<Value = Vec<P>> {
    prop_oneof![
        Just(vec![Num]),
        Just(vec![Str]),
        Just(code("a")),
        Just(code("t.b")),
        Just(code("t.update")),
        Just(code("`update`")),
        Just(code("`select`.`for`")),
        Just(vec![Code("CONCAT("), Str, Code(","), Gap, Code("a)")]),
        Just(code("COUNT(*)")),
        Just(vec![Code("IFNULL(a,"), Gap, Num, Code(")")]),
        Just(code("NOW()")),
        Just(code("@@sql_mode")),
        Just(code("@@session.autocommit")),
        Just(vec![Code("JSON_EXTRACT(j,"), Gap, Str, Code(")")]),
        Just(vec![Code("CAST("), Num, Gap, Code("AS CHAR(10))")]),
        Just(vec![Code("IF ("), Code("a"), Code(","), Num, Code(","), Str, Code(")")]),
        Just(vec![Code("DATE_ADD(d,"), Gap, Code("INTERVAL"), Gap, Num, Gap, Code("DAY)")]),
        Just(vec![Code("a"), Gap, Code("IN"), Gap, Code("("), Num, Code(","), Num, Code(")")]),
        Just(vec![Code("a"), Gap, Code("BETWEEN"), Gap, Num, Gap, Code("AND"), Gap, Num]),
        Just(vec![Code("SUBSTRING(s"), Gap, Code("FROM"), Gap, Num, Gap, Code("FOR"), Gap, Num, Code(")")]),
        Just(vec![Code("ROW_NUMBER() OVER (ORDER BY a)")]),
    ]
}

/// Expressions that make a query session-bound.
fn bound_atom() -> impl Strategy<Value = Vec<P>> {
    prop_oneof![
        Just(code("@v")),
        Just(code("@`q v`")),
        Just(code("@'q'")),
        Just(code("(@v := 1)")),
        Just(code("LAST_INSERT_ID()")),
        Just(code("ROW_COUNT()")),
        Just(code("@@last_insert_id")),
        Just(code("@@identity")),
        Just(vec![Code("GET_LOCK("), Str, Code(","), Gap, Num, Code(")")]),
        Just(vec![Code("RELEASE_LOCK("), Str, Code(")")]),
        Just(code("FOUND_ROWS()")),
        Just(code("my_func(a)")),
        Just(code("db.f(1)")),
        Just(code("`f`(1)")),
        Just(vec![Code("COUNT"), Gap, Code("(*)")]),
        Just(code("NEXTVAL(s)")),
        Just(vec![Code("NEXT"), Gap, Code("VALUE"), Gap, Code("FOR"), Gap, Code("s")]),
        Just(vec![Code("PREVIOUS VALUE FOR s")]),
        Just(code("CONNECTION_ID()")),
        Just(code("@@gtid_binlog_pos")),
        Just(vec![Fixed("/*!"), Space, Code("@v"), Fixed("*/")]),
        Just(vec![Fixed("/*M!100100"), Space, Code("@v"), Fixed(" */")]),
    ]
}

/// An expression and whether it is session-bound; nested queries inside.
fn expr(depth: u32) -> BoxedStrategy<(Vec<P>, bool)> {
    let leaf = prop_oneof![
        4 => read_atom().prop_map(|p| (p, false)),
        1 => bound_atom().prop_map(|p| (p, true)),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => select(depth - 1).prop_map(|g| {
            let mut p = vec![Code("(")];
            p.extend(g.pieces);
            p.push(Code(")"));
            (p, g.primary)
        }),
        1 => (expr(depth - 1), expr(depth - 1)).prop_map(|((a, pa), (b, pb))| {
            let mut p = a;
            p.extend([Gap, Code("+"), Gap]);
            p.extend(b);
            (p, pa || pb)
        }),
    ]
    .boxed()
}

// --- queries ----------------------------------------------------------------------------

/// `SELECT [modifier] e, … FROM t [WHERE e = e] [locking] [INTO …]`.
fn select(depth: u32) -> BoxedStrategy<Gen> {
    let modifier = prop_oneof![
        3 => Just((vec![], false)),
        1 => Just((code("DISTINCT"), false)),
        1 => Just((vec![Fixed("/*!40001"), Space, Code("SQL_NO_CACHE"), Fixed("*/")], false)),
        1 => Just((vec![Fixed("/*M!100100 SQL_NO_CACHE */")], false)),
        1 => Just((code("SQL_CALC_FOUND_ROWS"), true)),
        1 => Just((code("HIGH_PRIORITY"), false)),
    ];
    let locking = prop_oneof![
        6 => Just((vec![], false)),
        1 => Just((code("FOR UPDATE"), true)),
        1 => Just((vec![Code("FOR"), Gap, Code("SHARE")], true)),
        1 => Just((vec![Code("LOCK IN SHARE MODE")], true)),
        1 => Just((vec![Code("FOR UPDATE SKIP LOCKED")], true)),
        1 => Just((vec![Fixed("/*!"), Space, Code("FOR UPDATE"), Space, Fixed("*/")], true)),
        1 => Just((vec![Fixed("/*!80000 FOR UPDATE */")], true)),
        1 => Just((vec![Fixed("/*M!100100"), Space, Code("FOR SHARE"), Fixed("*/")], true)),
    ];
    let into = prop_oneof![
        8 => Just((vec![], false)),
        1 => Just((code("INTO @x"), true)),
        1 => Just((vec![Code("INTO OUTFILE"), Gap, Str], true)),
    ];
    (modifier, prop::collection::vec(expr(depth), 1..4), prop::option::of((expr(depth), expr(depth))), locking, into)
        .prop_map(|((m, mp), exprs, cond, (l, lp), (i, ip))| {
            let mut p = vec![Code("SELECT"), Gap];
            let mut primary = mp || lp || ip;
            p.extend(m);
            p.push(Gap);
            for (n, (e, ep)) in exprs.into_iter().enumerate() {
                if n > 0 {
                    p.extend([Code(","), Gap]);
                }
                p.extend(e);
                primary |= ep;
            }
            p.extend([Gap, Code("FROM"), Gap, Code("t")]);
            if let Some(((a, pa), (b, pb))) = cond {
                p.extend([Gap, Code("WHERE"), Gap]);
                p.extend(a);
                p.extend([Gap, Code("="), Gap]);
                p.extend(b);
                primary |= pa || pb;
            }
            p.push(Gap);
            p.extend(l);
            p.push(Gap);
            p.extend(i);
            Gen::new(primary, p)
        })
        .boxed()
}

/// A query: a select, parenthesised, a union, or a CTE.
fn query() -> BoxedStrategy<Gen> {
    let s = select(2);
    prop_oneof![
        3 => s.clone(),
        1 => s.clone().prop_map(|g| {
            let mut p = vec![Code("(("), Gap];
            p.extend(g.pieces);
            p.extend([Gap, Code("))")]);
            Gen { pieces: p, ..g }
        }),
        1 => (s.clone(), s.clone()).prop_map(|(a, b)| {
            let mut p = vec![Code("(")];
            p.extend(a.pieces);
            p.extend([Code(")"), Gap, Code("UNION ALL"), Gap, Code("(")]);
            p.extend(b.pieces);
            p.push(Code(")"));
            Gen::new(a.primary || b.primary, p)
        }),
        1 => (s.clone(), s).prop_map(|(a, b)| {
            let mut p = vec![Code("WITH"), Gap, Code("c (x)"), Gap, Code("AS"), Gap, Code("(")];
            p.extend(a.pieces);
            p.extend([Code("),"), Gap, Code("d AS ("), Code("SELECT 1"), Code(")"), Gap]);
            p.extend(b.pieces);
            Gen::new(a.primary || b.primary, p)
        }),
    ]
    .boxed()
}

// --- other statements -------------------------------------------------------------------

/// Statements other than queries, with their truth.
fn other() -> impl Strategy<Value = Gen> {
    let reads: Vec<Vec<P>> = vec![
        code("SHOW TABLES"),
        vec![Code("SHOW FULL COLUMNS FROM t LIKE"), Gap, Str],
        code("SHOW CREATE TABLE t"),
        code("DESC t"),
        code("EXPLAIN SELECT a FROM t"),
        vec![Code("HELP"), Gap, Str],
        vec![Code("VALUES ROW("), Num, Code(")")],
        code("TABLE t"),
        vec![Code("SELECT"), Gap, Code("@@global.max_connections")],
    ];
    let primary: Vec<Vec<P>> = vec![
        vec![Code("INSERT INTO t VALUES ("), Num, Code(","), Gap, Str, Code(")")],
        vec![Code("UPDATE t SET a ="), Gap, Num, Gap, Code("WHERE id ="), Gap, Num],
        vec![Code("DELETE FROM t WHERE id ="), Gap, Num],
        vec![Code("REPLACE INTO t VALUES ("), Num, Code(")")],
        code("INSERT INTO t SELECT a FROM u"),
        code("CREATE TABLE x (a INT)"),
        code("ALTER TABLE t ADD COLUMN b INT"),
        code("DROP TABLE x"),
        code("TRUNCATE TABLE t"),
        code("CREATE TEMPORARY TABLE tmp (a INT)"),
        code("DROP TEMPORARY TABLE tmp"),
        code("LOCK TABLES t READ"),
        code("UNLOCK TABLES"),
        code("FLUSH TABLES WITH READ LOCK"),
        code("SET NAMES utf8mb4"),
        vec![Code("SET sql_mode ="), Gap, Str],
        vec![Code("SET @@session.wait_timeout ="), Gap, Num],
        vec![Code("SET @v ="), Gap, Num],
        vec![Code("SET @v :="), Gap, Code("(SELECT MAX(a) FROM t)")],
        vec![Code("SET GLOBAL max_connections ="), Gap, Num],
        code("SET sql_log_bin = 0"),
        vec![Code("SET autocommit ="), Gap, Num],
        code("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        vec![Code("SET STATEMENT max_statement_time ="), Gap, Num, Gap, Code("FOR UPDATE t SET a = 1")],
        code("SET sluice_route = primary"),
        code("BEGIN"),
        code("START TRANSACTION READ ONLY"),
        code("COMMIT"),
        code("ROLLBACK TO SAVEPOINT s"),
        code("SAVEPOINT s"),
        vec![Code("CALL p("), Num, Code(")")],
        vec![Code("DO"), Gap, Num],
        vec![Code("PREPARE s FROM"), Gap, Str],
        code("EXECUTE s"),
        code("DEALLOCATE PREPARE s"),
        code("HANDLER t OPEN"),
        vec![Code("XA START"), Gap, Str],
        code("SHOW STATUS"),
        code("SHOW FULL PROCESSLIST"),
        code("SHOW MASTER STATUS"),
        code("SHOW WARNINGS"),
        code("GET DIAGNOSTICS @n = NUMBER"),
        vec![Code("KILL"), Gap, Num],
        code("WITH c AS (SELECT 1) UPDATE t SET a = 1"),
        code("EXPLAIN UPDATE t SET a = 1"),
        code("ANALYZE TABLE t"),
        code("SHOW SLUICE STATUS"),
        vec![Code("SELECT"), Gap, Code("* FROM information_schema.processlist")],
        code("DO RELEASE_LOCK('a')"),
    ];
    prop_oneof![
        1 => prop::sample::select(reads).prop_map(|p| Gen::new(false, p)),
        4 => prop::sample::select(primary).prop_map(|p| Gen::new(true, p)),
        // The schema name keeps its case: `USE DB` and `USE db` differ.
        1 => Just(Gen { pieces: vec![Code("USE"), Gap, Fixed("db")], primary: true, cacheable: false }),
    ]
}

fn statement() -> impl Strategy<Value = Gen> {
    prop_oneof![3 => query(), 2 => other()]
}

/// One to three statements, with gaps, hints and `;` between them.
fn text() -> impl Strategy<Value = Gen> {
    let hint = prop_oneof![
        4 => Just(None),
        1 => Just(Some(" /* sluice: route=primary */ ")),
        1 => Just(Some("/*SLUICE : ROUTE = replica*/")),
    ];
    (prop::collection::vec(statement(), 1..4), hint, any::<bool>(), 0usize..8).prop_map(
        |(stmts, hint, trailing, at)| {
            let mut it = stmts.into_iter();
            let mut g = it.next().unwrap();
            g.pieces.insert(0, Gap);
            for s in it {
                g.pieces.extend([Gap, Fixed(";")]);
                g = g.then(s);
            }
            if trailing {
                g.pieces.extend([Gap, Fixed(";"), Gap]);
            }
            if let Some(h) = hint {
                // A hint goes into some gap (never inside a literal or identifier).
                let gaps: Vec<usize> = (0..g.pieces.len()).filter(|&i| matches!(g.pieces[i], Gap)).collect();
                let i = gaps[at % gaps.len()];
                g.pieces.insert(i + 1, Fixed(h));
            }
            g
        },
    )
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn describe(sql: &str, c: &Classified) -> String {
    format!("{sql:?} → {c:?}")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn primary_statements_are_never_reads_and_reads_are_reads(g in text(), seed in any::<u64>()) {
        let sql = render(&g, &Style { seed, backslashes: true });
        let c = classify_uncached(sql.as_bytes());
        if g.primary {
            prop_assert_ne!(c.kind, Kind::Read, "{}", describe(&sql, &c));
        } else {
            prop_assert_eq!(c.kind, Kind::Read, "{}", describe(&sql, &c));
        }
    }

    #[test]
    fn literals_whitespace_and_case_do_not_change_the_result(g in text(), a in any::<u64>(), b in any::<u64>()) {
        let one = render(&g, &Style { seed: a, backslashes: false });
        let two = render(&g, &Style { seed: b, backslashes: false });
        let (c1, c2) = (classify_uncached(one.as_bytes()), classify_uncached(two.as_bytes()));
        prop_assert_eq!(&c1, &c2, "\n{}\n{}", describe(&one, &c1), describe(&two, &c2));
        let cl = Classifier::new(64);
        let r1 = cl.classify(one.as_bytes());
        let r2 = cl.classify(two.as_bytes());
        prop_assert_eq!(&*r2, &c2);
        if g.cacheable && two.len() <= sluice::route::classify::MAX_CACHED_LEN && one.len() <= sluice::route::classify::MAX_CACHED_LEN {
            prop_assert!(Arc::ptr_eq(&r1, &r2), "second rendering missed the cache:\n{one:?}\n{two:?}");
            prop_assert_eq!(cl.stats().hits, 1);
        }
    }

    #[test]
    fn cache_hit_equals_uncached(g in prop::collection::vec(text(), 1..8), seeds in prop::collection::vec(any::<u64>(), 8)) {
        // A small cache shared by several texts, each classified twice, so hits, misses
        // and evictions all happen.
        let cl = Classifier::new(4);
        for round in 0..2 {
            for (i, g) in g.iter().enumerate() {
                let sql = render(g, &Style { seed: seeds[(i + round) % seeds.len()], backslashes: true });
                let cached = cl.classify(sql.as_bytes());
                let fresh = classify_uncached(sql.as_bytes());
                prop_assert_eq!(&*cached, &fresh, "{}", sql);
            }
        }
    }
}
