//! The Twilio Verify compatible API under `/v2`: an app written against
//! Twilio Verify (its official SDKs, or any client of its REST API) moves
//! to otpd by changing its base URL.
//!
//! A facade, not a second implementation: each route parses Twilio's
//! form, calls the same `OtpService` the native handlers call (through
//! the same `observe_send` / `observe_check`, so metrics, logs and the
//! console count it as any send), and renders Twilio's JSON. The native
//! API knows nothing of it.
//!
//! Twilio's wire format (its forms, resources, sids and error codes) is
//! the `otp-twilio-verify` crate; this module holds the state, the auth
//! check and the operations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use otp_domain::ports::{CheckOutcome, CheckScope, Checked, ServiceStore};
use otp_domain::service::{App, SendRequest};
use otp_domain::verification::{AttemptOutcome, CancelOutcome, DeliveryAttempt, Status};
use otp_domain::{
    Channel, CheckError, CheckTarget, Code, StoreError, Verification, VerificationId,
};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Form;
use poem_openapi::OpenApi;

use crate::api::auth::Credentials;
use crate::api::otp::{observe_send, record_check};
use crate::api::{ApiTags, AppState};
use otp_twilio_verify::errors::{bad_request_reply, Fail};
use otp_twilio_verify::forms::{
    CheckForm, ServiceCreate, ServiceUpdate, UpdateForm, VerificationForm,
};
use otp_twilio_verify::reply;
use otp_twilio_verify::resources::{
    is_sid, new_service_sid, verification_id, CheckBody, CheckedCode, Direct, Nullable, PageMeta,
    ServiceBody, ServicePage, ServiceRecord, VerificationBody,
};

/// The facade's state: on when `twilio_api.account_sid` and
/// `twilio_api.auth_token` are set.
pub struct TwilioApi {
    credentials: Credentials,
    account_sid: String,
    public_url: Option<String>,
    services: Arc<dyn ServiceStore>,
    /// Services read lately, for [`SERVICE_TTL`]: a send or check reads
    /// its service without a store round trip. This instance's own
    /// updates and deletes replace or drop the entry at once.
    cache: std::sync::Mutex<HashMap<String, (Instant, Arc<ServiceRecord>)>>,
}

/// How long a service read stays cached: an update or delete made
/// through another instance on a shared store shows within this.
pub const SERVICE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many services are cached; past it, the cache starts over.
const CACHE_MAX: usize = 1024;

