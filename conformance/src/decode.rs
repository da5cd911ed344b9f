//! Decoding a raw response (its logical packets) into typed items for comparison and
//! for readable differences: OK/ERR/EOF fields, column definitions, text and binary
//! rows, PREPARE_OK, LOCAL INFILE requests and auth switches.
//!
//! Decoding is lossless: anything not understood stays as raw bytes (`trailing`, or
//! [`Decoded::Raw`]), so two packets decode equal exactly when their bytes are equal
//! (before normalisation rules touch them).

use std::fmt;

use sluice::protocol::constants::{cap, status};
use sluice::protocol::packet::{Reader, MAX_FRAME};
use sluice::protocol::response::Expect;

use crate::value::{to_hex, ty};

/// One logical packet as read: sequence ids of its first and last frame, and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub seq: u8,
    pub last_seq: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkFields {
    pub header: u8,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
    pub session_state: Vec<u8>,
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub catalog: Vec<u8>,
    pub schema: Vec<u8>,
    pub table: Vec<u8>,
    pub org_table: Vec<u8>,
    pub name: Vec<u8>,
    pub org_name: Vec<u8>,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
    /// Filler and anything after it (COM_FIELD_LIST's default value).
    pub trailing: Vec<u8>,
}

/// Column flag: UNSIGNED.
pub const UNSIGNED_FLAG: u16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Ok(OkFields),
    Eof { warnings: u16, status: u16, trailing: Vec<u8> },
    Err { code: u16, state: Vec<u8>, message: Vec<u8> },
    ColumnCount(u64),
    ColumnDef(Box<ColumnDef>),
    /// A row; `binary` for the binary protocol (values kept as their wire bytes).
    Row { binary: bool, cells: Vec<Option<Vec<u8>>> },
    PrepareOk { stmt_id: u32, columns: u16, params: u16, warnings: u16, trailing: Vec<u8> },
    LocalInfile { file: Vec<u8> },
    AuthSwitch { plugin: Vec<u8>, data: Vec<u8> },
    Raw(Vec<u8>),
}

/// A decoded packet with where it sits in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub seq: u8,
    pub last_seq: u8,
    pub raw: Vec<u8>,
    pub decoded: Decoded,
    /// Which result set (1-based) the packet belongs to, 0 outside result sets.
    pub result_set: u32,
    /// Row number or column number within the result set (1-based), 0 otherwise.
    pub index: u64,
    /// Column types of the current result set (for displaying binary values).
    pub types: Vec<(u8, u16)>,
    /// What the packet is, for messages: "row", "column definition", "OK", ...
    pub role: &'static str,
}

impl Item {
    pub fn describe(&self) -> String {
        let rs = if self.result_set > 0 { format!("result set {} ", self.result_set) } else { String::new() };
        if self.index > 0 {
            format!("{rs}{} {}", self.role, self.index)
        } else {
            format!("{rs}{}", self.role)
        }
    }
}

fn parse_ok(p: &[u8], caps: u32) -> Option<OkFields> {
    let mut r = Reader::new(p);
    let header = r.u8()?;
    let affected_rows = r.lenenc()?;
    let last_insert_id = r.lenenc()?;
    let status = r.u16()?;
    let warnings = r.u16()?;
    let mut ok = OkFields { header, affected_rows, last_insert_id, status, warnings, info: vec![], session_state: vec![], trailing: vec![] };
    if caps & cap::SESSION_TRACK != 0 {
        if !r.is_empty() {
            ok.info = r.lenenc_bytes()?.to_vec();
            if status & status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                ok.session_state = r.lenenc_bytes()?.to_vec();
            }
        }
        ok.trailing = r.rest().to_vec();
    } else {
        ok.info = r.rest().to_vec();
    }
    Some(ok)
}

fn parse_coldef(p: &[u8]) -> Option<ColumnDef> {
    let mut r = Reader::new(p);
    let catalog = r.lenenc_bytes()?.to_vec();
    let schema = r.lenenc_bytes()?.to_vec();
    let table = r.lenenc_bytes()?.to_vec();
    let org_table = r.lenenc_bytes()?.to_vec();
    let name = r.lenenc_bytes()?.to_vec();
    let org_name = r.lenenc_bytes()?.to_vec();
    if r.lenenc()? != 0x0c {
        return None;
    }
    let charset = r.u16()?;
    let length = r.u32()?;
    let column_type = r.u8()?;
    let flags = r.u16()?;
    let decimals = r.u8()?;
    Some(ColumnDef { catalog, schema, table, org_table, name, org_name, charset, length, column_type, flags, decimals, trailing: r.rest().to_vec() })
}

