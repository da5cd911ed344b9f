//! What the classifier says about one statement: the vocabulary shared by the
//! classifier ([`super::classify`]), the routing decision ([`super::decide`]) and the
//! session, which applies a statement's effects on its tracked state.

/// Session-bound state a statement uses or sets: it must run on the connection that
/// holds that state (the primary's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bound {
    /// `LAST_INSERT_ID()`, `@@last_insert_id`, `@@identity`, `@@insert_id`, `@@last_gtid`.
    LastInsertId,
    /// `GET_LOCK`, `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`, `IS_FREE_LOCK`, `IS_USED_LOCK`.
    UserLock,
    /// Reads or assigns a user variable (`@v`, `SET @v = …`, `@v := …`).
    UserVariable,
    /// `SELECT … INTO @v | OUTFILE | DUMPFILE`.
    SelectInto,
    /// `SQL_CALC_FOUND_ROWS` (which `FOUND_ROWS()`, a [`Kind::Diagnostics`] read, then
    /// reads where it ran).
    FoundRows,
    /// `CREATE/DROP TEMPORARY TABLE`, or any statement once the session has one.
    TemporaryTable,
    /// `LOCK TABLES` / `UNLOCK TABLES`, `FLUSH TABLES … WITH READ LOCK`.
    LockTables,
    /// `SET sql_log_bin`.
    SqlLogBin,
    /// Sequences: `NEXTVAL()`, `LASTVAL()`, `SETVAL()`, `NEXT VALUE FOR`, `PREVIOUS VALUE FOR`.
    Sequence,
    /// `CALL`, or a function that is not a known built-in (a stored function).
    StoredRoutine,
    /// `CONNECTION_ID()` and other functions whose answer is the connection's own.
    Connection,
    /// SQL-level prepared statements: `PREPARE`, `EXECUTE`, `DEALLOCATE PREPARE`.
    SqlPrepare,
    /// `HANDLER …`, `XA …`, and other statements that leave state on the connection.
    Other,
}

/// A routing hint written in a comment: `/* sluice: route=primary */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    Primary,
    Replica,
}

/// Where a statement may run, as far as its text tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A read without session-bound effects: may run on a replica.
    Read,
    /// Changes data, schema, privileges or server state (DML, DDL, `SET GLOBAL`, …).
    Write,
    /// `SELECT … FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`.
    LockingRead,
    /// Uses or sets state that lives on one backend connection.
    SessionBound(Bound),
    /// `BEGIN`, `START TRANSACTION …`, `XA START` is [`Bound::Other`]. `read_only` is
    /// true only for `START TRANSACTION READ ONLY` (without `READ WRITE`).
    Begin { read_only: bool },
    /// `COMMIT`, `ROLLBACK` (also `… AND CHAIN` / `RELEASE`, `ROLLBACK TO SAVEPOINT`),
    /// `SAVEPOINT`, `RELEASE SAVEPOINT`.
    TransactionControl,
    /// A session `SET` Sluice applies on every node the session uses: `SET NAMES`,
    /// `SET CHARACTER SET`, `SET [SESSION|LOCAL] var = …`, `SET @@[session.]var = …`,
    /// `SET TRANSACTION …` (not `GLOBAL`, not user variables, not `sql_log_bin`, not
    /// Sluice's own variables).
    SessionSet,
    /// `USE db`.
    Use,
    /// Reads the previous statement's diagnostics: `SHOW WARNINGS`, `SHOW ERRORS`,
    /// `SHOW COUNT(*) WARNINGS|ERRORS`, `GET DIAGNOSTICS`, `@@warning_count`,
    /// `@@error_count`, `ROW_COUNT()`, `FOUND_ROWS()`: runs where the previous statement
    /// ran.
    Diagnostics,
    /// `SET @@sluice_… = …` (or `SET sluice_… = …`): a Sluice session command; never
    /// reaches a backend.
    SluiceSet,
    /// `SHOW SLUICE …` and `SLUICE …` commands: answered by Sluice.
    SluiceShow,
    /// Empty, unparseable, or not understood: runs on the primary.
    Unknown,
}

/// What the session must remember after running a statement (besides the status
/// flags of the response, which tell the transaction state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// A single session `SET` statement: replay its text on every other node the
    /// session uses, before its next statement there.
    ReplaySet,
    /// `USE db`: the session's schema becomes `db` (unquoted name).
    Use(Vec<u8>),
    /// The session created a temporary table.
    CreatesTemporaryTable,
    /// `LOCK TABLES` (or `FLUSH TABLES WITH READ LOCK`): held until `UNLOCK TABLES`.
    LocksTables,
    /// `UNLOCK TABLES`.
    UnlocksTables,
    /// A multi-statement that changes session state (a `SET` or `USE` among other
    /// statements): Sluice cannot replay it exactly, so the session keeps every later
    /// statement on the primary.
    Unreplayable,
}

/// The classifier's verdict on one statement text (all statements of a multi-statement).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Classified {
    /// For a multi-statement: [`Kind::Read`] only if every part is a read; otherwise
    /// the kind of the first part that is not a read.
    pub kind: Kind,
    /// Number of statements (more than one for a multi-statement).
    pub statements: u32,
    /// A routing hint comment, if any (the first one wins).
    pub hint: Option<Hint>,
    /// Effects on the session, in statement order (usually none, or one).
    pub effects: Vec<Effect>,
    /// Whether the full parser had to be used (for counters and benchmarks).
    pub parsed: bool,
    /// The statement's digest (set by the classifier; not part of the verdict).
    pub digest: DigestSlot,
}

/// A statement digest: the normalised text (`route::classify::digest`) and its hash.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DigestId {
    pub hash: u64,
    pub text: Box<str>,
}

/// Where a [`Classified`] keeps its digest. Two verdicts are equal whatever their
/// digests (texts that share a cache entry may differ in keyword case).
#[derive(Debug, Clone, Default)]
pub struct DigestSlot(pub Option<std::sync::Arc<DigestId>>);

impl PartialEq for DigestSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for DigestSlot {}
impl std::hash::Hash for DigestSlot {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl Classified {
    pub fn new(kind: Kind) -> Self {
        Classified { kind, statements: 1, hint: None, effects: Vec::new(), parsed: false, digest: DigestSlot(None) }
    }

    /// True when the statement may run on a replica, as far as its text tells.
    pub fn is_read(&self) -> bool {
        self.kind == Kind::Read
    }
}
