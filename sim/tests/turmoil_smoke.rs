//! The real proxy in front of simulated MariaDB / MySQL clusters on turmoil's simulated
//! network: clients connect through Sluice with Sluice's own client code, run DDL, DML
//! and transactions (with row-lock contention), a replica crashes, the proxy keeps
//! serving. Plus replication itself: a replica catches up and refuses app writes.

#![cfg(not(madsim))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::cluster::{ClusterConfig, SimCluster};
use sim::wire::{Account, Plugin};
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
        ext_caps: 0,
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
monitor_timeout_ms = 80
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

/// The whole scenario for one flavour; returns a fingerprint of what happened (simulated
/// duration, every node's binlog with commit times).
fn proxy_scenario(cfg: ClusterConfig, seed: u64) -> String {
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
            // A new session has written nothing: at the default (session)
            // level it may read a replica that is behind. `global` makes the
            // read see every write the primary has committed.
            c.query("SET @@sluice_consistency = global").await?;
            let r = c.query("SELECT n FROM counter WHERE id = 1").await?;
            assert_eq!(one(&r), (CLIENTS * INCREMENTS).to_string());

            cluster.crash(2);
            // The open session and new ones keep working on the primary.
            c.query("INSERT INTO t0 VALUES (10, 'after crash')").await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut c2 = connect_retry("proxy:3306", &login("app", "app", Some("test")), &rng).await;
            let r = c2.query("SELECT v FROM t0 WHERE id = 10").await?;
            assert_eq!(one(&r), "after crash");
            let r = c2.query("/* sluice: route=primary */ SELECT @@read_only, @@server_id").await?;
            assert_eq!(rows(&r), vec![vec!["0", "1"]]);
            // Reads split to the replica that is still up.
            let r = c2.query("SELECT @@read_only, @@server_id").await?;
            assert_eq!(rows(&r), vec![vec!["1", "2"]]);

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
    let mut fp = format!("elapsed={:?}\n", sim.elapsed());
    for i in 0..cluster.len() {
        let e = cluster.server(i).engine();
        for ev in e.binlog() {
            fp.push_str(&format!("db{i} {} t={} n={}\n", ev.gtid, ev.commit_time_ms, ev.changes.len()));
        }
    }
    fp
}

#[test]
fn same_seed_same_history() {
    let a = proxy_scenario(ClusterConfig::mariadb(3), 7);
    let b = proxy_scenario(ClusterConfig::mariadb(3), 7);
    assert_eq!(a, b);
    assert!(a.lines().count() > 30, "{a}");
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

// ---------------------------------------------------------------------------------------
// Wire-protocol details and cluster faults, against the simulated servers directly.

use sluice::protocol::constants::com;
use sluice::protocol::packet::{frame_packet, join_payload, Framed, Reader};
use sluice::protocol::packets;
use sluice::protocol::response::{Event, Expect, ResponseTracker};

/// Sends one command and returns the payloads of its whole response.
async fn raw(c: &mut Conn, payload: &[u8], expect: Expect) -> Vec<Vec<u8>> {
    c.conn.send(0, payload).await.expect("send");
    read_response(c, expect).await
}

async fn read_response(c: &mut Conn, expect: Expect) -> Vec<Vec<u8>> {
    let mut t = ResponseTracker::new(expect, c.caps).with_ext_caps(c.ext_caps);
    let mut wire = Vec::new();
    loop {
        let (n, ev) = t.advance(c.conn.buffered()).expect("well-formed response");
        wire.extend_from_slice(&c.conn.buffered()[..n]);
        c.conn.consume(n);
        if ev == Event::Done {
            break;
        }
        if n == 0 {
            assert!(c.conn.fill().await.expect("read") > 0, "connection closed mid-response");
        }
    }
    let mut out = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let Ok(Framed::Packet { wire_len, payload_len, .. }) = frame_packet(rest, usize::MAX) else { panic!("bad framing") };
        out.push(join_payload(&rest[..wire_len], payload_len));
        rest = &rest[wire_len..];
    }
    out
}

fn query_cmd(sql: &str) -> Vec<u8> {
    let mut p = vec![com::QUERY];
    p.extend_from_slice(sql.as_bytes());
    p
}