impl TwilioApi {
    pub fn new(
        config: &otp_config::schema::TwilioApiConfig,
        services: Arc<dyn ServiceStore>,
    ) -> Option<Self> {
        use secrecy::ExposeSecret;
        config.enabled().then(|| TwilioApi {
            credentials: Credentials::new(&config.account_sid, config.auth_token.expose_secret()),
            account_sid: config.account_sid.clone(),
            public_url: Some(config.public_url.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            services,
            cache: std::sync::Mutex::default(),
        })
    }

    /// Whether an `Authorization` header carries the AccountSid and
    /// AuthToken (constant time).
    pub fn admits(&self, header: Option<&str>) -> bool {
        self.credentials.admit_basic(header)
    }

    /// The URL the client reached otpd at: `public_url`, else `http://`
    /// and the request's Host.
    fn base(&self, req: &Request) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!(
                "http://{}",
                req.header("host")
                    .unwrap_or("localhost")
                    .trim_end_matches('/')
            ),
        }
    }

    /// A service resource, as this request reached it.
    fn service_body(&self, r: &ServiceRecord, req: &Request) -> Direct<ServiceBody> {
        Direct(ServiceBody::of(r, &self.account_sid, &self.base(req)))
    }

    /// A verification resource of service `service`, as this request
    /// reached it.
    fn verification_body(
        &self,
        v: &Verification,
        service: &str,
        req: &Request,
    ) -> Direct<VerificationBody> {
        Direct(VerificationBody::of(
            v,
            service,
            &self.account_sid,
            &self.base(req),
        ))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<ServiceRecord>)>> {
        // Entries are whole values: a poisoned lock holds nothing torn.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Service `sid`, from the cache while fresh, else from the store.
    async fn service(&self, sid: &str) -> Result<Arc<ServiceRecord>, Fail> {
        if !is_sid(sid, "VA") {
            return Err(Fail::not_found());
        }
        if let Some((at, r)) = self.cache().get(sid) {
            if at.elapsed() < SERVICE_TTL {
                return Ok(Arc::clone(r));
            }
        }
        let record = match self.services.service(sid).await? {
            Some(bytes) => Arc::new(ServiceRecord::from_bytes(&bytes)?),
            None => {
                self.cache().remove(sid);
                return Err(Fail::not_found());
            }
        };
        self.remember(&record);
        Ok(record)
    }

    fn remember(&self, record: &Arc<ServiceRecord>) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(record.sid.clone(), (Instant::now(), Arc::clone(record)));
    }

    async fn save(&self, record: ServiceRecord) -> Result<Arc<ServiceRecord>, Fail> {
        self.services
            .put_service(&record.sid, &record.to_bytes())
            .await?;
        let record = Arc::new(record);
        self.remember(&record);
        Ok(record)
    }

    async fn delete(&self, sid: &str) -> Result<bool, Fail> {
        self.cache().remove(sid);
        Ok(is_sid(sid, "VA") && self.services.delete_service(sid).await?)
    }
}

/// HTTP Basic with the AccountSid and AuthToken of `[twilio_api]`. The
/// auth gate checks it; a missing or wrong pair is 401 code 20003.
///
/// Written out rather than derived: a derived scheme of type `basic`
/// decodes the header again for every request, after the gate did, only
/// to hand the handler a pair it never reads. This one documents the
/// scheme in the spec and extracts nothing.
pub struct TwilioAuth;

/// The scheme's name in the spec.
const TWILIO_AUTH: &str = "TwilioAuth";

impl<'a> poem_openapi::ApiExtractor<'a> for TwilioAuth {
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut poem_openapi::registry::Registry) {
        registry.create_security_scheme(
            TWILIO_AUTH,
            poem_openapi::registry::MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "HTTP Basic with the AccountSid and AuthToken of `[twilio_api]`. The\n\
                     auth gate checks it; a missing or wrong pair is 401 code 20003.",
                ),
                name: None,
                key_in: None,
                scheme: Some("basic"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![TWILIO_AUTH]
    }

    async fn from_request(
        _req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: poem_openapi::ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // The gate admitted the request before any route ran.
        Ok(TwilioAuth)
    }
}

reply!(
    /// A service.
    ServiceReply {
        /// The service.
        Ok(Direct<ServiceBody>) = 200,
        /// The new service.
        Created(Direct<ServiceBody>) = 201,
    }
);

reply!(
    /// A page of services.
    ServiceListReply {
        /// The page; `meta.next_page_url` is the next one's absolute URL.
        Ok(Direct<ServicePage>) = 200,
    }
);

reply!(
    /// A deleted service.
    DeleteReply {
        /// Deleted.
        Deleted = 204,
    }
);

reply!(
    /// A verification.
    VerificationReply {
        /// The verification.
        Ok(Direct<VerificationBody>) = 200,
        /// Sent: a new verification, or the pending one reused.
        Created(Direct<VerificationBody>) = 201,
    }
);

reply!(
    /// A verification check.
    CheckReply {
        /// Checked: `valid` says whether the code was right.
        Ok(Direct<CheckBody>) = 200,
    }
);

/// The facade, or 404 when it is off (the gate answers that first).
fn facade(state: &AppState) -> Result<&TwilioApi, Fail> {
    state.twilio.as_ref().ok_or_else(Fail::not_found)
}

