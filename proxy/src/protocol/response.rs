//! Knows where a backend's response to one command ends, without decoding rows.
//!
//! [`ResponseTracker`] is fed the raw byte stream coming from a backend and says how many
//! of those bytes belong to the current response, so the session can pass them to the
//! client untouched and stop reading exactly at the response's end. It looks only at frame
//! headers and the first byte of each logical packet; it reads a whole packet only for the
//! few small ones that decide something (OK, ERR, EOF, column count, LOCAL INFILE request,
//! COM_STMT_PREPARE_OK). Rows are never decoded, and big frames stream through in pieces.
//!
//! Covers the responses in
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_fetch.html> and
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_field_list.html>,
//! including multi-result chains (SERVER_MORE_RESULTS_EXISTS), cursors and DEPRECATE_EOF,
//! and MariaDB's MARIADB_CLIENT_CACHE_METADATA, with which a result set's column count
//! packet says whether column definitions follow
//! (<https://mariadb.com/kb/en/result-set-packets/>).

use super::constants::{cap, status};
use super::packet::{parse_header, Reader, HEADER_LEN, MAX_FRAME};
use super::packets::{self, terminator_status};

/// Packets up to this size are passed on only once complete; larger ones stream through.
const WHOLE_UP_TO: usize = 32 * 1024;

/// What kind of response a command produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY (and COM_PROCESS_INFO): OK, ERR, LOCAL INFILE request or result sets, chained.
    Query,
    /// COM_STMT_EXECUTE without a cursor: like `Query`, binary rows.
    Execute,
    /// COM_STMT_EXECUTE asking for a cursor: when the server opens one (CURSOR_EXISTS in
    /// the EOF after the column definitions) no rows follow; they come through
    /// COM_STMT_FETCH.
    ExecuteCursor,
    /// COM_STMT_PREPARE: PREPARE_OK with parameter and column definitions, or ERR.
    Prepare,
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    Fetch,
    /// COM_FIELD_LIST: column definitions then a terminator, or ERR.
    FieldList,
    /// Exactly one packet of any shape (COM_STATISTICS's status string, OK/ERR/EOF replies).
    OnePacket,
}

/// `flags` bit of COM_STMT_EXECUTE asking for a read-only cursor.
const CURSOR_TYPE_READ_ONLY: u8 = 0x01;

impl Expect {
    /// The response kind of a COM_STMT_EXECUTE `payload` (command byte first). Only an
    /// execute that asked for a cursor can get one: a CALL whose procedure has a cursor
    /// of its own open reports CURSOR_EXISTS too, and still sends its rows.
    pub fn for_execute(payload: &[u8]) -> Expect {
        match payload.get(5) {
            Some(flags) if flags & CURSOR_TYPE_READ_ONLY != 0 => Expect::ExecuteCursor,
            _ => Expect::Execute,
        }
    }
}

/// Facts learned from a finished response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Status flags of the last OK/EOF seen (the session's state after the command).
    pub status: Option<u16>,
    /// The error code when the response ended with ERR.
    pub error: Option<u16>,
    /// For COM_STMT_PREPARE: `(statement id, columns, params)`.
    pub prepared: Option<(u32, u16, u16)>,
    /// Number of result sets started.
    pub result_sets: u32,
    /// Raw session-state-change data of the OK packets seen, concatenated.
    pub session_state: Vec<u8>,
    /// Affected rows of the last OK packet that ended a statement without a result
    /// set (`None`: the last statement returned rows, or the response was not OK).
    pub affected_rows: Option<u64>,
    /// The last non-zero last-insert-id of the OK packets (0: none).
    pub insert_id: u64,
    /// The most warnings any OK or EOF packet of the response reported (a
    /// multi-statement's earlier statements count too).
    pub warnings: u16,
    /// Rows of the last result set (counted, never read).
    pub rows: u64,
    /// `(SQL state, message)` of the ERR packet, when the response ended with one.
    pub error_detail: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    ColumnDefs { left: u64 },
    ColumnsEof,
    Rows,
    PrepareParams { left: u16, cols: u16 },
    PrepareParamsEof { cols: u16 },
    PrepareCols { left: u16 },
    PrepareColsEof,
    OnePacket,
    Done,
}

