//! Client connections that cannot lock otpd out: a deadline for request
//! headers, one for idle keep-alive connections, and a cap on open
//! connections that sheds the least useful one.
//!
//! poem's `Server` hands each accepted stream to hyper without a timer, so
//! hyper's own `header_read_timeout` (HTTP/1 only, and it needs a timer)
//! never runs, and poem offers no hook to set it. Its `idle_timeout` is a
//! second task per connection that any byte (one byte of a slow header
//! too) keeps alive. So otpd wraps the acceptor instead: [`Guarded`] is
//! the stream hyper reads, and it knows the phase of its connection from
//! the bytes that pass:
//!
//! - **Head**: from the connection (or the first byte of a request on a
//!   kept-alive one) until the blank line that ends the headers. When
//!   `header_timeout` passes first, the read fails and hyper drops the
//!   connection. Checked before each read, so a client that trickles a
//!   byte at a time gains nothing.
//! - **Body**: headers are in and they announce a body (`Content-Length`
//!   or chunked); the body has `header_timeout` again to arrive, so a
//!   client cannot hold a connection by trickling its body either.
//! - **Busy**: the request is in and being answered. No deadline: the
//!   work has its own (`delivery.deadline_secs`).
//! - **Idle**: the answer went out (a write that is not a `1xx` interim
//!   answer); the next request has `idle_timeout` to start.
//! - **H2**: HTTP/2 with prior knowledge (`PRI * HTTP/2.0`): streams are
//!   invisible here, so only `idle_timeout` of silence closes it.
//!
//! [`Table`] counts open connections. At `max_connections` a new
//! connection evicts the connection that has been idle or sending its
//! request the longest (it ends at its next read); when every connection
//! is busy the new one is closed at once. Either way otpd keeps serving
//! and never runs out of file descriptors, which would leave the accept
//! loop failing.
//!
//! The phase is read off the bytes, not parsed as HTTP: hyper parses. A
//! pipelined request that arrives while the previous one is answered is
//! timed from the next read after that answer; that is the only case in
//! which a phase lags, and it only delays a deadline.
//!
//! Why not hyper-util's serve loop with hyper's own timer: hyper 1.12's
//! `header_read_timeout` is its only HTTP/1 server deadline. It starts when an
//! answer is out, so it would close idle connections at the header
//! timeout, and a body that stops midway has no deadline at all.
//! `tests/hyper_alone.rs` runs the same clients against both servers and
//! shows it; `docs/experiments/hyper-serve-loop.patch` is otpd served that
//! way, for the e2e slow-client tests (three of five fail).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The knobs, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// File descriptors otpd keeps beyond its connections, at least: the
/// store, Redis, provider connections, the runtime's own.
const RESERVED_FDS: u64 = 64;

/// The most connections a derived cap allows: each open connection holds
/// about 20 KB (hyper's buffers, the task), so this bounds them near
/// 330 MB however high the open-file limit is.
const MOST_CONNECTIONS: u64 = 16_384;

/// The connection cap derived from an open-file limit: 90% of it, at
/// least [`RESERVED_FDS`] below it, at most [`MOST_CONNECTIONS`].
pub fn default_max_connections(open_files: u64) -> usize {
    let reserve = (open_files / 10).max(RESERVED_FDS);
    let cap = open_files
        .saturating_sub(reserve)
        .clamp(1, MOST_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft_before: u64,
    pub soft: u64,
    /// `None`: unlimited.
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard one: every connection is a
/// file descriptor, and the soft limit (often 1024) is a default, not a
/// decision. An unlimited hard limit is taken as the kernel's cap,
/// `fs.nr_open`.
///
/// # Errors
/// When the limit cannot be read or set (then it stays as it was).
#[cfg(unix)]
pub fn raise_open_file_limit() -> io::Result<OpenFiles> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let soft_before = before.current.unwrap_or(u64::MAX);
    let target = match before.maximum {
        Some(hard) => hard,
        None => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20),
    };
    if target > soft_before {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: before.maximum,
            },
        )?;
    }
    let after = getrlimit(Resource::Nofile);
    Ok(OpenFiles {
        soft_before,
        soft: after.current.unwrap_or(u64::MAX),
        hard: after.maximum,
    })
}

