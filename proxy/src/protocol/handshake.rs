//! Connection-phase packets: the server's Handshake v10, the client's SSLRequest and
//! HandshakeResponse41, AuthSwitchRequest, and COM_CHANGE_USER's payload.
//!
//! Implements <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_change_user.html>.

use bytes::{BufMut, BytesMut};

use super::constants::cap;
use super::packet::{put_lenenc, put_lenenc_bytes, Reader};

/// The server's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    /// The authentication nonce (20 bytes for the usual plugins), without the trailing NUL.
    pub nonce: Vec<u8>,
    pub caps: u32,
    /// MariaDB's extended capabilities (zero unless `caps` lacks LONG_PASSWORD).
    pub ext_caps: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: Vec<u8>,
}

impl ServerHandshake {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return None;
        }
        let server_version = r.null_terminated()?.to_vec();
        let connection_id = r.u32()?;
        let mut nonce = r.take(8)?.to_vec();
        r.u8()?;
        let mut caps = r.u16()? as u32;
        let mut charset = 0;
        let mut status = 0;
        let mut auth_plugin = Vec::new();
        let mut ext_caps = 0;
        if !r.is_empty() {
            charset = r.u8()?;
            status = r.u16()?;
            caps |= (r.u16()? as u32) << 16;
            let auth_len = r.u8()? as usize;
            let reserved = r.take(10)?; // MariaDB keeps extended capabilities in the last 4
            if caps & cap::LONG_PASSWORD == 0 {
                // cannot fail: `take(10)` returned exactly ten bytes.
                ext_caps = u32::from_le_bytes(reserved[6..10].try_into().expect("4 bytes"));
            }
            if caps & cap::SECURE_CONNECTION != 0 {
                let n = auth_len.saturating_sub(8).max(13);
                let part2 = r.take(n.min(r.remaining()))?;
                let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
                nonce.extend_from_slice(part2);
            }
            if caps & cap::PLUGIN_AUTH != 0 {
                auth_plugin = r.null_terminated_or_end().to_vec();
            }
        }
        Some(ServerHandshake { server_version, connection_id, nonce, caps, ext_caps, charset, status, auth_plugin })
    }

    pub fn write(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(10);
        out.put_slice(&self.server_version);
        out.put_u8(0);
        out.put_u32_le(self.connection_id);
        out.put_slice(&self.nonce[..8]);
        out.put_u8(0);
        out.put_u16_le(self.caps as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.caps >> 16) as u16);
        out.put_u8(if self.caps & cap::PLUGIN_AUTH != 0 { (self.nonce.len() + 1) as u8 } else { 0 });
        out.put_slice(&[0; 6]);
        out.put_u32_le(if self.caps & cap::LONG_PASSWORD == 0 { self.ext_caps } else { 0 });
        if self.caps & cap::SECURE_CONNECTION != 0 {
            out.put_slice(&self.nonce[8..]);
            out.put_u8(0);
        }
        if self.caps & cap::PLUGIN_AUTH != 0 {
            out.put_slice(&self.auth_plugin);
            out.put_u8(0);
        }
        out.to_vec()
    }
}

/// The client's reply to the handshake (HandshakeResponse41).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub caps: u32,
    /// MariaDB's extended capabilities (zero unless `caps` lacks LONG_PASSWORD).
    pub ext_caps: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    /// The raw key/value block of connection attributes (without its length prefix).
    pub attrs: Option<Vec<u8>>,
}

/// Length of an SSLRequest packet: the fixed prefix of HandshakeResponse41.
pub const SSL_REQUEST_LEN: usize = 32;

