//! The whole conformance corpus, in process: a real MariaDB (started by the `chaos`
//! launcher) is the reference, an in-process Sluice in front of it the candidate — once
//! with accounts from Sluice's config, once in pass-through identity mode. Every
//! case must show no difference (cases marked `@known-difference` are reported, not
//! failed). A second test proves the runner notices a difference at all, with a
//! candidate that corrupts one byte of the server's responses.
//!
//! `SLUICE_CORPUS_TOPOLOGY=split` runs the same comparison with a primary and two
//! replicas behind Sluice (its routing defaults: read/write splitting, `consistency =
//! session`; the reference is the primary itself), and `SLUICE_CORPUS_REPLICA_DELAY=SECS`
//! delays the second replica by SECS seconds (`MASTER_DELAY`; implies `split`).
//! `conformance/run.sh --topology split [--replica-delay SECS]` sets both.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use conformance::{run_all, summary_line, Case, Endpoint, Options};
use sluice::net::TokioNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options the corpus needs from the server (see conformance/run.sh).
pub const SERVER_OPTIONS: &[&str] = &["--local-infile=1", "--max-allowed-packet=256M", "--log-bin-trust-function-creators=1"];

/// The second replica's delay in seconds, when the corpus runs against a split
/// topology (`None`: one MariaDB, no replicas).
fn topology() -> Option<u32> {
    let delay = std::env::var("SLUICE_CORPUS_REPLICA_DELAY").ok().filter(|s| !s.is_empty());
    let delay = delay.map(|d| d.parse::<u32>().expect("SLUICE_CORPUS_REPLICA_DELAY is whole seconds"));
    match std::env::var("SLUICE_CORPUS_TOPOLOGY").as_deref() {
        Ok("split") => Some(delay.unwrap_or(0)),
        Ok("single") | Ok("") | Err(_) => delay,
        Ok(other) => panic!("SLUICE_CORPUS_TOPOLOGY is single or split, not {other:?}"),
    }
}

fn cluster() -> &'static chaos::Cluster {
    static CLUSTER: OnceLock<chaos::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (replicas, replica_delays) = match topology() {
            None => (0, Default::default()),
            Some(0) => (2, Default::default()),
            Some(delay) => (2, [(2, delay)].into_iter().collect()),
        };
        let spec = chaos::ClusterSpec {
            replicas,
            replica_delays,
            server_options: SERVER_OPTIONS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        chaos::Cluster::start(spec).expect("start MariaDB")
    })
}

fn endpoint(addr: &str) -> Endpoint {
    Endpoint { addr: addr.to_string(), user: "app".into(), password: "app".into(), database: "test".into() }
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance");
    Case::load_dir(&dir).expect("corpus loads")
}

/// Sluice with the corpus's account `app` in its config (`passthrough = false`), or in
/// pass-through identity mode, where clients log in with MariaDB's own accounts and
/// Sluice logs in to MariaDB as them.
async fn sluice_in_front_of(cluster: &chaos::Cluster, passthrough: bool) -> sluice::ProxyHandle {
    let nodes = cluster.nodes().iter().map(|n| format!("\"{}\"", n.addr())).collect::<Vec<_>>().join(", ");
    let accounts = if passthrough {
        "auth_mode = \"passthrough\"\n"
    } else {
        "\n[[users]]\nname = \"app\"\npassword = \"app\"\n"
    };
    let cfg = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
max_allowed_packet = 268435456
{accounts}
[backend]
user = "app"
password = "app"
nodes = [{nodes}]
# A loaded 2-core machine (16 MB rows, other test suites) can stall a monitor probe for
# seconds; one missed probe would mark the only primary down and refuse new sessions.
connect_timeout_ms = 30000
monitor_timeout_ms = 30000
monitor_interval_ms = 31000
"#
    );
    sluice::start(TokioNet, sluice::Config::parse(&cfg).expect("config"), 42).await.expect("sluice starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_corpus_mariadb_direct_vs_through_sluice() {
    whole_corpus(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_corpus_mariadb_direct_vs_through_sluice_in_passthrough_mode() {
    whole_corpus(true).await;
}

/// The corpus's cases use fixed table names in one server: one whole run at a time.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn whole_corpus(passthrough: bool) {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    let primary = cluster().primary().addr();
    let proxy = sluice_in_front_of(cluster(), passthrough).await;
    let cases = corpus();
    assert!(cases.len() >= 400, "the corpus has {} cases", cases.len());
    let started = Instant::now();
    let opts = Options { reference: endpoint(&primary), candidate: endpoint(proxy.local_addr()), jobs: 4, text: true, binary: true, split: topology().is_some() };
    let outcomes = run_all(cases, opts, |o| {
        if !o.passed() {
            println!("{} {}", if o.known_difference() { "KNOWN" } else { "FAIL" }, o.name);
            for f in &o.failures {
                println!("  {}", f.replace('\n', "\n  "));
            }
        }
        for n in &o.notes {
            println!("note ({}): {n}", o.name);
        }
    })
    .await;
    println!("ran {} cases in {:.1}s", outcomes.len(), started.elapsed().as_secs_f64());
    println!("{}", summary_line(&outcomes));
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.failed()).map(|o| o.name.as_str()).collect();
    let mode = match (passthrough, topology()) {
        (true, None) => "pass-through accounts".to_string(),
        (false, None) => "config accounts".to_string(),
        (p, Some(delay)) => format!("{} accounts, primary + 2 replicas, one delayed {delay}s", if p { "pass-through" } else { "config" }),
    };
    assert!(failed.is_empty(), "cases differing between MariaDB and Sluice ({mode}): {failed:?}");
    proxy.shutdown().await;
}

/// A candidate that relays a connection to `upstream` but turns every
/// `conformance-canary` in the server's bytes into `conformance-canarx` (same length, so
/// the framing stays valid).
async fn corrupting_relay(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
                let _ = sw.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    let pat = b"conformance-canary";
                    let mut i = 0;
                    while i + pat.len() <= chunk.len() {
                        if &chunk[i..i + pat.len()] == pat {
                            chunk[i + pat.len() - 1] = b'x';
                        }
                        i += 1;
                    }
                    if cw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_candidate_is_reported_as_a_difference() {
    let primary = cluster().primary().addr();
    let bad = corrupting_relay(primary.clone()).await;
    let case = Case::parse(
        "selftest/canary",
        "@binary\n--test\nSELECT 1 AS a, 'conformance-canary' AS b\nSELECT 'no canary here'\n",
    )
    .unwrap();
    // Same endpoint on both sides: no difference.
    let same = Options { reference: endpoint(&primary), candidate: endpoint(&primary), jobs: 1, text: true, binary: true, split: false };
    let o = conformance::runner::run_case(&case, &same).await;
    assert!(o.passed(), "{:?}", o.failures);
    // The corrupting relay: a difference in row 1, column 2, in both protocols.
    let opts = Options { reference: endpoint(&primary), candidate: endpoint(&bad), jobs: 1, text: true, binary: true, split: false };
    let o = conformance::runner::run_case(&case, &opts).await;
    assert!(o.failed());
    assert_eq!(o.failures.len(), 2, "{:?}", o.failures);
    let text = &o.failures[0];
    assert!(text.contains("result set 1 row 1 column 2: reference 'conformance-canary' candidate 'conformance-canarx'"), "{text}");
    assert!(o.failures[1].contains("[binary protocol]") && o.failures[1].contains("'conformance-canarx'"), "{}", o.failures[1]);
    assert_eq!(summary_line(&[o]), "0 passed, 1 failed");
}