/// The current soft open-file limit.
#[cfg(unix)]
pub fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> io::Result<OpenFiles> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no rlimit here"))
}

#[cfg(not(unix))]
pub fn open_file_limit() -> u64 {
    u64::MAX
}

const HEAD: u8 = 0;
const BODY: u8 = 1;
const BUSY: u8 = 2;
const IDLE: u8 = 3;
const H2: u8 = 4;

/// What the table knows of one connection.
struct Slot {
    phase: AtomicU8,
    /// When the current phase began, in ms since the table's epoch.
    since_ms: AtomicU64,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

/// The open connections, for the cap.
pub struct Table {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    max: usize,
    epoch: Instant,
    /// The last time (ms since epoch) the cap was logged, so a flood of
    /// connections logs once in a while, not once each.
    logged_ms: AtomicU64,
}

impl Table {
    fn new(max: usize) -> Self {
        Table {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max: max.max(1),
            epoch: Instant::now(),
            logged_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection when there is room or room can be made.
    fn admit(self: &Arc<Self>) -> Option<(u64, Arc<Slot>)> {
        let now = self.now_ms();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= self.max {
            let oldest = slots
                .values()
                .filter(|s| {
                    !s.evicted.load(Ordering::Relaxed)
                        && matches!(s.phase.load(Ordering::Relaxed), HEAD | BODY | IDLE)
                })
                .min_by_key(|s| s.since_ms.load(Ordering::Relaxed));
            match oldest {
                Some(slot) => {
                    slot.evicted.store(true, Ordering::Relaxed);
                    slot.waker.wake();
                    self.log_cap(now, slots.len(), true);
                }
                None => {
                    self.log_cap(now, slots.len(), false);
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(now),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        slots.insert(id, slot.clone());
        Some((id, slot))
    }

    fn remove(&self, id: u64) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn log_cap(&self, now: u64, open: usize, evicted: bool) {
        let last = self.logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 10_000 && last != 0 {
            return;
        }
        self.logged_ms.store(now.max(1), Ordering::Relaxed);
        if evicted {
            tracing::warn!(
                open,
                max = self.max,
                "at server.max_connections: closing the connections idle or sending their request the longest to make room"
            );
        } else {
            tracing::warn!(
                open,
                max = self.max,
                "at server.max_connections with every connection busy: closing new connections"
            );
        }
    }

    /// Open connections now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A TCP acceptor that applies [`Limits`] to what it accepts.
pub struct GuardedAcceptor {
    inner: TcpAcceptor,
    limits: Limits,
    table: Arc<Table>,
}

impl GuardedAcceptor {
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn new(listener: tokio::net::TcpListener, limits: Limits) -> io::Result<Self> {
        Ok(GuardedAcceptor {
            inner: TcpAcceptor::from_tokio(listener)?,
            limits,
            table: Arc::new(Table::new(limits.max_connections)),
        })
    }
}

impl Acceptor for GuardedAcceptor {
    type Io = Guarded;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    /// Never fails: poem's server loop retries a failed accept at once,
    /// which would spin on EMFILE. Errors are logged and waited out here.
    async fn accept(&mut self) -> io::Result<(Guarded, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (stream, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some((id, slot)) = self.table.admit() else {
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let io = Guarded::new(stream, self.limits, self.table.clone(), id, slot);
            return Ok((io, local, remote, scheme));
        }
    }
}

/// Errors of one connection that died in the backlog, not of the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Longest header line kept to read `Content-Length` and
/// `Transfer-Encoding` (the rest of a longer line is ignored).
const LINE: usize = 64;

/// Finds the blank line that ends a request head, across reads, and the
/// body the head announces. Empty lines before the request line do not
/// count (RFC 9112 lets a server skip them), so `\r\n\r\n` alone cannot
/// end the head phase.
#[derive(Debug, Clone, Copy)]
struct HeadScan {
    /// Bytes other than CR/LF seen in this head.
    seen_content: bool,
    /// The last line break was not followed by content yet.
    after_lf: bool,
    /// The current line, lowercased, cut at [`LINE`] bytes.
    line: [u8; LINE],
    line_len: usize,
    content_length: u64,
    chunked: bool,
    /// The first bytes of the connection, to tell an HTTP/2 preface.
    prefix: [u8; 3],
    prefix_len: u8,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            seen_content: false,
            after_lf: false,
            line: [0; LINE],
            line_len: 0,
            content_length: 0,
            chunked: false,
            prefix: [0; 3],
            prefix_len: 0,
        }
    }
}

impl HeadScan {
    /// Consumes `bytes`; the index just past the head's end, if it is in
    /// them.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if usize::from(self.prefix_len) < self.prefix.len() {
                self.prefix[usize::from(self.prefix_len)] = b;
                self.prefix_len += 1;
            }
            match b {
                b'\n' => {
                    if self.after_lf && self.seen_content {
                        return Some(i + 1);
                    }
                    self.end_line();
                    self.after_lf = true;
                }
                b'\r' => {}
                _ => {
                    self.seen_content = true;
                    self.after_lf = false;
                    if self.line_len < LINE {
                        self.line[self.line_len] = b.to_ascii_lowercase();
                        self.line_len += 1;
                    }
                }
            }
        }
        None
    }

    fn end_line(&mut self) {
        let line = &self.line[..self.line_len];
        if let Some(value) = line.strip_prefix(b"content-length:") {
            let digits = value.trim_ascii();
            if let Some(n) = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
            {
                self.content_length = n;
            }
        } else if let Some(value) = line.strip_prefix(b"transfer-encoding:") {
            self.chunked = value.windows(7).any(|w| w == b"chunked");
        }
        self.line_len = 0;
    }

    /// The body the finished head announced.
    fn body(&self) -> Body {
        if self.chunked {
            Body::Chunked(ChunkEnd::default())
        } else if self.content_length > 0 {
            Body::Length(self.content_length)
        } else {
            Body::None
        }
    }

    /// Whether a request has begun (blank lines before it do not count).
    fn started(&self) -> bool {
        self.seen_content
    }

    fn is_h2_preface(&self) -> bool {
        self.prefix_len == 3 && &self.prefix == b"PRI"
    }

    /// Ready for the next request's head (the prefix is the connection's).
    fn next_request(&mut self) {
        *self = HeadScan {
            prefix: self.prefix,
            prefix_len: self.prefix_len,
            ..HeadScan::default()
        };
    }
}

/// The body still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(ChunkEnd),
}

impl Body {
    /// Consumes body bytes; when the body ends in them, how many of them
    /// it took (the rest is the next request).
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        match self {
            Body::None => Some(0),
            Body::Length(left) => {
                let n = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                if n >= *left {
                    let used = usize::try_from(*left).unwrap_or(bytes.len());
                    *left = 0;
                    Some(used)
                } else {
                    *left -= n;
                    None
                }
            }
            Body::Chunked(end) => end.feed(bytes),
        }
    }
}

/// Finds the last chunk of a chunked body (`0` on a line of its own, then
/// an empty line; trailers are not expected from otpd's clients). A match
/// inside the data only ends the body deadline early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkEnd {
    matched: usize,
}

