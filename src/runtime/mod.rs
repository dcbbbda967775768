//! Runtime plumbing shared by the controller and the scheduler: events,
//! leader election, metrics, the metrics/health endpoints, and the
//! client-side rate limit on API requests.

pub mod args;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod rate_limit;
pub mod server;

/// The backoff of every watch: exponential from 0.8 s like client-go's
/// reflector, but capped at 5 s instead of 30 s, so a component whose API
/// server was away resumes within seconds of it answering again (with the
/// 30 s cap, a ten-second outage already puts the next retry 13 s out).
/// A failing watch then retries every 5 s: a request each, which no API
/// server notices. Reset by the first event after a failure.
pub fn watch_backoff() -> WatchBackoff {
    WatchBackoff {
        next: WATCH_BACKOFF_MIN,
    }
}

const WATCH_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(800);
const WATCH_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);

pub struct WatchBackoff {
    next: std::time::Duration,
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        let this = self.next;
        self.next = (this * 2).min(WATCH_BACKOFF_MAX);
        // Up to a quarter more, so components cut off together do not all
        // come back in the same instant.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Some(this + this.mul_f64(f64::from(nanos % 1000) / 4000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

/// No wait at all: for a stream whose parts already back off themselves.
/// (A backoff that ends, `None`, would end the stream instead.)
pub struct NoBackoff;

impl Iterator for NoBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoBackoff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;
    use std::time::Duration;

    #[test]
    fn watch_backoff_doubles_to_five_seconds_and_resets() {
        let mut b = watch_backoff();
        let got: Vec<Duration> = b.by_ref().take(6).collect();
        for (d, base) in got.iter().zip([800, 1600, 3200, 5000, 5000, 5000]) {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d <= base.mul_f64(1.25), "{d:?} vs {base:?}");
        }
        b.reset();
        assert!(b.next().unwrap() < Duration::from_secs(1));
    }
}
