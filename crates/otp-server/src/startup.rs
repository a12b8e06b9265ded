//! Wiring: adapters from config, the route tree, and the server loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otp_domain::ports::{Clock, CodeGenerator, FraudLedger, Sender, Store, SystemClock};
use otp_domain::{CodeHasher, FraudGuard, OtpService, RandomCodes, Senders};
use otp_redis::RedisStore;
use otp_store_embedded::EmbeddedStore;
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, Route, Server};
use secrecy::ExposeSecret;

use crate::api::auth::Credentials;
use crate::api::{api_service, AppState};
use crate::background::{self, AbortOnDrop, Background};
use crate::config::{
    Config, EmailProvider, PhoneProvider, StoreKind, TelegramProvider, WhatsAppProvider,
};
use crate::outbox::DevOutbox;
use crate::sinks::LogSink;
use otp_delivery::{Provider, ReliableSender};
use otp_domain::Channel;
use otp_gateway::{HttpGatewaySender, MetaSender, TwilioSender};
use otp_listener::{default_max_connections, open_file_limit, GuardedAcceptor, Limits};
use otp_redis::RedisQueueSender;
use otp_smtp::SmtpSender;
use otp_telegram::{HttpNotifySender, TelegramSender};
use otp_telemetry::metrics::{MeteredStore, Metrics};

