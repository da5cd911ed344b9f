//! A session's tracked state: what Sluice must know to route the session's next
//! statement and to bring another node's connection to the same session state.
//!
//! Updated from each statement's classification ([`Effect`]s) and from the summary of
//! its response (status flags, session-state-change data of the OK packets, see
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html#sect_protocol_basic_ok_packet_sessinfo>).
//! Plain synchronous code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use crate::sync::Locked;

use crate::config::RouteMode;
use crate::consistency::level::{Fallback, Level, Written};
use crate::protocol::constants::status;
use crate::protocol::packets::{track, StateChanges};
use crate::protocol::packet::Reader;
use crate::route::class::{Bound, Effect, Kind};

/// Longest replay log: a session that issued more distinct session `SET`s than this
/// keeps its later statements on the primary rather than replaying an unbounded log.
pub const MAX_REPLAY: usize = 256;

/// What a client's session `SET` (COM_QUERY text, command byte removed) says about
/// GTID tracking: `None` when it does not set `session_track_system_variables` or
/// `session_track_gtids`; otherwise whether the client now receives GTIDs itself
/// (`last_gtid` or `*` tracked, `OWN_GTID` / `ALL_GTIDS`).
/// The session `wait_timeout` the client set (the last `SET [SESSION] wait_timeout = n`
/// / `@@[session.]wait_timeout` in its SET log), if any: Sluice closes the session
/// after that long idle, as the server would. Global assignments do not count.
pub fn client_wait_timeout(replay: &[Vec<u8>]) -> Option<std::time::Duration> {
    let mut found = None;
    for p in replay {
        let text = String::from_utf8_lossy(p.get(1..).unwrap_or_default()).to_ascii_lowercase();
        let mut from = 0;
        while let Some(i) = text[from..].find("wait_timeout") {
            let at = from + i;
            from = at + "wait_timeout".len();
            let before = text[..at].trim_end();
            // `interactive_timeout`, `innodb_lock_wait_timeout`, … are other variables.
            if text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if before.ends_with("@@global.") || before.ends_with("global") {
                continue;
            }
            let rest = text[from..].trim_start();
            let Some(rest) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(":=")) else { continue };
            let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse::<u64>() {
                found = Some(std::time::Duration::from_secs(n.max(1)));
            }
        }
    }
    found
}

pub fn client_gtid_tracking(sql: &[u8]) -> Option<bool> {
    let lower = sql.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if !has(b"session_track_system_variables") && !has(b"session_track_gtids") {
        return None;
    }
    Some(has(b"last_gtid") || has(b"'*'") || has(b"\"*\"") || has(b"own_gtid") || has(b"all_gtids"))
}

/// Why a session keeps its backend connection between statements instead of giving it
/// back to the pool (`docs/pooling.md` explains each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pin {
    /// `[pool] multiplex = off` (globally or for the user).
    MultiplexOff,
    /// An open transaction (`BEGIN`, or `autocommit=0` and a statement since).
    Transaction,
    /// `LOCK TABLES` / `FLUSH TABLES … WITH READ LOCK` until `UNLOCK TABLES`.
    LockTables,
    /// `GET_LOCK` and the other user-lock functions.
    UserLock,
    /// A temporary table was created.
    TemporaryTable,
    /// A user variable was set or read by the server (`SET @v`, `@v := …`, `INTO @v`).
    UserVariable,
    /// `SQL_CALC_FOUND_ROWS`, until the next statement (`FOUND_ROWS()`).
    FoundRows,
    /// A prepared statement's cursor is open.
    Cursor,
    /// COM_STMT_SEND_LONG_DATA sent data for an execute still to come.
    LongData,
    /// `SET sql_log_bin`.
    SqlLogBin,
    /// Sequences' `NEXTVAL` / `LASTVAL` / `SETVAL` (the session's last values).
    Sequence,
    /// SQL-level `PREPARE` / `EXECUTE` / `DEALLOCATE`.
    SqlPrepare,
    /// `CALL` or a stored function (it may change session state Sluice cannot see).
    StoredRoutine,
    /// `HANDLER`, `XA` and other connection-bound statements.
    ConnectionState,
    /// `SELECT LAST_INSERT_ID(expr)`: the value it set is in no OK packet.
    LastInsertId,
    /// A statement Sluice could not classify ran successfully, or state it cannot replay
    /// (a multi-statement with `SET`s, too many `SET`s, a prepared `SET`, a refused
    /// COM_CHANGE_USER).
    Unreplayable,
    /// The last statement left warnings or an error: kept for the next statement
    /// (`SHOW WARNINGS`, `GET DIAGNOSTICS`, `@@warning_count`).
    Diagnostics,
}

