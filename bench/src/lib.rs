//! Baseline servers for the benchmark (`bench/run`): the ceilings of the libraries phone-auth is
//! built on, measured in the same run as the real server so every figure has a reference.
//!
//! - `baseline-axum` (a): axum answering a fixed JSON body to `POST /graphql`;
//! - `baseline-graphql` (b): async-graphql answering `me { id phone inviteCode }` from memory;
//! - `baseline-db` (c): the same, with one SeaORM primary-key read of the user per request, on
//!   the database the real server uses (`phone_auth::db::connect`, so the same pool settings:
//!   WAL, `synchronous=NORMAL` and the busy timeout on SQLite);
//! - `baseline-dataloader` (d): the `nested` scenario's query with a default DataLoader per
//!   item and no look-ahead ([`per_item`]), on the same database;
//! - `baseline-from-memory` (e): the `nested` query's schema answered from memory, every page
//!   and count read once at start-up ([`from_memory`]): async-graphql's own work on that
//!   answer with no database behind it (a reference, not an exact floor for the server).
//!
//! All of them speak the real server's framing (a JSON body posted to `/graphql`; the bearer header
//! is ignored), answer `GET /readyz` so the orchestrator can time their start, and run on tokio's
//! default multi-thread runtime like the real server. The binaries read their settings from the
//! environment (`LISTEN_ADDR`, and for (c) `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`,
//! `BENCH_USER_ID`); this library does not.

pub mod from_memory;
pub mod per_item;

use std::net::SocketAddr;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ID, Object, ObjectType, Schema, SimpleObject,
    SubscriptionType,
};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use phone_auth::db::entities::users;
use sea_orm::{DatabaseConnection, EntityTrait};

/// What (a) answers, byte for byte: the shape of (b)'s and (c)'s answer.
pub const FIXED_ME_BODY: &str =
    r#"{"data":{"me":{"id":"1","phone":"+79000000001","inviteCode":"BENCH1"}}}"#;

/// The `me` fields the benchmark's `me` scenario asks for.
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct MeUser {
    pub id: ID,
    pub phone: String,
    pub invite_code: String,
}

impl From<users::Model> for MeUser {
    fn from(user: users::Model) -> Self {
        Self {
            id: ID(user.id.to_string()),
            phone: user.phone,
            invite_code: user.invite_code,
        }
    }
}

/// Where `me` comes from.
#[derive(Clone)]
pub enum MeSource {
    /// (b): a user held in memory.
    Memory(MeUser),
    /// (c): `users::Entity::find_by_id(user_id)` on every request.
    Database {
        db: DatabaseConnection,
        user_id: i64,
    },
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<MeUser> {
        match ctx.data_unchecked::<MeSource>() {
            MeSource::Memory(user) => Ok(user.clone()),
            MeSource::Database { db, user_id } => users::Entity::find_by_id(*user_id)
                .one(db)
                .await
                .map_err(|e| async_graphql::Error::new(e.to_string()))?
                .map(MeUser::from)
                .ok_or_else(|| async_graphql::Error::new("no such user")),
        }
    }
}

pub type BaselineSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// The schema of (b) and (c), with default limits (the real server adds its own).
pub fn schema(source: MeSource) -> BaselineSchema {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .data(source)
        .finish()
}

/// The in-memory user of (b).
pub fn memory_user() -> MeUser {
    MeUser {
        id: ID("1".to_owned()),
        phone: "+79000000001".to_owned(),
        invite_code: "BENCH1".to_owned(),
    }
}

fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

async fn fixed(_body: Bytes) -> Response {
    json(StatusCode::OK, FIXED_ME_BODY)
}

/// A POSTed JSON request through `execute`, answered as JSON.
async fn execute_json<F, Fut>(body: &[u8], execute: F) -> Response
where
    F: FnOnce(async_graphql::Request) -> Fut,
    Fut: std::future::Future<Output = async_graphql::Response>,
{
    let request: async_graphql::Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"errors":[{"message":"bad body"}]}"#,
            );
        }
    };
    let response = execute(request).await;
    match serde_json::to_vec(&response) {
        Ok(body) => json(StatusCode::OK, body),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn graphql<Q, M, S>(State(schema): State<Schema<Q, M, S>>, body: Bytes) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    execute_json(
        &body,
        |request| async move { schema.execute(request).await },
    )
    .await
}

async fn graphql_per_item(
    State((schema, db)): State<(per_item::PerItemSchema, DatabaseConnection)>,
    body: Bytes,
) -> Response {
    execute_json(&body, |request| async move {
        schema
            .execute(request.data(per_item::Loaders::new(&db)))
            .await
    })
    .await
}

async fn ready() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// (a): the HTTP stack alone.
pub fn fixed_router() -> Router {
    Router::new()
        .route("/graphql", post(fixed))
        .route("/readyz", get(ready))
}

/// (b), (c) and (e): the HTTP stack and async-graphql.
pub fn graphql_router<Q, M, S>(schema: Schema<Q, M, S>) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Router::new()
        .route("/graphql", post(graphql::<Q, M, S>))
        .route("/readyz", get(ready))
        .with_state(schema)
}

/// (d): the nested query with a default DataLoader per item, fresh loaders per request.
pub fn per_item_router(schema: per_item::PerItemSchema, db: DatabaseConnection) -> Router {
    Router::new()
        .route("/graphql", post(graphql_per_item))
        .route("/readyz", get(ready))
        .with_state((schema, db))
}

/// What (c) and (d) read from the environment: `LISTEN_ADDR`, the database (`DATABASE_URL`,
/// `DATABASE_MAX_CONNECTIONS`, opened with the real server's `db::connect`) and `BENCH_USER_ID`.
pub async fn database_settings() -> anyhow::Result<(SocketAddr, DatabaseConnection, i64)> {
    use anyhow::Context;
    let env = |name: &str| std::env::var(name).ok();
    let addr = parse_listen_addr(env("LISTEN_ADDR"))?;
    let url = env("DATABASE_URL").context("DATABASE_URL is required")?;
    let max_connections: u32 = env("DATABASE_MAX_CONNECTIONS")
        .map(|v| v.parse())
        .transpose()
        .context("DATABASE_MAX_CONNECTIONS")?
        .unwrap_or(10);
    let user_id: i64 = env("BENCH_USER_ID")
        .context("BENCH_USER_ID is required")?
        .parse()
        .context("BENCH_USER_ID")?;
    let db = phone_auth::db::connect(&url, max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
    Ok((addr, db, user_id))
}

/// `LISTEN_ADDR` as the real server reads it, with the same default.
pub fn parse_listen_addr(value: Option<String>) -> anyhow::Result<SocketAddr> {
    match value {
        Some(addr) => Ok(addr.parse()?),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 8000))),
    }
}

/// Serves `router` until the process is killed (the orchestrator sends SIGTERM).
pub async fn serve(addr: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}
