//! The RocksDB [`StateStore`].
//!
//! One RocksDB instance per data directory, default column family, keys laid out by
//! [`super::keys`]. Commits are single `WriteBatch`es; `sync = true` fsyncs the WAL before
//! returning, which is what makes an acknowledged commit survive `kill -9`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, SnapshotWithThreadMode, WriteOptions, DB};

use super::{KeyValue, StateSnapshot, StateStore, WriteBatch, WriteOp};
use crate::error::{Error, Result};

pub struct RocksStore {
    db: Arc<DB>,
}

impl RocksStore {
    /// Opens (creating if needed) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // No compression where data is written most (memtable flushes to L0, and L1), LZ4
        // below: compressing every flush cost more CPU than the rest of a flush.
        {
            use rocksdb::DBCompressionType::{Lz4, None};
            opts.set_compression_per_level(&[None, None, Lz4, Lz4, Lz4, Lz4, Lz4]);
        }
        // Large values (segments of append-only tables and views, `state::segment`) go to blob
        // files at flush, so compactions move their keys and never rewrite them.
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(64 << 10);
        opts.set_enable_blob_gc(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        // Memtables of 16 MiB (RocksDB's default is 64): a memtable's memory stays resident
        // until it is flushed, and with two of them that was up to ~100 MiB more peak memory
        // on Nexmark's stateful queries (q4, q5, q7: 36-40 MiB less peak RSS at 16 than at 64,
        // with the same CPU time; at 8 the extra flushes and compactions cost 5-7 % CPU).
        opts.set_write_buffer_size(16 << 20);
        // L0 compacts into L1 at 16 files (RocksDB's default is 4): 16 flushed memtables are
        // 256 MiB, the size of L1 (`max_bytes_for_level_base`), the balance RocksDB's tuning
        // guide asks for. At 4, each L0 -> L1 compaction rewrote up to four times more L1
        // than it brought in from L0: on Nexmark q19 (a 1.3M-row view whose rows keep
        // changing rank) compaction wrote 929 MiB against 433 MiB of flushes, and 148 MiB at
        // 16 (events/CPU-s +23 % at 10M events, q0 +8 %, the other queries unchanged). The
        // write slowdown and stop thresholds keep their distance to the trigger.
        opts.set_level_zero_file_num_compaction_trigger(16);
        opts.set_level_zero_slowdown_writes_trigger(32);
        opts.set_level_zero_stop_writes_trigger(48);
        // Most point reads during view maintenance miss (a new view row, new operator state):
        // a whole-key bloom filter on the memtable answers those without a skiplist search.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        let mut block = rocksdb::BlockBasedOptions::default();
        block.set_block_cache(&rocksdb::Cache::new_lru_cache(256 << 20));
        block.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&block);
        // Opened with the default column family named, so that its handle is available to
        // batched reads (`multi_get`), and with these options: `DB::open_cf` would give it
        // RocksDB's defaults (no blob files, no bloom filters, a small block cache).
        let cf = rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone());
        let db = DB::open_cf_descriptors(&opts, dir, [cf])
            .map_err(|e| Error::io(format!("cannot open the data directory {}", dir.display()), e))?;
        Ok(RocksStore { db: Arc::new(db) })
    }
}

impl StateStore for RocksStore {
    fn snapshot(&self) -> Arc<dyn StateSnapshot> {
        let snap = self.db.snapshot();
        // SAFETY: the snapshot borrows `*self.db`, which lives in an `Arc` that `RocksSnapshot`
        // keeps alive (`db`) and drops after `snap` (fields drop in declaration order).
        let snap: SnapshotWithThreadMode<'static, DB> = unsafe { std::mem::transmute(snap) };
        Arc::new(RocksSnapshot {
            snap,
            db: self.db.clone(),
        })
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => wb.put(k, v),
                WriteOp::Delete(k) => wb.delete(k),
                WriteOp::DeleteRange(from, to) => wb.delete_range(from, to),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    fn close(&self) {
        self.db.cancel_all_background_work(true);
    }
}

struct RocksSnapshot {
    snap: SnapshotWithThreadMode<'static, DB>,
    db: Arc<DB>,
}

impl RocksSnapshot {
    /// `keys`' values; `fill_cache`: keep the blocks read from files in the block cache.
    fn multi_get_with(&self, keys: &[&[u8]], fill_cache: bool) -> Result<Vec<Option<Vec<u8>>>> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        ro.fill_cache(fill_cache);
        let cf = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| Error::internal("the default column family is missing"))?;
        self.db
            .batched_multi_get_cf_opt(cf, keys.iter().copied(), true, &ro)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }
}

impl StateSnapshot for RocksSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snap.get(key)?)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.multi_get_with(keys, true)
    }

    fn multi_get_uncached(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.multi_get_with(keys, false)
    }

    fn scan<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<KeyValue>> + Send + 'a> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        let iter = self.snap.iterator_opt(IteratorMode::From(from, Direction::Forward), ro);
        Box::new(iter.map(|r| r.map_err(Error::from)))
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<KeyValue>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        let mut iter = self.snap.iterator_opt(IteratorMode::End, ro);
        iter.next().transpose().map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads that leave the block cache alone answer what cached reads answer, from the
    /// memtable and from table files alike.
    #[test]
    fn uncached_reads_answer_what_cached_reads_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path()).expect("open");
        let mut batch = WriteBatch::default();
        for i in 0..1000u32 {
            batch.put(format!("k{i:05}").into_bytes(), i.to_be_bytes().to_vec());
        }
        store.commit(batch, false).expect("commit");
        store.db.flush().expect("flush");
        let mut batch = WriteBatch::default();
        batch.put(b"k00003".to_vec(), b"new".to_vec());
        batch.delete(b"k00004".to_vec());
        store.commit(batch, false).expect("commit");
        let keys: Vec<Vec<u8>> = ["k00001", "k00003", "k00004", "k00500", "k99999"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let snap = store.snapshot();
        let cached = snap.multi_get(&refs).expect("multi_get");
        assert_eq!(
            cached,
            vec![
                Some(1u32.to_be_bytes().to_vec()),
                Some(b"new".to_vec()),
                None,
                Some(500u32.to_be_bytes().to_vec()),
                None
            ]
        );
        assert_eq!(snap.multi_get_uncached(&refs).expect("uncached"), cached);
    }
}
