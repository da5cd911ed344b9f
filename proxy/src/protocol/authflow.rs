//! The multi-packet authentication exchanges as synchronous state machines, driven by
//! the async login code on either side: [`ClientAuth`] (Sluice logging in to a backend:
//! auth switches, caching_sha2_password fast path, full authentication over TLS or by RSA
//! key exchange) and [`Sha2Server`] (Sluice verifying a client with caching_sha2_password).
//!
//! Implements the exchanges of
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>.

use super::auth::{self, RsaKeys};
use super::handshake::parse_auth_switch;
use super::packets;

/// How a client proves an account's identity.
#[derive(Clone)]
pub enum Secret {
    /// The account's password.
    Password(String),
    /// `SHA1(password)` recovered from a client's mysql_native_password proof
    /// (pass-through identity): answers mysql_native_password challenges only.
    NativeStage1([u8; 20]),
    /// A mysql_old_password account's stored hash (pass-through identity): answers
    /// mysql_old_password challenges only.
    OldHash([u32; 2]),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(..)",
            Secret::NativeStage1(_) => "NativeStage1(..)",
            Secret::OldHash(_) => "OldHash(..)",
        })
    }
}

impl Secret {
    pub fn password(&self) -> Option<&[u8]> {
        match self {
            Secret::Password(p) => Some(p.as_bytes()),
            Secret::NativeStage1(_) | Secret::OldHash(_) => None,
        }
    }
}

/// Why a client-side login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The server refused with an ERR packet.
    Refused { code: u16, state: String, message: String },
    /// The server asked for a plugin Sluice cannot answer with this secret.
    Unsupported(String),
    /// The server broke the protocol.
    Protocol(String),
}

/// What the client side does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this payload (sequence id: the received packet's plus one).
    Send(Vec<u8>),
    /// Nothing to send; read the next packet.
    Wait,
    /// Logged in; the OK packet's payload.
    Done(Vec<u8>),
    Failed(AuthFailure),
}

/// Client side of the authentication exchange.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    plugin: String,
    nonce: Vec<u8>,
    secret: Secret,
    tls: bool,
    awaiting_key: bool,
}

impl ClientAuth {
    /// `plugin` and `nonce` from the server's handshake; `tls` when the connection is
    /// encrypted (clear-text passwords may then be sent).
    pub fn new(plugin: &str, nonce: &[u8], secret: Secret, tls: bool) -> Self {
        ClientAuth { plugin: plugin.to_string(), nonce: nonce.to_vec(), secret, tls, awaiting_key: false }
    }

    /// The auth response for the current plugin and nonce.
    pub fn response(&self) -> Result<Vec<u8>, AuthFailure> {
        match (self.plugin.as_str(), &self.secret) {
            (auth::NATIVE, Secret::Password(pw)) => Ok(auth::native_scramble(pw.as_bytes(), &self.nonce)),
            (auth::NATIVE, Secret::NativeStage1(s1)) => Ok(auth::native_scramble_from_stage1(s1, &self.nonce)),
            (auth::CACHING_SHA2, Secret::Password(pw)) => Ok(auth::sha2_scramble(pw.as_bytes(), &self.nonce)),
            // Only the hash is known: the server asks to switch to mysql_old_password
            // for such an account whatever the first answer was.
            (auth::NATIVE, Secret::OldHash(_)) => Ok(Vec::new()),
            (auth::OLD, Secret::OldHash(hash)) => Ok(old_answer(*hash, &self.nonce)),
            (auth::OLD, Secret::Password(pw)) => Ok(old_answer(auth::old_hash(pw.as_bytes()), &self.nonce)),
            (other, _) => Err(AuthFailure::Unsupported(other.to_string())),
        }
    }

