//! Consistency levels and what a read requires under each: the synchronous core of
//! read-after-write consistency (see `docs/consistency.md`).
//!
//! A session's own writes are learned from the GTIDs its backend connections report in
//! OK packets (MariaDB `last_gtid` via
//! [session tracking](https://mariadb.com/kb/en/ok_packet/#session-change-type),
//! MySQL `session_track_gtids = OWN_GTID`); nothing here does I/O.

use serde::{Deserialize, Serialize};

use super::gtid::GtidSet;

/// How fresh a read routed to a replica must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Any eligible replica (only the lag limit applies).
    Eventual,
    /// A session reads its own acknowledged writes.
    #[default]
    Session,
    /// Every session reads every write acknowledged through this Sluice.
    Instance,
    /// A read sees every write committed on the primary before it began (one round
    /// trip to the primary for its position).
    Global,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Eventual => "eventual",
            Level::Session => "session",
            Level::Instance => "instance",
            Level::Global => "global",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "eventual" => Some(Level::Eventual),
            "session" => Some(Level::Session),
            "instance" => Some(Level::Instance),
            "global" => Some(Level::Global),
            _ => None,
        }
    }
}

/// What happens to a read when no replica reached its position in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// The primary serves it.
    #[default]
    Primary,
    /// The client gets error [`ER_SLUICE_CONSISTENCY_TIMEOUT`].
    Error,
}

impl Fallback {
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Primary => "primary",
            Fallback::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Fallback> {
        match s.to_ascii_lowercase().as_str() {
            "primary" => Some(Fallback::Primary),
            "error" => Some(Fallback::Error),
            _ => None,
        }
    }
}

/// Error code of a read that no replica could serve fresh enough within
/// `consistency_timeout_ms`, with `consistency_fallback = error`: MariaDB's
/// ER_STATEMENT_TIMEOUT (1969, SQLSTATE 70100), the error a statement that ran out of
/// time gets, so that applications treat it as a timeout (safe to retry: nothing was
/// written). The message starts with "Sluice: consistency timeout".
pub const ER_SLUICE_CONSISTENCY_TIMEOUT: u16 = 1969;
pub const CONSISTENCY_TIMEOUT_STATE: &str = "70100";

/// GTIDs written through one session (or one Sluice), and the primary that reported
/// them. A position reported by an earlier primary is not comparable with the new
/// primary's replicas: it is dropped at the first write on the new primary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub gtids: GtidSet,
    /// The primary the GTIDs came from.
    pub primary: Option<String>,
    /// A write succeeded whose GTID Sluice did not see (tracking was off on that
    /// connection): the next consistent read first asks the primary for its position.
    pub unknown: bool,
}

impl Written {
    /// Records the GTIDs of a statement that succeeded on `node`; `current` is the
    /// primary as the monitor sees it now.
    pub fn record(&mut self, node: &str, current: Option<&str>, gtids: &GtidSet) {
        self.switch_to(node, current);
        self.gtids.merge(gtids);
    }

    /// A write succeeded on `node` without a GTID Sluice could see.
    pub fn record_unknown(&mut self, node: &str, current: Option<&str>) {
        self.switch_to(node, current);
        self.unknown = true;
    }

    /// The primary's position (read by Sluice) covers everything written so far.
    pub fn resolve_unknown(&mut self, primary: &str, position: &GtidSet) {
        self.switch_to(primary, Some(primary));
        self.gtids.merge(position);
        self.unknown = false;
    }

    /// Starts a new requirement when the current primary reports a write and the
    /// recorded GTIDs came from another node: a new primary numbers its own
    /// transactions, and positions of the old one could make its replicas look behind
    /// forever. A write acknowledged by a node that is not the current primary (an old
    /// primary whose answer arrived after the promotion, a primary the monitor lost
    /// sight of) is added to what is required and never replaces it: dropping the
    /// current primary's GTIDs would let a replica without them serve reads.
    fn switch_to(&mut self, node: &str, current: Option<&str>) {
        let starts_over = match self.primary.as_deref() {
            None => true,
            Some(p) => p != node && current == Some(node),
        };
        if starts_over {
            *self = Written { gtids: GtidSet::default(), primary: Some(node.to_string()), unknown: false };
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty() && !self.unknown
    }
}

/// What one read requires, decided before choosing its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any eligible replica will do.
    Nothing,
    /// A node that has applied these GTIDs (of the current primary).
    Gtids(GtidSet),
    /// Ask the primary for its position first (`global`, or a write with an unseen GTID),
    /// then require it.
    PrimaryPosition,
    /// The requirement came from a primary that is no longer the primary: only a node
    /// that already has it may serve the read without a wait, else the primary does
    /// (waiting could last until the timeout, every time).
    FromPreviousPrimary(GtidSet),
}

