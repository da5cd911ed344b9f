//! The client-facing connection phase: Sluice's Handshake v10, the optional switch to
//! TLS, and verifying the client's credentials against the accounts in the config with
//! mysql_native_password or caching_sha2_password (fast path when cached, otherwise full
//! authentication: clear text over TLS, or RSA key exchange).
//!
//! Implements the server side of
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html> and
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>.

use rand::Rng;
use crate::sync::Locked;

use crate::backend::accounts::Verifier;
use crate::backend::conn::Secret;
use crate::config::AuthMode;
use crate::error::{Error, Result};
use crate::net::{Net, Stream};
use crate::protocol::auth;
use crate::protocol::authflow::{ServerStep, Sha2Server};
use crate::protocol::conn::{PacketConn, ReadError};
use crate::protocol::constants::{cap, err, status};
use crate::protocol::handshake::{auth_switch_request, HandshakeResponse, ServerHandshake};
use crate::protocol::packets::err_payload;
use crate::proxy::Shared;

/// A client that passed the connection phase (the final OK is not sent yet).
#[derive(Debug, Clone)]
pub struct ClientLogin {
    pub user: String,
    /// The account and proof Sluice uses on the backends for this client.
    pub backend_user: String,
    pub backend_secret: Secret,
    pub caps: u32,
    /// MariaDB extended capabilities agreed with the client.
    pub ext_caps: u32,
    pub charset: u8,
    pub database: Option<Vec<u8>>,
    pub attrs: Option<Vec<u8>>,
    /// The nonce of Sluice's handshake. Clients keep it for the whole connection: a
    /// later one-byte mysql_old_password request (COM_CHANGE_USER) is answered with it.
    pub nonce: Vec<u8>,
    /// Sequence id for the next packet to the client.
    pub seq: u8,
}

/// A 20-byte nonce of printable characters, as servers generate them.
pub fn new_nonce<N: Net>(shared: &Shared<N>) -> Vec<u8> {
    let mut rng = shared.rng.locked();
    (0..20)
        .map(|_| loop {
            let b: u8 = rng.gen_range(33..127);
            if b != b'$' {
                break b;
            }
        })
        .collect()
}

pub async fn send_err<S: Stream>(conn: &mut PacketConn<S>, seq: u8, code: u16, state: &str, msg: &str) {
    let _ = conn.send(seq, &err_payload(code, state, msg)).await;
}

fn client_read_err(e: ReadError) -> Error {
    match e {
        ReadError::Io(e) => Error::ClientIo(e),
        ReadError::Closed => Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        ReadError::TooLarge { .. } => Error::client_protocol(err::ER_NET_PACKET_TOO_LARGE, e.to_string()),
        ReadError::OutOfOrder { .. } => Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, e.to_string()),
    }
}

