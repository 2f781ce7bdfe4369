//! `to_char(timestamp, format)` with the format compiled once per batch, not once per row.
//!
//! DataFusion's `to_char` formats each row through arrow's display, which parses the chrono
//! format string again for every value. This function answers the common call (a timestamp
//! column and a constant format) itself: the format is parsed once, and rows whose local time
//! falls in the same unit as the previous row's, down to the finest field the format shows
//! (the day for `'%Y-%m-%d'`, the minute for `'%H:%M'`), reuse that row's text. Any other call
//! (dates, times, durations, a format column, a format chrono cannot parse, a timestamp out of
//! range) goes to DataFusion's function, so the answers and errors are DataFusion's.

use std::fmt::Write;
use std::sync::Arc;

use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{NaiveDateTime, Offset, TimeZone, Utc};
use datafusion::arrow::array::temporal_conversions::as_datetime;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::functions::datetime::to_char::ToCharFunc;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

/// The `to_char` UDF (replaces DataFusion's, under the same name and alias).
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ToChar::default())
}

#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct ToChar {
    inner: ToCharFunc,
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let [ColumnarValue::Array(values), ColumnarValue::Scalar(ScalarValue::Utf8(Some(format)))] =
            args.args.as_slice()
        {
            if let Some(out) = format_timestamps(values, format) {
                return Ok(ColumnarValue::Array(out));
            }
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// `values` (a timestamp array) formatted with chrono `format`; `None` where DataFusion's
/// function must answer (not a timestamp array, a format that does not parse, a value out of
/// range).
fn format_timestamps(values: &ArrayRef, format: &str) -> Option<ArrayRef> {
    let DataType::Timestamp(unit, tz) = values.data_type() else {
        return None;
    };
    let tz: Option<Tz> = match tz {
        Some(tz) => Some(tz.parse().ok()?),
        None => None,
    };
    let items = StrftimeItems::new(format).parse_to_owned().ok()?;
    match unit {
        TimeUnit::Second => format_typed::<TimestampSecondType>(values, &items, tz),
        TimeUnit::Millisecond => format_typed::<TimestampMillisecondType>(values, &items, tz),
        TimeUnit::Microsecond => format_typed::<TimestampMicrosecondType>(values, &items, tz),
        TimeUnit::Nanosecond => format_typed::<TimestampNanosecondType>(values, &items, tz),
    }
}

fn format_typed<T: ArrowTimestampType>(values: &ArrayRef, items: &[Item<'static>], tz: Option<Tz>) -> Option<ArrayRef> {
    let values = values.as_primitive::<T>();
    let unit = unit_seconds(items);
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    // The previous row's unit of local time (seconds since the epoch / `unit`) and text.
    let mut last: Option<(i64, String)> = None;
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        let utc = as_datetime::<T>(values.value(i))?;
        let local = match &tz {
            Some(tz) => utc + tz.offset_from_utc_datetime(&utc).fix(),
            None => utc,
        };
        let slot = (unit > 0).then(|| local.and_utc().timestamp().div_euclid(unit));
        if let (Some(slot), Some((last_slot, text))) = (slot, &last) {
            if slot == *last_slot {
                out.append_value(text);
                continue;
            }
        }
        let mut text = String::new();
        write_formatted(&mut text, utc, &tz, items).ok()?;
        out.append_value(&text);
        if let Some(slot) = slot {
            last = Some((slot, text));
        }
    }
    Some(Arc::new(out.finish()))
}

/// Writes `utc` (in `tz`, if any) as arrow's display writes it with a format.
fn write_formatted(out: &mut String, utc: NaiveDateTime, tz: &Option<Tz>, items: &[Item<'static>]) -> std::fmt::Result {
    match tz {
        Some(tz) => write!(
            out,
            "{}",
            Utc.from_utc_datetime(&utc)
                .with_timezone(tz)
                .format_with_items(items.iter())
        ),
        None => write!(out, "{}", utc.format_with_items(items.iter())),
    }
}

/// The unit of local time (seconds) within which every value formats the same: the finest
/// field the format shows (a day, an hour, a minute, a second); 0 when it shows a fraction of
/// a second, the time zone or anything else (no two values are assumed equal).
fn unit_seconds(items: &[Item<'_>]) -> i64 {
    const DAY: i64 = 86_400;
    let mut unit = DAY;
    for item in items {
        let field = match item {
            Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => DAY,
            Item::Numeric(n, _) => match n {
                Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Quarter
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal => DAY,
                Numeric::Hour | Numeric::Hour12 => 3_600,
                Numeric::Minute => 60,
                Numeric::Second => 1,
                _ => 0,
            },
            Item::Fixed(f) => match f {
                Fixed::ShortMonthName | Fixed::LongMonthName | Fixed::ShortWeekdayName | Fixed::LongWeekdayName => DAY,
                Fixed::LowerAmPm | Fixed::UpperAmPm => 3_600,
                _ => 0,
            },
            _ => 0,
        };
        unit = unit.min(field);
    }
    unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;
    use rand::{Rng, SeedableRng};

    fn call(f: &dyn ScalarUDFImpl, values: &ArrayRef, format: &str) -> DfResult<ArrayRef> {
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(values.clone()),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into()))),
            ],
            arg_fields: vec![
                Arc::new(Field::new("v", values.data_type().clone(), true)),
                Arc::new(Field::new("f", DataType::Utf8, false)),
            ],
            number_rows: values.len(),
            return_field: Arc::new(Field::new("r", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        f.invoke_with_args(args)?.into_array(values.len())
    }

    /// Random timestamps (runs of nearby values, NULLs, far-apart values), in several time
    /// zones and formats: the same text as DataFusion's `to_char`, row for row.
    #[test]
    fn formats_as_datafusion_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut micros: Vec<Option<i64>> = Vec::new();
        let mut t: i64 = 1_700_000_000_000_000;
        for _ in 0..3000 {
            t += match rng.random_range(0..10) {
                0 => rng.random_range(-10_000_000_000_000..10_000_000_000_000),
                1..=3 => rng.random_range(0..3_600_000_000),
                _ => rng.random_range(0..2_000_000),
            };
            micros.push(rng.random_bool(0.05).then_some(t));
        }
        let formats = [
            "%Y-%m-%d",
            "%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M:%S%.3f",
            "%a %b %e %I %p",
            "%Y %z %Z",
            "week %U/%W/%V day %j, year %G",
            "no fields",
            "%s",
        ];
        let ours = ToChar::default();
        let mut compared = 0;
        for tz in [
            None,
            Some("+00:00"),
            Some("UTC"),
            Some("+05:30"),
            Some("America/New_York"),
            Some("Europe/Paris"),
        ] {
            let values: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone_opt(tz.map(Arc::<str>::from)));
            for format in formats {
                // Both fail alike where DataFusion does (a zone asked of a value without one).
                let text = |r: DfResult<ArrayRef>| r.map(|a| a.as_any().downcast_ref::<StringArray>().unwrap().clone());
                let expected = text(call(&ToCharFunc::new(), &values, format));
                let got = text(call(&ours, &values, format));
                match (&got, &expected) {
                    (Ok(got), Ok(expected)) => assert_eq!(got, expected, "format {format:?}, time zone {tz:?}"),
                    (Err(_), Err(_)) => assert!(tz.is_none() && format.contains('%'), "{format:?} {tz:?}"),
                    _ => panic!("format {format:?}, time zone {tz:?}: {got:?} against {expected:?}"),
                }
                compared += usize::from(expected.is_ok());
            }
        }
        assert!(compared >= 50, "{compared} combinations formatted");
        // Seconds, and a format chrono rejects: DataFusion's error.
        let secs: ArrayRef = Arc::new(TimestampSecondArray::from(vec![
            Some(0),
            None,
            Some(86_399),
            Some(86_400),
        ]));
        assert_eq!(
            call(&ours, &secs, "%Y-%m-%d").unwrap().as_string::<i32>(),
            call(&ToCharFunc::new(), &secs, "%Y-%m-%d").unwrap().as_string::<i32>()
        );
        assert!(call(&ours, &secs, "%Q").is_err());
        assert_eq!(unit_seconds(&StrftimeItems::new("%Y-%m-%d").parse().unwrap()), 86_400);
        assert_eq!(unit_seconds(&StrftimeItems::new("%H:%M").parse().unwrap()), 60);
        assert_eq!(unit_seconds(&StrftimeItems::new("%S%.3f").parse().unwrap()), 0);
    }
}