    /// Handles one packet from the server.
    pub fn on_packet(&mut self, payload: &[u8], rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> ClientStep {
        let fail = |m: &str| ClientStep::Failed(AuthFailure::Protocol(m.to_string()));
        if self.awaiting_key {
            self.awaiting_key = false;
            return match payload.first() {
                Some(0x01) => match auth::rsa_encrypt_password(&payload[1..], self.secret.password().unwrap_or_default(), &self.nonce, rng) {
                    Ok(cipher) => ClientStep::Send(cipher),
                    Err(e) => fail(&e.to_string()),
                },
                Some(0xFF) => refused(payload),
                _ => fail("expected the server's RSA public key"),
            };
        }
        match payload.first() {
            Some(0x00) => ClientStep::Done(payload.to_vec()),
            Some(0xFF) => refused(payload),
            // The pre-plugin request for a mysql_old_password answer to the handshake's nonce.
            Some(0xFE) if payload.len() == 1 => {
                self.plugin = auth::OLD.to_string();
                match self.response() {
                    Ok(r) => ClientStep::Send(r),
                    Err(e) => ClientStep::Failed(e),
                }
            }
            Some(0xFE) => {
                let Some((plugin, data)) = parse_auth_switch(payload) else { return fail("malformed auth switch request") };
                self.plugin = String::from_utf8_lossy(plugin).into_owned();
                self.nonce = data.to_vec();
                match self.response() {
                    Ok(r) => ClientStep::Send(r),
                    Err(e) => ClientStep::Failed(e),
                }
            }
            Some(0x01) if self.plugin == auth::CACHING_SHA2 => match payload.get(1) {
                Some(&auth::SHA2_FAST_OK) => ClientStep::Wait,
                Some(&auth::SHA2_FULL_AUTH) => match self.secret.password() {
                    None => ClientStep::Failed(AuthFailure::Unsupported(
                        "caching_sha2_password full authentication (needs the password, which pass-through identity does not have)".into(),
                    )),
                    Some(pw) if self.tls => {
                        let mut clear = pw.to_vec();
                        clear.push(0);
                        ClientStep::Send(clear)
                    }
                    Some(_) => {
                        self.awaiting_key = true;
                        ClientStep::Send(vec![auth::SHA2_REQUEST_PUBLIC_KEY])
                    }
                },
                _ => fail("unexpected caching_sha2_password message"),
            },
            _ => fail("unexpected packet during login"),
        }
    }
}

/// mysql_old_password's answer: the 8 scrambled bytes and a NUL.
fn old_answer(hash: [u32; 2], nonce: &[u8]) -> Vec<u8> {
    let mut r = auth::old_scramble(hash, nonce).to_vec();
    r.push(0);
    r
}

fn refused(payload: &[u8]) -> ClientStep {
    match packets::Err::parse(payload) {
        Some(e) => ClientStep::Failed(AuthFailure::Refused {
            code: e.code,
            state: String::from_utf8_lossy(e.state).into_owned(),
            message: e.message_lossy(),
        }),
        None => ClientStep::Failed(AuthFailure::Protocol("malformed ERR packet".into())),
    }
}

/// What the server side does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send this payload and wait for the client's next packet.
    Send(Vec<u8>),
    /// Send this payload (may be empty: nothing) and accept the login.
    Accept(Vec<u8>),
    Reject,
}

/// Server side of caching_sha2_password, for an account whose password Sluice knows.
pub struct Sha2Server<'a> {
    password: &'a [u8],
    nonce: &'a [u8],
    tls: bool,
    rsa: &'a RsaKeys,
    stage: Sha2Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sha2Stage {
    Start,
    FullAuth,
    AwaitCipher,
    Finished,
}

impl<'a> Sha2Server<'a> {
    pub fn new(password: &'a [u8], nonce: &'a [u8], tls: bool, rsa: &'a RsaKeys) -> Self {
        Sha2Server { password, nonce, tls, rsa, stage: Sha2Stage::Start }
    }

    /// Whether the account's password was proven by full authentication (the caller may
    /// cache the user for the fast path).
    pub fn proved_by_full_auth(&self) -> bool {
        self.stage == Sha2Stage::Finished
    }

    /// Judges the client's scramble. `cached`: the fast path is allowed for this user.
    /// A mismatch falls back to full authentication, as the server does.
    pub fn start(&mut self, response: &[u8], cached: bool) -> ServerStep {
        if self.password.is_empty() {
            return if response.is_empty() { ServerStep::Accept(vec![]) } else { ServerStep::Reject };
        }
        if response.is_empty() {
            return ServerStep::Reject;
        }
        if cached && auth::sha2_verify(self.password, self.nonce, response) {
            return ServerStep::Accept(vec![0x01, auth::SHA2_FAST_OK]);
        }
        self.stage = Sha2Stage::FullAuth;
        ServerStep::Send(vec![0x01, auth::SHA2_FULL_AUTH])
    }

