//! `OtpService`: the one place that owns the rules. Handlers parse input
//! into domain types and call it; they never re-implement a rule.

use std::sync::Arc;

use crate::codes::normalize_pairing;
use crate::digest::CodeHasher;
use std::collections::HashMap;

use crate::error::{CheckError, PairError, ParseError, SendError, StoreError, TargetError};
use crate::ports::{
    CheckOutcome, Clock, CodeGenerator, CodeRecord, CodeStore, HitOutcome, OutgoingMessage,
    PairingOutcome, PutOutcome, RateBucket, Sender, TakeOutcome, Timestamp,
};
use crate::template::{self, PASSWORD};
use crate::types::{Channel, ChatId, Code, Destination, Lifetime, Region};

/// Default texts per channel, used when a request carries none.
#[derive(Debug, Clone)]
pub struct Templates {
    pub sms: String,
    pub call: String,
    pub email_subject: String,
    pub email_text: String,
    pub telegram: String,
    /// What the bot answers a user who messages it.
    pub pairing: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            sms: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            call: "Your code is {password}.".into(),
            email_subject: "Your verification code".into(),
            email_text: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            telegram: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            pairing: "Your code is {password}. Enter it in the app within {lifetime} seconds."
                .into(),
        }
    }
}

/// Which country calling codes a phone channel may send to. An empty
/// allow list allows every code not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountryRules {
    pub allow: Vec<u16>,
    pub deny: Vec<u16>,
}

impl CountryRules {
    pub fn permits(&self, calling_code: u16) -> bool {
        !self.deny.contains(&calling_code)
            && (self.allow.is_empty() || self.allow.contains(&calling_code))
    }
}

/// Sends per hour per channel, across all destinations: a cost cap
/// against SMS pumping. 0 turns a channel's cap off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelBudget {
    pub sms: u32,
    pub call: u32,
    pub email: u32,
    pub telegram: u32,
}

impl ChannelBudget {
    fn get(&self, channel: Channel) -> u32 {
        match channel {
            Channel::Sms => self.sms,
            Channel::Call => self.call,
            Channel::Email => self.email,
            Channel::Telegram => self.telegram,
        }
    }
}

impl Default for ChannelBudget {
    fn default() -> Self {
        ChannelBudget {
            sms: 1000,
            call: 200,
            email: 5000,
            telegram: 5000,
        }
    }
}

/// Every tunable rule. The server fills it from config.
#[derive(Debug, Clone)]
pub struct Policy {
    pub lifetime_default: u32,
    pub lifetime_min: u32,
    pub lifetime_max: u32,
    /// Digits of a generated code, 4 to 10.
    pub code_length: usize,
    /// Failed checks after which a code is locked.
    pub max_attempts: u32,
    /// Minimum seconds between two sends to one destination; 0 turns it off.
    pub cooldown_secs: u64,
    /// At most this many sends to one destination per `send_window_secs`;
    /// 0 turns it off.
    pub sends_per_window: u32,
    pub send_window_secs: u64,
    /// At most this many sends per end-user key (the app passes one) per
    /// `user_send_window_secs`; 0 turns it off.
    pub user_sends_per_window: u32,
    pub user_send_window_secs: u64,
    /// Global hourly caps per channel.
    pub channel_budget: ChannelBudget,
    /// Failed `/target` lookups per end-user key per
    /// `target_failure_window_secs`; 0 turns it off.
    pub target_failures_per_window: u32,
    pub target_failure_window_secs: u64,
    /// Region for phones given without a country code; `None` accepts
    /// international numbers only.
    pub default_region: Option<Region>,
    pub sms_countries: CountryRules,
    pub call_countries: CountryRules,
    /// Destinations (by store key) with a fixed code that is never sent,
    /// for app-store review and QA.
    pub test_destinations: HashMap<String, Code>,
    /// How long a Telegram pairing code lives.
    pub pairing_lifetime: u32,
    pub templates: Templates,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lifetime_default: 300,
            lifetime_min: 30,
            lifetime_max: 86_400,
            code_length: 6,
            max_attempts: 5,
            cooldown_secs: 30,
            sends_per_window: 5,
            send_window_secs: 600,
            user_sends_per_window: 10,
            user_send_window_secs: 3600,
            channel_budget: ChannelBudget::default(),
            target_failures_per_window: 10,
            target_failure_window_secs: 600,
            default_region: None,
            sms_countries: CountryRules::default(),
            call_countries: CountryRules::default(),
            test_destinations: HashMap::new(),
            pairing_lifetime: 300,
            templates: Templates::default(),
        }
    }
}