impl Pin {
    /// Stable name (metrics, `SHOW SLUICE` output, logs).
    pub fn name(self) -> &'static str {
        match self {
            Pin::MultiplexOff => "multiplex_off",
            Pin::Transaction => "transaction",
            Pin::LockTables => "lock_tables",
            Pin::UserLock => "user_lock",
            Pin::TemporaryTable => "temporary_table",
            Pin::UserVariable => "user_variable",
            Pin::FoundRows => "found_rows",
            Pin::Cursor => "cursor",
            Pin::LongData => "long_data",
            Pin::SqlLogBin => "sql_log_bin",
            Pin::Sequence => "sequence",
            Pin::SqlPrepare => "sql_prepare",
            Pin::StoredRoutine => "stored_routine",
            Pin::ConnectionState => "connection_state",
            Pin::LastInsertId => "last_insert_id",
            Pin::Unreplayable => "unreplayable",
            Pin::Diagnostics => "diagnostics",
        }
    }
}

/// How often sessions were pinned, per user and reason (counted when a pin starts).
#[derive(Debug, Default)]
pub struct PinCounters {
    counts: Mutex<BTreeMap<(String, Pin), u64>>,
}

impl PinCounters {
    pub fn count(&self, user: &str, pin: Pin) {
        *self.counts.locked().entry((user.to_string(), pin)).or_default() += 1;
    }

    /// Every `(user, reason) → count`.
    pub fn snapshot(&self) -> BTreeMap<(String, Pin), u64> {
        self.counts.locked().clone()
    }

    pub fn get(&self, user: &str, pin: Pin) -> u64 {
        self.counts.locked().get(&(user.to_string(), pin)).copied().unwrap_or(0)
    }
}

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The session state Sluice tracks for one client session.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// Current default schema (`USE`, COM_INIT_DB, session tracking, login).
    pub schema: Option<Vec<u8>>,
    /// Session `SET` statements (COM_QUERY payloads, command byte first), in order;
    /// every node connection replays the ones it has not applied yet.
    pub replay: Vec<Vec<u8>>,
    /// Bumped whenever `replay` is rewritten other than by appending (dedup, reset):
    /// connections that applied an older generation must start over.
    pub replay_generation: u64,
    /// `replay_chain[i]`: fingerprint of `replay[..=i]` (a pooled connection that
    /// applied a prefix of this log is recognised by it).
    replay_chain: Vec<u64>,
    /// Lasting pin reasons (until COM_RESET_CONNECTION / COM_CHANGE_USER).
    pub pins: BTreeSet<Pin>,
    /// `SQL_CALC_FOUND_ROWS` ran: the next statement stays on the connection.
    pub found_rows_pending: bool,
    /// The last statement left warnings or an error on its connection.
    pub diagnostics_pending: bool,
    /// What `LAST_INSERT_ID()` returns in this session (from its OK packets).
    pub last_insert_id: u64,
    /// `ROW_COUNT()` of the last statement: affected rows, or -1 after a result set
    /// or an error.
    pub row_count: i64,
    /// `FOUND_ROWS()` after a `SELECT` without `SQL_CALC_FOUND_ROWS`: the rows it sent.
    pub found_rows: u64,
    /// COM_SET_OPTION value last set by the client (multi-statements on/off).
    pub set_option: Option<u16>,
    /// Last status flags reported by each node connection.
    pub status: BTreeMap<String, u16>,
    /// Status flags of the login OK (before any statement).
    pub login_status: u16,
    pub temp_tables: bool,
    pub tables_locked: bool,
    /// State changed by a multi-statement (or replay overflow / replay failure) that
    /// Sluice cannot reproduce on another node.
    pub unreplayable: bool,
    /// The node that ran the previous statement.
    pub previous: Option<String>,
    /// The node whose connection holds state of this session that exists nowhere else:
    /// it ran a write (its `LAST_INSERT_ID`, `ROW_COUNT`), a transaction, or a statement
    /// that set session-bound state (user variables, locks, temporary tables, …). If the
    /// primary moves away from it, the session cannot follow without losing that state.
    pub bound_to: Option<String>,
    /// `read_write_split` and `route` for this session.
    pub split: bool,
    pub mode: RouteMode,
    /// Read-after-write consistency settings of this session
    /// (`SET @@sluice_consistency…`, `[routing]`).
    pub consistency: Level,
    pub consistency_timeout_ms: u64,
    pub consistency_fallback: Fallback,
    /// Which of the settings above the client set itself (`SET @@sluice_… = value`):
    /// those keep their value across a config reload; the others follow the config.
    pub explicit: Explicit,
    /// GTIDs of this session's acknowledged writes (and the primary that reported
    /// them): what its `session`-level reads require. Lives with the client session,
    /// whichever backend connection ran the writes.
    pub written: Written,
    /// The client set `session_track_system_variables` / `session_track_gtids` itself
    /// so that it receives GTIDs: Sluice then leaves them in the OK packets.
    pub client_tracks_gtids: bool,
}

