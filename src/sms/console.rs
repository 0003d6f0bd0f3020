use std::time::Duration;

use super::{SmsError, SmsSender};
use crate::domain::phone::Phone;

/// The development provider: waits the simulated delivery time (asynchronously, never blocking
/// a runtime thread), then writes the message to the log. Its whole job is to show the code,
/// so it is the one place a code may appear in a log line.
#[derive(Debug, Clone)]
pub struct ConsoleSender {
    delay: Duration,
}

impl ConsoleSender {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

#[async_trait::async_trait]
impl SmsSender for ConsoleSender {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        tracing::info!(target: "phone_auth::sms::console", to = %to, "SMS: {text}");
        Ok(())
    }
}