/// Twilio's channel names; `sna` and `auto` are Twilio's own.
fn channel_of(name: &str) -> Result<Channel, Fail> {
    match name {
        "sms" => Ok(Channel::Sms),
        "call" => Ok(Channel::Call),
        "email" => Ok(Channel::Email),
        "whatsapp" => Ok(Channel::WhatsApp),
        "sna" | "auto" => Err(Fail::invalid(format!(
            "Invalid parameter `Channel`: {name} is not supported by otpd (sms, call, email, whatsapp)"
        ))),
        other => Err(Fail::invalid(format!(
            "Invalid parameter `Channel`: {other}"
        ))),
    }
}

/// The verification `sid` of service `service`, as a reader sees it now.
async fn verification_of(
    state: &AppState,
    service: &str,
    sid: &str,
) -> Result<Option<Verification>, Fail> {
    let Some(id) = verification_id(sid) else {
        return Ok(None);
    };
    Ok(state
        .otp
        .verification(&id)
        .await?
        .filter(|v| v.service.as_deref() == Some(service)))
}

/// A pending verification, or the error a later use of an ended one gets.
fn pending(v: Option<Verification>) -> Result<Verification, Fail> {
    match v {
        Some(v) if v.is_pending() => Ok(v),
        _ => Err(Fail::not_found()),
    }
}

/// The facade, service `service` and its pending verification `sid`:
/// what a fetch or an update of a verification starts from.
async fn pending_of<'a>(
    state: &'a AppState,
    service: &str,
    sid: &str,
) -> Result<(&'a TwilioApi, Arc<ServiceRecord>, Verification), Fail> {
    let t = facade(state)?;
    let service = t.service(service).await?;
    let v = pending(verification_of(state, &service.sid, sid).await?)?;
    Ok((t, service, v))
}

#[derive(Default)]
pub struct TwilioVerifyApi;

