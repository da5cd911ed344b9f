//! Abstract syntax tree of the SQL subset the engine understands.
//!
//! Owns the statement and expression types produced by
//! [`parser`](super::parser) and consumed by the executor. Pure data.

use super::storage::ColType;
use super::value::Value;

/// `@@var` scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarScope {
    /// `@@x` / `SET x` (session if the variable has a session value).
    Default,
    Session,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
    Eq,
    NullSafeEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Value),
    Column {
        table: Option<String>,
        name: String,
    },
    UserVar(String),
    SysVar {
        scope: VarScope,
        name: String,
    },
    /// `DEFAULT` (in INSERT values / SET).
    Default,
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin {
        op: BinOp,
        l: Box<Expr>,
        r: Box<Expr>,
    },
    IsNull {
        e: Box<Expr>,
        negated: bool,
    },
    InList {
        e: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        e: Box<Expr>,
        lo: Box<Expr>,
        hi: Box<Expr>,
        negated: bool,
    },
    Like {
        e: Box<Expr>,
        pat: Box<Expr>,
        negated: bool,
    },
    /// Function call; `name` is upper-cased.
    Func {
        name: String,
        args: Vec<Expr>,
    },
    /// `COUNT(*)`.
    CountStar,
    Agg {
        func: AggFunc,
        arg: Box<Expr>,
        distinct: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    /// `@x := expr` inside an expression.
    AssignUserVar {
        name: String,
        e: Box<Expr>,
    },
}

impl Expr {
    /// Whether the expression contains an aggregate.
    pub fn has_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            if matches!(e, Expr::Agg { .. } | Expr::CountStar) {
                found = true;
            }
        });
        found
    }

    /// Pre-order walk.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(e) | Expr::Not(e) => e.walk(f),
            Expr::Bin { l, r, .. } => {
                l.walk(f);
                r.walk(f);
            }
            Expr::IsNull { e, .. } => e.walk(f),
            Expr::InList { e, list, .. } => {
                e.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Expr::Between { e, lo, hi, .. } => {
                e.walk(f);
                lo.walk(f);
                hi.walk(f);
            }
            Expr::Like { e, pat, .. } => {
                e.walk(f);
                pat.walk(f);
            }
            Expr::Func { args, .. } => args.iter().for_each(|x| x.walk(f)),
            Expr::Agg { arg, .. } => arg.walk(f),
            Expr::Case {
                operand,
                whens,
                else_,
            } => {
                if let Some(o) = operand {
                    o.walk(f);
                }
                for (a, b) in whens {
                    a.walk(f);
                    b.walk(f);
                }
                if let Some(e) = else_ {
                    e.walk(f);
                }
            }
            Expr::AssignUserVar { e, .. } => e.walk(f),
            Expr::Lit(_)
            | Expr::Column { .. }
            | Expr::UserVar(_)
            | Expr::SysVar { .. }
            | Expr::Default
            | Expr::CountStar => {}
        }
    }
}

