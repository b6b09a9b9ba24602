//! Backend choice: one [`Balancer`] per configuration snapshot, shared by every worker,
//! whose `pick` reads only atomics and tables built once in [`Balancer::new`]: no lock,
//! no allocation.
//!
//! Each algorithm of spec §5 lives in its own file behind the one `pick`. What they share
//! sits here: [`Candidates`] (who may be picked for this request, and how far a backend
//! has ramped up under `slow_start`), the smooth weighted sequence in `table`, and the
//! per-thread random source in `rng`. `docs/balancing.md` explains the choices.

mod least_connections;
mod maglev;
mod power_of_two;
mod rng;
mod round_robin;
mod slow_start;
mod table;
mod weighted_round_robin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;

pub use least_connections::LeastConnections;
pub use maglev::Maglev;
pub use power_of_two::PowerOfTwo;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// Shared cursor turns a pick may take before it falls back to a weighted random choice
/// among the candidates (when ineligible or ramping backends keep coming up in turn).
const MAX_TURNS: usize = 8;

/// What a pick may depend on besides the backends' state.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// Hash of the request's balancing key (client IP or header), when there is one.
    pub hash: Option<u64>,
    /// Backends this request already tried; never picked again.
    pub tried: &'a [usize],
    /// The worker's current time, for slow start.
    pub now: Instant,
}

impl PickContext<'_> {
    /// A context with no key and nothing tried yet.
    #[cfg(test)]
    pub fn new(now: Instant) -> PickContext<'static> {
        PickContext {
            hash: None,
            tried: &[],
            now,
        }
    }
}

/// Which mechanism picks. The configuration's `consistent_hash` and `ip_hash` are both
/// [`Kind::Maglev`]: they differ only in the key the exchange hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Next eligible backend in turn.
    RoundRobin,
    /// Smooth weighted round-robin (nginx style).
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// The less loaded of two random eligible backends.
    PowerOfTwo,
    /// Maglev consistent hashing on [`PickContext::hash`].
    Maglev,
}

/// The configured algorithm with its shared state, plus the slow-start ramp that applies
/// to all of them.
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    /// `balancer.slow_start`; `None` (or zero) disables ramping.
    slow_start: Option<Duration>,
}

/// One variant per algorithm file.
#[derive(Debug)]
enum Strategy {
    RoundRobin(RoundRobin),
    WeightedRoundRobin(WeightedRoundRobin),
    LeastConnections(LeastConnections),
    PowerOfTwo(PowerOfTwo),
    /// `consistent_hash` and `ip_hash`: they differ only in the key the exchange hashes.
    Maglev(Maglev),
}

impl Balancer {
    /// A `kind` balancer over `backends`, ramping new ones over `slow_start`; builds its
    /// tables (this allocates, once per snapshot).
    pub fn new(kind: Kind, slow_start: Option<Duration>, backends: &[Arc<Backend>]) -> Balancer {
        let strategy = match kind {
            Kind::RoundRobin => Strategy::RoundRobin(RoundRobin::default()),
            Kind::WeightedRoundRobin => {
                Strategy::WeightedRoundRobin(WeightedRoundRobin::new(backends))
            }
            Kind::LeastConnections => Strategy::LeastConnections(LeastConnections::new(backends)),
            Kind::PowerOfTwo => Strategy::PowerOfTwo(PowerOfTwo::new(backends)),
            Kind::Maglev => Strategy::Maglev(Maglev::new(backends)),
        };
        Balancer {
            strategy,
            slow_start: slow_start.filter(|d| !d.is_zero()),
        }
    }

    /// True when `pick` uses [`PickContext::hash`], so the exchange must compute it.
    pub fn needs_hash(&self) -> bool {
        matches!(self.strategy, Strategy::Maglev(_))
    }

    /// Index of an eligible backend not in `ctx.tried`, or `None` when there is none.
    pub fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let c = Candidates {
            backends,
            ctx,
            slow_start: self.slow_start,
        };
        match &self.strategy {
            Strategy::RoundRobin(s) => s.pick(&c),
            Strategy::WeightedRoundRobin(s) => s.pick(&c),
            Strategy::LeastConnections(s) => s.pick(&c),
            Strategy::PowerOfTwo(s) => s.pick(&c),
            Strategy::Maglev(s) => s.pick(&c),
        }
    }
}

