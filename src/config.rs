//! Typed configuration, read once at start from the environment (and `.env`, loaded by `main`).
//! Library code never reads the environment itself: `Config::from_lookup` takes the lookup
//! function, so tests build configurations without touching process state.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    domain::{
        client_ip::DEFAULT_IPV6_PREFIX,
        number_type::{self, NumberType},
        phone::{Phone, Region},
    },
    graphql::persisted::Manifest,
};

/// Secrets shorter than this are refused in production (RFC 8725 §3.5: full-entropy HMAC keys).
pub const MIN_SECRET_BYTES: usize = 32;

/// Well-known placeholder secrets that must never reach production.
const DEFAULT_SECRETS: &[&str] = &[
    "change-me",
    "changeme",
    "secret",
    "dev-secret-change-me-dev-secret-change-me",
    "please-change-this-secret-to-32-or-more-bytes",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// Where codes go (`SMS_PROVIDER`), with that provider's settings.
#[derive(Clone, Debug)]
pub enum SmsProviderKind {
    /// Development: the message is written to the log.
    Console,
    /// A signed JSON POST to any gateway (`SMS_WEBHOOK_*`).
    Webhook(WebhookSettings),
    /// Twilio's Messages API (`TWILIO_*`).
    Twilio(TwilioSettings),
}

impl SmsProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Webhook(_) => "webhook",
            Self::Twilio(_) => "twilio",
        }
    }
}

#[derive(Clone)]
pub struct WebhookSettings {
    pub url: reqwest::Url,
    /// The HMAC-SHA256 key of the `X-Signature` header, shared with the gateway.
    pub secret: SecretString,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &redact_url(self.url.as_str()))
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Clone)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` unless a test (or a proxy) says otherwise.
    pub base_url: reqwest::Url,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// At least one of the two is set.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

impl TwilioSettings {
    /// `{base}/2010-04-01/Accounts/{sid}/Messages.json`.
    pub fn messages_url(&self) -> reqwest::Url {
        let mut url = self.base_url.clone();
        let base_path = self.base_url.path().trim_end_matches('/');
        url.set_path(&format!(
            "{base_path}/2010-04-01/Accounts/{}/Messages.json",
            self.account_sid
        ));
        url
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("base_url", &redact_url(self.base_url.as_str()))
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("refusing to start in production: {0}")]
    Unsafe(String),
}

/// Every rate limit; `0` turns one off.
#[derive(Clone, Debug)]
pub struct Limits {
    pub phone_codes_per_hour: u32,
    pub phone_codes_per_day: u32,
    pub phone_failures_per_day: u32,
    pub phone_failures_per_month: u32,
    pub ip_codes_per_hour: u32,
    pub ip_codes_per_day: u32,
    pub ip_verify_per_hour: u32,
    pub sms_global_per_minute: u32,
    /// Whether the per-IP limits count loopback clients (`IP_LIMITS_ON_LOOPBACK`): always in
    /// production, not by default in development. See [`Limits::for_client`].
    pub ip_limits_on_loopback: bool,
    pub sms_global_per_hour: u32,
    pub sms_global_per_day: u32,
}

impl Limits {
    /// The limits that apply to a client at `ip`.
    ///
    /// In development everything a developer sends (GraphiQL, a frontend on this machine, a
    /// script) comes from 127.0.0.1 or ::1, and production's per-IP limits (10 codes an hour)
    /// would stop them on day one, for an hour, across restarts (the counts live in the
    /// database). So unless `IP_LIMITS_ON_LOOPBACK=true`, the per-IP limits skip loopback
    /// clients there. Every per-phone, per-code and global limit still applies. Production
    /// always counts loopback clients: behind a proxy on the same host every client is one.
    pub fn for_client(&self, ip: IpAddr) -> Limits {
        if self.ip_limits_on_loopback || !ip.to_canonical().is_loopback() {
            return self.clone();
        }
        Limits {
            ip_codes_per_hour: 0,
            ip_codes_per_day: 0,
            ip_verify_per_hour: 0,
            ..self.clone()
        }
    }
}

/// Who may receive a code, and the breakers against SMS pumping (docs/sms-pumping.md).
#[derive(Clone, Debug)]
pub struct SmsGuard {
    /// `SMS_ALLOWED_NUMBER_TYPES`.
    pub allowed_number_types: BTreeSet<NumberType>,
    /// `SMS_RANGE_PER_HOUR`: codes per hour to never-signed-in numbers of one range; 0 = off.
    pub range_per_hour: u32,
    /// `SMS_RANGE_DIGITS`: a range is the E.164 number without this many last digits.
    pub range_digits: usize,
    /// `SMS_COUNTRY_MIN_SENDS`: codes to a country in the last hour before its conversion is
    /// judged; 0 = off.
    pub country_min_sends: u32,
    /// `SMS_COUNTRY_MIN_CONVERSION`: the share of those codes that must have been verified.
    pub country_min_conversion: f64,
}

#[derive(Clone, Debug)]
pub struct GraphqlLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_batch: usize,
    pub introspection: bool,
    pub max_body_bytes: usize,
    /// Longest a GraphQL request may run before it is cut off.
    pub request_timeout: Duration,
    /// The operations of `PERSISTED_OPERATIONS_FILE`, loaded (and checked) at start.
    pub persisted_operations: Option<Arc<Manifest>>,
    /// `PERSISTED_OPERATIONS_ONLY`: refuse every document outside the manifest.
    pub persisted_operations_only: bool,
}

/// The WebSocket door (`/graphql` upgraded, graphql-transport-ws, subscriptions only).
#[derive(Clone, Debug)]
pub struct WebSocketLimits {
    /// `connection_init` must arrive within this, else the socket is closed with 4408.
    pub init_timeout: Duration,
    /// Live operations per socket (`usize::MAX` when `WS_MAX_OPERATIONS=0`).
    pub max_operations: usize,
    /// Open sockets per client (`usize::MAX` when `WS_MAX_CONNECTIONS_PER_IP=0`).
    pub max_connections_per_client: usize,
}

/// OpenTelemetry traces (`OTEL_*`, docs/observability.md): present when an OTLP endpoint is
/// set. The SDK reads the other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` …).
#[derive(Clone)]
pub struct OtelSettings {
    /// Where spans are posted (OTLP/HTTP, protobuf): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as
    /// given, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub traces_endpoint: reqwest::Url,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (ms, default 10 s).
    pub timeout: Duration,
}

