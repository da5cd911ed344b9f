//! Transaction replay (`[failover] transaction_replay`): what a session keeps of its open
//! transaction on the primary so that, when the primary is lost before the transaction's
//! COMMIT was sent, the transaction can be run again on the new primary — and what
//! "ran the same" means.
//!
//! Plain synchronous code. [`TxnLog`] is fed after every statement the session runs on
//! the primary (was a transaction open before it, is one open after it — the server's
//! `SERVER_STATUS_IN_TRANS` flag —, the COM_QUERY it sent, the [`ResultDigest`] of the
//! answer the client got). The session replays the log with
//! `session::Session::replay_transaction`: each statement again, its answer read (not
//! forwarded) and digested; the replay stands only if every digest is equal, else the
//! client gets the error it would have got without replay (1927).
//!
//! The digest covers what the client saw of the answer: every byte of the response but
//! the OK packets (which carry GTIDs and server-specific session-tracking data), plus
//! the OK packets' meaning — error code, affected rows, last insert id, rows returned.
//! An `AUTO_INCREMENT` value the new primary hands out differently, a row another
//! transaction changed in between, a different error: the digest differs and the
//! replay is refused, never guessed at (as MaxScale's `transaction_replay` checksums).
//!
//! Only text statements (COM_QUERY) are kept; a transaction that runs anything else
//! (prepared statements, `LOAD DATA LOCAL`, …) or grows past the configured bounds is
//! marked unreplayable until it ends.

use sha2::{Digest, Sha256};

/// Bounds of what one session keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    pub max_statements: usize,
    pub max_bytes: usize,
}

/// The digest of one answer, as the client saw it.
pub type ResultDigest = [u8; 32];

/// Accumulates a [`ResultDigest`] while an answer is relayed.
#[derive(Clone, Default)]
pub struct Digester(Sha256);

impl Digester {
    /// Bytes of the answer outside OK packets.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
    }

    /// Ends the digest with the answer's meaning: error code, affected rows of the last
    /// OK, last insert id, result sets and rows of the last one.
    pub fn finish(mut self, error: Option<u16>, affected_rows: Option<u64>, insert_id: u64, result_sets: u32, rows: u64) -> ResultDigest {
        self.0.update([0xff]);
        self.0.update(error.map_or(0u32, |e| 0x1_0000 | u32::from(e)).to_le_bytes());
        self.0.update(affected_rows.map_or(u64::MAX, |a| a).to_le_bytes());
        self.0.update(insert_id.to_le_bytes());
        self.0.update(result_sets.to_le_bytes());
        self.0.update(rows.to_le_bytes());
        self.0.finalize().into()
    }
}

/// One statement of the open transaction and the digest of its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The COM_QUERY packet payload (command byte included).
    pub payload: Vec<u8>,
    pub digest: ResultDigest,
}

/// Whether the open transaction can be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// No transaction open.
    Idle,
    /// Every statement of the open transaction is kept.
    Recording,
    /// Not replayable until the transaction ends, and why.
    Unreplayable(&'static str),
}

/// What a session keeps of its open transaction on the primary.
#[derive(Debug, Clone)]
pub struct TxnLog {
    limits: ReplayLimits,
    entries: Vec<Entry>,
    bytes: usize,
    state: LogState,
}

