//! Coercion of computed values into a column's SQL type, with PostgreSQL's errors:
//! 22P02 (invalid input syntax), 22003 (out of range), 22001 (too long for varchar(n)).
//!
//! DataFusion computes INSERT / UPDATE values with whatever types the expressions have
//! (`VALUES (1, 'x')` is Int64, Utf8); this module turns them into the stored Arrow type of each
//! column, parsing PostgreSQL's text forms (bytea `\x..`, arrays `{..}`, uuid, jsonb, intervals)
//! itself.
//!
//! DataFusion types a literal such as `2.5` as a float where PostgreSQL has an exact numeric, so
//! floats stored into NUMERIC go through their shortest decimal text (`0.1` stays `0.1`), and
//! floats stored into integers are rounded (half away from zero), not truncated.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BinaryBuilder, GenericListArray, StringArray, StringBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType};
use datafusion::arrow::util::display::FormatOptions;

use crate::catalog::SqlType;
use crate::error::{Error, Result, SqlState};

/// Converts `array` to the Arrow type of `ty`, checking the SQL type's constraints.
pub fn coerce(array: &ArrayRef, ty: &SqlType) -> Result<ArrayRef> {
    let target = ty.arrow_type();
    if array.data_type() == &DataType::Null {
        return Ok(new_null_array(&target, array.len()));
    }
    let array = normalize_strings(array)?;
    let out = match ty {
        SqlType::Bytea if is_string(array.data_type()) => parse_bytea(array.as_string::<i32>())?,
        SqlType::Uuid => map_strings(&to_text(&array)?, parse_uuid, "uuid")?,
        SqlType::Jsonb => map_strings(&to_text(&array)?, normalize_json, "json")?,
        SqlType::Array(elem) if is_string(array.data_type()) => parse_pg_arrays(array.as_string::<i32>(), elem)?,
        SqlType::Array(elem) => {
            if let DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) = array.data_type() {
                let list = cast(
                    &array,
                    &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(
                        array_elem_type(&array),
                        true,
                    ))),
                )?;
                let list = list.as_list::<i32>();
                let values = coerce(list.values(), elem)?;
                Arc::new(GenericListArray::<i32>::new(
                    Arc::new(elem.arrow_field("item", true)),
                    list.offsets().clone(),
                    values,
                    list.nulls().cloned(),
                ))
            } else {
                return Err(Error::user(
                    SqlState::DATATYPE_MISMATCH,
                    format!(
                        "cannot use a value of type {} as {}",
                        SqlType::from_arrow(array.data_type()).name(),
                        ty.name()
                    ),
                ));
            }
        }
        SqlType::Bool if is_string(array.data_type()) => map_bool(array.as_string::<i32>())?,
        SqlType::Interval if is_string(array.data_type()) => parse_intervals(array.as_string::<i32>())?,
        SqlType::Numeric(_) if is_float(array.data_type()) => {
            let text = float_text(&array)?;
            cast(&text, &target).map_err(|e| reword(e, ty))?
        }
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 if is_float(array.data_type()) => {
            let floats = cast(&array, &DataType::Float64)?;
            let rounded: datafusion::arrow::array::Float64Array =
                floats.as_primitive::<Float64Type>().unary(|v| v.round());
            cast(&(Arc::new(rounded) as ArrayRef), &target).map_err(|e| reword(e, ty))?
        }
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 if is_string(array.data_type()) => {
            cast(&array, &target).map_err(|e| integer_text_error(array.as_string::<i32>(), ty, e))?
        }
        SqlType::Date | SqlType::Time | SqlType::Timestamp | SqlType::Timestamptz if is_string(array.data_type()) => {
            cast(&array, &target).map_err(|_| datetime_error(array.as_string::<i32>(), &target, ty))?
        }
        _ => cast(&array, &target).map_err(|e| reword(e, ty))?,
    };
    if let SqlType::Varchar(Some(n)) = ty {
        check_length(&out, *n)?;
    }
    Ok(out)
}

fn array_elem_type(array: &ArrayRef) -> DataType {
    match array.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => f.data_type().clone(),
        other => other.clone(),
    }
}

fn is_string(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8)
}

