//! Expression evaluation and built-in functions.
//!
//! Owns the evaluator ([`eval`]) over an [`Env`] that supplies columns,
//! variables and stateful functions, and the two environments:
//! * [`ConstEnv`] — expressions outside a table scan (`SELECT <expr>`,
//!   `SET`, `DO`, INSERT values). It may mutate server/session state and
//!   block: `GET_LOCK`, `RELEASE_LOCK`, `MASTER_GTID_WAIT`,
//!   `WAIT_FOR_EXECUTED_GTID_SET`, `SLEEP`, `LAST_INSERT_ID(expr)`,
//!   `@x := …`. Results of side-effecting calls are memoised in the current
//!   statement so a re-executed (resumed) statement does not repeat them.
//! * [`RowEnv`] — per-row evaluation during scans (WHERE, projections,
//!   UPDATE SET, ORDER BY). Read-only; stateful functions that would mutate
//!   are refused.
//!
//! Semantics follow MySQL where cheap: three-valued logic, integer
//! arithmetic with BIGINT overflow errors (1690), `/` yields a double
//! (servers yield DECIMAL — a documented simplification), division by zero
//! yields NULL.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::ast::{BinOp, Expr, VarScope};
use super::config::Flavour;
use super::error::SqlError;
use super::gtid::{GtidPosition, GtidSet, MariaGtidPos};
use super::server::{IResult, Interrupt, Server};
use super::session::{CurrentStmt, Session, WaitResource, WaitState};
use super::storage::TableDef;
use super::value::{format_datetime, like_match, sql_cmp, Value};
use super::vars::{self, Scope};
use super::WaitReason;

/// What an expression can ask of its surroundings.
pub(crate) trait Env {
    fn flavour(&self) -> Flavour;
    fn column(&mut self, table: Option<&str>, name: &str) -> IResult<Value>;
    fn user_var(&self, name: &str) -> Value;
    fn assign_user_var(&mut self, name: &str, v: Value) -> IResult<()>;
    fn sys_var(&mut self, scope: VarScope, name: &str) -> IResult<Value>;
    /// Stateful functions; `Ok(None)` if `name` is not one of them.
    fn call(&mut self, name: &str, args: Vec<Value>) -> IResult<Option<Value>>;
    fn aggregate(&mut self, e: &Expr) -> IResult<Value>;
    fn current_db(&self) -> Option<String>;
    /// The expression uses state that lives on this connection (a user variable,
    /// `LAST_INSERT_ID()`, a user lock, …): noted for the simulation's routing checks
    /// (see [`Server::replica_execs`]).
    fn note_session_bound(&self);
    fn default_of(&mut self, _name: Option<&str>) -> IResult<Value> {
        Err(Interrupt::Err(SqlError::not_supported(
            self.flavour(),
            "DEFAULT in this context",
        )))
    }
}