#[OpenApi(tag = "ApiTags::TwilioVerify")]
impl TwilioVerifyApi {
    /// Creates a service: the app whose name starts its messages and
    /// whose `CodeLength` sets its codes' length.
    #[oai(
        path = "/v2/Services",
        method = "post",
        operation_id = "twilio_service_create"
    )]
    async fn create_service(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        form: Form<ServiceCreate>,
    ) -> ServiceReply {
        let run = async {
            let t = facade(&state)?;
            let now = state.otp.now();
            let mut record = ServiceRecord::new(new_service_sid(), "", now);
            ServiceUpdate::from(form.0).apply(&mut record)?;
            let record = t.save(record).await?;
            Ok::<_, Fail>(ServiceReply::Created(t.service_body(&record, req)))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// A service.
    #[oai(
        path = "/v2/Services/:ServiceSid",
        method = "get",
        operation_id = "twilio_service_fetch"
    )]
    async fn fetch_service(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// `VA` and 32 hex digits.
        #[oai(name = "ServiceSid")]
        sid: Path<String>,
    ) -> ServiceReply {
        let run = async {
            let t = facade(&state)?;
            let record = t.service(&sid.0).await?;
            Ok::<_, Fail>(ServiceReply::Ok(t.service_body(&record, req)))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// Updates a service: the fields given change, the others stay.
    #[oai(
        path = "/v2/Services/:ServiceSid",
        method = "post",
        operation_id = "twilio_service_update"
    )]
    async fn update_service(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        #[oai(name = "ServiceSid")] sid: Path<String>,
        form: Form<ServiceUpdate>,
    ) -> ServiceReply {
        let run = async {
            let t = facade(&state)?;
            let mut record = ServiceRecord::clone(&*t.service(&sid.0).await?);
            form.0.apply(&mut record)?;
            record.date_updated = state.otp.now();
            let record = t.save(record).await?;
            Ok::<_, Fail>(ServiceReply::Ok(t.service_body(&record, req)))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// Deletes a service; its verifications are then 404.
    #[oai(
        path = "/v2/Services/:ServiceSid",
        method = "delete",
        operation_id = "twilio_service_delete"
    )]
    async fn delete_service(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        #[oai(name = "ServiceSid")] sid: Path<String>,
    ) -> DeleteReply {
        let run = async {
            let t = facade(&state)?;
            if !t.delete(&sid.0).await? {
                return Err(Fail::not_found());
            }
            Ok::<_, Fail>(DeleteReply::Deleted)
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// The services, oldest first, a page at a time.
    #[oai(
        path = "/v2/Services",
        method = "get",
        operation_id = "twilio_service_list"
    )]
    async fn list_services(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// 1 to 1000; 50 when absent.
        #[oai(
            name = "PageSize",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        page_size: Query<Option<u32>>,
        /// From 0.
        #[oai(name = "Page", validator(maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Accepted and ignored: `Page` says where a page starts.
        #[oai(name = "PageToken")]
        _page_token: Query<Option<String>>,
    ) -> ServiceListReply {
        let run = async {
            let t = facade(&state)?;
            let size = page_size.0.unwrap_or(50);
            let page = page.0.unwrap_or(0);
            let mut all = Vec::new();
            for (_, bytes) in t.services.services().await? {
                all.push(ServiceRecord::from_bytes(&bytes)?);
            }
            all.sort_by(|a, b| (a.date_created, &a.sid).cmp(&(b.date_created, &b.sid)));
            let start = (page as usize).saturating_mul(size as usize);
            let base = t.base(req);
            let services: Vec<ServiceBody> = all
                .iter()
                .skip(start)
                .take(size as usize)
                .map(|r| ServiceBody::of(r, &t.account_sid, &base))
                .collect();
            let at = |p: u32| format!("{base}/v2/Services?PageSize={size}&Page={p}");
            let more = all.len() > start.saturating_add(size as usize);
            Ok::<_, Fail>(ServiceListReply::Ok(Direct(ServicePage {
                services,
                meta: PageMeta {
                    page,
                    page_size: size,
                    first_page_url: at(0),
                    previous_page_url: Nullable(page.checked_sub(1).map(at)),
                    url: at(page),
                    next_page_url: Nullable(more.then(|| at(page + 1))),
                    key: "services".into(),
                },
            })))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// Sends a code. A second create for the same `To` and channel while
    /// one is pending reuses it: the same sid and code, one more entry
    /// in `send_code_attempts`, under the same limits as any send.
    #[oai(
        path = "/v2/Services/:ServiceSid/Verifications",
        method = "post",
        operation_id = "twilio_verification_create"
    )]
    async fn create_verification(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        #[oai(name = "ServiceSid")] sid: Path<String>,
        form: Form<VerificationForm>,
    ) -> VerificationReply {
        let run = async {
            let t = facade(&state)?;
            let service = t.service(&sid.0).await?;
            let f = form.0;
            let channel = channel_of(&f.channel)?;
            f.refuse_unsupported(service.custom_code_enabled)?;
            let destination = state.otp.destination(channel, &f.to)?;
            let app = App {
                service: service.sid.clone(),
                name: f
                    .custom_friendly_name
                    .clone()
                    .unwrap_or_else(|| service.friendly_name.clone()),
                code_length: Some(usize::from(service.code_length)),
            };
            let user_key = crate::api::user_key(req, req.header("x-otp-user-key"), &state);
            let password = f.custom_code.as_deref().map(Code::parse).transpose()?;
            // The send keeps the service's pending verification, if there
            // is one (`SendRequest::app`): no read before it.
            let request = SendRequest {
                destination: destination.clone(),
                password,
                lifetime: None,
                message: None,
                subject: None,
                user_key,
                locale: f.locale.clone(),
                app: Some(app),
            };
            let receipt = observe_send(&state, &destination, state.otp.send(request)).await?;
            let v = if receipt.reused {
                // Its earlier deliveries are in the record.
                state
                    .otp
                    .verification(&receipt.id)
                    .await?
                    .ok_or_else(Fail::not_found)?
            } else {
                // A new one, as the send left it, without reading it back.
                let now = state.otp.now();
                let mut v =
                    Verification::new(receipt.id, &destination, now, receipt.expires_at, 0, 0);
                v.deliveries
                    .push(DeliveryAttempt::new("", AttemptOutcome::Delivered, now));
                v
            };
            Ok::<_, Fail>(VerificationReply::Created(t.verification_body(
                &v,
                &service.sid,
                req,
            )))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// A pending verification. An approved, canceled, expired or
    /// exhausted one is gone, as in Twilio: 404 (20404).
    #[oai(
        path = "/v2/Services/:ServiceSid/Verifications/:Sid",
        method = "get",
        operation_id = "twilio_verification_fetch"
    )]
    async fn fetch_verification(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        #[oai(name = "ServiceSid")] service: Path<String>,
        /// `VE` and 32 hex digits.
        #[oai(name = "Sid")]
        sid: Path<String>,
    ) -> VerificationReply {
        let run = async {
            let (t, service, v) = pending_of(&state, &service.0, &sid.0).await?;
            Ok::<_, Fail>(VerificationReply::Ok(t.verification_body(
                &v,
                &service.sid,
                req,
            )))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// `Status=canceled` cancels a pending verification; `Status=approved`
    /// approves it without the code (for flows that verified the user
    /// elsewhere), exactly as a right check would.
    #[oai(
        path = "/v2/Services/:ServiceSid/Verifications/:Sid",
        method = "post",
        operation_id = "twilio_verification_update"
    )]
    async fn update_verification(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        #[oai(name = "ServiceSid")] service: Path<String>,
        #[oai(name = "Sid")] sid: Path<String>,
        form: Form<UpdateForm>,
    ) -> VerificationReply {
        let run = async {
            let (t, service, v) = pending_of(&state, &service.0, &sid.0).await?;
            let ended = match form.0.status.as_str() {
                "canceled" => match state.otp.cancel(&v.id).await? {
                    CancelOutcome::Canceled(v) => v,
                    CancelOutcome::AlreadyEnded(_) | CancelOutcome::NotFound => {
                        return Err(Fail::not_found())
                    }
                },
                "approved" => approve(&state, &v.id).await?,
                other => {
                    return Err(Fail::invalid(format!(
                        "Invalid parameter `Status`: {other} (canceled or approved)"
                    )))
                }
            };
            Ok::<_, Fail>(VerificationReply::Ok(t.verification_body(
                &ended,
                &service.sid,
                req,
            )))
        };
        run.await.unwrap_or_else(Into::into)
    }

    /// Checks a code, by `To` or by `VerificationSid`. A wrong code is
    /// 200 with `status: pending, valid: false`; a check after the last
    /// allowed wrong one is 429 (60202).
    #[oai(
        path = "/v2/Services/:ServiceSid/VerificationCheck",
        method = "post",
        operation_id = "twilio_verification_check"
    )]
    async fn check(
        &self,
        _auth: TwilioAuth,
        state: Data<&Arc<AppState>>,
        #[oai(name = "ServiceSid")] service: Path<String>,
        form: Form<CheckForm>,
    ) -> CheckReply {
        let run = async {
            let t = facade(&state)?;
            let service = t.service(&service.0).await?;
            let f = form.0;
            let code = |f: &CheckForm| {
                Code::parse(&f.code)
                    .map_err(|e| Fail::invalid(format!("Invalid parameter `Code`: {e}")))
            };
            let (target, checked) = match (&f.verification_sid, &f.to) {
                (Some(sid), _) => {
                    let found = verification_of(&state, &service.sid, sid).await?;
                    if found
                        .as_ref()
                        .is_some_and(|v| v.status == Status::MaxAttemptsReached)
                    {
                        return Err(CheckError::Locked.into());
                    }
                    let v = pending(found)?;
                    // A stored address that no longer reads is no such
                    // verification, before the code is looked at.
                    state
                        .otp
                        .check_target(v.channel, &v.destination)
                        .map_err(|_| Fail::not_found())?;
                    let scope = CheckScope::Verification(v.id);
                    let channel = std::slice::from_ref(&v.channel);
                    check_first(&state, channel, &v.destination, &code(&f)?, &scope).await
                }
                // The code sent to `to` for this service, on a channel that
                // takes that address: SMS first (a phone is checked mostly
                // by SMS: one store step), then voice, then WhatsApp. Each
                // address is read only when no earlier channel held a code
                // it can still check.
                (None, Some(to)) => {
                    let scope = CheckScope::Service(service.sid.clone());
                    check_first(&state, channels_of(to), to, &code(&f)?, &scope).await
                }
                (None, None) => {
                    return Err(Fail::invalid(
                        "Missing required parameter: To or VerificationSid",
                    ))
                }
            }
            .ok_or_else(Fail::not_found)?;
            let (result, found) = match checked {
                Ok(c) => (c.result(), c.verification),
                Err(e) => (Err(CheckError::Store(e)), None),
            };
            record_check(&state, &target, &result);
            let status = match result {
                Ok(()) => "approved",
                Err(CheckError::Mismatch { attempts_left: 0 }) => "max_attempts_reached",
                Err(CheckError::Mismatch { .. }) => "pending",
                Err(e) => return Err(e.into()),
            };
            let (id, created_at) = found.ok_or_else(Fail::not_found)?;
            // The check as it left the record, without reading it back.
            let to = target
                .key()
                .and_then(|k| k.split_once(':').map(|(_, a)| a.to_owned()))
                .unwrap_or_default();
            Ok::<_, Fail>(CheckReply::Ok(Direct(CheckBody::of(
                &CheckedCode {
                    id,
                    to: &to,
                    channel: target.channel(),
                    created_at,
                    updated_at: state.otp.now(),
                },
                &service.sid,
                &t.account_sid,
                status,
            ))))
        };
        run.await.unwrap_or_else(Into::into)
    }
}

