//! Byte buffers that sessions read into and write out of, and the per-worker pool that
//! recycles their storage so an idle connection holds no buffer memory.

/// A byte queue over a fixed slab of storage: bytes `start..end` are pending.
///
/// Invariants: `start <= end <= storage.len()`; storage is empty while released.
/// Writers call [`Buffer::advance`] as bytes leave; nothing moves until [`Buffer::compact`]
/// or [`Buffer::reset_if_empty`], so a request can be replayed from offset 0 while the
/// exchange keeps it (see the exchange's `RequestBody.replayable`).
#[derive(Debug, Default)]
pub struct Buffer {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buffer {
    /// Pending bytes.
    pub fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    /// Number of pending bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when the buffer owns storage.
    #[cfg(test)]
    fn is_allocated(&self) -> bool {
        !self.storage.is_empty()
    }

    /// Room left at the tail without moving bytes.
    pub fn tail_room(&self) -> usize {
        self.storage.len() - self.end
    }

    /// Room left after a compaction.
    pub fn room(&self) -> usize {
        self.storage.len() - self.len()
    }

    /// Offset of the first pending byte (for replay bookkeeping).
    pub fn start(&self) -> usize {
        self.start
    }

    /// Makes sure storage exists, taking it from `pool`.
    pub fn ensure(&mut self, pool: &mut BufPool) {
        if self.storage.is_empty() {
            self.storage = pool.take();
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when the storage is the size of `pool`'s buffers (taken from it, or from a
    /// pool of the same size).
    pub fn fits(&self, pool: &BufPool) -> bool {
        self.storage.len() == pool.size
    }

    /// Returns empty storage to `pool`; a buffer with pending bytes keeps it.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.storage.is_empty() {
            pool.give(std::mem::take(&mut self.storage));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops every pending byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Marks `n` pending bytes as gone; they stay in storage until the next compaction.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
    }

    /// Moves the read position back to `offset` (a replay of bytes still in storage).
    pub fn rewind_to(&mut self, offset: usize) {
        debug_assert!(offset <= self.start);
        self.start = offset;
    }

    /// When nothing is pending, reuses the storage from its beginning.
    pub fn reset_if_empty(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves pending bytes to the front so the tail has all the room.
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.storage.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The free tail to read into; follow with [`Buffer::commit`].
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.storage[self.end..]
    }

    /// Marks `n` bytes written into [`Buffer::spare`] as pending.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.storage.len());
        self.end += n;
    }

    /// Appends bytes, growing the storage if a head is larger than one buffer (rare).
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.extend_all(&[bytes]);
    }

    /// Appends several pieces (a header line's name, separator, value and line end) with
    /// one check for room.
    #[inline]
    pub fn extend_all(&mut self, pieces: &[&[u8]]) {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if self.tail_room() < len {
            self.make_room(len);
        }
        let mut at = self.end;
        for piece in pieces {
            self.storage[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        self.end = at;
    }

    /// Compacts, then grows the storage if `len` more bytes still do not fit (a head
    /// larger than one buffer: rare).
    #[cold]
    fn make_room(&mut self, len: usize) {
        self.compact();
        if self.tail_room() < len {
            let need = self.end + len;
            self.storage.resize(need.next_power_of_two(), 0);
        }
    }
}

impl std::fmt::Write for Buffer {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.extend(s.as_bytes());
        Ok(())
    }
}

/// A worker's stack of spare buffer storage, all of one size.
///
/// Invariant: every stored `Vec` has length `size`; at most `max_spare` are kept.
#[derive(Debug)]
pub struct BufPool {
    size: usize,
    max_spare: usize,
    spare: Vec<Vec<u8>>,
}

impl BufPool {
    /// A pool of `size`-byte buffers keeping at most `max_spare` unused ones.
    pub fn new(size: usize, max_spare: usize) -> BufPool {
        BufPool {
            size,
            max_spare,
            spare: Vec::new(),
        }
    }

    /// Size of each buffer.
    pub fn size(&self) -> usize {
        self.size
    }

    fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| vec![0; self.size])
    }

    /// Keeps `storage` for reuse; storage of another size (from the other pool) is freed.
    fn give(&mut self, storage: Vec<u8>) {
        if storage.len() == self.size && self.spare.len() < self.max_spare {
            self.spare.push(storage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_recycle() {
        let mut pool = BufPool::new(8, 4);
        let mut b = Buffer::default();
        b.ensure(&mut pool);
        b.spare()[..3].copy_from_slice(b"abc");
        b.commit(3);
        b.advance(1);
        assert_eq!(b.data(), b"bc");
        b.rewind_to(0);
        assert_eq!(b.data(), b"abc");
        b.advance(3);
        b.release(&mut pool);
        assert!(!b.is_allocated());
        b.ensure(&mut pool);
        b.extend(b"0123456789");
        assert_eq!(b.data(), b"0123456789");
        b.advance(10);
        b.reset_if_empty();
        assert_eq!(b.room(), 16);
    }

    #[test]
    fn storage_goes_back_only_to_a_pool_of_its_size() {
        let mut small = BufPool::new(8, 4);
        let mut big = BufPool::new(32, 4);
        let mut b = Buffer::default();
        b.ensure(&mut big);
        assert!(b.fits(&big) && !b.fits(&small));
        // Given to the wrong pool, the storage is freed, not kept at the wrong size.
        b.release(&mut small);
        assert!(!b.is_allocated());
        assert!(small.spare.is_empty());
        b.ensure(&mut big);
        b.release(&mut big);
        assert_eq!(big.spare.len(), 1);
        assert_eq!(big.take().len(), 32);
    }
}