/// Routing settings a session set itself (see [`SessionState::explicit`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Explicit {
    pub split: bool,
    pub mode: bool,
    pub consistency: bool,
    pub consistency_timeout_ms: bool,
    pub consistency_fallback: bool,
}

impl SessionState {
    pub fn new(schema: Option<Vec<u8>>, login_status: u16, split: bool, mode: RouteMode) -> Self {
        SessionState {
            schema,
            replay: Vec::new(),
            replay_generation: 0,
            replay_chain: Vec::new(),
            pins: BTreeSet::new(),
            found_rows_pending: false,
            diagnostics_pending: false,
            last_insert_id: 0,
            row_count: 0,
            found_rows: 0,
            set_option: None,
            status: BTreeMap::new(),
            login_status,
            temp_tables: false,
            tables_locked: false,
            unreplayable: false,
            previous: None,
            bound_to: None,
            split,
            mode,
            consistency: Level::default(),
            consistency_timeout_ms: 2000,
            consistency_fallback: Fallback::default(),
            explicit: Explicit::default(),
            written: Written::default(),
            client_tracks_gtids: false,
        }
    }

    /// Fingerprint of the first `len` entries of the replay log (0 for none).
    pub fn replay_fingerprint(&self, len: usize) -> u64 {
        if len == 0 { 0 } else { self.replay_chain.get(len - 1).copied().unwrap_or(u64::MAX) }
    }

    fn rebuild_chain(&mut self) {
        self.replay_chain.clear();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for e in &self.replay {
            h = fnv(h, e);
            h = fnv(h, &[0xff]);
            self.replay_chain.push(h);
        }
    }

    /// Why the session must keep its backend connection(s) after the current command,
    /// if it must (the first reason that applies). Cursors and long data are the
    /// prepared statements' (the session checks those).
    pub fn pin_reason(&self) -> Option<Pin> {
        if self.txn_node().is_some() {
            return Some(Pin::Transaction);
        }
        self.pin_reason_besides_transaction()
    }

    /// [`SessionState::pin_reason`] leaving an open transaction aside.
    pub fn pin_reason_besides_transaction(&self) -> Option<Pin> {
        if self.tables_locked {
            return Some(Pin::LockTables);
        }
        if self.temp_tables {
            return Some(Pin::TemporaryTable);
        }
        if self.unreplayable {
            return Some(Pin::Unreplayable);
        }
        if let Some(p) = self.pins.iter().next() {
            return Some(*p);
        }
        if self.found_rows_pending {
            return Some(Pin::FoundRows);
        }
        if self.diagnostics_pending {
            return Some(Pin::Diagnostics);
        }
        None
    }

    /// The node holding an open transaction, if any.
    pub fn txn_node(&self) -> Option<&str> {
        self.status.iter().find(|(_, s)| **s & status::IN_TRANS != 0).map(|(n, _)| n.as_str())
    }

    /// Autocommit as the primary-bound connection last reported it (or the login's).
    pub fn autocommit(&self, primary: Option<&str>) -> bool {
        let s = primary.and_then(|p| self.status.get(p)).copied().unwrap_or(self.login_status);
        s & status::AUTOCOMMIT != 0
    }

    /// Status flags for an answer Sluice gives itself (an OK to `SET @@sluice_…`).
    pub fn status_for_local_answer(&self, primary: Option<&str>) -> u16 {
        let s = primary.and_then(|p| self.status.get(p)).copied().unwrap_or(self.login_status);
        s & (status::IN_TRANS | status::AUTOCOMMIT | status::IN_TRANS_READONLY | status::NO_BACKSLASH_ESCAPES)
    }

