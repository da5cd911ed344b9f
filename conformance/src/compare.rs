//! Comparing the recorded responses of the two legs of a case, packet by packet, and
//! describing differences field by field.

use sluice::protocol::response::Expect;

use crate::decode::{decode, show_bytes, show_cell, show_session_state, show_status, Decoded, Item, RawPacket};
use crate::normalize::{self, Rule};
use crate::value::{to_hex, ty};

/// One compared response.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was sent, e.g. `line 12: SELECT 1 [EXECUTE]`.
    pub label: String,
    /// Connection number (1-based).
    pub conn: usize,
    pub expect: Expect,
    /// Capabilities of the connection (decoding depends on DEPRECATE_EOF, SESSION_TRACK).
    pub caps: u32,
    pub packets: Vec<RawPacket>,
    /// Column types of the statement, for COM_STMT_FETCH responses.
    pub fetch_types: Vec<(u8, u16)>,
    /// Rules for this statement only.
    pub rules: Vec<Rule>,
    /// The `SHOW WARNINGS` run after this response because it reported warnings.
    pub warnings: Option<Box<Step>>,
}

impl Step {
    pub fn items(&self) -> Vec<Item> {
        decode(self.expect, self.caps, &self.packets, &self.fetch_types)
    }
}

/// Most differences listed for one response.
const MAX_DIFFS: usize = 12;

/// Differences between two responses to the same step (empty when equal).
pub fn compare_step(case_rules: &[Rule], a: &Step, b: &Step) -> Vec<String> {
    let mut diffs = Vec::new();
    if a.caps != b.caps {
        diffs.push(format!("negotiated capabilities: reference 0x{:08x}, candidate 0x{:08x}", a.caps, b.caps));
    }
    let rules: Vec<&Rule> = case_rules.iter().chain(a.rules.iter()).collect();
    let mut ia = a.items();
    let mut ib = b.items();
    runner_normalise(&mut ia);
    runner_normalise(&mut ib);
    normalize::apply(&rules, &mut ia);
    normalize::apply(&rules, &mut ib);
    let n = ia.len().max(ib.len());
    for i in 0..n {
        if diffs.len() >= MAX_DIFFS {
            diffs.push("… (more differences not shown)".into());
            break;
        }
        match (ia.get(i), ib.get(i)) {
            (Some(x), Some(y)) => {
                let where_ = format!("packet {}: {}", i + 1, x.describe());
                if x.seq != y.seq || x.last_seq != y.last_seq {
                    diffs.push(format!("{where_}: sequence id: reference {}, candidate {}", seq_text(x), seq_text(y)));
                }
                let normalisable = !rules.is_empty() || matches!(x.decoded, Decoded::PrepareOk { .. } | Decoded::AuthSwitch { .. });
                let same = x.raw == y.raw || (normalisable && x.decoded == y.decoded);
                if !same {
                    for d in describe(x, y) {
                        let sep = if d.starts_with("column ") { " " } else { ": " };
                        diffs.push(format!("{where_}{sep}{d}"));
                    }
                }
            }
            (Some(x), None) => diffs.push(format!("packet {}: {}: only the reference sent it: {}", i + 1, x.describe(), x.decoded)),
            (None, Some(y)) => diffs.push(format!("packet {}: {}: only the candidate sent it: {}", i + 1, y.describe(), y.decoded)),
            (None, None) => {}
        }
    }
    match (&a.warnings, &b.warnings) {
        (Some(wa), Some(wb)) => {
            for d in compare_step(case_rules, wa, wb) {
                diffs.push(format!("SHOW WARNINGS: {d}"));
            }
        }
        (None, None) => {}
        (Some(_), None) => diffs.push("only the reference reported warnings (SHOW WARNINGS was run on it alone)".into()),
        (None, Some(_)) => diffs.push("only the candidate reported warnings (SHOW WARNINGS was run on it alone)".into()),
    }
    diffs
}

fn seq_text(i: &Item) -> String {
    if i.seq == i.last_seq {
        i.seq.to_string()
    } else {
        format!("{}..{}", i.seq, i.last_seq)
    }
}

/// Values that legitimately differ per connection and that only the runner knows:
/// statement ids (each leg's own numbering) and auth-switch nonces (random).
fn runner_normalise(items: &mut [Item]) {
    for it in items {
        match &mut it.decoded {
            Decoded::PrepareOk { stmt_id, .. } => *stmt_id = 0,
            Decoded::AuthSwitch { data, .. } => *data = b"<nonce>".to_vec(),
            _ => {}
        }
    }
}

