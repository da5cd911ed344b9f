//! End-to-end tests against real MariaDB servers (needs `mariadbd`,
//! `mariadb-install-db`, `mariadb` and `openssl`; see
//! `scripts/install-deps.sh`). Every test checks that dropping its cluster
//! leaves no process and, for temporary directories, no files behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chaos::{Cluster, ClusterSpec, NodeState, SqlError};

const CATCH_UP: Duration = Duration::from_secs(30);

fn start(spec: ClusterSpec) -> Cluster {
    let started = Instant::now();
    let cluster = Cluster::start(spec).expect("cluster starts");
    eprintln!(
        "cluster of {} nodes ready in {:?}",
        cluster.nodes().len(),
        started.elapsed()
    );
    cluster
}

/// Drops `cluster` and checks nothing of it is left running.
fn tear_down(cluster: Cluster) -> PathBuf {
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    let pgrep = Command::new("pgrep")
        .arg("-f")
        .arg(&dir)
        .output()
        .expect("pgrep runs");
    assert!(
        pgrep.stdout.is_empty(),
        "processes left running for {}: {}",
        dir.display(),
        String::from_utf8_lossy(&pgrep.stdout)
    );
    dir
}

fn count(cluster: &Cluster, node: usize, table: &str) -> u64 {
    cluster
        .app_sql(node, &format!("SELECT COUNT(*) FROM {table}"))
        .unwrap_or_else(|e| panic!("counting on node {node}: {e}"))
        .parse()
        .expect("a number")
}

fn assert_read_only(cluster: &Cluster, node: usize, table: &str) {
    let err = cluster
        .app_sql(node, &format!("INSERT INTO {table} VALUES (-1)"))
        .expect_err("a write on a read-only node fails");
    assert_eq!(err.code(), Some(1290), "node {node}: {err}");
}

#[test]
fn replicates_and_replicas_refuse_app_writes() {
    let cluster = start(ClusterSpec::default());
    assert_eq!(cluster.nodes().len(), 3);
    assert!(cluster.primary().is_primary() && cluster.primary().index() == 0);
    assert_eq!(cluster.replicas().len(), 2);
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    assert!(
        !ports.contains(&3306) && ports.windows(2).all(|w| w[0] != w[1]),
        "{ports:?}"
    );
    for node in cluster.nodes() {
        assert_eq!(node.state(), NodeState::Running);
        assert_eq!(node.addr(), format!("127.0.0.1:{}", node.port()));
        assert_eq!(
            cluster
                .root_sql(node.index(), "SELECT @@server_id")
                .unwrap(),
            node.server_id().to_string()
        );
        let dbs = cluster
            .app_sql(node.index(), "SHOW DATABASES LIKE '%test'")
            .unwrap();
        assert_eq!(dbs, "sbtest\ntest");
    }

    cluster
        .app_sql(
            0,
            "CREATE TABLE test.t (id INT PRIMARY KEY); INSERT INTO test.t VALUES (1), (2), (3)",
        )
        .unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    for replica in cluster.replicas() {
        assert_eq!(count(&cluster, replica.index(), "test.t"), 3);
        assert_read_only(&cluster, replica.index(), "test.t");
        // The monitoring privileges work everywhere.
        let status = cluster
            .slave_status(replica.index())
            .unwrap()
            .expect("a replica");
        assert_eq!(status["Slave_IO_Running"], "Yes");
        assert_eq!(status["Using_Gtid"], "Slave_Pos");
        cluster
            .app_sql(replica.index(), "SHOW ALL SLAVES STATUS")
            .unwrap();
    }
    assert!(cluster
        .app_sql(0, "SHOW MASTER STATUS")
        .unwrap()
        .starts_with("mysql-bin."));
    assert!(cluster
        .app_sql(0, "SHOW GRANTS")
        .unwrap()
        .contains("SLAVE MONITOR"));

    // The application user can kill its own queries without extra privileges.
    let sleeper = cluster
        .client_command(0, cluster.app_user())
        .args(["-e", "SELECT SLEEP(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let find = "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(60)'";
    let id = loop {
        let id = cluster.app_sql(0, find).unwrap();
        if !id.is_empty() {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleeping query never showed up"
        );
        thread::sleep(Duration::from_millis(20));
    };
    cluster.app_sql(0, &format!("KILL QUERY {id}")).unwrap();
    let killed = sleeper.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(
        stderr.contains("ERROR 1317"),
        "the query was not interrupted: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let dir = tear_down(cluster);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn restarted_and_resumed_replicas_catch_up() {
    let cluster = start(ClusterSpec::default());
    cluster
        .app_sql(0, "CREATE TABLE test.r (id INT PRIMARY KEY)")
        .unwrap();

    // A crash: SIGKILL, writes meanwhile, restart.
    cluster.kill_node(1).unwrap();
    assert_eq!(cluster.node(1).state(), NodeState::Stopped);
    assert!(
        cluster.kill_node(1).is_err(),
        "killing a dead node is an error"
    );
    cluster
        .app_sql(0, "INSERT INTO test.r VALUES (1), (2)")
        .unwrap();
    cluster.start_node(1).unwrap();
    assert_eq!(cluster.node(1).state(), NodeState::Running);

    // A clean shutdown and restart of the other replica.
    cluster.stop_node(2).unwrap();
    cluster.app_sql(0, "INSERT INTO test.r VALUES (3)").unwrap();
    cluster.start_node(2).unwrap();

    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 1, "test.r"), 3);
    assert_eq!(count(&cluster, 2, "test.r"), 3);
    assert_read_only(&cluster, 1, "test.r");

    // A crashed primary comes back writable and the replicas reconnect.
    cluster.kill_node(0).unwrap();
    cluster.start_node(0).unwrap();
    cluster
        .app_sql(0, "INSERT INTO test.r VALUES (10)")
        .unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 2, "test.r"), 4);
    cluster
        .app_sql(0, "DELETE FROM test.r WHERE id = 10")
        .unwrap();

    // A freeze: a paused replica answers nothing, then catches up.
    cluster.pause_node(1).unwrap();
    assert_eq!(cluster.node(1).state(), NodeState::Paused);
    let err = cluster
        .sql(
            1,
            cluster.app_user(),
            "SELECT 1",
            Duration::from_millis(500),
        )
        .expect_err("a paused node does not answer");
    assert!(matches!(err, SqlError::Timeout { node: 1, .. }), "{err}");
    cluster.app_sql(0, "INSERT INTO test.r VALUES (4)").unwrap();
    cluster.resume_node(1).unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 1, "test.r"), 4);

    // A paused node is torn down too.
    cluster.pause_node(2).unwrap();
    tear_down(cluster);
}

