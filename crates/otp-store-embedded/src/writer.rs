//! Group commit: one writer thread runs every write of the store, and the
//! calls that queued up while it was busy share one redb transaction and
//! one fsync.
//!
//! redb serialises writers and fsyncs once per commit, so one transaction
//! per call capped the store at one fsync per request. Here the writer
//! takes the first queued call and, without waiting, everything queued
//! behind it (up to [`MAX_BATCH`]); a lone call at low load runs at once,
//! alone, and waits for no batch and no timer.
//!
//! Each call keeps the semantics it had in a transaction of its own:
//! - the calls of a batch run one after another in the transaction, so
//!   each sees the writes of those before it, as if they ran in turn;
//! - no call is answered before the commit that holds its writes has
//!   returned, so an answer still means durable (or an error, when the
//!   commit fails: then no call of the batch is answered with success);
//! - a call that fails (a corrupt record, a storage error) must not leave
//!   half its writes in a transaction the others commit, so the batch is
//!   thrown away and each of its calls runs again in a transaction of its
//!   own, exactly as before group commit. Failures are rare; this keeps
//!   the common path simple.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::EmbeddedError;

/// Most calls in one transaction: bounds a batch's latency and the
/// transaction's dirty pages. Far above the concurrency a 64-connection
/// load produces.
pub const MAX_BATCH: usize = 256;

/// Calls that may wait for the writer; a full queue makes callers wait
/// (back-pressure), so memory does not grow with load.
pub const QUEUE: usize = 1024;

/// The body of a call: its answer, and whether it wrote anything.
pub type Body<T> = dyn Fn(&WriteTransaction) -> Result<(T, bool), EmbeddedError> + Send;

/// How one run of a call inside a transaction went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Unchanged,
    Changed,
    Failed,
}

/// A queued call, with its reply channel; type-erased so calls with
/// different answers share one queue.
pub trait Job: Send {
    /// Runs the call in `txn` and keeps its answer. May run again (in a
    /// fresh transaction) after a batch is thrown away.
    fn run(&mut self, txn: &WriteTransaction) -> Ran;
    /// Sends the kept answer, or `failed` when the transaction failed.
    fn reply(self: Box<Self>, failed: Option<&Arc<redb::Error>>);
}

pub struct Call<T> {
    body: Box<Body<T>>,
    answer: Option<Result<T, EmbeddedError>>,
    to: oneshot::Sender<Result<T, EmbeddedError>>,
}

impl<T> Call<T> {
    pub fn new(body: Box<Body<T>>) -> (Self, oneshot::Receiver<Result<T, EmbeddedError>>) {
        let (to, from) = oneshot::channel();
        let call = Call {
            body,
            answer: None,
            to,
        };
        (call, from)
    }
}

impl<T: Send> Job for Call<T> {
    fn run(&mut self, txn: &WriteTransaction) -> Ran {
        let result = catch_unwind(AssertUnwindSafe(|| (self.body)(txn)))
            .unwrap_or(Err(EmbeddedError::Panicked));
        let ran = match &result {
            Ok((_, true)) => Ran::Changed,
            Ok((_, false)) => Ran::Unchanged,
            Err(_) => Ran::Failed,
        };
        self.answer = Some(result.map(|(value, _)| value));
        ran
    }

    fn reply(self: Box<Self>, failed: Option<&Arc<redb::Error>>) {
        let answer = match (self.answer, failed) {
            // Its own error first: it says more than the batch's.
            (Some(Err(own)), _) => Err(own),
            (_, Some(e)) => Err(EmbeddedError::Redb(e.clone())),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(EmbeddedError::Stopped),
        };
        // The caller may have gone (its request was dropped): fine.
        let _ = self.to.send(answer);
    }
}

pub type Queue = mpsc::Sender<Box<dyn Job>>;

