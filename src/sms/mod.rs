//! Sending codes by SMS. Providers sit behind one trait, held as `Arc<dyn SmsSender>`:
//! `console` (development: logs the message), `webhook` (a signed JSON POST to any gateway) and
//! `twilio` (the Messages API). Nobody calls a provider from a request: `outbox`
//! delivers what `request_code` committed, with timeouts, retries and a give-up time.

mod console;
mod http;
mod recording;
mod text;
mod twilio;
mod webhook;

pub use console::ConsoleSender;
pub use recording::RecordingSender;
pub use text::{code_message, phone_changed_message};
pub use twilio::TwilioSender;
pub use webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, webhook_signature};

use crate::domain::phone::Phone;

/// Why a message did not go out. `permanent` failures (the provider refused the request
/// itself: a bad number, bad credentials) are not retried; everything else (timeouts,
/// connection errors, 5xx, 429) is. The message never holds the text, a secret or a full
/// phone number: it is logged and stored as the outbox row's last error.
#[derive(Debug, thiserror::Error)]
#[error("SMS delivery failed: {message}")]
pub struct SmsError {
    message: String,
    permanent: bool,
}

impl SmsError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

#[async_trait::async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError>;

    /// Sends one message of the outbox. `message_id` stays the same across every retry of it,
    /// so a provider that supports idempotency keys can drop a repeat (delivery is
    /// at-least-once: a retry after a timeout may follow a send that did arrive).
    async fn send_message(&self, message_id: &str, to: &Phone, text: &str) -> Result<(), SmsError> {
        let _ = message_id;
        self.send(to, text).await
    }
}
