//! Global transaction identifiers for both flavours.
//!
//! Owns:
//! * MariaDB: [`MariaGtid`] (`domain-server-seq`) and [`MariaGtidPos`], a
//!   position holding the last GTID per replication domain (the format of
//!   `@@gtid_binlog_pos`, `@@gtid_slave_pos`, `@@gtid_current_pos`).
//! * MySQL: [`Uuid`], [`MySqlGtid`] (`uuid:N`) and [`GtidSet`] with interval
//!   arithmetic (union, subtraction, intersection, subset) and canonical
//!   formatting exactly like MySQL prints `@@gtid_executed`: UUIDs sorted,
//!   lowercase, intervals merged, `uuid:1-5:7-9`, entries separated by
//!   `",\n"`.
//! * The flavour-neutral wrappers [`Gtid`] and [`GtidPosition`] used by the
//!   binlog and the replication API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::RngCore;

// ---------------------------------------------------------------------------
// UUID
// ---------------------------------------------------------------------------

/// A server UUID (MySQL `@@server_uuid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A deterministic, distinct-per-server-id UUID (version-1 shaped, like
    /// MySQL generates).
    pub fn for_server_id(server_id: u32) -> Uuid {
        let mut state = 0x5eed_0000_0000_0000u64 ^ server_id as u64;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let a = next().to_be_bytes();
        let b = next().to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a);
        bytes[8..].copy_from_slice(&b);
        Self::shape_v1(bytes)
    }

    /// A UUID drawn from the harness RNG.
    pub fn from_rng(rng: &mut impl RngCore) -> Uuid {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self::shape_v1(bytes)
    }

    fn shape_v1(mut bytes: [u8; 16]) -> Uuid {
        bytes[6] = (bytes[6] & 0x0f) | 0x10; // version 1
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        Uuid(bytes)
    }

    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case), or 32 hex
    /// digits without hyphens.
    pub fn parse(s: &str) -> Option<Uuid> {
        let s = s.trim();
        let hex: Vec<u8> = if s.len() == 36 {
            let b = s.as_bytes();
            if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
                return None;
            }
            b.iter().copied().filter(|c| *c != b'-').collect()
        } else if s.len() == 32 {
            s.as_bytes().to_vec()
        } else {
            return None;
        };
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for i in 0..16 {
            let hi = (hex[2 * i] as char).to_digit(16)?;
            let lo = (hex[2 * i + 1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i == 4 || i == 6 || i == 8 || i == 10 {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse(s).ok_or_else(|| GtidParseError(s.to_string()))
    }
}

/// A GTID string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed GTID specification '{0}'")]
pub struct GtidParseError(pub String);

// ---------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------

/// A MariaDB GTID `domain-server_id-seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for MariaGtid {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GtidParseError(s.to_string());
        let t = s.trim();
        let mut parts = t.split('-');
        let d = parts.next().ok_or_else(err)?.trim();
        let sid = parts.next().ok_or_else(err)?.trim();
        let seq = parts.next().ok_or_else(err)?.trim();
        if parts.next().is_some() {
            return Err(err());
        }
        let num = |x: &str| -> bool { !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit()) };
        if !num(d) || !num(sid) || !num(seq) {
            return Err(err());
        }
        Ok(MariaGtid {
            domain: d.parse().map_err(|_| err())?,
            server_id: sid.parse().map_err(|_| err())?,
            seq: seq.parse().map_err(|_| err())?,
        })
    }
}

/// A MariaDB GTID position: at most one GTID per domain, printed sorted by
/// domain (`0-1-5,1-2-3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MariaGtidPos {
    domains: BTreeMap<u32, MariaGtid>,
}

impl MariaGtidPos {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    pub fn get(&self, domain: u32) -> Option<&MariaGtid> {
        self.domains.get(&domain)
    }

    /// Record `g` as the position of its domain (unconditionally).
    pub fn set(&mut self, g: MariaGtid) {
        self.domains.insert(g.domain, g);
    }

    /// Record `g` unless the domain is already at a higher sequence number.
    pub fn advance(&mut self, g: MariaGtid) {
        match self.domains.get(&g.domain) {
            Some(cur) if cur.seq > g.seq => {}
            _ => self.set(g),
        }
    }