fn err_code(p: &[u8]) -> Option<u16> {
    packets::Err::parse(p).map(|e| e.code)
}

#[test]
fn wire_protocol_features_of_a_simulated_mariadb() {
    let seed = 45;
    let mut sim = builder(seed);
    let mut cfg = ClusterConfig::mariadb(2);
    cfg.accounts.push(Account::new("sha", "pw2").with_plugin(Plugin::CachingSha2));
    let cluster = SimCluster::new(cfg, seed);
    cluster.register_turmoil(&mut sim);
    let cl = cluster.clone();
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let l = login("app", "app", Some("test"));
        let mut a = connect_retry("db0:3306", &l, &rng).await;
        // A caching_sha2_password account behind a native default: auth switch, then
        // full authentication by RSA, then the fast path.
        for _ in 0..2 {
            let mut s = connect(&TurmoilNet, "db0:3306", &login("sha", "pw2", None), &rng).await?;
            assert_eq!(one(&s.query("SELECT 1").await?), "1");
            s.quit().await;
        }
        let bad = connect(&TurmoilNet, "db0:3306", &login("sha", "nope", None), &rng).await.err().unwrap();
        assert_eq!(code(&bad), Some(1045));
        assert!(String::from_utf8_lossy(&a.server_version).starts_with("5.5.5-10.11"));
        assert_eq!(a.server_caps & cap::LONG_PASSWORD, 0, "MariaDB clears CLIENT_MYSQL");
        a.query("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10), d DATETIME)").await?;
        a.query("INSERT INTO t VALUES (1, 'a', NULL), (2, 'b', '2024-01-02 03:04:05'), (3, 'c', NULL)").await?;

        // Prepared statement with a parameter; binary rows.
        let mut p = vec![com::STMT_PREPARE];
        p.extend_from_slice(b"SELECT id, v, d FROM t WHERE id > ? ORDER BY id");
        let prep = raw(&mut a, &p, Expect::Prepare).await;
        let mut r = Reader::new(&prep[0][1..]);
        let (id, cols, params) = (r.u32().unwrap(), r.u16().unwrap(), r.u16().unwrap());
        assert_eq!((cols, params), (0, 1));
        let mut e = vec![com::STMT_EXECUTE];
        e.extend_from_slice(&id.to_le_bytes());
        e.push(0);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&[0, 1, 8, 0]);
        e.extend_from_slice(&1i64.to_le_bytes());
        let res = raw(&mut a, &e, Expect::Execute).await;
        // count, 3 column defs, 2 rows, OK terminator (DEPRECATE_EOF)
        assert_eq!(res.len(), 1 + 3 + 2 + 1, "{res:?}");
        assert_eq!(res[0], vec![3]);
        // row id=2: header, null bitmap, LONG 2, "b", DATETIME packed
        assert_eq!(res[4], vec![0, 0, 2, 0, 0, 0, 1, b'b', 7, 0xE8, 0x07, 1, 2, 3, 4, 5]);
        // row id=3: d is NULL -> bit 2+2 of the bitmap
        assert_eq!(res[5], vec![0, 1 << 4, 3, 0, 0, 0, 1, b'c']);
        let mut close = vec![com::STMT_CLOSE];
        close.extend_from_slice(&id.to_le_bytes());
        a.conn.send(0, &close).await?;
        let res = raw(&mut a, &e, Expect::Execute).await;
        assert_eq!(err_code(&res[0]), Some(1243));

        // Ping, init_db, reset connection.
        let res = raw(&mut a, &[com::PING], Expect::OnePacket).await;
        assert_eq!(res[0][0], 0);
        let mut idb = vec![com::INIT_DB];
        idb.extend_from_slice(b"nosuch");
        assert_eq!(err_code(&raw(&mut a, &idb, Expect::OnePacket).await[0]), Some(1049));
        a.query("SET @x = 5").await?;
        assert_eq!(one(&a.query("SELECT @x").await?), "5");
        assert_eq!(raw(&mut a, &[com::RESET_CONNECTION], Expect::OnePacket).await[0][0], 0);
        assert_eq!(one(&a.query("SELECT @x").await?), "NULL");

        // Multi-statement: every result, chained, stopping at the first error.
        let res = raw(&mut a, &query_cmd("SELECT 1; SELECT 2; SELECT nosuchcol FROM t; SELECT 3"), Expect::Query).await;
        assert_eq!(err_code(res.last().unwrap()), Some(1054));
        assert_eq!(res.iter().filter(|p| p.as_slice() == b"\x011").count() + res.iter().filter(|p| p.as_slice() == b"\x012").count(), 2);

        // Session tracking of last_gtid.
        a.query("SET SESSION session_track_system_variables = 'last_gtid'").await?;
        let res = raw(&mut a, &query_cmd("INSERT INTO t VALUES (4, 'd', NULL)"), Expect::Query).await;
        let ok = packets::Ok::parse(&res[0], a.caps).unwrap();
        let changes: Vec<(u8, Vec<u8>)> = ok.state_changes().map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(changes, vec![(0, b"\x09last_gtid\x050-1-3".to_vec())]);

        // KILL QUERY from another connection interrupts a blocked statement.
        let mut b = connect_retry("db0:3306", &l, &rng).await;
        let mut k = connect_retry("db0:3306", &l, &rng).await;
        assert_eq!(one(&a.query("SELECT GET_LOCK('x', 100)").await?), "1");
        b.conn.send(0, &query_cmd("SELECT GET_LOCK('x', 100)")).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        k.query(&format!("KILL QUERY {}", b.thread_id)).await?;
        let res = read_response(&mut b, Expect::Query).await;
        assert_eq!(err_code(&res[0]), Some(1317));
        // ... and a lock wait times out by itself (the deadline is honoured).
        let t0 = tokio::time::Instant::now();
        assert_eq!(one(&b.query("SELECT GET_LOCK('x', 1)").await?), "0");
        assert!(t0.elapsed() >= Duration::from_millis(1000), "{:?}", t0.elapsed());
        // COM_CHANGE_USER keeps the connection id and resets the session.
        b.query("SET @y = 1").await?;
        b.change_user(&login("root", "root", Some("test")), 45, &rng).await?;
        assert_eq!(one(&b.query("SELECT @y").await?), "NULL");
        assert_eq!(one(&b.query("SELECT CONNECTION_ID()").await?), b.thread_id.to_string());
        let bad = b.change_user(&login("root", "wrong", None), 45, &rng).await.err().unwrap();
        assert_eq!(code(&bad), Some(1045));
        let mut b = connect_retry("db0:3306", &l, &rng).await;
        // KILL of an idle connection closes it.
        k.query(&format!("KILL {}", b.thread_id)).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(b.query("SELECT 1").await.is_err());
        // COM_PROCESS_KILL works too.
        let mut pk = vec![com::PROCESS_KILL];
        pk.extend_from_slice(&999u32.to_le_bytes());
        assert_eq!(err_code(&raw(&mut k, &pk, Expect::OnePacket).await[0]), Some(1094));

        // Wrong password, unknown user.
        let bad = connect(&TurmoilNet, "db0:3306", &login("app", "nope", None), &rng).await.err().unwrap();
        assert_eq!(code(&bad), Some(1045));
        let bad = connect(&TurmoilNet, "db0:3306", &login("who", "x", None), &rng).await.err().unwrap();
        assert_eq!(code(&bad), Some(1045));

        // Pause: the connection stays, nothing is answered until resumed.
        cl.pause(0);
        k.conn.send(0, &[com::PING]).await?;
        let waited = tokio::time::timeout(Duration::from_millis(300), read_response(&mut k, Expect::OnePacket)).await;
        assert!(waited.is_err(), "a paused server answered");
        cl.resume(0);
        let res = read_response(&mut k, Expect::OnePacket).await;
        assert_eq!(res[0][0], 0);

        // Crash: connections drop, new ones are refused until restart.
        cl.crash_clean(1);
        let refused = connect(&TurmoilNet, "db1:3306", &l, &rng).await;
        assert!(refused.is_err());
        cl.restart(1);
        let mut r1 = connect_retry("db1:3306", &l, &rng).await;
        assert_eq!(one(&r1.query("SELECT @@read_only").await?), "1");
        a.quit().await;
        k.quit().await;
        r1.quit().await;
        Ok(())
    });
    sim.run().expect("simulation");
}