/// Evaluate an expression.
pub(crate) fn eval(env: &mut dyn Env, e: &Expr) -> IResult<Value> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Column { table, name } => env.column(table.as_deref(), name)?,
        Expr::UserVar(n) => {
            env.note_session_bound();
            env.user_var(n)
        }
        Expr::SysVar { scope, name } => env.sys_var(*scope, name)?,
        Expr::Default => env.default_of(None)?,
        Expr::AssignUserVar { name, e } => {
            env.note_session_bound();
            let v = eval(env, e)?;
            env.assign_user_var(name, v.clone())?;
            v
        }
        Expr::Neg(x) => {
            let v = eval(env, x)?;
            match v {
                Value::Null => Value::Null,
                Value::Int(i) => match i.checked_neg() {
                    Some(n) => Value::Int(n),
                    None => return Err(SqlError::bigint_out_of_range(&format!("-({i})")).into()),
                },
                Value::UInt(u) => {
                    if u <= i64::MAX as u64 + 1 {
                        Value::Int((-(u as i128)) as i64)
                    } else {
                        return Err(SqlError::bigint_out_of_range(&format!("-({u})")).into());
                    }
                }
                Value::Double(d) => Value::Double(-d),
                b => Value::Double(-b.to_f64().unwrap()),
            }
        }
        Expr::Not(x) => match eval(env, x)?.truthy() {
            None => Value::Null,
            Some(b) => Value::Int((!b) as i64),
        },
        Expr::Bin {
            op: BinOp::And,
            l,
            r,
        } => {
            let a = eval(env, l)?.truthy();
            if a == Some(false) {
                return Ok(Value::Int(0));
            }
            let b = eval(env, r)?.truthy();
            match (a, b) {
                (_, Some(false)) => Value::Int(0),
                (Some(true), Some(true)) => Value::Int(1),
                _ => Value::Null,
            }
        }
        Expr::Bin {
            op: BinOp::Or,
            l,
            r,
        } => {
            let a = eval(env, l)?.truthy();
            if a == Some(true) {
                return Ok(Value::Int(1));
            }
            let b = eval(env, r)?.truthy();
            match (a, b) {
                (_, Some(true)) => Value::Int(1),
                (Some(false), Some(false)) => Value::Int(0),
                _ => Value::Null,
            }
        }
        Expr::Bin {
            op: BinOp::Xor,
            l,
            r,
        } => {
            let a = eval(env, l)?.truthy();
            let b = eval(env, r)?.truthy();
            match (a, b) {
                (Some(a), Some(b)) => Value::Int((a ^ b) as i64),
                _ => Value::Null,
            }
        }
        Expr::Bin { op, l, r } => {
            let a = eval(env, l)?;
            let b = eval(env, r)?;
            binop(*op, a, b)?
        }
        Expr::IsNull { e, negated } => {
            let v = eval(env, e)?;
            Value::Int((v.is_null() != *negated) as i64)
        }
        Expr::InList { e, list, negated } => {
            let v = eval(env, e)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            let mut found = false;
            for x in list {
                let w = eval(env, x)?;
                match sql_cmp(&v, &w) {
                    Some(Ordering::Equal) => {
                        found = true;
                        break;
                    }
                    None => saw_null = true,
                    _ => {}
                }
            }
            if found {
                Value::Int((!*negated) as i64)
            } else if saw_null {
                Value::Null
            } else {
                Value::Int(*negated as i64)
            }
        }
        Expr::Between { e, lo, hi, negated } => {
            let v = eval(env, e)?;
            let a = eval(env, lo)?;
            let b = eval(env, hi)?;
            match (sql_cmp(&v, &a), sql_cmp(&v, &b)) {
                (Some(x), Some(y)) => {
                    Value::Int(((x != Ordering::Less && y != Ordering::Greater) != *negated) as i64)
                }
                _ => Value::Null,
            }
        }
        Expr::Like { e, pat, negated } => {
            let v = eval(env, e)?;
            let p = eval(env, pat)?;
            match (v.to_text(), p.to_text()) {
                (Some(t), Some(p)) => Value::Int((like_match(&t, &p) != *negated) as i64),
                _ => Value::Null,
            }
        }
        Expr::Case {
            operand,
            whens,
            else_,
        } => {
            let op = match operand {
                Some(o) => Some(eval(env, o)?),
                None => None,
            };
            for (w, t) in whens {
                let c = eval(env, w)?;
                let hit = match &op {
                    Some(o) => sql_cmp(o, &c) == Some(Ordering::Equal),
                    None => c.truthy() == Some(true),
                };
                if hit {
                    return eval(env, t);
                }
            }
            match else_ {
                Some(e) => eval(env, e)?,
                None => Value::Null,
            }
        }
        Expr::CountStar | Expr::Agg { .. } => env.aggregate(e)?,
        Expr::Func { name, args } => {
            let upper = name.to_ascii_uppercase();
            if SESSION_BOUND_FUNCS.contains(&upper.as_str()) {
                env.note_session_bound();
            }
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(env, a)?);
            }
            if let Some(v) = env.call(&upper, vals.clone())? {
                return Ok(v);
            }
            match pure_func(env.flavour(), &upper, vals) {
                Some(r) => r?,
                None => {
                    return Err(match env.current_db() {
                        Some(db) => SqlError::function_does_not_exist(&db, name),
                        None => SqlError::no_db(),
                    }
                    .into())
                }
            }
        }
    })
}

fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::IntDiv => "DIV",
        BinOp::Mod => "%",
        _ => "?",
    }
}

