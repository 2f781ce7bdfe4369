//! The `datagen` source: rows made up for the columns a table declares (RisingWave's options).
//!
//! ```sql
//! CREATE TABLE t (id INT, name VARCHAR, score DOUBLE PRECISION, ts TIMESTAMP) WITH (
//!   connector = 'datagen', datagen.rows.per.second = '100',
//!   fields.id.kind = 'sequence', fields.id.start = '1', fields.id.end = '1000',
//!   fields.name.length = '8', fields.score.min = '0', fields.score.max = '10');
//! ```
//!
//! - `fields.<col>.kind`: `sequence` (integers and numerics: `start` (default 1), `end`; the
//!   source stops after `end`) or `random` (the default: `min` / `max` for numbers (default 0 /
//!   1000), `length` for text (default 10), `seed`).
//! - Timestamps (and dates) are event time: the source's base time (fixed at its first start)
//!   plus row number × 1 s / `datagen.rows.per.second`; `random` instead draws up to
//!   `fields.<col>.max_past` seconds (default 86400) before that.
//! - `datagen.rows.per.second` (default 10; 0: as fast as possible), `datagen.rows.num` (stop
//!   after that many rows).
//!
//! Row n is a function of n (and the seeds and the base time), so the position is the next row
//! number: exactly once across restarts, like every other source.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{option_u64, run_batches, Batches};
use crate::catalog::{SourceDef, SqlType, Table, TableDef};
use crate::connectors::postgres::values::TextRows;
use crate::connectors::runtime::{stored_position, SourceTask};
use crate::error::{Error, Result, SqlState};
use crate::state::StateSnapshot;
use datafusion::arrow::record_batch::RecordBatch;

/// How one column is generated.
#[derive(Clone, Debug, PartialEq)]
enum Field {
    Sequence {
        start: i64,
        end: Option<i64>,
    },
    RandomNumber {
        min: f64,
        max: f64,
        integer: bool,
        seed: u64,
    },
    RandomText {
        length: usize,
        seed: u64,
    },
    RandomBool {
        seed: u64,
    },
    /// Base time + row × step (µs), or minus a random amount up to `max_past` µs.
    Time {
        random_past: Option<i64>,
        seed: u64,
        date: bool,
        tz: bool,
    },
}

/// A `datagen` source's plan: one field per visible column.
#[derive(Clone, Debug, PartialEq)]
pub struct Datagen {
    fields: Vec<(String, SqlType, Field)>,
    rate: Option<u64>,
    rows: Option<u64>,
}

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    Error::user(
        SqlState::INVALID_PARAMETER_VALUE,
        format!("invalid value for option '{key}': '{value}' (expected {expected})"),
    )
}

