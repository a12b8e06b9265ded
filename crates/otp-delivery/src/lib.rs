//! Reliable delivery over any providers: each channel lists one or more
//! senders in fallback order. Transient failures (connect errors,
//! timeouts, 5xx, 429) are retried with the domain's bounded exponential
//! [`Backoff`] and equal jitter (a wait between half the ceiling and the
//! ceiling, so a retry never comes at once), honouring a provider's
//! `Retry-After`, within one overall deadline; permanent ones (other 4xx,
//! refused input) are not retried and move on to the next provider.
//!
//! Every attempt is reported to the provider's [`AttemptObserver`] (the
//! server's metrics); this crate knows no metrics crate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{Delivered, DeliveryError, OutgoingMessage, Sender};
use otp_domain::Backoff;
use tokio::time::Instant;

/// One provider attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth a retry (timeout, connect error, 5xx, 429).
    TransientError,
    /// Not retried (other 4xx, refused input).
    PermanentError,
    /// Cut off by the overall delivery deadline.
    Deadline,
}

impl Attempt {
    pub const ALL: [Attempt; 4] = [
        Attempt::Delivered,
        Attempt::TransientError,
        Attempt::PermanentError,
        Attempt::Deadline,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::Delivered => "delivered",
            Attempt::TransientError => "transient_error",
            Attempt::PermanentError => "permanent_error",
            Attempt::Deadline => "deadline",
        }
    }

    /// Its place in [`Attempt::ALL`].
    pub fn index(self) -> usize {
        match self {
            Attempt::Delivered => 0,
            Attempt::TransientError => 1,
            Attempt::PermanentError => 2,
            Attempt::Deadline => 3,
        }
    }
}

/// Who hears of one provider's attempts.
pub trait AttemptObserver: Send + Sync {
    /// One attempt ended as `outcome` after `elapsed`.
    fn attempt(&self, outcome: Attempt, elapsed: Duration);
    /// An attempt failed for `reason` (the provider's words, never a code
    /// or a secret: the adapters' contract).
    fn failed(&self, reason: &str);
}

/// How hard to try one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per provider, the first included.
    pub attempts: u32,
    /// Backoff before the second try; doubles each time.
    pub base_delay: Duration,
    /// Longest backoff between two tries.
    pub max_delay: Duration,
    /// Everything, all providers and waits, ends by then.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            deadline: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The retry schedule: `base_delay` doubling up to `max_delay`.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.base_delay,
            cap: self.max_delay,
        }
    }

    /// The wait before try `attempt + 1` (attempt counts from 0): equal
    /// jitter over the backoff's ceiling, or the provider's `Retry-After`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            // A provider's number; never longer than the whole deadline
            // (the caller then moves on), and no overflow from a huge one.
            return wait.min(self.deadline);
        }
        self.backoff()
            .delay(attempt, 0.5 + rand::random::<f64>() / 2.0)
    }
}

/// One provider with the name used in logs.
pub struct Provider {
    pub name: String,
    pub sender: Arc<dyn Sender>,
}

/// Tries providers in order, retrying transient failures.
pub struct ReliableSender {
    providers: Vec<Provider>,
    policy: RetryPolicy,
    /// Per provider (same order), when observed.
    metrics: Vec<Option<Arc<dyn AttemptObserver>>>,
}

impl ReliableSender {
    pub fn new(providers: Vec<Provider>, policy: RetryPolicy) -> Self {
        let metrics = providers.iter().map(|_| None).collect();
        ReliableSender {
            providers,
            policy,
            metrics,
        }
    }

    /// Reports every attempt of every provider to the observer that
    /// `observer` gives for the provider's name.
    #[must_use]
    pub fn observed(mut self, observer: impl Fn(&str) -> Arc<dyn AttemptObserver>) -> Self {
        self.metrics = self
            .providers
            .iter()
            .map(|p| Some(observer(&p.name)))
            .collect();
        self
    }
}

