//! Counts and times every operation by its root fields (`requestCode`, `verifyCode`, `me`, …)
//! and outcome: `ok`, or the `extensions.code` of the error under that field.
//!
//! It hooks parsing (to learn the root fields) and execution, not field resolution: a
//! per-field hook would run for every field of every row of a nested list.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery},
    parser::types::{DocumentOperations, ExecutableDocument, Selection},
};

pub struct FieldMetrics;

impl ExtensionFactory for FieldMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldMetricsExtension::default())
    }
}

/// One per request: remembers the root fields between parsing and execution.
#[derive(Default)]
struct FieldMetricsExtension {
    root_fields: Mutex<Vec<(String, Vec<String>)>>,
}

#[async_trait::async_trait]
impl Extension for FieldMetricsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let per_operation = match &document.operations {
            DocumentOperations::Single(op) => {
                vec![(String::new(), root_fields(&op.node.selection_set.node))]
            }
            DocumentOperations::Multiple(ops) => ops
                .iter()
                .map(|(name, op)| (name.to_string(), root_fields(&op.node.selection_set.node)))
                .collect(),
        };
        if let Ok(mut slot) = self.root_fields.lock() {
            *slot = per_operation;
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let seconds = started.elapsed().as_secs_f64();
        let fields = self
            .root_fields
            .lock()
            .ok()
            .and_then(|ops| {
                let wanted = operation_name.unwrap_or("");
                ops.iter()
                    .find(|(name, _)| name == wanted || ops.len() == 1)
                    .map(|(_, fields)| fields.clone())
            })
            .unwrap_or_default();
        for field in fields {
            let outcome = response
                .errors
                .iter()
                .find(|e| {
                    e.path.first().is_some_and(
                        |p| matches!(p, async_graphql::PathSegment::Field(f) if *f == field),
                    )
                })
                .map_or_else(|| "ok".to_owned(), error_code);
            crate::metrics::field_resolved(&field, &outcome, seconds);
        }
        response
    }
}

fn error_code(error: &async_graphql::ServerError) -> String {
    error
        .extensions
        .as_ref()
        .and_then(|ext| ext.get("code"))
        .and_then(|code| match code {
            Value::String(code) => Some(code.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "error".to_owned())
}

/// Root field names (not aliases), `__typename` and introspection left out; fragments at the
/// root are not followed (rare at the root, and only a metric).
fn root_fields(selection_set: &async_graphql::parser::types::SelectionSet) -> Vec<String> {
    selection_set
        .items
        .iter()
        .filter_map(|item| match &item.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
        .filter(|name| !name.starts_with("__"))
        .collect()
}