/// The adapters behind the ports. Tests build their own (mocks, fakes);
/// the binary builds them from config with [`Ports::from_config`].
pub struct Ports {
    /// The store's roles the API uses.
    pub stores: otp_domain::Stores,
    /// The same store's `/v2` services.
    pub services: Arc<dyn otp_domain::ports::ServiceStore>,
    /// Where the fraud guard counts: the same store, through its
    /// `FraudLedger` side.
    pub fraud: Option<Arc<dyn FraudLedger>>,
    pub senders: Senders,
    pub clock: Arc<dyn Clock>,
    pub codes: Arc<dyn CodeGenerator>,
    /// The embedded store, when used, for the periodic sweep.
    pub embedded: Option<EmbeddedStore>,
    /// The metrics recorder, when `metrics.listen` is set. It already
    /// observes the senders built by [`Ports::from_config`];
    /// [`app_state`] wraps the store and the API with it.
    pub metrics: Option<Arc<Metrics>>,
    /// The dev outbox, while a channel uses the dev sink.
    pub outbox: Option<Arc<DevOutbox>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the embedded store")]
    Store(#[from] otp_store_embedded::EmbeddedError),
    #[error("cannot set up the Redis store")]
    Redis(#[from] otp_redis::RedisStoreError),
    #[error("security.secret must be at least 16 characters; use 32 random bytes, e.g. `openssl rand -hex 32`")]
    SecretTooShort,
    #[error("security.secret: {} is shorter than 32 characters", .0.display())]
    SecretFileTooShort(PathBuf),
    #[error("security.secret: cannot read or create {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up provider {provider} of {channel}")]
    Provider {
        channel: Channel,
        provider: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr} (metrics.listen; \"\" turns metrics off)")]
    BindMetrics {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("the embedded store is configured but was not opened")]
    NoEmbeddedStore,
    #[error("cannot set up the events")]
    Events(#[from] crate::background::EventsError),
}

/// A channel's provider, with its settings, that startup can build.
trait Build {
    fn name(&self) -> &'static str;
    /// The `log` dev sink, which warns for itself instead of saying
    /// "provider ready".
    fn is_dev_sink(&self) -> bool;
    /// The sender, or the adapter's error.
    fn sender(
        &self,
        channel: Channel,
        outbox: &Arc<DevOutbox>,
    ) -> Result<Arc<dyn Sender>, BoxError>;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn boxed<S: Sender + 'static, E: Into<BoxError>>(
    built: Result<S, E>,
) -> Result<Arc<dyn Sender>, BoxError> {
    Ok(Arc::new(built.map_err(Into::into)?))
}

fn log_sink(channel: Channel, outbox: &Arc<DevOutbox>) -> Arc<dyn Sender> {
    tracing::warn!(
        %channel,
        "{channel} uses the `log` dev sink: messages, codes included, are printed to stdout and shown at /outbox, and NOT delivered. Never use it in production."
    );
    Arc::new(LogSink::new(outbox.clone()))
}

/// `Build` for a provider enum: its `Log` variant is the dev sink, each
/// other variant makes its adapter's sender.
macro_rules! build {
    ($provider:ident { $($variant:pat => $sender:expr),+ $(,)? }) => {
        impl Build for $provider {
            fn name(&self) -> &'static str {
                $provider::name(self)
            }

            fn is_dev_sink(&self) -> bool {
                matches!(self, $provider::Log)
            }

            fn sender(
                &self,
                channel: Channel,
                outbox: &Arc<DevOutbox>,
            ) -> Result<Arc<dyn Sender>, BoxError> {
                match self {
                    $provider::Log => Ok(log_sink(channel, outbox)),
                    $($variant => $sender),+
                }
            }
        }
    };
}

build!(PhoneProvider {
    PhoneProvider::Http(c) => boxed(HttpGatewaySender::new(c.clone())),
    PhoneProvider::Twilio(c) => boxed(TwilioSender::new(c.clone())),
    PhoneProvider::Queue(c) => boxed(RedisQueueSender::new(c)),
});
build!(EmailProvider {
    EmailProvider::Smtp(c) => boxed(SmtpSender::new(c.clone())),
    EmailProvider::Queue(c) => boxed(RedisQueueSender::new(c)),
});
build!(WhatsAppProvider {
    WhatsAppProvider::Meta(c) => boxed(MetaSender::new(c.clone())),
    WhatsAppProvider::Twilio(c) => boxed(TwilioSender::new(c.clone())),
    WhatsAppProvider::Queue(c) => boxed(RedisQueueSender::new(c)),
});
build!(TelegramProvider {
    TelegramProvider::Bot(c) => boxed(TelegramSender::new(c.clone())),
    TelegramProvider::Notify(c) => boxed(HttpNotifySender::new(c.clone())),
    TelegramProvider::Queue(c) => boxed(RedisQueueSender::new(c)),
});

/// A channel's providers in fallback order, with retries.
fn channel_sender(
    config: &Config,
    metrics: Option<&Metrics>,
    channel: Channel,
    providers: &[impl Build],
    outbox: &Arc<DevOutbox>,
) -> Result<Arc<dyn Sender>, StartupError> {
    let providers = providers
        .iter()
        .map(|p| {
            let sender = p
                .sender(channel, outbox)
                .map_err(|source| StartupError::Provider {
                    channel,
                    provider: p.name(),
                    source,
                })?;
            if !p.is_dev_sink() {
                tracing::info!(%channel, provider = p.name(), "provider ready");
            }
            Ok(Provider {
                name: p.name().to_owned(),
                sender,
            })
        })
        .collect::<Result<Vec<_>, StartupError>>()?;
    let sender = ReliableSender::new(providers, config.retry_policy());
    Ok(Arc::new(match metrics {
        Some(m) => sender.observed(|name| Arc::new(m.provider(channel, name))),
        None => sender,
    }))
}

/// The store's `store` label.
pub fn store_label(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Embedded => "embedded",
        StoreKind::Redis => "redis",
        StoreKind::RedisCluster => "redis-cluster",
    }
}

impl Ports {
    /// Opens the store and builds the senders the config names.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn from_config(config: &Config) -> Result<Ports, StartupError> {
        // One store behind both ports: the fraud guard's events go to the
        // same outbox as the verifications'.
        let (store, embedded, services) = open_store(config, None)?;
        let fraud: Option<Arc<dyn FraudLedger>> = Some(store.clone());
        let metrics = match config.metrics.listen {
            Some(_) => Some(Arc::new(Metrics::new()?)),
            None => None,
        };
        let m = metrics.as_deref();
        let p = &config.providers;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // Only dev sinks hold it; without one it is dropped here.
        let outbox = Arc::new(DevOutbox::new(config.dev.outbox_size, clock.clone()));
        let senders = Senders {
            sms: channel_sender(config, m, Channel::Sms, &p.sms, &outbox)?,
            call: channel_sender(config, m, Channel::Call, &p.call, &outbox)?,
            email: channel_sender(config, m, Channel::Email, &p.email, &outbox)?,
            telegram: channel_sender(config, m, Channel::Telegram, &p.telegram, &outbox)?,
            whatsapp: channel_sender(config, m, Channel::WhatsApp, &p.whatsapp, &outbox)?,
        };
        let outbox = p.use_dev_sink().then_some(outbox);
        if outbox.is_some() {
            tracing::warn!("the dev outbox is on: the dev sink's messages, codes included, are shown at /outbox and /outbox/messages");
        }
        Ok(Ports {
            stores: otp_domain::Stores::of(store),
            services,
            fraud,
            senders,
            clock,
            codes: Arc::new(RandomCodes),
            embedded,
            outbox,
            metrics,
        })
    }
}