    /// Whether the transaction `g` is at or before this position in its domain.
    pub fn contains(&self, g: &MariaGtid) -> bool {
        self.domains
            .get(&g.domain)
            .is_some_and(|cur| cur.seq >= g.seq)
    }

    /// Whether every domain of `target` is reached (seq >=) — the
    /// `MASTER_GTID_WAIT` condition.
    pub fn reached(&self, target: &MariaGtidPos) -> bool {
        target.domains.values().all(|g| self.contains(g))
    }

    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> {
        self.domains.values()
    }

    /// Per domain, the GTID with the higher sequence number (ties: `self`).
    pub fn merged_max(&self, other: &MariaGtidPos) -> MariaGtidPos {
        let mut out = self.clone();
        for g in other.iter() {
            match out.domains.get(&g.domain) {
                Some(cur) if cur.seq >= g.seq => {}
                _ => out.set(*g),
            }
        }
        out
    }
}

impl fmt::Display for MariaGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for g in self.domains.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaGtidPos {
    type Err = GtidParseError;
    /// Comma separated GTIDs, at most one per domain; empty string = empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut pos = MariaGtidPos::new();
        if s.trim().is_empty() {
            return Ok(pos);
        }
        for part in s.split(',') {
            let g: MariaGtid = part.parse().map_err(|_| GtidParseError(s.to_string()))?;
            if pos.domains.contains_key(&g.domain) {
                return Err(GtidParseError(s.to_string()));
            }
            pos.set(g);
        }
        Ok(pos)
    }
}

// ---------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------

/// Largest GNO MySQL accepts (2^63 - 1).
pub const MAX_GNO: u64 = i64::MAX as u64;

/// A MySQL GTID `uuid:gno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MySqlGtid {
    pub uuid: Uuid,
    pub seq: u64,
}

impl fmt::Display for MySqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.seq)
    }
}

impl FromStr for MySqlGtid {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GtidParseError(s.to_string());
        let (u, n) = s.trim().split_once(':').ok_or_else(err)?;
        let uuid = Uuid::parse(u).ok_or_else(err)?;
        let seq: u64 = n.trim().parse().map_err(|_| err())?;
        if seq == 0 || seq > MAX_GNO {
            return Err(err());
        }
        Ok(MySqlGtid { uuid, seq })
    }
}

/// A MySQL GTID set: for each UUID a sorted list of disjoint, non-adjacent,
/// inclusive intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    sets: BTreeMap<Uuid, Vec<(u64, u64)>>,
}

