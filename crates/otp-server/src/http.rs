//! Middleware in front of the router:
//! - `observe`: gives every request an id (the caller's `X-Request-Id`
//!   when it is a sane token, else a new one), echoes it in the response,
//!   runs the request inside a `request` span that carries it (so every
//!   log line written while serving it has it), writes the access log
//!   and counts the request in the metrics by route template.
//! - `legacy_json`: the seed's clients send checks as GET with a JSON
//!   body, often without a JSON content type (`curl -d`). A GET with a
//!   body on a check path becomes a POST, and a body that looks like JSON
//!   is marked as JSON. It also enforces the body size limit.
//!   The access log says method, path (never the query, which may hold a
//!   password), status and latency.
//! - `json_errors`: errors raised outside the operations' own responses
//!   (unknown route, wrong method, oversized body, panics) get the same
//!   `{error, message}` body as everything else.
//! - `allow_header`: every 405 says which methods the route takes.
//!
//! Authentication is `crate::api::auth::gate`, the one place it is enforced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use poem::{Endpoint, EndpointExt, Error, IntoResponse, Request, Response, Result};
use tracing::Instrument;

use crate::api::responses::{ErrorBody, ErrorCode};
use otp_telemetry::metrics::Metrics;

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

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's request id when it is a sane token: 1 to 64 characters
/// of letters, digits and `-_.:`. Anything else (too long, spaces, quotes,
/// control characters) is replaced, so an id can neither forge log lines
/// nor smuggle data into them.
fn sane_request_id(req: &Request) -> Option<&str> {
    let id = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(id)
}

/// A new request id: 128 random bits in hex.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The routes of the spec the server runs, and the fixed routes beside
/// it, read once: each template with the methods it takes. The route
/// label of a request (`observe`) and the `Allow` of a 405
/// (`allow_header`) are both looked up here.
pub struct RouteTable {
    /// Exact paths → index in `routes`.
    exact: HashMap<String, usize>,
    /// Templates with `{param}` segments, matched segment by segment.
    templated: Vec<(Vec<String>, usize)>,
    /// Template, and the `Allow` value for spec routes.
    routes: Vec<(Arc<str>, Option<String>)>,
}

impl RouteTable {
    /// Reads the paths and methods of `spec` (OpenAPI JSON), and adds the
    /// spec's own routes and the pages.
    ///
    /// # Errors
    /// When `spec` is not JSON with a `paths` object.
    pub fn from_spec(spec: &str) -> Result<Self, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Spec {
            paths: serde_json::Map<String, serde_json::Value>,
        }
        let spec: Spec = serde_json::from_str(spec)?;
        let mut table = RouteTable {
            exact: HashMap::new(),
            templated: Vec::new(),
            routes: Vec::new(),
        };
        for (path, ops) in &spec.paths {
            let mut methods: Vec<String> = ops
                .as_object()
                .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            methods.sort();
            table.add(path, Some(methods.join(", ")));
        }
        for path in ["/openapi.json", "/openapi.yaml"]
            .into_iter()
            .chain(crate::pages::PATHS)
        {
            table.add(path, None);
        }
        Ok(table)
    }

    fn add(&mut self, path: &str, allow: Option<String>) {
        let i = self.routes.len();
        self.routes.push((Arc::from(path), allow));
        if path.contains('{') {
            self.templated.push((segments(path), i));
        } else {
            self.exact.insert(path.to_owned(), i);
        }
    }

    fn find(&self, path: &str) -> Option<&(Arc<str>, Option<String>)> {
        if let Some(i) = self.exact.get(path) {
            return self.routes.get(*i);
        }
        // Segment by segment, without copying them: this runs for every
        // request to a templated route.
        let given = || path.split('/').filter(|s| !s.is_empty());
        let count = given().count();
        self.templated
            .iter()
            .find(|(route, _)| {
                route.len() == count
                    && route
                        .iter()
                        .zip(given())
                        .all(|(r, g)| r == g || (r.starts_with('{') && r.ends_with('}')))
            })
            .and_then(|(_, i)| self.routes.get(*i))
    }

    /// The route template `path` matches: a spec path, `/docs` for the
    /// Swagger UI and its assets, else `unmatched`. Never the raw path.
    pub fn label(&self, path: &str) -> &str {
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs";
        }
        self.find(path).map_or("unmatched", |(t, _)| t)
    }

    /// The `Allow` value of the spec route that matches `path`.
    pub fn allow(&self, path: &str) -> Option<&str> {
        self.find(path).and_then(|(_, allow)| allow.as_deref())
    }
}

