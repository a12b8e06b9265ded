//! WhatsApp's SMS fallback (`whatsapp.fallback = "sms"`), at send time and
//! after a status report, and the reports themselves.
//!
//! When WhatsApp cannot take a code, the same code goes out by SMS under
//! the SMS channel's country rules and hourly budget, through its
//! providers. The verification keeps its id and channel and gets every
//! delivery, in order; the code stays the WhatsApp channel's (checked on
//! `/whatsapp/check`).
//!
//! WhatsApp can also accept a message and report later that it failed
//! (Meta's status webhook, `failed` with 131026: the number cannot get
//! WhatsApp messages). For that, a WhatsApp send with the fallback on
//! keeps its code sealed in the verification ([`crate::digest::SealedCode`]):
//! the first report other than `sent` takes it out of the store, and a
//! `failed` one that says the number is unreachable opens it and sends it
//! by SMS once.

use super::{
    attempts_of, message_locale, template, AttemptOutcome, Channel, DeliveryAttempt, DeliveryError,
    Destination, HitOutcome, Lifetime, Limit, LocaleTag, OtpService, OutgoingMessage, Phone,
    Refusal, SendError, Staged, StoreError, VerificationId,
};
use crate::ports::Delivered;
use crate::verification::{DeliveryReport, ReportOutcome, ReportUpdate};

/// What a status report did ([`OtpService::delivery_report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportEffect {
    /// No verification has a delivery with that message id: ignored.
    Unknown,
    /// A report the delivery had already: nothing changed.
    Unchanged,
    /// Recorded on the delivery, with its event.
    Recorded,
    /// Recorded, and the code went out by SMS.
    FellBack,
    /// Recorded; the SMS fallback was due but SMS refused or failed, so
    /// the verification ended as `failed`.
    FallbackFailed,
}

/// What the SMS channel did with a code WhatsApp could not take.
enum SmsFallback {
    /// SMS may not take it now (country rules, hourly budget).
    Refused,
    /// Handed to the SMS providers.
    Tried(Result<Delivered, DeliveryError>),
}

impl OtpService {
    /// The SMS channel's part: its country rules and hourly budget, then
    /// its providers.
    async fn sms_fallback(
        &self,
        phone: &Phone,
        whatsapp: &OutgoingMessage,
        body: String,
    ) -> Result<SmsFallback, StoreError> {
        let p = &self.policy;
        if p.countries(Channel::Sms)
            .is_some_and(|rules| !rules.permits(phone.calling_code()))
        {
            return Ok(SmsFallback::Refused);
        }
        let mut refused = false;
        for (_, bucket) in p
            .shared_buckets(Channel::Sms, None)
            .into_iter()
            .filter(|(limit, _)| *limit == Limit::Channel)
        {
            match self
                .store
                .codes
                .hit_bucket(&bucket, self.clock.now())
                .await?
            {
                HitOutcome::Counted => {}
                HitOutcome::Full { .. } => refused = true,
            }
        }
        if refused {
            return Ok(SmsFallback::Refused);
        }
        let sms = OutgoingMessage {
            destination: Destination::Sms(phone.clone()),
            subject: None,
            body,
            code: whatsapp.code.clone(),
            locale: whatsapp.locale.clone(),
            verification: whatsapp.verification,
        };
        Ok(SmsFallback::Tried(
            self.senders.get(Channel::Sms).send(&sms).await,
        ))
    }

    /// A WhatsApp send with the fallback on: WhatsApp, and SMS when
    /// WhatsApp could not take it (the number is not on WhatsApp, or every
    /// WhatsApp provider failed). When SMS refuses or fails too, the code
    /// is discarded as after any failed delivery.
    pub(super) async fn deliver_or_sms(
        &self,
        staged: &Staged,
        message: &OutgoingMessage,
        sms_body: String,
    ) -> Result<Vec<DeliveryAttempt>, SendError> {
        let first = self.senders.get(Channel::WhatsApp).send(message).await;
        let mut attempts = attempts_of(&first, self.clock.now());
        let Err(whatsapp) = first else {
            return Ok(attempts);
        };
        let Some(phone) = message.destination.phone().cloned() else {
            self.discard(staged, Some(&attempts)).await;
            return Err(Refusal::Delivery(whatsapp).into());
        };
        let second = match self.sms_fallback(&phone, message, sms_body).await {
            Ok(SmsFallback::Tried(second)) => second,
            Ok(SmsFallback::Refused) => {
                tracing::warn!(
                    to = %phone.masked(),
                    "WhatsApp could not deliver and the SMS fallback is not allowed for this number now"
                );
                self.discard(staged, Some(&attempts)).await;
                return Err(Refusal::Delivery(whatsapp).into());
            }
            Err(e) => {
                self.discard(staged, Some(&attempts)).await;
                return Err(e.into());
            }
        };
        tracing::info!(to = %phone.masked(), reason = %whatsapp.reason, "WhatsApp could not deliver: the code went to SMS");
        attempts.extend(attempts_of(&second, self.clock.now()));
        match second {
            Ok(_) => Ok(attempts),
            Err(e) => {
                self.discard(staged, Some(&attempts)).await;
                Err(Refusal::Delivery(e).into())
            }
        }
    }

