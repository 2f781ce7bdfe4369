//! [`Index`]: the in-memory map of a [`super::state_table::StateTable`]: hashed point lookups,
//! ordered scans within a group.
//!
//! Operator state keys start with a group: `[tag] len:u32 bytes` (a join key, an aggregate
//! group, a top-N partition; see each operator), followed by what orders entries inside the
//! group. Operators look entries up one by one and scan one group at a time, never across
//! groups in order (but for rare full scans). So the index hashes the group and keeps each
//! group's entries ordered: a point lookup is one hash probe and a search in a small group,
//! not a descent through one tree of every entry, comparing long shared key prefixes.
//!
//! A key whose declared length does not fit (a plain point key, such as an aggregate's group
//! key) is a group of its own. A scan whose prefix holds a whole group reads only that group;
//! any other prefix (the empty one, a full scan) visits every group and sorts: correct, slow,
//! and rare. A table whose scans do not follow groups (a top-N without PARTITION BY scans its
//! first rows in sort order) uses one group for every key: an ordered tree, as before.

use std::collections::BTreeMap;

// hashbrown with foldhash (DataFusion's): the state of a view is hashed once per lookup.
use datafusion::common::HashMap;

/// Entries of one group, ordered by the rest of their key.
enum Group<V> {
    One(Vec<u8>, V),
    /// Sorted; at most [`FEW`] entries.
    Few(Vec<(Vec<u8>, V)>),
    Many(BTreeMap<Key, V>),
}

/// A key in a large group's tree, ordered as bytes are, but compared eight bytes at a time
/// inline: a tree descent compares a dozen or more short keys, and a `memcmp` call for each
/// was a sixth of a COUNT(DISTINCT) aggregate's time.
#[derive(Clone, PartialEq, Eq)]
struct Key(Vec<u8>);

/// The borrowed form of [`Key`], for lookups by `&[u8]`.
#[derive(PartialEq, Eq)]
#[repr(transparent)]
struct KeySlice([u8]);

impl KeySlice {
    fn new(bytes: &[u8]) -> &KeySlice {
        // SAFETY: `KeySlice` is a `repr(transparent)` wrapper of `[u8]`.
        unsafe { &*(bytes as *const [u8] as *const KeySlice) }
    }
}

impl std::borrow::Borrow<KeySlice> for Key {
    fn borrow(&self) -> &KeySlice {
        KeySlice::new(&self.0)
    }
}

impl Ord for KeySlice {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        byte_order(&self.0, &other.0)
    }
}

