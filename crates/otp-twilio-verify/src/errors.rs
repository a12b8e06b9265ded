//! Twilio's error body and codes, and the mapping of otpd's domain
//! errors onto them. Every `/v2` answer that is not a resource is a
//! [`Fail`]: `{"code", "message", "more_info", "status"}`, as the SDKs
//! parse it into `TwilioRestException` / `RestException`.

use otp_domain::error::Limit;
use otp_domain::{CheckError, ParseError, SendError};
use poem_openapi::Object;

/// Twilio's error body.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioError")]
pub struct TwilioError {
    /// Twilio's error code: 20003, 20404, 60200, …
    pub code: u32,
    pub message: String,
    /// `https://www.twilio.com/docs/errors/<code>`.
    pub more_info: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// An error answer of the facade: its status, Twilio code and message,
/// and for a 429 the seconds to wait.
#[derive(Debug, Clone)]
pub struct Fail {
    pub status: u16,
    pub code: u32,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// The codes the facade answers with.
pub mod code {
    /// Authenticate: a missing or wrong AccountSid/AuthToken.
    pub const AUTH: u32 = 20003;
    /// The requested resource was not found.
    pub const NOT_FOUND: u32 = 20404;
    /// Too many requests.
    pub const RATE_LIMITED: u32 = 20429;
    /// Service unavailable.
    pub const UNAVAILABLE: u32 = 20503;
    /// Invalid parameter.
    pub const INVALID: u32 = 60200;
    /// Max check attempts reached.
    pub const MAX_CHECKS: u32 = 60202;
    /// Max send attempts reached.
    pub const MAX_SENDS: u32 = 60203;
    /// The fraud guard blocked the number's prefix.
    pub const FRAUD: u32 = 60410;
    /// Verification delivery to this country is not allowed.
    pub const COUNTRY: u32 = 60605;
}

impl Fail {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Fail {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Fail::new(400, code::INVALID, message)
    }

    pub fn not_found() -> Self {
        Fail::new(404, code::NOT_FOUND, "The requested resource was not found")
    }

    pub fn unauthorized() -> Self {
        Fail::new(401, code::AUTH, "Authenticate")
    }

    pub fn unavailable() -> Self {
        Fail::new(
            503,
            code::UNAVAILABLE,
            "Service unavailable: the store cannot be reached; retry later",
        )
    }

    pub fn body(&self) -> TwilioError {
        TwilioError {
            code: self.code,
            message: self.message.clone(),
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code),
            status: self.status,
        }
    }

    /// As a plain poem response (the auth gate answers before any route).
    pub fn response(&self) -> poem::Response {
        let body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        });
        let mut resp = poem::Response::builder()
            .status(
                poem::http::StatusCode::from_u16(self.status)
                    .unwrap_or(poem::http::StatusCode::BAD_REQUEST),
            )
            .content_type("application/json")
            .body(body.to_string());
        if self.status == 401 {
            resp.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        resp
    }
}

impl From<otp_domain::StoreError> for Fail {
    fn from(e: otp_domain::StoreError) -> Self {
        tracing::error!(error = %otp_domain::error::chain(&e), "twilio api: store error");
        Fail::unavailable()
    }
}

impl From<ParseError> for Fail {
    fn from(e: ParseError) -> Self {
        Fail::invalid(format!("Invalid parameter: {e}"))
    }
}

impl From<SendError> for Fail {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Invalid(p) => p.into(),
            SendError::UnsupportedLocale(tag) => Fail::invalid(format!(
                "Invalid parameter `Locale`: {tag} is not supported"
            )),
            e @ (SendError::MessageWithoutCode
            | SendError::TooLong { .. }
            | SendError::MultilineSubject
            | SendError::FixedTemplate { .. }) => Fail::invalid(format!("Invalid parameter: {e}")),
            SendError::DestinationNotAllowed => Fail::new(
                403,
                code::COUNTRY,
                "Verification delivery to this country is not allowed",
            ),
            SendError::FraudSuspected => Fail::new(
                403,
                code::FRAUD,
                "Verification delivery to this number prefix is blocked by the fraud guard",
            ),
            SendError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                let mut fail = match limit {
                    Limit::Destination => {
                        Fail::new(429, code::MAX_SENDS, "Max send attempts reached")
                    }
                    Limit::User | Limit::Channel => Fail::new(
                        429,
                        code::RATE_LIMITED,
                        format!("Too many requests: the {} limit", limit.as_str()),
                    ),
                };
                fail.retry_after = Some(retry_after_secs);
                fail
            }
            SendError::Delivery(_) => Fail::new(
                503,
                code::UNAVAILABLE,
                "Service unavailable: no provider accepted the message; no code was issued",
            ),
            SendError::Store(s) => s.into(),
        }
    }
}

