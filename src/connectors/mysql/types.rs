//! MySQL / MariaDB column types: how each maps to a Freshet [`SqlType`], and how its values
//! become Arrow arrays.
//!
//! | upstream | Freshet | notes |
//! |---|---|---|
//! | TINYINT, SMALLINT | smallint | TINYINT UNSIGNED widens to smallint |
//! | SMALLINT UNSIGNED, MEDIUMINT (either sign), INT | integer | |
//! | INT UNSIGNED, BIGINT | bigint | |
//! | BIGINT UNSIGNED | numeric(20,0) | |
//! | DECIMAL(p,s) | numeric(p,s) | p > 38 is not mappable (Arrow Decimal128) |
//! | FLOAT / DOUBLE | real / double precision | |
//! | CHAR(n), VARCHAR(n) | varchar(n) | charsets utf8mb3/utf8mb4/ascii/latin1 only |
//! | TINYTEXT .. LONGTEXT | text | |
//! | BINARY, VARBINARY, BLOB family | bytea | BINARY(n) keeps its zero padding |
//! | DATE | date | zero / invalid dates (`0000-00-00`, `2024-02-00`) read as NULL |
//! | DATETIME(fsp) | timestamp | zero dates read as NULL |
//! | TIMESTAMP(fsp) | timestamptz | UTC; the zero timestamp reads as NULL |
//! | TIME(fsp) | time | values outside 00:00:00..24:00:00 (negative, or 25:00 and up) read as NULL |
//! | YEAR | smallint | `0000` reads as 0 |
//! | JSON (MySQL), LONGTEXT with `CHECK (json_valid(c))` (MariaDB) | jsonb | |
//! | ENUM, SET | text | the labels (`'a,c'` for a SET); the empty enum value reads as `''` |
//! | BIT(1) / BIT(n) | boolean / bigint | a BIT(64) value above 2^63-1 is an error |
//!
//! Values reach us in two forms that [`mysql_common::Value`] carries: typed rows of the binary
//! protocol (snapshot queries, [`Origin::Query`]) and row images of the binlog
//! ([`Origin::Binlog`]). Both go through [`ColumnDecoder::decode`]; the origin only matters where
//! the two forms differ for the same type (TIMESTAMP as epoch seconds, ENUM as an index, SET as a
//! bitmap, YEAR 0 as "1900" in the binlog).

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use mysql_async::Value;

use crate::catalog::types::SqlType;
use crate::error::{Error, Result, SqlState};

/// An upstream column type, parsed from `information_schema.COLUMNS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MysqlType {
    /// `bytes`: 1 (TINYINT), 2, 3 (MEDIUMINT), 4, 8.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Decimal {
        precision: u8,
        scale: u8,
    },
    Float,
    Double,
    /// CHAR(n) / VARCHAR(n).
    Char {
        len: u32,
    },
    Text,
    /// BINARY(n) pads to `n` with zero bytes (the binlog strips the padding).
    Binary {
        pad_to: Option<u32>,
    },
    Date,
    Datetime,
    Timestamp,
    Time,
    Year,
    Json,
    Enum(Vec<String>),
    Set(Vec<String>),
    Bit(u32),
}

/// Where a value was read, for the few types whose two forms differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A row of a snapshot query (binary protocol, session time zone UTC).
    Query,
    /// A binlog row image.
    Binlog,
}

