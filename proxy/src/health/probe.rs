//! One probe of one node: what it asks and how the answers are read.
//!
//! A probe is two round trips over the monitor's kept connection: one `SELECT` of the
//! variables (`@@read_only` and the GTID positions: `@@gtid_current_pos`,
//! `@@gtid_slave_pos`, `@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL), then
//! the replica status of every channel: MariaDB's
//! [`SHOW ALL SLAVES STATUS`](https://mariadb.com/kb/en/show-replica-status/) (all
//! multi-source connections), MySQL's
//! [`SHOW REPLICA STATUS`](https://dev.mysql.com/doc/refman/8.0/en/show-replica-status.html)
//! (all channels; `SHOW SLAVE STATUS` on servers older than 8.0.22, which reject the
//! new words). Column names are looked up in both vocabularies (`Slave_IO_Running` or
//! `Replica_IO_Running`, `Seconds_Behind_Master` or `Seconds_Behind_Source`, …). The
//! server family comes from the handshake's version string.
//!
//! Reading the answers ([`parse_variables`], [`parse_channels`]) is plain code, tested
//! without a server.

use crate::backend::conn::{BackendConn, TextResult};
use crate::error::{Error, Result};

use super::state::{Channel, Flavour, Gtid, Observation};

/// MySQL's `ER_PARSE_ERROR`.
const ER_PARSE_ERROR: u16 = 1064;

/// What one successful probe read from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// `@@server_id` (how replicas name their source: `Master_Server_Id`).
    pub server_id: Option<u32>,
    pub read_only: bool,
    /// Server version from the handshake.
    pub version: String,
    pub caps: u32,
    pub ext_caps: u32,
    pub charset: u8,
    /// One entry per configured replication channel (empty: not a replica).
    pub channels: Vec<Channel>,
    pub gtid: Gtid,
}

impl Probed {
    pub fn observation(&self) -> Observation {
        Observation::Up {
            read_only: self.read_only,
            replicating: !self.channels.is_empty(),
            version: self.version.clone(),
            caps: self.caps,
            ext_caps: self.ext_caps,
            charset: self.charset,
        }
    }
}

/// The variables `SELECT` for `flavour`; [`parse_variables`] reads its row.
pub fn variables_sql(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::MariaDb => "SELECT @@read_only, @@gtid_current_pos, @@gtid_slave_pos, @@gtid_binlog_pos, @@server_id",
        Flavour::MySql => "SELECT @@read_only, @@gtid_executed, @@server_id",
    }
}

/// `@@read_only` and the GTID positions from the row of [`variables_sql`].
pub fn parse_variables(flavour: Flavour, r: &TextResult) -> std::result::Result<(bool, Gtid), String> {
    let row = r.rows.first().ok_or("the variables query returned no row")?;
    let text = |i: usize| row.get(i).cloned().flatten().map(|v| String::from_utf8_lossy(&v).into_owned());
    let read_only = match text(0) {
        // A boolean on MySQL and older MariaDB; an enum (OFF, ON, NO_LOCK, …) on newer MariaDB.
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("OFF")),
        None => return Err("@@read_only is NULL".into()),
    };
    let gtid = match flavour {
        Flavour::MariaDb => Gtid::MariaDb {
            current_pos: text(1).unwrap_or_default(),
            slave_pos: text(2).unwrap_or_default(),
            binlog_pos: text(3).unwrap_or_default(),
        },
        Flavour::MySql => Gtid::MySql { executed: text(1).unwrap_or_default() },
    };
    Ok((read_only, gtid))
}