#[async_trait]
impl Sender for ReliableSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let deadline = Instant::now() + self.policy.deadline;
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut last: Option<DeliveryError> = None;
        'providers: for (provider, metrics) in self.providers.iter().zip(&self.metrics) {
            for attempt in 0..self.policy.attempts {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break 'providers;
                }
                let started = Instant::now();
                let outcome = tokio::time::timeout(remaining, provider.sender.send(message)).await;
                if let Some(m) = metrics {
                    let kind = match &outcome {
                        Ok(Ok(_)) => Attempt::Delivered,
                        Ok(Err(e)) if e.transient => Attempt::TransientError,
                        Ok(Err(_)) => Attempt::PermanentError,
                        Err(_) => Attempt::Deadline,
                    };
                    m.attempt(kind, started.elapsed());
                }
                let err = match outcome {
                    Ok(Ok(took)) => {
                        if !failures.is_empty() {
                            tracing::info!(provider = %provider.name, after = ?failures, "delivered after earlier failures");
                        }
                        return Ok(Delivered {
                            provider: provider.name.clone(),
                            failures,
                            message_id: took.message_id,
                        });
                    }
                    Ok(Err(e)) => e,
                    Err(_) => DeliveryError {
                        provider: provider.name.clone(),
                        reason: "overall delivery deadline reached".into(),
                        transient: true,
                        retry_after: None,
                        source: None,
                    },
                };
                if let Some(m) = metrics {
                    m.failed(&err.reason);
                }
                tracing::warn!(
                    provider = %provider.name,
                    attempt = attempt + 1,
                    transient = err.transient,
                    reason = %err.reason,
                    "delivery attempt failed"
                );
                failures.push((provider.name.clone(), err.reason.clone()));
                let transient = err.transient;
                let wait = self.policy.delay(attempt, err.retry_after);
                last = Some(err);
                if !transient || attempt + 1 == self.policy.attempts {
                    continue 'providers;
                }
                if Instant::now()
                    .checked_add(wait)
                    .is_none_or(|at| at >= deadline)
                {
                    // No time left to retry this one; the next provider
                    // may still answer at once.
                    continue 'providers;
                }
                tokio::time::sleep(wait).await;
            }
        }
        Err(DeliveryError {
            provider: self
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: format!(
                "every provider failed: {}",
                failures
                    .iter()
                    .map(|(p, r)| format!("{p}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            transient: last.as_ref().is_some_and(|e| e.transient),
            retry_after: None,
            source: last.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use otp_domain::ports::MockSender;
    use otp_domain::{Destination, Phone};

    use super::*;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            verification: None,
            destination: Destination::Sms(Phone::parse("77011234567").expect("phone")),
            subject: None,
            body: "Your code is 1234".into(),
            code: otp_domain::Code::parse("1234").expect("code"),
            locale: None,
        }
    }

    fn failure(transient: bool, retry_after: Option<Duration>) -> DeliveryError {
        DeliveryError {
            provider: "mock".into(),
            reason: "failed".into(),
            transient,
            retry_after,
            source: None,
        }
    }

    /// A sender answering from a script of results, counting calls.
    fn scripted(
        results: Vec<Result<(), (bool, Option<Duration>)>>,
    ) -> (Arc<MockSender>, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let mut s = MockSender::new();
        s.expect_send().returning(move |_| {
            let i = counter.fetch_add(1, Ordering::SeqCst) as usize;
            match results.get(i).copied().unwrap_or(Err((false, None))) {
                Ok(()) => Ok(Delivered::by("mock")),
                Err((transient, retry_after)) => Err(failure(transient, retry_after)),
            }
        });
        (Arc::new(s), calls)
    }

    fn provider(name: &str, sender: Arc<MockSender>) -> Provider {
        Provider {
            name: name.into(),
            sender,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff() {
        let (s, calls) = scripted(vec![Err((true, None)), Err((true, None)), Ok(())]);
        let started = Instant::now();
        let r = ReliableSender::new(vec![provider("a", s)], RetryPolicy::default());
        r.send(&message()).await.expect("third try succeeds");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two waits: 100–200 ms, then 200–400 ms (paused clock, no real sleep).
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited <= Duration::from_millis(600),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried_and_fall_back() {
        let (a, a_calls) = scripted(vec![Err((false, None))]);
        let (b, b_calls) = scripted(vec![Ok(())]);
        let r = ReliableSender::new(
            vec![provider("a", a), provider("b", b)],
            RetryPolicy::default(),
        );
        r.send(&message()).await.expect("fallback succeeds");
        assert_eq!(a_calls.load(Ordering::SeqCst), 1);
        assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let (s, _) = scripted(vec![Err((true, Some(Duration::from_secs(3)))), Ok(())]);
        let started = Instant::now();
        let r = ReliableSender::new(vec![provider("a", s)], RetryPolicy::default());
        r.send(&message()).await.expect("second try");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn all_failing_reports_every_provider_within_the_deadline() {
        let (a, a_calls) = scripted(vec![Err((true, None)); 10]);
        let (b, b_calls) = scripted(vec![Err((true, None)); 10]);
        let policy = RetryPolicy::default();
        let started = Instant::now();
        let r = ReliableSender::new(vec![provider("a", a), provider("b", b)], policy);
        let err = r.send(&message()).await.expect_err("all fail");
        assert_eq!(a_calls.load(Ordering::SeqCst), 3);
        assert_eq!(b_calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() <= policy.deadline);
        assert_eq!(err.provider, "a,b");
        assert!(
            err.reason.contains("a: failed") && err.reason.contains("b: failed"),
            "{}",
            err.reason
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_retry_after_does_not_overflow() {
        let (a, _) = scripted(vec![Err((true, Some(Duration::from_secs(u64::MAX))))]);
        let (b, b_calls) = scripted(vec![Ok(())]);
        let r = ReliableSender::new(
            vec![provider("a", a), provider("b", b)],
            RetryPolicy::default(),
        );
        r.send(&message()).await.expect("b answers");
        assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    }

    /// Writes down what it hears, as `provider outcome` lines.
    #[derive(Default)]
    struct Recorder {
        lines: std::sync::Mutex<Vec<String>>,
    }

    struct Named(String, Arc<Recorder>);

    impl AttemptObserver for Named {
        fn attempt(&self, outcome: Attempt, _elapsed: Duration) {
            let line = format!("{} {}", self.0, outcome.as_str());
            self.1.lines.lock().expect("lock").push(line);
        }

        fn failed(&self, reason: &str) {
            let line = format!("{} failed: {reason}", self.0);
            self.1.lines.lock().expect("lock").push(line);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_observed_sender_reports_every_attempt_by_provider_and_outcome() {
        let (a, _) = scripted(vec![Err((true, None)), Err((false, None))]);
        let (b, _) = scripted(vec![Ok(())]);
        let heard = Arc::new(Recorder::default());
        let r = ReliableSender::new(
            vec![provider("twilio", a), provider("http", b)],
            RetryPolicy::default(),
        )
        .observed(|name| Arc::new(Named(name.to_owned(), heard.clone())));
        r.send(&message()).await.expect("http answers");
        assert_eq!(
            *heard.lines.lock().expect("lock"),
            [
                "twilio transient_error",
                "twilio failed: failed",
                "twilio permanent_error",
                "twilio failed: failed",
                "http delivered",
            ]
        );
    }

    #[test]
    fn a_retry_waits_between_half_the_ceiling_and_the_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 0..6 {
            let ceiling = policy.backoff().ceiling(attempt);
            for _ in 0..50 {
                let wait = policy.delay(attempt, None);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{attempt}: {wait:?}"
                );
            }
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_past_the_deadline_moves_on() {
        let (a, a_calls) = scripted(vec![Err((true, Some(Duration::from_secs(60))))]);
        let (b, _) = scripted(vec![Ok(())]);
        let r = ReliableSender::new(
            vec![provider("a", a), provider("b", b)],
            RetryPolicy::default(),
        );
        r.send(&message()).await.expect("b answers");
        assert_eq!(a_calls.load(Ordering::SeqCst), 1);
    }
}
