//! Spreads per-node work of one scheduling cycle over a thread pool while
//! keeping the answer the sequential loop would give.
//!
//! The filter phase stops once enough feasible nodes are found (docs/scheduler.md
//! §2), so "which nodes were examined" must not depend on thread
//! timing: workers claim fixed-size chunks of the node order strictly in
//! increasing order, so the examined nodes always form a prefix of that
//! order without gaps, and the caller cuts that prefix exactly where the
//! sequential loop would have stopped. The extra nodes a worker examined
//! past that point are simply discarded.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many nodes a cycle stays on one thread: filtering a hundred
/// nodes takes tens of microseconds, less than waking a worker, and on a
/// busy machine (2 cores shared with the API server, in the benchmark) the
/// cycle then waits for a worker that is not running: 100 nodes x 1000 pods
/// reached 97% of the raw binding ceiling on one thread, 78% on two.
const MIN_ITEMS_FOR_PARALLELISM: usize = 256;

/// Runs node-level closures on a fixed pool (or inline when built with one
/// worker). Created once per scheduler and reused by every cycle.
pub struct Parallelizer {
    pool: Option<rayon::ThreadPool>,
    workers: usize,
}

impl std::fmt::Debug for Parallelizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parallelizer")
            .field("workers", &self.workers)
            .finish()
    }
}

impl Parallelizer {
    /// Everything runs on the calling thread.
    pub fn sequential() -> Parallelizer {
        Parallelizer {
            pool: None,
            workers: 1,
        }
    }

    /// A pool of `workers` threads (1 means sequential).
    pub fn new(workers: usize) -> Result<Parallelizer, rayon::ThreadPoolBuildError> {
        if workers <= 1 {
            return Ok(Parallelizer::sequential());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("dlite-filter-{i}"))
            .build()?;
        Ok(Parallelizer {
            pool: Some(pool),
            workers,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    fn pool_for(&self, items: usize) -> Option<&rayon::ThreadPool> {
        self.pool
            .as_ref()
            .filter(|_| items >= MIN_ITEMS_FOR_PARALLELISM)
    }

    /// Chunks of about sqrt(n), but at least one per worker: large enough
    /// to amortise claiming, small enough that stopping early wastes little.
    fn chunk_size(&self, items: usize) -> usize {
        let sqrt = (items as f64).sqrt() as usize;
        sqrt.min(items / self.workers + 1).max(1)
    }

    /// `f(i)` for every `i` in `0..items`, in order.
    pub fn map<T, F>(&self, items: usize, f: F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize) -> T + Sync,
    {
        match self.pool_for(items) {
            None => (0..items).map(f).collect(),
            Some(pool) => {
                use rayon::prelude::*;
                let chunk = self.chunk_size(items);
                pool.install(|| {
                    (0..items)
                        .into_par_iter()
                        .with_min_len(chunk)
                        .map(&f)
                        .collect()
                })
            }
        }
    }

    /// `check(i)` for `i = 0, 1, ...` until `wanted` results satisfy `hit`
    /// or all `items` were checked. Returns the results of a gap-free prefix
    /// `0..k`; in parallel `k` may run past the point where the `wanted`-th
    /// hit was found (the caller stops reading there), never short of it.
    pub fn until_enough<T, F, H>(&self, items: usize, wanted: usize, check: F, hit: H) -> Vec<T>
    where
        T: Send + Sync,
        F: Fn(usize) -> T + Sync,
        H: Fn(&T) -> bool + Sync,
    {
        let Some(pool) = self.pool_for(items) else {
            let mut out = Vec::with_capacity(items.min(wanted.saturating_mul(2)));
            let mut hits = 0;
            for i in 0..items {
                if hits >= wanted {
                    break;
                }
                let result = check(i);
                hits += usize::from(hit(&result));
                out.push(result);
            }
            return out;
        };
        let chunk = self.chunk_size(items);
        let num_chunks = items.div_ceil(chunk);
        let next_chunk = AtomicUsize::new(0);
        let hits = AtomicUsize::new(0);
        let slots: Vec<OnceLock<Vec<T>>> = (0..num_chunks).map(|_| OnceLock::new()).collect();
        pool.scope(|scope| {
            for _ in 0..self.workers {
                scope.spawn(|_| {
                    loop {
                        // Checked before claiming, so once enough hits are
                        // known no further chunk is claimed; chunks already
                        // claimed are always finished, keeping the prefix whole.
                        if hits.load(Ordering::Acquire) >= wanted {
                            return;
                        }
                        let c = next_chunk.fetch_add(1, Ordering::AcqRel);
                        if c >= num_chunks {
                            return;
                        }
                        let results: Vec<T> = (c * chunk..((c + 1) * chunk).min(items))
                            .map(&check)
                            .collect();
                        let found = results.iter().filter(|r| hit(r)).count();
                        hits.fetch_add(found, Ordering::AcqRel);
                        let _ = slots[c].set(results);
                    }
                });
            }
        });
        let mut out = Vec::new();
        for slot in slots {
            match slot.into_inner() {
                Some(results) => out.extend(results),
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order() {
        for p in [Parallelizer::sequential(), Parallelizer::new(3).unwrap()] {
            let out = p.map(1000, |i| i * 2);
            assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn sequential_stops_exactly_at_the_wanted_hit() {
        let p = Parallelizer::sequential();
        // Every third item is a hit: the 4th hit is item 9.
        let out = p.until_enough(100, 4, |i| i % 3 == 0, |h| *h);
        assert_eq!(out.len(), 10);
        let none = p.until_enough(100, 0, |i| i, |_| true);
        assert!(none.is_empty());
    }

    #[test]
    fn parallel_returns_a_gap_free_prefix_covering_the_wanted_hits() {
        let p = Parallelizer::new(4).unwrap();
        for wanted in [0, 1, 5, 40, 100, 1000] {
            let out = p.until_enough(1000, wanted, |i| (i, i % 7 == 0), |(_, h)| *h);
            for (pos, (i, _)) in out.iter().enumerate() {
                assert_eq!(pos, *i, "results are in order without gaps");
            }
            let hits = out.iter().filter(|(_, h)| *h).count();
            let possible = (0..1000).filter(|i| i % 7 == 0).count();
            assert!(hits >= wanted.min(possible), "wanted {wanted}, got {hits}");
        }
        let all = p.until_enough(500, usize::MAX, |i| i, |_| false);
        assert_eq!(all.len(), 500, "no hits: everything is examined");
    }
}
