//! Query rules and per-user limits (`[[rules]]`, `[[limits]]`; `docs/operations.md`).
//!
//! A rule matches on user, schema, digest, a regular expression over the statement text
//! and the statement's kind; its actions block the statement with a configured MySQL
//! error, route it (primary, replica, a node), kill it on its backend after a timeout,
//! or bound how many statements it matches run at once. Rules are tried in order and
//! the first that matches applies; each counts its matches. Matching ([`Rules::first`])
//! is synchronous; the session carries out the actions. Per-user limits bound open
//! sessions and statements per second ([`Limits`]).
//!
//! The rule set is rebuilt by a config reload (`crate::reload`); counters of rules
//! whose name stays carry over.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::{RuleConfig, RuleKind, UserLimit};
use crate::route::class::{Classified, Kind};

/// Where a rule sends a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTo {
    Primary,
    Replica,
    Node(String),
}

/// A rule's counters.
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// Statements the rule matched.
    pub hits: AtomicU64,
    /// Statements it blocked.
    pub blocked: AtomicU64,
    /// Statements killed at its timeout.
    pub timed_out: AtomicU64,
    /// Statements refused because its queue was full or the wait was too long.
    pub throttled: AtomicU64,
    /// Statements that had to wait for their turn.
    pub queued: AtomicU64,
    /// Answers cut at `max_rows` / `max_bytes`.
    pub capped: AtomicU64,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub cfg: RuleConfig,
    regex: Option<regex::bytes::Regex>,
    digest: Option<u64>,
    pub route: Option<RouteTo>,
    /// `max_concurrency` permits, and how many statements wait for one.
    pub slots: Option<Arc<Semaphore>>,
    pub waiting: AtomicU32,
    pub counters: Arc<RuleCounters>,
}

/// What a statement is, for matching.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub schema: Option<&'a [u8]>,
    pub digest: Option<u64>,
    pub sql: &'a [u8],
    pub kind: RuleKind,
}

/// The kind a rule's `kind` matches for a classified statement.
pub fn kind_of(c: &Classified) -> RuleKind {
    match c.kind {
        Kind::Read => RuleKind::Read,
        Kind::Write | Kind::LockingRead => RuleKind::Write,
        Kind::Begin { .. } | Kind::TransactionControl => RuleKind::Transaction,
        Kind::SessionBound(_) | Kind::SessionSet | Kind::Use => RuleKind::Session,
        Kind::Diagnostics | Kind::SluiceSet | Kind::SluiceShow | Kind::Unknown => RuleKind::Other,
    }
}

/// The default error of a blocking rule.
pub const BLOCK_CODE: u16 = 1105;
/// The default error of an answer cut by `max_rows` / `max_bytes`: ER_TOO_BIG_SELECT.
pub const CAP_CODE: u16 = 1104;

/// An ordered rule set.
#[derive(Debug, Default)]
pub struct Rules {
    pub list: Vec<Rule>,
}

