//! [`ThinBytes`]: an owned byte string behind one pointer, its length at the start of its
//! allocation.
//!
//! A `Box<[u8]>` is a pointer and a length (16 bytes). A mirror of operator state holds one
//! owned entry per key, millions of them, in hash-table slots and B-tree nodes, which then
//! hold 16 bytes an entry; with the length in the allocation (a varint: one byte up to 127)
//! they hold 8. The allocation is 2-aligned, so a pointer to one has its low bit clear:
//! `state_index` uses it to tell a slot's two kinds apart in one word.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// `n` as a varint (LEB128: seven bits a byte, low first, the high bit set on all but the
/// last); returns the buffer and the bytes used.
#[inline]
pub fn varint(n: u32) -> ([u8; 5], usize) {
    let mut b = [0u8; 5];
    let (mut n, mut i) = (n, 0);
    while n >= 0x80 {
        b[i] = n as u8 | 0x80;
        n >>= 7;
        i += 1;
    }
    b[i] = n as u8;
    (b, i + 1)
}

/// The varint [`varint`] wrote at the start of `b`, and its length in bytes.
#[inline]
pub fn read_varint(b: &[u8]) -> (usize, usize) {
    if b[0] < 0x80 {
        return (b[0] as usize, 1);
    }
    let (mut n, mut i) = (0usize, 0);
    loop {
        n |= ((b[i] & 0x7f) as usize) << (7 * i);
        if b[i] < 0x80 {
            return (n, i + 1);
        }
        i += 1;
    }
}

/// An owned, fixed-length byte string (at most `u32::MAX` bytes) in one 2-aligned allocation.
#[repr(transparent)]
pub struct ThinBytes(NonNull<u8>);

// SAFETY: a `ThinBytes` owns its allocation, as a `Box<[u8]>` does.
unsafe impl Send for ThinBytes {}
// SAFETY: shared access only reads.
unsafe impl Sync for ThinBytes {}

fn layout(header: usize, len: usize) -> Layout {
    Layout::from_size_align(header + len, 2).expect("a byte string's layout")
}

impl ThinBytes {
    /// The concatenation of `parts`.
    pub fn concat(parts: &[&[u8]]) -> ThinBytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let (header, h) = varint(u32::try_from(len).expect("a byte string of at most 4 GiB"));
        let layout = layout(h, len);
        // SAFETY: the layout has a non-zero size (the header).
        let ptr = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation holds h + len bytes; the header, then the parts one after
        // the other, are copied into it, which then holds initialised bytes only.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), ptr.as_ptr(), h);
            let mut at = ptr.as_ptr().add(h);
            for p in parts {
                std::ptr::copy_nonoverlapping(p.as_ptr(), at, p.len());
                at = at.add(p.len());
            }
        }
        ThinBytes(ptr)
    }

    /// The data's length and the header's.
    #[inline]
    fn lengths(&self) -> (usize, usize) {
        // SAFETY: the allocation starts with its header, at least one byte.
        let first = unsafe { *self.0.as_ptr() };
        if first < 0x80 {
            return (first as usize, 1);
        }
        // SAFETY: as above; a varint of 2 or more bytes says 128 or more, so 5 bytes exist.
        read_varint(unsafe { std::slice::from_raw_parts(self.0.as_ptr(), 5) })
    }

    /// The pointer, for a caller that keeps a `ThinBytes` in a word of its own
    /// ([`ThinBytes::from_raw`] takes it back). Its low bit is clear.
    pub fn into_raw(self) -> NonNull<u8> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// # Safety
    /// `p` comes from [`ThinBytes::into_raw`], and is taken back once.
    pub unsafe fn from_raw(p: NonNull<u8>) -> ThinBytes {
        ThinBytes(p)
    }
}

impl std::ops::Deref for ThinBytes {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        let (len, h) = self.lengths();
        // SAFETY: the allocation holds the header then `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(h), len) }
    }
}

impl std::ops::DerefMut for ThinBytes {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let (len, h) = self.lengths();
        // SAFETY: as for `deref`, and `self` is borrowed uniquely.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr().add(h), len) }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        let (len, h) = self.lengths();
        // SAFETY: allocated by `concat` with this layout.
        unsafe { dealloc(self.0.as_ptr(), layout(h, len)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_concatenation_of_its_parts() {
        let long = vec![7u8; 20_000];
        for parts in [
            vec![],
            vec![&b""[..]],
            vec![&b"ab"[..], b"", b"cde"],
            vec![&[1u8; 127][..]],
            vec![&[1u8; 127][..], b"x"],
            vec![&long[..1000], b"x"],
            vec![&long[..]],
        ] {
            let t = ThinBytes::concat(&parts);
            assert_eq!(&*t, parts.concat().as_slice());
            let raw = t.into_raw();
            assert_eq!(raw.as_ptr().addr() & 1, 0);
            // SAFETY: from into_raw, taken back once.
            let mut t = unsafe { ThinBytes::from_raw(raw) };
            if let Some(b) = t.first_mut() {
                *b = 9;
                assert_eq!(t[0], 9);
            }
            assert_eq!(t.len(), parts.concat().len());
        }
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 21, u32::MAX] {
            let (b, used) = varint(n);
            let mut padded = b[..used].to_vec();
            padded.extend_from_slice(&[0xff; 4]);
            assert_eq!(read_varint(&padded), (n as usize, used), "{n}");
        }
        assert_eq!(std::mem::size_of::<ThinBytes>(), 8);
        assert_eq!(std::mem::size_of::<Option<ThinBytes>>(), 8);
    }
}
