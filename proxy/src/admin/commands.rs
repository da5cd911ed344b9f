//! The admin interface's statements, parsed (synchronous; `docs/operations.md` lists
//! them).

/// One admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    ShowNodes,
    ShowSessions,
    ShowPools,
    ShowRules,
    ShowDigests { limit: usize },
    ShowConfig,
    ShowVersion,
    ShowUsers,
    Kill { id: u64, query: bool },
    Drain { node: String },
    Enable { node: String },
    Switchover { to: Option<String> },
    Reload,
    ResetDigests,
    /// `SELECT @@version_comment LIMIT 1`, `SELECT @@max_allowed_packet, @@wait_timeout`
    /// and the like, which clients send on connecting: the variables' names (lower
    /// case, without `@@` and a `session.`/`global.` scope).
    Variables(Vec<String>),
    /// `SET …` sent by connectors on connecting: acknowledged, ignored.
    Set,
}

/// Digests `SHOW SLUICE QUERY DIGESTS` lists without a `LIMIT`.
pub const DEFAULT_DIGEST_LIMIT: usize = 20;

/// What the admin listener understands, for the error of a statement it does not.
pub const HELP: &str = "Sluice admin: SHOW SLUICE NODES | SESSIONS | POOLS | RULES | USERS | QUERY DIGESTS [LIMIT n] | CONFIG | VERSION; \
SLUICE KILL [CONNECTION | QUERY] id; SLUICE NODE 'host:port' DRAIN | ENABLE; SLUICE SWITCHOVER [TO 'host:port'];; SLUICE RESET DIGESTS; SLUICE RELOAD";

/// Parses one admin statement (case-insensitive; a trailing `;` and surrounding
/// whitespace allowed). `Err` carries the reason.
pub fn parse(sql: &str) -> Result<AdminCommand, String> {
    let text = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let unquote = |w: &str| w.trim_matches(|c| c == '\'' || c == '"' || c == '`').to_string();
    let number = |w: &str| w.parse::<u64>().map_err(|_| format!("expected a number, got {w:?}"));
    match l.as_slice() {
        ["show", "sluice", "nodes"] => Ok(AdminCommand::ShowNodes),
        ["show", "sluice", "sessions"] => Ok(AdminCommand::ShowSessions),
        ["show", "sluice", "pools"] => Ok(AdminCommand::ShowPools),
        ["show", "sluice", "rules"] => Ok(AdminCommand::ShowRules),
        ["show", "sluice", "users"] => Ok(AdminCommand::ShowUsers),
        ["show", "sluice", "config"] => Ok(AdminCommand::ShowConfig),
        ["show", "sluice", "version"] => Ok(AdminCommand::ShowVersion),
        ["show", "sluice", "query", "digests"] => Ok(AdminCommand::ShowDigests { limit: DEFAULT_DIGEST_LIMIT }),
        ["show", "sluice", "query", "digests", "limit", n] => Ok(AdminCommand::ShowDigests { limit: number(n)? as usize }),
        ["sluice", "kill", id] => Ok(AdminCommand::Kill { id: number(id)?, query: false }),
        ["sluice", "kill", "connection", id] => Ok(AdminCommand::Kill { id: number(id)?, query: false }),
        ["sluice", "kill", "query", id] => Ok(AdminCommand::Kill { id: number(id)?, query: true }),
        ["sluice", "reset", "digests"] => Ok(AdminCommand::ResetDigests),
        ["sluice", "reload"] => Ok(AdminCommand::Reload),
        ["sluice", "node", _, "drain"] => Ok(AdminCommand::Drain { node: unquote(words[2]) }),
        ["sluice", "node", _, "enable"] => Ok(AdminCommand::Enable { node: unquote(words[2]) }),
        ["sluice", "switchover"] => Ok(AdminCommand::Switchover { to: None }),
        ["sluice", "switchover", "to", _] => Ok(AdminCommand::Switchover { to: Some(unquote(words[3])) }),
        ["select", ..] => variables(&lower.join(" ")).ok_or_else(|| format!("Unknown admin statement. {HELP}")),
        ["set", ..] => Ok(AdminCommand::Set),
        _ => Err(format!("Unknown admin statement. {HELP}")),
    }
}

/// `SELECT @@a [, @@b …] [LIMIT n]` → the variables' names.
fn variables(lower: &str) -> Option<AdminCommand> {
    let rest = lower.strip_prefix("select ")?;
    let rest = match rest.rfind(" limit ") {
        Some(at) if rest[at + 7..].trim().parse::<u64>().is_ok() => &rest[..at],
        _ => rest,
    };
    let names = rest
        .split(',')
        .map(|v| {
            let v = v.trim().strip_prefix("@@")?;
            let v = v.strip_prefix("session.").or_else(|| v.strip_prefix("global.")).unwrap_or(v);
            (!v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then(|| v.to_string())
        })
        .collect::<Option<Vec<_>>>()?;
    Some(AdminCommand::Variables(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_statements_parse_in_any_case_with_optional_semicolon() {
        assert_eq!(parse("show sluice nodes;"), Ok(AdminCommand::ShowNodes));
        assert_eq!(parse("  SHOW SLUICE SESSIONS  "), Ok(AdminCommand::ShowSessions));
        assert_eq!(parse("SHOW SLUICE QUERY DIGESTS"), Ok(AdminCommand::ShowDigests { limit: DEFAULT_DIGEST_LIMIT }));
        assert_eq!(parse("SHOW SLUICE QUERY DIGESTS LIMIT 5"), Ok(AdminCommand::ShowDigests { limit: 5 }));
        assert_eq!(parse("SLUICE KILL 1073741825"), Ok(AdminCommand::Kill { id: 1073741825, query: false }));
        assert_eq!(parse("sluice kill query 7"), Ok(AdminCommand::Kill { id: 7, query: true }));
        assert_eq!(parse("SLUICE NODE '127.0.0.1:3307' DRAIN"), Ok(AdminCommand::Drain { node: "127.0.0.1:3307".into() }));
        assert_eq!(parse("SLUICE NODE `db2:3306` enable"), Ok(AdminCommand::Enable { node: "db2:3306".into() }));
        assert_eq!(parse("SLUICE SWITCHOVER TO 'db2:3306'"), Ok(AdminCommand::Switchover { to: Some("db2:3306".into()) }));
        assert_eq!(parse("select @@version_comment limit 1"), Ok(AdminCommand::Variables(vec!["version_comment".into()])));
        assert_eq!(parse("SELECT @@max_allowed_packet,@@session.wait_timeout"), Ok(AdminCommand::Variables(vec!["max_allowed_packet".into(), "wait_timeout".into()])));
    }

    #[test]
    fn anything_else_is_refused_with_the_list_of_statements() {
        for bad in ["", "SELECT 1", "SHOW SLUICE", "SLUICE KILL x", "SHOW SLUICE QUERY DIGESTS LIMIT -1", "DROP TABLE t", "SELECT @@x + 1", "SELECT now()"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("SHOW SLUICE") || e.contains("number"), "{bad}: {e}");
        }
    }
}