fn parse_text_row(p: &[u8], n: usize) -> Option<Vec<Option<Vec<u8>>>> {
    let mut r = Reader::new(p);
    let mut cells = Vec::with_capacity(n);
    while !r.is_empty() {
        if r.peek() == Some(0xFB) {
            r.u8();
            cells.push(None);
        } else {
            cells.push(Some(r.lenenc_bytes()?.to_vec()));
        }
    }
    (cells.len() == n).then_some(cells)
}

/// Width in bytes of a fixed-size binary value, `None` for length-prefixed ones.
fn binary_width(t: u8) -> Option<usize> {
    match t {
        ty::TINY => Some(1),
        ty::SHORT | ty::YEAR => Some(2),
        ty::LONG | ty::INT24 | ty::FLOAT => Some(4),
        ty::LONGLONG | ty::DOUBLE => Some(8),
        ty::NULL => Some(0),
        _ => None,
    }
}

fn parse_binary_row(p: &[u8], types: &[(u8, u16)]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut r = Reader::new(p);
    if r.u8()? != 0x00 {
        return None;
    }
    let n = types.len();
    let bitmap = r.take((n + 7 + 2) / 8)?.to_vec();
    let mut cells = Vec::with_capacity(n);
    for (i, (t, _)) in types.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            cells.push(None);
            continue;
        }
        let v = match *t {
            ty::DATE | ty::DATETIME | ty::TIMESTAMP | ty::TIME | ty::NEWDATE => {
                let len = r.u8()? as usize;
                let mut v = vec![len as u8];
                v.extend_from_slice(r.take(len)?);
                v
            }
            t => match binary_width(t) {
                Some(w) => r.take(w)?.to_vec(),
                None => r.lenenc_bytes()?.to_vec(),
            },
        };
        cells.push(Some(v));
    }
    r.is_empty().then_some(cells)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    First,
    Defs { left: u64, total: u64 },
    DefsEof,
    Rows,
    PrepParams { left: u16, cols: u16 },
    PrepParamsEof { cols: u16 },
    PrepCols { left: u16, total: u16 },
    PrepColsEof,
    Any,
}

