//! `freshet_catalog`: Freshet's own system tables.
//!
//! - `materialized_views`: every view with its row count, state size (bytes of operator state
//!   and rows), the epoch the statement reads and that epoch's commit time.
//! - `sources`: every source with its state (starting, snapshotting, streaming, retrying,
//!   failed), the reason of a failure or retry, its committed position and its lag.
//! - `source_tables`: every table captured by a source, with its snapshot progress.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use crate::catalog::Layout;
use crate::dataflow::operator::decode_i64;
use crate::query::context::QueryEnv;
use crate::state::keys;

pub const SCHEMA: &str = "freshet_catalog";
pub const TABLES: &[&str] = &["materialized_views", "sources", "source_tables"];

fn external(e: crate::error::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

pub fn system_table(env: &QueryEnv, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    match name {
        "materialized_views" => materialized_views(env),
        "sources" => sources(env),
        "source_tables" => source_tables(env),
        _ => Ok(None),
    }
}

fn mem_table(schema: Schema, columns: Vec<ArrayRef>) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
}

fn sources(env: &QueryEnv) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let catalog = &env.view.committed.catalog;
    let (mut schemas, mut names, mut connectors, mut states, mut reasons) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut positions, mut lags, mut retries, mut tables, mut options) = (vec![], vec![], vec![], vec![], vec![]);
    for s in catalog.sources() {
        let status = env.sources.get(s.id);
        let ntables = catalog.tables_of_source(s.id).len() as i64;
        schemas.push(s.schema.clone());
        names.push(s.name.clone());
        connectors.push(s.connector.clone());
        states.push(match &status {
            Some(st) => st.state.as_str(),
            // No table to feed: none, or only streams no view reads.
            None if catalog.fed_tables_of_source(s.id).is_empty() => "idle",
            None => "starting",
        });
        reasons.push(status.as_ref().and_then(|st| st.reason.clone()));
        positions.push(status.as_ref().map(|st| st.position.clone()).filter(|p| !p.is_empty()));
        lags.push(status.as_ref().and_then(|st| st.lag_seconds()));
        retries.push(status.as_ref().map(|st| st.retries as i64).unwrap_or(0));
        tables.push(ntables);
        options.push(s.display_options());
    }
    mem_table(
        Schema::new(vec![
            Field::new("schema", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("connector", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("position", DataType::Utf8, true),
            Field::new("lag_seconds", DataType::Float64, true),
            Field::new("retries", DataType::Int64, false),
            Field::new("tables", DataType::Int64, false),
            Field::new("options", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(StringArray::from(schemas)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(connectors)),
            Arc::new(StringArray::from(states)),
            Arc::new(StringArray::from(reasons)),
            Arc::new(StringArray::from(positions)),
            Arc::new(Float64Array::from(lags)),
            Arc::new(Int64Array::from(retries)),
            Arc::new(Int64Array::from(tables)),
            Arc::new(StringArray::from(options)),
        ],
    )
}

fn source_tables(env: &QueryEnv) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let catalog = &env.view.committed.catalog;
    let (mut sources, mut tables, mut upstreams, mut states, mut reasons) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut done, mut estimated, mut rates) = (vec![], vec![], vec![]);
    for s in catalog.sources() {
        let status = env.sources.get(s.id);
        for t in catalog.tables_of_source(s.id) {
            let progress = status.as_ref().and_then(|st| st.tables.get(&t.def.id).cloned());
            sources.push(s.name.clone());
            tables.push(t.def.name.clone());
            upstreams.push(t.def.source.as_ref().map(|x| x.external.clone()).unwrap_or_default());
            states.push(
                progress
                    .as_ref()
                    .map(|p| p.state.clone())
                    .unwrap_or_else(|| "starting".into()),
            );
            reasons.push(progress.as_ref().and_then(|p| p.reason.clone()));
            done.push(progress.as_ref().map(|p| p.snapshot_rows as i64).unwrap_or(0));
            estimated.push(progress.as_ref().map(|p| p.snapshot_rows_estimated as i64).unwrap_or(0));
            rates.push(progress.as_ref().map(|p| p.snapshot_rows_per_second).unwrap_or(0.0));
        }
    }
    mem_table(
        Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("upstream", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("snapshot_rows", DataType::Int64, false),
            Field::new("snapshot_rows_estimated", DataType::Int64, false),
            Field::new("snapshot_rows_per_second", DataType::Float64, false),
        ]),
        vec![
            Arc::new(StringArray::from(sources)),
            Arc::new(StringArray::from(tables)),
            Arc::new(StringArray::from(upstreams)),
            Arc::new(StringArray::from(states)),
            Arc::new(StringArray::from(reasons)),
            Arc::new(Int64Array::from(done)),
            Arc::new(Int64Array::from(estimated)),
            Arc::new(Float64Array::from(rates)),
        ],
    )
}

fn materialized_views(env: &QueryEnv) -> DfResult<Option<Arc<dyn TableProvider>>> {
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
            count += match v.def.layout {
                Layout::Rows => decode_i64(&val),
                Layout::Segments => crate::state::segment::header(&val).map_err(external)?.1 as i64,
                Layout::Groups => crate::dataflow::view_groups::row_count(&val).map_err(external)?,
                // Views are stored; only tables can be streams.
                Layout::Stream => 0,
            };
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
