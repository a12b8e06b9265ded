//! Reliable delivery over any providers: each channel lists one or more
//! senders in fallback order. Transient failures (connect errors,
//! timeouts, 5xx, 429) are retried with bounded exponential backoff and
//! full jitter, honouring a provider's `Retry-After`, within one overall
//! deadline; permanent ones (other 4xx, refused input) are not retried
//! and move on to the next provider.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{Delivered, DeliveryError, OutgoingMessage, Sender};
use otp_domain::Channel;
use rand::RngExt;
use tokio::time::Instant;

use otp_telemetry::metrics::{Attempt, Metrics, ProviderMetrics};

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
    /// The wait before try `attempt + 1` (attempt counts from 0): full
    /// jitter over an exponential cap, or the provider's `Retry-After`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            // A provider's number; never longer than the whole deadline
            // (the caller then moves on), and no overflow from a huge one.
            return wait.min(self.deadline);
        }
        let cap = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
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
    /// Per provider (same order), when metrics are on.
    metrics: Vec<Option<ProviderMetrics>>,
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

    /// Counts and times every attempt of every provider, as `channel`.
    #[must_use]
    pub fn observed(mut self, metrics: &Metrics, channel: Channel) -> Self {
        self.metrics = self
            .providers
            .iter()
            .map(|p| Some(metrics.provider(channel, &p.name)))
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
                    Ok(Ok(_)) => {
                        if !failures.is_empty() {
                            tracing::info!(provider = %provider.name, after = ?failures, "delivered after earlier failures");
                        }
                        return Ok(Delivered {
                            provider: provider.name.clone(),
                            failures,
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
            destination: Destination::Sms(Phone::parse("77011234567").expect("phone")),
            subject: None,
            body: "Your code is 1234".into(),
            code: otp_domain::Code::parse("1234").expect("code"),
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

    #[tokio::test(start_paused = true)]
    async fn an_observed_sender_counts_every_attempt_by_provider_and_outcome() {
        let (a, _) = scripted(vec![Err((true, None)), Err((false, None))]);
        let (b, _) = scripted(vec![Ok(())]);
        let metrics = Metrics::new().expect("metrics");
        let r = ReliableSender::new(
            vec![provider("twilio", a), provider("http", b)],
            RetryPolicy::default(),
        )
        .observed(&metrics, Channel::Sms);
        r.send(&message()).await.expect("http answers");
        let scrape = metrics.render();
        for line in [
            r#"otpd_delivery_attempts_total{channel="sms",outcome="transient_error",provider="twilio"} 1"#,
            r#"otpd_delivery_attempts_total{channel="sms",outcome="permanent_error",provider="twilio"} 1"#,
            r#"otpd_delivery_attempts_total{channel="sms",outcome="delivered",provider="twilio"} 0"#,
            r#"otpd_delivery_attempts_total{channel="sms",outcome="delivered",provider="http"} 1"#,
            r#"otpd_delivery_attempt_duration_seconds_count{channel="sms",provider="twilio"} 2"#,
            r#"otpd_delivery_attempt_duration_seconds_count{channel="sms",provider="http"} 1"#,
        ] {
            assert!(scrape.lines().any(|l| l == line), "no {line} in:\n{scrape}");
        }
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
