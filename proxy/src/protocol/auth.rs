//! Authentication plugins, both sides: `mysql_native_password`,
//! `caching_sha2_password` (fast path, full authentication in clear text over TLS, and
//! full authentication by RSA key exchange), and the pre-4.1 `mysql_old_password`
//! (MariaDB still accepts it when `secure_auth` is off).
//!
//! Implements <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>.

use rand::RngCore;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const CLEAR: &str = "mysql_clear_password";
pub const OLD: &str = "mysql_old_password";

/// Nonce bytes mysql_old_password uses (the first 8 of the server's).
pub const OLD_SCRAMBLE_LEN: usize = 8;

/// mysql_old_password's stored hash of `bytes` (spaces and tabs skipped): two 31-bit
/// numbers, stored as 16 hex digits.
pub fn old_hash(bytes: &[u8]) -> [u32; 2] {
    let (mut nr, mut nr2, mut add) = (1_345_345_333u32, 0x1234_5671u32, 7u32);
    for &c in bytes.iter().filter(|&&c| c != b' ' && c != b'\t') {
        let c = u32::from(c);
        nr ^= ((nr & 63).wrapping_add(add)).wrapping_mul(c).wrapping_add(nr << 8);
        nr2 = nr2.wrapping_add((nr2 << 8) ^ nr);
        add = add.wrapping_add(c);
    }
    [nr & 0x7FFF_FFFF, nr2 & 0x7FFF_FFFF]
}

/// The 16-hex-digit stored form of a mysql_old_password hash.
pub fn parse_old_hash(s: &str) -> Option<[u32; 2]> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some([u32::from_str_radix(&s[..8], 16).ok()?, u32::from_str_radix(&s[8..], 16).ok()?])
}

/// The client's 8-byte mysql_old_password answer to `nonce`, computed from the stored
/// hash alone (which is all the protocol needs).
pub fn old_scramble(hash: [u32; 2], nonce: &[u8]) -> [u8; OLD_SCRAMBLE_LEN] {
    const MAX: u64 = 0x3FFF_FFFF;
    let message = &nonce[..nonce.len().min(OLD_SCRAMBLE_LEN)];
    let m = old_hash(message);
    let (mut s1, mut s2) = (u64::from(hash[0] ^ m[0]) % MAX, u64::from(hash[1] ^ m[1]) % MAX);
    let mut rnd = || {
        s1 = (s1 * 3 + s2) % MAX;
        s2 = (s1 + s2 + 33) % MAX;
        s1 as f64 / MAX as f64
    };
    let mut out = [0u8; OLD_SCRAMBLE_LEN];
    for b in out.iter_mut().take(message.len()) {
        *b = (rnd() * 31.0).floor() as u8 + 64;
    }
    let extra = (rnd() * 31.0).floor() as u8;
    for b in out.iter_mut() {
        *b ^= extra;
    }
    out
}

