//! `OtpService`: the one place that owns the rules. Handlers parse input
//! into domain types and call it; they never re-implement a rule.

use std::sync::Arc;

use crate::codes::normalize_pairing;
use crate::digest::{CodeDigest, CodeHasher};
use crate::fraud::{Block, Counters, FraudMode, FraudPolicy, Prefix};

use crate::error::{CheckError, Limit, PairError, ParseError, SendError, StoreError, TargetError};
use crate::locale::{Locale, LocaleTag, Templates};
use crate::policy::{body_limit, Policy, SUBJECT_LIMIT};
use crate::ports::{
    CheckOutcome, CheckScope, Checked, Clock, CodeCheck, CodeDiscard, CodeGenerator, CodeRecord,
    CodeStore, Delivered, Delivery, DeliveryError, FraudLedger, FraudTally, HitOutcome,
    IdempotencyAnswer, IdempotencyClaim, IdempotencyStore, MessageLocale, NewPairing,
    OutgoingMessage, PairingOutcome, PutOutcome, RateBucket, SendLimits, Sender, StagedSend, Store,
    TakeOutcome, Timestamp, VerificationStore,
};
use crate::template::{self, PASSWORD};
use crate::types::{Channel, ChatId, CheckTarget, Code, Destination, Lifetime, Phone, Region};
use crate::verification::{
    AttemptOutcome, DeliveryAttempt, IdempotencyBegin, Verification, VerificationId,
};

mod fallback;
pub use fallback::ReportEffect;

/// How long a request under an `Idempotency-Key` holds the key while it
/// runs: longer than any delivery's deadline, short enough that a key
/// whose instance died is free again soon.
pub const IDEMPOTENCY_LEASE_MS: u64 = 60_000;
/// How long a finished request's answer is replayed (Stripe's 24 hours).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3_600_000;

/// The senders of the five channels.
#[derive(Clone)]
pub struct Senders {
    pub sms: Arc<dyn Sender>,
    pub call: Arc<dyn Sender>,
    pub email: Arc<dyn Sender>,
    pub telegram: Arc<dyn Sender>,
    pub whatsapp: Arc<dyn Sender>,
}

impl Senders {
    fn get(&self, channel: Channel) -> &dyn Sender {
        match channel {
            Channel::Sms => self.sms.as_ref(),
            Channel::Call => self.call.as_ref(),
            Channel::Email => self.email.as_ref(),
            Channel::Telegram => self.telegram.as_ref(),
            Channel::WhatsApp => self.whatsapp.as_ref(),
        }
    }
}

/// A request to send a code. The API fills it from any of the four create
/// endpoints.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub destination: Destination,
    /// The caller's own code; generated when absent.
    pub password: Option<Code>,
    /// Seconds; the policy default when absent.
    pub lifetime: Option<i64>,
    /// Body text (`message` or email `text`); the channel template when absent.
    pub message: Option<String>,
    /// Email subject; the template when absent. Ignored by other channels.
    pub subject: Option<String>,
    /// The end user on whose behalf the app asks (their IP or session),
    /// for per-user limits. Not the app's own address.
    pub user_key: Option<String>,
    /// A BCP-47 tag for the message's language; without it, a phone's
    /// country picks the locale, and other channels get the default.
    pub locale: Option<String>,
    /// The app it is sent for, when a `/v2` service sends it.
    pub app: Option<App>,
}

/// The app a send is for: a service of the Twilio-compatible API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The service's sid (`VA…`), kept on the verification.
    pub service: String,
    /// Its name, which starts the message: "Acme: Your code is …".
    pub name: String,
    /// The length of its generated codes (4 to 10); the policy's when
    /// absent.
    pub code_length: Option<usize>,
}

impl App {
    /// `text` as this app sends it: its name first.
    fn brand(&self, text: &str) -> String {
        format!("{}: {text}", self.name)
    }
}

/// What a successful send reports. It never carries the code.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReceipt {
    /// The verification this send created.
    pub id: VerificationId,
    pub channel: Channel,
    pub lifetime: Lifetime,
    pub expires_at: Timestamp,
    /// The block this send's count put on its number's prefix, if it did.
    pub fraud_block: Option<Block>,
    /// A `/v2` service's pending verification was sent again
    /// ([`OtpService::resend`]) instead of a new one.
    pub reused: bool,
}

/// The fraud guard: its policy and where it counts.
#[derive(Clone)]
pub struct FraudGuard {
    pub policy: FraudPolicy,
    pub ledger: Arc<dyn FraudLedger>,
}

/// A check of what the user typed.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub destination: Destination,
    pub password: Code,
}

/// Seconds to wait, rounded up, so a client that waits that long succeeds.
fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// The locale of a message, as providers get it.
fn message_locale(locale: &Locale) -> MessageLocale {
    MessageLocale {
        tag: locale.tag.to_string(),
        // `en`'s texts are the `[templates]` keys, spoken in the
        // provider's configured language as before locales.
        voice: (locale.tag.as_str() != "en").then(|| locale.voice.clone()),
    }
}

/// What a send stored before it went out, to remove again when it does
/// not.
enum Staged {
    Code { key: String, digest: CodeDigest },
    Pairing(CodeDigest),
}