/// One pick's view of the backends: which may be picked, and how far each has ramped.
///
/// Two filters: `is_candidate` is hard (eligible and not tried); the slow-start ramp is
/// soft: a ramping backend is admitted to a turn- or key-based choice with probability
/// `ramp / RAMP_ONE`, and load comparisons divide by `weight × ramp`.
struct Candidates<'a> {
    backends: &'a [Arc<Backend>],
    ctx: &'a PickContext<'a>,
    slow_start: Option<Duration>,
}

impl Candidates<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }

    /// Eligible (alive and enabled) and not already tried by this request.
    fn is_candidate(&self, i: usize) -> bool {
        self.backends[i].is_eligible() && !self.ctx.tried.contains(&i)
    }

    /// How far `i` has ramped up, `RAMP_FLOOR..=RAMP_ONE`.
    fn ramp(&self, i: usize) -> u32 {
        match self.slow_start {
            None => slow_start::RAMP_ONE,
            Some(span) => slow_start::ramp(self.backends[i].up_for(self.ctx.now), span),
        }
    }

    /// A candidate that also passes the slow-start coin `coin` (`0..RAMP_ONE`).
    fn admits(&self, i: usize, coin: u32) -> bool {
        self.is_candidate(i) && coin < self.ramp(i)
    }

    /// A candidate that also passes a random slow-start coin (drawn only when ramping).
    fn admits_random(&self, i: usize) -> bool {
        self.is_candidate(i) && {
            let ramp = self.ramp(i);
            ramp == slow_start::RAMP_ONE
                || (rng::below(u64::from(slow_start::RAMP_ONE)) as u32) < ramp
        }
    }

    /// `weight × ramp`: the divisor of a load comparison.
    fn effective_weight(&self, i: usize) -> u64 {
        u64::from(self.backends[i].weight) * u64::from(self.ramp(i))
    }

    /// In-flight requests of `i`.
    fn load(&self, i: usize) -> u64 {
        self.backends[i].load() as u64
    }

    /// True when `a` is strictly less loaded than `b`, relative to effective weights.
    fn is_less_loaded(&self, a: usize, b: usize) -> bool {
        is_lighter(
            self.load(a),
            self.effective_weight(a),
            self.load(b),
            self.effective_weight(b),
        )
    }

    /// A random candidate, chosen in proportion to `weight × ramp` (`by_weight`) or to
    /// `ramp` alone. The fallback when turns or samples keep missing; two passes over
    /// the backends.
    fn random(&self, by_weight: bool) -> Option<usize> {
        let share = |i: usize| {
            let w = if by_weight {
                u64::from(self.backends[i].weight)
            } else {
                1
            };
            w * u64::from(self.ramp(i))
        };
        let total: u64 = (0..self.len())
            .filter(|&i| self.is_candidate(i))
            .map(share)
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = rng::below(total);
        let mut last = None;
        for i in (0..self.len()).filter(|&i| self.is_candidate(i)) {
            let s = share(i);
            if r < s {
                return Some(i);
            }
            r -= s;
            last = Some(i);
        }
        // A backend went down between the passes: any remaining candidate will do.
        last
    }
}

