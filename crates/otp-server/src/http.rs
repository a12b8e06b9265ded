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
//! - `allow_header`: every 405 says which methods the route takes.
//!
//! Authentication is `crate::api::auth::gate`, the one place it is enforced.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, Error, IntoResponse, Request, Response, Result};

use crate::api::responses::{ErrorBody, ErrorCode};

/// Paths whose GET form may carry a JSON body.
const CHECK_PATHS: &[&str] = &[
    "/sms/check",
    "/call/check",
    "/email/check",
    "/telegram/check",
    "/telegram/target",
    "/target",
];

fn error_response(status: StatusCode, error: ErrorCode, message: &str) -> Response {
    ErrorBody::new(error, message).response(status)
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
                ErrorCode::InvalidRequest,
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
        ErrorCode::PayloadTooLarge,
        &format!("the request body is larger than {limit} bytes"),
    )
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
        ErrorCode::InternalError,
        "internal error",
    )
}

/// Turns any error that escaped the operations into the JSON error body.
pub async fn json_errors(err: Error) -> Response {
    let status = err.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this route does not take that method; see the Allow header".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, err.to_string()),
        s if s.is_client_error() => (ErrorCode::InvalidRequest, err.to_string()),
        _ => {
            tracing::error!(error = %err, status = status.as_u16(), "unhandled error");
            (ErrorCode::InternalError, "internal error".to_owned())
        }
    };
    error_response(status, code, &message)
}

/// The methods each route takes, from the spec the server runs, for the
/// `Allow` header that RFC 9110 requires on every 405.
pub struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// Reads the paths and methods of `spec` (OpenAPI JSON).
    pub fn from_spec(spec: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes: Vec<(Vec<String>, String)> = Vec::new();
        if let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) {
            for (path, ops) in paths {
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                methods.sort();
                routes.push((segments(path), methods.join(", ")));
            }
        }
        AllowedMethods(routes)
    }

    /// The `Allow` value of the route that matches `path`.
    pub fn of(&self, path: &str) -> Option<&str> {
        let given = segments(path);
        self.0.iter().find_map(|(route, methods)| {
            let hit = route.len() == given.len()
                && route
                    .iter()
                    .zip(&given)
                    .all(|(r, g)| r == g || (r.starts_with('{') && r.ends_with('}')));
            hit.then_some(methods.as_str())
        })
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds `Allow` to every 405.
pub async fn allow_header<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    allowed: Arc<AllowedMethods>,
) -> Result<Response> {
    let path = req.uri().path().to_owned();
    let mut resp = next.call(req).await?.into_response();
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(value) = allowed
            .of(&path)
            .and_then(|m| header::HeaderValue::from_str(m).ok())
        {
            resp.headers_mut().insert(header::ALLOW, value);
        }
    }
    Ok(resp)
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
