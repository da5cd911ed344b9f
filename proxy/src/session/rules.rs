//! The session side of query rules and per-user limits (`crate::rules`): before a
//! statement is routed, the user's statement budget is taken and the first matching
//! rule applied — blocked statements are answered here; a rule's route becomes the
//! statement's hint (or a node for reads); its concurrency slot and statement timer
//! live in a [`RuleGuard`] the statement holds until its answer ends.

use crate::sync::Locked;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Session;
use crate::error::Error;
use crate::net::Net;
use crate::proxy::Shared;
use crate::route::class::{Classified, Hint};
use crate::rules::{kind_of, RouteTo, RuleCounters, Subject};
use crate::server::registry::Current;

/// The config's rules and limits in force.
#[derive(Debug, Default)]
pub struct Policy {
    pub rules: crate::rules::Rules,
    pub limits: crate::rules::Limits,
}

impl Policy {
    /// Built from a config (its rules were compiled when it was validated).
    pub fn from_config(cfg: &crate::config::Config, old: Option<&Policy>) -> Policy {
        let rules = match old {
            Some(o) => crate::rules::Rules::rebuild(&cfg.rules, &o.rules),
            None => crate::rules::Rules::compile(&cfg.rules),
        };
        let rules = rules.unwrap_or_else(|e| {
            tracing::error!(error = %e, "query rules refused; none apply");
            crate::rules::Rules::default()
        });
        let limits = match old {
            Some(o) => crate::rules::Limits::rebuild(&cfg.limits, &o.limits),
            None => crate::rules::Limits::new(&cfg.limits),
        };
        Policy { rules, limits }
    }
}

/// A rule's bound on a statement's answer (`max_rows`, `max_bytes`).
#[derive(Clone)]
pub(super) struct CapRule {
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    pub error: (u16, &'static str, String),
    pub counters: Arc<RuleCounters>,
}

/// What a statement holds because of a rule: its concurrency slot and its timer.
#[derive(Default)]
pub(super) struct RuleGuard {
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    timer: Option<Timer>,
}

impl RuleGuard {
    /// The statement's answer ended: stops the timer, or waits for the kill it started
    /// (so the backend connection is not given back while a KILL for it is on its
    /// way).
    /// Nothing to wait for (no timer): the default when no rule matched.
    pub(super) fn idle(&self) -> bool {
        self.timer.is_none()
    }

    pub(super) async fn finish(mut self) {
        if let Some(t) = self.timer.take() {
            t.disarm().await;
        }
    }
}

/// Kills the session's running statement after a delay unless disarmed first.
struct Timer {
    cancel: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<()>,
}

impl Timer {
    fn arm<N: Net>(shared: Arc<Shared<N>>, current: Current, after: Duration, conn: u32, counters: Arc<RuleCounters>) -> Timer {
        let (cancel, cancelled) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel();
        tokio::spawn(async move {
            let fire = tokio::select! {
                biased;
                _ = cancelled => false,
                _ = tokio::time::sleep(after) => true,
            };
            // The session holds its backend connection until `disarm` returns, so the
            // thread in `current` runs this statement (or has just finished it).
            let running = if fire { current.locked().clone() } else { None };
            if let Some((node, thread)) = running {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn, node = %node, thread, after_ms = after.as_millis() as u64, "statement timeout: killing the statement");
                if let Err(e) = super::run_as_service(&shared, &node, &format!("KILL QUERY {thread}")).await {
                    tracing::warn!(conn, node = %node, error = %e, "statement timeout: the kill failed");
                }
            }
            let _ = finished.send(());
        });
        Timer { cancel: Some(cancel), done }
    }

    async fn disarm(mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        let _ = (&mut self.done).await;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
    }
}

impl<N: Net> Session<N> {
    /// Applies the user's limits and the first matching rule to a statement about to
    /// be routed. `Ok(None)`: it was answered here (blocked, throttled) and must not
    /// run. `c` gets the rule's routing hint.
    pub(super) async fn apply_rules(&mut self, c: &mut Arc<Classified>, sql: &[u8], started: tokio::time::Instant) -> Result<Option<RuleGuard>, Error> {
        self.rule_cap = None;
        if self.policy.rules.is_empty() && self.policy.limits.is_empty() {
            // The default: no rule, no limit (and no reference count touched).
            return Ok(Some(RuleGuard::default()));
        }
        let policy = self.policy.clone();
        if !policy.limits.take_statement(&self.login.user, started) {
            let rate = policy.limits.of(&self.login.user).and_then(|l| l.statements_per_second).unwrap_or(0);
            let msg = format!("User '{}' has exceeded the 'statements_per_second' resource (current value: {rate})", self.login.user);
            self.send_err(1, 1226, "42000", &msg).await;
            self.statement_done(c, started, None);
            return Ok(None);
        }
        if policy.rules.is_empty() {
            return Ok(Some(RuleGuard::default()));
        }
        let subject = Subject { user: &self.login.user, schema: self.state.schema.as_deref(), digest: c.digest.0.as_ref().map(|d| d.hash), sql, kind: kind_of(c) };
        let Some(rule) = policy.rules.first(&subject) else { return Ok(Some(RuleGuard::default())) };
        if rule.cfg.block {
            rule.counters.blocked.fetch_add(1, Ordering::Relaxed);
            let (code, state, msg) = rule.block_error();
            tracing::debug!(conn = self.id, rule = %rule.name, "statement blocked by a query rule");
            self.send_err(1, code, state, &msg).await;
            self.statement_done(c, started, None);
            return Ok(None);
        }
        let slot = match rule.slot().await {
            Ok(s) => s,
            Err(msg) => {
                self.send_err(1, crate::protocol::constants::err::ER_UNKNOWN_ERROR, "HY000", &msg).await;
                self.statement_done(c, started, None);
                return Ok(None);
            }
        };
        match &rule.route {
            Some(RouteTo::Primary) => Arc::make_mut(c).hint = Some(Hint::Primary),
            Some(RouteTo::Replica) => Arc::make_mut(c).hint = Some(Hint::Replica),
            Some(RouteTo::Node(n)) if c.is_read() => self.rule_node = Some(n.clone()),
            _ => {}
        }
        if (rule.cfg.max_rows.is_some() || rule.cfg.max_bytes.is_some())
            && c.is_read()
            && c.statements <= 1
        {
            // Reads only: dropping the rest of a read's answer changes nothing else;
            // a write's or a multi-statement's later effects would be hidden.
            self.rule_cap = Some(CapRule {
                max_rows: rule.cfg.max_rows,
                max_bytes: rule.cfg.max_bytes,
                error: rule.cap_error(),
                counters: rule.counters.clone(),
            });
        }
        let timer = rule.cfg.timeout_ms.map(|ms| {
            Timer::arm(
                self.shared.clone(),
                self.current.clone(),
                Duration::from_millis(ms),
                self.id,
                rule.counters.clone(),
            )
        });
        Ok(Some(RuleGuard { _slot: slot, timer }))
    }
}