impl GtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Number of transactions in the set.
    pub fn count(&self) -> u128 {
        self.sets
            .values()
            .flatten()
            .map(|(a, b)| (b - a + 1) as u128)
            .sum()
    }

    /// The intervals of one UUID.
    pub fn intervals(&self, uuid: &Uuid) -> &[(u64, u64)] {
        self.sets.get(uuid).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn uuids(&self) -> impl Iterator<Item = &Uuid> {
        self.sets.keys()
    }

    pub fn add(&mut self, g: MySqlGtid) {
        self.add_interval(g.uuid, g.seq, g.seq);
    }

    /// Add `[start, end]` (inclusive), merging overlapping/adjacent ranges.
    pub fn add_interval(&mut self, uuid: Uuid, start: u64, end: u64) {
        assert!(
            start >= 1 && start <= end,
            "invalid GTID interval {start}-{end}"
        );
        let v = self.sets.entry(uuid).or_default();
        // first interval that could touch [start, end]: its end + 1 >= start
        let i = v.partition_point(|&(_, e)| e.saturating_add(1) < start);
        let mut s = start;
        let mut e = end;
        let mut j = i;
        while j < v.len() && v[j].0 <= e.saturating_add(1) {
            s = s.min(v[j].0);
            e = e.max(v[j].1);
            j += 1;
        }
        v.splice(i..j, std::iter::once((s, e)));
    }

    pub fn contains(&self, g: &MySqlGtid) -> bool {
        self.contains_seq(&g.uuid, g.seq)
    }

    pub fn contains_seq(&self, uuid: &Uuid, seq: u64) -> bool {
        let Some(v) = self.sets.get(uuid) else {
            return false;
        };
        let i = v.partition_point(|&(_, e)| e < seq);
        i < v.len() && v[i].0 <= seq
    }

    /// The smallest GNO of `uuid` not in the set (MySQL's automatic GNO
    /// assignment fills gaps from 1).
    pub fn first_free(&self, uuid: &Uuid) -> u64 {
        match self.sets.get(uuid) {
            Some(v) if !v.is_empty() && v[0].0 == 1 => v[0].1 + 1,
            _ => 1,
        }
    }

    /// The largest GNO of `uuid` in the set (0 if none).
    pub fn last_seq(&self, uuid: &Uuid) -> u64 {
        self.sets
            .get(uuid)
            .and_then(|v| v.last())
            .map(|x| x.1)
            .unwrap_or(0)
    }

    pub fn union_with(&mut self, other: &GtidSet) {
        for (u, v) in &other.sets {
            for &(a, b) in v {
                self.add_interval(*u, a, b);
            }
        }
    }

    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// `self - other`.
    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::new();
        for (u, v) in &self.sets {
            let o = other.intervals(u);
            let mut res: Vec<(u64, u64)> = Vec::new();
            for &(a, b) in v {
                let mut cur = a;
                let mut k = o.partition_point(|&(_, e)| e < a);
                while cur <= b {
                    if k >= o.len() || o[k].0 > b {
                        res.push((cur, b));
                        break;
                    }
                    let (oa, ob) = o[k];
                    if oa > cur {
                        res.push((cur, oa - 1));
                    }
                    if ob >= b {
                        break;
                    }
                    cur = ob + 1;
                    k += 1;
                }
            }
            if !res.is_empty() {
                out.sets.insert(*u, res);
            }
        }
        out
    }

    pub fn intersection(&self, other: &GtidSet) -> GtidSet {
        self.subtract(&self.subtract(other))
    }

    /// Whether every GTID of `self` is in `other`.
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.sets.iter().all(|(u, v)| {
            let o = other.intervals(u);
            v.iter().all(|&(a, b)| {
                let k = o.partition_point(|&(_, e)| e < a);
                k < o.len() && o[k].0 <= a && o[k].1 >= b
            })
        })
    }

    /// MySQL's canonical text with a custom separator between UUIDs.
    pub fn to_string_with_separator(&self, sep: &str) -> String {
        let mut out = String::new();
        for (i, (u, v)) in self.sets.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(&u.to_string());
            for &(a, b) in v {
                if a == b {
                    out.push_str(&format!(":{a}"));
                } else {
                    out.push_str(&format!(":{a}-{b}"));
                }
            }
        }
        out
    }

    /// Canonical text separated by `","` only (no newline).
    pub fn to_compact_string(&self) -> String {
        self.to_string_with_separator(",")
    }

    /// Parse MySQL GTID-set text: whitespace is ignored, UUID case is
    /// ignored, intervals may overlap and come in any order, the same UUID
    /// may appear several times. The empty string is the empty set.
    pub fn parse(s: &str) -> Result<GtidSet, GtidParseError> {
        let err = || GtidParseError(s.to_string());
        let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let mut set = GtidSet::new();
        if cleaned.is_empty() {
            return Ok(set);
        }
        for entry in cleaned.split(',') {
            let mut parts = entry.split(':');
            let uuid = Uuid::parse(parts.next().ok_or_else(err)?).ok_or_else(err)?;
            let mut any = false;
            for iv in parts {
                any = true;
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (iv, iv),
                };
                let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
                if !digits(a) || !digits(b) {
                    return Err(err());
                }
                let a: u64 = a.parse().map_err(|_| err())?;
                let b: u64 = b.parse().map_err(|_| err())?;
                if a == 0 || a > b || b > MAX_GNO {
                    return Err(err());
                }
                set.add_interval(uuid, a, b);
            }
            if !any {
                return Err(err());
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    /// Exactly like MySQL prints `@@gtid_executed`: entries joined by `",\n"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_with_separator(",\n"))
    }
}

impl FromStr for GtidSet {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GtidSet::parse(s)
    }
}

// ---------------------------------------------------------------------------
// Flavour-neutral wrappers
// ---------------------------------------------------------------------------

