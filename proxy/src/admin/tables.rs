//! What each `SHOW SLUICE …` statement of the admin interface shows: rows built from
//! one reading of the instance's topology, registry, pools and counters (synchronous;
//! no backend is asked).

use crate::sync::Locked;
use std::sync::atomic::Ordering;

use super::Answer;
use crate::config::Config;
use crate::health::{Gtid, Observation};
use crate::net::Net;
use crate::proxy::Shared;
use crate::route::decide::Reason;

fn names(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `SHOW SLUICE NODES`: one row per configured node.
pub fn nodes<N: Net>(shared: &Shared<N>) -> Answer {
    let cols = names(&[
        "node", "role", "up", "readable", "not_readable_because", "lag_ms", "gtid_position", "server_id", "probe_ms", "failed_probes", "in_flight", "routed", "routed_reads", "avg_response_ms", "errors", "drained",
    ]);
    let topo = shared.topology.get();
    let mut rows = Vec::new();
    for addr in &shared.node_list.get() {
        let n = topo.as_ref().and_then(|t| t.nodes.get(addr)).cloned().unwrap_or_default();
        let stats = shared.node_stats.get(addr);
        let stats = stats.as_ref();
        let metrics = shared.metrics.node(addr);
        let gtid = match &n.gtid {
            Some(Gtid::MariaDb { current_pos, .. }) => current_pos.clone(),
            Some(Gtid::MySql { executed }) => executed.clone(),
            None => String::new(),
        };
        let errors: u64 = metrics.map_or(0, |m| m.errors.snapshot().values().sum());
        rows.push(vec![
            addr.clone(),
            n.role.name().to_string(),
            if matches!(n.observation, Observation::Up { .. }) { "yes" } else { "no" }.to_string(),
            if n.readable { "yes" } else { "no" }.to_string(),
            match &n.observation {
                Observation::Down { error } => error.clone(),
                Observation::Up { .. } => n.unreadable_because.clone().unwrap_or_default(),
            },
            n.lag_ms.map(|l| l.to_string()).unwrap_or_default(),
            gtid,
            n.server_id.map(|s| s.to_string()).unwrap_or_default(),
            n.probe_latency.map(ms).unwrap_or_default(),
            n.failed_probes.to_string(),
            stats.map_or(0, |s| s.in_flight.load(Ordering::Relaxed)).to_string(),
            stats.map_or(0, |s| s.routed.load(Ordering::Relaxed)).to_string(),
            stats.map_or(0, |s| s.routed_reads.load(Ordering::Relaxed)).to_string(),
            stats.map_or(String::new(), |s| format!("{:.3}", s.ewma_ns.load(Ordering::Relaxed) as f64 / 1e6)),
            errors.to_string(),
            if stats.is_some_and(|s| s.drained.load(Ordering::Relaxed)) { "yes" } else { "no" }.to_string(),
        ]);
    }
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE SESSIONS`: one row per client session, by id.
pub fn sessions<N: Net>(shared: &Shared<N>) -> Answer {
    let cols = names(&["id", "user", "client", "node", "backend_thread", "state", "statement", "statement_ms", "pin", "commands", "connected_s"]);
    let now = tokio::time::Instant::now();
    let rows = shared
        .registry
        .snapshot()
        .into_iter()
        .map(|(id, e)| {
            let current = e.current.locked().clone();
            let a = e.activity.locked().clone();
            let (state, statement, age) = match (&a.statement, &a.command, a.since) {
                (Some((d, t)), _, _) => ("query", d.text.to_string(), ms(now - *t)),
                (None, Some((c, t)), _) => (*c, String::new(), ms(now - *t)),
                (None, None, None) => ("login", String::new(), String::new()),
                (None, None, Some(_)) => ("idle", String::new(), String::new()),
            };
            vec![
                id.to_string(),
                e.user.clone(),
                e.peer.clone(),
                current.as_ref().map(|(a, _)| a.clone()).unwrap_or_default(),
                current.as_ref().map(|(_, t)| t.to_string()).unwrap_or_default(),
                state.to_string(),
                statement,
                age,
                a.pin.unwrap_or("").to_string(),
                a.commands.to_string(),
                a.since.map(|s| (now - s).as_secs().to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE POOLS`: one row per node's pool.
pub fn pools<N: Net>(shared: &Shared<N>) -> Answer {
    let cols = names(&["node", "max", "open", "idle", "waiting", "created", "closed", "leases", "waits", "timeouts", "refused", "pings_failed", "found_closed"]);
    let rows = shared
        .node_list
        .get()
        .iter()
        .map(|n| {
            let p = shared.pools.stats(n);
            let v = [p.max as u64, p.open as u64, p.idle as u64, p.waiting as u64, p.created, p.closed, p.leases, p.waits, p.timeouts, p.refused, p.pings_failed, p.found_closed];
            std::iter::once(n.clone()).chain(v.iter().map(u64::to_string)).collect()
        })
        .collect();
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE RULES`: the query rules in force, in evaluation order, with their
/// counters, then the per-user limits.
pub fn rules<N: Net>(shared: &Shared<N>) -> Answer {
    let cols = names(&["rule", "match", "action", "hits", "blocked", "timed_out", "queued", "throttled", "capped"]);
    let policy = shared.policy();
    let mut rows: Vec<Vec<String>> = policy
        .rules
        .list
        .iter()
        .map(|r| {
            let c = &r.cfg;
            let mut m = Vec::new();
            let mut add = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    m.push(format!("{k}={v}"));
                }
            };
            add("user", &c.user);
            add("schema", &c.schema);
            add("digest", &c.digest);
            add("match", &c.pattern);
            add("kind", &c.kind.map(|k| format!("{k:?}").to_lowercase()));
            let mut a = Vec::new();
            if c.block {
                let (code, _, msg) = r.block_error();
                a.push(format!("block {code} '{msg}'"));
            }
            if let Some(route) = &c.route {
                a.push(format!("route={route}"));
            }
            if let Some(t) = c.timeout_ms {
                a.push(format!("timeout_ms={t}"));
            }
            if let Some(n) = c.max_concurrency {
                a.push(format!("max_concurrency={n} (queue {}, wait {} ms)", c.max_queue, c.queue_timeout_ms));
            }
            if c.max_rows.is_some() || c.max_bytes.is_some() {
                let (code, _, _) = r.cap_error();
                let rows = c.max_rows.map(|n| format!("max_rows={n} ")).unwrap_or_default();
                let bytes = c.max_bytes.map(|n| format!("max_bytes={n} ")).unwrap_or_default();
                a.push(format!("{rows}{bytes}(error {code})"));
            }
            let k = &r.counters;
            let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed).to_string();
            vec![r.name.clone(), if m.is_empty() { "any".into() } else { m.join(" ") }, a.join(", "), n(&k.hits), n(&k.blocked), n(&k.timed_out), n(&k.queued), n(&k.throttled), n(&k.capped)]
        })
        .collect();
    for l in &shared.live.get().limits {
        let mut a = Vec::new();
        if let Some(c) = l.max_connections {
            a.push(format!("max_connections={c}"));
        }
        if let Some(s) = l.statements_per_second {
            a.push(format!("statements_per_second={s}"));
        }
        rows.push(vec![format!("limit:{}", l.user), format!("user={}", l.user), a.join(", "), String::new(), String::new(), String::new(), String::new(), String::new()]);
    }
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE USERS`: per client user, since the start (the table is bounded; users
/// beyond its bound count under `other`).
pub fn users<N: Net>(shared: &Shared<N>) -> Answer {
    let cols = names(&["user", "connections", "logins", "commands", "errors", "bytes_in", "bytes_out", "pins", "avg_command_ms"]);
    let pins = shared.pins.snapshot();
    let rows = shared
        .metrics
        .users()
        .into_iter()
        .map(|(name, u)| {
            let (buckets, sum_ns) = u.latency.snapshot();
            let count = buckets[buckets.len() - 1];
            let pinned: u64 = pins.iter().filter(|((user, _), _)| *user == name).map(|(_, c)| c).sum();
            vec![
                name.clone(),
                u.connections.load(Ordering::Relaxed).to_string(),
                u.logins.load(Ordering::Relaxed).to_string(),
                u.statements.load(Ordering::Relaxed).to_string(),
                u.errors.snapshot().values().sum::<u64>().to_string(),
                u.bytes_in.load(Ordering::Relaxed).to_string(),
                u.bytes_out.load(Ordering::Relaxed).to_string(),
                pinned.to_string(),
                if count == 0 { String::new() } else { format!("{:.3}", sum_ns as f64 / count as f64 / 1e6) },
            ]
        })
        .collect();
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE QUERY DIGESTS [LIMIT n]`: the digests with the most total time first.
pub fn digests<N: Net>(shared: &Shared<N>, limit: usize) -> Answer {
    let cols = names(&["digest", "digest_text", "count", "total_ms", "avg_ms", "min_ms", "max_ms", "rows", "errors", "first_seen_s_ago", "last_seen_s_ago"]);
    let now = tokio::time::Instant::now();
    let rows = shared
        .metrics
        .digests
        .top(limit)
        .into_iter()
        .map(|r| {
            let s = &r.stats;
            let f = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
            let (hash, text) = match &r.digest {
                Some(d) => (format!("{:016x}", d.hash), d.text.to_string()),
                None => ("other".to_string(), "(statements of digests beyond [stats] max_digests)".to_string()),
            };
            vec![
                hash,
                text,
                s.count.to_string(),
                f(s.total_ns),
                f(s.total_ns / s.count.max(1)),
                f(s.min_ns),
                f(s.max_ns),
                s.rows.to_string(),
                s.errors.to_string(),
                (now - s.first_seen).as_secs().to_string(),
                (now - s.last_seen).as_secs().to_string(),
            ]
        })
        .collect();
    Answer::Rows(cols, rows)
}

/// `SHOW SLUICE CONFIG`: the configuration in force, one row per setting (dotted
/// keys), secrets masked.
pub fn config(cfg: &Config) -> Answer {
    let rows = crate::reload::flatten(cfg)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("[]"))
        .map(|(k, v)| {
            let shown = if secret(&k) && v != "\"\"" { "********".to_string() } else { v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).map_or(v.clone(), str::to_string) };
            vec![k, shown]
        })
        .collect();
    Answer::Rows(names(&["key", "value"]), rows)
}

/// Whether a setting named `key` holds a secret.
fn secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "password" || last.ends_with("_password") || last == "key" || last.ends_with("_key") && !last.ends_with("public_key")
}

/// `SHOW SLUICE VERSION`.
pub fn version<N: Net>(shared: &Shared<N>) -> Answer {
    let uptime = shared.started.elapsed().as_secs();
    let reasons = Reason::ALL.len();
    Answer::Rows(
        names(&["version", "uptime_s", "sessions", "primary", "routing_reasons"]),
        vec![vec![env!("CARGO_PKG_VERSION").to_string(), uptime.to_string(), shared.registry.len().to_string(), shared.primary().unwrap_or_default(), reasons.to_string()]],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rows_use_dotted_keys_and_mask_secrets() {
        let cfg = Config::parse(
            r#"
            [proxy]
            listen = "127.0.0.1:0"
            [backend]
            nodes = ["127.0.0.1:3306"]
            user = "sluice"
            password = "s3cret"
            [[users]]
            name = "app"
            password = "apppw"
            [admin]
            listen = "127.0.0.1:0"
            [[admin.users]]
            name = "ops"
            password = "opspw"
            "#,
        )
        .expect("valid config");
        let Answer::Rows(cols, rows) = config(&cfg) else { panic!("rows expected") };
        assert_eq!(cols, vec!["key", "value"]);
        let get = |k: &str| rows.iter().find(|r| r[0] == k).map(|r| r[1].clone());
        assert_eq!(get("backend.user").as_deref(), Some("sluice"));
        assert_eq!(get("backend.password").as_deref(), Some("********"));
        assert_eq!(get("users[0].name").as_deref(), Some("app"));
        assert_eq!(get("users[0].password").as_deref(), Some("********"));
        assert_eq!(get("admin.users[0].password").as_deref(), Some("********"));
        let text = format!("{rows:?}");
        for secret in ["s3cret", "apppw", "opspw"] {
            assert!(!text.contains(secret), "{secret} shown");
        }
    }
}
