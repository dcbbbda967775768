//! What the model-based fuzzers share (planner/fuzz.rs, scheduler/fuzz.rs):
//! a seeded random source and the runner that tries many seeds, names the
//! failing one and replays it.
//!
//! `DLITE_FUZZ_SEED=N` replays one seed (the case prints a trace),
//! `DLITE_FUZZ_CASES=N` sets how many seeds a run tries, from
//! `DLITE_FUZZ_FIRST_SEED` (0 by default, so every run is the same run
//! unless asked otherwise).

use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// proptest's seeded generator: a seed is a whole case.
pub(crate) struct Rng(pub(crate) TestRng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.next_u64() % n }
    }
    pub(crate) fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    pub(crate) fn byte(&mut self) -> u8 {
        self.below(256) as u8
    }
    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number"))
    })
}

/// Runs the seeds of this run; panics with the first failure, shrunk.
pub(crate) fn fuzz(name: &str, default_cases: u64, one: impl Fn(u64, bool) -> Result<(), String>) {
    let start = std::time::Instant::now();
    if let Some(seed) = env_u64("DLITE_FUZZ_SEED") {
        eprintln!("{name}: replaying seed {seed}");
        if let Err(e) = one(seed, true) {
            panic!("{name}: seed {seed} fails: {e}");
        }
        return;
    }
    let cases = env_u64("DLITE_FUZZ_CASES").unwrap_or(default_cases);
    let first = env_u64("DLITE_FUZZ_FIRST_SEED").unwrap_or(0);
    for seed in first..first + cases {
        if let Err(e) = one(seed, false) {
            panic!(
                "{name}: seed {seed} fails (replay: DLITE_FUZZ_SEED={seed} cargo test --lib {name}): {e}"
            );
        }
    }
    eprintln!(
        "{name}: {cases} sequences (seeds {first}..{}) in {:.2?}",
        first + cases,
        start.elapsed()
    );
}
