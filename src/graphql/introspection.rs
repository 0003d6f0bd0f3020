//! Introspection runs under its own depth limit. GraphiQL, graphql-codegen, Postman, Insomnia and
//! schema-diff tools send graphql-js's `getIntrospectionQuery()`, whose type references are
//! followed `typeDepth` (9 by default) `ofType` levels down inside `__schema.types.fields.args.type`:
//! 15 fields deep, past any depth meant for data (the contract's deepest data operation is 7).
//!
//! So an operation that asks only for `__schema`, `__type` or `__typename` runs on a second
//! schema that can answer nothing but introspection (async-graphql's introspection-only mode)
//! and whose depth limit is [`MAX_DEPTH`]. Everything else — including a document that mixes
//! introspection with data — runs on the data schema under `GRAPHQL_MAX_DEPTH`. Both keep
//! `GRAPHQL_MAX_COMPLEXITY` (the standard introspection query costs about 200).

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};

use super::operation::selected_operation;

/// The depth of graphql-js's standard introspection query at its default `typeDepth` of 9:
/// `__schema` 1, `types` 2, `fields` 3, `args` 4, `type` 5, nine `ofType` 6–14, `name` 15.
/// (graphql-js 16 nests `ofType` 7 levels: 13.) A deeper introspection is refused.
pub const MAX_DEPTH: usize = 15;

/// True when the operation the request runs selects nothing at its root but introspection
/// fields. Only the root is read: introspection types cannot lead back to data. A root fragment
/// spread is not followed, so such an operation is treated as data (the stricter limits).
pub fn asks_only_introspection(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> bool {
    let Some(operation) = selected_operation(document, operation_name) else {
        return false;
    };
    let items = &operation.node.selection_set.node.items;
    operation.node.ty == OperationType::Query
        && !items.is_empty()
        && items.iter().all(|selection| match &selection.node {
            Selection::Field(field) => field.node.name.node.starts_with("__"),
            Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
        })
}
