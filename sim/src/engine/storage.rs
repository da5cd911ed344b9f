//! Committed table storage and logical change records.
//!
//! Owns the schema types ([`ColType`], [`ColumnDef`], [`TableDef`]), the
//! committed data ([`Catalog`] → [`Database`] → [`Table`], rows in a
//! `BTreeMap` keyed by primary key so point lookups and ordered scans are
//! `O(log n)`), value coercion into column types (with the server's strict
//! mode errors), and [`Change`], the logical row/DDL change records that make
//! up a binlog event. [`Catalog::apply`] is the single code path that
//! mutates committed data: commits on a primary, the replica applier and the
//! crash-recovery replay all go through it, which keeps replicas honest.
//!
//! Tables without a primary key get a hidden, monotonically increasing row
//! id as key (like InnoDB's `DB_ROW_ID`); row events for such tables carry
//! full before-images and are located by value on the replica.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::config::Flavour;
use super::error::SqlError;
use super::result::{col_flags, col_type, BINARY_COLLATION};
use super::value::{format_double, is_full_number, Value};

/// Declared column type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColType {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Char(u32),
    VarChar(u32),
    /// TINYTEXT / TEXT / MEDIUMTEXT / LONGTEXT with max length in bytes.
    Text(u32),
    Binary(u32),
    VarBinary(u32),
    Blob(u32),
    Date,
    DateTime,
    Timestamp,
    Time,
    Year,
    Json,
    /// ENUM / SET (stored as text, members not validated).
    Enum(Vec<String>),
}