impl fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSettings")
            .field(
                "traces_endpoint",
                &redact_url(self.traces_endpoint.as_str()),
            )
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The text of a code SMS (`SMS_TEMPLATE`, `SMS_APP_NAME`, `WEBOTP_DOMAIN`, `ANDROID_APP_HASH`);
/// `sms::text` renders it.
#[derive(Clone, Debug)]
pub struct SmsText {
    /// Holds `{code}` and may hold `{app}`; one line.
    pub template: String,
    pub app_name: String,
    /// Adds the WebOTP line `@domain #code` (last line) so browsers offer the code.
    pub webotp_domain: Option<String>,
    /// Adds Android's 11-character SMS Retriever app hash line.
    pub android_app_hash: Option<String>,
}

/// Longest template and app name: the whole message must stay within one SMS (Android's SMS
/// Retriever reads at most 140 bytes).
const MAX_TEMPLATE_LEN: usize = 80;
const MAX_APP_NAME_LEN: usize = 30;

#[derive(Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub database_url: String,
    pub database_max_connections: u32,
    pub listen_addr: SocketAddr,
    pub jwt_secret: SecretString,
    /// True when no `JWT_SECRET` was given and a random one was made (development only).
    pub jwt_secret_generated: bool,
    pub otp: OtpSettings,
    pub sms: SmsSettings,
    pub default_region: Region,
    pub admin_phones: BTreeSet<Phone>,
    pub tokens: TokenSettings,
    pub limits: Limits,
    pub sms_allowed_regions: BTreeSet<Region>,
    pub sms_guard: SmsGuard,
    pub trust_proxy_headers: bool,
    /// `IP_V6_PREFIX`: IPv6 clients are counted per network of this many bits
    /// (`domain::client_ip`).
    pub ip_v6_prefix: u8,
    /// `None`: the environment's default (development: any origin; production: none).
    pub cors_allowed_origins: Option<Vec<String>>,
    pub graphql: GraphqlLimits,
    pub websocket: WebSocketLimits,
    /// `TEST_PHONE_NUMBERS`: review and end-to-end numbers (E.164 → fixed code) that get no SMS.
    pub test_phone_numbers: BTreeMap<Phone, String>,
    pub sms_text: SmsText,
    /// How recent the verifyCode behind a sign-in must be for deleteAccount
    /// (`REAUTH_MAX_AGE_SECONDS`).
    pub reauth_max_age: Duration,
    /// What SIGTERM does and how fast (`SHUTDOWN_*`), and how many GraphQL requests run at once.
    pub lifecycle: Lifecycle,
    /// `None` unless an OTLP endpoint is set: no traces, nothing of OpenTelemetry runs.
    pub otel: Option<OtelSettings>,
    pub logging: Logging,
}

/// What is logged and how (`telemetry::init`).
#[derive(Clone, Debug, Default)]
pub struct Logging {
    /// `RUST_LOG`: the filter (`None`: `info`).
    pub filter: Option<String>,
    /// `LOG_FORMAT=json`: one JSON object per line instead of text.
    pub json: bool,
    /// `LOG_SQL`: lift the `info` cap on SeaORM's and sqlx's logs (their debug lines carry bound
    /// values, such as phones).
    pub sql: bool,
}

