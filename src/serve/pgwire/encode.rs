//! Arrow batches to pgwire rows: field descriptions (type OIDs) and values in text or binary.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

use crate::catalog::SqlType;
use crate::serve::text::format_cell;

/// The wire type of a result column.
pub fn pg_type_of(field: &Field) -> Type {
    SqlType::from_field(field).pg_type()
}

/// Row description for `schema`, each column in the format `format_of(i)` asks for.
pub fn field_infos(schema: &Schema, format_of: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let sql = SqlType::from_field(f);
            FieldInfo::new(f.name().clone(), None, None, sql.pg_type(), format_of(i)).with_type_modifier(sql.typmod())
        })
        .collect()
}

/// A pre-encoded value.
#[derive(Debug)]
enum Cell {
    Null,
    Bytes(Vec<u8>),
}

impl ToSql for Cell {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Bytes(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
        }
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for Cell {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

/// Encodes every row of `batch`.
pub fn encode_batch(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> PgWireResult<Vec<DataRow>> {
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    let fmt = FormatOptions::default();
    for row in 0..batch.num_rows() {
        for (i, col) in batch.columns().iter().enumerate() {
            let info = &fields[i];
            // A NullArray (an untyped `NULL` select item) has no null buffer: every row is NULL.
            let cell = match info.format() {
                _ if col.data_type() == &datafusion::arrow::datatypes::DataType::Null => Cell::Null,
                FieldFormat::Text => match format_cell(col, row) {
                    Some(s) => Cell::Bytes(s.into_bytes()),
                    None => Cell::Null,
                },
                FieldFormat::Binary => match binary_cell(col, row, info.datatype()) {
                    Some(b) => Cell::Bytes(b),
                    None => Cell::Null,
                },
            };
            encoder.encode_field_with_type_and_format(&cell, info.datatype(), info.format(), &fmt)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// PostgreSQL's binary form of `array[row]` as type `ty`.
pub fn binary_cell(array: &ArrayRef, row: usize, ty: &Type) -> Option<Vec<u8>> {
    if array.is_null(row) {
        return None;
    }
    let text = || format_cell(array, row).unwrap_or_default();
    let mut out = BytesMut::new();
    match *ty {
        Type::BOOL => out.put_u8(array.as_boolean().value(row) as u8),
        Type::INT2 => out.put_i16(text().parse::<i16>().ok()?),
        Type::INT4 => out.put_i32(text().parse::<i32>().ok()?),
        Type::INT8 => out.put_i64(text().parse::<i64>().ok()?),
        Type::FLOAT4 => out.put_f32(numeric_f64(array, row)? as f32),
        Type::FLOAT8 => out.put_f64(numeric_f64(array, row)?),
        Type::NUMERIC => {
            let d: rust_decimal::Decimal = text().parse().ok()?;
            d.to_sql(&Type::NUMERIC, &mut out).ok()?;
        }
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(text().as_bytes());
        }
        Type::UUID => {
            let hex: String = text().chars().filter(|c| *c != '-').collect();
            for i in 0..16 {
                out.put_u8(u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?);
            }
        }
        Type::BYTEA => match array.data_type() {
            DataType::Binary => out.put_slice(array.as_binary::<i32>().value(row)),
            DataType::LargeBinary => out.put_slice(array.as_binary::<i64>().value(row)),
            DataType::BinaryView => out.put_slice(array.as_binary_view().value(row)),
            _ => out.put_slice(text().as_bytes()),
        },
        Type::DATE => {
            let days = match array.data_type() {
                DataType::Date32 => array
                    .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                    .value(row) as i64,
                DataType::Date64 => {
                    array
                        .as_primitive::<datafusion::arrow::datatypes::Date64Type>()
                        .value(row)
                        / 86_400_000
                }
                _ => return None,
            };
            out.put_i32((days - PG_EPOCH_DAYS) as i32);
        }
        Type::TIME => {
            let micros = scalar_micros(array, row)?;
            out.put_i64(micros);
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = scalar_micros(array, row)?;
            out.put_i64(micros - PG_EPOCH_MICROS);
        }
        Type::INTERVAL => {
            let (months, days, micros) = match array.data_type() {
                DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano) => {
                    let v = array
                        .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                        .value(row);
                    (v.months, v.days, v.nanoseconds / 1000)
                }
                _ => return None,
            };
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
        }
        _ if matches!(ty.kind(), postgres_types::Kind::Array(_)) => {
            let postgres_types::Kind::Array(elem) = ty.kind() else {
                unreachable!()
            };
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => return None,
            };
            out.put_i32(1);
            out.put_i32(values.null_count().min(1) as i32);
            out.put_u32(elem.oid());
            out.put_i32(values.len() as i32);
            out.put_i32(1);
            for i in 0..values.len() {
                match binary_cell(&values, i, elem) {
                    None => out.put_i32(-1),
                    Some(b) => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(&b);
                    }
                }
            }
        }
        _ => out.put_slice(text().as_bytes()),
    }
    Some(out.to_vec())
}

fn numeric_f64(array: &ArrayRef, row: usize) -> Option<f64> {
    let v = datafusion::arrow::compute::cast(&array.slice(row, 1), &DataType::Float64).ok()?;
    Some(v.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(0))
}

/// Microseconds of a timestamp or time value.
fn scalar_micros(array: &ArrayRef, row: usize) -> Option<i64> {
    use datafusion::arrow::datatypes::TimeUnit;
    let (unit, is_time) = match array.data_type() {
        DataType::Timestamp(u, _) => (*u, false),
        DataType::Time64(u) | DataType::Time32(u) => (*u, true),
        _ => return None,
    };
    let target = if is_time {
        DataType::Time64(TimeUnit::Microsecond)
    } else {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    };
    let slice = array.slice(row, 1);
    let slice = match (array.data_type(), unit) {
        (DataType::Timestamp(_, Some(_)), _) => {
            datafusion::arrow::compute::cast(&slice, &DataType::Timestamp(unit, None)).ok()?
        }
        _ => slice,
    };
    let c = datafusion::arrow::compute::cast(&slice, &target).ok()?;
    if is_time {
        Some(
            c.as_primitive::<datafusion::arrow::datatypes::Time64MicrosecondType>()
                .value(0),
        )
    } else {
        Some(
            c.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
        )
    }
}

/// Decodes a binary parameter of type `ty` into its text form.
pub fn binary_param_text(bytes: &[u8], ty: &Type) -> Option<String> {
    let be = |n: usize| -> Option<&[u8]> { bytes.get(..n) };
    Some(match *ty {
        Type::BOOL => (if bytes.first()? != &0 { "true" } else { "false" }).to_string(),
        Type::INT2 => i16::from_be_bytes(be(2)?.try_into().ok()?).to_string(),
        Type::INT4 | Type::OID => i32::from_be_bytes(be(4)?.try_into().ok()?).to_string(),
        Type::INT8 => i64::from_be_bytes(be(8)?.try_into().ok()?).to_string(),
        Type::FLOAT4 => f32::from_be_bytes(be(4)?.try_into().ok()?).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(be(8)?.try_into().ok()?).to_string(),
        Type::NUMERIC => {
            let d = <rust_decimal::Decimal as postgres_types::FromSql>::from_sql(&Type::NUMERIC, bytes).ok()?;
            d.to_string()
        }
        Type::UUID => {
            let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if h.len() != 32 {
                return None;
            }
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        Type::BYTEA => {
            let mut s = String::from("\\x");
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
        Type::JSONB => String::from_utf8(bytes.get(1..)?.to_vec()).ok()?,
        Type::DATE => {
            let d = i32::from_be_bytes(be(4)?.try_into().ok()?) as i64 + PG_EPOCH_DAYS;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
            epoch
                .checked_add_signed(chrono::TimeDelta::days(d))?
                .format("%Y-%m-%d")
                .to_string()
        }
        Type::TIME => crate::serve::text::time(i64::from_be_bytes(be(8)?.try_into().ok()?)),
        Type::TIMESTAMP => {
            crate::serve::text::timestamp(i64::from_be_bytes(be(8)?.try_into().ok()?) + PG_EPOCH_MICROS, false)
        }
        Type::TIMESTAMPTZ => {
            crate::serve::text::timestamp(i64::from_be_bytes(be(8)?.try_into().ok()?) + PG_EPOCH_MICROS, true)
        }
        Type::INTERVAL => {
            let micros = i64::from_be_bytes(be(8)?.try_into().ok()?);
            let days = i32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
            let months = i32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?);
            crate::serve::text::interval(months as i64, days as i64, micros)
        }
        _ if matches!(ty.kind(), postgres_types::Kind::Array(_)) => {
            let postgres_types::Kind::Array(elem) = ty.kind() else {
                unreachable!()
            };
            let ndim = i32::from_be_bytes(be(4)?.try_into().ok()?);
            if ndim == 0 {
                return Some("{}".into());
            }
            let len = i32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
            let mut pos = 20;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                let l = i32::from_be_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?);
                pos += 4;
                if l < 0 {
                    items.push("NULL".to_string());
                } else {
                    let v = binary_param_text(bytes.get(pos..pos + l as usize)?, elem)?;
                    pos += l as usize;
                    items.push(format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")));
                }
            }
            format!("{{{}}}", items.join(","))
        }
        _ => String::from_utf8(bytes.to_vec()).ok()?,
    })
}