impl HandshakeResponse {
    /// Parses a HandshakeResponse41. Pre-4.1 clients are not supported (`None`).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut r = Reader::new(payload);
        let caps = r.u32()?;
        if caps & cap::PROTOCOL_41 == 0 {
            return None;
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        let filler = r.take(23)?;
        // cannot fail: `take(23)` returned exactly 23 bytes.
        let ext_caps = if caps & cap::LONG_PASSWORD == 0 { u32::from_le_bytes(filler[19..23].try_into().expect("4 bytes")) } else { 0 };
        let user = r.null_terminated()?.to_vec();
        let auth_response = if caps & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if caps & cap::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_terminated()?.to_vec()
        };
        let mut resp = HandshakeResponse { caps, ext_caps, max_packet, charset, user, auth_response, ..Default::default() };
        if caps & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            resp.database = Some(r.null_terminated_or_end().to_vec());
        }
        if caps & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin = Some(r.null_terminated_or_end().to_vec());
        }
        if caps & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            resp.attrs = Some(r.lenenc_bytes()?.to_vec());
        }
        Some(resp)
    }

    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == SSL_REQUEST_LEN
            && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & cap::SSL != 0
    }

    /// The SSLRequest prefix for these capabilities.
    pub fn write_ssl_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SSL_REQUEST_LEN);
        out.extend_from_slice(&(self.caps | cap::SSL).to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; 19]);
        out.extend_from_slice(&self.filler_ext_caps().to_le_bytes());
        out
    }

    fn filler_ext_caps(&self) -> u32 {
        if self.caps & cap::LONG_PASSWORD == 0 {
            self.ext_caps
        } else {
            0
        }
    }

    pub fn write(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(128 + self.attrs.as_ref().map_or(0, Vec::len));
        out.put_u32_le(self.caps);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_slice(&[0; 19]);
        out.put_u32_le(self.filler_ext_caps());
        out.put_slice(&self.user);
        out.put_u8(0);
        if self.caps & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.put_u8(self.auth_response.len() as u8);
            out.put_slice(&self.auth_response);
        }
        if self.caps & cap::CONNECT_WITH_DB != 0 {
            out.put_slice(self.database.as_deref().unwrap_or_default());
            out.put_u8(0);
        }
        if self.caps & cap::PLUGIN_AUTH != 0 {
            out.put_slice(self.auth_plugin.as_deref().unwrap_or_default());
            out.put_u8(0);
        }
        if self.caps & cap::CONNECT_ATTRS != 0 {
            put_lenenc_bytes(&mut out, self.attrs.as_deref().unwrap_or_default());
        }
        out.to_vec()
    }
}

/// Encodes connection attributes as the CONNECT_ATTRS key/value block.
pub fn encode_attrs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (k, v) in pairs {
        put_lenenc_bytes(&mut out, k.as_bytes());
        put_lenenc_bytes(&mut out, v.as_bytes());
    }
    out.to_vec()
}

/// AuthSwitchRequest: `0xFE`, plugin name, NUL, plugin data.
pub fn auth_switch_request(plugin: &str, nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + nonce.len() + 1);
    out.push(0xFE);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(nonce);
    out.push(0);
    out
}

/// Parses an AuthSwitchRequest into `(plugin, data)`; the data loses one trailing NUL.
pub fn parse_auth_switch(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xFE {
        return None;
    }
    let plugin = r.null_terminated()?;
    let data = r.rest();
    Some((plugin, data.strip_suffix(&[0]).unwrap_or(data)))
}

/// COM_CHANGE_USER's payload (after the command byte).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<Vec<u8>>,
    pub attrs: Option<Vec<u8>>,
}

