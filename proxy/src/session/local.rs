//! Statements Sluice answers itself on the client port: `SET @@sluice_… = …` (the
//! session's routing settings; never sent to a backend) and `SHOW SLUICE ROUTE FOR
//! <statement>` (where that statement would go and why, without running it).
//!
//! Answers are built as the server would: an OK packet, an ERR packet, or a text
//! result set (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>)
//! framed for the client's capabilities (DEPRECATE_EOF, MariaDB's cached and extended
//! metadata).

use bytes::BytesMut;

use crate::config::RouteMode;
use crate::consistency::level::{Fallback, Level};
use crate::error::Error;
use crate::net::Net;
use crate::protocol::constants::{cap, err};
use crate::protocol::packet::{put_lenenc, put_lenenc_bytes};
use crate::protocol::packets::{self, err_payload};
use crate::route::class::Hint;
use crate::route::classify;

use super::Session;

/// Session variables Sluice handles itself.
pub const VARIABLES: [&str; 5] = ["sluice_read_write_split", "sluice_route", "sluice_consistency", "sluice_consistency_timeout_ms", "sluice_consistency_fallback"];

/// A parsed `SET @@sluice_…` assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Split(Option<bool>),
    Route(Option<RouteMode>),
    Consistency(Option<Level>),
    ConsistencyTimeoutMs(Option<u64>),
    ConsistencyFallback(Option<Fallback>),
}

/// Checks one assignment: `Ok` with the setting (`None` value = DEFAULT), or the MySQL
/// error `(code, message)`.
pub fn parse_setting(name: &str, value: &str) -> Result<Setting, (u16, String)> {
    let bad = || (1231u16, format!("Variable '{name}' can't be set to the value of '{value}'"));
    match name {
        "sluice_read_write_split" => match value {
            "default" => Ok(Setting::Split(None)),
            "on" | "1" | "true" => Ok(Setting::Split(Some(true))),
            "off" | "0" | "false" => Ok(Setting::Split(Some(false))),
            _ => Err(bad()),
        },
        "sluice_route" => match value {
            "default" => Ok(Setting::Route(None)),
            "auto" => Ok(Setting::Route(Some(RouteMode::Auto))),
            "primary" => Ok(Setting::Route(Some(RouteMode::Primary))),
            "replica" => Ok(Setting::Route(Some(RouteMode::Replica))),
            _ => Err(bad()),
        },
        "sluice_consistency" => match value {
            "default" => Ok(Setting::Consistency(None)),
            v => Level::parse(v).map(|l| Setting::Consistency(Some(l))).ok_or_else(bad),
        },
        "sluice_consistency_timeout_ms" => match value {
            "default" => Ok(Setting::ConsistencyTimeoutMs(None)),
            v => match v.parse::<u64>() {
                Ok(ms) if (1..=3_600_000).contains(&ms) => Ok(Setting::ConsistencyTimeoutMs(Some(ms))),
                _ => Err(bad()),
            },
        },
        "sluice_consistency_fallback" => match value {
            "default" => Ok(Setting::ConsistencyFallback(None)),
            v => Fallback::parse(v).map(|f| Setting::ConsistencyFallback(Some(f))).ok_or_else(bad),
        },
        _ => Err((1193, format!("Unknown system variable '{name}'"))),
    }
}

/// A text result set of string columns, framed for `caps`/`ext_caps`, starting at
/// sequence id 1.
pub fn result_set(columns: &[&str], rows: &[Vec<String>], caps: u32, ext_caps: u32, status: u16) -> BytesMut {
    let mut out = BytesMut::new();
    let mut seq = 1u8;
    let mut count = Vec::new();
    put_lenenc(&mut count, columns.len() as u64);
    if ext_caps & cap::ext::CACHE_METADATA != 0 {
        count.push(1); // metadata follows
    }
    seq = crate::protocol::packet::write_packet(&mut out, seq, &count);
    for name in columns {
        let mut def = Vec::new();
        for part in [&b"def"[..], b"", b"", b"", name.as_bytes(), name.as_bytes()] {
            put_lenenc_bytes(&mut def, part);
        }
        if ext_caps & cap::ext::EXTENDED_METADATA != 0 {
            put_lenenc(&mut def, 0);
        }
        def.push(0x0c);
        def.extend_from_slice(&45u16.to_le_bytes()); // utf8mb4_general_ci
        def.extend_from_slice(&1024u32.to_le_bytes());
        def.push(0xfd); // VAR_STRING
        def.extend_from_slice(&0u16.to_le_bytes());
        def.push(0x27); // decimals: none (as servers send for strings)
        def.extend_from_slice(&[0, 0]);
        seq = crate::protocol::packet::write_packet(&mut out, seq, &def);
    }
    let deprecate_eof = caps & cap::DEPRECATE_EOF != 0;
    if !deprecate_eof {
        seq = crate::protocol::packet::write_packet(&mut out, seq, &eof(status));
    }
    for row in rows {
        let mut r = Vec::new();
        for v in row {
            put_lenenc_bytes(&mut r, v.as_bytes());
        }
        seq = crate::protocol::packet::write_packet(&mut out, seq, &r);
    }
    if deprecate_eof {
        let mut ok = BytesMut::new();
        packets::Ok { status, ..Default::default() }.write(&mut ok, 0xfe, caps);
        crate::protocol::packet::write_packet(&mut out, seq, &ok);
    } else {
        crate::protocol::packet::write_packet(&mut out, seq, &eof(status));
    }
    out
}