fn is_float(dt: &DataType) -> bool {
    matches!(dt, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

/// Floats as their shortest round-tripping decimal text (no exponent), for exact NUMERIC input.
fn float_text(array: &ArrayRef) -> Result<ArrayRef> {
    let floats = cast(array, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    let single = matches!(array.data_type(), DataType::Float32 | DataType::Float16);
    let mut b = StringBuilder::with_capacity(floats.len(), floats.len() * 8);
    for v in floats.iter() {
        match v {
            None => b.append_null(),
            Some(v) if !v.is_finite() => {
                return Err(Error::user(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("cannot convert {v} to numeric"),
                ))
            }
            Some(v) if single => b.append_value(format!("{}", v as f32)),
            Some(v) => b.append_value(format!("{v}")),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// The error for text that is not a valid integer of type `ty`: 22003 when it is a well-formed
/// integer that does not fit (`'99999'` as smallint), else 22P02.
fn integer_text_error(strings: &StringArray, ty: &SqlType, e: Error) -> Error {
    let well_formed = |s: &str| {
        let t = s.trim();
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
    };
    let target = ty.arrow_type();
    let bad = strings.iter().flatten().find(|s| {
        let one: ArrayRef = Arc::new(StringArray::from(vec![*s]));
        cast(&one, &target).is_err()
    });
    match bad {
        Some(b) if well_formed(b) => Error::user(
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value \"{}\" is out of range for type {}", b.trim(), ty.name()),
        ),
        Some(b) => Error::user(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {}: \"{b}\"", ty.name()),
        ),
        None => reword(e, ty),
    }
}

/// The error for text that is not a valid date / time / timestamp: 22008 when it has the shape
/// of a date but a field is out of range (`2023-02-30`), else 22007.
fn datetime_error(strings: &StringArray, target: &DataType, ty: &SqlType) -> Error {
    let bad = strings
        .iter()
        .flatten()
        .find(|s| {
            let one: ArrayRef = Arc::new(StringArray::from(vec![*s]));
            cast(&one, target).is_err()
        })
        .unwrap_or_default();
    let date_part = bad.split([' ', 'T']).next().unwrap_or("");
    let fields: Vec<&str> = date_part.split('-').collect();
    let date_shaped = fields.len() == 3
        && fields
            .iter()
            .all(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()));
    if date_shaped {
        Error::user(
            SqlState::DATETIME_FIELD_OVERFLOW,
            format!("date/time field value out of range: \"{bad}\""),
        )
    } else {
        Error::user(
            SqlState::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type {}: \"{bad}\"", ty.name()),
        )
    }
}

fn parse_intervals(strings: &StringArray) -> Result<ArrayRef> {
    let mut out = Vec::with_capacity(strings.len());
    for v in strings.iter() {
        out.push(match v {
            None => None,
            Some(s) => Some(parse_interval(s).ok_or_else(|| {
                Error::user(
                    SqlState::INVALID_DATETIME_FORMAT,
                    format!("invalid input syntax for type interval: \"{s}\""),
                )
            })?),
        });
    }
    Ok(Arc::new(datafusion::arrow::array::IntervalMonthDayNanoArray::from(out)))
}

/// PostgreSQL's interval input: `1 year 2 mons 3 days 04:05:06.5`, `-1 day`, `90 minutes`,
/// `@ 2 hours ago`, `1.5 days`, a bare number of seconds; ISO 8601 (`P1DT2H`) via Arrow.
pub fn parse_interval(s: &str) -> Option<IntervalMonthDayNano> {
    let text = s.trim().to_ascii_lowercase();
    if text.starts_with('p') {
        let one: ArrayRef = Arc::new(StringArray::from(vec![s]));
        let v = cast(
            &one,
            &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
        )
        .ok()?;
        return Some(v.as_primitive::<IntervalMonthDayNanoType>().value(0));
    }
    let text = text.strip_prefix('@').unwrap_or(&text).trim().to_string();
    let (text, ago) = match text.strip_suffix("ago") {
        Some(t) => (t.trim().to_string(), true),
        None => (text, false),
    };
    let mut months: f64 = 0.0;
    let mut days: f64 = 0.0;
    let mut micros: f64 = 0.0;
    let mut tokens = text.split_whitespace().peekable();
    let mut any = false;
    while let Some(tok) = tokens.next() {
        any = true;
        if tok.contains(':') {
            let (neg, t) = match tok.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, tok.strip_prefix('+').unwrap_or(tok)),
            };
            let parts: Vec<&str> = t.split(':').collect();
            if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
                return None;
            }
            let h: f64 = parts[0].parse::<u64>().ok()? as f64;
            let m: f64 = parts[1].parse::<u64>().ok()? as f64;
            let sec: f64 = match parts.get(2) {
                Some(p) => p.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?,
                None => 0.0,
            };
            let v = (h * 3600.0 + m * 60.0 + sec) * 1e6;
            micros += if neg { -v } else { v };
            continue;
        }
        // A number, with its unit either attached (`3d`) or as the next token.
        let split = tok.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(tok.len());
        let (num, unit) = tok.split_at(split);
        let n: f64 = num.parse().ok().filter(|v: &f64| v.is_finite())?;
        let unit = if unit.is_empty() {
            match tokens.peek() {
                Some(u) if u.chars().all(|c| c.is_ascii_alphabetic()) => tokens.next().unwrap_or(""),
                _ => "second",
            }
        } else {
            unit
        };
        match unit {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => micros += n,
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => micros += n * 1e3,
            "second" | "seconds" | "s" | "sec" | "secs" => micros += n * 1e6,
            "minute" | "minutes" | "m" | "min" | "mins" => micros += n * 60e6,
            "hour" | "hours" | "h" | "hr" | "hrs" => micros += n * 3600e6,
            "day" | "days" | "d" => days += n,
            "week" | "weeks" | "w" => days += n * 7.0,
            "month" | "months" | "mon" | "mons" => months += n,
            "year" | "years" | "y" | "yr" | "yrs" => months += n * 12.0,
            "decade" | "decades" => months += n * 120.0,
            "century" | "centuries" => months += n * 1200.0,
            "millennium" | "millennia" | "millenniums" => months += n * 12000.0,
            _ => return None,
        }
    }
    if !any {
        return None;
    }
    // Fractions cascade down as PostgreSQL does: a month is 30 days, a day 24 hours.
    let whole_months = months.trunc();
    days += (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    micros += (days - whole_days) * 86_400e6;
    let sign = if ago { -1.0 } else { 1.0 };
    let (m, d, us) = (whole_months * sign, whole_days * sign, micros.round() * sign);
    if m.abs() > i32::MAX as f64 || d.abs() > i32::MAX as f64 || us.abs() > 9.2e15 {
        return None;
    }
    Some(IntervalMonthDayNano::new(m as i32, d as i32, us as i64 * 1000))
}