/// Binary arithmetic / comparison.
pub(crate) fn binop(op: BinOp, a: Value, b: Value) -> Result<Value, SqlError> {
    use BinOp::*;
    match op {
        Eq | Ne | Lt | Le | Gt | Ge => Ok(match sql_cmp(&a, &b) {
            None => Value::Null,
            Some(o) => Value::Int(match op {
                Eq => o == Ordering::Equal,
                Ne => o != Ordering::Equal,
                Lt => o == Ordering::Less,
                Le => o != Ordering::Greater,
                Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            } as i64),
        }),
        NullSafeEq => Ok(Value::Int(match (a.is_null(), b.is_null()) {
            (true, true) => true,
            (false, false) => sql_cmp(&a, &b) == Some(Ordering::Equal),
            _ => false,
        } as i64)),
        Add | Sub | Mul | Div | IntDiv | Mod => {
            if a.is_null() || b.is_null() {
                return Ok(Value::Null);
            }
            let ints = matches!(a, Value::Int(_) | Value::UInt(_))
                && matches!(b, Value::Int(_) | Value::UInt(_));
            let overflow =
                || SqlError::bigint_out_of_range(&format!("({} {} {})", a, op_text(op), b));
            if ints {
                let x = a.to_i128().unwrap();
                let y = b.to_i128().unwrap();
                let r = match op {
                    Add => x.checked_add(y),
                    Sub => x.checked_sub(y),
                    Mul => x.checked_mul(y),
                    IntDiv => {
                        if y == 0 {
                            return Ok(Value::Null);
                        }
                        Some(x / y)
                    }
                    Mod => {
                        if y == 0 {
                            return Ok(Value::Null);
                        }
                        Some(x % y)
                    }
                    _ => {
                        if y == 0 {
                            return Ok(Value::Null);
                        }
                        return Ok(Value::Double(x as f64 / y as f64));
                    }
                };
                let unsigned = matches!(a, Value::UInt(_)) || matches!(b, Value::UInt(_));
                return match r {
                    Some(v) if unsigned && (0..=u64::MAX as i128).contains(&v) => {
                        Ok(Value::UInt(v as u64))
                    }
                    Some(v) if !unsigned && (i64::MIN as i128..=i64::MAX as i128).contains(&v) => {
                        Ok(Value::Int(v as i64))
                    }
                    _ if unsigned => Err(SqlError::new(
                        super::error::codes::ER_DATA_OUT_OF_RANGE,
                        "22003",
                        format!(
                            "BIGINT UNSIGNED value is out of range in '({} {} {})'",
                            a,
                            op_text(op),
                            b
                        ),
                    )),
                    _ => Err(overflow()),
                };
            }
            let x = a.to_f64().unwrap();
            let y = b.to_f64().unwrap();
            Ok(match op {
                Add => Value::Double(x + y),
                Sub => Value::Double(x - y),
                Mul => Value::Double(x * y),
                Div => {
                    if y == 0.0 {
                        Value::Null
                    } else {
                        Value::Double(x / y)
                    }
                }
                IntDiv => {
                    if y == 0.0 {
                        Value::Null
                    } else {
                        Value::from_i128((x / y).trunc() as i128).ok_or_else(overflow)?
                    }
                }
                _ => {
                    if y == 0.0 {
                        Value::Null
                    } else {
                        Value::Double(x % y)
                    }
                }
            })
        }
        And | Or | Xor => unreachable!("logical operators are evaluated lazily"),
    }
}

fn text(v: &Value) -> String {
    v.as_string().unwrap_or_default()
}

