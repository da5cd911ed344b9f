//! Engine results as protocol packets: OK (with the session-state-change block), ERR,
//! EOF, column definitions, text rows and binary rows.
//!
//! Packet layouts follow
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html>.
//! The OK/ERR builders themselves are Sluice's ([`sluice::protocol::packets`]).

use bytes::{BufMut, BytesMut};
use sluice::protocol::constants::{cap, status};
use sluice::protocol::packet::{put_lenenc, put_lenenc_bytes};
use sluice::protocol::packets::{self, track};

use crate::engine::{col_type, Column, OkPacket, QueryResult, ResultSet, SqlError, StateChange, Value};

/// Session-state-change block of an OK packet.
pub fn state_changes(changes: &[StateChange]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for c in changes {
        let mut data = BytesMut::new();
        let t = match c {
            StateChange::SystemVariable { name, value } => {
                put_lenenc_bytes(&mut data, name.as_bytes());
                put_lenenc_bytes(&mut data, value.as_bytes());
                track::SYSTEM_VARIABLES
            }
            StateChange::Schema(s) => {
                put_lenenc_bytes(&mut data, s.as_bytes());
                track::SCHEMA
            }
            StateChange::StateChanged => {
                put_lenenc_bytes(&mut data, b"1");
                track::STATE_CHANGE
            }
            StateChange::Gtids(g) => {
                // encoding specification 0: one length-encoded GTID set text.
                data.put_u8(0);
                put_lenenc_bytes(&mut data, g.as_bytes());
                track::GTIDS
            }
            StateChange::TransactionCharacteristics(s) => {
                put_lenenc_bytes(&mut data, s.as_bytes());
                track::TRANSACTION_CHARACTERISTICS
            }
            StateChange::TransactionState(s) => {
                put_lenenc_bytes(&mut data, s.as_bytes());
                track::TRANSACTION_STATE
            }
        };
        out.put_u8(t);
        put_lenenc_bytes(&mut out, &data);
    }
    out.to_vec()
}

/// An OK packet payload (`header` 0x00, or 0xFE when it ends a result set under
/// DEPRECATE_EOF). `more` sets SERVER_MORE_RESULTS_EXISTS.
pub fn ok(ok: &OkPacket, header: u8, more: bool, caps: u32) -> Vec<u8> {
    let mut st = ok.status_flags & !status::MORE_RESULTS_EXISTS;
    if more {
        st |= status::MORE_RESULTS_EXISTS;
    }
    let tracked = caps & cap::SESSION_TRACK != 0 && !ok.session_state_changes.is_empty();
    let state = if tracked { state_changes(&ok.session_state_changes) } else { Vec::new() };
    if tracked {
        st |= status::SESSION_STATE_CHANGED;
    } else {
        st &= !status::SESSION_STATE_CHANGED;
    }
    let mut out = BytesMut::with_capacity(16 + ok.info.len() + state.len());
    packets::Ok {
        affected_rows: ok.affected_rows,
        last_insert_id: ok.last_insert_id,
        status: st,
        warnings: ok.warnings,
        info: ok.info.as_bytes(),
        session_state: &state,
    }
    .write(&mut out, header, caps);
    out.to_vec()
}

/// A plain OK with only status flags.
pub fn ok_status(status_flags: u16, caps: u32) -> Vec<u8> {
    ok(&OkPacket { status_flags, ..Default::default() }, 0x00, false, caps)
}

pub fn err(e: &SqlError) -> Vec<u8> {
    packets::err_payload(e.code, &e.state, &e.message)
}

/// An EOF packet payload.
pub fn eof(warnings: u16, status_flags: u16) -> Vec<u8> {
    let mut v = vec![0xFE];
    v.extend_from_slice(&warnings.to_le_bytes());
    v.extend_from_slice(&status_flags.to_le_bytes());
    v
}

/// ColumnDefinition41.
pub fn column_def(c: &Column) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(64);
    put_lenenc_bytes(&mut out, b"def");
    put_lenenc_bytes(&mut out, c.schema.as_bytes());
    put_lenenc_bytes(&mut out, c.table.as_bytes());
    put_lenenc_bytes(&mut out, c.org_table.as_bytes());
    put_lenenc_bytes(&mut out, c.name.as_bytes());
    put_lenenc_bytes(&mut out, c.org_name.as_bytes());
    put_lenenc(&mut out, 0x0c);
    out.put_u16_le(c.charset);
    out.put_u32_le(c.length);
    out.put_u8(c.col_type);
    out.put_u16_le(c.flags);
    out.put_u8(c.decimals);
    out.put_u16_le(0);
    out.to_vec()
}

/// A parameter definition of COM_STMT_PREPARE's answer.
pub fn param_def() -> Vec<u8> {
    column_def(&Column::expr("?", col_type::VAR_STRING, 0, 63, 0))
}

/// A text-protocol row.
pub fn text_row(row: &[Value]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(16 * row.len());
    for v in row {
        match v.to_text() {
            None => out.put_u8(0xFB),
            Some(t) => put_lenenc_bytes(&mut out, &t),
        }
    }
    out.to_vec()
}