/// A one-row, one-column BIGINT result as the server sends `SELECT ROW_COUNT()`:
/// column `name` (as the client wrote it), type LONGLONG, binary collation, length 21,
/// NOT NULL, value `value`.
pub fn int_result(name: &[u8], value: i64, caps: u32, ext_caps: u32, status: u16) -> BytesMut {
    let mut out = BytesMut::new();
    let mut seq = 1u8;
    let mut count = vec![1u8];
    if ext_caps & cap::ext::CACHE_METADATA != 0 {
        count.push(1); // metadata follows
    }
    seq = crate::protocol::packet::write_packet(&mut out, seq, &count);
    let mut def = Vec::new();
    for part in [&b"def"[..], b"", b"", b"", name, b""] {
        put_lenenc_bytes(&mut def, part);
    }
    if ext_caps & cap::ext::EXTENDED_METADATA != 0 {
        put_lenenc(&mut def, 0);
    }
    def.push(0x0c);
    def.extend_from_slice(&63u16.to_le_bytes()); // binary
    def.extend_from_slice(&21u32.to_le_bytes());
    def.push(0x08); // LONGLONG
    def.extend_from_slice(&0x81u16.to_le_bytes()); // NOT_NULL | BINARY
    def.push(0); // decimals
    def.extend_from_slice(&[0, 0]);
    seq = crate::protocol::packet::write_packet(&mut out, seq, &def);
    let deprecate_eof = caps & cap::DEPRECATE_EOF != 0;
    if !deprecate_eof {
        seq = crate::protocol::packet::write_packet(&mut out, seq, &eof(status));
    }
    let mut row = Vec::new();
    put_lenenc_bytes(&mut row, value.to_string().as_bytes());
    seq = crate::protocol::packet::write_packet(&mut out, seq, &row);
    if deprecate_eof {
        let mut ok = BytesMut::new();
        packets::Ok { status, ..Default::default() }.write(&mut ok, 0xfe, caps);
        crate::protocol::packet::write_packet(&mut out, seq, &ok);
    } else {
        crate::protocol::packet::write_packet(&mut out, seq, &eof(status));
    }
    out
}

/// If `sql` is exactly `SELECT ROW_COUNT() [[AS] alias] [;]` (any case, any spacing,
/// no comments), the name the server would give its column: the alias, or the call as
/// written.
pub fn row_count_query(sql: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < sql.len() && sql[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize, w: &[u8]| -> bool {
        if sql.len() >= *i + w.len() && sql[*i..*i + w.len()].eq_ignore_ascii_case(w) {
            *i += w.len();
            true
        } else {
            false
        }
    };
    ws(&mut i);
    if !word(&mut i, b"select") || !sql.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        return None;
    }
    ws(&mut i);
    let call_start = i;
    if !word(&mut i, b"row_count") {
        return None;
    }
    ws(&mut i);
    if sql.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    ws(&mut i);
    if sql.get(i) != Some(&b')') {
        return None;
    }
    i += 1;
    let mut name = sql[call_start..i].to_vec();
    ws(&mut i);
    let before_as = i;
    let had_as = word(&mut i, b"as") && sql.get(i).is_some_and(|c| c.is_ascii_whitespace() || *c == b'`' || *c == b'\'' || *c == b'"');
    if !had_as {
        i = before_as;
    }
    ws(&mut i);
    match sql.get(i) {
        Some(&q) if q == b'`' || q == b'\'' || q == b'"' => {
            let end = sql[i + 1..].iter().position(|&c| c == q)? + i + 1;
            let alias = &sql[i + 1..end];
            if alias.contains(&q) || alias.contains(&b'\\') {
                return None;
            }
            name = alias.to_vec();
            i = end + 1;
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            let start = i;
            while i < sql.len() && (sql[i].is_ascii_alphanumeric() || sql[i] == b'_' || sql[i] == b'$') {
                i += 1;
            }
            let alias = &sql[start..i];
            for kw in [&b"from"[..], b"where", b"limit", b"into", b"for", b"lock", b"union", b"order", b"group", b"having", b"procedure", b"window"] {
                if alias.eq_ignore_ascii_case(kw) {
                    return None;
                }
            }
            name = alias.to_vec();
        }
        _ if had_as => return None,
        _ => {}
    }
    ws(&mut i);
    if sql.get(i) == Some(&b';') {
        i += 1;
        ws(&mut i);
    }
    (i == sql.len()).then_some(name)
}

