use std::sync::{Arc, Mutex};

use super::{SmsError, SmsSender};
use crate::domain::phone::Phone;

/// Keeps every message in memory: tests read the codes they were sent from its inbox.
#[derive(Debug, Clone, Default)]
pub struct RecordingSender {
    inbox: Arc<Mutex<Vec<(String, String)>>>,
}

impl RecordingSender {
    pub fn messages(&self) -> Vec<(String, String)> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last message sent to `e164`, if any.
    pub fn last_to(&self, e164: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .rev()
            .find(|(to, _)| to == e164)
            .map(|(_, text)| text)
    }
}

#[async_trait::async_trait]
impl SmsSender for RecordingSender {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((to.as_str().to_owned(), text.to_owned()));
        Ok(())
    }
}
