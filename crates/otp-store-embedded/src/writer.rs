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
pub fn spawn(db: Arc<Database>) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (queue, mut jobs) = mpsc::channel::<Box<dyn Job>>(QUEUE);
    let handle = std::thread::Builder::new()
        .name("otpd-store-writer".into())
        .spawn(move || {
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
