//! Verifications: what an app can follow of a send after it answered.
//!
//! Every send creates a [`Verification`] with an unguessable
//! [`VerificationId`]. Its [`Status`] changes in the same atomic store step
//! as the code change that causes it (approve-and-consume, lock, replace,
//! discard, expiry), and each change, like each failed delivery, is written
//! in that same step as a [`StoredEvent`] to the store's outbox, from which
//! the server delivers it to the configured sinks.
//!
//! A verification never holds the code in the clear. While WhatsApp's SMS
//! fallback may still need it, it holds the code sealed
//! ([`crate::digest::SealedCode`]), which only otpd can open.
//!
//! The in-process stores apply the transitions below; the Redis store runs
//! the same rules in Lua.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::SealedCode;
use crate::outcome::CheckOutcome;
use crate::time::Timestamp;
pub use crate::types::VerificationId;
use crate::types::{Channel, Destination};

/// Where a verification stands. Every status but `Pending` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    MaxAttemptsReached,
    Expired,
    Canceled,
    Failed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Approved,
        Status::MaxAttemptsReached,
        Status::Expired,
        Status::Canceled,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Expired => "expired",
            Status::Canceled => "canceled",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The event a change to this status produces.
    pub fn event(self) -> EventType {
        match self {
            Status::Pending => EventType::Pending,
            Status::Approved => EventType::Approved,
            Status::MaxAttemptsReached => EventType::MaxAttemptsReached,
            Status::Expired => EventType::Expired,
            Status::Canceled => EventType::Canceled,
            Status::Failed => EventType::Failed,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a verification was canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// `POST /verifications/{id}/cancel`.
    Api,
    /// A new send to the same destination replaced its code.
    Replaced,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Api => "api",
            CancelReason::Replaced => "replaced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(CancelReason::Api),
            "replaced" => Some(CancelReason::Replaced),
            _ => None,
        }
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Failed,
}

/// One delivery attempt: which provider, how it ended, when. `error` is the
/// provider's reason, which never holds a code or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub provider: String,
    pub outcome: AttemptOutcome,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's id of the message (WhatsApp's `wamid.…`), when it
    /// gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// What the provider reported about it later (a status webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<DeliveryReport>,
}

impl DeliveryAttempt {
    /// An attempt `provider` made at `at` that ended as `outcome`.
    pub fn new(provider: impl Into<String>, outcome: AttemptOutcome, at: Timestamp) -> Self {
        DeliveryAttempt {
            provider: provider.into(),
            outcome,
            at,
            error: None,
            message_id: None,
            report: None,
        }
    }

    /// With the provider's reason.
    pub fn error(mut self, reason: impl Into<String>) -> Self {
        self.error = Some(reason.into());
        self
    }
}

/// What a provider reports about a message it took, later (WhatsApp's
/// status webhook). A report counts only when it moves the message on:
/// `sent` → `delivered` → `read`, and `failed` is last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryReport {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryReport {
    pub const ALL: [DeliveryReport; 4] = [
        DeliveryReport::Sent,
        DeliveryReport::Delivered,
        DeliveryReport::Read,
        DeliveryReport::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryReport::Sent => "sent",
            DeliveryReport::Delivered => "delivered",
            DeliveryReport::Read => "read",
            DeliveryReport::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        DeliveryReport::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn rank(self) -> u8 {
        match self {
            DeliveryReport::Sent => 0,
            DeliveryReport::Delivered => 1,
            DeliveryReport::Read => 2,
            DeliveryReport::Failed => 3,
        }
    }
}

/// A provider's report, as the status webhook gives it and a store
/// records it ([`crate::VerificationStore::report_delivery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUpdate {
    pub message_id: String,
    pub report: DeliveryReport,
    /// The provider's reason with a `failed` report (never a code).
    pub error: Option<String>,
}

/// What a store answers to a report: the verification after it, when it
/// changed something.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutcome {
    /// No such verification, or no delivery of it with that message id.
    Unknown,
    /// A replay: nothing changed and no event was written.
    Unchanged,
    /// Recorded with its event: the verification as it is now, and with
    /// a `failed` report the sealed code it held (taken out of the store:
    /// any report but `sent` ends its use).
    Recorded {
        verification: Box<Verification>,
        sealed: Option<SealedCode>,
    },
}

