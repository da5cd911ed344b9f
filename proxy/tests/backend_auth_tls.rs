//! Sluice's own leg to the backends: TLS verified against a CA from the config, and
//! logging in with either auth plugin. MariaDB has no caching_sha2_password, so that
//! plugin is exercised with a second Sluice as the backend (client → Sluice A → Sluice B
//! → MariaDB), where B asks A for caching_sha2_password: full authentication by RSA key
//! exchange without TLS, in clear text over TLS, and the fast path once cached.

mod common;

use common::*;
use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn replace_nodes(text: &str, nodes: &[String]) -> String {
    let line = text.lines().find(|l| l.starts_with("nodes = ")).unwrap().to_string();
    let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    text.replace(&line, &format!("nodes = [{}]", list.join(", ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_is_verified_against_the_configured_ca() {
    let ca = shared().cluster.ca_cert_path().expect("cluster has TLS").display().to_string();
    let text = config_text("", &format!("[backend.tls]\nca = \"{ca}\"\n"));
    let proxy = sluice::start(TokioNet, sluice::Config::parse(&text).unwrap(), 3).await.unwrap();
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let cipher: Option<(String, String)> = c.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await.unwrap();
    let cipher = cipher.unwrap().1;
    assert!(!cipher.is_empty(), "the backend session is encrypted");

    // A CA that did not sign the backends' certificates: nothing verifies, startup fails.
    let wrong = shared().tls.ca.display().to_string();
    let text = config_text("", &format!("connect_timeout_ms = 2000\n[backend.tls]\nca = \"{wrong}\"\n"));
    let err = sluice::start(TokioNet, sluice::Config::parse(&text).unwrap(), 3).await.err().expect("must not start");
    assert!(err.to_string().contains("none of the backend nodes is reachable"), "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate") || err.to_string().contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_logs_in_to_a_caching_sha2_backend_by_rsa_by_tls_and_by_fast_path() {
    // (cache, tls): without the cache every login is a full authentication, by RSA
    // without TLS and in clear text over TLS; with it, logins after the first take the
    // fast path.
    for (cache, tls) in [(false, false), (false, true), (true, false)] {
        // Sluice B: in front of MariaDB, with a caching_sha2 account for Sluice A.
        let b_text = config_text(&format!("caching_sha2_cache = {cache}"), "").replace(
            "[backend]",
            "[[users]]\nname = \"hop\"\npassword = \"hop-pw\"\nauth_plugin = \"caching_sha2_password\"\n\n[backend]",
        );
        let b = sluice::start(TokioNet, sluice::Config::parse(&b_text).unwrap(), 4).await.unwrap();
        // Sluice A: its backend is B, logging in as the caching_sha2 account.
        let mut a_text = replace_nodes(&config_text("", ""), &[b.local_addr().to_string()]);
        a_text = a_text.replace("[backend]\nuser = \"app\"\npassword = \"app\"", "[backend]\nuser = \"hop\"\npassword = \"hop-pw\"");
        if tls {
            a_text.push_str(&format!("[backend.tls]\nca = \"{}\"\nserver_name = \"localhost\"\n", shared().tls.ca.display()));
        }
        let a = sluice::start(TokioNet, sluice::Config::parse(&a_text).unwrap(), 5).await.unwrap_or_else(|e| panic!("tls={tls}: {e}"));
        for _ in 0..3 {
            let mut c = mysql_async::Conn::new(opts(a.local_addr(), "app", "app", false)).await.unwrap();
            let v: String = c.query_first("SELECT CONCAT('through ', 'two hops')").await.unwrap().unwrap();
            assert_eq!(v, "through two hops");
            c.disconnect().await.unwrap();
        }
    }
    // Wrong backend password: A cannot start (its monitor cannot log in).
    let b = sluice::start(TokioNet, sluice::Config::parse(&config_text("", "").replace(
        "[backend]",
        "[[users]]\nname = \"hop\"\npassword = \"hop-pw\"\nauth_plugin = \"caching_sha2_password\"\n\n[backend]",
    )).unwrap(), 7).await.unwrap();
    let mut bad = replace_nodes(&config_text("", ""), &[b.local_addr().to_string()]);
    bad = bad.replace("[backend]\nuser = \"app\"\npassword = \"app\"", "[backend]\nuser = \"hop\"\npassword = \"nope\"");
    let err = sluice::start(TokioNet, sluice::Config::parse(&bad).unwrap(), 6).await.err().expect("must not start");
    assert!(err.to_string().contains("1045"), "{err}");
}
