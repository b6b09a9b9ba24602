//! `consistent_hash` and `ip_hash`: Maglev hashing (Eisenbud et al., NSDI 2016).
//!
//! A lookup table of `TABLE_SIZE` (prime) entries is filled once per snapshot: each
//! backend walks its own permutation of the entries (offset and skip from hashes of its
//! name) and claims the next free one, taking turns in proportion to weight until the
//! table is full. A key's backend is `table[hash % TABLE_SIZE]`.
//!
//! The table is never rebuilt when a backend goes down: a pick that lands on an entry
//! whose backend cannot take the request walks forward to the next entry that can.
//! Keys on live backends therefore never move, a dead backend's keys spread over the
//! others (neighbouring entries belong to random backends), and they come back as soon
//! as it does. Slow start: a ramping backend keeps a key with probability ramp, decided
//! by bits of the key itself, so each key moves back once, for good, at some point of
//! the ramp. Requests without a key (header absent) are spread round-robin, as nginx
//! and HAProxy do.

use std::fmt;
use std::sync::Arc;

use super::round_robin::RoundRobin;
use super::slow_start::RAMP_ONE;
use super::Candidates;
use crate::backend::Backend;
use crate::hash::fnv1a;

/// Entries in the lookup table: a prime (so every skip generates a full permutation)
/// well above 100 × the number of backends usually run, as the paper advises.
pub const TABLE_SIZE: usize = 65537;

/// Entries walked past unusable ones before the scan fallback: with 90% of the table's
/// backends down a walk is this long about once in a million keys.
const MAX_WALK: usize = 128;

/// The lookup table and the round-robin for keyless requests.
pub struct Maglev {
    /// `TABLE_SIZE` backend indexes; empty only when there are no backends.
    table: Box<[u16]>,
    keyless: RoundRobin,
}

impl Maglev {
    /// Fills the table for `backends` (names and weights): O(TABLE_SIZE × log).
    pub fn new(backends: &[Arc<Backend>]) -> Maglev {
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Maglev {
            table: populate(&names, &weights).into_boxed_slice(),
            keyless: RoundRobin::default(),
        }
    }

    /// The key's backend, or the next usable entry after it.
    pub(super) fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let Some(hash) = c.ctx.hash else {
            return self.keyless.pick(c);
        };
        let h = mix(hash);
        // Top bits as the key's slow-start coin; the entry comes from all 64.
        let coin = (h >> 54) as u32;
        debug_assert!(coin < RAMP_ONE);
        let start = (h % TABLE_SIZE as u64) as usize;
        // A candidate held back only by its ramp: used if nothing better turns up.
        let mut ramping = None;
        for k in 0..MAX_WALK {
            let i = usize::from(self.table[(start + k) % TABLE_SIZE]);
            if c.admits(i, coin) {
                return Some(i);
            }
            if ramping.is_none() && c.is_candidate(i) {
                ramping = Some(i);
            }
        }
        // Most of the table is unusable: scan the backends from a key-determined index.
        // Still a function of the key, so these keys too stay put and move back.
        let n = c.len();
        let from = (h % n as u64) as usize;
        for k in 0..n {
            let i = (from + k) % n;
            if c.admits(i, coin) {
                return Some(i);
            }
            if ramping.is_none() && c.is_candidate(i) {
                ramping = Some(i);
            }
        }
        ramping
    }
}

impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Maglev({} entries)", self.table.len())
    }
}

