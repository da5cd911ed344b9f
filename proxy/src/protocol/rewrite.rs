//! OK packets as the client would have had them from the server directly.
//!
//! Sluice's backend connections track session state (CLIENT_SESSION_TRACK, plus `last_gtid`
//! in `session_track_system_variables` on MariaDB or `session_track_gtids = OWN_GTID` on
//! MySQL) whether or not the client asked for it, to read the GTID of every write.
//! [`ok_for_client`] takes back what the client did not ask for: the tracked entries Sluice
//! added, or the whole tracking format for a client without the capability. Implements the
//! OK packet of
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html>
//! (with and without CLIENT_SESSION_TRACK) on top of [`Ok`]. Synchronous; the usual case
//! (nothing to change) neither copies nor allocates.

use bytes::BytesMut;

use super::constants::{cap, status};
use super::packet::Reader;
use super::packets::{track, Ok, StateChanges};

/// The tracked entries Sluice added on a backend connection that the client did not ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strip {
    /// SYSTEM_VARIABLES entries for `last_gtid` (MariaDB).
    pub last_gtid: bool,
    /// GTIDS entries (MySQL `session_track_gtids`).
    pub gtids: bool,
}

impl Strip {
    /// Whether the session-state entry `(kind, data)` goes.
    fn removes(self, kind: u8, data: &[u8]) -> bool {
        match kind {
            track::GTIDS => self.gtids,
            track::SYSTEM_VARIABLES if self.last_gtid => {
                Reader::new(data).lenenc_bytes().is_some_and(|name| name.eq_ignore_ascii_case(b"last_gtid"))
            }
            _ => false,
        }
    }
}

/// The OK packet `payload` (header 0x00, or 0xFE ending a result set under DEPRECATE_EOF)
/// read from a backend connection with `backend_caps`, rewritten for a client with
/// `client_caps`; `None` when it goes to the client unchanged (also when it is malformed:
/// the response tracker reports protocol errors).
///
/// A client with CLIENT_SESSION_TRACK gets the packet without the entries `strip` names;
/// when none remain, without SERVER_SESSION_STATE_CHANGED and the block (and the info
/// field when that is empty), as the server writes it. A client without the capability gets
/// the packet in the format without it: no SERVER_SESSION_STATE_CHANGED (servers never show
/// it to such a client), no block, the info as the rest of the packet. The header, affected
/// rows, last insert id, other status flags and warnings stay as they are.
pub fn ok_for_client(payload: &[u8], backend_caps: u32, client_caps: u32, strip: Strip) -> Option<Vec<u8>> {
    if backend_caps & cap::SESSION_TRACK == 0 || backend_caps & client_caps & cap::PROTOCOL_41 == 0 {
        return None;
    }
    let ok = Ok::parse(payload, backend_caps)?;
    let header = payload[0];
    let changed = ok.status & status::SESSION_STATE_CHANGED != 0;
    let out = if client_caps & cap::SESSION_TRACK != 0 {
        if !changed || !StateChanges::new(ok.session_state).any(|(kind, data)| strip.removes(kind, data)) {
            return None;
        }
        let kept = kept_entries(ok.session_state, strip)?;
        let status = if kept.is_empty() { ok.status & !status::SESSION_STATE_CHANGED } else { ok.status };
        write(&Ok { status, session_state: &kept, ..ok }, header, client_caps)
    } else {
        if !changed && payload.len() == fixed_part_len(payload)? {
            return None;
        }
        let status = ok.status & !status::SESSION_STATE_CHANGED;
        write(&Ok { status, session_state: &[], ..ok }, header, client_caps)
    };
    Some(out)
}

/// The entries of `block` that `strip` keeps, byte for byte; `None` if the block is
/// malformed.
fn kept_entries(block: &[u8], strip: Strip) -> Option<Vec<u8>> {
    let mut kept = Vec::with_capacity(block.len());
    let mut r = Reader::new(block);
    while !r.is_empty() {
        let start = block.len() - r.remaining();
        let kind = r.u8()?;
        let data = r.lenenc_bytes()?;
        if !strip.removes(kind, data) {
            kept.extend_from_slice(&block[start..block.len() - r.remaining()]);
        }
    }
    Some(kept)
}