/// Utf8View / LargeUtf8 / Dictionary become plain Utf8.
fn normalize_strings(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(..) => cast(array, &DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => cast(array, &DataType::Binary),
        _ => Ok(array.clone()),
    }
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let opts = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    Ok(cast_with_options(array, to, &opts)?)
}

fn reword(e: Error, ty: &SqlType) -> Error {
    let msg = e.to_string();
    let numeric = matches!(
        ty,
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Float4 | SqlType::Float8 | SqlType::Numeric(_)
    );
    let out_of_range = msg.contains("too large")
        || msg.contains("verflow")
        || msg.contains("Can't cast value")
        || msg.contains("out of range")
        || msg.contains("precision");
    if numeric && out_of_range {
        return Error::user(
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value out of range for type {}: {msg}", ty.name()),
        );
    }
    match e {
        Error::User { state, .. } if state == SqlState::NUMERIC_VALUE_OUT_OF_RANGE => Error::user(state, msg),
        Error::User { state, .. }
            if state == SqlState::INVALID_TEXT_REPRESENTATION || state == SqlState::DATA_EXCEPTION =>
        {
            Error::user(
                SqlState::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type {}: {msg}", ty.name()),
            )
        }
        other => other,
    }
}

/// Renders any array as text (PostgreSQL text forms are what uuid / jsonb parse).
fn to_text(array: &ArrayRef) -> Result<ArrayRef> {
    if is_string(array.data_type()) {
        return Ok(array.clone());
    }
    cast(array, &DataType::Utf8)
}