impl MysqlType {
    /// Parses `DATA_TYPE` (e.g. `int`) and `COLUMN_TYPE` (e.g. `int(10) unsigned`).
    /// `charset` is `CHARACTER_SET_NAME`; `json_checked` says MariaDB's `json_valid` CHECK is on the column.
    pub(crate) fn parse(data_type: &str, column_type: &str, charset: Option<&str>, json_checked: bool) -> Result<Self> {
        let data_type = data_type.to_ascii_lowercase();
        let column_type_lc = column_type.to_ascii_lowercase();
        let unsigned = column_type_lc.contains("unsigned");
        let args = paren_numbers(&column_type_lc);
        let text_charset_ok = || match charset.map(|c| c.to_ascii_lowercase()) {
            None => Ok(()),
            Some(c)
                if matches!(
                    c.as_str(),
                    "utf8" | "utf8mb3" | "utf8mb4" | "ascii" | "latin1" | "binary"
                ) =>
            {
                Ok(())
            }
            Some(c) => Err(Error::unsupported(format!(
                "character set {c} (only utf8mb4, utf8mb3, ascii and latin1 are read)"
            ))),
        };
        Ok(match data_type.as_str() {
            "tinyint" => MysqlType::Int { bytes: 1, unsigned },
            "smallint" => MysqlType::Int { bytes: 2, unsigned },
            "mediumint" => MysqlType::Int { bytes: 3, unsigned },
            "int" | "integer" => MysqlType::Int { bytes: 4, unsigned },
            "bigint" => MysqlType::Int { bytes: 8, unsigned },
            "decimal" | "numeric" => {
                let precision = args.first().copied().unwrap_or(10);
                let scale = args.get(1).copied().unwrap_or(0);
                if precision > 38 {
                    return Err(Error::unsupported(format!(
                        "DECIMAL precision {precision} (at most 38 digits are kept)"
                    )));
                }
                MysqlType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                }
            }
            "float" => MysqlType::Float,
            "double" | "real" => MysqlType::Double,
            "char" | "varchar" => {
                text_charset_ok()?;
                MysqlType::Char {
                    len: args.first().copied().unwrap_or(1).max(1),
                }
            }
            "tinytext" | "text" | "mediumtext" | "longtext" if json_checked => MysqlType::Json,
            "tinytext" | "text" | "mediumtext" | "longtext" => {
                text_charset_ok()?;
                MysqlType::Text
            }
            "json" => MysqlType::Json,
            "binary" => MysqlType::Binary {
                pad_to: Some(args.first().copied().unwrap_or(1)),
            },
            "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => MysqlType::Binary { pad_to: None },
            "date" => MysqlType::Date,
            "datetime" => MysqlType::Datetime,
            "timestamp" => MysqlType::Timestamp,
            "time" => MysqlType::Time,
            "year" => MysqlType::Year,
            "enum" => MysqlType::Enum(quoted_labels(column_type)),
            "set" => MysqlType::Set(quoted_labels(column_type)),
            "bit" => MysqlType::Bit(args.first().copied().unwrap_or(1)),
            other => return Err(Error::unsupported(format!("MySQL type {other}"))),
        })
    }

    /// The Freshet type of this upstream type.
    pub(crate) fn sql_type(&self) -> SqlType {
        match self {
            MysqlType::Int { bytes: 1, .. }
            | MysqlType::Int {
                bytes: 2,
                unsigned: false,
            } => SqlType::Int2,
            MysqlType::Int { bytes: 2 | 3, .. }
            | MysqlType::Int {
                bytes: 4,
                unsigned: false,
            } => SqlType::Int4,
            MysqlType::Int { bytes: 4, .. }
            | MysqlType::Int {
                bytes: 8,
                unsigned: false,
            } => SqlType::Int8,
            MysqlType::Int { .. } => SqlType::Numeric(Some((20, 0))),
            MysqlType::Decimal { precision, scale } => SqlType::Numeric(Some((*precision, *scale as i8))),
            MysqlType::Float => SqlType::Float4,
            MysqlType::Double => SqlType::Float8,
            MysqlType::Char { len } => SqlType::Varchar(Some(*len)),
            MysqlType::Text | MysqlType::Enum(_) | MysqlType::Set(_) => SqlType::Text,
            MysqlType::Binary { .. } => SqlType::Bytea,
            MysqlType::Date => SqlType::Date,
            MysqlType::Datetime => SqlType::Timestamp,
            MysqlType::Timestamp => SqlType::Timestamptz,
            MysqlType::Time => SqlType::Time,
            MysqlType::Year => SqlType::Int2,
            MysqlType::Json => SqlType::Jsonb,
            MysqlType::Bit(1) => SqlType::Bool,
            MysqlType::Bit(_) => SqlType::Int8,
        }
    }

    /// Whether a binlog TABLE_MAP column type byte is what this type is logged as
    /// (detects upstream DDL that changed a column's type under the same name).
    pub(crate) fn matches_binlog_type(&self, t: mysql_async::consts::ColumnType) -> bool {
        use mysql_async::consts::ColumnType as C;
        match self {
            MysqlType::Int { bytes: 1, .. } => t == C::MYSQL_TYPE_TINY,
            MysqlType::Int { bytes: 2, .. } => t == C::MYSQL_TYPE_SHORT,
            MysqlType::Int { bytes: 3, .. } => t == C::MYSQL_TYPE_INT24,
            MysqlType::Int { bytes: 4, .. } => t == C::MYSQL_TYPE_LONG,
            MysqlType::Int { .. } => t == C::MYSQL_TYPE_LONGLONG,
            MysqlType::Decimal { .. } => matches!(t, C::MYSQL_TYPE_NEWDECIMAL | C::MYSQL_TYPE_DECIMAL),
            MysqlType::Float => t == C::MYSQL_TYPE_FLOAT,
            MysqlType::Double => t == C::MYSQL_TYPE_DOUBLE,
            MysqlType::Char { .. } | MysqlType::Binary { .. } => {
                matches!(
                    t,
                    C::MYSQL_TYPE_STRING | C::MYSQL_TYPE_VARCHAR | C::MYSQL_TYPE_VAR_STRING | C::MYSQL_TYPE_BLOB
                )
            }
            MysqlType::Text => t == C::MYSQL_TYPE_BLOB,
            MysqlType::Json => matches!(t, C::MYSQL_TYPE_JSON | C::MYSQL_TYPE_BLOB),
            MysqlType::Date => matches!(t, C::MYSQL_TYPE_DATE | C::MYSQL_TYPE_NEWDATE),
            MysqlType::Datetime => matches!(t, C::MYSQL_TYPE_DATETIME | C::MYSQL_TYPE_DATETIME2),
            MysqlType::Timestamp => matches!(t, C::MYSQL_TYPE_TIMESTAMP | C::MYSQL_TYPE_TIMESTAMP2),
            MysqlType::Time => matches!(t, C::MYSQL_TYPE_TIME | C::MYSQL_TYPE_TIME2),
            MysqlType::Year => t == C::MYSQL_TYPE_YEAR,
            MysqlType::Enum(_) => matches!(t, C::MYSQL_TYPE_ENUM | C::MYSQL_TYPE_STRING),
            MysqlType::Set(_) => matches!(t, C::MYSQL_TYPE_SET | C::MYSQL_TYPE_STRING),
            MysqlType::Bit(_) => t == C::MYSQL_TYPE_BIT,
        }
    }
}