/// The attempts a delivery made, for the verification's record.
fn attempts_of(result: &Result<Delivered, DeliveryError>, at: Timestamp) -> Vec<DeliveryAttempt> {
    let failed = |provider: &str, reason: &str| {
        DeliveryAttempt::new(provider, AttemptOutcome::Failed, at).error(reason)
    };
    match result {
        Ok(d) => d
            .failures
            .iter()
            .map(|(p, r)| failed(p, r))
            .chain(std::iter::once(DeliveryAttempt {
                message_id: d.message_id.clone(),
                ..DeliveryAttempt::new(&d.provider, AttemptOutcome::Delivered, at)
            }))
            .collect(),
        Err(e) => vec![failed(&e.provider, &e.reason)],
    }
}

/// A ready message's way through the store (see
/// [`OtpService::stage_and_deliver`]).
struct Ready<'a> {
    key: String,
    record: CodeRecord,
    user_key: Option<&'a str>,
    /// The SMS to send when WhatsApp cannot take the message.
    sms_fallback: Option<String>,
    resend: bool,
    /// Keep this service's pending verification ([`SendLimits::reuse`]).
    reuse: Option<&'a str>,
}

/// How a staged send ended, when it did not fail.
enum SendEnd {
    Sent {
        fraud_block: Option<Block>,
    },
    /// A resend whose code was no longer live; nothing happened.
    Gone,
    /// The service's verification is still pending: nothing happened,
    /// the caller resends it.
    Pending(VerificationId),
}

/// The message's template and (for email) subject: the request's own or
/// the locale's, refused when it cannot carry the code or is too long.
/// The Cloud API's WhatsApp template fixes the text (its code parameter
/// takes at most 15 characters, which every otpd code, at most 12, fits),
/// so a request cannot bring its own there.
fn message_text<'a>(
    channel: Channel,
    (message, subject): (Option<&'a str>, Option<&'a str>),
    password_given: bool,
    texts: &'a Templates,
    fixed_template: bool,
) -> Result<(&'a str, Option<&'a str>), SendError> {
    if channel == Channel::WhatsApp && fixed_template && message.is_some() {
        return Err(SendError::FixedTemplate {
            channel: channel.as_str(),
        });
    }
    let template = message.unwrap_or(texts.body(channel));
    if !password_given && !template.contains(PASSWORD) {
        return Err(SendError::MessageWithoutCode);
    }
    let (field, max) = body_limit(channel);
    if template.chars().count() > max {
        return Err(SendError::TooLong { field, max });
    }
    if channel != Channel::Email {
        return Ok((template, None));
    }
    let subject = subject.unwrap_or(&texts.email_subject);
    if subject.contains(['\r', '\n']) {
        return Err(SendError::MultilineSubject);
    }
    if subject.chars().count() > SUBJECT_LIMIT {
        return Err(SendError::TooLong {
            field: "subject",
            max: SUBJECT_LIMIT,
        });
    }
    Ok((template, Some(subject)))
}

/// The message of a send: `texts` (body template, subject template)
/// filled in, with the app's name first when a service sends it.
fn compose(
    destination: Destination,
    texts: (&str, Option<&str>),
    code: &Code,
    lifetime: Lifetime,
    locale: &Locale,
    id: VerificationId,
    app: Option<&App>,
) -> OutgoingMessage {
    let (body, subject) = texts;
    let brand = |text: String| app.map_or_else(|| text.clone(), |a| a.brand(&text));
    OutgoingMessage {
        subject: subject.map(|s| brand(template::render(s, code, lifetime))),
        body: brand(template::render(body, code, lifetime)),
        code: code.clone(),
        destination,
        locale: Some(message_locale(locale)),
        verification: Some(id),
    }
}

/// The outcome of a send's first step: the destination's own limits.
enum OwnLimits {
    /// Counted and stored; the message is ready to go.
    Passed(Staged, Box<OutgoingMessage>),
    /// The destination's own bucket was full; nothing was counted.
    Refused { retry_after_ms: u64 },
}

/// Why a staged send did not go out, common to codes and pairings.
enum Refusal {
    RateLimited { retry_after_secs: u64, limit: Limit },
    Delivery(DeliveryError),
    Store(StoreError),
}

impl From<Refusal> for SendError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RateLimited {
                retry_after_secs,
                limit,
            } => SendError::RateLimited {
                retry_after_secs,
                limit,
            },
            Refusal::Delivery(e) => SendError::Delivery(e),
            Refusal::Store(e) => SendError::Store(e),
        }
    }
}

impl From<Refusal> for PairError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RateLimited {
                retry_after_secs,
                limit,
            } => PairError::RateLimited {
                retry_after_secs,
                limit,
            },
            Refusal::Delivery(e) => PairError::Delivery(e),
            Refusal::Store(e) => PairError::Store(e),
        }
    }
}

/// The store ports the service uses, each its role of one store (see
/// [`Stores::of`]) or, in tests, a mock of one role.
#[derive(Clone)]
pub struct Stores {
    pub codes: Arc<dyn CodeStore>,
    pub verifications: Arc<dyn VerificationStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl Stores {
    /// Every role from one store.
    pub fn of(store: Arc<dyn Store>) -> Self {
        Stores {
            codes: store.clone(),
            verifications: store.clone(),
            idempotency: store,
        }
    }
}

pub struct OtpService {
    fraud: Option<FraudGuard>,
    store: Stores,
    senders: Senders,
    clock: Arc<dyn Clock>,
    random: Arc<dyn CodeGenerator>,
    hasher: CodeHasher,
    policy: Policy,
}

impl OtpService {
    pub fn new(
        store: Stores,
        senders: Senders,
        clock: Arc<dyn Clock>,
        random: Arc<dyn CodeGenerator>,
        hasher: CodeHasher,
        policy: Policy,
    ) -> Self {
        OtpService {
            fraud: None,
            store,
            senders,
            clock,
            random,
            hasher,
            policy,
        }
    }

