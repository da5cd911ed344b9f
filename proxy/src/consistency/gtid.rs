//! GTID positions of both server families, as one value: parsed from what servers print
//! or track, merged, compared, and printed back as the text the wait functions accept.
//!
//! Implements the MariaDB GTID position (<https://mariadb.com/kb/en/gtid/>: `@@last_gtid`,
//! `@@gtid_current_pos`, `@@gtid_slave_pos`, `MASTER_GTID_WAIT`) and the MySQL GTID set
//! (<https://dev.mysql.com/doc/refman/8.4/en/replication-gtids-concepts.html>:
//! `@@gtid_executed`, `WAIT_FOR_EXECUTED_GTID_SET`, 8.4 tagged GTIDs), and reads the GTIDs an
//! OK packet's session-state block reports
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html#sect_protocol_basic_ok_packet_sessinfo>:
//! a tracked `last_gtid` system variable, or `SESSION_TRACK_GTIDS`).
//!
//! A [`GtidSet`] may hold both parts; in practice a node's set holds one. Pure synchronous
//! code: no I/O, nothing shared.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::health::Flavour;
use crate::protocol::packet::Reader;
use crate::protocol::packets::{track, StateChanges};

/// The largest MySQL transaction number (GNOs are positive signed 64-bit numbers).
const MAX_GNO: u64 = i64::MAX as u64;

/// The longest MySQL 8.4 GTID tag.
const MAX_TAG_LEN: usize = 32;

/// A GTID position (MariaDB) and/or GTID set (MySQL).
///
/// MariaDB: per replication domain, the newest GTID seen; within a domain only the sequence
/// number orders positions (as `MASTER_GTID_WAIT` compares them). MySQL: per source (the
/// lower-case UUID, or `uuid:tag` for 8.4 tagged GTIDs), the transaction numbers as sorted,
/// disjoint, non-adjacent inclusive intervals, so equal sets compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet {
    mariadb: BTreeMap<u32, (u32, u64)>,
    mysql: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Text that is not a GTID position / set of the flavour it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {flavour:?} GTID text at {near:?}: {reason}")]
pub struct ParseError {
    pub flavour: Flavour,
    /// The offending entry (at most 64 bytes of it).
    pub near: String,
    pub reason: &'static str,
}

impl ParseError {
    fn new(flavour: Flavour, near: &str, reason: &'static str) -> Self {
        let mut end = near.len().min(64);
        while !near.is_char_boundary(end) {
            end -= 1;
        }
        ParseError { flavour, near: near[..end].to_string(), reason }
    }
}

impl GtidSet {
    /// Parses the text of `flavour` (see [`GtidSet::parse_mariadb`], [`GtidSet::parse_mysql`]).
    pub fn parse(flavour: Flavour, s: &str) -> Result<GtidSet, ParseError> {
        match flavour {
            Flavour::MariaDb => GtidSet::parse_mariadb(s),
            Flavour::MySql => GtidSet::parse_mysql(s),
        }
    }

    /// Parses a MariaDB GTID position: `domain-server_id-seq_no` entries separated by
    /// commas (`0-1-10,1-2-5`); blank text is the empty position. Two entries of one domain
    /// merge as [`GtidSet::merge`] does.
    pub fn parse_mariadb(s: &str) -> Result<GtidSet, ParseError> {
        parse_entries(s, add_mariadb_entry)
    }

    /// Parses a MySQL GTID set: `uuid:interval[:interval...]` entries separated by commas
    /// (white space and newlines around them allowed, as `@@gtid_executed` prints them), an
    /// interval being `n` or `first-last`; MySQL 8.4 tags (`uuid:tag:1-5`, `uuid:1-3:tag:1-2`)
    /// apply to the intervals after them. Blank text is the empty set. Intervals may overlap
    /// or repeat; they are merged.
    pub fn parse_mysql(s: &str) -> Result<GtidSet, ParseError> {
        parse_entries(s, add_mysql_entry)
    }