/// Starts the writer thread. It ends when every [`Queue`] handle is
/// dropped and the queue is empty.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn(
    db: Arc<Database>,
    record_events: bool,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (queue, mut jobs) = mpsc::channel::<Box<dyn Job>>(QUEUE);
    let handle = std::thread::Builder::new()
        .name("otpd-store-writer".into())
        .spawn(move || {
            // Every write of this store runs on this thread.
            crate::tx::RECORD_EVENTS.with(|on| on.set(record_events));
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = jobs.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                // A panic inside redb drops the batch's reply channels, so
                // its callers get `Stopped`; the writer lives on.
                let _ = catch_unwind(AssertUnwindSafe(|| run_batch(&db, &mut batch)));
                batch.clear();
            }
        })?;
    Ok((queue, handle))
}

fn run_batch(db: &Database, batch: &mut Vec<Box<dyn Job>>) {
    if batch.len() > 1 {
        match together(db, batch) {
            Together::Committed => {
                for job in batch.drain(..) {
                    job.reply(None);
                }
                return;
            }
            Together::TransactionFailed(e) => {
                for job in batch.drain(..) {
                    job.reply(Some(&e));
                }
                return;
            }
            Together::CallFailed => {}
        }
    }
    for mut job in batch.drain(..) {
        let outcome = alone(db, job.as_mut());
        job.reply(outcome.err().as_ref());
    }
}

enum Together {
    Committed,
    /// Beginning or committing the shared transaction failed.
    TransactionFailed(Arc<redb::Error>),
    /// A call failed; the transaction was thrown away.
    CallFailed,
}

fn together(db: &Database, batch: &mut [Box<dyn Job>]) -> Together {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return Together::TransactionFailed(Arc::new(e.into())),
    };
    let mut changed = false;
    for job in batch.iter_mut() {
        match job.run(&txn) {
            Ran::Changed => changed = true,
            Ran::Unchanged => {}
            Ran::Failed => {
                let _ = txn.abort();
                return Together::CallFailed;
            }
        }
    }
    match finish(txn, changed) {
        Ok(()) => Together::Committed,
        Err(e) => Together::TransactionFailed(e),
    }
}

/// One call in a transaction of its own: commit on success when it
/// wrote, else abort. A failed call keeps its own error as its answer.
fn alone(db: &Database, job: &mut dyn Job) -> Result<(), Arc<redb::Error>> {
    let txn = db.begin_write().map_err(|e| Arc::new(e.into()))?;
    match job.run(&txn) {
        Ran::Changed => finish(txn, true),
        Ran::Unchanged => finish(txn, false),
        Ran::Failed => {
            let _ = txn.abort();
            Ok(())
        }
    }
}