/// One-time codes (`OTP_*`).
#[derive(Clone, Debug)]
pub struct OtpSettings {
    /// `OTP_EXPOSE`: requestCode answers the code itself (`devCode`); never in production.
    pub expose: bool,
    /// `OTP_LENGTH`: digits per code, 4 to 8.
    pub length: usize,
    /// `OTP_TTL_SECONDS`: a code's life.
    pub ttl: Duration,
    /// `OTP_MAX_ATTEMPTS`: wrong guesses a code survives.
    pub max_attempts: u32,
    /// `OTP_RESEND_COOLDOWN_SECONDS`: the wait between two codes for one phone.
    pub resend_cooldown: Duration,
}

/// SMS delivery (`SMS_PROVIDER` and the outbox's timing).
#[derive(Clone, Debug)]
pub struct SmsSettings {
    pub provider: SmsProviderKind,
    /// `SMS_DELAY_MS`: the development provider's simulated latency.
    pub delay: Duration,
    /// Longest one delivery attempt may take (`SMS_SEND_TIMEOUT_MS`).
    pub send_timeout: Duration,
    /// How long after a code is issued its delivery is retried before it is marked
    /// undeliverable (`SMS_DELIVERY_GIVE_UP_SECONDS`; default: the code's life).
    pub give_up_after: Duration,
}

/// Access tokens, refresh tokens and the sign-ins behind them.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// `ACCESS_TOKEN_TTL_SECONDS`.
    pub access_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECONDS`: a refresh token's life; each refresh issues a new one.
    pub refresh_ttl: Duration,
    /// `SESSION_MAX_LIFETIME_SECONDS`: a sign-in's whole life from its verifyCode, however
    /// often it is refreshed.
    pub session_max_lifetime: Duration,
}

/// Shutdown and admission (`app::run`, `http::shed`).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// `SHUTDOWN_DRAIN_SECONDS`: after SIGTERM `/readyz` answers 503 this long, still serving,
    /// so a balancer's health checks take the instance out before it stops accepting.
    pub drain: Duration,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: once it stops accepting, in-flight requests get this long.
    pub shutdown_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS`: GraphQL requests served at once; more are shed with 503
    /// (`usize::MAX` when 0).
    pub max_concurrent_requests: usize,
}

impl fmt::Debug for Config {
    // Hand-written so the secret can never be printed by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("database_url", &redact_url(&self.database_url))
            .field("listen_addr", &self.listen_addr)
            .field("jwt_secret", &"[redacted]")
            .field("otp", &self.otp)
            .field("sms", &self.sms)
            .field("default_region", &self.default_region)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:password@host/db` → `postgres://user:***@host/db`, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

struct Reader<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                message: format!("cannot parse {v:?}: {e}"),
            }),
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    name,
                    message: format!(
                        "expected true/false, yes/no, on/off or 1/0 (any case), got {v:?}"
                    ),
                }),
            },
        }
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse(name, default)?;
        if secs == 0 {
            return Err(ConfigError::Invalid {
                name,
                message: "must be at least 1 second".into(),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The SMS section: which provider, and the settings it cannot work without.
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn sms_provider(&self, name: Option<&str>) -> Result<SmsProviderKind, ConfigError> {
        Ok(match name {
            None | Some("console") => SmsProviderKind::Console,
            Some("webhook") => SmsProviderKind::Webhook(WebhookSettings {
                url: self.url("SMS_WEBHOOK_URL", None, "webhook")?,
                secret: SecretString::from(self.required("SMS_WEBHOOK_SECRET", "webhook")?),
            }),
            Some("twilio") => {
                let account_sid = self.required("TWILIO_ACCOUNT_SID", "twilio")?;
                // It becomes a path segment of the API URL.
                if !account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ConfigError::Invalid {
                        name: "TWILIO_ACCOUNT_SID",
                        message: "expected letters and digits only (AC…)".into(),
                    });
                }
                let from = self.raw("TWILIO_FROM");
                let messaging_service_sid = self.raw("TWILIO_MESSAGING_SERVICE_SID");
                if from.is_none() && messaging_service_sid.is_none() {
                    return Err(ConfigError::Invalid {
                        name: "TWILIO_FROM",
                        message: "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID is required when SMS_PROVIDER=twilio".into(),
                    });
                }
                SmsProviderKind::Twilio(TwilioSettings {
                    base_url: self.url(
                        "TWILIO_BASE_URL",
                        Some("https://api.twilio.com"),
                        "twilio",
                    )?,
                    account_sid,
                    auth_token: SecretString::from(self.required("TWILIO_AUTH_TOKEN", "twilio")?),
                    from,
                    messaging_service_sid,
                })
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SMS_PROVIDER",
                    message: format!(
                        "unknown provider {other:?} (known: console, webhook, twilio)"
                    ),
                });
            }
        })
    }

    fn required(&self, name: &'static str, provider: &str) -> Result<String, ConfigError> {
        self.raw(name).ok_or_else(|| ConfigError::Invalid {
            name,
            message: format!("required when SMS_PROVIDER={provider}"),
        })
    }

    /// An http(s) URL with a host.
    fn url(
        &self,
        name: &'static str,
        default: Option<&str>,
        provider: &str,
    ) -> Result<reqwest::Url, ConfigError> {
        let raw = match (self.raw(name), default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    name,
                    message: format!("required when SMS_PROVIDER={provider}"),
                });
            }
        };
        let invalid = |message: String| ConfigError::Invalid { name, message };
        let url = reqwest::Url::parse(&raw)
            .map_err(|e| invalid(format!("not a URL ({e}): {}", redact_url(&raw))))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "expected an http:// or https:// URL, got {}",
                redact_url(&raw)
            )));
        }
        Ok(url)
    }
}

