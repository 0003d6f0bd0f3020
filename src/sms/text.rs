//! The texts the server sends: a code (with the autofill lines browsers and Android read) and
//! the notice to a number an account moved away from.

use crate::config::SmsText;

/// `SMS_TEMPLATE` with `{app}` and `{code}` filled in, then Android's SMS Retriever app hash
/// line (`ANDROID_APP_HASH`) and, last, the WebOTP line `@domain #code` (`WEBOTP_DOMAIN`): the
/// WebOTP format requires it to be the message's last line.
pub fn code_message(text: &SmsText, code: &str) -> String {
    // `{app}` first: an app name holding "{code}" must not turn into a second code.
    let mut message = text
        .template
        .replace("{code}", "\u{0}")
        .replace("{app}", &text.app_name)
        .replace('\u{0}', code);
    if let Some(hash) = &text.android_app_hash {
        message.push('\n');
        message.push_str(hash);
    }
    if let Some(domain) = &text.webotp_domain {
        message.push_str(&format!("\n@{domain} #{code}"));
    }
    message
}

/// Sent to the old number after confirmPhoneChange: the owner learns of a change they did not
/// make. It names no number (whoever holds the old SIM now need not learn the new one).
pub fn phone_changed_message(text: &SmsText) -> String {
    format!(
        "The {} account that used this number has moved to a new phone number. \
         If you did not do this, contact support.",
        text.app_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(webotp: Option<&str>, hash: Option<&str>) -> SmsText {
        SmsText {
            template: "Your {app} code: {code}".into(),
            app_name: "Acme".into(),
            webotp_domain: webotp.map(str::to_owned),
            android_app_hash: hash.map(str::to_owned),
        }
    }

    #[test]
    fn plain_template() {
        assert_eq!(
            code_message(&text(None, None), "1234"),
            "Your Acme code: 1234"
        );
    }

    #[test]
    fn autofill_lines_with_webotp_last() {
        assert_eq!(
            code_message(&text(Some("app.example.com"), Some("FA+9qCX9VSu")), "0042"),
            "Your Acme code: 0042\nFA+9qCX9VSu\n@app.example.com #0042"
        );
    }

    #[test]
    fn an_app_name_cannot_inject_a_placeholder() {
        let mut t = text(None, None);
        t.app_name = "{code}".into();
        assert_eq!(code_message(&t, "1234"), "Your {code} code: 1234");
    }
}