fn eof(status: u16) -> Vec<u8> {
    let mut e = vec![0xfe, 0, 0];
    e.extend_from_slice(&status.to_le_bytes());
    e
}

impl<N: Net> Session<N> {
    fn local_status(&self) -> u16 {
        self.state.status_for_local_answer(self.primary.as_deref())
    }

    /// `SET @@sluice_… = …`: applied to the session only; answered with OK or ERR.
    pub(super) async fn sluice_set(&mut self, sql: &[u8]) -> Result<(), Error> {
        self.refresh_topology();
        let parsed = classify::sluice_set(sql).map_err(|m| (1064u16, m)).and_then(|list| {
            list.iter().map(|(n, v)| parse_setting(n, v)).collect::<Result<Vec<_>, _>>()
        });
        let settings = match parsed {
            Ok(s) => s,
            Err((code, msg)) => {
                let state = if code == 1064 { "42000" } else if code == 1193 { "HY000" } else { "42000" };
                self.client.send(1, &err_payload(code, state, &msg)).await.map_err(Error::ClientIo)?;
                return Ok(());
            }
        };
        let x = &mut self.state.explicit;
        for s in settings {
            match s {
                Setting::Split(v) => (self.state.split, x.split) = (v.unwrap_or_default(), v.is_some()),
                Setting::Route(v) => (self.state.mode, x.mode) = (v.unwrap_or(RouteMode::Auto), v.is_some()),
                Setting::Consistency(v) => (self.state.consistency, x.consistency) = (v.unwrap_or_default(), v.is_some()),
                Setting::ConsistencyTimeoutMs(v) => (self.state.consistency_timeout_ms, x.consistency_timeout_ms) = (v.unwrap_or_default(), v.is_some()),
                Setting::ConsistencyFallback(v) => (self.state.consistency_fallback, x.consistency_fallback) = (v.unwrap_or_default(), v.is_some()),
            }
        }
        // `DEFAULT`: the config's value.
        self.apply_config_defaults();
        tracing::debug!(conn = self.id, split = self.state.split, route = self.state.mode.name(), "session routing settings");
        let ok = packets::ok_payload(self.local_status(), self.login.caps);
        self.client.send(1, &ok).await.map_err(Error::ClientIo)?;
        Ok(())
    }

    /// Sets every routing setting the client did not set itself to the config's value
    /// for its user (at `DEFAULT`, and after a config reload).
    pub(super) fn apply_config_defaults(&mut self) {
        let routing = &self.live.routing;
        let (split, mode) = routing.for_user(&self.login.user);
        let x = self.state.explicit;
        if !x.split {
            self.state.split = split;
        }
        if !x.mode {
            self.state.mode = mode;
        }
        if !x.consistency {
            self.state.consistency = routing.consistency_for(&self.login.user);
        }
        if !x.consistency_timeout_ms {
            self.state.consistency_timeout_ms = routing.consistency_timeout_ms;
        }
        if !x.consistency_fallback {
            self.state.consistency_fallback = routing.consistency_fallback;
        }
        // A wait must end before the read deadline does.
        self.state.consistency_timeout_ms = crate::config::RoutingConfig::wait_limit_ms(self.state.consistency_timeout_ms, self.shared.cfg.backend.read_timeout_ms);
    }

