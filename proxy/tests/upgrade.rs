//! Upgrades without dropped connections (docs/upgrade.md), with the `sluice` binary on
//! a real MariaDB cluster: a second process started with `--takeover` takes the
//! listening socket over from the running one, which drains its sessions and exits.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;
use sluice::protocol::conn::ReadError;

/// The test config on a fixed port (a takeover keeps the address) with `upgrade_socket`.
fn upgrade_config(port: u16, socket: &Path) -> String {
    config_text("", "").replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\"\nupgrade_socket = \"{}\"", socket.display()))
}

fn takeover_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--config").arg(dir.join("sluice.toml")).arg("--takeover").env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or("warn".into()));
    cmd
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `sluice` process of the test: SIGKILLed if the test ends (or fails) with it running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(cmd: &mut Command) -> (Proc, String) {
    let (child, addr) = spawn_ready(cmd);
    (Proc(child), addr)
}

/// SIGTERM, then up to 10 s to exit.
fn stop(mut p: Proc) {
    let _ = Command::new("kill").args(["-TERM", &p.0.id().to_string()]).status();
    wait_exit(&mut p.0, Duration::from_secs(10));
}

/// A running `sluice` with an upgrade socket: its config directory (for the takeover
/// command), the process, its address and the socket's path (in a directory of its own,
/// kept while the returned one lives).
fn start_old() -> (tempfile::TempDir, tempfile::TempDir, Proc, String, std::path::PathBuf) {
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("upgrade.sock");
    let (dir, mut cmd) = sluice_with(&upgrade_config(free_port(), &socket));
    let (old, addr) = spawn(&mut cmd);
    (sockdir, dir, old, addr, socket)
}

