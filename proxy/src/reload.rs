//! Hot reload: re-reading the config file (SIGHUP, `SLUICE RELOAD`) into the settings
//! that running sessions and new logins read, without dropping any session.
//!
//! [`plan`] (synchronous) compares the running config with the new file: the sections
//! that can change live are taken from the new file; every other setting that differs
//! is named as needing a restart and keeps its running value. [`Live`] holds the config
//! in force; sessions keep an `Arc` of it and look at its version (one atomic load per
//! command) to pick up a reload before their next command. A file that does not parse
//! or validate changes nothing.
//!
//! Live: `[[users]]` (new logins; open sessions keep their login), `[routing]` except
//! `classifier_cache` and `max_replica_lag_ms` (per-user defaults for new sessions;
//! load-balancing policy and weights for every session's next read), `backend.nodes`
//! (added nodes are probed and join the topology; removed ones get no new statements;
//! the primary cannot be removed), `[pool]` except `statement_cache` (sizes resize the
//! pools now; `multiplex` applies to new sessions), `[[admin.users]]`, `[stats]
//! slow_query_ms`, `[[rules]]` and `[[limits]]` (every session's next statement).

use crate::sync::Locked;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::error::{Error, Result};

/// The config in force and its version (bumped by each reload that changed something).
#[derive(Debug)]
pub struct Live {
    cfg: Mutex<Arc<Config>>,
    version: AtomicU64,
}

impl Live {
    pub fn new(cfg: Config) -> Self {
        Live { cfg: Mutex::new(Arc::new(cfg)), version: AtomicU64::new(0) }
    }

    /// The config in force.
    pub fn get(&self) -> Arc<Config> {
        self.cfg.locked().clone()
    }

    /// Bumped by every reload that changed a live setting.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn set(&self, cfg: Config) {
        *self.cfg.locked() = Arc::new(cfg);
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// What a reload does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The live settings that change (dotted keys).
    pub changed: Vec<String>,
    /// Settings that differ but only change with a restart (dotted keys); they keep
    /// their running values.
    pub restart_needed: Vec<String>,
    /// The new file leaves out the current primary: it stays a node.
    pub kept_primary: Option<String>,
}

/// Dotted keys whose value can change live (a key matches when it is one of these or
/// lies under one).
const LIVE: [&str; 8] = ["users", "routing", "backend.nodes", "pool", "admin.users", "stats.slow_query_ms", "rules", "limits"];

/// Under [`LIVE`] but fixed at start.
const FIXED_UNDER_LIVE: [&str; 3] = ["routing.classifier_cache", "routing.max_replica_lag_ms", "pool.statement_cache"];

fn is_live(key: &str) -> bool {
    let under = |k: &str, p: &str| k == p || k.starts_with(&format!("{p}.")) || k.starts_with(&format!("{p}["));
    LIVE.iter().any(|p| under(key, p)) && !FIXED_UNDER_LIVE.iter().any(|p| under(key, p))
}

/// Flattens a config to `dotted key → value text` (arrays of tables as `users[0].name`).
pub fn flatten(cfg: &Config) -> std::collections::BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            toml::Value::Array(a) if a.iter().any(|v| v.is_table()) => {
                // The array's length is a setting too (an account removed).
                out.insert(format!("{prefix}[]"), a.len().to_string());
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        walk("", &v, &mut out);
    }
    out
}

/// Compares the running config with a new one: the config to put in force (`running`
/// with the live sections of `new`) and what changes.
/// `primary`: the node that is the primary now; a new file without it keeps it (a
/// primary is replaced by a switchover, not a reload) and says so in the plan.
pub fn plan(running: &Config, new: &Config, primary: Option<&str>) -> (Config, Plan) {
    let (a, b) = (flatten(running), flatten(new));
    let mut changed = Vec::new();
    let mut restart_needed = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        if a.get(k) != b.get(k) {
            if is_live(k) {
                changed.push(k.clone());
            } else {
                restart_needed.push(k.clone());
            }
        }
    }
    let mut next = running.clone();
    next.users = new.users.clone();
    let (cache, lag) = (next.routing.classifier_cache, next.routing.max_replica_lag_ms);
    next.routing = new.routing.clone();
    next.routing.classifier_cache = cache;
    next.routing.max_replica_lag_ms = lag;
    let statement_cache = next.pool.statement_cache;
    next.pool = new.pool.clone();
    next.pool.statement_cache = statement_cache;
    next.backend.nodes = new.backend.nodes.clone();
    let mut kept_primary = None;
    if let Some(p) = primary {
        if running.backend.nodes.iter().any(|n| n == p) && !next.backend.nodes.iter().any(|n| n == p) {
            next.backend.nodes.push(p.to_string());
            kept_primary = Some(p.to_string());
        }
    }
    if let (Some(n), Some(r)) = (&mut next.admin, &new.admin) {
        n.users = r.users.clone();
    }
    next.stats.slow_query_ms = new.stats.slow_query_ms;
    next.rules = new.rules.clone();
    next.limits = new.limits.clone();
    if next.backend.nodes == running.backend.nodes {
        changed.retain(|k| !k.starts_with("backend.nodes"));
    }
    (next, Plan { changed, restart_needed, kept_primary })
}

