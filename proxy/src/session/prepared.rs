//! Prepared statements across nodes and pooled connections.
//!
//! The client prepares a statement once and knows it by one id, which Sluice hands out
//! itself (1, 2, 3, … per session, as a server does per connection). The server
//! statements live with the backend connections ([`crate::pool::StmtCache`]): an
//! execute is prepared lazily on whichever connection runs it, keyed by the SQL and
//! the session state it was prepared under (schema, replayed `SET`s). The statement is
//! routed by its SQL, classified at prepare time. Implements the id and parameter-type
//! handling of <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>:
//! an execute whose `new_params_bound_flag` is 0 relies on types bound by an earlier
//! execute *on the same server statement*, so when the server statement has not seen
//! the client's current types, Sluice sends them (flag 1) there.
//! Plain synchronous code.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pool::stmts::Cached;
use crate::route::class::Classified;

/// MariaDB: a statement id of all ones in COM_STMT_EXECUTE means "the statement
/// prepared last" (prepare and execute sent back to back).
pub const LAST_PREPARED: u32 = u32::MAX;

/// One client-side prepared statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The COM_STMT_PREPARE payload (command byte first), to prepare it elsewhere.
    pub prepare: Vec<u8>,
    pub class: Arc<Classified>,
    pub params: u16,
    /// The parameter types the client bound last (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA went to this node since the last execute: the next
    /// execute must run there (the session keeps that connection meanwhile).
    pub long_data_on: Option<String>,
    /// Node of the last execute (where a cursor lives, where COM_STMT_RESET goes).
    pub last_node: Option<String>,
    /// The last execute opened a cursor that is not exhausted yet.
    pub cursor: bool,
    /// The schema current when the client prepared it (the server resolves its names
    /// there, whatever `USE` came later), and its key in connection caches.
    pub schema: Option<Vec<u8>>,
    pub key: Vec<u8>,
}

/// The session's prepared statements, by client id.
#[derive(Debug, Default)]
pub struct Statements {
    by_id: BTreeMap<u32, Stmt>,
    last: Option<u32>,
    /// The last id handed out.
    counter: u32,
}

/// Where the parameter block of an execute payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Offset of `new_params_bound_flag`.
    flag: usize,
}

fn layout(payload: &[u8], params: u16) -> Option<Layout> {
    if params == 0 {
        return None;
    }
    // command, id (4), flags (1), iteration count (4), null bitmap.
    let flag = 10 + usize::from(params).div_ceil(8);
    (payload.len() > flag).then_some(Layout { flag })
}

impl Statements {
    /// The id the next prepared statement gets.
    pub fn next_id(&self) -> u32 {
        let mut id = self.counter.wrapping_add(1);
        while id == 0 || id == LAST_PREPARED || self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        id
    }

    /// Registers a statement the client prepared, under `id` (from [`Self::next_id`]),
    /// first run on `node`.
    pub fn insert(&mut self, id: u32, node: &str, prepare: &[u8], class: Arc<Classified>, params: u16) {
        self.insert_keyed(id, node, prepare, class, params, None, prepare.to_vec());
    }

    /// [`Self::insert`] with the schema it was prepared in and its cache key.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_keyed(&mut self, id: u32, node: &str, prepare: &[u8], class: Arc<Classified>, params: u16, schema: Option<Vec<u8>>, key: Vec<u8>) {
        self.counter = id;
        self.by_id.insert(id, Stmt { prepare: prepare.to_vec(), class, params, types: None, long_data_on: None, last_node: Some(node.to_string()), cursor: false, schema, key });
        self.last = Some(id);
    }

    /// The client id an execute names (resolving [`LAST_PREPARED`]).
    pub fn resolve(&self, id: u32) -> Option<u32> {
        if id == LAST_PREPARED {
            return self.last;
        }
        self.by_id.contains_key(&id).then_some(id)
    }

    pub fn get(&self, id: u32) -> Option<&Stmt> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Stmt> {
        self.by_id.get_mut(&id)
    }

    /// COM_STMT_CLOSE: forgets the statement.
    pub fn remove(&mut self, id: u32) -> Option<Stmt> {
        if self.last == Some(id) {
            self.last = None;
        }
        self.by_id.remove(&id)
    }

    /// A node's connection went away: its server statements with it.
    pub fn forget_node(&mut self, node: &str) {
        for s in self.by_id.values_mut() {
            if s.long_data_on.as_deref() == Some(node) {
                s.long_data_on = None;
            }
            if s.last_node.as_deref() == Some(node) {
                s.last_node = None;
                s.cursor = false;
            }
        }
    }

    /// Some statement has an open cursor (its connection must stay with the session).
    pub fn cursor_open(&self) -> bool {
        self.by_id.values().any(|s| s.cursor)
    }

    /// Some statement has long data waiting for its execute.
    pub fn long_data_pending(&self) -> bool {
        self.by_id.values().any(|s| s.long_data_on.is_some())
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: the server dropped every statement.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last = None;
        self.counter = 0;
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Rewrites a command payload that names a statement (`[cmd][id u32 LE]…`) to carry
/// `node_id` instead of the client's id; no copy when they are equal.
pub fn with_id<'a>(payload: &'a [u8], node_id: u32) -> std::borrow::Cow<'a, [u8]> {
    if payload.len() >= 5 && payload[1..5] == node_id.to_le_bytes() {
        return std::borrow::Cow::Borrowed(payload);
    }
    let mut p = payload.to_vec();
    if p.len() >= 5 {
        p[1..5].copy_from_slice(&node_id.to_le_bytes());
    }
    std::borrow::Cow::Owned(p)
}