/// The requirement of a read at `level`, given what the session and the instance wrote
/// and the current primary.
pub fn need(level: Level, session: &Written, instance: &Written, primary: Option<&str>) -> Need {
    let w = match level {
        Level::Eventual => return Need::Nothing,
        Level::Global => return Need::PrimaryPosition,
        Level::Session => session,
        Level::Instance => instance,
    };
    if w.is_empty() {
        return Need::Nothing;
    }
    // A write whose GTID Sluice did not see: no known position covers it, whichever
    // primary it came from (also when the monitor sees no primary or another one now).
    if w.unknown {
        return Need::PrimaryPosition;
    }
    if w.primary.as_deref() != primary {
        return if w.gtids.is_empty() { Need::Nothing } else { Need::FromPreviousPrimary(w.gtids.clone()) };
    }
    Need::Gtids(w.gtids.clone())
}

/// The statement that waits on a replica for `gtids`, at most `timeout_ms`, and
/// answers one row with one column: MariaDB
/// [`MASTER_GTID_WAIT`](https://mariadb.com/kb/en/master_gtid_wait/) (0 reached, -1
/// timed out), MySQL
/// [`WAIT_FOR_EXECUTED_GTID_SET`](https://dev.mysql.com/doc/refman/8.0/en/gtid-functions.html)
/// (0 reached, 1 timed out).
pub fn wait_sql(mysql: bool, gtids: &GtidSet, timeout_ms: u64) -> String {
    let secs = format!("{}.{:03}", timeout_ms / 1000, timeout_ms % 1000);
    if mysql {
        format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{}', {secs})", gtids.mysql_text())
    } else {
        format!("SELECT MASTER_GTID_WAIT('{}', {secs})", gtids.mariadb_text())
    }
}

/// Whether the answer of [`wait_sql`] says the position was reached.
pub fn wait_reached(answer: Option<&[u8]>) -> bool {
    answer == Some(b"0")
}

/// The statement that reads the primary's position for `global` reads.
pub fn position_sql(mysql: bool) -> &'static str {
    if mysql {
        "SELECT @@GLOBAL.gtid_executed"
    } else {
        "SELECT @@GLOBAL.gtid_binlog_pos"
    }
}

/// The statement that makes a backend connection report the GTID of each of its
/// transactions in the OK packet (keeping whatever else it tracks).
pub fn tracking_sql(mysql: bool) -> &'static str {
    if mysql {
        "SET @@SESSION.session_track_gtids = OWN_GTID"
    } else {
        "SET @@SESSION.session_track_system_variables = IF(@@SESSION.session_track_system_variables = '*', '*', \
         CONCAT_WS(',', NULLIF(@@SESSION.session_track_system_variables, ''), 'last_gtid'))"
    }
}

/// Undoes [`tracking_sql`] for one statement: the client's own value of the tracking
/// variable comes back (Sluice added `last_gtid` to the list; `*` stays `*`).
pub fn untracking_sql(mysql: bool) -> &'static str {
    if mysql {
        "SET @@SESSION.session_track_gtids = OFF"
    } else {
        // The server keeps the list sorted: `last_gtid` may sit anywhere in it.
        "SET @@SESSION.session_track_system_variables = TRIM(BOTH ',' FROM \
         REPLACE(CONCAT(',', @@SESSION.session_track_system_variables, ','), ',last_gtid,', ','))"
    }
}