/// caching_sha2_password protocol bytes (sent after 0x01 "more data").
pub const SHA2_FAST_OK: u8 = 3;
pub const SHA2_FULL_AUTH: u8 = 4;
/// Client's request for the server's RSA public key.
pub const SHA2_REQUEST_PUBLIC_KEY: u8 = 2;

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn xor_in_place(a: &mut [u8], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// The nonce as the plugins use it: 20 bytes at most.
fn nonce20(nonce: &[u8]) -> &[u8] {
    &nonce[..nonce.len().min(20)]
}

/// `SHA1(SHA1(password))`: what the server stores for mysql_native_password.
pub fn native_stage2(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// Client proof for mysql_native_password: `SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))`.
/// Empty for an empty password, as clients send it.
pub fn native_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    let mut out = sha1(&[nonce20(nonce), &stage2]);
    xor_in_place(&mut out, &stage1);
    out.to_vec()
}

/// Server check of a mysql_native_password proof against the stored `SHA1(SHA1(pw))`
/// (`None` for an account with an empty password).
pub fn native_verify(stage2: Option<&[u8; 20]>, nonce: &[u8], response: &[u8]) -> bool {
    match stage2 {
        None => response.is_empty(),
        Some(stage2) => {
            if response.len() != 20 {
                return false;
            }
            let mut stage1 = sha1(&[nonce20(nonce), stage2]);
            xor_in_place(&mut stage1, response);
            constant_time_eq(&sha1(&[&stage1]), stage2)
        }
    }
}

/// mysql_native_password proof computed from `SHA1(password)` alone (what pass-through
/// identity recovers from a client's proof), for any nonce.
pub fn native_scramble_from_stage1(stage1: &[u8; 20], nonce: &[u8]) -> Vec<u8> {
    let stage2 = sha1(&[stage1]);
    let mut out = sha1(&[nonce20(nonce), &stage2]);
    xor_in_place(&mut out, stage1);
    out.to_vec()
}

/// Verifies a mysql_native_password proof against the stored `SHA1(SHA1(pw))` and, when
/// it is right, returns `SHA1(pw)`, which lets Sluice answer a backend's challenge as the
/// same account without knowing the password.
pub fn native_recover_stage1(stage2: &[u8; 20], nonce: &[u8], response: &[u8]) -> Option<[u8; 20]> {
    if response.len() != 20 {
        return None;
    }
    let mut stage1 = sha1(&[nonce20(nonce), stage2]);
    xor_in_place(&mut stage1, response);
    constant_time_eq(&sha1(&[&stage1]), stage2).then_some(stage1)
}

/// Parses the `*<40 hex digits>` form servers store for mysql_native_password.
pub fn parse_native_hash(s: &str) -> Option<[u8; 20]> {
    let hex = s.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Client proof for caching_sha2_password's fast path:
/// `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)`.
pub fn sha2_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let p1 = sha256(&[password]);
    let p2 = sha256(&[&p1]);
    let mut out = sha256(&[&p2, nonce20(nonce)]);
    xor_in_place(&mut out, &p1);
    out.to_vec()
}

/// Server check of a caching_sha2_password fast-path proof, knowing the password.
pub fn sha2_verify(password: &[u8], nonce: &[u8], response: &[u8]) -> bool {
    if password.is_empty() {
        return response.is_empty();
    }
    response.len() == 32 && constant_time_eq(&sha2_scramble(password, nonce), response)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `(password + NUL) XOR nonce`, repeating the nonce: what is RSA-encrypted.
fn xor_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    let nonce = nonce20(nonce);
    let mut buf = password.to_vec();
    buf.push(0);
    if !nonce.is_empty() {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
    }
    buf
}

/// Error from the RSA part of caching_sha2_password.
#[derive(Debug, thiserror::Error)]
#[error("RSA: {0}")]
pub struct RsaError(String);

/// Encrypts the password for full authentication over an unencrypted connection, with the
/// server's public key (PEM, PKCS#8 or PKCS#1) and RSA-OAEP (SHA-1), as clients do.
pub fn rsa_encrypt_password(
    public_pem: &[u8],
    password: &[u8],
    nonce: &[u8],
    rng: &mut (impl RngCore + rand::CryptoRng),
) -> Result<Vec<u8>, RsaError> {
    let pem = std::str::from_utf8(public_pem).map_err(|e| RsaError(e.to_string()))?.trim_end_matches('\0');
    let key = RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| RsaError(format!("bad public key from server: {e}")))?;
    key.encrypt(rng, Oaep::new::<Sha1>(), &xor_password(password, nonce)).map_err(|e| RsaError(e.to_string()))
}

/// The proxy's RSA key pair for caching_sha2_password full authentication without TLS.
pub struct RsaKeys {
    private: RsaPrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeys").finish_non_exhaustive()
    }
}