/// `load_a / weight_a < load_b / weight_b`, without division (u128 cannot overflow).
fn is_lighter(load_a: u64, weight_a: u64, load_b: u64, weight_b: u64) -> bool {
    u128::from(load_a) * u128::from(weight_b) < u128::from(load_b) * u128::from(weight_a)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the algorithm tests.

    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    use crate::backend::Backend;
    use crate::config::BackendConfig;

    /// Backends `b0, b1, ...` with these weights, alive and enabled.
    pub fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Arc::new(Backend::new(
                    &BackendConfig {
                        address: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                        host_port: String::new(),
                        weight,
                        name: format!("b{i}"),
                        send_proxy: None,
                        service: None,
                    },
                    "default",
                ))
            })
            .collect()
    }

    /// Sets the in-flight counts.
    pub fn set_loads(backends: &[Arc<Backend>], loads: &[usize]) {
        for (b, &l) in backends.iter().zip(loads) {
            b.in_flight.store(l, Ordering::Relaxed);
        }
    }

    /// How often each backend is picked in `n` calls of `pick`.
    pub fn histogram(n: usize, len: usize, mut pick: impl FnMut() -> Option<usize>) -> Vec<usize> {
        let mut counts = vec![0; len];
        for _ in 0..n {
            counts[pick().expect("a pick")] += 1;
        }
        counts
    }

    /// Asserts each backend's share of `counts` is within `tolerance` (absolute, e.g.
    /// 0.02) of its share of `weights`.
    pub fn assert_shares(counts: &[usize], weights: &[u32], tolerance: f64) {
        let total: usize = counts.iter().sum();
        let wsum: u32 = weights.iter().sum();
        for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
            let got = c as f64 / total as f64;
            let want = f64::from(w) / f64::from(wsum);
            assert!(
                (got - want).abs() <= tolerance,
                "backend {i}: share {got:.4}, want {want:.4} ± {tolerance} ({counts:?})"
            );
        }
    }

    /// The current instant, for contexts.
    pub fn now() -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::time::Duration;

    const ALL: [Kind; 5] = [
        Kind::RoundRobin,
        Kind::WeightedRoundRobin,
        Kind::LeastConnections,
        Kind::PowerOfTwo,
        Kind::Maglev,
    ];

    fn balancer(kind: Kind, slow_start: Option<Duration>, b: &[Arc<Backend>]) -> Balancer {
        Balancer::new(kind, slow_start, b)
    }

    /// Every algorithm, with and without keys: ineligible or tried backends are never
    /// picked, and `None` comes back only when nothing is left.
    #[test]
    fn ineligible_and_tried_are_never_picked() {
        use crate::backend::AdminState;
        for algorithm in ALL {
            let b = backends(&[5, 1, 1, 3, 2]);
            b[0].set_alive(false, now());
            b[3].set_admin_state(AdminState::Draining);
            b[4].set_admin_state(AdminState::Disabled);
            let lb = balancer(algorithm, Some(Duration::from_secs(10)), &b);
            for k in 0..2000u64 {
                let both = [1, 2];
                let ctx = PickContext {
                    hash: (k % 2 == 0).then_some(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    tried: if k % 3 == 0 { &both } else { &[] },
                    now: now(),
                };
                let got = lb.pick(&b, &ctx);
                if k % 3 == 0 {
                    assert_eq!(got, None, "{algorithm:?}");
                } else {
                    assert!(matches!(got, Some(1 | 2)), "{algorithm:?}: picked {got:?}");
                }
            }
            for x in &b[..3] {
                x.set_alive(false, now());
            }
            assert_eq!(lb.pick(&b, &PickContext::new(now())), None, "{algorithm:?}");
        }
    }

    #[test]
    fn only_maglev_needs_the_hash() {
        let b = backends(&[1, 1]);
        for algorithm in ALL {
            let want = algorithm == Kind::Maglev;
            assert_eq!(balancer(algorithm, None, &b).needs_hash(), want);
        }
    }

    /// A backend half-way through slow start gets about half its share, under every
    /// algorithm; a fresh one still gets a little (the floor); a finished one all of it.
    #[test]
    fn slow_start_ramps_every_algorithm() {
        let span = Duration::from_secs(20);
        for algorithm in ALL {
            let b = backends(&[1, 1]);
            let t0 = now();
            b[1].set_alive(false, t0);
            b[1].set_alive(true, t0);
            let lb = balancer(algorithm, Some(span), &b);
            let share_at = |at: Duration, seed: u64| {
                let mut k = seed;
                let counts = histogram(40_000, 2, || {
                    k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    lb.pick(
                        &b,
                        &PickContext {
                            hash: Some(k),
                            tried: &[],
                            now: t0 + at,
                        },
                    )
                });
                counts[1] as f64 / 40_000.0
            };
            // Turn- and load-based: weight 1 × ramp 0.5 against weight 1, a third of the
            // picks. Maglev: half of its own keys (a quarter of all) are back.
            let want = if lb.needs_hash() { 0.25 } else { 1.0 / 3.0 };
            let half = share_at(span / 2, 1);
            assert!((half - want).abs() < 0.03, "{algorithm:?}: {half}");
            let fresh = share_at(Duration::ZERO, 2);
            assert!(fresh > 0.02 && fresh < 0.1, "{algorithm:?}: {fresh}");
            let full = share_at(span, 3);
            assert!((full - 0.5).abs() < 0.02, "{algorithm:?}: {full}");
        }
    }
}