/// The numbers inside the first parentheses: `decimal(10,2)` -> [10, 2].
fn paren_numbers(column_type: &str) -> Vec<u32> {
    let Some(open) = column_type.find('(') else {
        return vec![];
    };
    let Some(close) = column_type[open..].find(')') else {
        return vec![];
    };
    column_type[open + 1..open + close]
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// The labels of `enum('a','b''c')` / `set(...)`, quotes undone.
fn quoted_labels(column_type: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut chars = column_type.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        label.push(n);
                    }
                }
                c => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

/// One decoded value, before it goes into an Arrow array.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    /// Unscaled decimal.
    Dec(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Days(i32),
    /// Microseconds (since the epoch, or since midnight for TIME).
    Micros(i64),
}

/// Decodes the values of one upstream column into cells of its Freshet type.
#[derive(Clone, Debug)]
pub(crate) struct ColumnDecoder {
    pub name: String,
    pub mysql: MysqlType,
    pub sql: SqlType,
}

impl ColumnDecoder {
    /// The scale of the Freshet column when it is numeric (upstream DECIMAL may be widened).
    fn target_scale(&self) -> u32 {
        match self.sql.arrow_type() {
            datafusion::arrow::datatypes::DataType::Decimal128(_, s) => s.max(0) as u32,
            _ => 0,
        }
    }

