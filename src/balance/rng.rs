//! A cheap random source for picks: xorshift64* in a thread-local, seeded once per
//! thread from std's randomly keyed hasher. Not cryptographic; no lock, no allocation.

use std::cell::Cell;
use std::hash::BuildHasher;

thread_local! {
    /// The generator's state; 0 means "not seeded yet" (xorshift never reaches 0).
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// The next 64 random bits of this thread's sequence.
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = seed();
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniform value in `0..n` (`n > 0`), by multiply-shift rather than a biased modulo.
pub fn below(n: u64) -> u64 {
    ((u128::from(next_u64()) * u128::from(n)) >> 64) as u64
}

/// A non-zero seed: every `RandomState` gets fresh keys (random per thread, then
/// incremented), so threads and reseeds differ.
fn seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut seen = [0usize; 7];
        for _ in 0..70_000 {
            seen[below(7) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{seen:?}"
        );
    }
}