#[test]
fn promoted_replica_is_followed_by_the_others() {
    let cluster = start(ClusterSpec::default());
    cluster
        .app_sql(
            0,
            "CREATE TABLE test.p (id INT PRIMARY KEY); INSERT INTO test.p VALUES (1)",
        )
        .unwrap();

    // Switchover: the old primary is alive and becomes a replica.
    cluster.promote(1).unwrap();
    assert_eq!(cluster.primary_index(), 1);
    assert!(cluster.node(1).is_primary() && !cluster.node(0).is_primary());
    assert_eq!(cluster.root_sql(1, "SELECT @@read_only").unwrap(), "0");
    assert!(cluster.slave_status(1).unwrap().is_none());
    cluster.app_sql(1, "INSERT INTO test.p VALUES (2)").unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    for node in [0, 2] {
        assert_eq!(count(&cluster, node, "test.p"), 2);
        assert_read_only(&cluster, node, "test.p");
        let status = cluster.slave_status(node).unwrap().expect("a replica");
        assert_eq!(status["Master_Port"], cluster.node(1).port().to_string());
    }

    // Failover: the new primary crashes; node 2 takes over.
    cluster.kill_node(1).unwrap();
    cluster.promote(2).unwrap();
    cluster.app_sql(2, "INSERT INTO test.p VALUES (3)").unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 0, "test.p"), 3);

    // The crashed former primary rejoins as a replica of node 2.
    cluster.start_node(1).unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 1, "test.p"), 3);
    assert_read_only(&cluster, 1, "test.p");
    assert_eq!(
        cluster
            .replicas()
            .iter()
            .map(|n| n.index())
            .collect::<Vec<_>>(),
        [0, 1]
    );
    tear_down(cluster);
}