/// Commits (durably: redb's default) when anything changed; otherwise
/// aborts, which skips the fsync (checks of a locked code are reads).
fn finish(txn: WriteTransaction, changed: bool) -> Result<(), Arc<redb::Error>> {
    let done = if changed {
        txn.commit().map_err(redb::Error::from)
    } else {
        txn.abort().map_err(redb::Error::from)
    };
    done.map_err(Arc::new)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    use super::*;

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn db() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("w.redb")).expect("create");
        let txn = db.begin_write().expect("begin");
        txn.open_table(T).expect("table");
        txn.commit().expect("commit");
        (dir, Arc::new(db))
    }

    type Answer<T> = oneshot::Receiver<Result<T, EmbeddedError>>;

    async fn enqueue<T: Send + 'static>(
        queue: &Queue,
        body: impl Fn(&WriteTransaction) -> Result<(T, bool), EmbeddedError> + Send + 'static,
    ) -> Answer<T> {
        let (call, answer) = Call::new(Box::new(body));
        queue.send(Box::new(call)).await.expect("queue open");
        answer
    }

    fn put(txn: &WriteTransaction, key: &str, value: u64) -> Result<(), EmbeddedError> {
        txn.open_table(T)?.insert(key, value)?;
        Ok(())
    }

    fn get(txn: &WriteTransaction, key: &str) -> Result<Option<u64>, EmbeddedError> {
        Ok(txn.open_table(T)?.get(key)?.map(|v| v.value()))
    }

    /// Holds the writer busy, so that what is queued next forms one batch.
    async fn hold_writer(queue: &Queue) -> Answer<()> {
        let held = enqueue(queue, |_| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(((), false))
        })
        .await;
        // Let the writer take it before the next calls queue up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        held
    }

    #[tokio::test]
    async fn calls_queued_behind_a_busy_writer_share_one_transaction() {
        let (_dir, db) = db();
        let (queue, _writer) = spawn(db.clone(), true).expect("spawn");
        let held = hold_writer(&queue).await;
        let first = enqueue(&queue, |txn| Ok((put(txn, "x", 1)?, true))).await;
        let reader = db.clone();
        // Sees "x" in the transaction, but no commit of it yet: the two
        // calls are in one transaction, committed once.
        let second = enqueue(&queue, move |txn| {
            let committed = reader.begin_read()?.open_table(T)?.get("x")?.is_some();
            Ok(((get(txn, "x")?, committed), true))
        })
        .await;
        held.await.expect("reply").expect("held");
        first.await.expect("reply").expect("first");
        let (seen, committed) = second.await.expect("reply").expect("second");
        assert_eq!(seen, Some(1), "a later call sees the earlier call's write");
        assert!(!committed, "the earlier call was not committed on its own");
        let read = db.begin_read().expect("read");
        let got = read.open_table(T).expect("table").get("x").expect("get");
        assert_eq!(got.map(|v| v.value()), Some(1), "answered means committed");
    }

    #[tokio::test]
    async fn a_failing_call_leaves_none_of_its_writes_and_the_others_still_commit() {
        let (_dir, db) = db();
        let (queue, _writer) = spawn(db.clone(), true).expect("spawn");
        let held = hold_writer(&queue).await;
        let a = enqueue(&queue, |txn| Ok((put(txn, "a", 1)?, true))).await;
        let broken = enqueue(&queue, |txn| {
            put(txn, "b", 2)?;
            Err::<((), bool), _>(EmbeddedError::Corrupt("on purpose"))
        })
        .await;
        let c = enqueue(&queue, |txn| {
            let b = get(txn, "b")?;
            put(txn, "c", 3)?;
            Ok((b, true))
        })
        .await;
        held.await.expect("reply").expect("held");
        a.await.expect("reply").expect("a");
        assert!(matches!(
            broken.await.expect("reply"),
            Err(EmbeddedError::Corrupt("on purpose"))
        ));
        let b_seen_by_c = c.await.expect("reply").expect("c");
        assert_eq!(b_seen_by_c, None, "no call sees a failed call's write");
        let read = db.begin_read().expect("read");
        let table = read.open_table(T).expect("table");
        let value = |k| table.get(k).expect("get").map(|v| v.value());
        assert_eq!(
            (value("a"), value("b"), value("c")),
            (Some(1), None, Some(3))
        );
    }

    #[tokio::test]
    async fn a_panicking_call_gets_an_error_and_the_writer_carries_on() {
        let (_dir, db) = db();
        let (queue, _writer) = spawn(db.clone(), true).expect("spawn");
        let boom = enqueue(&queue, |_| -> Result<((), bool), EmbeddedError> {
            panic!("on purpose")
        })
        .await;
        assert!(matches!(
            boom.await.expect("reply"),
            Err(EmbeddedError::Panicked)
        ));
        let after = enqueue(&queue, |txn| Ok((put(txn, "after", 1)?, true))).await;
        after
            .await
            .expect("reply")
            .expect("the writer still runs calls");
    }

    #[tokio::test]
    async fn a_lone_call_is_answered_without_waiting_for_company() {
        let (_dir, db) = db();
        let (queue, _writer) = spawn(db, true).expect("spawn");
        let started = std::time::Instant::now();
        let one = enqueue(&queue, |txn| Ok((put(txn, "alone", 1)?, true))).await;
        one.await.expect("reply").expect("put");
        // One fsync, no batching timer: far below any timer worth having.
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn the_writer_ends_when_the_queue_closes() {
        let (_dir, db) = db();
        let (queue, writer) = spawn(db, true).expect("spawn");
        drop(queue);
        writer.join().expect("the writer thread ends cleanly");
    }
}
