//! The log subscriber: `log.format` text or JSON lines on stderr, at
//! `log.level` (`RUST_LOG` wins), through a non-blocking writer.
//!
//! A request's lines carry its id: `http::observe` runs each request in a
//! `request{request_id=…}` span, which the text format prints before the
//! message and the JSON format puts under `"span"`.
//!
//! The writer is a [`BatchWriter`]: a request appends its line to a
//! shared buffer (a lock and a copy) and goes on; a thread of its own
//! writes the buffer out every few milliseconds in one `write`. So a slow
//! or blocked stderr never holds up a request, and a busy otpd makes one
//! write syscall per batch, not one per line (with `tracing-appender`'s
//! non-blocking writer, each line also woke the writer thread and made
//! its own `write`; see bench/OBSERVABILITY.md). When
//! [`BUFFER_LIMIT`] bytes are waiting, new lines are dropped and counted
//! (`otpd_log_lines_dropped_total`) rather than waited for.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level or an `EnvFilter` directive list; `RUST_LOG` wins.
    pub level: String,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one line per event, with the request's span.
    Text,
    /// For machines: one JSON object per line.
    Json,
}

/// Bytes of log lines that may wait for the writer: about 40,000 lines.
pub const BUFFER_LIMIT: usize = 8 << 20;
/// How long a line may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

struct Shared {
    pending: Mutex<Vec<u8>>,
    limit: usize,
    dropped: AtomicU64,
    stop: AtomicBool,
    wake: Condvar,
}

/// A `MakeWriter` whose writes never wait for the output; see the module
/// doc.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// The writer thread; dropping it writes what is pending and stops it,
/// waiting at most [`FLUSH_TIMEOUT`] (a stuck stderr must not hang the
/// shutdown).
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

/// How long a shutdown waits for the last lines to be written.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl BatchWriter {
    /// A writer into `out`, with at most `limit` bytes pending, and the
    /// thread that writes them.
    ///
    /// # Errors
    /// When the writer thread cannot be spawned: without it every line
    /// would be lost, so the caller must not go on as if logging worked.
    pub fn new<W: Write + Send + 'static>(
        mut out: W,
        limit: usize,
    ) -> std::io::Result<(BatchWriter, Flusher)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            limit,
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let (finished, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("otpd-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 << 10);
                loop {
                    let stopping = {
                        let guard = worker.pending.lock().unwrap_or_else(|e| e.into_inner());
                        let (mut guard, _) = worker
                            .wake
                            .wait_timeout(guard, FLUSH_EVERY)
                            .unwrap_or_else(|e| e.into_inner());
                        // Swap, so requests append to an empty buffer
                        // while this thread writes without the lock.
                        std::mem::swap(&mut *guard, &mut spare);
                        worker.stop.load(Ordering::Acquire)
                    };
                    if !spare.is_empty() {
                        // Nowhere to report a failed write to: the line
                        // is lost, as it would be on a closed stderr.
                        let _ = out.write_all(&spare).and_then(|()| out.flush());
                        spare.clear();
                    }
                    if stopping {
                        break;
                    }
                }
                let _ = finished.send(());
            })?;
        let flusher = Flusher {
            shared: shared.clone(),
            thread: Some(thread),
            done,
        };
        Ok((BatchWriter { shared }, flusher))
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// A handle that reads the dropped count, for the metrics.
    pub fn dropped_counter(&self) -> DroppedLines {
        DroppedLines(self.shared.clone())
    }
}

/// Reads how many log lines were dropped.
#[derive(Clone)]
pub struct DroppedLines(Arc<Shared>);

impl DroppedLines {
    pub fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending.len() + line.len() > self.shared.limit {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // Joined only once it finished; a thread stuck in a write is
            // left to end with the process.
            if self.done.recv_timeout(FLUSH_TIMEOUT).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// Keeps the writer thread alive; dropping it writes what is pending.
pub struct Logging {
    _flusher: Flusher,
    /// The count of lines dropped so far, for the metrics.
    pub dropped: DroppedLines,
}

/// The filter: `RUST_LOG` when set and valid, else `log.level`.
fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("the log writer thread could not be started")]
    Thread(#[source] std::io::Error),
    #[error("a global log subscriber is already installed")]
    Installed(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber.
///
/// # Errors
/// [`LogInitError`] when the writer thread cannot start or a global
/// subscriber is already installed.
pub fn init(config: &LogConfig) -> Result<Logging, LogInitError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let (writer, flusher) =
        BatchWriter::new(std::io::stderr(), BUFFER_LIMIT).map_err(LogInitError::Thread)?;
    let dropped = writer.dropped_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(config))
        .with_writer(writer);
    match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .try_init()
            .map_err(LogInitError::Installed)?,
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init()
            .map_err(LogInitError::Installed)?,
    }
    Ok(Logging {
        _flusher: flusher,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records what reached it, and can be made to block.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            self.written.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_output_in_order_and_all_of_them_on_drop() {
        let sink = Sink::default();
        let (writer, flusher) = BatchWriter::new(sink.clone(), 1 << 20).expect("log writer thread");
        for i in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(flusher);
        let text = String::from_utf8(sink.written.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[999], "line 999");
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_stuck_output_delays_the_shutdown_by_the_flush_timeout_only() {
        let sink = Sink::default();
        let closed = sink.gate.lock().expect("lock");
        let (writer, flusher) = BatchWriter::new(sink.clone(), 1 << 20).expect("log writer thread");
        writer.make_writer().write_all(b"stuck\n").expect("write");
        std::thread::sleep(FLUSH_EVERY * 3);
        let start = std::time::Instant::now();
        drop(flusher);
        let waited = start.elapsed();
        assert!(
            waited >= FLUSH_TIMEOUT && waited < FLUSH_TIMEOUT + Duration::from_secs(2),
            "{waited:?}"
        );
        drop(closed);
    }

    #[test]
    fn a_blocked_output_drops_and_counts_lines_and_never_blocks_the_writer() {
        let sink = Sink::default();
        let closed = sink.gate.lock().expect("lock");
        let (writer, flusher) = BatchWriter::new(sink.clone(), 100).expect("log writer thread");
        // The thread may be stuck writing the first batch; later lines
        // pile up to the limit, and the rest are dropped, at once.
        let start = std::time::Instant::now();
        for _ in 0..50 {
            writer
                .make_writer()
                .write_all(b"0123456789\n")
                .expect("write");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(start.elapsed() < Duration::from_secs(2), "writes waited");
        assert!(writer.dropped() >= 30, "dropped {}", writer.dropped());
        assert!(writer.dropped_counter().get() == writer.dropped());
        drop(closed);
        drop(flusher);
        let written = sink.written.lock().expect("lock").len();
        assert_eq!(
            written as u64,
            (50 - writer.dropped()) * 11,
            "the rest arrived"
        );
    }
}
