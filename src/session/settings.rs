//! Session variables: `SET`, `SHOW`, `RESET`, `pg_settings`.
//!
//! Known variables have PostgreSQL's defaults; unknown ones are accepted by `SET` only when they
//! contain a dot (custom `myapp.x` settings), as PostgreSQL does.

use std::collections::BTreeMap;

use crate::error::{Error, Result, SqlState};

/// (name, default, description)
const DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "application_name",
        "",
        "Sets the application name reported in statistics and logs.",
    ),
    ("bytea_output", "hex", "Sets the output format for bytea."),
    ("client_encoding", "UTF8", "Sets the client's character set encoding."),
    (
        "client_min_messages",
        "notice",
        "Sets the message levels that are sent to the client.",
    ),
    (
        "datestyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
    ),
    (
        "default_transaction_isolation",
        "repeatable read",
        "Sets the transaction isolation level of each new transaction.",
    ),
    (
        "default_transaction_read_only",
        "off",
        "Sets the default read-only status of new transactions.",
    ),
    (
        "extra_float_digits",
        "1",
        "Sets the number of digits displayed for floating-point values.",
    ),
    ("integer_datetimes", "on", "Shows whether datetimes are integer based."),
    (
        "intervalstyle",
        "postgres",
        "Sets the display format for interval values.",
    ),
    ("is_superuser", "on", "Shows whether the current user is a superuser."),
    ("lc_collate", "C.UTF-8", "Shows the collation order locale."),
    ("lc_ctype", "C.UTF-8", "Shows the character classification locale."),
    (
        "lc_messages",
        "C.UTF-8",
        "Sets the language in which messages are displayed.",
    ),
    (
        "lc_monetary",
        "C.UTF-8",
        "Sets the locale for formatting monetary amounts.",
    ),
    ("lc_numeric", "C.UTF-8", "Sets the locale for formatting numbers."),
    (
        "lc_time",
        "C.UTF-8",
        "Sets the locale for formatting date and time values.",
    ),
    ("max_identifier_length", "63", "Shows the maximum identifier length."),
    (
        "search_path",
        "\"$user\", public",
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    (
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
    ),
    (
        "server_version",
        crate::query::functions::SERVER_VERSION,
        "Shows the server version.",
    ),
    (
        "server_version_num",
        "140000",
        "Shows the server version as an integer.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
    ),
    (
        "statement_timeout",
        "0",
        "Sets the maximum allowed duration of any statement.",
    ),
    (
        "lock_timeout",
        "0",
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    (
        "idle_in_transaction_session_timeout",
        "0",
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    (
        "timezone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "transaction_isolation",
        "repeatable read",
        "Sets the current transaction's isolation level.",
    ),
    (
        "transaction_read_only",
        "off",
        "Sets the current transaction's read-only status.",
    ),
    (
        "synchronous_commit",
        "on",
        "Sets the current transaction's synchronization level.",
    ),
    ("row_security", "on", "Enable row security."),
    ("jit", "off", "Allow JIT compilation."),
    ("geqo", "on", "Enables genetic query optimization."),
    (
        "work_mem",
        "4MB",
        "Sets the maximum memory to be used for query workspaces.",
    ),
    (
        "max_connections",
        "1000",
        "Sets the maximum number of concurrent connections.",
    ),
    (
        "default_text_search_config",
        "pg_catalog.english",
        "Sets default text search configuration.",
    ),
];

/// Variables a client may not change.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "max_identifier_length",
    "lc_collate",
    "lc_ctype",
];

/// Rows of `pg_settings`: (name, default value, description).
pub fn all_settings_rows() -> Vec<(String, String, String)> {
    DEFAULTS
        .iter()
        .map(|(n, v, d)| (n.to_string(), v.to_string(), d.to_string()))
        .collect()
}

/// One session's variables.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

fn normalize(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "names" => "client_encoding".into(),
        "schema" => "search_path".into(),
        _ => n,
    }
}

impl Settings {
    pub fn get(&self, name: &str) -> Result<String> {
        let n = normalize(name);
        if let Some(v) = self.values.get(&n) {
            return Ok(v.clone());
        }
        if let Some((_, v, _)) = DEFAULTS.iter().find(|(k, _, _)| *k == n) {
            return Ok(v.to_string());
        }
        Err(Error::user(
            SqlState::UNDEFINED_OBJECT,
            format!("unrecognized configuration parameter \"{name}\""),
        ))
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let n = normalize(name);
        let known = DEFAULTS.iter().any(|(k, _, _)| *k == n);
        if !known && !n.contains('.') {
            return Err(Error::user(
                SqlState::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        if READ_ONLY.contains(&n.as_str()) {
            return Err(Error::user(
                SqlState("55P02"),
                format!("parameter \"{n}\" cannot be changed"),
            ));
        }
        let value = match n.as_str() {
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(Error::user(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("client encoding \"{value}\" is not supported: Freshet speaks UTF8 only"),
                    ));
                }
                "UTF8".to_string()
            }
            "timezone" => {
                let v = value.trim();
                if !(v.eq_ignore_ascii_case("utc")
                    || v.eq_ignore_ascii_case("gmt")
                    || v == "0"
                    || v == "+00:00"
                    || v.eq_ignore_ascii_case("etc/utc")
                    || v.eq_ignore_ascii_case("zulu"))
                {
                    return Err(Error::user(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("time zone \"{v}\" is not supported: Freshet sessions run in UTC"),
                    ));
                }
                "UTC".to_string()
            }
            _ => value.to_string(),
        };
        self.values.insert(n, value);
        Ok(())
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        let n = normalize(name);
        if !DEFAULTS.iter().any(|(k, _, _)| *k == n) && !self.values.contains_key(&n) && !n.contains('.') {
            return Err(Error::user(
                SqlState::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        self.values.remove(&n);
        Ok(())
    }

    pub fn reset_all(&mut self) {
        self.values.clear();
    }

    /// Every variable with its current value (for `SHOW ALL`).
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut out: BTreeMap<String, (String, String)> = DEFAULTS
            .iter()
            .map(|(n, v, d)| (n.to_string(), (v.to_string(), d.to_string())))
            .collect();
        for (k, v) in &self.values {
            out.entry(k.clone()).or_insert_with(|| (String::new(), String::new())).0 = v.clone();
        }
        out.into_iter().map(|(k, (v, d))| (k, v, d)).collect()
    }

    /// The schemas of `search_path`, `$user` expanded.
    pub fn search_path(&self, user: &str) -> Vec<String> {
        let raw = self.get("search_path").unwrap_or_default();
        raw.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .map(|s| if s == "$user" { user.to_string() } else { s })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset() {
        let mut s = Settings::default();
        assert_eq!(s.get("search_path").unwrap(), "\"$user\", public");
        s.set("search_path", "app, public").unwrap();
        assert_eq!(s.search_path("freshet"), vec!["app", "public"]);
        s.reset("search_path").unwrap();
        assert_eq!(s.search_path("u"), vec!["u", "public"]);
        assert!(s.set("nonsense", "1").is_err());
        assert!(s.set("myapp.flag", "1").is_ok());
        assert!(s.set("server_version", "1").is_err());
        assert_eq!(s.get("TimeZone").unwrap(), "UTC");
    }
}