    /// Reads the GTIDs reported by an OK packet's session-state-change block (`block`, the
    /// raw entries): `last_gtid` system-variable entries (MariaDB, an empty value reports
    /// nothing) and `SESSION_TRACK_GTIDS` entries in encoding 0 (MySQL `OWN_GTID` /
    /// `ALL_GTIDS`), merged. `None` when the block reports none. An entry whose text does
    /// not parse is passed over.
    pub fn from_session_state(block: &[u8]) -> Option<GtidSet> {
        let mut set = GtidSet::default();
        for (kind, data) in StateChanges::new(block) {
            let mut r = Reader::new(data);
            let reported = match kind {
                track::SYSTEM_VARIABLES => match (r.lenenc_bytes(), r.lenenc_bytes()) {
                    (Some(name), Some(value)) if name.eq_ignore_ascii_case(b"last_gtid") => {
                        std::str::from_utf8(value).ok().and_then(|v| GtidSet::parse_mariadb(v).ok())
                    }
                    _ => None,
                },
                track::GTIDS if r.u8() == Some(0) => r
                    .lenenc_bytes()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| GtidSet::parse_mysql(v).ok()),
                _ => None,
            };
            if let Some(g) = reported {
                set.merge(&g);
            }
        }
        (!set.is_empty()).then_some(set)
    }

    pub fn is_empty(&self) -> bool {
        self.mariadb.is_empty() && self.mysql.is_empty()
    }

    /// The MariaDB part: domain → (server id, sequence number).
    pub fn mariadb(&self) -> &BTreeMap<u32, (u32, u64)> {
        &self.mariadb
    }

    /// The MySQL part: source (`uuid` or `uuid:tag`) → sorted disjoint inclusive intervals.
    pub fn mysql(&self) -> &BTreeMap<String, Vec<(u64, u64)>> {
        &self.mysql
    }

    /// Adds `other`: MariaDB, per domain the GTID with the larger sequence number (a newer
    /// position is never replaced by an older one; equal sequence numbers keep the larger
    /// server id, so merging is order-independent); MySQL, the union.
    pub fn merge(&mut self, other: &GtidSet) {
        for (&domain, &(server_id, seq_no)) in &other.mariadb {
            self.put_mariadb(domain, server_id, seq_no);
        }
        for (source, theirs) in &other.mysql {
            match self.mysql.entry(source.clone()) {
                Entry::Vacant(v) => {
                    v.insert(theirs.clone());
                }
                Entry::Occupied(mut o) => {
                    let mine = o.get_mut();
                    mine.extend_from_slice(theirs);
                    normalise(mine);
                }
            }
        }
    }

    /// Whether everything in `other` is in `self`: each MariaDB domain of `other` is in
    /// `self` with a sequence number at least as large (server ids are not compared), and
    /// the MySQL part of `other` is a subset of `self`'s.
    pub fn contains(&self, other: &GtidSet) -> bool {
        let mariadb = other
            .mariadb
            .iter()
            .all(|(domain, &(_, seq_no))| self.mariadb.get(domain).is_some_and(|&(_, mine)| seq_no <= mine));
        mariadb
            && other.mysql.iter().all(|(source, theirs)| {
                self.mysql.get(source).is_some_and(|mine| theirs.iter().all(|&iv| covers(mine, iv)))
            })
    }

    /// The MariaDB part as `MASTER_GTID_WAIT` takes it: `d-s-n` by domain, comma separated.
    pub fn mariadb_text(&self) -> String {
        let mut s = String::new();
        // cannot fail: `fmt::Write` for `String` never errors.
        self.write_mariadb(&mut s).expect("writing to a String");
        s
    }

    /// The MySQL part as `WAIT_FOR_EXECUTED_GTID_SET` takes it: `uuid:1-5:7` (tagged
    /// sources as `uuid:tag:1-5`), comma separated.
    pub fn mysql_text(&self) -> String {
        let mut s = String::new();
        // cannot fail: `fmt::Write` for `String` never errors.
        self.write_mysql(&mut s).expect("writing to a String");
        s
    }

    fn put_mariadb(&mut self, domain: u32, server_id: u32, seq_no: u64) {
        let cur = self.mariadb.entry(domain).or_insert((server_id, seq_no));
        if (seq_no, server_id) > (cur.1, cur.0) {
            *cur = (server_id, seq_no);
        }
    }

    fn write_mariadb(&self, f: &mut impl fmt::Write) -> fmt::Result {
        for (i, (domain, (server_id, seq_no))) in self.mariadb.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{domain}-{server_id}-{seq_no}")?;
        }
        Ok(())
    }

    fn write_mysql(&self, f: &mut impl fmt::Write) -> fmt::Result {
        for (i, (source, intervals)) in self.mysql.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { "," })?;
            f.write_str(source)?;
            for &(first, last) in intervals {
                if first == last {
                    write!(f, ":{first}")?;
                } else {
                    write!(f, ":{first}-{last}")?;
                }
            }
        }
        Ok(())
    }
}