impl Default for ChunkEnd {
    /// The body starts on a new line.
    fn default() -> Self {
        ChunkEnd { matched: 1 }
    }
}

impl ChunkEnd {
    const LAST: &'static [u8] = b"\n0\r\n\r\n";

    /// Where the last chunk ends in `bytes`, if it does.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if b == Self::LAST[self.matched] {
                self.matched += 1;
                if self.matched == Self::LAST.len() {
                    return Some(i + 1);
                }
            } else {
                self.matched = usize::from(b == b'\n');
            }
        }
        None
    }
}

/// Where the client is in its stream of requests.
#[derive(Debug, Clone, Copy)]
enum Track {
    Head(HeadScan),
    Body(Body),
}

/// An accepted connection, as hyper sees it. See the module docs.
pub struct Guarded<S = TcpStream> {
    io: S,
    limits: Limits,
    table: Arc<Table>,
    id: u64,
    slot: Arc<Slot>,
    /// What the client has sent, followed read by read.
    track: Track,
    /// Request heads read, and answers written (`1xx` aside).
    requests: u64,
    answers: u64,
    h2: bool,
    phase: u8,
    /// Armed in every phase but Busy.
    deadline: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    fn new(io: S, limits: Limits, table: Arc<Table>, id: u64, slot: Arc<Slot>) -> Self {
        // The first request's headers are timed from the connection.
        let deadline = Box::pin(tokio::time::sleep(limits.header_timeout));
        Guarded {
            io,
            limits,
            table,
            id,
            slot,
            track: Track::Head(HeadScan::default()),
            requests: 0,
            answers: 0,
            h2: false,
            phase: HEAD,
            deadline,
        }
    }

