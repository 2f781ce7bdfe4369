//! PostgreSQL's text forms to Arrow: the one conversion path for snapshot rows (COPY text
//! format) and streamed rows (pgoutput text tuples). Both print values with the connection's
//! settings (UTC, ISO dates, `postgres` intervals, hex bytea), which Freshet's COPY FROM parser
//! ([`crate::sql::coerce`]) reads.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::catalog::SqlType;
use crate::dataflow::changes::Changes;
use crate::error::{Error, Result};

/// Rows of one table as text cells, with a weight each, built into [`Changes`].
pub struct TextRows {
    types: Vec<SqlType>,
    /// Every column nullable: a delete carries only its key, NULL elsewhere.
    schema: SchemaRef,
    cells: Vec<Vec<Option<String>>>,
    weights: Vec<i64>,
}

impl TextRows {
    pub fn new(names: &[String], types: &[SqlType]) -> TextRows {
        let fields: Vec<Field> = names.iter().zip(types).map(|(n, t)| t.arrow_field(n, true)).collect();
        TextRows {
            types: types.to_vec(),
            schema: Arc::new(Schema::new(fields)),
            cells: types.iter().map(|_| Vec::new()).collect(),
            weights: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Adds a row: one cell per column, in column order.
    pub fn push(&mut self, row: Vec<Option<String>>, weight: i64) {
        debug_assert_eq!(row.len(), self.cells.len());
        for (col, v) in self.cells.iter_mut().zip(row) {
            col.push(v);
        }
        self.weights.push(weight);
    }

    /// The cells of row `i` (for looking back within a transaction).
    pub fn row(&self, i: usize) -> Vec<Option<String>> {
        self.cells.iter().map(|c| c[i].clone()).collect()
    }

    /// The rows so far as changes, leaving the builder empty. A value that does not parse as
    /// its column's type is an error naming the column.
    pub fn finish(&mut self) -> Result<Changes> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.types.len());
        for (i, ty) in self.types.iter().enumerate() {
            let text: ArrayRef = Arc::new(StringArray::from(std::mem::take(&mut self.cells[i])));
            let typed = crate::sql::coerce::coerce(&text, ty).map_err(|e| Error::External {
                state: e.code(),
                message: format!("postgres-cdc: column {}: {e}", self.schema.field(i).name()),
                retryable: false,
            })?;
            arrays.push(typed);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::internal(format!("postgres-cdc rows: {e}")))?;
        Changes::new(batch, std::mem::take(&mut self.weights))
    }
}

/// Splits one line of COPY's text format into cells (`\\N` is NULL; backslash escapes undone).
pub fn copy_text_cells(line: &str) -> Result<Vec<Option<String>>> {
    line.split('\t')
        .map(|raw| {
            if raw == "\\N" {
                Ok(None)
            } else {
                crate::sql::copy::unescape_text(raw).map(Some)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int32Type, TimestampMicrosecondType};

    #[test]
    fn postgres_text_forms_become_arrow_values() {
        let names: Vec<String> = ["id", "ts", "tags", "raw", "doc", "iv"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types = vec![
            SqlType::Int4,
            SqlType::Timestamptz,
            SqlType::Array(Box::new(SqlType::Text)),
            SqlType::Bytea,
            SqlType::Jsonb,
            SqlType::Interval,
        ];
        let mut rows = TextRows::new(&names, &types);
        rows.push(
            copy_text_cells("7\t2024-01-02 03:04:05.25+00\t{a,\"b c\",NULL}\t\\\\x00ff\t{\"k\": [1, 2]}\t1 year 2 mons 3 days 04:05:06").unwrap(),
            1,
        );
        rows.push(vec![Some("8".into()), None, None, None, None, None], -1);
        let c = rows.finish().unwrap();
        assert_eq!(c.len(), 2);
        assert!(rows.is_empty());
        let cols = c.columns();
        assert_eq!(cols[0].as_primitive::<Int32Type>().value(0), 7);
        assert_eq!(
            cols[1].as_primitive::<TimestampMicrosecondType>().value(0),
            1_704_164_645_250_000
        );
        assert_eq!(cols[2].as_list::<i32>().value(0).len(), 3);
        assert_eq!(cols[3].as_binary::<i32>().value(0), &[0u8, 255]);
        assert!(cols[4].as_string::<i32>().value(0).contains("\"k\""));
        assert!(cols[1].is_null(1));
        assert_eq!(c.weights().values().as_ref(), &[1, -1]);
    }

    #[test]
    fn bad_values_name_their_column() {
        let mut rows = TextRows::new(&["n".to_string()], &[SqlType::Int4]);
        rows.push(vec![Some("x1".into())], 1);
        let e = rows.finish().unwrap_err();
        assert!(e.to_string().contains("column n"), "{e}");
    }
}