/// Per-channel message length limits: what providers accept in one message.
fn body_limit(channel: Channel) -> (&'static str, usize) {
    match channel {
        Channel::Sms => ("message", 1600),
        Channel::Call => ("message", 1600),
        Channel::Email => ("text", 4096),
        Channel::Telegram => ("message", 4096),
    }
}

const SUBJECT_LIMIT: usize = 255;

impl Policy {
    /// Checks the policy itself, once at start.
    ///
    /// # Errors
    /// A message naming the setting that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(4..=10).contains(&self.code_length) {
            return Err("code_length must be 4 to 10".into());
        }
        if self.lifetime_min == 0 || self.lifetime_min > self.lifetime_max {
            return Err("lifetime min must be at least 1 and at most max".into());
        }
        if !(self.lifetime_min..=self.lifetime_max).contains(&self.lifetime_default) {
            return Err("the default lifetime must lie between min and max".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        for (limit, window, name) in [
            (
                self.sends_per_window,
                self.send_window_secs,
                "send_window_secs",
            ),
            (
                self.user_sends_per_window,
                self.user_send_window_secs,
                "user_send_window_secs",
            ),
            (
                self.target_failures_per_window,
                self.target_failure_window_secs,
                "target_failure_window_secs",
            ),
        ] {
            if limit > 0 && window == 0 {
                return Err(format!("{name} must be at least 1 when its limit is set"));
            }
        }
        if self.pairing_lifetime == 0 {
            return Err("pairing lifetime must be at least 1".into());
        }
        let t = &self.templates;
        for (name, text) in [
            ("sms", &t.sms),
            ("call", &t.call),
            ("email text", &t.email_text),
            ("telegram", &t.telegram),
            ("pairing", &t.pairing),
        ] {
            if !text.contains(PASSWORD) {
                return Err(format!("the {name} template must contain {PASSWORD}"));
            }
        }
        Ok(())
    }

    fn template(&self, channel: Channel) -> &str {
        match channel {
            Channel::Sms => &self.templates.sms,
            Channel::Call => &self.templates.call,
            Channel::Email => &self.templates.email_text,
            Channel::Telegram => &self.templates.telegram,
        }
    }

    fn countries(&self, channel: Channel) -> Option<&CountryRules> {
        match channel {
            Channel::Sms => Some(&self.sms_countries),
            Channel::Call => Some(&self.call_countries),
            Channel::Email | Channel::Telegram => None,
        }
    }

    /// The limits that span destinations: per end user and per channel.
    /// Each is its own bucket (on Redis Cluster, its own slot).
    fn shared_buckets(&self, channel: Channel, user_key: Option<&str>) -> Vec<RateBucket> {
        let mut buckets = Vec::with_capacity(2);
        if let Some(user) = user_key.filter(|_| self.user_sends_per_window > 0) {
            buckets.push(RateBucket {
                key: format!("user:{user}"),
                limit: self.user_sends_per_window,
                window_ms: self.user_send_window_secs * 1000,
            });
        }
        let budget = self.channel_budget.get(channel);
        if budget > 0 {
            buckets.push(RateBucket {
                key: format!("channel:{channel}"),
                limit: budget,
                window_ms: 3_600_000,
            });
        }
        buckets
    }

    /// The buckets a send to `key` must fit in.
    fn send_buckets(&self, key: &str) -> Vec<RateBucket> {
        let mut buckets = Vec::with_capacity(2);
        if self.cooldown_secs > 0 {
            buckets.push(RateBucket {
                key: format!("cooldown:{key}"),
                limit: 1,
                window_ms: self.cooldown_secs * 1000,
            });
        }
        if self.sends_per_window > 0 {
            buckets.push(RateBucket {
                key: format!("sends:{key}"),
                limit: self.sends_per_window,
                window_ms: self.send_window_secs * 1000,
            });
        }
        buckets
    }
}

/// The senders of the four channels.
#[derive(Clone)]
pub struct Senders {
    pub sms: Arc<dyn Sender>,
    pub call: Arc<dyn Sender>,
    pub email: Arc<dyn Sender>,
    pub telegram: Arc<dyn Sender>,
}