/// Runs `mariadb --ssl --ssl-verify-server-cert` against node 0 and returns
/// whether it succeeded, with its output.
fn tls_query(cluster: &Cluster, host: &str, ca: &Path) -> (bool, String) {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={host}"))
        .arg(format!("--port={}", cluster.node(0).port()))
        .arg(format!("--user={}", cluster.app_user().user))
        .arg(format!("--password={}", cluster.app_user().password))
        .arg("--ssl")
        .arg("--ssl-verify-server-cert")
        .arg(format!("--ssl-ca={}", ca.display()))
        .args([
            "--batch",
            "--skip-column-names",
            "-e",
            "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    });
    (out.status.success(), text.into_owned())
}

#[test]
fn tls_cluster_accepts_verified_connections() {
    // A directory left behind by a process that is gone gets removed.
    let mut finished = Command::new("true").spawn().unwrap();
    finished.wait().unwrap();
    let abandoned = std::env::temp_dir().join(format!("sluice-chaos-{}-abandoned", finished.id()));
    std::fs::create_dir_all(abandoned.join("node0")).unwrap();

    let cluster = start(ClusterSpec {
        replicas: 1,
        tls: true,
        ..ClusterSpec::default()
    });
    assert!(
        !abandoned.exists(),
        "{} was not removed",
        abandoned.display()
    );
    let ca = cluster.ca_cert_path().expect("a CA").to_path_buf();
    assert!(ca.is_file());
    for host in ["127.0.0.1", "localhost"] {
        let (ok, out) = tls_query(&cluster, host, &ca);
        assert!(ok, "TLS connection to {host} failed: {out}");
        let cipher = out.trim().strip_prefix("Ssl_cipher\t").unwrap_or_default();
        assert!(!cipher.is_empty(), "no cipher negotiated: {out:?}");
    }
    // The server certificate is not a CA: trusting it alone must fail.
    let server_cert = cluster.tls_files().unwrap().server_cert.clone();
    let (ok, out) = tls_query(&cluster, "127.0.0.1", &server_cert);
    assert!(!ok, "verification against the wrong CA succeeded: {out}");

    assert_eq!(cluster.root_sql(1, "SELECT @@have_ssl").unwrap(), "YES");
    tear_down(cluster);
}

#[test]
fn semi_sync_cluster_acknowledges_commits() {
    let cluster = start(ClusterSpec {
        replicas: 1,
        semi_sync: true,
        ..ClusterSpec::default()
    });
    let status = |name: &str| {
        let row = cluster
            .root_sql(0, &format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .unwrap();
        row.split('\t').nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(status("Rpl_semi_sync_master_status"), "ON");
    assert_eq!(status("Rpl_semi_sync_master_clients"), "1");
    let before: u64 = status("Rpl_semi_sync_master_yes_tx").parse().unwrap();
    cluster
        .app_sql(
            0,
            "CREATE TABLE test.s (id INT PRIMARY KEY); INSERT INTO test.s VALUES (1)",
        )
        .unwrap();
    let after: u64 = status("Rpl_semi_sync_master_yes_tx").parse().unwrap();
    assert!(
        after >= before + 2,
        "commits were not acknowledged: {before} -> {after}"
    );
    tear_down(cluster);
}

#[test]
fn base_dir_is_used_and_kept() {
    let parent = tempfile::tempdir().unwrap();
    let base = parent.path().join("cluster");
    let spec = ClusterSpec {
        replicas: 0,
        base_dir: Some(base.clone()),
        app_user: "svc".into(),
        app_password: "it's secret".into(),
        ..ClusterSpec::default()
    };
    let cluster = start(spec.clone());
    assert!(cluster.replicas().is_empty());
    assert!(cluster.node(0).datadir().starts_with(&base));
    assert_eq!(
        cluster.app_sql(0, "SELECT CURRENT_USER()").unwrap(),
        "svc@%"
    );
    // A second cluster may not reuse a directory in use.
    let err = Cluster::start(spec).expect_err("a non-empty base directory is refused");
    assert!(err.to_string().contains("not empty"), "{err:#}");
    let dir = tear_down(cluster);
    assert!(
        dir.join("node0/error.log").is_file(),
        "the base directory is kept"
    );
}

#[test]
fn cli_runs_a_cluster_until_sigterm() {
    let work = tempfile::tempdir().unwrap();
    let state_file = work.path().join("state.json");
    let mut chaos = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "cluster",
            "--replicas",
            "1",
            "--cpu-quota",
            "0.5",
            "--print-env",
            "--state-file",
        ])
        .arg(&state_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !state_file.exists() {
        assert!(chaos.try_wait().unwrap().is_none(), "chaos exited early");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no state file"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let primary = state["primary"].as_str().unwrap().to_owned();
    let dir = state["dir"].as_str().unwrap().to_owned();
    assert_eq!(state["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(state["nodes"][0]["role"], "primary");
    assert_eq!(state["cpu_quota"], 0.5);
    let cgroups: Vec<PathBuf> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["cgroups"].as_array().unwrap().iter())
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    assert!(cgroups.len() >= 2, "{cgroups:?}");
    assert!(cgroups.iter().all(|g| g.is_dir()), "{cgroups:?}");

    let port = primary.rsplit_once(':').unwrap().1;
    let answer = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            "-uapp",
            "-papp",
            "-N",
            "-e",
            "SELECT 42",
        ])
        .arg(format!("-P{port}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "42");

    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(chaos.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let output = chaos.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SLUICE_CLUSTER "))
        .expect("a SLUICE_CLUSTER line");
    assert!(line.contains(&format!("primary={primary} ")), "{line}");
    assert!(line.contains(" ca= "), "{line}");
    assert!(
        stdout.contains(&format!("export SLUICE_PRIMARY='{primary}'")),
        "{stdout}"
    );

    assert!(!state_file.exists(), "the state file is removed on exit");
    assert!(
        cgroups.iter().all(|g| !g.exists()),
        "the cgroups are removed on exit"
    );
    assert!(
        !Path::new(&dir).exists(),
        "the cluster directory is removed on exit"
    );
    let pgrep = Command::new("pgrep").arg("-f").arg(&dir).output().unwrap();
    assert!(
        pgrep.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&pgrep.stdout)
    );
}

/// CPU time the node's cgroup used and the periods it was throttled in,
/// while `sql` ran on it, with the wall time the statement took.
fn cpu_while(cluster: &Cluster, node: usize, sql: &str) -> (Duration, Duration, u64) {
    let group = cluster.cpu_cgroup(node).expect("the node has a cgroup");
    let before = group.stat().unwrap();
    let started = Instant::now();
    cluster.root_sql(node, sql).unwrap();
    let wall = started.elapsed();
    let after = group.stat().unwrap();
    let usage = after.usage.expect("CPU usage is accounted") - before.usage.unwrap();
    (
        usage,
        wall,
        after.throttled_periods - before.throttled_periods,
    )
}

fn in_cgroup(pid: u32, group: &Path) -> bool {
    let relative = group
        .iter()
        .skip_while(|c| !c.to_string_lossy().starts_with("sluice-chaos-"))
        .collect::<PathBuf>();
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .any(|l| l.rsplit(':').next().map(Path::new) == Some(&Path::new("/").join(&relative)))
}

#[test]
fn cpu_quota_caps_each_node_at_its_share_of_a_cpu() {
    const QUOTA: f64 = 0.25;
    // About half a CPU-second of SHA-256 on a 2-CPU VM: two seconds capped.
    const BURN: &str = "SELECT BENCHMARK(6000000, SHA2('sluice', 256))";
    let cluster = start(ClusterSpec {
        replicas: 1,
        cpu_quota: Some(QUOTA),
        ..ClusterSpec::default()
    });
    let groups: Vec<PathBuf> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.cpu_cgroup(n.index()).unwrap().path().to_path_buf())
        .collect();
    assert_ne!(groups[0], groups[1], "each node has a group of its own");
    for node in cluster.nodes() {
        let group = cluster.cpu_cgroup(node.index()).unwrap();
        assert_eq!(group.quota().unwrap(), Some(QUOTA));
        for path in group.paths() {
            assert!(
                in_cgroup(node.pid().unwrap(), path),
                "node {} is not in {}",
                node.index(),
                path.display()
            );
        }
    }

    let (capped_cpu, capped_wall, capped_throttled) = cpu_while(&cluster, 0, BURN);
    let capped_rate = capped_cpu.as_secs_f64() / capped_wall.as_secs_f64();
    let group = cluster.cpu_cgroup(0).unwrap();
    group.set_quota(None).unwrap();
    assert_eq!(group.quota().unwrap(), None);
    let (free_cpu, free_wall, free_throttled) = cpu_while(&cluster, 0, BURN);
    let free_rate = free_cpu.as_secs_f64() / free_wall.as_secs_f64();
    eprintln!(
        "capped: {capped_cpu:?} CPU in {capped_wall:?} ({capped_rate:.2} CPU, throttled in \
         {capped_throttled} periods); uncapped: {free_cpu:?} in {free_wall:?} ({free_rate:.2} CPU, \
         {free_throttled} throttled); wall time per CPU-second {:.1}x longer capped",
        free_rate / capped_rate
    );
    assert!(
        capped_cpu >= Duration::from_millis(200),
        "the statement burned CPU: {capped_cpu:?}"
    );
    // At most the quota over the wall time, plus what may be left of the
    // current 100 ms period's quota when the statement starts (two periods'
    // worth of slack), however idle the machine is.
    assert!(
        capped_cpu.as_secs_f64() <= QUOTA * (capped_wall.as_secs_f64() + 0.2),
        "capped at {capped_rate:.3} CPU"
    );
    assert!(
        capped_throttled >= 5,
        "throttled in {capped_throttled} periods"
    );
    // Without the cap the same statement gets more than the quota even on a
    // busy two-CPU machine, and is never throttled.
    assert_eq!(free_throttled, 0);
    assert!(free_rate > QUOTA * 1.3, "uncapped only {free_rate:.3} CPU");

    // A restarted node goes back into its group.
    group.set_quota(Some(QUOTA)).unwrap();
    cluster.kill_node(1).unwrap();
    cluster.start_node(1).unwrap();
    assert!(in_cgroup(cluster.node(1).pid().unwrap(), &groups[1]));

    tear_down(cluster);
    for group in &groups {
        assert!(!group.exists(), "{} is removed", group.display());
        assert!(
            !group.parent().unwrap().exists(),
            "the cluster's group is removed"
        );
    }
}

#[test]
fn cpu_quota_out_of_range_is_refused() {
    let err = Cluster::start(ClusterSpec {
        replicas: 0,
        cpu_quota: Some(0.0),
        ..ClusterSpec::default()
    })
    .expect_err("a zero quota is refused");
    assert!(err.to_string().contains("CPU quota"), "{err:#}");
}

#[test]
fn cgroups_of_dead_processes_are_removed_by_the_next_cluster() {
    let spec = ClusterSpec {
        replicas: 0,
        cpu_quota: Some(0.5),
        ..ClusterSpec::default()
    };
    let first = start(spec.clone());
    let root = first
        .cpu_cgroup(0)
        .unwrap()
        .path()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    // A process that has exited: its id names the abandoned group.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let abandoned = root.join(format!("sluice-chaos-{dead_pid}-0"));
    std::fs::create_dir_all(abandoned.join("node0")).unwrap();
    let second = start(spec);
    assert!(!abandoned.exists(), "{} is removed", abandoned.display());
    assert!(
        first.cpu_cgroup(0).unwrap().path().exists(),
        "a live process's groups are kept"
    );
    tear_down(second);
    tear_down(first);
}

#[test]
fn delayed_replica_applies_writes_only_after_its_delay() {
    let cluster = start(ClusterSpec {
        replica_delays: [(2, 2)].into_iter().collect(),
        ..ClusterSpec::default()
    });
    assert_eq!(cluster.replica_delay(2), 2);
    assert_eq!(cluster.replica_delay(1), 0);
    // The setup replicated before the delay was set.
    assert!(count(&cluster, 2, "mysql.user WHERE User = 'app'") >= 1);
    let status = cluster.slave_status(2).unwrap().expect("a replica");
    assert_eq!(status.get("SQL_Delay").map(String::as_str), Some("2"));

    cluster
        .app_sql(0, "CREATE TABLE test.d (id INT PRIMARY KEY)")
        .unwrap();
    let written = Instant::now();
    // The undelayed replica catches up; waiting skips the delayed one.
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 1, "test.d"), 0);
    let err = cluster
        .app_sql(2, "SELECT COUNT(*) FROM test.d")
        .expect_err("the delayed replica has not created the table yet");
    assert_eq!(err.code(), Some(1146), "{err}");
    while cluster.app_sql(2, "SELECT COUNT(*) FROM test.d").is_err() {
        assert!(
            written.elapsed() < Duration::from_secs(20),
            "the delayed replica never applied the table"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // The server compares whole seconds: an event stamped at second S is
    // applied once the replica's clock reads S + delay, so a write made late
    // in its second is applied a little over delay − 1 s later.
    assert!(
        written.elapsed() >= Duration::from_millis(900),
        "applied after {:?}, before its 2 s delay (less its 1 s timestamp granularity)",
        written.elapsed()
    );

    // The delay can be removed (and set) while running.
    cluster.set_replica_delay(2, 0).unwrap();
    assert_eq!(cluster.replica_delay(2), 0);
    cluster.app_sql(0, "INSERT INTO test.d VALUES (1)").unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).unwrap();
    assert_eq!(count(&cluster, 2, "test.d"), 1);
    assert!(cluster.set_replica_delay(0, 1).is_err(), "the primary cannot be delayed");
    tear_down(cluster);
}

#[test]
fn delay_on_a_node_that_is_not_a_replica_is_refused() {
    let err = Cluster::start(ClusterSpec {
        replica_delays: [(3, 1)].into_iter().collect(),
        ..ClusterSpec::default()
    })
    .expect_err("node 3 does not exist");
    assert!(err.to_string().contains("cannot delay node 3"), "{err}");
}