/// The GTID of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gtid {
    MariaDb(MariaGtid),
    MySql(MySqlGtid),
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb(g) => g.fmt(f),
            Gtid::MySql(g) => g.fmt(f),
        }
    }
}

/// A replication position: MariaDB per-domain position or MySQL GTID set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GtidPosition {
    MariaDb(MariaGtidPos),
    MySql(GtidSet),
}

impl GtidPosition {
    /// The empty position of a flavour.
    pub fn empty(flavour: super::Flavour) -> GtidPosition {
        match flavour {
            super::Flavour::MariaDb => GtidPosition::MariaDb(MariaGtidPos::new()),
            super::Flavour::MySql8 => GtidPosition::MySql(GtidSet::new()),
        }
    }

    /// Parse in the given flavour's syntax.
    pub fn parse(flavour: super::Flavour, s: &str) -> Result<GtidPosition, GtidParseError> {
        Ok(match flavour {
            super::Flavour::MariaDb => GtidPosition::MariaDb(s.parse()?),
            super::Flavour::MySql8 => GtidPosition::MySql(s.parse()?),
        })
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidPosition::MariaDb(p) => p.is_empty(),
            GtidPosition::MySql(s) => s.is_empty(),
        }
    }

    /// Whether the transaction is included in (MariaDB: at or before) this position.
    pub fn contains(&self, g: &Gtid) -> bool {
        match (self, g) {
            (GtidPosition::MariaDb(p), Gtid::MariaDb(g)) => p.contains(g),
            (GtidPosition::MySql(s), Gtid::MySql(g)) => s.contains(g),
            _ => false,
        }
    }

    /// Include a transaction (MariaDB: advance its domain).
    pub fn add(&mut self, g: &Gtid) {
        match (self, g) {
            (GtidPosition::MariaDb(p), Gtid::MariaDb(g)) => p.advance(*g),
            (GtidPosition::MySql(s), Gtid::MySql(g)) => s.add(*g),
            _ => {}
        }
    }

    /// Whether `other` is entirely reached by `self`.
    pub fn includes(&self, other: &GtidPosition) -> bool {
        match (self, other) {
            (GtidPosition::MariaDb(a), GtidPosition::MariaDb(b)) => a.reached(b),
            (GtidPosition::MySql(a), GtidPosition::MySql(b)) => b.is_subset(a),
            _ => false,
        }
    }

    /// Combine two positions (MariaDB: per-domain max; MySQL: union).
    pub fn merge(&mut self, other: &GtidPosition) {
        match (self, other) {
            (GtidPosition::MariaDb(a), GtidPosition::MariaDb(b)) => *a = a.merged_max(b),
            (GtidPosition::MySql(a), GtidPosition::MySql(b)) => a.union_with(b),
            _ => {}
        }
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidPosition::MariaDb(p) => p.fmt(f),
            GtidPosition::MySql(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn u(n: u8) -> Uuid {
        let mut b = [0u8; 16];
        b[0] = n;
        b[15] = n;
        Uuid(b)
    }

    #[test]
    fn uuid_roundtrips_lowercase() {
        let s = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        let id = Uuid::parse(s).unwrap();
        assert_eq!(id.to_string(), s.to_lowercase());
        assert!(Uuid::parse("3e11fa47-71ca-11e1-9e33").is_none());
    }

    #[test]
    fn server_id_uuids_are_distinct_and_stable() {
        assert_eq!(Uuid::for_server_id(1), Uuid::for_server_id(1));
        assert_ne!(Uuid::for_server_id(1), Uuid::for_server_id(2));
    }

    #[test]
    fn mysql_gtid_set_merges_intervals_canonically() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "0e11fa47-71ca-11e1-9e33-c80aa9429562";
        let text = format!("{}:7-9:1-3, {b}:5 ,{a}:4-6,{}:11", a.to_uppercase(), a);
        let set = GtidSet::parse(&text).unwrap();
        assert_eq!(set.to_string(), format!("{b}:5,\n{a}:1-9:11"));
        assert_eq!(set.to_compact_string(), format!("{b}:5,{a}:1-9:11"));
        assert_eq!(set.count(), 11);
    }

    #[test]
    fn mysql_gtid_set_rejects_malformed_text() {
        for bad in [
            "x:1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:0",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:a",
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
        assert!(GtidSet::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn first_free_fills_gaps_from_one() {
        let mut s = GtidSet::new();
        assert_eq!(s.first_free(&u(1)), 1);
        s.add_interval(u(1), 2, 5);
        assert_eq!(s.first_free(&u(1)), 1);
        s.add_interval(u(1), 1, 1);
        assert_eq!(s.first_free(&u(1)), 6);
    }

    #[test]
    fn mariadb_position_parses_and_compares_per_domain() {
        let p: MariaGtidPos = "1-2-3,0-1-5".parse().unwrap();
        assert_eq!(p.to_string(), "0-1-5,1-2-3");
        let t: MariaGtidPos = "0-9-4".parse().unwrap();
        assert!(p.reached(&t));
        let t2: MariaGtidPos = "0-1-6".parse().unwrap();
        assert!(!p.reached(&t2));
        let t3: MariaGtidPos = "2-1-1".parse().unwrap();
        assert!(!p.reached(&t3));
        assert!("0-1".parse::<MariaGtidPos>().is_err());
        assert!("0-1-2,0-1-3".parse::<MariaGtidPos>().is_err());
        assert!("".parse::<MariaGtidPos>().unwrap().is_empty());
    }

    type Model = BTreeSet<(u8, u64)>;

    fn model_of(s: &GtidSet) -> Model {
        let mut m = Model::new();
        for id in s.uuids() {
            for &(a, b) in s.intervals(id) {
                for x in a..=b {
                    m.insert((id.0[0], x));
                }
            }
        }
        m
    }

    fn build(ivs: &[(u8, u64, u64)]) -> (GtidSet, Model) {
        let mut s = GtidSet::new();
        let mut m = Model::new();
        for &(id, a, len) in ivs {
            let b = a + len;
            s.add_interval(u(id), a, b);
            for x in a..=b {
                m.insert((id, x));
            }
        }
        (s, m)
    }

    fn check_canonical(s: &GtidSet) {
        for id in s.uuids() {
            let v = s.intervals(id);
            assert!(!v.is_empty());
            for w in v.windows(2) {
                assert!(w[0].1 + 1 < w[1].0, "not merged: {:?}", v);
            }
            for &(a, b) in v {
                assert!(a >= 1 && a <= b);
            }
        }
    }

    fn ivs() -> impl Strategy<Value = Vec<(u8, u64, u64)>> {
        proptest::collection::vec((0u8..3, 1u64..40, 0u64..6), 0..12)
    }

    proptest! {
        #[test]
        fn gtid_set_arithmetic_matches_naive_model(a in ivs(), b in ivs(), probe in (0u8..3, 1u64..50)) {
            let (sa, ma) = build(&a);
            let (sb, mb) = build(&b);
            check_canonical(&sa);
            prop_assert_eq!(model_of(&sa), ma.clone());

            let un = sa.union(&sb);
            check_canonical(&un);
            prop_assert_eq!(model_of(&un), ma.union(&mb).copied().collect::<Model>());

            let diff = sa.subtract(&sb);
            check_canonical(&diff);
            prop_assert_eq!(model_of(&diff), ma.difference(&mb).copied().collect::<Model>());

            let inter = sa.intersection(&sb);
            check_canonical(&inter);
            prop_assert_eq!(model_of(&inter), ma.intersection(&mb).copied().collect::<Model>());

            prop_assert_eq!(sa.is_subset(&sb), ma.is_subset(&mb));
            prop_assert_eq!(sa.contains_seq(&u(probe.0), probe.1), ma.contains(&probe));
            prop_assert_eq!(sa.count(), ma.len() as u128);

            // text round trip is lossless and canonical
            let text = sa.to_string();
            let back = GtidSet::parse(&text).unwrap();
            prop_assert_eq!(&back, &sa);
            prop_assert_eq!(back.to_string(), text);

            // first free gno is the smallest missing number
            let ff = sa.first_free(&u(probe.0));
            let expect = (1u64..).find(|x| !ma.contains(&(probe.0, *x))).unwrap();
            prop_assert_eq!(ff, expect);
        }
    }
}