impl Rules {
    /// Compiles `[[rules]]`; `Err` names the rule and the problem.
    pub fn compile(cfgs: &[RuleConfig]) -> Result<Rules, String> {
        let mut list = Vec::with_capacity(cfgs.len());
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in cfgs.iter().enumerate() {
            let name = c.name.clone().unwrap_or_else(|| format!("rule{}", i + 1));
            let bad = |m: String| Err(format!("[[rules]] {name:?}: {m}"));
            if !names.insert(name.clone()) {
                return bad("two rules have this name".into());
            }
            let regex = match &c.pattern {
                Some(p) => match regex::bytes::RegexBuilder::new(p).size_limit(1 << 20).build() {
                    Ok(r) => Some(r),
                    Err(e) => return bad(format!("match: {}", e.to_string().lines().last().unwrap_or("bad regular expression"))),
                },
                None => None,
            };
            let digest = match &c.digest {
                Some(d) if d.len() == 16 => match u64::from_str_radix(d, 16) {
                    Ok(h) => Some(h),
                    Err(_) => return bad(format!("digest {d:?} is not 16 hex digits")),
                },
                Some(d) => return bad(format!("digest {d:?} is not 16 hex digits")),
                None => None,
            };
            let route =
                match c.route.as_deref() {
                    None => None,
                    Some("primary") => Some(RouteTo::Primary),
                    Some("replica") => Some(RouteTo::Replica),
                    Some(n)
                        if n.rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                    {
                        Some(RouteTo::Node(n.to_string()))
                    }
                    Some(other) => return bad(format!(
                        "route {other:?}: use \"primary\", \"replica\" or a node's \"host:port\""
                    )),
                };
            let caps = c.max_rows.is_some() || c.max_bytes.is_some();
            if c.block
                && (route.is_some()
                    || c.timeout_ms.is_some()
                    || c.max_concurrency.is_some()
                    || caps)
            {
                return bad("block cannot be combined with other actions".into());
            }
            if !c.block
                && route.is_none()
                && c.timeout_ms.is_none()
                && c.max_concurrency.is_none()
                && !caps
            {
                return bad("no action: set block, route, timeout_ms, max_concurrency, max_rows or max_bytes".into());
            }
            if (c.error_code.is_some() || c.error_message.is_some()) && !c.block && !caps {
                return bad(
                    "error_code / error_message only go with block = true, max_rows or max_bytes"
                        .into(),
                );
            }
            if c.max_bytes.is_some_and(|b| b < 4) {
                return bad("max_bytes must be at least 4 (one packet header)".into());
            }
            if c.error_code.is_some_and(|e| e < 1000) {
                return bad("error_code must be a MySQL error number (1000 or more)".into());
            }
            if c.timeout_ms == Some(0) || c.max_concurrency == Some(0) {
                return bad("timeout_ms and max_concurrency must be at least 1".into());
            }
            let slots = c.max_concurrency.map(|n| Arc::new(Semaphore::new(n as usize)));
            list.push(Rule { name, cfg: c.clone(), regex, digest, route, slots, waiting: AtomicU32::new(0), counters: Arc::default() });
        }
        Ok(Rules { list })
    }

    /// Compiles `cfgs`, keeping the counters of `old`'s rules that have the same name.
    pub fn rebuild(cfgs: &[RuleConfig], old: &Rules) -> Result<Rules, String> {
        let mut new = Rules::compile(cfgs)?;
        for r in &mut new.list {
            if let Some(o) = old.list.iter().find(|o| o.name == r.name) {
                r.counters = o.counters.clone();
                if o.cfg.max_concurrency == r.cfg.max_concurrency {
                    // Statements holding or waiting for a slot keep counting against it.
                    r.slots = o.slots.clone();
                }
            }
        }
        Ok(new)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first rule matching `s` (its hit counted).
    pub fn first(&self, s: &Subject<'_>) -> Option<&Rule> {
        let r = self.list.iter().find(|r| r.matches(s))?;
        r.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(r)
    }
}

impl Rule {
    fn matches(&self, s: &Subject<'_>) -> bool {
        let c = &self.cfg;
        c.user.as_deref().is_none_or(|u| u == s.user)
            && c.schema.as_deref().is_none_or(|d| s.schema == Some(d.as_bytes()))
            && self.digest.is_none_or(|d| s.digest == Some(d))
            && c.kind.is_none_or(|k| k == s.kind)
            && self.regex.as_ref().is_none_or(|r| r.is_match(s.sql))
    }

    /// The error a blocking rule answers with: `(code, SQL state, message)`.
    pub fn block_error(&self) -> (u16, &'static str, String) {
        let code = self.cfg.error_code.unwrap_or(BLOCK_CODE);
        let msg = self.cfg.error_message.clone().unwrap_or_else(|| format!("Statement blocked by Sluice query rule '{}'", self.name));
        (code, if code == 1142 || code == 1227 { "42000" } else { "HY000" }, msg)
    }

    /// The error an answer cut at `max_rows` / `max_bytes` ends with: `(code, SQL
    /// state, message)`; by default the server's "too big a SELECT" (1104, 42000).
    pub fn cap_error(&self) -> (u16, &'static str, String) {
        let code = self.cfg.error_code.unwrap_or(CAP_CODE);
        let what = match (self.cfg.max_rows, self.cfg.max_bytes) {
            (Some(r), Some(b)) => format!("more than {r} rows or {b} bytes"),
            (Some(r), None) => format!("more than {r} rows"),
            (None, Some(b)) => format!("more than {b} bytes"),
            (None, None) => "too much".to_string(),
        };
        let msg = self.cfg.error_message.clone().unwrap_or_else(|| {
            format!(
                "Sluice query rule '{}': the result has {what}; the rest was not sent",
                self.name
            )
        });
        (code, if code == CAP_CODE { "42000" } else { "HY000" }, msg)
    }

