//! The pure state machine behind the store port, shared by the in-process
//! stores. A store reads the current state, calls one of these functions
//! and writes what it returns, all inside one transaction or lock. (The
//! Redis store runs the same rules as Lua, inside Redis.)

use crate::digest::CodeDigest;
use crate::outcome::{CheckOutcome, PutOutcome, RateBucket};
use crate::ports::{CodeRecord, SendLimits};
use crate::time::Timestamp;
use crate::verification::Verification;

/// Whether a send that keeps `service`'s pending verification
/// ([`SendLimits::reuse`]) finds it: `code`, the code under the key, is
/// the live code of `v`, and `v` is pending and was sent for `service`.
pub fn reusable(service: &str, code: &CodeRecord, v: &Verification, now: Timestamp) -> bool {
    code.is_live_for(&v.id, now) && v.is_pending() && v.service.as_deref() == Some(service)
}

/// The counter of one rate bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub window_start: Timestamp,
    pub count: u32,
}

impl BucketState {
    /// When this window ends and the state may be dropped.
    pub fn expires_at(&self, bucket: &RateBucket) -> Timestamp {
        self.window_start.saturating_add(bucket.window_ms)
    }
}

/// Counts one hit in each bucket, all or nothing.
///
/// `current[i]` is the stored state of `buckets[i]` (`None` when absent).
/// Returns the states to write, or the milliseconds until every full
/// bucket has room again.
pub fn hit_buckets(
    buckets: &[RateBucket],
    current: &[Option<BucketState>],
    now: Timestamp,
) -> Result<Vec<BucketState>, u64> {
    let mut next = Vec::with_capacity(buckets.len());
    let mut retry_after = 0u64;
    for (bucket, state) in buckets.iter().zip(current) {
        let live = state.filter(|s| now < s.expires_at(bucket));
        match live {
            Some(s) if s.count >= bucket.limit => {
                retry_after = retry_after.max(s.expires_at(bucket) - now);
            }
            Some(s) => next.push(BucketState {
                window_start: s.window_start,
                count: s.count + 1,
            }),
            None => next.push(BucketState {
                window_start: now,
                count: 1,
            }),
        }
    }
    if retry_after > 0 {
        Err(retry_after)
    } else {
        Ok(next)
    }
}

/// The buckets of a send's first step ([`crate::ports::CodeStore::stage_send`]),
/// in their order: the destination's own all or nothing, then each
/// shared bucket in turn.
///
/// `own[i]` and `shared[i]` are the stored states of `limits.own[i]` and
/// `limits.shared[i]`. Returns the states to write, for the first
/// `writes.len()` buckets of `own` then `shared`, and the refusal, if
/// any: a refusal by the own buckets writes nothing; one by a shared
/// bucket writes the own buckets and the shared ones before it.
pub fn stage_limits(
    limits: &SendLimits,
    own: &[Option<BucketState>],
    shared: &[Option<BucketState>],
    now: Timestamp,
) -> (Vec<BucketState>, Option<PutOutcome>) {
    let mut writes = match hit_buckets(&limits.own, own, now) {
        Ok(next) => next,
        Err(retry_after_ms) => {
            return (Vec::new(), Some(PutOutcome::RateLimited { retry_after_ms }))
        }
    };
    for (index, (bucket, state)) in limits.shared.iter().zip(shared).enumerate() {
        match hit_buckets(
            std::slice::from_ref(bucket),
            std::slice::from_ref(state),
            now,
        ) {
            Ok(next) => writes.extend(next),
            Err(retry_after_ms) => {
                return (
                    writes,
                    Some(PutOutcome::SharedLimited {
                        index,
                        retry_after_ms,
                    }),
                )
            }
        }
    }
    (writes, None)
}

/// What the store must do with the record after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStep {
    /// Delete the record (consumed or expired).
    Delete,
    /// Write this record back (an attempt was counted).
    Update(CodeRecord),
    /// Change nothing.
    Keep,
}