/// Length of header, affected rows, last insert id, status and warnings.
fn fixed_part_len(payload: &[u8]) -> Option<usize> {
    let mut r = Reader::new(payload);
    r.u8()?;
    r.lenenc()?;
    r.lenenc()?;
    r.take(4)?;
    Some(payload.len() - r.remaining())
}

fn write(ok: &Ok<'_>, header: u8, caps: u32) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(16 + ok.info.len() + ok.session_state.len());
    ok.write(&mut out, header, caps);
    out.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::packet::put_lenenc_bytes;
    use proptest::prelude::*;

    const TRACK: u32 = cap::PROTOCOL_41 | cap::TRANSACTIONS | cap::SESSION_TRACK | cap::DEPRECATE_EOF;
    const PLAIN: u32 = cap::PROTOCOL_41 | cap::TRANSACTIONS | cap::DEPRECATE_EOF;
    const ALL: Strip = Strip { last_gtid: true, gtids: true };
    const INFO: &[u8] = b"Rows matched: 1  Changed: 1  Warnings: 0";

    /// One session-state entry: type byte, then the data as length-encoded bytes.
    pub(crate) fn entry(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        put_lenenc_bytes(&mut out, data);
        out
    }

    /// A SYSTEM_VARIABLES entry for `name = value`.
    pub(crate) fn sysvar_entry(name: &str, value: &str) -> Vec<u8> {
        let mut data = Vec::new();
        put_lenenc_bytes(&mut data, name.as_bytes());
        put_lenenc_bytes(&mut data, value.as_bytes());
        entry(track::SYSTEM_VARIABLES, &data)
    }

    /// A GTIDS entry in encoding 0.
    pub(crate) fn gtids_entry(set: &str) -> Vec<u8> {
        let mut data = vec![0];
        put_lenenc_bytes(&mut data, set.as_bytes());
        entry(track::GTIDS, &data)
    }

    fn ok_bytes(ok: &Ok<'_>, header: u8, caps: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        ok.write(&mut out, header, caps);
        out.to_vec()
    }

    fn update_ok(block: &[u8]) -> Ok<'_> {
        Ok {
            affected_rows: 1,
            last_insert_id: 300,
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            warnings: 2,
            info: INFO,
            session_state: block,
        }
    }

    #[test]
    fn only_the_stripped_last_gtid_entry_goes_and_the_flag_stays() {
        let autocommit = sysvar_entry("autocommit", "OFF");
        let mut block = sysvar_entry("last_gtid", "0-1-7");
        block.extend(&autocommit);
        let out = ok_for_client(&ok_bytes(&update_ok(&block), 0, TRACK), TRACK, TRACK, ALL).unwrap();
        assert_eq!(out, ok_bytes(&update_ok(&autocommit), 0, TRACK));
        let seen = Ok::parse(&out, TRACK).unwrap();
        assert_eq!((seen.info, seen.status & status::SESSION_STATE_CHANGED), (INFO, status::SESSION_STATE_CHANGED));
    }

    #[test]
    fn an_ok_whose_only_entry_is_stripped_loses_the_flag_and_the_block() {
        let block = sysvar_entry("last_gtid", "0-1-7");
        let plain = Ok { status: status::AUTOCOMMIT, ..Default::default() };
        let tracked =
            Ok { status: plain.status | status::SESSION_STATE_CHANGED, session_state: &block, ..plain.clone() };
        let out = ok_for_client(&ok_bytes(&tracked, 0, TRACK), TRACK, TRACK, ALL).unwrap();
        assert_eq!(out, ok_bytes(&plain, 0, TRACK));
        assert_eq!(out, [0, 0, 0, 2, 0, 0, 0], "no info length, no block");
        let with_info = update_ok(&block);
        let out = ok_for_client(&ok_bytes(&with_info, 0, TRACK), TRACK, TRACK, ALL).unwrap();
        let expected = Ok { status: status::AUTOCOMMIT, session_state: &[], ..with_info };
        assert_eq!(out, ok_bytes(&expected, 0, TRACK));
    }

    #[test]
    fn last_gtid_is_matched_whatever_its_case_and_other_variables_stay() {
        let block = sysvar_entry("LAST_GTID", "0-1-7");
        let out = ok_for_client(&ok_bytes(&update_ok(&block), 0, TRACK), TRACK, TRACK, ALL).unwrap();
        assert_eq!(Ok::parse(&out, TRACK).unwrap().session_state, b"");
        let block = sysvar_entry("last_gtid_x", "1");
        assert_eq!(ok_for_client(&ok_bytes(&update_ok(&block), 0, TRACK), TRACK, TRACK, ALL), None);
    }

    #[test]
    fn gtids_entries_go_only_when_strip_says_so() {
        let schema = entry(track::SCHEMA, b"\x02db");
        let mut block = schema.clone();
        block.extend(gtids_entry("3e11fa47-71ca-11e1-9e33-c80aa9429562:9"));
        let payload = ok_bytes(&update_ok(&block), 0, TRACK);
        let only_last_gtid = Strip { last_gtid: true, gtids: false };
        assert_eq!(ok_for_client(&payload, TRACK, TRACK, only_last_gtid), None);
        let out = ok_for_client(&payload, TRACK, TRACK, Strip { last_gtid: false, gtids: true }).unwrap();
        assert_eq!(out, ok_bytes(&update_ok(&schema), 0, TRACK));
    }

    #[test]
    fn a_result_set_terminator_keeps_its_0xfe_header() {
        let block = gtids_entry("3e11fa47-71ca-11e1-9e33-c80aa9429562:9");
        let status = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
        let tracked =
            Ok { status: status | status::SESSION_STATE_CHANGED, session_state: &block, ..Default::default() };
        let payload = ok_bytes(&tracked, 0xFE, TRACK);
        let plain = Ok { status, ..Default::default() };
        assert_eq!(ok_for_client(&payload, TRACK, TRACK, ALL).unwrap(), ok_bytes(&plain, 0xFE, TRACK));
        assert_eq!(ok_for_client(&payload, TRACK, PLAIN, Strip::default()).unwrap(), ok_bytes(&plain, 0xFE, PLAIN));
    }

    #[test]
    fn a_client_without_session_track_gets_the_format_without_it() {
        let mut block = sysvar_entry("autocommit", "ON");
        block.extend(sysvar_entry("last_gtid", "0-1-7"));
        let tracked = update_ok(&block);
        for strip in [ALL, Strip::default()] {
            let out = ok_for_client(&ok_bytes(&tracked, 0, TRACK), TRACK, PLAIN, strip).unwrap();
            let expected = Ok { status: status::AUTOCOMMIT, session_state: &[], ..tracked.clone() };
            assert_eq!(out, ok_bytes(&expected, 0, PLAIN));
            assert_eq!(&out[out.len() - INFO.len()..], INFO, "info runs to the end of the packet");
            assert_eq!(Ok::parse(&out, PLAIN).unwrap(), expected);
        }
    }

    #[test]
    fn a_client_without_session_track_gets_info_without_its_length() {
        let tracked = Ok { info: INFO, status: status::AUTOCOMMIT, ..Default::default() };
        let out = ok_for_client(&ok_bytes(&tracked, 0, TRACK), TRACK, PLAIN, ALL).unwrap();
        assert_eq!(out, ok_bytes(&tracked, 0, PLAIN));
    }

    #[test]
    fn nothing_to_change_passes_the_packet_on_as_it_is() {
        let plain = ok_bytes(&Ok { status: status::AUTOCOMMIT, ..Default::default() }, 0, TRACK);
        assert_eq!(ok_for_client(&plain, TRACK, TRACK, ALL), None);
        assert_eq!(ok_for_client(&plain, TRACK, PLAIN, ALL), None, "both formats are the same bytes");
        let block = sysvar_entry("last_gtid", "0-1-7");
        let tracked = ok_bytes(&update_ok(&block), 0, TRACK);
        assert_eq!(ok_for_client(&tracked, TRACK, TRACK, Strip::default()), None, "the client tracks last_gtid itself");
        assert_eq!(ok_for_client(&tracked, TRACK, TRACK, Strip { last_gtid: false, gtids: true }), None);
        let info_only = ok_bytes(&Ok { info: INFO, ..Default::default() }, 0, TRACK);
        assert_eq!(ok_for_client(&info_only, TRACK, TRACK, ALL), None);
        let untracked = ok_bytes(&Ok { info: INFO, ..Default::default() }, 0, PLAIN);
        assert_eq!(ok_for_client(&untracked, PLAIN, PLAIN, ALL), None, "the backend does not track");
    }

    #[test]
    fn a_malformed_packet_is_passed_on() {
        let block = sysvar_entry("last_gtid", "0-1-7");
        let good = ok_bytes(&update_ok(&block), 0, TRACK);
        assert_eq!(ok_for_client(&good[..good.len() - 1], TRACK, TRACK, ALL), None, "truncated block");
        assert_eq!(ok_for_client(&good[..3], TRACK, PLAIN, ALL), None, "truncated status");
        assert_eq!(ok_for_client(&[0xFF, 0x15, 0x04], TRACK, PLAIN, ALL), None, "an ERR packet");
        assert_eq!(ok_for_client(&[], TRACK, PLAIN, ALL), None);
        let mut bad_entry = block.clone();
        bad_entry.extend([track::SCHEMA, 9, b'x']);
        let bad = ok_bytes(&update_ok(&bad_entry), 0, TRACK);
        assert_eq!(ok_for_client(&bad, TRACK, TRACK, ALL), None, "an entry runs past the block");
    }

    fn arb_entry() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(vec!["last_gtid", "Last_Gtid", "autocommit", "sql_mode"])
                .prop_flat_map(|n| "[0-9a-z-]{0,12}".prop_map(move |v| sysvar_entry(n, &v))),
            "[0-9a-f:-]{0,20}".prop_map(|s| gtids_entry(&s)),
            "[a-z]{1,8}".prop_map(|s| entry(track::SCHEMA, &[&[s.len() as u8][..], s.as_bytes()].concat())),
        ]
    }

    proptest! {
        #[test]
        fn the_client_sees_every_field_but_the_stripped_entries(
            affected_rows in any::<u64>(),
            last_insert_id in any::<u64>(),
            status in any::<u16>(),
            warnings in any::<u16>(),
            info in prop::sample::select(vec![&b""[..], INFO]),
            entries in prop::collection::vec(arb_entry(), 0..4),
            header in prop::sample::select(vec![0u8, 0xFE]),
            client_tracks in any::<bool>(),
            last_gtid in any::<bool>(),
            gtids in any::<bool>(),
        ) {
            let block = entries.concat();
            let flag = status::SESSION_STATE_CHANGED;
            let status = if block.is_empty() { status & !flag } else { status | flag };
            let sent = Ok { affected_rows, last_insert_id, status, warnings, info, session_state: &block };
            let payload = ok_bytes(&sent, header, TRACK);
            let strip = Strip { last_gtid, gtids };
            let client_caps = if client_tracks { TRACK } else { PLAIN };
            let out = ok_for_client(&payload, TRACK, client_caps, strip);
            let seen_bytes = out.as_deref().unwrap_or(&payload);
            let seen = Ok::parse(seen_bytes, client_caps).unwrap();
            prop_assert_eq!(seen_bytes[0], header);
            prop_assert_eq!(
                (seen.affected_rows, seen.last_insert_id, seen.warnings, seen.info),
                (affected_rows, last_insert_id, warnings, info)
            );
            prop_assert_eq!(seen.status & !flag, status & !flag);
            let expected: Vec<u8> = if client_tracks {
                entries.iter().filter(|e| {
                    let (kind, data) = StateChanges::new(e).next().unwrap();
                    !strip.removes(kind, data)
                }).flatten().copied().collect()
            } else {
                vec![]
            };
            prop_assert_eq!(seen.session_state, &expected[..]);
            prop_assert_eq!(seen.status & flag != 0, !expected.is_empty());
            let unchanged = if client_tracks { expected == block } else { block.is_empty() && info.is_empty() };
            prop_assert_eq!(out.is_none(), unchanged);
        }

        #[test]
        fn garbage_never_panics(payload in prop::collection::vec(any::<u8>(), 0..40), client_tracks in any::<bool>()) {
            let client_caps = if client_tracks { TRACK } else { PLAIN };
            let _ = ok_for_client(&payload, TRACK, client_caps, Strip { last_gtid: true, gtids: true });
        }
    }
}
