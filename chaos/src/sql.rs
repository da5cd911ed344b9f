//! Talking SQL to a node by running the `mariadb` command-line client.
//!
//! The client always runs with `--no-defaults` (so no `my.cnf` on the machine
//! can redirect it, for example to the system server on port 3306), over TCP
//! to `127.0.0.1`, in batch mode. The SQL is fed on stdin, so statements of
//! any size work and several statements may be sent at once; the client stops
//! at the first failing statement.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::run_captured;

/// The `mariadb` client binary (looked up on `PATH`).
pub(crate) const MARIADB_CLIENT: &str = "mariadb";

/// How long the client may take to connect (it also bounds the handshake).
const CONNECT_TIMEOUT_SECS: u32 = 5;

/// A user name and password for logging into a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account's user name.
    pub user: String,
    /// The account's password (may be empty).
    pub password: String,
}

impl Credentials {
    /// Builds credentials from a user name and a password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// Why a statement run through the `mariadb` client failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The client reported an error: either one the server sent (codes
    /// 1000–1999, e.g. 1290 for a write refused by `read_only`) or one of the
    /// client's own (codes 2000–2999, e.g. 2002/2003 when it cannot connect,
    /// 2013 when the connection is lost).
    #[error("node {node}: ERROR {code} ({sqlstate}): {message}")]
    Mysql {
        /// Index of the node the statement was sent to.
        node: usize,
        /// The MySQL error code.
        code: u16,
        /// The five-character SQLSTATE.
        sqlstate: String,
        /// The error message.
        message: String,
    },
    /// The client failed without a parsable error line.
    #[error("node {node}: mariadb client exited with {status}: {stderr}")]
    Client {
        /// Index of the node the statement was sent to.
        node: usize,
        /// The client's exit status, as text.
        status: String,
        /// Whatever the client wrote on stderr.
        stderr: String,
    },
    /// The client did not finish in time (for example because the node is
    /// paused) and was killed.
    #[error("node {node}: statement did not finish within {timeout:?}")]
    Timeout {
        /// Index of the node the statement was sent to.
        node: usize,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The client could not be run at all.
    #[error("node {node}: cannot run the mariadb client: {source}")]
    Spawn {
        /// Index of the node the statement was meant for.
        node: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SqlError {
    /// The MySQL error code, if the client reported one.
    pub fn code(&self) -> Option<u16> {
        match self {
            SqlError::Mysql { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Builds a `mariadb` client command connected to `127.0.0.1:port`.
///
/// The password, when not empty, is passed in the `MYSQL_PWD` environment
/// variable so it does not show in process listings.
pub(crate) fn client_command(port: u16, creds: &Credentials) -> Command {
    let mut cmd = Command::new(MARIADB_CLIENT);
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--user={}", creds.user))
        .arg(format!("--connect-timeout={CONNECT_TIMEOUT_SECS}"));
    if creds.password.is_empty() {
        cmd.env_remove("MYSQL_PWD");
    } else {
        cmd.env("MYSQL_PWD", &creds.password);
    }
    cmd
}

/// Runs `sql` in batch mode and returns the client's stdout without its final
/// newline: one line per row, columns separated by tabs, preceded by a header
/// line when `column_names` is set.
pub(crate) fn run_sql(
    node: usize,
    mut cmd: Command,
    sql: &str,
    column_names: bool,
    timeout: Duration,
) -> Result<String, SqlError> {
    cmd.arg("--batch");
    if !column_names {
        cmd.arg("--skip-column-names");
    }
    let out = run_captured(cmd, Some(sql), timeout).map_err(|source| match source.kind() {
        io::ErrorKind::TimedOut => SqlError::Timeout { node, timeout },
        _ => SqlError::Spawn { node, source },
    })?;
    if out.status.success() {
        let mut text = out.stdout;
        if text.ends_with('\n') {
            text.pop();
        }
        return Ok(text);
    }
    Err(
        parse_client_error(node, &out.stderr).unwrap_or_else(|| SqlError::Client {
            node,
            status: out.status.to_string(),
            stderr: out.stderr.trim().to_owned(),
        }),
    )
}

/// Parses the client's `ERROR 1290 (HY000) at line 1: message` (or
/// `ERROR 2002 (HY000): message`) line.
fn parse_client_error(node: usize, stderr: &str) -> Option<SqlError> {
    let line = stderr.lines().find(|l| l.starts_with("ERROR "))?;
    let rest = &line["ERROR ".len()..];
    let (code, rest) = rest.split_once(' ')?;
    let code = code.parse().ok()?;
    let rest = rest.strip_prefix('(')?;
    let (sqlstate, rest) = rest.split_once(')')?;
    let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
    Some(SqlError::Mysql {
        node,
        code,
        sqlstate: sqlstate.to_owned(),
        message: message.to_owned(),
    })
}

/// Splits batch output that starts with a header line into one map per row.
pub(crate) fn rows_by_column(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split('\t').collect();
    lines
        .map(|line| {
            columns
                .iter()
                .map(|c| c.to_string())
                .zip(line.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Quotes `value` as an SQL string literal.
pub(crate) fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\0' => quoted.push_str("\\0"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

/// Returns the last `lines` lines of a log file, or a note saying why it
/// could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_errors() {
        let stderr = "ERROR 1290 (HY000) at line 1: The MariaDB server is running with the --read-only option so it cannot execute this statement\n";
        let err = parse_client_error(2, stderr).unwrap();
        assert_eq!(err.code(), Some(1290));
        match err {
            SqlError::Mysql {
                node,
                sqlstate,
                message,
                ..
            } => {
                assert_eq!(node, 2);
                assert_eq!(sqlstate, "HY000");
                assert!(message
                    .starts_with("The MariaDB server is running with the --read-only option"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_client_errors_without_line_numbers() {
        let stderr = "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)\n";
        let err = parse_client_error(0, stderr).unwrap();
        assert_eq!(err.code(), Some(2002));
        assert!(err
            .to_string()
            .ends_with("Can't connect to server on '127.0.0.1' (115)"));
        assert!(parse_client_error(0, "Segmentation fault").is_none());
    }

    #[test]
    fn splits_rows_by_column() {
        let rows = rows_by_column("a\tb\n1\t\n3\t4");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["a"], "1");
        assert_eq!(rows[0]["b"], "");
        assert_eq!(rows[1]["b"], "4");
        assert!(rows_by_column("").is_empty());
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote("app"), "'app'");
        assert_eq!(quote(r"it's a \ test"), r"'it''s a \\ test'");
    }
}