    pub(crate) fn decode(&self, value: Value, origin: Origin) -> Result<Cell> {
        if value == Value::NULL {
            return Ok(Cell::Null);
        }
        let bad = |v: &Value| Error::External {
            state: SqlState::DATA_EXCEPTION,
            message: format!(
                "mysql-cdc: unexpected value {v:?} for column \"{}\" ({:?})",
                self.name, self.mysql
            ),
            retryable: false,
        };
        Ok(match &self.mysql {
            MysqlType::Int { bytes, unsigned } => {
                let mut v: i128 = match &value {
                    Value::Int(i) => *i as i128,
                    Value::UInt(u) => *u as i128,
                    Value::Bytes(b) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| bad(&value))?,
                    _ => return Err(bad(&value)),
                };
                // The binlog parser may read a value with the wrong signedness (it has only the
                // TABLE_MAP's optional signedness metadata; MEDIUMINT comes back unsigned): the
                // bit pattern is right, so re-interpret it by the column's declared sign.
                let bits = 8 * *bytes as u32;
                if *unsigned && v < 0 {
                    v += 1i128 << bits;
                } else if !*unsigned && v >= 1i128 << (bits - 1) {
                    v -= 1i128 << bits;
                }
                match self.sql {
                    SqlType::Numeric(_) => Cell::Dec(v * 10i128.pow(self.target_scale())),
                    _ => Cell::Int(v as i64),
                }
            }
            MysqlType::Decimal { .. } => match &value {
                Value::Bytes(b) => Cell::Dec(
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| parse_decimal(s, self.target_scale() as u8))
                        .ok_or_else(|| bad(&value))?,
                ),
                Value::Int(i) => Cell::Dec(*i as i128 * 10i128.pow(self.target_scale())),
                _ => return Err(bad(&value)),
            },
            MysqlType::Float | MysqlType::Double => match &value {
                Value::Float(f) => Cell::Float(*f as f64),
                Value::Double(d) => Cell::Float(*d),
                Value::Bytes(b) => Cell::Float(
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad(&value))?,
                ),
                _ => return Err(bad(&value)),
            },
            MysqlType::Char { .. } | MysqlType::Text => Cell::Str(text(value)?),
            MysqlType::Json => {
                let s = text(value)?;
                Cell::Str(crate::sql::coerce::normalize_json(&s).ok_or_else(|| Error::External {
                    state: SqlState::INVALID_TEXT_REPRESENTATION,
                    message: format!("mysql-cdc: column \"{}\" holds invalid JSON: {s}", self.name),
                    retryable: false,
                })?)
            }
            MysqlType::Binary { pad_to } => match value {
                Value::Bytes(mut b) => {
                    if let Some(n) = pad_to {
                        if b.len() < *n as usize {
                            b.resize(*n as usize, 0);
                        }
                    }
                    Cell::Bytes(b)
                }
                v => return Err(bad(&v)),
            },
            MysqlType::Date => match &value {
                Value::Date(y, m, d, ..) => date_days(*y as i32, *m as u32, *d as u32).map_or(Cell::Null, Cell::Days),
                Value::Bytes(b) => {
                    let s = std::str::from_utf8(b).map_err(|_| bad(&value))?;
                    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                        Ok(d) => Cell::Days(days_since_epoch(d)),
                        Err(_) => Cell::Null,
                    }
                }
                _ => return Err(bad(&value)),
            },
            MysqlType::Datetime => datetime_micros(&value).ok_or_else(|| bad(&value))?,
            MysqlType::Timestamp => match (&value, origin) {
                (Value::Bytes(b), Origin::Binlog) => {
                    // TIMESTAMP2: "seconds[.micros]" since the epoch, UTC.
                    let s = std::str::from_utf8(b).map_err(|_| bad(&value))?;
                    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                    let sec: i64 = sec.parse().map_err(|_| bad(&value))?;
                    let us: i64 = format!("{frac:0<6}")[..6].parse().map_err(|_| bad(&value))?;
                    if sec == 0 && us == 0 {
                        Cell::Null
                    } else {
                        Cell::Micros(sec * 1_000_000 + us)
                    }
                }
                (Value::Int(0), _) => Cell::Null,
                (Value::Int(sec), Origin::Binlog) => Cell::Micros(sec * 1_000_000),
                // Snapshot queries run with time_zone = '+00:00': the wall time is UTC.
                _ => datetime_micros(&value).ok_or_else(|| bad(&value))?,
            },
            MysqlType::Time => {
                let micros: i128 = match &value {
                    Value::Time(neg, days, h, m, s, us) => {
                        let v = (((*days as i128 * 24 + *h as i128) * 60 + *m as i128) * 60 + *s as i128) * 1_000_000
                            + *us as i128;
                        if *neg {
                            -v
                        } else {
                            v
                        }
                    }
                    Value::Bytes(b) => std::str::from_utf8(b)
                        .ok()
                        .and_then(parse_time)
                        .ok_or_else(|| bad(&value))?,
                    _ => return Err(bad(&value)),
                };
                if (0..86_400_000_000).contains(&micros) {
                    Cell::Micros(micros as i64)
                } else {
                    tracing::warn!(column = %self.name, micros = %micros, "mysql-cdc: TIME outside 00:00..24:00 read as NULL");
                    Cell::Null
                }
            }
            MysqlType::Year => match &value {
                Value::Int(y) => Cell::Int(*y),
                Value::UInt(y) => Cell::Int(*y as i64),
                Value::Bytes(b) => {
                    let y: i64 = std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad(&value))?;
                    // The binlog logs YEAR 0000 as 1900 (the offset of its one-byte form).
                    Cell::Int(if y == 1900 && origin == Origin::Binlog { 0 } else { y })
                }
                _ => return Err(bad(&value)),
            },
            MysqlType::Enum(labels) => match (&value, origin) {
                (Value::Int(i), Origin::Binlog) => Cell::Str(if *i <= 0 {
                    String::new()
                } else {
                    labels.get(*i as usize - 1).cloned().ok_or_else(|| bad(&value))?
                }),
                _ => Cell::Str(text(value)?),
            },
            MysqlType::Set(labels) => match (&value, origin) {
                (Value::Bytes(b), Origin::Binlog) => {
                    let mut bits: u64 = 0;
                    for (i, byte) in b.iter().enumerate().take(8) {
                        bits |= (*byte as u64) << (8 * i);
                    }
                    Cell::Str(set_labels(labels, bits))
                }
                (Value::Int(i), _) => Cell::Str(set_labels(labels, *i as u64)),
                (Value::UInt(u), _) => Cell::Str(set_labels(labels, *u)),
                _ => Cell::Str(text(value)?),
            },
            MysqlType::Bit(n) => {
                let v: u64 = match &value {
                    Value::Bytes(b) => b.iter().fold(0u64, |acc, byte| (acc << 8) | *byte as u64),
                    Value::Int(i) => *i as u64,
                    Value::UInt(u) => *u,
                    _ => return Err(bad(&value)),
                };
                if *n == 1 {
                    Cell::Bool(v != 0)
                } else {
                    Cell::Int(i64::try_from(v).map_err(|_| Error::External {
                        state: SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                        message: format!(
                            "mysql-cdc: BIT value {v} of column \"{}\" is out of range for bigint",
                            self.name
                        ),
                        retryable: false,
                    })?)
                }
            }
        })
    }
}

