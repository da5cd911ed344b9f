//! Shared harness for the integration tests: one real MariaDB cluster per test binary
//! (started on first use by the `chaos` launcher, killed when the test process exits), an
//! in-process Sluice per test, TLS material made with the `openssl` CLI, and a raw
//! protocol client for commands that client libraries do not expose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sluice::backend::conn::{connect, BackendConn, Login};
use sluice::net::TokioNet;
use sluice::protocol::constants::cap;

pub struct Shared {
    pub cluster: chaos::Cluster,
    pub tls: TlsMaterial,
    pub rsa_key: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct TlsMaterial {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
pub fn make_tls(dir: &Path) -> TlsMaterial {
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Sluice Test CA"]);
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(dir, &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"]);
    TlsMaterial { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") }
}

/// The cluster shared by all tests of this binary (primary + 1 replica, TLS enabled).
pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tls = make_tls(dir.path());
        openssl(dir.path(), &["genrsa", "-out", "rsa.pem", "2048"]);
        let spec = chaos::ClusterSpec {
            replicas: 1,
            tls: true,
            server_options: vec!["--local-infile=1".into(), "--max-allowed-packet=256M".into()],
            ..Default::default()
        };
        let cluster = chaos::Cluster::start(spec).expect("start MariaDB cluster");
        Shared { cluster, tls, rsa_key: dir.path().join("rsa.pem"), _dir: dir }
    })
}

/// Config text for a proxy in front of the shared cluster; `extra_proxy` lines go into
/// `[proxy]`, `extra` at the end.
pub fn config_text(extra_proxy: &str, extra: &str) -> String {
    let s = shared();
    let nodes: Vec<String> = s.cluster.nodes().iter().map(|n| format!("\"{}\"", n.addr())).collect();
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
rsa_private_key = "{rsa}"
shutdown_timeout_ms = 5000
{extra_proxy}

[proxy.tls]
cert = "{cert}"
key = "{key}"

# Splitting is on (the default). These tests compare Sluice with a direct connection
# and often write through that other connection: `global` makes a replica read see
# every committed write, as the one server would.
[routing]
consistency = "global"

[[users]]
name = "app"
password = "app"

[[users]]
name = "sha"
password = "shapw"
auth_plugin = "caching_sha2_password"

[[users]]
name = "other"
password = "otherpw"

[backend]
user = "app"
password = "app"
nodes = [{nodes}]
monitor_interval_ms = 300
monitor_timeout_ms = 250

{extra}
"#,
        rsa = s.rsa_key.display(),
        cert = s.tls.cert.display(),
        key = s.tls.key.display(),
        nodes = nodes.join(", "),
    )
}

/// Starts an in-process proxy with the default test config plus `extra_proxy` lines.
pub async fn proxy_with(extra_proxy: &str) -> sluice::ProxyHandle {
    let cfg = sluice::Config::parse(&config_text(extra_proxy, "")).expect("config");
    sluice::start(TokioNet, cfg, 42).await.expect("proxy starts")
}

pub async fn proxy() -> sluice::ProxyHandle {
    proxy_with("").await
}

/// The `sluice` binary with `config` written to a temporary `sluice.toml` (kept while
/// the returned directory lives).
pub fn sluice_with(config: &str) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--config").arg(&path).env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or("warn".into()));
    (dir, cmd)
}

/// Starts the binary and waits for its "sluice listening on ADDR" line; returns ADDR.
pub fn spawn_ready(cmd: &mut Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("sluice listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    (child, addr)
}

/// A port of 127.0.0.1 with nothing listening (binding port 0 and dropping it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

pub fn primary_addr() -> String {
    shared().cluster.primary().addr()
}

/// mysql_async options for `addr`.
pub fn opts(addr: &str, user: &str, pass: &str, tls: bool) -> mysql_async::Opts {
    let mut b = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port_of(addr))
        .user(Some(user))
        .pass(Some(pass))
        .db_name(Some("test"))
        .prefer_socket(false);
    if tls {
        let ssl = mysql_async::SslOpts::default().with_root_certs(vec![shared().tls.ca.clone().into()]);
        b = b.ssl_opts(Some(ssl));
    }
    b.into()
}

/// A raw protocol connection (Sluice's own client code) to `addr` as `app`.
pub async fn raw(addr: &str, caps: u32) -> BackendConn<tokio::net::TcpStream> {
    raw_as(addr, "app", "app", caps).await
}

