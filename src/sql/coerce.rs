//! Coercion of computed values into a column's SQL type, with PostgreSQL's errors:
//! 22P02 (invalid input syntax), 22003 (out of range), 22001 (too long for varchar(n)).
//!
//! DataFusion computes INSERT / UPDATE values with whatever types the expressions have
//! (`VALUES (1, 'x')` is Int64, Utf8); this module turns them into the stored Arrow type of each
//! column, parsing PostgreSQL's text forms (bytea `\x..`, arrays `{..}`, uuid, jsonb) itself.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BinaryBuilder, GenericListArray, StringArray, StringBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
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
        let digits: Vec<u8> = hex.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        if digits.len() % 2 != 0 {
            return Err(bad());
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
            } else if i + 3 < bytes.len() + 0 && bytes[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
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
