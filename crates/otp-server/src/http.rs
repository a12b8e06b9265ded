//! Middleware in front of the router:
//! - `legacy_json`: the seed's clients send checks as GET with a JSON
//!   body, often without a JSON content type (`curl -d`). A GET with a
//!   body on a check path becomes a POST, and a body that looks like JSON
//!   is marked as JSON. It also enforces the body size limit.
//! - `access_log`: method, path (never the query, which may hold a
//!   password), status and latency.
//! - `json_errors`: errors raised outside the operations' own responses
//!   (unknown route, wrong method, oversized body, panics) get the same
//!   `{error, message}` body as everything else.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, Error, IntoResponse, Request, Response, Result};

use crate::api::responses::{ErrorBody, WWW_AUTHENTICATE};
use crate::api::AppState;

/// Paths whose GET form may carry a JSON body.
const CHECK_PATHS: &[&str] = &[
    "/sms/check",
    "/call/check",
    "/email/check",
    "/telegram/check",
    "/telegram/target",
    "/target",
];

fn error_response(status: StatusCode, error: &str, message: &str) -> Response {
    let body = ErrorBody::new(error, message);
    let json = serde_json::json!({ "error": body.error, "message": body.message });
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json.to_string())
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn is_json_content_type(req: &Request) -> bool {
    req.content_type()
        .is_some_and(|ct| ct.starts_with("application/json"))
}

pub async fn legacy_json<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    limit: usize,
) -> Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(too_large(limit));
    }
    let body = match req.take_body().into_bytes_limit(limit).await {
        Ok(b) => b,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large(limit)),
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("cannot read the body: {e}"),
            ))
        }
    };
    let has_body = !body.iter().all(u8::is_ascii_whitespace);
    if has_body && req.method() == Method::GET && CHECK_PATHS.contains(&req.uri().path()) {
        req.set_method(Method::POST);
    }
    if has_body && !is_json_content_type(&req) && looks_like_json(&body) {
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
    }
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}

fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the request body is larger than {limit} bytes"),
    )
}

/// Paths open without Basic auth: health, docs, spec and the webhook
/// (which has its own secret).
fn auth_exempt(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/openapi.json" | "/openapi.yaml" | "/telegram/webhook"
    ) || path == "/docs"
        || path.starts_with("/docs/")
}

/// Refuses requests without valid Basic credentials before anything else
/// looks at them, so an unauthenticated caller learns nothing from body
/// validation. The operations' security scheme checks the same
/// credentials again and documents them in the spec.
pub async fn basic_auth_gate<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> Result<Response> {
    if let Some(credentials) = &state.credentials {
        if !auth_exempt(req.uri().path()) {
            let ok = basic_credentials(&req).is_some_and(|(u, p)| credentials.matches(&u, &p));
            if !ok {
                let mut resp = error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong credentials",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(WWW_AUTHENTICATE),
                );
                return Ok(resp);
            }
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine;
    let value = req.header(header::AUTHORIZATION)?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

pub async fn access_log<E: Endpoint>(next: Arc<E>, req: Request) -> Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = Instant::now();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(e) => e.status(),
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "otpd::http", %method, %path, status = status.as_u16(), ms = format!("{ms:.2}"), "request");
    result
}

/// A panic in a handler is a bug; the client still gets the JSON body.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
}

/// Turns any error that escaped the operations into the JSON error body.
pub async fn json_errors(err: Error) -> Response {
    let status = err.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not take that method".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", err.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("invalid_request", err.to_string()),
        s if s.is_client_error() => ("invalid_request", err.to_string()),
        _ => {
            tracing::error!(error = %err, status = status.as_u16(), "unhandled error");
            ("internal_error", "internal error".to_owned())
        }
    };
    error_response(status, code, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_detection_skips_whitespace() {
        assert!(looks_like_json(b"  \n{\"a\":1}"));
        assert!(!looks_like_json(b"a=1"));
        assert!(!looks_like_json(b""));
    }
}
