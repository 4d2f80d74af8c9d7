//! Seeds from the environment, so any failing run can be replayed.

/// The seed to use for a single-seed test: `SYNOD_SEED` if set, else `default`.
///
/// # Panics
/// If `SYNOD_SEED` is set but is not an unsigned integer: a typo must not silently run a
/// different seed than the one the developer asked to replay.
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var("SYNOD_SEED") {
        Ok(text) => parse(&text, "SYNOD_SEED"),
        Err(_) => default,
    }
}

/// The seeds a randomized test runs: just `SYNOD_SEED` when it is set (replaying one failure),
/// otherwise `SYNOD_SEEDS` seeds (default `count`) starting at `SYNOD_SEED_BASE` (default 0).
/// CI runs the default; `SYNOD_SEEDS=5000 cargo test --release NAME` sweeps more.
pub fn seeds(count: u64) -> Vec<u64> {
    if let Ok(text) = std::env::var("SYNOD_SEED") {
        return vec![parse(&text, "SYNOD_SEED")];
    }
    let count = std::env::var("SYNOD_SEEDS").map_or(count, |t| parse(&t, "SYNOD_SEEDS"));
    let base = std::env::var("SYNOD_SEED_BASE").map_or(0, |t| parse(&t, "SYNOD_SEED_BASE"));
    (base..base + count).collect()
}

fn parse(text: &str, var: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{var}={text:?} is not an unsigned integer"))
}
