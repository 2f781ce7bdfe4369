//! Sorting a batch's rows into groups of equal keys: each row's group, and each group's key
//! encoded once (the bytes its state is stored under).
//!
//! An aggregate or a top-N sees each group many times in a batch (q5's count sees ~16 rows of
//! each (auction, window) it touches), so it finds each row's group before touching state.
//! Keys of up to four fixed-width integer-like columns without NULLs in the batch (ids,
//! timestamps, dates: most GROUP BY and PARTITION BY keys) are compared as machine words read
//! straight from the columns; only the first row of each group is row-encoded. Any other key
//! (strings, floats, decimals, NULLs) is row-encoded for every row and grouped on its bytes.

use datafusion::arrow::array::{Array, ArrayData, ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::Rows;
use datafusion::common::hash_map::Entry;
use datafusion::common::HashMap;

use crate::error::Result;
use crate::state::row_codec::RowCodec;

/// A batch's rows sorted into groups, in the order each group first occurs.
pub struct Groups {
    /// Each row's group: an index into `keys`.
    pub slot: Vec<u32>,
    /// Each group's key, encoded by the codec given.
    keys: GroupKeys,
}

enum GroupKeys {
    /// One encoded row per group.
    PerGroup(Rows),
    /// One encoded row per input row, and each group's first row.
    PerRow(Rows, Vec<u32>),
}

impl Groups {
    /// The groups of the rows of `columns` (already of the codec's types), keyed by `codec`.
    pub fn of(columns: &[ArrayRef], codec: &RowCodec) -> Result<Groups> {
        let rows = columns.first().map_or(0, |c| c.len());
        let words = match columns.len() {
            1 => word_groups::<1>(columns, rows),
            2 => word_groups::<2>(columns, rows),
            3 => word_groups::<3>(columns, rows),
            4 => word_groups::<4>(columns, rows),
            _ => None,
        };
        if let Some((slot, first)) = words {
            let first = UInt32Array::from(first);
            let firsts: Vec<ArrayRef> = columns
                .iter()
                .map(|c| take(c.as_ref(), &first, None))
                .collect::<std::result::Result<_, _>>()?;
            return Ok(Groups {
                slot,
                keys: GroupKeys::PerGroup(codec.encode(&firsts)?),
            });
        }
        let encoded = codec.encode(columns)?;
        let (slot, first) = byte_groups(&encoded);
        Ok(Groups {
            slot,
            keys: GroupKeys::PerRow(encoded, first),
        })
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        match &self.keys {
            GroupKeys::PerGroup(rows) => rows.num_rows(),
            GroupKeys::PerRow(_, first) => first.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Group `g`'s encoded key.
    pub fn key(&self, g: usize) -> &[u8] {
        match &self.keys {
            GroupKeys::PerGroup(rows) => rows.row(g).data(),
            GroupKeys::PerRow(rows, first) => rows.row(first[g] as usize).data(),
        }
    }

    /// Every group's encoded key, in group order.
    pub fn keys(&self) -> Vec<&[u8]> {
        (0..self.len()).map(|g| self.key(g)).collect()
    }
}

/// Each encoded row's group (equal bytes, first-seen order) and each group's first row.
pub fn byte_groups(rows: &Rows) -> (Vec<u32>, Vec<u32>) {
    let mut index: HashMap<&[u8], u32> = HashMap::with_capacity(rows.num_rows());
    let mut slot = Vec::with_capacity(rows.num_rows());
    let mut first = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let s = match index.entry(row.data()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                first.push(i as u32);
                *e.insert(first.len() as u32 - 1)
            }
        };
        slot.push(s);
    }
    (slot, first)
}

/// Whether a column's values can stand for its key as a machine word: fixed-width integer-like
/// values of up to 8 bytes (two values are equal exactly when their bits are). Floats are left
/// to the row encoding, which is what defines their equality (−0 and 0, NaNs).
fn word_sized(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_)
    )
}

