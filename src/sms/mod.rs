//! Sending codes by SMS. Providers sit behind one trait, held as `Arc<dyn SmsSender>`.

mod console;
mod recording;

pub use console::ConsoleSender;
pub use recording::RecordingSender;

use crate::domain::phone::Phone;

#[derive(Debug, thiserror::Error)]
#[error("SMS delivery failed: {0}")]
pub struct SmsError(pub String);

#[async_trait::async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError>;
}

/// The message text for a code.
pub fn code_message(code: &str) -> String {
    format!("Your phone-auth code: {code}")
}
