//! Groups: a materialized view whose rows fall into small groups (a per-group top-N's,
//! `row_number() OVER (PARTITION BY p ORDER BY o) <= n`, or one `ORDER BY .. LIMIT n`) stored
//! one key per group instead of one key per row (`Layout::Groups`).
//!
//! When a row enters a group's top, every row below it changes rank: stored one key per row,
//! each of them is a deleted key and a new one (Nexmark q19: up to 20 memtable writes and as
//! many reads per bid that enters an auction's ten highest); stored by group, the group is one
//! key, read and rewritten once per epoch that changes it. The key is the view prefix and the
//! row encoding of the group's columns (`ViewDef::group_columns`); the value:
//!
//! ```text
//! version:u8 (1) | per row, in byte order: multiplicity:u32be | length:u32be | row bytes
//! ```
//!
//! where the row bytes are the view's row encoding (the same as a `Rows` view's key suffix).

use crate::error::{Error, Result};

const VERSION: u8 = 1;

/// The largest number of rows per group (a top-N's `offset + limit`) a view is stored by group
/// for: a group is rewritten whole whenever one of its rows changes.
pub const MAX_ROWS: usize = 128;

/// One stored row of a group: its encoded bytes and its multiplicity.
pub type GroupRow<'a> = (&'a [u8], i64);

/// Encodes a group's rows (`rows`: encoded row and multiplicity, in byte order, every
/// multiplicity positive).
pub fn encode(rows: &[GroupRow<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1 + rows.iter().map(|(r, _)| 8 + r.len()).sum::<usize>());
    out.push(VERSION);
    for (row, count) in rows {
        let count = u32::try_from(*count).map_err(|_| Error::internal("a group row's multiplicity is out of range"))?;
        let len = u32::try_from(row.len()).map_err(|_| Error::internal("a group row is too long"))?;
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// The rows of a group's stored value, in byte order.
pub fn decode(value: &[u8]) -> Result<Vec<GroupRow<'_>>> {
    let corrupt = || Error::internal("corrupt view group");
    if value.first() != Some(&VERSION) {
        return Err(corrupt());
    }
    let mut rows = Vec::new();
    let mut rest = &value[1..];
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err(corrupt());
        }
        let count = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        if rest.len() < 8 + len {
            return Err(corrupt());
        }
        rows.push((&rest[8..8 + len], i64::from(count)));
        rest = &rest[8 + len..];
    }
    Ok(rows)
}

/// The rows of a group (in byte order) after adding `changes` (encoded row, weight) to its
/// stored rows (`stored`: its value, None if the group holds no row). Err: a row whose
/// multiplicity would become negative.
pub fn apply<'a>(
    stored: Option<&'a [u8]>,
    changes: impl IntoIterator<Item = GroupRow<'a>>,
) -> Result<std::result::Result<Vec<GroupRow<'a>>, &'a [u8]>> {
    let mut rows = match stored {
        Some(value) => decode(value)?,
        None => Vec::new(),
    };
    for (row, weight) in changes {
        match rows.binary_search_by(|(r, _)| (*r).cmp(row)) {
            Ok(i) => rows[i].1 += weight,
            Err(i) => rows.insert(i, (row, weight)),
        }
    }
    if let Some((row, _)) = rows.iter().find(|(_, c)| *c < 0) {
        return Ok(Err(row));
    }
    rows.retain(|(_, c)| *c != 0);
    Ok(Ok(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_changes_apply() {
        let stored: Vec<GroupRow> = vec![(&b""[..], 1), (&b"a"[..], 2), (&b"b"[..], 1)];
        let value = encode(&stored).unwrap();
        assert_eq!(decode(&value).unwrap(), stored);
        let changed = apply(
            Some(value.as_slice()),
            [(&b"c"[..], 3), (&b"a"[..], -2), (&b"b"[..], 1)],
        )
        .unwrap()
        .unwrap();
        assert_eq!(changed, vec![(&b""[..], 1), (&b"b"[..], 2), (&b"c"[..], 3)]);
        assert_eq!(decode(&encode(&changed).unwrap()).unwrap(), changed);
        // A row deleted more often than held is refused; deleting a group's last row empties it.
        assert_eq!(
            apply(Some(value.as_slice()), [(&b"b"[..], -2)]).unwrap(),
            Err(&b"b"[..])
        );
        assert!(apply(None, [(&b"x"[..], 1), (&b"x"[..], -1)])
            .unwrap()
            .unwrap()
            .is_empty());
        // A truncated or foreign value is an error, not garbage rows.
        assert!(decode(&value[..value.len() - 1]).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&[2]).is_err());
    }
}