#[test]
fn mysql8_tracks_own_gtid_and_authenticates_with_caching_sha2() {
    let seed = 46;
    let mut sim = builder(seed);
    let cluster = SimCluster::new(ClusterConfig::mysql(2), seed);
    cluster.register_turmoil(&mut sim);
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let l = login("app", "app", Some("test"));
        // First login: full authentication by RSA; second: fast path.
        let mut a = connect_retry("db0:3306", &l, &rng).await;
        let mut b = connect(&TurmoilNet, "db0:3306", &l, &rng).await?;
        assert_eq!(String::from_utf8_lossy(&a.server_version), "8.0.36-sim");
        let bad = connect(&TurmoilNet, "db0:3306", &login("app", "nope", None), &rng).await.err().unwrap();
        assert_eq!(code(&bad), Some(1045));
        a.query("CREATE TABLE t (id INT PRIMARY KEY)").await?;
        a.query("SET SESSION session_track_gtids = 'OWN_GTID'").await?;
        let res = raw(&mut a, &query_cmd("INSERT INTO t VALUES (1)"), Expect::Query).await;
        let ok = packets::Ok::parse(&res[0], a.caps).unwrap();
        let changes: Vec<(u8, Vec<u8>)> = ok.state_changes().map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, 3);
        let text = String::from_utf8_lossy(&changes[0].1[2..]).into_owned();
        assert!(text.ends_with(":2"), "{text}");
        let executed = one(&b.query("SELECT @@gtid_executed").await?);
        assert!(executed.ends_with(":1-2"), "{executed}");
        a.quit().await;
        b.quit().await;
        Ok(())
    });
    sim.run().expect("simulation");
}