impl ChangeUser {
    /// Parses the payload after the command byte, for a client with capabilities `caps`.
    pub fn parse(body: &[u8], caps: u32) -> Option<Self> {
        let mut r = Reader::new(body);
        let user = r.null_terminated()?.to_vec();
        let auth_response = if caps & cap::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_terminated()?.to_vec()
        };
        let database = r.null_terminated_or_end().to_vec();
        let mut cu = ChangeUser { user, auth_response, database, ..Default::default() };
        if !r.is_empty() {
            cu.charset = Some(r.u16()?);
        }
        if caps & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            cu.auth_plugin = Some(r.null_terminated_or_end().to_vec());
        }
        if caps & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            cu.attrs = Some(r.lenenc_bytes()?.to_vec());
        }
        Some(cu)
    }

    /// The whole command payload, starting with COM_CHANGE_USER.
    pub fn write(&self, caps: u32) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(super::constants::com::CHANGE_USER);
        out.put_slice(&self.user);
        out.put_u8(0);
        out.put_u8(self.auth_response.len() as u8);
        out.put_slice(&self.auth_response);
        out.put_slice(&self.database);
        out.put_u8(0);
        out.put_u16_le(self.charset.unwrap_or(45));
        if caps & cap::PLUGIN_AUTH != 0 {
            out.put_slice(self.auth_plugin.as_deref().unwrap_or_default());
            out.put_u8(0);
        }
        if caps & cap::CONNECT_ATTRS != 0 {
            let attrs = self.attrs.as_deref().unwrap_or_default();
            put_lenenc(&mut out, attrs.len() as u64);
            out.put_slice(attrs);
        }
        out.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerHandshake {
        ServerHandshake {
            server_version: b"5.5.5-10.11.19-MariaDB".to_vec(),
            connection_id: 42,
            nonce: (1..=20).collect(),
            caps: cap::SUPPORTED & !cap::LONG_PASSWORD,
            ext_caps: cap::ext::EXTENDED_METADATA,
            charset: 45,
            status: 2,
            auth_plugin: b"mysql_native_password".to_vec(),
        }
    }

    #[test]
    fn server_handshake_roundtrips() {
        let h = sample();
        assert_eq!(ServerHandshake::parse(&h.write()), Some(h));
    }

    #[test]
    fn handshake_response_roundtrips_with_db_plugin_and_attrs() {
        let resp = HandshakeResponse {
            caps: cap::SUPPORTED & !cap::SSL & !cap::LONG_PASSWORD,
            ext_caps: cap::ext::EXTENDED_METADATA,
            max_packet: 1 << 24,
            charset: 45,
            user: b"app".to_vec(),
            auth_response: vec![9; 20],
            database: Some(b"test".to_vec()),
            auth_plugin: Some(b"caching_sha2_password".to_vec()),
            attrs: Some(encode_attrs([("_client_name", "x")])),
        };
        assert_eq!(HandshakeResponse::parse(&resp.write()), Some(resp.clone()));
        assert!(!HandshakeResponse::is_ssl_request(&resp.write()));
        assert!(HandshakeResponse::is_ssl_request(&resp.write_ssl_request()));
    }

    #[test]
    fn handshake_response_without_lenenc_auth_data_parses() {
        let resp = HandshakeResponse {
            caps: cap::PROTOCOL_41 | cap::SECURE_CONNECTION,
            user: b"u".to_vec(),
            auth_response: vec![1, 2, 3],
            ..Default::default()
        };
        assert_eq!(HandshakeResponse::parse(&resp.write()), Some(resp));
    }

    #[test]
    fn truncated_handshake_response_is_rejected_not_panicking() {
        let full = HandshakeResponse { caps: cap::SUPPORTED, user: b"app".to_vec(), ..Default::default() }.write();
        for cut in 0..full.len() - 1 {
            let _ = HandshakeResponse::parse(&full[..cut]);
        }
        assert_eq!(HandshakeResponse::parse(&full[..20]), None);
    }

    #[test]
    fn auth_switch_roundtrips() {
        let p = auth_switch_request("mysql_native_password", &[7; 20]);
        assert_eq!(parse_auth_switch(&p), Some((&b"mysql_native_password"[..], &[7u8; 20][..])));
    }

    #[test]
    fn change_user_roundtrips() {
        let caps = cap::SUPPORTED;
        let cu = ChangeUser {
            user: b"app2".to_vec(),
            auth_response: vec![5; 20],
            database: b"test".to_vec(),
            charset: Some(33),
            auth_plugin: Some(b"mysql_native_password".to_vec()),
            attrs: Some(vec![]),
        };
        let wire = cu.write(caps);
        assert_eq!(ChangeUser::parse(&wire[1..], caps), Some(cu));
    }
}