/// `@@server_id` from the row of [`variables_sql`] (after the GTID columns).
pub fn parse_server_id(flavour: Flavour, r: &TextResult) -> Option<u32> {
    let i = match flavour {
        Flavour::MariaDb => 4,
        Flavour::MySql => 2,
    };
    let v = r.rows.first()?.get(i)?.as_ref()?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// The replication channels from a replica status result (either vocabulary).
pub fn parse_channels(r: &TextResult) -> Vec<Channel> {
    (0..r.rows.len())
        .map(|row| {
            let get = |names: &[&str]| names.iter().find_map(|n| r.get(row, n));
            let text = |names: &[&str]| get(names).unwrap_or_default();
            let number = |names: &[&str]| get(names).and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(0);
            let host = text(&["Master_Host", "Source_Host"]);
            let port = text(&["Master_Port", "Source_Port"]);
            Channel {
                name: text(&["Connection_name", "Channel_Name"]),
                source: if port.is_empty() { host } else { format!("{host}:{port}") },
                io_running: text(&["Slave_IO_Running", "Replica_IO_Running"]),
                sql_running: text(&["Slave_SQL_Running", "Replica_SQL_Running"]),
                seconds_behind: get(&["Seconds_Behind_Master", "Seconds_Behind_Source"]).and_then(|v| v.trim().parse().ok()),
                last_io_errno: number(&["Last_IO_Errno"]),
                last_io_error: text(&["Last_IO_Error"]),
                last_sql_errno: number(&["Last_SQL_Errno"]),
                last_sql_error: text(&["Last_SQL_Error"]),
                received_gtid: text(&["Gtid_IO_Pos", "Retrieved_Gtid_Set"]),
                source_server_id: get(&["Master_Server_Id", "Source_Server_Id"]).and_then(|v| v.trim().parse().ok()).filter(|&id: &u32| id != 0),
            }
        })
        .collect()
}

/// Probes over one kept monitor connection.
pub struct Prober<S> {
    pub conn: BackendConn<S>,
    flavour: Flavour,
    /// The replica status statement this server accepts.
    status_sql: &'static str,
}

impl<S: crate::net::Stream> Prober<S> {
    pub fn new(conn: BackendConn<S>) -> Self {
        let flavour = Flavour::of(&String::from_utf8_lossy(&conn.server_version));
        let status_sql = match flavour {
            Flavour::MariaDb => "SHOW ALL SLAVES STATUS",
            Flavour::MySql => "SHOW REPLICA STATUS",
        };
        Prober { conn, flavour, status_sql }
    }

    /// Runs one probe.
    pub async fn probe(&mut self) -> Result<Probed> {
        let vars = self.conn.query(variables_sql(self.flavour)).await?;
        let (read_only, gtid) = parse_variables(self.flavour, &vars).map_err(|m| Error::backend_protocol(&self.conn.addr, m))?;
        let status = match self.conn.query(self.status_sql).await {
            Err(Error::BackendErr { code: ER_PARSE_ERROR, .. }) if self.status_sql == "SHOW REPLICA STATUS" => {
                self.status_sql = "SHOW SLAVE STATUS";
                self.conn.query(self.status_sql).await?
            }
            other => other?,
        };
        let server_id = parse_server_id(self.flavour, &vars);
        Ok(Probed {
            server_id,
            read_only,
            version: String::from_utf8_lossy(&self.conn.server_version).into_owned(),
            caps: self.conn.server_caps,
            ext_caps: self.conn.server_ext_caps,
            charset: self.conn.server_charset,
            channels: parse_channels(&status),
            gtid,
        })
    }

    /// Sends COM_QUIT and closes.
    pub async fn quit(self) {
        self.conn.quit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(columns: &[&str], rows: &[&[Option<&str>]]) -> TextResult {
        TextResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect()).collect(),
        }
    }

    #[test]
    fn flavour_comes_from_the_handshake_version() {
        assert_eq!(Flavour::of("5.5.5-10.11.6-MariaDB-0+deb12u1"), Flavour::MariaDb);
        assert_eq!(Flavour::of("8.0.36"), Flavour::MySql);
    }

    #[test]
    fn mariadb_variables_give_read_only_and_three_gtid_positions() {
        let r = result(&["@@read_only", "a", "b", "c"], &[&[Some("1"), Some("0-1-10"), Some("0-1-9"), Some("")]]);
        let (ro, gtid) = parse_variables(Flavour::MariaDb, &r).unwrap();
        assert!(ro);
        assert_eq!(gtid, Gtid::MariaDb { current_pos: "0-1-10".into(), slave_pos: "0-1-9".into(), binlog_pos: "".into() });
    }

    #[test]
    fn read_only_as_an_enum_name_is_understood() {
        for (v, ro) in [("OFF", false), ("0", false), ("ON", true), ("NO_LOCK", true), ("1", true)] {
            let r = result(&["@@read_only", "x"], &[&[Some(v), Some("")]]);
            assert_eq!(parse_variables(Flavour::MySql, &r).unwrap().0, ro, "{v}");
        }
    }

    #[test]
    fn null_read_only_is_a_failed_probe() {
        let r = result(&["@@read_only", "x"], &[&[None, Some("")]]);
        assert!(parse_variables(Flavour::MySql, &r).is_err());
    }

    #[test]
    fn mariadb_multi_source_rows_become_one_channel_each() {
        let cols = [
            "Connection_name", "Slave_IO_Running", "Slave_SQL_Running", "Master_Host", "Master_Port", "Seconds_Behind_Master",
            "Last_IO_Errno", "Last_IO_Error", "Last_SQL_Errno", "Last_SQL_Error", "Gtid_IO_Pos",
        ];
        let r = result(
            &cols,
            &[
                &[Some(""), Some("Yes"), Some("Yes"), Some("10.0.0.1"), Some("3306"), Some("0"), Some("0"), Some(""), Some("0"), Some(""), Some("0-1-5")],
                &[Some("b"), Some("Connecting"), Some("Yes"), Some("10.0.0.2"), Some("3306"), None, Some("2003"), Some("can't connect"), Some("0"), Some(""), Some("1-2-7")],
            ],
        );
        let ch = parse_channels(&r);
        assert_eq!(ch.len(), 2);
        assert_eq!((ch[0].source.as_str(), ch[0].seconds_behind, ch[0].problem()), ("10.0.0.1:3306", Some(0), None));
        assert_eq!((ch[1].name.as_str(), ch[1].seconds_behind, ch[1].last_io_errno), ("b", None, 2003));
        assert_eq!(ch[1].problem().unwrap(), "replication error (channel 'b'): IO 2003: can't connect");
    }

    #[test]
    fn mysql_replica_words_are_understood() {
        let cols = ["Replica_IO_Running", "Replica_SQL_Running", "Source_Host", "Source_Port", "Seconds_Behind_Source", "Last_SQL_Errno", "Last_SQL_Error", "Retrieved_Gtid_Set", "Channel_Name"];
        let r = result(&cols, &[&[Some("Yes"), Some("No"), Some("db1"), Some("3306"), None, Some("1062"), Some("Duplicate entry"), Some("uuid:1-5"), Some("")]]);
        let ch = parse_channels(&r);
        assert_eq!(ch[0].received_gtid, "uuid:1-5");
        assert_eq!(ch[0].problem().unwrap(), "replication error: SQL 1062: Duplicate entry");
    }

    #[test]
    fn stopped_threads_without_error_are_replication_stopped() {
        let r = result(&["Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master"], &[&[Some("No"), Some("No"), None]]);
        assert_eq!(parse_channels(&r)[0].problem().unwrap(), "replication stopped: IO thread No, SQL thread No");
    }

    #[test]
    fn empty_status_means_no_replication() {
        assert!(parse_channels(&result(&["Slave_IO_Running"], &[])).is_empty());
    }
}
