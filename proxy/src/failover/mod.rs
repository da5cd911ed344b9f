//! Failover, as a session sees it: what happens to a statement when the primary's
//! connection is lost or the primary cannot be reached.
//!
//! Owns two synchronous pieces the session's async layer carries out:
//!
//! * [`Buffer`]: primary-bound statements that found no usable primary wait for the
//!   monitor to publish one (an external tool or a restart brings it back), bounded by a
//!   per-statement window, a total count and total bytes; past a bound the newest
//!   request gets a clear error at once (never unbounded growth).
//! * [`after_lost_connection`]: the rule for a statement whose backend connection went
//!   away. It is re-sent only if it provably never reached the server (the connection
//!   could not be opened, or was seen closed before anything was written) or it is a
//!   read outside a transaction. A write or COMMIT that was sent and got no reply is
//!   never re-sent: the client gets [`OUTCOME_UNKNOWN`]. A transaction whose connection
//!   died was rolled back by the server: the client gets [`ER_CONNECTION_KILLED`] and its
//!   session ends, as it would directly (a client that went on would run its next
//!   statements outside the transaction it believes open).
//!
//! Errors are ERR packets (<https://mariadb.com/kb/en/err_packet/>). Detection (when a
//! node is down) is the monitor's (`crate::health`); which node is primary is the
//! topology's.

pub mod actor;
pub mod manager;
pub mod replay;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Error code of "the statement was sent, the connection was lost, whether it was
/// applied is unknown": the server's ER_QUERY_INTERRUPTED (SQLSTATE 70100), which
/// client libraries already treat as "the statement may or may not have taken effect".
/// (Not CR_SERVER_LOST, 2013: a client-side code in an ERR packet is refused by MariaDB
/// Connector/C as malformed.) Sluice keeps the client connection open.
pub const OUTCOME_UNKNOWN: u16 = 1317;
/// The server's code for a connection it killed (its transaction rolled back).
pub const ER_CONNECTION_KILLED: u16 = 1927;

/// Bounds of the failover buffer (`[failover]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Longest a statement waits for a primary.
    pub window: Duration,
    /// Most statements waiting at once (over every session); `0` disables buffering.
    pub max_statements: usize,
    /// Most bytes of statements waiting at once.
    pub max_bytes: usize,
}

/// Why a statement could not be buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("failover buffering is off ([failover] buffer_max_statements = 0)")]
    Off,
    #[error("the failover buffer is full ({0} statements waiting, buffer_max_statements)")]
    Statements(usize),
    #[error("the failover buffer is full ({0} bytes waiting, buffer_max_bytes)")]
    Bytes(usize),
}

/// Counters of the buffer (for `SHOW SLUICE` and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub waiting: usize,
    pub waiting_bytes: usize,
    /// Statements that waited (admitted).
    pub buffered: u64,
    /// Of those, how many found a primary and were sent.
    pub resumed: u64,
    /// Of those, how many waited out the window.
    pub timed_out: u64,
    /// Statements refused because a bound was reached.
    pub refused: u64,
    /// Transactions cut by the loss of the primary and replayed on the new one
    /// (`transaction_replay`).
    pub transactions_replayed: u64,
    /// Cut transactions whose replay was attempted and refused (not replayable, an
    /// answer differed, no primary in time).
    pub replays_refused: u64,
}

/// Primary-bound statements waiting for a primary, over every session.
#[derive(Debug)]
pub struct Buffer {
    limits: BufferLimits,
    waiting: AtomicUsize,
    waiting_bytes: AtomicUsize,
    buffered: AtomicU64,
    resumed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    replayed: AtomicU64,
    replay_refused: AtomicU64,
}

impl Buffer {
    pub fn new(limits: BufferLimits) -> Arc<Self> {
        Arc::new(Buffer {
            limits,
            waiting: AtomicUsize::new(0),
            waiting_bytes: AtomicUsize::new(0),
            buffered: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            replay_refused: AtomicU64::new(0),
        })
    }

    /// Counts a transaction replay's outcome.
    pub fn note_replay(&self, replayed: bool) {
        if replayed { &self.replayed } else { &self.replay_refused }.fetch_add(1, Ordering::Relaxed);
    }

    pub fn limits(&self) -> BufferLimits {
        self.limits
    }

    /// A statement of `bytes` asks to wait: a ticket (its place, given back when
    /// dropped) or why not. Both bounds are checked and taken atomically.
    pub fn admit(self: &Arc<Self>, bytes: usize) -> Result<Ticket, Refused> {
        let refuse = |r| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(r)
        };
        if self.limits.max_statements == 0 {
            return refuse(Refused::Off);
        }
        let n = self.waiting.fetch_add(1, Ordering::AcqRel);
        if n >= self.limits.max_statements {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return refuse(Refused::Statements(n));
        }
        let b = self.waiting_bytes.fetch_add(bytes, Ordering::AcqRel);
        if b + bytes > self.limits.max_bytes {
            self.waiting_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return refuse(Refused::Bytes(b));
        }
        self.buffered.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket { buffer: self.clone(), bytes })
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            waiting: self.waiting.load(Ordering::Relaxed),
            waiting_bytes: self.waiting_bytes.load(Ordering::Relaxed),
            buffered: self.buffered.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            transactions_replayed: self.replayed.load(Ordering::Relaxed),
            replays_refused: self.replay_refused.load(Ordering::Relaxed),
        }
    }
}

