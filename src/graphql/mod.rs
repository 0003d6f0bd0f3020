//! The GraphQL layer: the schema, its resolvers and DataLoaders. Resolvers parse arguments into
//! domain types, call one service, and map the result into a GraphQL type.

mod documents;
mod executor;
mod expanded_fields;
pub mod introspection;
pub mod loaders;
mod mutation;
pub mod operation;
mod operation_metrics;
pub mod persisted;
mod prefetch;
mod query;
mod response_order;
mod scalar_variables;
pub mod schema;
mod sensitive_fields;
mod subscription;
pub mod types;
pub mod viewer;

pub use executor::GraphqlExecutor;
pub use operation_metrics::ROOT_FIELDS;
pub use schema::{AppSchema, build_introspection_schema, build_schema, schema_builder};