/// Each row's group and each group's first row, for `K` word-sized columns without NULLs;
/// `None` for any other columns.
fn word_groups<const K: usize>(columns: &[ArrayRef], rows: usize) -> Option<(Vec<u32>, Vec<u32>)> {
    if columns.iter().any(|c| !word_sized(c.data_type()) || c.null_count() > 0) {
        return None;
    }
    let words: Vec<Vec<u64>> = columns
        .iter()
        .map(|c| widened(&c.to_data(), rows))
        .collect::<Option<_>>()?;
    let mut index: HashMap<[u64; K], u32> = HashMap::default();
    let mut slot = Vec::with_capacity(rows);
    let mut first = Vec::new();
    let row_keys = (0..rows).map(|i| -> [u64; K] { std::array::from_fn(|k| words[k][i]) });
    for (i, key) in row_keys.enumerate() {
        let s = match index.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                first.push(i as u32);
                *e.insert(first.len() as u32 - 1)
            }
        };
        slot.push(s);
    }
    Some((slot, first))
}

/// The `rows` values of a fixed-width column of up to 8 bytes, each as a word (its bits,
/// zero-extended).
fn widened(data: &ArrayData, rows: usize) -> Option<Vec<u64>> {
    let width = data.data_type().primitive_width()?;
    let start = data.offset() * width;
    let bytes = data.buffers().first()?.as_slice().get(start..start + rows * width)?;
    fn words<const W: usize>(bytes: &[u8], word: fn([u8; W]) -> u64) -> Vec<u64> {
        bytes
            .chunks_exact(W)
            .map(|c| word(c.try_into().expect("W bytes")))
            .collect()
    }
    Some(match width {
        1 => words::<1>(bytes, |b| b[0] as u64),
        2 => words::<2>(bytes, |b| u16::from_le_bytes(b) as u64),
        4 => words::<4>(bytes, |b| u32::from_le_bytes(b) as u64),
        8 => words::<8>(bytes, u64::from_le_bytes),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Groups equal rows exactly as grouping on the encoded keys does, with the same keys in
    /// the same first-seen order, on both paths (words; encoded rows for NULLs, strings and
    /// floats), and on sliced columns.
    #[test]
    fn groups_rows_as_their_encoded_keys_do() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..40 {
            let n = rng.random_range(0..300usize);
            let with_nulls = round % 4 == 3;
            let ints: Int64Array = (0..n)
                .map(|_| (!with_nulls || rng.random_bool(0.8)).then(|| rng.random_range(-3..4i64)))
                .collect();
            let small: Int32Array = (0..n).map(|_| Some(rng.random_range(0..3))).collect();
            let times =
                TimestampMicrosecondArray::from((0..n).map(|_| rng.random_range(0..2i64) * 1_000).collect::<Vec<_>>())
                    .with_timezone("+00:00");
            let floats: Float64Array = (0..n).map(|_| [0.0, -0.0, 1.5][rng.random_range(0..3)]).collect();
            let strings: StringArray = (0..n).map(|_| Some(["a", "bb", ""][rng.random_range(0..3)])).collect();
            let all: Vec<ArrayRef> = vec![
                Arc::new(ints),
                Arc::new(small),
                Arc::new(times),
                Arc::new(floats),
                Arc::new(strings),
            ];
            let layouts: &[&[usize]] = &[
                &[0],
                &[1, 2],
                &[0, 1, 2],
                &[2, 0, 1, 0],
                &[3],
                &[4, 0],
                &[0, 1, 2, 0, 1],
            ];
            for layout in layouts {
                let mut cols: Vec<ArrayRef> = layout.iter().map(|c| all[*c].clone()).collect();
                if round % 5 == 1 && n > 10 {
                    cols = cols.iter().map(|c| c.slice(3, n - 7)).collect();
                }
                let types: Vec<DataType> = cols.iter().map(|c| c.data_type().clone()).collect();
                let codec = RowCodec::new(&types).unwrap();
                let groups = Groups::of(&cols, &codec).unwrap();
                let encoded = codec.encode(&cols).unwrap();
                let rows = cols[0].len();
                assert_eq!(groups.slot.len(), rows);
                // Expected: first-seen order of the distinct encodings.
                let mut expected: Vec<Vec<u8>> = Vec::new();
                for i in 0..rows {
                    let k = encoded.row(i).data().to_vec();
                    let s = match expected.iter().position(|e| *e == k) {
                        Some(s) => s,
                        None => {
                            expected.push(k);
                            expected.len() - 1
                        }
                    };
                    assert_eq!(groups.slot[i] as usize, s, "round {round} layout {layout:?} row {i}");
                }
                assert_eq!(groups.len(), expected.len());
                let keys: Vec<Vec<u8>> = groups.keys().iter().map(|k| k.to_vec()).collect();
                assert_eq!(keys, expected);
            }
        }
    }
}