/// The SMS pumping section (docs/sms-pumping.md).
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn sms_guard(&self) -> Result<SmsGuard, ConfigError> {
        let listed = self.list("SMS_ALLOWED_NUMBER_TYPES");
        let allowed_number_types: BTreeSet<NumberType> = if listed.is_empty() {
            number_type::DEFAULT_ALLOWED.into_iter().collect()
        } else {
            listed
                .iter()
                .map(|raw| {
                    raw.parse()
                        .map_err(|e: number_type::UnknownNumberType| ConfigError::Invalid {
                            name: "SMS_ALLOWED_NUMBER_TYPES",
                            message: e.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let range_digits: usize = self.parse("SMS_RANGE_DIGITS", 4)?;
        if !(1..=8).contains(&range_digits) {
            return Err(ConfigError::Invalid {
                name: "SMS_RANGE_DIGITS",
                message: "must be between 1 and 8".into(),
            });
        }
        let country_min_conversion: f64 = self.parse("SMS_COUNTRY_MIN_CONVERSION", 0.2)?;
        if !(0.0..=1.0).contains(&country_min_conversion) {
            return Err(ConfigError::Invalid {
                name: "SMS_COUNTRY_MIN_CONVERSION",
                message: "must be a share between 0 and 1 (e.g. 0.2)".into(),
            });
        }
        Ok(SmsGuard {
            allowed_number_types,
            range_per_hour: self.parse("SMS_RANGE_PER_HOUR", 10)?,
            range_digits,
            country_min_sends: self.parse("SMS_COUNTRY_MIN_SENDS", 50)?,
            country_min_conversion,
        })
    }
}

/// Review numbers and the SMS text.
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// `TEST_PHONE_NUMBERS`: `phone=code` pairs; phones in any accepted form, codes of
    /// `OTP_LENGTH` digits.
    fn test_phone_numbers(
        &self,
        region: Region,
        otp_length: usize,
    ) -> Result<BTreeMap<Phone, String>, ConfigError> {
        let name = "TEST_PHONE_NUMBERS";
        let invalid = |message: String| ConfigError::Invalid { name, message };
        let mut numbers = BTreeMap::new();
        for pair in self.list(name) {
            let Some((raw_phone, code)) = pair.split_once('=') else {
                return Err(invalid(format!("expected phone=code, got {pair:?}")));
            };
            let phone = Phone::parse(raw_phone.trim(), region)
                .map_err(|_| invalid(format!("not a phone number: {:?}", raw_phone.trim())))?;
            let code = code.trim();
            if code.len() != otp_length || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!(
                    "the code for {} must be {otp_length} digits (OTP_LENGTH)",
                    phone.as_str()
                )));
            }
            if numbers.contains_key(&phone) {
                return Err(invalid(format!("{} is listed twice", phone.as_str())));
            }
            numbers.insert(phone, code.to_owned());
        }
        Ok(numbers)
    }

    fn sms_text(&self) -> Result<SmsText, ConfigError> {
        // Trimmed like every value; a template may not span lines (the autofill lines follow it).
        let template = self
            .raw("SMS_TEMPLATE")
            .unwrap_or_else(|| "Your {app} code: {code}".to_owned());
        let invalid_template = |message: &str| ConfigError::Invalid {
            name: "SMS_TEMPLATE",
            message: message.to_owned(),
        };
        if !template.contains("{code}") {
            return Err(invalid_template("must contain {code}"));
        }
        let unknown = template
            .replace("{code}", "")
            .replace("{app}", "")
            .contains(['{', '}']);
        if unknown {
            return Err(invalid_template(
                "only {code} and {app} may appear in braces",
            ));
        }
        if template.chars().any(char::is_control) || template.chars().count() > MAX_TEMPLATE_LEN {
            return Err(invalid_template(&format!(
                "must be one line of at most {MAX_TEMPLATE_LEN} characters"
            )));
        }
        let app_name = self
            .raw("SMS_APP_NAME")
            .unwrap_or_else(|| "phone-auth".to_owned());
        if app_name.chars().any(char::is_control) || app_name.chars().count() > MAX_APP_NAME_LEN {
            return Err(ConfigError::Invalid {
                name: "SMS_APP_NAME",
                message: format!("must be one line of at most {MAX_APP_NAME_LEN} characters"),
            });
        }
        let webotp_domain = self
            .raw("WEBOTP_DOMAIN")
            .map(|raw| {
                let domain = raw.to_ascii_lowercase();
                let labels_ok = domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
                if labels_ok && domain.len() <= 253 {
                    Ok(domain)
                } else {
                    Err(ConfigError::Invalid {
                        name: "WEBOTP_DOMAIN",
                        message: format!(
                            "expected a host name such as app.example.com (no scheme, port or path), got {raw:?}"
                        ),
                    })
                }
            })
            .transpose()?;
        let android_app_hash = self
            .raw("ANDROID_APP_HASH")
            .map(|hash| {
                // The Base64 of a truncated SHA-256, as Google's AppSignatureHelper prints it.
                let base64 = hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
                if hash.len() == 11 && base64 {
                    Ok(hash)
                } else {
                    Err(ConfigError::Invalid {
                        name: "ANDROID_APP_HASH",
                        message: "expected the 11-character app hash (letters, digits, + and /)"
                            .into(),
                    })
                }
            })
            .transpose()?;
        Ok(SmsText {
            template,
            app_name,
            webotp_domain,
            android_app_hash,
        })
    }
}

