//! Shared connections to Redis: each call borrows nothing, it clones a
//! handle of an open connection and sends its one command on it.
//!
//! redis-rs's multiplexed connection (and the async cluster connection,
//! which holds one per node) pipelines the commands of concurrent calls
//! over one socket. That is what a pool with a health check cannot give:
//! deadpool-redis sent `UNWATCH` + `PING` on every checkout, a second
//! round trip per operation, and kept one command in flight per socket.
//!
//! A connection that fails is noticed by the call that meets the failure:
//! an I/O error, a timeout or an unreadable reply retires that connection,
//! and the next call opens a new one. Opening is shared: calls that find
//! no connection wait for the one being opened, and a failed attempt is
//! never cached, so the call after an outage tries afresh instead of
//! inheriting an old error.
//!
//! What a PING per checkout did and this does not: find a connection that
//! Redis closed while otpd was idle (a Redis restart) before using it.
//! Here the first call to use it fails with `Unavailable` (503), as calls
//! during the outage did, and retires it; `ping` (readiness) retries once
//! on a fresh connection, since a PING may safely run twice. A script is
//! never retried: it may have run before the connection broke.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, Value,
};
use tokio::sync::OnceCell;

use crate::RedisStoreError;

/// How to open a connection.
pub(crate) enum Connector {
    Standalone {
        client: Client,
        config: AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

impl Connector {
    async fn connect(&self) -> Result<Conn, RedisError> {
        Ok(match self {
            Connector::Standalone { client, config } => Conn::Standalone(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Connector::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
        })
    }
}

/// A handle of an open connection of either kind, so the scripts run on
/// both. Cheap to clone: clones share the socket(s).
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// One connection's place: empty until a call opens it, emptied again
/// (a fresh cell) when a call finds it broken.
type Cell = Arc<OnceCell<Conn>>;

/// A fixed number of shared connections, used in turn.
pub(crate) struct Link {
    connector: Connector,
    slots: Box<[Mutex<Cell>]>,
    next: AtomicUsize,
    /// The longest a call waits for a connection to open.
    wait: Duration,
}

impl Link {
    /// `connections` shared connections (at least one), none opened yet.
    pub(crate) fn new(connector: Connector, connections: usize, wait: Duration) -> Self {
        Link {
            connector,
            slots: (0..connections.max(1))
                .map(|_| Mutex::new(Cell::default()))
                .collect(),
            next: AtomicUsize::new(0),
            wait,
        }
    }

    /// How many of the connections are open now.
    pub(crate) fn open(&self) -> usize {
        self.slots.iter().filter(|s| lock(s).initialized()).count()
    }

    /// Runs `work` on the next connection, opening it first when needed.
    /// An error that leaves the connection unusable retires it.
    pub(crate) async fn run<T, F, Fut>(&self, work: F) -> Result<T, RedisStoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_at(self.next_slot(), work).await
    }

    /// As [`Link::run`], for work that may safely run twice: when the
    /// connection turns out broken, runs it once more on a new one.
    pub(crate) async fn run_idempotent<T, F, Fut>(&self, work: F) -> Result<T, RedisStoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let slot = self.next_slot();
        match self.run_at(slot, &work).await {
            Err(RedisStoreError::Command(e)) if breaks_connection(&e) => {
                self.run_at(slot, &work).await
            }
            other => other,
        }
    }

    fn next_slot(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    async fn run_at<T, F, Fut>(&self, index: usize, work: F) -> Result<T, RedisStoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let slot = &self.slots[index];
        let cell = lock(slot).clone();
        let conn =
            tokio::time::timeout(self.wait, cell.get_or_try_init(|| self.connector.connect()))
                .await
                .map_err(|_| RedisStoreError::Timeout(self.wait))?
                .map_err(RedisStoreError::Connect)?
                .clone();
        work(conn).await.map_err(|e| {
            if breaks_connection(&e) {
                let mut current = lock(slot);
                // Only the connection this call used: a concurrent call
                // may have replaced it already.
                if Arc::ptr_eq(&current, &cell) {
                    *current = Cell::default();
                }
            }
            RedisStoreError::Command(e)
        })
    }
}

fn lock(slot: &Mutex<Cell>) -> std::sync::MutexGuard<'_, Cell> {
    // The guarded code only swaps an Arc and cannot panic midway.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the connection that gave this error should not carry another
/// command: a broken or timed-out socket, a reply out of step, or a server
/// that became a replica (`READONLY`: after a failover, a new connection
/// to the same address may reach the new primary). Other errors that
/// Redis answered (`WRONGTYPE`, `NOSCRIPT`, `LOADING`, `MOVED` ...) leave
/// the connection fine.
pub(crate) fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_failures_break_the_connection_and_server_errors_do_not() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert!(breaks_connection(&io(std::io::ErrorKind::BrokenPipe)));
        assert!(breaks_connection(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(breaks_connection(&io(std::io::ErrorKind::TimedOut)));
        let server = |kind| RedisError::from((ErrorKind::Server(kind), "refused"));
        assert!(!breaks_connection(&server(ServerErrorKind::ResponseError)));
        assert!(!breaks_connection(&server(ServerErrorKind::BusyLoading)));
        assert!(!breaks_connection(&server(ServerErrorKind::NoScript)));
        assert!(breaks_connection(&server(ServerErrorKind::ReadOnly)));
    }
}