/// The MariaDB part, then the MySQL part, comma separated.
impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_mariadb(f)?;
        if !self.mariadb.is_empty() && !self.mysql.is_empty() {
            f.write_str(",")?;
        }
        self.write_mysql(f)
    }
}

/// Reads what [`GtidSet`]'s `Display` prints, either part or both: an entry with a `:` is a
/// MySQL one, any other a MariaDB one.
impl FromStr for GtidSet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<GtidSet, ParseError> {
        parse_entries(
            s,
            |set, entry| {
                if entry.contains(':') {
                    add_mysql_entry(set, entry)
                } else {
                    add_mariadb_entry(set, entry)
                }
            },
        )
    }
}

/// Parses comma-separated entries with `add`; blank text is the empty set.
fn parse_entries(
    s: &str,
    mut add: impl FnMut(&mut GtidSet, &str) -> Result<(), ParseError>,
) -> Result<GtidSet, ParseError> {
    let mut set = GtidSet::default();
    if !s.trim().is_empty() {
        for entry in s.split(',') {
            add(&mut set, entry.trim())?;
        }
    }
    set.mysql.values_mut().for_each(normalise);
    Ok(set)
}

/// `domain-server_id-seq_no`.
fn add_mariadb_entry(set: &mut GtidSet, entry: &str) -> Result<(), ParseError> {
    let err = |reason| ParseError::new(Flavour::MariaDb, entry, reason);
    let mut parts = entry.split('-').map(str::trim);
    let (Some(d), Some(s), Some(n), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(err("expected domain-server_id-seq_no"));
    };
    let domain = number(d).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| err("bad domain id"))?;
    let server_id = number(s).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| err("bad server id"))?;
    let seq_no = number(n).ok_or_else(|| err("bad sequence number"))?;
    set.put_mariadb(domain, server_id, seq_no);
    Ok(())
}

/// One `uuid(:interval|:tag)*` entry, its intervals appended (not yet normalised).
fn add_mysql_entry(set: &mut GtidSet, entry: &str) -> Result<(), ParseError> {
    let err = |reason| ParseError::new(Flavour::MySql, entry, reason);
    let mut parts = entry.split(':').map(str::trim);
    let uuid = parts.next().filter(|u| is_uuid(u)).ok_or_else(|| err("bad source UUID"))?.to_ascii_lowercase();
    let mut source = uuid.clone();
    // The UUID, or the latest tag, has no interval yet (a UUID may go straight to a tag).
    let mut awaiting_interval = true;
    let mut after_tag = false;
    for part in parts {
        if part.starts_with(|c: char| c.is_ascii_digit()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (number(a.trim()), number(b.trim())),
                None => (number(part), number(part)),
            };
            let (Some(first), Some(last)) = (first, last) else {
                return Err(err("bad interval"));
            };
            if first == 0 || first > last || last > MAX_GNO {
                return Err(err("interval out of range"));
            }
            set.mysql.entry(source.clone()).or_default().push((first, last));
            awaiting_interval = false;
        } else {
            if awaiting_interval && after_tag {
                return Err(err("a tag without intervals"));
            }
            if !is_tag(part) {
                return Err(err("bad tag"));
            }
            source = format!("{uuid}:{}", part.to_ascii_lowercase());
            awaiting_interval = true;
            after_tag = true;
        }
    }
    if awaiting_interval {
        return Err(err("no interval after the UUID or tag"));
    }
    Ok(())
}