    /// A provider's later report on a message of verification `id` (the
    /// WhatsApp status webhook), recorded on its delivery with an
    /// `otpd.delivery.updated` event; a replay changes nothing.
    /// `unreachable` says the provider found the number cannot get its
    /// messages (Meta's 131026): with `whatsapp.fallback = "sms"` and the
    /// verification still pending, its code then goes out by SMS, once.
    ///
    /// # Errors
    /// The store's error (the caller answers so the provider retries).
    pub async fn delivery_report(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        unreachable: bool,
    ) -> Result<ReportEffect, StoreError> {
        let now = self.clock.now();
        let (verification, sealed) = match self
            .store
            .verifications
            .report_delivery(id, update, now)
            .await?
        {
            ReportOutcome::Unknown => return Ok(ReportEffect::Unknown),
            ReportOutcome::Unchanged => return Ok(ReportEffect::Unchanged),
            ReportOutcome::Recorded {
                verification,
                sealed,
            } => (verification, sealed),
        };
        let due = unreachable
            && update.report == DeliveryReport::Failed
            && self.policy.whatsapp_fallback_sms
            && verification.channel == Channel::WhatsApp
            && verification.clone().seen_at(now).is_pending();
        if !due {
            return Ok(ReportEffect::Recorded);
        }
        let code = sealed.and_then(|s| self.hasher.open(id.as_bytes(), &s));
        let phone = Phone::parse(&verification.destination).ok();
        let (Some(code), Some(phone)) = (code, phone) else {
            // Sent before the fallback was on, or by another secret.
            tracing::warn!(verification = %id, "WhatsApp reports a failure, and the code cannot go by SMS: it was not kept for a fallback");
            return Ok(ReportEffect::Recorded);
        };
        // The store no longer has the sealed code: from here on, the code
        // goes out by SMS or dies, whatever fails (a retried report is a
        // replay and cannot come back here).
        let staged = Staged::Code {
            key: verification.code_key(),
            digest: self.hasher.code(&verification.code_key(), &code),
        };
        let failure = match self
            .resend_by_sms(id, &verification, phone.clone(), code, now)
            .await
        {
            Ok(None) => return Ok(ReportEffect::FellBack),
            Ok(Some(attempts)) => Ok(attempts),
            Err(e) => Err(e),
        };
        tracing::warn!(to = %phone.masked(), verification = %id, "WhatsApp reported the number unreachable and SMS could not take the code: the verification fails");
        let attempts = match &failure {
            Ok(attempts) => attempts.clone(),
            Err(_) => vec![
                DeliveryAttempt::new("sms", AttemptOutcome::Failed, self.clock.now())
                    .error("the SMS fallback was interrupted by a store error"),
            ],
        };
        self.discard(&staged, Some(&attempts)).await;
        failure.map(|_| ReportEffect::FallbackFailed)
    }

    /// The SMS part of [`OtpService::delivery_report`]: `None` when SMS
    /// took the code (recorded on the verification), else the attempts
    /// that failed.
    async fn resend_by_sms(
        &self,
        id: &VerificationId,
        verification: &crate::verification::Verification,
        phone: Phone,
        code: crate::types::Code,
        now: crate::ports::Timestamp,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        // A WhatsApp send with a report is a Cloud API send, whose text
        // WhatsApp fixes (a request's own `message` was refused): the SMS
        // gets the locale's text.
        let locale = verification
            .locale
            .as_deref()
            .and_then(|raw| LocaleTag::parse(raw).ok())
            .and_then(|tag| self.policy.locales.resolve(&tag))
            .unwrap_or_else(|| {
                self.policy
                    .locales
                    .for_region(verification.country.as_deref())
            });
        // The text says how long the code is good for: what is left of it
        // (at least a second: the verification is pending).
        let left = verification
            .expires_at
            .saturating_sub(now)
            .div_ceil(1000)
            .clamp(1, u64::from(u32::MAX));
        let lifetime = Lifetime::parse(i64::try_from(left).unwrap_or(1), 1, u32::MAX)
            .map_err(|_| StoreError::Corrupt("a remaining lifetime out of range".into()))?;
        let whatsapp = OutgoingMessage {
            destination: Destination::WhatsApp(phone.clone()),
            subject: None,
            body: String::new(),
            code: code.clone(),
            locale: Some(message_locale(locale)),
            verification: Some(*id),
        };
        let body = template::render(&locale.templates.sms, &code, lifetime);
        Ok(match self.sms_fallback(&phone, &whatsapp, body).await? {
            SmsFallback::Tried(result) => {
                let attempts = attempts_of(&result, self.clock.now());
                if result.is_ok() {
                    tracing::info!(to = %phone.masked(), verification = %id, "WhatsApp reported the number unreachable: the code went to SMS");
                    self.record_delivery(id, &attempts, None).await;
                    None
                } else {
                    Some(attempts)
                }
            }
            SmsFallback::Refused => Some(vec![DeliveryAttempt::new(
                "sms",
                AttemptOutcome::Failed,
                self.clock.now(),
            )
            .error("the SMS fallback is not allowed for this number now")]),
        })
    }
}