/// Reads the file the running config came from and puts its live settings in force.
/// `Err` (nothing changed) when there is no file or it does not load.
pub fn reload(live: &Live, primary: Option<&str>, on_change: impl FnOnce(&Config)) -> Result<Plan> {
    let running = live.get();
    let Some(path) = running.source.clone() else {
        return Err(Error::Config("this instance was not started from a config file: nothing to reload".into()));
    };
    let new = Config::load(&path)?;
    let (next, plan) = plan(&running, &new, primary);
    if !plan.changed.is_empty() {
        on_change(&next);
        live.set(next);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [proxy]
        listen = "127.0.0.1:3307"
        [[users]]
        name = "app"
        password = "a"
        [backend]
        user = "sluice"
        password = "s"
        nodes = ["127.0.0.1:3306", "127.0.0.1:3308"]
        [routing]
        read_write_split = false
    "#;

    #[test]
    fn users_and_routing_change_live_and_the_listener_needs_a_restart() {
        let running = Config::parse(BASE).unwrap();
        let new = Config::parse(&BASE.replace("3307", "4000").replace("read_write_split = false", "read_write_split = true\npolicy = \"random\"").replace("[backend]", "[[users]]\nname = \"new\"\npassword = \"n\"\n[backend]")).unwrap();
        let (next, p) = plan(&running, &new, None);
        assert_eq!(p.restart_needed, vec!["proxy.listen".to_string()]);
        assert!(p.changed.contains(&"routing.read_write_split".to_string()), "{p:?}");
        assert!(p.changed.contains(&"users[1].name".to_string()), "{p:?}");
        assert!(p.changed.contains(&"users[]".to_string()), "{p:?}");
        assert_eq!(next.proxy.listen, "127.0.0.1:3307", "a setting fixed at start keeps its running value");
        assert!(next.routing.read_write_split);
        assert_eq!(next.users.len(), 2);
    }

    #[test]
    fn fixed_routing_settings_keep_their_running_values() {
        let running = Config::parse(BASE).unwrap();
        let new = Config::parse(&BASE.replace("read_write_split = false", "read_write_split = false\nmax_replica_lag_ms = 99\nclassifier_cache = 7")).unwrap();
        let (next, p) = plan(&running, &new, None);
        assert!(p.changed.is_empty(), "{p:?}");
        assert_eq!(p.restart_needed, vec!["routing.classifier_cache".to_string(), "routing.max_replica_lag_ms".to_string()]);
        assert_eq!(next.routing.max_replica_lag_ms, running.routing.max_replica_lag_ms);
        assert_eq!(next.routing.classifier_cache, running.routing.classifier_cache);
    }

    #[test]
    fn nodes_and_pool_sizes_change_live_but_the_primary_stays_a_node() {
        let running = Config::parse(BASE).unwrap();
        let text = BASE.replace(r#"nodes = ["127.0.0.1:3306", "127.0.0.1:3308"]"#, r#"nodes = ["127.0.0.1:3306", "127.0.0.1:3309"]"#) + "\n[pool]\nmax_per_node = 7\nstatement_cache = 9\n";
        let new = Config::parse(&text).unwrap();
        let (next, p) = plan(&running, &new, Some("127.0.0.1:3306"));
        assert_eq!(next.backend.nodes, vec!["127.0.0.1:3306".to_string(), "127.0.0.1:3309".to_string()]);
        assert_eq!(next.pool.max_per_node, 7);
        assert_eq!(next.pool.statement_cache, running.pool.statement_cache, "fixed at start");
        assert!(p.changed.contains(&"backend.nodes".to_string()) && p.changed.contains(&"pool.max_per_node".to_string()), "{p:?}");
        assert_eq!(p.restart_needed, vec!["pool.statement_cache".to_string()]);
        assert_eq!(p.kept_primary, None);
        // A file without the primary: it stays, and the plan says so.
        let (next, p) = plan(&running, &new, Some("127.0.0.1:3308"));
        assert_eq!(next.backend.nodes, vec!["127.0.0.1:3306".to_string(), "127.0.0.1:3309".to_string(), "127.0.0.1:3308".to_string()]);
        assert_eq!(p.kept_primary.as_deref(), Some("127.0.0.1:3308"));
    }

    #[test]
    fn an_identical_file_changes_nothing() {
        let running = Config::parse(BASE).unwrap();
        let (_, p) = plan(&running, &Config::parse(BASE).unwrap(), None);
        assert_eq!(p, Plan { changed: vec![], restart_needed: vec![], kept_primary: None });
    }

    #[test]
    fn a_bad_file_is_refused_and_the_running_config_stays() {
        let dir = std::env::temp_dir().join(format!("sluice-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sluice.toml");
        std::fs::write(&path, BASE).unwrap();
        let live = Live::new(Config::load(&path).unwrap());
        std::fs::write(&path, BASE.replace("[routing]", "[routing]\nbogus = 1")).unwrap();
        let e = reload(&live, None, |_| panic!("nothing applies")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert_eq!(live.version(), 0);
        std::fs::write(&path, BASE.replace("read_write_split = false", "read_write_split = true")).unwrap();
        let p = reload(&live, None, |_| {}).unwrap();
        assert_eq!(p.changed, vec!["routing.read_write_split".to_string()]);
        assert_eq!(live.version(), 1);
        assert!(live.get().routing.read_write_split);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
