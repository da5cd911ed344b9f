//! The prepared statements one backend connection holds, whoever prepared them.
//!
//! Under multiplexing a client's statement runs on whichever connection its execute
//! borrows; the connection's cache says whether that SQL is already prepared there
//! (its server id) and which parameter types its server statement has bound last (an
//! execute with `new_params_bound_flag = 0` uses them:
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html>).
//! Bounded: beyond its size the least recently used statement is evicted and its id
//! returned so the caller closes it on the server (COM_STMT_CLOSE). Plain synchronous
//! code.

use std::collections::BTreeMap;

/// One server statement on the connection.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The server's statement id.
    pub id: u32,
    /// Parameter types its last execute bound (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    last_use: u64,
}

/// Prepared statements of one connection, by COM_STMT_PREPARE payload.
#[derive(Debug, Clone, Default)]
pub struct StmtCache {
    by_sql: BTreeMap<Vec<u8>, Cached>,
    /// `last_use` → SQL, for eviction.
    by_use: BTreeMap<u64, Vec<u8>>,
    clock: u64,
}

impl StmtCache {
    pub fn len(&self) -> usize {
        self.by_sql.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sql.is_empty()
    }

    /// The statement prepared from `sql` (payload), marked as just used.
    pub fn get(&mut self, sql: &[u8]) -> Option<&mut Cached> {
        self.clock += 1;
        let now = self.clock;
        let c = self.by_sql.get_mut(sql)?;
        self.by_use.remove(&c.last_use);
        c.last_use = now;
        self.by_use.insert(now, sql.to_vec());
        Some(c)
    }

    /// Records a statement just prepared from `sql` with server id `id`. Returns the
    /// server ids the caller must close: a statement of the same SQL it replaces, and
    /// the least recently used ones beyond `limit`.
    pub fn insert(&mut self, sql: &[u8], id: u32, limit: usize) -> Vec<u32> {
        let mut close = Vec::new();
        self.clock += 1;
        let now = self.clock;
        if let Some(old) = self.by_sql.insert(sql.to_vec(), Cached { id, types: None, last_use: now }) {
            self.by_use.remove(&old.last_use);
            if old.id != id {
                close.push(old.id);
            }
        }
        self.by_use.insert(now, sql.to_vec());
        while self.by_sql.len() > limit.max(1) {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some(c) = self.by_sql.remove(&oldest) {
                close.push(c.id);
            }
        }
        close
    }

    /// Forgets the statement with server id `id` (it was closed or failed).
    pub fn remove_id(&mut self, id: u32) {
        if let Some(sql) = self.by_sql.iter().find(|(_, c)| c.id == id).map(|(s, _)| s.clone()) {
            if let Some(c) = self.by_sql.remove(&sql) {
                self.by_use.remove(&c.last_use);
            }
        }
    }

    /// The server dropped every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.by_sql.clear();
        self.by_use.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_statement_is_evicted_beyond_the_limit() {
        let mut c = StmtCache::default();
        assert!(c.insert(b"a", 1, 2).is_empty());
        assert!(c.insert(b"b", 2, 2).is_empty());
        c.get(b"a");
        assert_eq!(c.insert(b"c", 3, 2), vec![2], "b was used least recently");
        assert_eq!(c.get(b"a").map(|s| s.id), Some(1));
        assert!(c.get(b"b").is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn preparing_the_same_sql_again_closes_the_older_statement() {
        let mut c = StmtCache::default();
        c.insert(b"a", 1, 8);
        assert_eq!(c.insert(b"a", 5, 8), vec![1]);
        assert_eq!(c.get(b"a").map(|s| s.id), Some(5));
        c.remove_id(5);
        assert!(c.is_empty());
    }
}
