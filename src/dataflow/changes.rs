//! [`Changes`]: a Z-set delta. An Arrow `RecordBatch` of a relation's columns plus a trailing
//! `_weight: Int64` column (+1 insert, -1 delete; an update is a -1 / +1 pair).
//!
//! Operators consume and produce `Changes`; [`Changes::consolidate`] sums the weights of equal
//! rows and drops rows whose weight is zero, at operator boundaries.

use datafusion::common::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Name of the weight column.
pub const WEIGHT_COLUMN: &str = "_weight";

/// A batch of weighted rows.
#[derive(Clone, Debug)]
pub struct Changes {
    batch: RecordBatch,
}

impl Changes {
    /// `data` rows with `weights` (one per row).
    pub fn new(data: RecordBatch, weights: Vec<i64>) -> Result<Changes> {
        if weights.len() != data.num_rows() {
            return Err(Error::internal("one weight per row"));
        }
        let mut fields: Vec<Field> = data.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WEIGHT_COLUMN, DataType::Int64, false));
        let mut columns = data.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(weights)));
        Ok(Changes {
            batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
        })
    }

    /// Every row of `data` with weight `w`.
    pub fn uniform(data: RecordBatch, w: i64) -> Result<Changes> {
        let n = data.num_rows();
        Changes::new(data, vec![w; n])
    }

    /// No rows, for a relation of `schema` (without the weight column).
    pub fn empty(schema: SchemaRef) -> Changes {
        Changes::uniform(RecordBatch::new_empty(schema), 1).expect("empty batch")
    }

    /// Wraps a batch whose last column is the weight.
    pub fn from_weighted(batch: RecordBatch) -> Result<Changes> {
        let ok = batch
            .schema()
            .fields()
            .last()
            .is_some_and(|f| f.name() == WEIGHT_COLUMN && f.data_type() == &DataType::Int64);
        if !ok {
            return Err(Error::internal("a Changes batch ends with _weight: Int64"));
        }
        Ok(Changes { batch })
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The rows without the weight column.
    pub fn data(&self) -> RecordBatch {
        let n = self.batch.num_columns() - 1;
        self.batch
            .project(&(0..n).collect::<Vec<_>>())
            .expect("projection in range")
    }

    /// The relation's schema (without the weight column).
    pub fn data_schema(&self) -> SchemaRef {
        let s = self.batch.schema();
        Arc::new(Schema::new(s.fields()[..s.fields().len() - 1].to_vec()))
    }

    pub fn columns(&self) -> &[ArrayRef] {
        let n = self.batch.num_columns() - 1;
        &self.batch.columns()[..n]
    }

    pub fn weights(&self) -> &Int64Array {
        self.batch
            .column(self.batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("weight column is Int64")
    }

    /// The batch including the weight column.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// These changes with every weight negated.
    pub fn negate(&self) -> Result<Changes> {
        let w: Vec<i64> = self.weights().values().iter().map(|w| -w).collect();
        Changes::new(self.data(), w)
    }

    /// Concatenates changes of the same relation.
    pub fn concat(schema: &SchemaRef, parts: &[Changes]) -> Result<Changes> {
        let parts: Vec<&Changes> = parts.iter().filter(|c| !c.is_empty()).collect();
        match parts.as_slice() {
            [] => Ok(Changes::empty(schema.clone())),
            [one] => Ok((*one).clone()),
            many => {
                let s = many[0].batch.schema();
                let batches: Vec<RecordBatch> = many.iter().map(|c| c.batch.clone()).collect();
                Ok(Changes {
                    batch: concat_batches(&s, &batches)?,
                })
            }
        }
    }

    /// Sums the weights of equal rows and drops zero-weight rows (first occurrence order).
    pub fn consolidate(&self) -> Result<Changes> {
        if self.is_empty() {
            return Ok(self.clone());
        }
        let cols = self.columns();
        let converter = RowConverter::new(cols.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
        let rows = converter.convert_columns(cols)?;
        let weights = self.weights();
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
        let mut order: Vec<(u32, i64)> = Vec::new();
        for i in 0..rows.num_rows() {
            let w = weights.value(i);
            let key = rows.row(i).data();
            match index.get(key) {
                Some(&slot) => order[slot].1 += w,
                None => {
                    index.insert(key, order.len());
                    order.push((i as u32, w));
                }
            }
        }
        order.retain(|(_, w)| *w != 0);
        if order.len() == self.len() {
            return Ok(self.clone());
        }
        let idx = UInt32Array::from(order.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        let data: Vec<ArrayRef> = cols
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<_, _>>()?;
        let data = RecordBatch::try_new(self.data_schema(), data)?;
        Changes::new(data, order.iter().map(|(_, w)| *w).collect())
    }

    /// Expands to a plain multiset: each row repeated |weight| times; errors on negative weights.
    pub fn to_positive_rows(&self) -> Result<RecordBatch> {
        let mut idx = Vec::new();
        for (i, w) in self.weights().values().iter().enumerate() {
            if *w < 0 {
                return Err(Error::internal(format!("negative multiplicity {w} in a relation")));
            }
            idx.extend(std::iter::repeat_n(i as u32, *w as usize));
        }
        let idx = UInt32Array::from(idx);
        let data: Vec<ArrayRef> = self
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<_, _>>()?;
        Ok(RecordBatch::try_new(self.data_schema(), data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn batch(ids: Vec<i64>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
        )
        .unwrap()
    }

    #[test]
    fn consolidate_sums_equal_rows_and_drops_zeros() {
        let c = Changes::new(
            batch(vec![1, 2, 1, 3, 2], vec!["a", "b", "a", "c", "b"]),
            vec![1, 1, 1, 1, -1],
        )
        .unwrap();
        let out = c.consolidate().unwrap();
        let ids = out.columns()[0].as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 3]);
        assert_eq!(out.weights().values().to_vec(), vec![2, 1]);
        assert_eq!(out.to_positive_rows().unwrap().num_rows(), 3);
    }

    #[test]
    fn negate_and_concat() {
        let a = Changes::uniform(batch(vec![1], vec!["a"]), 1).unwrap();
        let all = Changes::concat(&a.data_schema(), &[a.clone(), a.negate().unwrap()]).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.consolidate().unwrap().is_empty());
    }
}