    /// Turns the fraud guard on (unless its mode is `off`).
    #[must_use]
    pub fn with_fraud(mut self, guard: FraudGuard) -> Self {
        self.fraud = (guard.policy.mode != FraudMode::Off).then_some(guard);
        self
    }

    /// The guard and the prefix of `destination`, when the guard watches
    /// it: a phone (SMS, voice, WhatsApp), not a test destination.
    fn guarded(&self, destination: &Destination) -> Option<(&FraudGuard, Prefix)> {
        let guard = self.fraud.as_ref()?;
        let phone = destination.phone()?;
        if self.is_test_destination(destination) {
            return None;
        }
        Prefix::of_e164(phone.as_str(), guard.policy.prefix_digits).map(|p| (guard, p))
    }

    /// Blocks `prefix` when the `counters` its delivered send left say
    /// so. A store error is logged, never returned: the code is out
    /// already.
    async fn judge(
        &self,
        guard: &FraudGuard,
        prefix: Prefix,
        country: Option<String>,
        counters: Counters,
        now: Timestamp,
    ) -> Option<Block> {
        let p = &guard.policy;
        let conversion = counters.conversion(now, p.window_ms());
        if !p.judges_fraud(&prefix, conversion) {
            return None;
        }
        let block = Block {
            prefix,
            country,
            since: now,
            until: now.saturating_add(p.block_secs.saturating_mul(1000)),
            sends: conversion.sends,
            approvals: conversion.approvals,
            mode: p.mode,
        };
        match guard.ledger.block(&block, now).await {
            Ok(true) => {
                tracing::warn!(
                    prefix = %block.prefix,
                    mode = block.mode.as_str(),
                    sends = conversion.sends,
                    approvals = conversion.approvals,
                    "fraud guard: prefix blocked (low conversion)"
                );
                Some(block)
            }
            Ok(false) => None,
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), prefix = %block.prefix, "fraud guard: could not block");
                None
            }
        }
    }

    /// Stores a new code for the destination (replacing any earlier one)
    /// and delivers it. When delivery fails the new code is removed again,
    /// so no code that nobody received stays checkable.
    ///
    /// A send for an [`App`] (a `/v2` service) without a chosen code keeps
    /// that service's pending verification of the destination: the first
    /// store step finds it ([`SendLimits::reuse`]) and the send becomes
    /// its [`OtpService::resend`] (`SendReceipt::reused`).
    ///
    /// # Errors
    /// Input errors, `RateLimited`, `Delivery` and `Store`, as [`SendError`].
    pub async fn send(&self, req: SendRequest) -> Result<SendReceipt, SendError> {
        let p = &self.policy;
        let channel = req.destination.channel();
        let lifetime = Lifetime::parse(
            req.lifetime.unwrap_or(i64::from(p.lifetime_default)),
            p.lifetime_min,
            p.lifetime_max,
        )?;
        let region = req.destination.phone().and_then(Phone::region);
        let locale = match req.locale.as_deref() {
            Some(raw) => {
                let tag = LocaleTag::parse(raw)?;
                p.locales
                    .resolve(&tag)
                    .ok_or_else(|| SendError::UnsupportedLocale(tag.to_string()))?
            }
            None => p.locales.for_region(region.as_ref().map(Region::as_str)),
        };
        let texts = &locale.templates;
        let (template, subject) = message_text(
            channel,
            (req.message.as_deref(), req.subject.as_deref()),
            req.password.is_some(),
            texts,
            p.whatsapp_fixed_template,
        )?;

        if let (Some(rules), Some(phone)) = (p.countries(channel), req.destination.phone()) {
            if !rules.permits(phone.calling_code()) {
                return Err(SendError::DestinationNotAllowed);
            }
        }
        let test_code = p.test_destinations.get(&req.destination.key()).cloned();
        let chose_code = req.password.is_some();
        let code = match (test_code.clone(), req.password) {
            (Some(code), _) => code,
            (None, Some(code)) => code,
            (None, None) => self.random.numeric(
                req.app
                    .as_ref()
                    .and_then(|a| a.code_length)
                    .unwrap_or(p.code_length),
            ),
        };
        // With the SMS fallback, the same code in the locale's SMS text (or
        // the request's own), for when WhatsApp cannot take it.
        let sms_fallback = (channel == Channel::WhatsApp && p.whatsapp_fallback_sms).then(|| {
            let text = template::render(
                req.message.as_deref().unwrap_or(&texts.sms),
                &code,
                lifetime,
            );
            req.app
                .as_ref()
                .map_or_else(|| text.clone(), |a| a.brand(&text))
        });
        let now = self.clock.now();
        let id = self.random.verification_id();
        let message = compose(
            req.destination,
            (template, subject),
            &code,
            lifetime,
            locale,
            id,
            req.app.as_ref(),
        );
        let key = message.destination.key();
        let record = CodeRecord {
            digest: self.hasher.code(&key, &code),
            expires_at: now + lifetime.millis(),
            attempts: 0,
            max_attempts: p.max_attempts,
            verification: id,
        };
        let mut verification = Verification::new_in(
            id,
            &message.destination,
            region.map(|r| r.as_str().to_owned()),
            now,
            record.expires_at,
            p.max_attempts,
            p.verification_retention_secs.saturating_mul(1000),
        );
        verification.locale = Some(locale.tag.to_string());
        verification.service = req.app.as_ref().map(|a| a.service.clone());
        if (sms_fallback.is_some() && test_code.is_none()) || req.app.is_some() {
            // A status report may yet say WhatsApp failed: the fallback
            // then needs the same code (see `fallback.rs`); and a
            // service's repeated create resends it (`resend`).
            verification.sealed = Some(self.hasher.seal(id.as_bytes(), &code));
        }
        // A service's create keeps its pending verification, unless the
        // caller chose the code.
        let reuse = req
            .app
            .as_ref()
            .filter(|_| !chose_code)
            .map(|a| a.service.as_str());
        if test_code.is_some() {
            // A test destination: fixed code, no limits, never delivered.
            // With no buckets the put is never limited; a service's
            // pending verification is kept as for any destination (its
            // resend sends nothing).
            let limits = SendLimits {
                reuse: reuse.map(str::to_owned),
                ..SendLimits::default()
            };
            let send = StagedSend {
                key: &key,
                record,
                verification: &verification,
                limits: &limits,
            };
            let mut outcome = self.store.codes.stage_send(send, now).await?;
            if let (PutOutcome::Pending(pending), Some(app)) = (outcome, req.app.as_ref()) {
                if let Some(receipt) = self.resend(&pending, app, req.user_key.as_deref()).await? {
                    return Ok(receipt);
                }
                let limits = SendLimits::default();
                let send = StagedSend {
                    limits: &limits,
                    ..send
                };
                outcome = self.store.codes.stage_send(send, now).await?;
            }
            if outcome == PutOutcome::Stored {
                let delivery = Delivery {
                    id: &id,
                    attempts: &[],
                    tally: None,
                };
                self.store.codes.record_delivery(delivery, now).await?;
            }
            tracing::warn!(
                %channel,
                destination = %message.destination.masked(),
                "TEST destination: fixed code stored, nothing sent"
            );
            return Ok(SendReceipt {
                id,
                channel,
                lifetime,
                expires_at: record.expires_at,
                fraud_block: None,
                reused: false,
            });
        }
        let mut staging = Ready {
            key: key.clone(),
            record,
            user_key: req.user_key.as_deref(),
            sms_fallback: sms_fallback.clone(),
            resend: false,
            reuse,
        };
        loop {
            match self
                .stage_and_deliver(staging, &verification, &message, now)
                .await?
            {
                SendEnd::Sent { fraud_block } => {
                    return Ok(SendReceipt {
                        id,
                        channel,
                        lifetime,
                        expires_at: record.expires_at,
                        fraud_block,
                        reused: false,
                    })
                }
                // Only a resend can find its code gone.
                SendEnd::Gone => {
                    return Err(SendError::Store(StoreError::Corrupt(
                        "a new code was reported gone".into(),
                    )))
                }
                SendEnd::Pending(pending) => {
                    if let Some(app) = req.app.as_ref() {
                        if let Some(receipt) =
                            self.resend(&pending, app, req.user_key.as_deref()).await?
                        {
                            return Ok(receipt);
                        }
                    }
                    // It ended meanwhile: a new one after all.
                    staging = Ready {
                        key: key.clone(),
                        record,
                        user_key: req.user_key.as_deref(),
                        sms_fallback: sms_fallback.clone(),
                        resend: false,
                        reuse: None,
                    };
                }
            }
        }
    }

    /// Sends the live code of the pending verification `id` again, as a
    /// `/v2` service's repeated create does (Twilio's reuse): the same
    /// code, the same verification, one more delivery on it, charged to
    /// the same limits as any send. The code keeps its expiry and its
    /// counted attempts.
    ///
    /// `Ok(None)` when there is nothing to resend: the verification is
    /// gone, ended, or holds no sealed code; the caller then sends anew.
    /// A failed delivery ends the verification as `failed`, like a first
    /// send's.
    ///
    /// # Errors
    /// `RateLimited`, `FraudSuspected`, `Delivery` and `Store`, as
    /// [`SendError`].
    pub async fn resend(
        &self,
        id: &VerificationId,
        app: &App,
        user_key: Option<&str>,
    ) -> Result<Option<SendReceipt>, SendError> {
        let now = self.clock.now();
        let Some(v) = self.verification(id).await? else {
            return Ok(None);
        };
        let Some(sealed) = v
            .sealed
            .as_ref()
            .filter(|_| v.is_pending() && v.expires_at > now)
        else {
            return Ok(None);
        };
        let Some(code) = self.hasher.open(id.as_bytes(), sealed) else {
            return Ok(None);
        };
        let destination = self.destination(v.channel, &v.destination)?;
        let p = &self.policy;
        // The country rules as they are now, as for any send.
        if let (Some(rules), Some(phone)) = (p.countries(v.channel), destination.phone()) {
            if !rules.permits(phone.calling_code()) {
                return Err(SendError::DestinationNotAllowed);
            }
        }
        let locale = v
            .locale
            .as_deref()
            .and_then(|t| LocaleTag::parse(t).ok())
            .and_then(|t| p.locales.resolve(&t))
            .unwrap_or_else(|| p.locales.for_region(v.country.as_deref()));
        let secs = v.expires_at.saturating_sub(v.created_at) / 1000;
        let lifetime = Lifetime::parse(i64::try_from(secs).unwrap_or(i64::MAX), 1, u32::MAX)?;
        let channel = v.channel;
        let receipt = SendReceipt {
            id: *id,
            channel,
            lifetime,
            expires_at: v.expires_at,
            fraud_block: None,
            reused: true,
        };
        if self.is_test_destination(&destination) {
            // A test destination's code is never delivered, nor resent.
            return Ok(Some(receipt));
        }
        let texts = &locale.templates;
        let subject = (channel == Channel::Email).then_some(texts.email_subject.as_str());
        let sms_fallback = (channel == Channel::WhatsApp && p.whatsapp_fallback_sms)
            .then(|| app.brand(&template::render(&texts.sms, &code, lifetime)));
        let message = compose(
            destination,
            (texts.body(channel), subject),
            &code,
            lifetime,
            locale,
            *id,
            Some(app),
        );
        let key = message.destination.key();
        let record = CodeRecord {
            digest: self.hasher.code(&key, &code),
            expires_at: v.expires_at,
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            verification: *id,
        };
        let staging = Ready {
            key,
            record,
            user_key,
            sms_fallback,
            resend: true,
            reuse: None,
        };
        Ok(
            match self.stage_and_deliver(staging, &v, &message, now).await? {
                SendEnd::Sent { fraud_block } => Some(SendReceipt {
                    fraud_block,
                    ..receipt
                }),
                SendEnd::Gone | SendEnd::Pending(_) => None,
            },
        )
    }

    /// Approves the pending verification `id` without the user's code,
    /// for flows that verified the user elsewhere (Twilio's
    /// `Status=approved`): a check with the code its sealed copy holds,
    /// so it ends exactly as a right check does (its event, the fraud
    /// guard's approval count).
    ///
    /// # Errors
    /// `NotFound` when it is gone, ended, or holds no sealed code; else
    /// as [`OtpService::check_at`].
    pub async fn approve(&self, id: &VerificationId) -> Result<(), CheckError> {
        let v = self
            .verification(id)
            .await?
            .filter(Verification::is_pending)
            .ok_or(CheckError::NotFound)?;
        let code = v
            .sealed
            .as_ref()
            .and_then(|s| self.hasher.open(id.as_bytes(), s))
            .ok_or(CheckError::NotFound)?;
        let target = self
            .check_target(v.channel, &v.destination)
            .map_err(|_| CheckError::NotFound)?;
        // Only this verification's code: one a send put under the same
        // key meanwhile is not approved by this one's sealed copy.
        self.check_in(&target, &code, Some(&CheckScope::Verification(*id)))
            .await?
            .result()
    }

    /// The store steps of a send after its message is ready: the block,
    /// every limit and the code in one step, the delivery, then the
    /// delivery's record and the fraud guard's count in one.
    async fn stage_and_deliver(
        &self,
        staging: Ready<'_>,
        verification: &Verification,
        message: &OutgoingMessage,
        now: Timestamp,
    ) -> Result<SendEnd, SendError> {
        let p = &self.policy;
        let channel = message.destination.channel();
        let Ready {
            key,
            record,
            user_key,
            sms_fallback,
            resend,
            reuse,
        } = staging;
        let id = record.verification;
        let guarded = self.guarded(&message.destination);
        // The record found the phone's region already (a libphonenumber
        // lookup where calling codes are shared): reuse it.
        let country = guarded.as_ref().and(verification.country.clone());
        let shared = p.shared_buckets(channel, user_key);
        let limits = SendLimits {
            blocked: guarded
                .as_ref()
                .filter(|(guard, _)| guard.policy.mode == FraudMode::Block)
                .map(|(_, prefix)| prefix.clone()),
            own: p.send_buckets(&key),
            shared: shared.iter().map(|(_, b)| b.clone()).collect(),
            resend,
            reuse: reuse.map(str::to_owned),
        };
        // Step 1: the block, every limit and the code, in one store step.
        let send = StagedSend {
            key: &key,
            record,
            verification,
            limits: &limits,
        };
        let refusal = match self.store.codes.stage_send(send, now).await? {
            PutOutcome::Stored => None,
            PutOutcome::Gone => return Ok(SendEnd::Gone),
            PutOutcome::Pending(id) => return Ok(SendEnd::Pending(id)),
            PutOutcome::FraudBlocked => return Err(SendError::FraudSuspected),
            PutOutcome::RateLimited { retry_after_ms } => {
                Some((Limit::Destination, retry_after_ms))
            }
            PutOutcome::SharedLimited {
                index,
                retry_after_ms,
            } => Some((
                shared
                    .get(index)
                    .map_or(Limit::Channel, |(limit, _)| *limit),
                retry_after_ms,
            )),
        };
        if let Some((limit, retry_after_ms)) = refusal {
            return Err(Refusal::RateLimited {
                retry_after_secs: ceil_secs(retry_after_ms),
                limit,
            }
            .into());
        }
        let staged = Staged::Code {
            key: key.clone(),
            digest: record.digest,
        };
        let attempts = match sms_fallback {
            Some(body) => self.deliver_or_sms(&staged, message, body).await?,
            None => self.deliver::<SendError>(channel, &staged, message).await?,
        };
        // Step 2: the delivery and the fraud guard's count, in one.
        let tally = guarded.as_ref().map(|(guard, prefix)| FraudTally {
            prefix: prefix.clone(),
            window_ms: guard.policy.window_ms(),
        });
        let counters = self.record_delivery(&id, &attempts, tally.as_ref()).await;
        let fraud_block = match (guarded, counters) {
            (Some((guard, prefix)), Some(counters)) => {
                self.judge(guard, prefix, country, counters, now).await
            }
            _ => None,
        };
        Ok(SendEnd::Sent { fraud_block })
    }

    /// The order in which a pairing is charged to the limits and goes
    /// out, the same as a code's (whose store does it in one step, see
    /// [`CodeStore::stage_send`]):
    /// 1. `own`: the store step that counts the chat's own buckets and
    ///    stores the pairing, in one atomic call;
    /// 2. only when that passed, each limit across chats, each its own
    ///    store call (pairings are rare: one step each costs nothing);
    /// 3. delivery.
    ///
    /// So hammering one chat cannot use up the channel's budget. A full
    /// shared bucket, a store error after step 1 or a failed delivery
    /// removes what step 1 stored.
    async fn dispatch<E>(
        &self,
        channel: Channel,
        own: impl std::future::Future<Output = Result<OwnLimits, E>>,
        shared: Vec<(Limit, RateBucket)>,
        now: Timestamp,
    ) -> Result<Vec<DeliveryAttempt>, E>
    where
        E: From<Refusal>,
    {
        let (staged, message) = match own.await? {
            OwnLimits::Passed(staged, message) => (staged, *message),
            OwnLimits::Refused { retry_after_ms } => {
                return Err(Refusal::RateLimited {
                    retry_after_secs: ceil_secs(retry_after_ms),
                    limit: Limit::Destination,
                }
                .into())
            }
        };
        for (limit, bucket) in shared {
            let refusal = match self.store.codes.hit_bucket(&bucket, now).await {
                Ok(HitOutcome::Counted) => continue,
                Ok(HitOutcome::Full { retry_after_ms }) => Refusal::RateLimited {
                    retry_after_secs: ceil_secs(retry_after_ms),
                    limit,
                },
                Err(e) => Refusal::Store(e),
            };
            self.discard(&staged, None).await;
            return Err(refusal.into());
        }
        self.deliver(channel, &staged, &message).await
    }

    /// Delivers a staged code or pairing; a failed delivery removes it.
    async fn deliver<E>(
        &self,
        channel: Channel,
        staged: &Staged,
        message: &OutgoingMessage,
    ) -> Result<Vec<DeliveryAttempt>, E>
    where
        E: From<Refusal>,
    {
        let result = self.senders.get(channel).send(message).await;
        let attempts = attempts_of(&result, self.clock.now());
        match result {
            // The caller records a code's delivery (see `record_delivery`).
            Ok(_) => Ok(attempts),
            Err(e) => {
                self.discard(staged, Some(&attempts)).await;
                Err(Refusal::Delivery(e).into())
            }
        }
    }

    /// The code of verification `id` went out: record it (and its
    /// `pending` event). A store error now must not turn the send into a
    /// failure the app would retry: it is logged.
    ///
    /// With `tally`, the same step counts the send for the fraud guard and
    /// returns its counters (`None` when that step failed).
    async fn record_delivery(
        &self,
        id: &VerificationId,
        attempts: &[DeliveryAttempt],
        tally: Option<&FraudTally>,
    ) -> Option<Counters> {
        let delivery = Delivery {
            id,
            attempts,
            tally,
        };
        match self
            .store
            .codes
            .record_delivery(delivery, self.clock.now())
            .await
        {
            Ok(counters) => counters,
            Err(e) => {
                tracing::error!(
                    error = %crate::error::chain(&e),
                    verification = %id,
                    "could not record a delivery; the verification stays pending without its event"
                );
                None
            }
        }
    }

    /// Removes a code or pairing that will not be delivered: with the
    /// failed `attempts` its verification ends as `failed`; without (a
    /// limit refused it) it never existed for anyone. If that fails too,
    /// the code is unknown to everyone and expires on its own.
    async fn discard(&self, staged: &Staged, attempts: Option<&[DeliveryAttempt]>) {
        let result = match staged {
            Staged::Code { key, digest, .. } => {
                let discard = CodeDiscard {
                    key,
                    digest,
                    failure: attempts,
                };
                self.store
                    .codes
                    .discard_code(discard, self.clock.now())
                    .await
            }
            Staged::Pairing(digest) => self.store.codes.discard_pairing(digest).await,
        };
        if let Err(e) = result {
            tracing::error!(
                error = %crate::error::chain(&e),
                "could not remove an undelivered code; it expires on its own"
            );
        }
    }

    /// Checks and, on a match, consumes the destination's code.
    ///
    /// # Errors
    /// `Mismatch`, `NotFound`, `Locked` or `Store`, as [`CheckError`].
    pub async fn check(&self, req: CheckRequest) -> Result<(), CheckError> {
        self.check_at(&CheckTarget::from(req.destination), &req.password)
            .await
    }

    /// Checks and, on a match, consumes the code a send stored for
    /// `target`: under its [`CheckTarget::key`], or else under its
    /// [`CheckTarget::resolved_key`], the key of the same number typed
    /// another way. An attempt is counted against the code found, once.
    ///
    /// # Errors
    /// `Mismatch`, `NotFound`, `Locked` or `Store`, as [`CheckError`].
    pub async fn check_at(&self, target: &CheckTarget, password: &Code) -> Result<(), CheckError> {
        self.check_in(target, password, None).await?.result()
    }

    /// [`OtpService::check_at`], touching only a code in `scope` (see
    /// [`CodeStore::check_in`]), and answering what the check found: its
    /// outcome and the code's verification.
    ///
    /// # Errors
    /// `Store`, as [`CheckError`]; the outcome is in the answer.
    pub async fn check_in(
        &self,
        target: &CheckTarget,
        password: &Code,
        scope: Option<&CheckScope>,
    ) -> Result<Checked, StoreError> {
        let Some(key) = target.key() else {
            return Ok(Checked::NOT_FOUND);
        };
        let mut checked = self.check_key(target, &key, password, scope).await?;
        if checked.outcome == CheckOutcome::NotFound {
            if let Some(key) = target.resolved_key() {
                checked = self.check_key(target, &key, password, scope).await?;
            }
        }
        Ok(checked)
    }

    /// The fraud guard's count of an approval of `key`'s code, for an SMS
    /// or voice code under its number's prefix: it rides along with the
    /// check (see [`CodeStore::check_tallied`]).
    fn approval_tally(&self, target: &CheckTarget, key: &str) -> Option<FraudTally> {
        let guard = self.fraud.as_ref()?;
        if !target.channel().is_phone() || self.is_test_target(target) {
            return None;
        }
        let prefix = key
            .split_once(':')
            .and_then(|(_, e164)| Prefix::of_e164(e164, guard.policy.prefix_digits))?;
        Some(FraudTally {
            prefix,
            window_ms: guard.policy.window_ms(),
        })
    }

    /// The fraud guard's active blocks (none when it is off).
    ///
    /// # Errors
    /// The store's error.
    pub async fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError> {
        match &self.fraud {
            Some(g) => g.ledger.blocks(self.clock.now()).await,
            None => Ok(Vec::new()),
        }
    }

    /// Lifts a block now; `None` when the prefix had none.
    ///
    /// # Errors
    /// The store's error.
    pub async fn fraud_unblock(&self, prefix: &Prefix) -> Result<Option<Block>, StoreError> {
        match &self.fraud {
            Some(g) => g.ledger.unblock(prefix, self.clock.now()).await,
            None => Ok(None),
        }
    }

    /// Ends blocks past their time (the sweeper calls it); returns them.
    ///
    /// # Errors
    /// The store's error.
    pub async fn fraud_expire(&self, max: usize) -> Result<Vec<Block>, StoreError> {
        match &self.fraud {
            Some(g) => g.ledger.expire_blocks(self.clock.now(), max).await,
            None => Ok(Vec::new()),
        }
    }

    async fn check_key(
        &self,
        target: &CheckTarget,
        key: &str,
        password: &Code,
        scope: Option<&CheckScope>,
    ) -> Result<Checked, StoreError> {
        let digest = self.hasher.code(key, password);
        let tally = self.approval_tally(target, key);
        let check = CodeCheck {
            key,
            digest: &digest,
            tally: tally.as_ref(),
            scope,
        };
        self.store.codes.check_in(check, self.clock.now()).await
    }

    /// The Telegram bot flow: a user messaged the bot from `chat`, so hand
    /// that chat a fresh pairing code, replacing its earlier one.
    ///
    /// # Errors
    /// `RateLimited` when the chat asked too often, `Delivery`, `Store`.
    pub async fn start_pairing(&self, chat: ChatId) -> Result<(), PairError> {
        let p = &self.policy;
        let lifetime = p.pairing_lifetime;
        let key = Destination::Telegram(chat).key();
        let buckets = p.send_buckets(&format!("pairing:{key}"));
        let now = self.clock.now();
        let own = async {
            // 40-bit codes collide with an active one about never; a few
            // tries make "about" into "never" for any realistic number of
            // chats.
            for _ in 0..5 {
                let code = self.random.pairing();
                let digest = self.hasher.pairing(&code);
                let outcome = self
                    .store
                    .codes
                    .put_pairing(
                        NewPairing {
                            chat,
                            digest: &digest,
                            expires_at: now + lifetime.millis(),
                            buckets: &buckets,
                        },
                        now,
                    )
                    .await?;
                return Ok(match outcome {
                    PairingOutcome::Collision => continue,
                    PairingOutcome::RateLimited { retry_after_ms } => {
                        OwnLimits::Refused { retry_after_ms }
                    }
                    PairingOutcome::Stored => {
                        let locale = p.locales.default_locale();
                        OwnLimits::Passed(
                            Staged::Pairing(digest),
                            Box::new(OutgoingMessage {
                                destination: Destination::Telegram(chat),
                                subject: None,
                                body: template::render(&locale.templates.pairing, &code, lifetime),
                                code: code.clone(),
                                locale: Some(MessageLocale {
                                    tag: locale.tag.to_string(),
                                    voice: None,
                                }),
                                verification: None,
                            }),
                        )
                    }
                });
            }
            Err(PairError::Exhausted)
        };
        // The bot's replies are Telegram sends too: they count against the
        // channel's hourly budget, once the chat's own limits passed.
        self.dispatch(
            Channel::Telegram,
            own,
            p.shared_buckets(Channel::Telegram, None),
            now,
        )
        .await
        .map(|_| ())
    }

    /// Trades a pairing code for the chat it was sent to, once.
    ///
    /// # Errors
    /// `NotFound` for an unknown, expired, used or malformed code; `Store`.
    pub async fn redeem_pairing(
        &self,
        typed: &str,
        user_key: Option<&str>,
    ) -> Result<ChatId, TargetError> {
        let p = &self.policy;
        let failures = user_key
            .filter(|_| p.target_failures_per_window > 0)
            .map(|user| RateBucket {
                key: format!("target-failures:{user}"),
                limit: p.target_failures_per_window,
                window_ms: p.target_failure_window_secs * 1000,
            });
        // A malformed code is looked up too (as a digest nobody holds), so
        // it counts as a failure like any other wrong guess.
        let code = normalize_pairing(typed);
        let digest = match &code {
            Some(code) => self.hasher.pairing(code),
            None => self.hasher.pairing_miss(),
        };
        match self
            .store
            .codes
            .take_pairing(&digest, failures.as_ref(), self.clock.now())
            .await?
        {
            TakeOutcome::Found(chat) if code.is_some() => Ok(chat),
            TakeOutcome::Found(_) | TakeOutcome::NotFound => Err(TargetError::NotFound),
            TakeOutcome::RateLimited { retry_after_ms } => Err(TargetError::RateLimited {
                retry_after_secs: ceil_secs(retry_after_ms),
            }),
        }
    }

    /// The locales this service writes messages in.
    pub fn locales(&self) -> &crate::locale::Locales {
        &self.policy.locales
    }

    /// Parses a request's address, with the policy's default region for
    /// phones.
    ///
    /// # Errors
    /// The address's [`ParseError`].
    pub fn destination(&self, channel: Channel, address: &str) -> Result<Destination, ParseError> {
        Destination::parse_in(channel, address, self.policy.default_region)
    }

    /// Reads a check's address only as far as finding its code needs (see
    /// [`CheckTarget`]), with the policy's default region for phones.
    ///
    /// # Errors
    /// A malformed address, as [`CheckTarget::parse_in`].
    pub fn check_target(&self, channel: Channel, address: &str) -> Result<CheckTarget, ParseError> {
        CheckTarget::parse_in(channel, address, self.policy.default_region)
    }

    /// Whether this webhook update is new. Telegram redelivers updates it
    /// thinks failed; each `update_id` starts at most one pairing.
    ///
    /// # Errors
    /// The store's error.
    pub async fn first_delivery(&self, update_id: i64) -> Result<bool, StoreError> {
        let bucket = RateBucket {
            key: format!("telegram-update:{update_id}"),
            limit: 1,
            window_ms: 24 * 3_600_000,
        };
        Ok(matches!(
            self.store
                .codes
                .hit_bucket(&bucket, self.clock.now())
                .await?,
            HitOutcome::Counted
        ))
    }

    /// Whether `destination` is a test destination (fixed code, never
    /// delivered), so that counts of real traffic can leave it out.
    pub fn is_test_destination(&self, destination: &Destination) -> bool {
        !self.policy.test_destinations.is_empty()
            && self
                .policy
                .test_destinations
                .contains_key(&destination.key())
    }

    /// Whether a check's target is one of the test destinations, under
    /// either key a check looks up (see [`OtpService::check_at`]).
    pub fn is_test_target(&self, target: &CheckTarget) -> bool {
        let tests = &self.policy.test_destinations;
        !tests.is_empty()
            && (target.key().is_some_and(|k| tests.contains_key(&k))
                || target
                    .resolved_key()
                    .is_some_and(|k| tests.contains_key(&k)))
    }

    /// The verification with `id`, as a reader sees it now
    /// ([`Verification::seen_at`]).
    ///
    /// # Errors
    /// The store's error.
    pub async fn verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .store
            .verifications
            .verification(id)
            .await?
            .filter(|v| v.purge_at() > now)
            .map(|v| v.seen_at(now)))
    }

    /// The latest verification sent to `destination`, as a reader sees it
    /// now.
    ///
    /// # Errors
    /// The store's error.
    pub async fn latest_verification(
        &self,
        destination: &Destination,
    ) -> Result<Option<Verification>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .store
            .verifications
            .latest_verification(&destination.key())
            .await?
            .filter(|v| v.purge_at() > now)
            .map(|v| v.seen_at(now)))
    }

    /// Cancels a pending verification; its code dies at once.
    ///
    /// # Errors
    /// The store's error.
    pub async fn cancel(
        &self,
        id: &VerificationId,
    ) -> Result<crate::verification::CancelOutcome, StoreError> {
        use crate::verification::CancelOutcome;
        let now = self.clock.now();
        Ok(
            match self
                .store
                .verifications
                .cancel_verification(id, now)
                .await?
            {
                CancelOutcome::AlreadyEnded(v) if v.purge_at() <= now => CancelOutcome::NotFound,
                CancelOutcome::AlreadyEnded(v) => CancelOutcome::AlreadyEnded(v.seen_at(now)),
                other => other,
            },
        )
    }

    /// Starts a request under an app's `Idempotency-Key`. `scope` names
    /// the operation and the key; `parts` are the request as the operation
    /// read it. Held for [`IDEMPOTENCY_LEASE_MS`] unless ended.
    ///
    /// # Errors
    /// The store's error.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        parts: &[&[u8]],
    ) -> Result<(IdempotencyBegin, [u8; 32]), StoreError> {
        let fingerprint = self.hasher.fingerprint(parts);
        let claim = IdempotencyClaim {
            key: scope,
            fingerprint: &fingerprint,
            lease_ms: IDEMPOTENCY_LEASE_MS,
        };
        let begin = self
            .store
            .idempotency
            .idempotency_begin(claim, self.clock.now())
            .await?;
        Ok((begin, fingerprint))
    }

    /// Ends a request started with [`OtpService::idempotency_begin`]:
    /// `response` is replayed to the same request for
    /// [`IDEMPOTENCY_TTL_MS`]; `None` frees the key.
    ///
    /// # Errors
    /// The store's error.
    pub async fn idempotency_end(
        &self,
        scope: &str,
        fingerprint: &[u8; 32],
        response: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let answer = IdempotencyAnswer {
            key: scope,
            fingerprint,
            response,
            ttl_ms: IDEMPOTENCY_TTL_MS,
        };
        self.store
            .idempotency
            .idempotency_end(answer, self.clock.now())
            .await
    }

    /// The service's clock, now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the store answers.
    ///
    /// # Errors
    /// The store's error.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.codes.ping().await
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fraud_tests.rs"]
mod fraud_tests;