/// splitmix64's finaliser: spreads FNV-1a's weak low bits over all 64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The Maglev fill with weights. Backend `i` takes a turn in round `r` while it has had
/// fewer than `r × wᵢ / w_max` turns, so turns (and entries) follow the weights and the
/// heaviest backend takes one every round.
fn populate(names: &[&str], weights: &[u32]) -> Vec<u16> {
    let n = names.len();
    if n == 0 {
        return Vec::new();
    }
    assert!(n <= usize::from(u16::MAX), "too many backends");
    let m = TABLE_SIZE as u64;
    // Permutation of backend i: entry j is (offset + j × skip) mod m, skip in 1..m.
    let perm: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let h = mix(fnv1a(name.as_bytes()));
            let offset = h % m;
            let skip = mix(h ^ 0x6d61_676c_6576) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let w_max = u64::from(*weights.iter().max().unwrap_or(&1)).max(1);
    let mut next = vec![0u64; n]; // next index into each permutation
    let mut turns = vec![0u64; n];
    let mut table = vec![u16::MAX; TABLE_SIZE];
    let mut filled = 0;
    let mut round = 0u64;
    while filled < TABLE_SIZE {
        round += 1;
        for i in 0..n {
            if turns[i] * w_max >= round * u64::from(weights[i]) {
                continue;
            }
            turns[i] += 1;
            let (offset, skip) = perm[i];
            // Claim the next free entry of i's permutation (a full cycle of m entries,
            // so one is always found while the table is not full).
            loop {
                let e = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[e] == u16::MAX {
                    table[e] = i as u16;
                    filled += 1;
                    break;
                }
            }
            if filled == TABLE_SIZE {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::PickContext;
    use super::*;
    use std::time::Duration;

    fn key(k: u64) -> u64 {
        fnv1a(format!("user-{k}").as_bytes())
    }

    fn assign(m: &Maglev, b: &[Arc<Backend>], keys: usize) -> Vec<usize> {
        (0..keys as u64)
            .map(|k| {
                let ctx = PickContext {
                    hash: Some(key(k)),
                    ..PickContext::new(now())
                };
                m.pick(&Candidates {
                    backends: b,
                    ctx: &ctx,
                    slow_start: None,
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn entries_and_keys_follow_weights() {
        for weights in [&[1u32; 10][..], &[5, 1, 1], &[5, 3, 2], &[1000, 1, 7]] {
            let b = backends(weights);
            let m = Maglev::new(&b);
            let mut entries = vec![0; weights.len()];
            for &e in m.table.iter() {
                entries[usize::from(e)] += 1;
            }
            assert_shares(&entries, weights, 0.002);
            let mut counts = vec![0; weights.len()];
            for i in assign(&m, &b, 100_000) {
                counts[i] += 1;
            }
            assert_shares(&counts, weights, 0.02);
        }
    }

    /// Spec §5: a backend going down moves only its own keys; they move back when it
    /// returns.
    #[test]
    fn only_the_dead_backends_keys_move_and_come_back() {
        let b = backends(&[1; 10]);
        let m = Maglev::new(&b);
        let before = assign(&m, &b, 10_000);
        b[3].set_alive(false, now());
        let during = assign(&m, &b, 10_000);
        let moved: Vec<usize> = (0..10_000).filter(|&k| before[k] != during[k]).collect();
        assert!(moved.len() <= 1_200, "{} keys moved", moved.len());
        assert!(moved.iter().all(|&k| before[k] == 3));
        assert!(!during.contains(&3));
        // Its keys spread over the others rather than piling onto one.
        let mut heirs = [0; 10];
        for &k in &moved {
            heirs[during[k]] += 1;
        }
        assert!(
            heirs.iter().enumerate().all(|(i, &h)| i == 3 || h > 50),
            "{heirs:?}"
        );
        b[3].set_alive(true, now());
        assert_eq!(assign(&m, &b, 10_000), before);
    }

    /// A reload without one backend rebuilds the table: Maglev keeps most keys anyway.
    #[test]
    fn removing_a_backend_from_the_config_moves_few_other_keys() {
        let b = backends(&[1; 10]);
        let before = assign(&Maglev::new(&b), &b, 10_000);
        let mut fewer = b.clone();
        fewer.remove(3);
        let after = assign(&Maglev::new(&fewer), &fewer, 10_000);
        // Index i ≥ 3 in `fewer` is backend i + 1.
        let moved = (0..10_000)
            .filter(|&k| {
                before[k]
                    != if after[k] >= 3 {
                        after[k] + 1
                    } else {
                        after[k]
                    }
            })
            .count();
        assert!(moved <= 1_200, "{moved} keys moved");
    }

    /// With most of the table down, walks reach the scan fallback and still find the
    /// survivor, the same one for a key every time.
    #[test]
    fn one_survivor_of_many() {
        let b = backends(&[1; 50]);
        let m = Maglev::new(&b);
        for x in &b[1..] {
            x.set_alive(false, now());
        }
        assert!(assign(&m, &b, 2_000).iter().all(|&i| i == 0));
        b[0].set_alive(false, now());
        b[17].set_alive(true, now());
        assert!(assign(&m, &b, 2_000).iter().all(|&i| i == 17));
    }

    /// A retry skips the tried backend and lands on the same second choice every time.
    #[test]
    fn retries_walk_to_a_stable_second_choice() {
        let b = backends(&[1; 5]);
        let m = Maglev::new(&b);
        for k in 0..200 {
            let first = assign(&m, &b, k + 1)[k];
            let tried = [first];
            let ctx = PickContext {
                hash: Some(key(k as u64)),
                tried: &tried,
                now: now(),
            };
            let c = Candidates {
                backends: &b,
                ctx: &ctx,
                slow_start: None,
            };
            let second = m.pick(&c).unwrap();
            assert_ne!(second, first);
            assert_eq!(m.pick(&c), Some(second));
        }
    }

    /// Keys without a hash (header absent) go round-robin.
    #[test]
    fn keyless_requests_go_round_robin() {
        let b = backends(&[1; 3]);
        let m = Maglev::new(&b);
        let ctx = PickContext::new(now());
        let c = Candidates {
            backends: &b,
            ctx: &ctx,
            slow_start: None,
        };
        let seq: Vec<_> = (0..6).map(|_| m.pick(&c).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    /// Slow start moves a returning backend's keys back gradually and for good: the set
    /// back at 50% of the ramp contains the set back at 25%.
    #[test]
    fn ramping_keys_move_back_monotonically() {
        let b = backends(&[1; 4]);
        let m = Maglev::new(&b);
        let full = assign(&m, &b, 10_000);
        let t0 = now();
        b[2].set_alive(false, t0);
        b[2].set_alive(true, t0);
        let span = Duration::from_secs(100);
        let at = |d: Duration| -> Vec<usize> {
            (0..10_000u64)
                .map(|k| {
                    let ctx = PickContext {
                        hash: Some(key(k)),
                        tried: &[],
                        now: t0 + d,
                    };
                    m.pick(&Candidates {
                        backends: &b,
                        ctx: &ctx,
                        slow_start: Some(span),
                    })
                    .unwrap()
                })
                .collect()
        };
        let own: Vec<usize> = (0..10_000).filter(|&k| full[k] == 2).collect();
        let back =
            |v: &[usize]| -> Vec<usize> { own.iter().copied().filter(|&k| v[k] == 2).collect() };
        let quarter = back(&at(span / 4));
        let half = back(&at(span / 2));
        assert!(quarter.iter().all(|k| half.contains(k)));
        let share = |v: &[usize]| v.len() as f64 / own.len() as f64;
        assert!((share(&quarter) - 0.25).abs() < 0.05, "{}", share(&quarter));
        assert!((share(&half) - 0.5).abs() < 0.05, "{}", share(&half));
        // Keys of other backends never go to the ramping one.
        let later = at(span / 2);
        assert!((0..10_000).all(|k| later[k] != 2 || full[k] == 2));
        assert_eq!(at(span), full);
    }
}
