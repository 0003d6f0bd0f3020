//! The Twilio provider: the Programmable Messaging API's "create a Message" call,
//! `POST {TWILIO_BASE_URL}/2010-04-01/Accounts/{sid}/Messages.json` with a form body
//! (`To`, `From` and/or `MessagingServiceSid`, `Body`) and HTTP basic auth `sid:auth token`.
//! Twilio answers 201 with the message resource; errors carry a numeric `code`.

use std::time::Duration;

use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};

use super::{SmsError, SmsSender, http};
use crate::{config::TwilioSettings, domain::phone::Phone};

pub struct TwilioSender {
    client: Client,
    messages_url: Url,
    account_sid: String,
    auth_token: SecretString,
    from: Option<String>,
    messaging_service_sid: Option<String>,
}

impl TwilioSender {
    /// Every request is cut off after `timeout`.
    pub fn new(settings: &TwilioSettings, timeout: Duration) -> Result<Self, SmsError> {
        Ok(Self {
            client: http::client(timeout)?,
            messages_url: settings.messages_url(),
            account_sid: settings.account_sid.clone(),
            auth_token: settings.auth_token.clone(),
            from: settings.from.clone(),
            messaging_service_sid: settings.messaging_service_sid.clone(),
        })
    }
}

#[async_trait::async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        let mut form = vec![("To", to.as_str()), ("Body", text)];
        if let Some(service) = &self.messaging_service_sid {
            form.push(("MessagingServiceSid", service));
        }
        if let Some(from) = &self.from {
            form.push(("From", from));
        }
        let response = self
            .client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| http::transport_error("twilio", e))?;
        let status = response.status();
        let body = http::drain(response).await;
        // Only Twilio's numeric error code goes into the error: its `message` may quote the
        // phone number.
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("code").and_then(serde_json::Value::as_i64))
            .map(|code| format!("error {code}"))
            .unwrap_or_default();
        http::classify("twilio", status, &detail)
    }
}
