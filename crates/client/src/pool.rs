//! The policy every client shares: how long an operation keeps retrying by default, and the
//! pool of idle sessions that lets one client serve concurrent callers.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long an operation keeps retrying by default, in every client: shorter than a RESP
/// client's usual patience, so a front answers with an error rather than leaving it hanging,
/// and long enough for a leader's failover (under a second) several times over.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle sessions, one operation outstanding on each: a caller takes one (or makes one) and
/// gives it back when its operation left it usable.
pub(crate) struct Pool<T> {
    idle: Mutex<Vec<T>>,
}

impl<T> Pool<T> {
    pub(crate) fn new() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle session, or one made by `fresh`.
    pub(crate) fn take(&self, fresh: impl FnOnce() -> T) -> T {
        self.lock().pop().unwrap_or_else(fresh)
    }

    /// Gives `session` back for a later operation.
    pub(crate) fn put(&self, session: T) {
        self.lock().push(session);
    }

    /// The lock is only held for a push or a pop, which leave the list whole even if a
    /// caller panicked meanwhile, so a poisoned lock is recovered, not propagated.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_the_lock_is_held_does_not_lose_the_sessions() {
        let pool = Pool::new();
        pool.put(1);
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = pool.idle.lock().unwrap();
            panic!("a caller panicked");
        }));
        assert!(poisoned.is_err());
        assert_eq!(pool.take(|| 2), 1);
        assert_eq!(pool.take(|| 2), 2, "empty: a fresh one");
    }
}
