//! The log subscriber: `log.format` text or JSON lines on stderr, at
//! `log.level` (`RUST_LOG` wins), through a non-blocking writer.
//!
//! A request's lines carry its id: `http::observe` runs each request in a
//! `request{request_id=…}` span, which the text format prints before the
//! message and the JSON format puts under `"span"`.
//!
//! The writer is `tracing-appender`'s: lines go into a bounded queue that
//! a thread of its own writes out, so a slow or blocked stderr never holds
//! up a request. When the queue is full (128k lines) new lines are dropped
//! and counted (`otpd_log_lines_dropped_total`) rather than waited for.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Keeps the writer thread alive; dropping it flushes what is queued.
pub struct Logging {
    _guard: WorkerGuard,
    /// The count of lines dropped so far, for the metrics.
    pub dropped: ErrorCounter,
}

/// The filter: `RUST_LOG` when set and valid, else `log.level`.
fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber.
///
/// # Errors
/// When a global subscriber is already installed.
pub fn init(config: &LogConfig) -> Result<Logging, tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("otpd-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(config))
        .with_writer(writer);
    match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .try_init()?,
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init()?,
    }
    Ok(Logging {
        _guard: guard,
        dropped,
    })
}