/// Side-effect-free built-in functions. `None` = unknown function.
pub(crate) fn pure_func(f: Flavour, name: &str, a: Vec<Value>) -> Option<Result<Value, SqlError>> {
    let any_null = a.iter().any(|v| v.is_null());
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
    let r: Result<Value, SqlError> = match name {
        "CONCAT" => Ok(if any_null {
            Value::Null
        } else {
            Value::Bytes(a.iter().flat_map(|v| v.to_text().unwrap()).collect())
        }),
        "CONCAT_WS" => {
            if a.is_empty() || a[0].is_null() {
                Ok(Value::Null)
            } else {
                let sep = a[0].to_text().unwrap();
                let parts: Vec<Vec<u8>> = a[1..].iter().filter_map(|v| v.to_text()).collect();
                Ok(Value::Bytes(parts.join(&sep[..])))
            }
        }
        "COALESCE" => Ok(a
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null)),
        "IFNULL" | "NVL" => Ok(if arg(0).is_null() { arg(1) } else { arg(0) }),
        "NULLIF" => Ok(if sql_cmp(&arg(0), &arg(1)) == Some(Ordering::Equal) {
            Value::Null
        } else {
            arg(0)
        }),
        "IF" => Ok(if arg(0).truthy() == Some(true) {
            arg(1)
        } else {
            arg(2)
        }),
        "ISTRUE" => Ok(Value::Int((arg(0).truthy() == Some(true)) as i64)),
        "ISFALSE" => Ok(Value::Int((arg(0).truthy() == Some(false)) as i64)),
        "LENGTH" | "OCTET_LENGTH" => Ok(if any_null {
            Value::Null
        } else {
            Value::Int(arg(0).to_text().unwrap().len() as i64)
        }),
        "CHAR_LENGTH" | "CHARACTER_LENGTH" => Ok(if any_null {
            Value::Null
        } else {
            Value::Int(text(&arg(0)).chars().count() as i64)
        }),
        "UPPER" | "UCASE" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).to_uppercase())
        }),
        "LOWER" | "LCASE" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).to_lowercase())
        }),
        "TRIM" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).trim_matches(' '))
        }),
        "LTRIM" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).trim_start_matches(' '))
        }),
        "RTRIM" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).trim_end_matches(' '))
        }),
        "REPEAT" => Ok(if any_null {
            Value::Null
        } else {
            Value::str(text(&arg(0)).repeat(arg(1).to_i64().unwrap().clamp(0, 1 << 20) as usize))
        }),
        "SUBSTRING" | "SUBSTR" | "MID" => {
            if any_null {
                Ok(Value::Null)
            } else {
                let s: Vec<char> = text(&arg(0)).chars().collect();
                let pos = arg(1).to_i64().unwrap();
                let len = if a.len() > 2 {
                    arg(2).to_i64().unwrap()
                } else {
                    i64::MAX
                };
                let start = if pos > 0 {
                    pos - 1
                } else if pos < 0 {
                    s.len() as i64 + pos
                } else {
                    s.len() as i64
                };
                if start < 0 || start >= s.len() as i64 || len <= 0 {
                    Ok(Value::str(""))
                } else {
                    let end = (start.saturating_add(len)).min(s.len() as i64);
                    Ok(Value::str(
                        s[start as usize..end as usize].iter().collect::<String>(),
                    ))
                }
            }
        }
        "ABS" => Ok(match arg(0) {
            Value::Null => Value::Null,
            Value::Int(i) => Value::from_i128((i as i128).abs()).unwrap(),
            Value::UInt(u) => Value::UInt(u),
            v => Value::Double(v.to_f64().unwrap().abs()),
        }),
        "FLOOR" | "CEIL" | "CEILING" | "ROUND" | "TRUNCATE" => Ok(match arg(0) {
            Value::Null => Value::Null,
            v @ (Value::Int(_) | Value::UInt(_)) => v,
            v => {
                let d = v.to_f64().unwrap();
                let places = if a.len() > 1 {
                    arg(1).to_i64().unwrap_or(0)
                } else {
                    0
                };
                let m = 10f64.powi(places.clamp(-30, 30) as i32);
                let r = match name {
                    "FLOOR" => d.floor(),
                    "CEIL" | "CEILING" => d.ceil(),
                    "TRUNCATE" => (d * m).trunc() / m,
                    _ => (d * m).round() / m,
                };
                if places == 0 || matches!(name, "FLOOR" | "CEIL" | "CEILING") {
                    Value::from_i128(r as i128).unwrap_or(Value::Double(r))
                } else {
                    Value::Double(r)
                }
            }
        }),
        "GREATEST" | "LEAST" => {
            if any_null || a.is_empty() {
                Ok(Value::Null)
            } else {
                let mut best = a[0].clone();
                for v in &a[1..] {
                    let o = sql_cmp(v, &best).unwrap_or(Ordering::Equal);
                    if (name == "GREATEST" && o == Ordering::Greater)
                        || (name == "LEAST" && o == Ordering::Less)
                    {
                        best = v.clone();
                    }
                }
                Ok(best)
            }
        }
        "CAST" => {
            let v = arg(0);
            let ty = text(&arg(1));
            if v.is_null() {
                Ok(Value::Null)
            } else {
                Ok(match ty.as_str() {
                    "SIGNED" => Value::Int(v.to_i64().unwrap()),
                    "UNSIGNED" => {
                        Value::UInt(v.to_i128().unwrap().clamp(0, u64::MAX as i128) as u64)
                    }
                    "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" => Value::Double(v.to_f64().unwrap()),
                    _ => Value::Bytes(v.to_text().unwrap()),
                })
            }
        }
        "HEX" => Ok(match arg(0) {
            Value::Null => Value::Null,
            Value::Int(i) => Value::str(format!("{:X}", i)),
            Value::UInt(u) => Value::str(format!("{:X}", u)),
            v => Value::str(
                v.to_text()
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>(),
            ),
        }),
        "GTID_SUBSET" if f == Flavour::MySql8 => {
            if any_null {
                Ok(Value::Null)
            } else {
                let x = GtidSet::parse(&text(&arg(0)))
                    .map_err(|_| SqlError::malformed_gtid_set(&text(&arg(0))));
                let y = GtidSet::parse(&text(&arg(1)))
                    .map_err(|_| SqlError::malformed_gtid_set(&text(&arg(1))));
                match (x, y) {
                    (Ok(x), Ok(y)) => Ok(Value::Int(x.is_subset(&y) as i64)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        }
        "GTID_SUBTRACT" if f == Flavour::MySql8 => {
            if any_null {
                Ok(Value::Null)
            } else {
                let x = GtidSet::parse(&text(&arg(0)))
                    .map_err(|_| SqlError::malformed_gtid_set(&text(&arg(0))));
                let y = GtidSet::parse(&text(&arg(1)))
                    .map_err(|_| SqlError::malformed_gtid_set(&text(&arg(1))));
                match (x, y) {
                    (Ok(x), Ok(y)) => Ok(Value::str(x.subtract(&y).to_string())),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        }
        _ => return None,
    };
    Some(r)
}

/// Reads of `@@var` shared by both environments.
pub(crate) fn read_sysvar(
    srv: &Server,
    sess: &Session,
    scope: VarScope,
    name: &str,
) -> Result<Value, SqlError> {
    let d =
        vars::lookup(srv.flavour, name).ok_or_else(|| SqlError::unknown_system_variable(name))?;
    match scope {
        VarScope::Session if d.scope == Scope::Global => {
            Err(SqlError::incorrect_global_local_var(name, "GLOBAL"))
        }
        VarScope::Global if d.scope == Scope::Session => {
            Err(SqlError::incorrect_global_local_var(name, "SESSION"))
        }
        _ => Ok(srv.read_var(sess, d, scope == VarScope::Global)),
    }
}

/// Stateful but read-only functions shared by both environments.
fn common_func(
    srv: &Server,
    sess: &Session,
    name: &str,
    a: &[Value],
    now: u64,
) -> Option<Result<Value, SqlError>> {
    let now_ms = srv.cfg.epoch_unix_ms + now;
    Some(Ok(match name {
        "CONNECTION_ID" => Value::UInt(sess.id as u64),
        "DATABASE" | "SCHEMA" => sess.db.as_ref().map(Value::str).unwrap_or(Value::Null),
        "USER" | "SESSION_USER" | "SYSTEM_USER" => {
            Value::str(format!("{}@{}", sess.user, sess.host))
        }
        "CURRENT_USER" => Value::str(format!("{}@%", sess.user)),
        "VERSION" => Value::str(srv.cfg.version()),
        "NOW" | "CURRENT_TIMESTAMP" | "SYSDATE" | "LOCALTIME" | "LOCALTIMESTAMP"
        | "UTC_TIMESTAMP" => Value::str(format_datetime(now_ms)),
        "CURDATE" | "CURRENT_DATE" | "UTC_DATE" => Value::str(&format_datetime(now_ms)[..10]),
        "CURTIME" | "CURRENT_TIME" => Value::str(&format_datetime(now_ms)[11..]),
        "UNIX_TIMESTAMP" if a.is_empty() => Value::UInt(now_ms / 1000),
        "LAST_INSERT_ID" if a.is_empty() => Value::UInt(sess.last_insert_id),
        "ROW_COUNT" => Value::Int(sess.row_count),
        "FOUND_ROWS" => Value::Int(0),
        "IS_USED_LOCK" => match a.first().and_then(|v| v.as_string()) {
            None => Value::Null,
            Some(n) => srv
                .locks
                .user_lock_holder(&n)
                .map(|h| Value::UInt(h as u64))
                .unwrap_or(Value::Null),
        },
        "IS_FREE_LOCK" => match a.first().and_then(|v| v.as_string()) {
            None => Value::Null,
            Some(n) => Value::Int(srv.locks.user_lock_holder(&n).is_none() as i64),
        },
        _ => return None,
    }))
}

/// Functions whose answer or effect belongs to the connection (what a routing proxy
/// must keep on the session's primary connection).
const SESSION_BOUND_FUNCS: &[&str] = &[
    "LAST_INSERT_ID",
    "ROW_COUNT",
    "FOUND_ROWS",
    "CONNECTION_ID",
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
];

const MUTATING: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "MASTER_GTID_WAIT",
    "WAIT_FOR_EXECUTED_GTID_SET",
    "SLEEP",
    "LAST_INSERT_ID",
    "RAND",
    "UUID",
    "UUID_SHORT",
];

fn flavour_has(f: Flavour, name: &str) -> bool {
    match name {
        "MASTER_GTID_WAIT" => f == Flavour::MariaDb,
        "WAIT_FOR_EXECUTED_GTID_SET" => f == Flavour::MySql8,
        _ => true,
    }
}

// ----------------------------------------------------------------------
// ConstEnv
// ----------------------------------------------------------------------

/// Environment for expressions evaluated outside a table scan.
pub(crate) struct ConstEnv<'a> {
    pub srv: &'a mut Server,
    pub sess: &'a mut Session,
    pub cur: &'a mut CurrentStmt,
    pub now: u64,
}

impl ConstEnv<'_> {
    fn memo(&mut self) -> Option<Value> {
        let v = self.cur.memo.get(self.cur.memo_pos).cloned();
        if v.is_some() {
            self.cur.memo_pos += 1;
        }
        v
    }

    fn remember(&mut self, v: Value) -> IResult<Option<Value>> {
        self.cur.memo.push(v.clone());
        self.cur.memo_pos += 1;
        Ok(Some(v))
    }

    /// Deadline `secs` after the statement started; `None` = wait forever.
    fn deadline(&self, secs: Option<f64>) -> Option<u64> {
        secs.map(|s| self.cur.started_at + (s * 1000.0).round().max(0.0) as u64)
    }
}

