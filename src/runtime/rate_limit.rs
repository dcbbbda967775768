//! Client-side rate limit for API requests, as client-go's QPS/burst.
//!
//! kube's `Client` sends requests as fast as they are made. A scheduler
//! that binds thousands of pods, or a controller rolling out hundreds of
//! objects, must not flood the API server, and a fair comparison with
//! kube-scheduler needs the same limits on both (docs/scheduler.md §5), so
//! every request of dlite-scheduler and dlite-controller passes a token
//! bucket: `qps` tokens per second, at most `burst` saved up. The limit
//! sits in the client's tower stack, below kube's request buffer, so
//! waiting requests queue in order. Both components take it as
//! `--kube-api-qps` / `--kube-api-burst` ([`RateLimitArgs`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kube::Client;
use kube::client::ClientBuilder;
use tower::{Layer, Service};

/// A client whose requests pass a token bucket of `qps`/`burst`.
pub fn rate_limited_client(
    config: kube::Config,
    qps: f64,
    burst: u32,
) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&RateLimitLayer::new(qps, burst))
        .build())
}

/// The client-side limit flags, as kube-scheduler and
/// kube-controller-manager take them. Unset, each component uses its own
/// default (or, for dlite-scheduler, its config file's `clientConnection`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct RateLimitArgs {
    /// Client-side limit on API requests per second [default: 50].
    #[arg(long, allow_negative_numbers = true)]
    pub kube_api_qps: Option<f64>,
    /// Requests allowed in a burst above the QPS [default: 100].
    #[arg(long, allow_negative_numbers = true)]
    pub kube_api_burst: Option<i64>,
}

/// QPS 50 and burst 100: kube-scheduler's defaults, used by both
/// components (kube-controller-manager's are 20 and 30; a DeploymentLite
/// sync makes about as many writes as a Deployment's, but dlite-controller
/// serves one kind where kube-controller-manager shares its budget among
/// dozens of controllers).
pub const DEFAULT_QPS: f64 = 50.0;
pub const DEFAULT_BURST: u32 = 100;

/// A QPS value, or why not (the words both components print).
pub fn check_qps(qps: f64) -> Result<f64, String> {
    if qps.is_finite() && qps > 0.0 {
        Ok(qps)
    } else {
        Err(format!("Invalid value: {qps}: must be greater than 0"))
    }
}

/// A burst value, or why not.
pub fn check_burst(burst: i64) -> Result<u32, String> {
    if (1..=i64::from(u32::MAX)).contains(&burst) {
        Ok(burst as u32)
    } else {
        Err(format!("Invalid value: {burst}: must be at least 1"))
    }
}

impl RateLimitArgs {
    /// (qps, burst) for a component without a config file; the error
    /// names the flag.
    pub fn resolve(&self) -> anyhow::Result<(f64, u32)> {
        let qps = match self.kube_api_qps {
            Some(q) => check_qps(q).map_err(|e| anyhow::anyhow!("--kube-api-qps: {e}"))?,
            None => DEFAULT_QPS,
        };
        let burst = match self.kube_api_burst {
            Some(b) => check_burst(b).map_err(|e| anyhow::anyhow!("--kube-api-burst: {e}"))?,
            None => DEFAULT_BURST,
        };
        Ok((qps, burst))
    }
}

/// `qps` tokens per second, up to `burst` stored; starts full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = now.max(self.last);
    }

    /// Takes a token if one is available at `now`; otherwise says how long
    /// until one is.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / self.qps).max(Duration::from_micros(100)))
        }
    }
}

/// Puts a [`TokenBucket`] in front of a service.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    qps: f64,
    burst: u32,
}

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> RateLimitLayer {
        RateLimitLayer { qps, burst }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: TokenBucket::new(self.qps, self.burst, tokio::time::Instant::now().into_std()),
            sleep: None,
            has_token: false,
        }
    }
}

/// The service [`RateLimitLayer`] makes: not ready until a token is taken.
pub struct RateLimit<S> {
    inner: S,
    bucket: TokenBucket,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    has_token: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.has_token {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self
                .bucket
                .try_acquire(tokio::time::Instant::now().into_std())
            {
                Ok(()) => self.has_token = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        // One token per request; poll_ready takes the next one.
        self.has_token = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_qps() {
        let t = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t), Ok(()));
        }
        let wait = b.try_acquire(t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(b.try_acquire(t + Duration::from_millis(50)).is_err());
        assert_eq!(b.try_acquire(t + Duration::from_millis(100)), Ok(()));
        // Idle time refills up to the burst, never beyond.
        let later = t + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(later), Ok(()));
        }
        assert!(b.try_acquire(later).is_err());
    }

    #[test]
    fn sustained_rate_matches_qps() {
        let t = Instant::now();
        let mut b = TokenBucket::new(50.0, 100, t);
        let mut now = t;
        let mut granted = 0;
        // Simulate 10 s of a caller that asks again as soon as allowed.
        while now < t + Duration::from_secs(10) {
            match b.try_acquire(now) {
                Ok(()) => granted += 1,
                Err(wait) => now += wait,
            }
        }
        // burst + 10 s * qps
        assert!((598..=601).contains(&granted), "{granted}");
    }

    #[tokio::test]
    async fn the_layer_delays_requests_beyond_the_burst() {
        use tower::ServiceExt;
        let svc = tower::service_fn(|x: u32| async move { Ok::<u32, std::convert::Infallible>(x) });
        let mut limited = RateLimitLayer::new(20.0, 2).layer(svc);
        let start = std::time::Instant::now();
        for i in 0..4 {
            let out = limited.ready().await.unwrap().call(i).await.unwrap();
            assert_eq!(out, i);
        }
        // Two from the burst, then one every 50 ms.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(95), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
