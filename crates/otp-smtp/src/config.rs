//! The SMTP provider's configuration.

use otp_domain::{FieldError, FieldProblem};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The subject of a message that has none.
pub const DEFAULT_SUBJECT: &str = "Your verification code";

const DEFAULT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_POOL_MAX_SIZE: u32 = 4;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a relay on loopback or a trusted network.
    None,
    /// A plain connection upgraded with STARTTLS. The upgrade is required:
    /// a server that does not offer it is an error, never a silent
    /// fallback to plain text.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, "implicit TLS").
    Tls,
}

impl SmtpTls {
    /// The usual port for this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// Where and how to send email. Empty strings count as unset, so a
/// defaults file can list every key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name; with TLS, also the name its certificate
    /// must carry. Required.
    pub host: String,
    /// Defaults to the mode's usual port (see [`SmtpTls::default_port`]).
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login; set both `username` and `password`, or neither.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// The sender address, `otp@example.com`. Required.
    pub from: String,
    /// The sender's display name, `Example Inc.` (UTF-8 is fine).
    #[serde(default)]
    pub from_name: Option<String>,
    /// Seconds one send may take, connecting included. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Most connections kept open to the server. Default 4.
    #[serde(default = "default_pool_max_size")]
    pub pool_max_size: u32,
    /// When set, messages are `multipart/alternative`: the text body plus
    /// this HTML with `{body}` replaced by the HTML-escaped text body.
    #[serde(default)]
    pub html_template: Option<String>,
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_pool_max_size() -> u32 {
    DEFAULT_POOL_MAX_SIZE
}

impl SmtpConfig {
    /// A config with the defaults and the two required keys.
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        SmtpConfig {
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password: None,
            from: from.into(),
            from_name: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            pool_max_size: DEFAULT_POOL_MAX_SIZE,
            html_template: None,
        }
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// The first bad field, named within this section (`from`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &'static str, problem| Err(FieldError::new(field, problem));
        if self.host.trim().is_empty() {
            return fail("host", FieldProblem::Required);
        }
        if self
            .host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return fail(
                "host",
                FieldProblem::Must("be a host name without spaces".into()),
            );
        }
        if self.port == Some(0) {
            return fail("port", FieldProblem::OutOfRange { min: 1, max: 65535 });
        }
        if self.from.trim().is_empty() {
            return fail("from", FieldProblem::Required);
        }
        if has_control(&self.from) || self.from.parse::<lettre::Address>().is_err() {
            return fail(
                "from",
                FieldProblem::Must("be an email address like otp@example.com".into()),
            );
        }
        if self.display_name().is_some_and(has_control) {
            return fail(
                "from_name",
                FieldProblem::Must("not contain control characters".into()),
            );
        }
        match (self.username(), self.password()) {
            (Some(_), None) => {
                return fail("password", FieldProblem::RequiredWith("username".into()))
            }
            (None, Some(_)) => {
                return fail("username", FieldProblem::RequiredWith("password".into()))
            }
            _ => {}
        }
        if self.timeout_secs == 0 {
            return fail("timeout_secs", FieldProblem::AtLeast(1));
        }
        if self.pool_max_size == 0 {
            return fail("pool_max_size", FieldProblem::AtLeast(1));
        }
        if let Some(t) = self.html_template() {
            if !t.contains("{body}") {
                return fail("html_template", FieldProblem::Must("contain {body}".into()));
            }
        }
        Ok(())
    }

    /// The port to connect to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    pub(crate) fn username(&self) -> Option<&str> {
        self.username.as_deref().filter(|s| !s.is_empty())
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn display_name(&self) -> Option<&str> {
        self.from_name.as_deref().filter(|s| !s.is_empty())
    }

    pub(crate) fn html_template(&self) -> Option<&str> {
        self.html_template.as_deref().filter(|s| !s.is_empty())
    }
}

/// True for CR, LF and the other control characters that have no place
/// in a header; a tab is allowed.
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SmtpConfig {
        SmtpConfig::new("smtp.example.com", "otp@example.com")
    }

    #[test]
    fn defaults_fill_everything_but_host_and_from() {
        let c: SmtpConfig =
            serde_json::from_str(r#"{"host":"smtp.example.com","from":"otp@example.com"}"#)
                .expect("minimal config parses");
        assert_eq!(c.tls, SmtpTls::Starttls);
        assert_eq!(c.effective_port(), 587);
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.pool_max_size, 4);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn unknown_keys_and_missing_required_keys_fail_to_load() {
        assert!(
            serde_json::from_str::<SmtpConfig>(r#"{"host":"h","from":"a@b.c","pasword":"x"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<SmtpConfig>(r#"{"host":"h"}"#).is_err());
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut c = valid();
        c.from = String::new();
        assert_eq!(
            c.validate(),
            Err(FieldError::new("from", FieldProblem::Required))
        );

        let mut c = valid();
        c.host = " ".to_owned();
        assert_eq!(
            c.validate(),
            Err(FieldError::new("host", FieldProblem::Required))
        );

        let mut c = valid();
        c.from = "not an address".to_owned();
        assert_eq!(c.validate().expect_err("bad from").field, "from");

        let mut c = valid();
        c.from_name = Some("Evil\r\nBcc: x@y.z".to_owned());
        assert_eq!(c.validate().expect_err("bad name").field, "from_name");

        let mut c = valid();
        c.username = Some("user".to_owned());
        assert_eq!(
            c.validate(),
            Err(FieldError::new(
                "password",
                FieldProblem::RequiredWith("username".into())
            ))
        );

        let mut c = valid();
        c.html_template = Some("<p>no placeholder</p>".to_owned());
        assert_eq!(
            c.validate(),
            Err(FieldError::new(
                "html_template",
                FieldProblem::Must("contain {body}".into())
            ))
        );

        let mut c = valid();
        c.timeout_secs = 0;
        assert_eq!(
            c.validate().expect_err("zero timeout").field,
            "timeout_secs"
        );
    }

    #[test]
    fn empty_optional_strings_count_as_unset() {
        let c: SmtpConfig = serde_json::from_str(
            r#"{"host":"h.example","from":"a@b.example","username":"","password":"","from_name":"","html_template":""}"#,
        )
        .expect("parses");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.username(), None);
        assert_eq!(c.html_template(), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut c = valid();
        c.username = Some("mailer".to_owned());
        c.password = Some(SecretString::from("hunter2-very-secret"));
        let shown = format!("{c:?}");
        assert!(shown.contains("mailer"));
        assert!(!shown.contains("hunter2-very-secret"), "{shown}");
    }

    #[test]
    fn the_port_follows_the_tls_mode_unless_set() {
        let mut c = valid();
        c.tls = SmtpTls::Tls;
        assert_eq!(c.effective_port(), 465);
        c.tls = SmtpTls::None;
        assert_eq!(c.effective_port(), 25);
        c.port = Some(2525);
        assert_eq!(c.effective_port(), 2525);
    }
}
