//! A materialized view stored by group (`Layout::Groups`, `state::groups`): applying its
//! changes (each touched group read once and written once per epoch) and reading its rows.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::row::Rows;
use datafusion::common::HashMap;

use super::operator::EpochContext;
use super::stored_rows::StoredRows;
use crate::catalog::View;
use crate::error::{Error, Result};
use crate::state::{groups, keys, StateSnapshot, WriteBatch};

/// Applies `view`'s consolidated changes `live` (row of `rows`, weight; `cols` the changes'
/// columns in the view's types, `rows` their row encoding) to its stored groups: each group
/// they touch is read and rewritten once, or deleted when it holds no row any more (a group of
/// at most one row, `ViewDef::single_row_groups`, is rewritten from its changes without a
/// read). Called at most once per view and epoch: the groups are read from the epoch's
/// snapshot.
pub(super) fn apply(
    view: &View,
    cols: &[ArrayRef],
    rows: &Rows,
    live: &[(u32, i64)],
    ctx: &EpochContext,
    stored_rows: &mut StoredRows,
    batch: &mut WriteBatch,
) -> Result<()> {
    let prefix = keys::view_prefix(view.def.id);
    let group_keys = match &view.group_codec {
        Some(codec) => {
            let group_cols: Vec<ArrayRef> = view.def.group_columns.iter().map(|i| cols[*i].clone()).collect();
            Some(codec.encode(&group_cols)?)
        }
        // No group columns: the whole view is one group.
        None => None,
    };
    // The touched groups in the order first seen (their keys), and each change's group.
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut touched: Vec<Vec<u8>> = Vec::new();
    let mut slots = Vec::with_capacity(live.len());
    for (i, _) in live {
        let group: &[u8] = group_keys.as_ref().map_or(&[], |g| g.row(*i as usize).data());
        let slot = *index.entry(group).or_insert_with(|| {
            let mut key = Vec::with_capacity(prefix.len() + group.len());
            key.extend_from_slice(&prefix);
            key.extend_from_slice(group);
            touched.push(key);
            touched.len() - 1
        });
        slots.push(slot);
    }
    let mut changes: Vec<Vec<(&[u8], i64)>> = vec![Vec::new(); touched.len()];
    for ((i, w), slot) in live.iter().zip(slots) {
        changes[slot].push((rows.row(*i as usize).data(), *w));
    }
    // Groups of at most one row: a group's changes give its new row (or none) without reading
    // it, unless they are not of that form.
    let single: Vec<Option<Option<&[u8]>>> = changes
        .iter()
        .map(|c| {
            if view.def.single_row_groups {
                single_row(c)
            } else {
                None
            }
        })
        .collect();
    for (key, new) in touched.iter().zip(&single) {
        match new {
            Some(Some(row)) => batch.put(key.clone(), groups::encode(&[(row, 1)])?),
            Some(None) => batch.delete(key.clone()),
            None => {}
        }
    }
    if single.iter().all(Option::is_some) {
        return Ok(());
    }
    // The other groups: the stored ones among them, in one batched read (skipping groups
    // surely not stored; such a view of single rows keeps no hashes, and reads them all).
    if !view.def.single_row_groups {
        stored_rows.load(&*ctx.snapshot, view.def.id, false)?;
    }
    let hashes: Vec<u64> = touched.iter().map(|k| stored_rows.hash(k)).collect();
    let mut held: Vec<&[u8]> = touched
        .iter()
        .zip(&hashes)
        .zip(&single)
        .filter(|((_, h), new)| new.is_none() && stored_rows.may_hold(**h))
        .map(|((k, _), _)| k.as_slice())
        .collect();
    held.sort_unstable();
    // Not kept in the block cache: a group read here is rewritten at once.
    let values = ctx.snapshot.multi_get_uncached(&held)?;
    let stored: HashMap<&[u8], Vec<u8>> = held
        .into_iter()
        .zip(values)
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    for (((key, changes), h), _) in touched
        .iter()
        .zip(changes)
        .zip(hashes)
        .zip(&single)
        .filter(|(_, new)| new.is_none())
    {
        let old = stored.get(key.as_slice()).map(Vec::as_slice);
        let new = groups::apply(old, changes)?.map_err(|_| {
            Error::internal(format!(
                "materialized view {} would hold a row a negative number of times",
                view.def.name
            ))
        })?;
        if !new.is_empty() {
            batch.put(key.clone(), groups::encode(&new)?);
        } else if old.is_some() {
            batch.delete(key.clone());
        }
        stored_rows.changed(h, i64::from(old.is_some()), i64::from(!new.is_empty()));
    }
    Ok(())
}