/// What the caller should do after a call to [`ResponseTracker::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Need more bytes; everything consumed so far may be forwarded.
    More,
    /// The response is complete at the end of the consumed bytes.
    Done,
    /// The server asked for a LOCAL INFILE: forward the consumed bytes, relay the client's
    /// file packets to the server, then call [`ResponseTracker::resume_after_infile`].
    LocalInfile,
    /// The next packet is a row beyond the cap ([`ResponseTracker::with_cap`]): forward the
    /// consumed bytes and no more; the stream is at a packet boundary. Call
    /// [`ResponseTracker::lift_cap`] to go on following the rest.
    Capped,
}

/// A backend violated the protocol (the response cannot be followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

#[derive(Debug, Clone)]
pub struct ResponseTracker {
    caps: u32,
    /// MARIADB_CLIENT_CACHE_METADATA was negotiated: column count packets carry a
    /// "metadata follows" byte.
    cache_metadata: bool,
    expect: Expect,
    state: State,
    /// Payload bytes of the current frame still to pass through.
    frame_left: usize,
    /// The current logical packet continues in the next frame.
    continuing: bool,
    last_seq: Option<u8>,
    summary: Summary,
    /// Record where OK-format packets are ([`ResponseTracker::mark_oks`]).
    mark_oks: bool,
    /// An OK packet was judged by the current `judge_whole` call.
    saw_ok: bool,
    /// `(start, end)` of the OK-format packets (header included) within the buffer of
    /// the latest `advance` call.
    oks: Vec<(usize, usize)>,
    /// Rows and bytes the response may carry, at most ([`ResponseTracker::with_cap`]).
    cap: Option<(Option<u64>, Option<u64>)>,
    /// Rows of all the response's result sets so far.
    rows_total: u64,
    /// Bytes consumed by earlier `advance` calls (the caller consumes what each returns).
    consumed: u64,
}

impl ResponseTracker {
    /// `caps` are the capabilities negotiated on the backend connection.
    pub fn new(expect: Expect, caps: u32) -> Self {
        let state = match expect {
            Expect::Query | Expect::Execute | Expect::ExecuteCursor | Expect::Prepare => State::First,
            Expect::Fetch | Expect::FieldList => State::Rows,
            Expect::OnePacket => State::OnePacket,
        };
        ResponseTracker {
            caps,
            cache_metadata: false,
            expect,
            state,
            frame_left: 0,
            continuing: false,
            last_seq: None,
            summary: Summary::default(),
            mark_oks: false,
            saw_ok: false,
            oks: Vec::new(),
            cap: None,
            rows_total: 0,
            consumed: 0,
        }
    }

    /// Makes [`ResponseTracker::advance`] record where each OK-format packet (an OK,
    /// or a result-set terminator in OK format under DEPRECATE_EOF) lies in the bytes it
    /// consumed, for a caller that rewrites them ([`ResponseTracker::oks`]).
    pub fn mark_oks(mut self) -> Self {
        self.mark_oks = true;
        self
    }

    /// `(start, end)` of the OK-format packets, frame header included, among the bytes
    /// consumed by the latest [`ResponseTracker::advance`] (offsets into its buffer).
    /// OK packets are small: each lies whole within the consumed bytes.
    pub fn oks(&self) -> &[(usize, usize)] {
        &self.oks
    }

    /// Stops at the first row that would take the response past `max_rows` rows (of all
    /// its result sets) or `max_bytes` bytes (frame headers included), with
    /// [`Event::Capped`] before it. Rows are never split: a row is let through whole or
    /// not at all, so the bytes passed on stay within `max_bytes`.
    pub fn with_cap(mut self, max_rows: Option<u64>, max_bytes: Option<u64>) -> Self {
        self.cap = (max_rows.is_some() || max_bytes.is_some()).then_some((max_rows, max_bytes));
        self
    }

    /// After [`Event::Capped`]: follow the rest of the response without a cap.
    pub fn lift_cap(&mut self) {
        self.cap = None;
    }

    /// Whether a row whose first frame has `len` payload bytes and starts `pos` bytes into
    /// the current buffer goes past the cap.
    fn over_cap(&self, pos: usize, len: usize) -> bool {
        let Some((rows, bytes)) = self.cap else {
            return false;
        };
        rows.is_some_and(|m| self.rows_total >= m)
            || bytes.is_some_and(|m| self.consumed + (pos + HEADER_LEN + len) as u64 > m)
    }

