//! Key layout of the store. Every key starts with a one-byte space tag:
//!
//! ```text
//! 0x01 kind:u8 id:u32be            catalog object (JSON)
//! 0x02 name                        metadata (e.g. the last committed epoch)
//! 0x03 source:u32be 0x00            a source's resume position (JSON, the connector's own)
//! 0x03 source:u32be 0x01 table:u32be a source table's capture progress (JSON)
//! 0x10 table:u32be pk-bytes        a table row; pk-bytes is the order-preserving row encoding
//! 0x11 view:u32be row-bytes         a materialized view row -> its multiplicity (i64be)
//! 0x11 view:u32be group-bytes       a view stored by group: the group's rows (`groups`)
//! 0x12 view:u32be op:u32be part:u8 .. state of one operator of a view's dataflow
//! ```
//! Big-endian ids keep one relation's rows contiguous and ordered by primary key.

pub const CATALOG: u8 = 0x01;
pub const META: u8 = 0x02;
pub const SOURCE_STATE: u8 = 0x03;
pub const TABLE_ROWS: u8 = 0x10;
pub const VIEW_ROWS: u8 = 0x11;
pub const OPERATOR_STATE: u8 = 0x12;

/// The key of the last committed epoch number.
pub fn epoch_key() -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(b"epoch");
    k
}

pub fn catalog_key(kind: u8, id: u32) -> Vec<u8> {
    let mut k = vec![CATALOG, kind];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `[from, to)` covering every catalog key.
pub fn catalog_range() -> (Vec<u8>, Vec<u8>) {
    (vec![CATALOG], vec![CATALOG + 1])
}

/// The resume position of source `source`, committed with each epoch that applies its changes.
pub fn source_position_key(source: u32) -> Vec<u8> {
    let mut k = vec![SOURCE_STATE];
    k.extend_from_slice(&source.to_be_bytes());
    k.push(0);
    k
}

/// The capture progress of `table` in `source` (e.g. where its snapshot ended).
pub fn source_table_key(source: u32, table: u32) -> Vec<u8> {
    let mut k = vec![SOURCE_STATE];
    k.extend_from_slice(&source.to_be_bytes());
    k.push(1);
    k.extend_from_slice(&table.to_be_bytes());
    k
}

/// `[from, to)` covering every key of source `source`'s state.
pub fn source_state_range(source: u32) -> (Vec<u8>, Vec<u8>) {
    let mut from = vec![SOURCE_STATE];
    from.extend_from_slice(&source.to_be_bytes());
    let mut to = vec![SOURCE_STATE];
    to.extend_from_slice(&(source as u64 + 1).to_be_bytes()[4..]);
    if source == u32::MAX {
        to = vec![SOURCE_STATE + 1];
    }
    (from, to)
}

/// The prefix of every row of `table`.
pub fn table_prefix(table: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(TABLE_ROWS);
    k.extend_from_slice(&table.to_be_bytes());
    k
}

pub fn row_key(table: u32, pk: &[u8]) -> Vec<u8> {
    let mut k = table_prefix(table);
    k.extend_from_slice(pk);
    k
}

/// `[from, to)` covering every row of `table`.
pub fn table_range(table: u32) -> (Vec<u8>, Vec<u8>) {
    (table_prefix(table), table_prefix(table + 1))
}

/// The prefix of every row of materialized view `view`.
pub fn view_prefix(view: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(VIEW_ROWS);
    k.extend_from_slice(&view.to_be_bytes());
    k
}

/// `[from, to)` covering every row of view `view`.
pub fn view_range(view: u32) -> (Vec<u8>, Vec<u8>) {
    (view_prefix(view), view_prefix(view + 1))
}

/// The prefix of the state of operator `op` (part `part`) of view `view`.
pub fn operator_prefix(view: u32, op: u32, part: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(OPERATOR_STATE);
    k.extend_from_slice(&view.to_be_bytes());
    k.extend_from_slice(&op.to_be_bytes());
    k.push(part);
    k
}

/// The prefix of the logs and checkpoints of operator `op` (part `part`) of view `view`
/// (`dataflow::state_log`): beside its per-key entries, inside the view's operator range.
pub fn operator_log_prefix(view: u32, op: u32, part: u8) -> Vec<u8> {
    assert!(part < 0x80, "operator state part {part} collides with the log space");
    operator_prefix(view, op, part | 0x80)
}

/// `[from, to)` covering every operator state of view `view`.
pub fn operator_range(view: u32) -> (Vec<u8>, Vec<u8>) {
    let mut from = vec![OPERATOR_STATE];
    from.extend_from_slice(&view.to_be_bytes());
    let mut to = vec![OPERATOR_STATE];
    to.extend_from_slice(&(view + 1).to_be_bytes());
    (from, to)
}

/// The smallest key greater than every key starting with `prefix` (None if there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ranges_do_not_overlap_and_order_by_id() {
        let (a0, a1) = table_range(7);
        let (b0, _) = table_range(8);
        assert!(a0 < a1 && a1 <= b0);
        assert!(row_key(7, &[0xFF, 0xFF]) < a1);
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