/// Starts the background tasks ([`crate::background`]) on a store of
/// their own.
///
/// # Errors
/// When the background store or an event sink cannot be set up.
pub fn spawn_background(config: &Config, ports: &Ports) -> Result<Background, StartupError> {
    let inputs = background::Inputs {
        store: background_store(config, ports)?,
        clock: ports.clock.clone(),
        fraud_guard: ports.fraud.is_some(),
        embedded: ports.embedded.clone(),
        metrics: ports.metrics.clone(),
    };
    Ok(background::spawn(&config.events, inputs)?)
}

/// The store of the background tasks, metered like the API's.
fn background_store(config: &Config, ports: &Ports) -> Result<Arc<dyn Store>, StartupError> {
    if config.store.kind == StoreKind::Embedded && ports.embedded.is_none() {
        return Err(StartupError::NoEmbeddedStore);
    }
    let (store, _, _) = open_store(config, ports.embedded.as_ref())?;
    Ok(match &ports.metrics {
        Some(m) => Arc::new(MeteredStore::new(store, m, store_label(config.store.kind))),
        None => store,
    })
}

/// The HMAC key: `security.secret` when set, else (embedded store) the
/// `secret` file beside the store file, generated on first start.
///
/// # Errors
/// A configured secret that is too short, or an unreadable secret file.
pub fn load_secret(config: &Config) -> Result<Vec<u8>, StartupError> {
    let configured = config.security.secret.expose_secret();
    if !configured.is_empty() {
        if configured.len() < 16 {
            return Err(StartupError::SecretTooShort);
        }
        return Ok(configured.as_bytes().to_vec());
    }
    let dir = config
        .store
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    secret_file(&dir.join("secret"))
}

