//! The routing decision: statement + session state → where it runs and why.
//!
//! [`decide`] is plain synchronous code. It sees the classifier's verdict on the
//! statement ([`Classified`]), a view of the session ([`SessionView`]: its route
//! settings, which node holds an open transaction, session-bound state it created) and
//! says which [`Target`] runs the statement and the [`Reason`]. The session resolves a
//! target to a node address with the topology and the load balancer
//! ([`super::balance`]); nothing here does I/O.

use super::class::{Bound, Classified, Hint, Kind};
use crate::config::RouteMode;

/// What the decision needs to know about the session.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    /// `read_write_split` for this session (config, per user, `SET @@sluice_read_write_split`).
    pub split: bool,
    /// `route` for this session (config, per user, `SET @@sluice_route`).
    pub mode: RouteMode,
    /// The node whose connection has a transaction open (server status IN_TRANS).
    pub txn_node: Option<&'a str>,
    /// The current primary, as the session will resolve [`Target::Primary`].
    pub primary: Option<&'a str>,
    /// `autocommit` is on (server status AUTOCOMMIT of the primary connection).
    pub autocommit: bool,
    /// The session created a temporary table.
    pub temp_tables: bool,
    /// The session holds `LOCK TABLES`.
    pub tables_locked: bool,
    /// The session changed its state in a way Sluice cannot replay on another node.
    pub unreplayable: bool,
    /// The node that ran the previous statement.
    pub previous: Option<&'a str>,
}

/// Where a statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The current primary.
    Primary,
    /// One of the nodes eligible for reads, chosen by the load balancer (the primary if
    /// none is eligible).
    Readers,
    /// This node (an open read-only transaction, or the previous statement's node).
    Node(String),
}