impl Env for ConstEnv<'_> {
    fn flavour(&self) -> Flavour {
        self.srv.flavour
    }

    fn column(&mut self, table: Option<&str>, name: &str) -> IResult<Value> {
        let full = match table {
            Some(t) => format!("{t}.{name}"),
            None => name.to_string(),
        };
        Err(SqlError::unknown_column(&full, "field list").into())
    }

    fn user_var(&self, name: &str) -> Value {
        self.sess
            .user_vars
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn assign_user_var(&mut self, name: &str, v: Value) -> IResult<()> {
        self.sess.user_vars.insert(name.to_lowercase(), v);
        self.cur.state_changed = true;
        Ok(())
    }

    fn sys_var(&mut self, scope: VarScope, name: &str) -> IResult<Value> {
        Ok(read_sysvar(self.srv, self.sess, scope, name)?)
    }

    fn current_db(&self) -> Option<String> {
        self.sess.db.clone()
    }

    fn note_session_bound(&self) {
        self.sess.session_bound_used.set(true);
    }

    fn aggregate(&mut self, e: &Expr) -> IResult<Value> {
        // Aggregates without FROM aggregate over one implicit row.
        match e {
            Expr::CountStar => Ok(Value::Int(1)),
            Expr::Agg { func, arg, .. } => {
                let v = eval(self, arg)?;
                Ok(match func {
                    super::ast::AggFunc::Count => Value::Int(!v.is_null() as i64),
                    _ => v,
                })
            }
            _ => unreachable!(),
        }
    }

    fn call(&mut self, name: &str, a: Vec<Value>) -> IResult<Option<Value>> {
        let f = self.srv.flavour;
        if !flavour_has(f, name) {
            return Ok(None);
        }
        let arg_secs = |v: Option<&Value>| -> Option<f64> {
            match v {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let s = v.to_f64().unwrap();
                    if s < 0.0 {
                        None
                    } else {
                        Some(s)
                    }
                }
            }
        };
        match name {
            "LAST_INSERT_ID" if !a.is_empty() => {
                let v = a[0].to_i128().map(|x| x.clamp(0, u64::MAX as i128) as u64);
                match v {
                    None => Ok(Some(Value::Null)),
                    Some(v) => {
                        self.sess.last_insert_id = v;
                        Ok(Some(Value::UInt(v)))
                    }
                }
            }
            "GET_LOCK" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let Some(lock) = a.first().and_then(|v| v.as_string()) else {
                    return self.remember(Value::Null);
                };
                if f == Flavour::MySql8 && (lock.is_empty() || lock.chars().count() > 64) {
                    return Err(SqlError::new(
                        3057,
                        "42000",
                        format!("Incorrect user-level lock name '{lock}'."),
                    )
                    .into());
                }
                let secs = arg_secs(a.get(1));
                match self.srv.locks.get_user_lock(self.sess.id, &lock) {
                    Ok(()) => self.remember(Value::Int(1)),
                    Err(holder) => {
                        if self.srv.would_deadlock(self.sess.id, holder) {
                            return Err(match f {
                                Flavour::MySql8 => SqlError::new(
                                    3058,
                                    "40001",
                                    "Deadlock found when trying to get user-level lock; try rolling back transaction/releasing locks and restarting lock acquisition.",
                                ),
                                Flavour::MariaDb => SqlError::deadlock(),
                            }
                            .into());
                        }
                        let deadline = self.deadline(secs);
                        if deadline.is_some_and(|d| self.now >= d) {
                            return self.remember(Value::Int(0));
                        }
                        Err(Interrupt::Block(WaitState {
                            reason: WaitReason::UserLock {
                                name: lock.clone(),
                                holder,
                            },
                            resource: WaitResource::UserLock(lock),
                            deadline,
                        }))
                    }
                }
            }
            "RELEASE_LOCK" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let Some(lock) = a.first().and_then(|v| v.as_string()) else {
                    return self.remember(Value::Null);
                };
                let r = match self.srv.locks.release_user_lock(self.sess.id, &lock) {
                    Some(true) => {
                        self.srv.bump();
                        Value::Int(1)
                    }
                    Some(false) => Value::Int(0),
                    None => Value::Null,
                };
                self.remember(r)
            }
            "RELEASE_ALL_LOCKS" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let n = self.srv.locks.release_all_user_locks(self.sess.id);
                if n > 0 {
                    self.srv.bump();
                }
                self.remember(Value::Int(n as i64))
            }
            "SLEEP" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let secs = arg_secs(a.first()).unwrap_or(0.0);
                let deadline = self.deadline(Some(secs)).unwrap();
                if self.now >= deadline {
                    return self.remember(Value::Int(0));
                }
                Err(Interrupt::Block(WaitState {
                    reason: WaitReason::Sleep,
                    resource: WaitResource::Timer,
                    deadline: Some(deadline),
                }))
            }
            "MASTER_GTID_WAIT" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let Some(text) = a.first().and_then(|v| v.as_string()) else {
                    return self.remember(Value::Null);
                };
                let pos: MariaGtidPos =
                    text.parse().map_err(|_| SqlError::incorrect_gtid_state())?;
                let target = GtidPosition::MariaDb(pos);
                if self.srv.gtid_wait_reached(&target) {
                    return self.remember(Value::Int(0));
                }
                let deadline = self.deadline(arg_secs(a.get(1)));
                if deadline.is_some_and(|d| self.now >= d) {
                    return self.remember(Value::Int(-1));
                }
                Err(Interrupt::Block(WaitState {
                    reason: WaitReason::GtidWait { target: text },
                    resource: WaitResource::Gtid(target),
                    deadline,
                }))
            }
            "WAIT_FOR_EXECUTED_GTID_SET" => {
                if let Some(v) = self.memo() {
                    return Ok(Some(v));
                }
                let Some(text) = a.first().and_then(|v| v.as_string()) else {
                    return self.remember(Value::Null);
                };
                let set = GtidSet::parse(&text).map_err(|_| SqlError::malformed_gtid_set(&text))?;
                let secs = match a.get(1) {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        let s = v.to_f64().unwrap();
                        if s < 0.0 {
                            return Err(
                                SqlError::wrong_arguments("WAIT_FOR_EXECUTED_GTID_SET.").into()
                            );
                        }
                        if s == 0.0 {
                            None
                        } else {
                            Some(s)
                        }
                    }
                };
                let target = GtidPosition::MySql(set);
                if self.srv.gtid_wait_reached(&target) {
                    return self.remember(Value::Int(0));
                }
                let deadline = self.deadline(secs);
                if deadline.is_some_and(|d| self.now >= d) {
                    return self.remember(Value::Int(1));
                }
                Err(Interrupt::Block(WaitState {
                    reason: WaitReason::GtidWait { target: text },
                    resource: WaitResource::Gtid(target),
                    deadline,
                }))
            }
            "RAND" | "UUID" | "UUID_SHORT" => {
                Err(SqlError::not_supported(f, &format!("{name}() in the simulator")).into())
            }
            _ => Ok(common_func(self.srv, self.sess, name, &a, self.now).transpose()?),
        }
    }
}

