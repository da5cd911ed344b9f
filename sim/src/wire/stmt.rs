//! Prepared statements, simply: the statement text is kept, `?` placeholders are
//! counted at COM_STMT_PREPARE, and COM_STMT_EXECUTE substitutes the binary parameters
//! as SQL literals and runs the text (results go back as binary rows).
//!
//! Parameter encoding follows
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>.

use std::collections::BTreeMap;

use sluice::protocol::packet::Reader;

use crate::engine::{col_type, Value};

/// One prepared statement of a connection.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    pub params: usize,
    /// Parameter types `(type, flags)` from the last execute that sent them.
    pub types: Vec<(u8, u8)>,
    /// COM_STMT_SEND_LONG_DATA pieces, by parameter index.
    pub long_data: BTreeMap<u16, Vec<u8>>,
}

/// Where the lexical scan is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    Quote(u8),
    LineComment,
    BlockComment,
}

/// Byte offsets of the `?` placeholders of `sql` (outside strings, identifiers and
/// comments).
pub fn placeholders(sql: &str) -> Vec<usize> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut st = Lex::Code;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match st {
            Lex::Code => match c {
                b'\'' | b'"' | b'`' => st = Lex::Quote(c),
                b'#' => st = Lex::LineComment,
                b'-' if b.get(i + 1) == Some(&b'-') && b.get(i + 2).is_none_or(|x| x.is_ascii_whitespace()) => {
                    st = Lex::LineComment;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    st = Lex::BlockComment;
                    i += 1;
                }
                b'?' => out.push(i),
                _ => {}
            },
            Lex::Quote(q) => {
                if c == b'\\' && q != b'`' {
                    i += 1;
                } else if c == q {
                    if b.get(i + 1) == Some(&q) {
                        i += 1;
                    } else {
                        st = Lex::Code;
                    }
                }
            }
            Lex::LineComment => {
                if c == b'\n' {
                    st = Lex::Code;
                }
            }
            Lex::BlockComment => {
                if c == b'*' && b.get(i + 1) == Some(&b'/') {
                    st = Lex::Code;
                    i += 1;
                }
            }
        }
        i += 1;
    }
    out
}

/// A value as an SQL literal.
pub fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Double(d) if d.is_finite() => {
            let s = format!("{d:?}");
            s
        }
        Value::Double(_) => "NULL".into(),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.contains('\0') => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('\'');
                for ch in s.chars() {
                    match ch {
                        '\'' => out.push_str("\\'"),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\x1a' => out.push_str("\\Z"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
                out
            }
            _ => {
                let mut out = String::with_capacity(3 + 2 * b.len());
                out.push_str("X'");
                for x in b {
                    out.push_str(&format!("{x:02X}"));
                }
                out.push('\'');
                out
            }
        },
    }
}

/// `sql` with its placeholders replaced by `params` as literals.
pub fn substitute(sql: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut last = 0;
    for (n, at) in placeholders(sql).into_iter().enumerate() {
        out.push_str(&sql[last..at]);
        out.push_str(&params.get(n).map(literal).unwrap_or_else(|| "NULL".into()));
        last = at + 1;
    }
    out.push_str(&sql[last..]);
    out
}

/// What is wrong with an execute packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Decodes the parameters of COM_STMT_EXECUTE (the payload after the statement id,
/// flags and iteration count), updating the statement's remembered types.
pub fn decode_params(stmt: &mut Prepared, r: &mut Reader<'_>) -> Result<Vec<Value>, Malformed> {
    let n = stmt.params;
    if n == 0 {
        return Ok(Vec::new());
    }
    let bitmap = r.take(n.div_ceil(8)).ok_or(Malformed)?.to_vec();
    let bound = r.u8().ok_or(Malformed)?;
    if bound == 1 {
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            let t = r.u8().ok_or(Malformed)?;
            let f = r.u8().ok_or(Malformed)?;
            types.push((t, f));
        }
        stmt.types = types;
    }
    if stmt.types.len() != n {
        return Err(Malformed);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(data) = stmt.long_data.get(&(i as u16)) {
            out.push(Value::Bytes(data.clone()));
            continue;
        }
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            out.push(Value::Null);
            continue;
        }
        let (t, f) = stmt.types[i];
        out.push(decode_value(t, f & 0x80 != 0, r).ok_or(Malformed)?);
    }
    Ok(out)
}