pub async fn raw_as(addr: &str, user: &str, pass: &str, caps: u32) -> BackendConn<tokio::net::TcpStream> {
    raw_with(addr, user, pass, caps, 0).await
}

/// A raw connection asking for MariaDB extended capabilities `ext_caps` too.
pub async fn raw_with(addr: &str, user: &str, pass: &str, caps: u32, ext_caps: u32) -> BackendConn<tokio::net::TcpStream> {
    let login = Login {
        user: user.into(),
        secret: sluice::backend::conn::Secret::Password(pass.into()),
        database: Some(b"test".to_vec()),
        charset: 45,
        caps,
        ext_caps,
        attrs: None,
        tls: None,
        timeout: Duration::from_secs(10),
    };
    let rng = std::sync::Arc::new(std::sync::Mutex::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1)));
    connect(&TokioNet, addr, &login, &rng).await.expect("raw connect")
}

/// Default client capabilities for raw connections.
pub const CAPS: u32 = cap::SUPPORTED & !cap::SSL;

/// Runs the `mariadb` CLI against `addr`; returns (success, stdout, stderr).
pub fn mariadb_cli(addr: &str, user: &str, pass: &str, args: &[&str], sql: &str) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .args(["-h127.0.0.1", &format!("-P{}", port_of(addr)), &format!("-u{user}"), &format!("-p{pass}"), "--batch", "--skip-column-names"])
        .args(args)
        .args(["-e", sql, "test"])
        .output()
        .expect("mariadb CLI");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs a Python snippet (PyMySQL); `__PORT__` and `__CA__` are substituted.
pub fn python(addr: &str, code: &str) -> (bool, String, String) {
    let code = code.replace("__PORT__", &port_of(addr).to_string()).replace("__CA__", &shared().tls.ca.display().to_string());
    let out = Command::new("python3").args(["-c", &code]).output().expect("python3");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fresh table name for one test.
pub fn table(name: &str) -> String {
    format!("t_{name}")
}

/// Sends one command (seq 0) on a raw connection and returns the whole raw response
/// (frames with headers), read until the response ends.
pub async fn roundtrip(c: &mut BackendConn<tokio::net::TcpStream>, payload: &[u8], expect: sluice::protocol::response::Expect) -> Vec<u8> {
    use sluice::protocol::response::{Event, ResponseTracker};
    c.conn.send(0, payload).await.expect("send");
    let mut t = ResponseTracker::new(expect, c.caps).with_ext_caps(c.ext_caps);
    let mut out = Vec::new();
    loop {
        let (n, ev) = t.advance(c.conn.buffered()).expect("well-formed response");
        out.extend_from_slice(&c.conn.buffered()[..n]);
        c.conn.consume(n);
        match ev {
            Event::Done => return out,
            Event::LocalInfile => panic!("unexpected LOCAL INFILE request"),
            Event::Capped => panic!("no cap was set"),
            Event::More => {
                let got = tokio::time::timeout(Duration::from_secs(30), c.conn.fill()).await.expect("response in time").expect("read");
                assert!(got > 0, "connection closed mid-response");
            }
        }
    }
}

/// Payload of a COM_QUERY.
pub fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![sluice::protocol::constants::com::QUERY];
    p.extend_from_slice(sql.as_bytes());
    p
}

/// The ERR packet at the end of a raw response, as (code, message).
pub fn trailing_err(resp: &[u8]) -> Option<(u16, String)> {
    let mut pos = 0;
    let mut last = None;
    while pos + 4 <= resp.len() {
        let len = resp[pos] as usize | (resp[pos + 1] as usize) << 8 | (resp[pos + 2] as usize) << 16;
        if pos + 4 + len > resp.len() {
            return None;
        }
        last = Some(&resp[pos + 4..pos + 4 + len]);
        pos += 4 + len;
    }
    let e = sluice::protocol::packets::Err::parse(last?)?;
    Some((e.code, e.message_lossy()))
}

/// A Sluice config for a test cluster: account `app`/`app` on both sides, a fast
/// monitor, read/write splitting on, then `routing` (more `[routing]` keys; `backend`
/// keys may be added by replacing the `[routing]` line).
#[allow(dead_code)]
pub fn split_config(cluster: &chaos::Cluster, routing: &str) -> String {
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| format!("\"{}\"", n.addr())).collect();
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
nodes = [{nodes}]
monitor_interval_ms = 200
monitor_timeout_ms = 180
monitor_failures = 3
monitor_debounce = 2
[routing]
read_write_split = true
{routing}
"#,
        nodes = nodes.join(", ")
    )
}