/// Why a statement goes where it goes. [`Reason::name`] is the stable name shown by
/// `SHOW SLUICE ROUTE` and used for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    SplitOff,
    RoutePrimary,
    RouteReplica,
    HintPrimary,
    HintReplica,
    Write,
    LockingRead,
    SessionBound(Bound),
    MultiStatement,
    TransactionStart,
    TransactionControl,
    InTransaction,
    AutocommitOff,
    ReadOnlyTransaction,
    SessionSet,
    Use,
    Diagnostics,
    TemporaryTables,
    TablesLocked,
    UnreplayableSessionState,
    Unknown,
    Read,
    /// A read the load balancer gave to the primary (`primary_read_weight`).
    ReadOnPrimary,
    /// A read that found no eligible replica.
    NoEligibleReplica,
    /// A read whose GTID requirement no replica had reached (the wait timed out, or
    /// the requirement came from a previous primary, or the primary's position could
    /// not be read): the primary serves it.
    ConsistencyFallback,
    /// Injected bug (simulation only).
    InjectedBug,
    /// A query rule (`[[rules]] route = "host:port"`) chose the node.
    QueryRule,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::SplitOff => "split_off",
            Reason::RoutePrimary => "route_primary",
            Reason::RouteReplica => "route_replica",
            Reason::HintPrimary => "hint_primary",
            Reason::HintReplica => "hint_replica",
            Reason::Write => "write",
            Reason::LockingRead => "locking_read",
            Reason::SessionBound(b) => match b {
                Bound::LastInsertId => "session_bound_last_insert_id",
                Bound::UserLock => "session_bound_user_lock",
                Bound::UserVariable => "session_bound_user_variable",
                Bound::SelectInto => "session_bound_select_into",
                Bound::FoundRows => "session_bound_found_rows",
                Bound::TemporaryTable => "session_bound_temporary_table",
                Bound::LockTables => "session_bound_lock_tables",
                Bound::SqlLogBin => "session_bound_sql_log_bin",
                Bound::Sequence => "session_bound_sequence",
                Bound::StoredRoutine => "session_bound_stored_routine",
                Bound::Connection => "session_bound_connection",
                Bound::SqlPrepare => "session_bound_sql_prepare",
                Bound::Other => "session_bound_other",
            },
            Reason::MultiStatement => "multi_statement",
            Reason::TransactionStart => "transaction_start",
            Reason::TransactionControl => "transaction_control",
            Reason::InTransaction => "in_transaction",
            Reason::AutocommitOff => "autocommit_off",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::SessionSet => "session_set",
            Reason::Use => "use",
            Reason::Diagnostics => "diagnostics",
            Reason::TemporaryTables => "temporary_tables",
            Reason::TablesLocked => "tables_locked",
            Reason::UnreplayableSessionState => "unreplayable_session_state",
            Reason::Unknown => "unknown",
            Reason::Read => "read",
            Reason::ReadOnPrimary => "read_on_primary",
            Reason::NoEligibleReplica => "no_eligible_replica",
            Reason::ConsistencyFallback => "consistency_fallback",
            Reason::InjectedBug => "injected_bug",
            Reason::QueryRule => "query_rule",
        }
    }

    /// Every reason, in the order of [`Reason::index`].
    pub const ALL: [Reason; 39] = [
        Reason::SplitOff,
        Reason::RoutePrimary,
        Reason::RouteReplica,
        Reason::HintPrimary,
        Reason::HintReplica,
        Reason::Write,
        Reason::LockingRead,
        Reason::SessionBound(Bound::LastInsertId),
        Reason::SessionBound(Bound::UserLock),
        Reason::SessionBound(Bound::UserVariable),
        Reason::SessionBound(Bound::SelectInto),
        Reason::SessionBound(Bound::FoundRows),
        Reason::SessionBound(Bound::TemporaryTable),
        Reason::SessionBound(Bound::LockTables),
        Reason::SessionBound(Bound::SqlLogBin),
        Reason::SessionBound(Bound::Sequence),
        Reason::SessionBound(Bound::StoredRoutine),
        Reason::SessionBound(Bound::Connection),
        Reason::SessionBound(Bound::SqlPrepare),
        Reason::SessionBound(Bound::Other),
        Reason::MultiStatement,
        Reason::TransactionStart,
        Reason::TransactionControl,
        Reason::InTransaction,
        Reason::AutocommitOff,
        Reason::ReadOnlyTransaction,
        Reason::SessionSet,
        Reason::Use,
        Reason::Diagnostics,
        Reason::TemporaryTables,
        Reason::TablesLocked,
        Reason::UnreplayableSessionState,
        Reason::Unknown,
        Reason::Read,
        Reason::ReadOnPrimary,
        Reason::NoEligibleReplica,
        Reason::ConsistencyFallback,
        Reason::InjectedBug,
        Reason::QueryRule,
    ];

    /// The reason's position in [`Reason::ALL`] (for per-reason counters).
    pub fn index(self) -> usize {
        match self {
            Reason::SplitOff => 0,
            Reason::RoutePrimary => 1,
            Reason::RouteReplica => 2,
            Reason::HintPrimary => 3,
            Reason::HintReplica => 4,
            Reason::Write => 5,
            Reason::LockingRead => 6,
            Reason::SessionBound(Bound::LastInsertId) => 7,
            Reason::SessionBound(Bound::UserLock) => 8,
            Reason::SessionBound(Bound::UserVariable) => 9,
            Reason::SessionBound(Bound::SelectInto) => 10,
            Reason::SessionBound(Bound::FoundRows) => 11,
            Reason::SessionBound(Bound::TemporaryTable) => 12,
            Reason::SessionBound(Bound::LockTables) => 13,
            Reason::SessionBound(Bound::SqlLogBin) => 14,
            Reason::SessionBound(Bound::Sequence) => 15,
            Reason::SessionBound(Bound::StoredRoutine) => 16,
            Reason::SessionBound(Bound::Connection) => 17,
            Reason::SessionBound(Bound::SqlPrepare) => 18,
            Reason::SessionBound(Bound::Other) => 19,
            Reason::MultiStatement => 20,
            Reason::TransactionStart => 21,
            Reason::TransactionControl => 22,
            Reason::InTransaction => 23,
            Reason::AutocommitOff => 24,
            Reason::ReadOnlyTransaction => 25,
            Reason::SessionSet => 26,
            Reason::Use => 27,
            Reason::Diagnostics => 28,
            Reason::TemporaryTables => 29,
            Reason::TablesLocked => 30,
            Reason::UnreplayableSessionState => 31,
            Reason::Unknown => 32,
            Reason::Read => 33,
            Reason::ReadOnPrimary => 34,
            Reason::NoEligibleReplica => 35,
            Reason::ConsistencyFallback => 36,
            Reason::InjectedBug => 37,
            Reason::QueryRule => 38,
        }
    }

    /// The rule behind the reason, in words (for `SHOW SLUICE ROUTE`).
    pub fn rule(self) -> &'static str {
        match self {
            Reason::SplitOff => "read_write_split is off for this session: everything runs on the primary",
            Reason::RoutePrimary => "sluice_route = primary for this session",
            Reason::RouteReplica => "sluice_route = replica for this session: reads and unclassified statements go to a replica",
            Reason::HintPrimary => "routing hint /* sluice: route=primary */",
            Reason::HintReplica => "routing hint /* sluice: route=replica */",
            Reason::Write => "writes and DDL run on the primary",
            Reason::LockingRead => "locking reads (FOR UPDATE, LOCK IN SHARE MODE, FOR SHARE) run on the primary",
            Reason::SessionBound(_) => "statements that use or set session-bound state run on the primary",
            Reason::MultiStatement => "a multi-statement runs on the primary unless every statement is a read",
            Reason::TransactionStart => "a read-write transaction starts on the primary",
            Reason::TransactionControl => "transaction control runs where the transaction is",
            Reason::InTransaction => "statements inside a transaction run on the primary",
            Reason::AutocommitOff => "with autocommit off every statement is in a transaction: primary",
            Reason::ReadOnlyTransaction => "START TRANSACTION READ ONLY runs whole on one replica",
            Reason::SessionSet => "session SET runs on the primary first, then on every node the session uses",
            Reason::Use => "USE runs on the primary first, then on every node the session uses",
            Reason::Diagnostics => "diagnostics of the previous statement are read where it ran",
            Reason::TemporaryTables => "the session created a temporary table: everything runs on the primary",
            Reason::TablesLocked => "the session holds LOCK TABLES: everything runs on the primary",
            Reason::UnreplayableSessionState => "the session changed its state in a multi-statement Sluice cannot replay: primary",
            Reason::Unknown => "statements Sluice cannot classify run on the primary",
            Reason::Read => "reads go to an eligible replica, chosen by the load-balancing policy",
            Reason::ReadOnPrimary => "the load balancer gave this read to the primary (primary_read_weight)",
            Reason::NoEligibleReplica => "no replica is eligible (down, stopped, erroring or lagging): the primary serves reads",
            Reason::ConsistencyFallback => "no replica reached the read's GTID position in time (consistency_timeout_ms), or it came from a previous primary: the primary serves the read",
            Reason::InjectedBug => "injected bug (simulation only)",
            Reason::QueryRule => "a query rule routes this statement to this node",
        }
    }
}

