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

//!
//! Each entry (its group, the rest of its key, its value) is one allocation ([`Packed`] alone
//! in its group, [`Member`] in a group of several), and
//! a group of one entry (most groups: an aggregate's group, a join key seen once) is that
//! entry alone in the hash table: a mirror of millions of entries costs a slot and an
//! allocation per entry, not three allocations and a wide slot.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::ptr::NonNull;

// hashbrown with foldhash (DataFusion's): the state of a view is hashed once per lookup.
use hashbrown::{DefaultHashBuilder, HashTable};

use super::thin_bytes::{read_varint, varint, ThinBytes};

/// The parts of an entry: `rest_len | rest | tag | value` (the length a varint; tag 0: a
/// deletion, no value), after `before`; for [`ThinBytes::concat`].
fn entry_parts<'a>(
    before: [&'a [u8]; 2],
    rest_len: &'a [u8],
    rest: &'a [u8],
    value: Option<&'a [u8]>,
) -> [&'a [u8]; 6] {
    let (tag, value): (&[u8], &[u8]) = match value {
        Some(v) => (&[1], v),
        None => (&[0], &[]),
    };
    [before[0], before[1], rest_len, rest, tag, value]
}

/// `bytes.len()` as a varint (see [`entry_parts`]).
fn len_of(bytes: &[u8]) -> ([u8; 5], usize) {
    varint(bytes.len() as u32)
}

/// The rest of the key of an entry laid out as [`entry_parts`] lays it out.
#[inline]
fn entry_rest(e: &[u8]) -> &[u8] {
    let (n, h) = read_varint(e);
    &e[h..h + n]
}

/// The value of an entry laid out as [`entry_parts`] lays it out (`None`: a deletion).
fn entry_value(e: &[u8]) -> Option<&[u8]> {
    let (n, h) = read_varint(e);
    let tag = h + n;
    (e[tag] == 1).then(|| &e[tag + 1..])
}

/// [`entry_value`], to be overwritten in place.
fn entry_value_mut(e: &mut [u8]) -> Option<&mut [u8]> {
    let (n, h) = read_varint(e);
    let tag = h + n;
    (e[tag] == 1).then(|| &mut e[tag + 1..])
}

/// Writes `new` over `entry`'s value if it has one of the same length; false if not.
fn overwrite(value: Option<&mut [u8]>, new: &[u8]) -> bool {
    match value {
        Some(v) if v.len() == new.len() => {
            v.copy_from_slice(new);
            true
        }
        _ => false,
    }
}

/// What [`Packed`] and [`Member`] answer alike.
trait Entry {
    fn rest(&self) -> &[u8];

    /// The value (`None`: a deletion).
    fn value(&self) -> Option<&[u8]>;

    /// Bytes of the value (0 for a deletion).
    fn value_len(&self) -> usize {
        self.value().map_or(0, |v| v.len())
    }

    /// The full key: `group`, then the rest.
    fn key(&self, group: &[u8]) -> Vec<u8> {
        [group, self.rest()].concat()
    }
}

/// The entry of a group of one, in one allocation: `group_len | group` (the length a varint)
/// then the entry as [`entry_parts`] lays it out.
#[repr(transparent)]
struct Packed(ThinBytes);

impl Packed {
    fn new(group: &[u8], rest: &[u8], value: Option<&[u8]>) -> Packed {
        let (group_len, g) = len_of(group);
        let (rest_len, r) = len_of(rest);
        Packed(ThinBytes::concat(&entry_parts(
            [&group_len[..g], group],
            &rest_len[..r],
            rest,
            value,
        )))
    }

    /// Where the entry starts (after the group).
    #[inline]
    fn entry_at(&self) -> usize {
        let (n, h) = read_varint(&self.0);
        h + n
    }

    #[inline]
    fn group(&self) -> &[u8] {
        let (n, h) = read_varint(&self.0);
        &self.0[h..h + n]
    }
}

impl Packed {
    fn value_mut(&mut self) -> Option<&mut [u8]> {
        let at = self.entry_at();
        entry_value_mut(&mut self.0[at..])
    }
}

impl Entry for Packed {
    fn rest(&self) -> &[u8] {
        entry_rest(&self.0[self.entry_at()..])
    }

    fn value(&self) -> Option<&[u8]> {
        entry_value(&self.0[self.entry_at()..])
    }
}