/// The record of one send. It never holds the code in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub id: VerificationId,
    pub channel: Channel,
    /// The normalised address (E.164 phone, email, chat id).
    pub destination: String,
    /// ISO region of a phone number, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The locale its message was written in (a BCP-47 tag); absent on
    /// records from before locales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub status: Status,
    /// Set when `status` is `canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Failed checks so far.
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(default)]
    pub deliveries: Vec<DeliveryAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// How long the record is kept after it ends (ms). Not shown by the
    /// API.
    pub retention_ms: u64,
    /// Events written for this verification so far; numbers the next
    /// event's id. Not shown by the API.
    #[serde(default)]
    pub events: u32,
    /// The code, sealed, while a later resend may need it (WhatsApp's
    /// SMS fallback on a `failed` status report): from the send until the
    /// first report other than `sent`, the end of the verification, or a
    /// delivery without a message id (which no report can name). Never
    /// shown by the API, never in an event's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedCode>,
    /// The service of the Twilio-compatible API (`/v2`, a `VA…` sid)
    /// that sent it, if one did. Such a verification keeps its sealed
    /// code while it is pending, because a repeated create for the same
    /// destination resends the same code (Twilio's reuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Verification {
    /// A new pending verification for a send to `destination`.
    pub fn new(
        id: VerificationId,
        destination: &Destination,
        created_at: Timestamp,
        expires_at: Timestamp,
        max_attempts: u32,
        retention_ms: u64,
    ) -> Self {
        let country = destination
            .phone()
            .and_then(|p| p.region())
            .map(|r| r.as_str().to_owned());
        Self::new_in(
            id,
            destination,
            country,
            created_at,
            expires_at,
            max_attempts,
            retention_ms,
        )
    }

    /// [`Verification::new`] with the phone's region already looked up
    /// (a libphonenumber parse where calling codes are shared).
    #[allow(clippy::too_many_arguments)]
    pub fn new_in(
        id: VerificationId,
        destination: &Destination,
        country: Option<String>,
        created_at: Timestamp,
        expires_at: Timestamp,
        max_attempts: u32,
        retention_ms: u64,
    ) -> Self {
        Verification {
            id,
            channel: destination.channel(),
            destination: destination.address(),
            country,
            locale: None,
            status: Status::Pending,
            reason: None,
            created_at,
            expires_at,
            attempts: 0,
            max_attempts,
            deliveries: Vec::new(),
            ended_at: None,
            retention_ms,
            events: 0,
            sealed: None,
            service: None,
        }
    }

    /// The store key of the destination's code ([`Destination::key`]).
    pub fn code_key(&self) -> String {
        format!("{}:{}", self.channel, self.destination)
    }

    pub fn is_pending(&self) -> bool {
        self.status == Status::Pending
    }

    /// The status as a reader sees it at `now`: a pending verification
    /// past its expiry reads as `expired` even before the sweeper wrote
    /// that (and its event).
    pub fn seen_at(mut self, now: Timestamp) -> Self {
        if self.is_pending() && now >= self.expires_at {
            self.status = Status::Expired;
            self.ended_at = Some(self.expires_at);
        }
        self
    }

    /// When the store may forget the record.
    pub fn purge_at(&self) -> Timestamp {
        self.ended_at
            .unwrap_or(self.expires_at)
            .saturating_add(self.retention_ms)
    }

    /// Ends a pending verification with `status` at `now` and returns the
    /// event that records it. Call only on a pending verification.
    pub fn end(
        &mut self,
        status: Status,
        reason: Option<CancelReason>,
        now: Timestamp,
    ) -> StoredEvent {
        self.status = status;
        self.reason = reason;
        self.ended_at = Some(now);
        // Its code is dead: nothing will resend it.
        self.sealed = None;
        self.event(status.event(), now)
    }

    /// The next event of this verification, with a snapshot of it as it is
    /// now. Numbers the event, so call it once per event.
    pub fn event(&mut self, kind: EventType, now: Timestamp) -> StoredEvent {
        self.events += 1;
        // The outbox keeps a snapshot: without the sealed code, which
        // must live in one place only, to be taken out of it.
        let snapshot = Verification {
            sealed: None,
            ..self.clone()
        };
        StoredEvent {
            id: event_id(&self.id, self.events),
            kind,
            time: now,
            data: EventData::Verification(snapshot),
            tries: 0,
            delivered: Vec::new(),
        }
    }

    /// Records a successful delivery: the attempts, and the `pending`
    /// event.
    ///
    /// A delivery without a provider message id can never get a status
    /// report, so the sealed code goes: only a report would need it,
    /// unless a service's resend may (see [`Verification::service`]).
    pub fn delivered(&mut self, attempts: &[DeliveryAttempt], now: Timestamp) -> StoredEvent {
        self.deliveries.extend_from_slice(attempts);
        if self.service.is_none() && !attempts.iter().any(|a| a.message_id.is_some()) {
            self.sealed = None;
        }
        self.event(EventType::Pending, now)
    }

    /// Records a failed delivery: the attempts, the `delivery.failed`
    /// event, then the end as `failed` and its event.
    pub fn failed(&mut self, attempts: &[DeliveryAttempt], now: Timestamp) -> [StoredEvent; 2] {
        self.deliveries.extend_from_slice(attempts);
        let delivery = self.event(EventType::DeliveryFailed, now);
        let end = self.end(Status::Failed, None, now);
        [delivery, end]
    }

    /// Records one counted wrong check. Returns the `max_attempts_reached`
    /// event when this attempt locked the code.
    pub fn mismatch(&mut self, now: Timestamp) -> Option<StoredEvent> {
        self.attempts = self.attempts.saturating_add(1);
        (self.is_pending() && self.attempts >= self.max_attempts)
            .then(|| self.end(Status::MaxAttemptsReached, None, now))
    }
}

