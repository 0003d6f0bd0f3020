//! GraphiQL at `/` (and at `GET /graphql` for browsers).
//!
//! When the build found GraphiQL's bundles (build.rs; `npm ci --prefix graphiql-assets`), the
//! page and every script and stylesheet come from this server: it works with no internet access
//! and under a strict Content-Security-Policy. Otherwise it is async-graphql's page, which loads
//! GraphiQL and React from a CDN (unpkg.com).

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// One embedded file, served at `/graphiql/<hash>/<name>`.
pub(super) struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// GraphiQL's bundles as the build embedded them.
pub(super) struct Bundle {
    /// A hash of every file: part of the URLs, so browsers may cache them forever.
    hash: &'static str,
    graphiql_version: &'static str,
    react_version: &'static str,
    assets: &'static [Asset],
}

// `BUNDLE: Option<Bundle>`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/graphiql_assets.rs"));

const ENDPOINT: &str = "/graphql";

/// Everything the offline page needs comes from this origin. Styles allow 'unsafe-inline'
/// because GraphiQL's editor (CodeMirror) and its popovers set `style` attributes; scripts do
/// not, the page has none inline. `connect-src 'self'` covers `/graphql` and its WebSocket.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Which page this build serves, for the start-up log: on a machine without internet the CDN
/// page shows "Loading..." forever, and nothing else tells a newcomer why.
pub fn served_page() -> String {
    match &BUNDLE {
        Some(bundle) => format!(
            "GraphiQL: offline bundles (GraphiQL {}, served by this server)",
            bundle.graphiql_version
        ),
        None => "GraphiQL: CDN page, needs internet (for the offline bundles: \
                 npm ci --prefix graphiql-assets, then build again)"
            .to_owned(),
    }
}

pub async fn page() -> Response {
    match &BUNDLE {
        Some(bundle) => offline_page(bundle),
        None => cdn_page(),
    }
}

/// `GET /graphiql/{hash}/{file}`. A hash of another build (a page cached across an upgrade)
/// answers 404 rather than a file the page did not ask for.
pub async fn asset(Path((hash, name)): Path<(String, String)>) -> Response {
    match &BUNDLE {
        Some(bundle) => serve_asset(bundle, &hash, &name),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn serve_asset(bundle: &Bundle, hash: &str, name: &str) -> Response {
    let found = (hash == bundle.hash)
        .then(|| bundle.assets.iter().find(|asset| asset.name == name))
        .flatten();
    let Some(asset) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The URL changes whenever a byte does, so the file never needs revalidating.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}

fn offline_page(bundle: &Bundle) -> Response {
    let base = format!("/graphiql/{}", bundle.hash);
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="generator" content="GraphiQL {graphiql} with React {react}, served by phone-auth">
    <title>phone-auth · GraphiQL</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{base}/graphiql.min.css">
    <style>
      body {{ height: 100%; margin: 0; width: 100%; overflow: hidden; }}
      #graphiql {{ height: 100vh; }}
    </style>
  </head>
  <body>
    <div id="graphiql" data-endpoint="{ENDPOINT}" data-subscription-endpoint="{ENDPOINT}">Loading GraphiQL…</div>
    <script src="{base}/react.production.min.js"></script>
    <script src="{base}/react-dom.production.min.js"></script>
    <script src="{base}/graphiql.min.js"></script>
    <script src="{base}/init.js"></script>
  </body>
</html>
"#,
        graphiql = bundle.graphiql_version,
        react = bundle.react_version,
    );
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The page names the current asset hash: revalidate it so an upgrade is picked up at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn cdn_page() -> Response {
    let html = async_graphql::http::GraphiQLSource::build()
        .endpoint(ENDPOINT)
        .subscription_endpoint(ENDPOINT)
        .finish();
    let mut response = Html(html).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    const TEST_BUNDLE: Bundle = Bundle {
        hash: "0123456789abcdef",
        graphiql_version: "4.1.2",
        react_version: "18.3.1",
        assets: &[
            Asset {
                name: "graphiql.min.js",
                content_type: "text/javascript; charset=utf-8",
                body: b"/* graphiql */",
            },
            Asset {
                name: "graphiql.min.css",
                content_type: "text/css; charset=utf-8",
                body: b"/* css */",
            },
        ],
    };

    async fn text(response: Response) -> String {
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn offline_page_loads_everything_from_this_server_under_a_strict_csp() {
        let response = offline_page(&TEST_BUNDLE);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let html = text(response).await;
        assert!(!html.contains("https://"), "no remote URL: {html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
        for file in [
            "react.production.min.js",
            "react-dom.production.min.js",
            "graphiql.min.js",
            "graphiql.min.css",
            "init.js",
        ] {
            assert!(
                html.contains(&format!("/graphiql/0123456789abcdef/{file}")),
                "{file}"
            );
        }
        assert!(html.contains(r#"data-endpoint="/graphql""#));
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_cached_forever() {
        let response = serve_asset(&TEST_BUNDLE, "0123456789abcdef", "graphiql.min.css");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert!(
            response.headers()[header::CACHE_CONTROL]
                .to_str()
                .expect("ascii")
                .contains("immutable")
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert_eq!(text(response).await, "/* css */");

        for (hash, name) in [
            ("ffffffffffffffff", "graphiql.min.css"),
            ("0123456789abcdef", "nope.js"),
            ("0123456789abcdef", "..%2Fsecret"),
        ] {
            let response = serve_asset(&TEST_BUNDLE, hash, name);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{hash}/{name}");
        }
    }

    #[tokio::test]
    async fn cdn_page_is_the_fallback() {
        let response = cdn_page();
        assert_eq!(response.status(), StatusCode::OK);
        let html = text(response).await;
        assert!(html.contains("graphiql"));
        assert!(html.contains("/graphql"));
    }

    #[test]
    fn an_embedded_bundle_has_every_file() {
        // Holds for whichever variant this build is; for the offline one, check it is whole.
        if let Some(bundle) = &BUNDLE {
            for name in [
                "react.production.min.js",
                "react-dom.production.min.js",
                "graphiql.min.js",
                "graphiql.min.css",
                "init.js",
            ] {
                assert!(
                    bundle
                        .assets
                        .iter()
                        .any(|asset| asset.name == name && !asset.body.is_empty()),
                    "{name}"
                );
            }
        }
    }
}