impl Datagen {
    /// Checks the options against the table's columns.
    pub fn new(def: &TableDef, opts: &BTreeMap<String, String>) -> Result<Datagen> {
        let columns: Vec<_> = def.columns.iter().filter(|c| !c.hidden).collect();
        for k in opts.keys() {
            let ok = match k.strip_prefix("fields.") {
                Some(rest) => {
                    let (col, attr) = rest.rsplit_once('.').unwrap_or((rest, ""));
                    columns.iter().any(|c| c.name == col)
                        && ["kind", "start", "end", "min", "max", "length", "seed", "max_past"].contains(&attr)
                }
                None => ["datagen.rows.per.second", "datagen.rows.num"].contains(&k.as_str()),
            };
            if !ok {
                return Err(Error::user(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("unknown option '{k}' for a datagen table (fields.<column>.kind / start / end / min / max / length / seed / max_past, datagen.rows.per.second, datagen.rows.num)"),
                ));
            }
        }
        let mut fields = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let get = |attr: &str| opts.get(&format!("fields.{}.{attr}", c.name));
            let num = |attr: &str, default: f64| -> Result<f64> {
                match get(attr) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| invalid(&format!("fields.{}.{attr}", c.name), v, "a number")),
                }
            };
            let seed = num("seed", i as f64)? as u64;
            let kind = get("kind").map(|k| k.trim().to_ascii_lowercase());
            let integer = matches!(c.ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8);
            let field = match (&c.ty, kind.as_deref()) {
                (SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Numeric(_), Some("sequence")) => {
                    Field::Sequence {
                        start: num("start", 1.0)? as i64,
                        end: get("end").map(|_| num("end", 0.0)).transpose()?.map(|v| v as i64),
                    }
                }
                (
                    SqlType::Int2
                    | SqlType::Int4
                    | SqlType::Int8
                    | SqlType::Numeric(_)
                    | SqlType::Float4
                    | SqlType::Float8,
                    None | Some("random"),
                ) => {
                    let (min, max) = (num("min", 0.0)?, num("max", 1000.0)?);
                    if min > max {
                        return Err(invalid(
                            &format!("fields.{}.max", c.name),
                            &max.to_string(),
                            "at least min",
                        ));
                    }
                    Field::RandomNumber {
                        min,
                        max,
                        integer,
                        seed,
                    }
                }
                (SqlType::Varchar(_) | SqlType::Text, None | Some("random")) => {
                    let length = num("length", 10.0)? as usize;
                    let length = match c.ty {
                        SqlType::Varchar(Some(n)) => length.min(n as usize),
                        _ => length,
                    };
                    Field::RandomText { length, seed }
                }
                (SqlType::Bool, None | Some("random")) => Field::RandomBool { seed },
                (
                    SqlType::Timestamp | SqlType::Timestamptz | SqlType::Date,
                    None | Some("sequence") | Some("random"),
                ) => Field::Time {
                    random_past: (kind.as_deref() == Some("random"))
                        .then(|| num("max_past", 86_400.0).map(|s| (s * 1e6) as i64))
                        .transpose()?,
                    seed,
                    date: c.ty == SqlType::Date,
                    tz: c.ty == SqlType::Timestamptz,
                },
                (ty, k) => {
                    return Err(Error::unsupported(format!(
                        "datagen kind '{}' for column {} of type {}",
                        k.unwrap_or("random"),
                        c.name,
                        ty.name()
                    )))
                }
            };
            fields.push((c.name.clone(), c.ty.clone(), field));
        }
        let rate = match option_u64(opts, "datagen.rows.per.second")? {
            None => Some(10),
            Some(0) => None,
            Some(r) => Some(r),
        };
        Ok(Datagen {
            fields,
            rate,
            rows: option_u64(opts, "datagen.rows.num")?,
        })
    }

    /// True if column `name` is a sequence field (no two rows share its value).
    pub fn is_sequence(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _, f)| n == name && matches!(f, Field::Sequence { .. }))
    }

    /// How many rows there are in all (None: no end).
    fn total(&self) -> Option<u64> {
        let by_sequence = self
            .fields
            .iter()
            .filter_map(|(_, _, f)| match f {
                Field::Sequence { start, end: Some(end) } => Some((end - start + 1).max(0) as u64),
                _ => None,
            })
            .min();
        match (by_sequence, self.rows) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Row `n` as text cells.
    fn row(&self, n: u64, base_micros: i64) -> Vec<Option<String>> {
        let step = 1_000_000 / self.rate.unwrap_or(1_000_000).max(1) as i64;
        self.fields
            .iter()
            .map(|(_, _, f)| {
                Some(match f {
                    Field::Sequence { start, .. } => (start + n as i64).to_string(),
                    Field::RandomNumber {
                        min,
                        max,
                        integer,
                        seed,
                    } => {
                        let u = unit(mix(*seed, n));
                        if *integer {
                            ((min + u * (max - min + 1.0)).floor().min(*max) as i64).to_string()
                        } else {
                            (min + u * (max - min)).to_string()
                        }
                    }
                    Field::RandomText { length, seed } => {
                        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                        (0..*length)
                            .map(|k| {
                                ALPHABET[(mix(*seed ^ (k as u64) << 40, n) % ALPHABET.len() as u64) as usize] as char
                            })
                            .collect()
                    }
                    Field::RandomBool { seed } => (mix(*seed, n) & 1 == 1).to_string(),
                    Field::Time {
                        random_past,
                        seed,
                        date,
                        tz,
                    } => {
                        let mut t = base_micros + n as i64 * step;
                        if let Some(past) = random_past {
                            t -= (unit(mix(*seed, n)) * *past as f64) as i64;
                        }
                        let text = crate::serve::text::timestamp(t, *tz);
                        if *date {
                            text[..10].to_string()
                        } else {
                            text
                        }
                    }
                })
            })
            .collect()
    }
}

/// A well-mixed 64-bit value for (seed, n) (splitmix64).
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `v` as a number in [0, 1).
fn unit(v: u64) -> f64 {
    (v >> 11) as f64 / (1u64 << 53) as f64
}

/// Where the generator is.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Position {
    base_micros: i64,
    next: u64,
}