impl Verification {
    /// What a check does to the verification of the code it found, given
    /// the check's outcome; `expired` when the code was found past its
    /// expiry. Returns the event of the change, if the status changed.
    pub fn after_check(
        &mut self,
        outcome: CheckOutcome,
        expired: bool,
        now: Timestamp,
    ) -> Option<StoredEvent> {
        if !self.is_pending() {
            // A locked code's attempts still count nothing; an ended
            // verification never changes again.
            return None;
        }
        match outcome {
            CheckOutcome::Approved => Some(self.end(Status::Approved, None, now)),
            CheckOutcome::Mismatch { .. } => self.mismatch(now),
            CheckOutcome::NotFound if expired => Some(self.end(Status::Expired, None, now)),
            CheckOutcome::NotFound | CheckOutcome::Locked => None,
        }
    }

    /// Records a provider's `update` on the delivery with its message id
    /// (see [`DeliveryReport`] for which reports count). Any report but
    /// `sent` takes the sealed code out: the message reached the person,
    /// or failed and the fallback gets its one chance.
    ///
    /// Answers as a store does, with the event to write (none unless it
    /// changed something).
    pub fn reported(
        &mut self,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> (ReportOutcome, Option<StoredEvent>) {
        let Some(attempt) = self
            .deliveries
            .iter_mut()
            .find(|a| a.message_id.as_deref() == Some(update.message_id.as_str()))
        else {
            return (ReportOutcome::Unknown, None);
        };
        if attempt
            .report
            .is_some_and(|had| had.rank() >= update.report.rank())
        {
            return (ReportOutcome::Unchanged, None);
        }
        attempt.report = Some(update.report);
        if update.error.is_some() {
            attempt.error.clone_from(&update.error);
        }
        let sealed = match update.report {
            DeliveryReport::Sent => None,
            DeliveryReport::Failed => self.sealed.take(),
            // A service's resend still needs it (Verification::service).
            DeliveryReport::Delivered | DeliveryReport::Read if self.service.is_some() => None,
            DeliveryReport::Delivered | DeliveryReport::Read => {
                self.sealed = None;
                None
            }
        };
        let event = self.event(EventType::DeliveryUpdated, now);
        let outcome = ReportOutcome::Recorded {
            verification: Box::new(self.clone()),
            sealed,
        };
        (outcome, Some(event))
    }

    /// A new send replaced this verification's code.
    pub fn replaced(&mut self, now: Timestamp) -> Option<StoredEvent> {
        self.is_pending()
            .then(|| self.end(Status::Canceled, Some(CancelReason::Replaced), now))
    }
}

/// An event's id: the verification's id and the event's number within it,
/// so ids are unique without coordination, and a redelivery carries the
/// same one (it is the `webhook-id`).
pub fn event_id(id: &VerificationId, n: u32) -> String {
    format!(
        "evt_{}_{n}",
        &id.to_string()[VerificationId::PREFIX.len()..]
    )
}

/// The CloudEvents `type` of each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "otpd.verification.pending")]
    Pending,
    #[serde(rename = "otpd.verification.approved")]
    Approved,
    #[serde(rename = "otpd.verification.max_attempts_reached")]
    MaxAttemptsReached,
    #[serde(rename = "otpd.verification.expired")]
    Expired,
    #[serde(rename = "otpd.verification.canceled")]
    Canceled,
    #[serde(rename = "otpd.verification.failed")]
    Failed,
    #[serde(rename = "otpd.delivery.failed")]
    DeliveryFailed,
    #[serde(rename = "otpd.delivery.updated")]
    DeliveryUpdated,
    #[serde(rename = "otpd.fraud.prefix_blocked")]
    PrefixBlocked,
    #[serde(rename = "otpd.fraud.prefix_unblocked")]
    PrefixUnblocked,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::Pending,
        EventType::Approved,
        EventType::MaxAttemptsReached,
        EventType::Expired,
        EventType::Canceled,
        EventType::Failed,
        EventType::DeliveryFailed,
        EventType::DeliveryUpdated,
        EventType::PrefixBlocked,
        EventType::PrefixUnblocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Pending => "otpd.verification.pending",
            EventType::Approved => "otpd.verification.approved",
            EventType::MaxAttemptsReached => "otpd.verification.max_attempts_reached",
            EventType::Expired => "otpd.verification.expired",
            EventType::Canceled => "otpd.verification.canceled",
            EventType::Failed => "otpd.verification.failed",
            EventType::DeliveryFailed => "otpd.delivery.failed",
            EventType::DeliveryUpdated => "otpd.delivery.updated",
            EventType::PrefixBlocked => "otpd.fraud.prefix_blocked",
            EventType::PrefixUnblocked => "otpd.fraud.prefix_unblocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventData {
    /// The verification as it was right after the change.
    Verification(Verification),
    /// A fraud-guard block of a number prefix, as it was blocked.
    Block(crate::fraud::Block),
}