/// What `observe` needs: the route table and the metrics.
pub struct Observer {
    pub routes: Arc<RouteTable>,
    pub metrics: Option<Arc<Metrics>>,
}

/// The `method` label: a standard method, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn observe<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    observer: Arc<Observer>,
) -> Result<Response> {
    let id = match sane_request_id(&req) {
        Some(id) => id.to_owned(),
        None => new_request_id(),
    };
    // At error level, so that it is on whenever any log line is: the
    // warnings and errors of a request are the lines that need its id.
    let span = tracing::error_span!("request", request_id = %id);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let mut resp = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let elapsed = start.elapsed();
    let status = resp.status();
    span.in_scope(|| {
        tracing::info!(
            target: "otpd::http",
            %method,
            %path,
            status = status.as_u16(),
            ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Some(metrics) = &observer.metrics {
        metrics.http(
            observer.routes.label(&path),
            method_label(&method),
            status.as_u16(),
            elapsed,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(resp)
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
    allowed: Arc<RouteTable>,
) -> Result<Response> {
    let path = req.uri().path().to_owned();
    let mut resp = next.call(req).await?.into_response();
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(value) = allowed
            .allow(&path)
            .and_then(|m| HeaderValue::from_str(m).ok())
        {
            resp.headers_mut().insert(header::ALLOW, value);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &str) -> Request {
        Request::builder().header(REQUEST_ID, id).finish()
    }

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_is_not() {
        for ok in ["abc-123", "0f9e8d7c", "trace:span.1_2", &"a".repeat(64)] {
            assert_eq!(sane_request_id(&with_id(ok)), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "quote\"d",
            "new\nline",
            "semi;colon",
            "{json}",
            &"a".repeat(65),
        ] {
            assert_eq!(
                sane_request_id(&Request::builder().finish()),
                None,
                "no header"
            );
            if let Ok(v) = HeaderValue::from_str(bad) {
                let req = Request::builder().header(REQUEST_ID, v).finish();
                assert_eq!(sane_request_id(&req), None, "{bad:?}");
            }
        }
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            sane_request_id(&with_id(&a)).is_some(),
            "ours pass our own rule"
        );
    }

    #[test]
    fn routes_are_labelled_by_template_never_by_raw_path() {
        let spec = crate::api::api_service().spec();
        let o = RouteTable::from_spec(&spec).expect("our spec reads");
        assert_eq!(o.label("/sms/check"), "/sms/check");
        assert_eq!(o.label("/healthz"), "/healthz");
        assert_eq!(o.label("/openapi.json"), "/openapi.json");
        assert_eq!(o.label("/outbox"), "/outbox");
        assert_eq!(o.label("/outbox/messages"), "/outbox/messages");
        assert_eq!(o.label("/docs/oauth-receiver.html"), "/docs");
        assert_eq!(o.label("/sms/+77011234567"), "unmatched");
        assert_eq!(o.label("/nope"), "unmatched");
        assert_eq!(
            o.label("/verifications/vrf_secret123"),
            "/verifications/{id}"
        );
        assert_eq!(o.allow("/sms/check"), Some("GET, HEAD, POST"));
        assert_eq!(o.allow("/verifications/vrf_x/cancel"), Some("POST"));
        assert_eq!(o.allow("/outbox"), None, "not a spec route");
    }

    #[test]
    fn a_spec_that_does_not_read_is_an_error_not_an_empty_table() {
        assert!(RouteTable::from_spec("not json").is_err());
        assert!(RouteTable::from_spec("{}").is_err(), "no paths");
    }

    #[test]
    fn json_detection_skips_whitespace() {
        assert!(looks_like_json(b"  \n{\"a\":1}"));
        assert!(!looks_like_json(b"a=1"));
        assert!(!looks_like_json(b""));
    }
}

#[poem::handler]
async fn scrape(metrics: poem::web::Data<&Arc<Metrics>>) -> poem::Response {
    metrics
        .render()
        .with_content_type("text/plain; version=0.0.4; charset=utf-8")
        .into_response()
}

/// The scrape listener's routes: `GET /metrics`, nothing else.
pub fn metrics_routes(metrics: Arc<Metrics>) -> impl Endpoint {
    poem::Route::new()
        .at("/metrics", poem::get(scrape))
        .data(metrics)
}

/// Serves [`metrics_routes`] until the task is dropped.
///
/// # Errors
/// IO errors of the listener.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .run(metrics_routes(metrics))
        .await
}