/// Decodes the packets of one response to a command of kind `expect`. `fetch_types` are
/// the column types of the statement for COM_STMT_FETCH responses.
pub fn decode(expect: Expect, caps: u32, packets: &[RawPacket], fetch_types: &[(u8, u16)]) -> Vec<Item> {
    let dep = caps & cap::DEPRECATE_EOF != 0;
    let binary = matches!(expect, Expect::Execute | Expect::ExecuteCursor | Expect::Fetch);
    let mut st = match expect {
        Expect::Query | Expect::Execute | Expect::ExecuteCursor | Expect::Prepare => St::First,
        Expect::Fetch | Expect::FieldList => St::Rows,
        Expect::OnePacket => St::Any,
    };
    let mut types: Vec<(u8, u16)> = if expect == Expect::Fetch { fetch_types.to_vec() } else { vec![] };
    let mut result_set = if expect == Expect::Fetch || expect == Expect::FieldList { 1 } else { 0 };
    let mut row_no = 0u64;
    let mut out = Vec::with_capacity(packets.len());
    for pk in packets {
        let p = &pk.payload[..];
        let first = p.first().copied();
        let mut index = 0;
        let (decoded, role) = match st {
            St::Any | St::First => match first {
                Some(0xFF) => (err(p), "ERR"),
                Some(0x00) if expect == Expect::Prepare => {
                    let mut r = Reader::new(&p[1..]);
                    match (|| Some((r.u32()?, r.u16()?, r.u16()?, r.u8()?, r.u16()?)))() {
                        Some((stmt_id, columns, params, _filler, warnings)) => {
                            st = if params > 0 {
                                St::PrepParams { left: params, cols: columns }
                            } else if columns > 0 {
                                St::PrepCols { left: columns, total: columns }
                            } else {
                                St::Any
                            };
                            result_set = 0;
                            (Decoded::PrepareOk { stmt_id, columns, params, warnings, trailing: r.rest().to_vec() }, "PREPARE_OK")
                        }
                        None => (Decoded::Raw(p.to_vec()), "packet"),
                    }
                }
                Some(0x00) => match parse_ok(p, caps) {
                    Some(ok) => {
                        if ok.status & status::MORE_RESULTS_EXISTS == 0 {
                            st = St::Any;
                        }
                        (Decoded::Ok(ok), "OK")
                    }
                    None => (Decoded::Raw(p.to_vec()), "packet"),
                },
                Some(0xFE) if st == St::Any => {
                    if p.len() < 9 {
                        (eof(p), "EOF")
                    } else {
                        match sluice::protocol::handshake::parse_auth_switch(p) {
                            Some((plugin, data)) => (Decoded::AuthSwitch { plugin: plugin.to_vec(), data: data.to_vec() }, "auth switch request"),
                            None => (Decoded::Raw(p.to_vec()), "packet"),
                        }
                    }
                }
                Some(0xFB) if matches!(expect, Expect::Query | Expect::Execute | Expect::ExecuteCursor) => (Decoded::LocalInfile { file: p[1..].to_vec() }, "LOCAL INFILE request"),
                Some(_) if st == St::First && expect != Expect::Prepare => match Reader::new(p).lenenc() {
                    Some(n) if n > 0 && p.len() <= 9 => {
                        result_set += 1;
                        row_no = 0;
                        types.clear();
                        st = St::Defs { left: n, total: n };
                        (Decoded::ColumnCount(n), "column count")
                    }
                    _ => (Decoded::Raw(p.to_vec()), "packet"),
                },
                _ => (Decoded::Raw(p.to_vec()), "packet"),
            },
            St::Defs { left, total } => {
                index = total - left + 1;
                st = if left > 1 {
                    St::Defs { left: left - 1, total }
                } else if dep {
                    St::Rows
                } else {
                    St::DefsEof
                };
                coldef(p, &mut types)
            }
            St::DefsEof => {
                let d = eof(p);
                if let Decoded::Eof { status: s, .. } = d {
                    st = if s & status::CURSOR_EXISTS != 0 && expect == Expect::ExecuteCursor {
                        if s & status::MORE_RESULTS_EXISTS != 0 { St::First } else { St::Any }
                    } else {
                        St::Rows
                    };
                }
                (d, "EOF")
            }
            St::Rows => match first {
                Some(0xFF) => {
                    st = St::Any;
                    (err(p), "ERR")
                }
                Some(0xFE) if p.len() < MAX_FRAME => {
                    let (d, s) = if !dep || p.len() < 7 {
                        let d = eof(p);
                        let s = if let Decoded::Eof { status, .. } = d { status } else { 0 };
                        (d, s)
                    } else {
                        match parse_ok(p, caps) {
                            Some(ok) => {
                                let s = ok.status;
                                (Decoded::Ok(ok), s)
                            }
                            None => (Decoded::Raw(p.to_vec()), 0),
                        }
                    };
                    st = if s & status::MORE_RESULTS_EXISTS != 0 { St::First } else { St::Any };
                    let role = if matches!(d, Decoded::Eof { .. }) { "EOF" } else { "OK (end of rows)" };
                    (d, role)
                }
                _ if expect == Expect::FieldList => {
                    row_no += 1;
                    index = row_no;
                    coldef(p, &mut types)
                }
                _ => {
                    row_no += 1;
                    index = row_no;
                    let cells = if binary { parse_binary_row(p, &types) } else { parse_text_row(p, types.len()) };
                    match cells {
                        Some(cells) => (Decoded::Row { binary, cells }, "row"),
                        None => (Decoded::Raw(p.to_vec()), "row (undecodable)"),
                    }
                }
            },
            St::PrepParams { left, cols } => {
                st = if left > 1 {
                    St::PrepParams { left: left - 1, cols }
                } else if !dep {
                    St::PrepParamsEof { cols }
                } else if cols > 0 {
                    St::PrepCols { left: cols, total: cols }
                } else {
                    St::Any
                };
                let (d, _) = coldef(p, &mut Vec::new());
                (d, "parameter definition")
            }
            St::PrepParamsEof { cols } => {
                st = if cols > 0 { St::PrepCols { left: cols, total: cols } } else { St::Any };
                (eof(p), "EOF")
            }
            St::PrepCols { left, total } => {
                index = (total - left + 1) as u64;
                st = if left > 1 {
                    St::PrepCols { left: left - 1, total }
                } else if !dep {
                    St::PrepColsEof
                } else {
                    St::Any
                };
                coldef(p, &mut types)
            }
            St::PrepColsEof => {
                st = St::Any;
                (eof(p), "EOF")
            }
        };
        out.push(Item { seq: pk.seq, last_seq: pk.last_seq, raw: pk.payload.clone(), decoded, result_set, index, types: types.clone(), role });
    }
    out
}

