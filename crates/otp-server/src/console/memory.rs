//! What the console keeps in memory: the ids of this instance's recent
//! sends and the counters' minute samples. It knows nothing of the HTTP
//! layer, so the state the handlers share can hold it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use otp_domain::ports::Clock;
use otp_domain::VerificationId;
use otp_telemetry::metrics::Metrics;
use otp_telemetry::snapshot::{Counters, Snapshot, SAMPLE_EVERY};

/// How many recent sends the console lists.
pub const RECENT: usize = 50;

/// What the console keeps: the ids of recent sends and the minute
/// samples of the counters.
pub struct Console {
    counters: Option<Arc<Counters>>,
    clock: Arc<dyn Clock>,
    started: Instant,
    recent: Mutex<VecDeque<VerificationId>>,
}

impl Console {
    /// `metrics`: the registry to read (`None`: metrics are off, and the
    /// console shows only the store and the recent verifications).
    pub fn new(metrics: Option<Arc<Metrics>>, clock: Arc<dyn Clock>) -> Self {
        Console {
            counters: metrics.map(|m| Arc::new(Counters::new(m))),
            clock,
            started: Instant::now(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    /// Remembers a verification this instance created.
    pub fn record(&self, id: VerificationId) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(id);
    }

    /// Samples the counters every minute until the task is dropped or
    /// aborted; `None` when metrics are off.
    pub fn spawn_sampler(&self) -> Option<tokio::task::JoinHandle<()>> {
        let counters = self.counters.clone()?;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; `Counters::new` took that
            // sample.
            tick.tick().await;
            loop {
                tick.tick().await;
                counters.sample();
            }
        }))
    }

    /// The counters now against the sample of the window's start (`None`
    /// when metrics are off or nothing was sampled yet); `now_ms` is
    /// [`Console::now_ms`] read at `now`.
    pub fn snapshot(&self, now: Instant, now_ms: u64) -> Option<Snapshot> {
        self.counters.as_ref().and_then(|c| c.snapshot(now, now_ms))
    }

    /// The service clock's now (Unix ms).
    pub fn now_ms(&self) -> u64 {
        self.clock.now()
    }

    /// Seconds since the console started.
    pub fn uptime_secs(&self, now: Instant) -> u64 {
        now.duration_since(self.started).as_secs()
    }

    /// The recent sends' ids, newest first.
    pub fn recent(&self) -> Vec<VerificationId> {
        lock(&self.recent).iter().rev().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under this lock is one push or pop: a panic leaves a
    // consistent value behind.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
