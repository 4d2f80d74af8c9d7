//! What a benchmark run does: the shape of its load, and the keys and values it uses.

use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::BenchError;

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this long (operations that finish later are not counted).
    Duration(Duration),
    /// After this many operations in total, across all clients.
    Ops(u64),
}

/// A closed-loop workload: `clients` clients, each with one operation outstanding at a time.
#[derive(Debug, Clone)]
pub struct Workload {
    pub clients: usize,
    /// Bytes per key: `k` followed by the key's number, zero-padded.
    pub key_size: usize,
    /// Bytes per value (random letters and digits, so every store can take them).
    pub value_size: usize,
    /// How many distinct keys operations pick from, uniformly.
    pub keys: u64,
    /// Write every key once before the run even if it has no gets, so the store holds
    /// `keys * value_size` bytes of values throughout (puts overwrite): throughput and
    /// latency at a given state size.
    pub preload: bool,
    /// The fraction of operations that are gets (the rest are puts), 0 to 1.
    pub read_ratio: f64,
    pub limit: Limit,
    /// How long to run the same load unmeasured first (connections, caches, leader).
    pub warmup: Duration,
}

impl Workload {
    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |why: String| Err(BenchError::Workload(why));
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if self.keys == 0 {
            return bad("--keys must be at least 1".into());
        }
        let digits = (self.keys - 1).to_string().len();
        if self.key_size < digits + 1 {
            return bad(format!(
                "--key-size {} is too small for {} keys: it needs at least {} bytes",
                self.key_size,
                self.keys,
                digits + 1
            ));
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return bad("--read-ratio must be between 0 and 1".into());
        }
        match self.limit {
            Limit::Duration(d) if d.is_zero() => bad("--duration must be more than 0".into()),
            Limit::Ops(0) => bad("--ops must be at least 1".into()),
            _ => Ok(()),
        }
    }

    /// Key number `index`, exactly `key_size` bytes.
    pub fn key(&self, index: u64) -> String {
        format!("k{index:0>width$}", width = self.key_size - 1)
    }

    /// A random key from the key space.
    pub fn random_key(&self, rng: &mut impl Rng) -> String {
        self.key(rng.gen_range(0..self.keys))
    }

    /// A fresh random value of `value_size` bytes.
    pub fn value(&self, rng: &mut impl Rng) -> String {
        rng.sample_iter(&Alphanumeric)
            .take(self.value_size)
            .map(char::from)
            .collect()
    }
}

/// Parses a duration written as a number and a unit: `500ms`, `10s`, `1.5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, BenchError> {
    let bad = || {
        BenchError::Workload(format!(
            "invalid duration {text:?}: expected a number and a unit, ms, s or m (like 10s)"
        ))
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            clients: 1,
            key_size: 16,
            value_size: 100,
            keys: 1000,
            preload: false,
            read_ratio: 0.5,
            limit: Limit::Duration(Duration::from_secs(1)),
            warmup: Duration::ZERO,
        }
    }

    #[test]
    fn keys_and_values_have_the_requested_sizes() {
        let w = workload();
        assert_eq!(w.key(7), "k000000000000007");
        assert_eq!(w.key(999).len(), 16);
        let mut rng = rand::thread_rng();
        assert_eq!(w.value(&mut rng).len(), 100);
        assert_eq!(w.random_key(&mut rng).len(), 16);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let too_short = Workload {
            key_size: 3,
            ..workload()
        };
        assert!(too_short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 4"));
        let ratio = Workload {
            read_ratio: 1.5,
            ..workload()
        };
        assert!(ratio.validate().is_err());
        assert!(workload().validate().is_ok());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["10", "5x", "s", "", "-1s", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