/// A decimal number made of ASCII digits only (no sign, no spaces).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `8-4-4-4-12` hexadecimal digits, either case.
fn is_uuid(s: &str) -> bool {
    let groups = [8, 4, 4, 4, 12];
    let mut parts = s.split('-');
    groups.iter().all(|&len| parts.next().is_some_and(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit())))
        && parts.next().is_none()
}

/// A MySQL 8.4 tag: a letter or underscore, then letters, digits and underscores, at most
/// 32 in all.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Sorts intervals and joins the overlapping and adjacent ones.
fn normalise(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(first, last) in intervals.iter() {
        match joined.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => joined.push((first, last)),
        }
    }
    *intervals = joined;
}

/// Whether normalised `intervals` hold all of `first..=last`.
fn covers(intervals: &[(u64, u64)], (first, last): (u64, u64)) -> bool {
    let i = intervals.partition_point(|&(start, _)| start <= first);
    i > 0 && intervals[i - 1].1 >= last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rewrite::tests::{entry, gtids_entry, sysvar_entry};
    use proptest::prelude::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4a5b6c7d-0000-1111-2222-333344445555";

    fn maria(s: &str) -> GtidSet {
        GtidSet::parse_mariadb(s).unwrap()
    }

    fn mysql(s: &str) -> GtidSet {
        GtidSet::parse_mysql(s).unwrap()
    }

    fn merged(a: &GtidSet, b: &GtidSet) -> GtidSet {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn mariadb_position_parses_one_gtid_per_domain() {
        let g = maria("0-1-10,1-2-5");
        assert_eq!(g.mariadb().iter().collect::<Vec<_>>(), vec![(&0, &(1, 10)), (&1, &(2, 5))]);
        assert!(g.mysql().is_empty());
        assert_eq!(maria(" 2-3-4 ").mariadb()[&2], (3, 4));
        assert_eq!(
            maria("4294967295-4294967295-18446744073709551615").to_string(),
            "4294967295-4294967295-18446744073709551615"
        );
    }

    #[test]
    fn mariadb_text_repeating_a_domain_keeps_its_newest_gtid() {
        assert_eq!(maria("0-1-10,0-2-7").mariadb()[&0], (1, 10));
        assert_eq!(maria("0-2-7,0-1-10").mariadb()[&0], (1, 10));
    }

    #[test]
    fn empty_text_is_the_empty_set_in_both_flavours() {
        for s in ["", "  ", "\n"] {
            assert!(maria(s).is_empty());
            assert!(mysql(s).is_empty());
            assert!(GtidSet::from_str(s).unwrap().is_empty());
        }
        assert_eq!(GtidSet::default().to_string(), "");
    }

    #[test]
    fn garbage_is_a_parse_error_in_the_right_flavour() {
        for bad in [
            "x",
            "0-1",
            "0-1-2-3",
            "0-1-x",
            "-1-2",
            "0--2",
            "0-1-+2",
            "0-4294967296-1",
            "0-1-2,",
            "0-1-2,,1-1-1",
            "0-1-99999999999999999999",
            "0:1-2-3",
        ] {
            let e = GtidSet::parse_mariadb(bad).unwrap_err();
            assert_eq!(e.flavour, Flavour::MariaDb, "{bad}");
        }
        let after_uuid = [
            "",
            ":",
            ":0",
            ":5-3",
            ":1-",
            ":-3",
            ":1-9223372036854775808",
            ":tag",
            ":1:tag",
            ":a:b:1",
            ":1:9tag:1",
            ":1:ta-g:1",
            ":1,",
            ":1 2",
        ];
        let long_tag = format!("{U1}:1:{}:1", "t".repeat(33));
        let other = [
            "x",
            "0-1-2",
            "3e11fa47-71ca-11e1-9e33-c80aa942956:1",
            "3e11fa4771ca11e19e33c80aa9429562:1",
            "3e11fa47-71ca-11e1-9e33-c80aa942956g:1",
        ];
        let bad_sets = after_uuid.iter().map(|s| format!("{U1}{s}")).chain(other.iter().map(|s| s.to_string()));
        for bad in bad_sets.chain([long_tag]) {
            let e = GtidSet::parse_mysql(&bad).unwrap_err();
            assert_eq!(e.flavour, Flavour::MySql, "{bad}");
        }
        assert!(GtidSet::parse(Flavour::MySql, "0-1-2").is_err());
        assert!(GtidSet::parse(Flavour::MariaDb, "0-1-2").is_ok());
    }

    #[test]
    fn parse_error_names_a_bounded_piece_of_the_text() {
        let long = format!("é{}", "9".repeat(200));
        let e = GtidSet::parse_mariadb(&long).unwrap_err();
        assert!(e.near.len() <= 64);
        assert!(e.to_string().contains("MariaDb"));
    }

    #[test]
    fn mysql_set_parses_as_gtid_executed_prints_it() {
        let text = format!("{},\n{U2}:1-3", U1.to_uppercase() + ":1-5:7");
        let g = mysql(&text);
        assert_eq!(g.mysql()[U1], vec![(1, 5), (7, 7)]);
        assert_eq!(g.mysql()[U2], vec![(1, 3)]);
        assert_eq!(g.to_string(), format!("{U1}:1-5:7,{U2}:1-3"));
        assert!(g.mariadb().is_empty());
    }

    #[test]
    fn mysql_intervals_are_sorted_and_overlapping_or_adjacent_ones_coalesce() {
        assert_eq!(mysql(&format!("{U1}:6-9:1-5")).mysql()[U1], vec![(1, 9)]);
        assert_eq!(mysql(&format!("{U1}:1-5,{U1}:6-9")).mysql()[U1], vec![(1, 9)]);
        assert_eq!(mysql(&format!("{U1}:3-8:1-4:20:10-12:11")).mysql()[U1], vec![(1, 8), (10, 12), (20, 20)]);
        let a = mysql(&format!("{U1}:1-5"));
        let b = mysql(&format!("{U1}:6-9"));
        assert_eq!(merged(&a, &b).mysql()[U1], vec![(1, 9)]);
        assert_eq!(merged(&a, &mysql(&format!("{U1}:8"))).mysql()[U1], vec![(1, 5), (8, 8)]);
    }

    #[test]
    fn mysql_tagged_gtids_are_keyed_by_uuid_and_lower_case_tag() {
        let g = mysql(&format!("{U1}:1-3:Blue:1-2:5, {U1}:red:4"));
        assert_eq!(g.mysql()[U1], vec![(1, 3)]);
        assert_eq!(g.mysql()[&format!("{U1}:blue")], vec![(1, 2), (5, 5)]);
        assert_eq!(g.mysql()[&format!("{U1}:red")], vec![(4, 4)]);
        assert_eq!(g.to_string(), format!("{U1}:1-3,{U1}:blue:1-2:5,{U1}:red:4"));
        assert_eq!(mysql(&g.to_string()), g);
        let t = mysql(&format!("{U1}:_t:9"));
        assert!(!g.contains(&t) && !t.contains(&mysql(&format!("{U1}:9"))));
    }

    #[test]
    fn merge_never_replaces_a_newer_position_with_an_older_one() {
        let mut g = maria("0-1-10,1-1-3");
        g.merge(&maria("0-2-7,1-2-4,5-1-1"));
        assert_eq!(g.mariadb_text(), "0-1-10,1-2-4,5-1-1");
        g.merge(&maria("0-3-9"));
        assert_eq!(g.mariadb()[&0], (1, 10));
    }

    #[test]
    fn merge_of_equal_sequence_numbers_keeps_the_larger_server_id_whatever_the_order() {
        let (a, b) = (maria("0-1-10"), maria("0-2-10"));
        assert_eq!(merged(&a, &b), merged(&b, &a));
        assert_eq!(merged(&a, &b).mariadb()[&0], (2, 10));
    }

    #[test]
    fn contains_compares_mariadb_domains_by_sequence_number_only() {
        let g = maria("0-1-10,1-2-5");
        assert!(g.contains(&maria("0-1-10")));
        assert!(g.contains(&maria("0-9-3,1-1-5")));
        assert!(!g.contains(&maria("0-1-11")));
        assert!(!g.contains(&maria("2-1-1")), "a domain missing in self is not reached");
        assert!(!maria("0-1-10").contains(&g));
        assert!(g.contains(&GtidSet::default()));
    }

    #[test]
    fn contains_is_subset_for_mysql_sets() {
        let g = mysql(&format!("{U1}:1-5:7-9,{U2}:1-3"));
        assert!(g.contains(&mysql(&format!("{U1}:2-4:7,{U2}:3"))));
        assert!(g.contains(&mysql(&format!("{U1}:7-9"))));
        assert!(!g.contains(&mysql(&format!("{U1}:5-7"))), "the gap at 6 is missing");
        assert!(!g.contains(&mysql(&format!("{U1}:10"))));
        assert!(!g.contains(&mysql(&format!("{U2}:4"))));
        assert!(!mysql(&format!("{U1}:1-9")).contains(&mysql(&format!("{U2}:1"))));
    }

    #[test]
    fn contains_across_flavours_needs_each_part() {
        let m = maria("0-1-10");
        let y = mysql(&format!("{U1}:1-5"));
        assert!(!m.contains(&y) && !y.contains(&m));
        let both = merged(&m, &y);
        assert!(both.contains(&m) && both.contains(&y) && both.contains(&both));
        assert!(!m.contains(&both) && !y.contains(&both));
        assert_eq!(both.to_string(), format!("0-1-10,{U1}:1-5"));
        assert_eq!((both.mariadb_text(), both.mysql_text()), ("0-1-10".to_string(), format!("{U1}:1-5")));
        assert_eq!(GtidSet::from_str(&both.to_string()).unwrap(), both);
    }

    #[test]
    fn session_state_last_gtid_is_read_next_to_other_variables() {
        let mut block = sysvar_entry("autocommit", "ON");
        block.extend(sysvar_entry("last_gtid", "0-1-42"));
        assert_eq!(GtidSet::from_session_state(&block), Some(maria("0-1-42")));
        let upper = sysvar_entry("LAST_GTID", "1-1-3");
        assert_eq!(GtidSet::from_session_state(&upper), Some(maria("1-1-3")));
    }

    #[test]
    fn session_state_gtids_entry_is_read_next_to_a_schema_entry() {
        let mut block = entry(track::SCHEMA, b"\x04test");
        block.extend(gtids_entry(&format!("{U1}:7")));
        assert_eq!(GtidSet::from_session_state(&block), Some(mysql(&format!("{U1}:7"))));
    }

    #[test]
    fn session_state_entries_are_merged() {
        let mut block = sysvar_entry("last_gtid", "0-1-4");
        block.extend(sysvar_entry("last_gtid", "0-1-5"));
        block.extend(gtids_entry(&format!("{U1}:1")));
        block.extend(gtids_entry(&format!("{U1}:2")));
        let g = GtidSet::from_session_state(&block).unwrap();
        assert_eq!(g.to_string(), format!("0-1-5,{U1}:1-2"));
    }

    #[test]
    fn session_state_without_gtids_reports_none() {
        assert_eq!(GtidSet::from_session_state(&[]), None);
        assert_eq!(GtidSet::from_session_state(&sysvar_entry("autocommit", "OFF")), None);
        assert_eq!(GtidSet::from_session_state(&sysvar_entry("last_gtid", "")), None);
        assert_eq!(GtidSet::from_session_state(&gtids_entry("")), None);
        assert_eq!(GtidSet::from_session_state(&entry(track::STATE_CHANGE, b"\x011")), None);
    }

    #[test]
    fn session_state_passes_over_unreadable_entries() {
        let mut other_encoding = gtids_entry(&format!("{U1}:1"));
        other_encoding[2] = 1;
        assert_eq!(GtidSet::from_session_state(&other_encoding), None);
        let mut block = sysvar_entry("last_gtid", "garbage");
        block.extend(sysvar_entry("last_gtid", "0-1-2"));
        block.extend([track::GTIDS, 9, 0]);
        assert_eq!(GtidSet::from_session_state(&block), Some(maria("0-1-2")));
    }

    fn arb_set() -> impl Strategy<Value = GtidSet> {
        let sources = prop::sample::select(vec![U1.to_string(), U2.to_string(), format!("{U1}:tg")]);
        let intervals = prop::collection::vec((1u64..40, 0u64..4).prop_map(|(a, n)| (a, a + n)), 1..4);
        (
            prop::collection::btree_map(0u32..4, (1u32..4, 0u64..30), 0..4),
            prop::collection::btree_map(sources, intervals, 0..3),
        )
            .prop_map(|(mariadb, mut mysql)| {
                mysql.values_mut().for_each(normalise);
                GtidSet { mariadb, mysql }
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_set(), b in arb_set()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in arb_set(), b in arb_set(), c in arb_set()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_set(), b in arb_set()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab);
        }

        #[test]
        fn merge_contains_both_sides(a in arb_set(), b in arb_set()) {
            let ab = merged(&a, &b);
            prop_assert!(ab.contains(&a) && ab.contains(&b));
        }

        #[test]
        fn display_parses_back_to_the_same_set(a in arb_set()) {
            prop_assert_eq!(GtidSet::from_str(&a.to_string()).unwrap(), a.clone());
            let m = GtidSet::parse_mariadb(&a.mariadb_text()).unwrap();
            let y = GtidSet::parse_mysql(&a.mysql_text()).unwrap();
            prop_assert_eq!(&m.mariadb, &a.mariadb);
            prop_assert_eq!(&y.mysql, &a.mysql);
            prop_assert_eq!(merged(&m, &y), a);
        }

        #[test]
        fn contains_is_reflexive_and_transitive(a in arb_set(), b in arb_set(), c in arb_set()) {
            prop_assert!(a.contains(&a));
            if a.contains(&b) && b.contains(&c) {
                prop_assert!(a.contains(&c));
            }
            let abc = merged(&merged(&a, &b), &c);
            prop_assert!(abc.contains(&merged(&a, &b)) && abc.contains(&a));
        }

        #[test]
        fn mysql_contains_is_exactly_merge_changing_nothing(a in arb_set(), b in arb_set()) {
            let (a, b) = (GtidSet { mariadb: BTreeMap::new(), ..a }, GtidSet { mariadb: BTreeMap::new(), ..b });
            prop_assert_eq!(a.contains(&b), merged(&a, &b) == a);
        }

        #[test]
        fn parsing_garbage_never_panics(s in "[0-9a-fA-Z:, \\-\n]{0,48}") {
            let _ = GtidSet::parse_mariadb(&s);
            let _ = GtidSet::parse_mysql(&s);
            let _ = GtidSet::from_str(&s);
        }

        #[test]
        fn reading_a_garbage_session_state_block_never_panics(block in prop::collection::vec(any::<u8>(), 0..48)) {
            let _ = GtidSet::from_session_state(&block);
        }
    }
}