fn secret_file(path: &Path) -> Result<Vec<u8>, StartupError> {
    let err = |source| StartupError::SecretFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => return Err(StartupError::SecretFileTooShort(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let hex = otp_domain::hex::encode(&bytes);
    write_private(path, &hex).map_err(err)?;
    tracing::info!(path = %path.display(), "generated a new server secret");
    Ok(hex.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    std::fs::write(path, contents)
}

/// The shared state handlers see.
pub fn app_state(config: &Config, ports: &Ports, secret: Vec<u8>) -> Arc<AppState> {
    let credentials = config
        .auth_enabled()
        .then(|| Credentials::new(&config.auth.username, config.auth.password.expose_secret()));
    let webhook = config.telegram.webhook_secret.expose_secret();
    let webhook_secret = (!webhook.is_empty()).then(|| Credentials::new("", webhook));
    let stores = match &ports.metrics {
        Some(m) => {
            let label = store_label(config.store.kind);
            otp_domain::Stores {
                codes: Arc::new(MeteredStore::new(ports.stores.codes.clone(), m, label)),
                verifications: Arc::new(MeteredStore::new(
                    ports.stores.verifications.clone(),
                    m,
                    label,
                )),
                idempotency: Arc::new(MeteredStore::new(
                    ports.stores.idempotency.clone(),
                    m,
                    label,
                )),
            }
        }
        None => ports.stores.clone(),
    };
    let mut otp = OtpService::new(
        stores,
        ports.senders.clone(),
        ports.clock.clone(),
        ports.codes.clone(),
        CodeHasher::new(secret),
        config.policy.clone(),
    );
    if let Some(ledger) = &ports.fraud {
        otp = otp.with_fraud(FraudGuard {
            policy: config.fraud.clone(),
            ledger: ledger.clone(),
        });
    }
    let whatsapp_hook = config.providers.whatsapp.iter().find_map(|p| match p {
        crate::config::WhatsAppProvider::Meta(m) => {
            otp_gateway::meta_webhook::Verifier::new(&m.app_secret, &m.verify_token)
        }
        _ => None,
    });
    Arc::new(AppState {
        otp,
        credentials,
        webhook_secret,
        whatsapp_hook,
        trusted_proxies: config.security.trusted_proxies.clone(),
        metrics: ports.metrics.clone(),
        outbox: ports.outbox.clone(),
        twilio: crate::api::twilio::TwilioApi::new(&config.twilio_api, ports.services.clone()),
        console: config.console.enabled.then(|| {
            Arc::new(crate::console::memory::Console::new(
                ports.metrics.clone(),
                ports.clock.clone(),
            ))
        }),
    })
}

/// The whole route tree with its middleware.
///
/// # Errors
/// When the generated spec does not read back (a bug, said at start).
pub fn routes(state: Arc<AppState>, body_limit: usize) -> Result<impl Endpoint, serde_json::Error> {
    let api = api_service();
    let table = Arc::new(crate::http::RouteTable::from_spec(&api.spec())?);
    let allowed = table.clone();
    let observer = Arc::new(crate::http::Observer {
        routes: table,
        metrics: state.metrics.clone(),
    });
    let spec_json = api.spec_endpoint();
    let spec_yaml = api.spec_endpoint_yaml();
    let docs = LazyDocs::default();
    let gate = state.clone();
    Ok(crate::pages::mount(Route::new())
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .nest("/docs", docs)
        .nest("/", api)
        .data(state)
        // The gate is outside the body reader: an unauthenticated request
        // is refused before a byte of its body is read.
        .around(move |ep, req| crate::http::legacy_json(ep, req, body_limit))
        .around(move |ep, req| crate::api::auth::gate(ep, req, gate.clone()))
        .with(CatchPanic::new().with_handler(crate::http::panic_response))
        .catch_all_error(crate::http::json_errors)
        .around(move |ep, req| crate::http::allow_header(ep, req, allowed.clone()))
        .around(move |ep, req| crate::http::observe(ep, req, observer.clone())))
}

/// Swagger UI, built on its first visit. poem-openapi builds the page (a
/// 1.6 MB script inlined, ~3 MB of heap while it is made) when the
/// endpoint is made; an otpd whose docs nobody opens need not carry it.
#[derive(Default)]
struct LazyDocs(std::sync::OnceLock<poem::endpoint::BoxEndpoint<'static>>);

impl Endpoint for LazyDocs {
    type Output = poem::Response;

    async fn call(&self, req: poem::Request) -> poem::Result<poem::Response> {
        self.0
            .get_or_init(|| api_service().swagger_ui().map_to_response().boxed())
            .call(req)
            .await
    }
}

/// A bound, not yet running server.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    /// The scrape listener, when metrics are on.
    metrics: Option<(tokio::net::TcpListener, SocketAddr, Arc<Metrics>)>,
    state: Arc<AppState>,
    body_limit: usize,
    shutdown_timeout: Duration,
    limits: Limits,
}

impl Application {
    /// Binds `config.server.listen`, and `config.metrics.listen` when the
    /// state records metrics (port 0 picks a free port).
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(config: &Config, state: Arc<AppState>) -> Result<Self, StartupError> {
        let addr = config.server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let metrics = match (config.metrics.listen, &state.metrics) {
            (Some(maddr), Some(m)) => {
                let err = |source| StartupError::BindMetrics {
                    addr: maddr,
                    source,
                };
                let l = tokio::net::TcpListener::bind(maddr).await.map_err(err)?;
                let bound = l.local_addr().map_err(err)?;
                Some((l, bound, m.clone()))
            }
            _ => None,
        };
        Ok(Application {
            listener,
            addr,
            metrics,
            state,
            body_limit: config.server.body_limit,
            shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_secs),
            limits: connection_limits(config),
        })
    }

    /// The timeouts and the connection cap it serves with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `GET /metrics` answers, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr, _)| *addr)
    }

    /// Serves until `signal` completes, then lets in-flight requests
    /// finish (up to the shutdown timeout).
    ///
    /// # Errors
    /// IO errors of the listener.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> io::Result<()> {
        let endpoint = routes(self.state.clone(), self.body_limit).map_err(io::Error::other)?;
        let acceptor = GuardedAcceptor::new(self.listener, self.limits)?;
        // The scrape listener lives as long as the API: it stops when the
        // API has drained, so the last scrape can still see the drain.
        // Both tasks end with this call, however it ends (the guards
        // abort them on drop).
        let _scrape = self.metrics.map(|(listener, _, metrics)| {
            AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = crate::http::serve_metrics(listener, metrics).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }))
        });
        let _sampler = self
            .state
            .console
            .as_ref()
            .and_then(|console| console.spawn_sampler())
            .map(AbortOnDrop);
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(endpoint, signal, Some(self.shutdown_timeout))
            .await
    }
}