/// OpenTelemetry: on when an OTLP endpoint is set, unless `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`. Only OTLP over HTTP with protobuf is built in.
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn otel(&self) -> Result<Option<OtelSettings>, ConfigError> {
        if self.bool("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        match self
            .raw("OTEL_TRACES_EXPORTER")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "OTEL_TRACES_EXPORTER",
                    message: format!("only otlp (or none) is built in, got {other:?}"),
                });
            }
        }
        let endpoint = |name: &'static str, value: String| {
            reqwest::Url::parse(&value)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                .ok_or_else(|| ConfigError::Invalid {
                    name,
                    message: format!(
                        "expected an http(s) URL such as http://127.0.0.1:4318, got {:?}",
                        redact_url(&value)
                    ),
                })
        };
        let traces_endpoint = match (
            self.raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            self.raw("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)?,
            (None, Some(base)) => {
                let base = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
                let mut url = base.clone();
                url.set_path(&format!("{}/v1/traces", base.path().trim_end_matches('/')));
                url
            }
            (None, None) => return Ok(None),
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = self.raw(name) {
                if protocol != "http/protobuf" {
                    return Err(ConfigError::Invalid {
                        name: if name.contains("TRACES") {
                            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                        } else {
                            "OTEL_EXPORTER_OTLP_PROTOCOL"
                        },
                        message: format!(
                            "only http/protobuf is built in (port 4318 of a collector), got {protocol:?}"
                        ),
                    });
                }
                break;
            }
        }
        let timeout_name = if self.raw("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
        } else {
            "OTEL_EXPORTER_OTLP_TIMEOUT"
        };
        let timeout_ms: u64 = self.parse(timeout_name, 10_000)?;
        if timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                name: timeout_name,
                message: "must be at least 1 (milliseconds)".into(),
            });
        }
        Ok(Some(OtelSettings {
            traces_endpoint,
            service_name: self.raw("OTEL_SERVICE_NAME"),
            timeout: Duration::from_millis(timeout_ms),
        }))
    }
}