fn decode_value(t: u8, unsigned: bool, r: &mut Reader<'_>) -> Option<Value> {
    Some(match t {
        col_type::NULL => Value::Null,
        col_type::TINY => {
            let v = r.u8()?;
            if unsigned { Value::Int(v as i64) } else { Value::Int(v as i8 as i64) }
        }
        col_type::SHORT | col_type::YEAR => {
            let v = r.u16()?;
            if unsigned { Value::Int(v as i64) } else { Value::Int(v as i16 as i64) }
        }
        col_type::LONG | col_type::INT24 => {
            let v = r.u32()?;
            if unsigned { Value::Int(v as i64) } else { Value::Int(v as i32 as i64) }
        }
        col_type::LONGLONG => {
            let v = r.u64()?;
            if unsigned { Value::UInt(v) } else { Value::Int(v as i64) }
        }
        col_type::FLOAT => Value::Double(f32::from_le_bytes(r.take(4)?.try_into().ok()?) as f64),
        col_type::DOUBLE => Value::Double(f64::from_le_bytes(r.take(8)?.try_into().ok()?)),
        col_type::DATE | col_type::DATETIME | col_type::TIMESTAMP => {
            let len = r.u8()? as usize;
            let b = r.take(len)?;
            let mut rb = Reader::new(b);
            let (y, mo, d) = if len >= 4 { (rb.u16()?, rb.u8()?, rb.u8()?) } else { (0, 0, 0) };
            let (h, mi, s) = if len >= 7 { (rb.u8()?, rb.u8()?, rb.u8()?) } else { (0, 0, 0) };
            let micro = if len >= 11 { rb.u32()? } else { 0 };
            let mut text = format!("{y:04}-{mo:02}-{d:02}");
            if t != col_type::DATE || len >= 7 {
                text.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
                if micro != 0 {
                    text.push_str(&format!(".{micro:06}"));
                }
            }
            Value::Bytes(text.into_bytes())
        }
        col_type::TIME => {
            let len = r.u8()? as usize;
            let b = r.take(len)?;
            let mut rb = Reader::new(b);
            if len == 0 {
                return Some(Value::str("00:00:00"));
            }
            let neg = rb.u8()? != 0;
            let days = rb.u32()?;
            let (h, mi, s) = (rb.u8()?, rb.u8()?, rb.u8()?);
            let micro = if len >= 12 { rb.u32()? } else { 0 };
            let hours = days as u64 * 24 + h as u64;
            let mut text = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
            if micro != 0 {
                text.push_str(&format!(".{micro:06}"));
            }
            Value::Bytes(text.into_bytes())
        }
        _ => Value::Bytes(r.lenenc_bytes()?.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_strings_identifiers_and_comments() {
        let sql = "SELECT ?, '?', \"a\\\"?\", `?`, ? -- ?\n, /* ? */ ? # ?";
        assert_eq!(placeholders(sql).len(), 3);
        assert_eq!(substitute("INSERT INTO t VALUES (?, ?, ?)", &[Value::Int(1), Value::Null, Value::str("it's")]),
            "INSERT INTO t VALUES (1, NULL, 'it\\'s')");
    }

    #[test]
    fn binary_strings_become_hex_literals() {
        assert_eq!(literal(&Value::Bytes(vec![0xff, 0])), "X'FF00'");
        assert_eq!(literal(&Value::Double(0.5)), "0.5");
    }

    #[test]
    fn params_decode_with_types_nulls_and_long_data() {
        let mut st = Prepared { sql: "?".into(), params: 4, types: vec![], long_data: BTreeMap::new() };
        st.long_data.insert(3, b"big".to_vec());
        let mut p = vec![0b0000_0010, 1];
        for t in [col_type::LONGLONG, col_type::VAR_STRING, col_type::DATETIME, col_type::BLOB] {
            p.extend_from_slice(&[t, 0]);
        }
        p.extend_from_slice(&(-5i64).to_le_bytes());
        p.extend_from_slice(&[7, 0xE8, 0x07, 1, 2, 3, 4, 5]);
        let v = decode_params(&mut st, &mut Reader::new(&p)).unwrap();
        assert_eq!(v, vec![Value::Int(-5), Value::Null, Value::str("2024-01-02 03:04:05"), Value::str("big")]);
        // Types are remembered when the next execute does not resend them.
        let mut p = vec![0b0000_0110, 0];
        p.extend_from_slice(&9i64.to_le_bytes());
        let v = decode_params(&mut st, &mut Reader::new(&p)).unwrap();
        assert_eq!(v[0], Value::Int(9));
    }
}