/// `[db.]name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    pub db: Option<String>,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectExpr {
    /// `*` or `t.*`.
    Star(Option<String>),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SelectItem {
    pub expr: SelectExpr,
    pub alias: Option<String>,
    /// Source text of the expression (the column name when unaliased).
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    ForUpdate,
    /// `FOR SHARE` / `LOCK IN SHARE MODE` (modelled as an exclusive lock).
    ForShare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    Wait,
    NoWait,
    SkipLocked,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    pub expr: Expr,
    pub desc: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    pub items: Vec<SelectItem>,
    pub from: Option<TableName>,
    pub alias: Option<String>,
    pub where_: Option<Expr>,
    pub order_by: Vec<OrderBy>,
    /// (offset, count)
    pub limit: Option<(u64, u64)>,
    pub lock: Option<(LockMode, LockWait)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Insert {
    pub table: TableName,
    pub columns: Option<Vec<String>>,
    pub rows: Vec<Vec<Expr>>,
    pub ignore: bool,
    pub replace: bool,
    pub on_dup: Vec<(String, Expr)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub table: TableName,
    pub alias: Option<String>,
    pub sets: Vec<(String, Expr)>,
    pub where_: Option<Expr>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Delete {
    pub table: TableName,
    pub where_: Option<Expr>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<u64>,
}

/// Column definition in CREATE TABLE.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColType,
    pub unsigned: bool,
    /// `Some(false)` for NOT NULL, `Some(true)` for NULL, `None` unspecified.
    pub nullable: Option<bool>,
    pub default: Option<Expr>,
    pub auto_increment: bool,
    pub primary_key: bool,
    pub unique: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CreateTable {
    pub table: TableName,
    pub temporary: bool,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnSpec>,
    pub primary_key: Option<Vec<String>>,
}

/// One assignment of a SET statement.
#[derive(Clone, Debug, PartialEq)]
pub enum SetItem {
    UserVar {
        name: String,
        value: Expr,
    },
    SysVar {
        scope: VarScope,
        name: String,
        value: Expr,
    },
    Names {
        charset: String,
        collation: Option<String>,
    },
    Transaction {
        scope: Option<VarScope>,
        isolation: Option<String>,
        read_only: Option<bool>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShowStmt {
    Variables {
        global: bool,
        like: Option<String>,
    },
    Status {
        global: bool,
        like: Option<String>,
    },
    Databases {
        like: Option<String>,
    },
    Tables {
        db: Option<String>,
        like: Option<String>,
    },
    /// SHOW SLAVE STATUS / SHOW REPLICA STATUS / SHOW ALL SLAVES STATUS.
    ReplicaStatus {
        all: bool,
        replica_words: bool,
    },
    /// SHOW MASTER STATUS / SHOW BINARY LOG STATUS.
    MasterStatus,
    Warnings,
    Errors,
    ProcessList,
    CreateTable(TableName),
}

/// Which replication thread(s) START/STOP SLAVE addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlaveThreads {
    pub io: bool,
    pub sql: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    Select(Select),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    CreateTable(CreateTable),
    DropTable {
        tables: Vec<TableName>,
        if_exists: bool,
        temporary: bool,
    },
    Truncate(TableName),
    CreateDatabase {
        name: String,
        if_not_exists: bool,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    Use(String),
    Begin {
        read_only: Option<bool>,
    },
    Commit,
    Rollback {
        to_savepoint: Option<String>,
    },
    Savepoint(String),
    ReleaseSavepoint(String),
    Set(Vec<SetItem>),
    Show(ShowStmt),
    ChangeMaster(Vec<(String, Value)>),
    StartSlave(SlaveThreads),
    StopSlave(SlaveThreads),
    ResetSlave {
        all: bool,
    },
    ResetMaster,
    Kill {
        query_only: bool,
        id: Expr,
    },
    Do(Vec<Expr>),
    /// FLUSH …, ANALYZE …: accepted and ignored.
    NoOp,
}

impl Statement {
    /// A coarse classification for fault hooks and logging.
    pub fn kind(&self) -> StatementKind {
        match self {
            Statement::Select(s) if s.from.is_some() => StatementKind::Read,
            Statement::Select(_) | Statement::Do(_) | Statement::Show(_) => StatementKind::Other,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                StatementKind::Write
            }
            Statement::CreateTable(_)
            | Statement::DropTable { .. }
            | Statement::Truncate(_)
            | Statement::CreateDatabase { .. }
            | Statement::DropDatabase { .. } => StatementKind::Ddl,
            Statement::Begin { .. }
            | Statement::Commit
            | Statement::Rollback { .. }
            | Statement::Savepoint(_)
            | Statement::ReleaseSavepoint(_) => StatementKind::Transaction,
            Statement::ChangeMaster(_)
            | Statement::StartSlave(_)
            | Statement::StopSlave(_)
            | Statement::ResetSlave { .. }
            | Statement::ResetMaster
            | Statement::Kill { .. } => StatementKind::Admin,
            Statement::Set(_) | Statement::Use(_) | Statement::NoOp => StatementKind::Other,
        }
    }
}

/// Coarse statement classification (see [`Statement::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    Read,
    Write,
    Ddl,
    Transaction,
    Admin,
    Other,
}