/// A binary-protocol row for the given columns.
pub fn binary_row(cols: &[Column], row: &[Value]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(16 * row.len());
    out.put_u8(0x00);
    let bitmap_len = (cols.len() + 7 + 2) / 8;
    let bitmap_at = out.len();
    out.put_bytes(0, bitmap_len);
    for (i, c) in cols.iter().enumerate() {
        let v = row.get(i).unwrap_or(&Value::Null);
        if v.is_null() {
            let bit = i + 2;
            out[bitmap_at + bit / 8] |= 1 << (bit % 8);
            continue;
        }
        put_binary_value(&mut out, c.col_type, v);
    }
    out.to_vec()
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::UInt(u) => *u as i64,
        other => other.to_i64().unwrap_or(0),
    }
}

fn put_binary_value(out: &mut BytesMut, t: u8, v: &Value) {
    match t {
        col_type::TINY => out.put_u8(int_of(v) as u8),
        col_type::SHORT | col_type::YEAR => out.put_u16_le(int_of(v) as u16),
        col_type::LONG | col_type::INT24 => out.put_u32_le(int_of(v) as u32),
        col_type::LONGLONG => out.put_u64_le(int_of(v) as u64),
        col_type::FLOAT => out.put_f32_le(v.to_f64().unwrap_or(0.0) as f32),
        col_type::DOUBLE => out.put_f64_le(v.to_f64().unwrap_or(0.0)),
        col_type::DATE | col_type::DATETIME | col_type::TIMESTAMP => put_binary_datetime(out, &v.to_text().unwrap_or_default()),
        col_type::TIME => put_binary_time(out, &v.to_text().unwrap_or_default()),
        _ => put_lenenc_bytes(out, &v.to_text().unwrap_or_default()),
    }
}