impl From<CheckError> for Fail {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Locked => Fail::new(429, code::MAX_CHECKS, "Max check attempts reached"),
            CheckError::Store(s) => s.into(),
            // A mismatch is a 200 answer, not an error (see the check).
            CheckError::NotFound | CheckError::Mismatch { .. } => Fail::not_found(),
        }
    }
}

/// poem-openapi's own refusals (a body that is not a form, a field of the
/// wrong type, a missing required one) in Twilio's words.
pub fn bad_request(err: &poem::Error) -> Fail {
    Fail::invalid(format!("Invalid parameter: {err}"))
}

/// The `bad_request_handler` of every reply: poem-openapi's refusal as
/// the reply's 400.
pub fn bad_request_reply<T: From<Fail>>(err: poem::Error) -> T {
    bad_request(&err).into()
}

/// One `ApiResponse` per resource kind: the success variants given, and
/// every error status the facade answers, each with [`TwilioError`].
#[macro_export]
macro_rules! reply {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident $( ( $($ty:ty),* ) )? = $status:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, poem_openapi::ApiResponse)]
        #[oai(bad_request_handler = "bad_request_reply")]
        pub enum $name {
            $( $(#[$vmeta])* #[oai(status = $status)] $variant $( ( $($ty),* ) )?, )*
            /// An invalid parameter (code 60200).
            #[oai(status = 400)]
            BadRequest(poem_openapi::payload::Json<$crate::errors::TwilioError>),
            /// Missing or wrong AccountSid/AuthToken (code 20003).
            #[oai(status = 401)]
            Unauthorized(poem_openapi::payload::Json<$crate::errors::TwilioError>),
            /// The country is not allowed (60605), or the fraud guard
            /// blocked the number (60410).
            #[oai(status = 403)]
            Forbidden(poem_openapi::payload::Json<$crate::errors::TwilioError>),
            /// No such resource, or it is no longer pending (20404).
            #[oai(status = 404)]
            NotFound(poem_openapi::payload::Json<$crate::errors::TwilioError>),
            /// Max send attempts (60203), max check attempts (60202) or
            /// a shared limit (20429); see `Retry-After`.
            #[oai(status = 429)]
            TooMany(
                poem_openapi::payload::Json<$crate::errors::TwilioError>,
                #[oai(header = "Retry-After")] Option<u64>,
            ),
            /// The store cannot be reached, or no provider took the
            /// message (20503).
            #[oai(status = 503)]
            Unavailable(poem_openapi::payload::Json<$crate::errors::TwilioError>),
        }

        impl From<$crate::errors::Fail> for $name {
            fn from(f: $crate::errors::Fail) -> Self {
                let body = poem_openapi::payload::Json(f.body());
                match f.status {
                    401 => $name::Unauthorized(body),
                    403 => $name::Forbidden(body),
                    404 => $name::NotFound(body),
                    429 => $name::TooMany(body, f.retry_after),
                    503 => $name::Unavailable(body),
                    _ => $name::BadRequest(body),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::DeliveryError;

    #[test]
    fn domain_errors_get_twilio_s_codes_and_statuses() {
        let cases: Vec<(SendError, u16, u32)> = vec![
            (SendError::DestinationNotAllowed, 403, 60605),
            (SendError::FraudSuspected, 403, 60410),
            (
                SendError::RateLimited {
                    retry_after_secs: 30,
                    limit: Limit::Destination,
                },
                429,
                60203,
            ),
            (
                SendError::RateLimited {
                    retry_after_secs: 7,
                    limit: Limit::Channel,
                },
                429,
                20429,
            ),
            (SendError::UnsupportedLocale("xx".into()), 400, 60200),
            (
                SendError::Invalid(ParseError::Phone("too short")),
                400,
                60200,
            ),
            (
                SendError::Delivery(DeliveryError {
                    provider: "twilio".into(),
                    reason: "down".into(),
                    transient: true,
                    retry_after: None,
                    source: None,
                }),
                503,
                20503,
            ),
        ];
        for (e, status, code) in cases {
            let f = Fail::from(e);
            assert_eq!((f.status, f.code), (status, code), "{f:?}");
            let body = f.body();
            assert_eq!(body.status, status);
            assert_eq!(
                body.more_info,
                format!("https://www.twilio.com/docs/errors/{code}")
            );
        }
        let limited = Fail::from(SendError::RateLimited {
            retry_after_secs: 30,
            limit: Limit::User,
        });
        assert_eq!(limited.retry_after, Some(30));
        assert_eq!(Fail::from(CheckError::Locked).code, 60202);
        assert_eq!(Fail::from(CheckError::NotFound).code, 20404);
    }
}