/// Decides one check of `digest` against the stored `record` at `now`.
pub fn check(
    record: Option<&CodeRecord>,
    digest: &CodeDigest,
    now: Timestamp,
) -> (CheckOutcome, CheckStep) {
    let Some(record) = record else {
        return (CheckOutcome::NotFound, CheckStep::Keep);
    };
    if now >= record.expires_at {
        return (CheckOutcome::NotFound, CheckStep::Delete);
    }
    if record.attempts >= record.max_attempts {
        return (CheckOutcome::Locked, CheckStep::Keep);
    }
    if record.digest.ct_eq(digest) {
        return (CheckOutcome::Approved, CheckStep::Delete);
    }
    let attempts = record.attempts + 1;
    (
        CheckOutcome::Mismatch {
            attempts_left: record.max_attempts - attempts,
        },
        CheckStep::Update(CodeRecord {
            attempts,
            ..*record
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(limit: u32, window_ms: u64) -> RateBucket {
        RateBucket {
            key: "b".into(),
            limit,
            window_ms,
        }
    }

    fn record(max_attempts: u32) -> CodeRecord {
        CodeRecord {
            digest: CodeDigest::from_bytes([1; 32]),
            expires_at: 1_000,
            attempts: 0,
            max_attempts,
            verification: crate::verification::VerificationId::from_bytes([3; 16]),
        }
    }

    #[test]
    fn empty_bucket_starts_a_window() {
        let got = hit_buckets(&[bucket(1, 100)], &[None], 50);
        assert_eq!(
            got,
            Ok(vec![BucketState {
                window_start: 50,
                count: 1
            }])
        );
    }

    #[test]
    fn full_bucket_refuses_with_time_until_window_ends() {
        let full = Some(BucketState {
            window_start: 50,
            count: 1,
        });
        assert_eq!(hit_buckets(&[bucket(1, 100)], &[full], 80), Err(70));
        // The window is over at 150: room again.
        assert!(hit_buckets(&[bucket(1, 100)], &[full], 150).is_ok());
    }

    #[test]
    fn one_full_bucket_refuses_the_whole_hit_with_the_longest_wait() {
        let buckets = [bucket(5, 1_000), bucket(1, 100), bucket(1, 500)];
        let states = [
            Some(BucketState {
                window_start: 0,
                count: 2,
            }),
            Some(BucketState {
                window_start: 0,
                count: 1,
            }),
            Some(BucketState {
                window_start: 0,
                count: 1,
            }),
        ];
        assert_eq!(hit_buckets(&buckets, &states, 10), Err(490));
    }

    #[test]
    fn check_approves_and_deletes_on_match() {
        let r = record(5);
        assert_eq!(
            check(Some(&r), &r.digest, 10),
            (CheckOutcome::Approved, CheckStep::Delete)
        );
    }

    #[test]
    fn check_counts_mismatches_then_locks_even_the_right_code() {
        let mut r = record(2);
        let wrong = CodeDigest::from_bytes([2; 32]);
        let (out, step) = check(Some(&r), &wrong, 10);
        assert_eq!(out, CheckOutcome::Mismatch { attempts_left: 1 });
        let CheckStep::Update(next) = step else {
            panic!("expected an update, got {step:?}");
        };
        r = next;
        let (out, step) = check(Some(&r), &wrong, 10);
        assert_eq!(out, CheckOutcome::Mismatch { attempts_left: 0 });
        let CheckStep::Update(next) = step else {
            panic!("expected an update, got {step:?}");
        };
        assert_eq!(
            check(Some(&next), &next.digest, 10),
            (CheckOutcome::Locked, CheckStep::Keep)
        );
    }

    #[test]
    fn expired_or_missing_code_is_not_found() {
        let r = record(5);
        assert_eq!(
            check(Some(&r), &r.digest, 1_000),
            (CheckOutcome::NotFound, CheckStep::Delete)
        );
        assert_eq!(
            check(None, &r.digest, 10),
            (CheckOutcome::NotFound, CheckStep::Keep)
        );
    }
}