fn field<T: PartialEq + std::fmt::Display>(out: &mut Vec<String>, name: &str, a: T, b: T) {
    if a != b {
        out.push(format!("{name}: reference {a}, candidate {b}"));
    }
}

fn bytes_field(out: &mut Vec<String>, name: &str, a: &[u8], b: &[u8]) {
    if a != b {
        out.push(format!("{name}: reference {}, candidate {}", show_bytes(a), show_bytes(b)));
    }
}

/// An OK packet's session-state entries as `(type, data)`, the system variables
/// (type 0) sorted, the others in their order; `None` if malformed.
fn session_state_entries(b: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut vars = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let t = b[i];
        let (len, n) = lenenc(&b[i + 1..])?;
        let start = i + 1 + n;
        let data = b.get(start..start.checked_add(len)?)?.to_vec();
        if t == 0 {
            vars.push(data);
        } else {
            out.push((t, data));
        }
        i = start + len;
    }
    vars.sort();
    out.extend(vars.into_iter().map(|d| (0, d)));
    Some(out)
}

/// A length-encoded integer: `(value, bytes it took)`.
fn lenenc(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    let take = |n: usize| -> Option<(usize, usize)> {
        let bytes = b.get(1..1 + n)?;
        let mut v = 0usize;
        for (k, &x) in bytes.iter().enumerate() {
            v |= (x as usize) << (8 * k);
        }
        Some((v, 1 + n))
    };
    match first {
        0..=0xfa => Some((first as usize, 1)),
        0xfc => take(2),
        0xfd => take(3),
        0xfe => take(8),
        _ => None,
    }
}

