//! Generic response packets: OK, ERR and EOF, parsed and built.
//!
//! Implements <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html> and
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html>,
//! including the session-state-change block of
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html#sect_protocol_basic_ok_packet_sessinfo>.

use bytes::{BufMut, BytesMut};

use super::constants::{cap, status};
use super::packet::{put_lenenc, put_lenenc_bytes, Reader};

/// A parsed OK packet (header 0x00, or 0xFE when it ends a result set under DEPRECATE_EOF).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ok<'a> {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: &'a [u8],
    /// Raw session-state-change block (present when SERVER_SESSION_STATE_CHANGED is set).
    pub session_state: &'a [u8],
}

impl<'a> Ok<'a> {
    pub fn parse(payload: &'a [u8], caps: u32) -> Option<Self> {
        let mut r = Reader::new(payload);
        let h = r.u8()?;
        if h != 0x00 && h != 0xFE {
            return None;
        }
        let affected_rows = r.lenenc()?;
        let last_insert_id = r.lenenc()?;
        let (status, warnings) = if caps & cap::PROTOCOL_41 != 0 {
            (r.u16()?, r.u16()?)
        } else if caps & cap::TRANSACTIONS != 0 {
            (r.u16()?, 0)
        } else {
            (0, 0)
        };
        let mut ok = Ok { affected_rows, last_insert_id, status, warnings, info: &[], session_state: &[] };
        if caps & cap::SESSION_TRACK != 0 {
            if !r.is_empty() {
                ok.info = r.lenenc_bytes()?;
                if status & status::SESSION_STATE_CHANGED != 0 {
                    ok.session_state = r.lenenc_bytes()?;
                }
            }
        } else {
            ok.info = r.rest();
        }
        Some(ok)
    }

    /// Iterates the session-state changes as `(type, data)` pairs.
    pub fn state_changes(&self) -> StateChanges<'a> {
        StateChanges { r: Reader::new(self.session_state) }
    }

    pub fn write(&self, out: &mut BytesMut, header: u8, caps: u32) {
        out.put_u8(header);
        put_lenenc(out, self.affected_rows);
        put_lenenc(out, self.last_insert_id);
        out.put_u16_le(self.status);
        out.put_u16_le(self.warnings);
        if caps & cap::SESSION_TRACK != 0 {
            if !self.info.is_empty() || self.status & status::SESSION_STATE_CHANGED != 0 {
                put_lenenc_bytes(out, self.info);
            }
            if self.status & status::SESSION_STATE_CHANGED != 0 {
                put_lenenc_bytes(out, self.session_state);
            }
        } else {
            out.put_slice(self.info);
        }
    }
}

/// Session state change types (`SESSION_TRACK_*`).
pub mod track {
    pub const SYSTEM_VARIABLES: u8 = 0;
    pub const SCHEMA: u8 = 1;
    pub const STATE_CHANGE: u8 = 2;
    pub const GTIDS: u8 = 3;
    pub const TRANSACTION_CHARACTERISTICS: u8 = 4;
    pub const TRANSACTION_STATE: u8 = 5;
}

/// Iterator over the entries of a session-state-change block.
pub struct StateChanges<'a> {
    r: Reader<'a>,
}

impl<'a> StateChanges<'a> {
    /// Iterates a raw block (or several blocks concatenated).
    pub fn new(block: &'a [u8]) -> Self {
        StateChanges { r: Reader::new(block) }
    }
}

impl<'a> Iterator for StateChanges<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let t = self.r.u8()?;
        let data = self.r.lenenc_bytes()?;
        Some((t, data))
    }
}

/// A parsed ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err<'a> {
    pub code: u16,
    pub state: &'a [u8],
    pub message: &'a [u8],
}

impl<'a> Err<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFF {
            return None;
        }
        let code = r.u16()?;
        let state: &[u8] = if r.peek() == Some(b'#') {
            r.u8();
            r.take(5)?
        } else {
            b"HY000"
        };
        Some(Err { code, state, message: r.rest() })
    }

    pub fn message_lossy(&self) -> String {
        String::from_utf8_lossy(self.message).into_owned()
    }
}

/// Builds an ERR packet payload.
pub fn err_payload(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + message.len());
    out.push(0xFF);
    out.extend_from_slice(&code.to_le_bytes());
    out.push(b'#');
    let st = state.as_bytes();
    out.extend_from_slice(&st[..st.len().min(5)]);
    out.extend(std::iter::repeat_n(b'0', 5usize.saturating_sub(st.len())));
    out.extend_from_slice(message.as_bytes());
    out
}

/// Builds a plain OK packet payload.
pub fn ok_payload(status_flags: u16, caps: u32) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(16);
    Ok { status: status_flags, ..Default::default() }.write(&mut out, 0x00, caps);
    out.to_vec()
}

/// A parsed EOF packet (header 0xFE, payload shorter than 9 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eof {
    pub warnings: u16,
    pub status: u16,
}

impl Eof {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFE || payload.len() >= 9 {
            return None;
        }
        if payload.len() < 5 {
            return Some(Eof { warnings: 0, status: 0 });
        }
        Some(Eof { warnings: r.u16()?, status: r.u16()? })
    }
}

/// Status flags of a packet that ends a result (an OK, or an EOF / 0xFE-OK terminator).
pub fn terminator_status(payload: &[u8], caps: u32) -> Option<u16> {
    match payload.first()? {
        0xFE if payload.len() < 9 => Eof::parse(payload).map(|e| e.status),
        0xFE | 0x00 => Ok::parse(payload, caps).map(|o| o.status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::TRANSACTIONS;

    #[test]
    fn ok_with_session_state_roundtrips() {
        let state = [0u8, 11, 9, b'l', b'a', b's', b't', b'_', b'g', b't', b'i', b'd', 0];
        let ok = Ok {
            affected_rows: 3,
            last_insert_id: 70000,
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            warnings: 1,
            info: b"",
            session_state: &state[..],
        };
        let mut out = BytesMut::new();
        ok.write(&mut out, 0, CAPS);
        let parsed = Ok::parse(&out, CAPS).unwrap();
        assert_eq!(parsed, ok);
        let changes: Vec<_> = parsed.state_changes().collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, track::SYSTEM_VARIABLES);
    }

    #[test]
    fn err_packet_builds_and_parses_with_sqlstate() {
        let p = err_payload(1045, "28000", "Access denied");
        let e = Err::parse(&p).unwrap();
        assert_eq!((e.code, e.state, e.message), (1045, &b"28000"[..], &b"Access denied"[..]));
    }

    #[test]
    fn short_0xfe_is_eof_and_long_0xfe_is_ok_terminator() {
        let eof = [0xFE, 0, 0, 0x0A, 0];
        assert_eq!(terminator_status(&eof, CAPS), Some(0x0A));
        let mut ok = BytesMut::new();
        Ok { status: status::MORE_RESULTS_EXISTS, info: b"some info text", ..Default::default() }.write(&mut ok, 0xFE, CAPS);
        assert!(ok.len() >= 9);
        assert_eq!(terminator_status(&ok, CAPS), Some(status::MORE_RESULTS_EXISTS));
    }

    #[test]
    fn truncated_ok_does_not_parse() {
        assert_eq!(Ok::parse(&[0x00, 0x01], CAPS), None);
        assert_eq!(Err::parse(&[0xFF, 0x01]), None);
    }
}
