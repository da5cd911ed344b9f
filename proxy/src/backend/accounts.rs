//! Pass-through identity: the backend's own accounts, read from the primary
//! (`mysql.global_priv` on MariaDB, `mysql.user` on MySQL), so Sluice can verify a client
//! exactly as the server would and log in to the backends *as that client*.
//!
//! Only `mysql_native_password` and `mysql_old_password` accounts (and accounts without a
//! password) can be proxied this way. Native: the stored `SHA1(SHA1(pw))` verifies the
//! client's proof, and the proof yields `SHA1(pw)`, which answers any later native
//! challenge
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html>).
//! Old (pre-4.1): the stored hash alone both checks and computes the answer to any
//! challenge.
//! Host matching follows the server's rules for `%` and `_` wildcards and `ip/netmask`,
//! most specific host first (<https://mariadb.com/kb/en/create-user/#host-name-component>).

use std::sync::RwLock;
use crate::sync::RwLocked;

use crate::error::Result;
use crate::net::Stream;
use crate::protocol::auth;

use super::conn::BackendConn;

/// One backend account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub host: String,
    pub plugin: String,
    pub auth_string: String,
}

/// How a client's login can be checked for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// mysql_native_password with the stored `SHA1(SHA1(pw))`; `None` = empty password.
    Native(Option<[u8; 20]>),
    /// mysql_old_password with its stored hash.
    Old([u32; 2]),
    /// An account Sluice cannot proxy (the plugin is named).
    Unsupported(String),
}

impl Account {
    pub fn verifier(&self) -> Verifier {
        let plugin = if self.plugin.is_empty() { auth::NATIVE } else { self.plugin.as_str() };
        if self.auth_string.is_empty() && (plugin == auth::NATIVE || plugin == "mysql_old_password" || plugin == auth::CACHING_SHA2) {
            return Verifier::Native(None);
        }
        if plugin == auth::OLD {
            if let Some(h) = auth::parse_old_hash(&self.auth_string) {
                return Verifier::Old(h);
            }
        }
        match (plugin, auth::parse_native_hash(&self.auth_string)) {
            (auth::NATIVE, Some(h)) => Verifier::Native(Some(h)),
            _ => Verifier::Unsupported(plugin.to_string()),
        }
    }
}

/// Whether a `%`/`_` host pattern matches `host` (case-insensitive, like the server).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    fn rec(p: &[u8], h: &[u8]) -> bool {
        match p.split_first() {
            None => h.is_empty(),
            Some((b'%', rest)) => (0..=h.len()).any(|i| rec(rest, &h[i..])),
            Some((b'_', rest)) => !h.is_empty() && rec(rest, &h[1..]),
            Some((c, rest)) => h.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && rec(rest, &h[1..]),
        }
    }
    if pattern == "localhost" {
        return is_loopback(host);
    }
    if let Some((net, mask)) = pattern.split_once('/') {
        // `ip/netmask` (IPv4): matches when host & netmask == ip.
        return match (ipv4(net), ipv4(mask), ipv4(host)) {
            (Some(net), Some(mask), Some(host)) => host & mask == net,
            _ => false,
        };
    }
    rec(pattern.as_bytes(), host.as_bytes())
}

/// Whether `host` is this machine's loopback address (or already the name `localhost`).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "127.0.0.1" || host == "::1"
}

/// A dotted IPv4 address as a number.
fn ipv4(s: &str) -> Option<u32> {
    let mut parts = s.split('.');
    let mut v = 0u32;
    for _ in 0..4 {
        v = v << 8 | u32::from(parts.next()?.parse::<u8>().ok()?);
    }
    parts.next().is_none().then_some(v)
}

/// How specific a host pattern is: literal hosts before wildcards, longer literal
/// prefixes first, `%` alone last.
fn specificity(pattern: &str) -> (bool, usize) {
    let wild = pattern.find(['%', '_']);
    (wild.is_none(), wild.unwrap_or(pattern.len()))
}

/// The account table, sorted the way the server searches it.
#[derive(Debug, Default)]
pub struct Accounts {
    list: RwLock<Vec<Account>>,
    /// The server resolves client addresses to names (`skip_name_resolve = OFF`).
    resolves_names: RwLock<bool>,
}

impl Accounts {
    pub fn set_resolves_names(&self, on: bool) {
        *self.resolves_names.write_locked() = on;
    }

    /// The client's host as the server names it in messages ("Access denied for user
    /// 'u'@'host'"): a server that resolves names calls the loopback address
    /// `localhost` (other addresses would need DNS and are shown as they are).
    pub fn host_as_server_names_it<'a>(&self, host: &'a str) -> &'a str {
        if *self.resolves_names.read_locked() && is_loopback(host) {
            "localhost"
        } else {
            host
        }
    }

    pub fn replace(&self, mut list: Vec<Account>) {
        // Per host, named accounts before the anonymous one (User = '').
        list.sort_by(|a, b| {
            specificity(&b.host)
                .cmp(&specificity(&a.host))
                .then_with(|| a.host.cmp(&b.host))
                .then_with(|| a.user.is_empty().cmp(&b.user.is_empty()))
                .then_with(|| a.user.cmp(&b.user))
        });
        *self.list.write_locked() = list;
    }

    pub fn len(&self) -> usize {
        self.list.read_locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The account a connection from `host` as `user` logs in to: the first whose host
    /// matches and whose user is `user` or anonymous (`''` matches any user name).
    pub fn find(&self, user: &str, host: &str) -> Option<Account> {
        self.list.read_locked().iter().find(|a| (a.user == user || a.user.is_empty()) && host_matches(&a.host, host)).cloned()
    }
}

