//! The `sluice` binary: startup errors are one clear line with a non-zero exit, a down
//! replica does not stop it, and SIGTERM lets running queries finish before exiting.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;

/// Runs the binary to completion; returns (exit code, stderr).
fn run_to_exit(config: &str) -> (i32, String) {
    let (_dir, mut cmd) = sluice_with(config);
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn with_nodes(nodes: &[String]) -> String {
    let text = config_text("", "");
    let line = text.lines().find(|l| l.starts_with("nodes = ")).unwrap().to_string();
    let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    text.replace(&line, &format!("nodes = [{}]\nconnect_timeout_ms = 1000", list.join(", ")))
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sluice:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {stderr}");
    assert!(lines[0].contains(needle), "{:?} should mention {needle:?}", lines[0]);
}

#[test]
fn bad_toml_unknown_key_and_bad_values_are_one_line_errors() {
    let (code, err) = run_to_exit("[proxy\nlisten = ");
    assert_one_line_error(code, &err, "sluice.toml");
    let (code, err) = run_to_exit(&config_text("colour = \"blue\"", ""));
    assert_one_line_error(code, &err, "colour");
    let (code, err) = run_to_exit(&config_text("", "").replace("auth_plugin = \"caching_sha2_password\"", "auth_plugin = \"gssapi\""));
    assert_one_line_error(code, &err, "gssapi");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "missing --config is a usage error");
}

#[test]
fn unreachable_nodes_and_missing_primary_stop_startup() {
    let (code, err) = run_to_exit(&with_nodes(&[format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())]));
    assert_one_line_error(code, &err, "none of the backend nodes is reachable");
    let replica = shared().cluster.replicas()[0].addr();
    let (code, err) = run_to_exit(&with_nodes(&[replica]));
    assert_one_line_error(code, &err, "no primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_replica_does_not_stop_the_proxy() {
    let config = with_nodes(&[primary_addr(), format!("127.0.0.1:{}", free_port())]);
    let (_dir, mut cmd) = sluice_with(&config);
    let (mut child, addr) = spawn_ready(&mut cmd);
    let mut c = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let v: i64 = c.query_first("SELECT 11").await.unwrap().unwrap();
    assert_eq!(v, 11);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_queries_finish_then_exits() {
    let (_dir, mut cmd) = sluice_with(&config_text("", ""));
    let (mut child, addr) = spawn_ready(&mut cmd);
    let mut busy = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let _idle = mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.unwrap();
    let running = tokio::spawn(async move { busy.query_first::<i64, _>("SELECT SLEEP(1.5)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(mysql_async::Conn::new(opts(&addr, "app", "app", false)).await.is_err(), "no new connections after SIGTERM");
    let r = running.await.unwrap();
    assert_eq!(r.unwrap(), Some(0), "the running query finished normally");
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "exited soon after the last query");
}

/// Both `scheduler` settings: sessions opened together (spread over three worker threads
/// when pinned) keep their own session state, TLS works on every worker, and a KILL QUERY
/// from one session interrupts a statement of a session on another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_different_worker_threads_keep_their_state_and_can_kill_each_other() {
    for scheduler in ["pinned", "work-stealing"] {
        let (_dir, mut cmd) = sluice_with(&config_text(&format!("scheduler = \"{scheduler}\"\nworker_threads = 3"), ""));
        let (mut child, addr) = spawn_ready(&mut cmd);
        let workers = std::fs::read_dir(format!("/proc/{}/task", child.id()))
            .unwrap()
            .filter(|t| std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap().starts_with("sluice-worker-"))
            .count();
        assert_eq!(workers, if scheduler == "pinned" { 3 } else { 0 }, "{scheduler}: pinned worker threads");
        let mut conns = Vec::new();
        for i in 0..7i64 {
            let mut c = mysql_async::Conn::new(opts(&addr, "app", "app", i % 2 == 0)).await.unwrap();
            c.query_drop(format!("SET @mine = {i}")).await.unwrap();
            conns.push(c);
        }
        let mut runs = Vec::new();
        for (i, mut c) in conns.into_iter().enumerate() {
            runs.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let v: Option<i64> = c.query_first("SELECT @mine").await.unwrap().unwrap();
                    assert_eq!(v, Some(i as i64));
                }
                c
            }));
        }
        let mut conns = Vec::new();
        for r in runs {
            conns.push(r.await.unwrap());
        }
        let id = conns[1].id();
        let mut victim = conns.remove(1);
        let started = Instant::now();
        let sleeper = tokio::spawn(async move { victim.query_first::<i64, _>("SELECT SLEEP(30)").await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        conns[0].query_drop(format!("KILL QUERY {id}")).await.unwrap();
        match sleeper.await.unwrap() {
            Ok(v) => assert_eq!(v, Some(1), "{scheduler}: SLEEP interrupted"),
            Err(e) => assert!(e.to_string().contains("1317"), "{scheduler}: {e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{scheduler}: KILL QUERY took effect");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
