//! Client connection ids and the sessions behind them, for `KILL [QUERY] <id>` and
//! COM_PROCESS_KILL.
//!
//! Clients see the ids Sluice hands out in its handshake, and backend thread ids through
//! `CONNECTION_ID()` and the process list; the registry maps either to the backend
//! connection currently serving that session, so a kill acts on the right backend thread
//! (<https://mariadb.com/kb/en/kill/>). Sluice's ids start at [`FIRST_ID`] so the two kinds
//! never meet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use crate::sync::Locked;

use tokio::sync::Notify;

/// What the registry knows about one session.
#[derive(Debug, Clone)]
pub struct Entry {
    pub user: String,
    /// `(backend address, backend thread id)` of the connection running (or that last
    /// ran) the session's statement. A cell of its own, so the session updates it
    /// without locking the registry.
    pub current: Current,
    /// The backend connection that ran the session's last statement, held or not (a
    /// multiplexed session gave it back): how a backend thread id a client saw in
    /// `CONNECTION_ID()` leads to its session.
    pub last: LastUsed,
    /// Every backend connection the session holds, `(address, thread id)`.
    pub backends: Vec<(String, u32)>,
    /// Notified when the session is killed with `KILL CONNECTION`, and by
    /// [`Registry::wake_all`] (the session tells the two apart by the proxy's signals).
    pub killed: Arc<Notify>,
    /// The client's address.
    pub peer: String,
    /// What the session is doing (`SHOW SLUICE SESSIONS`).
    pub activity: Activity,
}

/// What a session is doing now; its own cell (the session locks it twice per command,
/// the admin interface when it lists sessions).
pub type Activity = Arc<Mutex<ActivityInfo>>;

#[derive(Debug, Clone, Default)]
pub struct ActivityInfo {
    /// The statement running now (its digest) and when it started.
    pub statement: Option<(Arc<crate::route::class::DigestId>, tokio::time::Instant)>,
    /// A command other than a statement running now (`COM_PING`, …) and when it started.
    pub command: Option<(&'static str, tokio::time::Instant)>,
    /// Why the session keeps its backend connection (multiplexing pin), if it does.
    pub pin: Option<&'static str>,
    /// Commands the session has run.
    pub commands: u64,
    /// When the session logged in.
    pub since: Option<tokio::time::Instant>,
}

/// The backend connection a session is using, shared by the session and the registry.
pub type Current = Arc<Mutex<Option<(String, u32)>>>;

/// The backend thread a session used last on each node, `(address, thread id)`.
pub type LastUsed = Arc<Mutex<Vec<(String, u32)>>>;

/// Parsed `KILL` statement that Sluice must answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    Query(u64),
    Connection(u64),
    /// `KILL ... USER name`: would act on every session of a backend account.
    User,
}

/// The first connection id Sluice hands out. Clients also see backend thread ids (from
/// `CONNECTION_ID()`, `SHOW PROCESSLIST`) and may `KILL` those; starting Sluice's ids
/// far above any thread id a server reaches keeps the two kinds apart.
pub const FIRST_ID: u32 = 1 << 30;

/// Session registry; ids are allocated from [`FIRST_ID`] upward (wrapping back to it),
/// skipping ids still in use.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u32,
    sessions: BTreeMap<u32, Entry>,
}

impl Registry {
    pub fn register(&self, user: String, peer: &str) -> (u32, Arc<Notify>, Current, LastUsed, Activity) {
        let mut g = self.inner.locked();
        loop {
            g.next = g.next.wrapping_add(1).max(FIRST_ID);
            let id = g.next;
            if !g.sessions.contains_key(&id) {
                let killed = Arc::new(Notify::new());
                let current = Current::default();
                let last = LastUsed::default();
                let activity = Activity::default();
                g.sessions.insert(id, Entry { user, current: current.clone(), last: last.clone(), backends: Vec::new(), killed: killed.clone(), peer: peer.to_string(), activity: activity.clone() });
                return (id, killed, current, last, activity);
            }
        }
    }

    /// Wakes every session's wait for its next command (the proxy started shutting
    /// down or draining): each then reads the proxy's signals.
    pub fn wake_all(&self) {
        for e in self.inner.locked().sessions.values() {
            e.killed.notify_one();
        }
    }

    pub fn set_user(&self, id: u32, user: &str) {
        if let Some(e) = self.inner.locked().sessions.get_mut(&id) {
            e.user = user.to_string();
        }
    }

    /// The session opened a backend connection.
    pub fn add_backend(&self, id: u32, addr: &str, thread: u32) {
        if let Some(e) = self.inner.locked().sessions.get_mut(&id) {
            e.backends.retain(|(a, _)| a != addr);
            e.backends.push((addr.to_string(), thread));
        }
    }

    /// The session closed its backend connection to `addr`.
    pub fn remove_backend(&self, id: u32, addr: &str) {
        if let Some(e) = self.inner.locked().sessions.get_mut(&id) {
            e.backends.retain(|(a, _)| a != addr);
        }
    }

    pub fn get(&self, id: u32) -> Option<Entry> {
        self.inner.locked().sessions.get(&id).cloned()
    }

