//! Pass-through identity: with `auth_mode = "passthrough"` Sluice authenticates clients
//! against the backend's own accounts and logs in to the backend as the client's user, so
//! privileges and `CURRENT_USER()` behave as on a direct connection.

mod common;

use common::*;
use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn root_sql(sql: &str) {
    shared().cluster.root_sql(0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn passthrough_proxy() -> sluice::ProxyHandle {
    let text = config_text("auth_mode = \"passthrough\"\naccounts_refresh_ms = 60000", "");
    // No [[users]]: the accounts are the backend's.
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if line == "[[users]]" {
            skip = true;
            continue;
        }
        if skip && (line.starts_with('[') && line != "[[users]]") {
            skip = false;
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    sluice::start(TokioNet, sluice::Config::parse(&out).unwrap(), 9).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_log_in_as_their_own_backend_accounts_with_their_privileges() {
    root_sql("CREATE USER IF NOT EXISTS 'pt_reader'@'%' IDENTIFIED BY 'pt-pw'");
    root_sql("GRANT SELECT ON test.* TO 'pt_reader'@'%'");
    root_sql("CREATE USER IF NOT EXISTS 'pt_nopw'@'%'");
    root_sql("GRANT SELECT ON test.* TO 'pt_nopw'@'%'");
    root_sql("CREATE USER IF NOT EXISTS 'pt_socket'@'%' IDENTIFIED VIA unix_socket");
    root_sql("CREATE TABLE IF NOT EXISTS test.t_passthrough (id INT PRIMARY KEY)");
    let proxy = passthrough_proxy().await;

    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_reader", "pt-pw", false)).await.unwrap();
    let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(who, "pt_reader@%");
    let n: i64 = c.query_first("SELECT COUNT(*) FROM t_passthrough").await.unwrap().unwrap();
    assert!(n >= 0);
    let e = c.query_drop("INSERT INTO t_passthrough VALUES (1)").await.unwrap_err();
    assert!(e.to_string().contains("1142"), "the account's own privileges apply: {e}");

    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_nopw", "", false)).await.unwrap();
    let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(who, "pt_nopw@%");

    let e = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_reader", "wrong", false)).await.unwrap_err();
    assert!(e.to_string().contains("1045"), "{e}");

    let e = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_socket", "x", false)).await.unwrap_err();
    let s = e.to_string();
    assert!(s.contains("1251") && s.contains("unix_socket") && s.contains("pass-through"), "{s}");

    // An account created after startup is found by an on-demand refresh.
    root_sql("CREATE USER IF NOT EXISTS 'pt_late'@'%' IDENTIFIED BY 'late-pw'");
    root_sql("GRANT SELECT ON test.* TO 'pt_late'@'%'");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_late", "late-pw", false)).await.unwrap();
    let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(who, "pt_late@%");

    // COM_CHANGE_USER switches the backend identity too.
    c.change_user(mysql_async::ChangeUserOpts::default().with_user(Some("pt_reader".into())).with_pass(Some("pt-pw".into())))
        .await
        .unwrap();
    let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(who, "pt_reader@%");

    // The PyMySQL client too.
    let (ok, out, err) = python(
        proxy.local_addr(),
        r#"
import pymysql
c = pymysql.connect(host="127.0.0.1", port=__PORT__, user="pt_reader", password="pt-pw", database="test")
cur = c.cursor(); cur.execute("SELECT CURRENT_USER()"); print(cur.fetchall()[0][0])
"#,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pt_reader@%");
}
