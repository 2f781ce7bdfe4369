//! Key layout of the store. Every key starts with a one-byte space tag:
//!
//! ```text
//! 0x01 kind:u8 id:u32be            catalog object (JSON)
//! 0x02 name                        metadata (e.g. the last committed epoch)
//! 0x10 table:u32be pk-bytes        a table row; pk-bytes is the order-preserving row encoding
//! ```
//! Big-endian ids keep one relation's rows contiguous and ordered by primary key.

pub const CATALOG: u8 = 0x01;
pub const META: u8 = 0x02;
pub const TABLE_ROWS: u8 = 0x10;

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
