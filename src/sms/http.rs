//! What the HTTP providers share: one client per provider, and the rule that turns an answer
//! into "delivered", "try again" or "give up".

use std::time::Duration;

use reqwest::{Client, Response, StatusCode, redirect};

use super::SmsError;

/// Connecting should never take long; the rest of the send budget is for the provider.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client whose every request is bounded by `timeout`. Redirects are not followed: a
/// gateway that answers 3xx is misconfigured, and following it would hand the message (which
/// holds a code) to another host.
pub(super) fn client(timeout: Duration) -> Result<Client, SmsError> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .redirect(redirect::Policy::none())
        .user_agent(concat!("phone-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SmsError::permanent(format!("cannot build the HTTP client: {e}")))
}

/// A transport failure (no answer at all): always worth retrying. The URL is left out of the
/// message, since it may carry credentials.
pub(super) fn transport_error(provider: &str, err: reqwest::Error) -> SmsError {
    let what = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "could not connect".to_owned()
    } else {
        err.without_url().to_string()
    };
    SmsError::transient(format!("{provider}: {what}"))
}

/// 2xx is delivered. 408, 425, 429 and 5xx are the provider's trouble, so they are retried;
/// any other answer means the request itself is refused, and sending it again changes nothing.
pub(super) fn classify(provider: &str, status: StatusCode, detail: &str) -> Result<(), SmsError> {
    if status.is_success() {
        return Ok(());
    }
    let message = if detail.is_empty() {
        format!("{provider} answered {status}")
    } else {
        format!("{provider} answered {status} ({detail})")
    };
    let retryable = status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS
        );
    Err(if retryable {
        SmsError::transient(message)
    } else {
        SmsError::permanent(message)
    })
}

/// Reads (and drops) the body, so the connection can go back to the pool.
pub(super) async fn drain(response: Response) -> Vec<u8> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_into_delivered_retry_and_give_up() {
        assert!(classify("p", StatusCode::OK, "").is_ok());
        assert!(classify("p", StatusCode::CREATED, "").is_ok());
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::REQUEST_TIMEOUT,
        ] {
            let err = classify("p", status, "").unwrap_err();
            assert!(!err.is_permanent(), "{status}");
        }
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            let err = classify("p", status, "").unwrap_err();
            assert!(err.is_permanent(), "{status}");
        }
    }
}
