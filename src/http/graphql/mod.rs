//! `/graphql` over HTTP: POST (JSON, single or batched), GET (queries only), and GraphiQL for
//! browsers. A WebSocket upgrade goes to `websocket` (subscriptions only). This is the only place
//! an HTTP request becomes an `async_graphql::Request`, split by job:
//!
//! - `negotiate`: media types (`Accept`, `Content-Type`) and parsing POST bodies, batches and
//!   GET query strings;
//! - `context`: the per-request data resolvers read (viewer, client address, request id, user
//!   agent);
//! - `handlers`: `post` and `get`, sharing one execute-and-answer path;
//! - `respond`: response shaping, status codes, the errors before execution, error logging.

mod context;
mod handlers;
mod negotiate;
mod respond;

pub use handlers::{get, post};
pub(super) use negotiate::MediaType;
pub(super) use respond::{annotate, json_response, request_error};
