//! Client-side rate limiting shared by every worker of one [`super::Client`]: requests per minute
//! (evenly spaced), tokens per minute (a bucket holding one minute of tokens, charged with an
//! estimate before sending and corrected with the reported usage afterwards), and a shared "resume
//! at" instant set when the server answers 429, so that all workers pause together.
//!
//! Buckets are reservation-based: a caller takes what it needs at once (the level may go negative)
//! and sleeps until the level would have been back at zero, so waiting callers are served in order.

use std::sync::Mutex;
use tokio::time::{Duration, Instant};

/// A token bucket that can go into debt.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    level: f64,
    last: Instant,
}

impl Bucket {
    fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self { capacity, per_sec, level: capacity, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Take `n` (clamped to the capacity, so an oversized request waits for a full bucket instead of
    /// forever); returns how long to wait before using it.
    fn reserve(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= n.min(self.capacity);
        if self.level >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.level / self.per_sec) }
    }

    /// Give back `n` (negative: charge more).
    fn give_back(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + n).min(self.capacity);
    }
}

#[derive(Debug)]
struct State {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    resume_at: Option<Instant>,
}

/// The limiter of one client.
#[derive(Debug)]
pub(crate) struct Limiter {
    state: Mutex<State>,
    /// Workers released from a pause each wait a further uniform random delay up to this, so they
    /// do not all hit the server in the same millisecond.
    resume_jitter: Duration,
}

impl Limiter {
    /// A limiter for these per-minute limits (`None`: unlimited).
    pub(crate) fn new(
        requests_per_minute: Option<u32>,
        tokens_per_minute: Option<u32>,
        resume_jitter: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                // Burst of one request: requests are spaced 60/rpm seconds apart.
                requests: requests_per_minute.map(|r| Bucket::new(1.0, f64::from(r) / 60.0, now)),
                tokens: tokens_per_minute.map(|t| Bucket::new(f64::from(t), f64::from(t) / 60.0, now)),
                resume_at: None,
            }),
            resume_jitter,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another worker panicked mid-update of plain numbers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until one request of about `tokens` tokens may be sent: rate limits and any shared pause.
    pub(crate) async fn acquire(&self, tokens: u64) {
        loop {
            self.wait_resume().await;
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let a = s.requests.as_mut().map_or(Duration::ZERO, |b| b.reserve(1.0, now));
                let b = s.tokens.as_mut().map_or(Duration::ZERO, |b| b.reserve(tokens as f64, now));
                a.max(b)
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // A pause that began while we waited wins: give the reservation back and queue again
            // after it, so the workers do not all fire the moment it ends.
            let mut s = self.lock();
            let now = Instant::now();
            match s.resume_at {
                Some(t) if t > now => {
                    if let Some(b) = s.requests.as_mut() {
                        b.give_back(1.0, now);
                    }
                    if let Some(b) = s.tokens.as_mut() {
                        b.give_back(tokens as f64, now);
                    }
                }
                _ => return,
            }
        }
    }

    /// Sleep while a shared pause is in force.
    async fn wait_resume(&self) {
        let mut paused = false;
        loop {
            let until = self.lock().resume_at;
            match until {
                Some(t) if t > Instant::now() => {
                    paused = true;
                    tokio::time::sleep_until(t).await;
                }
                _ => break,
            }
        }
        if paused && !self.resume_jitter.is_zero() {
            let max = self.resume_jitter.as_secs_f64();
            tokio::time::sleep(Duration::from_secs_f64(rand::random::<f64>() * max)).await;
        }
    }

    /// Pause every worker until `until` (a later pause already in force is kept). Returns whether
    /// this extended the pause.
    pub(crate) fn pause_until(&self, until: Instant) -> bool {
        let mut s = self.lock();
        match s.resume_at {
            Some(t) if t >= until => false,
            _ => {
                s.resume_at = Some(until);
                true
            }
        }
    }

    /// When a pause in force ends (`None`: not paused).
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.lock().resume_at.filter(|t| *t > Instant::now())
    }

    /// Correct the token bucket once the real usage is known.
    pub(crate) fn correct_tokens(&self, charged: u64, actual: u64) {
        let mut s = self.lock();
        if let Some(b) = s.tokens.as_mut() {
            let charged = (charged as f64).min(b.capacity);
            b.give_back(charged - actual as f64, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced() {
        let l = Limiter::new(Some(600), None, Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..11 {
            l.acquire(0).await;
        }
        let dt = t0.elapsed().as_secs_f64();
        assert!((dt - 1.0).abs() < 0.01, "{dt}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_refill_and_corrections_count() {
        let l = Limiter::new(None, Some(6000), Duration::ZERO); // 100 tokens/s, a bucket of 6000
        let t0 = Instant::now();
        l.acquire(6000).await; // the full minute at once
        assert!(t0.elapsed() < Duration::from_millis(1));
        l.acquire(100).await; // one more second
        let dt = t0.elapsed().as_secs_f64();
        assert!((dt - 1.0).abs() < 0.01, "{dt}");
        // The first call really used 1000 tokens, not 6000: 5000 come back at once.
        l.correct_tokens(6000, 1000);
        let t1 = Instant::now();
        l.acquire(4000).await;
        assert!(t1.elapsed() < Duration::from_millis(1));
        // An oversized request waits for a full bucket, not forever.
        l.acquire(1_000_000).await;
        assert!(t1.elapsed() < Duration::from_secs(61));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_everyone() {
        let l = Limiter::new(None, None, Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(l.pause_until(t0 + Duration::from_secs(2)));
        assert!(!l.pause_until(t0 + Duration::from_secs(1)), "a shorter pause does not shorten it");
        l.acquire(10).await;
        let dt = t0.elapsed();
        assert!(dt >= Duration::from_secs(2) && dt <= Duration::from_millis(2100), "{dt:?}");
        let t1 = Instant::now();
        l.acquire(10).await;
        assert!(t1.elapsed().is_zero(), "no jitter without a pause");
    }
}
