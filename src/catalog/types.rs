//! SQL types: the PostgreSQL types Freshet supports, and their Arrow and wire (OID) forms.
//!
//! | SQL | Arrow | pg type |
//! |---|---|---|
//! | BOOLEAN | Boolean | bool |
//! | SMALLINT / INTEGER / BIGINT | Int16 / Int32 / Int64 | int2 / int4 / int8 |
//! | REAL / DOUBLE PRECISION | Float32 / Float64 | float4 / float8 |
//! | NUMERIC(p,s) | Decimal128(p,s) (bare NUMERIC: Decimal128(38,10)) | numeric |
//! | VARCHAR(n) / TEXT | Utf8 | varchar / text |
//! | BYTEA | Binary | bytea |
//! | DATE / TIME | Date32 / Time64(µs) | date / time |
//! | TIMESTAMP / TIMESTAMPTZ | Timestamp(µs) / Timestamp(µs, "+00:00") | timestamp / timestamptz |
//! | INTERVAL | Interval(MonthDayNano) | interval |
//! | UUID / JSONB | Utf8 tagged by field metadata | uuid / jsonb |
//! | T[] | List(T) | T's array type |
//!
//! UUID and JSONB travel as canonical text in Arrow (DataFusion compares and hashes them as
//! strings); the field metadata key [`TYPE_METADATA_KEY`] keeps their SQL type across plans.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use pgwire::api::Type;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SqlState};

/// Arrow field metadata key naming the SQL type where Arrow alone cannot tell it.
pub const TYPE_METADATA_KEY: &str = "freshet.type";

/// Scale used for an unconstrained NUMERIC.
pub const DEFAULT_NUMERIC_SCALE: i8 = 10;
pub const MAX_NUMERIC_PRECISION: u8 = 38;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `None`: unconstrained NUMERIC.
    Numeric(Option<(u8, i8)>),
    Varchar(Option<u32>),
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
    Jsonb,
    Array(Box<SqlType>),
}

impl SqlType {
    /// Parses a type name as written in SQL (`int`, `character varying(10)`, `numeric(10,2)`,
    /// `timestamp with time zone`, `text[]`, ...).
    pub fn parse(name: &str) -> Result<SqlType> {
        let norm = name.trim().to_ascii_lowercase();
        let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(inner) = norm.strip_suffix("[]") {
            let elem = SqlType::parse(inner)?;
            if matches!(elem, SqlType::Array(_)) {
                return Err(Error::unsupported("multi-dimensional arrays"));
            }
            return Ok(SqlType::Array(Box::new(elem)));
        }
        if let Some(inner) = norm.strip_prefix("array<").and_then(|s| s.strip_suffix('>')) {
            return Ok(SqlType::Array(Box::new(SqlType::parse(inner)?)));
        }
        let (base, args) = match norm.find('(') {
            Some(open) => {
                let close = norm.rfind(')').ok_or_else(|| bad_type(name))?;
                let args: Vec<i64> = norm[open + 1..close]
                    .split(',')
                    .map(|a| a.trim().parse::<i64>().map_err(|_| bad_type(name)))
                    .collect::<Result<_>>()?;
                let rest = norm[close + 1..].trim();
                let base = format!("{} {}", norm[..open].trim(), rest);
                (base.trim().to_string(), args)
            }
            None => (norm.clone(), vec![]),
        };
        let ty = match base.as_str() {
            "bool" | "boolean" => SqlType::Bool,
            "smallint" | "int2" => SqlType::Int2,
            "int" | "integer" | "int4" => SqlType::Int4,
            "bigint" | "int8" => SqlType::Int8,
            "real" | "float4" => SqlType::Float4,
            "double precision" | "float8" | "double" => SqlType::Float8,
            "float" => match args.first() {
                Some(p) if *p >= 1 && *p <= 24 => SqlType::Float4,
                _ => SqlType::Float8,
            },
            "numeric" | "decimal" | "dec" => match args.as_slice() {
                [] => SqlType::Numeric(None),
                [p] => numeric(*p, 0, name)?,
                [p, s] => numeric(*p, *s, name)?,
                _ => return Err(bad_type(name)),
            },
            "varchar" | "character varying" | "char varying" | "char" | "character" | "bpchar" => {
                match args.as_slice() {
                    [] => SqlType::Varchar(None),
                    [n] if *n > 0 && *n <= 10_485_760 => SqlType::Varchar(Some(*n as u32)),
                    _ => {
                        return Err(Error::user(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!("length for type varchar must be between 1 and 10485760: {name}"),
                        ))
                    }
                }
            }
            "text" | "string" => SqlType::Text,
            "bytea" => SqlType::Bytea,
            "date" => SqlType::Date,
            "time" | "time without time zone" => SqlType::Time,
            "timestamp" | "timestamp without time zone" | "datetime" => SqlType::Timestamp,
            "timestamptz" | "timestamp with time zone" => SqlType::Timestamptz,
            "interval" => SqlType::Interval,
            "uuid" => SqlType::Uuid,
            "jsonb" | "json" => SqlType::Jsonb,
            _ => {
                return Err(Error::user(
                    SqlState::UNDEFINED_OBJECT,
                    format!("type \"{}\" does not exist", name.trim()),
                ))
            }
        };
        if !args.is_empty()
            && !matches!(
                ty,
                SqlType::Numeric(_) | SqlType::Varchar(_) | SqlType::Float4 | SqlType::Float8
            )
            && !matches!(ty, SqlType::Timestamp | SqlType::Timestamptz | SqlType::Time)
        {
            return Err(bad_type(name));
        }
        Ok(ty)
    }

