//! Counts and times every operation by its root fields (`requestCode`, `verifyCode`, `me`, …)
//! and outcome: `ok`, or the `extensions.code` of the error under that field.
//!
//! Called by the executor around a whole operation, never per field: a per-field hook (an
//! async-graphql extension) would put every field of every row of a nested list through a
//! boxed extension chain, which measurably slows every request.

use async_graphql::{
    PathSegment, Response,
    parser::types::{ExecutableDocument, OperationType, Selection},
};

use super::operation::selected_operation;
use crate::error::AppError;

/// Every root field of the schema. Labels come only from this list, so a document naming
/// unknown fields cannot grow the metric's label set (`other` stands for those).
pub const ROOT_FIELDS: &[&str] = &[
    "me",
    "users",
    "sessions",
    "requestCode",
    "verifyCode",
    "refreshToken",
    "logout",
    "logoutAll",
    "activateInvite",
    "revokeSession",
    "requestPhoneChange",
    "confirmPhoneChange",
    "deleteAccount",
    "invitedUserJoined",
];

/// One root field of an operation: its name as a label, and its alias when it has one (errors
/// are reported under the response key).
pub struct RootField {
    name: &'static str,
    alias: Option<String>,
}

impl RootField {
    fn response_key(&self) -> &str {
        self.alias.as_deref().unwrap_or(self.name)
    }
}

/// The root fields the operation `operation_name` selects (`__typename` and introspection
/// left out; fragments at the root not followed — rare there, and this is only a metric).
/// None for a subscription: its events are a stream, not one timed operation.
pub fn root_fields(document: &ExecutableDocument, operation_name: Option<&str>) -> Vec<RootField> {
    let Some(operation) = selected_operation(document, operation_name) else {
        return Vec::new();
    };
    if operation.node.ty == OperationType::Subscription {
        return Vec::new();
    }
    operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .filter_map(|item| match &item.node {
            Selection::Field(field) => Some(&field.node),
            _ => None,
        })
        .filter(|field| !field.name.node.starts_with("__"))
        .map(|field| RootField {
            name: ROOT_FIELDS
                .iter()
                .copied()
                .find(|known| *known == field.name.node.as_str())
                .unwrap_or("other"),
            alias: field.alias.as_ref().map(|alias| alias.node.to_string()),
        })
        .collect()
}

/// Records one finished operation: one count per root field, with that field's outcome.
pub fn record(fields: &[RootField], response: &Response, seconds: f64) {
    for field in fields {
        let key = field.response_key();
        let outcome = response
            .errors
            .iter()
            .find(|e| matches!(e.path.first(), Some(PathSegment::Field(f)) if f == key))
            .map_or("ok", |error| {
                error.source::<AppError>().map_or("error", AppError::code)
            });
        crate::metrics::field_resolved(field.name, outcome, seconds);
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::{
        parse_query, parse_schema,
        types::{TypeKind, TypeSystemDefinition},
    };

    use super::*;

    #[test]
    fn every_root_field_of_the_schema_has_its_own_label() {
        let sdl = crate::graphql::schema::sdl();
        let document = parse_schema(&sdl).expect("the SDL parses");
        let mut seen = 0;
        for definition in &document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            if !["Query", "Mutation", "Subscription"].contains(&ty.node.name.node.as_str()) {
                continue;
            }
            let TypeKind::Object(object) = &ty.node.kind else {
                continue;
            };
            for field in &object.fields {
                let name = field.node.name.node.as_str();
                assert!(ROOT_FIELDS.contains(&name), "{name} is not in ROOT_FIELDS");
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            ROOT_FIELDS.len(),
            "ROOT_FIELDS lists a field the schema lacks"
        );
    }

    #[test]
    fn unknown_fields_share_one_label_and_aliases_are_kept() {
        let document = parse_query("query { x: me nope __typename }").expect("parses");
        let fields = root_fields(&document, None);
        let names: Vec<_> = fields
            .iter()
            .map(|f| (f.name, f.alias.as_deref()))
            .collect();
        assert_eq!(names, [("me", Some("x")), ("other", None)]);
        assert_eq!(fields[0].response_key(), "x");
    }

    #[test]
    fn subscriptions_are_not_timed_as_operations() {
        let document = parse_query("subscription { invitedUserJoined { id } }").expect("parses");
        assert!(root_fields(&document, None).is_empty());
    }
}