/// `[server]`'s timeouts, and its connection cap (or the one derived from
/// the open-file limit as it is now: raise it first).
fn connection_limits(config: &Config) -> Limits {
    let open_files = open_file_limit();
    let max_connections = match config.server.max_connections {
        0 => default_max_connections(open_files),
        n => {
            if u64::try_from(n).map_or(true, |n| n >= open_files) {
                tracing::warn!(
                    max_connections = n,
                    open_files,
                    "server.max_connections is not below the open-file limit: accepting will fail before the cap sheds"
                );
            }
            n
        }
    };
    Limits {
        header_timeout: Duration::from_secs(config.server.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
        max_connections,
    }
}

/// Whether the stores write events: only when some sink will take them.
/// Without a sink each event would be written, claimed and dropped again,
/// which costs every send and check a few store writes for nothing.
pub(crate) fn record_events(config: &Config) -> bool {
    !config.events.sinks.is_empty()
}

fn embedded_options(config: &Config) -> otp_store_embedded::EmbeddedOptions {
    otp_store_embedded::EmbeddedOptions {
        record_events: record_events(config),
        ..config.store.embedded()
    }
}

/// An opened store: all its roles, the embedded store itself (for its
/// sweep), and its `/v2` services.
type Opened = (
    Arc<dyn Store>,
    Option<EmbeddedStore>,
    Arc<dyn otp_domain::ports::ServiceStore>,
);

/// Opens the configured store: the embedded file (or a handle of
/// `embedded`, the one already open: a file is opened once), or a new
/// Redis client with connections of its own. Also returns the embedded
/// store itself, for its file sweep, and the same store's services.
///
/// # Errors
/// When the file cannot be opened or Redis settings are refused.
pub(crate) fn open_store(
    config: &Config,
    embedded: Option<&EmbeddedStore>,
) -> Result<Opened, StartupError> {
    let redis = |store: RedisStore| {
        if record_events(config) {
            store
        } else {
            store.without_events()
        }
    };
    Ok(match config.store.kind {
        StoreKind::Embedded => {
            let store = match embedded {
                Some(open) => open.clone(),
                None => EmbeddedStore::open_with(&config.store.path, embedded_options(config))?,
            };
            (
                Arc::new(store.clone()),
                Some(store.clone()),
                Arc::new(store),
            )
        }
        StoreKind::Redis => {
            let store = Arc::new(redis(RedisStore::standalone(&config.store.redis())?));
            (store.clone(), None, store)
        }
        StoreKind::RedisCluster => {
            let store = Arc::new(redis(RedisStore::cluster(&config.store.redis())?));
            (store.clone(), None, store)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_secret_file_is_refused_by_name_and_a_missing_one_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");

        let made = secret_file(&path).expect("a missing file is generated");
        assert_eq!(made.len(), 64, "32 random bytes, hex");
        assert_eq!(secret_file(&path).expect("read back"), made);

        std::fs::write(&path, "short").expect("write");
        match secret_file(&path) {
            Err(StartupError::SecretFileTooShort(p)) => assert_eq!(p, path),
            other => panic!("expected SecretFileTooShort, got {other:?}"),
        }
    }
}
