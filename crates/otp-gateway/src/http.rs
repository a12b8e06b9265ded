//! Status handling shared by the senders; the client itself comes from
//! `otp_http::client`.

use std::time::Duration;

use otp_http::parse_retry_after;
use reqwest::Response;

use crate::error::{from_reqwest, GatewayError};

/// Reads a provider's documented numeric error code from an error body.
pub(crate) type CodeExtractor = fn(&[u8]) -> Option<i64>;

/// Sends `request` and turns a failed exchange or a non-2xx status into
/// an error. `provider_code` extracts a documented numeric error code from
/// an error body, when the provider has one.
pub(crate) async fn send(
    provider: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
    provider_code: Option<CodeExtractor>,
) -> Result<Response, GatewayError> {
    let response = request
        .send()
        .await
        .map_err(|e| from_reqwest(provider, timeout, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = if status.as_u16() == 429 || status.is_server_error() {
        parse_retry_after(response.headers())
    } else {
        None
    };
    let code = match provider_code {
        Some(extract) => response.bytes().await.ok().and_then(|b| extract(&b)),
        None => None,
    };
    Err(GatewayError::Status {
        provider: provider.to_owned(),
        status: status.as_u16(),
        provider_code: code,
        retry_after,
    })
}
