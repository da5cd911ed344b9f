//! The admin interface: a MySQL-protocol listener of its own (`[admin] listen`) where
//! operators run `SHOW SLUICE …` and `SLUICE …` statements with any MySQL client, and an
//! HTTP listener (`[admin] http_listen`, [`http`]) serving `/metrics`, `/health` and
//! `/ready`. `docs/operations.md` lists the statements and metrics.
//!
//! The MySQL side implements the server half of the connection phase with
//! mysql_native_password only (accounts from `[[admin.users]]`; a client preferring
//! another plugin is asked to switch,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>),
//! then answers COM_QUERY with text result sets, OK or ERR packets
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response.html>).
//! What each statement shows is built synchronously in [`tables`].

pub mod commands;
pub mod http;
pub mod tables;

use crate::sync::Locked;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::error::{Error, Result};
use crate::net::Net;
use crate::protocol::auth;
use crate::protocol::conn::PacketConn;
use crate::protocol::constants::{cap, com, err, status};
use crate::protocol::handshake::{auth_switch_request, HandshakeResponse, ServerHandshake};
use crate::protocol::packets::{self, err_payload};
use crate::proxy::Shared;
use crate::server::login::new_nonce;
use crate::session::local::result_set;

use commands::AdminCommand;

/// Largest packet the admin listener accepts from a client.
const MAX_PACKET: usize = 1 << 20;

/// Admin sessions open at once, at most; more are refused with ER_CON_COUNT_ERROR.
const MAX_ADMIN_SESSIONS: usize = 64;

/// The version the admin listener announces.
pub fn server_version() -> String {
    format!("5.5.5-10.11.0-sluice-{}-admin", env!("CARGO_PKG_VERSION"))
}

/// Serves the MySQL-protocol admin listener until shutdown.
pub async fn serve<N: Net>(shared: Arc<Shared<N>>, mut listener: N::Listener) {
    let stop = crate::proxy::stop_accepting(&shared);
    tokio::pin!(stop);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_SESSIONS));
    let mut next_id: u32 = 0;
    while let Some((stream, peer)) = crate::proxy::accept_next(&mut listener, &mut stop, "admin").await {
        next_id = next_id.wrapping_add(1);
        let id = next_id;
        let shared = shared.clone();
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    session(shared, stream, peer, id).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let mut conn = PacketConn::new(stream, 1024);
                    let _ = conn.send(0, &err_payload(err::ER_CON_COUNT_ERROR, "08004", "Too many admin connections")).await;
                    conn.shutdown().await;
                });
            }
        }
    }
    tracing::info!("admin listener closed");
}

/// What an admin client agreed to at login.
struct AdminLogin {
    user: String,
    caps: u32,
    /// Sequence id of the final OK.
    seq: u8,
}

