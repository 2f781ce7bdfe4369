//! Segments: many rows of an append-only relation stored under ONE key, as an Arrow IPC batch.
//!
//! A table a generator source appends to (keyed by a hidden row id) and a view over such inputs
//! that only filters and projects never change a stored row: they only gain rows. Storing them
//! one key per row costs a row encoding, a memtable insert and a count read per row; a segment
//! costs one put per epoch. Layout of a segment value:
//!
//! ```text
//! version:u8 (1) | first row id:i64be | rows:u32be | Arrow IPC stream (one record batch)
//! ```
//!
//! A table segment's key is the row key of its LAST row id (so the table's last key still tells
//! the next row id after a restart); a view segment's key is the view prefix and the epoch.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 4;

/// How a relation's rows are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One key per row: tables by primary key, views by whole row (value: multiplicity).
    #[default]
    Rows,
    /// Append-only: one key per appended batch (see the module docs).
    Segments,
    /// Not stored: a stream (`CREATE SOURCE name (..) WITH (connector = ..)`) whose source only
    /// appends; its rows flow to the views over it and are not kept.
    Stream,
    /// A view whose rows fall into small groups (a per-group top-N's): one key per group,
    /// holding the group's rows (`state::groups`).
    Groups,
}

impl Layout {
    pub fn is_rows(&self) -> bool {
        *self == Layout::Rows
    }

    /// True when rows are only ever added (views over it see insertions only).
    pub fn is_append_only(&self) -> bool {
        matches!(self, Layout::Segments | Layout::Stream)
    }
}

/// Encodes `batch` (whose first row has row id `first_row_id`; 0 for a view) as a segment.
pub fn encode(first_row_id: i64, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + batch.get_array_memory_size() + 512);
    out.push(VERSION);
    out.extend_from_slice(&first_row_id.to_be_bytes());
    let rows = u32::try_from(batch.num_rows()).map_err(|_| Error::internal("segment too large"))?;
    out.extend_from_slice(&rows.to_be_bytes());
    let mut w = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The header of a segment: (first row id, rows).
pub fn header(value: &[u8]) -> Result<(i64, u32)> {
    if value.len() < HEADER || value[0] != VERSION {
        return Err(Error::internal("corrupt segment (bad header)"));
    }
    let first = i64::from_be_bytes(value[1..9].try_into().expect("8 bytes"));
    let rows = u32::from_be_bytes(value[9..13].try_into().expect("4 bytes"));
    Ok((first, rows))
}

/// Decodes a segment into a batch with `schema` (the stored columns, in order).
pub fn decode(value: &[u8], schema: &SchemaRef) -> Result<RecordBatch> {
    let (_, rows) = header(value)?;
    let mut reader = StreamReader::try_new(Cursor::new(&value[HEADER..]), None)?;
    let batch = match reader.next() {
        Some(b) => b?,
        None => return Err(Error::internal("corrupt segment (no batch)")),
    };
    if batch.num_rows() != rows as usize || batch.num_columns() != schema.fields().len() {
        return Err(Error::internal("corrupt segment (shape)"));
    }
    // The stored field names and nullability may predate a rename: adopt the relation's.
    Ok(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?)
}

/// The row ids of a table segment, as an Int64 column.
pub fn row_ids(value: &[u8]) -> Result<ArrayRef> {
    let (first, rows) = header(value)?;
    Ok(Arc::new(Int64Array::from_iter_values(first..first + rows as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("x"), None, Some("zz")])),
            ],
        )
        .unwrap();
        let v = encode(41, &batch).unwrap();
        assert_eq!(header(&v).unwrap(), (41, 3));
        assert_eq!(decode(&v, &schema).unwrap(), batch);
        let ids = row_ids(&v).unwrap();
        assert_eq!(
            ids.as_ref(),
            &Int64Array::from(vec![41, 42, 43]) as &dyn datafusion::arrow::array::Array
        );
        assert!(decode(&v[..10], &schema).is_err());
    }
}
