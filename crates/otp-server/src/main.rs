//! The `otpd` binary: `otpd` (serve), `otpd openapi` (print the spec) and
//! `otpd health` (probe a running instance's readiness).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otp_server::config::{Config, LogFormat};
use otp_server::startup::{app_state, load_secret, Application, Ports};

#[derive(Parser)]
#[command(
    name = "otpd",
    version,
    about = "Self-hosted one-time-password service"
)]
struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, env = "OTP_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the OpenAPI spec as YAML.
    Openapi,
    /// Probe a running otpd's /readyz: exit 0 when ready, 1 otherwise.
    /// For container health checks (the image has no curl).
    Health {
        /// host:port of the instance; by default server.listen of the
        /// same config (on loopback when it listens on every interface).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Seconds to wait for each step (connect, answer).
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Telegram bot helpers.
    Telegram {
        #[command(subcommand)]
        command: TelegramCommand,
    },
}

#[derive(Subcommand)]
enum TelegramCommand {
    /// Register URL as the bot's webhook, with the configured
    /// telegram.webhook_secret as its secret token.
    SetWebhook {
        /// The public https URL of /telegram/webhook.
        #[arg(long)]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", otp_server::api::api_service().spec_yaml());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Health { addr, timeout_secs }) = cli.command {
        return health(cli.config.as_deref(), addr, timeout_secs);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // No log format is known yet; this one line says why otpd
            // stopped, in the format that was asked for when possible.
            fatal(
                json_asked(cli.config.as_deref()),
                &otp_server::error::chain(&e),
            );
            return ExitCode::from(2);
        }
    };
    let json = config.log.format == LogFormat::Json;
    let logging = match otp_telemetry::logging::init(&config.log) {
        Ok(l) => l,
        Err(e) => {
            fatal(
                json,
                &format!("cannot set up logging: {}", otp_server::error::chain(&e)),
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Telegram {
        command: TelegramCommand::SetWebhook { url },
    }) = &cli.command
    {
        return set_webhook(&config, url);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(serve(config, &logging)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", otp_server::error::chain(e.as_ref()));
            if !json {
                // Said once more, plainly, in case RUST_LOG hides errors.
                eprintln!("otpd: {}", otp_server::error::chain(e.as_ref()));
            }
            ExitCode::FAILURE
        }
    };
    // Flushes the queued log lines before the process ends.
    drop(logging);
    code
}

/// Whether the config, even one that fails to load, asks for JSON logs.
fn json_asked(file: Option<&std::path::Path>) -> bool {
    Config::figment(file)
        .ok()
        .and_then(|f| f.extract_inner::<String>("log.format").ok())
        .is_some_and(|f| f == "json")
}

/// A fatal error before logging is set up, as a log line of the format.
fn fatal(json: bool, message: &str) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"level": "ERROR", "target": "otpd", "message": message})
        );
    } else {
        eprintln!("otpd: {message}");
    }
}

fn health(
    file: Option<&std::path::Path>,
    addr: Option<std::net::SocketAddr>,
    timeout_secs: u64,
) -> ExitCode {
    let addr = match addr {
        Some(a) => a,
        None => match Config::load(file) {
            Ok(c) => otp_server::probe::target(c.server.listen),
            Err(e) => {
                eprintln!("otpd health: {}", otp_server::error::chain(&e));
                return ExitCode::FAILURE;
            }
        },
    };
    let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
    match otp_server::probe::readyz(addr, timeout) {
        Ok(()) => {
            println!("ready: {addr}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otpd health: {}", otp_server::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn set_webhook(config: &Config, url: &str) -> ExitCode {
    use secrecy::ExposeSecret;
    let Some(bot) = &config.telegram.bot else {
        eprintln!("otpd: telegram.bot_token (TELEGRAM_BOT_TOKEN) is not set");
        return ExitCode::from(2);
    };
    let secret = &config.telegram.webhook_secret;
    let secret = (!secret.expose_secret().is_empty()).then_some(secret);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(otp_telegram::set_webhook(
                &bot.api_url,
                &bot.bot_token,
                url,
                secret,
            ))
            .map_err(|e| otp_server::error::chain(&e))
        });
    match result {
        Ok(()) => {
            println!(
                "webhook set to {url}{}",
                if secret.is_some() {
                    " with the secret token"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otpd: setWebhook failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    logging: &otp_telemetry::logging::Logging,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match otp_listener::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            soft_before = limit.soft_before,
            hard = ?limit.hard,
            "open-file limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let ports = Ports::from_config(&config)?;
    if let Some(m) = &ports.metrics {
        m.watch_dropped_log_lines(logging.dropped.clone());
    }
    let secret = load_secret(&config)?;
    let state = app_state(&config, &ports, secret);
    let app = Application::bind(&config, state).await?;
    let addr = app.local_addr();
    let limits = app.limits();
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_secs = limits.header_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    // Before the "listening" line, which tells scripts otpd is up.
    match app.metrics_addr() {
        Some(metrics) => tracing::info!(
            %metrics,
            "metrics served at http://{metrics}/metrics"
        ),
        None => tracing::info!("metrics are off (metrics.listen is empty)"),
    }
    if !config.auth_enabled() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "Basic auth is OFF and otpd listens beyond loopback: anyone who reaches it can send and check codes. Set HTTP_AUTH_USERNAME and HTTP_AUTH_PASSWORD.");
    }
    // The sweepers and the event dispatcher, until otpd stops.
    let _background = otp_server::startup::spawn_background(&config, &ports)?;
    tracing::info!(%addr, store = ?config.store.kind, "otpd listening; docs at http://{addr}/docs");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("otpd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