/// The connection phase: Handshake v10 with mysql_native_password, an auth switch when
/// the client answered for another plugin, the check against `[[admin.users]]`.
async fn login<N: Net>(shared: &Shared<N>, conn: &mut PacketConn<N::Stream>, id: u32, peer: &str) -> Result<AdminLogin> {
    let offered = cap::SUPPORTED & !cap::SSL;
    let nonce = new_nonce(shared);
    let hs = ServerHandshake {
        server_version: server_version().into_bytes(),
        connection_id: id,
        nonce: nonce.clone(),
        caps: offered,
        ext_caps: 0,
        charset: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: auth::NATIVE.as_bytes().to_vec(),
    };
    conn.send(0, &hs.write()).await.map_err(Error::ClientIo)?;
    let p = conn.read_packet().await.map_err(|e| Error::client_protocol(err::ER_HANDSHAKE_ERROR, e.to_string()))?;
    let mut seq = p.next_seq();
    let bad_handshake = |why: &str| Error::client_protocol(err::ER_HANDSHAKE_ERROR, why.to_string());
    if HandshakeResponse::is_ssl_request(&p.payload) {
        let _ = conn.send(seq, &err_payload(err::ER_HANDSHAKE_ERROR, "08S01", "The admin listener does not offer TLS")).await;
        return Err(bad_handshake("admin client asked for TLS"));
    }
    let Some(resp) = HandshakeResponse::parse(&p.payload) else {
        let _ = conn.send(seq, &err_payload(err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")).await;
        return Err(bad_handshake("malformed handshake response"));
    };
    let user = String::from_utf8_lossy(&resp.user).into_owned();
    let mut response = resp.auth_response.clone();
    let client_plugin = resp.auth_plugin.as_deref().filter(|p| !p.is_empty() && resp.caps & cap::PLUGIN_AUTH != 0);
    if client_plugin.is_some_and(|p| p != auth::NATIVE.as_bytes()) {
        // Ask for mysql_native_password with the same nonce.
        conn.send(seq, &auth_switch_request(auth::NATIVE, &nonce)).await.map_err(Error::ClientIo)?;
        let p = conn.read_packet().await.map_err(|e| Error::client_protocol(err::ER_HANDSHAKE_ERROR, e.to_string()))?;
        seq = p.next_seq();
        response = p.payload.to_vec();
    }
    let live = shared.live.get();
    let accounts = live.admin.as_ref().map(|a| a.users.as_slice()).unwrap_or_default();
    let ok = accounts.iter().any(|a| {
        let stage2 = (!a.password.is_empty()).then(|| auth::native_stage2(a.password.as_bytes()));
        a.name == user && auth::native_verify(stage2.as_ref(), &nonce, &response)
    });
    if !ok {
        let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
        let msg = crate::server::login::access_denied(&user, host, !response.is_empty());
        let _ = conn.send(seq, &err_payload(err::ER_ACCESS_DENIED_ERROR, "28000", &msg)).await;
        return Err(Error::AccessDenied(format!("admin: {msg}")));
    }
    Ok(AdminLogin { user, caps: resp.caps & offered, seq })
}

async fn session<N: Net>(shared: Arc<Shared<N>>, stream: N::Stream, peer: String, id: u32) {
    let mut conn = PacketConn::new(stream, MAX_PACKET);
    let limit = Duration::from_millis(shared.cfg.proxy.handshake_timeout_ms);
    let login = match tokio::time::timeout(limit, login(&shared, &mut conn, id, &peer)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "admin login failed");
            conn.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "admin login timed out");
            conn.shutdown().await;
            return;
        }
    };
    if conn.send(login.seq, &packets::ok_payload(status::AUTOCOMMIT, login.caps)).await.is_err() {
        return;
    }
    tracing::info!(%peer, user = %login.user, "admin session opened");
    let shutdown = shared.shutdown.clone();
    let idle = shared.cfg.admin.as_ref().map_or(0, |a| a.idle_timeout_ms);
    loop {
        let idle_for = async {
            match idle {
                0 => std::future::pending::<()>().await,
                ms => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
        };
        let p = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            p = conn.read_packet_idle() => p,
            _ = idle_for => {
                tracing::info!(%peer, user = %login.user, idle_ms = idle, "admin session idle past [admin] idle_timeout_ms: closed");
                break;
            }
        };
        let Ok(p) = p else { break };
        let reply = p.next_seq();
        let Some(&command) = p.payload.first() else { break };
        let sent = match command {
            com::QUIT => break,
            com::PING | com::INIT_DB | com::RESET_CONNECTION => conn.send(reply, &packets::ok_payload(status::AUTOCOMMIT, login.caps)).await.map(|_| ()),
            com::QUERY => {
                let sql = String::from_utf8_lossy(&p.payload[1..]).into_owned();
                let answer = match commands::parse(&sql) {
                    Ok(c) => {
                        tracing::info!(user = %login.user, statement = %sql.trim(), "admin statement");
                        run(&shared, c).await
                    }
                    Err(msg) => Answer::Err(err::ER_PARSE_ERROR, "42000", msg),
                };
                send(&mut conn, reply, login.caps, answer).await
            }
            other => {
                let msg = format!("The admin listener does not support {} (0x{other:02x})", com::name(other));
                conn.send(reply, &err_payload(err::ER_UNKNOWN_COM_ERROR, "08S01", &msg)).await.map(|_| ())
            }
        };
        if sent.is_err() {
            break;
        }
    }
    conn.shutdown().await;
}

