//! A worker's deadline heap. Entries are hints: the owner keeps its real deadline and
//! the instant it armed, and a popped entry that no longer matches is ignored. So moving
//! a deadline later costs nothing; only an earlier deadline pushes a new entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    /// A session, by slab index.
    Session(usize),
    /// A pooled upstream connection, by slab index.
    Upstream(usize),
}

/// Min-heap of `(deadline, key)`.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    /// Makes sure `key` is woken at `deadline` or earlier. `armed` is the owner's record
    /// of the earliest entry it has in the heap; it is updated here.
    pub fn arm(&mut self, key: TimerKey, deadline: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|at| deadline < at) {
            self.heap.push(Reverse((deadline, key)));
            *armed = Some(deadline);
        }
    }

    /// Pops the next entry due at `now`, if any. The owner must compare the returned
    /// instant with its `armed` record and, when equal, clear it and check its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
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

    /// Number of entries (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
        t.arm(
            TimerKey::Session(1),
            now + Duration::from_secs(5),
            &mut armed,
        );
        t.arm(
            TimerKey::Session(1),
            now + Duration::from_secs(9),
            &mut armed,
        );
        assert_eq!(t.len(), 1);
        t.arm(
            TimerKey::Session(1),
            now + Duration::from_secs(1),
            &mut armed,
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_timeout(now), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(now), None);
        let (at, key) = t.pop_due(now + Duration::from_secs(1)).unwrap();
        assert_eq!(
            (at, key),
            (now + Duration::from_secs(1), TimerKey::Session(1))
        );
        // The 5 s entry is stale for the owner (armed no longer matches after re-arming).
        assert_eq!(armed, Some(at));
    }
}