fn map_strings(array: &ArrayRef, f: fn(&str) -> Option<String>, what: &str) -> Result<ArrayRef> {
    let strings = array.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    for v in strings.iter() {
        match v {
            None => b.append_null(),
            Some(s) => match f(s) {
                Some(n) => b.append_value(n),
                None => {
                    return Err(Error::user(
                        SqlState::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input syntax for type {what}: \"{s}\""),
                    ))
                }
            },
        }
    }
    Ok(Arc::new(b.finish()))
}

/// Canonical lower-case hyphenated form, accepting PostgreSQL's input variants.
pub fn parse_uuid(s: &str) -> Option<String> {
    let t = s.trim().trim_start_matches('{').trim_end_matches('}');
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Re-serialises JSON text (validating it), as jsonb does.
pub fn normalize_json(s: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(jsonb_text(&v))
}

/// jsonb's text form: `{"a": 1, "b": [1, 2]}` (a space after `:` and `,`).
pub fn jsonb_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(jsonb_text).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(map) => {
            let mut keys: Vec<_> = map.iter().collect();
            // jsonb orders keys by length, then bytewise.
            keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(b.0)));
            format!(
                "{{{}}}",
                keys.iter()
                    .map(|(k, v)| format!("{}: {}", serde_json::Value::String((*k).clone()), jsonb_text(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        other => other.to_string(),
    }
}

fn map_bool(strings: &StringArray) -> Result<ArrayRef> {
    let mut out = Vec::with_capacity(strings.len());
    for v in strings.iter() {
        out.push(match v {
            None => None,
            Some(s) => Some(parse_bool(s).ok_or_else(|| {
                Error::user(
                    SqlState::INVALID_TEXT_REPRESENTATION,
                    format!("invalid input syntax for type boolean: \"{s}\""),
                )
            })?),
        });
    }
    Ok(Arc::new(datafusion::arrow::array::BooleanArray::from(out)))
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_bytea(strings: &StringArray) -> Result<ArrayRef> {
    let mut b = BinaryBuilder::new();
    for v in strings.iter() {
        match v {
            None => b.append_null(),
            Some(s) => b.append_value(decode_bytea(s)?),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// PostgreSQL bytea input: `\x` hex, or the escape format (`\\`, `\ooo`).
pub fn decode_bytea(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::user(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type bytea: \"{s}\""),
        )
    };
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        // PostgreSQL reports bad hex data as 22023, not 22P02.
        let bad_hex = |what: String| Error::user(SqlState::INVALID_PARAMETER_VALUE, what);
        let digits: Vec<u8> = hex.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        if let Some(c) = digits.iter().find(|c| !c.is_ascii_hexdigit()) {
            return Err(bad_hex(format!("invalid hexadecimal digit: \"{}\"", *c as char)));
        }
        if !digits.len().is_multiple_of(2) {
            return Err(bad_hex("invalid hexadecimal data: odd number of digits".into()));
        }
        return digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).map_err(|_| bad())?, 16).map_err(|_| bad()))
            .collect();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 4]).map_err(|_| bad())?, 8)
                    .map_err(|_| bad())?;
                out.push(v);
                i += 4;
            } else {
                return Err(bad());
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn parse_pg_arrays(strings: &StringArray, elem: &SqlType) -> Result<ArrayRef> {
    let mut offsets = vec![0usize];
    let mut items: Vec<Option<String>> = Vec::new();
    let mut nulls = Vec::with_capacity(strings.len());
    for v in strings.iter() {
        match v {
            None => {
                nulls.push(false);
            }
            Some(s) => {
                items.extend(parse_array_literal(s)?);
                nulls.push(true);
            }
        }
        offsets.push(items.len());
    }
    let values: ArrayRef = Arc::new(StringArray::from(items));
    let values = coerce(&values, elem)?;
    let lengths = offsets.windows(2).map(|w| w[1] - w[0]);
    Ok(Arc::new(GenericListArray::<i32>::new(
        Arc::new(elem.arrow_field("item", true)),
        OffsetBuffer::from_lengths(lengths),
        values,
        Some(nulls.into()),
    )))
}

/// Parses a one-dimensional PostgreSQL array literal: `{1,2,NULL,"a b"}`.
pub fn parse_array_literal(s: &str) -> Result<Vec<Option<String>>> {
    let bad = |why: &str| {
        Error::user(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{s}\" ({why})"),
        )
    };
    let t = s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| bad("array value must start with \"{\""))?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.push(chars.next().ok_or_else(|| bad("unterminated escape"))?),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(bad("unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' {
                    return Err(bad("multi-dimensional arrays are not supported"));
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(bad("unexpected character")),
        }
    }
    Ok(out)
}

