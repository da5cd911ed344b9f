//! The workload's own bits of the client side of the MySQL protocol, over a
//! [`BackendConn`]'s packet connection, for what [`BackendConn::query`] (text protocol,
//! first result set only) does not cover:
//!
//! * [`query_all`]: every result of a COM_QUERY — a multi-statement answers one OK or
//!   result set per statement, chained with `SERVER_MORE_RESULTS_EXISTS`, and stops at
//!   the first error
//!   (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase_sp.html>,
//!   multi-resultsets);
//! * prepared statements over the binary protocol: [`prepare`] (COM_STMT_PREPARE),
//!   [`execute`] (COM_STMT_EXECUTE with typed parameters, binary result rows decoded to
//!   text), [`close`] (COM_STMT_CLOSE, no answer)
//!   (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html>,
//!   <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>,
//!   <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html>).
//!
//! Errors are [`sluice::Error`]s shaped like `BackendConn`'s own (an ERR packet is
//! `BackendErr`, a failed socket `BackendIo` with whether the command was sent), so the
//! workload classifies them the same way.

use sluice::backend::conn::BackendConn;
use sluice::net::Stream;
use sluice::protocol::constants::{cap, com, status};
use sluice::protocol::conn::{Packet, ReadError};
use sluice::protocol::packet::Reader;
use sluice::protocol::packets;
use sluice::Error;

/// One statement's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Res {
    /// An OK packet.
    Ok { affected: u64 },
    /// A result set: rows of text values (`None` = NULL). Binary rows are decoded to
    /// the text the text protocol would have sent for integers and strings.
    Rows(Vec<Vec<Option<String>>>),
}

impl Res {
    /// Cell `col` of the first row, if any.
    pub fn cell(&self, col: usize) -> Option<&str> {
        match self {
            Res::Rows(rows) => rows.first()?.get(col)?.as_deref(),
            Res::Ok { .. } => None,
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Res::Rows(rows) => rows.len(),
            Res::Ok { .. } => 0,
        }
    }
}

/// A parameter of a prepared statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// What COM_STMT_PREPARE answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub id: u32,
    pub params: u16,
}

fn io(c: &BackendConn<impl Stream>, sent: bool, e: std::io::Error) -> Error {
    Error::BackendIo { addr: c.addr.clone(), sent, source: e }
}

fn read_err(c: &BackendConn<impl Stream>, e: ReadError) -> Error {
    match e {
        ReadError::Io(e) => io(c, true, e),
        ReadError::Closed => io(c, true, std::io::ErrorKind::UnexpectedEof.into()),
        other => Error::BackendProtocol { addr: c.addr.clone(), message: other.to_string() },
    }
}

fn protocol(c: &BackendConn<impl Stream>, what: &str) -> Error {
    Error::BackendProtocol { addr: c.addr.clone(), message: what.to_string() }
}

fn server_err(c: &BackendConn<impl Stream>, payload: &[u8]) -> Error {
    match packets::Err::parse(payload) {
        Some(e) => Error::BackendErr {
            addr: c.addr.clone(),
            code: e.code,
            state: String::from_utf8_lossy(e.state).into_owned(),
            message: e.message_lossy(),
        },
        None => protocol(c, "bad ERR packet"),
    }
}

async fn read<S: Stream>(c: &mut BackendConn<S>) -> Result<Packet, Error> {
    match c.conn.read_packet().await {
        Ok(p) => Ok(p),
        Err(e) => Err(read_err(c, e)),
    }
}

async fn send<S: Stream>(c: &mut BackendConn<S>, payload: &[u8]) -> Result<(), Error> {
    match c.conn.send(0, payload).await {
        Ok(_) => Ok(()),
        Err(e) => Err(io(c, false, e)),
    }
}

/// Column types of a result set's definitions (the type byte of each).
async fn column_types<S: Stream>(c: &mut BackendConn<S>, n: u64) -> Result<Vec<u8>, Error> {
    let mut types = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let p = read(c).await?;
        let mut r = Reader::new(&p.payload);
        for _ in 0..6 {
            r.lenenc_bytes().ok_or_else(|| protocol(c, "bad column definition"))?;
        }
        r.lenenc();
        let (_charset, _len, t) = (r.u16(), r.u32(), r.u8());
        types.push(t.ok_or_else(|| protocol(c, "bad column definition"))?);
    }
    if c.caps & cap::DEPRECATE_EOF == 0 {
        read(c).await?;
    }
    Ok(types)
}