    /// `SLUICE SWITCHOVER [TO 'host:port']` (users with `admin = true` only): a planned
    /// switchover by the failover actor; the client waits for its outcome.
    async fn sluice_command(&mut self, sql: &[u8], status: u16) -> Result<(), Error> {
        let text = String::from_utf8_lossy(sql).trim().trim_end_matches(';').trim().to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        let admin = self.live.users.iter().any(|u| u.admin && u.name == self.login.user);
        let target = match words.as_slice() {
            [_, w] if w.eq_ignore_ascii_case("switchover") => Ok(None),
            [_, w, to, node] if w.eq_ignore_ascii_case("switchover") && to.eq_ignore_ascii_case("to") => Ok(Some(node.trim_matches(|c| c == '\'' || c == '"' || c == '`').to_string())),
            _ => Err(()),
        };
        let answer = match target {
            Err(()) => Err((err::ER_PARSE_ERROR, "42000", "Unknown SLUICE command: use SLUICE SWITCHOVER [TO 'host:port']".to_string())),
            Ok(_) if !admin => Err((1227u16, "42000", format!("Access denied; user '{}' needs admin = true in Sluice's [[users]] for this operation", self.login.user))),
            Ok(target) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tracing::warn!(conn = self.id, user = %self.login.user, target = ?target, "switchover requested");
                match self.shared.switchover.send((target, tx)).await {
                    Err(_) => Err((err::ER_UNKNOWN_ERROR, "HY000", "the failover actor is not running".to_string())),
                    Ok(()) => match rx.await {
                        Ok(Ok(msg)) => Ok(msg),
                        Ok(Err(e)) => Err((err::ER_UNKNOWN_ERROR, "HY000", format!("Switchover failed: {e}"))),
                        Err(_) => Err((err::ER_UNKNOWN_ERROR, "HY000", "the failover actor stopped".to_string())),
                    },
                }
            }
        };
        self.refresh_topology();
        match answer {
            Ok(msg) => {
                let mut ok = BytesMut::with_capacity(16 + msg.len());
                packets::Ok { status, info: msg.as_bytes(), ..Default::default() }.write(&mut ok, 0x00, self.login.caps);
                self.client.send(1, &ok).await.map_err(Error::ClientIo)?;
            }
            Err((code, state, msg)) => {
                self.client.send(1, &err_payload(code, state, &msg)).await.map_err(Error::ClientIo)?;
            }
        }
        Ok(())
    }

    /// `SHOW SLUICE ROUTE FOR <statement>` (and `SHOW SLUICE VARIABLES`), `SLUICE …`.
    pub(super) async fn sluice_show(&mut self, sql: &[u8]) -> Result<(), Error> {
        self.refresh_topology();
        let status = self.local_status();
        if let Some(at) = classify::show_sluice_route_for(sql) {
            let stmt = &sql[at..];
            let c = self.shared.classifier.classify(stmt);
            let (node, role, reason, rule, wait) = match self.route(&c, true) {
                Ok(r) => {
                    let role = if r.primary { "primary" } else { "replica" };
                    (r.node, role.to_string(), r.reason.name().to_string(), r.reason.rule().to_string(), r.wait.map(|g| g.to_string()).unwrap_or_default())
                }
                Err(e) => (String::new(), String::new(), "no_primary".into(), e.to_string(), String::new()),
            };
            let kind = format!("{:?}", c.kind);
            let hint = match c.hint {
                Some(Hint::Primary) => "primary",
                Some(Hint::Replica) => "replica",
                None => "",
            };
            let row = vec![node, role, reason, rule, kind, c.statements.to_string(), hint.to_string(), if c.parsed { "parser" } else { "scan" }.to_string(), wait];
            let cols = ["node", "role", "reason", "rule", "kind", "statements", "hint", "classified_by", "wait_for_gtids"];
            let out = result_set(&cols, &[row], self.login.caps, self.login.ext_caps, status);
            self.client.write_raw(&out).await.map_err(Error::ClientIo)?;
            return self.client.flush_raw().await.map_err(Error::ClientIo);
        }
        let words: Vec<String> = String::from_utf8_lossy(sql).split_whitespace().map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
        if words.first().map(String::as_str) == Some("sluice") {
            return self.sluice_command(sql, status).await;
        }
        if words.len() == 3 && words[2] == "variables" {
            let rows = vec![
                vec!["sluice_read_write_split".to_string(), if self.state.split { "ON" } else { "OFF" }.to_string()],
                vec!["sluice_route".to_string(), self.state.mode.name().to_string()],
                vec!["sluice_consistency".to_string(), self.state.consistency.name().to_string()],
                vec!["sluice_consistency_timeout_ms".to_string(), self.state.consistency_timeout_ms.to_string()],
                vec!["sluice_consistency_fallback".to_string(), self.state.consistency_fallback.name().to_string()],
                vec!["sluice_session_gtids".to_string(), self.state.written.gtids.to_string()],
            ];
            let out = result_set(&["Variable_name", "Value"], &rows, self.login.caps, self.login.ext_caps, status);
            self.client.write_raw(&out).await.map_err(Error::ClientIo)?;
            return self.client.flush_raw().await.map_err(Error::ClientIo);
        }
        let msg = "Unknown SHOW SLUICE command: use SHOW SLUICE ROUTE FOR <statement> or SHOW SLUICE VARIABLES";
        self.client.send(1, &err_payload(err::ER_PARSE_ERROR, "42000", msg)).await.map_err(Error::ClientIo)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::constants::status;
    use crate::protocol::response::{Event, Expect, ResponseTracker};

    #[test]
    fn row_count_select_is_recognised_with_the_servers_column_name() {
        assert_eq!(row_count_query(b"SELECT ROW_COUNT()").as_deref(), Some(&b"ROW_COUNT()"[..]));
        assert_eq!(row_count_query(b"  select  row_count( ) ;  ").as_deref(), Some(&b"row_count( )"[..]));
        assert_eq!(row_count_query(b"SELECT ROW_COUNT() AS n").as_deref(), Some(&b"n"[..]));
        assert_eq!(row_count_query(b"SELECT ROW_COUNT() `rows changed`").as_deref(), Some(&b"rows changed"[..]));
        assert_eq!(row_count_query(b"SELECT ROW_COUNT() FROM dual"), None);
        assert_eq!(row_count_query(b"SELECT ROW_COUNT() + 1"), None);
        assert_eq!(row_count_query(b"SELECT ROW_COUNT(), 1"), None);
        assert_eq!(row_count_query(b"SELECT /* x */ ROW_COUNT()"), None);
        assert_eq!(row_count_query(b"SELECT ROW_COUNT() INTO @x"), None);
    }

    #[test]
    fn sluice_settings_accept_the_documented_values_only() {
        assert_eq!(parse_setting("sluice_read_write_split", "on"), Ok(Setting::Split(Some(true))));
        assert_eq!(parse_setting("sluice_read_write_split", "0"), Ok(Setting::Split(Some(false))));
        assert_eq!(parse_setting("sluice_route", "replica"), Ok(Setting::Route(Some(RouteMode::Replica))));
        assert_eq!(parse_setting("sluice_route", "default"), Ok(Setting::Route(None)));
        assert_eq!(parse_setting("sluice_route", "nowhere").unwrap_err().0, 1231);
        assert_eq!(parse_setting("sluice_bogus", "1").unwrap_err().0, 1193);
        assert_eq!(parse_setting("sluice_consistency", "global"), Ok(Setting::Consistency(Some(Level::Global))));
        assert_eq!(parse_setting("sluice_consistency", "strong").unwrap_err().0, 1231);
        assert_eq!(parse_setting("sluice_consistency_timeout_ms", "250"), Ok(Setting::ConsistencyTimeoutMs(Some(250))));
        assert_eq!(parse_setting("sluice_consistency_timeout_ms", "0").unwrap_err().0, 1231);
        assert_eq!(parse_setting("sluice_consistency_fallback", "error"), Ok(Setting::ConsistencyFallback(Some(Fallback::Error))));
    }

    #[test]
    fn local_result_sets_are_well_framed_for_every_capability_mix() {
        for caps in [cap::PROTOCOL_41, cap::PROTOCOL_41 | cap::DEPRECATE_EOF] {
            for ext in [0, cap::ext::CACHE_METADATA, cap::ext::EXTENDED_METADATA | cap::ext::CACHE_METADATA] {
                let rs = result_set(&["a", "b"], &[vec!["x".into(), "y".into()], vec!["1".into(), "".into()]], caps, ext, status::AUTOCOMMIT);
                let mut t = ResponseTracker::new(Expect::Query, caps).with_ext_caps(ext);
                let (n, ev) = t.advance(&rs).unwrap();
                assert_eq!((n, ev), (rs.len(), Event::Done), "caps {caps:#x} ext {ext:#x}");
                assert_eq!(t.summary().status, Some(status::AUTOCOMMIT));
                assert_eq!(t.summary().result_sets, 1);
            }
        }
    }
}