    /// The phase that what was read and written so far puts it in.
    fn current_phase(&self) -> u8 {
        match self.track {
            _ if self.h2 => H2,
            Track::Body(_) => BODY,
            Track::Head(scan) if scan.started() || self.requests == 0 => HEAD,
            Track::Head(_) if self.requests > self.answers => BUSY,
            Track::Head(_) => IDLE,
        }
    }

    /// Moves to the current phase; a new phase starts its deadline.
    fn update(&mut self, cx: &mut Context<'_>) {
        let phase = self.current_phase();
        if phase == self.phase {
            return;
        }
        self.phase = phase;
        match phase {
            HEAD | BODY => self.arm(cx, self.limits.header_timeout),
            IDLE | H2 => self.arm(cx, self.limits.idle_timeout),
            _ => {}
        }
        self.slot.phase.store(phase, Ordering::Relaxed);
        self.slot
            .since_ms
            .store(self.table.now_ms(), Ordering::Relaxed);
    }

    /// Sets the deadline `timeout` from now, and registers this task to be
    /// woken by it: hyper may not read again before it passes (it writes
    /// an answer, then waits on the socket), and an unpolled timer wakes
    /// nobody.
    fn arm(&mut self, cx: &mut Context<'_>, timeout: Duration) {
        self.deadline.as_mut().reset(Instant::now() + timeout);
        let _ = self.deadline.as_mut().poll(cx);
    }