fn coldef(p: &[u8], types: &mut Vec<(u8, u16)>) -> (Decoded, &'static str) {
    match parse_coldef(p) {
        Some(c) => {
            types.push((c.column_type, c.flags));
            (Decoded::ColumnDef(Box::new(c)), "column definition")
        }
        None => (Decoded::Raw(p.to_vec()), "column definition (undecodable)"),
    }
}

fn err(p: &[u8]) -> Decoded {
    match sluice::protocol::packets::Err::parse(p) {
        Some(e) if p.get(3) == Some(&b'#') => Decoded::Err { code: e.code, state: e.state.to_vec(), message: e.message.to_vec() },
        _ => Decoded::Raw(p.to_vec()),
    }
}

fn eof(p: &[u8]) -> Decoded {
    if p.first() == Some(&0xFE) && p.len() >= 5 && p.len() < 9 {
        let mut r = Reader::new(&p[1..]);
        let warnings = r.u16().unwrap_or(0);
        let status = r.u16().unwrap_or(0);
        Decoded::Eof { warnings, status, trailing: r.rest().to_vec() }
    } else {
        Decoded::Raw(p.to_vec())
    }
}

/// The column types of the result sets in decoded items (the last result set's).
pub fn result_types(items: &[Item]) -> Vec<(u8, u16)> {
    items.iter().rev().find(|i| matches!(i.decoded, Decoded::ColumnDef(_)) && i.role == "column definition").map(|i| i.types.clone()).unwrap_or_default()
}

