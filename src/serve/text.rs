//! PostgreSQL's text representation of Arrow values (pgwire text format, COPY, HTTP JSON).

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    IntervalUnit, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

use crate::catalog::types::{DEFAULT_NUMERIC_SCALE, MAX_NUMERIC_PRECISION};

/// The text of `array[row]`, `None` for NULL.
pub fn format_cell(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => if array.as_boolean().value(row) { "t" } else { "f" }.to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64, true),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), false),
        DataType::Decimal128(p, s) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            decimal(v, *s, *p == MAX_NUMERIC_PRECISION && *s == DEFAULT_NUMERIC_SCALE)
        }
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        DataType::Binary => bytea(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => bytea(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => bytea(array.as_binary_view().value(row)),
        DataType::Date32 => date(array.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, row, unit);
            timestamp(micros, tz.is_some())
        }
        DataType::Time64(unit) | DataType::Time32(unit) => {
            let micros = time_micros(array, row, unit);
            time(micros)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array
                .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                .value(row);
            interval(v.months as i64, v.days as i64, v.nanoseconds / 1000)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array
                .as_primitive::<datafusion::arrow::datatypes::IntervalDayTimeType>()
                .value(row);
            interval(0, v.days as i64, v.milliseconds as i64 * 1000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let v = array
                .as_primitive::<datafusion::arrow::datatypes::IntervalYearMonthType>()
                .value(row);
            interval(v as i64, 0, 0)
        }
        DataType::List(_) => list(&array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(row)),
        // Dictionaries, durations and the rest: DataFusion's scalar display.
        _ => {
            let v = datafusion::common::ScalarValue::try_from_array(array, row).ok()?;
            if let datafusion::common::ScalarValue::Dictionary(_, inner) = &v {
                return inner.to_array().ok().and_then(|a| format_cell(&a, 0));
            }
            v.to_string()
        }
    })
}

fn float(v: f64, single: bool) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // PostgreSQL prints the shortest digits that round-trip, in `%g` style: positional for
        // decimal exponents from -4 up to 14 (float8) or 5 (float4), else `1.5e+20`.
        let (sci, max_exp) = if single {
            (format!("{:e}", v as f32), 6)
        } else {
            (format!("{v:e}"), 15)
        };
        let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if (-4..max_exp).contains(&exp) {
            if single {
                format!("{}", v as f32)
            } else {
                format!("{v}")
            }
        } else {
            format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        }
    }
}

fn decimal(v: i128, scale: i8, trim: bool) -> String {
    let neg = v < 0;
    let abs = v.unsigned_abs().to_string();
    let s = scale.max(0) as usize;
    let (int, frac) = if abs.len() > s {
        (abs[..abs.len() - s].to_string(), abs[abs.len() - s..].to_string())
    } else {
        ("0".to_string(), format!("{}{}", "0".repeat(s - abs.len()), abs))
    };
    let frac = if trim {
        frac.trim_end_matches('0').to_string()
    } else {
        frac
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    out
}

fn bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn date(days: i64) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    match epoch.checked_add_signed(TimeDelta::days(days)) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

fn timestamp_micros(array: &ArrayRef, row: usize, unit: &TimeUnit) -> i64 {
    use datafusion::arrow::datatypes::*;
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row) * 1000,
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1000),
    }
}

fn time_micros(array: &ArrayRef, row: usize, unit: &TimeUnit) -> i64 {
    use datafusion::arrow::datatypes::*;
    match unit {
        TimeUnit::Second => array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000,
        TimeUnit::Millisecond => array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1000,
        TimeUnit::Microsecond => array.as_primitive::<Time64MicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<Time64NanosecondType>().value(row) / 1000,
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+00]`.
pub fn timestamp(micros: i64, with_tz: bool) -> String {
    let Some(dt) = DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    let naive = dt.naive_utc();
    let mut s = naive.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = micros.rem_euclid(1_000_000);
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    if with_tz {
        s.push_str("+00");
    }
    s
}

pub fn time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let t = NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, 0).unwrap_or_default();
    let mut s = t.format("%H:%M:%S").to_string();
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    s
}

/// PostgreSQL's default interval style: `1 year 2 mons 3 days 04:05:06`. As in PostgreSQL's
/// `EncodeInterval`, a positive field after a negative one gets a `+` (`-1 days +02:00:00`), and
/// every value but exactly 1 takes the plural.
pub fn interval(months: i64, days: i64, micros: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let years = months / 12;
    let mons = months % 12;
    for (value, unit) in [(years, "year"), (mons, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && value > 0 {
            out.push('+');
        }
        out.push_str(&format!("{value} {unit}{}", if value != 1 { "s" } else { "" }));
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || micros != 0 {
        if !is_zero {
            out.push(' ');
        }
        let m = micros.unsigned_abs();
        out.push_str(if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        });
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            m / 3_600_000_000,
            (m / 60_000_000) % 60,
            (m / 1_000_000) % 60
        ));
        let frac = m % 1_000_000;
        if frac != 0 {
            out.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
    }
    out
}

fn list(values: &ArrayRef) -> String {
    let items: Vec<String> = (0..values.len())
        .map(|i| match format_cell(values, i) {
            None => "NULL".to_string(),
            Some(s) => {
                let needs_quotes = s.is_empty()
                    || s.eq_ignore_ascii_case("null")
                    || s.chars()
                        .any(|c| matches!(c, '"' | '\\' | '{' | '}' | ',') || c.is_whitespace());
                if needs_quotes {
                    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                } else {
                    s
                }
            }
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text_forms() {
        assert_eq!(decimal(-12345, 2, false), "-123.45");
        assert_eq!(decimal(5, 3, false), "0.005");
        assert_eq!(decimal(15_000_000_000, 10, true), "1.5");
        assert_eq!(
            interval(14, 3, 3_600_000_000 + 1),
            "1 year 2 mons 3 days 01:00:00.000001"
        );
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(interval(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval(-13, 1, -1), "-1 years -1 mons +1 day -00:00:00.000001");
        assert_eq!(interval(0, 1, 0), "1 day");
        assert_eq!(timestamp(1_500_000, true), "1970-01-01 00:00:01.5+00");
        assert_eq!(float(0.1, false), "0.1");
        assert_eq!(float(f64::INFINITY, false), "Infinity");
        assert_eq!(float(1e100, false), "1e+100");
        assert_eq!(float(1e15, false), "1e+15");
        assert_eq!(float(1e14, false), "100000000000000");
        assert_eq!(float(0.0001, false), "0.0001");
        assert_eq!(float(0.00001, false), "1e-05");
        assert_eq!(float(-1.2345678901234568e17, false), "-1.2345678901234568e+17");
        assert_eq!(float(1e6, true), "1e+06");
        assert_eq!(float(100000.0, true), "100000");
        assert_eq!(float(3.4028235e38, true), "3.4028235e+38");
        assert_eq!(bytea(&[1, 255]), "\\x01ff");
    }
}