    /// The Arrow type values of this SQL type are held in.
    pub fn arrow_type(&self) -> DataType {
        match self {
            SqlType::Bool => DataType::Boolean,
            SqlType::Int2 => DataType::Int16,
            SqlType::Int4 => DataType::Int32,
            SqlType::Int8 => DataType::Int64,
            SqlType::Float4 => DataType::Float32,
            SqlType::Float8 => DataType::Float64,
            SqlType::Numeric(None) => DataType::Decimal128(MAX_NUMERIC_PRECISION, DEFAULT_NUMERIC_SCALE),
            SqlType::Numeric(Some((p, s))) => DataType::Decimal128(*p, *s),
            SqlType::Varchar(_) | SqlType::Text | SqlType::Uuid | SqlType::Jsonb => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Array(elem) => DataType::List(Arc::new(elem.arrow_field("item", true))),
        }
    }

    /// An Arrow field of this type, tagged with metadata where Arrow alone cannot tell the type.
    pub fn arrow_field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.arrow_type(), nullable);
        match self.metadata_tag() {
            Some(tag) => field.with_metadata(HashMap::from([(TYPE_METADATA_KEY.to_string(), tag)])),
            None => field,
        }
    }

    fn metadata_tag(&self) -> Option<String> {
        match self {
            SqlType::Uuid | SqlType::Jsonb | SqlType::Varchar(_) | SqlType::Numeric(None) => Some(self.name()),
            _ => None,
        }
    }

    /// The SQL type of an Arrow field (using its metadata tag when present).
    pub fn from_field(field: &Field) -> SqlType {
        if let Some(tag) = field.metadata().get(TYPE_METADATA_KEY) {
            if let Ok(t) = SqlType::parse(tag) {
                if t.arrow_type() == *field.data_type() {
                    return t;
                }
            }
        }
        SqlType::from_arrow(field.data_type())
    }

    /// The closest SQL type of an Arrow type.
    pub fn from_arrow(dt: &DataType) -> SqlType {
        match dt {
            DataType::Boolean => SqlType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::Int2,
            DataType::Int32 | DataType::UInt16 => SqlType::Int4,
            DataType::Int64 | DataType::UInt32 => SqlType::Int8,
            DataType::UInt64 => SqlType::Numeric(Some((20, 0))),
            DataType::Float16 | DataType::Float32 => SqlType::Float4,
            DataType::Float64 => SqlType::Float8,
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
                SqlType::Numeric(Some((*p, *s)))
            }
            DataType::Decimal256(..) => SqlType::Numeric(None),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                SqlType::Bytea
            }
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::Timestamptz,
            DataType::Interval(_) | DataType::Duration(_) => SqlType::Interval,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::ListView(f) => {
                match SqlType::from_field(f) {
                    SqlType::Array(_) => SqlType::Text,
                    elem => SqlType::Array(Box::new(elem)),
                }
            }
            DataType::Dictionary(_, v) => SqlType::from_arrow(v),
            _ => SqlType::Text,
        }
    }

    /// The PostgreSQL wire type.
    pub fn pg_type(&self) -> Type {
        match self {
            SqlType::Bool => Type::BOOL,
            SqlType::Int2 => Type::INT2,
            SqlType::Int4 => Type::INT4,
            SqlType::Int8 => Type::INT8,
            SqlType::Float4 => Type::FLOAT4,
            SqlType::Float8 => Type::FLOAT8,
            SqlType::Numeric(_) => Type::NUMERIC,
            SqlType::Varchar(_) => Type::VARCHAR,
            SqlType::Text => Type::TEXT,
            SqlType::Bytea => Type::BYTEA,
            SqlType::Date => Type::DATE,
            SqlType::Time => Type::TIME,
            SqlType::Timestamp => Type::TIMESTAMP,
            SqlType::Timestamptz => Type::TIMESTAMPTZ,
            SqlType::Interval => Type::INTERVAL,
            SqlType::Uuid => Type::UUID,
            SqlType::Jsonb => Type::JSONB,
            SqlType::Array(elem) => match **elem {
                SqlType::Bool => Type::BOOL_ARRAY,
                SqlType::Int2 => Type::INT2_ARRAY,
                SqlType::Int4 => Type::INT4_ARRAY,
                SqlType::Int8 => Type::INT8_ARRAY,
                SqlType::Float4 => Type::FLOAT4_ARRAY,
                SqlType::Float8 => Type::FLOAT8_ARRAY,
                SqlType::Numeric(_) => Type::NUMERIC_ARRAY,
                SqlType::Varchar(_) => Type::VARCHAR_ARRAY,
                SqlType::Text => Type::TEXT_ARRAY,
                SqlType::Bytea => Type::BYTEA_ARRAY,
                SqlType::Date => Type::DATE_ARRAY,
                SqlType::Time => Type::TIME_ARRAY,
                SqlType::Timestamp => Type::TIMESTAMP_ARRAY,
                SqlType::Timestamptz => Type::TIMESTAMPTZ_ARRAY,
                SqlType::Interval => Type::INTERVAL_ARRAY,
                SqlType::Uuid => Type::UUID_ARRAY,
                SqlType::Jsonb => Type::JSONB_ARRAY,
                SqlType::Array(_) => Type::TEXT_ARRAY,
            },
        }
    }

    /// The SQL type of a wire type, if Freshet supports it.
    pub fn from_pg_type(ty: &Type) -> Option<SqlType> {
        let scalar = |t: &Type| -> Option<SqlType> {
            Some(match *t {
                Type::BOOL => SqlType::Bool,
                Type::INT2 => SqlType::Int2,
                Type::INT4 | Type::OID => SqlType::Int4,
                Type::INT8 => SqlType::Int8,
                Type::FLOAT4 => SqlType::Float4,
                Type::FLOAT8 => SqlType::Float8,
                Type::NUMERIC => SqlType::Numeric(None),
                Type::VARCHAR | Type::BPCHAR | Type::NAME => SqlType::Varchar(None),
                Type::TEXT => SqlType::Text,
                Type::BYTEA => SqlType::Bytea,
                Type::DATE => SqlType::Date,
                Type::TIME => SqlType::Time,
                Type::TIMESTAMP => SqlType::Timestamp,
                Type::TIMESTAMPTZ => SqlType::Timestamptz,
                Type::INTERVAL => SqlType::Interval,
                Type::UUID => SqlType::Uuid,
                Type::JSONB | Type::JSON => SqlType::Jsonb,
                _ => return None,
            })
        };
        scalar(ty).or_else(|| match ty.kind() {
            postgres_types::Kind::Array(elem) => scalar(elem).map(|e| SqlType::Array(Box::new(e))),
            _ => None,
        })
    }

    /// `atttypmod` as PostgreSQL stores it (-1: none).
    pub fn typmod(&self) -> i32 {
        match self {
            SqlType::Varchar(Some(n)) => *n as i32 + 4,
            SqlType::Numeric(Some((p, s))) => ((*p as i32) << 16) + (*s as i32) + 4,
            _ => -1,
        }
    }

    /// The name PostgreSQL's `format_type` prints.
    pub fn name(&self) -> String {
        match self {
            SqlType::Bool => "boolean".into(),
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float4 => "real".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Numeric(None) => "numeric".into(),
            SqlType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Text => "text".into(),
            SqlType::Bytea => "bytea".into(),
            SqlType::Date => "date".into(),
            SqlType::Time => "time without time zone".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::Timestamptz => "timestamp with time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Jsonb => "jsonb".into(),
            SqlType::Array(e) => format!("{}[]", e.name()),
        }
    }
}

