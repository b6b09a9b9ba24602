//! A deadline heap. Entries are hints: the owner keeps its real deadline and the instant
//! it armed, and a popped entry that no longer matches is ignored. So moving a deadline
//! later costs nothing; only an earlier deadline pushes a new entry. Pure: the caller
//! passes `now`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Min-heap of `(deadline, key)`; `K` names what a deadline belongs to (a slab index).
#[derive(Debug)]
pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Makes sure `key` is woken at `deadline` or earlier. `armed` is the owner's record
    /// of the earliest entry it has in the heap; it is updated here.
    pub fn arm(&mut self, key: K, deadline: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|at| deadline < at) {
            self.heap.push(Reverse((deadline, key)));
            *armed = Some(deadline);
        }
    }

    /// Pops the next entry due at `now`, if any. The owner must compare the returned
    /// instant with its `armed` record and, when equal, clear it and check its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Time until the next entry, for the poll timeout.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_deadline_pushes_later_does_not() {
        let mut t = Timers::default();
        let now = Instant::now();
        let mut armed = None;
        t.arm(1, now + Duration::from_secs(5), &mut armed);
        t.arm(1, now + Duration::from_secs(9), &mut armed);
        assert_eq!(t.heap.len(), 1);
        t.arm(1, now + Duration::from_secs(1), &mut armed);
        assert_eq!(t.heap.len(), 2);
        assert_eq!(t.next_timeout(now), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(now), None);
        let (at, key) = t.pop_due(now + Duration::from_secs(1)).unwrap();
        assert_eq!((at, key), (now + Duration::from_secs(1), 1));
        // The 5 s entry is stale for the owner (armed no longer matches after re-arming).
        assert_eq!(armed, Some(at));
    }
}