/// Deliberate routing bugs (simulation only).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bugs {
    pub writes_to_replica: bool,
    pub session_bound_reads_to_replica: bool,
}

/// A routing decision before the target is resolved to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    pub reason: Reason,
}

fn plan(target: Target, reason: Reason) -> Plan {
    Plan { target, reason }
}

/// Decides where a statement runs. `Kind::SluiceSet`/`SluiceShow` are answered by
/// Sluice and never routed; they come out as `Primary`/`Unknown` here.
pub fn decide(c: &Classified, s: &SessionView<'_>, bugs: Bugs) -> Plan {
    // An open transaction on a replica (START TRANSACTION READ ONLY) keeps every
    // statement until it ends.
    if let Some(node) = s.txn_node {
        if Some(node) != s.primary {
            return plan(Target::Node(node.to_string()), Reason::ReadOnlyTransaction);
        }
    }
    if bugs.writes_to_replica && c.kind == Kind::Write {
        return plan(Target::Readers, Reason::InjectedBug);
    }
    if bugs.session_bound_reads_to_replica
        && matches!(c.kind, Kind::SessionBound(Bound::LastInsertId | Bound::UserVariable | Bound::FoundRows))
    {
        return plan(Target::Readers, Reason::InjectedBug);
    }
    let replica_wanted = match c.hint {
        Some(Hint::Primary) => return plan(Target::Primary, Reason::HintPrimary),
        Some(Hint::Replica) => Some(Reason::HintReplica),
        None => match s.mode {
            RouteMode::Primary => return plan(Target::Primary, Reason::RoutePrimary),
            RouteMode::Replica => Some(Reason::RouteReplica),
            RouteMode::Auto => None,
        },
    };
    let in_txn = s.txn_node.is_some();
    let primary_for = |reason| plan(Target::Primary, reason);
    let non_read = |reason| if c.statements > 1 { plan(Target::Primary, Reason::MultiStatement) } else { plan(Target::Primary, reason) };
    match c.kind {
        Kind::Read => {}
        // The classifier could not tell: only an explicit hint or route sends it to a replica.
        Kind::Unknown if replica_wanted.is_some() => {}
        Kind::Unknown => return primary_for(Reason::Unknown),
        Kind::Write => return non_read(Reason::Write),
        Kind::LockingRead => return non_read(Reason::LockingRead),
        Kind::SessionBound(b) => return non_read(Reason::SessionBound(b)),
        Kind::TransactionControl => return non_read(Reason::TransactionControl),
        Kind::SessionSet => return non_read(Reason::SessionSet),
        Kind::Use => return non_read(Reason::Use),
        Kind::SluiceSet | Kind::SluiceShow => return primary_for(Reason::Unknown),
        Kind::Diagnostics => {
            return match s.previous {
                Some(p) => plan(Target::Node(p.to_string()), Reason::Diagnostics),
                None => primary_for(Reason::Diagnostics),
            }
        }
        Kind::Begin { read_only } => {
            if !read_only || in_txn || !s.autocommit || c.statements > 1 || s.temp_tables || s.tables_locked || s.unreplayable {
                return non_read(Reason::TransactionStart);
            }
            if !s.split && replica_wanted.is_none() {
                return primary_for(Reason::SplitOff);
            }
            return plan(Target::Readers, Reason::ReadOnlyTransaction);
        }
    }
    // A read (or an unclassified statement the session or a hint sends to a replica).
    if in_txn {
        return primary_for(Reason::InTransaction);
    }
    if !s.autocommit {
        return primary_for(Reason::AutocommitOff);
    }
    if s.temp_tables {
        return primary_for(Reason::TemporaryTables);
    }
    if s.tables_locked {
        return primary_for(Reason::TablesLocked);
    }
    if s.unreplayable {
        return primary_for(Reason::UnreplayableSessionState);
    }
    match replica_wanted {
        Some(reason) => plan(Target::Readers, reason),
        None if s.split => plan(Target::Readers, Reason::Read),
        None => primary_for(Reason::SplitOff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::class::Effect;

    fn view() -> SessionView<'static> {
        SessionView {
            split: true,
            mode: RouteMode::Auto,
            txn_node: None,
            primary: Some("p:1"),
            autocommit: true,
            temp_tables: false,
            tables_locked: false,
            unreplayable: false,
            previous: None,
        }
    }

    fn go(kind: Kind, s: &SessionView<'_>) -> Plan {
        decide(&Classified::new(kind), s, Bugs::default())
    }

    #[test]
    fn read_goes_to_the_readers_when_splitting() {
        assert_eq!(go(Kind::Read, &view()), plan(Target::Readers, Reason::Read));
    }

    #[test]
    fn read_goes_to_the_primary_when_splitting_is_off() {
        let s = SessionView { split: false, ..view() };
        assert_eq!(go(Kind::Read, &s), plan(Target::Primary, Reason::SplitOff));
    }

    #[test]
    fn writes_locking_reads_and_session_bound_statements_go_to_the_primary() {
        assert_eq!(go(Kind::Write, &view()), plan(Target::Primary, Reason::Write));
        assert_eq!(go(Kind::LockingRead, &view()), plan(Target::Primary, Reason::LockingRead));
        for b in [Bound::LastInsertId, Bound::UserLock, Bound::UserVariable, Bound::FoundRows, Bound::StoredRoutine, Bound::Sequence] {
            assert_eq!(go(Kind::SessionBound(b), &view()), plan(Target::Primary, Reason::SessionBound(b)));
        }
    }

    #[test]
    fn unknown_statements_go_to_the_primary() {
        assert_eq!(go(Kind::Unknown, &view()), plan(Target::Primary, Reason::Unknown));
    }

    #[test]
    fn reads_inside_a_primary_transaction_stay_on_the_primary() {
        let s = SessionView { txn_node: Some("p:1"), ..view() };
        assert_eq!(go(Kind::Read, &s), plan(Target::Primary, Reason::InTransaction));
    }

    #[test]
    fn autocommit_off_keeps_reads_on_the_primary() {
        let s = SessionView { autocommit: false, ..view() };
        assert_eq!(go(Kind::Read, &s), plan(Target::Primary, Reason::AutocommitOff));
        assert_eq!(go(Kind::Begin { read_only: true }, &s), plan(Target::Primary, Reason::TransactionStart));
    }

    #[test]
    fn read_only_transaction_starts_on_a_replica_and_stays_there() {
        assert_eq!(go(Kind::Begin { read_only: true }, &view()), plan(Target::Readers, Reason::ReadOnlyTransaction));
        let s = SessionView { txn_node: Some("r:2"), ..view() };
        for k in [Kind::Read, Kind::TransactionControl, Kind::Write] {
            assert_eq!(go(k, &s), plan(Target::Node("r:2".into()), Reason::ReadOnlyTransaction));
        }
    }

    #[test]
    fn read_write_transaction_starts_on_the_primary() {
        assert_eq!(go(Kind::Begin { read_only: false }, &view()), plan(Target::Primary, Reason::TransactionStart));
    }

    #[test]
    fn temporary_tables_locked_tables_and_unreplayable_state_keep_reads_on_the_primary() {
        assert_eq!(go(Kind::Read, &SessionView { temp_tables: true, ..view() }).reason, Reason::TemporaryTables);
        assert_eq!(go(Kind::Read, &SessionView { tables_locked: true, ..view() }).reason, Reason::TablesLocked);
        assert_eq!(go(Kind::Read, &SessionView { unreplayable: true, ..view() }).reason, Reason::UnreplayableSessionState);
    }

    #[test]
    fn diagnostics_are_read_where_the_previous_statement_ran() {
        let s = SessionView { previous: Some("r:2"), ..view() };
        assert_eq!(go(Kind::Diagnostics, &s), plan(Target::Node("r:2".into()), Reason::Diagnostics));
        assert_eq!(go(Kind::Diagnostics, &view()), plan(Target::Primary, Reason::Diagnostics));
    }

    #[test]
    fn hint_primary_beats_everything_but_an_open_replica_transaction() {
        let mut c = Classified::new(Kind::Read);
        c.hint = Some(Hint::Primary);
        assert_eq!(decide(&c, &view(), Bugs::default()), plan(Target::Primary, Reason::HintPrimary));
    }

    #[test]
    fn hint_replica_sends_reads_and_unclassified_statements_to_a_replica_even_with_splitting_off() {
        let s = SessionView { split: false, ..view() };
        for kind in [Kind::Read, Kind::Unknown] {
            let mut c = Classified::new(kind);
            c.hint = Some(Hint::Replica);
            assert_eq!(decide(&c, &s, Bugs::default()), plan(Target::Readers, Reason::HintReplica));
        }
    }

    #[test]
    fn hint_replica_never_moves_a_write_or_a_transaction_read() {
        let mut c = Classified::new(Kind::Write);
        c.hint = Some(Hint::Replica);
        assert_eq!(decide(&c, &view(), Bugs::default()), plan(Target::Primary, Reason::Write));
        let mut r = Classified::new(Kind::Read);
        r.hint = Some(Hint::Replica);
        let s = SessionView { txn_node: Some("p:1"), ..view() };
        assert_eq!(decide(&r, &s, Bugs::default()), plan(Target::Primary, Reason::InTransaction));
    }

    #[test]
    fn session_route_primary_and_replica() {
        let p = SessionView { mode: RouteMode::Primary, ..view() };
        assert_eq!(go(Kind::Read, &p), plan(Target::Primary, Reason::RoutePrimary));
        let r = SessionView { mode: RouteMode::Replica, split: false, ..view() };
        assert_eq!(go(Kind::Read, &r), plan(Target::Readers, Reason::RouteReplica));
        assert_eq!(go(Kind::Write, &r), plan(Target::Primary, Reason::Write));
    }

    #[test]
    fn multi_statement_that_is_not_all_reads_goes_to_the_primary() {
        let mut c = Classified::new(Kind::Write);
        c.statements = 2;
        assert_eq!(decide(&c, &view(), Bugs::default()), plan(Target::Primary, Reason::MultiStatement));
        let mut r = Classified::new(Kind::Read);
        r.statements = 3;
        assert_eq!(decide(&r, &view(), Bugs::default()), plan(Target::Readers, Reason::Read));
    }

    #[test]
    fn session_set_and_use_run_on_the_primary_first() {
        let mut c = Classified::new(Kind::SessionSet);
        c.effects.push(Effect::ReplaySet);
        assert_eq!(decide(&c, &view(), Bugs::default()), plan(Target::Primary, Reason::SessionSet));
        assert_eq!(go(Kind::Use, &view()), plan(Target::Primary, Reason::Use));
    }

    #[test]
    fn injected_bugs_misroute_as_documented() {
        let bugs = Bugs { writes_to_replica: true, session_bound_reads_to_replica: true };
        assert_eq!(decide(&Classified::new(Kind::Write), &view(), bugs).target, Target::Readers);
        assert_eq!(decide(&Classified::new(Kind::SessionBound(Bound::LastInsertId)), &view(), bugs).target, Target::Readers);
        assert_eq!(decide(&Classified::new(Kind::Write), &view(), Bugs::default()).target, Target::Primary);
    }
}