/// Whether a statement may read the variable Sluice's GTID tracking changes
/// (`@@session_track_system_variables`, `SHOW VARIABLES [LIKE '%track%']`,
/// `information_schema.SESSION_VARIABLES`, ...): it runs with the client's own value
/// ([`untracking_sql`] before it, [`tracking_sql`] after it, in the same round trip).
/// A cheap, generous byte scan: a false positive costs two small statements
/// pipelined with it.
pub fn may_show_tracking(sql: &[u8]) -> bool {
    let has = |needle: &[u8]| sql.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    has(b"session_track")
        || has(b"session\\_track")
        || has(b"%track")
        || has(b"session_variables")
        || (has(b"show") && has(b"variables") && !has(b"like") && !has(b"where"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GtidSet {
        GtidSet::parse_mariadb(s).unwrap()
    }

    #[test]
    fn eventual_reads_need_nothing_even_after_writes() {
        let mut w = Written::default();
        w.record("p:1", Some("p:1"), &g("0-1-5"));
        assert_eq!(need(Level::Eventual, &w, &w, Some("p:1")), Need::Nothing);
    }

    #[test]
    fn session_read_needs_the_sessions_own_gtids() {
        let mut s = Written::default();
        let i = Written::default();
        assert_eq!(need(Level::Session, &s, &i, Some("p:1")), Need::Nothing);
        s.record("p:1", Some("p:1"), &g("0-1-5"));
        s.record("p:1", Some("p:1"), &g("0-1-3"));
        assert_eq!(need(Level::Session, &s, &i, Some("p:1")), Need::Gtids(g("0-1-5")));
    }

    #[test]
    fn instance_read_needs_what_any_session_wrote() {
        let s = Written::default();
        let mut i = Written::default();
        i.record("p:1", Some("p:1"), &g("0-1-9,1-2-4"));
        assert_eq!(need(Level::Instance, &s, &i, Some("p:1")), Need::Gtids(g("0-1-9,1-2-4")));
    }

    #[test]
    fn global_read_asks_the_primary_for_its_position() {
        let w = Written::default();
        assert_eq!(need(Level::Global, &w, &w, Some("p:1")), Need::PrimaryPosition);
    }

    #[test]
    fn a_write_with_an_unseen_gtid_makes_the_next_read_ask_the_primary() {
        let mut s = Written::default();
        s.record("p:1", Some("p:1"), &g("0-1-5"));
        s.record_unknown("p:1", Some("p:1"));
        assert_eq!(need(Level::Session, &s, &s, Some("p:1")), Need::PrimaryPosition);
        s.resolve_unknown("p:1", &g("0-1-7"));
        assert_eq!(need(Level::Session, &s, &s, Some("p:1")), Need::Gtids(g("0-1-7")));
    }

    #[test]
    fn an_unseen_gtid_from_a_primary_the_monitor_no_longer_sees_still_makes_the_read_ask_the_primary() {
        let mut i = Written::default();
        i.record("p:1", Some("p:1"), &g("0-1-449"));
        i.record_unknown("p:1", Some("p:1"));
        let s = Written::default();
        // The monitor lost the primary (no primary) or saw another one: the GTIDs it
        // knows do not cover the unseen write, so no replica may serve the read on them.
        assert_eq!(need(Level::Instance, &s, &i, None), Need::PrimaryPosition);
        assert_eq!(need(Level::Instance, &s, &i, Some("new:1")), Need::PrimaryPosition);
        assert_eq!(need(Level::Session, &i, &s, None), Need::PrimaryPosition);
    }

    #[test]
    fn a_late_answer_of_an_old_primary_never_drops_the_current_primarys_gtids() {
        let mut i = Written::default();
        i.record("new:1", Some("new:1"), &g("0-1-1381"));
        // A commit the old primary acknowledged before the promotion; its OK packet
        // arrives now (seen in the madsim simulation, seed 1034).
        i.record("old:1", Some("new:1"), &g("0-2-1377"));
        assert_eq!(need(Level::Instance, &Written::default(), &i, Some("new:1")), Need::Gtids(g("0-1-1381")));
        i.record_unknown("old:1", Some("new:1"));
        assert_eq!(i.primary.as_deref(), Some("new:1"));
        assert_eq!(need(Level::Instance, &Written::default(), &i, Some("new:1")), Need::PrimaryPosition);
        // Nor while the monitor sees no primary.
        let mut s = Written::default();
        s.record("new:1", Some("new:1"), &g("0-1-10"));
        s.record("old:1", None, &g("0-2-7"));
        assert_eq!(need(Level::Session, &s, &s, Some("new:1")), Need::Gtids(g("0-1-10")));
    }

    #[test]
    fn gtids_of_a_previous_primary_never_make_a_read_wait() {
        let mut s = Written::default();
        s.record("old:1", Some("old:1"), &g("0-1-50"));
        assert_eq!(need(Level::Session, &s, &s, Some("new:1")), Need::FromPreviousPrimary(g("0-1-50")));
        // The first write on the new primary replaces them (the new primary's sequence
        // may be lower: the old one lost transactions).
        s.record("new:1", Some("new:1"), &g("0-2-40"));
        assert_eq!(need(Level::Session, &s, &s, Some("new:1")), Need::Gtids(g("0-2-40")));
    }

    #[test]
    fn wait_statements_carry_the_position_and_the_timeout_in_seconds() {
        assert_eq!(wait_sql(false, &g("0-1-5,1-1-2"), 1500), "SELECT MASTER_GTID_WAIT('0-1-5,1-1-2', 1.500)");
        let m = GtidSet::parse_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
        assert_eq!(wait_sql(true, &m, 250), "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 0.250)");
        assert!(wait_reached(Some(b"0")));
        assert!(!wait_reached(Some(b"-1")));
        assert!(!wait_reached(Some(b"1")));
        assert!(!wait_reached(None));
    }

    #[test]
    fn level_and_fallback_names_parse_back() {
        for l in [Level::Eventual, Level::Session, Level::Instance, Level::Global] {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert_eq!(Level::parse("SESSION"), Some(Level::Session));
        assert_eq!(Level::parse("strong"), None);
        for f in [Fallback::Primary, Fallback::Error] {
            assert_eq!(Fallback::parse(f.name()), Some(f));
        }
    }

    #[test]
    fn statements_that_may_read_the_tracking_variable_are_recognised() {
        assert!(may_show_tracking(b"SELECT @@session.SESSION_TRACK_system_variables"));
        assert!(may_show_tracking(b"show variables"));
        assert!(may_show_tracking(b"SHOW SESSION VARIABLES LIKE 'session\\_track%'"));
        assert!(may_show_tracking(b"select * from information_schema.session_variables"));
        assert!(may_show_tracking(b"SHOW VARIABLES LIKE '%track%'"));
        assert!(!may_show_tracking(b"SHOW VARIABLES LIKE 'sql_mode'"));
        assert!(!may_show_tracking(b"SELECT * FROM t_txn_track_transaction_state"));
        assert!(!may_show_tracking(b"SELECT id FROM t WHERE k = 1"));
    }
}
