//! `KILL [QUERY] <id>` and COM_PROCESS_KILL name the connection id Sluice gave the client
//! and act on the backend connection serving that session.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;
use sluice::protocol::constants::com;
use sluice::protocol::response::Expect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_interrupts_the_victims_statement_and_keeps_its_session() {
    let proxy = proxy().await;
    let mut victim = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let mut killer = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let id = victim.id();
    victim.query_drop("SET @mine = 9").await.unwrap();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (victim, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (mut victim, r) = sleeper.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "query was interrupted");
    // MariaDB ends a killed SLEEP() early, returning 1 (or error 1317 for other statements).
    match r {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert!(e.to_string().contains("1317"), "{e}"),
    }
    let v: Option<i64> = victim.query_first("SELECT @mine").await.unwrap().unwrap();
    assert_eq!(v, Some(9), "the session survives KILL QUERY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_connection_closes_the_victims_session() {
    let proxy = proxy().await;
    let mut victim = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let mut killer = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let id = victim.id();
    // In a transaction the session holds its backend connection.
    victim.query_drop("BEGIN").await.unwrap();
    let backend_thread: i64 = victim.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    killer.query_drop(format!("KILL {id}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err(), "killed session is closed");
    let r = shared().cluster.root_user();
    let mut root = mysql_async::Conn::new(opts(&primary_addr(), &r.user, &r.password, false)).await.unwrap();
    let n: Option<i64> = root.query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {backend_thread}")).await.unwrap();
    assert_eq!(n, Some(0), "the backend connection was killed too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_connection_of_an_idle_multiplexed_session_leaves_the_pooled_connection_alone() {
    let proxy = proxy().await;
    let mut victim = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let mut killer = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let id = victim.id();
    // Between statements the session holds nothing: the connection that ran this
    // went back to the pool.
    let backend_thread: i64 = victim.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    killer.query_drop(format!("KILL {id}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err(), "killed session is closed");
    let r = shared().cluster.root_user();
    let mut root = mysql_async::Conn::new(opts(&primary_addr(), &r.user, &r.password, false)).await.unwrap();
    let n: Option<i64> = root.query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {backend_thread}")).await.unwrap();
    assert_eq!(n, Some(1), "the pooled connection serves other sessions still");
    let v: Option<i64> = killer.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn com_process_kill_uses_sluice_ids_and_checks_owner_and_existence() {
    let proxy = proxy().await;
    let mut victim = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let id = victim.id();
    // Another user may not kill app's session.
    let mut other = raw_as(proxy.local_addr(), "other", "otherpw", CAPS).await;
    let mut p = vec![com::PROCESS_KILL];
    p.extend_from_slice(&id.to_le_bytes());
    let resp = roundtrip(&mut other, &p, Expect::OnePacket).await;
    assert_eq!(trailing_err(&resp), Some((1095, format!("You are not owner of thread {id}"))));
    // Unknown ids get 1094.
    let resp = roundtrip(&mut other, &query("KILL 4000000000"), Expect::Query).await;
    assert_eq!(trailing_err(&resp), Some((1094, "Unknown thread id: 4000000000".into())));
    // KILL USER would reach every session of the backend account: refused.
    let resp = roundtrip(&mut other, &query("KILL USER app"), Expect::Query).await;
    assert_eq!(trailing_err(&resp).map(|e| e.0), Some(1235));
    // The owner may.
    let mut same = raw(proxy.local_addr(), CAPS).await;
    let resp = roundtrip(&mut same, &p, Expect::OnePacket).await;
    assert_eq!(resp[4], 0x00, "OK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err());
}