/// Prepares an execute `payload` for the server statement `server` (of the connection
/// that runs it): notes the types it binds, or adds the client's last bound types when
/// that server statement has others. Returns the payload to send (with the server's
/// statement id).
pub fn execute_for_conn<'a>(stmt: &mut Stmt, server: &mut Cached, payload: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    let node_id = server.id;
    let Some(l) = layout(payload, stmt.params) else { return with_id(payload, node_id) };
    let types_len = 2 * usize::from(stmt.params);
    if payload[l.flag] == 1 {
        if let Some(types) = payload.get(l.flag + 1..l.flag + 1 + types_len) {
            if stmt.types.as_deref() != Some(types) {
                stmt.types = Some(types.to_vec());
            }
            if server.types.as_deref() != Some(types) {
                server.types = Some(types.to_vec());
            }
        }
        return with_id(payload, node_id);
    }
    match &stmt.types {
        Some(types) if server.types.as_ref() != Some(types) => {
            let mut p = Vec::with_capacity(payload.len() + types_len);
            p.extend_from_slice(&payload[..l.flag]);
            p.push(1);
            p.extend_from_slice(types);
            p.extend_from_slice(&payload[l.flag + 1..]);
            p[1..5].copy_from_slice(&node_id.to_le_bytes());
            server.types = Some(types.clone());
            std::borrow::Cow::Owned(p)
        }
        _ => with_id(payload, node_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::StmtCache;
    use crate::route::class::Kind;

    fn class() -> Arc<Classified> {
        Arc::new(Classified::new(Kind::Read))
    }

    /// An execute of statement `id` with two parameters.
    fn exec(id: u32, bound: bool) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0); // null bitmap
        p.push(bound as u8);
        if bound {
            p.extend_from_slice(&[3, 0, 253, 0]); // LONG, VAR_STRING
        }
        p.extend_from_slice(&[7, 0, 0, 0, 1, b'x']);
        p
    }

    fn server(cache: &mut StmtCache, sql: &[u8], id: u32) -> Cached {
        cache.insert(sql, id, 16);
        cache.get(sql).unwrap().clone()
    }

    #[test]
    fn client_ids_count_up_per_session_like_a_server() {
        let mut s = Statements::default();
        let a = s.next_id();
        s.insert(a, "p", b"\x16SELECT 1", class(), 0);
        let b = s.next_id();
        s.insert(b, "r", b"\x16SELECT 2", class(), 0);
        assert_eq!((a, b), (1, 2));
        assert_eq!(s.resolve(LAST_PREPARED), Some(2));
        assert!(s.remove(1).is_some());
        assert_eq!(s.resolve(1), None);
        assert_eq!(s.next_id(), 3, "ids are not reused within a session");
        s.clear();
        assert_eq!(s.next_id(), 1);
    }

    #[test]
    fn execute_gets_the_connections_statement_id() {
        let mut s = Statements::default();
        s.insert(1, "p", b"\x16SELECT ?", class(), 2);
        let st = s.get_mut(1).unwrap();
        let mut cache = StmtCache::default();
        let mut srv = server(&mut cache, b"\x16SELECT ?", 9);
        let p = exec(1, true);
        let out = execute_for_conn(st, &mut srv, &p);
        assert_eq!(&out[1..5], &9u32.to_le_bytes());
        assert_eq!(out.len(), p.len());
    }

    #[test]
    fn execute_without_types_on_a_connection_whose_statement_never_saw_them_carries_the_types() {
        let mut s = Statements::default();
        s.insert(5, "p", b"\x16SELECT ?", class(), 2);
        let st = s.get_mut(5).unwrap();
        let mut cache = StmtCache::default();
        let mut first_conn = server(&mut cache, b"\x16SELECT ?", 5);
        let first = exec(5, true);
        assert_eq!(&*execute_for_conn(st, &mut first_conn, &first), &first[..]);
        // The next one (flag 0) runs on another connection: the types are added.
        let mut other = StmtCache::default();
        let mut second_conn = server(&mut other, b"\x16SELECT ?", 7);
        let second = exec(5, false);
        let out = execute_for_conn(st, &mut second_conn, &second).into_owned();
        let mut want = exec(7, true);
        want[1..5].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(out, want);
        // On the first connection, which has them, the execute goes as it is.
        assert_eq!(&*execute_for_conn(st, &mut first_conn, &second), &second[..]);
        // Once sent, the other connection has them too.
        assert_eq!(execute_for_conn(st, &mut second_conn, &second).len(), second.len());
    }

    #[test]
    fn types_bound_by_another_session_on_a_shared_statement_are_replaced() {
        let mut a = Statements::default();
        a.insert(1, "p", b"\x16SELECT ?", class(), 2);
        let mut cache = StmtCache::default();
        let mut srv = server(&mut cache, b"\x16SELECT ?", 3);
        execute_for_conn(a.get_mut(1).unwrap(), &mut srv, &exec(1, true));
        // Another session binds other types on the same server statement.
        let mut b = Statements::default();
        b.insert(1, "p", b"\x16SELECT ?", class(), 2);
        let mut rebound = exec(1, true);
        rebound[13] = 8; // LONGLONG
        execute_for_conn(b.get_mut(1).unwrap(), &mut srv, &rebound);
        // The first session's next execute without types carries its own again.
        assert!(execute_for_conn(a.get_mut(1).unwrap(), &mut srv, &exec(1, false)).len() > exec(1, false).len());
    }
}
