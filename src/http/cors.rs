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
