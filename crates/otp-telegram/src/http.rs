//! What the senders share: the chat a message goes to, the transport
//! error mapping; the client settings, `Retry-After` and the URL check
//! come from `otp_http`.

use std::time::Duration;

use otp_domain::{Destination, OutgoingMessage};

use crate::error::TelegramError;

/// The chat id `message` goes to; a message for another channel is
/// [`TelegramError::WrongChannel`] for `provider`.
pub(crate) fn chat_of(
    provider: &'static str,
    message: &OutgoingMessage,
) -> Result<i64, TelegramError> {
    match &message.destination {
        Destination::Telegram(chat) => Ok(chat.get()),
        other => Err(TelegramError::WrongChannel {
            provider,
            channel: other.channel(),
        }),
    }
}

/// Wraps a failure to build the client for `provider`.
pub(crate) fn client_error(
    provider: &'static str,
) -> impl FnOnce(otp_http::ClientError) -> TelegramError {
    move |source| TelegramError::Client { provider, source }
}

/// Classifies a reqwest failure, dropping the URL: a Bot API URL holds
/// the token.
pub(crate) fn transport_error(
    provider: &'static str,
    timeout: Duration,
    e: reqwest::Error,
) -> TelegramError {
    TelegramError::Transport {
        provider,
        source: otp_http::TransportError::new(timeout, e),
    }
}