    /// A node's connection went away: forget its status.
    /// Takes `status` as `node`'s latest status flags (a transaction replayed there).
    pub fn set_status(&mut self, node: &str, status: u16) {
        self.status.insert(node.to_string(), status);
    }

    pub fn forget_node(&mut self, node: &str) {
        self.status.remove(node);
    }

    /// Records the outcome of one statement that ran on `node`.
    ///
    /// `payload` is the COM_QUERY packet (for replay), `effects` the classifier's,
    /// `ok` whether the response ended without error, `status` the final status flags
    /// and `session_state` the raw session-tracking data of its OK packets.
    #[allow(clippy::too_many_arguments)]
    pub fn after_statement(&mut self, node: &str, payload: Option<&[u8]>, effects: &[Effect], statements: u32, ok: bool, status: Option<u16>, session_state: &[u8]) {
        self.after_statement_of(node, None, payload, effects, statements, ok, status, session_state)
    }

    /// [`Self::after_statement`], knowing the statement's kind: anything but a read, a
    /// session `SET`, `USE` or a diagnostics read that succeeds leaves state on `node`'s
    /// connection (a failed one changes nothing there: a write refused by a read-only
    /// old primary must not tie the session to it).
    #[allow(clippy::too_many_arguments)]
    pub fn after_statement_of(&mut self, node: &str, kind: Option<Kind>, payload: Option<&[u8]>, effects: &[Effect], statements: u32, ok: bool, status: Option<u16>, session_state: &[u8]) {
        if let (Some(k), true) = (kind, ok || statements > 1) {
            if !matches!(k, Kind::Read | Kind::SessionSet | Kind::Use | Kind::Diagnostics | Kind::SluiceSet | Kind::SluiceShow) && self.bound_to.as_deref() != Some(node) {
                self.bound_to = Some(node.to_string());
            }
        }
        if let Some(s) = status {
            // Updated in place: no key allocated per statement.
            match self.status.get_mut(node) {
                Some(v) => *v = s,
                None => {
                    self.status.insert(node.to_string(), s);
                }
            }
        }
        if self.previous.as_deref() != Some(node) {
            self.previous = Some(node.to_string());
        }
        self.track(session_state);
        if let (Some(k), true) = (kind, ok) {
            self.found_rows_pending = false;
            let lasting = match k {
                Kind::SessionBound(b) => match b {
                    Bound::UserLock => Some(Pin::UserLock),
                    Bound::UserVariable | Bound::SelectInto => Some(Pin::UserVariable),
                    Bound::FoundRows => {
                        self.found_rows_pending = true;
                        None
                    }
                    Bound::SqlLogBin => Some(Pin::SqlLogBin),
                    Bound::Sequence => Some(Pin::Sequence),
                    Bound::StoredRoutine => Some(Pin::StoredRoutine),
                    Bound::SqlPrepare => Some(Pin::SqlPrepare),
                    Bound::Other => Some(Pin::ConnectionState),
                    Bound::LastInsertId | Bound::Connection | Bound::TemporaryTable | Bound::LockTables => None,
                },
                Kind::Unknown => Some(Pin::Unreplayable),
                _ => None,
            };
            if let Some(p) = lasting {
                self.pins.insert(p);
            }
        }
        if !ok && statements > 1 && !effects.is_empty() {
            // Some statements of a multi-statement may have run before the error.
            self.unreplayable = true;
        }
        if !ok && statements == 1 {
            return;
        }
        for e in effects {
            match e {
                Effect::ReplaySet => match payload {
                    Some(p) => self.push_replay(p),
                    // A prepared `SET`: there is no text to replay.
                    None => self.unreplayable = true,
                },
                Effect::Use(db) => self.schema = Some(db.clone()),
                Effect::CreatesTemporaryTable => self.temp_tables = true,
                Effect::LocksTables => self.tables_locked = true,
                Effect::UnlocksTables => self.tables_locked = false,
                Effect::Unreplayable => self.unreplayable = true,
            }
        }
    }

    /// Applies session-tracking data (`SESSION_TRACK_SCHEMA`).
    fn track(&mut self, session_state: &[u8]) {
        // Several OK packets' blocks may be concatenated; each is a sequence of
        // (type, lenenc data) entries, so they can be read as one.
        let changes = StateChanges::new(session_state);
        for (t, data) in changes {
            if t == track::SCHEMA {
                if let Some(name) = Reader::new(data).lenenc_bytes() {
                    self.schema = (!name.is_empty()).then(|| name.to_vec());
                }
            }
        }
    }