    /// The session served by backend thread `thread` on `addr`, if it is one of ours.
    pub fn by_backend_thread(&self, addr: &str, thread: u64) -> Option<(u32, Entry)> {
        let g = self.inner.locked();
        g.sessions
            .iter()
            .find(|(_, e)| e.backends.iter().any(|(a, t)| a == addr && u64::from(*t) == thread))
            .or_else(|| {
                // Multiplexed sessions hold no connection of their own: the one that last
                // ran a statement on that backend connection.
                g.sessions.iter().find(|(_, e)| e.backends.is_empty() && e.last.locked().iter().any(|(a, t)| a == addr && u64::from(*t) == thread))
            })
            .map(|(id, e)| (*id, e.clone()))
    }

    /// Every session, by id.
    pub fn snapshot(&self) -> Vec<(u32, Entry)> {
        self.inner.locked().sessions.iter().map(|(id, e)| (*id, e.clone())).collect()
    }

    pub fn remove(&self, id: u32) {
        self.inner.locked().sessions.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.inner.locked().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Recognises `KILL [HARD|SOFT] [CONNECTION|QUERY] <number>` (and `KILL ... USER ...`)
/// with a cheap token scan; anything else is not a kill Sluice handles.
pub fn parse_kill(sql: &[u8]) -> Option<Kill> {
    let mut toks = Tokens { s: sql, i: 0 };
    if !toks.next()?.eq_ignore_ascii_case(b"KILL") {
        return None;
    }
    let mut t = toks.next()?;
    if t.eq_ignore_ascii_case(b"HARD") || t.eq_ignore_ascii_case(b"SOFT") {
        t = toks.next()?;
    }
    let mut query = false;
    if t.eq_ignore_ascii_case(b"CONNECTION") {
        t = toks.next()?;
    } else if t.eq_ignore_ascii_case(b"QUERY") {
        query = true;
        t = toks.next()?;
        if t.eq_ignore_ascii_case(b"ID") {
            // KILL QUERY ID <query id>: names a query, not a connection; left to the server.
            return None;
        }
    }
    if t.eq_ignore_ascii_case(b"USER") {
        return Some(Kill::User);
    }
    let id: u64 = std::str::from_utf8(t).ok()?.parse().ok()?;
    match toks.next() {
        None => {}
        Some(b";") if toks.next().is_none() => {}
        _ => return None,
    }
    Some(if query { Kill::Query(id) } else { Kill::Connection(id) })
}

/// Whitespace/comment-skipping tokenizer: words, numbers and single punctuation bytes.
struct Tokens<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Tokens<'a> {
    fn skip_space(&mut self) {
        loop {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
            let rest = &self.s[self.i..];
            if rest.starts_with(b"/*") {
                match rest[2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => self.i += p + 4,
                    None => self.i = self.s.len(),
                }
            } else if rest.starts_with(b"#") || rest.starts_with(b"-- ") {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(p) => self.i += p + 1,
                    None => self.i = self.s.len(),
                }
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.i;
        let b = *self.s.get(start)?;
        if b.is_ascii_alphanumeric() || b == b'_' {
            while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
                self.i += 1;
            }
        } else {
            self.i += 1;
        }
        Some(&self.s[start..self.i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms_are_recognised() {
        assert_eq!(parse_kill(b"KILL 5"), Some(Kill::Connection(5)));
        assert_eq!(parse_kill(b"kill connection 7;"), Some(Kill::Connection(7)));
        assert_eq!(parse_kill(b"  /* c */ KILL QUERY 9"), Some(Kill::Query(9)));
        assert_eq!(parse_kill(b"KILL HARD QUERY 3"), Some(Kill::Query(3)));
        assert_eq!(parse_kill(b"KILL USER app"), Some(Kill::User));
    }

    #[test]
    fn non_kill_statements_are_left_alone() {
        assert_eq!(parse_kill(b"SELECT 1"), None);
        assert_eq!(parse_kill(b"KILL QUERY ID 5"), None);
        assert_eq!(parse_kill(b"KILL CONNECTION_ID()"), None);
        assert_eq!(parse_kill(b"KILL 5; SELECT 1"), None);
        assert_eq!(parse_kill(b"KILLER 5"), None);
    }

    #[test]
    fn ids_are_unique_and_reused_only_after_removal() {
        let r = Registry::default();
        let (a, _, cur, _, _) = r.register("u".into(), "10.0.0.1:5000");
        let (b, _, _, _, _) = r.register("u".into(), "10.0.0.2:5000");
        assert_ne!(a, b);
        assert!(a >= FIRST_ID && b >= FIRST_ID, "Sluice ids never look like backend thread ids");
        r.add_backend(a, "x:1", 77);
        r.add_backend(a, "y:1", 78);
        *cur.lock().unwrap() = Some(("y:1".into(), 78));
        assert_eq!(r.by_backend_thread("x:1", 77).map(|(id, _)| id), Some(a));
        assert_eq!(r.by_backend_thread("y:1", 78).map(|(id, _)| id), Some(a));
        assert!(r.by_backend_thread("x:2", 77).is_none());
        assert_eq!(*r.get(a).unwrap().current.lock().unwrap(), Some(("y:1".into(), 78)));
        r.remove_backend(a, "y:1");
        assert!(r.by_backend_thread("y:1", 78).is_none());
        r.remove(a);
        assert!(r.get(a).is_none());
        assert_eq!(r.len(), 1);
    }
}