    /// Handles the client's packets during full authentication.
    pub fn on_packet(&mut self, payload: &[u8]) -> ServerStep {
        let clear = match self.stage {
            Sha2Stage::FullAuth if self.tls => payload.strip_suffix(&[0]).unwrap_or(payload).to_vec(),
            Sha2Stage::FullAuth if payload == [auth::SHA2_REQUEST_PUBLIC_KEY] => {
                self.stage = Sha2Stage::AwaitCipher;
                let mut msg = vec![0x01];
                msg.extend_from_slice(self.rsa.public_pem().as_bytes());
                return ServerStep::Send(msg);
            }
            Sha2Stage::FullAuth | Sha2Stage::AwaitCipher => match self.rsa.decrypt_password(payload, self.nonce) {
                Some(pw) => pw,
                None => return ServerStep::Reject,
            },
            Sha2Stage::Start | Sha2Stage::Finished => return ServerStep::Reject,
        };
        if clear == self.password {
            self.stage = Sha2Stage::Finished;
            ServerStep::Accept(vec![])
        } else {
            ServerStep::Reject
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::auth_switch_request;
    use rand::SeedableRng;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";
    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(3)
    }

    fn pw(p: &str) -> Secret {
        Secret::Password(p.into())
    }

    /// Runs a client against a server state machine for `password` until done.
    fn sha2_login(client_pw: &str, server_pw: &str, tls: bool, cached: bool) -> (bool, bool) {
        let keys = RsaKeys::generate(&mut rng()).unwrap();
        let mut client = ClientAuth::new(auth::CACHING_SHA2, NONCE, pw(client_pw), tls);
        let mut server = Sha2Server::new(server_pw.as_bytes(), NONCE, tls, &keys);
        let mut step = server.start(&client.response().unwrap(), cached);
        let mut r = rng();
        loop {
            match step {
                ServerStep::Reject => return (false, server.proved_by_full_auth()),
                ServerStep::Accept(last) => {
                    if !last.is_empty() {
                        assert_eq!(client.on_packet(&last, &mut r), ClientStep::Wait);
                    }
                    assert!(matches!(client.on_packet(OK, &mut r), ClientStep::Done(_)));
                    return (true, server.proved_by_full_auth());
                }
                ServerStep::Send(p) => match client.on_packet(&p, &mut r) {
                    ClientStep::Send(answer) => step = server.on_packet(&answer),
                    other => panic!("client: {other:?}"),
                },
            }
        }
    }

    #[test]
    fn sha2_fast_path_when_cached() {
        assert_eq!(sha2_login("pw", "pw", false, true), (true, false));
    }

    #[test]
    fn sha2_full_auth_by_rsa_without_tls() {
        assert_eq!(sha2_login("pw", "pw", false, false), (true, true));
        assert_eq!(sha2_login("bad", "pw", false, false).0, false);
    }

    #[test]
    fn sha2_full_auth_in_clear_text_over_tls() {
        assert_eq!(sha2_login("pw", "pw", true, false), (true, true));
        assert_eq!(sha2_login("bad", "pw", true, false).0, false);
    }

    #[test]
    fn sha2_fast_path_mismatch_falls_back_to_full_auth() {
        assert_eq!(sha2_login("bad", "pw", true, true).0, false);
        assert_eq!(sha2_login("pw", "pw", true, true), (true, false));
    }

    #[test]
    fn clear_text_over_plain_tcp_is_rejected() {
        let keys = RsaKeys::generate(&mut rng()).unwrap();
        let mut server = Sha2Server::new(b"pw", NONCE, false, &keys);
        assert_eq!(server.start(&auth::sha2_scramble(b"pw", NONCE), false), ServerStep::Send(vec![1, 4]));
        assert_eq!(server.on_packet(b"pw\0"), ServerStep::Reject);
    }

    #[test]
    fn client_follows_auth_switch_to_native() {
        let mut c = ClientAuth::new(auth::CACHING_SHA2, NONCE, pw("pw"), false);
        let other = b"zyxwvutsrqponmlkjihg";
        let step = c.on_packet(&auth_switch_request(auth::NATIVE, other), &mut rng());
        assert_eq!(step, ClientStep::Send(auth::native_scramble(b"pw", other)));
        assert!(matches!(c.on_packet(OK, &mut rng()), ClientStep::Done(_)));
    }

    #[test]
    fn stage1_secret_cannot_do_sha2_full_auth_or_unknown_plugins() {
        let mut c = ClientAuth::new(auth::CACHING_SHA2, NONCE, Secret::NativeStage1([1; 20]), false);
        assert!(matches!(c.response(), Err(AuthFailure::Unsupported(_))));
        let step = c.on_packet(&auth_switch_request("client_ed25519", NONCE), &mut rng());
        assert_eq!(step, ClientStep::Failed(AuthFailure::Unsupported("client_ed25519".into())));
    }

    #[test]
    fn server_error_during_login_is_refused() {
        let mut c = ClientAuth::new(auth::NATIVE, NONCE, pw("pw"), false);
        let step = c.on_packet(&packets::err_payload(1045, "28000", "Access denied"), &mut rng());
        assert_eq!(step, ClientStep::Failed(AuthFailure::Refused { code: 1045, state: "28000".into(), message: "Access denied".into() }));
    }
}
