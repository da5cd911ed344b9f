//! Running cases: each case's passes (text, binary, binary through cursors) on the
//! reference and then on the candidate, over fresh connections, recording every
//! compared response; then comparing the two records.
//!
//! The two legs of a case run one after the other (the reference and the candidate are
//! usually the same server, directly and through Sluice, and the case's tables have the
//! same names on both); different cases run concurrently (`--jobs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::protocol::constants::{com, status};
use sluice::protocol::response::Expect;

use crate::case::{short, Action, Case, Protocols, Stmt};
use crate::client::{Conn, Endpoint, DEFAULT_CAPS};
use crate::compare::{compare_step, Step};
use crate::decode::{decode, result_types, warnings, Decoded, RawPacket};
use crate::value::{interpolate, Value};

/// What `diff` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub reference: Endpoint,
    pub candidate: Endpoint,
    pub jobs: usize,
    pub text: bool,
    pub binary: bool,
    /// The candidate splits reads over replicas: `@known-difference-split` counts.
    pub split: bool,
}

/// One way of running a case's test section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Text,
    Binary { cursor: Option<u32> },
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pass::Text => write!(f, "text protocol"),
            Pass::Binary { cursor: None } => write!(f, "binary protocol"),
            Pass::Binary { cursor: Some(n) } => write!(f, "binary protocol, cursor fetching {n} row(s) at a time"),
        }
    }
}

/// The passes a case gets under the given options.
pub fn passes(case: &Case, text: bool, binary: bool) -> Vec<Pass> {
    let mut out = Vec::new();
    if text && case.protocols != Protocols::Binary {
        out.push(Pass::Text);
    }
    if binary && case.protocols != Protocols::Text {
        out.push(Pass::Binary { cursor: None });
        for &n in &case.cursors {
            out.push(Pass::Binary { cursor: Some(n) });
        }
    }
    out
}

/// Everything one leg recorded.
#[derive(Debug, Default)]
pub struct Leg {
    pub steps: Vec<Step>,
    /// An error that stopped the leg (not an ERR packet: those are compared).
    pub error: Option<String>,
}

/// The result of one case.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// The case's `@known-difference` text, if any.
    pub known: Option<String>,
    /// One readable report per pass that differed.
    pub failures: Vec<String>,
    /// Passes where both sides stopped with the same error.
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl Outcome {
    /// No differences.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
    /// Differences that the case declares as known (`@known-difference`).
    pub fn known_difference(&self) -> bool {
        !self.failures.is_empty() && self.known.is_some()
    }
    /// Differences that fail the run.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty() && self.known.is_none()
    }
}

#[derive(Debug, Clone)]
struct Prepared {
    id: u32,
    types: Vec<(u8, u16)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Setup,
    Test,
    Teardown,
}

/// Statement id sent for names never prepared on the connection.
const UNKNOWN_STMT: u32 = 0x7FFF_FFF0;
/// Most COM_STMT_FETCH calls for one cursor.
const MAX_FETCHES: usize = 100_000;

struct LegRun<'a> {
    case: &'a Case,
    ep: &'a Endpoint,
    pass: Pass,
    conns: Vec<Option<Conn>>,
    cur: usize,
    stmts: Vec<HashMap<String, Prepared>>,
    /// Commands sent with `!send` and not yet read (`!reap` reads the oldest).
    pending: Vec<std::collections::VecDeque<String>>,
    leg: Leg,
}