fn set_labels(labels: &[String], bits: u64) -> String {
    labels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && bits & (1 << i) != 0)
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// String bytes as UTF-8 (latin1 columns in the binlog are not UTF-8: read them as latin1).
fn text(value: Value) -> Result<String> {
    match value {
        Value::Bytes(b) => Ok(match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => e.into_bytes().iter().map(|b| *b as char).collect(),
        }),
        other => Ok(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// None for zero or invalid dates.
fn date_days(y: i32, m: u32, d: u32) -> Option<i32> {
    NaiveDate::from_ymd_opt(y, m, d)
        .filter(|_| y != 0)
        .map(days_since_epoch)
}

fn datetime_micros(value: &Value) -> Option<Cell> {
    let dt = match value {
        Value::Date(y, mo, d, h, mi, s, us) => {
            let Some(date) = NaiveDate::from_ymd_opt(*y as i32, *mo as u32, *d as u32).filter(|_| *y != 0) else {
                return Some(Cell::Null);
            };
            date.and_time(NaiveTime::from_hms_micro_opt(*h as u32, *mi as u32, *s as u32, *us)?)
        }
        Value::Bytes(b) => {
            let s = std::str::from_utf8(b).ok()?;
            match NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
                Ok(dt) => dt,
                Err(_) if s.starts_with("0000-") || s.contains("-00") => return Some(Cell::Null),
                Err(_) => return None,
            }
        }
        _ => return None,
    };
    Some(Cell::Micros(dt.and_utc().timestamp_micros()))
}

/// `[-]HHH:MM:SS[.ffffff]` to microseconds.
fn parse_time(s: &str) -> Option<i128> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut parts = hms.split(':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let sec: i128 = parts.next()?.parse().ok()?;
    let us: i128 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    let v = ((h * 60 + m) * 60 + sec) * 1_000_000 + us;
    Some(if neg { -v } else { v })
}

/// Decimal text (`-12.340`) to an unscaled integer at `scale`.
fn parse_decimal(s: &str, scale: u8) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = String::with_capacity(int.len() + scale as usize);
    digits.push_str(if int.is_empty() { "0" } else { int });
    let mut frac = frac.to_string();
    frac.truncate(scale as usize);
    digits.push_str(&format!("{frac:0<width$}", width = scale as usize));
    let v: i128 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Builds one Arrow array of `sql` from decoded cells.
pub(crate) fn build_array(sql: &SqlType, cells: Vec<Cell>) -> Result<ArrayRef> {
    let mismatch = |c: &Cell| Error::internal(format!("mysql-cdc: cell {c:?} does not fit {}", sql.name()));
    macro_rules! build {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for c in cells {
                match c {
                    Cell::Null => b.append_null(),
                    $($pat => b.append_value($val),)+
                    other => return Err(mismatch(&other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match sql {
        SqlType::Bool => build!(BooleanBuilder::new(), Cell::Bool(v) => v),
        SqlType::Int2 => build!(Int16Builder::new(), Cell::Int(v) => v as i16),
        SqlType::Int4 => build!(Int32Builder::new(), Cell::Int(v) => v as i32),
        SqlType::Int8 => build!(Int64Builder::new(), Cell::Int(v) => v),
        SqlType::Float4 => build!(Float32Builder::new(), Cell::Float(v) => v as f32),
        SqlType::Float8 => build!(Float64Builder::new(), Cell::Float(v) => v),
        SqlType::Numeric(_) => {
            let datafusion::arrow::datatypes::DataType::Decimal128(p, s) = sql.arrow_type() else {
                return Err(Error::internal("numeric is Decimal128"));
            };
            build!(Decimal128Builder::new().with_precision_and_scale(p, s)?, Cell::Dec(v) => v, Cell::Int(v) => v as i128)
        }
        SqlType::Varchar(_) | SqlType::Text | SqlType::Jsonb => build!(StringBuilder::new(), Cell::Str(v) => v),
        SqlType::Bytea => build!(BinaryBuilder::new(), Cell::Bytes(v) => v),
        SqlType::Date => build!(Date32Builder::new(), Cell::Days(v) => v),
        SqlType::Time => build!(Time64MicrosecondBuilder::new(), Cell::Micros(v) => v),
        SqlType::Timestamp => build!(TimestampMicrosecondBuilder::new(), Cell::Micros(v) => v),
        SqlType::Timestamptz => {
            build!(TimestampMicrosecondBuilder::new().with_timezone("+00:00"), Cell::Micros(v) => v)
        }
        other => return Err(Error::internal(format!("mysql-cdc never maps to {}", other.name()))),
    })
}

/// Accumulates rows of one captured table, column by column, then builds a `RecordBatch`.
pub(crate) struct RowsBuilder {
    schema: SchemaRef,
    /// For each Freshet column: (upstream index, decoder).
    columns: Vec<(usize, ColumnDecoder)>,
    cells: Vec<Vec<Cell>>,
    rows: usize,
}

impl RowsBuilder {
    pub(crate) fn new(schema: SchemaRef, columns: Vec<(usize, ColumnDecoder)>) -> Self {
        let cells = columns.iter().map(|_| Vec::new()).collect();
        RowsBuilder {
            schema,
            columns,
            cells,
            rows: 0,
        }
    }

    /// Adds one row given as all upstream values (`take(i)` yields upstream column `i`).
    pub(crate) fn push(&mut self, mut take: impl FnMut(usize) -> Result<Value>, origin: Origin) -> Result<()> {
        for (k, (idx, dec)) in self.columns.iter().enumerate() {
            let cell = dec.decode(take(*idx)?, origin)?;
            self.cells[k].push(cell);
        }
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// The rows so far as a batch (and a fresh, empty builder state).
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (k, (_, dec)) in self.columns.iter().enumerate() {
            arrays.push(build_array(&dec.sql, std::mem::take(&mut self.cells[k]))?);
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::External {
            state: SqlState::NOT_NULL_VIOLATION,
            message: format!(
                "mysql-cdc: rows do not fit the table's columns ({e}); zero dates and out-of-range TIME values read as NULL"
            ),
            retryable: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_column_types() {
        let t = |dt: &str, ct: &str| MysqlType::parse(dt, ct, Some("utf8mb4"), false).unwrap().sql_type();
        assert_eq!(t("tinyint", "tinyint(3) unsigned"), SqlType::Int2);
        assert_eq!(t("smallint", "smallint(5) unsigned"), SqlType::Int4);
        assert_eq!(t("int", "int(10) unsigned"), SqlType::Int8);
        assert_eq!(t("bigint", "bigint(20) unsigned"), SqlType::Numeric(Some((20, 0))));
        assert_eq!(t("decimal", "decimal(10,2)"), SqlType::Numeric(Some((10, 2))));
        assert_eq!(t("varchar", "varchar(20)"), SqlType::Varchar(Some(20)));
        assert_eq!(t("bit", "bit(1)"), SqlType::Bool);
        assert_eq!(t("bit", "bit(9)"), SqlType::Int8);
        assert_eq!(
            MysqlType::parse("enum", "enum('a','b''c','d,e')", None, false).unwrap(),
            MysqlType::Enum(vec!["a".into(), "b'c".into(), "d,e".into()])
        );
        assert!(MysqlType::parse("geometry", "geometry", None, false).is_err());
        assert!(MysqlType::parse("decimal", "decimal(65,2)", None, false).is_err());
        assert_eq!(
            MysqlType::parse("longtext", "longtext", Some("utf8mb4"), true).unwrap(),
            MysqlType::Json
        );
    }

    #[test]
    fn parses_decimals_and_times() {
        assert_eq!(parse_decimal("-12.3", 2), Some(-1230));
        assert_eq!(parse_decimal("0.05", 2), Some(5));
        assert_eq!(parse_decimal("18446744073709551615", 0), Some(18446744073709551615));
        assert_eq!(parse_time("-838:59:59"), Some(-(838 * 3600 + 59 * 60 + 59) * 1_000_000));
        assert_eq!(parse_time("01:02:03.5"), Some(3_723_500_000));
    }
}
