//! Prepared statements across several nodes.
//!
//! The client prepares a statement once and knows it by one id; Sluice prepares it on
//! every node it may run on, lazily (the first time the router sends an execute
//! there), and maps the client's id to each node's own id. The statement is routed by
//! its SQL, classified at prepare time. Implements the id and parameter-type handling
//! of <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>:
//! an execute whose `new_params_bound_flag` is 0 relies on types bound by an earlier
//! execute *on the same server statement*, so when the statement runs on a node that
//! has not seen the client's current types, Sluice sends them (flag 1) there.
//! Plain synchronous code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
    /// The statement's id on each node it is prepared on.
    pub ids: BTreeMap<String, u32>,
    /// The parameter types the client bound last (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    /// Nodes whose server statement has `types` bound.
    pub types_on: BTreeSet<String>,
    /// COM_STMT_SEND_LONG_DATA went to this node since the last execute: the next
    /// execute must run there.
    pub long_data_on: Option<String>,
    /// Node of the last execute (where a cursor lives, where COM_STMT_RESET goes).
    pub last_node: Option<String>,
}

/// The session's prepared statements, by client id.
#[derive(Debug, Default)]
pub struct Statements {
    by_id: BTreeMap<u32, Stmt>,
    last: Option<u32>,
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
    /// The client id for a statement the node knows as `node_id`: the same unless the
    /// session already uses it for another statement (prepared on a different node
    /// earlier), then the next free one.
    pub fn client_id_for(&self, node_id: u32) -> u32 {
        free_id(&self.used(), node_id)
    }

    /// The client ids in use.
    pub fn used(&self) -> BTreeSet<u32> {
        self.by_id.keys().copied().collect()
    }

    /// Registers a statement the client prepared, under `id` (from [`Self::client_id_for`]).
    pub fn insert(&mut self, id: u32, node: &str, node_id: u32, prepare: &[u8], class: Arc<Classified>, params: u16) {
        let mut ids = BTreeMap::new();
        ids.insert(node.to_string(), node_id);
        self.by_id.insert(
            id,
            Stmt { prepare: prepare.to_vec(), class, params, ids, types: None, types_on: BTreeSet::new(), long_data_on: None, last_node: Some(node.to_string()) },
        );
        self.last = Some(id);
    }

    /// Registers a statement under the id [`Self::client_id_for`] gives; returns it.
    pub fn add(&mut self, node: &str, node_id: u32, prepare: &[u8], class: Arc<Classified>, params: u16) -> u32 {
        let id = self.client_id_for(node_id);
        self.insert(id, node, node_id, prepare, class, params);
        id
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

    /// COM_STMT_CLOSE: forgets the statement; returns its per-node ids.
    pub fn remove(&mut self, id: u32) -> Option<BTreeMap<String, u32>> {
        if self.last == Some(id) {
            self.last = None;
        }
        self.by_id.remove(&id).map(|s| s.ids)
    }

    /// A node's connection went away: its server statements with it.
    pub fn forget_node(&mut self, node: &str) {
        for s in self.by_id.values_mut() {
            s.ids.remove(node);
            s.types_on.remove(node);
            if s.long_data_on.as_deref() == Some(node) {
                s.long_data_on = None;
            }
            if s.last_node.as_deref() == Some(node) {
                s.last_node = None;
            }
        }
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: the server dropped every statement.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last = None;
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// `node_id`, or the next id after it that is not in `used` (nor 0 or [`LAST_PREPARED`]).
pub fn free_id(used: &BTreeSet<u32>, node_id: u32) -> u32 {
    let mut id = node_id;
    while used.contains(&id) || id == LAST_PREPARED || id == 0 {
        id = id.wrapping_add(1);
    }
    id
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

/// Prepares an execute `payload` for `node`: notes the types it binds, or adds the
/// client's last bound types when the node's server statement has not seen them.
/// Returns the payload to send (with the node's statement id).
pub fn execute_for_node<'a>(stmt: &mut Stmt, node: &str, node_id: u32, payload: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    let Some(l) = layout(payload, stmt.params) else { return with_id(payload, node_id) };
    let types_len = 2 * usize::from(stmt.params);
    if payload[l.flag] == 1 {
        if let Some(types) = payload.get(l.flag + 1..l.flag + 1 + types_len) {
            if stmt.types.as_deref() != Some(types) {
                stmt.types = Some(types.to_vec());
                stmt.types_on.clear();
            }
            stmt.types_on.insert(node.to_string());
        }
        return with_id(payload, node_id);
    }
    match &stmt.types {
        Some(types) if !stmt.types_on.contains(node) => {
            let mut p = Vec::with_capacity(payload.len() + types_len);
            p.extend_from_slice(&payload[..l.flag]);
            p.push(1);
            p.extend_from_slice(types);
            p.extend_from_slice(&payload[l.flag + 1..]);
            p[1..5].copy_from_slice(&node_id.to_le_bytes());
            stmt.types_on.insert(node.to_string());
            std::borrow::Cow::Owned(p)
        }
        _ => with_id(payload, node_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn client_id_is_the_first_nodes_id_unless_taken() {
        let mut s = Statements::default();
        assert_eq!(s.add("p", 1, b"\x16SELECT 1", class(), 0), 1);
        // A statement prepared first on another node that happens to get id 1 there.
        assert_eq!(s.add("r", 1, b"\x16SELECT 2", class(), 0), 2);
        assert_eq!(s.resolve(LAST_PREPARED), Some(2));
        assert_eq!(s.remove(1).unwrap().get("p"), Some(&1));
        assert_eq!(s.resolve(1), None);
    }

    #[test]
    fn execute_gets_the_nodes_statement_id() {
        let mut s = Statements::default();
        let id = s.add("p", 5, b"\x16SELECT ?", class(), 2);
        let st = s.get_mut(id).unwrap();
        st.ids.insert("r".into(), 9);
        let p = exec(5, true);
        let out = execute_for_node(st, "r", 9, &p);
        assert_eq!(&out[1..5], &9u32.to_le_bytes());
        assert_eq!(out.len(), p.len());
    }

    #[test]
    fn execute_without_types_on_a_node_that_never_saw_them_carries_the_types() {
        let mut s = Statements::default();
        let id = s.add("p", 5, b"\x16SELECT ?", class(), 2);
        let st = s.get_mut(id).unwrap();
        // First execute binds types on the primary.
        let first = exec(5, true);
        assert_eq!(&*execute_for_node(st, "p", 5, &first), &first[..]);
        // The next one (flag 0) goes to a replica: the types are added.
        let second = exec(5, false);
        let out = execute_for_node(st, "r", 7, &second).into_owned();
        let mut want = exec(7, true);
        want[1..5].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(out, want);
        // On the primary, which has them, the execute goes as it is.
        assert_eq!(&*execute_for_node(st, "p", 5, &second), &second[..]);
        // Once sent, the replica has them too.
        assert_eq!(execute_for_node(st, "r", 7, &second).len(), second.len());
    }

    #[test]
    fn new_types_invalidate_the_other_nodes() {
        let mut s = Statements::default();
        let id = s.add("p", 5, b"\x16SELECT ?", class(), 2);
        let st = s.get_mut(id).unwrap();
        execute_for_node(st, "p", 5, &exec(5, true));
        execute_for_node(st, "r", 7, &exec(5, false));
        let mut rebound = exec(5, true);
        rebound[13] = 8; // LONGLONG
        execute_for_node(st, "p", 5, &rebound);
        assert!(!st.types_on.contains("r"));
        assert!(execute_for_node(st, "r", 7, &exec(5, false)).len() > exec(5, false).len());
    }
}