impl TxnLog {
    pub fn new(limits: ReplayLimits) -> Self {
        TxnLog { limits, entries: Vec::new(), bytes: 0, state: LogState::Idle }
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// The statements to replay, in order, if the open transaction can be replayed.
    pub fn replayable(&self) -> Option<&[Entry]> {
        (self.state == LogState::Recording && !self.entries.is_empty()).then_some(self.entries.as_slice())
    }

    /// After a statement ran: `open_after` says whether a transaction is open after it
    /// (the server's `SERVER_STATUS_IN_TRANS`; `None` when the answer carried no status —
    /// a COM_STMT_PREPARE answer, an ERR —, which changes nothing); `query` is its
    /// COM_QUERY payload (None for any other command) and `digest` its answer's. Whether
    /// a transaction was open before is the log's own state, so the log can never start
    /// in the middle of a transaction it missed the beginning of.
    pub fn observe(&mut self, open_after: Option<bool>, query: Option<&[u8]>, digest: Option<ResultDigest>) {
        let open_before = self.state != LogState::Idle;
        if !open_after.unwrap_or(open_before) {
            self.clear();
            return;
        }
        if !open_before {
            // This statement opened the transaction (BEGIN, or the first statement
            // under autocommit = 0): it is the first to replay.
            self.clear();
            self.state = LogState::Recording;
        }
        if self.state != LogState::Recording {
            return;
        }
        let (Some(q), Some(d)) = (query, digest) else {
            self.unreplayable("a command other than a text statement ran in the transaction");
            return;
        };
        if self.entries.len() >= self.limits.max_statements {
            self.unreplayable("more statements than [failover] transaction_replay_max_statements");
            return;
        }
        if self.bytes + q.len() > self.limits.max_bytes {
            self.unreplayable("more bytes than [failover] transaction_replay_max_bytes");
            return;
        }
        self.bytes += q.len();
        self.entries.push(Entry { payload: q.to_vec(), digest: d });
    }

    /// Marks the open transaction unreplayable (e.g. its connection held state Sluice
    /// cannot recreate).
    pub fn unreplayable(&mut self, why: &'static str) {
        self.entries = Vec::new();
        self.bytes = 0;
        self.state = LogState::Unreplayable(why);
    }

    /// The transaction ended (or the session was reset).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.bytes = 0;
        self.state = LogState::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> TxnLog {
        TxnLog::new(ReplayLimits { max_statements: 3, max_bytes: 100 })
    }

    fn d(x: u8) -> Option<ResultDigest> {
        Some([x; 32])
    }

    #[test]
    fn a_transaction_is_kept_from_the_statement_that_opened_it_until_it_ends() {
        let mut l = log();
        l.observe(Some(false), Some(b"\x03SELECT 1"), d(0));
        assert_eq!(l.state(), &LogState::Idle);
        l.observe(Some(true), Some(b"\x03BEGIN"), d(1));
        l.observe(Some(true), Some(b"\x03UPDATE t SET a = 1"), d(2));
        let e = l.replayable().expect("replayable");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].payload, b"\x03BEGIN");
        l.observe(Some(false), Some(b"\x03COMMIT"), d(3));
        assert!(l.replayable().is_none());
        assert_eq!(l.state(), &LogState::Idle);
    }

    #[test]
    fn a_transaction_with_a_command_other_than_a_text_statement_is_not_replayable_until_it_ends() {
        let mut l = log();
        l.observe(Some(true), Some(b"\x03BEGIN"), d(1));
        // A COM_STMT_PREPARE answer has no status: it neither ends nor restarts the log.
        l.observe(None, None, None);
        assert!(l.replayable().is_none());
        l.observe(Some(true), Some(b"\x03SELECT 1"), d(2));
        assert!(l.replayable().is_none(), "stays unreplayable while the transaction lasts");
        l.observe(Some(false), Some(b"\x03ROLLBACK"), d(3));
        l.observe(Some(true), Some(b"\x03BEGIN"), d(4));
        assert!(l.replayable().is_some(), "the next transaction is kept again");
    }

    #[test]
    fn a_statement_answered_without_status_never_starts_the_log_mid_transaction() {
        let mut l = log();
        // Idle: an answer without status (ERR, prepare) starts nothing.
        l.observe(None, Some(b"\x03UPDATE t SET a = 1"), d(1));
        assert_eq!(l.state(), &LogState::Idle);
        l.observe(Some(true), Some(b"\x03BEGIN"), d(1));
        l.observe(None, Some(b"\x03INSERT INTO t VALUES (1)"), d(2));
        assert_eq!(l.replayable().map(<[Entry]>::len), Some(2), "an ERR inside the transaction is kept: the replay must meet it again");
    }

    #[test]
    fn a_transaction_past_the_bounds_is_not_replayable() {
        let mut l = log();
        l.observe(Some(true), Some(b"\x03BEGIN"), d(1));
        l.observe(Some(true), Some(b"\x03SELECT 1"), d(1));
        l.observe(Some(true), Some(b"\x03SELECT 2"), d(1));
        l.observe(Some(true), Some(b"\x03SELECT 3"), d(1));
        assert!(matches!(l.state(), LogState::Unreplayable(w) if w.contains("statements")));
        let mut l = log();
        l.observe(Some(true), Some(&[b'x'; 101]), d(1));
        assert!(matches!(l.state(), LogState::Unreplayable(w) if w.contains("bytes")));
    }

    #[test]
    fn digests_differ_when_the_meaning_of_an_ok_differs() {
        let a = Digester::default().finish(None, Some(1), 7, 0, 0);
        let b = Digester::default().finish(None, Some(1), 8, 0, 0);
        let c = Digester::default().finish(Some(1062), None, 0, 0, 0);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, Digester::default().finish(None, Some(1), 7, 0, 0));
        let mut x = Digester::default();
        x.bytes(b"row 1");
        let mut y = Digester::default();
        y.bytes(b"row 2");
        assert_ne!(x.finish(None, None, 0, 1, 1), y.finish(None, None, 0, 1, 1));
    }
}