impl Senders {
    fn get(&self, channel: Channel) -> &dyn Sender {
        match channel {
            Channel::Sms => self.sms.as_ref(),
            Channel::Call => self.call.as_ref(),
            Channel::Email => self.email.as_ref(),
            Channel::Telegram => self.telegram.as_ref(),
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
}

/// What a successful send reports. It never carries the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReceipt {
    pub channel: Channel,
    pub lifetime: Lifetime,
    pub expires_at: Timestamp,
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

pub struct OtpService {
    store: Arc<dyn CodeStore>,
    senders: Senders,
    clock: Arc<dyn Clock>,
    codes: Arc<dyn CodeGenerator>,
    hasher: CodeHasher,
    policy: Policy,
}

impl OtpService {
    pub fn new(
        store: Arc<dyn CodeStore>,
        senders: Senders,
        clock: Arc<dyn Clock>,
        codes: Arc<dyn CodeGenerator>,
        hasher: CodeHasher,
        policy: Policy,
    ) -> Self {
        OtpService {
            store,
            senders,
            clock,
            codes,
            hasher,
            policy,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Stores a new code for the destination (replacing any earlier one)
    /// and delivers it. When delivery fails the new code is removed again,
    /// so no code that nobody received stays checkable.
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
        let template = req.message.as_deref().unwrap_or(p.template(channel));
        if req.password.is_none() && !template.contains(PASSWORD) {
            return Err(SendError::MessageWithoutCode);
        }
        let (field, max) = body_limit(channel);
        if template.chars().count() > max {
            return Err(SendError::TooLong { field, max });
        }
        let subject = match channel {
            Channel::Email => {
                let s = req.subject.as_deref().unwrap_or(&p.templates.email_subject);
                if s.contains(['\r', '\n']) {
                    return Err(SendError::MultilineSubject);
                }
                if s.chars().count() > SUBJECT_LIMIT {
                    return Err(SendError::TooLong {
                        field: "subject",
                        max: SUBJECT_LIMIT,
                    });
                }
                Some(s)
            }
            _ => None,
        };

        if let (Some(rules), Destination::Sms(phone) | Destination::Call(phone)) =
            (p.countries(channel), &req.destination)
        {
            if !rules.permits(phone.calling_code()) {
                return Err(SendError::DestinationNotAllowed);
            }
        }
        let test_code = p.test_destinations.get(&req.destination.key()).cloned();
        let code = match (test_code.clone(), req.password) {
            (Some(code), _) => code,
            (None, Some(code)) => code,
            (None, None) => self.codes.numeric(p.code_length),
        };
        let message = OutgoingMessage {
            subject: subject.map(|s| template::render(s, &code, lifetime)),
            body: template::render(template, &code, lifetime),
            destination: req.destination,
        };
        let key = message.destination.key();
        let now = self.clock.now();
        let record = CodeRecord {
            digest: self.hasher.code(&key, &code),
            expires_at: now + lifetime.millis(),
            attempts: 0,
            max_attempts: p.max_attempts,
        };
        if test_code.is_some() {
            // A test destination: fixed code, no limits, never delivered.
            self.store.put_code(&key, record, &[], now).await?;
            tracing::warn!(
                %channel,
                destination = %message.destination.masked(),
                "TEST destination: fixed code stored, nothing sent"
            );
            return Ok(SendReceipt {
                channel,
                lifetime,
                expires_at: record.expires_at,
            });
        }
        match self
            .store
            .put_code(&key, record, &p.send_buckets(&key), now)
            .await?
        {
            PutOutcome::Stored => {}
            PutOutcome::RateLimited { retry_after_ms } => {
                return Err(SendError::RateLimited {
                    retry_after_secs: ceil_secs(retry_after_ms),
                })
            }
        }
        // Limits across destinations count only sends that passed the
        // destination's own limits, so hammering one destination cannot
        // use up a user's or the channel's budget. Each is its own store
        // call (on Redis Cluster, its own slot); a full one discards the
        // code just stored.
        for bucket in p.shared_buckets(channel, req.user_key.as_deref()) {
            let hit = match self.store.hit_bucket(&bucket, now).await {
                Ok(hit) => hit,
                Err(e) => {
                    self.discard(&key, &record.digest).await;
                    return Err(e.into());
                }
            };
            if let HitOutcome::Full { retry_after_ms } = hit {
                self.discard(&key, &record.digest).await;
                return Err(SendError::RateLimited {
                    retry_after_secs: ceil_secs(retry_after_ms),
                });
            }
        }
        if let Err(e) = self.senders.get(channel).send(&message).await {
            self.discard(&key, &record.digest).await;
            return Err(SendError::Delivery(e));
        }
        Ok(SendReceipt {
            channel,
            lifetime,
            expires_at: record.expires_at,
        })
    }

    /// Removes a code that will not be delivered. If that fails too, the
    /// code is unknown to everyone and expires on its own.
    async fn discard(&self, key: &str, digest: &crate::digest::CodeDigest) {
        if let Err(e) = self.store.discard_code(key, digest).await {
            tracing::error!(
                error = %e,
                "could not remove an undelivered code; it expires on its own"
            );
        }
    }

    /// Checks and, on a match, consumes the destination's code.
    ///
    /// # Errors
    /// `Mismatch`, `NotFound`, `Locked` or `Store`, as [`CheckError`].
    pub async fn check(&self, req: CheckRequest) -> Result<(), CheckError> {
        let key = req.destination.key();
        let digest = self.hasher.code(&key, &req.password);
        match self
            .store
            .check_code(&key, &digest, self.clock.now())
            .await?
        {
            CheckOutcome::Approved => Ok(()),
            CheckOutcome::Mismatch { attempts_left } => Err(CheckError::Mismatch { attempts_left }),
            CheckOutcome::Locked => Err(CheckError::Locked),
            CheckOutcome::NotFound => Err(CheckError::NotFound),
        }
    }

    /// The Telegram bot flow: a user messaged the bot from `chat`, so hand
    /// that chat a fresh pairing code, replacing its earlier one.
    ///
    /// # Errors
    /// `RateLimited` when the chat asked too often, `Delivery`, `Store`.
    pub async fn start_pairing(&self, chat: ChatId) -> Result<(), PairError> {
        let p = &self.policy;
        let lifetime = Lifetime::parse(
            i64::from(p.pairing_lifetime),
            p.pairing_lifetime,
            p.pairing_lifetime,
        )
        .map_err(|_| PairError::Exhausted)?;
        let key = Destination::Telegram(chat).key();
        let buckets = p.send_buckets(&format!("pairing:{key}"));
        // The bot's replies are Telegram sends too: they count against the
        // channel's hourly budget.
        for bucket in p.shared_buckets(Channel::Telegram, None) {
            if let HitOutcome::Full { retry_after_ms } =
                self.store.hit_bucket(&bucket, self.clock.now()).await?
            {
                return Err(PairError::RateLimited {
                    retry_after_secs: ceil_secs(retry_after_ms),
                });
            }
        }
        // 40-bit codes collide with an active one about never; a few tries
        // make "about" into "never" for any realistic number of chats.
        for _ in 0..5 {
            let code = self.codes.pairing();
            let digest = self.hasher.pairing(&code);
            let now = self.clock.now();
            let outcome = self
                .store
                .put_pairing(chat, &digest, now + lifetime.millis(), &buckets, now)
                .await?;
            match outcome {
                PairingOutcome::Collision => continue,
                PairingOutcome::RateLimited { retry_after_ms } => {
                    return Err(PairError::RateLimited {
                        retry_after_secs: ceil_secs(retry_after_ms),
                    })
                }
                PairingOutcome::Stored => {}
            }
            let message = OutgoingMessage {
                destination: Destination::Telegram(chat),
                subject: None,
                body: template::render(&p.templates.pairing, &code, lifetime),
            };
            if let Err(e) = self.senders.telegram.send(&message).await {
                if let Err(discard) = self.store.discard_pairing(&digest).await {
                    tracing::error!(
                        chat = %chat.masked(),
                        error = %discard,
                        "could not remove the pairing of a failed delivery; it expires on its own"
                    );
                }
                return Err(PairError::Delivery(e));
            }
            return Ok(());
        }
        Err(PairError::Exhausted)
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

    /// Parses a request's address, with the policy's default region for
    /// phones.
    ///
    /// # Errors
    /// The address's [`ParseError`].
    pub fn destination(&self, channel: Channel, address: &str) -> Result<Destination, ParseError> {
        Destination::parse_in(channel, address, self.policy.default_region)
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
            self.store.hit_bucket(&bucket, self.clock.now()).await?,
            HitOutcome::Counted
        ))
    }

    /// Whether the store answers.
    ///
    /// # Errors
    /// The store's error.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