    /// Waits for a slot under `max_concurrency` (bounded wait and queue). `Ok(None)`
    /// when the rule has no such bound; `Err` with the client's error when refused.
    pub async fn slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, String> {
        let Some(slots) = &self.slots else { return Ok(None) };
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let refuse = |why: String| {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            Err(format!("Sluice query rule '{}': {why}", self.name))
        };
        let limit = self.cfg.max_concurrency.unwrap_or(0);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return refuse(format!("{limit} statements running and {} waiting already", self.cfg.max_queue));
        }
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(Duration::from_millis(self.cfg.queue_timeout_ms), slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match r {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => refuse(format!("{limit} statements running; waited {} ms for a turn", self.cfg.queue_timeout_ms)),
        }
    }
}

/// Per-user limits in force, with their state.
#[derive(Debug, Default)]
pub struct Limits {
    by_user: BTreeMap<String, UserLimit>,
    /// Token buckets, `(tokens, last refill)`, for users with `statements_per_second`.
    buckets: Mutex<BTreeMap<String, (f64, tokio::time::Instant)>>,
}

impl Limits {
    pub fn new(list: &[UserLimit]) -> Self {
        Limits { by_user: list.iter().map(|l| (l.user.clone(), l.clone())).collect(), buckets: Mutex::default() }
    }

    /// Built from `list` (a reload), keeping the token buckets of users whose
    /// `statements_per_second` stays: a reload does not hand a throttled user a fresh
    /// second of burst.
    pub fn rebuild(list: &[UserLimit], old: &Limits) -> Self {
        let new = Limits::new(list);
        {
            let kept: BTreeMap<String, (f64, tokio::time::Instant)> = old
                .buckets
                .locked()
                .iter()
                .filter(|(u, _)| new.by_user.get(*u).and_then(|l| l.statements_per_second) == old.by_user.get(*u).and_then(|l| l.statements_per_second))
                .map(|(u, b)| (u.clone(), *b))
                .collect();
            *new.buckets.locked() = kept;
        }
        new
    }

    /// The limits of `user`, if any.
    pub fn of(&self, user: &str) -> Option<&UserLimit> {
        self.by_user.get(user)
    }