/// What an admin statement answers.
pub enum Answer {
    Ok(String),
    Rows(Vec<String>, Vec<Vec<String>>),
    Err(u16, &'static str, String),
}

async fn send<S: crate::net::Stream>(conn: &mut PacketConn<S>, seq: u8, caps: u32, answer: Answer) -> std::io::Result<()> {
    match answer {
        Answer::Ok(info) => {
            let mut ok = BytesMut::with_capacity(16 + info.len());
            packets::Ok { status: status::AUTOCOMMIT, info: info.as_bytes(), ..Default::default() }.write(&mut ok, 0x00, caps);
            conn.send(seq, &ok).await.map(|_| ())
        }
        Answer::Err(code, state, msg) => conn.send(seq, &err_payload(code, state, &msg)).await.map(|_| ()),
        Answer::Rows(cols, rows) => {
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            let out = result_set(&cols, &rows, caps, 0, status::AUTOCOMMIT);
            conn.write_raw(&out).await?;
            conn.flush_raw().await
        }
    }
}

/// Carries out one admin statement.
pub async fn run<N: Net>(shared: &Shared<N>, c: AdminCommand) -> Answer {
    match c {
        AdminCommand::ShowNodes => tables::nodes(shared),
        AdminCommand::ShowSessions => tables::sessions(shared),
        AdminCommand::ShowPools => tables::pools(shared),
        AdminCommand::ShowRules => tables::rules(shared),
        AdminCommand::ShowUsers => tables::users(shared),
        AdminCommand::ShowDigests { limit } => tables::digests(shared, limit),
        AdminCommand::ShowConfig => tables::config(&shared.live.get()),
        AdminCommand::ShowVersion => tables::version(shared),
        AdminCommand::Variables(names) => variables(&names),
        AdminCommand::Set => Answer::Ok(String::new()),
        AdminCommand::Reload => match shared.reload() {
            Ok(p) if p.changed.is_empty() && p.restart_needed.is_empty() => Answer::Ok("configuration unchanged".into()),
            Ok(p) => {
                let mut msg = format!("reloaded; changed: {}", if p.changed.is_empty() { "nothing live".to_string() } else { p.changed.join(", ") });
                if !p.restart_needed.is_empty() {
                    msg.push_str(&format!("; need a restart (running values kept): {}", p.restart_needed.join(", ")));
                }
                Answer::Ok(msg)
            }
            Err(e) => Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", format!("Reload refused, the running configuration stays: {e}")),
        },
        AdminCommand::ResetDigests => {
            shared.metrics.digests.clear();
            Answer::Ok("digests cleared".into())
        }
        AdminCommand::Drain { node } => drain(shared, &node, true),
        AdminCommand::Enable { node } => drain(shared, &node, false),
        AdminCommand::Kill { id, query } => kill(shared, id, query).await,
        AdminCommand::Switchover { to } => switchover(shared, to).await,
    }
}

/// The few server variables clients read on connecting, as the admin listener has
/// them; any other is an error.
fn variables(names: &[String]) -> Answer {
    let mut row = Vec::with_capacity(names.len());
    for n in names {
        let v = match n.as_str() {
            "version_comment" => format!("Sluice {} admin interface", env!("CARGO_PKG_VERSION")),
            "version" => server_version(),
            "max_allowed_packet" => MAX_PACKET.to_string(),
            "wait_timeout" | "interactive_timeout" => "28800".to_string(),
            "autocommit" => "1".to_string(),
            "character_set_client" | "character_set_connection" | "character_set_results" => "utf8mb4".to_string(),
            "collation_connection" => "utf8mb4_general_ci".to_string(),
            "sql_mode" => String::new(),
            "time_zone" | "system_time_zone" => "SYSTEM".to_string(),
            "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ".to_string(),
            other => return Answer::Err(1193, "HY000", format!("Unknown system variable '{other}'")),
        };
        row.push(v);
    }
    // `@@name`, as servers name the column of the unscoped form.
    let cols = names.iter().map(|n| format!("@@{n}")).collect();
    Answer::Rows(cols, vec![row])
}

/// `SLUICE NODE <addr> DRAIN | ENABLE`: a drained node gets no new reads (statements
/// running there finish; sessions in a read-only transaction there finish it). The
/// primary cannot be drained: its writes have nowhere else to go (use `SLUICE
/// SWITCHOVER`).
fn drain<N: Net>(shared: &Shared<N>, node: &str, drained: bool) -> Answer {
    let Some(stats) = shared.node_stats.get(node) else {
        let known = shared.node_list.get().join(", ");
        return Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", format!("Unknown node '{node}' (nodes: {known})"));
    };
    if drained && shared.primary().as_deref() == Some(node) {
        return Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", format!("'{node}' is the primary and cannot be drained: use SLUICE SWITCHOVER first"));
    }
    let was = stats.drained.swap(drained, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(node, drained, was, "node drain changed by admin");
    Answer::Ok(if drained { format!("{node} drained: no new reads go there") } else { format!("{node} enabled") })
}

/// `SLUICE KILL [CONNECTION | QUERY] <id>`: the statement running for session `id` is
/// killed on its backend (`KILL QUERY`, as Sluice's account); with CONNECTION the
/// session is also closed.
async fn kill<N: Net>(shared: &Shared<N>, id: u64, query: bool) -> Answer {
    let Some(entry) = u32::try_from(id).ok().and_then(|i| shared.registry.get(i)) else {
        return Answer::Err(err::ER_NO_SUCH_THREAD, "HY000", format!("Unknown thread id: {id}"));
    };
    let running = entry.current.locked().clone();
    if let Some((addr, thread)) = running {
        let sql = format!("KILL {}{thread}", if query { "QUERY " } else { "" });
        match crate::session::run_as_service(shared, &addr, &sql).await {
            Ok(()) => {}
            Err(Error::BackendErr { code, .. }) if code == err::ER_NO_SUCH_THREAD => {}
            Err(e) => return Answer::Err(err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", format!("Could not reach backend {addr} to kill: {e}")),
        }
    }
    if !query {
        entry.killed.notify_one();
    }
    tracing::warn!(session = id, query, "session killed by admin");
    Answer::Ok(String::new())
}

/// `SLUICE SWITCHOVER [TO <addr>]`: a planned switchover by the failover actor; the
/// admin client waits for its outcome.
async fn switchover<N: Net>(shared: &Shared<N>, to: Option<String>) -> Answer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tracing::warn!(target = ?to, "switchover requested on the admin interface");
    if shared.switchover.send((to, tx)).await.is_err() {
        return Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", "the failover actor is not running".into());
    }
    match rx.await {
        Ok(Ok(msg)) => Answer::Ok(msg),
        Ok(Err(e)) => Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", format!("Switchover failed: {e}")),
        Err(_) => Answer::Err(err::ER_UNKNOWN_ERROR, "HY000", "the failover actor stopped".into()),
    }
}