fn numeric(p: i64, s: i64, name: &str) -> Result<SqlType> {
    if !(1..=MAX_NUMERIC_PRECISION as i64).contains(&p) {
        return Err(Error::user(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("NUMERIC precision {p} must be between 1 and {MAX_NUMERIC_PRECISION} ({name})"),
        ));
    }
    if s < 0 || s > p {
        return Err(Error::user(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("NUMERIC scale {s} must be between 0 and precision {p}"),
        ));
    }
    Ok(SqlType::Numeric(Some((p as u8, s as i8))))
}

fn bad_type(name: &str) -> Error {
    Error::user(SqlState::SYNTAX_ERROR, format!("invalid type name \"{}\"", name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_spellings() {
        assert_eq!(SqlType::parse("INT").unwrap(), SqlType::Int4);
        assert_eq!(
            SqlType::parse("character varying(10)").unwrap(),
            SqlType::Varchar(Some(10))
        );
        assert_eq!(
            SqlType::parse("NUMERIC(10, 2)").unwrap(),
            SqlType::Numeric(Some((10, 2)))
        );
        assert_eq!(
            SqlType::parse("timestamp with time zone").unwrap(),
            SqlType::Timestamptz
        );
        assert_eq!(SqlType::parse("TIMESTAMP(3)").unwrap(), SqlType::Timestamp);
        assert_eq!(
            SqlType::parse("int[]").unwrap(),
            SqlType::Array(Box::new(SqlType::Int4))
        );
        assert!(SqlType::parse("frobnicator").is_err());
        assert!(SqlType::parse("int[][]").is_err());
    }

    #[test]
    fn metadata_round_trips_types_arrow_cannot_tell() {
        for t in [
            SqlType::Uuid,
            SqlType::Jsonb,
            SqlType::Varchar(Some(3)),
            SqlType::Numeric(None),
        ] {
            assert_eq!(SqlType::from_field(&t.arrow_field("c", true)), t);
        }
        assert_eq!(SqlType::from_arrow(&DataType::Utf8), SqlType::Text);
    }
}
