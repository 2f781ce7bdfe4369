//! `freshet_catalog`: Freshet's own system tables.
//!
//! - `materialized_views`: every view with its row count, state size (bytes of operator state
//!   and rows), the epoch the statement reads and that epoch's commit time.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use crate::dataflow::operator::decode_i64;
use crate::query::context::QueryEnv;
use crate::state::keys;

pub const SCHEMA: &str = "freshet_catalog";
pub const TABLES: &[&str] = &["materialized_views"];

fn external(e: crate::error::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

pub fn system_table(env: &QueryEnv, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    if name != "materialized_views" {
        return Ok(None);
    }
    let committed = &env.view.committed;
    let mut schemas = Vec::new();
    let mut names = Vec::new();
    let mut defs = Vec::new();
    let mut rows = Vec::new();
    let mut state = Vec::new();
    let mut epochs = Vec::new();
    let mut times = Vec::new();
    for v in committed.catalog.views_in_order() {
        let (from, to) = keys::view_range(v.def.id);
        let mut count = 0i64;
        let mut bytes = 0i64;
        for kv in committed.snapshot.scan(&from, &to) {
            let (k, val) = kv.map_err(external)?;
            count += decode_i64(&val);
            bytes += (k.len() + val.len()) as i64;
        }
        let (from, to) = keys::operator_range(v.def.id);
        for kv in committed.snapshot.scan(&from, &to) {
            let (k, val) = kv.map_err(external)?;
            bytes += (k.len() + val.len()) as i64;
        }
        schemas.push(v.def.schema.clone());
        names.push(v.def.name.clone());
        defs.push(v.def.query.clone());
        rows.push(count);
        state.push(bytes);
        epochs.push(committed.epoch as i64);
        times.push(committed.committed_at_micros);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("schema", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("row_count", DataType::Int64, false),
        Field::new("state_bytes", DataType::Int64, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(schemas)),
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(defs)),
        Arc::new(Int64Array::from(rows)),
        Arc::new(Int64Array::from(state)),
        Arc::new(Int64Array::from(epochs)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("+00:00")),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
}