/// Reads the account table from a backend (the primary).
pub async fn load<S: Stream>(conn: &mut BackendConn<S>) -> Result<Vec<Account>> {
    let mariadb = String::from_utf8_lossy(&conn.server_version).contains("MariaDB");
    let sql = if mariadb {
        "SELECT User, Host, JSON_VALUE(Priv, '$.plugin'), JSON_VALUE(Priv, '$.authentication_string') FROM mysql.global_priv"
    } else {
        "SELECT user, host, plugin, authentication_string FROM mysql.user"
    };
    let r = conn.query(sql).await?;
    let text = |v: &Option<Vec<u8>>| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    // A row without the four columns asked for (a server answering something else) is
    // no account: skipped rather than indexed past its end.
    Ok(r.rows
        .iter()
        .filter_map(|row| match row.as_slice() {
            [user, host, plugin, auth_string, ..] => Some(Account { user: text(user), host: text(host), plugin: text(plugin), auth_string: text(auth_string) }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(user: &str, host: &str, plugin: &str, auth: &str) -> Account {
        Account { user: user.into(), host: host.into(), plugin: plugin.into(), auth_string: auth.into() }
    }

    #[test]
    fn host_patterns_match_like_the_server() {
        assert!(host_matches("%", "10.1.2.3"));
        assert!(host_matches("10.1.%", "10.1.2.3"));
        assert!(!host_matches("10.2.%", "10.1.2.3"));
        assert!(host_matches("127.0.0._", "127.0.0.1"));
        assert!(host_matches("localhost", "127.0.0.1"));
        assert!(!host_matches("db1", "db12"));
        assert!(host_matches("127.0.0.0/255.0.0.0", "127.0.0.1"));
        assert!(host_matches("10.1.0.0/255.255.0.0", "10.1.2.3"));
        assert!(!host_matches("10.1.0.0/255.255.0.0", "10.2.2.3"));
        assert!(!host_matches("10.1.0.0/255.255.0.0", "::1"));
    }

    #[test]
    fn loopback_clients_are_named_localhost_when_the_server_resolves_names() {
        let a = Accounts::default();
        assert_eq!(a.host_as_server_names_it("127.0.0.1"), "127.0.0.1");
        a.set_resolves_names(true);
        assert_eq!(a.host_as_server_names_it("127.0.0.1"), "localhost");
        assert_eq!(a.host_as_server_names_it("::1"), "localhost");
        assert_eq!(a.host_as_server_names_it("10.0.0.7"), "10.0.0.7");
    }

    #[test]
    fn most_specific_host_wins() {
        let a = Accounts::default();
        a.replace(vec![acct("u", "%", "mysql_native_password", "*A"), acct("u", "127.0.0.1", "mysql_native_password", "*B"), acct("u", "127.%", "", "*C")]);
        assert_eq!(a.find("u", "127.0.0.1").unwrap().auth_string, "*B");
        assert_eq!(a.find("u", "127.0.0.2").unwrap().auth_string, "*C");
        assert_eq!(a.find("u", "10.0.0.1").unwrap().auth_string, "*A");
        assert_eq!(a.find("v", "10.0.0.1"), None);
    }

    #[test]
    fn anonymous_account_matches_any_user_after_named_ones_of_the_same_host() {
        let a = Accounts::default();
        a.replace(vec![acct("", "localhost", "", ""), acct("u", "localhost", "mysql_native_password", "*U"), acct("w", "%", "mysql_native_password", "*W")]);
        assert_eq!(a.find("u", "127.0.0.1").unwrap().auth_string, "*U");
        assert_eq!(a.find("nobody", "127.0.0.1").unwrap().user, "");
        // A more specific host wins over a named account with a wildcard host, as on the server.
        assert_eq!(a.find("w", "127.0.0.1").unwrap().user, "");
        assert_eq!(a.find("w", "10.0.0.1").unwrap().auth_string, "*W");
    }

    #[test]
    fn only_native_and_passwordless_accounts_can_be_proxied() {
        let h = "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3";
        assert_eq!(acct("u", "%", "mysql_native_password", h).verifier(), Verifier::Native(Some(auth::native_stage2(b"app"))));
        assert_eq!(acct("u", "%", "mysql_native_password", "").verifier(), Verifier::Native(None));
        assert_eq!(acct("u", "%", "ed25519", "xyz").verifier(), Verifier::Unsupported("ed25519".into()));
        assert_eq!(acct("u", "%", "unix_socket", "").verifier(), Verifier::Unsupported("unix_socket".into()));
        assert_eq!(acct("u", "%", "mysql_old_password", "09301740536db389").verifier(), Verifier::Old(auth::old_hash(b"oldpw")));
    }
}