impl PartialOrd for KeySlice {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        byte_order(&self.0, &other.0)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `a.cmp(b)` for byte strings (lexicographic), eight bytes at a time.
#[inline]
fn byte_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// Entries a group keeps in a sorted vector before it becomes a tree.
const FEW: usize = 32;

/// Keys to values, grouped by key prefix (see the module documentation).
pub struct Index<V> {
    groups: HashMap<Vec<u8>, Group<V>>,
    /// Bytes before the group length in every key (1 for tagged keys); `None`: one group.
    offset: Option<usize>,
    len: usize,
}

impl<V> Index<V> {
    /// Keys grouped as the module documentation says (`offset`: bytes before the length);
    /// `None`: every key in one ordered group.
    pub fn new(offset: Option<usize>) -> Index<V> {
        Index {
            groups: HashMap::default(),
            offset,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of the group `key` declares (tag, length and that many bytes), if it fits.
    fn declared_group(&self, key: &[u8]) -> Option<usize> {
        let Some(o) = self.offset else {
            return Some(0);
        };
        if key.len() < o + 4 {
            return None;
        }
        let n = u32::from_be_bytes([key[o], key[o + 1], key[o + 2], key[o + 3]]) as usize;
        (n <= key.len() - o - 4).then_some(o + 4 + n)
    }

    /// Length of the group part of `key`: the group it declares, else the whole key. Keys
    /// that start with a prefix declaring a group all belong to that group.
    fn group_len(&self, key: &[u8]) -> usize {
        self.declared_group(key).unwrap_or(key.len())
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let (group, rest) = key.split_at(self.group_len(key));
        match self.groups.get(group)? {
            Group::One(r, v) => (r.as_slice() == rest).then_some(v),
            Group::Few(entries) => entries
                .binary_search_by(|(r, _)| r.as_slice().cmp(rest))
                .ok()
                .map(|i| &entries[i].1),
            Group::Many(tree) => tree.get(KeySlice::new(rest)),
        }
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        let (group, rest) = key.split_at(self.group_len(key));
        let Some(g) = self.groups.get_mut(group) else {
            self.groups.insert(group.to_vec(), Group::One(rest.to_vec(), value));
            self.len += 1;
            return None;
        };
        let old = match g {
            Group::One(r, v) if r.as_slice() == rest => Some(std::mem::replace(v, value)),
            Group::One(..) => {
                let Group::One(r, v) = std::mem::replace(g, Group::Few(Vec::new())) else {
                    unreachable!("matched above")
                };
                let mut entries = vec![(r, v), (rest.to_vec(), value)];
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                *g = Group::Few(entries);
                None
            }
            Group::Few(entries) => match entries.binary_search_by(|(r, _)| r.as_slice().cmp(rest)) {
                Ok(i) => Some(std::mem::replace(&mut entries[i].1, value)),
                Err(i) => {
                    entries.insert(i, (rest.to_vec(), value));
                    if entries.len() > FEW {
                        *g = Group::Many(std::mem::take(entries).into_iter().map(|(r, v)| (Key(r), v)).collect());
                    }
                    None
                }
            },
            Group::Many(tree) => tree.insert(Key(rest.to_vec()), value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let (group, rest) = key.split_at(self.group_len(key));
        let g = self.groups.get_mut(group)?;
        let (old, empty) = match g {
            Group::One(r, _) if r.as_slice() == rest => {
                let Some(Group::One(_, v)) = self.groups.remove(group) else {
                    unreachable!("matched above")
                };
                self.len -= 1;
                return Some(v);
            }
            Group::One(..) => return None,
            Group::Few(entries) => {
                let i = entries.binary_search_by(|(r, _)| r.as_slice().cmp(rest)).ok()?;
                let (_, v) = entries.remove(i);
                (v, entries.is_empty())
            }
            Group::Many(tree) => {
                let v = tree.remove(KeySlice::new(rest))?;
                (v, tree.is_empty())
            }
        };
        if empty {
            self.groups.remove(group);
        }
        self.len -= 1;
        Some(old)
    }

    /// The first `limit` entries whose key starts with `prefix`, in key order (full keys).
    pub fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, &V)> {
        let full = |group: &[u8], rest: &[u8]| {
            let mut k = Vec::with_capacity(group.len() + rest.len());
            k.extend_from_slice(group);
            k.extend_from_slice(rest);
            k
        };
        if let Some(glen) = self.declared_group(prefix) {
            let (group, rest_prefix) = prefix.split_at(glen);
            let Some(g) = self.groups.get(group) else {
                return Vec::new();
            };
            return match g {
                Group::One(r, v) => {
                    if r.starts_with(rest_prefix) && limit > 0 {
                        vec![(full(group, r), v)]
                    } else {
                        Vec::new()
                    }
                }
                Group::Few(entries) => {
                    let from = entries.partition_point(|(r, _)| r.as_slice() < rest_prefix);
                    entries[from..]
                        .iter()
                        .take_while(|(r, _)| r.starts_with(rest_prefix))
                        .take(limit)
                        .map(|(r, v)| (full(group, r), v))
                        .collect()
                }
                Group::Many(tree) => tree
                    .range::<KeySlice, _>((
                        std::ops::Bound::Included(KeySlice::new(rest_prefix)),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(r, _)| r.0.starts_with(rest_prefix))
                    .take(limit)
                    .map(|(r, v)| (full(group, &r.0), v))
                    .collect(),
            };
        }
        // A prefix shorter than a group: every group, sorted.
        let mut out: Vec<(Vec<u8>, &V)> = Vec::new();
        for (group, g) in &self.groups {
            match g {
                Group::One(r, v) => out.push((full(group, r), v)),
                Group::Few(entries) => out.extend(entries.iter().map(|(r, v)| (full(group, r), v))),
                Group::Many(tree) => out.extend(tree.iter().map(|(r, v)| (full(group, &r.0), v))),
            }
        }
        out.retain(|(k, _)| k.starts_with(prefix));
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        out
    }

    /// Calls `f(group, rest, value)` for every entry (its key is `group` then `rest`), in no
    /// particular order, until `f` fails.
    pub fn try_for_each<E>(&self, mut f: impl FnMut(&[u8], &[u8], &V) -> Result<(), E>) -> Result<(), E> {
        for (group, g) in &self.groups {
            match g {
                Group::One(r, v) => f(group, r, v)?,
                Group::Few(entries) => {
                    for (r, v) in entries {
                        f(group, r, v)?;
                    }
                }
                Group::Many(tree) => {
                    for (r, v) in tree {
                        f(group, &r.0, v)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every entry (full keys), in no particular order; the index is left empty.
    pub fn drain(&mut self) -> Vec<(Vec<u8>, V)> {
        let mut out = Vec::with_capacity(self.len);
        for (group, g) in self.groups.drain() {
            let full = |rest: Vec<u8>| {
                if rest.is_empty() {
                    return group.clone();
                }
                let mut k = Vec::with_capacity(group.len() + rest.len());
                k.extend_from_slice(&group);
                k.extend_from_slice(&rest);
                k
            };
            match g {
                Group::One(r, v) => out.push((full(r), v)),
                Group::Few(entries) => out.extend(entries.into_iter().map(|(r, v)| (full(r), v))),
                Group::Many(tree) => out.extend(tree.into_iter().map(|(r, v)| (full(r.0), v))),
            }
        }
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn byte_order_is_the_order_of_byte_strings() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            // Short alphabets and shared prefixes, so that equal runs and length ties happen.
            let gen = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
                let n = rng.random_range(0..24);
                (0..n).map(|_| rng.random_range(0..3u8) * 127).collect()
            };
            let a = gen(&mut rng);
            let mut b = if rng.random_bool(0.3) { a.clone() } else { gen(&mut rng) };
            if rng.random_bool(0.3) && !b.is_empty() {
                b.pop();
            }
            assert_eq!(byte_order(&a, &b), a.cmp(&b), "{a:?} {b:?}");
        }
    }

    /// A key as operators build them: `[tag] len group rest`, or a plain key.
    fn key(rng: &mut rand::rngs::StdRng, offset: usize) -> Vec<u8> {
        let mut k = Vec::new();
        if rng.random_bool(0.2) {
            // A plain key (its first bytes declare no group that fits, or a tiny one).
            for _ in 0..rng.random_range(0..6) {
                k.push(rng.random_range(0..3u8));
            }
            return k;
        }
        k.resize(offset, 1);
        let group_len = rng.random_range(0..3usize);
        k.extend_from_slice(&(group_len as u32).to_be_bytes());
        for _ in 0..group_len {
            k.push(rng.random_range(0..3u8));
        }
        for _ in 0..rng.random_range(0..3) {
            k.push(rng.random_range(0..4u8));
        }
        k
    }

    /// Random inserts and removes: every lookup and scan (of groups, of parts of groups, of
    /// everything) answers what an ordered map of the same entries answers.
    #[test]
    fn answers_what_an_ordered_map_answers() {
        for offset in [Some(0), Some(1), None] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7 + offset.unwrap_or(9) as u64);
            let mut index: Index<u32> = Index::new(offset);
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            for step in 0..20_000u32 {
                let k = key(&mut rng, offset.unwrap_or(0));
                if rng.random_bool(0.6) {
                    assert_eq!(index.insert(&k, step), model.insert(k.clone(), step));
                } else {
                    assert_eq!(index.remove(&k), model.remove(&k));
                }
                assert_eq!(index.len(), model.len());
                let probe = key(&mut rng, offset.unwrap_or(0));
                assert_eq!(index.get(&probe), model.get(&probe));
                let cut = rng.random_range(0..=probe.len());
                let prefix = &probe[..cut];
                let limit = if rng.random_bool(0.5) {
                    usize::MAX
                } else {
                    rng.random_range(0..4)
                };
                let want: Vec<(Vec<u8>, u32)> = model
                    .range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                let got: Vec<(Vec<u8>, u32)> = index.scan(prefix, limit).into_iter().map(|(k, v)| (k, *v)).collect();
                assert_eq!(got, want, "prefix {prefix:?} at step {step}");
            }
            let mut drained = index.drain();
            drained.sort();
            assert_eq!(drained, model.into_iter().collect::<Vec<_>>());
            assert!(index.is_empty());
        }
    }
}