impl Config {
    /// Reads the process environment (`.env` must already be loaded by the caller).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let r = Reader { lookup };
        let app_env = match r.raw("APP_ENV").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("development") | Some("dev") => AppEnv::Development,
            Some("production") | Some("prod") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "APP_ENV",
                    message: format!("expected development or production, got {other:?}"),
                });
            }
        };
        let dev = app_env == AppEnv::Development;

        let (jwt_secret, jwt_secret_generated) = match r.raw("JWT_SECRET") {
            Some(secret) => (SecretString::from(secret), false),
            None => (SecretString::from(random_secret()), true),
        };

        let otp_length: usize = r.parse("OTP_LENGTH", 4)?;
        if !(4..=8).contains(&otp_length) {
            return Err(ConfigError::Invalid {
                name: "OTP_LENGTH",
                message: "must be between 4 and 8".into(),
            });
        }
        let otp_max_attempts: u32 = r.parse("OTP_MAX_ATTEMPTS", 5)?;
        if otp_max_attempts == 0 {
            return Err(ConfigError::Invalid {
                name: "OTP_MAX_ATTEMPTS",
                message: "must be at least 1".into(),
            });
        }

        let sms_provider_raw = r.raw("SMS_PROVIDER").map(|v| v.to_ascii_lowercase());
        let sms_provider = r.sms_provider(sms_provider_raw.as_deref())?;
        let otp_ttl = r.seconds("OTP_TTL_SECONDS", 300)?;
        let sms_send_timeout: u64 = r.parse("SMS_SEND_TIMEOUT_MS", 10_000)?;
        if !(1..=600_000).contains(&sms_send_timeout) {
            return Err(ConfigError::Invalid {
                name: "SMS_SEND_TIMEOUT_MS",
                message: "must be between 1 and 600000 (10 minutes)".into(),
            });
        }
        // Past the code's life a delivery is useless: by default, stop trying then.
        let sms_give_up_after = r.seconds("SMS_DELIVERY_GIVE_UP_SECONDS", otp_ttl.as_secs())?;
        if sms_give_up_after > Duration::from_secs(86_400) {
            return Err(ConfigError::Invalid {
                name: "SMS_DELIVERY_GIVE_UP_SECONDS",
                message: "must be at most 86400 (a day)".into(),
            });
        }

        let default_region: Region = r.parse("DEFAULT_REGION", Region::default())?;
        let admin_phones: BTreeSet<Phone> = r
            .list("ADMIN_PHONES")
            .iter()
            .map(|raw| {
                Phone::parse(raw, default_region).map_err(|_| ConfigError::Invalid {
                    name: "ADMIN_PHONES",
                    message: format!("not a phone number: {raw:?}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let sms_allowed_regions: BTreeSet<Region> = r
            .list("SMS_ALLOWED_REGIONS")
            .iter()
            .map(|raw| {
                raw.parse::<Region>().map_err(|e| ConfigError::Invalid {
                    name: "SMS_ALLOWED_REGIONS",
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;

        let sms_guard = r.sms_guard()?;
        let ip_v6_prefix: u8 = r.parse("IP_V6_PREFIX", DEFAULT_IPV6_PREFIX)?;
        if !(16..=128).contains(&ip_v6_prefix) {
            return Err(ConfigError::Invalid {
                name: "IP_V6_PREFIX",
                message: "must be between 16 and 128 (bits of an IPv6 network)".into(),
            });
        }
        let test_phone_numbers = r.test_phone_numbers(default_region, otp_length)?;
        // A fixed code on an admin's phone would hand the user list to whoever reads the
        // review notes.
        if let Some(admin) = test_phone_numbers
            .keys()
            .find(|phone| admin_phones.contains(*phone))
        {
            return Err(ConfigError::Invalid {
                name: "TEST_PHONE_NUMBERS",
                message: format!(
                    "{} is in ADMIN_PHONES: an admin may not sign in with a fixed code",
                    admin.as_str()
                ),
            });
        }
        let reauth_max_age = r.seconds("REAUTH_MAX_AGE_SECONDS", 300)?;
        if reauth_max_age > Duration::from_secs(86_400) {
            return Err(ConfigError::Invalid {
                name: "REAUTH_MAX_AGE_SECONDS",
                message: "must be at most 86400 (a day): it bounds how old a sign-in may delete the account".into(),
            });
        }
        let sms_text = r.sms_text()?;

        let cors = r.list("CORS_ALLOWED_ORIGINS");
        let persisted_operations = match r.raw("PERSISTED_OPERATIONS_FILE") {
            None => None,
            Some(path) => Some(Arc::new(Manifest::load(Path::new(&path)).map_err(
                |message| ConfigError::Invalid {
                    name: "PERSISTED_OPERATIONS_FILE",
                    message,
                },
            )?)),
        };
        let persisted_operations_only = r.bool("PERSISTED_OPERATIONS_ONLY", false)?;
        if persisted_operations_only && persisted_operations.is_none() {
            return Err(ConfigError::Invalid {
                name: "PERSISTED_OPERATIONS_ONLY",
                message: "needs PERSISTED_OPERATIONS_FILE (the operations to allow)".to_owned(),
            });
        }
        let database_max_connections: u32 = r.parse("DATABASE_MAX_CONNECTIONS", 10)?;
        let otel = r.otel()?;
        let logging = Logging {
            filter: r.raw("RUST_LOG"),
            json: match r
                .raw("LOG_FORMAT")
                .map(|v| v.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "LOG_FORMAT",
                        message: format!("expected text or json, got {other:?}"),
                    });
                }
            },
            sql: r.bool("LOG_SQL", false)?,
        };
        let config = Config {
            app_env,
            database_url: r
                .raw("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://phone-auth.db?mode=rwc".to_owned()),
            database_max_connections,
            listen_addr: r.parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            jwt_secret,
            jwt_secret_generated,
            otp: OtpSettings {
                expose: r.bool("OTP_EXPOSE", dev)?,
                length: otp_length,
                ttl: otp_ttl,
                max_attempts: otp_max_attempts,
                resend_cooldown: r.seconds("OTP_RESEND_COOLDOWN_SECONDS", 60)?,
            },
            sms: SmsSettings {
                provider: sms_provider,
                delay: Duration::from_millis(r.parse("SMS_DELAY_MS", 1000)?),
                send_timeout: Duration::from_millis(sms_send_timeout),
                give_up_after: sms_give_up_after,
            },
            default_region,
            admin_phones,
            tokens: TokenSettings {
                access_ttl: r.seconds("ACCESS_TOKEN_TTL_SECONDS", 900)?,
                refresh_ttl: r.seconds("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600)?,
                session_max_lifetime: r.seconds("SESSION_MAX_LIFETIME_SECONDS", 90 * 24 * 3600)?,
            },
            limits: Limits {
                phone_codes_per_hour: r.parse("PHONE_CODES_PER_HOUR", 5)?,
                phone_codes_per_day: r.parse("PHONE_CODES_PER_DAY", 10)?,
                phone_failures_per_day: r.parse("PHONE_FAILURES_PER_DAY", 10)?,
                phone_failures_per_month: r.parse("PHONE_FAILURES_PER_MONTH", 30)?,
                ip_codes_per_hour: r.parse("IP_CODES_PER_HOUR", 10)?,
                ip_codes_per_day: r.parse("IP_CODES_PER_DAY", 50)?,
                ip_verify_per_hour: r.parse("IP_VERIFY_PER_HOUR", 60)?,
                sms_global_per_minute: r.parse("SMS_GLOBAL_PER_MINUTE", 60)?,
                ip_limits_on_loopback: r.bool("IP_LIMITS_ON_LOOPBACK", !dev)?,
                sms_global_per_hour: r.parse("SMS_GLOBAL_PER_HOUR", 1000)?,
                sms_global_per_day: r.parse("SMS_GLOBAL_PER_DAY", 10_000)?,
            },
            sms_allowed_regions,
            sms_guard,
            trust_proxy_headers: r.bool("TRUST_PROXY_HEADERS", false)?,
            ip_v6_prefix,
            cors_allowed_origins: if cors.is_empty() { None } else { Some(cors) },
            graphql: GraphqlLimits {
                // Calibrated from the contract (docs/tools.md, "Query limits"): its deepest
                // operation is 7 fields deep and its costliest, a page of 100 with every
                // field, costs 1713; introspection has its own depth (graphql::introspection).
                max_depth: r.parse("GRAPHQL_MAX_DEPTH", 10)?,
                max_complexity: r.parse("GRAPHQL_MAX_COMPLEXITY", 2000)?,
                max_batch: r.parse("GRAPHQL_MAX_BATCH", 10)?,
                introspection: r.bool("GRAPHQL_INTROSPECTION", dev)?,
                // 0 turns the limit off, as for every limit.
                max_body_bytes: match r.parse("MAX_BODY_BYTES", 65536)? {
                    0 => usize::MAX,
                    n => n,
                },
                // 0 turns the time limit off.
                request_timeout: match r.parse("REQUEST_TIMEOUT_MS", 10_000)? {
                    0 => Duration::MAX,
                    ms => Duration::from_millis(ms),
                },
                persisted_operations,
                persisted_operations_only,
            },
            websocket: WebSocketLimits {
                init_timeout: r.seconds("WS_INIT_TIMEOUT_SECONDS", 10)?,
                max_operations: match r.parse("WS_MAX_OPERATIONS", 10)? {
                    0 => usize::MAX,
                    n => n,
                },
                max_connections_per_client: match r.parse("WS_MAX_CONNECTIONS_PER_IP", 20)? {
                    0 => usize::MAX,
                    n => n,
                },
            },
            test_phone_numbers,
            sms_text,
            reauth_max_age,
            lifecycle: Lifecycle {
                // Production sits behind balancers, whose health checks need a few seconds to
                // see the 503; development stops at once on Ctrl-C.
                drain: Duration::from_secs(
                    r.parse("SHUTDOWN_DRAIN_SECONDS", if dev { 0 } else { 5 })?,
                ),
                shutdown_timeout: r.seconds("SHUTDOWN_TIMEOUT_SECONDS", 30)?,
                max_concurrent_requests: match r.parse(
                    "MAX_CONCURRENT_REQUESTS",
                    default_max_concurrent(database_max_connections),
                )? {
                    0 => usize::MAX,
                    n => n,
                },
            },
            otel,
            logging,
        };
        config.check_production(sms_provider_raw.is_some())?;
        Ok(config)
    }

    /// The start-up refusals of production mode: each names the variable to fix.
    fn check_production(&self, sms_provider_explicit: bool) -> Result<(), ConfigError> {
        if self.app_env != AppEnv::Production {
            return Ok(());
        }
        if self.jwt_secret_generated {
            return Err(ConfigError::Unsafe(
                "JWT_SECRET is not set (at least 32 random bytes)".into(),
            ));
        }
        let secret = self.jwt_secret.expose_secret();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Unsafe(format!(
                "JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes"
            )));
        }
        if DEFAULT_SECRETS
            .iter()
            .any(|d| secret.eq_ignore_ascii_case(d))
        {
            return Err(ConfigError::Unsafe(
                "JWT_SECRET is a well-known default value".into(),
            ));
        }
        // Past /64 every subscriber holds more networks than any per-IP budget can count.
        if self.ip_v6_prefix > 64 {
            return Err(ConfigError::Unsafe(format!(
                "IP_V6_PREFIX={} gives one subscriber's /64 many per-IP budgets (use 64 or less)",
                self.ip_v6_prefix
            )));
        }
        if self.otp.expose {
            return Err(ConfigError::Unsafe(
                "OTP_EXPOSE=true would put codes in responses".into(),
            ));
        }
        if !self.limits.ip_limits_on_loopback {
            return Err(ConfigError::Unsafe(
                "IP_LIMITS_ON_LOOPBACK=false would exempt every client of a proxy on this host from the per-IP limits"
                    .into(),
            ));
        }
        if matches!(self.sms.provider, SmsProviderKind::Console) && !sms_provider_explicit {
            return Err(ConfigError::Unsafe(
                "no SMS_PROVIDER set; the console provider only logs codes (set SMS_PROVIDER=console to opt in)"
                    .into(),
            ));
        }
        if let SmsProviderKind::Webhook(webhook) = &self.sms.provider
            && webhook.secret.expose_secret().len() < MIN_SECRET_BYTES
        {
            return Err(ConfigError::Unsafe(format!(
                "SMS_WEBHOOK_SECRET is shorter than {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// The fixed code of a review number (`TEST_PHONE_NUMBERS`), if `phone` is one.
    pub fn test_code_for(&self, phone: &Phone) -> Option<&str> {
        self.test_phone_numbers
            .get(phone.as_str())
            .map(String::as_str)
    }

    /// How long a request may wait for a database connection: never past the request's own
    /// time limit (`REQUEST_TIMEOUT_MS`), and at most 5 s, so a request meeting a dead database
    /// fails with a contract error instead of queueing behind it.
    pub fn database_acquire_timeout(&self) -> Duration {
        self.graphql.request_timeout.min(Duration::from_secs(5))
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// A development configuration for tests: in-memory SQLite, no SMS delay, fixed secret.
    pub fn for_tests() -> Self {
        Self::from_lookup(|key| match key {
            "DATABASE_URL" => Some("sqlite::memory:".to_owned()),
            "JWT_SECRET" => Some("test-secret-test-secret-test-secret-0123456789".to_owned()),
            "SMS_DELAY_MS" => Some("0".to_owned()),
            _ => None,
        })
        .expect("the test configuration is valid")
    }
}

/// `MAX_CONCURRENT_REQUESTS` by default: 16 requests per pooled connection (most of a request's
/// time is spent outside the database: parsing, hashing, serialising), and never fewer than 128,
/// so a first load test (wrk's 64 connections, a browser's burst) is served, not shed.
pub fn default_max_concurrent(database_max_connections: u32) -> usize {
    (database_max_connections.max(1) as usize)
        .saturating_mul(16)
        .max(128)
}

fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|key| {
            vars.iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    fn otel(vars: &[(&str, &str)]) -> Option<OtelSettings> {
        with(vars).expect("valid").otel
    }

    fn refused(vars: &[(&str, &str)]) -> &'static str {
        match with(vars) {
            Err(ConfigError::Invalid { name, .. }) => name,
            other => panic!("{vars:?} accepted: {:?}", other.map(|c| c.otel)),
        }
    }

    #[test]
    fn opentelemetry_is_off_without_an_endpoint() {
        assert!(otel(&[]).is_none());
        assert!(
            otel(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=b")
            ])
            .is_none()
        );
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(otel(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).is_none());
        assert!(otel(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).is_none());
        assert!(otel(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).is_some());
        assert!(otel(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")]).is_some());
    }

    #[test]
    fn the_traces_endpoint_follows_the_otlp_rules() {
        let endpoint =
            |vars: &[(&str, &str)]| otel(vars).expect("on").traces_endpoint.as_str().to_owned();
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            endpoint(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://otlp.example.com/base/"
            )]),
            "https://otlp.example.com/base/v1/traces"
        );
        // The signal's own variable is used as given, and wins.
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://wrong:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://right:4318/custom"
                ),
            ]),
            "http://right:4318/custom"
        );
        assert_eq!(
            refused(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(
            refused(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/")]),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        );
    }

    #[test]
    fn only_otlp_over_http_protobuf_is_accepted() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(otel(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_some());
        assert_eq!(
            refused(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        assert_eq!(
            refused(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
            ]),
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        );
        // The signal's variable wins over the general one.
        assert!(
            otel(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])
            .is_some()
        );
        assert_eq!(
            refused(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]),
            "OTEL_TRACES_EXPORTER"
        );
    }

    #[test]
    fn timeout_and_service_name_are_read() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let settings = otel(&[endpoint]).expect("on");
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.service_name, None);
        let settings = otel(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "auth-eu"),
        ])
        .expect("on");
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.service_name.as_deref(), Some("auth-eu"));
        let settings = otel(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ])
        .expect("on");
        assert_eq!(settings.timeout, Duration::from_millis(700));
        assert_eq!(
            refused(&[endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]),
            "OTEL_EXPORTER_OTLP_TIMEOUT"
        );
        assert_eq!(
            refused(&[endpoint, ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon")]),
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
        );
    }

    #[test]
    fn the_endpoint_password_is_not_printed() {
        let settings = otel(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:hunter2hunter2@otlp.example.com",
        )])
        .expect("on");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("user:***@otlp.example.com"), "{printed}");
    }

    #[test]
    fn production_accepts_an_endpoint() {
        let config = with(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
            ("SMS_PROVIDER", "console"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ])
        .expect("valid in production");
        assert!(config.otel.is_some());
    }
}