// ----------------------------------------------------------------------
// RowEnv
// ----------------------------------------------------------------------

/// Environment for per-row evaluation during a table scan.
pub(crate) struct RowEnv<'a> {
    pub srv: &'a Server,
    pub sess: &'a Session,
    pub def: &'a TableDef,
    /// Names the table can be referred to by (alias, real name).
    pub names: (&'a str, &'a str),
    pub row: Option<&'a [Value]>,
    pub context: &'static str,
    pub aggs: Option<&'a BTreeMap<usize, Value>>,
    pub now: u64,
}

impl Env for RowEnv<'_> {
    fn flavour(&self) -> Flavour {
        self.srv.flavour
    }

    fn column(&mut self, table: Option<&str>, name: &str) -> IResult<Value> {
        let full = || match table {
            Some(t) => format!("{t}.{name}"),
            None => name.to_string(),
        };
        if let Some(t) = table {
            if !(t.eq_ignore_ascii_case(self.names.0) || t.eq_ignore_ascii_case(self.names.1)) {
                return Err(SqlError::unknown_column(&full(), self.context).into());
            }
        }
        let idx = self
            .def
            .col_index(name)
            .ok_or_else(|| SqlError::unknown_column(&full(), self.context))?;
        Ok(self.row.map(|r| r[idx].clone()).unwrap_or(Value::Null))
    }

    fn user_var(&self, name: &str) -> Value {
        self.sess
            .user_vars
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn assign_user_var(&mut self, _name: &str, _v: Value) -> IResult<()> {
        Err(SqlError::not_supported(
            self.srv.flavour,
            "user variable assignment in a table query",
        )
        .into())
    }

    fn sys_var(&mut self, scope: VarScope, name: &str) -> IResult<Value> {
        Ok(read_sysvar(self.srv, self.sess, scope, name)?)
    }

    fn current_db(&self) -> Option<String> {
        self.sess.db.clone()
    }

    fn note_session_bound(&self) {
        self.sess.session_bound_used.set(true);
    }

    fn aggregate(&mut self, e: &Expr) -> IResult<Value> {
        match self.aggs {
            Some(m) => Ok(m
                .get(&(e as *const Expr as usize))
                .cloned()
                .unwrap_or(Value::Null)),
            None => Err(SqlError::new(1111, "HY000", "Invalid use of group function").into()),
        }
    }

    fn call(&mut self, name: &str, a: Vec<Value>) -> IResult<Option<Value>> {
        let f = self.srv.flavour;
        if !flavour_has(f, name) {
            return Ok(None);
        }
        if MUTATING.contains(&name) && !(name == "LAST_INSERT_ID" && a.is_empty()) {
            return Err(SqlError::not_supported(f, &format!("{name}() in a table query")).into());
        }
        Ok(common_func(self.srv, self.sess, name, &a, self.now).transpose()?)
    }

    fn default_of(&mut self, _name: Option<&str>) -> IResult<Value> {
        Err(SqlError::not_supported(self.srv.flavour, "DEFAULT in this context").into())
    }
}

