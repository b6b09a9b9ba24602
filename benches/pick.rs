//! `Balancer::pick` per algorithm over ten backends of mixed weights: single-threaded,
//! and with a second thread picking on the same balancer (and bumping `in_flight`, as a
//! worker does per request). The reference is one shared `fetch_add`, the least any
//! algorithm with a shared cursor pays. Results: docs/benchmarks.md.
//!
//! Run: `cargo bench --bench pick`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_utils::CachePadded;

use lbd::backend::Backend;
use lbd::balance::{Balancer, Kind, PickContext};
use lbd::config::BackendConfig;

const WEIGHTS: [u32; 10] = [5, 3, 2, 1, 1, 1, 1, 1, 1, 1];

/// `consistent_hash` and `ip_hash` are both Maglev; they differ only in the key hashed.
const ALGORITHMS: [(&str, Kind); 5] = [
    ("round_robin", Kind::RoundRobin),
    ("weighted_round_robin", Kind::WeightedRoundRobin),
    ("least_connections", Kind::LeastConnections),
    ("power_of_two", Kind::PowerOfTwo),
    ("consistent_hash", Kind::Maglev),
];

/// Golden-ratio increment: successive keys land far apart in the Maglev table.
const KEY_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

struct Setup {
    backends: Vec<Arc<Backend>>,
    balancer: Balancer,
}

fn setup(algorithm: Kind, slow_start: Option<Duration>) -> Arc<Setup> {
    let backends: Vec<Arc<Backend>> = WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            Arc::new(Backend::new(
                &BackendConfig {
                    address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    host_port: String::new(),
                    weight,
                    name: format!("b{i}"),
                    send_proxy: None,
                    service: None,
                },
                "default",
            ))
        })
        .collect();
    if slow_start.is_some() {
        // Backend 1 came back 10 s ago: a third of the way through a 30 s ramp.
        let t = Instant::now() - Duration::from_secs(10);
        backends[1].set_alive(false, t);
        backends[1].set_alive(true, t);
    }
    let balancer = Balancer::new(algorithm, slow_start, &backends);
    Arc::new(Setup { backends, balancer })
}

/// One pick with key `k`, as a worker makes it.
fn pick(s: &Setup, k: u64, now: Instant) -> Option<usize> {
    let ctx = PickContext {
        hash: Some(k),
        tried: &[],
        now,
    };
    s.balancer.pick(&s.backends, &ctx)
}

/// Runs `body` while another thread picks and bumps `in_flight` on `s` in a loop.
fn contended<R>(s: &Arc<Setup>, body: impl FnOnce() -> R) -> R {
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (s, stop) = (Arc::clone(s), Arc::clone(&stop));
        thread::spawn(move || {
            let now = Instant::now();
            let mut k = 1u64;
            while !stop.load(Ordering::Relaxed) {
                k = k.wrapping_add(KEY_STEP);
                if let Some(i) = pick(&s, k, now) {
                    s.backends[i].in_flight.fetch_add(1, Ordering::Relaxed);
                    s.backends[i].in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })
    };
    let r = body();
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    r
}

fn bench_algorithms(c: &mut Criterion, group_name: &str, slow_start: Option<Duration>) {
    let mut group = c.benchmark_group(group_name);
    for (name, algorithm) in ALGORITHMS {
        let s = setup(algorithm, slow_start);
        let now = Instant::now();
        group.bench_function(format!("{name}/1_thread"), |b| {
            let mut k = 0u64;
            b.iter(|| {
                k = k.wrapping_add(KEY_STEP);
                black_box(pick(&s, black_box(k), now))
            })
        });
        group.bench_function(format!("{name}/2_threads"), |b| {
            contended(&s, || {
                let mut k = 0u64;
                b.iter(|| {
                    k = k.wrapping_add(KEY_STEP);
                    black_box(pick(&s, black_box(k), now))
                })
            })
        });
    }
    group.finish();
}

fn pick_benches(c: &mut Criterion) {
    bench_algorithms(c, "pick", None);
    bench_algorithms(c, "pick_slow_start", Some(Duration::from_secs(30)));

    let mut group = c.benchmark_group("reference");
    let cursor = Arc::new(CachePadded::new(AtomicUsize::new(0)));
    group.bench_function("fetch_add/1_thread", |b| {
        b.iter(|| black_box(cursor.fetch_add(1, Ordering::Relaxed)))
    });
    group.bench_function("fetch_add/2_threads", |b| {
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (cursor, stop) = (Arc::clone(&cursor), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    black_box(cursor.fetch_add(1, Ordering::Relaxed));
                }
            })
        };
        b.iter(|| black_box(cursor.fetch_add(1, Ordering::Relaxed)));
        stop.store(true, Ordering::Relaxed);
        other.join().unwrap();
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = pick_benches
}
criterion_main!(benches);