/// Field-level description of how two packets differ.
fn describe(x: &Item, y: &Item) -> Vec<String> {
    let mut out = Vec::new();
    match (&x.decoded, &y.decoded) {
        (Decoded::Ok(a), Decoded::Ok(b)) => {
            field(&mut out, "header", format!("0x{:02x}", a.header), format!("0x{:02x}", b.header));
            field(&mut out, "affected_rows", a.affected_rows, b.affected_rows);
            field(&mut out, "last_insert_id", a.last_insert_id, b.last_insert_id);
            field(&mut out, "status", show_status(a.status), show_status(b.status));
            field(&mut out, "warnings", a.warnings, b.warnings);
            bytes_field(&mut out, "info", &a.info, &b.info);
            // The server lists tracked system variables in the order of its internal
            // hash, which depends on the set tracked and on the process (the same
            // variables came in a different order from one mariadbd than from another);
            // only what each variable is set to counts.
            let reordered = a.session_state != b.session_state && session_state_entries(&a.session_state) == session_state_entries(&b.session_state);
            if !reordered {
                field(&mut out, "session state", show_session_state(&a.session_state), show_session_state(&b.session_state));
            }
            bytes_field(&mut out, "bytes after the OK fields", &a.trailing, &b.trailing);
            if out.is_empty() && reordered {
                return out;
            }
            if !out.is_empty() {
                out.push(format!("decoded side by side:\n        reference {}\n        candidate {}", x.decoded, y.decoded));
            }
        }
        (Decoded::Eof { warnings: wa, status: sa, trailing: ta }, Decoded::Eof { warnings: wb, status: sb, trailing: tb }) => {
            field(&mut out, "warnings", wa, wb);
            field(&mut out, "status", show_status(*sa), show_status(*sb));
            bytes_field(&mut out, "trailing bytes", ta, tb);
        }
        (Decoded::Err { code: ca, state: sa, message: ma }, Decoded::Err { code: cb, state: sb, message: mb }) => {
            field(&mut out, "error code", ca, cb);
            bytes_field(&mut out, "SQLSTATE", sa, sb);
            bytes_field(&mut out, "message", ma, mb);
        }
        (Decoded::ColumnCount(a), Decoded::ColumnCount(b)) => field(&mut out, "column count", a, b),
        (Decoded::ColumnDef(a), Decoded::ColumnDef(b)) => {
            bytes_field(&mut out, "catalog", &a.catalog, &b.catalog);
            bytes_field(&mut out, "schema", &a.schema, &b.schema);
            bytes_field(&mut out, "table", &a.table, &b.table);
            bytes_field(&mut out, "org_table", &a.org_table, &b.org_table);
            bytes_field(&mut out, "name", &a.name, &b.name);
            bytes_field(&mut out, "org_name", &a.org_name, &b.org_name);
            field(&mut out, "charset", a.charset, b.charset);
            field(&mut out, "length", a.length, b.length);
            field(&mut out, "type", ty::name(a.column_type), ty::name(b.column_type));
            field(&mut out, "flags", format!("0x{:04x}", a.flags), format!("0x{:04x}", b.flags));
            field(&mut out, "decimals", a.decimals, b.decimals);
            bytes_field(&mut out, "trailing bytes", &a.trailing, &b.trailing);
        }
        (Decoded::Row { cells: a, binary }, Decoded::Row { cells: b, .. }) => {
            field(&mut out, "number of values", a.len(), b.len());
            for (c, (va, vb)) in a.iter().zip(b.iter()).enumerate() {
                if va != vb {
                    let t = x.types.get(c).copied();
                    let mut s = format!("column {}: reference {} candidate {}", c + 1, show_cell(va, *binary, t), show_cell(vb, *binary, t));
                    if let (Some(pa), Some(pb)) = (va, vb) {
                        if pa.len() > 64 || pb.len() > 64 {
                            let at = pa.iter().zip(pb.iter()).position(|(p, q)| p != q).unwrap_or(pa.len().min(pb.len()));
                            s += &format!(" (lengths {} and {}, first difference at byte {at})", pa.len(), pb.len());
                        }
                    }
                    out.push(s);
                }
            }
        }
        (Decoded::PrepareOk { columns: ca, params: pa, warnings: wa, trailing: ta, .. }, Decoded::PrepareOk { columns: cb, params: pb, warnings: wb, trailing: tb, .. }) => {
            field(&mut out, "columns", ca, cb);
            field(&mut out, "params", pa, pb);
            field(&mut out, "warnings", wa, wb);
            bytes_field(&mut out, "trailing bytes", ta, tb);
        }
        (Decoded::LocalInfile { file: a }, Decoded::LocalInfile { file: b }) => bytes_field(&mut out, "file name", a, b),
        (Decoded::AuthSwitch { plugin: a, .. }, Decoded::AuthSwitch { plugin: b, .. }) => bytes_field(&mut out, "plugin", a, b),
        (Decoded::Raw(a), Decoded::Raw(b)) if std::str::from_utf8(a).is_ok() && std::str::from_utf8(b).is_ok() && a.len().max(b.len()) <= 2000 => {
            out.push(format!("reference '{}'\n        candidate '{}'", String::from_utf8_lossy(a), String::from_utf8_lossy(b)));
        }
        _ => {}
    }
    if out.is_empty() {
        if std::mem::discriminant(&x.decoded) != std::mem::discriminant(&y.decoded) {
            out.push(format!("reference sent {}; candidate sent {}", x.decoded, y.decoded));
        } else {
            let at = x.raw.iter().zip(y.raw.iter()).position(|(p, q)| p != q).unwrap_or(x.raw.len().min(y.raw.len()));
            let win = |b: &[u8]| to_hex(&b[at.min(b.len())..(at + 16).min(b.len())]);
            out.push(format!(
                "bytes differ at offset {at} (lengths {} and {}): reference …{}…, candidate …{}…",
                x.raw.len(),
                y.raw.len(),
                win(&x.raw),
                win(&y.raw)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::protocol::constants::cap;

    fn step(packets: Vec<(u8, Vec<u8>)>) -> Step {
        Step {
            label: "line 1: SELECT".into(),
            conn: 1,
            expect: Expect::Query,
            caps: cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::DEPRECATE_EOF,
            packets: packets.into_iter().map(|(seq, payload)| RawPacket { seq, last_seq: seq, payload }).collect(),
            fetch_types: vec![],
            rules: vec![],
            warnings: None,
        }
    }

    fn coldef() -> Vec<u8> {
        let mut p = vec![];
        for s in ["def", "test", "t", "t", "v", "v"] {
            sluice::protocol::packet::put_lenenc_bytes(&mut p, s.as_bytes());
        }
        p.push(0x0c);
        p.extend_from_slice(&[45, 0, 40, 0, 0, 0, 253, 0, 0, 0, 0, 0]);
        p
    }

    fn result(rows: &[&str]) -> Step {
        let mut pk = vec![(1, vec![1]), (2, coldef())];
        for (i, r) in rows.iter().enumerate() {
            let mut p = vec![];
            sluice::protocol::packet::put_lenenc_bytes(&mut p, r.as_bytes());
            pk.push((3 + i as u8, p));
        }
        pk.push((3 + rows.len() as u8, vec![0xFE, 0, 0, 2, 0, 0, 0]));
        step(pk)
    }

    /// An OK packet (status SESSION_STATE_CHANGED) with these system variables tracked.
    fn ok_with_vars(vars: &[(&str, &str)]) -> Step {
        let mut state = vec![];
        for (k, v) in vars {
            let mut entry = vec![];
            sluice::protocol::packet::put_lenenc_bytes(&mut entry, k.as_bytes());
            sluice::protocol::packet::put_lenenc_bytes(&mut entry, v.as_bytes());
            state.push(0u8);
            sluice::protocol::packet::put_lenenc_bytes(&mut state, &entry);
        }
        let mut p = vec![0x00, 0, 0, 0x02, 0x40, 0, 0, 0];
        sluice::protocol::packet::put_lenenc_bytes(&mut p, &state);
        step(vec![(1, p)])
    }

    #[test]
    fn tracked_system_variables_in_another_order_are_the_same_but_other_values_differ() {
        let a = ok_with_vars(&[("character_set_connection", "big5"), ("character_set_results", "big5"), ("character_set_client", "big5")]);
        let b = ok_with_vars(&[("character_set_connection", "big5"), ("character_set_client", "big5"), ("character_set_results", "big5")]);
        assert!(compare_step(&[], &a, &b).is_empty(), "{:?}", compare_step(&[], &a, &b));
        let c = ok_with_vars(&[("character_set_connection", "big5"), ("character_set_client", "big5"), ("character_set_results", "utf8mb4")]);
        let d = compare_step(&[], &a, &c);
        assert!(d.iter().any(|l| l.contains("session state")), "{d:?}");
        let e = ok_with_vars(&[("character_set_connection", "big5"), ("character_set_client", "big5")]);
        assert!(!compare_step(&[], &a, &e).is_empty());
    }

    #[test]
    fn a_corrupted_row_is_reported_with_row_and_column() {
        let a = result(&["x", "y", "abc"]);
        let b = result(&["x", "y", "abd"]);
        let d = compare_step(&[], &a, &b);
        assert_eq!(d, vec!["packet 5: result set 1 row 3 column 1: reference 'abc' candidate 'abd'".to_string()]);
        assert!(compare_step(&[], &a, &a.clone()).is_empty());
    }

    #[test]
    fn ok_fields_are_compared_and_rules_normalise_them() {
        let ok = |id: u8| step(vec![(1, vec![0, 1, id, 2, 0, 0, 0])]);
        let d = compare_step(&[], &ok(5), &ok(6));
        assert!(d[0].contains("last_insert_id: reference 5, candidate 6"), "{d:?}");
        let rules = vec![Rule::parse("ignore-ok-field last_insert_id").unwrap()];
        assert!(compare_step(&rules, &ok(5), &ok(6)).is_empty());
    }

    #[test]
    fn missing_packets_and_sequence_ids_are_differences() {
        let a = result(&["x", "y"]);
        let b = result(&["x"]);
        let d = compare_step(&[], &a, &b);
        assert!(d.iter().any(|l| l.contains("only the reference sent it")), "{d:?}");
        let mut c = result(&["x", "y"]);
        c.packets[2].seq = 9;
        c.packets[2].last_seq = 9;
        let d = compare_step(&[], &a, &c);
        assert!(d.iter().any(|l| l.contains("sequence id: reference 3, candidate 9")), "{d:?}");
    }

    #[test]
    fn err_messages_and_masked_columns() {
        let err = |m: &str| step(vec![(1, sluice::protocol::packets::err_payload(1094, "HY000", m))]);
        let d = compare_step(&[], &err("Unknown thread id: 5"), &err("Unknown thread id: 6"));
        assert!(d[0].contains("message: reference 'Unknown thread id: 5', candidate 'Unknown thread id: 6'"), "{d:?}");
        let rules = vec![Rule::parse(r"regex 'id: \d+' 'id: N'").unwrap()];
        assert!(compare_step(&rules, &err("Unknown thread id: 5"), &err("Unknown thread id: 6")).is_empty());
        let rules = vec![Rule::parse("mask-column 1").unwrap()];
        assert!(compare_step(&rules, &result(&["17"]), &result(&["18"])).is_empty());
        assert!(!compare_step(&rules, &result(&["17"]), &result(&["17", "18"])).is_empty());
    }
}