    /// Appends a `SET` to the replay log. An identical earlier `SET` whose text reads
    /// no variable and calls no function is dropped first (re-applying it later gives
    /// the same state), so repeated `SET NAMES …` keep the log short.
    fn push_replay(&mut self, payload: &[u8]) {
        let plain = !payload.iter().any(|&b| b == b'(' || b == b'@');
        if plain {
            if let Some(i) = self.replay.iter().position(|p| p == payload) {
                if i + 1 == self.replay.len() {
                    return;
                }
                self.replay.remove(i);
                self.replay_generation += 1;
                self.rebuild_chain();
            }
        }
        if self.replay.len() >= MAX_REPLAY {
            self.unreplayable = true;
            return;
        }
        let prev = self.replay_chain.last().copied().unwrap_or(0xcbf2_9ce4_8422_2325);
        self.replay_chain.push(fnv(fnv(prev, payload), &[0xff]));
        self.replay.push(payload.to_vec());
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: the server reset the session.
    pub fn reset(&mut self, schema: Option<Vec<u8>>) {
        self.schema = schema;
        self.replay.clear();
        self.replay_chain.clear();
        self.replay_generation += 1;
        self.pins.clear();
        self.found_rows_pending = false;
        self.diagnostics_pending = false;
        self.last_insert_id = 0;
        self.row_count = 0;
        self.found_rows = 0;
        self.set_option = None;
        self.temp_tables = false;
        self.tables_locked = false;
        self.unreplayable = false;
        self.bound_to = None;
        // The server's tracking settings are back to their defaults; what the session
        // wrote stays required (it is still this client's session).
        self.client_tracks_gtids = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_setting_its_own_gtid_tracking_is_recognised() {
        assert_eq!(client_gtid_tracking(b"SET autocommit=1"), None);
        assert_eq!(client_gtid_tracking(b"SET session_track_system_variables='autocommit'"), Some(false));
        assert_eq!(client_gtid_tracking(b"SET @@session.SESSION_TRACK_SYSTEM_VARIABLES = 'last_gtid,autocommit'"), Some(true));
        assert_eq!(client_gtid_tracking(b"SET session_track_system_variables='*'"), Some(true));
        assert_eq!(client_gtid_tracking(b"SET session_track_gtids = OWN_GTID"), Some(true));
        assert_eq!(client_gtid_tracking(b"SET session_track_gtids = OFF"), Some(false));
    }

    #[test]
    fn the_wait_timeout_a_client_sets_for_its_session_is_found_in_its_set_log() {
        let q = |s: &str| [&[3u8][..], s.as_bytes()].concat();
        assert_eq!(client_wait_timeout(&[q("SET autocommit=1")]), None);
        assert_eq!(client_wait_timeout(&[q("SET wait_timeout=1")]), Some(std::time::Duration::from_secs(1)));
        assert_eq!(client_wait_timeout(&[q("SET @@session.wait_timeout = 30, sql_mode=''"), q("SET @@wait_timeout=5")]), Some(std::time::Duration::from_secs(5)));
        assert_eq!(client_wait_timeout(&[q("SET SESSION WAIT_TIMEOUT = 7")]), Some(std::time::Duration::from_secs(7)));
        assert_eq!(client_wait_timeout(&[q("SET GLOBAL wait_timeout = 7"), q("SET @@global.wait_timeout=9")]), None);
        assert_eq!(client_wait_timeout(&[q("SET innodb_lock_wait_timeout = 3, lock_wait_timeout=4")]), None);
    }

    fn st() -> SessionState {
        SessionState::new(Some(b"app".to_vec()), status::AUTOCOMMIT, true, RouteMode::Auto)
    }

    #[test]
    fn transaction_node_follows_the_in_trans_flag() {
        let mut s = st();
        assert_eq!(s.txn_node(), None);
        s.after_statement("p", None, &[], 1, true, Some(status::IN_TRANS | status::AUTOCOMMIT), &[]);
        assert_eq!(s.txn_node(), Some("p"));
        s.after_statement("p", None, &[], 1, true, Some(status::AUTOCOMMIT), &[]);
        assert_eq!(s.txn_node(), None);
    }

    #[test]
    fn autocommit_comes_from_the_primary_connection() {
        let mut s = st();
        assert!(s.autocommit(Some("p")));
        s.after_statement("p", None, &[], 1, true, Some(0), &[]);
        assert!(!s.autocommit(Some("p")));
        assert!(s.autocommit(Some("other")), "an unknown node falls back to the login status");
    }

    #[test]
    fn successful_set_is_logged_for_replay_and_a_failed_one_is_not() {
        let mut s = st();
        s.after_statement("p", Some(b"\x03SET NAMES utf8mb4"), &[Effect::ReplaySet], 1, true, Some(2), &[]);
        s.after_statement("p", Some(b"\x03SET bogus = 1"), &[Effect::ReplaySet], 1, false, None, &[]);
        assert_eq!(s.replay, vec![b"\x03SET NAMES utf8mb4".to_vec()]);
    }

    #[test]
    fn repeated_plain_set_does_not_grow_the_replay_log() {
        let mut s = st();
        for _ in 0..1000 {
            s.after_statement("p", Some(b"\x03SET NAMES utf8mb4"), &[Effect::ReplaySet], 1, true, Some(2), &[]);
            s.after_statement("p", Some(b"\x03SET time_zone = '+00:00'"), &[Effect::ReplaySet], 1, true, Some(2), &[]);
        }
        assert_eq!(s.replay.len(), 2);
        assert!(!s.unreplayable);
    }

    #[test]
    fn replay_log_overflow_makes_the_session_unreplayable() {
        let mut s = st();
        for i in 0..=MAX_REPLAY {
            s.after_statement("p", Some(format!("\x03SET @@x = @@x + {i}").as_bytes()), &[Effect::ReplaySet], 1, true, Some(2), &[]);
        }
        assert!(s.unreplayable);
        assert_eq!(s.replay.len(), MAX_REPLAY);
    }

    #[test]
    fn use_and_schema_tracking_update_the_schema() {
        let mut s = st();
        s.after_statement("p", None, &[Effect::Use(b"other".to_vec())], 1, true, Some(2), &[]);
        assert_eq!(s.schema.as_deref(), Some(&b"other"[..]));
        // SESSION_TRACK_SCHEMA entry: type 1, lenenc data = lenenc name.
        let block = [track::SCHEMA, 5, 4, b't', b'e', b's', b't'];
        s.after_statement("p", None, &[], 1, true, Some(2), &block);
        assert_eq!(s.schema.as_deref(), Some(&b"test"[..]));
    }

    #[test]
    fn temp_tables_and_table_locks_are_remembered() {
        let mut s = st();
        s.after_statement("p", None, &[Effect::CreatesTemporaryTable], 1, true, Some(2), &[]);
        s.after_statement("p", None, &[Effect::LocksTables], 1, true, Some(2), &[]);
        assert!(s.temp_tables && s.tables_locked);
        s.after_statement("p", None, &[Effect::UnlocksTables], 1, true, Some(2), &[]);
        assert!(!s.tables_locked);
    }

    #[test]
    fn writes_and_session_bound_statements_bind_the_session_to_their_node_and_reads_do_not() {
        let mut s = st();
        s.after_statement_of("r", Some(Kind::Read), None, &[], 1, true, Some(2), &[]);
        s.after_statement_of("p", Some(Kind::SessionSet), None, &[Effect::ReplaySet], 1, true, Some(2), &[]);
        assert_eq!(s.bound_to, None);
        s.after_statement_of("p", Some(Kind::SessionBound(crate::route::class::Bound::UserVariable)), None, &[], 1, true, Some(2), &[]);
        assert_eq!(s.bound_to.as_deref(), Some("p"));
        s.reset(None);
        assert_eq!(s.bound_to, None);
        s.after_statement_of("p", Some(Kind::Write), None, &[], 1, true, Some(2), &[]);
        assert_eq!(s.bound_to.as_deref(), Some("p"));
    }

    #[test]
    fn a_prepared_session_set_makes_the_session_unreplayable() {
        let mut s = st();
        s.after_statement("p", None, &[Effect::ReplaySet], 1, true, Some(2), &[]);
        assert!(s.unreplayable);
    }

    #[test]
    fn failed_multi_statement_with_effects_is_unreplayable() {
        let mut s = st();
        s.after_statement("p", None, &[Effect::Unreplayable], 2, false, None, &[]);
        assert!(s.unreplayable);
    }
}