/// Rows per commit at full speed.
const BATCH: u64 = 10_000;

/// The rows stream `table` (of datagen source `source`) carried up to the position committed
/// in `snapshot`, regenerated, in the stream's columns.
pub fn replay(source: &SourceDef, table: &Table, snapshot: &dyn StateSnapshot) -> Result<RecordBatch> {
    let gen = Datagen::new(&table.def, &source.options)?;
    let names: Vec<String> = gen.fields.iter().map(|(n, _, _)| n.clone()).collect();
    let types: Vec<SqlType> = gen.fields.iter().map(|(_, t, _)| t.clone()).collect();
    let mut rows = TextRows::new(&names, &types);
    if let Some(position) = stored_position::<Position>(snapshot, source.id)? {
        for i in 0..position.next {
            rows.push(gen.row(i, position.base_micros), 1);
        }
    }
    Ok(rows.finish()?.data())
}

/// The driver the runtime runs for `datagen` sources.
pub fn driver(task: Arc<SourceTask>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> {
    Box::pin(async move { run(&task).await })
}

async fn run(task: &SourceTask) -> Result<()> {
    let Some(table) = task.tables.first().cloned() else {
        return Ok(());
    };
    let gen = Datagen::new(&table.def, &task.source.options)?;
    let position: Position = task.stored_position()?.unwrap_or(Position {
        base_micros: crate::dataflow::coordinator::now_micros(),
        next: 0,
    });
    let names: Vec<String> = gen.fields.iter().map(|(n, _, _)| n.clone()).collect();
    let types: Vec<SqlType> = gen.fields.iter().map(|(_, t, _)| t.clone()).collect();
    run_batches(
        task,
        Batches {
            rate: gen.rate,
            batch: BATCH,
            total: gen.total(),
            unit: "rows",
        },
        position.next,
        |writes, first, n| {
            let mut rows = TextRows::new(&names, &types);
            for i in first..first + n {
                rows.push(gen.row(i, position.base_micros), 1);
            }
            task.add_changes(writes, &table, &rows.finish()?)
        },
        |next| Position {
            base_micros: position.base_micros,
            next,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnDef;

    fn def(cols: &[(&str, SqlType)]) -> TableDef {
        TableDef {
            id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|(n, t)| ColumnDef {
                    name: n.to_string(),
                    ty: t.clone(),
                    not_null: false,
                    default: None,
                    hidden: false,
                    generated: None,
                })
                .collect(),
            primary_key: vec![],
            version: 0,
            source: None,
            layout: Default::default(),
        }
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rows_follow_the_field_options_and_repeat_exactly() {
        let d = def(&[
            ("id", SqlType::Int4),
            ("name", SqlType::Varchar(Some(4))),
            ("score", SqlType::Int8),
        ]);
        let g = Datagen::new(
            &d,
            &opts(&[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "5"),
                ("fields.id.end", "14"),
                ("fields.name.length", "8"),
                ("fields.score.min", "10"),
                ("fields.score.max", "12"),
            ]),
        )
        .unwrap();
        assert_eq!(g.total(), Some(10));
        let rows: Vec<_> = (0..10).map(|n| g.row(n, 0)).collect();
        assert_eq!(rows[0][0].as_deref(), Some("5"));
        assert_eq!(rows[9][0].as_deref(), Some("14"));
        assert!(rows.iter().all(|r| r[1].as_ref().unwrap().len() == 4));
        assert!(rows
            .iter()
            .all(|r| (10..=12).contains(&r[2].as_ref().unwrap().parse::<i64>().unwrap())));
        assert_eq!(rows[3], g.row(3, 0));
        assert_ne!(rows[3][1], rows[4][1]);
    }

    #[test]
    fn options_are_checked() {
        let d = def(&[("id", SqlType::Int4), ("doc", SqlType::Jsonb)]);
        let e = Datagen::new(&d, &opts(&[("fields.nope.kind", "random")])).unwrap_err();
        assert_eq!(e.code(), SqlState::INVALID_PARAMETER_VALUE);
        let e = Datagen::new(&d, &opts(&[("fields.id.min", "x")])).unwrap_err();
        assert_eq!(e.code(), SqlState::INVALID_PARAMETER_VALUE);
        let d2 = def(&[("doc", SqlType::Jsonb)]);
        assert_eq!(
            Datagen::new(&d2, &opts(&[])).unwrap_err().code(),
            SqlState::FEATURE_NOT_SUPPORTED
        );
    }
}
