//! Sources (`CREATE SOURCE`): external systems whose changes feed tables, and the link from a
//! table to the source that writes it (`CREATE TABLE ... FROM source TABLE 'db.table'`).
//!
//! Sources live in their own namespace per schema (like PostgreSQL's foreign servers): they
//! cannot be queried, only the tables they feed can.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Option keys whose values are never shown back.
const SECRET_OPTIONS: [&str; 2] = ["password", "properties.sasl.password"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// The `connector` option (`mysql-cdc`, ...).
    pub connector: String,
    /// Every WITH option but `connector`, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// Made by `CREATE TABLE .. WITH (connector = ..)` for that one table, and dropped with it.
    #[serde(default)]
    pub implicit: bool,
}

impl SourceDef {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The options as `key = 'value', ...`, secrets masked.
    pub fn display_options(&self) -> String {
        self.options
            .iter()
            .map(|(k, v)| {
                if SECRET_OPTIONS.contains(&k.as_str()) {
                    format!("{k} = '***'")
                } else {
                    format!("{k} = '{}'", v.replace('\'', "''"))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The source a table is captured from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSource {
    /// The source's id.
    pub source: u32,
    /// The upstream table as the source names it (`db.table`).
    pub external: String,
}