    /// No user has a limit (the default): nothing to check per statement.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Takes one statement from `user`'s budget; `false` when the user is over its
    /// `statements_per_second`.
    pub fn take_statement(&self, user: &str, now: tokio::time::Instant) -> bool {
        let Some(rate) = self.by_user.get(user).and_then(|l| l.statements_per_second) else { return true };
        let rate = f64::from(rate);
        let mut b = self.buckets.locked();
        let (tokens, last) = b.entry(user.to_string()).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<Rules, String> {
        #[derive(serde::Deserialize)]
        struct F {
            rules: Vec<RuleConfig>,
        }
        let f: F = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Rules::compile(&f.rules)
    }

    fn subject<'a>(user: &'a str, sql: &'a [u8], kind: RuleKind) -> Subject<'a> {
        Subject { user, schema: Some(b"shop"), digest: Some(0xabc), sql, kind }
    }

    #[test]
    fn the_first_matching_rule_wins_and_counts_its_hits() {
        let r = rule(
            r#"
            [[rules]]
            name = "reports"
            user = "bi"
            match = "(?i)from\\s+orders"
            route = "replica"
            [[rules]]
            name = "no-deletes"
            kind = "write"
            match = "(?i)^\\s*delete"
            block = true
            [[rules]]
            schema = "shop"
            digest = "0000000000000abc"
            timeout_ms = 50
            "#,
        )
        .unwrap();
        assert_eq!(r.first(&subject("bi", b"SELECT * FROM orders", RuleKind::Read)).map(|r| r.name.as_str()), Some("reports"));
        assert_eq!(r.first(&subject("app", b"SELECT * FROM orders", RuleKind::Read)).map(|r| r.name.as_str()), Some("rule3"), "user differs; digest and schema match");
        assert_eq!(r.first(&subject("app", b"delete from t", RuleKind::Write)).map(|r| r.name.as_str()), Some("no-deletes"));
        let mut other = subject("app", b"SELECT 1", RuleKind::Read);
        other.digest = Some(1);
        assert!(r.first(&other).is_none());
        assert_eq!(r.list[0].counters.hits.load(Ordering::Relaxed), 1);
        assert_eq!(r.list[2].counters.hits.load(Ordering::Relaxed), 1);
        assert_eq!(r.list[1].block_error(), (BLOCK_CODE, "HY000", "Statement blocked by Sluice query rule 'no-deletes'".to_string()));
    }

    #[test]
    fn row_and_byte_limits_answer_with_too_big_a_select_unless_configured() {
        let r = rule("[[rules]]\nname = \"big\"\nmax_rows = 10\n[[rules]]\nmax_bytes = 4096\nerror_code = 1105\nerror_message = \"too much\"").unwrap();
        assert_eq!(
            r.list[0].cap_error(),
            (
                CAP_CODE,
                "42000",
                "Sluice query rule 'big': the result has more than 10 rows; the rest was not sent"
                    .to_string()
            )
        );
        assert_eq!(
            r.list[1].cap_error(),
            (1105, "HY000", "too much".to_string())
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (text, want) in [
            ("[[rules]]\nmatch = \"(\"\nblock = true", "match"),
            ("[[rules]]\nuser = \"a\"", "no action"),
            ("[[rules]]\ndigest = \"xyz\"\nblock = true", "16 hex"),
            ("[[rules]]\nroute = \"somewhere\"", "route"),
            (
                "[[rules]]\nblock = true\nroute = \"primary\"",
                "cannot be combined",
            ),
            (
                "[[rules]]\nerror_code = 1234\ntimeout_ms = 5",
                "only go with block",
            ),
            (
                "[[rules]]\nname = \"x\"\nblock = true\n[[rules]]\nname = \"x\"\nblock = true",
                "two rules",
            ),
            (
                "[[rules]]\nblock = true\nmax_rows = 5",
                "cannot be combined",
            ),
            ("[[rules]]\nmax_bytes = 2", "at least 4"),
        ] {
            let e = rule(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn statements_per_second_is_a_token_bucket_with_one_second_of_burst() {
        let l = Limits::new(&[UserLimit { user: "app".into(), max_connections: None, statements_per_second: Some(5) }]);
        let t0 = tokio::time::Instant::now();
        assert!((0..5).all(|_| l.take_statement("app", t0)));
        assert!(!l.take_statement("app", t0), "the sixth in the same instant is over the limit");
        assert!(l.take_statement("app", t0 + Duration::from_millis(200)), "one token back after 1/5 s");
        assert!(!l.take_statement("app", t0 + Duration::from_millis(200)));
        assert!((0..100).all(|_| l.take_statement("other", t0)), "users without limits are not counted");
    }

    #[test]
    fn a_reload_keeps_the_budget_of_a_user_whose_rate_stays_and_resets_a_changed_one() {
        let lim = |app: u32, bi: u32| {
            vec![
                UserLimit { user: "app".into(), max_connections: None, statements_per_second: Some(app) },
                UserLimit { user: "bi".into(), max_connections: None, statements_per_second: Some(bi) },
            ]
        };
        let l = Limits::new(&lim(2, 2));
        let t0 = tokio::time::Instant::now();
        assert!((0..2).all(|_| l.take_statement("app", t0) && l.take_statement("bi", t0)));
        let r = Limits::rebuild(&lim(2, 3), &l);
        assert!(!r.take_statement("app", t0), "app's spent budget survives the reload");
        assert!((0..3).all(|_| r.take_statement("bi", t0)), "bi's rate changed: a fresh bucket at the new rate");
    }

    #[tokio::test]
    async fn concurrency_is_bounded_with_a_bounded_queue_and_wait() {
        let r = rule("[[rules]]\nmax_concurrency = 1\nmax_queue = 1\nqueue_timeout_ms = 50").unwrap();
        let rule = &r.list[0];
        let held = rule.slot().await.unwrap().expect("a slot");
        let e = rule.slot().await.unwrap_err();
        assert!(e.contains("waited 50 ms"), "{e}");
        drop(held);
        assert!(rule.slot().await.unwrap().is_some());
        assert_eq!(rule.counters.throttled.load(Ordering::Relaxed), 1);
    }
}