/// An entry of a group of several, as [`entry_parts`] lays it out (the group is the
/// group's). Ordered by the rest of its key, which starts after one varint (a byte, for a
/// key shorter than 128): a tree descent compares a dozen or more of them.
struct Member(ThinBytes);

impl Member {
    fn new(rest: &[u8], value: Option<&[u8]>) -> Member {
        let (rest_len, r) = len_of(rest);
        Member(ThinBytes::concat(&entry_parts([&[], &[]], &rest_len[..r], rest, value)))
    }
}

impl Entry for Member {
    #[inline]
    fn rest(&self) -> &[u8] {
        entry_rest(&self.0)
    }

    fn value(&self) -> Option<&[u8]> {
        entry_value(&self.0)
    }
}

/// The rest of a key, ordered as bytes are but compared eight bytes at a time inline: a tree
/// descent compares a dozen or more short keys, and a `memcmp` call for each was a sixth of
/// a COUNT(DISTINCT) aggregate's time.
#[derive(PartialEq, Eq)]
#[repr(transparent)]
struct KeySlice([u8]);

impl KeySlice {
    fn new(bytes: &[u8]) -> &KeySlice {
        // SAFETY: `KeySlice` is a `repr(transparent)` wrapper of `[u8]`.
        unsafe { &*(bytes as *const [u8] as *const KeySlice) }
    }
}

impl Ord for KeySlice {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        byte_order(&self.0, &other.0)
    }
}

impl PartialOrd for KeySlice {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// A group's entries order and compare by the rest of their key (as `KeySlice`s do, so that
// a set of them is searched by a `KeySlice`).
impl std::borrow::Borrow<KeySlice> for Member {
    #[inline]
    fn borrow(&self) -> &KeySlice {
        KeySlice::new(self.rest())
    }
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.rest() == other.rest()
    }
}

impl Eq for Member {}

impl Ord for Member {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        byte_order(self.rest(), other.rest())
    }
}