/// A group of at most one row: its new row (None: it holds none) from its changes in an epoch
/// (consolidated: each row once), when they are that row's insertion, the old row's deletion,
/// or both. None: the changes are not of that form, and the group must be read.
fn single_row<'a>(changes: &[(&'a [u8], i64)]) -> Option<Option<&'a [u8]>> {
    match changes {
        [(row, 1)] => Some(Some(row)),
        [(_, -1)] => Some(None),
        [(row, 1), (_, -1)] | [(_, -1), (row, 1)] => Some(Some(row)),
        _ => None,
    }
}

/// Reads the rows of `view` (stored by group) in `snapshot`, in batches of about `batch_rows`
/// rows: `each` gets a batch (each row once, in the view's schema) and the rows'
/// multiplicities, and returns false to stop.
pub fn read(
    view: &View,
    snapshot: &dyn StateSnapshot,
    batch_rows: usize,
    mut each: impl FnMut(RecordBatch, Vec<i64>) -> Result<bool>,
) -> Result<()> {
    let (from, to) = keys::view_range(view.def.id);
    // The rows of the groups read so far, one after another in `bytes` (each decoded once).
    let mut bytes: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    let mut flush = |bytes: &mut Vec<u8>, ends: &mut Vec<usize>, counts: &mut Vec<i64>| -> Result<bool> {
        if ends.is_empty() {
            return Ok(true);
        }
        let starts = std::iter::once(0).chain(ends.iter().copied());
        let cols = view
            .row_codec
            .decode(starts.zip(ends.iter()).map(|(s, e)| &bytes[s..*e]))?;
        let batch = RecordBatch::try_new(view.schema.clone(), cols)?;
        bytes.clear();
        ends.clear();
        each(batch, std::mem::take(counts))
    };
    for kv in snapshot.scan(&from, &to) {
        let (_, value) = kv?;
        for (row, count) in groups::decode(&value)? {
            bytes.extend_from_slice(row);
            ends.push(bytes.len());
            counts.push(count);
        }
        if ends.len() >= batch_rows && !flush(&mut bytes, &mut ends, &mut counts)? {
            return Ok(());
        }
    }
    flush(&mut bytes, &mut ends, &mut counts)?;
    Ok(())
}

/// How many rows (with multiplicity) a stored group value holds.
pub fn row_count(value: &[u8]) -> Result<i64> {
    Ok(groups::decode(value)?.iter().map(|(_, c)| c).sum())
}

#[cfg(test)]
mod tests {
    use super::single_row;

    #[test]
    fn a_single_row_group_is_rewritten_from_its_changes_alone() {
        let (old, new): (&[u8], &[u8]) = (b"old", b"new");
        assert_eq!(single_row(&[(new, 1)]), Some(Some(new)));
        assert_eq!(single_row(&[(old, -1)]), Some(None));
        assert_eq!(single_row(&[(old, -1), (new, 1)]), Some(Some(new)));
        assert_eq!(single_row(&[(new, 1), (old, -1)]), Some(Some(new)));
        // Anything else is read and merged: a row held twice, two new rows, a double deletion.
        assert_eq!(single_row(&[(new, 2)]), None);
        assert_eq!(single_row(&[(old, 1), (new, 1)]), None);
        assert_eq!(single_row(&[(old, -1), (new, -1)]), None);
        assert_eq!(single_row(&[]), None);
    }
}
