//! The controller's own ReplicaSet writes, until its watch cache has seen
//! them.
//!
//! A sync plans from the watch caches. A create carries no precondition,
//! so a plan made from a cache that has not yet seen this controller's
//! previous write (say, the scale-up of the new ReplicaSet, then a template
//! change arrives) can create a ReplicaSet sized for a state that is gone,
//! and go past maxSurge, or start Recreate's new pods next to old ones. The
//! planner fuzzer (planner/fuzz.rs) found both. So every successful write
//! is remembered, and a DeploymentLite is not planned again until the
//! cache shows each of its writes (or the write is older than
//! [`TIMEOUT`], as upstream's ReplicaSet expectations expire).
//!
//! A write is seen when the cached ReplicaSet is no longer at the
//! resourceVersion the write replaced (caches only move forward, so any
//! other version is the write or later), or, for a create, when the cache
//! holds the created uid.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write may stay unseen before it is forgotten: a ReplicaSet
/// deleted before the cache saw it is never seen.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// Created with this uid.
    Created(String),
    /// Updated from this resourceVersion.
    Updated(String),
}

#[derive(Clone, Debug)]
struct Pending {
    replica_set: String,
    seen: Seen,
    at: Instant,
}

/// Pending writes by owner key (`namespace/name`).
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Vec<Pending>>>,
}

impl Expectations {
    pub fn created(&self, owner: &str, replica_set: &str, uid: &str, now: Instant) {
        self.push(owner, replica_set, Seen::Created(uid.into()), now);
    }

    pub fn updated(&self, owner: &str, replica_set: &str, before: &str, now: Instant) {
        self.push(owner, replica_set, Seen::Updated(before.into()), now);
    }

    fn push(&self, owner: &str, replica_set: &str, seen: Seen, at: Instant) {
        self.pending
            .lock()
            .expect("expectations lock")
            .entry(owner.into())
            .or_default()
            .push(Pending {
                replica_set: replica_set.into(),
                seen,
                at,
            });
    }

    /// A watch event of a ReplicaSet of `owner` (deletions included: a
    /// ReplicaSet created and deleted before a sync looked is seen here,
    /// never in the cache).
    pub fn observe(&self, owner: &str, replica_set: &str, uid: &str, resource_version: &str) {
        let mut all = self.pending.lock().expect("expectations lock");
        if let Some(pending) = all.get_mut(owner) {
            pending.retain(|p| {
                p.replica_set != replica_set
                    || match &p.seen {
                        Seen::Created(u) => u != uid,
                        Seen::Updated(before) => before == resource_version,
                    }
            });
            if pending.is_empty() {
                all.remove(owner);
            }
        }
    }

    /// Whether the cache has seen every write of `owner`; `cached` gives a
    /// ReplicaSet's (uid, resourceVersion) in the cache by name. Writes
    /// seen or expired are forgotten.
    pub fn satisfied(
        &self,
        owner: &str,
        now: Instant,
        cached: impl Fn(&str) -> Option<(String, String)>,
    ) -> bool {
        let mut all = self.pending.lock().expect("expectations lock");
        let Some(pending) = all.get_mut(owner) else {
            return true;
        };
        pending.retain(|p| {
            if now.saturating_duration_since(p.at) >= TIMEOUT {
                return false;
            }
            let seen = match (&p.seen, cached(&p.replica_set)) {
                (Seen::Created(uid), Some((u, _))) => *uid == u,
                (Seen::Created(_), None) => false,
                (Seen::Updated(before), Some((_, rv))) => *before != rv,
                // Gone from the cache: deleted after the write.
                (Seen::Updated(_), None) => true,
            };
            !seen
        });
        let done = pending.is_empty();
        // Owners deleted with writes pending are never asked about again:
        // drop whatever has expired, so nothing stays forever.
        all.retain(|_, v| {
            v.retain(|p| now.saturating_duration_since(p.at) < TIMEOUT);
            !v.is_empty()
        });
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_awaited_until_the_cache_shows_them() {
        let e = Expectations::default();
        let t = Instant::now();
        assert!(e.satisfied("ns/a", t, |_| None));
        e.created("ns/a", "a-1", "u1", t);
        e.updated("ns/a", "a-0", "5", t);
        fn cache(
            a1: Option<&'static str>,
            a0: Option<&'static str>,
        ) -> impl Fn(&str) -> Option<(String, String)> {
            move |name: &str| match name {
                "a-1" => a1.map(|rv| ("u1".to_string(), rv.to_string())),
                "a-0" => a0.map(|rv| ("u0".to_string(), rv.to_string())),
                _ => None,
            }
        }
        assert!(!e.satisfied("ns/a", t, cache(None, Some("5"))));
        // Another owner is not held up.
        assert!(e.satisfied("ns/b", t, |_| None));
        assert!(!e.satisfied("ns/a", t, cache(Some("7"), Some("5"))));
        assert!(e.satisfied("ns/a", t, cache(Some("7"), Some("8"))));
        // A created ReplicaSet of another uid under the same name is not ours.
        e.created("ns/a", "a-1", "u9", t);
        assert!(!e.satisfied("ns/a", t, cache(Some("7"), Some("8"))));
        // A watch event is enough, a deletion included.
        e.observe("ns/a", "a-1", "u9", "10");
        assert!(e.satisfied("ns/a", t, |_| None));
        e.updated("ns/a", "a-0", "8", t);
        e.observe("ns/a", "a-0", "u0", "8");
        assert!(!e.satisfied("ns/a", t, cache(None, Some("8"))));
        // Expired.
        e.created("ns/a", "a-1", "u9", t);
        assert!(e.satisfied("ns/a", t + TIMEOUT, cache(Some("7"), Some("8"))));
    }
}
