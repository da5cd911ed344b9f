//! The real proxy in front of simulated MariaDB / MySQL clusters on turmoil's simulated
//! network: clients connect through Sluice with Sluice's own client code, run DDL, DML
//! and transactions (with row-lock contention), a replica crashes, the proxy keeps
//! serving. Plus replication itself: a replica catches up and refuses app writes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::cluster::{ClusterConfig, SimCluster};
use sim::net::TurmoilNet;
use sluice::backend::conn::{connect, BackendConn, Login, Secret, TextResult};
use sluice::protocol::constants::cap;
use sluice::Error;

type Conn = BackendConn<turmoil::net::TcpStream>;
type Rng = Arc<Mutex<ChaCha8Rng>>;

const CLIENTS: usize = 4;
const INCREMENTS: usize = 5;

fn login(user: &str, password: &str, db: Option<&str>) -> Login {
    Login {
        user: user.into(),
        secret: Secret::Password(password.into()),
        database: db.map(|d| d.as_bytes().to_vec()),
        charset: 45,
        caps: cap::SUPPORTED & !cap::SSL & !cap::LOCAL_FILES,
        attrs: None,
        tls: None,
        timeout: Duration::from_secs(5),
    }
}

/// Connects, retrying while the target is not up yet.
async fn connect_retry(addr: &str, l: &Login, rng: &Rng) -> Conn {
    let mut last = None;
    for _ in 0..200 {
        match connect(&TurmoilNet, addr, l, rng).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {addr}: {last:?}");
}

fn rows(r: &TextResult) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| row.iter().map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or("NULL".into())).collect())
        .collect()
}

fn one(r: &TextResult) -> String {
    rows(r)[0][0].clone()
}

fn code(e: &Error) -> Option<u16> {
    match e {
        Error::BackendErr { code, .. } => Some(*code),
        _ => None,
    }
}

fn proxy_config(cluster: &SimCluster) -> sluice::Config {
    let nodes = cluster.addrs().iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let toml = format!(
        r#"
[proxy]
listen = "proxy:3306"

[[users]]
name = "app"
password = "app"

[backend]
user = "app"
password = "app"
nodes = [{nodes}]
connect_timeout_ms = 2000
monitor_interval_ms = 100
monitor_timeout_ms = 1000
"#
    );
    sluice::Config::parse(&toml).expect("proxy config")
}

fn builder(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(600))
        .max_message_latency(Duration::from_millis(5))
        .build()
}