/// Runs the connection phase up to (not including) the final OK.
pub async fn accept<N: Net>(
    shared: &Shared<N>,
    conn: &mut PacketConn<N::Stream>,
    connection_id: u32,
    peer_host: &str,
) -> Result<ClientLogin> {
    let (version, primary_caps, primary_ext_caps, charset) = shared.handshake_facts();
    let mut caps = primary_caps & cap::SUPPORTED & !cap::SSL;
    let ext_caps = primary_ext_caps & cap::ext::SUPPORTED;
    if shared.acceptor.is_some() {
        caps |= cap::SSL;
    }
    let nonce = new_nonce(shared);
    let hs = ServerHandshake {
        server_version: version.into_bytes(),
        connection_id,
        nonce: nonce.clone(),
        caps,
        ext_caps,
        charset,
        status: status::AUTOCOMMIT,
        auth_plugin: shared.cfg.proxy.default_auth_plugin.clone().into_bytes(),
    };
    conn.send(0, &hs.write()).await.map_err(Error::ClientIo)?;
    let mut p = conn.read_packet().await.map_err(client_read_err)?;
    if HandshakeResponse::is_ssl_request(&p.payload) {
        let Some(acceptor) = &shared.acceptor else {
            send_err(conn, p.next_seq(), err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake").await;
            return Err(Error::client_protocol(err::ER_HANDSHAKE_ERROR, "SSLRequest but TLS is not configured"));
        };
        conn.accept_tls(acceptor).await.map_err(|e| Error::Tls(format!("client TLS handshake: {e}")))?;
        p = conn.read_packet().await.map_err(client_read_err)?;
    }
    let Some(resp) = HandshakeResponse::parse(&p.payload) else {
        send_err(conn, p.next_seq(), err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake").await;
        return Err(Error::client_protocol(err::ER_HANDSHAKE_ERROR, "malformed handshake response"));
    };
    let mut seq = p.next_seq();
    let user = String::from_utf8_lossy(&resp.user).into_owned();
    if shared.cfg.proxy.tls.as_ref().is_some_and(|t| t.require_secure_transport) && !conn.is_tls() {
        let msg = "Connections using insecure transport are prohibited while --require_secure_transport=ON.";
        send_err(conn, seq, err::ER_SECURE_TRANSPORT_REQUIRED, "HY000", msg).await;
        return Err(Error::AccessDenied(format!("user {user}: {msg}")));
    }
    let client_plugin = match (&resp.auth_plugin, resp.caps & cap::PLUGIN_AUTH != 0) {
        (Some(p), true) if !p.is_empty() => String::from_utf8_lossy(p).into_owned(),
        _ => auth::NATIVE.to_string(),
    };
    let can_switch = resp.caps & cap::PLUGIN_AUTH != 0;
    let (verdict, _) = authenticate(shared, conn, &user, peer_host, &client_plugin, can_switch, nonce.clone(), resp.auth_response.clone(), &mut seq).await?;
    let (backend_user, backend_secret) = match verdict {
        Verdict::Accepted { backend_user, secret } => (backend_user, secret),
        Verdict::Refused { code, message } => {
            send_err(conn, seq, code, if code == err::ER_ACCESS_DENIED_ERROR { "28000" } else { "08004" }, &message).await;
            return Err(Error::AccessDenied(message));
        }
    };
    Ok(ClientLogin {
        user,
        backend_user,
        backend_secret,
        caps: resp.caps & (caps | cap::SSL),
        ext_caps: resp.ext_caps & ext_caps,
        charset: resp.charset,
        database: resp.database.filter(|d| !d.is_empty()),
        attrs: resp.attrs,
        nonce,
        seq,
    })
}

pub fn access_denied(user: &str, host: &str, with_password: bool) -> String {
    format!("Access denied for user '{user}'@'{host}' (using password: {})", if with_password { "YES" } else { "NO" })
}

/// The outcome of checking a client's credentials.
pub enum Verdict {
    Accepted { backend_user: String, secret: Secret },
    /// Refused with this error (already logged by the caller).
    Refused { code: u16, message: String },
}

/// Checks a client's credentials for `user` (from the config's users or, in pass-through
/// mode, the backend's accounts), asking the client to switch plugins when its
/// `client_plugin` is not the account's. `response` is the client's first auth response
/// (for `nonce`). Returns the verdict and the nonce finally used.
#[allow(clippy::too_many_arguments)]
pub async fn authenticate<N: Net>(
    shared: &Shared<N>,
    conn: &mut PacketConn<N::Stream>,
    user: &str,
    host: &str,
    client_plugin: &str,
    can_switch: bool,
    mut nonce: Vec<u8>,
    mut response: Vec<u8>,
    seq: &mut u8,
) -> Result<(Verdict, Vec<u8>)> {
    let shown_host = shared.accounts.host_as_server_names_it(host);
    let denied = |response: &[u8]| Verdict::Refused { code: err::ER_ACCESS_DENIED_ERROR, message: access_denied(user, shown_host, !response.is_empty()) };
    let live = shared.live.get();
    let (plugin, check) = match shared.cfg.proxy.auth_mode {
        AuthMode::Config => match live.user(user.as_bytes()) {
            Some(u) => (live.user_plugin(u).to_string(), Check::Config { password: u.password.clone() }),
            None => (shared.cfg.proxy.default_auth_plugin.clone(), Check::Unknown),
        },
        AuthMode::Passthrough => {
            let since = tokio::time::Instant::now();
            let mut refreshed = false;
            let mut check = passthrough_check(shared, user, host);
            if matches!(check, Check::Unknown) {
                // Perhaps created just now.
                refreshed = shared.refresh_accounts_since(since).await;
                check = passthrough_check(shared, user, host);
            }
            if let Check::Unsupported(message) = check {
                return Ok((Verdict::Refused { code: err::ER_NOT_SUPPORTED_AUTH_MODE, message }, nonce));
            }
            let plugin = check.plugin();
            if !switch_plugin(conn, shared, plugin, client_plugin, can_switch, &mut nonce, &mut response, seq).await? {
                return Ok((denied(&response), nonce));
            }
            let mut verdict = verify_passthrough(&check, user, &nonce, &response);
            if verdict.is_none() && !refreshed && shared.refresh_accounts_since(since).await {
                // The password (or the account) may have changed since the table was read.
                check = passthrough_check(shared, user, host);
                if let Check::Unsupported(message) = check {
                    return Ok((Verdict::Refused { code: err::ER_NOT_SUPPORTED_AUTH_MODE, message }, nonce));
                }
                // The client answered for `plugin`: an account now needing another one
                // is refused this time.
                if check.plugin() == plugin {
                    verdict = verify_passthrough(&check, user, &nonce, &response);
                }
            }
            return Ok((verdict.unwrap_or_else(|| denied(&response)), nonce));
        }
    };
    if !switch_plugin(conn, shared, &plugin, client_plugin, can_switch, &mut nonce, &mut response, seq).await? {
        return Ok((denied(&response), nonce));
    }
    let verdict = match check {
        Check::Config { password } => {
            if verify(shared, conn, &plugin, user, &password, &nonce, &response, seq).await? {
                Verdict::Accepted {
                    backend_user: shared.cfg.backend.user.clone(),
                    secret: Secret::Password(shared.cfg.backend.password.clone()),
                }
            } else {
                denied(&response)
            }
        }
        _ => denied(&response),
    };
    Ok((verdict, nonce))
}

/// How a client's credentials are checked.
enum Check {
    /// A `[[users]]` entry.
    Config { password: String },
    /// A backend account with mysql_native_password (`None`: no password).
    Native(Option<[u8; 20]>),
    /// A backend account with mysql_old_password.
    Old([u32; 2]),
    /// A backend account Sluice cannot proxy; the message says why.
    Unsupported(String),
    /// No such account.
    Unknown,
}

impl Check {
    /// The plugin a pass-through client must answer for.
    fn plugin(&self) -> &'static str {
        match self {
            Check::Old(_) => auth::OLD,
            _ => auth::NATIVE,
        }
    }
}

/// Pass-through mode: how `user` from `host` is checked, from the account table as read.
fn passthrough_check<N: Net>(shared: &Shared<N>, user: &str, host: &str) -> Check {
    match shared.accounts.find(user, host).map(|a| (a.verifier(), a)) {
        None => Check::Unknown,
        Some((Verifier::Native(stage2), _)) => Check::Native(stage2),
        Some((Verifier::Old(hash), _)) => Check::Old(hash),
        Some((Verifier::Unsupported(p), a)) => Check::Unsupported(format!(
            "Sluice cannot proxy account '{}'@'{}' in pass-through mode: its authentication plugin '{p}' is not supported (only mysql_native_password and mysql_old_password)",
            a.user, a.host
        )),
    }
}

/// Pass-through mode: the verdict for a native-password `response` to `nonce`, `None`
/// when the credentials do not match.
fn verify_passthrough(check: &Check, user: &str, nonce: &[u8], response: &[u8]) -> Option<Verdict> {
    match check {
        Check::Native(None) if response.is_empty() => Some(Verdict::Accepted { backend_user: user.to_string(), secret: Secret::Password(String::new()) }),
        Check::Native(Some(stage2)) => auth::native_recover_stage1(stage2, nonce, response)
            .map(|stage1| Verdict::Accepted { backend_user: user.to_string(), secret: Secret::NativeStage1(stage1) }),
        // The client sends the 8 bytes and a NUL.
        Check::Old(hash) => (response.strip_suffix(&[0]).unwrap_or(response) == auth::old_scramble(*hash, nonce))
            .then(|| Verdict::Accepted { backend_user: user.to_string(), secret: Secret::OldHash(*hash) }),
        _ => None,
    }
}

/// Asks the client to switch to `plugin` when it answered for another one, replacing
/// `response` and `nonce`; false when the client cannot switch.
#[allow(clippy::too_many_arguments)]
async fn switch_plugin<N: Net>(
    conn: &mut PacketConn<N::Stream>,
    shared: &Shared<N>,
    plugin: &str,
    client_plugin: &str,
    can_switch: bool,
    nonce: &mut Vec<u8>,
    response: &mut Vec<u8>,
    seq: &mut u8,
) -> Result<bool> {
    if client_plugin == plugin {
        return Ok(true);
    }
    if !can_switch {
        return Ok(false);
    }
    // As the server does, the nonce of the handshake serves the whole connection:
    // during COM_CHANGE_USER, Connector/C answers a switch with the nonce it holds,
    // not the one in the switch request.
    if nonce.is_empty() {
        *nonce = new_nonce(shared);
    }
    if plugin == auth::OLD && nonce.len() >= auth::OLD_SCRAMBLE_LEN {
        // The one-byte request for a mysql_old_password answer.
        conn.send(*seq, &[0xFE]).await.map_err(Error::ClientIo)?;
    } else {
        conn.send(*seq, &auth_switch_request(plugin, nonce)).await.map_err(Error::ClientIo)?;
    }
    let p = conn.read_packet().await.map_err(client_read_err)?;
    *seq = p.next_seq();
    *response = p.payload.to_vec();
    Ok(true)
}

/// Verifies `response` for `plugin`; may exchange more packets (caching_sha2 full auth).
#[allow(clippy::too_many_arguments)]
pub async fn verify<N: Net>(
    shared: &Shared<N>,
    conn: &mut PacketConn<N::Stream>,
    plugin: &str,
    user: &str,
    password: &str,
    nonce: &[u8],
    response: &[u8],
    seq: &mut u8,
) -> Result<bool> {
    let pw = password.as_bytes();
    if plugin == auth::NATIVE {
        let stage2 = (!pw.is_empty()).then(|| auth::native_stage2(pw));
        return Ok(auth::native_verify(stage2.as_ref(), nonce, response));
    }
    // caching_sha2_password, driven through its state machine.
    let cached = shared.cfg.proxy.caching_sha2_cache && shared.sha2_cache.locked().contains(user);
    let mut flow = Sha2Server::new(pw, nonce, conn.is_tls(), &shared.rsa);
    let mut step = flow.start(response, cached);
    loop {
        match step {
            ServerStep::Reject => return Ok(false),
            ServerStep::Accept(last) => {
                if !last.is_empty() {
                    *seq = conn.send(*seq, &last).await.map_err(Error::ClientIo)?;
                }
                if flow.proved_by_full_auth() && shared.cfg.proxy.caching_sha2_cache {
                    shared.sha2_cache.locked().insert(user.to_string());
                }
                return Ok(true);
            }
            ServerStep::Send(msg) => {
                conn.send(*seq, &msg).await.map_err(Error::ClientIo)?;
                let p = conn.read_packet().await.map_err(client_read_err)?;
                *seq = p.next_seq();
                if !conn.is_tls() && p.payload.last() == Some(&0) && p.payload[..p.payload.len() - 1] == *pw {
                    tracing::info!(user, "client sent its password in clear text over an unencrypted connection; refused (use TLS)");
                }
                step = flow.on_packet(&p.payload);
            }
        }
    }
}
