//! Window starts computed on the timestamps' integers: the `date_bin(INTERVAL 'N microseconds',
//! col, TIMESTAMP '1970-01-01')` that `TUMBLE` and `HOP` are rewritten into (`sql::windows`)
//! becomes, in a view's operators, `col - col mod N` on the column's microseconds.
//!
//! DataFusion's `date_bin` is general (months, any origin, any unit): per value it converts the
//! timestamp to nanoseconds, computes the distance to the origin and back (about 95
//! instructions per value; Nexmark q5 computes five window starts per bid, 4.6 % of its
//! run). For a stride of whole microseconds without months, an origin at the Unix epoch and a
//! microsecond column, the start is the value floored to a multiple of the stride, which is
//! what `date_bin` computes: the same values, NULLs where the column is NULL. Only operators'
//! expressions are rewritten ([`fast`], from `Exprs::new`); EXPLAIN shows the expression as
//! written.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility,
};

use crate::error::Result;

/// `expr` with every `date_bin` of a microsecond column by whole microseconds from the Unix
/// epoch computed on the integers (see the module doc); anything else as it is.
pub fn fast(expr: &Expr, input: &DFSchema) -> Result<Expr> {
    Ok(expr
        .clone()
        .transform_up(|e| {
            let Some((column, stride, tz)) = window_start(&e, input) else {
                return Ok(Transformed::no(e));
            };
            let udf = Arc::new(start_udf(stride, tz));
            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                udf,
                vec![column],
            ))))
        })?
        .data)
}

/// The column, the stride in microseconds and the column's time zone of a `date_bin` that
/// [`fast`] computes on the integers.
fn window_start(e: &Expr, input: &DFSchema) -> Option<(Expr, i64, Option<Arc<str>>)> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.func.name() != "date_bin" || f.args.len() != 3 {
        return None;
    }
    let Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(stride)), _) = &f.args[0] else {
        return None;
    };
    let origin_is_epoch = matches!(
        &f.args[2],
        Expr::Literal(ScalarValue::TimestampNanosecond(Some(0), _), _)
            | Expr::Literal(ScalarValue::TimestampMicrosecond(Some(0), _), _)
    );
    let DataType::Timestamp(TimeUnit::Microsecond, tz) = f.args[1].get_type(input).ok()? else {
        return None;
    };
    let nanos = (stride.days as i128) * 86_400_000_000_000 + stride.nanoseconds as i128;
    // A stride of months, not positive, beyond 64 bits of nanoseconds (`date_bin` refuses
    // it) or not whole microseconds stays `date_bin`.
    if !origin_is_epoch || stride.months != 0 || nanos <= 0 || nanos > i64::MAX as i128 || nanos % 1000 != 0 {
        return None;
    }
    let micros = i64::try_from(nanos / 1000).ok()?;
    Some((f.args[1].clone(), micros, tz))
}

/// `window_start(col)`: `col` floored to a multiple of `stride` microseconds; NULL where
/// `date_bin` gives NULL (a value whose nanoseconds overflow 64 bits).
fn start_udf(stride: i64, tz: Option<Arc<str>>) -> ScalarUDF {
    let ty = DataType::Timestamp(TimeUnit::Microsecond, tz.clone());
    let signature = Signature::new(TypeSignature::Exact(vec![ty.clone()]), Volatility::Immutable);
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "window_start",
        signature,
        ty,
        Arc::new(move |args: &[ColumnarValue]| {
            let floor = |v: i64| v.checked_mul(1000).map(|_| v - v.rem_euclid(stride));
            match &args[0] {
                ColumnarValue::Array(a) => {
                    let starts = a
                        .as_primitive::<TimestampMicrosecondType>()
                        .unary_opt::<_, TimestampMicrosecondType>(floor)
                        .with_timezone_opt(tz.clone());
                    Ok(ColumnarValue::Array(Arc::new(starts) as Arc<dyn Array>))
                }
                ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, zone)) => Ok(ColumnarValue::Scalar(
                    ScalarValue::TimestampMicrosecond(v.and_then(floor), zone.clone()),
                )),
                other => Err(datafusion::error::DataFusionError::Internal(format!(
                    "window_start of {}",
                    other.data_type()
                ))),
            }
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::ops::Exprs;
    use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::prelude::{col, lit};
    use rand::{Rng, SeedableRng};

    /// Random timestamps (before and after 1970, beyond what nanoseconds hold, NULLs), strides
    /// from a microsecond to over a day, with and without time zones: the integer window start
    /// equals DataFusion's `date_bin`, and only the forms it covers are rewritten.
    #[test]
    fn window_starts_equal_date_bin() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let values: Vec<Option<i64>> = (0..5000)
            .map(|i| (i % 17 != 0).then(|| rng.random_range(-4_000_000_000_000_000i64..4_000_000_000_000_000)))
            .collect();
        for tz in [None, Some("+00:00"), Some("Europe/Paris")] {
            let ty = DataType::Timestamp(TimeUnit::Microsecond, tz.map(Arc::from));
            let schema = Arc::new(Schema::new(vec![Field::new("t", ty, true)]));
            let df = DFSchema::try_from(schema.as_ref().clone()).unwrap();
            let array = TimestampMicrosecondArray::from(values.clone()).with_timezone_opt(tz);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap();
            for micros in [1i64, 7, 1000, 10_000_000, 86_400_000_000 + 3_000_000] {
                let sql_like = datafusion::functions::datetime::expr_fn::date_bin(
                    lit(ScalarValue::new_interval_mdn(0, 0, micros * 1000)),
                    col("t"),
                    lit(ScalarValue::TimestampNanosecond(Some(0), None)),
                );
                let rewritten = fast(&sql_like, &df).unwrap();
                assert!(rewritten.to_string().contains("window_start"), "{micros}: {rewritten}");
                let create = |e: &Expr| {
                    let props = datafusion::logical_expr::execution_props::ExecutionProps::new();
                    let ctx = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
                    datafusion::physical_expr::create_physical_expr(e, &df, &props, &ctx).unwrap()
                };
                let want = create(&sql_like)
                    .evaluate(&batch)
                    .unwrap()
                    .into_array(batch.num_rows())
                    .unwrap();
                let got = Exprs::new(std::slice::from_ref(&sql_like), &df)
                    .unwrap()
                    .eval(&batch)
                    .unwrap();
                assert_eq!(got[0].as_ref(), want.as_ref(), "stride {micros} µs, zone {tz:?}");
                assert_eq!(got[0].data_type(), want.data_type());
            }
            // A stride in months, not whole microseconds, negative or too large for
            // `date_bin` (200,000 days) stays date_bin.
            for stride in [
                ScalarValue::new_interval_mdn(1, 0, 0),
                ScalarValue::new_interval_mdn(0, 0, 1500),
                ScalarValue::new_interval_mdn(0, 0, -1000),
                ScalarValue::new_interval_mdn(0, 200_000, 0),
            ] {
                let e = datafusion::functions::datetime::expr_fn::date_bin(
                    lit(stride),
                    col("t"),
                    lit(ScalarValue::TimestampNanosecond(Some(0), None)),
                );
                assert!(!fast(&e, &df).unwrap().to_string().contains("window_start"), "{e}");
            }
        }
    }
}