#[test]
fn semi_sync_waits_for_a_replica_and_falls_back_after_the_timeout() {
    let seed = 47;
    let mut sim = builder(seed);
    let mut cfg = ClusterConfig::mariadb(3);
    cfg.semi_sync = true;
    cfg.semi_sync_timeout_ms = 1000;
    let cluster = SimCluster::new(cfg, seed);
    cluster.register_turmoil(&mut sim);
    let cl = cluster.clone();
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let mut p = connect_retry("db0:3306", &login("app", "app", Some("test")), &rng).await;
        // Let the replicas connect.
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.query("CREATE TABLE t (id INT PRIMARY KEY)").await?;
        let t0 = tokio::time::Instant::now();
        p.query("INSERT INTO t VALUES (1)").await?;
        let acked = t0.elapsed();
        assert!(acked < Duration::from_millis(200), "{acked:?}");
        // No replica acknowledges: the commit waits for the timeout, then goes async.
        cl.stall_replication(1, Duration::from_secs(3));
        cl.stall_replication(2, Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = tokio::time::Instant::now();
        p.query("INSERT INTO t VALUES (2)").await?;
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(1000) && waited < Duration::from_millis(1500), "{waited:?}");
        assert!(!cl.server(0).engine().semi_sync_active());
        // After the stall the replicas catch up and semi-sync switches back on.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(cl.server(0).engine().semi_sync_active());
        assert!(cl.caught_up(1, 0) && cl.caught_up(2, 0));
        p.quit().await;
        Ok(())
    });
    sim.run().expect("simulation");
}