/// One client's work through the proxy: its own table with DDL, DML, SELECT and
/// transactions, then increments of a shared counter row under row-lock contention.
async fn client_work(k: usize, rng: Rng) -> Result<(), Error> {
    let mut c = connect_retry("proxy:3306", &login("app", "app", Some("test")), &rng).await;
    let t = format!("t{k}");
    c.query(&format!("CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(32))")).await?;
    let r = c.query(&format!("INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")).await?;
    assert!(r.rows.is_empty());
    let r = c.query(&format!("SELECT id, v FROM {t} ORDER BY id")).await?;
    assert_eq!(r.columns, vec!["id", "v"]);
    assert_eq!(rows(&r), vec![vec!["1", "a"], vec!["2", "b"]]);

    c.query("BEGIN").await?;
    c.query(&format!("INSERT INTO {t} VALUES (3, 'c')")).await?;
    c.query(&format!("UPDATE {t} SET v = 'z' WHERE id = 1")).await?;
    c.query("COMMIT").await?;
    c.query("START TRANSACTION").await?;
    c.query(&format!("INSERT INTO {t} VALUES (4, 'd')")).await?;
    c.query("ROLLBACK").await?;
    let r = c.query(&format!("SELECT COUNT(*), MAX(v) FROM {t}")).await?;
    assert_eq!(rows(&r), vec![vec!["3", "z"]]);

    // Multi-statement: the first result set comes back, the rest is consumed.
    let r = c.query(&format!("SELECT v FROM {t} WHERE id = 2; SELECT 1")).await?;
    assert_eq!(one(&r), "b");
    let e = c.query(&format!("INSERT INTO {t} VALUES (1, 'dup')")).await.unwrap_err();
    assert_eq!(code(&e), Some(1062), "{e}");

    // Shared counter (created by client 0): contended row locks.
    loop {
        match c.query("SELECT n FROM counter WHERE id = 1").await {
            Ok(r) if !r.rows.is_empty() => break,
            Ok(_) => {}
            Err(e) if code(&e) == Some(1146) => {}
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..INCREMENTS {
        c.query("BEGIN").await?;
        c.query("UPDATE counter SET n = n + 1 WHERE id = 1").await?;
        tokio::time::sleep(Duration::from_millis(3)).await;
        c.query("COMMIT").await?;
    }
    c.quit().await;
    Ok(())
}

/// The whole scenario for one flavour.
fn proxy_scenario(cfg: ClusterConfig, seed: u64) {
    let mut sim = builder(seed);
    let cluster = SimCluster::new(cfg, seed);
    cluster.register_turmoil(&mut sim);
    let pcfg = proxy_config(&cluster);
    sim.host("proxy", move || {
        let pcfg = pcfg.clone();
        async move {
            let handle = sluice::start(TurmoilNet, pcfg, seed).await?;
            assert_eq!(handle.local_addr(), "proxy:3306");
            std::future::pending::<()>().await;
            drop(handle);
            Ok(())
        }
    });
    let done = Arc::new(AtomicUsize::new(0));
    for k in 0..CLIENTS {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed + 100 + k as u64)));
        let done = done.clone();
        let cluster = cluster.clone();
        sim.client(format!("client{k}"), async move {
            if k == 0 {
                let mut c = connect_retry("proxy:3306", &login("app", "app", Some("test")), &rng).await;
                c.query("CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)").await?;
                c.query("INSERT INTO counter VALUES (1, 0)").await?;
                c.quit().await;
            }
            client_work(k, rng.clone()).await?;
            done.fetch_add(1, Ordering::SeqCst);
            if k != 0 {
                return Ok(());
            }
            // Client 0 waits for everyone, checks, crashes a replica and goes on.
            while done.load(Ordering::SeqCst) < CLIENTS {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut c = connect_retry("proxy:3306", &login("app", "app", Some("test")), &rng).await;
            let r = c.query("SELECT n FROM counter WHERE id = 1").await?;
            assert_eq!(one(&r), (CLIENTS * INCREMENTS).to_string());

            cluster.crash(2);
            // The open session and new ones keep working on the primary.
            c.query("INSERT INTO t0 VALUES (10, 'after crash')").await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut c2 = connect_retry("proxy:3306", &login("app", "app", Some("test")), &rng).await;
            let r = c2.query("SELECT v FROM t0 WHERE id = 10").await?;
            assert_eq!(one(&r), "after crash");
            let r = c2.query("SELECT @@read_only, @@server_id").await?;
            assert_eq!(rows(&r), vec![vec!["0", "1"]]);

            // The surviving replica has everything; the crashed one catches up after restart.
            for _ in 0..500 {
                if cluster.caught_up(1, 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(cluster.caught_up(1, 0), "db1 did not catch up");
            cluster.restart(2);
            for _ in 0..500 {
                if cluster.caught_up(2, 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(cluster.caught_up(2, 0), "db2 did not catch up after restart");
            let rows1 = cluster.server(1).engine().table_rows("test", "counter").unwrap();
            assert_eq!(rows1.len(), 1);
            c.quit().await;
            c2.quit().await;
            Ok(())
        });
    }
    sim.run().expect("simulation");
    assert_eq!(done.load(Ordering::SeqCst), CLIENTS);
}

#[test]
fn proxy_serves_a_mariadb_cluster_and_survives_a_replica_crash() {
    proxy_scenario(ClusterConfig::mariadb(3), 42);
}

#[test]
fn proxy_serves_a_mysql8_cluster_and_survives_a_replica_crash() {
    proxy_scenario(ClusterConfig::mysql(3), 43);
}

#[test]
fn replica_catches_up_and_refuses_app_writes() {
    let seed = 44;
    let mut sim = builder(seed);
    let mut cfg = ClusterConfig::mariadb(3);
    cfg.lag_ms = 200;
    cfg.lag_jitter_ms = 100;
    let cluster = SimCluster::new(cfg, seed);
    cluster.register_turmoil(&mut sim);
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let l = login("app", "app", Some("test"));
        let mut p = connect_retry("db0:3306", &l, &rng).await;
        let mut r1 = connect_retry("db1:3306", &l, &rng).await;
        p.query("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))").await?;
        p.query("INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z')").await?;
        let gtid = one(&p.query("SELECT @@last_gtid").await?);
        assert_eq!(gtid, "0-1-2");
        // Not applied yet: the replica's lag is at least 200 ms.
        let early = r1.query("SELECT COUNT(*) FROM t").await;
        assert!(matches!(&early, Err(e) if code(e) == Some(1146)), "{early:?}");
        let mut seen = String::new();
        for _ in 0..300 {
            if let Ok(r) = r1.query("SELECT COUNT(*) FROM t").await {
                seen = one(&r);
                if seen == "3" {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, "3", "db1 never caught up");
        let r = r1.query("SELECT @@gtid_slave_pos, @@read_only").await?;
        assert_eq!(rows(&r), vec![vec!["0-1-2", "1"]]);
        let st = r1.query("SHOW SLAVE STATUS").await?;
        assert_eq!(st.get(0, "Slave_IO_Running").as_deref(), Some("Yes"));
        assert_eq!(st.get(0, "Slave_SQL_Running").as_deref(), Some("Yes"));
        assert_eq!(st.get(0, "Master_Host").as_deref(), Some("db0"));

        let e = r1.query("INSERT INTO t VALUES (4, 'no')").await.unwrap_err();
        assert_eq!(code(&e), Some(1290), "{e}");
        // Still replicating after the refused write.
        p.query("INSERT INTO t VALUES (5, 'w')").await?;
        for _ in 0..300 {
            if one(&r1.query("SELECT COUNT(*) FROM t").await?) == "4" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(one(&r1.query("SELECT COUNT(*) FROM t").await?), "4");
        p.quit().await;
        r1.quit().await;
        Ok(())
    });
    sim.run().expect("simulation");
}
