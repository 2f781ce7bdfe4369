//! `TemporalJoinOp`: the process-time temporal join (`stream JOIN t FOR SYSTEM_TIME AS OF
//! PROCTIME() ON ..`, `crate::sql::temporal`), INNER or LEFT.
//!
//! Each row of the stream side (which only gains rows) is joined, in the epoch it arrives,
//! with the row of table `t` holding its key in the last committed state: the key is `t`'s
//! whole primary key, so a row has at most one partner, found by one point read per distinct
//! key of the batch. Nothing is kept: the stream's rows are not stored (a change of `t` does
//! not revise rows already joined, which is the clause's meaning) and `t`'s changes are not
//! read, so the operator turns insertions into insertions and the view over it is stored as
//! segments.
//!
//! The rows read are kept (`RowCache`, up to [`CACHE_BYTES`]) and used again while the table is
//! not written: the coordinator tells each epoch which committed epoch last wrote each relation
//! (`EpochContext::written`), and a write to the table, or any catalog change, since the oldest
//! kept row was read empties the cache. A dimension table that rarely changes is then read
//! once, not once per batch (Nexmark q13: every batch of bids read most of its 10,000 rows).
//!
//! The table side may be the table's scan under filters, projections and aliases (`JOIN t
//! FOR SYSTEM_TIME AS OF PROCTIME() s ON .. WHERE s.v > 0`): they are applied to the rows
//! read. Equalities beyond the primary key and the ON clause's other conditions are checked
//! on the joined row (for a LEFT join, a row failing them is padded).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast_with_options, filter, filter_record_batch, take, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::Exprs;
use crate::catalog::Table;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator};
use crate::dataflow::Epoch;
use crate::error::{Error, Result};
use crate::state::keys;

/// What the table side applies to the rows it reads, bottom-up.
pub enum Stage {
    Filter(Exprs),
    Project(Exprs, SchemaRef),
}

/// The table side of a temporal join.
pub struct TableSide {
    pub table: Arc<Table>,
    /// The columns of a stored row (all columns, hidden ones included) that the table's scan
    /// outputs, in order.
    pub scan_columns: Vec<usize>,
    pub scan_schema: SchemaRef,
    pub stages: Vec<Stage>,
    /// The join's right input schema (the stages' output).
    pub schema: SchemaRef,
}

/// Bytes of keys and rows a temporal join keeps from one epoch to the next, at most (rows read
/// beyond it are used for their batch only).
pub const CACHE_BYTES: usize = 32 << 20;

/// Table rows read in earlier epochs, by encoded primary key (None: no row), as the table was
/// committed before epoch `since` and, while the table has not been written since, now.
#[derive(Default)]
struct RowCache {
    /// The epoch being computed when the oldest kept row was read.
    since: Epoch,
    rows: datafusion::common::HashMap<Box<[u8]>, Option<Box<[u8]>>>,
    bytes: usize,
}

impl RowCache {
    /// What an entry costs: its key and row, and about as much again for the slot and boxes.
    fn cost(key: &[u8], row: Option<&[u8]>) -> usize {
        key.len() + row.map_or(0, |r| r.len()) + 48
    }

    /// Drops everything if `table` was written at or after `since`; an empty cache starts at
    /// `epoch`.
    fn validate(&mut self, table: u32, ctx: &EpochContext) {
        if !self.rows.is_empty() && ctx.written.last(table) >= self.since {
            self.rows.clear();
            self.bytes = 0;
        }
        if self.rows.is_empty() {
            self.since = ctx.epoch;
        }
    }
}

pub struct TemporalJoinOp {
    /// Over the stream side: the value of each primary-key column of the table, in key order.
    keys: Exprs,
    side: TableSide,
    /// Over the joined row (stream side, then table side): what must hold besides the key.
    residual: Option<Exprs>,
    left_join: bool,
    schema: SchemaRef,
    cache: RowCache,
}

impl TemporalJoinOp {
    pub fn new(keys: Exprs, side: TableSide, residual: Option<Exprs>, left_join: bool, schema: SchemaRef) -> Self {
        TemporalJoinOp {
            keys,
            side,
            residual,
            left_join,
            schema,
            cache: RowCache::default(),
        }
    }