/// One waiting statement's place in the [`Buffer`].
#[derive(Debug)]
pub struct Ticket {
    buffer: Arc<Buffer>,
    bytes: usize,
}

impl Ticket {
    /// The statement found a primary and is being sent.
    pub fn resumed(self) {
        self.buffer.resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// The statement waited out the window.
    pub fn timed_out(self) {
        self.buffer.timed_out.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.buffer.waiting_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.buffer.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What reached the backend before its connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing: the connection could not be opened (or lent), or was seen closed before
    /// the statement was written.
    Nothing,
    /// The statement was written (it may or may not have run).
    Statement,
}

/// The session around a lost statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostContext {
    pub sent: Sent,
    /// The statement reads only (no side effect if run twice).
    pub read: bool,
    /// The connection held an open transaction (before this statement), or the session
    /// runs with `autocommit = 0` (a statement starts one).
    pub in_transaction: bool,
    /// The statement may commit (COMMIT, or one with an implicit commit: DDL, BEGIN, …).
    pub may_commit: bool,
    /// The connection held session state that exists nowhere else (temporary tables,
    /// locks, server-set user variables, an open cursor, …): it is gone with it.
    pub state_lost: bool,
}

/// What the session does with a statement whose connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Send it again, on the primary the topology names (after waiting for one).
    Resend,
    /// Answer [`OUTCOME_UNKNOWN`]; the session goes on (its state is Sluice's and is
    /// re-established on the next connection).
    OutcomeUnknown,
    /// Answer [`OUTCOME_UNKNOWN`] and end the session: it may have committed, and the
    /// session's state on the connection is gone.
    OutcomeUnknownEnd,
    /// Answer [`ER_CONNECTION_KILLED`] ("the transaction was rolled back") and end the
    /// session.
    TransactionLost,
    /// Answer [`ER_CONNECTION_KILLED`] ("the session's state was lost") and end the
    /// session.
    StateLost,
}

/// The rule. Re-sending is decided by what was sent, never guessed.
pub fn after_lost_connection(c: LostContext) -> Lost {
    if c.in_transaction {
        // The server rolls back a transaction whose connection dies, unless this very
        // statement committed it (and the reply was lost).
        return if c.sent == Sent::Statement && c.may_commit { Lost::OutcomeUnknownEnd } else { Lost::TransactionLost };
    }
    if c.state_lost {
        return if c.sent == Sent::Statement && !c.read { Lost::OutcomeUnknownEnd } else { Lost::StateLost };
    }
    match c.sent {
        Sent::Nothing => Lost::Resend,
        Sent::Statement if c.read => Lost::Resend,
        Sent::Statement => Lost::OutcomeUnknown,
    }
}

/// Whether a statement (its text) may commit an open transaction: anything but plain
/// DML, reads and `ROLLBACK`/`SAVEPOINT` (DDL and `BEGIN` commit implicitly; `COMMIT`
/// explicitly). A cheap scan of the first keyword, after comments.
pub fn may_commit(sql: &[u8]) -> bool {
    let word = first_keyword(sql);
    !matches!(
        word.as_slice(),
        b"select" | b"insert" | b"update" | b"delete" | b"replace" | b"with" | b"values" | b"table" | b"show" | b"describe" | b"desc" | b"explain" | b"do" | b"set" | b"rollback" | b"savepoint" | b"release" | b"call" | b"handler" | b"load"
    ) || contains_word_commit(sql, &word)
}

/// `ROLLBACK ... RELEASE`/`AND CHAIN` never commit; `RELEASE SAVEPOINT` neither. A
/// `SET autocommit = 1` inside a transaction commits it.
fn contains_word_commit(sql: &[u8], first: &[u8]) -> bool {
    first == b"set" && {
        let lower: Vec<u8> = sql.iter().map(u8::to_ascii_lowercase).collect();
        lower.windows(10).any(|w| w == b"autocommit")
    }
}

