//! HTTP wiring: routes, GraphiQL, health checks, request ids, CORS. `graphql/` is the only
//! place an HTTP request becomes a GraphQL request.

mod cors;
mod graphiql;
mod graphql;
mod health;
mod metrics;
mod request_id;
mod shed;
mod websocket;

use std::sync::Arc;

use axum::{Router, middleware, routing::get};

use crate::{
    graphql::{GraphqlExecutor, persisted::PersistedOperations},
    state::AppState,
};

pub use graphiql::served_page as graphiql_page;
pub use request_id::RequestId;

/// What the handlers share, behind one `Arc`: axum clones the state for every request.
pub type HttpState = Arc<Shared>;

pub struct Shared {
    pub app: AppState,
    pub executor: GraphqlExecutor,
    /// Open WebSockets per client, for `WS_MAX_CONNECTIONS_PER_IP`.
    pub sockets: websocket::SocketCounts,
}

pub fn router(app: AppState) -> Router {
    let executor = GraphqlExecutor::new(
        crate::graphql::build_schema(&app),
        crate::graphql::build_introspection_schema(&app),
        PersistedOperations::new(
            app.config.graphql.persisted_operations.clone(),
            app.config.graphql.persisted_operations_only,
        ),
        app.db.clone(),
        app.config.graphql.max_complexity,
    );
    let cors = cors::layer(&app.config);
    let state: HttpState = Arc::new(Shared {
        app,
        executor,
        sockets: Default::default(),
    });
    let router = Router::new()
        .route("/", get(graphiql::page))
        .route("/graphiql/{hash}/{file}", get(graphiql::asset))
        .route(
            "/graphql",
            // Load shedding is the handlers' first step (`shed::admit`).
            get(graphql::get).post(graphql::post),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn(metrics::track))
        .with_state(state);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(middleware::from_fn(request_id::middleware))
}