/// Parses the leading unsigned number of `s`, returning it and the rest.
fn num(s: &[u8]) -> (u64, &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let v = std::str::from_utf8(&s[..n]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
    (v, &s[n..])
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` in the binary protocol's packed form.
fn put_binary_datetime(out: &mut BytesMut, text: &[u8]) {
    let (y, r) = num(text);
    let (mo, r) = num(r.get(1..).unwrap_or_default());
    let (d, r) = num(r.get(1..).unwrap_or_default());
    let (h, r) = num(r.get(1..).unwrap_or_default());
    let (mi, r) = num(r.get(1..).unwrap_or_default());
    let (s, r) = num(r.get(1..).unwrap_or_default());
    let micro = if r.first() == Some(&b'.') {
        let digits: Vec<u8> = r[1..].iter().take_while(|b| b.is_ascii_digit()).take(6).copied().collect();
        let (v, _) = num(&digits);
        v * 10u64.pow(6 - digits.len() as u32)
    } else {
        0
    };
    if micro != 0 {
        out.put_u8(11);
    } else if h != 0 || mi != 0 || s != 0 {
        out.put_u8(7);
    } else if y != 0 || mo != 0 || d != 0 {
        out.put_u8(4);
    } else {
        out.put_u8(0);
        return;
    }
    out.put_u16_le(y as u16);
    out.put_u8(mo as u8);
    out.put_u8(d as u8);
    if h != 0 || mi != 0 || s != 0 || micro != 0 {
        out.put_u8(h as u8);
        out.put_u8(mi as u8);
        out.put_u8(s as u8);
    }
    if micro != 0 {
        out.put_u32_le(micro as u32);
    }
}

/// `[-]HHH:MM:SS[.ffffff]` in the binary protocol's packed form.
fn put_binary_time(out: &mut BytesMut, text: &[u8]) {
    let (neg, t) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let (h, r) = num(t);
    let (mi, r) = num(r.get(1..).unwrap_or_default());
    let (s, r) = num(r.get(1..).unwrap_or_default());
    let micro = if r.first() == Some(&b'.') {
        let digits: Vec<u8> = r[1..].iter().take_while(|b| b.is_ascii_digit()).take(6).copied().collect();
        num(&digits).0 * 10u64.pow(6 - digits.len() as u32)
    } else {
        0
    };
    if h == 0 && mi == 0 && s == 0 && micro == 0 {
        out.put_u8(0);
        return;
    }
    out.put_u8(if micro != 0 { 12 } else { 8 });
    out.put_u8(neg as u8);
    out.put_u32_le((h / 24) as u32);
    out.put_u8((h % 24) as u8);
    out.put_u8(mi as u8);
    out.put_u8(s as u8);
    if micro != 0 {
        out.put_u32_le(micro as u32);
    }
}

/// Appends the packets of one result to `out` (as `(payload)` list); `more` sets
/// SERVER_MORE_RESULTS_EXISTS on its terminator.
pub fn result_packets(r: &QueryResult, more: bool, caps: u32, binary: bool, out: &mut Vec<Vec<u8>>) {
    match r {
        QueryResult::Ok(o) => out.push(ok(o, 0x00, more, caps)),
        QueryResult::Err(e) => out.push(err(e)),
        QueryResult::ResultSet(rs) => result_set_packets(rs, more, caps, binary, out),
    }
}

fn result_set_packets(rs: &ResultSet, more: bool, caps: u32, binary: bool, out: &mut Vec<Vec<u8>>) {
    let mut st = rs.status_flags & !(status::MORE_RESULTS_EXISTS | status::SESSION_STATE_CHANGED);
    if more {
        st |= status::MORE_RESULTS_EXISTS;
    }
    let mut count = BytesMut::new();
    put_lenenc(&mut count, rs.columns.len() as u64);
    out.push(count.to_vec());
    for c in &rs.columns {
        out.push(column_def(c));
    }
    let deprecate_eof = caps & cap::DEPRECATE_EOF != 0;
    if !deprecate_eof {
        out.push(eof(rs.warnings, st));
    }
    for row in &rs.rows {
        out.push(if binary { binary_row(&rs.columns, row) } else { text_row(row) });
    }
    if deprecate_eof {
        let end = OkPacket { status_flags: st, warnings: rs.warnings, ..Default::default() };
        out.push(ok(&end, 0xFE, more, caps));
    } else {
        out.push(eof(rs.warnings, st));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::col_flags;
    use sluice::protocol::packets::Ok as OkView;

    const CAPS: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::DEPRECATE_EOF | cap::TRANSACTIONS;

    #[test]
    fn ok_carries_last_gtid_and_schema_as_state_changes() {
        let o = OkPacket {
            affected_rows: 1,
            status_flags: status::AUTOCOMMIT,
            session_state_changes: vec![
                StateChange::SystemVariable { name: "last_gtid".into(), value: "0-1-5".into() },
                StateChange::Schema("test".into()),
            ],
            ..Default::default()
        };
        let p = ok(&o, 0, true, CAPS);
        let v = OkView::parse(&p, CAPS).unwrap();
        assert_eq!(v.status & status::MORE_RESULTS_EXISTS, status::MORE_RESULTS_EXISTS);
        assert_ne!(v.status & status::SESSION_STATE_CHANGED, 0);
        let ch: Vec<_> = v.state_changes().collect();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0].0, track::SYSTEM_VARIABLES);
        assert_eq!(ch[0].1, b"\x09last_gtid\x050-1-5");
        assert_eq!(ch[1], (track::SCHEMA, &b"\x04test"[..]));
        // Without SESSION_TRACK the block and the flag disappear.
        let p = ok(&o, 0, false, cap::PROTOCOL_41);
        let v = OkView::parse(&p, cap::PROTOCOL_41).unwrap();
        assert_eq!(v.status & status::SESSION_STATE_CHANGED, 0);
    }

    #[test]
    fn gtid_tracker_uses_encoding_spec_zero() {
        let o = OkPacket { session_state_changes: vec![StateChange::Gtids("u:7".into())], ..Default::default() };
        let p = ok(&o, 0, false, CAPS);
        let v = OkView::parse(&p, CAPS).unwrap();
        let ch: Vec<_> = v.state_changes().collect();
        assert_eq!(ch, vec![(track::GTIDS, &b"\x00\x03u:7"[..])]);
    }

    #[test]
    fn binary_row_sets_null_bits_with_offset_two() {
        let cols = vec![
            Column::expr("a", col_type::LONGLONG, col_flags::NUM, 63, 21),
            Column::expr("b", col_type::VAR_STRING, 0, 45, 10),
            Column::expr("c", col_type::DATETIME, 0, 63, 19),
        ];
        let row = binary_row(&cols, &[Value::Int(7), Value::Null, Value::str("2024-01-02 03:04:05")]);
        assert_eq!(row[0], 0);
        assert_eq!(row[1], 1 << 3);
        assert_eq!(&row[2..10], &7u64.to_le_bytes());
        assert_eq!(&row[10..], &[7, 0xE8, 0x07, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn result_set_with_and_without_deprecate_eof() {
        let rs = ResultSet {
            columns: vec![Column::expr("x", col_type::LONGLONG, 0, 63, 21)],
            rows: vec![vec![Value::Int(1)], vec![Value::Null]],
            status_flags: status::AUTOCOMMIT,
            warnings: 0,
        };
        let mut out = vec![];
        result_packets(&QueryResult::ResultSet(rs.clone()), false, CAPS, false, &mut out);
        assert_eq!(out.len(), 1 + 1 + 2 + 1);
        assert_eq!(out[2], b"\x011");
        assert_eq!(out[3], b"\xfb");
        assert_eq!(out[4][0], 0xFE);
        let mut out = vec![];
        result_packets(&QueryResult::ResultSet(rs), true, cap::PROTOCOL_41, false, &mut out);
        assert_eq!(out.len(), 1 + 1 + 1 + 2 + 1);
        assert_eq!(out[5], eof(0, status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS));
    }
}
