//! The dev outbox: while a channel uses the `log` dev sink, otpd keeps the
//! last `dev.outbox_size` messages it "sent" in memory, so a developer can
//! read them (and copy the code) at `/outbox`, or a test of an app that
//! integrates otpd can read them from `/outbox/messages`, instead of
//! parsing stdout. Nothing here exists without the dev sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use otp_domain::ports::{Clock, OutgoingMessage};
use poem_openapi::Object;
use tokio::sync::broadcast;

use crate::api::fields::DateTime;

/// One message the dev sink took.
#[derive(Debug, Clone, Object)]
pub struct OutboxEntry {
    /// Increases with every message; newer messages have larger ids.
    pub id: u64,
    /// When the dev sink took it.
    pub at: DateTime,
    /// `sms`, `call`, `email` or `telegram`.
    pub channel: String,
    /// The destination, in full: this is a development tool.
    pub to: String,
    /// The email subject.
    #[oai(skip_serializing_if_is_none)]
    pub subject: Option<String>,
    /// The text as a provider would have sent it.
    pub body: String,
    /// The code the text carries.
    pub code: String,
}

struct Ring {
    next_id: u64,
    entries: VecDeque<Arc<OutboxEntry>>,
}

/// The last messages of the dev sink, newest last, and a feed of new ones.
pub struct DevOutbox {
    capacity: usize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<OutboxEntry>>,
    clock: Arc<dyn Clock>,
}

impl DevOutbox {
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        // Live subscribers that fall this far behind skip ahead; the page
        // shows what the list holds after a reload anyway.
        let (live, _) = broadcast::channel(64);
        DevOutbox {
            capacity: capacity.max(1),
            ring: Mutex::new(Ring {
                next_id: 1,
                entries: VecDeque::new(),
            }),
            live,
            clock,
        }
    }

    /// Keeps `message`, dropping the oldest beyond the capacity.
    pub fn push(&self, message: &OutgoingMessage) {
        let entry = {
            let mut ring = self.lock();
            let entry = Arc::new(OutboxEntry {
                id: ring.next_id,
                at: DateTime::from_millis(self.clock.now()),
                channel: message.destination.channel().as_str().to_owned(),
                to: message.destination.address().to_owned(),
                subject: message.subject.clone(),
                body: message.body.clone(),
                code: message.code.expose().to_owned(),
            });
            ring.next_id += 1;
            ring.entries.push_back(entry.clone());
            while ring.entries.len() > self.capacity {
                ring.entries.pop_front();
            }
            entry
        };
        // No subscriber is fine: nobody has the page open.
        let _ = self.live.send(entry);
    }

    /// Newest first, filtered by channel and destination (a substring).
    pub fn list(&self, filter: &Filter) -> Vec<Arc<OutboxEntry>> {
        self.lock()
            .entries
            .iter()
            .rev()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// New messages as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OutboxEntry>> {
        self.live.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves a consistent ring behind:
        // every change above is a single push or pop.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Which messages to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub channel: Option<String>,
    pub to: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &OutboxEntry) -> bool {
        self.channel
            .as_deref()
            .filter(|c| !c.is_empty())
            .is_none_or(|c| e.channel == c)
            && self
                .to
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .is_none_or(|t| e.to.to_lowercase().contains(&t.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use otp_domain::{Code, Destination, Email, Phone};

    use super::*;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> u64 {
            1_800_000_000_000
        }
    }

    fn sms(to: &str, code: &str) -> OutgoingMessage {
        OutgoingMessage {
            verification: None,
            destination: Destination::Sms(Phone::parse(to).expect("phone")),
            subject: None,
            body: format!("Your code is {code}"),
            code: Code::parse(code).expect("code"),
            locale: None,
        }
    }

    #[test]
    fn the_outbox_keeps_the_newest_messages_and_filters_them() {
        let outbox = DevOutbox::new(2, Arc::new(Fixed));
        outbox.push(&sms("+77011234567", "1111"));
        outbox.push(&sms("+77011234568", "2222"));
        outbox.push(&OutgoingMessage {
            verification: None,
            destination: Destination::Email(Email::parse("ann@example.com").expect("email")),
            subject: Some("Your code".into()),
            body: "3333".into(),
            code: Code::parse("3333").expect("code"),
            locale: None,
        });
        let all = outbox.list(&Filter::default());
        let codes: Vec<&str> = all.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["3333", "2222"], "newest first, the oldest dropped");
        assert_eq!(all[0].id, 3);
        let sms_only = outbox.list(&Filter {
            channel: Some("sms".into()),
            to: None,
        });
        assert_eq!(sms_only.len(), 1);
        let by_to = outbox.list(&Filter {
            channel: None,
            to: Some(" EXAMPLE.com ".into()),
        });
        assert_eq!(by_to.len(), 1);
        assert_eq!(by_to[0].to, "ann@example.com");
        outbox.clear();
        assert!(outbox.list(&Filter::default()).is_empty());
    }

    #[tokio::test]
    async fn subscribers_see_new_messages() {
        let outbox = DevOutbox::new(10, Arc::new(Fixed));
        let mut rx = outbox.subscribe();
        outbox.push(&sms("+77011234567", "4321"));
        let got = rx.recv().await.expect("a live message");
        assert_eq!(got.code, "4321");
        assert_eq!(got.at.0, "2027-01-15T08:00:00Z");
    }
}
