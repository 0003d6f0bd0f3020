use async_graphql::{SDLExportOptions, Schema, SchemaBuilder};

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
    let mut builder = with_common_limits(schema_builder().data(state.clone()), state);
    if limits.max_depth > 0 {
        builder = builder.limit_depth(limits.max_depth);
    }
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema that answers operations asking only for introspection (see
/// [`introspection`](super::introspection)): it resolves nothing else, and its depth limit fits
/// the standard introspection query instead of data. None when introspection is off.
pub fn build_introspection_schema(state: &AppState) -> Option<AppSchema> {
    if !state.config.graphql.introspection {
        return None;
    }
    let builder = with_common_limits(schema_builder(), state)
        .introspection_only()
        .limit_depth(super::introspection::MAX_DEPTH);
    Some(builder.finish())
}

/// What both schemas share: the complexity budget, parser limits, and no suggestions in
/// production.
fn with_common_limits(
    mut builder: SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
    state: &AppState,
) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let limits = &state.config.graphql;
    if limits.max_complexity > 0 {
        builder = builder.limit_complexity(limits.max_complexity);
    }
    builder = builder.limit_recursive_depth(32).limit_directives(8);
    if state.config.is_production() {
        builder = builder.disable_suggestions();
    }
    builder
}

/// The SDL as committed in `schema.graphql`. It names each scalar's specification
/// (`@specifiedBy`, e.g. RFC 3339 for `DateTime`) because introspection serves it: the file and
/// the running server's schema must agree, also for tools that ask for `specifiedByURL`.
pub fn sdl() -> String {
    schema_builder()
        .finish()
        .sdl_with_options(SDLExportOptions::new().include_specified_by())
}