/// Runs one pass of a case on one endpoint.
pub async fn run_leg(case: &Case, pass: Pass, ep: &Endpoint) -> Leg {
    let login_ep = Endpoint {
        user: case.user.clone().unwrap_or_else(|| ep.user.clone()),
        password: case.password.clone().unwrap_or_else(|| ep.password.clone()),
        ..ep.clone()
    };
    let mut r = LegRun {
        case,
        ep,
        pass,
        conns: Vec::new(),
        cur: 0,
        stmts: vec![HashMap::new(); case.connections],
        pending: vec![Default::default(); case.connections],
        leg: Leg::default(),
    };
    let caps = (DEFAULT_CAPS | case.caps_add) & !case.caps_remove;
    let mut result: Result<(), String> = Ok(());
    for i in 0..case.connections {
        match Conn::open(&login_ep, caps, case.charset, case.database.as_deref(), case.timeout).await {
            Ok(c) => {
                if i == 0 && case.compare_handshake {
                    r.leg.steps.push(Step {
                        label: "initial handshake (connection id and nonce not compared)".into(),
                        conn: 1,
                        expect: Expect::OnePacket,
                        caps: c.caps(),
                        packets: vec![RawPacket { seq: 0, last_seq: 0, payload: handshake_summary(&c) }],
                        fetch_types: vec![],
                        rules: vec![],
                        warnings: None,
                    });
                }
                let login_ok = RawPacket { seq: 0, last_seq: 0, payload: c.bc.login_ok.clone() };
                r.leg.steps.push(Step {
                    label: format!("login (connection {})", i + 1),
                    conn: i + 1,
                    expect: Expect::OnePacket,
                    caps: c.caps(),
                    packets: vec![login_ok],
                    fetch_types: vec![],
                    rules: vec![],
                    warnings: None,
                });
                r.conns.push(Some(c));
            }
            Err(e) => {
                result = Err(format!("connection {}: {e:#}", i + 1));
                break;
            }
        }
    }
    if result.is_ok() {
        result = r.run_list(&case.setup, Section::Setup).await;
    }
    if result.is_ok() {
        r.cur = 0;
        result = r.run_list(&case.test, Section::Test).await;
    }
    for c in r.conns.drain(..).flatten() {
        c.quit().await;
    }
    if !case.teardown.is_empty() {
        // On a fresh connection: the test's connections may be mid-response or hold locks.
        match Conn::open(ep, caps, case.charset, case.database.as_deref(), case.timeout).await {
            Ok(c) => {
                r.conns = vec![Some(c)];
                r.stmts = vec![HashMap::new()];
                r.pending = vec![Default::default()];
                r.cur = 0;
                let t = r.run_list(&case.teardown, Section::Teardown).await;
                if result.is_ok() {
                    result = t;
                }
                for c in r.conns.drain(..).flatten() {
                    c.quit().await;
                }
            }
            Err(e) => {
                if result.is_ok() {
                    result = Err(format!("teardown connection: {e:#}"));
                }
            }
        }
    }
    let mut leg = r.leg;
    // The endpoint's address appears in connection errors; it is not a difference.
    leg.error = result.err().map(|e| e.replace(&ep.addr, "<endpoint>"));
    leg
}

/// The comparable facts of a server's initial handshake, as text: version, capability
/// flags by name, default collation and status.
fn handshake_summary(c: &Conn) -> Vec<u8> {
    const CAPS: [&str; 32] = [
        "LONG_PASSWORD", "FOUND_ROWS", "LONG_FLAG", "CONNECT_WITH_DB", "NO_SCHEMA", "COMPRESS", "ODBC", "LOCAL_FILES",
        "IGNORE_SPACE", "PROTOCOL_41", "INTERACTIVE", "SSL", "IGNORE_SIGPIPE", "TRANSACTIONS", "RESERVED", "SECURE_CONNECTION",
        "MULTI_STATEMENTS", "MULTI_RESULTS", "PS_MULTI_RESULTS", "PLUGIN_AUTH", "CONNECT_ATTRS", "PLUGIN_AUTH_LENENC_CLIENT_DATA",
        "CAN_HANDLE_EXPIRED_PASSWORDS", "SESSION_TRACK", "DEPRECATE_EOF", "OPTIONAL_RESULTSET_METADATA", "ZSTD_COMPRESSION",
        "QUERY_ATTRIBUTES", "MULTI_FACTOR_AUTHENTICATION", "CAPABILITY_EXTENSION", "SSL_VERIFY_SERVER_CERT", "REMEMBER_OPTIONS",
    ];
    let caps: Vec<&str> = (0..32).filter(|b| c.bc.server_caps & (1 << b) != 0).map(|b| CAPS[b]).collect();
    format!(
        "server_version={} capabilities={} collation={} status_after_login=0x{:04x}",
        String::from_utf8_lossy(&c.bc.server_version),
        caps.join("|"),
        c.bc.server_charset,
        c.bc.server_status
    )
    .into_bytes()
}

fn com_query(sql: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(sql.len() + 1);
    p.push(com::QUERY);
    p.extend_from_slice(sql.as_bytes());
    p
}

fn stmt_cmd(cmd: u8, id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![cmd];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(rest);
    p
}

