//! What a session reports about itself: per-user and per-node counters
//! (`crate::metrics`), statement digests, the slow log, and the activity the admin
//! interface's `SHOW SLUICE SESSIONS` shows. Only atomics of structures the session
//! looked up once are touched per statement (digests through the session's
//! [`crate::metrics::digests::DigestHandles`]); the session's own activity cell is
//! locked by the session and, rarely, by the admin interface (never by another
//! session).

use crate::sync::Locked;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::Session;
use crate::metrics::UserMetrics;
use crate::net::Net;
use crate::protocol::packets::err_payload;
use crate::protocol::response::Summary;
use crate::route::class::Classified;

/// Counts a session of a user as open for as long as it lives.
pub(super) struct OpenSession(Arc<UserMetrics>);

impl OpenSession {
    pub(super) fn new(m: Arc<UserMetrics>) -> Self {
        m.connections.fetch_add(1, Ordering::Relaxed);
        OpenSession(m)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<N: Net> Session<N> {
    /// Answers the client with an error of Sluice's own (counted for the user).
    pub(super) async fn send_err(&mut self, seq: u8, code: u16, state: &str, msg: &str) {
        self.user_metrics.errors.add(code);
        let _ = self.client.send(seq, &err_payload(code, state, msg)).await;
    }

    /// A command arrived (for `SHOW SLUICE SESSIONS`).
    pub(super) fn command_started(&self, cmd: u8, started: Instant) {
        let mut a = self.activity.locked();
        a.command = Some((crate::protocol::constants::com::name(cmd), started));
        a.commands += 1;
    }

    /// The command is a statement (text or prepared), classified as `c`.
    pub(super) fn statement_started(&self, c: &Classified, started: Instant) {
        if let Some(d) = &c.digest.0 {
            self.activity.locked().statement = Some((d.clone(), started));
        }
    }

    /// A command was answered: the user's command count, latency and bytes. Returns
    /// the time it ended.
    pub(super) fn command_done(&mut self, started: Instant) -> Instant {
        let now = self.ended.take().unwrap_or_else(Instant::now);
        {
            let mut a = self.activity.locked();
            a.statement = None;
            a.command = None;
            a.pin = self.pinned.map(|p| p.name());
        }
        let m = &self.user_metrics;
        m.statements.fetch_add(1, Ordering::Relaxed);
        m.latency.observe_ns(now.saturating_duration_since(started).as_nanos() as u64);
        let (r, w) = (self.client.bytes_read, self.client.bytes_written);
        m.bytes_in.fetch_add(r - self.bytes_counted.0, Ordering::Relaxed);
        m.bytes_out.fetch_add(w - self.bytes_counted.1, Ordering::Relaxed);
        self.bytes_counted = (r, w);
        now
    }

    /// A statement's response from `node` ended (or failed): the node's counters, and
    /// the error for the user.
    pub(super) fn node_done(&mut self, node: &str, started: Instant, sent: usize, written_before: u64, summary: Option<&Summary>) {
        let now = Instant::now();
        self.ended = Some(now);
        let error = summary.and_then(|s| s.error);
        if let Some(code) = error {
            self.user_metrics.errors.add(code);
        }
        if let Some(m) = self.node_metrics.get(node) {
            let out = self.client.bytes_written - written_before;
            m.statement(self.reason, now.saturating_duration_since(started).as_nanos() as u64, sent as u64, out, error);
        }
    }

    /// A statement (text or prepared) ended: its digest's figures, and the slow log.
    /// `ran` is where it ran and its summary, `None` when Sluice answered it with an
    /// error of its own.
    pub(super) fn statement_done(&mut self, c: &Classified, started: Instant, ran: Option<(&str, &Summary)>) {
        let Some(digest) = &c.digest.0 else { return };
        let now = self.ended.unwrap_or_else(Instant::now);
        let ns = now.saturating_duration_since(started).as_nanos() as u64;
        let rows = ran.map_or(0, |(_, s)| s.affected_rows.unwrap_or(s.rows));
        let error = ran.is_none_or(|(_, s)| s.error.is_some());
        let m = &self.shared.metrics;
        self.digest_handles.record(&m.digests, digest, ns, rows, error, now);
        let slow_ns = m.slow_ns.load(Ordering::Relaxed);
        if slow_ns > 0 && ns >= slow_ns {
            m.slow_statements.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "sluice::slow",
                conn = self.id,
                user = %self.login.user,
                node = ran.map_or("-", |(n, _)| n),
                duration_ms = ns / 1_000_000,
                rows,
                error = ran.and_then(|(_, s)| s.error),
                digest = %format_args!("{:016x}", digest.hash),
                statement = %digest.text,
                "slow statement"
            );
        }
    }
}
