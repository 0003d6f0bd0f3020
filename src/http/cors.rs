//! CORS: development answers any origin without credentials; production answers only the
//! configured origins (none by default). Origins are never reflected and `null` never allowed.

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::config::Config;

pub fn layer(config: &Config) -> Option<CorsLayer> {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")]);
    match &config.cors_allowed_origins {
        Some(origins) => {
            let origins: Vec<HeaderValue> = origins
                .iter()
                .filter(|o| o.as_str() != "null")
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect();
            Some(base.allow_origin(AllowOrigin::list(origins)))
        }
        None if config.is_production() => None,
        None => Some(base.allow_origin(Any)),
    }
}

/// Whether a request from `origin` may open a WebSocket: the CORS rule, applied to the upgrade
/// (browsers send no preflight for it, so the server must refuse it itself). No `Origin` at all
/// is a mobile app or a server, not a page: allowed.
pub fn origin_allowed(config: &Config, origin: Option<&HeaderValue>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    match &config.cors_allowed_origins {
        Some(allowed) => origin != "null" && allowed.iter().any(|o| o == origin),
        None => !config.is_production(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> Config {
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| env.get(key).cloned()).expect("config")
    }

    #[test]
    fn socket_origins_follow_the_cors_rule() {
        let origin = |v: &str| HeaderValue::from_str(v).expect("header");
        let listed = config(&[("CORS_ALLOWED_ORIGINS", "https://app.example,null")]);
        assert!(origin_allowed(&listed, None));
        assert!(origin_allowed(
            &listed,
            Some(&origin("https://app.example"))
        ));
        assert!(!origin_allowed(
            &listed,
            Some(&origin("https://evil.example"))
        ));
        assert!(!origin_allowed(&listed, Some(&origin("null"))));
        let development = config(&[]);
        assert!(origin_allowed(
            &development,
            Some(&origin("https://any.example"))
        ));
    }
}