/// Evaluate `VALUES(col)` references for INSERT … ON DUPLICATE KEY UPDATE
/// by rewriting them into literals from the would-be-inserted row.
pub(crate) fn substitute_values(e: &Expr, def: &TableDef, new_row: &[Value]) -> Expr {
    match e {
        Expr::Func { name, args } if name.eq_ignore_ascii_case("VALUES") && args.len() == 1 => {
            if let Expr::Column { name: col, .. } = &args[0] {
                if let Some(i) = def.col_index(col) {
                    return Expr::Lit(new_row[i].clone());
                }
            }
            e.clone()
        }
        Expr::Neg(x) => Expr::Neg(Box::new(substitute_values(x, def, new_row))),
        Expr::Not(x) => Expr::Not(Box::new(substitute_values(x, def, new_row))),
        Expr::Bin { op, l, r } => Expr::Bin {
            op: *op,
            l: Box::new(substitute_values(l, def, new_row)),
            r: Box::new(substitute_values(r, def, new_row)),
        },
        Expr::Func { name, args } => Expr::Func {
            name: name.clone(),
            args: args
                .iter()
                .map(|a| substitute_values(a, def, new_row))
                .collect(),
        },
        Expr::Case {
            operand,
            whens,
            else_,
        } => Expr::Case {
            operand: operand
                .as_ref()
                .map(|o| Box::new(substitute_values(o, def, new_row))),
            whens: whens
                .iter()
                .map(|(a, b)| {
                    (
                        substitute_values(a, def, new_row),
                        substitute_values(b, def, new_row),
                    )
                })
                .collect(),
            else_: else_
                .as_ref()
                .map(|x| Box::new(substitute_values(x, def, new_row))),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_overflow_is_error_1690() {
        let e = binop(BinOp::Add, Value::Int(i64::MAX), Value::Int(1)).unwrap_err();
        assert_eq!(e.code, 1690);
        assert_eq!(
            e.message,
            "BIGINT value is out of range in '(9223372036854775807 + 1)'"
        );
    }

    #[test]
    fn division_by_zero_is_null_and_division_is_fractional() {
        assert_eq!(
            binop(BinOp::Div, Value::Int(1), Value::Int(0)).unwrap(),
            Value::Null
        );
        assert_eq!(
            binop(BinOp::Div, Value::Int(1), Value::Int(2)).unwrap(),
            Value::Double(0.5)
        );
        assert_eq!(
            binop(BinOp::IntDiv, Value::Int(7), Value::Int(2)).unwrap(),
            Value::Int(3)
        );
    }

    #[test]
    fn comparisons_with_null_are_unknown_but_null_safe_equal_is_not() {
        assert_eq!(
            binop(BinOp::Eq, Value::Null, Value::Int(1)).unwrap(),
            Value::Null
        );
        assert_eq!(
            binop(BinOp::NullSafeEq, Value::Null, Value::Null).unwrap(),
            Value::Int(1)
        );
    }

    #[test]
    fn pure_string_functions() {
        let f = Flavour::MySql8;
        assert_eq!(
            pure_func(f, "CONCAT", vec![Value::str("a"), Value::Int(1)])
                .unwrap()
                .unwrap(),
            Value::str("a1")
        );
        assert_eq!(
            pure_func(f, "CONCAT", vec![Value::str("a"), Value::Null])
                .unwrap()
                .unwrap(),
            Value::Null
        );
        assert_eq!(
            pure_func(
                f,
                "SUBSTRING",
                vec![Value::str("hello"), Value::Int(2), Value::Int(3)]
            )
            .unwrap()
            .unwrap(),
            Value::str("ell")
        );
        assert!(pure_func(f, "NO_SUCH_FN", vec![]).is_none());
        assert_eq!(
            pure_func(
                f,
                "GTID_SUBSET",
                vec![
                    Value::str("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"),
                    Value::str("3E11FA47-71CA-11E1-9E33-C80AA9429562:21-57")
                ]
            )
            .unwrap()
            .unwrap(),
            Value::Int(1)
        );
        assert!(pure_func(Flavour::MariaDb, "GTID_SUBSET", vec![]).is_none());
    }
}
