//! An in-memory [`StateStore`] for unit tests: a `BTreeMap` behind a lock, snapshots by copy.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::{KeyValue, StateSnapshot, StateStore, WriteBatch, WriteOp};
use crate::error::Result;

#[derive(Default)]
pub struct MemoryStore {
    data: RwLock<Arc<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

struct MemorySnapshot(Arc<BTreeMap<Vec<u8>, Vec<u8>>>);

impl StateStore for MemoryStore {
    fn snapshot(&self) -> Arc<dyn StateSnapshot> {
        Arc::new(MemorySnapshot(self.data.read().expect("lock").clone()))
    }

    fn commit(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut guard = self.data.write().expect("lock");
        let map = Arc::make_mut(&mut guard);
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
                WriteOp::DeleteRange(from, to) => {
                    let doomed: Vec<_> = map.range(from..to).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }
}

impl StateSnapshot for MemorySnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key).cloned())
    }

    fn scan<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<KeyValue>> + Send + 'a> {
        Box::new(
            self.0
                .range(from.to_vec()..to.to_vec())
                .map(|(k, v)| Ok((k.clone().into_boxed_slice(), v.clone().into_boxed_slice()))),
        )
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self
            .0
            .range(from.to_vec()..to.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone().into_boxed_slice(), v.clone().into_boxed_slice())))
    }
}