    /// What a read returns once the deadline of the current phase passed.
    fn expired(&self) -> Poll<io::Result<()>> {
        if matches!(self.phase, HEAD | BODY) {
            tracing::debug!("closing a connection whose request did not arrive in time");
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request did not arrive in time",
            )))
        } else {
            // End of stream: hyper closes a connection between requests
            // quietly.
            Poll::Ready(Ok(()))
        }
    }

    /// Follows the bytes just read through heads and bodies.
    fn on_read(&mut self, cx: &mut Context<'_>, mut bytes: &[u8]) {
        if self.h2 {
            // Any traffic keeps an HTTP/2 connection alive.
            self.arm(cx, self.limits.idle_timeout);
            return;
        }
        while !bytes.is_empty() {
            match &mut self.track {
                Track::Head(scan) => {
                    let Some(end) = scan.feed(bytes) else { break };
                    if self.requests == 0 && scan.is_h2_preface() {
                        self.h2 = true;
                        break;
                    }
                    self.requests += 1;
                    let mut body = scan.body();
                    let mut next = *scan;
                    next.next_request();
                    bytes = bytes.get(end..).unwrap_or_default();
                    match body.feed(bytes) {
                        Some(used) => {
                            self.track = Track::Head(next);
                            bytes = bytes.get(used..).unwrap_or_default();
                        }
                        None => {
                            self.track = Track::Body(body);
                            break;
                        }
                    }
                }
                Track::Body(body) => {
                    let Some(used) = body.feed(bytes) else { break };
                    self.track = Track::Head(HeadScan::default());
                    bytes = bytes.get(used..).unwrap_or_default();
                }
            }
        }
        self.update(cx);
    }

    /// A write of `first` (the start of what hyper writes) went out.
    fn on_write(&mut self, cx: &mut Context<'_>, first: &[u8]) {
        if self.h2 {
            self.arm(cx, self.limits.idle_timeout);
            return;
        }
        // An answer starts with its status line; `100 Continue` (sent
        // before the body is read) is not the answer.
        let answer = first.len() > 9 && first.starts_with(b"HTTP/1.") && first[9] != b'1';
        if answer {
            self.answers += 1;
            self.update(cx);
        }
        if self.phase == IDLE {
            // The idle time counts from the end of the answer.
            self.arm(cx, self.limits.idle_timeout);
        }
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.slot.waker.register(cx.waker());
        if this.slot.evicted.load(Ordering::Relaxed) {
            tracing::debug!("closing a connection to make room for a new one");
            return Poll::Ready(Ok(()));
        }
        let busy = this.phase == BUSY;
        // Before reading, so that a trickle of bytes cannot outrun it.
        if !busy && Instant::now() >= this.deadline.deadline() {
            return this.expired();
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    this.on_read(cx, &filled[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if busy => Poll::Pending,
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.expired(),
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.on_write(cx, buf);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            this.on_write(cx, first);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_blank_line_even_across_reads() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"GET / HTTP/1.1\r\nHost: x\r"), None);
        assert_eq!(scan.feed(b"\n\r"), None);
        assert_eq!(scan.feed(b"\n{\"body\":1}"), Some(1));
        assert!(!scan.is_h2_preface());
    }

    #[test]
    fn blank_lines_before_the_request_line_do_not_end_a_head() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"\r\n\r\n\r\n"), None);
        assert_eq!(scan.feed(b"GET / HTTP/1.1\n\n"), Some(16));
    }

    #[test]
    fn a_head_tells_the_body_it_announces() {
        let mut scan = HeadScan::default();
        let head = b"POST /sms HTTP/1.1\r\nHost: x\r\nContent-Length:  11 \r\n\r\n";
        assert_eq!(scan.feed(head), Some(head.len()));
        let mut body = scan.body();
        assert_eq!(body, Body::Length(11));
        assert_eq!(body.feed(b"{\"phone\""), None);
        assert_eq!(
            body.feed(b":1}GET"),
            Some(3),
            "the rest is the next request"
        );

        scan.next_request();
        let head = b"POST /sms HTTP/1.1\r\nTRANSFER-ENCODING: gzip, chunked\r\n\r\n";
        assert_eq!(scan.feed(head), Some(head.len()));
        let mut body = scan.body();
        assert_eq!(body.feed(b"5\r\nhello\r\n"), None);
        assert_eq!(body.feed(b"0\r\n"), None);
        assert_eq!(body.feed(b"\r\n"), Some(2));

        scan.next_request();
        assert_eq!(scan.feed(b"GET /healthz HTTP/1.1\n\n"), Some(23));
        assert_eq!(scan.body(), Body::None);
    }

    #[test]
    fn an_empty_chunked_body_ends_at_once() {
        let mut body = Body::Chunked(ChunkEnd::default());
        assert_eq!(body.feed(b"0\r\n\r\n"), Some(5));
    }

    #[test]
    fn the_http2_preface_is_told_apart() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(18));
        assert!(scan.is_h2_preface());
    }

    #[test]
    fn the_derived_cap_stays_below_the_open_file_limit() {
        assert_eq!(default_max_connections(1024), 922);
        assert_eq!(default_max_connections(100), 36);
        assert_eq!(default_max_connections(4096), 3687);
        assert_eq!(default_max_connections(20_000), 16_384);
        assert_eq!(default_max_connections(10), 1);
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 10,
    };

    /// A guarded server end, and the client end of a loopback pipe.
    fn connection() -> (Guarded<DuplexStream>, DuplexStream) {
        let (client, server) = tokio::io::duplex(4096);
        let table = Arc::new(Table::new(LIMITS.max_connections));
        let (id, slot) = table.admit().expect("room");
        (Guarded::new(server, LIMITS, table, id, slot), client)
    }

    /// Reads what is there, as hyper would, without waiting for more.
    async fn read_available(g: &mut Guarded<DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_millis(1), g.read(&mut buf))
            .await
            .unwrap_or(Ok(0))
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_requests_keep_a_connection_busy_until_each_is_answered() {
        let (mut g, mut client) = connection();
        client
            .write_all(b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        assert_eq!((g.requests, g.phase), (2, BUSY));
        g.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        assert_eq!(g.phase, BUSY, "one answer of two");
        g.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .expect("1xx");
        assert_eq!(g.phase, BUSY, "an interim answer answers nothing");
        g.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        assert_eq!(g.phase, IDLE);
        // Within the idle timeout, the next request may begin.
        tokio::time::advance(Duration::from_secs(59)).await;
        client
            .write_all(b"GET /c HTTP/1.1\r\nHo")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        assert_eq!(g.phase, HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_stops_midway_fails_the_read_at_the_header_timeout() {
        let (mut g, mut client) = connection();
        client
            .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let err = g.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_midway_fails_the_read_too_but_a_long_answer_does_not() {
        let (mut g, mut client) = connection();
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        assert_eq!(g.phase, BODY);
        client.write_all(b"67890").await.expect("write");
        read_available(&mut g).await.expect("read");
        assert_eq!(g.phase, BUSY);
        // The handler takes a minute: hyper keeps polling for a close.
        let mut buf = [0u8; 16];
        let waited = tokio::time::timeout(Duration::from_secs(60), g.read(&mut buf)).await;
        assert!(waited.is_err(), "a busy connection has no deadline");

        let (mut g, mut client) = connection();
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        let err = g.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_reads_end_of_stream_at_the_idle_timeout() {
        let (mut g, mut client) = connection();
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        read_available(&mut g).await.expect("read");
        g.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .expect("answer");
        let started = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(g.read(&mut buf).await.expect("end of stream"), 0);
        assert!(started.elapsed() >= Duration::from_secs(59));
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_do_not() {
        let table = Arc::new(Table::new(2));
        let (_, busy) = table.admit().expect("room");
        busy.phase.store(BUSY, Ordering::Relaxed);
        let (_, idle) = table.admit().expect("room");
        idle.phase.store(IDLE, Ordering::Relaxed);
        let third = table.admit();
        assert!(third.is_some(), "the idle one makes room");
        assert!(idle.evicted.load(Ordering::Relaxed));
        assert!(!busy.evicted.load(Ordering::Relaxed));
        let (third_id, third) = third.expect("admitted");
        third.phase.store(BUSY, Ordering::Relaxed);
        // The evicted one is gone once its stream drops; now all are busy.
        table
            .slots
            .lock()
            .expect("lock")
            .retain(|_, s| !s.evicted.load(Ordering::Relaxed));
        assert!(
            table.admit().is_none(),
            "nothing to evict: the new one is refused"
        );
        table.remove(third_id);
        assert_eq!(table.open(), 1);
    }
}