impl RsaKeys {
    /// Loads a PKCS#8 or PKCS#1 private key from PEM.
    pub fn from_private_pem(pem: &str) -> Result<Self, RsaError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|e| RsaError(e.to_string()))?;
        Self::from_private(private)
    }

    /// Generates a fresh 2048-bit key pair from the injected RNG.
    pub fn generate(rng: &mut (impl RngCore + rand::CryptoRng)) -> Result<Self, RsaError> {
        let private = RsaPrivateKey::new(rng, 2048).map_err(|e| RsaError(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, RsaError> {
        let public_pem = RsaPublicKey::from(&private)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| RsaError(e.to_string()))?;
        Ok(RsaKeys { private, public_pem })
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Decrypts a client's encrypted password; `None` if it does not decrypt.
    pub fn decrypt_password(&self, cipher: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
        // Clients use RSA-OAEP (SHA-1) as the server expects; some builds of MariaDB
        // Connector/C (GnuTLS) pad with PKCS#1 v1.5 instead, which is accepted too.
        let mut pw = self
            .private
            .decrypt(Oaep::new::<Sha1>(), cipher)
            .or_else(|_| self.private.decrypt(rsa::Pkcs1v15Encrypt, cipher))
            .ok()?;
        let nonce = nonce20(nonce);
        if !nonce.is_empty() {
            for (i, b) in pw.iter_mut().enumerate() {
                *b ^= nonce[i % nonce.len()];
            }
        }
        let nul = pw.iter().position(|&b| b == 0).unwrap_or(pw.len());
        pw.truncate(nul);
        Some(pw)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_password_hash_and_scramble_match_the_servers() {
        // MariaDB's main.change_user creates test_oldpw with this hash for 'oldpw'.
        assert_eq!(old_hash(b"oldpw"), parse_old_hash("09301740536db389").unwrap());
        assert_eq!(old_hash(b"old pw"), old_hash(b"oldpw"), "spaces do not count");
        let nonce = b"abcdefgh12345678abcd";
        let s = old_scramble(old_hash(b"oldpw"), nonce);
        assert_eq!(s, old_scramble(parse_old_hash("09301740536db389").unwrap(), &nonce[..8]), "only 8 nonce bytes count");
        assert_ne!(s, old_scramble(old_hash(b"other"), nonce));
        assert_eq!(parse_old_hash("*09301740536db38"), None);
    }

    use super::*;
    use rand::SeedableRng;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    #[test]
    fn native_scramble_verifies_against_stored_hash() {
        let proof = native_scramble(b"secret", NONCE);
        assert!(native_verify(Some(&native_stage2(b"secret")), NONCE, &proof));
        assert!(!native_verify(Some(&native_stage2(b"other")), NONCE, &proof));
        assert!(!native_verify(Some(&native_stage2(b"secret")), b"zbcdefghijklmnopqrst", &proof));
    }

    #[test]
    fn scrambles_match_vectors_computed_with_python_hashlib() {
        let nonce = [0x4d, 0x2f, 0x5b, 0x4a, 0x7c, 0x25, 0x3b, 0x44, 0x39, 0x70, 0x49, 0x61, 0x31, 0x2d, 0x72, 0x41, 0x55, 0x2b, 0x55, 0x6c];
        assert_eq!(
            native_scramble(b"root", &nonce),
            [0xd7, 0x24, 0x0f, 0x77, 0xa9, 0x90, 0xda, 0x37, 0x3f, 0x66, 0x7d, 0x29, 0x7f, 0x56, 0xa2, 0xf7, 0x89, 0x44, 0x1b, 0x31]
        );
        assert_eq!(
            sha2_scramble(b"root", &nonce),
            [
                0x3f, 0x11, 0x6f, 0x30, 0xd9, 0xb7, 0x57, 0x8a, 0xdc, 0x1d, 0xb1, 0xf4, 0x47, 0xcd, 0x25, 0x13, 0x41, 0xa8, 0xd4, 0xa9,
                0x34, 0x6b, 0xcf, 0x68, 0xc8, 0x79, 0xa0, 0x8f, 0x68, 0x22, 0x74, 0x0b
            ]
        );
    }

    #[test]
    fn stage1_recovered_from_a_client_proof_answers_any_other_challenge() {
        let stage2 = native_stage2(b"secret");
        let proof = native_scramble(b"secret", NONCE);
        let stage1 = native_recover_stage1(&stage2, NONCE, &proof).unwrap();
        let other = b"01234567890123456789";
        assert_eq!(native_scramble_from_stage1(&stage1, other), native_scramble(b"secret", other));
        assert_eq!(native_recover_stage1(&native_stage2(b"wrong"), NONCE, &proof), None);
    }

    #[test]
    fn stored_native_hash_parses_from_server_text() {
        // SELECT PASSWORD('app') on MariaDB.
        let h = parse_native_hash("*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3").unwrap();
        assert_eq!(h, native_stage2(b"app"));
        assert_eq!(parse_native_hash("5BCB"), None);
        assert_eq!(parse_native_hash("*ZZCB3E6AC345B435C7C2E6B7949A04CE6F6563D3"), None);
    }

    #[test]
    fn empty_password_sends_empty_proof() {
        assert!(native_scramble(b"", NONCE).is_empty());
        assert!(native_verify(None, NONCE, &[]));
        assert!(!native_verify(None, NONCE, &[1]));
        assert!(sha2_verify(b"", NONCE, &[]));
    }

    #[test]
    fn sha2_fast_path_proof_verifies_only_with_right_password() {
        let proof = sha2_scramble(b"pw", NONCE);
        assert_eq!(proof.len(), 32);
        assert!(sha2_verify(b"pw", NONCE, &proof));
        assert!(!sha2_verify(b"pw2", NONCE, &proof));
    }

    #[test]
    fn rsa_full_auth_roundtrips_password() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let keys = RsaKeys::generate(&mut rng).unwrap();
        let cipher = rsa_encrypt_password(keys.public_pem().as_bytes(), b"hunter2", NONCE, &mut rng).unwrap();
        assert_eq!(keys.decrypt_password(&cipher, NONCE).as_deref(), Some(&b"hunter2"[..]));
        assert_eq!(keys.decrypt_password(&[1, 2, 3], NONCE), None);
    }

    #[test]
    fn rsa_full_auth_accepts_pkcs1_v15_padding_too() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let keys = RsaKeys::generate(&mut rng).unwrap();
        let public = RsaPublicKey::from_public_key_pem(keys.public_pem()).unwrap();
        let cipher = public.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, &xor_password(b"pw", NONCE)).unwrap();
        assert_eq!(keys.decrypt_password(&cipher, NONCE).as_deref(), Some(&b"pw"[..]));
    }
}