/// The largest warning count reported by any OK, EOF or PREPARE_OK of a response.
pub fn warnings(items: &[Item]) -> u16 {
    items
        .iter()
        .map(|i| match &i.decoded {
            Decoded::Ok(o) => o.warnings,
            Decoded::Eof { warnings, .. } => *warnings,
            Decoded::PrepareOk { warnings, .. } => *warnings,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Display helpers.

/// Bytes as `'text'` when printable UTF-8, else `x'hex'`; long values are abbreviated.
pub fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 64;
    let printable = std::str::from_utf8(b).ok().filter(|s| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
    match printable {
        Some(s) if s.chars().count() <= MAX => format!("'{}'", s.escape_debug()),
        Some(s) => {
            let head: String = s.chars().take(MAX).collect();
            format!("'{}…' ({} bytes)", head.escape_debug(), b.len())
        }
        None if b.len() <= MAX / 2 => format!("x'{}'", to_hex(b)),
        None => format!("x'{}…' ({} bytes)", to_hex(&b[..MAX / 2]), b.len()),
    }
}

/// A cell for messages: NULL, or the value (binary values decoded by their type).
pub fn show_cell(cell: &Option<Vec<u8>>, binary: bool, t: Option<(u8, u16)>) -> String {
    let Some(v) = cell else { return "NULL".into() };
    if !binary {
        return show_bytes(v);
    }
    let Some((t, flags)) = t else { return show_bytes(v) };
    let unsigned = flags & UNSIGNED_FLAG != 0;
    let le = |n: usize| -> Option<u64> { (v.len() == n).then(|| v.iter().rev().fold(0u64, |a, &b| a << 8 | b as u64)) };
    let s = match t {
        ty::TINY => le(1).map(|x| if unsigned { x.to_string() } else { (x as u8 as i8).to_string() }),
        ty::SHORT | ty::YEAR => le(2).map(|x| if unsigned { x.to_string() } else { (x as u16 as i16).to_string() }),
        ty::LONG | ty::INT24 => le(4).map(|x| if unsigned { x.to_string() } else { (x as u32 as i32).to_string() }),
        ty::LONGLONG => le(8).map(|x| if unsigned { x.to_string() } else { (x as i64).to_string() }),
        ty::FLOAT => le(4).map(|x| format!("{:?}", f32::from_bits(x as u32))),
        ty::DOUBLE => le(8).map(|x| format!("{:?}", f64::from_bits(x))),
        ty::DATE | ty::DATETIME | ty::TIMESTAMP | ty::NEWDATE => {
            let b = &v[1..];
            let g = |i: usize| b.get(i).copied().unwrap_or(0) as u32;
            let year = g(0) | g(1) << 8;
            let mut s = format!("{year:04}-{:02}-{:02}", g(2), g(3));
            if b.len() >= 7 {
                s += &format!(" {:02}:{:02}:{:02}", g(4), g(5), g(6));
            }
            if b.len() >= 11 {
                s += &format!(".{:06}", g(7) | g(8) << 8 | g(9) << 16 | g(10) << 24);
            }
            Some(s)
        }
        ty::TIME => {
            let b = &v[1..];
            let g = |i: usize| b.get(i).copied().unwrap_or(0) as u32;
            let days = g(1) | g(2) << 8 | g(3) << 16 | g(4) << 24;
            let mut s = format!("{}{}:{:02}:{:02}", if g(0) == 1 { "-" } else { "" }, days * 24 + g(5), g(6), g(7));
            if b.len() >= 12 {
                s += &format!(".{:06}", g(8) | g(9) << 8 | g(10) << 16 | g(11) << 24);
            }
            Some(s)
        }
        _ => None,
    };
    match s {
        Some(s) => format!("{s} (x'{}')", to_hex(v)),
        None => show_bytes(v),
    }
}

/// Status flags by name.
pub fn show_status(s: u16) -> String {
    const NAMES: &[(u16, &str)] = &[
        (status::IN_TRANS, "IN_TRANS"),
        (status::AUTOCOMMIT, "AUTOCOMMIT"),
        (status::MORE_RESULTS_EXISTS, "MORE_RESULTS_EXISTS"),
        (status::NO_GOOD_INDEX_USED, "NO_GOOD_INDEX_USED"),
        (status::NO_INDEX_USED, "NO_INDEX_USED"),
        (status::CURSOR_EXISTS, "CURSOR_EXISTS"),
        (status::LAST_ROW_SENT, "LAST_ROW_SENT"),
        (status::DB_DROPPED, "DB_DROPPED"),
        (status::NO_BACKSLASH_ESCAPES, "NO_BACKSLASH_ESCAPES"),
        (status::METADATA_CHANGED, "METADATA_CHANGED"),
        (status::QUERY_WAS_SLOW, "QUERY_WAS_SLOW"),
        (status::PS_OUT_PARAMS, "PS_OUT_PARAMS"),
        (status::IN_TRANS_READONLY, "IN_TRANS_READONLY"),
        (status::SESSION_STATE_CHANGED, "SESSION_STATE_CHANGED"),
    ];
    let names: Vec<&str> = NAMES.iter().filter(|(b, _)| s & b != 0).map(|(_, n)| *n).collect();
    format!("0x{s:04x} ({})", names.join("|"))
}

/// Session-state-change entries, readable.
pub fn show_session_state(b: &[u8]) -> String {
    if b.is_empty() {
        return "(none)".into();
    }
    let mut r = Reader::new(b);
    let mut parts = vec![];
    while !r.is_empty() {
        let (Some(t), Some(data)) = (r.u8(), r.lenenc_bytes()) else {
            parts.push(format!("<malformed {}>", show_bytes(b)));
            break;
        };
        let mut d = Reader::new(data);
        let text = match t {
            0 => {
                let k = d.lenenc_bytes().unwrap_or_default();
                let v = d.lenenc_bytes().unwrap_or_default();
                format!("system variable {}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))
            }
            1 => format!("schema {}", String::from_utf8_lossy(d.lenenc_bytes().unwrap_or_default())),
            2 => format!("state changed {}", String::from_utf8_lossy(d.lenenc_bytes().unwrap_or_default())),
            5 => format!("transaction state {}", String::from_utf8_lossy(d.lenenc_bytes().unwrap_or_default())),
            t => format!("type {t} {}", show_bytes(data)),
        };
        parts.push(text);
    }
    parts.join(", ")
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoded::Ok(o) => write!(
                f,
                "OK{} affected_rows={} last_insert_id={} status={} warnings={} info={} session_state=[{}]{}",
                if o.header == 0xFE { " (0xFE)" } else { "" },
                o.affected_rows,
                o.last_insert_id,
                show_status(o.status),
                o.warnings,
                show_bytes(&o.info),
                show_session_state(&o.session_state),
                if o.trailing.is_empty() { String::new() } else { format!(" trailing={}", show_bytes(&o.trailing)) }
            ),
            Decoded::Eof { warnings, status, .. } => write!(f, "EOF warnings={warnings} status={}", show_status(*status)),
            Decoded::Err { code, state, message } => write!(f, "ERR {code} ({}) {}", String::from_utf8_lossy(state), show_bytes(message)),
            Decoded::ColumnCount(n) => write!(f, "column count {n}"),
            Decoded::ColumnDef(c) => write!(
                f,
                "column {} (table {}, org {}.{}, schema {}) charset={} length={} type={} flags=0x{:04x} decimals={}",
                show_bytes(&c.name),
                show_bytes(&c.table),
                show_bytes(&c.org_table),
                show_bytes(&c.org_name),
                show_bytes(&c.schema),
                c.charset,
                c.length,
                ty::name(c.column_type),
                c.flags,
                c.decimals
            ),
            Decoded::Row { cells, binary } => {
                let parts: Vec<String> = cells.iter().map(|c| show_cell(c, *binary, None)).collect();
                write!(f, "row ({})", parts.join(", "))
            }
            Decoded::PrepareOk { stmt_id, columns, params, warnings, .. } => {
                write!(f, "PREPARE_OK statement={stmt_id} columns={columns} params={params} warnings={warnings}")
            }
            Decoded::LocalInfile { file } => write!(f, "LOCAL INFILE request for {}", show_bytes(file)),
            Decoded::AuthSwitch { plugin, .. } => write!(f, "auth switch request to {}", show_bytes(plugin)),
            Decoded::Raw(b) => write!(f, "packet {}", show_bytes(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(seq: u8, payload: &[u8]) -> RawPacket {
        RawPacket { seq, last_seq: seq, payload: payload.to_vec() }
    }

    fn coldef_bytes(name: &str, t: u8, flags: u16) -> Vec<u8> {
        let mut p = vec![];
        for s in ["def", "test", "t", "t", name, name] {
            sluice::protocol::packet::put_lenenc_bytes(&mut p, s.as_bytes());
        }
        p.push(0x0c);
        p.extend_from_slice(&45u16.to_le_bytes());
        p.extend_from_slice(&11u32.to_le_bytes());
        p.push(t);
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        p
    }

    #[test]
    fn decodes_text_result_with_eof() {
        let caps = cap::PROTOCOL_41 | cap::SESSION_TRACK;
        let items = decode(
            Expect::Query,
            caps,
            &[pk(1, &[2]), pk(2, &coldef_bytes("a", ty::LONG, 0)), pk(3, &coldef_bytes("b", ty::VAR_STRING, 0)), pk(4, &[0xFE, 0, 0, 2, 0]), pk(5, b"\x011\xfb"), pk(6, &[0xFE, 0, 0, 2, 0])],
            &[],
        );
        assert_eq!(items[4].decoded, Decoded::Row { binary: false, cells: vec![Some(b"1".to_vec()), None] });
        assert_eq!(items[4].describe(), "result set 1 row 1");
        assert!(matches!(items[5].decoded, Decoded::Eof { status: 2, .. }));
    }

    #[test]
    fn decodes_binary_rows_and_deprecate_eof_ok() {
        let caps = cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::DEPRECATE_EOF;
        let row = [0x00, 0b0000_1000, 5, 0, 0, 0];
        let items = decode(
            Expect::Execute,
            caps,
            &[pk(1, &[2]), pk(2, &coldef_bytes("a", ty::LONG, 0)), pk(3, &coldef_bytes("b", ty::LONG, 0)), pk(4, &row), pk(5, &[0xFE, 0, 0, 2, 0, 0, 0])],
            &[],
        );
        assert_eq!(items[3].decoded, Decoded::Row { binary: true, cells: vec![Some(vec![5, 0, 0, 0]), None] });
        assert!(matches!(items[4].decoded, Decoded::Ok(_)));
        assert_eq!(show_cell(&Some(vec![0xFF]), true, Some((ty::TINY, 0))), "-1 (x'FF')");
    }
}