/// An event in the store's outbox, until every sink has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub time: Timestamp,
    pub data: EventData,
    /// Delivery rounds tried so far.
    #[serde(default)]
    pub tries: u32,
    /// Names of the sinks that have it already.
    #[serde(default)]
    pub delivered: Vec<String>,
}

impl StoredEvent {
    /// The verification an event is about, if it is about one.
    pub fn verification(&self) -> Option<&Verification> {
        match &self.data {
            EventData::Verification(v) => Some(v),
            EventData::Block(_) => None,
        }
    }

    /// The fraud guard's event that a prefix was blocked
    /// (`unblocked: false`) or that its block ended. Its id names the
    /// prefix and the block's start, so every instance that would write it
    /// writes the same id. An end is dated when the block ended: at its
    /// `until` when it expired, however late a sweep or the prefix's next
    /// block writes it (so it reads before that next block's event); at
    /// `now` when it is lifted early.
    pub fn fraud(block: &crate::fraud::Block, unblocked: bool, now: Timestamp) -> StoredEvent {
        let (kind, what, time) = if unblocked {
            (
                EventType::PrefixUnblocked,
                "unblocked",
                now.min(block.until),
            )
        } else {
            (EventType::PrefixBlocked, "blocked", now)
        };
        StoredEvent {
            id: format!("evt_fraud_{}_{}_{what}", block.prefix, block.since),
            kind,
            time,
            data: EventData::Block(block.clone()),
            tries: 0,
            delivered: Vec::new(),
        }
    }
}

/// What the dispatcher reports back for a claimed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSettle {
    /// Every sink has it (or gave up on it): remove it from the outbox.
    Done,
    /// Some sink still needs it: try again at `at`, skipping the sinks in
    /// `delivered`.
    Retry {
        at: Timestamp,
        delivered: Vec<String>,
    },
}