#[test]
fn async_primary_crash_loses_unreplicated_writes_and_a_replica_is_promoted() {
    let seed = 48;
    let mut sim = builder(seed);
    let cluster = SimCluster::new(ClusterConfig::mariadb(3), seed);
    cluster.register_turmoil(&mut sim);
    let cl = cluster.clone();
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let l = login("app", "app", Some("test"));
        let mut p = connect_retry("db0:3306", &l, &rng).await;
        p.query("CREATE TABLE t (id INT PRIMARY KEY)").await?;
        p.query("INSERT INTO t VALUES (1)").await?;
        for _ in 0..300 {
            if cl.caught_up(1, 0) && cl.caught_up(2, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(cl.caught_up(1, 0) && cl.caught_up(2, 0));
        // A lag spike delays applying, not receiving.
        cl.lag_spike(1, Duration::from_millis(800));
        cl.stall_replication(2, Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.query("INSERT INTO t VALUES (2)").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!cl.caught_up(1, 0), "applied during the lag spike");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(cl.caught_up(1, 0), "not applied after the lag spike");
        // Now nothing reaches any replica: the next write is lost with the primary.
        cl.stall_replication(1, Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.query("INSERT INTO t VALUES (3)").await?;
        let lost = cl.crash(0);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(p.query("SELECT 1").await.is_err());

        cl.promote(1).expect("promote");
        assert_eq!(cl.primary(), Some(1));
        let mut n = connect_retry("db1:3306", &l, &rng).await;
        n.query("INSERT INTO t VALUES (4)").await?;
        let ids = rows(&n.query("SELECT id FROM t ORDER BY id").await?);
        assert_eq!(ids, vec![vec!["1"], vec!["2"], vec!["4"]]);
        // db2 follows the new primary (its stall ends first), db0 comes back as a replica.
        cl.restart(0);
        for _ in 0..2000 {
            if cl.caught_up(2, 1) && cl.caught_up(0, 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(cl.caught_up(2, 1), "db2 did not follow the new primary");
        assert!(cl.caught_up(0, 1), "db0 did not rejoin as a replica");
        let mut old = connect_retry("db0:3306", &l, &rng).await;
        assert_eq!(one(&old.query("SELECT COUNT(*) FROM t").await?), "3");
        let e = old.query("INSERT INTO t VALUES (5)").await.unwrap_err();
        assert_eq!(code(&e), Some(1290));
        n.quit().await;
        old.quit().await;
        Ok(())
    });
    sim.run().expect("simulation");
}

#[test]
fn sessions_follow_the_clients_multi_statements_flag_and_authenticated_account() {
    let seed = 46;
    let mut sim = builder(seed);
    let cluster = SimCluster::new(ClusterConfig::mariadb(1), seed);
    cluster.register_turmoil(&mut sim);
    sim.client("app", async move {
        let rng: Rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let mut l = login("app", "app", Some("test"));
        l.caps &= !cap::MULTI_STATEMENTS;
        let mut a = connect_retry("db0:3306", &l, &rng).await;
        let e = a.query("SELECT 1; SELECT 2").await.err().expect("refused");
        assert_eq!(code(&e), Some(1064), "{e}");
        assert!(e.to_string().contains("near 'SELECT 2' at line 1"), "{e}");
        assert_eq!(one(&a.query("SELECT 1;").await?), "1", "a trailing ';' is not a second statement");
        // COM_SET_OPTION MYSQL_OPTION_MULTI_STATEMENTS_ON
        let res = raw(&mut a, &[com::SET_OPTION, 0, 0], Expect::OnePacket).await;
        assert_ne!(res[0][0], 0xFF, "{res:?}");
        let res = raw(&mut a, &query_cmd("SELECT 1; SELECT 2"), Expect::Query).await;
        assert!(res.iter().all(|p| err_code(p).is_none()), "{res:?}");
        assert!(res.iter().any(|p| p.ends_with(b"\x012")), "second result set: {res:?}");

        // Sessions run as the account that authenticated: CURRENT_USER() and the
        // read_only exemption of a privileged account follow it.
        assert_eq!(one(&a.query("SELECT CURRENT_USER()").await?), "app@%");
        let mut root = connect_retry("db0:3306", &login("root", "root", Some("test")), &rng).await;
        assert_eq!(one(&root.query("SELECT CURRENT_USER()").await?), "root@%");
        root.query("CREATE TABLE t (id INT PRIMARY KEY)").await?;
        root.query("SET GLOBAL read_only = 1").await?;
        let e = a.query("INSERT INTO t VALUES (1)").await.err().expect("read-only for app");
        assert_eq!(code(&e), Some(1290), "{e}");
        root.query("INSERT INTO t VALUES (2)").await?;
        Ok(())
    });
    sim.run().unwrap();
}