    /// The table rows holding `keys` (one column per primary-key column), after the table
    /// side's stages: the rows, and for each key the row it found (if any).
    fn lookup(&mut self, keys: &[ArrayRef], ctx: &EpochContext) -> Result<(RecordBatch, Vec<Option<u32>>)> {
        let table = self.side.table.clone();
        let types: Vec<DataType> = table
            .def
            .primary_key
            .iter()
            .map(|i| table.full_schema.field(*i).data_type().clone())
            .collect();
        // A key that does not fit the column's type (an out-of-range integer) matches nothing.
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let keys: Vec<ArrayRef> = keys
            .iter()
            .zip(&types)
            .map(|(k, t)| {
                if k.data_type() == t {
                    Ok(k.clone())
                } else {
                    cast_with_options(k, t, &safe)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        let n = keys.first().map(|k| k.len()).unwrap_or(0);
        let encoded = table.key_codec.encode(&keys)?;
        // Distinct keys without NULLs (a NULL equals nothing), in first-occurrence order.
        let mut index: datafusion::common::HashMap<&[u8], u32> = datafusion::common::HashMap::new();
        let mut distinct: Vec<&[u8]> = Vec::new();
        let mut of_row: Vec<Option<u32>> = Vec::with_capacity(n);
        for i in 0..n {
            if keys.iter().any(|k| k.is_null(i)) {
                of_row.push(None);
                continue;
            }
            let k = encoded.row(i).data();
            let d = *index.entry(k).or_insert_with(|| {
                distinct.push(k);
                distinct.len() as u32 - 1
            });
            of_row.push(Some(d));
        }
        // The keys not kept from earlier epochs: one batched read, in ascending order (as
        // `multi_get` takes them); kept for later epochs while the cache has room.
        self.cache.validate(table.def.id, ctx);
        let missing: Vec<usize> = (0..distinct.len())
            .filter(|d| !self.cache.rows.contains_key(distinct[*d]))
            .collect();
        let row_keys: Vec<Vec<u8>> = missing
            .iter()
            .map(|d| keys::row_key(table.def.id, distinct[*d]))
            .collect();
        let mut order: Vec<usize> = (0..row_keys.len()).collect();
        order.sort_unstable_by(|a, b| row_keys[*a].cmp(&row_keys[*b]));
        let refs: Vec<&[u8]> = order.iter().map(|i| row_keys[*i].as_slice()).collect();
        // Rows read that the cache has no room for, by distinct key (`Some(row or absent)`).
        let mut uncached: Vec<Option<Option<Vec<u8>>>> = vec![None; distinct.len()];
        for (i, v) in order.into_iter().zip(ctx.snapshot.multi_get(&refs)?) {
            let key = distinct[missing[i]];
            let cost = RowCache::cost(key, v.as_deref());
            if self.cache.bytes + cost <= CACHE_BYTES {
                self.cache.bytes += cost;
                self.cache.rows.insert(key.into(), v.map(Vec::into_boxed_slice));
            } else {
                uncached[missing[i]] = Some(v);
            }
        }
        let values: Vec<Option<&[u8]>> = (0..distinct.len())
            .map(|d| match &uncached[d] {
                Some(v) => v.as_deref(),
                None => self.cache.rows.get(distinct[d]).and_then(|v| v.as_deref()),
            })
            .collect();
        // found[d]: the stored row of distinct key d, numbered among the rows found.
        let mut found: Vec<Option<u32>> = Vec::with_capacity(values.len());
        let mut stored: Vec<&[u8]> = Vec::new();
        for v in &values {
            match v {
                Some(v) => {
                    found.push(Some(stored.len() as u32));
                    stored.push(v);
                }
                None => found.push(None),
            }
        }
        let mut place = vec![None; stored.len()];
        let (rows, origin) = self.table_rows(stored)?;
        // The stages may drop rows: map each found row to its place among the survivors.
        for (j, o) in origin.iter().enumerate() {
            place[*o as usize] = Some(j as u32);
        }
        let per_row = of_row
            .into_iter()
            .map(|d| d.and_then(|d| found[d as usize]).and_then(|f| place[f as usize]))
            .collect();
        Ok((rows, per_row))
    }

    /// Stored rows through the table side's scan and stages: the surviving rows and, for each,
    /// its index in `stored`.
    fn table_rows(&self, stored: Vec<&[u8]>) -> Result<(RecordBatch, Vec<u32>)> {
        let side = &self.side;
        let mut origin: Vec<u32> = (0..stored.len() as u32).collect();
        let mut batch = if stored.is_empty() {
            RecordBatch::new_empty(side.scan_schema.clone())
        } else {
            let cols = side.table.row_codec.decode(stored)?;
            let cols = side.scan_columns.iter().map(|i| cols[*i].clone()).collect();
            RecordBatch::try_new(side.scan_schema.clone(), cols)?
        };
        for stage in &side.stages {
            match stage {
                Stage::Filter(predicate) => {
                    let mask = predicate.mask(&batch)?;
                    batch = filter_record_batch(&batch, &mask)?;
                    origin = origin
                        .iter()
                        .zip(mask.iter())
                        .filter(|(_, keep)| keep == &Some(true))
                        .map(|(o, _)| *o)
                        .collect();
                }
                Stage::Project(exprs, schema) => {
                    let cols = super::cast_to_fields(exprs.eval(&batch)?, schema.fields())?;
                    batch = RecordBatch::try_new_with_options(
                        schema.clone(),
                        cols,
                        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                    )?;
                }
            }
        }
        let cols = super::cast_to_fields(batch.columns().iter().cloned(), side.schema.fields())?;
        let batch = RecordBatch::try_new_with_options(
            side.schema.clone(),
            cols,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        Ok((batch, origin))
    }
}

impl Operator for TemporalJoinOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        if let Some(w) = input.weights().values().iter().find(|w| **w <= 0) {
            return Err(Error::internal(format!(
                "a temporal join's stream side produced a change of weight {w}"
            )));
        }
        let data = input.data();
        let keys = self.keys.eval(&data)?;
        let (rows, partner) = self.lookup(&keys, ctx)?;
        // Inner: the rows with a partner; left: every row, padded where it has none.
        let left_idx: UInt32Array = if self.left_join {
            (0..data.num_rows() as u32).collect()
        } else {
            partner
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_some())
                .map(|(i, _)| i as u32)
                .collect()
        };
        let mut right_idx: UInt32Array = left_idx.values().iter().map(|i| partner[*i as usize]).collect();
        let weights = take(input.weights(), &left_idx, None)?;
        let joined = |right_idx: &UInt32Array| -> Result<RecordBatch> {
            let mut cols: Vec<ArrayRef> = data
                .columns()
                .iter()
                .map(|c| take(c, &left_idx, None))
                .collect::<std::result::Result<_, _>>()?;
            for c in rows.columns() {
                cols.push(take(c, right_idx, None)?);
            }
            let cols = super::cast_to_fields(cols, self.schema.fields())?;
            Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
        };
        let mut out = joined(&right_idx)?;
        let mut weights = weights;
        if let Some(residual) = &self.residual {
            let mask = residual.mask(&out)?;
            if self.left_join {
                // A partner failing the condition is no partner: pad the row instead.
                right_idx = right_idx
                    .iter()
                    .zip(mask.iter())
                    .map(|(r, keep)| if keep == Some(true) { r } else { None })
                    .collect();
                out = joined(&right_idx)?;
            } else {
                out = filter_record_batch(&out, &mask)?;
                weights = filter(&weights, &mask)?;
            }
        }
        let weights = weights
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| Error::internal("weights are Int64"))?
            .values()
            .to_vec();
        Changes::new(out, weights)
    }

    fn append_only(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "TemporalJoin{}: lookup {} by ({}){}",
            if self.left_join { " (left)" } else { "" },
            self.side.table.def.name,
            self.keys.display.join(", "),
            self.residual
                .as_ref()
                .map(|r| format!(" where {}", r.display.join(", ")))
                .unwrap_or_default()
        )
    }
}