fn execute_payload(id: u32, cursor: bool, params: &[Value]) -> Result<Vec<u8>, String> {
    let mut rest = vec![u8::from(cursor), 1, 0, 0, 0];
    if !params.is_empty() {
        let mut bitmap = vec![0u8; params.len().div_ceil(8)];
        for (i, v) in params.iter().enumerate() {
            if v.is_null() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        rest.extend_from_slice(&bitmap);
        rest.push(1);
        for v in params {
            rest.push(v.ty);
            rest.push(if v.unsigned { 0x80 } else { 0 });
        }
        for v in params {
            v.encode(&mut rest).map_err(|e| format!("parameter {v}: {e:#}"))?;
        }
    }
    Ok(stmt_cmd(com::STMT_EXECUTE, id, &rest))
}

/// Rewrites "(<real id>)" in ERR messages to the statement's name: ids differ per leg.
fn name_stmt_ids(packets: &mut [RawPacket], real: u32, name: &str) {
    let needle = format!("({real})");
    for p in packets {
        if p.payload.first() == Some(&0xFF) && p.payload.len() > 9 {
            let msg = String::from_utf8_lossy(&p.payload[9..]).into_owned();
            if msg.contains(&needle) {
                let mut np = p.payload[..9].to_vec();
                np.extend_from_slice(msg.replace(&needle, &format!("(<{name}>)")).as_bytes());
                p.payload = np;
            }
        }
    }
}

/// Status of the last OK/EOF of a response.
fn final_status(packets: &[RawPacket], expect: Expect, caps: u32, types: &[(u8, u16)]) -> Option<u16> {
    decode(expect, caps, packets, types).iter().rev().find_map(|i| match &i.decoded {
        Decoded::Ok(o) => Some(o.status),
        Decoded::Eof { status, .. } => Some(*status),
        _ => None,
    })
}

fn first_err(packets: &[RawPacket]) -> Option<String> {
    packets.iter().find(|p| p.payload.first() == Some(&0xFF)).map(|p| {
        let e = sluice::protocol::packets::Err::parse(&p.payload);
        match e {
            Some(e) => format!("ERR {} ({}) {}", e.code, String::from_utf8_lossy(e.state), e.message_lossy()),
            None => "malformed ERR packet".into(),
        }
    })
}

impl LegRun<'_> {
    fn conn(&mut self) -> Result<&mut Conn, String> {
        let cur = self.cur;
        self.conns.get_mut(cur).and_then(Option::as_mut).ok_or_else(|| format!("connection {} is not open", cur + 1))
    }

    async fn run_list(&mut self, list: &[Stmt], section: Section) -> Result<(), String> {
        for s in list {
            self.run_stmt(s, section).await.map_err(|e| format!("line {}: {} ({}): {e}", s.line, s.action, section_name(section)))?;
        }
        Ok(())
    }

    /// Sends a command, reads its response, and records it (or checks it, in setup and
    /// teardown).
    async fn exchange(&mut self, s: &Stmt, section: Section, label: String, payload: &[u8], expect: Expect, fetch_types: Vec<(u8, u16)>) -> Result<Vec<RawPacket>, String> {
        let infiles = &self.case.infiles;
        let conn = self.conns.get_mut(self.cur).and_then(Option::as_mut).ok_or("connection is not open")?;
        let packets = conn.command(payload, expect, infiles).await.map_err(|e| format!("{e:#}"))?;
        self.record(s, section, label, expect, packets.clone(), fetch_types).await?;
        Ok(packets)
    }

    async fn record(&mut self, s: &Stmt, section: Section, label: String, expect: Expect, packets: Vec<RawPacket>, fetch_types: Vec<(u8, u16)>) -> Result<(), String> {
        let compared = section == Section::Test || (section == Section::Setup && self.case.compare_setup);
        if !compared {
            if let Some(e) = first_err(&packets) {
                return Err(format!("unexpected {e}"));
            }
            return Ok(());
        }
        let caps = self.conn()?.caps();
        let items = decode(expect, caps, &packets, &fetch_types);
        let mut step = Step { label, conn: self.cur + 1, expect, caps, packets, fetch_types, rules: s.rules.clone(), warnings: None };
        if warnings(&items) > 0 {
            let conn = self.conn()?;
            let w = conn.command(&com_query("SHOW WARNINGS"), Expect::Query, &BTreeMap::new()).await.map_err(|e| format!("SHOW WARNINGS: {e:#}"))?;
            step.warnings = Some(Box::new(Step {
                label: "SHOW WARNINGS".into(),
                conn: self.cur + 1,
                expect: Expect::Query,
                caps,
                packets: w,
                fetch_types: vec![],
                rules: s.rules.clone(),
                warnings: None,
            }));
        }
        self.leg.steps.push(step);
        Ok(())
    }

    fn stmt_id(&self, name: &str) -> u32 {
        self.stmts[self.cur].get(name).map(|p| p.id).unwrap_or(UNKNOWN_STMT)
    }

    async fn run_stmt(&mut self, s: &Stmt, section: Section) -> Result<(), String> {
        let pass = if section == Section::Test { self.pass } else { Pass::Text };
        let label = format!("line {}: {}", s.line, s.action);
        match &s.action {
            Action::Sql(sql) => match pass {
                Pass::Text => {
                    let sql = match &s.params {
                        Some(p) => interpolate(sql, p).map_err(|e| format!("{e:#}"))?,
                        None => sql.clone(),
                    };
                    self.exchange(s, section, label, &com_query(&sql), Expect::Query, vec![]).await?;
                }
                Pass::Binary { cursor } => self.run_binary(s, section, sql, cursor).await?,
            },
            Action::Send(sql) => {
                self.conn()?.send(&com_query(sql)).await.map_err(|e| format!("{e:#}"))?;
                self.pending[self.cur].push_back(format!("line {}: {}", s.line, short(sql)));
            }
            Action::Reap => {
                let what = self.pending[self.cur].pop_front().ok_or("!reap without a !send on this connection")?;
                let infiles = &self.case.infiles;
                let conn = self.conns.get_mut(self.cur).and_then(Option::as_mut).ok_or("connection is not open")?;
                let packets = conn.read_response(Expect::Query, infiles).await.map_err(|e| format!("{e:#}"))?;
                self.record(s, section, format!("{label} (of {what})"), Expect::Query, packets, vec![]).await?;
            }
            Action::Conn(n) => self.cur = n - 1,
            Action::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Action::Ping => {
                self.exchange(s, section, label, &[com::PING], Expect::OnePacket, vec![]).await?;
            }
            Action::InitDb(db) => {
                let mut p = vec![com::INIT_DB];
                p.extend_from_slice(db.as_bytes());
                self.exchange(s, section, label, &p, Expect::OnePacket, vec![]).await?;
            }
            Action::FieldList { table, wildcard } => {
                let mut p = vec![com::FIELD_LIST];
                p.extend_from_slice(table.as_bytes());
                p.push(0);
                p.extend_from_slice(wildcard.as_bytes());
                self.exchange(s, section, label, &p, Expect::FieldList, vec![]).await?;
            }
            Action::ChangeUser { user, password, database } => {
                let user = user.clone().unwrap_or_else(|| self.ep.user.clone());
                let password = password.clone().unwrap_or_else(|| self.ep.password.clone());
                let db = database.clone().or_else(|| self.case.database.clone()).unwrap_or_else(|| self.ep.database.clone());
                let charset = self.case.charset as u16;
                let packets = self.conn()?.change_user(&user, &password, &db, charset).await.map_err(|e| format!("{e:#}"))?;
                self.stmts[self.cur].clear();
                self.record(s, section, label, Expect::OnePacket, packets, vec![]).await?;
            }
            Action::ResetConnection => {
                self.exchange(s, section, label, &[com::RESET_CONNECTION], Expect::OnePacket, vec![]).await?;
            }
            Action::SetOption(on) => {
                let opt: u16 = if *on { 0 } else { 1 };
                let mut p = vec![com::SET_OPTION];
                p.extend_from_slice(&opt.to_le_bytes());
                self.exchange(s, section, label, &p, Expect::OnePacket, vec![]).await?;
            }
            Action::Prepare { name, sql } => {
                let mut p = vec![com::STMT_PREPARE];
                p.extend_from_slice(sql.as_bytes());
                let mut packets = self.conn()?.command(&p, Expect::Prepare, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
                if let Some(first) = packets.first_mut() {
                    if first.payload.first() == Some(&0x00) && first.payload.len() >= 5 {
                        let id = u32::from_le_bytes(first.payload[1..5].try_into().expect("4 bytes"));
                        let caps = self.conn()?.caps();
                        let types = result_types(&decode(Expect::Prepare, caps, &packets, &[]));
                        self.stmts[self.cur].insert(name.clone(), Prepared { id, types });
                    }
                }
                self.record(s, section, label, Expect::Prepare, packets, vec![]).await?;
            }
            Action::Execute { name, cursor, params } => {
                let id = self.stmt_id(name);
                let payload = execute_payload(id, *cursor, params)?;
                let expect = Expect::for_execute(&payload);
                let mut packets = self.conn()?.command(&payload, expect, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
                name_stmt_ids(&mut packets, id, name);
                let caps = self.conn()?.caps();
                let types = result_types(&decode(expect, caps, &packets, &[]));
                if let Some(p) = self.stmts[self.cur].get_mut(name) {
                    if !types.is_empty() {
                        p.types = types;
                    }
                }
                self.record(s, section, label, expect, packets, vec![]).await?;
            }
            Action::Fetch { name, rows } => {
                let id = self.stmt_id(name);
                let types = self.stmts[self.cur].get(name).map(|p| p.types.clone()).unwrap_or_default();
                let payload = stmt_cmd(com::STMT_FETCH, id, &rows.to_le_bytes());
                let mut packets = self.conn()?.command(&payload, Expect::Fetch, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
                name_stmt_ids(&mut packets, id, name);
                self.record(s, section, label, Expect::Fetch, packets, types).await?;
            }
            Action::LongData { name, param, data } => {
                let id = self.stmt_id(name);
                let mut rest = param.to_le_bytes().to_vec();
                rest.extend_from_slice(data);
                self.conn()?.send(&stmt_cmd(com::STMT_SEND_LONG_DATA, id, &rest)).await.map_err(|e| format!("{e:#}"))?;
            }
            Action::StmtReset(name) => {
                let id = self.stmt_id(name);
                let mut packets = self.conn()?.command(&stmt_cmd(com::STMT_RESET, id, &[]), Expect::OnePacket, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
                name_stmt_ids(&mut packets, id, name);
                self.record(s, section, label, Expect::OnePacket, packets, vec![]).await?;
            }
            Action::StmtClose(name) => {
                let id = self.stmt_id(name);
                self.conn()?.send(&stmt_cmd(com::STMT_CLOSE, id, &[])).await.map_err(|e| format!("{e:#}"))?;
            }
            Action::Command { payload, expect } => match expect {
                Some(e) => {
                    self.exchange(s, section, label, payload, *e, vec![]).await?;
                }
                None => self.conn()?.send(payload).await.map_err(|e| format!("{e:#}"))?,
            },
        }
        Ok(())
    }

    /// A statement over the binary protocol: PREPARE, EXECUTE (with a cursor: FETCH until
    /// the last row), CLOSE.
    async fn run_binary(&mut self, s: &Stmt, section: Section, sql: &str, cursor: Option<u32>) -> Result<(), String> {
        let base = format!("line {}: {}", s.line, short(sql));
        let mut p = vec![com::STMT_PREPARE];
        p.extend_from_slice(sql.as_bytes());
        let packets = self.conn()?.command(&p, Expect::Prepare, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
        self.record(s, section, format!("{base} [COM_STMT_PREPARE]"), Expect::Prepare, packets.clone(), vec![]).await?;
        let Some(first) = packets.first().filter(|p| p.payload.first() == Some(&0x00) && p.payload.len() >= 5) else {
            return Ok(());
        };
        let id = u32::from_le_bytes(first.payload[1..5].try_into().expect("4 bytes"));
        let params = s.params.clone().unwrap_or_default();
        let payload = execute_payload(id, cursor.is_some(), &params)?;
        let caps = self.conn()?.caps();
        let infiles = &self.case.infiles;
        let conn = self.conns.get_mut(self.cur).and_then(Option::as_mut).ok_or("connection is not open")?;
        let expect = Expect::for_execute(&payload);
        let mut packets = conn.command(&payload, expect, infiles).await.map_err(|e| format!("{e:#}"))?;
        name_stmt_ids(&mut packets, id, "statement");
        let types = result_types(&decode(expect, caps, &packets, &[]));
        let st = final_status(&packets, expect, caps, &[]);
        self.record(s, section, format!("{base} [COM_STMT_EXECUTE]"), expect, packets, vec![]).await?;
        if let (Some(n), Some(st)) = (cursor, st) {
            if st & status::CURSOR_EXISTS != 0 {
                for k in 1..=MAX_FETCHES {
                    let payload = stmt_cmd(com::STMT_FETCH, id, &n.to_le_bytes());
                    let mut packets = self.conn()?.command(&payload, Expect::Fetch, &BTreeMap::new()).await.map_err(|e| format!("{e:#}"))?;
                    name_stmt_ids(&mut packets, id, "statement");
                    let st = final_status(&packets, Expect::Fetch, caps, &types);
                    self.record(s, section, format!("{base} [COM_STMT_FETCH {n} #{k}]"), Expect::Fetch, packets, types.clone()).await?;
                    match st {
                        Some(st) if st & status::LAST_ROW_SENT == 0 && st & status::CURSOR_EXISTS != 0 => {}
                        _ => break,
                    }
                }
            }
        }
        self.conn()?.send(&stmt_cmd(com::STMT_CLOSE, id, &[])).await.map_err(|e| format!("{e:#}"))?;
        Ok(())
    }
}

fn section_name(s: Section) -> &'static str {
    match s {
        Section::Setup => "setup",
        Section::Test => "test",
        Section::Teardown => "teardown",
    }
}

/// Compares the legs of one pass; `None` when they agree.
pub fn compare_legs(case: &Case, pass: Pass, r: &Leg, c: &Leg) -> Option<String> {
    let mut lines = Vec::new();
    if r.error != c.error {
        lines.push(format!(
            "the run stopped differently:\n    reference: {}\n    candidate: {}",
            r.error.as_deref().unwrap_or("(completed)"),
            c.error.as_deref().unwrap_or("(completed)")
        ));
    }
    let mut differing = 0;
    for (a, b) in r.steps.iter().zip(c.steps.iter()) {
        if a.label != b.label {
            lines.push(format!("the legs ran different steps: reference `{}`, candidate `{}`", a.label, b.label));
            break;
        }
        let d = compare_step(&case.rules, a, b);
        if !d.is_empty() {
            differing += 1;
            if differing <= 3 {
                lines.push(format!("{} (connection {}):", a.label, a.conn));
                for l in d {
                    lines.push(format!("    {l}"));
                }
            }
        }
    }
    if differing > 3 {
        lines.push(format!("… and {} more differing responses", differing - 3));
    }
    if r.steps.len() != c.steps.len() {
        lines.push(format!("the reference recorded {} responses, the candidate {}", r.steps.len(), c.steps.len()));
    }
    if lines.is_empty() {
        None
    } else {
        Some(format!("[{pass}]\n  {}", lines.join("\n  ")))
    }
}

/// Runs every pass of one case on both endpoints and compares.
pub async fn run_case(case: &Case, opts: &Options) -> Outcome {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for pass in passes(case, opts.text, opts.binary) {
        let r = run_leg(case, pass, &opts.reference).await;
        let c = run_leg(case, pass, &opts.candidate).await;
        match compare_legs(case, pass, &r, &c) {
            Some(f) => failures.push(f),
            None => {
                if let Some(e) = &r.error {
                    notes.push(format!("[{pass}] both sides stopped with: {e}"));
                }
            }
        }
    }
    let known = case.known_difference.clone().or_else(|| case.known_difference_split.clone().filter(|_| opts.split));
    if failures.is_empty() {
        if let Some(k) = &known {
            notes.push(format!("marked @known-difference ({k}) but no difference was seen: remove the marker if it is fixed"));
        }
    }
    Outcome { name: case.name.clone(), known, failures, notes, elapsed: started.elapsed() }
}

/// Runs `cases` (concurrently up to `opts.jobs`, then the `@serial` ones alone) and calls
/// `report` with each outcome as it finishes.
pub async fn run_all(cases: Vec<Case>, opts: Options, mut report: impl FnMut(&Outcome)) -> Vec<Outcome> {
    let opts = Arc::new(opts);
    let (serial, parallel): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.serial);
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let n = parallel.len();
    let mut expected: Vec<String> = parallel.iter().map(|c| c.name.clone()).collect();
    for case in parallel {
        let (sem, opts, tx) = (sem.clone(), opts.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let out = run_case(&case, &opts).await;
            let _ = tx.send(out);
        });
    }
    drop(tx);
    let mut outcomes = Vec::new();
    for _ in 0..n {
        match rx.recv().await {
            Some(o) => {
                report(&o);
                outcomes.push(o);
            }
            None => break,
        }
    }
    // A case whose task panicked never reported: it failed.
    expected.retain(|name| !outcomes.iter().any(|o: &Outcome| &o.name == name));
    for name in expected {
        let o = Outcome { name, known: None, failures: vec!["the runner panicked while running this case".into()], notes: vec![], elapsed: Duration::ZERO };
        report(&o);
        outcomes.push(o);
    }
    for case in serial {
        let o = run_case(&case, &opts).await;
        report(&o);
        outcomes.push(o);
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    outcomes
}
