//! The webhook provider: a signed JSON POST to any gateway.
//!
//! ```text
//! POST {SMS_WEBHOOK_URL}
//! Content-Type: application/json
//! X-Signature-Timestamp: 1763800000
//! X-Signature: sha256=<hex HMAC-SHA256(SMS_WEBHOOK_SECRET, "1763800000." + body)>
//! Idempotency-Key: <the outbox message id; the same on every retry>
//!
//! {"to":"+79123456789","text":"Your phone-auth code: 4821"}
//! ```
//!
//! The MAC covers the timestamp as well as the exact body bytes, so a captured request cannot
//! be replayed later with a fresh timestamp: the gateway recomputes the MAC over
//! `timestamp + "." + raw body`, compares in constant time, and refuses timestamps more than a
//! few minutes from its own clock.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use reqwest::{Client, Url, header};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{SmsError, SmsSender, http};
use crate::{clock::Clock, config::WebhookSettings, domain::phone::Phone};

pub const SIGNATURE_HEADER: &str = "x-signature";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub struct WebhookSender {
    client: Client,
    url: Url,
    secret: SecretString,
    clock: Arc<dyn Clock>,
}

impl WebhookSender {
    /// Every request is cut off after `timeout`.
    pub fn new(
        settings: &WebhookSettings,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SmsError> {
        Ok(Self {
            client: http::client(timeout)?,
            url: settings.url.clone(),
            secret: settings.secret.clone(),
            clock,
        })
    }

    async fn post(&self, message_id: Option<&str>, to: &Phone, text: &str) -> Result<(), SmsError> {
        let body = serde_json::to_vec(&serde_json::json!({ "to": to.as_str(), "text": text }))
            .map_err(|e| SmsError::permanent(format!("webhook: cannot encode the body: {e}")))?;
        let timestamp = self.clock.now().timestamp();
        let signature = webhook_signature(self.secret.expose_secret().as_bytes(), timestamp, &body);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature);
        if let Some(id) = message_id {
            request = request.header(IDEMPOTENCY_HEADER, id);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error("webhook", e))?;
        let status = response.status();
        // The gateway's answer is not logged: it may echo the message.
        http::drain(response).await;
        http::classify("webhook", status, "")
    }
}

#[async_trait::async_trait]
impl SmsSender for WebhookSender {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        self.post(None, to, text).await
    }

    async fn send_message(&self, message_id: &str, to: &Phone, text: &str) -> Result<(), SmsError> {
        self.post(Some(message_id), to, text).await
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`: the `X-Signature` value.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let sig = webhook_signature(b"secret", 1_700_000_000, b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), "sha256=".len() + 64);
        assert_ne!(sig, webhook_signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(sig, webhook_signature(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(sig, webhook_signature(b"other", 1_700_000_000, b"{}"));
        // The same as computing it by hand over "1700000000.{}".
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
    }
}