/// The channels whose codes `to` may have been sent on.
fn channels_of(to: &str) -> &'static [Channel] {
    if to.contains('@') {
        &[Channel::Email]
    } else {
        &[Channel::Sms, Channel::Call, Channel::WhatsApp]
    }
}

/// Checks `code` in `scope` against `address` on each channel in turn,
/// up to the first that holds a code it can still check: that target
/// and what its check found. An address is read for a channel only when
/// no earlier channel held a code it can still check. A locked code is answered only when
/// no later channel holds a checkable one (an SMS code used up, a voice
/// code sent since); with no code anywhere, the first target's
/// `NotFound` (`None` when the address fits no channel).
async fn check_first(
    state: &AppState,
    channels: &[Channel],
    address: &str,
    code: &Code,
    scope: &CheckScope,
) -> Option<(CheckTarget, Result<Checked, StoreError>)> {
    let mut first = None;
    let mut locked = None;
    for &channel in channels {
        let Ok(target) = state.otp.check_target(channel, address) else {
            continue;
        };
        let checked = state.otp.check_in(&target, code, Some(scope)).await;
        match checked.as_ref().map(|c| c.outcome) {
            Ok(CheckOutcome::NotFound) => {
                first.get_or_insert((target, checked));
            }
            Ok(CheckOutcome::Locked) => {
                locked.get_or_insert((target, checked));
            }
            _ => return Some((target, checked)),
        }
    }
    locked.or(first)
}

/// Approves `id` and reads it back, approved.
async fn approve(state: &AppState, id: &VerificationId) -> Result<Verification, Fail> {
    state.otp.approve(id).await?;
    state
        .otp
        .verification(id)
        .await?
        .ok_or_else(Fail::not_found)
}