/// Reads one response (OK, ERR or a result set) and whether more results follow.
async fn response<S: Stream>(c: &mut BackendConn<S>, binary: bool) -> Result<(Res, bool), Error> {
    let p = read(c).await?;
    match p.payload.first() {
        Some(0x00) => {
            let ok = packets::Ok::parse(&p.payload, c.caps).ok_or_else(|| protocol(c, "bad OK packet"))?;
            Ok((Res::Ok { affected: ok.affected_rows }, ok.status & status::MORE_RESULTS_EXISTS != 0))
        }
        Some(0xFF) => Err(server_err(c, &p.payload)),
        _ => {
            let mut r = Reader::new(&p.payload);
            let n = r.lenenc().ok_or_else(|| protocol(c, "bad column count"))?;
            let defs = if c.ext_caps & cap::ext::CACHE_METADATA != 0 && r.u8() == Some(0) { 0 } else { n };
            let types = column_types(c, defs).await?;
            let mut rows = Vec::new();
            loop {
                let row = read(c).await?;
                match row.payload.first() {
                    Some(0xFF) => return Err(server_err(c, &row.payload)),
                    Some(0xFE) if row.payload.len() < 0xFF_FFFF => {
                        let st = packets::terminator_status(&row.payload, c.caps).unwrap_or(0);
                        return Ok((Res::Rows(rows), st & status::MORE_RESULTS_EXISTS != 0));
                    }
                    _ if binary => rows.push(binary_row(&row.payload, &types).ok_or_else(|| protocol(c, "bad binary row"))?),
                    _ => rows.push(text_row(&row.payload, n as usize).ok_or_else(|| protocol(c, "bad text row"))?),
                }
            }
        }
    }
}

fn text_row(payload: &[u8], n: usize) -> Option<Vec<Option<String>>> {
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if r.peek() == Some(0xFB) {
            r.u8();
            out.push(None);
        } else {
            out.push(Some(String::from_utf8_lossy(r.lenenc_bytes()?).into_owned()));
        }
    }
    Some(out)
}

/// Column types (`MYSQL_TYPE_*`) the binary decoder knows.
mod ty {
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const YEAR: u8 = 13;
    pub const VAR_STRING: u8 = 253;
}

/// A binary-protocol row: header 0x00, NULL bitmap with an offset of 2, then the
/// non-NULL values by column type. Integers are returned as signed decimal text
/// (the workload's values fit); strings as they are.
fn binary_row(payload: &[u8], types: &[u8]) -> Option<Vec<Option<String>>> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0x00 {
        return None;
    }
    let bitmap = r.take((types.len() + 7 + 2) / 8)?;
    let mut out = Vec::with_capacity(types.len());
    for (i, &t) in types.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            out.push(None);
            continue;
        }
        let v = match t {
            ty::TINY => (r.u8()? as i8).to_string(),
            ty::SHORT | ty::YEAR => (r.u16()? as i16).to_string(),
            ty::LONG | ty::INT24 => (r.u32()? as i32).to_string(),
            ty::LONGLONG => (r.u64()? as i64).to_string(),
            ty::FLOAT => f32::from_le_bytes(r.take(4)?.try_into().ok()?).to_string(),
            ty::DOUBLE => f64::from_le_bytes(r.take(8)?.try_into().ok()?).to_string(),
            ty::NULL => {
                out.push(None);
                continue;
            }
            // DATE/TIME types are length-prefixed binary; the workload selects none.
            7 | 10 | 11 | 12 => return None,
            _ => String::from_utf8_lossy(r.lenenc_bytes()?).into_owned(),
        };
        out.push(Some(v));
    }
    Some(out)
}

/// Runs `sql` (one statement or a multi-statement) with COM_QUERY and returns the
/// result of every statement that ran. An ERR ends the batch: it is returned as the
/// error, with the results before it lost (the workload only needs to know that the
/// batch failed, and at which point is visible from its own statements).
pub async fn query_all<S: Stream>(c: &mut BackendConn<S>, sql: &str) -> Result<Vec<Res>, (usize, Error)> {
    let mut payload = Vec::with_capacity(1 + sql.len());
    payload.push(com::QUERY);
    payload.extend_from_slice(sql.as_bytes());
    send(c, &payload).await.map_err(|e| (0, e))?;
    let mut out = Vec::new();
    loop {
        let (res, more) = response(c, false).await.map_err(|e| (out.len(), e))?;
        out.push(res);
        if !more {
            return Ok(out);
        }
    }
}

