//! Which operation of a GraphQL document a request runs, and of what type. The executor's
//! checks, the operation metrics, the response order, the introspection routing, tracing and
//! both transports ask this same question; answering it in one module (not in the executor)
//! keeps them agreeing and keeps `executor` and `operation_metrics` from importing each other.

use async_graphql::{
    Positioned, Request,
    parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition, OperationType},
};

/// The operation a request runs: the document's only one, or the one `operation_name` names.
/// None when the name matches nothing, or several operations come without a name (execution
/// refuses both). The parser files a lone *named* operation under `Multiple`; without an
/// `operationName` it is still the one that runs (as async-graphql and the spec have it).
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The type of the operation a request would run, when the document parses (the parsed
/// document stays in the request for execution).
pub fn operation_type(request: &mut Request) -> Option<OperationType> {
    let operation_name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    match selected_operation(doc, operation_name.as_deref()) {
        Some(operation) => return Some(operation.node.ty),
        // An unknown name: execution reports it.
        None if operation_name.is_some() => return None,
        None => {}
    }
    // Several operations and no name: the request is invalid anyway; refuse if any writes.
    if doc
        .operations
        .iter()
        .any(|(_, op)| op.node.ty != OperationType::Query)
    {
        Some(OperationType::Mutation)
    } else {
        Some(OperationType::Query)
    }
}
