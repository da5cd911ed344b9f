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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_created_or_changed_just_before_a_login_are_seen_at_once() {
    let proxy = passthrough_proxy().await;
    // Several accounts created and used back to back, faster than any periodic re-read.
    for i in 0..3 {
        root_sql(&format!("CREATE USER IF NOT EXISTS 'pt_fresh{i}'@'%' IDENTIFIED BY 'one'"));
        root_sql(&format!("GRANT SELECT ON test.* TO 'pt_fresh{i}'@'%'"));
        let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), &format!("pt_fresh{i}"), "one", false)).await.unwrap();
        let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
        assert_eq!(who, format!("pt_fresh{i}@%"));
    }
    // A changed password: the new one works at once, the old one is refused.
    root_sql("ALTER USER 'pt_fresh0'@'%' IDENTIFIED BY 'two'");
    mysql_async::Conn::new(opts(proxy.local_addr(), "pt_fresh0", "two", false)).await.unwrap();
    let e = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_fresh0", "one", false)).await.unwrap_err();
    assert!(e.to_string().contains("1045"), "{e}");
    // Host given as ip/netmask.
    root_sql("CREATE USER IF NOT EXISTS 'pt_masked'@'127.0.0.0/255.0.0.0' IDENTIFIED BY 'm'");
    root_sql("GRANT SELECT ON test.* TO 'pt_masked'@'127.0.0.0/255.0.0.0'");
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_masked", "m", false)).await.unwrap();
    let who: String = c.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(who, "pt_masked@127.0.0.0/255.0.0.0");
    // A password set on an account that had none.
    root_sql("CREATE USER IF NOT EXISTS 'pt_fresh_nopw'@'%'");
    root_sql("GRANT SELECT ON test.* TO 'pt_fresh_nopw'@'%'");
    mysql_async::Conn::new(opts(proxy.local_addr(), "pt_fresh_nopw", "", false)).await.unwrap();
    root_sql("SET PASSWORD FOR 'pt_fresh_nopw'@'%' = PASSWORD('three')");
    mysql_async::Conn::new(opts(proxy.local_addr(), "pt_fresh_nopw", "three", false)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_takes_connection_id_values_and_the_server_checks_the_killers_privileges() {
    root_sql("CREATE USER IF NOT EXISTS 'pt_victim'@'%'");
    root_sql("CREATE USER IF NOT EXISTS 'pt_nokill'@'%'");
    root_sql("GRANT PROCESS ON *.* TO 'pt_nokill'@'%'");
    root_sql("CREATE USER IF NOT EXISTS 'pt_admin'@'%'");
    root_sql("GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'pt_admin'@'%'");
    for user in ["pt_victim", "pt_nokill", "pt_admin"] {
        root_sql(&format!("GRANT SELECT ON test.* TO '{user}'@'%'"));
    }
    let proxy = passthrough_proxy().await;
    let mut victim = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_victim", "", false)).await.unwrap();
    // What the session itself sees as its id (the backend thread), as a client would
    // pass it on for KILL.
    let thread: u64 = victim.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();

    let mut nokill = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_nokill", "", false)).await.unwrap();
    let e = nokill.query_drop(format!("KILL {thread}")).await.unwrap_err();
    assert!(e.to_string().contains("1095") && e.to_string().contains(&format!("not owner of thread {thread}")), "{e}");
    // With Sluice's id of the session the server's verdict is the same, named by that id.
    let sluice_id = victim.id();
    let e = nokill.query_drop(format!("KILL QUERY {sluice_id}")).await.unwrap_err();
    assert!(e.to_string().contains("1095") && e.to_string().contains(&format!("not owner of thread {sluice_id}")), "{e}");
    victim.query_drop("SELECT 1").await.unwrap();
    // An id that is nobody's: the server's own answer.
    let e = nokill.query_drop("KILL 999999").await.unwrap_err();
    assert!(e.to_string().contains("1094") && e.to_string().contains("Unknown thread id: 999999"), "{e}");

    let mut admin = mysql_async::Conn::new(opts(proxy.local_addr(), "pt_admin", "", false)).await.unwrap();
    admin.query_drop(format!("KILL {thread}")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err(), "the victim's session is gone");
    // Multiplexed: the backend connection that answered CONNECTION_ID() went back to
    // the pool after that statement; it is not the victim's and lives on.
    let n: Option<i64> = admin.query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}")).await.unwrap();
    assert_eq!(n, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_is_refused_as_unknown_command_after_three_failures_like_the_server() {
    use sluice::backend::conn::{Login, Secret};
    let proxy = passthrough_proxy().await;
    let mut c = raw_as(proxy.local_addr(), "app", "app", CAPS).await;
    let rng = std::sync::Arc::new(std::sync::Mutex::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2)));
    let login = |user: &str, pw: &str| Login {
        user: user.into(),
        secret: Secret::Password(pw.into()),
        database: None,
        charset: 45,
        caps: CAPS,
        ext_caps: 0,
        attrs: None,
        tls: None,
        timeout: std::time::Duration::from_secs(10),
    };
    let mut codes = vec![];
    for _ in 0..4 {
        match c.change_user(&login("pt_no_such_user", "bar"), 45, &rng).await {
            Err(sluice::Error::BackendErr { code, .. }) => codes.push(code),
            other => panic!("refused expected: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(codes, [1045, 1045, 1045, 1047], "MariaDB allows three failed COM_CHANGE_USER per connection");
    // The connection itself stays usable.
    let r = c.query("SELECT 1").await.unwrap();
    assert_eq!(r.rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_old_password_accounts_log_in_when_the_server_allows_them() {
    // MariaDB's main.change_user: pre-4.1 password hashes, with secure_auth off.
    root_sql("CREATE USER IF NOT EXISTS 'pt_oldpw'@'%' IDENTIFIED BY PASSWORD '09301740536db389'");
    root_sql("GRANT SELECT ON test.* TO 'pt_oldpw'@'%'");
    let proxy = passthrough_proxy().await;
    root_sql("SET GLOBAL secure_auth = 0");
    let direct = mariadb_cli(&primary_addr(), "pt_oldpw", "oldpw", &[], "SELECT CURRENT_USER()");
    let via = mariadb_cli(proxy.local_addr(), "pt_oldpw", "oldpw", &[], "SELECT CURRENT_USER()");
    let wrong = mariadb_cli(proxy.local_addr(), "pt_oldpw", "wrong", &[], "SELECT 1");
    // With secure_auth on, the server refuses such accounts, and so does Sluice's login.
    root_sql("SET GLOBAL secure_auth = 1");
    let refused_direct = mariadb_cli(&primary_addr(), "pt_oldpw", "oldpw", &[], "SELECT 1");
    let refused_via = mariadb_cli(proxy.local_addr(), "pt_oldpw", "oldpw", &[], "SELECT 1");
    assert!(direct.0 && direct.1.trim() == "pt_oldpw@%", "{direct:?}");
    assert!(via.0 && via.1.trim() == "pt_oldpw@%", "{via:?}");
    assert!(!wrong.0 && wrong.2.contains("1045"), "{wrong:?}");
    assert!(!refused_direct.0, "{refused_direct:?}");
    assert!(!refused_via.0, "{refused_via:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_asks_for_an_answer_to_the_handshake_nonce_as_connector_c_expects() {
    // Connector/C answers an auth switch during COM_CHANGE_USER with the nonce of the
    // handshake (the server keeps one per connection), whatever the switch carries.
    use sluice::protocol::{auth, handshake::ChangeUser};
    root_sql("CREATE USER IF NOT EXISTS 'pt_cu'@'%' IDENTIFIED BY 'cu-pw'");
    root_sql("GRANT SELECT ON test.* TO 'pt_cu'@'%'");
    let proxy = passthrough_proxy().await;
    let mut c = raw_as(proxy.local_addr(), "app", "app", CAPS).await;
    let handshake_nonce = c.nonce.clone();
    let cu = ChangeUser {
        user: b"pt_cu".to_vec(),
        auth_response: vec![1; 20],
        database: b"test".to_vec(),
        charset: Some(45),
        auth_plugin: Some(b"some_other_plugin".to_vec()),
        attrs: None,
    };
    c.conn.send(0, &cu.write(c.caps)).await.unwrap();
    let switch = c.conn.read_packet().await.unwrap();
    let mut expected = vec![0xFE];
    expected.extend_from_slice(b"mysql_native_password\0");
    expected.extend_from_slice(&handshake_nonce);
    expected.push(0);
    assert_eq!(switch.payload.to_vec(), expected, "the switch request carries the handshake's nonce");
    c.conn.send(switch.next_seq(), &auth::native_scramble(b"cu-pw", &handshake_nonce)).await.unwrap();
    let ok = c.conn.read_packet().await.unwrap();
    assert_eq!(ok.payload.first(), Some(&0x00), "{:?}", ok.payload);
    let r = c.query("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(r.rows[0][0].as_deref(), Some(&b"pt_cu@%"[..]));
}