/// Connects, runs one statement and disconnects in a loop until told to stop; counts
/// the sessions that worked and keeps every failure (a refused connect, a failed
/// login, a failed statement).
fn connector_loop(addr: String, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (ok2, failures2) = (ok.clone(), failures.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let r: Result<(), mysql_async::Error> = async {
                let mut c = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await?;
                let v: Option<i64> = c.query_first("SELECT 7").await?;
                assert_eq!(v, Some(7));
                c.disconnect().await
            }
            .await;
            match r {
                Ok(()) => {
                    ok2.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failures2.lock().unwrap().push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (task, ok, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_keeps_accepting_closes_idle_sessions_at_a_boundary_and_lets_a_transaction_finish() {
    let (_sockdir, dir, mut old, addr, socket) = start_old();
    assert!(socket.exists(), "the running sluice serves the upgrade socket");

    // A session that sits idle between statements.
    let mut idle = raw(&addr, CAPS).await;
    idle.query("SELECT 1").await.unwrap();
    // A session in the middle of a transaction.
    let t = table("upgrade_txn");
    let mut txn = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    txn.query_drop(format!("DROP TABLE IF EXISTS {t}")).await.unwrap();
    txn.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    txn.query_drop(format!("INSERT INTO {t} VALUES (1)")).await.unwrap();
    // New sessions, all the time.
    let stop_loop = Arc::new(AtomicBool::new(false));
    let (connector, ok, failures) = connector_loop(addr.clone(), stop_loop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "the connector loop works before the hand-over");

    let (new, new_addr) = tokio::task::block_in_place(|| spawn(&mut takeover_cmd(dir.path())));
    assert_eq!(new_addr, addr, "the new process serves the same socket");

    // The idle session is closed by the old process at a statement boundary: end of
    // stream, no stray bytes (drain_idle_ms is 100 ms).
    let closed = tokio::time::timeout(Duration::from_secs(3), idle.conn.read_packet()).await.expect("the idle session is closed within the drain");
    assert!(matches!(closed, Err(ReadError::Closed)), "closed cleanly, got {closed:?}");

    // The transaction is still served by the old process, which waits for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(old.0.try_wait().unwrap().is_none(), "the old process waits for the open transaction");
    txn.query_drop(format!("INSERT INTO {t} VALUES (2)")).await.unwrap();
    txn.query_drop("COMMIT").await.unwrap();
    let status = tokio::task::block_in_place(|| wait_exit(&mut old.0, Duration::from_secs(3))).expect("the old process exits once its last session ended");
    assert!(status.success(), "{status:?}");
    // The committed session was closed afterwards at its boundary, not cut mid-way.
    assert!(txn.ping().await.is_err(), "the old process's session ended with it");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_loop.store(true, Ordering::Relaxed);
    connector.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} failed sessions during the hand-over: {failures:?}", failures.len());
    assert!(ok.load(Ordering::Relaxed) > before + 10, "sessions kept succeeding through and after the hand-over");

    let mut check = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let rows: Vec<i64> = check.query(format!("SELECT id FROM {t} ORDER BY id")).await.unwrap();
    assert_eq!(rows, vec![1, 2], "the transaction begun on the old process committed whole");
    assert!(socket.exists(), "the new process serves the upgrade socket for the next upgrade");
    stop(new);
    assert!(!socket.exists(), "a stopped sluice removes its upgrade socket");
}

#[test]
fn takeover_without_a_running_sluice_is_a_clear_startup_error() {
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("none.sock");
    let (dir, _) = sluice_with(&upgrade_config(free_port(), &socket));
    let started = Instant::now();
    let out = takeover_cmd(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sluice:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].contains("no running sluice to take over from") && lines[0].contains("none.sock"), "{}", lines[0]);
    assert!(started.elapsed() < Duration::from_secs(5), "fails before backend discovery");

    let (dir, _) = sluice_with(&config_text("", ""));
    let out = takeover_cmd(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--takeover needs [proxy] upgrade_socket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_fails_to_start_leaves_the_old_one_serving() {
    let (_sockdir, dir, mut old, addr, socket) = start_old();
    let mut c = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    // The new process's config names no reachable node: its start fails after it
    // received the socket.
    let text = std::fs::read_to_string(dir.path().join("sluice.toml")).unwrap();
    let nodes = text.lines().find(|l| l.starts_with("nodes = ")).unwrap();
    let bad = text.replace(nodes, &format!("nodes = [\"127.0.0.1:{}\"]\nconnect_timeout_ms = 1000", free_port()));
    let baddir = tempfile::tempdir().unwrap();
    std::fs::write(baddir.path().join("sluice.toml"), bad).unwrap();
    let out = tokio::task::block_in_place(|| takeover_cmd(baddir.path()).output().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of the backend nodes is reachable"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(old.0.try_wait().unwrap().is_none(), "the old process did not drain");
    let v: Option<i64> = c.query_first("SELECT 3").await.unwrap();
    assert_eq!(v, Some(3), "its sessions go on");
    let mut fresh = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let v: Option<i64> = fresh.query_first("SELECT 4").await.unwrap();
    assert_eq!(v, Some(4), "and it still accepts");
    assert!(socket.exists());
    drop((c, fresh));
    stop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_is_closed_at_the_shutdown_timeout_and_rolled_back() {
    let (_sockdir, dir, mut old, addr, _socket) = start_old();
    let t = table("upgrade_abandoned");
    let mut txn = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    txn.query_drop(format!("DROP TABLE IF EXISTS {t}")).await.unwrap();
    txn.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    txn.query_drop(format!("INSERT INTO {t} VALUES (1)")).await.unwrap();
    let (new, _) = tokio::task::block_in_place(|| spawn(&mut takeover_cmd(dir.path())));
    let started = Instant::now();
    // The test config's shutdown_timeout_ms is 5000.
    let status = tokio::task::block_in_place(|| wait_exit(&mut old.0, Duration::from_secs(10))).expect("the old process exits after the shutdown timeout");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(4500) && took < Duration::from_secs(8), "exited after {took:?}");
    assert!(txn.query_drop("COMMIT").await.is_err(), "the abandoned session was closed");
    let mut check = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let rows: Vec<i64> = check.query(format!("SELECT id FROM {t}")).await.unwrap();
    assert!(rows.is_empty(), "the open transaction was rolled back, got {rows:?}");
    stop(new);
}

/// `GET /health` on `addr`: the status code, or `None` when nothing answers.
fn health(addr: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_with_an_admin_interface_rebinds_its_listeners_once_the_old_process_lets_them_go() {
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("upgrade.sock");
    let http = format!("127.0.0.1:{}", free_port());
    let text = format!("{}\n[admin]\nhttp_listen = \"{http}\"\n", upgrade_config(free_port(), &socket));
    let (dir, mut cmd) = sluice_with(&text);
    let (mut old, addr) = spawn(&mut cmd);
    assert_eq!(health(&http), Some(200), "the old process serves /health");
    let (new, new_addr) = tokio::task::block_in_place(|| spawn(&mut takeover_cmd(dir.path())));
    assert_eq!(new_addr, addr);
    let status = tokio::task::block_in_place(|| wait_exit(&mut old.0, Duration::from_secs(5))).expect("the old process drains and exits");
    assert!(status.success(), "{status:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while health(&http) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the new process serves /health after the old one let the address go");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    assert_eq!(c.query_first::<i64, _>("SELECT 7").await.unwrap(), Some(7));
    drop(c);
    stop(new);
}