    /// `ext_caps` are the MariaDB extended capabilities negotiated on the connection.
    pub fn with_ext_caps(mut self, ext_caps: u32) -> Self {
        self.cache_metadata = ext_caps & cap::ext::CACHE_METADATA != 0;
        self
    }

    /// The state after a result set's column definitions (or in their place).
    fn after_column_defs(&self) -> State {
        if self.caps & cap::DEPRECATE_EOF != 0 {
            State::Rows
        } else {
            State::ColumnsEof
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn into_summary(self) -> Summary {
        self.summary
    }

    /// Sequence id of the last frame consumed, if any.
    pub fn last_seq(&self) -> Option<u8> {
        self.last_seq
    }

    /// True when no packet is partly passed through, so an ERR packet may follow.
    pub fn at_packet_boundary(&self) -> bool {
        self.frame_left == 0 && !self.continuing
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// After the client's LOCAL INFILE data went to the server: the server now answers
    /// with OK or ERR (possibly followed by more results).
    pub fn resume_after_infile(&mut self, last_seq: u8) {
        self.state = State::First;
        self.last_seq = Some(last_seq);
    }

    /// Consumes as much of `buf` as belongs to the response and can be judged now.
    /// Returns the number of bytes consumed and what to do next.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(usize, Event), Malformed> {
        let r = self.advance_in(buf)?;
        self.consumed += r.0 as u64;
        Ok(r)
    }

    fn advance_in(&mut self, buf: &[u8]) -> Result<(usize, Event), Malformed> {
        self.oks.clear();
        let mut pos = 0;
        loop {
            if self.frame_left > 0 {
                let n = self.frame_left.min(buf.len() - pos);
                pos += n;
                self.frame_left -= n;
                if self.frame_left > 0 {
                    return Ok((pos, Event::More));
                }
                continue;
            }
            if self.state == State::Done && !self.continuing {
                return Ok((pos, Event::Done));
            }
            let Some((len, seq)) = parse_header(&buf[pos..]) else { return Ok((pos, Event::More)) };
            if self.continuing {
                // The rest of a logical packet already judged by its first frame.
                self.continuing = len == MAX_FRAME;
                self.last_seq = Some(seq);
                pos += HEADER_LEN;
                self.frame_left = len;
                continue;
            }
            let body = &buf[pos + HEADER_LEN..];
            let first = if len == 0 { None } else { match body.first() { Some(&b) => Some(b), None => return Ok((pos, Event::More)) } };
            if self.needs_whole(first, len) {
                if body.len() < len {
                    return Ok((pos, Event::More));
                }
                let payload = &body[..len];
                let ev = self.judge_whole(payload, len)?;
                if self.saw_ok {
                    self.saw_ok = false;
                    if self.mark_oks && len < MAX_FRAME {
                        self.oks.push((pos, pos + HEADER_LEN + len));
                    }
                }
                pos += HEADER_LEN + len;
                self.last_seq = Some(seq);
                self.continuing = len == MAX_FRAME;
                if let Some(ev) = ev {
                    return Ok((pos, ev));
                }
            } else {
                if self.state == State::Rows && self.over_cap(pos, len) {
                    return Ok((pos, Event::Capped));
                }
                if len <= WHOLE_UP_TO && body.len() < len {
                    // Small packets go through whole, so that the stream is at a packet
                    // boundary whenever the backend stops (and an ERR can still follow).
                    return Ok((pos, Event::More));
                }
                self.judge_streamed(first)?;
                self.last_seq = Some(seq);
                self.continuing = len == MAX_FRAME;
                pos += HEADER_LEN;
                self.frame_left = len;
            }
        }
    }

    /// Whether the packet starting with `first` must be seen whole to be judged.
    fn needs_whole(&self, first: Option<u8>, len: usize) -> bool {
        match self.state {
            State::First | State::ColumnsEof | State::PrepareParamsEof { .. } | State::PrepareColsEof => true,
            State::Rows => matches!(first, Some(0xFF)) || (first == Some(0xFE) && len < MAX_FRAME),
            State::OnePacket => true,
            _ => false,
        }
    }

    /// Column or parameter definitions and rows: counted, never read.
    fn judge_streamed(&mut self, _first: Option<u8>) -> Result<(), Malformed> {
        match self.state {
            State::ColumnDefs { left } => {
                self.state = if left > 1 { State::ColumnDefs { left: left - 1 } } else { self.after_column_defs() };
            }
            State::Rows => {
                self.summary.rows += 1;
                self.rows_total += 1;
            }
            State::PrepareParams { left, cols } => {
                self.state = if left > 1 {
                    State::PrepareParams { left: left - 1, cols }
                } else if self.caps & cap::DEPRECATE_EOF == 0 {
                    State::PrepareParamsEof { cols }
                } else if cols > 0 {
                    State::PrepareCols { left: cols }
                } else {
                    State::Done
                };
            }
            State::PrepareCols { left } => {
                self.state = if left > 1 {
                    State::PrepareCols { left: left - 1 }
                } else if self.caps & cap::DEPRECATE_EOF == 0 {
                    State::PrepareColsEof
                } else {
                    State::Done
                };
            }
            _ => return Err(Malformed("unexpected packet")),
        }
        Ok(())
    }

    fn end_of_result(&mut self, st: u16) -> Option<Event> {
        self.summary.status = Some(st);
        if st & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::First;
            None
        } else {
            self.state = State::Done;
            Some(Event::Done)
        }
    }

    fn record_ok(&mut self, payload: &[u8]) -> Result<u16, Malformed> {
        let ok = packets::Ok::parse(payload, self.caps).ok_or(Malformed("bad OK packet"))?;
        self.saw_ok = true;
        self.summary.warnings = self.summary.warnings.max(ok.warnings);
        if ok.last_insert_id != 0 {
            self.summary.insert_id = ok.last_insert_id;
        }
        if !ok.session_state.is_empty() {
            self.summary.session_state.extend_from_slice(ok.session_state);
        }
        Ok(ok.status)
    }

    fn error(&mut self, payload: &[u8]) -> Option<Event> {
        let e = packets::Err::parse(payload);
        self.summary.error = Some(e.as_ref().map(|e| e.code).unwrap_or(0));
        self.summary.error_detail = e.map(|e| (String::from_utf8_lossy(e.state).into_owned(), String::from_utf8_lossy(e.message).into_owned()));
        self.state = State::Done;
        Some(Event::Done)
    }

    fn judge_whole(&mut self, payload: &[u8], len: usize) -> Result<Option<Event>, Malformed> {
        let first = payload.first().copied();
        match self.state {
            State::OnePacket => {
                self.saw_ok = first == Some(0x00) && packets::Ok::parse(payload, self.caps).is_some();
                if first == Some(0x00) || (first == Some(0xFE) && len < 9) {
                    self.summary.status = terminator_status(payload, self.caps);
                } else if first == Some(0xFF) {
                    return Ok(self.error(payload));
                }
                self.state = State::Done;
                Ok(Some(Event::Done))
            }
            State::First => match first {
                Some(0xFF) => Ok(self.error(payload)),
                Some(0x00) if self.expect == Expect::Prepare => {
                    let mut r = Reader::new(&payload[1..]);
                    let (id, cols, params) = (|| Some((r.u32()?, r.u16()?, r.u16()?)))().ok_or(Malformed("bad PREPARE_OK"))?;
                    self.summary.prepared = Some((id, cols, params));
                    self.state = if params > 0 {
                        State::PrepareParams { left: params, cols }
                    } else if cols > 0 {
                        State::PrepareCols { left: cols }
                    } else {
                        State::Done
                    };
                    Ok((self.state == State::Done).then_some(Event::Done))
                }
                Some(0x00) => {
                    let st = self.record_ok(payload)?;
                    self.summary.affected_rows = packets::Ok::parse(payload, self.caps).map(|o| o.affected_rows);
                    Ok(self.end_of_result(st))
                }
                // LOAD DATA LOCAL INFILE, as a query or a prepared statement.
                Some(0xFB) if matches!(self.expect, Expect::Query | Expect::Execute | Expect::ExecuteCursor) => Ok(Some(Event::LocalInfile)),
                Some(_) if self.expect != Expect::Prepare => {
                    let mut r = Reader::new(payload);
                    let n = r.lenenc().ok_or(Malformed("bad column count"))?;
                    if n == 0 {
                        return Err(Malformed("zero column count"));
                    }
                    self.summary.result_sets += 1;
                    self.summary.rows = 0;
                    let metadata_follows = if self.cache_metadata { r.u8().ok_or(Malformed("column count without metadata flag"))? != 0 } else { true };
                    self.state = if metadata_follows { State::ColumnDefs { left: n } } else { self.after_column_defs() };
                    Ok(None)
                }
                _ => Err(Malformed("unexpected first packet of response")),
            },
            State::ColumnsEof => match first {
                Some(0xFE) if len < 9 => {
                    let st = terminator_status(payload, self.caps).ok_or(Malformed("bad EOF"))?;
                    if st & status::CURSOR_EXISTS != 0 && self.expect == Expect::ExecuteCursor {
                        // A cursor was opened: rows come later through COM_STMT_FETCH.
                        return Ok(self.end_of_result(st));
                    }
                    self.state = State::Rows;
                    Ok(None)
                }
                Some(0xFF) => Ok(self.error(payload)),
                _ => Err(Malformed("expected EOF after column definitions")),
            },
            State::Rows => match first {
                Some(0xFF) => Ok(self.error(payload)),
                Some(0xFE) => {
                    let st = if len < 9 && self.caps & cap::DEPRECATE_EOF == 0 {
                        let eof = packets::Eof::parse(payload).ok_or(Malformed("bad EOF"))?;
                        self.summary.warnings = self.summary.warnings.max(eof.warnings);
                        eof.status
                    } else {
                        self.record_ok(payload)?
                    };
                    self.summary.affected_rows = None;
                    Ok(self.end_of_result(st))
                }
                _ => Err(Malformed("row judged as whole")),
            },
            State::PrepareParamsEof { cols } => match first {
                Some(0xFE) if len < 9 => {
                    self.state = if cols > 0 { State::PrepareCols { left: cols } } else { State::Done };
                    Ok((self.state == State::Done).then_some(Event::Done))
                }
                _ => Err(Malformed("expected EOF after parameter definitions")),
            },
            State::PrepareColsEof => match first {
                Some(0xFE) if len < 9 => {
                    self.state = State::Done;
                    Ok(Some(Event::Done))
                }
                _ => Err(Malformed("expected EOF after column definitions")),
            },
            State::ColumnDefs { .. } | State::PrepareParams { .. } | State::PrepareCols { .. } | State::Done => {
                Err(Malformed("unexpected packet"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::write_packet;
    use bytes::BytesMut;

    const EOF_CAPS: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::MULTI_RESULTS;
    const DEP_CAPS: u32 = EOF_CAPS | cap::DEPRECATE_EOF;

    struct Wire {
        buf: BytesMut,
        seq: u8,
    }
    impl Wire {
        fn new() -> Self {
            Wire { buf: BytesMut::new(), seq: 1 }
        }
        fn p(&mut self, payload: &[u8]) -> &mut Self {
            self.seq = write_packet(&mut self.buf, self.seq, payload);
            self
        }
        fn eof(&mut self, st: u16) -> &mut Self {
            let mut v = vec![0xFE, 0, 0];
            v.extend_from_slice(&st.to_le_bytes());
            self.p(&v)
        }
        fn ok(&mut self, header: u8, st: u16) -> &mut Self {
            let mut v = vec![header, 0, 0];
            v.extend_from_slice(&st.to_le_bytes());
            v.extend_from_slice(&[0, 0]);
            self.p(&v)
        }
        fn coldef(&mut self) -> &mut Self {
            self.p(b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00")
        }
    }

    /// Feeds `wire` in chunks of `chunk` bytes; returns (bytes consumed, events seen).
    fn run(t: &mut ResponseTracker, wire: &[u8], chunk: usize) -> (usize, Vec<Event>) {
        let mut avail = 0;
        let mut consumed = 0;
        let mut events = vec![];
        loop {
            avail = (avail + chunk).min(wire.len());
            let (n, ev) = t.advance(&wire[consumed..avail]).unwrap();
            consumed += n;
            if ev != Event::More {
                events.push(ev);
                if ev == Event::Done {
                    return (consumed, events);
                }
            }
            if avail == wire.len() && n == 0 && ev == Event::More {
                return (consumed, events);
            }
        }
    }

    fn check_all_chunkings(expect: Expect, caps: u32, wire: &[u8]) -> Summary {
        check_all_chunkings_ext(expect, caps, 0, wire)
    }

    fn check_all_chunkings_ext(expect: Expect, caps: u32, ext_caps: u32, wire: &[u8]) -> Summary {
        let mut summary = None;
        for chunk in [1, 2, 3, 5, 7, 64, wire.len()] {
            let mut t = ResponseTracker::new(expect, caps).with_ext_caps(ext_caps);
            let (n, ev) = run(&mut t, wire, chunk);
            assert_eq!(ev.last(), Some(&Event::Done), "chunk {chunk}");
            assert_eq!(n, wire.len(), "chunk {chunk}: response must end exactly at the last packet");
            summary = Some(t.into_summary());
        }
        summary.unwrap()
    }

    #[test]
    fn text_result_set_with_eof_ends_after_final_eof() {
        let mut w = Wire::new();
        w.p(&[2]).coldef().coldef().eof(2).p(b"\x011\x012").p(b"\x013\xfb").eof(2);
        let s = check_all_chunkings(Expect::Query, EOF_CAPS, &w.buf);
        assert_eq!((s.status, s.result_sets), (Some(2), 1));
    }

    #[test]
    fn deprecate_eof_result_set_ends_at_0xfe_ok() {
        let mut w = Wire::new();
        w.p(&[1]).coldef().p(b"\x011").ok(0xFE, 2);
        let s = check_all_chunkings(Expect::Query, DEP_CAPS, &w.buf);
        assert_eq!(s.status, Some(2));
    }

    #[test]
    fn cached_metadata_flag_decides_whether_column_definitions_follow() {
        let ext = cap::ext::CACHE_METADATA;
        for caps in [EOF_CAPS, DEP_CAPS] {
            let terminator = |w: &mut Wire| {
                if caps & cap::DEPRECATE_EOF == 0 {
                    w.eof(2);
                } else {
                    w.ok(0xFE, 2);
                }
            };
            // Flag 0: no definitions; the rows (binary, 0x00 header) come right after
            // the column count (after the EOF that ends the absent definitions without
            // DEPRECATE_EOF).
            let mut w = Wire::new();
            w.p(&[2, 0]);
            if caps & cap::DEPRECATE_EOF == 0 {
                w.eof(2);
            }
            w.p(b"\x00\x00\x01\x00\x00\x00").p(b"\x00\x00\x02\x00\x00\x00");
            terminator(&mut w);
            let s = check_all_chunkings_ext(Expect::Execute, caps, ext, &w.buf);
            assert_eq!((s.status, s.result_sets), (Some(2), 1), "caps {caps:#x}");
            // Flag 1: definitions follow as usual.
            let mut w = Wire::new();
            w.p(&[2, 1]).coldef().coldef();
            if caps & cap::DEPRECATE_EOF == 0 {
                w.eof(2);
            }
            w.p(b"\x00\x00\x01\x00\x00\x00");
            terminator(&mut w);
            let s = check_all_chunkings_ext(Expect::Execute, caps, ext, &w.buf);
            assert_eq!((s.status, s.result_sets), (Some(2), 1), "caps {caps:#x}");
        }
        // Negotiated but the flag byte is missing: the backend broke the protocol.
        let mut w = Wire::new();
        w.p(&[2]).coldef().coldef().ok(0xFE, 2);
        let mut t = ResponseTracker::new(Expect::Execute, DEP_CAPS).with_ext_caps(ext);
        assert!(t.advance(&w.buf).is_err());
    }

    #[test]
    fn multi_statement_with_error_in_the_middle_ends_at_err() {
        let mut w = Wire::new();
        w.ok(0, status::MORE_RESULTS_EXISTS | 2)
            .p(&[1]).coldef().eof(status::MORE_RESULTS_EXISTS | 2).p(b"\x011").eof(status::MORE_RESULTS_EXISTS | 2)
            .p(&packets::err_payload(1064, "42000", "syntax"));
        let s = check_all_chunkings(Expect::Query, EOF_CAPS, &w.buf);
        assert_eq!((s.error, s.result_sets), (Some(1064), 1));
    }

    #[test]
    fn row_error_mid_result_ends_response() {
        let mut w = Wire::new();
        w.p(&[1]).coldef().p(b"\x011").p(&packets::err_payload(1317, "70100", "Query execution was interrupted"));
        let s = check_all_chunkings(Expect::Query, DEP_CAPS, &w.buf);
        assert_eq!(s.error, Some(1317));
    }

    #[test]
    fn local_infile_request_pauses_then_ok_ends() {
        let mut w = Wire::new();
        w.p(b"\xfb/tmp/data.csv");
        let mut t = ResponseTracker::new(Expect::Query, EOF_CAPS);
        let (n, ev) = t.advance(&w.buf).unwrap();
        assert_eq!((n, ev), (w.buf.len(), Event::LocalInfile));
        t.resume_after_infile(3);
        let mut w2 = Wire { buf: BytesMut::new(), seq: 4 };
        w2.ok(0, 2);
        assert_eq!(t.advance(&w2.buf).unwrap(), (w2.buf.len(), Event::Done));
    }

    #[test]
    fn prepare_ok_with_params_and_columns_with_and_without_eof() {
        for caps in [EOF_CAPS, DEP_CAPS] {
            let mut w = Wire::new();
            w.p(&[0, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]).coldef();
            if caps & cap::DEPRECATE_EOF == 0 {
                w.eof(2);
            }
            w.coldef().coldef();
            if caps & cap::DEPRECATE_EOF == 0 {
                w.eof(2);
            }
            let s = check_all_chunkings(Expect::Prepare, caps, &w.buf);
            assert_eq!(s.prepared, Some((7, 2, 1)));
        }
    }

    #[test]
    fn prepare_without_params_or_columns_is_one_packet() {
        let mut w = Wire::new();
        w.p(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let s = check_all_chunkings(Expect::Prepare, EOF_CAPS, &w.buf);
        assert_eq!(s.prepared, Some((1, 0, 0)));
    }

    #[test]
    fn execute_with_cursor_ends_after_column_eof() {
        let mut w = Wire::new();
        w.p(&[1]).coldef().eof(status::CURSOR_EXISTS | 2);
        check_all_chunkings(Expect::ExecuteCursor, EOF_CAPS, &w.buf);
    }

    #[test]
    fn execute_without_cursor_request_reads_rows_even_when_cursor_exists_is_set() {
        // CALL of a procedure that has a cursor of its own open: the result set's EOFs
        // carry CURSOR_EXISTS, and the rows follow all the same.
        let mut w = Wire::new();
        w.p(&[1]).coldef().eof(status::CURSOR_EXISTS | status::MORE_RESULTS_EXISTS | 2);
        w.p(b"\x00\x00\x01\x00\x00\x00").eof(status::CURSOR_EXISTS | status::MORE_RESULTS_EXISTS | 2);
        w.ok(0x00, 2);
        let s = check_all_chunkings(Expect::Execute, EOF_CAPS, &w.buf);
        assert_eq!((s.result_sets, s.status), (1, Some(2)));
    }

    #[test]
    fn execute_asks_for_a_cursor_only_with_the_read_only_cursor_flag() {
        let exec = |flags: u8| vec![0x17, 1, 0, 0, 0, flags, 1, 0, 0, 0];
        assert_eq!(Expect::for_execute(&exec(0)), Expect::Execute);
        assert_eq!(Expect::for_execute(&exec(1)), Expect::ExecuteCursor);
        assert_eq!(Expect::for_execute(&[0x17, 1, 0]), Expect::Execute);
    }

    #[test]
    fn fetch_ends_at_eof_with_last_row_sent() {
        let mut w = Wire::new();
        w.p(b"\x00\x00\x01\x00\x00\x00").eof(status::LAST_ROW_SENT | status::CURSOR_EXISTS);
        let s = check_all_chunkings(Expect::Fetch, EOF_CAPS, &w.buf);
        assert_eq!(s.status, Some(status::LAST_ROW_SENT | status::CURSOR_EXISTS));
    }

    #[test]
    fn row_of_16_mib_and_more_streams_through_without_being_judged_by_its_bytes() {
        // A text row whose single column is a 16 MiB string: lenenc prefix 0xFE.
        let mut row = vec![0xFE];
        let n = MAX_FRAME + 100;
        row.extend_from_slice(&(n as u64).to_le_bytes());
        row.resize(9 + n, 0xFE);
        let mut w = Wire::new();
        w.p(&[1]).coldef().p(&row).ok(0xFE, 2);
        for chunk in [4096, 1 << 20] {
            let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS);
            let (consumed, ev) = run(&mut t, &w.buf, chunk);
            assert_eq!((consumed, ev.last()), (w.buf.len(), Some(&Event::Done)));
        }
    }

    #[test]
    fn small_rows_are_released_only_whole() {
        let mut w = Wire::new();
        w.p(&[1]).coldef().p(b"\x05hello");
        let row_start = w.buf.len() - 10;
        let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS);
        let (n, ev) = t.advance(&w.buf[..w.buf.len() - 2]).unwrap();
        assert_eq!((n, ev), (row_start, Event::More));
        assert!(t.at_packet_boundary());
        let (n, ev) = t.advance(&w.buf[row_start..]).unwrap();
        assert_eq!((n, ev), (10, Event::More));
    }

    /// Feeds `wire` in chunks of `chunk` bytes until [`Event::Capped`] or the end;
    /// returns the bytes consumed before it and whether it came.
    fn run_to_cap(t: &mut ResponseTracker, wire: &[u8], chunk: usize) -> (usize, bool) {
        let (mut avail, mut consumed) = (0, 0);
        loop {
            avail = (avail + chunk).min(wire.len());
            let (n, ev) = t.advance(&wire[consumed..avail]).unwrap();
            consumed += n;
            match ev {
                Event::Capped => return (consumed, true),
                Event::Done => return (consumed, false),
                _ if avail == wire.len() && n == 0 => return (consumed, false),
                _ => {}
            }
        }
    }

    #[test]
    fn row_cap_stops_before_the_row_past_it_and_the_rest_follows_once_lifted() {
        let mut w = Wire::new();
        w.p(&[1]).coldef().p(b"\x011").p(b"\x012");
        let two_rows = w.buf.len();
        w.p(b"\x013").ok(0xFE, 2);
        for chunk in [1, 2, 3, 7, w.buf.len()] {
            let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS).with_cap(Some(2), None);
            let (n, capped) = run_to_cap(&mut t, &w.buf, chunk);
            assert!(capped, "chunk {chunk}");
            assert_eq!(
                n, two_rows,
                "chunk {chunk}: two rows pass, the third does not"
            );
            assert!(t.at_packet_boundary());
            t.lift_cap();
            let (rest, ev) = run(&mut t, &w.buf[n..], chunk);
            assert_eq!(
                (n + rest, ev.last()),
                (w.buf.len(), Some(&Event::Done)),
                "chunk {chunk}"
            );
            assert_eq!(t.summary().rows, 3);
        }
        // At the cap exactly, nothing is cut.
        let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS).with_cap(Some(3), None);
        assert_eq!(run_to_cap(&mut t, &w.buf, 5), (w.buf.len(), false));
    }

    #[test]
    fn byte_cap_passes_only_whole_rows_within_it_and_counts_rows_of_every_result_set() {
        let mut w = Wire::new();
        w.p(&[1])
            .coldef()
            .p(b"\x011")
            .ok(0xFE, status::MORE_RESULTS_EXISTS);
        let first_set = w.buf.len();
        w.p(&[1]).coldef();
        let before_row = w.buf.len();
        w.p(b"\x0512345").ok(0xFE, 2);
        // A cap that ends inside the second set's row: the row is held back whole.
        let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS)
            .with_cap(None, Some(before_row as u64 + 5));
        assert_eq!(run_to_cap(&mut t, &w.buf, 3), (before_row, true));
        // Rows count over the result sets: one row allowed stops at the second set's row.
        let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS).with_cap(Some(1), None);
        let (n, capped) = run_to_cap(&mut t, &w.buf, 64);
        assert!(capped && n == before_row && n > first_set);
        // A cap the whole response fits in never fires.
        let mut t = ResponseTracker::new(Expect::Query, DEP_CAPS)
            .with_cap(Some(10), Some(w.buf.len() as u64));
        assert_eq!(run_to_cap(&mut t, &w.buf, 2), (w.buf.len(), false));
    }

    #[test]
    fn statistics_string_is_one_packet() {
        let mut w = Wire::new();
        w.p(b"Uptime: 5  Threads: 1");
        check_all_chunkings(Expect::OnePacket, EOF_CAPS, &w.buf);
    }

    #[test]
    fn field_list_ends_at_eof() {
        let mut w = Wire::new();
        w.coldef().coldef().eof(2);
        check_all_chunkings(Expect::FieldList, EOF_CAPS, &w.buf);
    }

    #[test]
    fn garbage_first_byte_for_prepare_is_malformed() {
        let mut w = Wire::new();
        w.p(&[0x05, 1, 2]);
        let mut t = ResponseTracker::new(Expect::Prepare, EOF_CAPS);
        assert!(t.advance(&w.buf).is_err());
    }
}