/// COM_STMT_PREPARE: the statement id and its number of parameters. The parameter and
/// column definitions that follow are read and dropped.
pub async fn prepare<S: Stream>(c: &mut BackendConn<S>, sql: &str) -> Result<Prepared, Error> {
    let mut payload = Vec::with_capacity(1 + sql.len());
    payload.push(com::STMT_PREPARE);
    payload.extend_from_slice(sql.as_bytes());
    send(c, &payload).await?;
    let p = read(c).await?;
    match p.payload.first() {
        Some(0x00) => {}
        Some(0xFF) => return Err(server_err(c, &p.payload)),
        _ => return Err(protocol(c, "bad COM_STMT_PREPARE answer")),
    }
    let mut r = Reader::new(&p.payload[1..]);
    let (Some(id), Some(columns), Some(params)) = (r.u32(), r.u16(), r.u16()) else {
        return Err(protocol(c, "short COM_STMT_PREPARE answer"));
    };
    for n in [params, columns] {
        if n > 0 {
            column_types(c, n as u64).await?;
        }
    }
    Ok(Prepared { id, params })
}

/// COM_STMT_EXECUTE with `params` (no cursor): the statement's result.
pub async fn execute<S: Stream>(c: &mut BackendConn<S>, stmt: Prepared, params: &[Param]) -> Result<Res, Error> {
    if params.len() != stmt.params as usize {
        return Err(protocol(c, "wrong number of parameters"));
    }
    let mut payload = vec![com::STMT_EXECUTE];
    payload.extend_from_slice(&stmt.id.to_le_bytes());
    payload.push(0); // CURSOR_TYPE_NO_CURSOR
    payload.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        payload.extend(std::iter::repeat_n(0u8, params.len().div_ceil(8)));
        payload.push(1); // new_params_bind_flag: types follow
        for p in params {
            let t = match p {
                Param::Int(_) => ty::LONGLONG,
                Param::Text(_) => ty::VAR_STRING,
            };
            payload.extend_from_slice(&[t, 0]);
        }
        for p in params {
            match p {
                Param::Int(v) => payload.extend_from_slice(&v.to_le_bytes()),
                Param::Text(s) => {
                    sluice::protocol::packet::put_lenenc(&mut payload, s.len() as u64);
                    payload.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
    send(c, &payload).await?;
    let (res, more) = response(c, true).await?;
    // A single statement answers once; drain anything chained after it.
    let mut more = more;
    while more {
        more = response(c, true).await?.1;
    }
    Ok(res)
}

/// COM_STMT_CLOSE (the server answers nothing).
pub async fn close<S: Stream>(c: &mut BackendConn<S>, stmt: Prepared) -> Result<(), Error> {
    let mut payload = vec![com::STMT_CLOSE];
    payload.extend_from_slice(&stmt.id.to_le_bytes());
    send(c, &payload).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_row_decodes_integers_strings_and_nulls_after_the_two_bit_offset() {
        // Columns: LONGLONG (NULL), LONGLONG 7, VAR_STRING "db", TINY -1.
        let mut p = vec![0x00, 1 << 2];
        p.extend_from_slice(&7i64.to_le_bytes());
        p.extend_from_slice(&[2, b'd', b'b']);
        p.push(0xFF);
        let row = binary_row(&p, &[ty::LONGLONG, ty::LONGLONG, ty::VAR_STRING, ty::TINY]).unwrap();
        assert_eq!(row, vec![None, Some("7".into()), Some("db".into()), Some("-1".into())]);
    }

    #[test]
    fn binary_row_with_a_truncated_value_is_refused() {
        let p = vec![0x00, 0, 1, 2];
        assert_eq!(binary_row(&p, &[ty::LONGLONG]), None);
    }

    #[test]
    fn text_row_reads_nulls_and_values() {
        let p = vec![0xFB, 1, b'5'];
        assert_eq!(text_row(&p, 2), Some(vec![None, Some("5".into())]));
    }
}