impl ColType {
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ColType::TinyInt
                | ColType::SmallInt
                | ColType::MediumInt
                | ColType::Int
                | ColType::BigInt
                | ColType::Year
        )
    }

    pub fn is_binary_string(&self) -> bool {
        matches!(
            self,
            ColType::Binary(_) | ColType::VarBinary(_) | ColType::Blob(_)
        )
    }

    /// `(min, max)` for integer types.
    fn int_range(&self, unsigned: bool) -> (i128, i128) {
        let bits = match self {
            ColType::TinyInt => 8,
            ColType::SmallInt => 16,
            ColType::MediumInt => 24,
            ColType::Int => 32,
            ColType::Year => 16,
            _ => 64,
        };
        if unsigned {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
    }

    /// The `MYSQL_TYPE_*` code reported in result-set metadata.
    pub fn wire_type(&self) -> u8 {
        match self {
            ColType::TinyInt => col_type::TINY,
            ColType::SmallInt => col_type::SHORT,
            ColType::MediumInt => col_type::INT24,
            ColType::Int => col_type::LONG,
            ColType::BigInt => col_type::LONGLONG,
            ColType::Float => col_type::FLOAT,
            ColType::Double => col_type::DOUBLE,
            ColType::Decimal { .. } => col_type::NEWDECIMAL,
            ColType::Char(_) | ColType::Binary(_) | ColType::Enum(_) => col_type::STRING,
            ColType::VarChar(_) | ColType::VarBinary(_) => col_type::VAR_STRING,
            ColType::Text(_) | ColType::Blob(_) => col_type::BLOB,
            ColType::Date => col_type::DATE,
            ColType::DateTime => col_type::DATETIME,
            ColType::Timestamp => col_type::TIMESTAMP,
            ColType::Time => col_type::TIME,
            ColType::Year => col_type::YEAR,
            ColType::Json => col_type::JSON,
        }
    }

    /// Display length for result metadata.
    pub fn display_length(&self, unsigned: bool) -> u32 {
        match self {
            ColType::TinyInt => {
                if unsigned {
                    3
                } else {
                    4
                }
            }
            ColType::SmallInt => {
                if unsigned {
                    5
                } else {
                    6
                }
            }
            ColType::MediumInt => {
                if unsigned {
                    8
                } else {
                    9
                }
            }
            ColType::Int => {
                if unsigned {
                    10
                } else {
                    11
                }
            }
            ColType::BigInt => 20,
            ColType::Float => 12,
            ColType::Double => 22,
            ColType::Decimal { precision, scale } => *precision as u32 + 1 + (*scale > 0) as u32,
            ColType::Char(n) | ColType::VarChar(n) => n * 4,
            ColType::Binary(n) | ColType::VarBinary(n) => *n,
            ColType::Text(n) | ColType::Blob(n) => *n,
            ColType::Date => 10,
            ColType::DateTime | ColType::Timestamp => 19,
            ColType::Time => 10,
            ColType::Year => 4,
            ColType::Json => u32::MAX,
            ColType::Enum(v) => v.iter().map(|s| s.len() as u32).max().unwrap_or(1) * 4,
        }
    }

    pub fn sql_name(&self, unsigned: bool) -> String {
        let u = if unsigned { " unsigned" } else { "" };
        match self {
            ColType::TinyInt => format!("tinyint{u}"),
            ColType::SmallInt => format!("smallint{u}"),
            ColType::MediumInt => format!("mediumint{u}"),
            ColType::Int => format!("int{u}"),
            ColType::BigInt => format!("bigint{u}"),
            ColType::Float => "float".into(),
            ColType::Double => "double".into(),
            ColType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColType::Char(n) => format!("char({n})"),
            ColType::VarChar(n) => format!("varchar({n})"),
            ColType::Text(_) => "text".into(),
            ColType::Binary(n) => format!("binary({n})"),
            ColType::VarBinary(n) => format!("varbinary({n})"),
            ColType::Blob(_) => "blob".into(),
            ColType::Date => "date".into(),
            ColType::DateTime => "datetime".into(),
            ColType::Timestamp => "timestamp".into(),
            ColType::Time => "time".into(),
            ColType::Year => "year".into(),
            ColType::Json => "json".into(),
            ColType::Enum(v) => format!(
                "enum({})",
                v.iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A column's default.
#[derive(Clone, Debug, PartialEq)]
pub enum DefaultValue {
    /// No default (strict mode: omitting the column is error 1364).
    None,
    Value(Value),
    CurrentTimestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColType,
    pub unsigned: bool,
    pub nullable: bool,
    pub default: DefaultValue,
    pub auto_increment: bool,
}

/// A table's schema.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column indexes of the primary key (empty: hidden row id).
    pub primary_key: Vec<usize>,
}

impl TableDef {
    /// Column index by (case-insensitive) name.
    pub fn col_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn auto_inc_col(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.auto_increment)
    }

    pub fn has_pk(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Key of a row (tables with a primary key only).
    pub fn key_of(&self, row: &[Value]) -> Key {
        Key(self
            .primary_key
            .iter()
            .map(|&i| KeyPart::from_value(&row[i], &self.columns[i].ty))
            .collect())
    }

    /// `'1'` / `'1-abc'`: the duplicate-entry text of a key.
    pub fn key_text(&self, row: &[Value]) -> String {
        self.primary_key
            .iter()
            .map(|&i| row[i].as_string().unwrap_or_else(|| "NULL".into()))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Result-set flags of a column.
    pub fn column_flags(&self, idx: usize) -> u16 {
        let c = &self.columns[idx];
        let mut f = 0;
        if !c.nullable {
            f |= col_flags::NOT_NULL;
        }
        if self.primary_key.contains(&idx) {
            f |= col_flags::PRI_KEY;
        }
        if c.unsigned {
            f |= col_flags::UNSIGNED;
        }
        if c.auto_increment {
            f |= col_flags::AUTO_INCREMENT;
        }
        if matches!(c.ty, ColType::Text(_) | ColType::Blob(_) | ColType::Json) {
            f |= col_flags::BLOB;
        }
        if c.ty.is_binary_string()
            || c.ty.is_integer()
            || matches!(
                c.ty,
                ColType::Float | ColType::Double | ColType::Decimal { .. }
            )
        {
            f |= col_flags::BINARY;
        }
        if c.ty.is_integer()
            || matches!(
                c.ty,
                ColType::Float | ColType::Double | ColType::Decimal { .. }
            )
        {
            f |= col_flags::NUM;
        }
        if c.default == DefaultValue::None && !c.auto_increment && !c.nullable {
            f |= col_flags::NO_DEFAULT_VALUE;
        }
        f
    }

    /// Collation id of a column in result metadata.
    pub fn column_charset(&self, idx: usize, flavour: Flavour) -> u16 {
        let ty = &self.columns[idx].ty;
        if ty.is_binary_string()
            || ty.is_integer()
            || matches!(
                ty,
                ColType::Float
                    | ColType::Double
                    | ColType::Decimal { .. }
                    | ColType::Date
                    | ColType::DateTime
                    | ColType::Timestamp
                    | ColType::Time
            )
        {
            BINARY_COLLATION
        } else {
            flavour.default_collation_id()
        }
    }

    /// Coerce a value for storage in column `idx` (strict mode).
    /// `row` is the 1-based row number for error messages.
    pub fn coerce(&self, idx: usize, v: Value, row: usize) -> Result<Value, SqlError> {
        coerce_to_column(&self.columns[idx], v, row)
    }
}

/// Coerce `v` into a column's type (strict SQL mode semantics).
pub fn coerce_to_column(c: &ColumnDef, v: Value, row: usize) -> Result<Value, SqlError> {
    if v.is_null() {
        return if c.nullable {
            Ok(Value::Null)
        } else {
            Err(SqlError::bad_null(&c.name))
        };
    }
    match &c.ty {
        t if t.is_integer() => {
            let i: i128 = match &v {
                Value::Int(i) => *i as i128,
                Value::UInt(u) => *u as i128,
                Value::Double(d) => {
                    let r = d.round();
                    if !r.is_finite() || r.abs() > 1.8e19 {
                        return Err(SqlError::out_of_range(&c.name, row));
                    }
                    r as i128
                }
                Value::Bytes(b) => {
                    if !is_full_number(b) {
                        let kind = if c.ty == ColType::Year {
                            "year"
                        } else {
                            "integer"
                        };
                        return Err(SqlError::incorrect_value(
                            kind,
                            &String::from_utf8_lossy(b),
                            &c.name,
                            row,
                        ));
                    }
                    let s = String::from_utf8_lossy(b);
                    match s.trim().parse::<i128>() {
                        Ok(i) => i,
                        Err(_) => {
                            let d: f64 = s.trim().parse().unwrap_or(0.0);
                            if d.abs() > 1.8e19 {
                                return Err(SqlError::out_of_range(&c.name, row));
                            }
                            d.round() as i128
                        }
                    }
                }
                Value::Null => unreachable!(),
            };
            let (lo, hi) = t.int_range(c.unsigned);
            if i < lo || i > hi {
                return Err(SqlError::out_of_range(&c.name, row));
            }
            Ok(if c.unsigned {
                Value::UInt(i as u64)
            } else {
                Value::Int(i as i64)
            })
        }
        ColType::Float | ColType::Double => {
            let d = match &v {
                Value::Bytes(b) => {
                    if !is_full_number(b) {
                        return Err(SqlError::incorrect_value(
                            "double",
                            &String::from_utf8_lossy(b),
                            &c.name,
                            row,
                        ));
                    }
                    String::from_utf8_lossy(b)
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(0.0)
                }
                other => other.to_f64().unwrap(),
            };
            if c.unsigned && d < 0.0 {
                return Err(SqlError::out_of_range(&c.name, row));
            }
            Ok(Value::Double(if c.ty == ColType::Float {
                d as f32 as f64
            } else {
                d
            }))
        }
        ColType::Decimal { precision, scale } => {
            let d = match &v {
                Value::Bytes(b) => {
                    if !is_full_number(b) {
                        return Err(SqlError::incorrect_value(
                            "decimal",
                            &String::from_utf8_lossy(b),
                            &c.name,
                            row,
                        ));
                    }
                    String::from_utf8_lossy(b)
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(0.0)
                }
                other => other.to_f64().unwrap(),
            };
            let int_digits = (*precision - *scale) as i32;
            if d.abs() >= 10f64.powi(int_digits) || (c.unsigned && d < 0.0) {
                return Err(SqlError::out_of_range(&c.name, row));
            }
            Ok(Value::str(format!("{:.*}", *scale as usize, d)))
        }
        ColType::Char(_) | ColType::VarChar(_) | ColType::Text(_) | ColType::Enum(_) => {
            let b = match v {
                Value::Bytes(b) => b,
                Value::Double(d) => format_double(d).into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let (len, max) = match &c.ty {
                ColType::Text(n) => (b.len(), *n as usize),
                ColType::Char(n) | ColType::VarChar(n) => {
                    (String::from_utf8_lossy(&b).chars().count(), *n as usize)
                }
                _ => (0, usize::MAX),
            };
            if len > max {
                return Err(SqlError::data_too_long(&c.name, row));
            }
            Ok(Value::Bytes(b))
        }
        ColType::Binary(n) | ColType::VarBinary(n) | ColType::Blob(n) => {
            let b = v.to_text().unwrap();
            if b.len() > *n as usize {
                return Err(SqlError::data_too_long(&c.name, row));
            }
            Ok(Value::Bytes(b))
        }
        ColType::Date | ColType::DateTime | ColType::Timestamp | ColType::Time | ColType::Json => {
            Ok(Value::Bytes(v.to_text().unwrap()))
        }
        _ => Ok(v),
    }
}

/// One component of a primary key, normalised so that `Ord` matches the
/// column's comparison rules (text keys compare case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    Null,
    Int(i128),
    /// Order-preserving bit pattern of an f64.
    Float(u64),
    Bytes(Vec<u8>),
}

impl KeyPart {
    pub fn from_value(v: &Value, ty: &ColType) -> KeyPart {
        match v {
            Value::Null => KeyPart::Null,
            Value::Int(i) => KeyPart::Int(*i as i128),
            Value::UInt(u) => KeyPart::Int(*u as i128),
            Value::Double(d) => {
                let b = d.to_bits();
                KeyPart::Float(if b >> 63 == 1 { !b } else { b | (1 << 63) })
            }
            Value::Bytes(b) => {
                if ty.is_binary_string() {
                    KeyPart::Bytes(b.clone())
                } else {
                    KeyPart::Bytes(b.to_ascii_lowercase())
                }
            }
        }
    }
}

/// A row key (primary key values, or a hidden row id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub Vec<KeyPart>);

impl Key {
    pub fn hidden(id: u64) -> Key {
        Key(vec![KeyPart::Int(id as i128)])
    }
}

pub type Row = Vec<Value>;

/// Committed contents of one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub def: Arc<TableDef>,
    pub rows: BTreeMap<Key, Row>,
    /// Next AUTO_INCREMENT value (not transactional, like InnoDB).
    pub auto_inc: u64,
    /// Next hidden row id for tables without a primary key.
    pub hidden_next: u64,
}

impl Table {
    pub fn new(def: Arc<TableDef>) -> Table {
        Table {
            def,
            rows: BTreeMap::new(),
            auto_inc: 1,
            hidden_next: 1,
        }
    }

    /// Bump the AUTO_INCREMENT counter past an explicitly stored value.
    pub fn observe_auto_inc(&mut self, row: &[Value]) {
        if let Some(i) = self.def.auto_inc_col() {
            if let Some(v) = row[i].to_i128() {
                if v >= self.auto_inc as i128 {
                    self.auto_inc = (v + 1).min(u64::MAX as i128) as u64;
                }
            }
        }
    }

    /// Locate the key of a row image (by primary key, or by value for tables
    /// without one).
    pub fn find_key(&self, image: &[Value]) -> Option<Key> {
        if self.def.has_pk() {
            let k = self.def.key_of(image);
            self.rows.contains_key(&k).then_some(k)
        } else {
            self.rows
                .iter()
                .find(|(_, r)| r.as_slice() == image)
                .map(|(k, _)| k.clone())
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Database {
    pub tables: BTreeMap<String, Table>,
}

/// All committed data of a server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub dbs: BTreeMap<String, Database>,
}

/// A logical change: one element of a committed transaction / binlog event.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateDatabase {
        name: String,
        if_not_exists: bool,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    CreateTable {
        db: String,
        def: Arc<TableDef>,
        if_not_exists: bool,
    },
    DropTable {
        db: String,
        name: String,
        if_exists: bool,
    },
    Truncate {
        db: String,
        name: String,
    },
    Insert {
        db: String,
        table: String,
        row: Row,
    },
    Update {
        db: String,
        table: String,
        before: Row,
        after: Row,
    },
    Delete {
        db: String,
        table: String,
        before: Row,
    },
}

impl Change {
    /// `(db, table)` a row change touches.
    pub fn row_table(&self) -> Option<(&str, &str)> {
        match self {
            Change::Insert { db, table, .. }
            | Change::Update { db, table, .. }
            | Change::Delete { db, table, .. } => Some((db, table)),
            _ => None,
        }
    }

    pub fn is_ddl(&self) -> bool {
        self.row_table().is_none()
    }

    /// Rough encoded size (for fake binlog positions).
    pub fn approx_size(&self) -> u64 {
        let row = |r: &Row| r.iter().map(|v| v.approx_size()).sum::<usize>() as u64;
        match self {
            Change::Insert { row: r, .. } | Change::Delete { before: r, .. } => 40 + row(r),
            Change::Update { before, after, .. } => 40 + row(before) + row(after),
            _ => 100,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |r: &Row| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Change::CreateDatabase { name, .. } => write!(f, "CREATE DATABASE {name}"),
            Change::DropDatabase { name, .. } => write!(f, "DROP DATABASE {name}"),
            Change::CreateTable { db, def, .. } => write!(f, "CREATE TABLE {db}.{}", def.name),
            Change::DropTable { db, name, .. } => write!(f, "DROP TABLE {db}.{name}"),
            Change::Truncate { db, name } => write!(f, "TRUNCATE {db}.{name}"),
            Change::Insert { db, table, row: r } => write!(f, "INSERT {db}.{table} ({})", row(r)),
            Change::Update {
                db,
                table,
                before,
                after,
            } => write!(
                f,
                "UPDATE {db}.{table} ({}) -> ({})",
                row(before),
                row(after)
            ),
            Change::Delete { db, table, before } => {
                write!(f, "DELETE {db}.{table} ({})", row(before))
            }
        }
    }
}

/// How to undo one applied row change.
#[derive(Clone, Debug)]
pub enum Undo {
    /// Remove the row stored under `key`.
    Remove {
        db: String,
        table: String,
        key: Key,
    },
    /// Remove the row under `moved_to` (if any) and put `row` back at `key`.
    Put {
        db: String,
        table: String,
        key: Key,
        moved_to: Option<Key>,
        row: Row,
    },
    Nothing,
}

impl Catalog {
    pub fn db(&self, name: &str) -> Option<&Database> {
        self.dbs.get(name)
    }

    pub fn table(&self, db: &str, name: &str) -> Option<&Table> {
        self.dbs.get(db)?.tables.get(name)
    }

    pub fn table_mut(&mut self, db: &str, name: &str) -> Option<&mut Table> {
        self.dbs.get_mut(db)?.tables.get_mut(name)
    }

    fn table_or_err(&mut self, db: &str, name: &str) -> Result<&mut Table, SqlError> {
        self.table_mut(db, name)
            .ok_or_else(|| SqlError::no_such_table(db, name))
    }

    /// Apply one change to committed data. Row changes return how to undo
    /// them. Errors are those a replica applier would hit (1146, 1062,
    /// 1032, 1050, 1051, 1007, 1008).
    pub fn apply(&mut self, flavour: Flavour, ch: &Change) -> Result<Undo, SqlError> {
        match ch {
            Change::CreateDatabase {
                name,
                if_not_exists,
            } => {
                if self.dbs.contains_key(name) {
                    if *if_not_exists {
                        return Ok(Undo::Nothing);
                    }
                    return Err(SqlError::db_create_exists(name));
                }
                self.dbs.insert(name.clone(), Database::default());
                Ok(Undo::Nothing)
            }
            Change::DropDatabase { name, if_exists } => {
                if self.dbs.remove(name).is_none() && !*if_exists {
                    return Err(SqlError::db_drop_exists(name));
                }
                Ok(Undo::Nothing)
            }
            Change::CreateTable {
                db,
                def,
                if_not_exists,
            } => {
                let d = self.dbs.get_mut(db).ok_or_else(|| SqlError::bad_db(db))?;
                if d.tables.contains_key(&def.name) {
                    if *if_not_exists {
                        return Ok(Undo::Nothing);
                    }
                    return Err(SqlError::table_exists(&def.name));
                }
                d.tables.insert(def.name.clone(), Table::new(def.clone()));
                Ok(Undo::Nothing)
            }
            Change::DropTable {
                db,
                name,
                if_exists,
            } => {
                let removed = self.dbs.get_mut(db).and_then(|d| d.tables.remove(name));
                if removed.is_none() && !*if_exists {
                    return Err(SqlError::bad_table(db, name));
                }
                Ok(Undo::Nothing)
            }
            Change::Truncate { db, name } => {
                let t = self.table_or_err(db, name)?;
                t.rows.clear();
                t.auto_inc = 1;
                Ok(Undo::Nothing)
            }
            Change::Insert { db, table, row } => {
                let t = self.table_or_err(db, table)?;
                let key = if t.def.has_pk() {
                    let k = t.def.key_of(row);
                    if t.rows.contains_key(&k) {
                        return Err(SqlError::dup_entry(
                            flavour,
                            &t.def.key_text(row),
                            table,
                            "PRIMARY",
                        ));
                    }
                    k
                } else {
                    let k = Key::hidden(t.hidden_next);
                    t.hidden_next += 1;
                    k
                };
                t.observe_auto_inc(row);
                t.rows.insert(key.clone(), row.clone());
                Ok(Undo::Remove {
                    db: db.clone(),
                    table: table.clone(),
                    key,
                })
            }
            Change::Update {
                db,
                table,
                before,
                after,
            } => {
                let t = self.table_or_err(db, table)?;
                let key = t
                    .find_key(before)
                    .ok_or_else(|| SqlError::key_not_found(table))?;
                let new_key = if t.def.has_pk() {
                    t.def.key_of(after)
                } else {
                    key.clone()
                };
                if new_key != key && t.rows.contains_key(&new_key) {
                    return Err(SqlError::dup_entry(
                        flavour,
                        &t.def.key_text(after),
                        table,
                        "PRIMARY",
                    ));
                }
                let old = t.rows.remove(&key).unwrap();
                t.observe_auto_inc(after);
                t.rows.insert(new_key.clone(), after.clone());
                let moved_to = (new_key != key).then_some(new_key);
                Ok(Undo::Put {
                    db: db.clone(),
                    table: table.clone(),
                    key,
                    moved_to,
                    row: old,
                })
            }
            Change::Delete { db, table, before } => {
                let t = self.table_or_err(db, table)?;
                let key = t
                    .find_key(before)
                    .ok_or_else(|| SqlError::key_not_found(table))?;
                let old = t.rows.remove(&key).unwrap();
                Ok(Undo::Put {
                    db: db.clone(),
                    table: table.clone(),
                    key,
                    moved_to: None,
                    row: old,
                })
            }
        }
    }

    /// Revert row changes applied by [`Catalog::apply`] (in reverse order).
    pub fn revert(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Remove { db, table, key } => {
                    if let Some(t) = self.table_mut(&db, &table) {
                        t.rows.remove(&key);
                    }
                }
                Undo::Put {
                    db,
                    table,
                    key,
                    moved_to,
                    row,
                } => {
                    if let Some(t) = self.table_mut(&db, &table) {
                        if let Some(nk) = moved_to {
                            t.rows.remove(&nk);
                        }
                        t.rows.insert(key, row);
                    }
                }
                Undo::Nothing => {}
            }
        }
    }

    /// Apply a list of changes atomically: on error everything already
    /// applied is reverted.
    pub fn apply_all(&mut self, flavour: Flavour, changes: &[Change]) -> Result<(), SqlError> {
        let mut undo = Vec::new();
        for ch in changes {
            match self.apply(flavour, ch) {
                Ok(u) => undo.push(u),
                Err(e) => {
                    self.revert(undo);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Arc<TableDef> {
        Arc::new(TableDef {
            name: "t".into(),
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    ty: ColType::Int,
                    unsigned: false,
                    nullable: false,
                    default: DefaultValue::None,
                    auto_increment: true,
                },
                ColumnDef {
                    name: "v".into(),
                    ty: ColType::VarChar(3),
                    unsigned: false,
                    nullable: true,
                    default: DefaultValue::Value(Value::Null),
                    auto_increment: false,
                },
            ],
            primary_key: vec![0],
        })
    }

    fn cat() -> Catalog {
        let mut c = Catalog::default();
        c.apply(
            Flavour::MariaDb,
            &Change::CreateDatabase {
                name: "d".into(),
                if_not_exists: false,
            },
        )
        .unwrap();
        c.apply(
            Flavour::MariaDb,
            &Change::CreateTable {
                db: "d".into(),
                def: def(),
                if_not_exists: false,
            },
        )
        .unwrap();
        c
    }

    fn ins(id: i64, v: &str) -> Change {
        Change::Insert {
            db: "d".into(),
            table: "t".into(),
            row: vec![Value::Int(id), Value::str(v)],
        }
    }

    #[test]
    fn apply_all_is_atomic_on_duplicate_key() {
        let mut c = cat();
        c.apply(Flavour::MariaDb, &ins(1, "a")).unwrap();
        let before = c.clone();
        let err = c
            .apply_all(
                Flavour::MariaDb,
                &[
                    ins(2, "b"),
                    Change::Update {
                        db: "d".into(),
                        table: "t".into(),
                        before: vec![Value::Int(2), Value::str("b")],
                        after: vec![Value::Int(3), Value::str("c")],
                    },
                    ins(1, "x"),
                ],
            )
            .unwrap_err();
        assert_eq!(err.code, 1062);
        // rows are restored; the AUTO_INCREMENT counter is not transactional (like InnoDB)
        assert_eq!(
            c.table("d", "t").unwrap().rows,
            before.table("d", "t").unwrap().rows
        );
    }

    #[test]
    fn auto_increment_counter_tracks_explicit_values() {
        let mut c = cat();
        c.apply(Flavour::MySql8, &ins(10, "a")).unwrap();
        assert_eq!(c.table("d", "t").unwrap().auto_inc, 11);
    }

    #[test]
    fn coercion_enforces_strict_mode_limits() {
        let d = def();
        assert_eq!(d.coerce(0, Value::str("42"), 1).unwrap(), Value::Int(42));
        assert_eq!(d.coerce(0, Value::str("4x"), 1).unwrap_err().code, 1366);
        assert_eq!(d.coerce(0, Value::Int(1 << 40), 1).unwrap_err().code, 1264);
        assert_eq!(
            d.coerce(1, Value::str("abcd"), 2).unwrap_err().message,
            "Data too long for column 'v' at row 2"
        );
        assert_eq!(d.coerce(0, Value::Null, 1).unwrap_err().code, 1048);
    }

    #[test]
    fn text_keys_compare_case_insensitively() {
        let a = KeyPart::from_value(&Value::str("Abc"), &ColType::VarChar(5));
        let b = KeyPart::from_value(&Value::str("aBC"), &ColType::VarChar(5));
        assert_eq!(a, b);
        let c = KeyPart::from_value(&Value::str("Abc"), &ColType::VarBinary(5));
        let d = KeyPart::from_value(&Value::str("aBC"), &ColType::VarBinary(5));
        assert_ne!(c, d);
    }
}