fn check_length(array: &ArrayRef, n: u32) -> Result<()> {
    for v in array.as_string::<i32>().iter().flatten() {
        if v.chars().count() > n as usize {
            return Err(Error::user(
                SqlState::STRING_DATA_RIGHT_TRUNCATION,
                format!("value too long for type character varying({n})"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn errors_carry_postgres_sqlstates() {
        let big: ArrayRef = Arc::new(Int64Array::from(vec![3_000_000_000]));
        assert_eq!(
            coerce(&big, &SqlType::Int4).unwrap_err().code(),
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE
        );
        let junk: ArrayRef = Arc::new(StringArray::from(vec!["abc"]));
        assert_eq!(
            coerce(&junk, &SqlType::Int4).unwrap_err().code(),
            SqlState::INVALID_TEXT_REPRESENTATION
        );
        let long: ArrayRef = Arc::new(StringArray::from(vec!["abcd"]));
        assert_eq!(
            coerce(&long, &SqlType::Varchar(Some(3))).unwrap_err().code(),
            SqlState::STRING_DATA_RIGHT_TRUNCATION
        );
        assert_eq!(
            coerce(&junk, &SqlType::Uuid).unwrap_err().code(),
            SqlState::INVALID_TEXT_REPRESENTATION
        );
    }

    #[test]
    fn intervals_parse_as_postgres_does() {
        let iv = |s: &str| parse_interval(s).map(|v| (v.months, v.days, v.nanoseconds / 1000));
        assert_eq!(iv("1 year 2 months 3 days 04:05:06"), Some((14, 3, 14_706_000_000)));
        assert_eq!(iv("1 day"), Some((0, 1, 0)));
        assert_eq!(iv("-1 day 02:00"), Some((0, -1, 7_200_000_000)));
        assert_eq!(iv("@ 2 hours ago"), Some((0, 0, -7_200_000_000)));
        assert_eq!(iv("1.5 days"), Some((0, 1, 43_200_000_000)));
        assert_eq!(iv("90"), Some((0, 0, 90_000_000)));
        assert_eq!(iv("3d 4h"), Some((0, 3, 14_400_000_000)));
        assert_eq!(iv("forever"), None);
        assert_eq!(iv(""), None);
    }

    #[test]
    fn floats_into_numeric_and_integers() {
        let f: ArrayRef = Arc::new(datafusion::arrow::array::Float64Array::from(vec![
            123456789.123,
            2.5,
            -2.5,
        ]));
        let n = coerce(&f, &SqlType::Numeric(None)).unwrap();
        assert_eq!(crate::serve::text::format_cell(&n, 0).unwrap(), "123456789.123");
        let i = coerce(&f, &SqlType::Int4).unwrap();
        assert_eq!(crate::serve::text::format_cell(&i, 1).unwrap(), "3");
        assert_eq!(crate::serve::text::format_cell(&i, 2).unwrap(), "-3");
    }

    #[test]
    fn postgres_text_forms() {
        assert_eq!(decode_bytea("\\x0aff").unwrap(), vec![10, 255]);
        assert_eq!(decode_bytea("a\\\\b\\001").unwrap(), vec![b'a', b'\\', b'b', 1]);
        assert_eq!(
            parse_array_literal("{1, NULL,\"x,y\"}").unwrap(),
            vec![Some("1".into()), None, Some("x,y".into())]
        );
        assert_eq!(
            parse_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            normalize_json("{\"bb\":1,\"a\":[1,2]}").unwrap(),
            "{\"a\": [1, 2], \"bb\": 1}"
        );
    }
}