impl PartialOrd for Member {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `a.cmp(b)` for byte strings (lexicographic), eight bytes at a time.
#[inline]
pub(super) fn byte_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
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

/// Slots (8 bytes each) an emptied index keeps for its next entries ([`Index::clear`]).
const KEPT_SLOTS: usize = 1 << 18;

/// Entries a group keeps in a sorted vector before it becomes a tree.
const FEW: usize = 32;

/// A slot of the hash table: one group, in one word (a table of millions of groups, and the
/// copy of it while it grows, take a third of the room that a 24-byte enum of a `Box<[u8]>`
/// and a box took): a group of one entry ([`Packed`], its pointer as is, low bit clear) or a
/// group that has had several entries (a `Box<Several>`, its pointer with the low bit set).
#[repr(transparent)]
struct Slot(NonNull<u8>);

// SAFETY: a slot owns what it points to, as the `Packed` or `Box<Several>` it holds would.
unsafe impl Send for Slot {}
// SAFETY: shared access only reads.
unsafe impl Sync for Slot {}

/// What a [`Slot`] holds, borrowed.
enum SlotRef<'a> {
    One(&'a Packed),
    Several(&'a Several),
}

/// What a [`Slot`] holds, borrowed to be changed.
enum SlotMut<'a> {
    One(&'a mut Packed),
    Several(&'a mut Several),
}

impl Slot {
    fn one(p: Packed) -> Slot {
        Slot(p.0.into_raw())
    }

    fn several(s: Box<Several>) -> Slot {
        let p = Box::into_raw(s).cast::<u8>();
        Slot(NonNull::new(p.map_addr(|a| a | 1)).expect("a box is not null"))
    }

    #[inline]
    fn is_several(&self) -> bool {
        self.0.as_ptr().addr() & 1 == 1
    }

    #[inline]
    fn several_ptr(&self) -> *mut Several {
        self.0.as_ptr().map_addr(|a| a & !1).cast::<Several>()
    }

    #[inline]
    fn get(&self) -> SlotRef<'_> {
        if self.is_several() {
            // SAFETY: a tagged slot holds a `Box<Several>`'s pointer, owned by the slot.
            SlotRef::Several(unsafe { &*self.several_ptr() })
        } else {
            // SAFETY: an untagged slot is a `Packed`'s pointer (`Slot`, `Packed` and
            // `ThinBytes` are all transparent over it).
            SlotRef::One(unsafe { &*(self as *const Slot).cast::<Packed>() })
        }
    }

    #[inline]
    fn get_mut(&mut self) -> SlotMut<'_> {
        if self.is_several() {
            // SAFETY: as in `get`, borrowed uniquely.
            SlotMut::Several(unsafe { &mut *self.several_ptr() })
        } else {
            // SAFETY: as in `get`, borrowed uniquely.
            SlotMut::One(unsafe { &mut *(self as *mut Slot).cast::<Packed>() })
        }
    }

    /// The entry of a group of one; None for a group of several (dropped).
    fn into_one(self) -> Option<Packed> {
        if self.is_several() {
            return None;
        }
        let p = self.0;
        std::mem::forget(self);
        // SAFETY: an untagged slot's pointer came from `ThinBytes::into_raw`, and the slot
        // that owned it is forgotten.
        Some(Packed(unsafe { ThinBytes::from_raw(p) }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.is_several() {
            // SAFETY: from `Box::into_raw` in `Slot::several`, dropped once.
            drop(unsafe { Box::from_raw(self.several_ptr()) });
        } else {
            // SAFETY: from `ThinBytes::into_raw` in `Slot::one`, dropped once.
            drop(unsafe { ThinBytes::from_raw(self.0) });
        }
    }
}

struct Several {
    group: Box<[u8]>,
    entries: Entries,
}

/// A group's entries, ordered by the rest of their key.
enum Entries {
    /// Sorted; at most [`FEW`] entries.
    Few(Vec<Member>),
    Many(BTreeSet<Member>),
}

impl Slot {
    #[inline]
    fn group(&self) -> &[u8] {
        match self.get() {
            SlotRef::One(p) => p.group(),
            SlotRef::Several(s) => &s.group,
        }
    }
}

impl Entries {
    fn get(&self, rest: &[u8]) -> Option<&Member> {
        match self {
            Entries::Few(v) => v.binary_search_by(|p| p.rest().cmp(rest)).ok().map(|i| &v[i]),
            Entries::Many(set) => set.get(KeySlice::new(rest)),
        }
    }

    /// Inserts or replaces `entry`; returns the value length of the entry it replaces.
    fn insert(&mut self, entry: Member) -> Option<usize> {
        match self {
            Entries::Few(v) => match v.binary_search_by(|p| p.rest().cmp(entry.rest())) {
                Ok(i) => Some(std::mem::replace(&mut v[i], entry).value_len()),
                Err(i) => {
                    v.insert(i, entry);
                    if v.len() > FEW {
                        *self = Entries::Many(std::mem::take(v).into_iter().collect());
                    }
                    None
                }
            },
            Entries::Many(set) => set.replace(entry).map(|old| old.value_len()),
        }
    }

    fn remove(&mut self, rest: &[u8]) -> Option<Member> {
        match self {
            Entries::Few(v) => {
                let i = v.binary_search_by(|p| p.rest().cmp(rest)).ok()?;
                Some(v.remove(i))
            }
            Entries::Many(set) => set.take(KeySlice::new(rest)),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Entries::Few(v) => v.is_empty(),
            Entries::Many(set) => set.is_empty(),
        }
    }

    /// The first `limit` entries whose rest starts with `prefix` and is at least `start` (not
    /// less than `prefix`), in order.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<&Member> {
        match self {
            Entries::Few(v) => {
                let from = v.partition_point(|p| p.rest() < start);
                v[from..]
                    .iter()
                    .take_while(|p| p.rest().starts_with(prefix))
                    .take(limit)
                    .collect()
            }
            Entries::Many(set) => set
                .range::<KeySlice, _>((
                    std::ops::Bound::Included(KeySlice::new(start)),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|p| p.rest().starts_with(prefix))
                .take(limit)
                .collect(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &Member> + '_> {
        match self {
            Entries::Few(v) => Box::new(v.iter()),
            Entries::Many(set) => Box::new(set.iter()),
        }
    }
}

/// Keys to values or deletions (`None`), grouped by key prefix (see the module documentation).
pub struct Index {
    table: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    /// Bytes before the group length in every key (1 for tagged keys); `None`: one group.
    offset: Option<usize>,
    len: usize,
}

impl Index {
    /// Keys grouped as the module documentation says (`offset`: bytes before the length);
    /// `None`: every key in one ordered group.
    pub fn new(offset: Option<usize>) -> Index {
        Index {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
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
    #[inline]
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

    /// `key` split into its group and the rest, as this index splits it.
    pub fn split<'k>(&self, key: &'k [u8]) -> (&'k [u8], &'k [u8]) {
        key.split_at(self.group_len(key))
    }

    /// The hash-table bucket `key`'s group hashes to: writes applied in bucket order sweep
    /// the table once instead of jumping around it (each jump a cache miss in a big table).
    pub fn bucket_of(&self, key: &[u8]) -> usize {
        let buckets = (self.table.capacity() * 8 / 7).next_power_of_two().max(1);
        self.hasher.hash_one(self.split(key).0) as usize & (buckets - 1)
    }

    fn find(&self, group: &[u8]) -> Option<&Slot> {
        self.table.find(self.hasher.hash_one(group), |s| s.group() == group)
    }

    /// The value of `key` (`Some(None)`: a deletion), if it has an entry.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let (group, rest) = self.split(key);
        match self.find(group)?.get() {
            SlotRef::One(p) => (p.rest() == rest).then(|| p.value()),
            SlotRef::Several(s) => s.entries.get(rest).map(|m| m.value()),
        }
    }

    /// Sets `key` to `value` (`None`: a deletion); returns the value length of the entry it
    /// replaces (0 for a deletion).
    pub fn insert(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<usize> {
        let (group, rest) = self.split(key);
        self.insert_parts(group, rest, value)
    }

    /// [`Index::insert`] of the key `group` then `rest`, split where this index splits it
    /// (as [`Index::try_for_each`] gives keys of an index with the same offset).
    pub fn insert_parts(&mut self, group: &[u8], rest: &[u8], value: Option<&[u8]>) -> Option<usize> {
        let Index { table, hasher, .. } = self;
        let hash = hasher.hash_one(group);
        let old = match table.find_mut(hash, |s| s.group() == group) {
            None => {
                table.insert_unique(hash, Slot::one(Packed::new(group, rest, value)), |s| {
                    hasher.hash_one(s.group())
                });
                None
            }
            Some(slot) => 'found: {
                if let SlotMut::One(p) = slot.get_mut() {
                    if p.rest() == rest {
                        let old_len = p.value_len();
                        // A value of the old one's length (an aggregate's state, a counter)
                        // is written in place: no allocation per update.
                        if !value.is_some_and(|v| overwrite(p.value_mut(), v)) {
                            *p = Packed::new(group, rest, value);
                        }
                        break 'found Some(old_len);
                    }
                    let first = Member::new(p.rest(), p.value());
                    *slot = Slot::several(Box::new(Several {
                        group: group.into(),
                        entries: Entries::Few(vec![first]),
                    }));
                }
                let SlotMut::Several(s) = slot.get_mut() else {
                    unreachable!("a group of several")
                };
                s.entries.insert(Member::new(rest, value))
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Sets the value of the key `group` then `rest` (split where this index splits it) to
    /// `f` of its value (`None`: no entry, or a deletion), or removes its entry if `f` gives
    /// `None`, finding the entry once: a new value of the old one's length is written in
    /// place (a counter). `f` may be called twice (a group kept in a tree is searched by
    /// inserting `f(None)`), so it must be a function of its argument. Returns the old
    /// value's length if the key had an entry. `expect_entry`: the caller expects the key to
    /// have one (a count decremented), so a tree is searched by taking the entry out instead
    /// (one search when `f` removes it, and no new allocation when it does not).
    pub fn update_parts<const N: usize>(
        &mut self,
        group: &[u8],
        rest: &[u8],
        expect_entry: bool,
        f: impl Fn(Option<&[u8]>) -> Option<[u8; N]>,
    ) -> Option<usize> {
        let Index { table, hasher, len, .. } = self;
        let hash = hasher.hash_one(group);
        let mut slot = match table.find_entry(hash, |s| s.group() == group) {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(new) = f(None) {
                    table.insert_unique(hash, Slot::one(Packed::new(group, rest, Some(&new))), |s| {
                        hasher.hash_one(s.group())
                    });
                    *len += 1;
                }
                return None;
            }
        };
        let old_len = match slot.get_mut().get_mut() {
            SlotMut::One(p) if p.rest() == rest => {
                let old_len = p.value_len();
                match f(p.value()) {
                    None => {
                        slot.remove();
                        *len -= 1;
                    }
                    Some(new) => {
                        if !overwrite(p.value_mut(), &new) {
                            *p = Packed::new(group, rest, Some(&new));
                        }
                    }
                }
                return Some(old_len);
            }
            SlotMut::One(p) => {
                let new = f(None)?;
                let first = Member::new(p.rest(), p.value());
                let mut entries = Entries::Few(vec![first]);
                entries.insert(Member::new(rest, Some(&new)));
                *slot.get_mut() = Slot::several(Box::new(Several {
                    group: group.into(),
                    entries,
                }));
                *len += 1;
                return None;
            }
            SlotMut::Several(s) => match &mut s.entries {
                Entries::Few(v) => match v.binary_search_by(|p| p.rest().cmp(rest)) {
                    Ok(i) => {
                        let old_len = v[i].value_len();
                        match f(v[i].value()) {
                            None => {
                                v.remove(i);
                                *len -= 1;
                            }
                            Some(new) => {
                                if !overwrite(entry_value_mut(&mut v[i].0[..]), &new) {
                                    v[i] = Member::new(rest, Some(&new));
                                }
                            }
                        }
                        Some(old_len)
                    }
                    Err(_) => {
                        if let Some(new) = f(None) {
                            s.entries.insert(Member::new(rest, Some(&new)));
                            *len += 1;
                        }
                        return None;
                    }
                },
                Entries::Many(set) if expect_entry => {
                    let Some(mut old) = set.take(KeySlice::new(rest)) else {
                        if let Some(new) = f(None) {
                            set.insert(Member::new(rest, Some(&new)));
                            *len += 1;
                        }
                        return None;
                    };
                    let old_len = old.value_len();
                    match f(old.value()) {
                        None => *len -= 1,
                        Some(new) => {
                            if !overwrite(entry_value_mut(&mut old.0[..]), &new) {
                                old = Member::new(rest, Some(&new));
                            }
                            set.insert(old);
                        }
                    }
                    Some(old_len)
                }
                Entries::Many(set) => {
                    // Inserting the value of a new entry finds the old one if there is one
                    // (most updates of a big group add an entry: a join row).
                    let Some(guess) = f(None) else {
                        let old = set.get(KeySlice::new(rest))?;
                        let old_len = old.value_len();
                        match f(old.value()) {
                            None => {
                                set.remove(KeySlice::new(rest));
                                *len -= 1;
                            }
                            Some(new) => {
                                set.replace(Member::new(rest, Some(&new)));
                            }
                        }
                        return Some(old_len);
                    };
                    let Some(mut old) = set.replace(Member::new(rest, Some(&guess))) else {
                        *len += 1;
                        return None;
                    };
                    let old_len = old.value_len();
                    match f(old.value()) {
                        None => {
                            set.remove(KeySlice::new(rest));
                            *len -= 1;
                        }
                        Some(new) if new != guess => {
                            // The old entry takes the new value in place when it fits (a
                            // counter), and goes back instead of the guess.
                            if !overwrite(entry_value_mut(&mut old.0[..]), &new) {
                                old = Member::new(rest, Some(&new));
                            }
                            set.replace(old);
                        }
                        Some(_) => {}
                    }
                    Some(old_len)
                }
            },
        };
        if let SlotRef::Several(s) = slot.get().get() {
            if s.entries.is_empty() {
                slot.remove();
            }
        }
        old_len
    }

    /// Removes `key`'s entry; returns its value length (0 for a deletion).
    pub fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let (group, rest) = self.split(key);
        self.remove_parts(group, rest)
    }

    /// [`Index::remove`] of the key `group` then `rest` (see [`Index::insert_parts`]).
    pub fn remove_parts(&mut self, group: &[u8], rest: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(group);
        let Ok(mut slot) = self.table.find_entry(hash, |s| s.group() == group) else {
            return None;
        };
        let removed = match slot.get_mut().get_mut() {
            SlotMut::One(p) if p.rest() == rest => {
                let p = slot.remove().0.into_one().expect("matched above");
                p.value_len()
            }
            SlotMut::One(_) => return None,
            SlotMut::Several(s) => {
                let p = s.entries.remove(rest)?;
                if s.entries.is_empty() {
                    slot.remove();
                }
                p.value_len()
            }
        };
        self.len -= 1;
        Some(removed)
    }

    /// The first `limit` entries whose key starts with `prefix`, in key order (full keys).
    pub fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Option<&[u8]>)> {
        self.scan_from(prefix, prefix, limit)
    }

    /// The first `limit` entries whose key starts with `prefix` and is at least `start` (a
    /// key under `prefix`), in key order (full keys).
    pub fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<(Vec<u8>, Option<&[u8]>)> {
        debug_assert!(start.starts_with(prefix));
        if let Some(glen) = self.declared_group(prefix) {
            let (group, rest_prefix) = prefix.split_at(glen);
            let rest_start = &start[glen..];
            return match self.find(group).map(Slot::get) {
                None => Vec::new(),
                Some(SlotRef::One(p)) => {
                    if p.rest().starts_with(rest_prefix) && p.rest() >= rest_start && limit > 0 {
                        vec![(p.key(group), p.value())]
                    } else {
                        Vec::new()
                    }
                }
                Some(SlotRef::Several(s)) => s
                    .entries
                    .scan(rest_prefix, rest_start, limit)
                    .into_iter()
                    .map(|p| (p.key(group), p.value()))
                    .collect(),
            };
        }
        // A prefix shorter than a group: every group, sorted.
        let mut out: Vec<(Vec<u8>, Option<&[u8]>)> = Vec::new();
        for slot in &self.table {
            match slot.get() {
                SlotRef::One(p) => out.push((p.key(p.group()), p.value())),
                SlotRef::Several(s) => out.extend(s.entries.iter().map(|p| (p.key(&s.group), p.value()))),
            }
        }
        out.retain(|(k, _)| k.starts_with(prefix) && k.as_slice() >= start);
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        out
    }

    /// Calls `f(group, rest, value)` for every entry (its key is `group` then `rest`), in no
    /// particular order, until `f` fails.
    pub fn try_for_each<E>(&self, mut f: impl FnMut(&[u8], &[u8], Option<&[u8]>) -> Result<(), E>) -> Result<(), E> {
        for slot in &self.table {
            match slot.get() {
                SlotRef::One(p) => f(p.group(), p.rest(), p.value())?,
                SlotRef::Several(s) => {
                    for p in s.entries.iter() {
                        f(&s.group, p.rest(), p.value())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every entry, keeping the table's room for as many unless that is more than
    /// [`KEPT_SLOTS`] (a backfill's writes must not hold memory for the life of the view).
    pub fn clear(&mut self) {
        if self.table.capacity() > KEPT_SLOTS {
            self.table = HashTable::new();
        } else {
            self.table.clear();
        }
        self.len = 0;
    }

    /// Every entry (full keys), in no particular order; the index is left empty.
    pub fn drain(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::with_capacity(self.len);
        for slot in self.table.drain() {
            match slot.get() {
                SlotRef::One(p) => out.push((p.key(p.group()), p.value().map(|v| v.to_vec()))),
                SlotRef::Several(s) => out.extend(
                    s.entries
                        .iter()
                        .map(|p| (p.key(&s.group), p.value().map(|v| v.to_vec()))),
                ),
            }
        }
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    /// Random inserts (of values and of deletions) and removes: every lookup and scan (of
    /// groups, of parts of groups, of everything) answers what an ordered map of the same
    /// entries answers.
    #[test]
    fn answers_what_an_ordered_map_answers() {
        for offset in [Some(0), Some(1), None] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7 + offset.unwrap_or(9) as u64);
            let mut index = Index::new(offset);
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            let len = |v: Option<Vec<u8>>| v.map_or(0, |v| v.len());
            for step in 0..20_000u32 {
                let k = key(&mut rng, offset.unwrap_or(0));
                if rng.random_bool(0.6) {
                    let value = rng
                        .random_bool(0.9)
                        .then(|| step.to_be_bytes()[..(step % 5) as usize].to_vec());
                    assert_eq!(
                        index.insert(&k, value.as_deref()),
                        model.insert(k.clone(), value).map(len)
                    );
                } else {
                    assert_eq!(index.remove(&k), model.remove(&k).map(len));
                }
                assert_eq!(index.len(), model.len());
                let probe = key(&mut rng, offset.unwrap_or(0));
                assert_eq!(index.get(&probe), model.get(&probe).map(|v| v.as_deref()));
                let cut = rng.random_range(0..=probe.len());
                let prefix = &probe[..cut];
                let limit = if rng.random_bool(0.5) {
                    usize::MAX
                } else {
                    rng.random_range(0..4)
                };
                let want: Vec<(Vec<u8>, Option<&[u8]>)> = model
                    .range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.as_deref()))
                    .collect();
                assert_eq!(index.scan(prefix, limit), want, "prefix {prefix:?} at step {step}");
                // From a key under the prefix on (the probe itself, or the prefix and a byte).
                let mut start = probe.clone();
                if rng.random_bool(0.3) {
                    start.truncate(cut);
                    start.push(rng.random_range(0..3u8));
                }
                let want: Vec<(Vec<u8>, Option<&[u8]>)> = model
                    .range(start.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.as_deref()))
                    .collect();
                assert_eq!(
                    index.scan_from(prefix, &start, limit),
                    want,
                    "prefix {prefix:?} from {start:?} at step {step}"
                );
            }
            let mut all = Vec::new();
            let Ok(()) = index.try_for_each(|g, r, v| {
                all.push(([g, r].concat(), v.map(|v| v.to_vec())));
                Ok::<(), std::convert::Infallible>(())
            });
            all.sort();
            let kept = index.len();
            let mut copy = Index::new(offset);
            let Ok(()) = index.try_for_each(|g, r, v| {
                copy.insert_parts(g, r, v);
                Ok::<(), std::convert::Infallible>(())
            });
            assert_eq!(copy.len(), kept);
            copy.clear();
            assert!(copy.is_empty() && copy.scan(&[], usize::MAX).is_empty());
            let mut drained = index.drain();
            drained.sort();
            assert_eq!(drained, all);
            assert_eq!(drained, model.into_iter().collect::<Vec<_>>());
            assert!(index.is_empty());
        }
    }

    /// Counters updated in place (`update_parts`) among inserts of other values, deletions
    /// and removes, in groups of one, of a few (sorted vectors) and of many (trees): the
    /// index holds what an ordered map holds.
    #[test]
    fn updates_in_place_answer_what_an_ordered_map_answers() {
        use crate::dataflow::state_table::decode_i64;
        for offset in [Some(0), None] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            let mut index = Index::new(offset);
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for step in 0..30_000u32 {
                // Groups 0..3 (the first of which is big), rests of up to 3 bytes.
                let mut k = (1u32).to_be_bytes().to_vec();
                k.push(if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(1..3)
                });
                for _ in 0..rng.random_range(0..4) {
                    k.push(rng.random_range(0..8u8));
                }
                let (group, rest) = index.split(&k);
                let (group, rest) = (group.to_vec(), rest.to_vec());
                match rng.random_range(0..10) {
                    0 => {
                        let v = rng.random_bool(0.7).then(|| vec![step as u8; 3]);
                        let want = model.insert(k.clone(), v.clone()).map(|v| v.map_or(0, |v| v.len()));
                        assert_eq!(index.insert(&k, v.as_deref()), want);
                    }
                    1 => {
                        let want = model.remove(&k).map(|v| v.map_or(0, |v| v.len()));
                        assert_eq!(index.remove(&k), want);
                    }
                    _ => {
                        let delta = rng.random_range(-2..=2i64);
                        let f = |v: Option<&[u8]>| {
                            let new = v.map_or(0, decode_i64) + delta;
                            (new != 0).then(|| new.to_be_bytes())
                        };
                        let old = model.get(&k).cloned();
                        let want = old.as_ref().map(|v| v.as_ref().map_or(0, |v| v.len()));
                        match f(old.as_ref().and_then(|v| v.as_deref())) {
                            Some(new) => model.insert(k.clone(), Some(new.to_vec())),
                            None => model.remove(&k),
                        };
                        let expect_entry = if rng.random_bool(0.8) {
                            delta < 0
                        } else {
                            rng.random_bool(0.5)
                        };
                        assert_eq!(index.update_parts(&group, &rest, expect_entry, f), want, "step {step}");
                    }
                }
                assert_eq!(index.len(), model.len(), "step {step}");
                assert_eq!(index.get(&k), model.get(&k).map(|v| v.as_deref()), "step {step}");
            }
            let mut all = Vec::new();
            let Ok(()) = index.try_for_each(|g, r, v| {
                all.push(([g, r].concat(), v.map(|v| v.to_vec())));
                Ok::<(), std::convert::Infallible>(())
            });
            all.sort();
            assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }
}