/// The answer to cancelling a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was pending; now it is canceled and its code is gone.
    Canceled(Verification),
    /// It had ended already; nothing changed.
    AlreadyEnded(Verification),
    NotFound,
}

/// The answer to starting a request under an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is new (or its earlier holder gave it up): go ahead, then
    /// call `idempotency_end`.
    Started,
    /// A request with this key and the same fingerprint is running.
    InProgress,
    /// A request with this key and the same fingerprint finished: its
    /// stored response.
    Replay(Vec<u8>),
    /// The key was used with another fingerprint.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> VerificationId {
        VerificationId::from_bytes([0xab; 16])
    }

    #[test]
    fn ids_print_and_parse_back() {
        let s = id().to_string();
        assert_eq!(s, format!("vrf_{}", "ab".repeat(16)));
        assert_eq!(VerificationId::parse(&s), Some(id()));
        assert_eq!(VerificationId::parse(&s.to_uppercase()), None);
        assert_eq!(VerificationId::parse("vrf_abc"), None);
        assert_eq!(
            VerificationId::parse(&format!("vrf_{}", "zz".repeat(16))),
            None
        );
        assert_eq!(
            VerificationId::parse(&format!("vrf_{}é", "a".repeat(30))),
            None
        );
    }

    fn pending() -> Verification {
        let d = Destination::parse(Channel::Sms, "+77011234567").expect("phone");
        Verification::new(id(), &d, 1_000, 61_000, 2, 86_400_000)
    }

    #[test]
    fn a_new_verification_is_pending_with_its_country() {
        let v = pending();
        assert_eq!(v.status, Status::Pending);
        assert_eq!(v.country.as_deref(), Some("KZ"));
        assert_eq!(v.destination, "+77011234567");
        assert_eq!(v.purge_at(), 61_000 + 86_400_000);
    }

    #[test]
    fn events_are_numbered_and_carry_a_snapshot() {
        let mut v = pending();
        let first = v.delivered(&[], 2_000);
        assert_eq!(first.kind, EventType::Pending);
        assert_eq!(first.id, format!("evt_{}_1", "ab".repeat(16)));
        assert_eq!(v.mismatch(3_000), None);
        let locked = v.mismatch(4_000).expect("the second wrong check locks");
        assert_eq!(locked.kind, EventType::MaxAttemptsReached);
        assert_eq!(locked.id, format!("evt_{}_2", "ab".repeat(16)));
        let snapshot = locked.verification().expect("a verification event");
        assert_eq!(snapshot.attempts, 2);
        assert_eq!(snapshot.ended_at, Some(4_000));
        assert_eq!(v.purge_at(), 4_000 + 86_400_000);
    }

    #[test]
    fn a_failed_delivery_gives_two_events() {
        let mut v = pending();
        let attempt = DeliveryAttempt {
            provider: "twilio".into(),
            outcome: AttemptOutcome::Failed,
            at: 1_500,
            error: Some("HTTP 500".into()),
            message_id: None,
            report: None,
        };
        let [delivery, end] = v.failed(std::slice::from_ref(&attempt), 1_500);
        assert_eq!(delivery.kind, EventType::DeliveryFailed);
        assert_eq!(end.kind, EventType::Failed);
        assert_eq!(
            end.verification().map(|v| v.deliveries.clone()),
            Some(vec![attempt])
        );
        assert_eq!(v.status, Status::Failed);
    }

    #[test]
    fn a_reader_sees_an_overdue_pending_verification_as_expired() {
        let v = pending().seen_at(61_000);
        assert_eq!(v.status, Status::Expired);
        assert_eq!(v.ended_at, Some(61_000));
        assert_eq!(pending().seen_at(60_999).status, Status::Pending);
    }

    #[test]
    fn the_stored_form_round_trips_and_has_no_code() {
        let mut v = pending();
        let e = v.end(Status::Canceled, Some(CancelReason::Replaced), 5_000);
        let json = serde_json::to_string(&e).expect("json");
        assert!(json.contains("\"otpd.verification.canceled\""), "{json}");
        assert!(json.contains("\"replaced\""), "{json}");
        let back: StoredEvent = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, e);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