fn first_keyword(sql: &[u8]) -> Vec<u8> {
    let mut i = 0;
    loop {
        while i < sql.len() && (sql[i].is_ascii_whitespace() || sql[i] == b'(') {
            i += 1;
        }
        if sql[i..].starts_with(b"/*") && !sql[i..].starts_with(b"/*!") && !sql[i..].starts_with(b"/*M!") {
            match sql[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                None => return Vec::new(),
            }
        } else if sql[i..].starts_with(b"/*!") || sql[i..].starts_with(b"/*M!") {
            // A version comment's content runs: skip its marker and version digits.
            i += if sql[i..].starts_with(b"/*M!") { 4 } else { 3 };
            while i < sql.len() && sql[i].is_ascii_digit() {
                i += 1;
            }
        } else if sql[i..].starts_with(b"-- ") || sql[i..].starts_with(b"#") {
            match sql[i..].iter().position(|&b| b == b'\n') {
                Some(p) => i += p + 1,
                None => return Vec::new(),
            }
        } else {
            break;
        }
    }
    sql[i..].iter().take_while(|b| b.is_ascii_alphabetic() || **b == b'_').map(u8::to_ascii_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(sent: Sent, read: bool) -> LostContext {
        LostContext { sent, read, in_transaction: false, may_commit: false, state_lost: false }
    }

    #[test]
    fn a_statement_that_was_never_sent_is_resent() {
        assert_eq!(after_lost_connection(ctx(Sent::Nothing, false)), Lost::Resend);
        assert_eq!(after_lost_connection(ctx(Sent::Nothing, true)), Lost::Resend);
    }

    #[test]
    fn a_sent_write_without_reply_is_never_resent() {
        assert_eq!(after_lost_connection(ctx(Sent::Statement, false)), Lost::OutcomeUnknown);
    }

    #[test]
    fn a_sent_read_outside_a_transaction_is_resent() {
        assert_eq!(after_lost_connection(ctx(Sent::Statement, true)), Lost::Resend);
    }

    #[test]
    fn a_lost_transaction_is_an_error_that_ends_the_session_whatever_was_sent() {
        for sent in [Sent::Nothing, Sent::Statement] {
            for read in [false, true] {
                let c = LostContext { in_transaction: true, ..ctx(sent, read) };
                assert_eq!(after_lost_connection(c), Lost::TransactionLost, "{sent:?} read={read}");
            }
        }
    }

    #[test]
    fn a_commit_sent_without_reply_has_an_unknown_outcome() {
        let c = LostContext { in_transaction: true, may_commit: true, ..ctx(Sent::Statement, false) };
        assert_eq!(after_lost_connection(c), Lost::OutcomeUnknownEnd);
        // Not sent: the server rolled the transaction back.
        let c = LostContext { in_transaction: true, may_commit: true, ..ctx(Sent::Nothing, false) };
        assert_eq!(after_lost_connection(c), Lost::TransactionLost);
    }

    #[test]
    fn session_state_on_the_lost_connection_ends_the_session() {
        let c = LostContext { state_lost: true, ..ctx(Sent::Nothing, false) };
        assert_eq!(after_lost_connection(c), Lost::StateLost);
        let c = LostContext { state_lost: true, ..ctx(Sent::Statement, true) };
        assert_eq!(after_lost_connection(c), Lost::StateLost);
        let c = LostContext { state_lost: true, ..ctx(Sent::Statement, false) };
        assert_eq!(after_lost_connection(c), Lost::OutcomeUnknownEnd);
    }

    #[test]
    fn commits_implicit_and_explicit_are_recognised() {
        for sql in ["COMMIT", "commit work", "  /* x */ CREATE TABLE t (a INT)", "BEGIN", "START TRANSACTION", "DROP TABLE t", "ALTER TABLE t ADD b INT", "LOCK TABLES t WRITE", "SET autocommit = 1", "/*!40101 COMMIT */", "XA COMMIT 'x'", ""] {
            assert!(may_commit(sql.as_bytes()), "{sql}");
        }
        for sql in ["INSERT INTO t VALUES (1)", "update t set a = 1", "-- c\nDELETE FROM t", "# c\nSELECT 1", "(SELECT 1)", "ROLLBACK", "SAVEPOINT a", "RELEASE SAVEPOINT a", "SET @a = 1", "REPLACE INTO t VALUES (1)", "WITH x AS (SELECT 1) SELECT * FROM x"] {
            assert!(!may_commit(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn the_buffer_refuses_the_newest_statement_past_either_bound_and_frees_places() {
        let b = Buffer::new(BufferLimits { window: Duration::from_secs(1), max_statements: 2, max_bytes: 100 });
        let t1 = b.admit(40).expect("first");
        let t2 = b.admit(40).expect("second");
        assert_eq!(b.admit(1).unwrap_err(), Refused::Statements(2));
        drop(t2);
        assert_eq!(b.admit(61).unwrap_err(), Refused::Bytes(40));
        let t3 = b.admit(60).expect("fits");
        assert_eq!(b.stats().waiting, 2);
        assert_eq!(b.stats().waiting_bytes, 100);
        t1.resumed();
        t3.timed_out();
        let s = b.stats();
        assert_eq!((s.waiting, s.waiting_bytes, s.buffered, s.resumed, s.timed_out, s.refused), (0, 0, 3, 1, 1, 2));
    }

    #[test]
    fn a_buffer_without_places_refuses_everything() {
        let b = Buffer::new(BufferLimits { window: Duration::from_secs(1), max_statements: 0, max_bytes: 100 });
        assert_eq!(b.admit(1).unwrap_err(), Refused::Off);
    }
}
