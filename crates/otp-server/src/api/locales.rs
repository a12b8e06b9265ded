//! `GET /locales`: the locales otpd writes messages in, for an app's
//! language picker.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::auth::ApiAuth;
use super::{ApiTags, AppState};

/// Where a locale's texts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum LocaleSourceName {
    /// The translations shipped with otpd.
    Builtin,
    /// Built in, with some texts replaced in `[templates]`.
    Overridden,
    /// Added in `[templates.locales]`.
    Configured,
}

/// One locale.
#[derive(Debug, Object)]
pub struct LocaleBody {
    /// The BCP-47 tag to pass as a send's `locale`.
    pub tag: String,
    /// The language's own name (`Deutsch`).
    pub name: String,
    pub source: LocaleSourceName,
}

/// Every locale served.
#[derive(Debug, Object)]
pub struct LocaleList {
    /// What a send gets that names no locale and whose number's country
    /// maps to none.
    pub default: String,
    /// Sorted by tag.
    pub locales: Vec<LocaleBody>,
}

#[derive(Debug, ApiResponse)]
pub enum LocalesResponse {
    /// The locales.
    #[oai(status = 200)]
    Ok(Json<LocaleList>),
}

#[derive(Default)]
pub struct LocalesApi;

#[OpenApi(tag = "ApiTags::Locales")]
impl LocalesApi {
    /// The locales a send's `locale` may name (after fallback along the
    /// tag: `pt-BR` → `pt`).
    #[oai(path = "/locales", method = "get", operation_id = "locales_list")]
    async fn list(&self, _auth: ApiAuth, state: Data<&Arc<AppState>>) -> LocalesResponse {
        let locales = state.otp.locales();
        LocalesResponse::Ok(Json(LocaleList {
            default: locales.default_locale().tag.to_string(),
            locales: locales
                .all()
                .into_iter()
                .map(|l| LocaleBody {
                    tag: l.tag.to_string(),
                    name: l.name.clone(),
                    source: match l.source {
                        otp_domain::LocaleSource::BuiltIn => LocaleSourceName::Builtin,
                        otp_domain::LocaleSource::Overridden => LocaleSourceName::Overridden,
                        otp_domain::LocaleSource::Configured => LocaleSourceName::Configured,
                    },
                })
                .collect(),
        }))
    }
}
