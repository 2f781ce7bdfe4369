//! The `WITH (...)` options of a `postgres-cdc` source, and the check that the server can serve
//! logical replication to this user.

use std::collections::BTreeMap;

use tokio_postgres::{Client, NoTls};

use super::replication::ConnectParams;
use super::upstream_error;
use crate::catalog::SourceDef;
use crate::error::{Error, Result, SqlState};

/// How to reach the upstream server and what to capture, from `CREATE SOURCE ... WITH (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub password: Option<String>,
    pub database: String,
    /// The schema `TABLE 'name'` resolves in when the name has no schema.
    pub schema: String,
    /// `slot.name`; None: derived from the source's name ([`PostgresConfig::slot_for`]).
    pub slot: Option<String>,
    pub publication: String,
    /// `publication.create.enable`: create the publication (and add captured tables to it)
    /// when it lacks them. Default true.
    pub publication_create: bool,
    /// `slot.drop.on.drop`: DROP SOURCE also drops the replication slot. Default false (the
    /// slot holds WAL upstream until dropped: set it unless the slot is managed elsewhere).
    pub slot_drop_on_drop: bool,
}

fn valid_slot_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl PostgresConfig {
    /// From the WITH options (keys: `hostname`, `port`, `username`, `password`,
    /// `database.name`, `schema.name`, `slot.name`, `publication.name`,
    /// `publication.create.enable`, `slot.drop.on.drop`). Missing or invalid option: 22023
    /// naming it.
    pub fn from_options(opts: &BTreeMap<String, String>) -> Result<PostgresConfig> {
        let known = [
            "hostname",
            "port",
            "username",
            "password",
            "database.name",
            "schema.name",
            "slot.name",
            "publication.name",
            "publication.create.enable",
            "slot.drop.on.drop",
        ];
        if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                format!(
                    "unknown option '{k}' for a postgres-cdc source (known: {})",
                    known.join(", ")
                ),
            ));
        }
        let get = |key: &str| -> Result<String> {
            opts.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    Error::user(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("postgres-cdc source needs the option '{key}'"),
                    )
                })
        };
        let invalid = |key: &str, value: &str, expected: &str| {
            Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("invalid value for option '{key}': '{value}' (expected {expected})"),
            )
        };
        let flag = |key: &str, default: bool| -> Result<bool> {
            match opts.get(key).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) => crate::sql::coerce::parse_bool(&v).ok_or_else(|| invalid(key, &v, "true or false")),
            }
        };
        let port = match opts.get("port") {
            None => 5432,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("port", p, "a TCP port"))?,
        };
        let slot = match opts.get("slot.name") {
            None => None,
            Some(s) if valid_slot_name(s.trim()) => Some(s.trim().to_string()),
            Some(s) => {
                return Err(invalid(
                    "slot.name",
                    s,
                    "at most 63 lower-case letters, digits and underscores",
                ))
            }
        };
        Ok(PostgresConfig {
            hostname: get("hostname")?,
            port,
            username: get("username")?,
            password: opts.get("password").cloned(),
            database: get("database.name")?,
            schema: opts
                .get("schema.name")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| "public".into()),
            slot,
            publication: opts
                .get("publication.name")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| "freshet_publication".into()),
            publication_create: flag("publication.create.enable", true)?,
            slot_drop_on_drop: flag("slot.drop.on.drop", false)?,
        })
    }

    /// The replication slot of `source`: `slot.name`, or `freshet_<schema>_<name>`.
    pub fn slot_for(&self, source: &SourceDef) -> String {
        if let Some(s) = &self.slot {
            return s.clone();
        }
        let raw = format!("freshet_{}_{}", source.schema, source.name).to_ascii_lowercase();
        let mut s: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        s.truncate(63);
        s
    }

    /// `host:port/database` for messages.
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.hostname, self.port, self.database)
    }

    /// Parameters of a replication connection.
    pub fn replication_params(&self) -> ConnectParams {
        ConnectParams {
            host: self.hostname.clone(),
            port: self.port,
            user: self.username.clone(),
            password: self.password.clone(),
            database: self.database.clone(),
            application_name: "freshet".into(),
        }
    }

    /// An ordinary connection, with the settings that make values print as Freshet parses
    /// them (UTC, ISO dates, hex bytea, round-trip floats).
    pub async fn connect(&self) -> Result<Client> {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.hostname)
            .port(self.port)
            .user(&self.username)
            .dbname(&self.database)
            .application_name("freshet")
            .connect_timeout(std::time::Duration::from_secs(10))
            .options("-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex");
        if let Some(p) = &self.password {
            c.password(p);
        }
        let (client, connection) = c.connect(NoTls).await.map_err(|e| upstream_error(self, "connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres-cdc connection ended");
            }
        });
        Ok(client)
    }

    /// Connects and checks the server can serve logical replication to this user:
    /// `wal_level = logical` (55000) and the REPLICATION attribute (42501), and that the
    /// publication exists when Freshet may not create it (42704).
    pub async fn check(&self) -> Result<()> {
        let client = self.connect().await?;
        let q = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .query_one(sql, &[])
                    .await
                    .map_err(|e| upstream_error(self, "check", e))
            }
        };
        let wal_level: String = q("SELECT current_setting('wal_level')").await?.get(0);
        if wal_level != "logical" {
            return Err(Error::user_detail(
                SqlState("55000"),
                format!(
                    "postgres-cdc {}: wal_level is '{wal_level}', logical replication needs 'logical'",
                    self.address()
                ),
                "set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL",
            ));
        }
        let allowed: bool = q("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")
            .await?
            .get(0);
        if !allowed {
            return Err(Error::user_detail(
                SqlState("42501"),
                format!(
                    "postgres-cdc {}: user \"{}\" may not start replication",
                    self.address(),
                    self.username
                ),
                format!("ALTER ROLE {} REPLICATION", super::quote_ident(&self.username)),
            ));
        }
        let has_publication = !client
            .query("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&self.publication])
            .await
            .map_err(|e| upstream_error(self, "check", e))?
            .is_empty();
        if !has_publication && !self.publication_create {
            return Err(Error::user(
                SqlState::UNDEFINED_OBJECT,
                format!(
                    "postgres-cdc {}: publication \"{}\" does not exist and publication.create.enable is false",
                    self.address(),
                    self.publication
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
    fn options_parse_with_defaults_and_errors() {
        let base = [("hostname", "h"), ("username", "u"), ("database.name", "d")];
        let c = PostgresConfig::from_options(&opts(&base)).unwrap();
        assert_eq!(
            (c.port, c.schema.as_str(), c.publication.as_str()),
            (5432, "public", "freshet_publication")
        );
        assert!(c.publication_create && !c.slot_drop_on_drop && c.slot.is_none());
        let src = SourceDef {
            id: 1,
            schema: "public".into(),
            name: "Shop-DB".into(),
            connector: "postgres-cdc".into(),
            options: BTreeMap::new(),
            implicit: false,
        };
        assert_eq!(c.slot_for(&src), "freshet_public_shop_db");
        let mut more = base.to_vec();
        more.push(("slot.name", "Bad-Name"));
        let e = PostgresConfig::from_options(&opts(&more)).unwrap_err();
        assert_eq!(e.code(), SqlState::INVALID_PARAMETER_VALUE);
        assert!(e.to_string().contains("slot.name"), "{e}");
        let e = PostgresConfig::from_options(&opts(&[("hostname", "h"), ("username", "u")])).unwrap_err();
        assert!(e.to_string().contains("database.name"), "{e}");
        let mut typo = base.to_vec();
        typo.push(("slot_name", "x"));
        assert!(PostgresConfig::from_options(&opts(&typo))
            .unwrap_err()
            .to_string()
            .contains("unknown option"));
    }
}
