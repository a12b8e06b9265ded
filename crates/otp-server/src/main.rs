//! The `otpd` binary: `otpd` (serve) and `otpd openapi` (print the spec).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otp_server::config::Config;
use otp_server::startup::{app_state, load_secret, spawn_sweeper, Application, Ports};
use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otpd: {}", otp_server::error::chain(&e));
            return ExitCode::from(2);
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
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", otp_server::error::chain(e.as_ref()));
            eprintln!("otpd: {}", otp_server::error::chain(e.as_ref()));
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

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match otp_server::connections::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            soft_before = limit.soft_before,
            hard = ?limit.hard,
            "open-file limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let ports = Ports::from_config(&config)?;
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
    if !config.auth_enabled() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "Basic auth is OFF and otpd listens beyond loopback: anyone who reaches it can send and check codes. Set HTTP_AUTH_USERNAME and HTTP_AUTH_PASSWORD.");
    }
    if let Some(store) = ports.embedded.clone() {
        spawn_sweeper(store, ports.clock.clone());
    }
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
