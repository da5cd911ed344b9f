//! Real clients through Sluice against real MariaDB: the Rust `mysql_async` client, the
//! `mariadb` CLI and PyMySQL, with both auth plugins, with and without TLS, running
//! queries, prepared statements, multi-statements, LOAD DATA LOCAL INFILE, COM_CHANGE_USER
//! and COM_RESET_CONNECTION, and packets of 16 MiB and more.

mod common;

use common::*;
use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_logs_in_with_both_plugins_with_and_without_tls_and_uses_prepared_statements() {
    let proxy = proxy().await;
    let t = table("mysql_async_ps");
    for (user, pass) in [("app", "app"), ("sha", "shapw")] {
        for tls in [false, true] {
            let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), user, pass, tls)).await.unwrap_or_else(|e| panic!("{user} tls={tls}: {e}"));
            let two: i64 = c.query_first("SELECT 1 + 1").await.unwrap().unwrap();
            assert_eq!(two, 2);
            let cipher: Option<(String, String)> = c.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await.unwrap();
            // The backend session is plain; what matters is the client leg, checked by the login itself.
            assert!(cipher.is_some());
            c.query_drop(format!("CREATE TABLE IF NOT EXISTS {t} (id BIGINT PRIMARY KEY, u BIGINT UNSIGNED, d DOUBLE, s VARCHAR(100), b BLOB, n INT NULL) DEFAULT CHARSET=utf8mb4")).await.unwrap();
            let id: i64 = if tls { 2 } else { 1 } + if user == "sha" { 10 } else { 0 };
            c.exec_drop(
                format!("REPLACE INTO {t} (id, u, d, s, b, n) VALUES (?, ?, ?, ?, ?, ?)"),
                (id, u64::MAX, -1.5e300f64, "héllo 😀", vec![0u8, 255, 10, 13], None::<i32>),
            )
            .await
            .unwrap();
            let row: (i64, u64, f64, String, Vec<u8>, Option<i32>) =
                c.exec_first(format!("SELECT id, u, d, s, b, n FROM {t} WHERE id = ?"), (id,)).await.unwrap().unwrap();
            assert_eq!(row, (id, u64::MAX, -1.5e300, "héllo 😀".to_string(), vec![0, 255, 10, 13], None));
            // Prepared statement reused with different parameters.
            let stmt = c.prep(format!("SELECT COUNT(*) FROM {t} WHERE id >= ?")).await.unwrap();
            let n0: i64 = c.exec_first(&stmt, (0,)).await.unwrap().unwrap();
            let n_big: i64 = c.exec_first(&stmt, (1_000_000,)).await.unwrap().unwrap();
            assert!(n0 >= 1);
            assert_eq!(n_big, 0);
            c.close(stmt).await.unwrap();
            c.disconnect().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statements_return_every_result_set_and_stop_at_the_error() {
    let proxy = proxy().await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let mut r = c.query_iter("SELECT 1 AS a; SELECT 'x' AS b, NULL AS c; DO 1").await.unwrap();
    let first: Vec<i64> = r.collect().await.unwrap();
    let second: Vec<(String, Option<i64>)> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(first, vec![1]);
    assert_eq!(second, vec![("x".to_string(), None)]);
    let err = c.query_iter("SELECT 1; SELECT * FROM no_such_table_here; SELECT 3").await;
    let mut r = err.unwrap();
    let first: Vec<i64> = r.collect().await.unwrap();
    assert_eq!(first, vec![1]);
    let e = r.collect::<i64>().await.unwrap_err();
    drop(r);
    assert!(e.to_string().contains("1146"), "{e}");
    // The session is still usable after the error.
    let v: i64 = c.query_first("SELECT 7").await.unwrap().unwrap();
    assert_eq!(v, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_of_16_mib_and_more_cross_in_both_directions() {
    let proxy = proxy().await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    for n in [(1 << 24) - 1 - 20, (1 << 24) - 1, 1 << 24, (1 << 24) + 5, 40 << 20] {
        let big = "z".repeat(n);
        let (len, tail): (u64, String) = c.exec_first("SELECT LENGTH(?), RIGHT(?, 3)", (big.clone(), big)).await.unwrap().unwrap();
        assert_eq!((len, tail.as_str()), (n as u64, "zzz"));
        let s: Vec<u8> = c.query_first(format!("SELECT REPEAT('q', {n})")).await.unwrap().unwrap();
        assert_eq!(s.len(), n);
        assert!(s.iter().all(|&b| b == b'q'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_and_reset_connection_reset_the_backend_session() {
    let proxy = proxy().await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    c.query_drop("SET @v = 5").await.unwrap();
    c.reset().await.unwrap();
    let v: Option<i64> = c.query_first("SELECT @v").await.unwrap().unwrap();
    assert_eq!(v, None, "COM_RESET_CONNECTION clears user variables");
    c.query_drop("SET @v = 6").await.unwrap();
    c.change_user(mysql_async::ChangeUserOpts::default().with_user(Some("other".into())).with_pass(Some("otherpw".into())).with_db_name(Some("test".into())))
        .await
        .unwrap();
    let v: Option<i64> = c.query_first("SELECT @v").await.unwrap().unwrap();
    assert_eq!(v, None, "COM_CHANGE_USER starts a fresh session");
    let bad = c
        .change_user(mysql_async::ChangeUserOpts::default().with_user(Some("other".into())).with_pass(Some("wrong".into())))
        .await;
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_logs_in_with_both_plugins_with_and_without_tls() {
    let proxy = proxy().await;
    let ca = shared().tls.ca.display().to_string();
    let tls_args = ["--ssl".to_string(), format!("--ssl-ca={ca}"), "--ssl-verify-server-cert".to_string()];
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    for (user, pass) in [("app", "app"), ("sha", "shapw")] {
        let (ok, out, err) = mariadb_cli(
            proxy.local_addr(),
            user,
            pass,
            &tls_args,
            "SELECT 'hi', 1+1; PREPARE s FROM 'SELECT ? * 2'; SET @a = 21; EXECUTE s USING @a; DEALLOCATE PREPARE s",
        );
        assert!(ok, "{user} TLS: {err}");
        assert_eq!(out, "hi\t2\n42\n", "{out}");
        // After the first full authentication the caching_sha2 user takes the fast path,
        // which needs no TLS.
        let (ok, out, err) = mariadb_cli(proxy.local_addr(), user, pass, &["--skip-ssl"], "SELECT 'plain'");
        assert!(ok, "{user} plain: {err}");
        assert_eq!(out.trim(), "plain");
    }
    let (ok, _, err) = mariadb_cli(proxy.local_addr(), "app", "nope", &["--skip-ssl"], "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1045") && err.contains("Access denied for user 'app'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_logs_in_with_both_plugins_with_and_without_tls_and_loads_local_infile() {
    let proxy = proxy_with("caching_sha2_cache = false").await;
    let t = table("pymysql_infile");
    let code = format!(
        r#"
import pymysql, tempfile, os
for user, pw in [("app", "app"), ("sha", "shapw")]:
    for ssl in [None, {{"ca": "__CA__"}}]:
        c = pymysql.connect(host="127.0.0.1", port=__PORT__, user=user, password=pw, database="test", ssl=ssl,
                            local_infile=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
        cur = c.cursor()
        cur.execute("SELECT %s, %s", ("a'b", None))
        assert cur.fetchall() == (("a'b", None),)
        cur.execute("CREATE TABLE IF NOT EXISTS {t} (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("DELETE FROM {t}")
        f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
        f.write("".join("%d,row%d\n" % (i, i) for i in range(1000)))
        f.close()
        cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE {t} FIELDS TERMINATED BY ','", (f.name,))
        os.unlink(f.name)
        cur.execute("SELECT COUNT(*), MAX(v) FROM {t}")
        assert cur.fetchall() == ((1000, "row999"),), "count"
        cur.execute("PREPARE s FROM 'SELECT CONCAT(?, ?)'")
        cur.execute("SET @a = 'pre', @b = 'pared'")
        cur.execute("EXECUTE s USING @a, @b")
        assert cur.fetchall() == (("prepared",),)
        cur.execute("DEALLOCATE PREPARE s")
        cur.execute("SELECT 1; SELECT 2")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2,),)
        c.commit()
        c.close()
        print(user, "ssl" if ssl else "plain", "ok")
"#
    );
    let (ok, out, err) = python(proxy.local_addr(), &code);
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert_eq!(out.lines().count(), 4, "{out}");
}
