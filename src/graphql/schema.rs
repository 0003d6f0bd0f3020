use async_graphql::{Schema, SchemaBuilder};

use super::{mutation::MutationRoot, query::QueryRoot, subscription::SubscriptionRoot};
use crate::state::AppState;

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema without runtime data: enough to print the SDL (`schema.graphql`).
pub fn schema_builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
}

/// The served schema, with the limits from the configuration. No extensions on purpose: the
/// checks and metrics that would be extensions run once per operation in `GraphqlExecutor`.
pub fn build_schema(state: &AppState) -> AppSchema {
    let limits = &state.config.graphql;
    let mut builder = schema_builder().data(state.clone());
    if limits.max_depth > 0 {
        builder = builder.limit_depth(limits.max_depth);
    }
    if limits.max_complexity > 0 {
        builder = builder.limit_complexity(limits.max_complexity);
    }
    builder = builder.limit_recursive_depth(32).limit_directives(8);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if state.config.is_production() {
        builder = builder.disable_suggestions();
    }
    builder.finish()
}

/// The SDL as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}
