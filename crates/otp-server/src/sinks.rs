//! The `log` development sink: prints each outgoing message, code
//! included, as one JSON line on stdout instead of delivering it. Logs go
//! to stderr and never carry codes; this sink is the one deliberate
//! exception, for local development, and otpd warns loudly at start
//! whenever a channel uses it. It also keeps each message in the dev
//! outbox (`crate::outbox`), shown at `/outbox`.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use otp_domain::ports::{Delivered, DeliveryError, OutgoingMessage, Sender};

use crate::outbox::DevOutbox;

#[derive(Clone)]
pub struct LogSink {
    outbox: Arc<DevOutbox>,
}

impl LogSink {
    pub fn new(outbox: Arc<DevOutbox>) -> Self {
        LogSink { outbox }
    }
}

#[async_trait]
impl Sender for LogSink {
    async fn send(&self, m: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let sent: Result<(), DeliveryError> = async {
            self.outbox.push(m);
            let line = serde_json::json!({
                "dev_sink": m.destination.channel().as_str(),
                "to": m.destination.address(),
                "subject": m.subject,
                "body": m.body,
            });
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .map_err(|e| DeliveryError {
                    provider: "log".into(),
                    reason: "cannot write to stdout".into(),
                    transient: false,
                    retry_after: None,
                    source: Some(Box::new(e)),
                })
        }
        .await;
        sent.map(|()| Delivered::by("log"))
    }
}
