//! The `WITH (...)` options of a `mysql-cdc` source, and the check that the server can serve CDC.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::upstream_error;
use crate::error::{Error, Result, SqlState};

/// `ssl.mode`.
///
/// TLS is not compiled into Freshet (it would add a TLS stack to every build for a connector
/// that usually talks to a database next door): `required` is refused with 0A000, `preferred`
/// connects without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
}

/// How to reach the upstream server, from `CREATE SOURCE ... WITH (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlConfig {
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub database: String,
    /// The replica id this reader announces (unique among the server's replicas).
    pub server_id: u32,
    pub ssl_mode: SslMode,
}

impl MysqlConfig {
    /// From the WITH options (keys: `hostname`, `port`, `username`, `password`, `database.name`,
    /// `server.id`, `ssl.mode`). Missing or invalid option: 22023 naming it.
    pub fn from_options(opts: &BTreeMap<String, String>) -> Result<MysqlConfig> {
        let get = |key: &str| -> Result<&String> {
            opts.get(key).ok_or_else(|| {
                Error::user(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("mysql-cdc source needs the option '{key}'"),
                )
            })
        };
        let invalid = |key: &str, value: &str, expected: &str| {
            Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("invalid value for option '{key}': '{value}' (expected {expected})"),
            )
        };
        let port = match opts.get("port") {
            None => 3306,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("port", p, "a TCP port"))?,
        };
        let server_id = {
            let v = get("server.id")?;
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| invalid("server.id", v, "an integer between 1 and 4294967295"))?
        };
        let ssl_mode =
            match opts.get("ssl.mode").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                None | Some("disabled") | Some("disable") => SslMode::Disabled,
                Some("preferred") | Some("prefer") => SslMode::Preferred,
                Some("required") | Some("require") => return Err(Error::unsupported(
                    "ssl.mode = 'required' (Freshet is built without TLS for mysql-cdc; use 'disabled' or 'preferred')",
                )),
                Some(other) => return Err(invalid("ssl.mode", other, "disabled, preferred or required")),
            };
        let hostname = get("hostname")?.trim().to_string();
        if hostname.is_empty() {
            return Err(invalid("hostname", "", "a host name or address"));
        }
        Ok(MysqlConfig {
            hostname,
            port,
            username: get("username")?.clone(),
            password: opts.get("password").cloned().unwrap_or_default(),
            database: get("database.name")?.clone(),
            server_id,
            ssl_mode,
        })
    }

    /// Connection options (TCP, no socket hop, no database selected).
    pub(crate) fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.hostname.clone())
            .tcp_port(self.port)
            .user(Some(self.username.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
    }

    /// A plain connection to the upstream server.
    pub(crate) async fn connect(&self) -> Result<Conn> {
        Conn::new(self.opts())
            .await
            .map_err(|e| upstream_error(self, "connect", e))
    }

    /// Connects and checks the server is usable for CDC: binary log on, ROW format, FULL row
    /// images, and the privileges a replica needs. The error names what is wrong and how to fix it.
    pub async fn check(&self) -> Result<()> {
        let mut conn = self.connect().await?;
        let result = self.check_on(&mut conn).await;
        let _ = conn.disconnect().await;
        result
    }

    async fn check_on(&self, conn: &mut Conn) -> Result<()> {
        let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
            .query_first("SELECT @@global.log_bin, @@global.binlog_format, @@global.binlog_row_image")
            .await
            .map_err(|e| upstream_error(self, "read server settings", e))?;
        let (log_bin, format, image) = row.unwrap_or_default();
        let misconfigured = |what: String| {
            Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("MySQL server {}:{}: {what}", self.hostname, self.port),
            )
        };
        if !matches!(log_bin.as_deref(), Some("1") | Some("ON")) {
            return Err(misconfigured(
                "the binary log is off (start the server with --log-bin)".into(),
            ));
        }
        if !format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("ROW")) {
            return Err(misconfigured(format!(
                "binlog_format is {} (CDC needs ROW: SET GLOBAL binlog_format = 'ROW')",
                format.unwrap_or_default()
            )));
        }
        if !image.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("FULL")) {
            return Err(misconfigured(format!(
                "binlog_row_image is {} (CDC needs FULL: SET GLOBAL binlog_row_image = 'FULL')",
                image.unwrap_or_default()
            )));
        }
        let grants: Vec<String> = conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| upstream_error(self, "read the user's grants", e))?;
        let grants = grants.join("\n").to_ascii_uppercase();
        let all = grants.contains("ALL PRIVILEGES ON *.*");
        let mut missing = Vec::new();
        if !all && !grants.contains("REPLICATION SLAVE") {
            missing.push("REPLICATION SLAVE");
        }
        if !all && !grants.contains("REPLICATION CLIENT") && !grants.contains("BINLOG MONITOR") {
            missing.push("REPLICATION CLIENT (MariaDB: BINLOG MONITOR)");
        }
        if !missing.is_empty() {
            return Err(Error::user(
                SqlState("42501"),
                format!(
                    "MySQL user '{}' lacks {} (GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO ...)",
                    self.username,
                    missing.join(" and ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_options_and_names_the_bad_one() {
        let base = [
            ("hostname", "127.0.0.1"),
            ("port", "3307"),
            ("username", "u"),
            ("password", "p"),
            ("database.name", "shop"),
            ("server.id", "5401"),
        ];
        let cfg = MysqlConfig::from_options(&opts(&base)).unwrap();
        assert_eq!((cfg.port, cfg.server_id, cfg.ssl_mode), (3307, 5401, SslMode::Disabled));
        let mut bad = opts(&base);
        bad.insert("port".into(), "x".into());
        let e = MysqlConfig::from_options(&bad).unwrap_err();
        assert_eq!(e.code(), SqlState::INVALID_PARAMETER_VALUE);
        assert!(e.to_string().contains("'port'"), "{e}");
        let mut missing = opts(&base);
        missing.remove("server.id");
        assert!(MysqlConfig::from_options(&missing)
            .unwrap_err()
            .to_string()
            .contains("server.id"));
        let mut ssl = opts(&base);
        ssl.insert("ssl.mode".into(), "required".into());
        assert_eq!(
            MysqlConfig::from_options(&ssl).unwrap_err().code(),
            SqlState::FEATURE_NOT_SUPPORTED
        );
    }
}
